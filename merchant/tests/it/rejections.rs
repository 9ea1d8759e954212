//! Requirements 5 and 7 of the wallet and merchant issue: the merchant verifies a wallet's
//! answer fully offline and refuses it with a signed, machine-readable reason otherwise.
//! One test per reason the merchant can give. An honest wallet refuses to build most of
//! these answers, so the tests build them by hand from the token types, signing records
//! with the fixture device keys the wallets hold.
//!
//! Every refusal is checked the same way (`refused`): the exact code, the merchant's
//! signature, the request and answer digest it names, and that the queue and the unsettled
//! total did not move.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use common::*;
use rand::rngs::StdRng;
use scrip_merchant::{Merchant, MerchantConfig, MerchantError, QueuedPayment};
use scrip_stores::{
    ClaimId, CommitOutcome, ExistingClaim, LedgerAccount, LedgerEntry, MemoryStore, RecordStore,
    StoreStats, Unit,
};
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::{AccountCertifier, Device};
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, PayWith, PaymentStatus, StorageKey, Wallet};

// ---- helpers --------------------------------------------------------------------------

fn request_of(answer: &PaymentAnswer) -> &PaymentRequest {
    match answer {
        PaymentAnswer::ByRecord { record, .. } => &record.payload.payment_request,
        PaymentAnswer::ByCoins(payment) => &payment.request,
    }
}

/// The merchant's queue and unsettled total.
async fn books<S: RecordStore>(merchant: &Merchant<S>) -> (Vec<QueuedPayment>, Amount) {
    (
        merchant.pending(1_000).await.unwrap(),
        merchant.unsettled().await.unwrap(),
    )
}

/// Presents `answer` as bytes (as over NFC) and checks that the merchant refuses it with
/// `code`: signed by the merchant's key, naming the request and the answer's digest, dated
/// `now`, and with nothing queued or counted as unsettled.
async fn refused<S: RecordStore>(
    merchant: &Merchant<S>,
    answer: &PaymentAnswer,
    now: Timestamp,
    code: &str,
) -> PaymentRejection {
    let before = books(merchant).await;
    let bytes = merchant
        .accept_bytes(
            &codec::encode(answer).unwrap(),
            now,
            &mut rng(now.as_unix_millis() ^ 0x5eed),
        )
        .await
        .unwrap();
    let reply: MerchantReply = codec::decode(&bytes).unwrap();
    let MerchantReply::Rejection(rejection) = reply else {
        panic!("expected a rejection with {code}, got a receipt")
    };
    let payload = rejection
        .verify_signature(&merchant.certificate().payload.merchant_key)
        .unwrap();
    assert_eq!(
        payload.reason.code, code,
        "wrong reason (message: {})",
        payload.reason.message
    );
    assert!(!payload.reason.message.is_empty());
    assert_eq!(payload.request_id, request_of(answer).payload.request_id);
    assert_eq!(payload.answer_digest, codec::digest(answer).unwrap());
    assert_eq!(payload.rejected_at, now);
    assert_eq!(
        books(merchant).await,
        before,
        "a refused answer ({code}) was queued or counted"
    );
    rejection
}

/// Presents `answer` and expects a receipt.
async fn accepted<S: RecordStore>(
    merchant: &Merchant<S>,
    answer: &PaymentAnswer,
    now: Timestamp,
) -> PaymentReceipt {
    match merchant
        .accept(answer, now, &mut rng(now.as_unix_millis() ^ 0xacce))
        .await
        .unwrap()
    {
        MerchantReply::Receipt(receipt) => receipt,
        MerchantReply::Rejection(r) => panic!("refused: {:?}", r.payload.reason),
    }
}

async fn make_offer<S: RecordStore>(
    merchant: &Merchant<S>,
    amount: u64,
    now: Timestamp,
    seed: u64,
) -> MerchantOffer {
    merchant
        .offer(eur(amount), now, &mut rng(seed))
        .await
        .unwrap()
}

fn by_coins(offer: &MerchantOffer, coins: Vec<Coin>) -> PaymentAnswer {
    PaymentAnswer::ByCoins(CoinPayment {
        request: offer.request.clone(),
        coins,
    })
}

/// Blind coins of `amounts`, withdrawn by a fresh wallet with device key `n`, in order.
async fn blind_coins(issuer: &TestIssuer, n: u8, amounts: &[u64]) -> Vec<Coin> {
    let mut phone = Phone::open(issuer, n, 1_000, 300 + u64::from(n)).await;
    let ids = phone.withdraw_blind(issuer, amounts).await;
    ids.iter()
        .map(|id| {
            phone
                .wallet
                .coins()
                .iter()
                .find(|c| c.id() == *id)
                .unwrap()
                .clone()
        })
        .collect()
}

fn blind(coin: &Coin) -> BlindCoin {
    match coin {
        Coin::Blind(c) => c.clone(),
        Coin::Identified(_) => panic!("not a blind coin"),
    }
}

/// A registered, funded customer with a balance certificate, whose device key the test
/// holds: it signs whatever records it likes.
struct Cheat {
    phone: Phone,
    key: SigningKey<Device>,
    account: AccountCertificate,
    certificate: BalanceCertificate,
    rng: StdRng,
}

impl Cheat {
    /// Device key `n`, 10 000 deposited, a certificate issued at `issued_at`.
    async fn new(
        issuer: &TestIssuer,
        n: u8,
        options: CertificateOptions,
        issued_at: Timestamp,
    ) -> Cheat {
        let mut phone = Phone::open(issuer, n, 10_000, 100 + u64::from(n)).await;
        let certificate = phone.certificate(issuer, options, issued_at).await;
        let device_id = phone.wallet.account().unwrap().device_id;
        let account = issuer.device(device_id).await.unwrap().certificate;
        Cheat {
            phone,
            key: fixtures::device(n),
            account,
            certificate,
            rng: rng(200 + u64::from(n)),
        }
    }

    /// A record for `request` under the certificate (first sequence number, cumulative =
    /// the amount, signed when the request was made), changed by `edit`, signed by the
    /// device key.
    fn record(
        &mut self,
        request: &PaymentRequest,
        edit: impl FnOnce(&mut WithdrawalRecordPayload),
    ) -> WithdrawalRecord {
        let cert = &self.certificate.payload;
        let mut payload = WithdrawalRecordPayload {
            record_id: RecordId::random(&mut self.rng),
            account_id: cert.account_id,
            device_id: cert.device_id,
            certificate_serial: cert.serial,
            sequence: cert.first_sequence,
            cumulative: request.payload.amount,
            signed_at: request.payload.created_at,
            payment_request: request.clone(),
        };
        edit(&mut payload);
        WithdrawalRecord::sign(payload, &self.key, &mut self.rng).unwrap()
    }

    fn answer(&self, record: WithdrawalRecord) -> PaymentAnswer {
        PaymentAnswer::ByRecord {
            record,
            account_certificate: self.account.clone(),
            balance_certificate: self.certificate.clone(),
        }
    }

    fn pays(
        &mut self,
        request: &PaymentRequest,
        edit: impl FnOnce(&mut WithdrawalRecordPayload),
    ) -> PaymentAnswer {
        let record = self.record(request, edit);
        self.answer(record)
    }
}

/// A memory store whose commits, once armed, wait for each other in pairs: two accepts
/// started together both pass the offline checks before either commits, so the store's
/// claims, not the order of the checks, decide between them.
#[derive(Default)]
struct Racing {
    inner: MemoryStore,
    armed: AtomicBool,
    gate: Gate,
}

struct Gate(tokio::sync::Barrier);

impl Default for Gate {
    fn default() -> Self {
        Gate(tokio::sync::Barrier::new(2))
    }
}

#[async_trait]
impl RecordStore for Racing {
    async fn commit_many(&self, units: Vec<Unit>) -> scrip_stores::Result<Vec<CommitOutcome>> {
        if self.armed.load(Ordering::SeqCst) {
            self.gate.0.wait().await;
        }
        self.inner.commit_many(units).await
    }
    async fn claims(&self, ids: &[ClaimId]) -> scrip_stores::Result<Vec<Option<ExistingClaim>>> {
        self.inner.claims(ids).await
    }
    async fn balance(
        &self,
        account: &LedgerAccount,
        currency: Currency,
    ) -> scrip_stores::Result<i128> {
        self.inner.balance(account, currency).await
    }
    async fn balances(
        &self,
        after: Option<(LedgerAccount, Currency)>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<(LedgerAccount, Currency, i128)>> {
        self.inner.balances(after, limit).await
    }
    async fn ledger_entries(
        &self,
        account: &LedgerAccount,
        currency: Currency,
        after_seq: Option<u64>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<LedgerEntry>> {
        self.inner
            .ledger_entries(account, currency, after_seq, limit)
            .await
    }
    async fn get(
        &self,
        collection: scrip_stores::Collection,
        key: &[u8],
    ) -> scrip_stores::Result<Option<Vec<u8>>> {
        self.inner.get(collection, key).await
    }
    async fn scan(
        &self,
        collection: scrip_stores::Collection,
        after: Option<&[u8]>,
        limit: usize,
    ) -> scrip_stores::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(collection, after, limit).await
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
    async fn close(&self) -> scrip_stores::Result<()> {
        self.inner.close().await
    }
}

// ---- the terminal's own state -----------------------------------------------------------

#[tokio::test]
async fn no_key_directory_before_the_first_sync() {
    let issuer = issuer();
    let (key, cert) =
        register_merchant(&issuer, 1, MerchantCategory::GROCERY, "DE-BY", &mut rng(1)).await;
    // Opened without a directory: it can make offers, but cannot check anything.
    let merchant = Merchant::open(
        MemoryStore::new(),
        key,
        cert,
        root(),
        MerchantConfig::new(eur(100_000)),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(merchant.directory_age(NOW), None);
    let mut phone = Phone::open(&issuer, 1, 100, 2).await;
    phone.withdraw_blind(&issuer, &[10]).await;
    let offer = make_offer(&merchant, 10, at(1), 3).await;
    let answer = phone.wallet.pay_by_coins(&offer, at(1)).unwrap();
    let answer = phone.send(answer);

    let rejection = refused(&merchant, &answer, at(1), "no_key_directory").await;
    // The wallet takes its coins back on the merchant's signed word.
    assert_eq!(
        phone
            .wallet
            .on_merchant_reply(&MerchantReply::Rejection(rejection), at(1))
            .unwrap(),
        PaymentStatus::Rejected(RejectReason {
            code: "no_key_directory".into(),
            message: "the terminal has no key directory yet".into(),
        })
    );
    assert_eq!(phone.wallet.coin_total(EUR), eur(10));

    // Once the directory is there the same answer goes through: a refusal is not kept.
    merchant
        .refresh_directory(issuer.key_directory(at(2), &mut rng(4)).unwrap(), at(2))
        .await
        .unwrap();
    accepted(&merchant, &answer, at(2)).await;
    assert_eq!(merchant.unsettled().await.unwrap(), eur(10));
}

#[tokio::test]
async fn unknown_request_of_another_terminal_or_altered() {
    let issuer = issuer();
    let here = shop(&issuer, 1, 100_000).await;
    // A second terminal of the same merchant (same key and certificate, its own store).
    let there = Merchant::open(
        MemoryStore::new(),
        fixtures::merchant(1),
        here.certificate().clone(),
        root(),
        MerchantConfig::new(eur(100_000)),
        NOW,
    )
    .await
    .unwrap();
    there
        .refresh_directory(issuer.key_directory(NOW, &mut rng(5)).unwrap(), NOW)
        .await
        .unwrap();
    let coins = blind_coins(&issuer, 1, &[10, 10, 5]).await;

    let theirs = make_offer(&there, 10, at(1), 6).await;
    let answer = by_coins(&theirs, vec![coins[0].clone()]);
    refused(&here, &answer, at(1), "unknown_request").await;
    accepted(&there, &answer, at(1)).await;

    // A request of this terminal, changed (10 -> 5) and signed again with the merchant's
    // key under the same request id: not the request this terminal made.
    let mine = make_offer(&here, 10, at(2), 7).await;
    let mut altered = mine.request.payload.clone();
    altered.amount = eur(5);
    let altered = PaymentRequest::sign(altered, &fixtures::merchant(1), &mut rng(8)).unwrap();
    let answer = PaymentAnswer::ByCoins(CoinPayment {
        request: altered,
        coins: vec![coins[2].clone()],
    });
    refused(&here, &answer, at(2), "unknown_request").await;
    // The real request is still payable.
    accepted(&here, &by_coins(&mine, vec![coins[1].clone()]), at(3)).await;
}

#[tokio::test]
async fn request_expired_after_its_lifetime() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut phone = Phone::open(&issuer, 1, 10_000, 9).await;
    phone.certificate(&issuer, up_to(3_000), NOW).await;
    let late = make_offer(&merchant, 100, at(0), 10).await;
    let in_time = make_offer(&merchant, 200, at(0), 11).await;
    let answer = phone
        .wallet
        .pay_by_record(&late, at(1), &mut rng(12))
        .unwrap();
    let answer = phone.send(answer);
    // Requests live 10 minutes.
    let expiry = at(10).saturating_add(std::time::Duration::from_millis(1));
    refused(&merchant, &answer, expiry, "request_expired").await;
    let answer = phone
        .wallet
        .pay_by_record(&in_time, at(1), &mut rng(13))
        .unwrap();
    let answer = phone.send(answer);
    accepted(&merchant, &answer, at(10)).await;
}

#[tokio::test]
async fn request_already_paid_by_a_second_different_answer() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(3_000), NOW).await;
    let offer = make_offer(&merchant, 100, at(1), 14).await;
    let first = cheat.pays(&offer.request, |_| {});
    accepted(&merchant, &first, at(1)).await;
    // A second record for the same request (next sequence number, another record id).
    let second = cheat.pays(&offer.request, |p| {
        p.sequence += 1;
        p.cumulative = eur(200);
    });
    // The paid request has left the open list; the terminal still knows it was paid.
    refused(&merchant, &second, at(2), "request_already_paid").await;
}

#[tokio::test]
async fn request_already_paid_when_two_answers_race() {
    let issuer = issuer();
    let merchant = shop_over(&issuer, 1, 100_000, Racing::default()).await;
    let coins = blind_coins(&issuer, 1, &[10, 10]).await;
    let offer = make_offer(&merchant, 10, at(1), 15).await;
    let one = by_coins(&offer, vec![coins[0].clone()]);
    let other = by_coins(&offer, vec![coins[1].clone()]);
    merchant.store().armed.store(true, Ordering::SeqCst);
    let (mut r1, mut r2) = (rng(16), rng(17));
    let (a, b) = tokio::join!(
        merchant.accept(&one, at(1), &mut r1),
        merchant.accept(&other, at(1), &mut r2),
    );
    merchant.store().armed.store(false, Ordering::SeqCst);
    let (a, b) = (a.unwrap(), b.unwrap());
    let (receipt, rejection, refused_answer) = match (&a, &b) {
        (MerchantReply::Receipt(_), MerchantReply::Rejection(r)) => (&a, r, &other),
        (MerchantReply::Rejection(r), MerchantReply::Receipt(_)) => (&b, r, &one),
        _ => panic!("expected one receipt and one rejection: {a:?} / {b:?}"),
    };
    assert!(is_receipt(receipt));
    let payload = rejection
        .verify_signature(&merchant.certificate().payload.merchant_key)
        .unwrap();
    assert_eq!(payload.reason.code, "request_already_paid");
    assert_eq!(payload.request_id, offer.request.payload.request_id);
    assert_eq!(
        payload.answer_digest,
        codec::digest(refused_answer).unwrap()
    );
    let pending = merchant.pending(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(10));
}

#[tokio::test]
async fn coin_already_seen_in_another_payment() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let coins = blind_coins(&issuer, 1, &[10, 5]).await;
    let first = make_offer(&merchant, 10, at(1), 18).await;
    accepted(&merchant, &by_coins(&first, vec![coins[0].clone()]), at(1)).await;
    // The same coin again, alone or with a fresh one.
    let again = make_offer(&merchant, 10, at(2), 19).await;
    refused(
        &merchant,
        &by_coins(&again, vec![coins[0].clone()]),
        at(2),
        "coin_already_seen",
    )
    .await;
    let mixed = make_offer(&merchant, 15, at(3), 20).await;
    refused(
        &merchant,
        &by_coins(&mixed, vec![coins[1].clone(), coins[0].clone()]),
        at(3),
        "coin_already_seen",
    )
    .await;
    // The fresh coin was not burnt by the refusal.
    let five = make_offer(&merchant, 5, at(4), 21).await;
    accepted(&merchant, &by_coins(&five, vec![coins[1].clone()]), at(4)).await;
    assert_eq!(merchant.pending(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn sequence_already_seen_in_a_second_record() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(3_000), NOW).await;
    let first = make_offer(&merchant, 100, at(1), 22).await;
    let paid = cheat.pays(&first.request, |_| {});
    accepted(&merchant, &paid, at(1)).await;
    // Another request, another record, the same sequence number: equivocation.
    let second = make_offer(&merchant, 100, at(2), 23).await;
    let equivocating = cheat.pays(&second.request, |p| p.cumulative = eur(200));
    refused(&merchant, &equivocating, at(2), "sequence_already_seen").await;
    // With the next sequence number it is fine.
    let honest = cheat.pays(&second.request, |p| {
        p.sequence += 1;
        p.cumulative = eur(200);
    });
    accepted(&merchant, &honest, at(3)).await;
}

#[tokio::test]
async fn record_already_seen_when_a_record_id_is_reused() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(3_000), NOW).await;
    let first = make_offer(&merchant, 100, at(1), 24).await;
    let paid = cheat.pays(&first.request, |_| {});
    let PaymentAnswer::ByRecord { record, .. } = &paid else {
        unreachable!()
    };
    let record_id = record.payload.record_id;
    accepted(&merchant, &paid, at(1)).await;
    let second = make_offer(&merchant, 100, at(2), 25).await;
    let reused = cheat.pays(&second.request, |p| {
        p.record_id = record_id;
        p.sequence += 1;
        p.cumulative = eur(200);
    });
    refused(&merchant, &reused, at(2), "record_already_seen").await;
}

#[tokio::test]
async fn exposure_limit_until_settled() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 1_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(5_000), NOW).await;
    let first = make_offer(&merchant, 600, at(1), 26).await;
    let a = cheat.pays(&first.request, |_| {});
    accepted(&merchant, &a, at(1)).await;
    let second = make_offer(&merchant, 500, at(2), 27).await;
    let b = cheat.pays(&second.request, |p| {
        p.sequence += 1;
        p.cumulative = eur(1_100);
    });
    refused(&merchant, &b, at(2), "exposure_limit").await;
    // Up to the limit exactly is fine.
    let third = make_offer(&merchant, 400, at(3), 28).await;
    let c = cheat.pays(&third.request, |p| {
        p.sequence += 2;
        p.cumulative = eur(1_500);
    });
    accepted(&merchant, &c, at(3)).await;
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_000));
    refused(&merchant, &b, at(4), "exposure_limit").await;

    // Settling frees the headroom; the refused answer (its request still open) now passes.
    let summary = merchant
        .sync(&client(&issuer, at(5)), at(5), &mut rng(29))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 2);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    accepted(&merchant, &b, at(6)).await;
    assert_eq!(merchant.unsettled().await.unwrap(), eur(500));
}

// ---- signatures, keys and validity --------------------------------------------------------

#[tokio::test]
async fn bad_signature_on_a_tampered_record_certificate_request_or_coin() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    let offer_ = make_offer(&merchant, 800, at(1), 30).await;

    // The record's cumulative lowered after signing.
    let PaymentAnswer::ByRecord {
        mut record,
        account_certificate,
        balance_certificate,
    } = cheat.pays(&offer_.request, |p| p.cumulative = eur(900))
    else {
        unreachable!()
    };
    record.payload.cumulative = eur(800);
    let tampered = PaymentAnswer::ByRecord {
        record: record.clone(),
        account_certificate: account_certificate.clone(),
        balance_certificate: balance_certificate.clone(),
    };
    refused(&merchant, &tampered, at(1), "bad_signature").await;

    // The balance certificate's available amount raised.
    let mut richer = balance_certificate.clone();
    richer.payload.available = eur(5_000);
    let honest = cheat.pays(&offer_.request, |_| {});
    let PaymentAnswer::ByRecord { record, .. } = &honest else {
        unreachable!()
    };
    let tampered = PaymentAnswer::ByRecord {
        record: record.clone(),
        account_certificate: account_certificate.clone(),
        balance_certificate: richer,
    };
    refused(&merchant, &tampered, at(1), "bad_signature").await;

    // The account certificate moved to another account.
    let mut moved = account_certificate.clone();
    moved.payload.account_id = AccountId::random(&mut rng(31));
    let tampered = PaymentAnswer::ByRecord {
        record: record.clone(),
        account_certificate: moved,
        balance_certificate: balance_certificate.clone(),
    };
    refused(&merchant, &tampered, at(1), "bad_signature").await;

    // The request's price lowered (without the merchant's key).
    let coins = blind_coins(&issuer, 2, &[10, 5]).await;
    let ten = make_offer(&merchant, 10, at(2), 32).await;
    let mut cheaper = ten.request.clone();
    cheaper.payload.amount = eur(5);
    let tampered = PaymentAnswer::ByCoins(CoinPayment {
        request: cheaper,
        coins: vec![coins[1].clone()],
    });
    refused(&merchant, &tampered, at(2), "bad_signature").await;

    // A blind coin given another id (a copy passed off as a new coin).
    let mut copy = blind(&coins[0]);
    copy.coin_id = CoinId::random(&mut rng(33));
    refused(
        &merchant,
        &by_coins(&ten, vec![Coin::Blind(copy)]),
        at(2),
        "bad_signature",
    )
    .await;

    // An identified coin re-valued from 5 to 10.
    let mut phone = Phone::open(&issuer, 3, 100, 34).await;
    let ids = phone.withdraw_identified(&issuer, &[5]).await;
    let Some(Coin::Identified(mut identified)) = phone
        .wallet
        .coins()
        .iter()
        .find(|c| c.id() == ids[0])
        .cloned()
    else {
        panic!("no identified coin")
    };
    identified.payload.amount = eur(10);
    refused(
        &merchant,
        &by_coins(&ten, vec![Coin::Identified(identified)]),
        at(2),
        "bad_signature",
    )
    .await;

    // The untouched answers pass.
    accepted(&merchant, &honest, at(3)).await;
    accepted(&merchant, &by_coins(&ten, vec![coins[0].clone()]), at(3)).await;
}

#[tokio::test]
async fn expired_balance_certificate_at_acceptance() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    // Balance certificates live one day (the issuer's default).
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    assert_eq!(
        cheat.certificate.payload.expires_at,
        NOW.saturating_add(DAY)
    );
    let after = 24 * 60 + 1;
    let late = make_offer(&merchant, 100, at(after), 35).await;
    let answer = cheat.pays(&late.request, |_| {});
    refused(&merchant, &answer, at(after), "expired").await;

    // A record dated after the certificate's end, presented while it is still valid.
    let now = make_offer(&merchant, 100, at(1), 36).await;
    let postdated = cheat.pays(&now.request, |p| p.signed_at = at(after));
    refused(&merchant, &postdated, at(1), "expired").await;
}

#[tokio::test]
async fn not_yet_valid_balance_certificate() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    // Issued an hour from now (the customer's phone is ahead of the terminal).
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), at(60)).await;
    let early = make_offer(&merchant, 100, at(5), 37).await;
    let answer = cheat.pays(&early.request, |p| p.signed_at = at(61));
    refused(&merchant, &answer, at(5), "not_yet_valid").await;
    // And a record dated before the certificate began, presented once it is valid.
    let later = make_offer(&merchant, 100, at(61), 90).await;
    let backdated = cheat.pays(&later.request, |p| p.signed_at = at(59));
    refused(&merchant, &backdated, at(61), "not_yet_valid").await;
    let answer = cheat.pays(&later.request, |p| p.signed_at = at(61));
    accepted(&merchant, &answer, at(62)).await;
}

#[tokio::test]
async fn key_expired_and_key_not_yet_valid_issuer_keys() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    // The issuer keys of the fixture keyring are valid from NOW - 30 days to NOW + 300.
    let past = NOW.saturating_sub(DAY * 31);
    let early = make_offer(&merchant, 100, past, 38).await;
    let answer = cheat.pays(&early.request, |_| {});
    refused(&merchant, &answer, past, "key_not_yet_valid").await;
    let future = NOW.saturating_add(DAY * 301);
    let late = make_offer(&merchant, 100, future, 39).await;
    let answer = cheat.pays(&late.request, |_| {});
    refused(&merchant, &answer, future, "key_expired").await;
}

#[tokio::test]
async fn unknown_key_for_a_record_a_certificate_or_a_coin() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    let offer_ = make_offer(&merchant, 100, at(1), 40).await;

    // A record for device 1's account signed by device 2's key.
    let mut forged = cheat.record(&offer_.request, |_| {}).payload;
    forged.record_id = RecordId::random(&mut rng(41));
    let forged = WithdrawalRecord::sign(forged, &fixtures::device(2), &mut rng(42)).unwrap();
    refused(&merchant, &cheat.answer(forged), at(1), "unknown_key").await;

    // An account certificate signed by a key the directory does not list.
    let stranger = SigningKey::<AccountCertifier>::from_pem(fixtures::unrelated_key_pem()).unwrap();
    let self_made =
        AccountCertificate::sign(cheat.account.payload.clone(), &stranger, &mut rng(43)).unwrap();
    let PaymentAnswer::ByRecord {
        record,
        balance_certificate,
        ..
    } = cheat.pays(&offer_.request, |_| {})
    else {
        unreachable!()
    };
    let answer = PaymentAnswer::ByRecord {
        record,
        account_certificate: self_made,
        balance_certificate,
    };
    refused(&merchant, &answer, at(1), "unknown_key").await;

    // A coin of 10 naming the key of the 5.
    let coins = blind_coins(&issuer, 2, &[10]).await;
    let ten = make_offer(&merchant, 10, at(2), 44).await;
    let mut renamed = blind(&coins[0]);
    renamed.key_id = fixtures::denomination(5).unwrap().key_id();
    refused(
        &merchant,
        &by_coins(&ten, vec![Coin::Blind(renamed)]),
        at(2),
        "unknown_key",
    )
    .await;
}

#[tokio::test]
async fn wrong_key_role_for_a_certificate_signed_by_another_issuer_key() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    let offer = make_offer(&merchant, 100, at(1), 45).await;
    // The issuer's balance-certificate key, used as if it certified accounts.
    let der = fixtures::balance_certifier().to_der().unwrap();
    let misused = SigningKey::<AccountCertifier>::from_der(&der).unwrap();
    let account =
        AccountCertificate::sign(cheat.account.payload.clone(), &misused, &mut rng(46)).unwrap();
    let PaymentAnswer::ByRecord {
        record,
        balance_certificate,
        ..
    } = cheat.pays(&offer.request, |_| {})
    else {
        unreachable!()
    };
    let answer = PaymentAnswer::ByRecord {
        record,
        account_certificate: account,
        balance_certificate,
    };
    refused(&merchant, &answer, at(1), "wrong_key_role").await;
}

#[tokio::test]
async fn unknown_keyset_of_a_coin() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let coins = blind_coins(&issuer, 1, &[10]).await;
    let offer = make_offer(&merchant, 10, at(1), 47).await;
    let mut foreign = blind(&coins[0]);
    foreign.keyset_id = KeysetId([7; 32]);
    refused(
        &merchant,
        &by_coins(&offer, vec![Coin::Blind(foreign)]),
        at(1),
        "unknown_keyset",
    )
    .await;
}

#[tokio::test]
async fn unknown_denomination_of_a_coin() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let coins = blind_coins(&issuer, 1, &[2]).await;
    let offer = make_offer(&merchant, 3, at(1), 48).await;
    // There is no 3: the keyset cannot even name a key for it.
    let mut three = blind(&coins[0]);
    three.amount = eur(3);
    refused(
        &merchant,
        &by_coins(&offer, vec![Coin::Blind(three)]),
        at(1),
        "unknown_denomination",
    )
    .await;
}

// ---- record against certificates -------------------------------------------------------

#[tokio::test]
async fn wrong_account_between_record_and_certificates() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    let other = Cheat::new(&issuer, 2, up_to(5_000), NOW).await;
    let offer = make_offer(&merchant, 100, at(1), 49).await;

    // A record naming another account.
    let answer = cheat.pays(&offer.request, |p| {
        p.account_id = other.account.payload.account_id
    });
    refused(&merchant, &answer, at(1), "wrong_account").await;

    // Somebody else's (richer) balance certificate presented with one's own record.
    let record = cheat.record(&offer.request, |_| {});
    let answer = PaymentAnswer::ByRecord {
        record,
        account_certificate: cheat.account.clone(),
        balance_certificate: other.certificate.clone(),
    };
    refused(&merchant, &answer, at(1), "wrong_account").await;
}

#[tokio::test]
async fn wrong_device_between_record_and_certificates() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;

    // A second device joins the account and gets its own certificate.
    let account_id = cheat.account.payload.account_id;
    let mut second = Wallet::new(fixtures::device(2), root()).unwrap();
    second
        .update_directory(issuer.key_directory(NOW, &mut rng(50)).unwrap(), NOW)
        .unwrap();
    let mut second = Phone {
        wallet: second,
        storage_key: StorageKey::random(&mut rng(51)),
        saved: None,
        rng: rng(52),
    };
    let registration = second
        .wallet
        .registration_request(Some(account_id), NOW, &mut rng(53))
        .unwrap();
    let registration = second.send(registration);
    let approval = cheat
        .phone
        .wallet
        .approve_device(second.wallet.device_key_id(), NOW, &mut rng(54))
        .unwrap();
    let certificate = issuer
        .add_device(&registration, &approval, NOW, &mut rng(55))
        .await
        .unwrap();
    second
        .wallet
        .on_account_certificate(certificate, NOW)
        .unwrap();
    let seconds = second.certificate(&issuer, up_to(2_000), NOW).await;
    assert_eq!(seconds.payload.account_id, account_id);

    let offer = make_offer(&merchant, 100, at(1), 56).await;
    // Device 1's record and account certificate with device 2's balance certificate.
    let record = cheat.record(&offer.request, |_| {});
    let answer = PaymentAnswer::ByRecord {
        record,
        account_certificate: cheat.account.clone(),
        balance_certificate: seconds.clone(),
    };
    refused(&merchant, &answer, at(1), "wrong_device").await;

    // A record of device 1 naming device 2.
    let answer = cheat.pays(&offer.request, |p| p.device_id = seconds.payload.device_id);
    refused(&merchant, &answer, at(1), "wrong_device").await;
}

#[tokio::test]
async fn wrong_certificate_named_by_the_record() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    let offer = make_offer(&merchant, 100, at(1), 57).await;
    let answer = cheat.pays(&offer.request, |p| {
        p.certificate_serial = CertificateSerial::random(&mut rng(58));
    });
    refused(&merchant, &answer, at(1), "wrong_certificate").await;
}

// ---- balance certificate rules -----------------------------------------------------------

#[tokio::test]
async fn payment_cap_exceeded() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(
        &issuer,
        1,
        CertificateOptions {
            per_payment_cap: Some(eur(500)),
            ..up_to(3_000)
        },
        NOW,
    )
    .await;
    // The honest wallet will not even try.
    let big = make_offer(&merchant, 800, at(1), 59).await;
    assert!(cheat
        .phone
        .wallet
        .pay_by_record(&big, at(1), &mut rng(60))
        .is_err());
    let answer = cheat.pays(&big.request, |_| {});
    refused(&merchant, &answer, at(1), "payment_cap_exceeded").await;
    // At the cap it passes.
    let capped = make_offer(&merchant, 500, at(2), 61).await;
    let answer = cheat.pays(&capped.request, |_| {});
    accepted(&merchant, &answer, at(2)).await;
}

#[tokio::test]
async fn available_exceeded_by_the_cumulative_amount() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    let first = make_offer(&merchant, 600, at(1), 62).await;
    accepted(&merchant, &cheat.pays(&first.request, |_| {}), at(1)).await;
    let second = make_offer(&merchant, 600, at(2), 63).await;
    let answer = cheat.pays(&second.request, |p| {
        p.sequence += 1;
        p.cumulative = eur(1_200);
    });
    refused(&merchant, &answer, at(2), "available_exceeded").await;
}

#[tokio::test]
async fn sequence_out_of_range_of_the_certificate() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(
        &issuer,
        1,
        CertificateOptions {
            max_payments: Some(2),
            ..up_to(1_000)
        },
        NOW,
    )
    .await;
    let first = cheat.certificate.payload.first_sequence;
    assert_eq!(cheat.certificate.payload.max_payments, 2);
    let offer = make_offer(&merchant, 100, at(1), 64).await;
    let beyond = cheat.pays(&offer.request, |p| p.sequence = first + 2);
    refused(&merchant, &beyond, at(1), "sequence_out_of_range").await;
    let before = cheat.pays(&offer.request, |p| p.sequence = first - 1);
    refused(&merchant, &before, at(1), "sequence_out_of_range").await;
    let last = cheat.pays(&offer.request, |p| p.sequence = first + 1);
    accepted(&merchant, &last, at(1)).await;
}

#[tokio::test]
async fn category_not_allowed_by_the_certificate() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await; // a grocery
    let mut cheat = Cheat::new(
        &issuer,
        1,
        CertificateOptions {
            lock: LockRules {
                allowed_categories: Allowed::Only(vec![MerchantCategory::RESTAURANT]),
                ..LockRules::default()
            },
            ..up_to(1_000)
        },
        NOW,
    )
    .await;
    let offer = make_offer(&merchant, 100, at(1), 65).await;
    let answer = cheat.pays(&offer.request, |_| {});
    refused(&merchant, &answer, at(1), "category_not_allowed").await;
}

#[tokio::test]
async fn region_not_allowed_by_the_certificate() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await; // in DE-BY
    let mut cheat = Cheat::new(
        &issuer,
        1,
        CertificateOptions {
            lock: LockRules {
                allowed_regions: Allowed::Only(vec![
                    Region::new("FR").unwrap(),
                    Region::new("DE-BE").unwrap(),
                ]),
                ..LockRules::default()
            },
            ..up_to(1_000)
        },
        NOW,
    )
    .await;
    let offer = make_offer(&merchant, 100, at(1), 66).await;
    let answer = cheat.pays(&offer.request, |_| {});
    refused(&merchant, &answer, at(1), "region_not_allowed").await;
}

#[tokio::test]
async fn currency_mismatch_and_invalid_cumulative_in_a_record() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut cheat = Cheat::new(&issuer, 1, up_to(1_000), NOW).await;
    let offer_ = make_offer(&merchant, 100, at(1), 67).await;
    let dollars = cheat.pays(&offer_.request, |p| {
        p.cumulative = Amount::new(100, Currency::USD);
    });
    refused(&merchant, &dollars, at(1), "currency_mismatch").await;
    let smaller = cheat.pays(&offer_.request, |p| p.cumulative = eur(50));
    refused(&merchant, &smaller, at(1), "invalid_field").await;

    // A coin claiming another currency.
    let coins = blind_coins(&issuer, 2, &[10]).await;
    let ten = make_offer(&merchant, 10, at(2), 68).await;
    let mut dollar = blind(&coins[0]);
    dollar.amount = Amount::new(10, Currency::USD);
    refused(
        &merchant,
        &by_coins(&ten, vec![Coin::Blind(dollar)]),
        at(2),
        "currency_mismatch",
    )
    .await;
}

// ---- coins -----------------------------------------------------------------------------

#[tokio::test]
async fn amount_mismatch_when_coins_do_not_add_up() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let coins = blind_coins(&issuer, 1, &[10, 5, 2, 1]).await;
    let offer = make_offer(&merchant, 17, at(1), 69).await;
    let short = by_coins(&offer, coins[..2].to_vec());
    refused(&merchant, &short, at(1), "amount_mismatch").await;
    let over = by_coins(&offer, coins.clone());
    refused(&merchant, &over, at(1), "amount_mismatch").await;
    let none = by_coins(&offer, Vec::new());
    refused(&merchant, &none, at(1), "amount_mismatch").await;
    // Refused coins are not burnt: exactly 17 of them passes.
    accepted(&merchant, &by_coins(&offer, coins[..3].to_vec()), at(2)).await;
}

#[tokio::test]
async fn duplicate_coin_in_one_payment() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let coins = blind_coins(&issuer, 1, &[5]).await;
    let offer = make_offer(&merchant, 10, at(1), 70).await;
    // One 5 listed twice: adds up to 10 but would redeem once.
    let twice = by_coins(&offer, vec![coins[0].clone(), coins[0].clone()]);
    refused(&merchant, &twice, at(1), "duplicate_coin").await;
}

// ---- the request belongs to another merchant ------------------------------------------------

#[tokio::test]
async fn wrong_merchant_named_in_a_request() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let elsewhere = shop(&issuer, 2, 100_000).await;
    let coins = blind_coins(&issuer, 1, &[10]).await;
    // Signed with this merchant's key but naming the other merchant.
    let mine = make_offer(&merchant, 10, at(1), 71).await;
    let mut payload = mine.request.payload.clone();
    payload.merchant_id = elsewhere.certificate().payload.merchant_id;
    let request = PaymentRequest::sign(payload, &fixtures::merchant(1), &mut rng(72)).unwrap();
    let answer = PaymentAnswer::ByCoins(CoinPayment {
        request,
        coins: vec![coins[0].clone()],
    });
    refused(&merchant, &answer, at(1), "wrong_merchant").await;
}

#[tokio::test]
async fn wrong_merchant_for_an_answer_to_another_merchants_request() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let elsewhere = shop(&issuer, 2, 100_000).await;
    let mut phone = Phone::open(&issuer, 1, 100, 73).await;
    phone.withdraw_blind(&issuer, &[10]).await;
    // An honest answer to the other shop's offer, presented here (relayed, misrouted).
    let theirs = make_offer(&elsewhere, 10, at(1), 74).await;
    let answer = phone.wallet.pay_by_coins(&theirs, at(1)).unwrap();
    let answer = phone.send(answer);
    // The merchant id is compared before the signature: `wrong_merchant`, not a
    // confusing `unknown_key`.
    refused(&merchant, &answer, at(1), "wrong_merchant").await;
    accepted(&elsewhere, &answer, at(1)).await;
}

// ---- idempotence and undecodable answers -------------------------------------------------

#[tokio::test]
async fn a_repeated_answer_gets_the_same_receipt_and_is_queued_once() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut phone = Phone::open(&issuer, 1, 10_000, 75).await;
    phone.certificate(&issuer, up_to(3_000), NOW).await;
    phone.withdraw_blind(&issuer, &[10, 5]).await;

    let by_record = make_offer(&merchant, 1_250, at(1), 76).await;
    let answer = phone
        .wallet
        .pay_bytes(
            &codec::encode(&by_record).unwrap(),
            PayWith::Record,
            at(1),
            &mut rng(77),
        )
        .unwrap();
    let record_answer = phone.send(answer);
    let coins = make_offer(&merchant, 15, at(1), 78).await;
    let answer = phone
        .wallet
        .pay_bytes(
            &codec::encode(&coins).unwrap(),
            PayWith::Coins,
            at(1),
            &mut rng(79),
        )
        .unwrap();
    let coin_answer = phone.send(answer);

    for answer in [&record_answer, &coin_answer] {
        let first = merchant
            .accept_bytes(answer, at(1), &mut rng(80))
            .await
            .unwrap();
        // Later, with another RNG (another signature would differ): the stored reply.
        let again = merchant
            .accept_bytes(answer, at(2), &mut rng(81))
            .await
            .unwrap();
        assert_eq!(first, again);
        let reply: MerchantReply = codec::decode(&first).unwrap();
        assert!(is_receipt(&reply));
        phone.wallet.on_merchant_reply(&reply, at(2)).unwrap();
    }
    assert_eq!(merchant.pending(10).await.unwrap().len(), 2);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_265));

    // After settlement, even after the request expired: the same receipt, nothing queued.
    let summary = merchant
        .sync(&client(&issuer, at(20)), at(20), &mut rng(82))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 2);
    let before = merchant
        .accept_bytes(&record_answer, at(1), &mut rng(83))
        .await
        .unwrap();
    let after = merchant
        .accept_bytes(&record_answer, at(30), &mut rng(84))
        .await
        .unwrap();
    assert_eq!(before, after);
    assert!(merchant.pending(10).await.unwrap().is_empty());
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert_eq!(merchant.settlements(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_same_answer_twice_at_once_is_queued_once() {
    let issuer = issuer();
    let merchant = shop_over(&issuer, 1, 100_000, Racing::default()).await;
    let coins = blind_coins(&issuer, 1, &[10]).await;
    let offer = make_offer(&merchant, 10, at(1), 85).await;
    let answer = by_coins(&offer, coins);
    merchant.store().armed.store(true, Ordering::SeqCst);
    let (mut r1, mut r2) = (rng(86), rng(87));
    let (a, b) = tokio::join!(
        merchant.accept(&answer, at(1), &mut r1),
        merchant.accept(&answer, at(1), &mut r2),
    );
    merchant.store().armed.store(false, Ordering::SeqCst);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(is_receipt(&a));
    assert_eq!(a, b);
    assert_eq!(merchant.pending(10).await.unwrap().len(), 1);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(10));
}

#[tokio::test]
async fn bytes_that_do_not_decode_are_an_error_not_a_rejection() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let offer = make_offer(&merchant, 10, at(1), 88).await;
    for bytes in [
        b"not an answer".to_vec(),
        codec::encode(&offer).unwrap(), // another message type
    ] {
        match merchant.accept_bytes(&bytes, at(1), &mut rng(89)).await {
            Err(MerchantError::Invalid(_)) => {}
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert!(merchant.pending(10).await.unwrap().is_empty());
}
