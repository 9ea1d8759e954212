#![doc = include_str!("../README.md")]
// Without a backend's feature, its links in the README point at the feature table.
#![cfg_attr(not(feature = "file"), doc = "", doc = "[`FileStore`]: #features")]
#![cfg_attr(not(feature = "redb"), doc = "", doc = "[`RedbStore`]: #features")]
#![cfg_attr(
    not(feature = "postgres"),
    doc = "",
    doc = "[`PostgresStore`]: #features"
)]
#![cfg_attr(
    not(feature = "redb"),
    doc = "",
    doc = "[`ClaimsIndexLimits`]: #features"
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Parts of the engine serve only the durable backends (format version, overlay, writer
// probes). A build without one of them leaves those unused; the full build (default
// features) still reports real dead code.
#![cfg_attr(not(all(feature = "file", feature = "redb")), allow(dead_code))]

mod cluster;
mod engine;
mod error;
#[cfg(feature = "file")]
mod file;
#[cfg(any(feature = "file", feature = "redb"))]
mod group;
mod memory;
mod model;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore, PostgresTls};
#[cfg(feature = "redb")]
mod redb;
mod store;
mod tables;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use async_trait::async_trait;
use scrip_tokens::Currency;

pub use cluster::{ClusterState, KeyringEpoch, PublishOutcome};
pub use error::{Result, StoreError};
#[cfg(feature = "file")]
pub use file::{FileStore, FileStoreOptions, RecoveryReport};
pub use memory::MemoryStore;
pub use model::{
    ClaimId, ClaimNamespace, ClaimRequest, Claimant, Collection, CommitOutcome, ExistingClaim,
    Floor, LedgerAccount, LedgerEntry, Posting, Unit, Write, MAX_CLAIMS_PER_UNIT,
    MAX_ITEMS_PER_UNIT, MAX_KEY_LEN, MAX_VALUE_LEN,
};
#[cfg(feature = "redb")]
pub use redb::{ClaimsIndexLimits, RedbStore};

/// Counters a store keeps about its commits (for metrics and for showing group commit at
/// work).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Units processed (any outcome).
    pub units: u64,
    /// Batches: each is applied and made durable with one write (one fsync, one
    /// transaction commit). With group commit, concurrent units share a batch. The memory
    /// backend counts each call as a batch.
    pub batches: u64,
    /// Total time spent applying and writing batches, in microseconds.
    pub batch_micros: u64,
}

/// The issuer's persistent state: claimed ids (the double-spend guard), the double-entry
/// ledger, and documents. Every backend (memory, file, redb; PostgreSQL next) implements
/// these contracts, and the conformance suite (module `conformance`, feature
/// `conformance`) checks them.
///
/// Contracts that hold for every method of every backend:
/// - **Atomic units.** A [`Unit`]'s claims, postings and writes are applied together or not
///   at all, whatever else runs concurrently and whenever the process dies.
/// - **Durable before `Ok`.** When `commit` returns `Ok(Committed)` the unit survives a
///   crash (file and redb fsync; memory obviously not). Reads never show data that is not
///   yet durable.
/// - **Serializable.** Concurrent units behave as if applied one after another: of N
///   concurrent units claiming one id, exactly one returns `Committed`, the others see its
///   claim.
/// - **Unknown outcome on error.** An `Err` from `commit` means the unit may or may not
///   have been applied; retrying it is safe (an applied unit comes back `Repeated`).
/// - **No in-process locks for correctness across processes.** The checks run inside the
///   backend's own write transaction (or under its exclusive file lock), so a backend
///   shared by several processes (a database server) keeps every contract.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Commits one unit: see [`RecordStore::commit_many`].
    async fn commit(&self, unit: Unit) -> Result<CommitOutcome> {
        let mut outcomes = self.commit_many(vec![unit]).await?;
        outcomes.pop().ok_or(StoreError::Corrupted(
            "backend returned no outcome for a unit".into(),
        ))
    }

    /// Commits each unit atomically, in order, and returns one outcome per unit:
    /// - every claim fresh and every floor holds: `Committed` (claims, postings, writes
    ///   all applied);
    /// - every claim already held by this unit's claimant with the same digest:
    ///   `Repeated` (nothing applied again);
    /// - otherwise, if any claim is held: `Conflict`, with the existing claim (claimant,
    ///   time, digest) or `None` for each of the unit's ids; nothing applied;
    /// - otherwise, if a floor fails: `InsufficientFunds`; nothing applied.
    ///
    /// A unit without claims is never `Repeated`: idempotency comes from claims.
    /// Later units of the call see the effects of earlier ones. Units of concurrent calls
    /// share durable writes (group commit). Invalid units fail the whole call before
    /// anything is applied.
    async fn commit_many(&self, units: Vec<Unit>) -> Result<Vec<CommitOutcome>>;

    /// The existing claim of each id, or `None` if it is free.
    async fn claims(&self, ids: &[ClaimId]) -> Result<Vec<Option<ExistingClaim>>>;

    /// The balance of `account` in `currency` (zero if it never moved), in minor units.
    async fn balance(&self, account: &LedgerAccount, currency: Currency) -> Result<i128>;

    /// All non-default balances, ordered by account then currency, starting after `after`,
    /// at most `limit`. Summing every balance of a currency gives zero.
    async fn balances(
        &self,
        after: Option<(LedgerAccount, Currency)>,
        limit: usize,
    ) -> Result<Vec<(LedgerAccount, Currency, i128)>>;

    /// The ledger of `account` in `currency`, oldest first, entries with `seq > after_seq`,
    /// at most `limit`.
    async fn ledger_entries(
        &self,
        account: &LedgerAccount,
        currency: Currency,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>>;

    /// The document `key` of `collection`.
    async fn get(&self, collection: Collection, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Documents of `collection` in key order, keys greater than `after`, at most `limit`.
    async fn scan(
        &self,
        collection: Collection,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Commit counters.
    fn stats(&self) -> StoreStats;

    /// Whether the store makes writes durable now: `Ok` while writes succeed. After a
    /// failed write (a full disk, an I/O error) the store tries one empty durable write,
    /// at most once a second, recovering its backend first where needed, and answers its
    /// outcome, so a readiness check sees a store that cannot write, and sees it recover
    /// once space is back. Memory stores always can.
    async fn check_writable(&self) -> Result<()> {
        Ok(())
    }

    /// Waits for in-flight commits, makes everything durable, releases the store's files
    /// and their lock (so the store can be opened again at once, even while other handles
    /// on this one are still alive: a server restarting in the same process relies on it),
    /// and refuses every later call, reads included, with `Closed`. Idempotent.
    async fn close(&self) -> Result<()>;
}

/// A shared store is a store: the server holds its backend as `Arc<dyn RecordStore>` and
/// picks memory, file or redb at start-up.
#[async_trait]
impl<T: RecordStore + ?Sized> RecordStore for std::sync::Arc<T> {
    async fn commit(&self, unit: Unit) -> Result<CommitOutcome> {
        (**self).commit(unit).await
    }

    async fn commit_many(&self, units: Vec<Unit>) -> Result<Vec<CommitOutcome>> {
        (**self).commit_many(units).await
    }

    async fn claims(&self, ids: &[ClaimId]) -> Result<Vec<Option<ExistingClaim>>> {
        (**self).claims(ids).await
    }

    async fn balance(&self, account: &LedgerAccount, currency: Currency) -> Result<i128> {
        (**self).balance(account, currency).await
    }

    async fn balances(
        &self,
        after: Option<(LedgerAccount, Currency)>,
        limit: usize,
    ) -> Result<Vec<(LedgerAccount, Currency, i128)>> {
        (**self).balances(after, limit).await
    }

    async fn ledger_entries(
        &self,
        account: &LedgerAccount,
        currency: Currency,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>> {
        (**self)
            .ledger_entries(account, currency, after_seq, limit)
            .await
    }

    async fn get(&self, collection: Collection, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).get(collection, key).await
    }

    async fn scan(
        &self,
        collection: Collection,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        (**self).scan(collection, after, limit).await
    }

    fn stats(&self) -> StoreStats {
        (**self).stats()
    }

    async fn check_writable(&self) -> Result<()> {
        (**self).check_writable().await
    }

    async fn close(&self) -> Result<()> {
        (**self).close().await
    }
}
