//! The conformance suite: one set of tests of the [`RecordStore`] contracts, run against
//! every backend. A new backend (PostgreSQL, say) implements [`Harness`] and expands
//! [`store_conformance!`](crate::store_conformance) in a test module:
//!
//! ```ignore
//! mod postgres {
//!     scrip_stores::store_conformance!(my_crate::PostgresHarness::new());
//! }
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[cfg(any(feature = "file", feature = "redb"))]
use std::path::PathBuf;
use std::sync::Arc;

use scrip_tokens::{AccountId, CoinSpendId, ContentDigest, Currency, MerchantId, Timestamp};

#[cfg(feature = "redb")]
use crate::RedbStore;
use crate::{
    ClaimId, Claimant, Collection, CommitOutcome, Floor, LedgerAccount, MemoryStore, Posting,
    RecordStore, StoreError, Unit, Write,
};
#[cfg(feature = "file")]
use crate::{FileStore, FileStoreOptions};

/// Opens the store under test.
pub trait Harness: Send + Sync + 'static {
    /// The backend.
    type Store: RecordStore + 'static;
    /// Whether the store keeps its contents across close and reopen.
    const DURABLE: bool;
    /// Opens the store: the same underlying data every time for durable backends.
    fn open(&self) -> Self::Store;
}

/// The memory backend.
pub struct MemoryHarness;

impl Harness for MemoryHarness {
    type Store = MemoryStore;
    const DURABLE: bool = false;
    fn open(&self) -> MemoryStore {
        MemoryStore::new()
    }
}

/// A fresh schema of this process's throwaway PostgreSQL server (feature `postgres`; the
/// server is started on first use with `initdb` and `pg_ctl`, as the `postgres` user when
/// the tests run as root, and stopped when the process ends).
/// A throwaway PostgreSQL server of the test process's own (`ThrowawayPostgres::with_tls`
/// for one that takes TCP connections only over TLS).
#[cfg(feature = "postgres")]
pub use crate::postgres::throwaway::{Cluster as ThrowawayPostgres, TlsFiles};

#[cfg(feature = "postgres")]
pub struct PostgresHarness {
    url: String,
    options: crate::PostgresOptions,
}

#[cfg(feature = "postgres")]
impl PostgresHarness {
    pub fn new() -> Self {
        Self::with_options(crate::PostgresOptions::default())
    }

    /// A harness whose stores connect with `options`.
    pub fn with_options(options: crate::PostgresOptions) -> Self {
        PostgresHarness {
            url: crate::postgres::throwaway::Cluster::shared().fresh_schema_url(),
            options,
        }
    }

    /// A harness whose stores stripe `accounts` (see
    /// [`crate::PostgresOptions::striped_accounts`]).
    pub fn striped(accounts: Vec<(LedgerAccount, u16)>) -> Self {
        Self::with_options(crate::PostgresOptions {
            striped_accounts: accounts,
            ..crate::PostgresOptions::default()
        })
    }

    /// A harness that stripes every account the suite posts to more than once per test
    /// (the system accounts, merchant 1, customer 1 with its floor), with a few stripes
    /// each, so that the stripes of one account take turns within every test.
    pub fn striped_suite() -> Self {
        Self::striped(vec![
            (outstanding(), 8),
            (funding(), 8),
            (merchant_account(1), 4),
            (customer(1), 3),
        ])
    }

    /// The connection string of this harness's schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The options its stores connect with.
    pub fn options(&self) -> &crate::PostgresOptions {
        &self.options
    }
}

#[cfg(feature = "postgres")]
impl Default for PostgresHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "postgres")]
impl Harness for PostgresHarness {
    type Store = crate::PostgresStore;
    const DURABLE: bool = true;
    fn open(&self) -> crate::PostgresStore {
        // The suite runs on a multi-thread runtime: connect without leaving it.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(crate::PostgresStore::connect_with(
                &self.url,
                self.options.clone(),
            ))
        })
        .unwrap()
    }
}

/// The file backend in a temporary directory (feature `file`).
#[cfg(feature = "file")]
pub struct FileHarness {
    dir: tempfile::TempDir,
    options: FileStoreOptions,
}

#[cfg(feature = "file")]
impl FileHarness {
    pub fn new() -> Self {
        Self::with_options(FileStoreOptions::default())
    }

    /// A harness whose store compacts after `bytes` of log (to exercise snapshots).
    pub fn compacting_after(bytes: u64) -> Self {
        Self::with_options(FileStoreOptions {
            compact_after_bytes: bytes,
        })
    }

    fn with_options(options: FileStoreOptions) -> Self {
        FileHarness {
            dir: tempfile::tempdir().unwrap(),
            options,
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

#[cfg(feature = "file")]
impl Default for FileHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "file")]
impl Harness for FileHarness {
    type Store = FileStore;
    const DURABLE: bool = true;
    fn open(&self) -> FileStore {
        FileStore::open_with(self.dir.path(), self.options.clone()).unwrap()
    }
}

/// The redb backend in a temporary directory (feature `redb`).
#[cfg(feature = "redb")]
pub struct RedbHarness {
    dir: tempfile::TempDir,
    limits: crate::ClaimsIndexLimits,
}

#[cfg(feature = "redb")]
impl RedbHarness {
    pub fn new() -> Self {
        Self::with_limits(crate::ClaimsIndexLimits::default())
    }

    /// A harness whose claims index writes its log out as a run after `log_max` claims,
    /// merges `fan_in` runs, `chunk` claims a step (tiny ones exercise runs, filters and
    /// compactions in the middle of every test).
    pub fn with_limits(limits: crate::ClaimsIndexLimits) -> Self {
        RedbHarness {
            dir: tempfile::tempdir().unwrap(),
            limits,
        }
    }
}

#[cfg(feature = "redb")]
impl Default for RedbHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "redb")]
impl Harness for RedbHarness {
    type Store = RedbStore;
    const DURABLE: bool = true;
    fn open(&self) -> RedbStore {
        RedbStore::open_with_limits(self.dir.path().join("scrip.redb"), self.limits).unwrap()
    }
}

// ---- helpers ---------------------------------------------------------------------------

const EUR: Currency = Currency::EUR;
const DOCS: Collection = Collection::new("conformance-docs");

pub fn at(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_767_225_600_000 + ms)
}

/// The claim of coin `n`, by a spend id made of `n` (real ones are SHA-256 digests).
pub fn coin(n: u128) -> ClaimId {
    let mut spend_id = [0u8; 32];
    spend_id[16..].copy_from_slice(&n.to_be_bytes());
    ClaimId::Coin(CoinSpendId(spend_id))
}

pub fn digest(n: u64) -> ContentDigest {
    ContentDigest::of(&n.to_le_bytes())
}

pub fn merchant(n: u128) -> Claimant {
    Claimant::Merchant(MerchantId(uuid::Uuid::from_u128(n)))
}

pub fn merchant_account(n: u128) -> LedgerAccount {
    LedgerAccount::Merchant(MerchantId(uuid::Uuid::from_u128(n)))
}

pub fn customer(n: u128) -> LedgerAccount {
    LedgerAccount::Customer(AccountId(uuid::Uuid::from_u128(n)))
}

pub fn outstanding() -> LedgerAccount {
    LedgerAccount::System("coins-outstanding".into())
}

pub fn funding() -> LedgerAccount {
    LedgerAccount::System("funding".into())
}

fn eur(minor_units: u64) -> scrip_tokens::Amount {
    scrip_tokens::Amount::new(minor_units, EUR)
}

/// A redemption: `claimant` claims coins `ids` (digest = id) and is credited 1 per coin.
pub fn redemption(claimant: u128, ids: impl IntoIterator<Item = u128>, t: u64) -> Unit {
    let mut unit = Unit::new(merchant(claimant), at(t));
    let mut n = 0;
    for id in ids {
        unit = unit.claim(coin(id), digest(id as u64));
        n += 1;
    }
    unit.post(Posting::transfer(
        outstanding(),
        merchant_account(claimant),
        eur(n),
        "redeem",
    ))
}

async fn total(store: &impl RecordStore, currency: Currency) -> i128 {
    store
        .balances(None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, c, _)| *c == currency)
        .map(|(_, _, b)| b)
        .sum()
}

// ---- the suite -------------------------------------------------------------------------

pub async fn fresh_claims_commit_and_conflicts_name_the_holder<H: Harness>(h: H) {
    let store = h.open();
    assert_eq!(
        store.commit(redemption(1, [10, 11], 5)).await.unwrap(),
        CommitOutcome::Committed
    );
    let claims = store.claims(&[coin(10), coin(11), coin(12)]).await.unwrap();
    let held = claims[0].clone().unwrap();
    assert_eq!(held.claimant, merchant(1));
    assert_eq!(held.claimed_at, at(5));
    assert_eq!(held.digest, digest(10));
    assert!(claims[1].is_some());
    assert_eq!(claims[2], None);

    // Merchant 2 tries coins 11 and 12: 11 is held by merchant 1, 12 is free.
    match store.commit(redemption(2, [12, 11], 9)).await.unwrap() {
        CommitOutcome::Conflict(report) => {
            assert_eq!(report.len(), 2);
            assert_eq!(report[0], (coin(12), None));
            let (id, existing) = &report[1];
            assert_eq!(id, &coin(11));
            let existing = existing.as_ref().unwrap();
            assert_eq!(
                (existing.claimant.clone(), existing.claimed_at),
                (merchant(1), at(5))
            );
            assert_eq!(existing.digest, digest(11));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.claims(&[coin(12)]).await.unwrap(), vec![None]);
}

pub async fn an_idempotent_repeat_returns_the_original_outcome_and_applies_nothing_twice<
    H: Harness,
>(
    h: H,
) {
    let store = h.open();
    let unit = redemption(1, [20, 21, 22], 100);
    assert_eq!(
        store.commit(unit.clone()).await.unwrap(),
        CommitOutcome::Committed
    );
    let entries = store
        .ledger_entries(&merchant_account(1), EUR, None, 100)
        .await
        .unwrap();
    // The same unit again, later (a merchant retrying after a timeout).
    let mut retry = unit.clone();
    retry.at = at(999);
    for _ in 0..3 {
        assert_eq!(
            store.commit(retry.clone()).await.unwrap(),
            CommitOutcome::Repeated {
                first_claimed_at: at(100)
            }
        );
    }
    assert_eq!(store.balance(&merchant_account(1), EUR).await.unwrap(), 3);
    assert_eq!(
        store
            .ledger_entries(&merchant_account(1), EUR, None, 100)
            .await
            .unwrap(),
        entries
    );
    assert_eq!(
        store.claims(&[coin(20)]).await.unwrap()[0]
            .as_ref()
            .unwrap()
            .claimed_at,
        at(100)
    );
}

pub async fn the_same_claimant_with_another_digest_is_a_conflict<H: Harness>(h: H) {
    let store = h.open();
    let first = Unit::new(merchant(1), at(1)).claim(coin(30), digest(1));
    assert_eq!(store.commit(first).await.unwrap(), CommitOutcome::Committed);
    let other_item = Unit::new(merchant(1), at(2)).claim(coin(30), digest(2));
    assert!(matches!(
        store.commit(other_item).await.unwrap(),
        CommitOutcome::Conflict(_)
    ));
    // A retry that adds a fresh id to an old claim is not a pure repeat either.
    let widened = Unit::new(merchant(1), at(3))
        .claim(coin(30), digest(1))
        .claim(coin(31), digest(31));
    assert!(matches!(
        store.commit(widened).await.unwrap(),
        CommitOutcome::Conflict(_)
    ));
    assert_eq!(store.claims(&[coin(31)]).await.unwrap(), vec![None]);
}

/// Every kind of claimant is stored and read back as itself (after a reopen too, for
/// durable backends): whose claim it is decides what the issuer answers (a coin held by
/// the issuer was revoked, one held by a swap's holder was swapped), and a repeat needs
/// the same claimant.
pub async fn every_claimant_is_read_back_as_itself<H: Harness>(h: H) {
    let claimants = [
        merchant(7),
        Claimant::Account(AccountId(uuid::Uuid::from_u128(8))),
        Claimant::Device(scrip_tokens::DeviceId(uuid::Uuid::from_u128(9))),
        Claimant::Issuer,
        Claimant::Holder,
    ];
    let ids: Vec<ClaimId> = (0..claimants.len() as u128)
        .map(|n| coin(900 + n))
        .collect();
    {
        let store = h.open();
        for (n, (claimant, id)) in claimants.iter().zip(&ids).enumerate() {
            let unit = Unit::new(claimant.clone(), at(n as u64)).claim(id.clone(), digest(5));
            assert_eq!(store.commit(unit).await.unwrap(), CommitOutcome::Committed);
        }
        // The same id and digest under another claimant is not a repeat.
        let other = Unit::new(Claimant::Issuer, at(50)).claim(ids[4].clone(), digest(5));
        assert!(matches!(
            store.commit(other).await.unwrap(),
            CommitOutcome::Conflict(_)
        ));
        if H::DURABLE {
            store.close().await.unwrap();
        } else {
            let held = store.claims(&ids).await.unwrap();
            let read: Vec<Claimant> = held.into_iter().map(|c| c.unwrap().claimant).collect();
            assert_eq!(read, claimants);
            return;
        }
    }
    let store = h.open();
    let held = store.claims(&ids).await.unwrap();
    let read: Vec<Claimant> = held.into_iter().map(|c| c.unwrap().claimant).collect();
    assert_eq!(read, claimants);
    let again = Unit::new(Claimant::Holder, at(60)).claim(ids[4].clone(), digest(5));
    assert_eq!(
        store.commit(again).await.unwrap(),
        CommitOutcome::Repeated {
            first_claimed_at: at(4)
        }
    );
}

pub async fn exactly_one_of_64_concurrent_claims_wins<H: Harness>(h: H) {
    let store = Arc::new(h.open());
    let tasks: Vec<_> = (0..64u128)
        .map(|m| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                (
                    m,
                    store.commit(redemption(m, [777], m as u64)).await.unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (m, CommitOutcome::Committed) => winners.push(m),
            (_, CommitOutcome::Conflict(report)) => losers.push(report),
            (m, other) => panic!("merchant {m}: unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(losers.len(), 63);
    let winner = merchant(winners[0]);
    for report in losers {
        assert_eq!(report[0].1.as_ref().unwrap().claimant, winner);
    }
    assert_eq!(
        store
            .balance(&merchant_account(winners[0]), EUR)
            .await
            .unwrap(),
        1
    );
    assert_eq!(total(&*store, EUR).await, 0);
}

pub async fn a_unit_of_100_with_one_conflicting_id_writes_nothing<H: Harness>(h: H) {
    let store = h.open();
    assert_eq!(
        store.commit(redemption(1, [1_050], 1)).await.unwrap(),
        CommitOutcome::Committed
    );
    let unit = redemption(2, 1_000..1_100, 2).write(Write::put(
        DOCS,
        b"batch-2".to_vec(),
        b"done".to_vec(),
    ));
    match store.commit(unit).await.unwrap() {
        CommitOutcome::Conflict(report) => {
            assert_eq!(report.len(), 100);
            let held: Vec<_> = report.iter().filter(|(_, e)| e.is_some()).collect();
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].0, coin(1_050));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let ids: Vec<_> = (1_000..1_100).filter(|i| *i != 1_050).map(coin).collect();
    assert!(store
        .claims(&ids)
        .await
        .unwrap()
        .iter()
        .all(Option::is_none));
    assert_eq!(store.balance(&merchant_account(2), EUR).await.unwrap(), 0);
    assert!(store
        .ledger_entries(&merchant_account(2), EUR, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.get(DOCS, b"batch-2").await.unwrap(), None);
}

pub async fn ledger_postings_are_applied_exactly_once<H: Harness>(h: H) {
    let store = Arc::new(h.open());
    // 50 merchants redeem 4 coins each, concurrently, and each retries twice.
    let tasks: Vec<_> = (0..50u128)
        .map(|m| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let unit = redemption(m, (0..4).map(|i| 10_000 + m * 10 + i), m as u64);
                let mut outcomes = Vec::new();
                for _ in 0..3 {
                    outcomes.push(store.commit(unit.clone()).await.unwrap());
                }
                outcomes
            })
        })
        .collect();
    for t in tasks {
        let outcomes = t.await.unwrap();
        assert_eq!(outcomes[0], CommitOutcome::Committed);
        assert!(matches!(outcomes[1], CommitOutcome::Repeated { .. }));
        assert!(matches!(outcomes[2], CommitOutcome::Repeated { .. }));
    }
    for m in 0..50u128 {
        assert_eq!(store.balance(&merchant_account(m), EUR).await.unwrap(), 4);
        let entries = store
            .ledger_entries(&merchant_account(m), EUR, None, 10)
            .await
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].delta, entries[0].balance_after), (4, 4));
    }
    assert_eq!(store.balance(&outstanding(), EUR).await.unwrap(), -200);
    assert_eq!(total(&*store, EUR).await, 0);
}

pub async fn floors_refuse_overdrafts_atomically<H: Harness>(h: H) {
    let store = Arc::new(h.open());
    let deposit = Unit::new(Claimant::Issuer, at(0)).post(Posting::transfer(
        funding(),
        customer(1),
        eur(10),
        "deposit",
    ));
    assert_eq!(
        store.commit(deposit).await.unwrap(),
        CommitOutcome::Committed
    );
    // 30 concurrent withdrawals of 1 each against a balance of 10.
    let tasks: Vec<_> = (0..30u128)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let unit = Unit::new(
                    Claimant::Account(AccountId(uuid::Uuid::from_u128(1))),
                    at(1),
                )
                .claim(
                    ClaimId::Idempotency {
                        scope: uuid::Uuid::from_u128(1),
                        key: [i as u8; 32],
                    },
                    digest(0),
                )
                .post(Posting::transfer(
                    customer(1),
                    outstanding(),
                    eur(1),
                    "withdraw",
                ))
                .floor(Floor::non_negative(customer(1), EUR));
                store.commit(unit).await.unwrap()
            })
        })
        .collect();
    let mut committed = 0;
    for t in tasks {
        match t.await.unwrap() {
            CommitOutcome::Committed => committed += 1,
            CommitOutcome::InsufficientFunds {
                balance_after, min, ..
            } => {
                assert_eq!((balance_after, min), (-1, 0));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(committed, 10);
    assert_eq!(store.balance(&customer(1), EUR).await.unwrap(), 0);
    assert_eq!(total(&*store, EUR).await, 0);
    // A refused unit claimed nothing: its idempotency key is still free.
    let keys: Vec<_> = (0..30u8)
        .map(|i| ClaimId::Idempotency {
            scope: uuid::Uuid::from_u128(1),
            key: [i; 32],
        })
        .collect();
    let held = store
        .claims(&keys)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.is_some())
        .count();
    assert_eq!(held, 10);
}

pub async fn malformed_units_are_refused_before_anything_is_applied<H: Harness>(h: H) {
    let store = h.open();
    let unbalanced = Unit::new(Claimant::Issuer, at(0))
        .claim(coin(1), digest(1))
        .post([Posting::credit(customer(1), eur(5), "gift")]);
    assert!(matches!(
        store.commit(unbalanced).await,
        Err(StoreError::UnbalancedPostings { currency: EUR })
    ));
    let twice = Unit::new(Claimant::Issuer, at(0))
        .claim(coin(2), digest(1))
        .claim(coin(2), digest(2));
    assert!(matches!(
        store.commit(twice).await,
        Err(StoreError::InvalidUnit(_))
    ));
    let bad_collection = Unit::new(Claimant::Issuer, at(0)).write(Write::put(
        Collection::new(""),
        b"k".to_vec(),
        b"v".to_vec(),
    ));
    assert!(matches!(
        store.commit(bad_collection).await,
        Err(StoreError::InvalidUnit(_))
    ));
    // One bad unit fails the whole call: the good unit before it is not applied either.
    let good = Unit::new(Claimant::Issuer, at(0)).claim(coin(3), digest(3));
    let bad = Unit::new(Claimant::Issuer, at(0))
        .claim(coin(4), digest(4))
        .claim(coin(4), digest(4));
    assert!(store.commit_many(vec![good, bad]).await.is_err());
    assert_eq!(
        store.claims(&[coin(1), coin(3)]).await.unwrap(),
        vec![None, None]
    );
}

pub async fn later_units_of_one_call_see_earlier_ones<H: Harness>(h: H) {
    let store = h.open();
    let outcomes = store
        .commit_many(vec![
            redemption(1, [40, 41], 1),
            redemption(2, [41], 2),
            redemption(1, [40, 41], 3),
            redemption(3, [42], 4),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0], CommitOutcome::Committed);
    assert!(matches!(outcomes[1], CommitOutcome::Conflict(_)));
    assert_eq!(
        outcomes[2],
        CommitOutcome::Repeated {
            first_claimed_at: at(1)
        }
    );
    assert_eq!(outcomes[3], CommitOutcome::Committed);
    assert_eq!(store.balance(&merchant_account(1), EUR).await.unwrap(), 2);
}

pub async fn a_refused_unit_leaves_every_claim_as_it_was<H: Harness>(h: H) {
    let store = h.open();
    assert_eq!(
        store.commit(redemption(1, [60, 61], 1)).await.unwrap(),
        CommitOutcome::Committed
    );
    let held = store.claims(&[coin(60), coin(61)]).await.unwrap();
    // One call: a conflict (62 free, 61 held), merchant 1's unit again (later, so a value
    // left behind would carry another time), an overdraft that claims 63, then merchant 3
    // claiming 62 and 63, which the refused units must have left free.
    let overdraft = Unit::new(merchant(4), at(3))
        .claim(coin(63), digest(63))
        .post(Posting::transfer(customer(9), outstanding(), eur(1), "pay"))
        .floor(Floor::non_negative(customer(9), EUR));
    let outcomes = store
        .commit_many(vec![
            redemption(2, [62, 61], 2),
            redemption(1, [60, 61], 7),
            overdraft,
            redemption(3, [62, 63], 4),
        ])
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], CommitOutcome::Conflict(_)),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[1],
        CommitOutcome::Repeated {
            first_claimed_at: at(1)
        }
    );
    assert!(
        matches!(outcomes[2], CommitOutcome::InsufficientFunds { .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[3], CommitOutcome::Committed);
    // The held claims are exactly as before: holder, time and digest.
    assert_eq!(store.claims(&[coin(60), coin(61)]).await.unwrap(), held);
    let taken = store.claims(&[coin(62), coin(63)]).await.unwrap();
    for (claim, id) in taken.iter().zip([62u64, 63]) {
        let claim = claim.as_ref().unwrap();
        assert_eq!(
            (claim.claimant.clone(), claim.claimed_at, claim.digest),
            (merchant(3), at(4), digest(id))
        );
    }
    assert_eq!(store.balance(&merchant_account(2), EUR).await.unwrap(), 0);
    assert_eq!(store.balance(&merchant_account(1), EUR).await.unwrap(), 2);
    assert_eq!(store.balance(&customer(9), EUR).await.unwrap(), 0);
}

pub async fn documents_are_stored_scanned_and_deleted<H: Harness>(h: H) {
    let store = h.open();
    let other = Collection::new("conformance-other");
    let mut unit = Unit::new(Claimant::Issuer, at(0)).write(Write::put(
        other,
        b"b".to_vec(),
        b"other".to_vec(),
    ));
    for k in [b"c", b"a", b"e", b"d", b"b"] {
        unit = unit.write(Write::put(DOCS, k.to_vec(), [b'v', k[0]].to_vec()));
    }
    store.commit(unit).await.unwrap();
    assert_eq!(store.get(DOCS, b"c").await.unwrap(), Some(b"vc".to_vec()));
    assert_eq!(store.get(DOCS, b"z").await.unwrap(), None);
    let keys =
        |items: Vec<(Vec<u8>, Vec<u8>)>| items.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(store.scan(DOCS, None, 3).await.unwrap()),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(
        keys(store.scan(DOCS, Some(b"c"), 10).await.unwrap()),
        vec![b"d".to_vec(), b"e".to_vec()]
    );
    assert_eq!(
        store.scan(other, None, 10).await.unwrap(),
        vec![(b"b".to_vec(), b"other".to_vec())]
    );
    let update = Unit::new(Claimant::Issuer, at(1))
        .write(Write::delete(DOCS, b"a".to_vec()))
        .write(Write::put(DOCS, b"b".to_vec(), b"new".to_vec()));
    store.commit(update).await.unwrap();
    assert_eq!(store.get(DOCS, b"a").await.unwrap(), None);
    assert_eq!(store.get(DOCS, b"b").await.unwrap(), Some(b"new".to_vec()));
    assert_eq!(store.scan(DOCS, None, 10).await.unwrap().len(), 4);
}

pub async fn ledgers_and_balances_paginate<H: Harness>(h: H) {
    let store = h.open();
    for i in 0..25u128 {
        store
            .commit(redemption(1, [50_000 + i], i as u64))
            .await
            .unwrap();
    }
    store
        .commit(Unit::new(Claimant::Issuer, at(99)).post(Posting::transfer(
            outstanding(),
            merchant_account(1),
            scrip_tokens::Amount::new(7, Currency::USD),
            "usd",
        )))
        .await
        .unwrap();
    let first = store
        .ledger_entries(&merchant_account(1), EUR, None, 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 10);
    let rest = store
        .ledger_entries(&merchant_account(1), EUR, Some(first[9].seq), 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 15);
    let all: Vec<_> = first.iter().chain(&rest).collect();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.balance_after, i as i128 + 1);
        assert_eq!(e.memo, "redeem");
        if i > 0 {
            assert!(e.seq > all[i - 1].seq);
        }
    }
    assert_eq!(
        store
            .ledger_entries(&merchant_account(1), Currency::USD, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let balances = store.balances(None, 100).await.unwrap();
    assert_eq!(balances.len(), 4);
    let page = store.balances(None, 2).await.unwrap();
    let next = store
        .balances(Some((page[1].0.clone(), page[1].1)), 100)
        .await
        .unwrap();
    assert_eq!([page, next].concat(), balances);
    assert!(balances.contains(&(merchant_account(1), EUR, 25)));
    assert!(balances.contains(&(merchant_account(1), Currency::USD, 7)));
    assert_eq!(total(&store, EUR).await, 0);
    assert_eq!(total(&store, Currency::USD).await, 0);
}

pub async fn everything_survives_close_and_reopen<H: Harness>(h: H) {
    if !H::DURABLE {
        return;
    }
    {
        let store = h.open();
        store.commit(redemption(1, [60, 61], 1)).await.unwrap();
        store
            .commit(Unit::new(Claimant::Issuer, at(2)).write(Write::put(
                DOCS,
                b"k".to_vec(),
                b"v".to_vec(),
            )))
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let store = h.open();
    assert!(store
        .claims(&[coin(60), coin(61)])
        .await
        .unwrap()
        .iter()
        .all(Option::is_some));
    assert_eq!(store.balance(&merchant_account(1), EUR).await.unwrap(), 2);
    assert_eq!(store.get(DOCS, b"k").await.unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        store
            .ledger_entries(&merchant_account(1), EUR, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // Retrying after the restart is still recognised as a repeat.
    assert_eq!(
        store.commit(redemption(1, [60, 61], 50)).await.unwrap(),
        CommitOutcome::Repeated {
            first_claimed_at: at(1)
        }
    );
    // And the reopened store keeps working (and keeps sequence numbers increasing).
    store.commit(redemption(1, [62], 3)).await.unwrap();
    let entries = store
        .ledger_entries(&merchant_account(1), EUR, None, 10)
        .await
        .unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries[1].seq > entries[0].seq);
}

pub async fn concurrent_units_share_durable_writes<H: Harness>(h: H) {
    let store = Arc::new(h.open());
    let before = store.stats();
    let tasks: Vec<_> = (0..256u128)
        .map(|m| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..4 {
                    let outcome = store
                        .commit(redemption(m, [100_000 + m * 4 + i], 0))
                        .await
                        .unwrap();
                    assert_eq!(outcome, CommitOutcome::Committed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    let units = stats.units - before.units;
    let batches = stats.batches - before.batches;
    assert_eq!(units, 1024);
    if H::DURABLE {
        assert!(
            batches < units / 2,
            "{batches} durable writes for {units} units"
        );
    }
    assert_eq!(total(&*store, EUR).await, 0);
    assert_eq!(store.balance(&outstanding(), EUR).await.unwrap(), -1024);
}

pub async fn a_closed_store_refuses_commits<H: Harness>(h: H) {
    let store = h.open();
    store.commit(redemption(1, [70], 0)).await.unwrap();
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(
        store.commit(redemption(1, [71], 0)).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        store.claims(&[coin(70)]).await,
        Err(StoreError::Closed)
    ));
    if H::DURABLE {
        // Closing released the files although `store` is still alive: it opens again,
        // with everything committed before the close.
        let reopened = h.open();
        assert!(reopened.claims(&[coin(70)]).await.unwrap()[0].is_some());
        drop(store);
    }
}

/// Expands the whole suite as `#[tokio::test]`s for one backend. `$harness` is an
/// expression evaluated afresh for each test.
#[macro_export]
macro_rules! store_conformance {
    ($harness:expr) => {
        $crate::store_conformance!(@tests $harness;
            fresh_claims_commit_and_conflicts_name_the_holder,
            an_idempotent_repeat_returns_the_original_outcome_and_applies_nothing_twice,
            the_same_claimant_with_another_digest_is_a_conflict,
            every_claimant_is_read_back_as_itself,
            exactly_one_of_64_concurrent_claims_wins,
            a_unit_of_100_with_one_conflicting_id_writes_nothing,
            ledger_postings_are_applied_exactly_once,
            floors_refuse_overdrafts_atomically,
            malformed_units_are_refused_before_anything_is_applied,
            later_units_of_one_call_see_earlier_ones,
            a_refused_unit_leaves_every_claim_as_it_was,
            documents_are_stored_scanned_and_deleted,
            ledgers_and_balances_paginate,
            everything_survives_close_and_reopen,
            concurrent_units_share_durable_writes,
            a_closed_store_refuses_commits,
        );
    };
    (@tests $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::conformance::$name($harness).await;
            }
        )*
    };
}

/// A redb storage backend over a file whose writes fail with `ENOSPC` ("no space left on
/// device") while its switch is on: a full disk, on demand. Reads keep working, as on a
/// real full disk. For `RedbStore::open_with` (feature `redb`).
#[cfg(feature = "redb")]
#[derive(Debug)]
pub struct FullDiskBackend {
    inner: redb::backends::FileBackend,
    full: Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(feature = "redb")]
impl FullDiskBackend {
    /// Opens (or creates) `path`; writes fail while `full` is set.
    pub fn open(
        path: &std::path::Path,
        full: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let inner = redb::backends::FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(FullDiskBackend { inner, full })
    }

    fn space(&self) -> std::io::Result<()> {
        if self.full.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        } else {
            Ok(())
        }
    }

    /// A [`crate::RedbStore`] on `path` through this backend.
    pub fn store(
        path: PathBuf,
        full: Arc<std::sync::atomic::AtomicBool>,
    ) -> crate::Result<crate::RedbStore> {
        let disk = Arc::clone(&full);
        crate::RedbStore::open_with(
            move || {
                let backend = FullDiskBackend::open(&path, Arc::clone(&full))
                    .map_err(|e| crate::StoreError::io("opening the database file", e))?;
                redb::Builder::new()
                    .create_with_backend(backend)
                    .map_err(|e| crate::StoreError::Backend(Arc::new(e)))
            },
            move || !disk.load(std::sync::atomic::Ordering::SeqCst),
        )
    }
}

#[cfg(feature = "redb")]
impl redb::StorageBackend for FullDiskBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.space()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.space()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.space()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
