//! Redemption of a merchant's 100-item batch by the issuer core (`Issuer::redeem`), through
//! each record-store backend (`memory`, `file`, `redb`).
//!
//! - `redeem_coins_100/<backend>`: 100 coin payments of one fresh blind coin each (withdrawn
//!   from the issuer by a wallet, paid to fresh requests, endorsed by the merchant). Checks
//!   the batch, every endorsement, request and coin, then claims all 100 payments in one
//!   store call.
//! - `redeem_records_100/<backend>`: 100 fresh countersigned withdrawal records (sequence
//!   numbers 1 to 100 of a fresh balance certificate). Every record is checked, then the
//!   100 fresh records are committed in one store call (one durable write).
//! - `redeem_again_*_100/<backend>`: the same batch uploaded again after it was redeemed
//!   (a merchant retrying an unacknowledged upload): every item comes back
//!   `AlreadyAccepted`. This is the repeat path, measured separately on purpose.
//!
//! Every measured `redeem` of the fresh cases gets a batch nobody redeemed before: the
//! batches (withdrawals, certificates, signatures) are prepared before the clock starts.
//! Throughput is reported in items per second. Run with `cargo bench --bench redemption`;
//! `BENCH_QUICK=1` shortens measurement for smoke runs.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use scrip_stores::RecordStore;
use scrip_tokens::{RedemptionBatch, RedemptionItem, RedemptionOutcome};

use common::{RawWallet, Shop, TestIssuer, NOW};

const ITEMS: u64 = 100;

/// One backend with an issuer over it, a funded device and a registered merchant.
struct Setup {
    name: &'static str,
    issuer: TestIssuer<Arc<dyn RecordStore>>,
    device: RawWallet,
    shop: Shop,
}

impl Setup {
    async fn new(name: &'static str, store: Arc<dyn RecordStore>, rng: &mut StdRng) -> Setup {
        let issuer = common::issuer(store);
        let device = RawWallet::open(&issuer, 1, rng).await;
        device.deposit(&issuer, 1_000_000_000, rng).await;
        let shop = Shop::register(&issuer, 1, rng).await;
        Setup {
            name,
            issuer,
            device,
            shop,
        }
    }

    /// 100 payments of one fresh blind coin each.
    async fn coin_batch(&self, rng: &mut StdRng) -> RedemptionBatch {
        let coins = self
            .device
            .withdraw_blind(&self.issuer, &[1; ITEMS as usize], rng)
            .await;
        let items = coins
            .into_iter()
            .map(|coin| RedemptionItem::Coins(self.shop.endorse(vec![coin], rng)))
            .collect();
        self.shop.batch(items, rng)
    }

    /// 100 countersigned records paying 1 each under a fresh certificate.
    async fn record_batch(&self, rng: &mut StdRng) -> RedemptionBatch {
        let cert = self
            .device
            .request_certificate(&self.issuer, ITEMS, NOW, rng)
            .await;
        assert!(u64::from(cert.payload.max_payments) >= ITEMS);
        let first = cert.payload.first_sequence;
        let items = (0..ITEMS)
            .map(|i| {
                let request = self.shop.request(1, rng);
                let record = self
                    .device
                    .sign_record(&cert, &request, first + i, i + 1, NOW, rng);
                RedemptionItem::Record(self.shop.countersign(&record, rng))
            })
            .collect();
        self.shop.batch(items, rng)
    }

    async fn redeem(&self, batch: &RedemptionBatch) -> Vec<RedemptionOutcome> {
        self.issuer.redeem(batch, NOW).await.unwrap().outcomes
    }
}

fn all_accepted(outcomes: &[RedemptionOutcome]) -> bool {
    outcomes.len() == ITEMS as usize
        && outcomes
            .iter()
            .all(|o| matches!(o, RedemptionOutcome::Accepted { .. }))
}

fn all_repeated(outcomes: &[RedemptionOutcome]) -> bool {
    outcomes.len() == ITEMS as usize
        && outcomes
            .iter()
            .all(|o| matches!(o, RedemptionOutcome::AlreadyAccepted { .. }))
}

#[derive(Clone, Copy)]
enum Kind {
    Coins,
    Records,
}

impl Kind {
    async fn batch(self, setup: &Setup, rng: &mut StdRng) -> RedemptionBatch {
        match self {
            Kind::Coins => setup.coin_batch(rng).await,
            Kind::Records => setup.record_batch(rng).await,
        }
    }
}

fn redemption(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = common::rng(7);
    let backends = common::backends(&runtime);
    let setups: Vec<Setup> = runtime.block_on(async {
        let mut setups = Vec::new();
        for (name, store) in backends.stores.iter().cloned() {
            setups.push(Setup::new(name, store, &mut rng).await);
        }
        setups
    });

    // Fresh batches: each measured redeem gets a batch prepared for it, never redeemed.
    for (group_name, kind, measure) in [
        ("redeem_coins_100", Kind::Coins, Duration::from_secs(1)),
        ("redeem_records_100", Kind::Records, Duration::from_secs(2)),
    ] {
        let mut group = c.benchmark_group(group_name);
        common::prepared(&mut group, measure);
        group.throughput(Throughput::Elements(ITEMS));
        for setup in &setups {
            group.bench_function(BenchmarkId::from_parameter(setup.name), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut batches = Vec::new();
                        for _ in 0..iters {
                            batches.push(kind.batch(setup, &mut rng).await);
                        }
                        let mut reports = Vec::with_capacity(batches.len());
                        let start = Instant::now();
                        for batch in &batches {
                            reports.push(setup.redeem(batch).await);
                        }
                        let elapsed = start.elapsed();
                        assert!(reports.iter().all(|r| all_accepted(r)), "{reports:?}");
                        elapsed
                    })
                })
            });
        }
        group.finish();
    }

    // The same batch again: the already-accepted path.
    for (group_name, kind) in [
        ("redeem_again_coins_100", Kind::Coins),
        ("redeem_again_records_100", Kind::Records),
    ] {
        let mut group = c.benchmark_group(group_name);
        common::prepared(&mut group, Duration::from_secs(1));
        group.throughput(Throughput::Elements(ITEMS));
        for setup in &setups {
            let batch = runtime.block_on(async {
                let batch = kind.batch(setup, &mut rng).await;
                assert!(all_accepted(&setup.redeem(&batch).await));
                assert!(all_repeated(&setup.redeem(&batch).await));
                batch
            });
            group.bench_function(BenchmarkId::from_parameter(setup.name), |b| {
                b.to_async(&runtime)
                    .iter(|| async { black_box(setup.redeem(&batch).await) });
            });
        }
        group.finish();
    }
    drop(setups);
    drop(backends);
}

criterion_group!(benches, redemption);
criterion_main!(benches);
