//! Crash tests of the durable backends (requirement 6 of the stores issue).
//!
//! - The file log cut at every byte offset of its last frames, with garbage appended, and
//!   with a byte flipped inside a frame that valid frames follow.
//! - File compaction across reopen, including the states an interrupted compaction leaves.
//! - `kill -9` of a child process committing concurrently, for the file and redb backends:
//!   every acknowledged unit survives, no unit is ever half-applied.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, RngExt};
use scrip_stores::conformance::{
    at, coin, customer, digest, merchant, merchant_account, outstanding, redemption,
};
use scrip_stores::{
    ClaimId, ClaimsIndexLimits, Collection, CommitOutcome, FileStore, FileStoreOptions, Posting,
    RecordStore, RedbStore, StoreError, Unit, Write,
};
use scrip_tokens::{Amount, Currency};

const EUR: Currency = Currency::EUR;
const DOCS: Collection = Collection::new("crash-docs");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sum of all balances, per currency: every entry must be zero.
async fn totals(store: &impl RecordStore) -> BTreeMap<Currency, i128> {
    let mut sums = BTreeMap::new();
    for (_, currency, balance) in store.balances(None, usize::MAX).await.unwrap() {
        *sums.entry(currency).or_insert(0) += balance;
    }
    sums
}

async fn assert_totals_zero(store: &impl RecordStore, context: &str) {
    for (currency, sum) in totals(store).await {
        assert_eq!(sum, 0, "{context}: balances of {currency} sum to {sum}");
    }
}

/// Opens a store, waiting out `Locked`. The kill tests spawn children from this process, and
/// a child holds a copy of every open descriptor of the process (and so every file lock of
/// a store another test has just dropped) from its fork until its exec.
fn retry_locked<S>(open: impl Fn() -> Result<S, StoreError>) -> Result<S, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

fn open_file(dir: &Path, options: FileStoreOptions) -> Result<FileStore, StoreError> {
    retry_locked(|| FileStore::open_with(dir, options.clone()))
}

fn open_redb(path: &Path) -> Result<RedbStore, StoreError> {
    retry_locked(|| RedbStore::open_with_limits(path, KILL_REDB_LIMITS))
}

// ---- the log tests: units committed one by one, one frame each ----------------------------

/// Units committed by the log and compaction tests.
const LOG_UNITS: usize = 30;
/// Coins claimed (and euro cents credited) by each log unit.
const COINS_PER_LOG_UNIT: u128 = 3;
/// Unit number of the unit committed after recovery.
const AFTER_RECOVERY: u128 = 9_999;

fn log_merchant(i: u128) -> u128 {
    1_000 + i
}

fn log_coin_ids(i: u128) -> impl Iterator<Item = u128> {
    (0..COINS_PER_LOG_UNIT).map(move |j| 1_000_000 + i * 10 + j)
}

fn log_doc_key(i: u128) -> Vec<u8> {
    format!("unit-{i}").into_bytes()
}

fn log_doc_value(i: u128) -> Vec<u8> {
    format!("the document written by unit {i}").into_bytes()
}

/// Unit `i`: its own merchant redeems three coins (a posting pair) and writes a document.
fn log_unit(i: u128) -> Unit {
    redemption(log_merchant(i), log_coin_ids(i), i as u64).write(Write::put(
        DOCS,
        log_doc_key(i),
        log_doc_value(i),
    ))
}

/// Whether log unit `i` is fully present (true) or fully absent (false); panics if it is
/// half-applied.
async fn log_unit_present(store: &impl RecordStore, i: u128, context: &str) -> bool {
    let ids: Vec<ClaimId> = log_coin_ids(i).map(coin).collect();
    let claims = store.claims(&ids).await.unwrap();
    let held = claims.iter().flatten().count();
    for claim in claims.iter().flatten() {
        assert_eq!(
            claim.claimant,
            merchant(log_merchant(i)),
            "{context}: unit {i}"
        );
        assert_eq!(claim.claimed_at, at(i as u64), "{context}: unit {i}");
    }
    let doc = store.get(DOCS, &log_doc_key(i)).await.unwrap();
    let account = merchant_account(log_merchant(i));
    let balance = store.balance(&account, EUR).await.unwrap();
    let entries = store
        .ledger_entries(&account, EUR, None, 10)
        .await
        .unwrap()
        .len();
    let present = held == ids.len()
        && doc.as_deref() == Some(log_doc_value(i).as_slice())
        && balance == COINS_PER_LOG_UNIT as i128
        && entries == 1;
    let absent = held == 0 && doc.is_none() && balance == 0 && entries == 0;
    assert!(
        present || absent,
        "{context}: unit {i} is half-applied: {held} of {} claims, document {doc:?}, \
         balance {balance}, {entries} ledger entries",
        ids.len()
    );
    present
}

/// Units `0..complete` are present, units `complete..units` absent, money adds up (the
/// unit committed after recovery, if any, redeemed one more coin).
async fn check_log_units(store: &impl RecordStore, complete: usize, units: usize, context: &str) {
    for i in 0..units {
        let present = log_unit_present(store, i as u128, context).await;
        assert_eq!(
            present,
            i < complete,
            "{context}: unit {i} should be {}",
            if i < complete { "present" } else { "absent" }
        );
    }
    let after_recovery = store
        .balance(&merchant_account(AFTER_RECOVERY), EUR)
        .await
        .unwrap();
    assert!(after_recovery == 0 || after_recovery == 1, "{context}");
    assert_eq!(
        store.balance(&outstanding(), EUR).await.unwrap(),
        -(complete as i128) * COINS_PER_LOG_UNIT as i128 - after_recovery,
        "{context}"
    );
    assert_totals_zero(store, context).await;
}

fn log_len(dir: &Path) -> u64 {
    fs::metadata(dir.join(FileStore::LOG_FILE)).unwrap().len()
}

/// A log of `LOG_UNITS` units committed one by one: its bytes, the end of the frames written
/// on creation, and the end of each unit's frame.
struct WrittenLog {
    bytes: Vec<u8>,
    base: u64,
    ends: Vec<u64>,
}

impl WrittenLog {
    fn frame_start(&self, unit: usize) -> u64 {
        match unit {
            0 => self.base,
            _ => self.ends[unit - 1],
        }
    }
}

fn write_log() -> WrittenLog {
    let dir = tempfile::tempdir().unwrap();
    let store = open_file(dir.path(), FileStoreOptions::default()).unwrap();
    let base = log_len(dir.path());
    let mut ends = Vec::with_capacity(LOG_UNITS);
    runtime().block_on(async {
        for i in 0..LOG_UNITS {
            let outcome = store.commit(log_unit(i as u128)).await.unwrap();
            assert_eq!(outcome, CommitOutcome::Committed);
            // Acknowledged: the frame is on disk, whole.
            ends.push(log_len(dir.path()));
        }
    });
    drop(store);
    let bytes = fs::read(dir.path().join(FileStore::LOG_FILE)).unwrap();
    assert_eq!(bytes.len() as u64, ends[LOG_UNITS - 1]);
    let mut previous = base;
    for end in &ends {
        assert!(*end > previous, "each unit appends one frame");
        previous = *end;
    }
    WrittenLog { bytes, base, ends }
}

/// Replaces the store files in `dir` by a log holding `bytes`.
fn install_log(dir: &Path, bytes: &[u8]) {
    for name in [FileStore::SNAPSHOT_FILE, FileStore::LOG_FILE] {
        let _ = fs::remove_file(dir.join(name));
    }
    fs::write(dir.join(FileStore::LOG_FILE), bytes).unwrap();
}

/// After recovery: a new unit commits, and it and everything recovered survive a reopen.
async fn commit_after_recovery(dir: &Path, store: FileStore, complete: usize, context: &str) {
    let unit = redemption(AFTER_RECOVERY, [AFTER_RECOVERY], 77);
    assert_eq!(
        store.commit(unit.clone()).await.unwrap(),
        CommitOutcome::Committed,
        "{context}"
    );
    drop(store);
    let store = open_file(dir, FileStoreOptions::default()).unwrap();
    assert_eq!(store.recovery_report().truncated_bytes, 0, "{context}");
    check_log_units(&store, complete, LOG_UNITS, context).await;
    assert_eq!(
        store.commit(unit).await.unwrap(),
        CommitOutcome::Repeated {
            first_claimed_at: at(77)
        },
        "{context}: the unit committed after recovery is lost"
    );
    assert_eq!(
        store
            .balance(&merchant_account(AFTER_RECOVERY), EUR)
            .await
            .unwrap(),
        1,
        "{context}"
    );
}

#[test]
fn file_log_cut_at_every_byte_offset_of_its_last_records() {
    let log = write_log();
    let rt = runtime();
    let scratch = tempfile::tempdir().unwrap();
    let first = log.frame_start(LOG_UNITS - 5);
    let last = log.ends[LOG_UNITS - 1];
    for offset in first..=last {
        let context = format!("log cut at byte {offset} of {last}");
        install_log(scratch.path(), &log.bytes[..offset as usize]);
        let complete = log.ends.iter().filter(|end| **end <= offset).count();
        let last_end = log.frame_start(complete);
        let store = open_file(scratch.path(), FileStoreOptions::default())
            .unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
        let report = store.recovery_report().clone();
        assert_eq!(report.truncated_bytes, offset - last_end, "{context}");
        // The format-version frame, then one frame per complete unit.
        assert_eq!(report.log_frames, complete as u64 + 1, "{context}");
        assert_eq!(report.generation, 0, "{context}");
        assert_eq!(
            log_len(scratch.path()),
            last_end,
            "{context}: torn tail not cut"
        );
        rt.block_on(async {
            check_log_units(&store, complete, LOG_UNITS, &context).await;
            commit_after_recovery(scratch.path(), store, complete, &context).await;
        });
    }
}

#[test]
fn file_log_garbage_after_the_last_frame_is_cut_off() {
    let log = write_log();
    let rt = runtime();
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut tails: Vec<Vec<u8>> = Vec::new();
    for _ in 0..40 {
        let mut tail = vec![0u8; rng.random_range(1..3000)];
        rng.fill_bytes(&mut tail);
        tails.push(tail);
    }
    // Zeros, as a file system may leave after extending a file it never wrote.
    for n in [1, 4, 7, 8, 9, 100, 4096] {
        tails.push(vec![0u8; n]);
    }
    // A complete frame with a plausible length and a bad checksum.
    let mut bad_frame = 200u32.to_le_bytes().to_vec();
    bad_frame.extend_from_slice(&[0xAB; 204]);
    tails.push(bad_frame);
    // The start of a copy of the last frame (a real torn write looks like this).
    let last_frame = &log.bytes[log.frame_start(LOG_UNITS - 1) as usize..];
    tails.push(last_frame[..last_frame.len() - 1].to_vec());
    tails.push(last_frame[..5].to_vec());

    for (n, tail) in tails.iter().enumerate() {
        let context = format!("garbage tail {n} of {} bytes", tail.len());
        let mut bytes = log.bytes.clone();
        bytes.extend_from_slice(tail);
        install_log(scratch.path(), &bytes);
        let store = open_file(scratch.path(), FileStoreOptions::default())
            .unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
        assert_eq!(
            store.recovery_report().truncated_bytes,
            tail.len() as u64,
            "{context}"
        );
        assert_eq!(log_len(scratch.path()), log.bytes.len() as u64, "{context}");
        rt.block_on(async {
            check_log_units(&store, LOG_UNITS, LOG_UNITS, &context).await;
            commit_after_recovery(scratch.path(), store, LOG_UNITS, &context).await;
        });
    }
}

/// Flips `position` of the log and expects `open` to fail with `Corrupted`, leaving the
/// file as it was.
fn expect_corrupted(scratch: &Path, log: &WrittenLog, position: usize, what: &str) {
    let mut bytes = log.bytes.clone();
    bytes[position] ^= 0x5A;
    install_log(scratch, &bytes);
    match open_file(scratch, FileStoreOptions::default()) {
        Err(StoreError::Corrupted(_)) => {}
        Err(other) => panic!("{what}: byte {position} flipped: expected Corrupted, got {other}"),
        Ok(store) => {
            let report = store.recovery_report().clone();
            drop(store);
            panic!(
                "{what}: byte {position} flipped: the store opened ({report:?}), silently \
                 dropping acknowledged units"
            );
        }
    }
    let after = fs::read(scratch.join(FileStore::LOG_FILE)).unwrap();
    assert!(
        after == bytes,
        "{what}: byte {position}: a failed open changed the log"
    );
}

/// The unit whose frame is damaged: valid frames of later units follow it.
const DAMAGED_UNIT: usize = LOG_UNITS / 2;

#[test]
fn file_log_damage_inside_a_middle_frame_fails_to_open() {
    let log = write_log();
    let scratch = tempfile::tempdir().unwrap();
    // Every byte of the header.
    for position in 0..24 {
        expect_corrupted(scratch.path(), &log, position, "log header");
    }
    // Every byte of a middle frame's checksum and body, and of the frame before the last.
    for unit in [DAMAGED_UNIT, LOG_UNITS - 2] {
        let start = log.frame_start(unit) as usize;
        let end = log.ends[unit] as usize;
        for position in start + 4..end {
            expect_corrupted(scratch.path(), &log, position, "frame checksum or body");
        }
    }
    // The undamaged log still opens, with everything.
    install_log(scratch.path(), &log.bytes);
    let store = open_file(scratch.path(), FileStoreOptions::default()).unwrap();
    assert_eq!(store.recovery_report().truncated_bytes, 0);
    runtime().block_on(check_log_units(
        &store,
        LOG_UNITS,
        LOG_UNITS,
        "undamaged log",
    ));
}

// A damaged length must not be mistaken for a frame boundary (the frame header carries its
// own checksum, and recovery looks for valid frames anywhere after the damage).
#[test]
fn file_log_damaged_length_of_a_middle_frame_fails_to_open() {
    let log = write_log();
    let scratch = tempfile::tempdir().unwrap();
    let start = log.frame_start(DAMAGED_UNIT) as usize;
    for position in start..start + 4 {
        expect_corrupted(scratch.path(), &log, position, "frame length");
    }
}

// ---- compaction -------------------------------------------------------------------------

const COMPACTING: FileStoreOptions = FileStoreOptions {
    compact_after_bytes: 2048,
};
const COMPACTION_UNITS: usize = 160;

fn log_generation(dir: &Path) -> u64 {
    let bytes = fs::read(dir.join(FileStore::LOG_FILE)).unwrap();
    u64::from_le_bytes(bytes[12..20].try_into().unwrap())
}

/// The files as they were while one compaction ran.
struct Compaction {
    /// The unit whose batch triggered it (applied and durable before it started).
    unit: usize,
    /// Generation of the snapshot it wrote.
    generation: u64,
    /// The snapshot before it (none for the first) and the one it wrote.
    old_snapshot: Option<Vec<u8>>,
    new_snapshot: Vec<u8>,
    /// The log it replaced: every frame of the old generation, the triggering one included.
    old_log: Vec<u8>,
}

/// Opens `dir` after an interrupted compaction and checks that units `0..=unit` are there,
/// that later ones are not, and that the store keeps working (another compaction, reopen).
async fn check_interrupted(dir: &Path, c: &Compaction, expect_generation: u64, stale: bool) {
    let context = format!(
        "compaction {} after unit {} interrupted ({})",
        c.generation,
        c.unit,
        if stale {
            "stale log"
        } else {
            "snapshot.tmp left"
        }
    );
    let store =
        open_file(dir, COMPACTING).unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
    // A half-written snapshot holds disk space until the next compaction otherwise.
    assert!(
        !dir.join("scrip.snapshot.tmp").exists(),
        "{context}: kept at open"
    );
    let report = store.recovery_report().clone();
    assert_eq!(report.generation, expect_generation, "{context}");
    assert_eq!(report.discarded_stale_log, stale, "{context}");
    assert_eq!(report.truncated_bytes, 0, "{context}");
    check_log_units(&store, c.unit + 1, COMPACTION_UNITS, &context).await;
    // Commit until the store compacts again: the temporary files are overwritten.
    let mut i = c.unit + 1;
    while log_generation(dir) == expect_generation {
        assert!(i < 2_000, "{context}: never compacted again");
        let outcome = store.commit(log_unit(i as u128)).await.unwrap();
        assert_eq!(outcome, CommitOutcome::Committed, "{context}");
        i += 1;
    }
    drop(store);
    assert!(!dir.join("scrip.snapshot.tmp").exists(), "{context}");
    assert!(!dir.join("scrip.log.tmp").exists(), "{context}");
    let store = open_file(dir, COMPACTING).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.generation, expect_generation + 1, "{context}");
    assert!(!report.discarded_stale_log, "{context}");
    check_log_units(&store, i, i, &context).await;
}

#[test]
fn file_compaction_survives_reopen() {
    let compacting = tempfile::tempdir().unwrap();
    // A twin that never compacts, fed the same units: its frames are what the compacting
    // store appended before each compaction.
    let twin = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut compactions: Vec<Compaction> = Vec::new();
    {
        let store = open_file(compacting.path(), COMPACTING).unwrap();
        let twin_store = open_file(twin.path(), FileStoreOptions::default()).unwrap();
        rt.block_on(async {
            let mut snapshot: Option<Vec<u8>> = None;
            for i in 0..COMPACTION_UNITS {
                let log_before = fs::read(compacting.path().join(FileStore::LOG_FILE)).unwrap();
                let generation = log_generation(compacting.path());
                let twin_before = log_len(twin.path()) as usize;
                for s in [&store, &twin_store] {
                    let outcome = s.commit(log_unit(i as u128)).await.unwrap();
                    assert_eq!(outcome, CommitOutcome::Committed);
                }
                let twin_log = fs::read(twin.path().join(FileStore::LOG_FILE)).unwrap();
                let frame = &twin_log[twin_before..];
                if log_generation(compacting.path()) == generation {
                    let log_after = fs::read(compacting.path().join(FileStore::LOG_FILE)).unwrap();
                    assert!(
                        log_after[log_before.len()..] == *frame,
                        "unit {i}: the twin wrote another frame"
                    );
                    continue;
                }
                assert_eq!(log_generation(compacting.path()), generation + 1);
                let new_snapshot =
                    fs::read(compacting.path().join(FileStore::SNAPSHOT_FILE)).unwrap();
                let mut old_log = log_before;
                old_log.extend_from_slice(frame);
                compactions.push(Compaction {
                    unit: i,
                    generation: generation + 1,
                    old_snapshot: snapshot.replace(new_snapshot.clone()),
                    new_snapshot,
                    old_log,
                });
            }
        });
    }
    assert!(
        compactions.len() >= 3,
        "only {} compactions",
        compactions.len()
    );
    let generation = compactions.last().unwrap().generation;

    rt.block_on(async {
        // A clean reopen: the last snapshot plus the log after it.
        let store = open_file(compacting.path(), COMPACTING).unwrap();
        let report = store.recovery_report().clone();
        assert_eq!(report.generation, generation);
        assert!(report.generation > 0);
        assert!(report.snapshot_entries > 0);
        assert!(!report.discarded_stale_log);
        assert_eq!(report.truncated_bytes, 0);
        let last = compactions.last().unwrap().unit;
        assert_eq!(report.log_frames, (COMPACTION_UNITS - 1 - last) as u64);
        check_log_units(
            &store,
            COMPACTION_UNITS,
            COMPACTION_UNITS,
            "after compactions",
        )
        .await;
        drop(store);

        // A log deleted, or cut shorter than its header, beside a snapshot: no crash does
        // that (the log is only replaced by a rename), and the batches acknowledged since
        // the snapshot would be lost, so the store refuses to open.
        let snapshot_bytes = fs::read(compacting.path().join(FileStore::SNAPSHOT_FILE)).unwrap();
        let log_bytes = fs::read(compacting.path().join(FileStore::LOG_FILE)).unwrap();
        for log in [None, Some(&log_bytes[..0]), Some(&log_bytes[..10])] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(FileStore::SNAPSHOT_FILE), &snapshot_bytes).unwrap();
            if let Some(log) = log {
                fs::write(dir.path().join(FileStore::LOG_FILE), log).unwrap();
            }
            let refused = open_file(dir.path(), COMPACTING).err();
            assert!(
                matches!(refused, Some(StoreError::Corrupted(_))),
                "log {:?} bytes: {refused:?}",
                log.map(<[u8]>::len)
            );
        }
        // Without a snapshot too: a log is created whole, so a short one is damage.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FileStore::LOG_FILE), &log_bytes[..10]).unwrap();
        assert!(matches!(
            open_file(dir.path(), COMPACTING).err(),
            Some(StoreError::Corrupted(_))
        ));

        for c in &compactions {
            // Interrupted after the new snapshot was renamed into place, before the new log
            // was: the old generation's log is stale (and a half-written log.tmp is left).
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(FileStore::SNAPSHOT_FILE), &c.new_snapshot).unwrap();
            fs::write(dir.path().join(FileStore::LOG_FILE), &c.old_log).unwrap();
            fs::write(dir.path().join("scrip.log.tmp"), b"SCRIPLOG").unwrap();
            check_interrupted(dir.path(), c, c.generation, true).await;

            // Interrupted while writing the snapshot: the old snapshot and log are current,
            // a partial snapshot.tmp is left behind.
            let dir = tempfile::tempdir().unwrap();
            if let Some(old) = &c.old_snapshot {
                fs::write(dir.path().join(FileStore::SNAPSHOT_FILE), old).unwrap();
            }
            fs::write(dir.path().join(FileStore::LOG_FILE), &c.old_log).unwrap();
            let partial = &c.new_snapshot[..c.new_snapshot.len() / 2];
            fs::write(dir.path().join("scrip.snapshot.tmp"), partial).unwrap();
            check_interrupted(dir.path(), c, c.generation - 1, false).await;
        }
    });
}

// ---- kill -9 ----------------------------------------------------------------------------

/// `<backend>:<run>:<dir>` tells the test binary it is a crash child.
const CHILD_ENV: &str = "SCRIP_CRASH_CHILD";
const KILL_CYCLES: u64 = 20;
const CHILD_TASKS: u64 = 8;
const KILL_AMOUNT: u64 = 7;
const KILL_DOCS: Collection = Collection::new("crash-kill-docs");
const KILL_COINS: u128 = 3;
/// A child left running (its parent died) exits by itself after this long.
const CHILD_DEADLINE: Duration = Duration::from_secs(30);
/// The file backend compacts often in the kill tests, so kills land in compactions too.
const KILL_FILE_OPTIONS: FileStoreOptions = FileStoreOptions {
    compact_after_bytes: 64 << 10,
};
/// So does redb's claims index: its log becomes a run every 60 claims and runs merge
/// 40 claims a step, so kills land in flushes and in the middle of compactions.
const KILL_REDB_LIMITS: ClaimsIndexLimits = ClaimsIndexLimits {
    log_max: 60,
    fan_in: 3,
    chunk: 40,
};

/// The unit task `task` of child run `run` commits as its `counter`th.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct UnitKey {
    run: u64,
    task: u64,
    counter: u64,
}

impl fmt::Display for UnitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.run, self.task, self.counter)
    }
}

impl UnitKey {
    fn parse(s: &str) -> Option<UnitKey> {
        let mut parts = s.split('.').map(str::parse::<u64>);
        let key = UnitKey {
            run: parts.next()?.ok()?,
            task: parts.next()?.ok()?,
            counter: parts.next()?.ok()?,
        };
        parts.next().is_none().then_some(key)
    }

    fn coins(&self) -> impl Iterator<Item = ClaimId> {
        let base = (u128::from(self.run) << 64)
            | (u128::from(self.task) << 48)
            | (u128::from(self.counter) << 8);
        (0..KILL_COINS).map(move |j| coin(base | j))
    }

    fn merchant(&self) -> u128 {
        100 + u128::from(self.task)
    }

    fn doc_value(&self) -> Vec<u8> {
        format!("payload of unit {self}").into_bytes()
    }

    /// Claims three coins, moves `KILL_AMOUNT` from customer 1 to the task's merchant (the
    /// unit key is the ledger memo) and writes a document keyed by the unit key.
    fn unit(&self) -> Unit {
        let memo = self.to_string();
        let mut unit = Unit::new(merchant(self.merchant()), at(self.counter));
        for (j, id) in self.coins().enumerate() {
            unit = unit.claim(id, digest(j as u64));
        }
        unit.post(Posting::transfer(
            customer(1),
            merchant_account(self.merchant()),
            Amount::new(KILL_AMOUNT, EUR),
            &memo,
        ))
        .write(Write::put(KILL_DOCS, memo.into_bytes(), self.doc_value()))
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        // The parent is gone.
        std::process::exit(4);
    }
}

async fn child_loop<S: RecordStore + 'static>(store: S, run: u64) {
    let store = Arc::new(store);
    let started = Instant::now();
    say("READY");
    let tasks: Vec<_> = (0..CHILD_TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for counter in 0u64.. {
                    if started.elapsed() > CHILD_DEADLINE {
                        say("DEADLINE");
                        std::process::exit(5);
                    }
                    let key = UnitKey { run, task, counter };
                    say(&format!("TRY {key}"));
                    match store.commit(key.unit()).await {
                        Ok(CommitOutcome::Committed) => say(&format!("ACK {key}")),
                        other => {
                            say(&format!("ERR {key} {other:?}"));
                            std::process::exit(3);
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// The process the kill tests start and kill: commits from `CHILD_TASKS` concurrent tasks,
/// printing `TRY <key>` before each commit and `ACK <key>` after it is acknowledged.
#[test]
#[ignore = "started (and killed) by the kill_nine tests"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let (backend, run, dir) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().parse::<u64>().unwrap(),
        PathBuf::from(parts.next().unwrap()),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match backend.as_str() {
            "file" => {
                let store = FileStore::open_with(&dir, KILL_FILE_OPTIONS).unwrap();
                child_loop(store, run).await;
            }
            "redb" => {
                let store = RedbStore::open_with_limits(dir.join("scrip.redb"), KILL_REDB_LIMITS);
                child_loop(store.unwrap(), run).await;
            }
            other => panic!("unknown backend {other}"),
        }
    });
}

/// What the parent knows of a child run, from its output.
#[derive(Default)]
struct ChildReport {
    tried: BTreeSet<UnitKey>,
    acked: BTreeSet<UnitKey>,
}

/// Starts a child, kills it after it has committed for a random 30..300 ms, and returns
/// what it said.
fn run_and_kill(backend: &str, dir: &Path, run: u64, rng: &mut impl Rng) -> ChildReport {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{backend}:{run}:{}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                // A line cut by the kill has no newline: ignore it.
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    let _ = lines_tx.send(line.trim_end().to_owned());
                }
                _ => break,
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line == "READY" => break true,
            Ok(line) => said.push(line),
            Err(_) => break false,
        }
    };
    if ready {
        let pause: u64 = rng.random_range(30..300);
        std::thread::sleep(Duration::from_millis(pause));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    said.extend(lines.try_iter());
    let errors = errors.join().unwrap();
    assert!(
        ready,
        "{backend} run {run}: the child never got ready: {errors}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            status.signal(),
            Some(9),
            "{backend} run {run}: the child ended by itself ({status}): {errors}"
        );
    }
    #[cfg(not(unix))]
    assert!(
        !status.success(),
        "{backend} run {run}: the child ended by itself"
    );

    let mut report = ChildReport::default();
    for line in said {
        let (word, key) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match (word, UnitKey::parse(key)) {
            ("TRY", Some(key)) => {
                assert!(report.tried.insert(key), "{key} tried twice");
            }
            ("ACK", Some(key)) => {
                assert!(
                    report.tried.contains(&key),
                    "{key} acknowledged, never tried"
                );
                report.acked.insert(key);
            }
            ("TRY" | "ACK" | "ERR" | "DEADLINE", _) => {
                panic!("{backend} run {run}: child said {line:?}: {errors}")
            }
            // libtest's own output.
            _ => {}
        }
    }
    report
}

/// Checks the store after a kill. `known` holds what earlier checks found (true: applied);
/// it must not change, and this run's units join it.
async fn check_after_kill(
    store: &impl RecordStore,
    known: &mut BTreeMap<UnitKey, bool>,
    report: &ChildReport,
    run: u64,
    context: &str,
) {
    // Never tried: the unit after each task's last attempt.
    let mut never_tried = Vec::new();
    for task in 0..CHILD_TASKS {
        let counter = report
            .tried
            .iter()
            .filter(|k| k.task == task)
            .map(|k| k.counter + 1)
            .max()
            .unwrap_or(0);
        never_tried.push(UnitKey { run, task, counter });
    }
    let keys: Vec<UnitKey> = known
        .keys()
        .chain(&report.tried)
        .chain(&never_tried)
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let ids: Vec<ClaimId> = keys.iter().flat_map(UnitKey::coins).collect();
    let claims = store.claims(&ids).await.unwrap();
    let docs: BTreeMap<Vec<u8>, Vec<u8>> = store
        .scan(KILL_DOCS, None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let memos = |entries: Vec<scrip_stores::LedgerEntry>| -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for e in entries {
            *counts.entry(e.memo).or_insert(0) += 1;
        }
        counts
    };
    let customer_memos = memos(
        store
            .ledger_entries(&customer(1), EUR, None, usize::MAX)
            .await
            .unwrap(),
    );
    let mut merchant_memos = BTreeMap::new();
    for task in 0..CHILD_TASKS {
        let account = merchant_account(100 + u128::from(task));
        let entries = store
            .ledger_entries(&account, EUR, None, usize::MAX)
            .await
            .unwrap();
        merchant_memos.insert(task, memos(entries));
    }

    let mut applied_per_task = BTreeMap::<u64, i128>::new();
    for (n, key) in keys.iter().enumerate() {
        let memo = key.to_string();
        let held = claims[n * KILL_COINS as usize..(n + 1) * KILL_COINS as usize]
            .iter()
            .flatten()
            .inspect(|claim| assert_eq!(claim.claimant, merchant(key.merchant()), "{context}"))
            .count();
        let doc = docs.get(memo.as_bytes());
        let in_customer = customer_memos.get(&memo).copied().unwrap_or(0);
        let in_merchant = merchant_memos[&key.task].get(&memo).copied().unwrap_or(0);
        let present = held == KILL_COINS as usize
            && doc == Some(&key.doc_value())
            && in_customer == 1
            && in_merchant == 1;
        let absent = held == 0 && doc.is_none() && in_customer == 0 && in_merchant == 0;
        assert!(
            present || absent,
            "{context}: unit {key} is half-applied: {held} claims, document {doc:?}, \
             {in_customer} customer and {in_merchant} merchant ledger entries"
        );
        if report.acked.contains(key) {
            assert!(present, "{context}: acknowledged unit {key} is lost");
        }
        if never_tried.contains(key) {
            assert!(
                absent,
                "{context}: unit {key} was never tried but is applied"
            );
        }
        if let Some(before) = known.get(key) {
            assert_eq!(
                *before, present,
                "{context}: unit {key} changed since it was checked"
            );
        }
        if report.tried.contains(key) {
            known.insert(*key, present);
        }
        if present {
            *applied_per_task.entry(key.task).or_insert(0) += 1;
        }
    }

    let applied: i128 = applied_per_task.values().sum();
    let amount = i128::from(KILL_AMOUNT);
    assert_eq!(
        docs.len() as i128,
        applied,
        "{context}: documents of unknown units"
    );
    assert_eq!(
        store.balance(&customer(1), EUR).await.unwrap(),
        -applied * amount,
        "{context}"
    );
    for task in 0..CHILD_TASKS {
        let account = merchant_account(100 + u128::from(task));
        let count = applied_per_task.get(&task).copied().unwrap_or(0);
        assert_eq!(
            store.balance(&account, EUR).await.unwrap(),
            count * amount,
            "{context}: merchant of task {task}"
        );
        let entries: usize = merchant_memos[&task].values().sum();
        assert_eq!(entries as i128, count, "{context}: ledger of task {task}");
    }
    assert_totals_zero(store, context).await;
}

fn kill_nine(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut rng = rand::rng();
    let mut known = BTreeMap::new();
    let (mut tried, mut acked, mut unacked_applied, mut torn, mut generation) = (0, 0, 0, 0, 0);
    let started = Instant::now();
    for run in 0..KILL_CYCLES {
        let report = run_and_kill(backend, dir.path(), run, &mut rng);
        let context = format!("{backend} after kill {run}");
        rt.block_on(async {
            match backend {
                "file" => {
                    let store = open_file(dir.path(), KILL_FILE_OPTIONS)
                        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
                    if store.recovery_report().truncated_bytes > 0 {
                        torn += 1;
                    }
                    generation = store.recovery_report().generation;
                    check_after_kill(&store, &mut known, &report, run, &context).await;
                }
                "redb" => {
                    let store = open_redb(&dir.path().join("scrip.redb"))
                        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
                    check_after_kill(&store, &mut known, &report, run, &context).await;
                }
                other => panic!("unknown backend {other}"),
            }
        });
        tried += report.tried.len();
        acked += report.acked.len();
        unacked_applied += report
            .tried
            .iter()
            .filter(|k| !report.acked.contains(k) && known[k])
            .count();
    }
    let applied = known.values().filter(|p| **p).count();
    let compactions = match backend {
        "file" => format!(", log generation {generation}"),
        _ => String::new(),
    };
    eprintln!(
        "kill_nine {backend}: {KILL_CYCLES} kills in {:.1?}: {tried} units tried, {acked} \
         acknowledged, {applied} applied ({unacked_applied} applied but not acknowledged), \
         {torn} recoveries cut a torn tail{compactions}",
        started.elapsed()
    );
    assert!(acked > 0, "{backend}: no unit was ever acknowledged");
}

#[test]
fn kill_nine_file_store() {
    kill_nine("file");
}

#[test]
fn kill_nine_redb_store() {
    kill_nine("redb");
}
