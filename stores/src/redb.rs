//! `RedbStore`: the embedded default. Each group-committed batch is one redb write
//! transaction (durability `Immediate`: fsynced before commit returns); the engine's checks
//! run inside that transaction. Reads use redb's MVCC read transactions and never block
//! writes. The file is opened for this process alone (redb's exclusive open), which
//! [`ClaimKinds`] relies on.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::engine::{apply_unit, check_format, KvGet, KvPut, KvRead, Pairs, Table};
use crate::model::{CommitOutcome, Unit};
use crate::store::{Backend, BatchCommitter, Store};
use crate::{Result, StoreError};

type Bytes = &'static [u8];

fn definition(table: Table) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(table.name())
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked(e.to_string()),
        other => StoreError::backend(other),
    }
}

/// The claim kinds (a claim key's first byte, [`ClaimId::key_bytes`]) the file holds at
/// least one claim of. A lookup of a claim whose kind the file has never held is answered
/// without walking the B-tree. In a store that scrip 0.1 never wrote, that is every coin's
/// bare-id claim ([`ClaimId::LegacyCoinId`]), which the issuer reads beside each spend id:
/// one B-tree walk per redeemed coin saved.
///
/// Sound because this process is the file's only writer while it holds the file (redb's
/// exclusive open): the kinds are read from the file at open, and again when the store
/// reopens it after a failed write (it was unlocked in between), and a batch marks its
/// claims' kinds before its transaction commits, so no read can see a claim whose kind is
/// unmarked. Kinds are never unmarked: a refused unit or a failed batch leaves its kinds
/// marked, which costs a lookup, never a missed claim.
///
/// [`ClaimId::key_bytes`]: crate::ClaimId::key_bytes
/// [`ClaimId::LegacyCoinId`]: crate::ClaimId::LegacyCoinId
#[derive(Debug, Default)]
pub(crate) struct ClaimKinds([AtomicU64; 4]);

impl ClaimKinds {
    fn slot(&self, kind: u8) -> (Option<&AtomicU64>, u64) {
        (self.0.get(usize::from(kind / 64)), 1u64 << (kind % 64))
    }

    fn mark(&self, kind: u8) {
        if let (Some(word), bit) = self.slot(kind) {
            word.fetch_or(bit, Ordering::Release);
        }
    }

    /// Marks every kind `other` holds.
    fn add(&self, other: &ClaimKinds) {
        for (word, theirs) in self.0.iter().zip(&other.0) {
            word.fetch_or(theirs.load(Ordering::Acquire), Ordering::Release);
        }
    }

    /// Every kind marked: for a transaction that runs before the kinds are read.
    fn all() -> Self {
        ClaimKinds([(); 4].map(|()| AtomicU64::new(u64::MAX)))
    }

    /// Whether the file may hold a claim under `key`.
    fn may_hold(&self, key: &[u8]) -> bool {
        let Some(&kind) = key.first() else {
            return true;
        };
        match self.slot(kind) {
            (Some(word), bit) => word.load(Ordering::Acquire) & bit != 0,
            (None, _) => true,
        }
    }

    /// The kinds `claims` holds: one seek per kind present, whatever the table's size.
    fn read(claims: &impl ReadableTable<Bytes, Bytes>) -> Result<Self> {
        let kinds = ClaimKinds::default();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let Some(first) = claims
                .range::<&[u8]>(from.as_slice()..)
                .map_err(backend)?
                .next()
            else {
                return Ok(kinds);
            };
            let (key, _) = first.map_err(backend)?;
            let Some(&kind) = key.value().first() else {
                // An empty key is of no kind; go on with the kinds after it.
                from = vec![0];
                continue;
            };
            kinds.mark(kind);
            match kind.checked_add(1) {
                Some(next) => from = vec![next],
                None => return Ok(kinds),
            }
        }
    }
}

/// Every table of one transaction, open at once, indexed by [`Table`], and the claim kinds
/// the file holds.
pub(crate) struct OpenTables<T> {
    tables: Vec<T>,
    kinds: Arc<ClaimKinds>,
}

/// The tables of a write transaction.
type WriteTables<'txn> = OpenTables<redb::Table<'txn, Bytes, Bytes>>;

/// The tables of a read transaction.
pub(crate) type ReadTables = OpenTables<ReadOnlyTable<Bytes, Bytes>>;

impl<T> OpenTables<T> {
    fn table(&self, table: Table) -> Result<&T> {
        self.tables
            .get(table as usize)
            .ok_or(StoreError::Corrupted("missing table".into()))
    }
}

impl<'txn> WriteTables<'txn> {
    fn open(txn: &'txn WriteTransaction, kinds: Arc<ClaimKinds>) -> Result<Self> {
        let tables = Table::ALL
            .iter()
            .map(|t| txn.open_table(definition(*t)).map_err(backend))
            .collect::<Result<Vec<_>>>()?;
        Ok(OpenTables { tables, kinds })
    }
}

impl ReadTables {
    fn open(txn: &ReadTransaction, kinds: Arc<ClaimKinds>) -> Result<Self> {
        let tables = Table::ALL
            .iter()
            .map(|t| txn.open_table(definition(*t)).map_err(backend))
            .collect::<Result<Vec<_>>>()?;
        Ok(OpenTables { tables, kinds })
    }
}

impl<T: ReadableTable<Bytes, Bytes>> KvGet for OpenTables<T> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if table == Table::Claims && !self.kinds.may_hold(key) {
            return Ok(None);
        }
        Ok(self
            .table(table)?
            .get(key)
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }
}

impl<'txn> WriteTables<'txn> {
    fn table_mut(&mut self, table: Table) -> Result<&mut redb::Table<'txn, Bytes, Bytes>> {
        self.tables
            .get_mut(table as usize)
            .ok_or(StoreError::Corrupted("missing table".into()))
    }
}

impl KvPut for WriteTables<'_> {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        let t = self.table_mut(table)?;
        match value {
            Some(v) => {
                t.insert(key.as_slice(), v.as_slice()).map_err(backend)?;
            }
            None => {
                t.remove(key.as_slice()).map_err(backend)?;
            }
        }
        Ok(())
    }

    /// redb's insert walks the tree once and hands back the value it replaced.
    fn replace(&mut self, table: Table, key: &[u8], value: Vec<u8>) -> Result<Option<Vec<u8>>> {
        Ok(self
            .table_mut(table)?
            .insert(key, value.as_slice())
            .map_err(backend)?
            .map(|old| old.value().to_vec()))
    }
}

impl<T: ReadableTable<Bytes, Bytes>> KvRead for OpenTables<T> {
    fn range(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Pairs> {
        let t = self.table(table)?;
        let iter = match end {
            Some(end) => t.range::<&[u8]>(start..end),
            None => t.range::<&[u8]>(start..),
        }
        .map_err(backend)?;
        iter.take(limit)
            .map(|item| {
                let (k, v) = item.map_err(backend)?;
                Ok((k.value().to_vec(), v.value().to_vec()))
            })
            .collect()
    }
}

/// The database handle shared by readers and the writer thread.
enum Slot {
    Open(Arc<Database>),
    /// Being reopened after a failed write (or a reopen failed): no handle for now.
    Reopening,
    Closed,
}

/// The handle in `slot`, if it holds one.
fn database(slot: &RwLock<Slot>) -> Result<Arc<Database>> {
    match &*slot.read().map_err(|_| StoreError::Poisoned)? {
        Slot::Open(db) => Ok(Arc::clone(db)),
        Slot::Reopening => Err(reopening()),
        Slot::Closed => Err(StoreError::Closed),
    }
}

/// Empties `slot` for good: the database file (and its lock) goes with the last handle.
fn close_slot(slot: &RwLock<Slot>) {
    if let Ok(mut slot) = slot.write() {
        *slot = Slot::Closed;
    }
}

/// How the store opens its database, again after a failed write.
type Opener = Box<dyn Fn() -> Result<Database> + Send>;

/// Whether the database's storage can take a write again (see [`RedbStore::open_with`]).
type SpaceCheck = Box<dyn Fn() -> bool + Send>;

/// How long a reopen waits for reads in flight to let go of the old handle.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Least time between two attempts to reopen after a failed write: each runs redb's
/// recovery over the whole file, and writes keep coming while the disk is full.
const REOPEN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

struct RedbCommitter {
    slot: Arc<RwLock<Slot>>,
    kinds: Arc<ClaimKinds>,
    open: Opener,
    has_space: SpaceCheck,
    /// A write failed: redb latches its handle after an I/O error (every later write
    /// fails with `PreviousIo`), so a later write or probe reopens the database first,
    /// once there is space again. Reopening recovers from the file: what was committed
    /// is there, the failed transaction is not. Until then the latched handle keeps
    /// serving reads (from its cache, and from the file while reads succeed).
    needs_reopen: bool,
    last_reopen_attempt: Option<std::time::Instant>,
}

impl RedbCommitter {
    fn reopen(&mut self) -> Result<()> {
        let old = {
            let mut slot = self.slot.write().map_err(|_| StoreError::Poisoned)?;
            match std::mem::replace(&mut *slot, Slot::Reopening) {
                Slot::Open(db) => Some(db),
                Slot::Reopening => None,
                Slot::Closed => {
                    *slot = Slot::Closed;
                    return Err(StoreError::Closed);
                }
            }
        };
        if let Some(mut db) = old {
            // The file lock goes with the last handle: wait for reads still using it.
            let started = std::time::Instant::now();
            loop {
                match Arc::try_unwrap(db) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(shared) if started.elapsed() < REOPEN_WAIT => {
                        db = shared;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(shared) => {
                        if let Ok(mut slot) = self.slot.write() {
                            *slot = Slot::Open(shared);
                        }
                        return Err(reopening());
                    }
                }
            }
        }
        let db = (self.open)()?;
        // The file was unlocked in between: take in whatever kinds it holds now.
        let txn = db.begin_read().map_err(backend)?;
        let claims = txn.open_table(definition(Table::Claims)).map_err(backend)?;
        self.kinds.add(&ClaimKinds::read(&claims)?);
        drop((claims, txn));
        *self.slot.write().map_err(|_| StoreError::Poisoned)? = Slot::Open(Arc::new(db));
        self.needs_reopen = false;
        tracing::info!("redb store reopened after a failed write");
        Ok(())
    }

    /// After a failed write: reopens at most once per [`REOPEN_INTERVAL`], and only once
    /// the space check passes; otherwise refuses the write at once.
    fn reopen_when_space(&mut self) -> Result<()> {
        let waiting = || {
            StoreError::io(
                "waiting for space after a failed write",
                std::io::ErrorKind::StorageFull.into(),
            )
        };
        if self
            .last_reopen_attempt
            .is_some_and(|at| at.elapsed() < REOPEN_INTERVAL)
        {
            return Err(waiting());
        }
        self.last_reopen_attempt = Some(std::time::Instant::now());
        if !(self.has_space)() {
            return Err(waiting());
        }
        self.reopen()
    }

    /// Runs `write` on a usable handle, reopening first if a write failed before, and
    /// marks the handle for reopening if this one fails in redb.
    fn write<T>(&mut self, write: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        if self.needs_reopen {
            self.reopen_when_space()?;
        }
        let db = database(&self.slot)?;
        let result = write(&db);
        if matches!(result, Err(StoreError::Backend(_))) {
            self.needs_reopen = true;
        }
        result
    }
}

/// Whether a megabyte can be written and made durable in `dir` (then removed): a full disk
/// refuses it.
fn has_space(dir: &Path) -> bool {
    use std::io::Write as _;
    let probe = dir.join(".scrip-space-probe");
    let written = std::fs::File::create(&probe).and_then(|mut file| {
        file.write_all(&[0u8; 1 << 20])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    written.is_ok()
}

fn reopening() -> StoreError {
    StoreError::Backend(Arc::new(std::io::Error::other(
        "the redb store is being reopened after a failed write",
    )))
}

impl BatchCommitter for RedbCommitter {
    fn commit_batch(&mut self, units: &[Unit]) -> Result<Vec<CommitOutcome>> {
        // Before anything commits, so that no read sees a claim of an unmarked kind.
        for claim in units.iter().flat_map(|unit| &unit.claims) {
            self.kinds.mark(claim.id.kind());
        }
        let kinds = Arc::clone(&self.kinds);
        self.write(|db| {
            let txn = db.begin_write().map_err(backend)?;
            let outcomes = {
                let mut tables = WriteTables::open(&txn, kinds)?;
                units
                    .iter()
                    .map(|unit| apply_unit(&mut tables, unit))
                    .collect::<Result<Vec<_>>>()?
            };
            // Nothing of the batch is visible (or durable) before this returns `Ok`; an
            // error anywhere above drops the transaction, which aborts it.
            txn.commit().map_err(backend)?;
            Ok(outcomes)
        })
    }

    fn probe(&mut self) -> Result<()> {
        // An empty transaction still writes and syncs the commit header.
        self.write(|db| db.begin_write().map_err(backend)?.commit().map_err(backend))
    }

    fn close(&mut self) -> Result<()> {
        close_slot(&self.slot);
        Ok(())
    }
}

/// A durable store in one redb file: the server's default.
///
/// [`RecordStore::close`] releases the database file (and its lock) even while other
/// handles on the store are still alive, so a restarted server in the same process can
/// open it again at once; after closing, every call fails with [`StoreError::Closed`].
///
/// After a failed write (a full disk), redb refuses every later write on the same
/// handle; this store then reopens the database from its file before the next write or
/// [`RecordStore::check_writable`] probe, so it serves again once space is back, without
/// a restart and without losing anything acknowledged.
///
/// [`RecordStore::close`]: crate::RecordStore::close
/// [`RecordStore::check_writable`]: crate::RecordStore::check_writable
pub type RedbStore = Store<RedbBackend>;

/// The read side of a [`RedbStore`]: the database handle, read through MVCC read
/// transactions that never block the writer.
pub struct RedbBackend {
    slot: Arc<RwLock<Slot>>,
    kinds: Arc<ClaimKinds>,
}

impl Backend for RedbBackend {
    type Tables = ReadTables;

    fn read<T>(&self, read: impl FnOnce(&ReadTables) -> Result<T>) -> Result<T> {
        let db = database(&self.slot)?;
        let txn = db.begin_read().map_err(backend)?;
        read(&ReadTables::open(&txn, Arc::clone(&self.kinds))?)
    }

    fn release(&self) {
        // A read in flight holds its own handle for its duration; the file is released
        // when it finishes.
        close_slot(&self.slot);
    }
}

impl RedbStore {
    /// Opens (or creates) the store at `path` (a file). Blocking: run it before serving,
    /// or in `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::io("creating the store directory", e))?;
        }
        let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => parent.to_path_buf(),
            None => std::path::PathBuf::from("."),
        };
        Self::open_with(
            move || Database::create(&path).map_err(backend),
            move || has_space(&dir),
        )
    }

    /// Opens the store on a database that `open` makes, and makes again to recover after
    /// a failed write, once `has_space` says the storage can take writes again: for
    /// instance on a custom [`redb::StorageBackend`]
    /// (`redb::Builder::new().create_with_backend(..)`), which is how the full-disk tests
    /// inject write failures. `open` must open the database in redb's default
    /// `ConcurrencyMode::ExclusiveWriter` (redb does not let this be checked; it is the
    /// caller's duty): the store keeps in memory which claim kinds the file holds, which
    /// no other process may change while the store holds the file.
    pub fn open_with(
        open: impl Fn() -> Result<Database> + Send + 'static,
        has_space: impl Fn() -> bool + Send + 'static,
    ) -> Result<Self> {
        let db = open()?;
        let kinds = {
            let txn = db.begin_write().map_err(backend)?;
            let kinds = {
                let mut tables = WriteTables::open(&txn, Arc::new(ClaimKinds::all()))?;
                check_format(&mut tables)?;
                ClaimKinds::read(tables.table(Table::Claims)?)?
            };
            txn.commit().map_err(backend)?;
            Arc::new(kinds)
        };
        let slot = Arc::new(RwLock::new(Slot::Open(Arc::new(db))));
        let committer = RedbCommitter {
            slot: Arc::clone(&slot),
            kinds: Arc::clone(&kinds),
            open: Box::new(open),
            has_space: Box::new(has_space),
            needs_reopen: false,
            last_reopen_attempt: None,
        };
        Store::group_committed("redb", RedbBackend { slot, kinds }, committer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClaimId, Claimant};
    use crate::RecordStore;
    use scrip_tokens::{CoinId, ContentDigest, MerchantId, Timestamp};

    fn claim_unit(id: ClaimId) -> Unit {
        Unit::new(
            Claimant::Merchant(MerchantId(uuid::Uuid::from_u128(1))),
            Timestamp::from_unix_millis(1_767_225_600_000),
        )
        .claim(id, ContentDigest::of(b"payment"))
    }

    #[test]
    fn claim_kinds_read_from_a_file_are_exactly_the_kinds_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("kinds.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut claims = txn.open_table(definition(Table::Claims)).unwrap();
            for key in [&b""[..], &[2, 1, 2], &[2, 9], &[8; 33], &[255]] {
                claims.insert(key, &b"v"[..]).unwrap();
            }
            let kinds = ClaimKinds::read(&claims).unwrap();
            for kind in 0..=255u8 {
                assert_eq!(
                    kinds.may_hold(&[kind, 0]),
                    [2, 8, 255].contains(&kind),
                    "kind {kind}"
                );
            }
            // Nothing is ever skipped for a key that has no kind.
            assert!(kinds.may_hold(b""));
        }
        txn.commit().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_written_before_the_store_opened_its_file_is_found() {
        // As scrip 0.1 left it: a coin claimed under its bare id.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        let coin = ClaimId::LegacyCoinId(CoinId(uuid::Uuid::from_u128(5)));
        let held = crate::model::ExistingClaim {
            claimant: Claimant::Merchant(MerchantId(uuid::Uuid::from_u128(1))),
            claimed_at: Timestamp::from_unix_millis(1_700_000_000_000),
            digest: ContentDigest::of(b"payment"),
        };
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(definition(Table::Claims))
                .unwrap()
                .insert(
                    coin.key_bytes().as_slice(),
                    scrip_tokens::codec::encode(&held).unwrap().as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.claims(&[coin]).await.unwrap(), vec![Some(held)]);
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_of_a_kind_the_file_never_held_is_found_once_committed_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        let coin = ClaimId::LegacyCoinId(CoinId(uuid::Uuid::from_u128(5)));
        let deposit = ClaimId::Deposit(scrip_tokens::DepositId(uuid::Uuid::from_u128(6)));
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(
            store.claims(std::slice::from_ref(&coin)).await.unwrap(),
            vec![None]
        );
        assert_eq!(
            store.commit(claim_unit(coin.clone())).await.unwrap(),
            CommitOutcome::Committed
        );
        assert!(store.claims(std::slice::from_ref(&coin)).await.unwrap()[0].is_some());
        // A second claim of the id, now that its kind is held: a repeat, not a commit.
        assert!(matches!(
            store.commit(claim_unit(coin.clone())).await.unwrap(),
            CommitOutcome::Repeated { .. }
        ));
        store.close().await.unwrap();

        let store = RedbStore::open(&path).unwrap();
        assert!(store.claims(std::slice::from_ref(&coin)).await.unwrap()[0].is_some());
        assert!(matches!(
            store.commit(claim_unit(coin)).await.unwrap(),
            CommitOutcome::Repeated { .. }
        ));
        assert_eq!(
            store.commit(claim_unit(deposit.clone())).await.unwrap(),
            CommitOutcome::Committed
        );
        assert!(store.claims(&[deposit]).await.unwrap()[0].is_some());
        store.close().await.unwrap();
    }
}
