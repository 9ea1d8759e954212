//! The redb store's CPU per claim, in process: `BATCHES` (argument, default 2 000)
//! `commit_many`s of 50 units of 20 coin claims, each unit one payment (its coins share
//! one digest) crediting a merchant, into a fresh `RedbStore`; prints the process's CPU
//! time (user + system, from `/proc/self/stat`, Linux) and the wall time.
//!
//! CPU time, not wall time: `benches/stores.rs`'s `redb_filled` times the same shape by
//! the clock, where each batch's fsync makes the spread wider than a change to the store's
//! own work. Alternate the builds being compared, several runs each:
//! `cargo bench --bench store_cpu -- 2000`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use scrip_stores::{Claimant, LedgerAccount, Posting, RecordStore, Unit};
use scrip_tokens::{Amount, ContentDigest, Currency, MerchantId, Timestamp};

const UNITS: u64 = 50;
const CLAIMS: u64 = 20;

/// User plus system CPU ticks of this process so far (`None` off Linux).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn payment(merchant: MerchantId, number: u64, first_coin: u64) -> Unit {
    let digest = ContentDigest::of(&number.to_le_bytes());
    let unit = (first_coin..first_coin + CLAIMS).fold(
        Unit::new(
            Claimant::Merchant(merchant),
            Timestamp::from_unix_millis(1_767_225_600_000),
        ),
        |unit, coin| unit.claim(scrip_stores::conformance::coin(u128::from(coin)), digest),
    );
    unit.post(Posting::transfer(
        LedgerAccount::System("coins-outstanding".into()),
        LedgerAccount::Merchant(merchant),
        Amount::new(CLAIMS, Currency::EUR),
        "coins redeemed",
    ))
}

fn main() {
    // `cargo bench` passes `--bench`; the first number among the arguments is the count.
    let batches: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = scrip_stores::RedbStore::open(dir.path().join("scrip.redb")).unwrap();
    let merchant = MerchantId(uuid::Uuid::from_u128(7));
    let started = cpu_ticks();
    let clock = std::time::Instant::now();
    runtime.block_on(async {
        for batch in 0..batches {
            let units = (0..UNITS)
                .map(|u| {
                    let number = batch * UNITS + u;
                    payment(merchant, number, number * CLAIMS)
                })
                .collect();
            let outcomes = store.commit_many(units).await.unwrap();
            assert!(outcomes
                .iter()
                .all(|o| *o == scrip_stores::CommitOutcome::Committed));
        }
    });
    let wall = clock.elapsed().as_secs_f64();
    let claims = batches * UNITS * CLAIMS;
    match started.zip(cpu_ticks()) {
        Some((before, after)) => println!(
            "store_cpu: {batches} batches, {claims} claims: {} CPU ticks (1/100 s), {:.3} µs a claim, {wall:.2} s",
            after - before,
            (after - before) as f64 * 10_000.0 / claims as f64,
        ),
        None => println!("store_cpu: {claims} claims in {wall:.2} s (CPU time needs Linux)"),
    }
    runtime.block_on(store.close()).unwrap();
}
