//! The cryptography of one payment, and a merchant's whole offline check of one.
//!
//! - `coin/*`: the blind-coin flow with the fixture 2048-bit keys (RFC 9474
//!   RSABSSA-SHA384-PSS-Randomized): `blind` (wallet: pick an id, blind the coin message),
//!   `blind_sign` (issuer: the private-key operation on the blinded message), `finalize`
//!   (wallet: unblind and check the signature), `verify` (anyone: the coin against the key
//!   directory).
//! - `balance_certificate/*`: `sign` (the issuer's RSA-PSS signature alone), `verify` (as a
//!   merchant or wallet does, against the directory), `issue` (the issuer core over a memory
//!   store: verify the device's request, reserve the amount, sign, commit; each iteration
//!   gets a freshly signed request, signed outside the measured time).
//! - `withdrawal_record/*`: the device signing a record, and verifying one under its
//!   account certificate.
//! - `offline_checks/*`: the token checks a merchant makes on a payment answer, without its
//!   store: `record` (account certificate, record, balance certificate and its rules, the
//!   merchant's own request) and `coins5` (request, five blind coins, exact amount).
//! - `merchant_accept/*`: `Merchant::accept` over a memory store, the whole offline
//!   verification of a fresh payment: the checks above, the open-request and seen-before
//!   lookups, signing the receipt (countersignature or endorsement) and queueing it. Every
//!   iteration pays a fresh offer with a fresh record (`record`) or five fresh blind coins
//!   withdrawn from the issuer (`coins5`: 10 + 5 + 2 + 2 + 1); offers, records and coins
//!   are prepared outside the measured time.
//!
//! Run with `cargo bench --bench signing`; `BENCH_QUICK=1` shortens measurement for smoke
//! runs.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use scrip_merchant::{Merchant, MerchantConfig};
use scrip_stores::MemoryStore;
use scrip_tokens::fixtures;
use scrip_tokens::{
    BalanceCertificate, BalanceCertificatePayload, Coin, CoinPayment, LockRules, MerchantReply,
    PaymentAnswer, PendingCoin, WithdrawalRecordPayload,
};

use common::{eur, RawWallet, Shop, TestIssuer, NOW};

fn coin(c: &mut Criterion) {
    let issuer = common::issuer(MemoryStore::new());
    let directory = common::directory(&issuer);
    let keyset = common::keyset(&directory);
    let signing_key = fixtures::denomination(10).unwrap();
    let verifying_key = keyset.key_for(10).unwrap().clone();
    let mut rng = common::rng(1);

    let pending = PendingCoin::new(&mut rng, &keyset, eur(10)).unwrap();
    let blind_signature = signing_key
        .sign_blinded(&mut rng, pending.blinded())
        .unwrap();
    let coin = Coin::Blind(pending.finalize(&verifying_key, &blind_signature).unwrap());
    coin.verify(&directory, NOW).unwrap();

    let mut group = c.benchmark_group("coin");
    common::fast(&mut group);
    group.bench_function("blind", |b| {
        b.iter(|| PendingCoin::new(&mut rng, black_box(&keyset), eur(10)).unwrap())
    });
    group.bench_function("blind_sign", |b| {
        b.iter(|| {
            signing_key
                .sign_blinded(&mut rng, black_box(pending.blinded()))
                .unwrap()
        })
    });
    group.bench_function("finalize", |b| {
        b.iter(|| {
            pending
                .finalize(black_box(&verifying_key), black_box(&blind_signature))
                .unwrap()
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(&coin).verify(&directory, NOW).unwrap())
    });
    group.finish();
}

/// An issuer over a memory store with one funded device and one merchant.
struct World {
    issuer: TestIssuer<MemoryStore>,
    device: RawWallet,
    shop: Shop,
}

async fn world(rng: &mut StdRng) -> World {
    let issuer = common::issuer(MemoryStore::new());
    let device = RawWallet::open(&issuer, 1, rng).await;
    device.deposit(&issuer, 1_000_000_000, rng).await;
    let shop = Shop::register(&issuer, 1, rng).await;
    World {
        issuer,
        device,
        shop,
    }
}

fn balance_certificate(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = common::rng(2);
    let w = runtime.block_on(world(&mut rng));
    let directory = common::directory(&w.issuer);
    let certificate = runtime.block_on(w.device.request_certificate(&w.issuer, 100, NOW, &mut rng));
    let payload: BalanceCertificatePayload = certificate.payload.clone();
    let certifier = fixtures::balance_certifier();
    let account = &w.device.certificate.payload;

    let mut group = c.benchmark_group("balance_certificate");
    common::fast(&mut group);
    group.bench_function("sign", |b| {
        b.iter(|| {
            BalanceCertificate::sign(black_box(payload.clone()), &certifier, &mut rng).unwrap()
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            black_box(&certificate)
                .verify(&directory, account, NOW)
                .unwrap();
        })
    });
    group.bench_function("issue", |b| {
        b.iter_custom(|iters| {
            let requests: Vec<_> = (0..iters)
                .map(|_| {
                    w.device.certificate_request(
                        Some(1),
                        LockRules::default(),
                        Vec::new(),
                        &mut rng,
                    )
                })
                .collect();
            runtime.block_on(async {
                let start = Instant::now();
                for request in &requests {
                    black_box(
                        w.issuer
                            .issue_balance_certificate(request, NOW, &mut rng)
                            .await
                            .unwrap(),
                    );
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn withdrawal_record(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = common::rng(3);
    let w = runtime.block_on(world(&mut rng));
    let certificate = runtime.block_on(w.device.request_certificate(&w.issuer, 100, NOW, &mut rng));
    let request = w.shop.request(1, &mut rng);
    let record = w.device.sign_record(
        &certificate,
        &request,
        certificate.payload.first_sequence,
        1,
        NOW,
        &mut rng,
    );
    let payload: WithdrawalRecordPayload = record.payload.clone();
    let account = &w.device.certificate.payload;

    let mut group = c.benchmark_group("withdrawal_record");
    common::fast(&mut group);
    group.bench_function("sign", |b| {
        b.iter(|| {
            scrip_tokens::WithdrawalRecord::sign(
                black_box(payload.clone()),
                &w.device.key,
                &mut rng,
            )
            .unwrap()
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            black_box(&record).verify(account).unwrap();
        })
    });
    group.finish();
}

/// A point of sale of `w.shop`'s merchant (fixture merchant key 1) over a memory store,
/// with the directory cached and an exposure limit nothing in a benchmark reaches.
async fn point_of_sale(w: &World, rng: &mut StdRng) -> Merchant<MemoryStore> {
    let merchant = Merchant::open(
        MemoryStore::new(),
        fixtures::merchant(1),
        w.shop.certificate.clone(),
        fixtures::directory_root().verifying_key().clone(),
        MerchantConfig::new(eur(1_000_000_000_000)),
        NOW,
    )
    .await
    .unwrap();
    merchant
        .refresh_directory(w.issuer.key_directory(NOW, rng).unwrap(), NOW)
        .await
        .unwrap();
    merchant
}

/// The paying device's record bookkeeping: a certificate of 100 payments of 1, renewed
/// when used up.
struct RecordPayer {
    certificate: Option<BalanceCertificate>,
    next_sequence: u64,
    spent: u64,
}

impl RecordPayer {
    async fn answer(
        &mut self,
        w: &World,
        merchant: &Merchant<MemoryStore>,
        rng: &mut StdRng,
    ) -> PaymentAnswer {
        let usable = self.certificate.as_ref().is_some_and(|c| {
            c.payload.covers_sequence(self.next_sequence)
                && self.spent < c.payload.available.minor_units
        });
        if !usable {
            let cert = w.device.request_certificate(&w.issuer, 100, NOW, rng).await;
            self.next_sequence = cert.payload.first_sequence;
            self.spent = 0;
            self.certificate = Some(cert);
        }
        let cert = self.certificate.as_ref().unwrap();
        let offer = merchant.offer(eur(1), NOW, rng).await.unwrap();
        self.spent += 1;
        let record = w.device.sign_record(
            cert,
            &offer.request,
            self.next_sequence,
            self.spent,
            NOW,
            rng,
        );
        self.next_sequence += 1;
        PaymentAnswer::ByRecord {
            record,
            account_certificate: w.device.certificate.clone(),
            balance_certificate: cert.clone(),
        }
    }
}

const FIVE_COINS: [u64; 5] = [10, 5, 2, 2, 1];

/// Fresh blind coins, withdrawn from the issuer 200 at a time.
struct CoinPurse {
    coins: Vec<Coin>,
}

impl CoinPurse {
    async fn five(&mut self, w: &World, rng: &mut StdRng) -> Vec<Coin> {
        if self.coins.len() < FIVE_COINS.len() {
            let amounts: Vec<u64> = FIVE_COINS.iter().copied().cycle().take(200).collect();
            self.coins = w.device.withdraw_blind(&w.issuer, &amounts, rng).await;
        }
        self.coins.split_off(self.coins.len() - FIVE_COINS.len())
    }

    async fn answer(
        &mut self,
        w: &World,
        merchant: &Merchant<MemoryStore>,
        rng: &mut StdRng,
    ) -> PaymentAnswer {
        let coins = self.five(w, rng).await;
        let total = coins.iter().map(|c| c.amount().minor_units).sum();
        let offer = merchant.offer(eur(total), NOW, rng).await.unwrap();
        PaymentAnswer::ByCoins(CoinPayment {
            request: offer.request,
            coins,
        })
    }
}

fn merchant_checks(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = common::rng(4);
    let w = runtime.block_on(world(&mut rng));
    let merchant = runtime.block_on(point_of_sale(&w, &mut rng));
    let directory = common::directory(&w.issuer);
    let me = &merchant.certificate().payload;
    let mut payer = RecordPayer {
        certificate: None,
        next_sequence: 0,
        spent: 0,
    };
    let mut purse = CoinPurse { coins: Vec::new() };

    // The token checks alone, on one answer of each kind (they are pure: repeatable).
    let by_record = runtime.block_on(payer.answer(&w, &merchant, &mut rng));
    let by_coins = runtime.block_on(purse.answer(&w, &merchant, &mut rng));
    let mut group = c.benchmark_group("offline_checks");
    common::fast(&mut group);
    group.bench_function("record", |b| {
        let PaymentAnswer::ByRecord {
            record,
            account_certificate,
            balance_certificate,
        } = &by_record
        else {
            panic!("a record answer")
        };
        b.iter(|| {
            let request = black_box(&record.payload.payment_request);
            request.verify(me).unwrap();
            let account = black_box(account_certificate)
                .verify(&directory, NOW)
                .unwrap();
            let payload = black_box(record).verify(account).unwrap();
            let cert = black_box(balance_certificate)
                .verify(&directory, account, NOW)
                .unwrap();
            cert.authorize(payload).unwrap();
        })
    });
    group.bench_function("coins5", |b| {
        let PaymentAnswer::ByCoins(payment) = &by_coins else {
            panic!("a coin answer")
        };
        b.iter(|| {
            black_box(payment).verify(me, &directory, NOW).unwrap();
        })
    });
    group.finish();

    let mut group = c.benchmark_group("merchant_accept");
    common::prepared(&mut group, Duration::from_secs(2));
    group.bench_function("record", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut answers = Vec::new();
                for _ in 0..iters {
                    answers.push(payer.answer(&w, &merchant, &mut rng).await);
                }
                let start = Instant::now();
                for answer in &answers {
                    let reply = merchant.accept(answer, NOW, &mut rng).await.unwrap();
                    assert!(matches!(reply, MerchantReply::Receipt(_)), "{reply:?}");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("coins5", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut answers = Vec::new();
                for _ in 0..iters {
                    answers.push(purse.answer(&w, &merchant, &mut rng).await);
                }
                let start = Instant::now();
                for answer in &answers {
                    let reply = merchant.accept(answer, NOW, &mut rng).await.unwrap();
                    assert!(matches!(reply, MerchantReply::Receipt(_)), "{reply:?}");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    coin,
    balance_certificate,
    withdrawal_record,
    merchant_checks
);
criterion_main!(benches);
