//! Claims per second through each record-store backend.
//!
//! - `unit_size/<backend>/<n>`: one task commits units of `n` fresh coin claims (plus the
//!   merchant credit posting), one after another: the cost of one durable write and how it
//!   amortizes over larger units.
//! - `concurrent_tasks/<backend>/<t>`: `t` tasks each commit a one-claim unit at the same
//!   time: how group commit shares durable writes between concurrent requests.
//! - `redemption_batch/<backend>/1024`: one `commit_many` of 64 units of 16 claims, the
//!   shape of a merchant's upload of 64 payments of 16 coins.
//!
//! - `redb_filled/<n>`: 33 `commit_many`s of 50 units of 20 claims (the `scrip load`
//!   shape 20 × 50) into a `RedbStore` that already holds `n` claims: what the claims
//!   index's upkeep (flushing its log, merging its runs) costs once the store is large.
//!   Each iteration adds 33 000 claims, so the store grows by the measurement's work.
//!   Prints the prefilled store's file size and the bytes the process wrote filling it
//!   (`wchar` of `/proc/self/io`, Linux): `redb_filled: <n> claims take ...`.
//!
//! Throughput is reported in claims (elements) per second. Run with
//! `cargo bench --bench stores`; `BENCH_QUICK=1` shortens measurement for CI smoke runs.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scrip_stores::{Claimant, LedgerAccount, Posting, RecordStore, Unit};
use scrip_tokens::{Amount, ContentDigest, Currency, MerchantId, Timestamp};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn unit(claims: u64) -> Unit {
    let merchant = MerchantId(uuid::Uuid::from_u128(7));
    let mut unit = Unit::new(
        Claimant::Merchant(merchant),
        Timestamp::from_unix_millis(1_767_225_600_000),
    );
    let first = NEXT_ID.fetch_add(claims, Ordering::Relaxed);
    for id in first..first + claims {
        unit = unit.claim(
            scrip_stores::conformance::coin(u128::from(id)),
            ContentDigest::of(&id.to_le_bytes()),
        );
    }
    unit.post(Posting::transfer(
        LedgerAccount::System("coins-outstanding".into()),
        LedgerAccount::Merchant(merchant),
        Amount::new(claims, Currency::EUR),
        "redeem",
    ))
}

fn settings() -> (Duration, usize) {
    if std::env::var_os("BENCH_QUICK").is_some() {
        (Duration::from_millis(500), 10)
    } else {
        (Duration::from_secs(3), 20)
    }
}

fn unit_size(c: &mut Criterion) {
    let (measure, samples) = settings();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let backends = common::backends(&runtime);
    let mut group = c.benchmark_group("unit_size");
    group
        .measurement_time(measure)
        .warm_up_time(measure / 3)
        .sample_size(samples);
    for (name, store) in &backends.stores {
        for claims in [1u64, 64, 1024] {
            group.throughput(Throughput::Elements(claims));
            group.bench_with_input(BenchmarkId::new(*name, claims), &claims, |b, &claims| {
                b.to_async(&runtime).iter(|| async {
                    let outcome = store.commit(unit(claims)).await.unwrap();
                    assert_eq!(outcome, scrip_stores::CommitOutcome::Committed);
                });
            });
        }
    }
    group.finish();
}

fn concurrent_tasks(c: &mut Criterion) {
    let (measure, samples) = settings();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let backends = common::backends(&runtime);
    let mut group = c.benchmark_group("concurrent_tasks");
    group
        .measurement_time(measure)
        .warm_up_time(measure / 3)
        .sample_size(samples);
    for (name, store) in &backends.stores {
        for tasks in [1u64, 16, 256] {
            group.throughput(Throughput::Elements(tasks));
            group.bench_with_input(BenchmarkId::new(*name, tasks), &tasks, |b, &tasks| {
                b.to_async(&runtime).iter(|| async {
                    let handles: Vec<_> = (0..tasks)
                        .map(|_| {
                            let store = Arc::clone(store);
                            tokio::spawn(async move { store.commit(unit(1)).await.unwrap() })
                        })
                        .collect();
                    for h in handles {
                        assert_eq!(h.await.unwrap(), scrip_stores::CommitOutcome::Committed);
                    }
                });
            });
        }
    }
    group.finish();
}

/// A merchant's redemption batch as the issuer hands it to the store: one `commit_many`
/// of 64 units (payments) of 16 claims (coins) each, 1 024 claims in all.
fn redemption_batch(c: &mut Criterion) {
    const UNITS: u64 = 64;
    const CLAIMS: u64 = 16;
    let (measure, samples) = settings();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let backends = common::backends(&runtime);
    let mut group = c.benchmark_group("redemption_batch");
    group
        .measurement_time(measure)
        .warm_up_time(measure / 3)
        .sample_size(samples)
        .throughput(Throughput::Elements(UNITS * CLAIMS));
    for (name, store) in &backends.stores {
        group.bench_function(BenchmarkId::new(*name, UNITS * CLAIMS), |b| {
            b.to_async(&runtime).iter(|| async {
                let units = (0..UNITS).map(|_| unit(CLAIMS)).collect();
                let outcomes = store.commit_many(units).await.unwrap();
                assert!(outcomes
                    .iter()
                    .all(|o| *o == scrip_stores::CommitOutcome::Committed));
            });
        });
    }
    group.finish();
}

/// Batches of 50 units of 20 claims into a redb store prefilled with `n` claims (see the
/// module doc). An iteration is 33 batches, a little more than the log holds
/// (`ClaimsIndexLimits::default().log_max`, 32 Ki claims), so that every iteration pays
/// about one flush and its share of merging, and samples compare.
fn redb_filled(c: &mut Criterion) {
    const UNITS: u64 = 50;
    const CLAIMS: u64 = 20;
    const BATCHES: u64 = 33;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("redb_filled");
    let (measure, _) = settings();
    group
        .sampling_mode(criterion::SamplingMode::Flat)
        .measurement_time(measure * 2)
        .warm_up_time(measure / 3)
        .sample_size(10)
        .throughput(Throughput::Elements(BATCHES * UNITS * CLAIMS));
    let batch = || (0..UNITS).map(|_| unit(CLAIMS)).collect::<Vec<_>>();
    for filled in [0u64, 1_000_000] {
        let dir = tempfile::tempdir().unwrap();
        let store = scrip_stores::RedbStore::open(dir.path().join("scrip.redb")).unwrap();
        let written_before = bytes_written();
        runtime.block_on(async {
            for _ in 0..filled / (UNITS * CLAIMS) {
                store.commit_many(batch()).await.unwrap();
            }
        });
        if filled > 0 {
            let bytes = std::fs::metadata(dir.path().join("scrip.redb"))
                .unwrap()
                .len();
            let written = bytes_written().zip(written_before).map(|(a, b)| a - b);
            println!(
                "redb_filled: {filled} claims take {bytes} bytes on disk ({:.0} a claim); \
                 writing them wrote {} bytes ({} a claim)",
                bytes as f64 / filled as f64,
                written.map_or("?".into(), |w| w.to_string()),
                written.map_or("?".into(), |w| format!("{:.0}", w as f64 / filled as f64)),
            );
        }
        group.bench_function(BenchmarkId::new("redb", filled), |b| {
            b.to_async(&runtime).iter(|| async {
                for _ in 0..BATCHES {
                    let outcomes = store.commit_many(batch()).await.unwrap();
                    assert!(outcomes
                        .iter()
                        .all(|o| *o == scrip_stores::CommitOutcome::Committed));
                }
            });
        });
        runtime.block_on(store.close()).unwrap();
    }
    group.finish();
}

/// Bytes this process has passed to `write` and `pwrite` so far (Linux; `None` elsewhere).
fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|line| line.strip_prefix("wchar:"))?
        .trim()
        .parse()
        .ok()
}

criterion_group!(
    benches,
    unit_size,
    concurrent_tasks,
    redemption_batch,
    redb_filled
);
criterion_main!(benches);
