//! `RedbStore`: the embedded default. Each group-committed batch is one redb write
//! transaction (durability `Immediate`: fsynced before commit returns); the engine's checks
//! run inside that transaction. Reads use redb's MVCC read transactions and never block
//! writes. Claims live in a log-structured index ([`claims`], store format 3), so that a
//! claim costs an append rather than its own B-tree leaf. The file is opened for this
//! process alone (redb's exclusive open), which the index's in-memory parts rely on.

mod claim_map;
mod claims;

use std::path::Path;
use std::sync::{Arc, RwLock};

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use crate::engine::{apply_unit, KvGet, KvPut, KvRead, Pairs, Table};
use crate::model::{CommitOutcome, Unit};
use crate::store::{Backend, BatchCommitter, Store};
use crate::{Result, StoreError};
use claim_map::ClaimMap;
pub use claims::IndexLimits as ClaimsIndexLimits;
use claims::{ClaimsIndex, ClaimsRead, ClaimsWrite, IndexWriter};

type Bytes = &'static [u8];

/// The tables kept as plain B-trees: all but the claims, which [`claims`] indexes.
const STORED: [Table; 4] = [
    Table::Balances,
    Table::Entries,
    Table::Documents,
    Table::Meta,
];

fn definition(table: Table) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(table.name())
}

fn meta_definition() -> TableDefinition<'static, Bytes, Bytes> {
    definition(Table::Meta)
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked(e.to_string()),
        other => StoreError::backend(other),
    }
}

/// Every table of one transaction, open at once: the plain tables in [`STORED`] order,
/// and the claims index.
pub(crate) struct OpenTables<T, C> {
    tables: Vec<T>,
    claims: C,
}

/// The tables of a write transaction.
type WriteTables<'txn> = OpenTables<redb::Table<'txn, Bytes, Bytes>, ClaimsWrite<'txn>>;

/// The tables of a read transaction.
pub(crate) type ReadTables = OpenTables<ReadOnlyTable<Bytes, Bytes>, ClaimsRead>;

impl<T, C> OpenTables<T, C> {
    fn table(&self, table: Table) -> Result<&T> {
        STORED
            .iter()
            .position(|t| *t == table)
            .and_then(|i| self.tables.get(i))
            .ok_or(StoreError::Corrupted("missing table".into()))
    }
}

fn open_stored(txn: &WriteTransaction) -> Result<Vec<redb::Table<'_, Bytes, Bytes>>> {
    STORED
        .iter()
        .map(|t| txn.open_table(definition(*t)).map_err(backend))
        .collect()
}

impl<'txn> WriteTables<'txn> {
    fn open(
        txn: &'txn WriteTransaction,
        index: Arc<ClaimsIndex>,
        next_seq: u64,
        stage: ClaimMap,
    ) -> Result<Self> {
        Ok(OpenTables {
            tables: open_stored(txn)?,
            claims: ClaimsWrite::open(txn, index, next_seq, stage)?,
        })
    }

    fn table_mut(&mut self, table: Table) -> Result<&mut redb::Table<'txn, Bytes, Bytes>> {
        STORED
            .iter()
            .position(|t| *t == table)
            .and_then(|i| self.tables.get_mut(i))
            .ok_or(StoreError::Corrupted("missing table".into()))
    }
}

impl ReadTables {
    /// The tables as the snapshot `txn` sees them, with the claims index's `layout` taken
    /// with it.
    fn open(
        txn: &ReadTransaction,
        index: &Arc<ClaimsIndex>,
        layout: Arc<claims::Layout>,
    ) -> Result<Self> {
        let tables = STORED
            .iter()
            .map(|t| txn.open_table(definition(*t)).map_err(backend))
            .collect::<Result<Vec<_>>>()?;
        let generation = STORED
            .iter()
            .position(|t| *t == Table::Meta)
            .and_then(|i| tables.get(i))
            .ok_or(StoreError::Corrupted("missing table".into()))
            .and_then(claims::snapshot_generation)?;
        Ok(OpenTables {
            tables,
            claims: ClaimsRead::open(txn, index, layout, generation)?,
        })
    }
}

fn get_stored(table: &impl ReadableTable<Bytes, Bytes>, key: &[u8]) -> Result<Option<Vec<u8>>> {
    Ok(table.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
}

fn range_stored(
    table: &impl ReadableTable<Bytes, Bytes>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Pairs> {
    let iter = match end {
        Some(end) => table.range::<&[u8]>(start..end),
        None => table.range::<&[u8]>(start..),
    }
    .map_err(backend)?;
    iter.take(limit)
        .map(|item| {
            let (k, v) = item.map_err(backend)?;
            Ok((k.value().to_vec(), v.value().to_vec()))
        })
        .collect()
}

impl<T: ReadableTable<Bytes, Bytes>, C: claims::ClaimsView> KvGet for OpenTables<T, C> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match table {
            Table::Claims => self.claims.get(key),
            other => get_stored(self.table(other)?, key),
        }
    }
}

impl<T: ReadableTable<Bytes, Bytes>, C: claims::ClaimsView> KvRead for OpenTables<T, C> {
    fn range(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> Result<Pairs> {
        match table {
            Table::Claims => self.claims.range(start, end, limit),
            other => range_stored(self.table(other)?, start, end, limit),
        }
    }
}

impl KvPut for WriteTables<'_> {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        match (table, value) {
            // Claims are only ever made (`replace`) and undone (`restore`).
            (Table::Claims, Some(v)) => match self.claims.claim(&key, &v)? {
                None => Ok(()),
                Some(_) => Err(StoreError::InvalidUnit("a claim is never overwritten")),
            },
            (Table::Claims, None) => self.claims.unclaim(&key),
            (other, Some(v)) => {
                self.table_mut(other)?
                    .insert(key.as_slice(), v.as_slice())
                    .map_err(backend)?;
                Ok(())
            }
            (other, None) => {
                self.table_mut(other)?
                    .remove(key.as_slice())
                    .map_err(backend)?;
                Ok(())
            }
        }
    }

    /// A claim is appended to the log unless its id is held; a held id's claim is left
    /// as it is (and handed back), which is what writing it and undoing the write leaves.
    fn replace(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>> {
        match table {
            Table::Claims => self.claims.claim(key, value),
            other => Ok(self
                .table_mut(other)?
                .insert(key, value)
                .map_err(backend)?
                .map(|old| old.value().to_vec())),
        }
    }

    /// Undoes a [`KvPut::replace`]: a claim this transaction appended is taken out of the
    /// log again; a held claim was never touched.
    fn restore(&mut self, table: Table, key: Vec<u8>, old: Option<Vec<u8>>) -> Result<()> {
        match (table, old) {
            (Table::Claims, None) => self.claims.unclaim(&key),
            (Table::Claims, Some(_)) => Ok(()),
            (other, old) => self.put(other, key, old),
        }
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
    index: Arc<ClaimsIndex>,
    claims: IndexWriter,
    limits: ClaimsIndexLimits,
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
        // The file was unlocked in between, and the failed write may or may not have
        // landed: load the claims index again from what the file holds now.
        let (loaded, writer) = load_index(&db, self.limits)?;
        self.index.replace_with(loaded)?;
        self.claims = writer;
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
            self.index.kinds.mark(claim.id.kind());
        }
        // A reopen loads the index again (its log's next sequence number included), so it
        // comes before anything is read from the index.
        if self.needs_reopen {
            self.reopen_when_space()?;
        }
        self.claims.check_room(&self.index)?;
        let index = Arc::clone(&self.index);
        let next_seq = self.claims.next_seq();
        let stage = self.claims.take_stage();
        let (outcomes, staged) = self.write(|db| {
            let txn = db.begin_write().map_err(backend)?;
            let (outcomes, staged) = {
                let mut tables = WriteTables::open(&txn, index, next_seq, stage)?;
                let outcomes = units
                    .iter()
                    .map(|unit| apply_unit(&mut tables, unit))
                    .collect::<Result<Vec<_>>>()?;
                (outcomes, tables.claims.finish()?)
            };
            // Nothing of the batch is visible (or durable) before this returns `Ok`; an
            // error anywhere above drops the transaction, which aborts it.
            txn.commit().map_err(backend)?;
            Ok((outcomes, staged))
        })?;
        // Readers find the batch's claims from here on, before its submitters hear back.
        if let Err(e) = self.claims.committed(&self.index, staged) {
            // Committed, but not in memory: load the index from the file before the next
            // write.
            self.needs_reopen = true;
            return Err(e);
        }
        Ok(outcomes)
    }

    /// The claims index's upkeep the last batch made due (writing a full log out as a
    /// run, chunks of a compaction), after the batch's submitters have their answers.
    fn maintain(&mut self) {
        if self.needs_reopen {
            return;
        }
        let Ok(db) = database(&self.slot) else {
            return;
        };
        if let Err(e) = self.claims.upkeep(&db, &self.index) {
            // Whatever failed, the index in memory may no longer be the file's (a commit
            // may have landed, a compaction's state is gone): load it again from the file
            // before the next write, which also deletes a compaction's partial output.
            self.needs_reopen = true;
            tracing::warn!(error = %e, "claims index upkeep failed; the store reloads it before the next write");
        }
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
    index: Arc<ClaimsIndex>,
}

impl Backend for RedbBackend {
    type Tables = ReadTables;

    fn read<T>(&self, read: impl FnOnce(&ReadTables) -> Result<T>) -> Result<T> {
        let db = database(&self.slot)?;
        let (txn, layout) = self.index.snapshot(|| db.begin_read().map_err(backend))?;
        read(&ReadTables::open(&txn, &self.index, layout)?)
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
        Self::open_with_limits(path, ClaimsIndexLimits::default())
    }

    /// [`RedbStore::open`] with other sizes for the claims index than the defaults (a
    /// smaller log for a small device, tiny ones in tests).
    pub fn open_with_limits(path: impl AsRef<Path>, limits: ClaimsIndexLimits) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => parent.to_path_buf(),
            None => std::path::PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::io("creating the store directory", e))?;
        Self::open_with_both(
            move || Database::create(&path).map_err(backend),
            move || has_space(&dir),
            limits,
        )
    }

    /// Opens the store on a database that `open` makes, and makes again to recover after
    /// a failed write, once `has_space` says the storage can take writes again: for
    /// instance on a custom [`redb::StorageBackend`]
    /// (`redb::Builder::new().create_with_backend(..)`), which is how the full-disk tests
    /// inject write failures. `open` must open the database in redb's default
    /// `ConcurrencyMode::ExclusiveWriter` (redb does not let this be checked; it is the
    /// caller's duty): the store keeps its claims index's log and filters in memory,
    /// which no other process may change while the store holds the file.
    pub fn open_with(
        open: impl Fn() -> Result<Database> + Send + 'static,
        has_space: impl Fn() -> bool + Send + 'static,
    ) -> Result<Self> {
        Self::open_with_both(open, has_space, ClaimsIndexLimits::default())
    }

    fn open_with_both(
        open: impl Fn() -> Result<Database> + Send + 'static,
        has_space: impl Fn() -> bool + Send + 'static,
        limits: ClaimsIndexLimits,
    ) -> Result<Self> {
        let db = open()?;
        let (index, claims) = load_index(&db, limits)?;
        let index = Arc::new(index);
        let slot = Arc::new(RwLock::new(Slot::Open(Arc::new(db))));
        let committer = RedbCommitter {
            slot: Arc::clone(&slot),
            index: Arc::clone(&index),
            claims,
            limits,
            open: Box::new(open),
            has_space: Box::new(has_space),
            needs_reopen: false,
            last_reopen_attempt: None,
        };
        Store::group_committed("redb", RedbBackend { slot, index }, committer)
    }
}

/// Checks (or migrates) the file's format, creates the plain tables, and loads the
/// claims index, in one write transaction.
fn load_index(db: &Database, limits: ClaimsIndexLimits) -> Result<(ClaimsIndex, IndexWriter)> {
    let txn = db.begin_write().map_err(backend)?;
    let loaded = claims::load(&txn, meta_definition(), limits)?;
    drop(open_stored(&txn)?);
    txn.commit().map_err(backend)?;
    Ok(loaded)
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

    /// A coin's claim whose spend id is `n`'s bytes.
    fn coin(n: u64) -> ClaimId {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        // Not in key order of `n`: claims arrive in no order.
        id[8..16].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        ClaimId::Coin(scrip_tokens::CoinSpendId(id))
    }

    const TINY: ClaimsIndexLimits = ClaimsIndexLimits {
        log_max: 3,
        fan_in: 2,
        chunk: 2,
    };

    /// A claim as a merchant's payment holds it.
    fn held_claim() -> crate::model::ExistingClaim {
        crate::model::ExistingClaim {
            claimant: Claimant::Merchant(MerchantId(uuid::Uuid::from_u128(1))),
            claimed_at: Timestamp::from_unix_millis(1_767_225_600_000),
            digest: ContentDigest::of(b"payment"),
        }
    }

    /// The store format the file at `path` says it has.
    fn stored_format(path: &Path) -> Option<u16> {
        let db = Database::create(path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(definition(Table::Meta)).unwrap();
        let raw = meta.get(crate::engine::META_FORMAT).unwrap()?;
        Some(u16::from_le_bytes(raw.value().try_into().unwrap()))
    }

    fn table_names(path: &Path) -> Vec<String> {
        use redb::TableHandle;
        let db = Database::create(path).unwrap();
        let txn = db.begin_read().unwrap();
        let mut names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_string())
            .collect();
        names.sort();
        names
    }

    /// Every claim in `0..n`: held by the store, and refused when claimed again.
    async fn assert_all_held(store: &RedbStore, n: u64) {
        let ids: Vec<ClaimId> = (0..n).map(coin).collect();
        let found = store.claims(&ids).await.unwrap();
        for (i, claim) in found.iter().enumerate() {
            assert!(claim.is_some(), "claim {i} of {n} not found");
        }
        for i in [0, n / 2, n.saturating_sub(1)] {
            assert!(
                matches!(
                    store.commit(claim_unit(coin(i))).await.unwrap(),
                    CommitOutcome::Repeated { .. }
                ),
                "claim {i} taken again"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_stay_held_through_flushes_compactions_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        for n in 0..300 {
            assert_eq!(
                store.commit(claim_unit(coin(n))).await.unwrap(),
                CommitOutcome::Committed
            );
            if n % 37 == 0 {
                assert_all_held(&store, n + 1).await;
            }
        }
        assert_all_held(&store, 300).await;
        assert_eq!(store.claims(&[coin(300)]).await.unwrap(), vec![None]);
        {
            let layout = store.backend().index.layout_for_tests();
            let deepest = layout.iter().map(|(level, _)| *level).max().unwrap();
            // 300 claims in runs of 3, merged two at a time: several levels deep, and the
            // merging keeps the number of runs logarithmic.
            assert!(deepest >= 4, "{layout:?}");
            assert!(
                layout.len() <= 2 * TINY.fan_in * (usize::from(deepest) + 1),
                "{layout:?}"
            );
            let held: u64 = layout.iter().map(|(_, claims)| claims).sum();
            assert!((300 - 3..=300).contains(&held), "{layout:?}");
        }
        store.close().await.unwrap();

        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        assert_all_held(&store, 300).await;
        assert_eq!(store.claims(&[coin(300)]).await.unwrap(), vec![None]);
        store.close().await.unwrap();
        // And with the default sizes: the sizes are not part of the format.
        let store = RedbStore::open(&path).unwrap();
        assert_all_held(&store, 300).await;
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_during_flushes_and_compactions_see_every_committed_claim() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open_with_limits(dir.path().join("s.redb"), TINY).unwrap());
        let committed = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (store, committed, done) = (
                    Arc::clone(&store),
                    Arc::clone(&committed),
                    Arc::clone(&done),
                );
                tokio::spawn(async move {
                    let mut reads = 0u64;
                    while !done.load(Ordering::Acquire) {
                        let n = committed.load(Ordering::Acquire);
                        let ids: Vec<ClaimId> = (0..n).map(coin).collect();
                        for (i, claim) in store.claims(&ids).await.unwrap().iter().enumerate() {
                            assert!(claim.is_some(), "committed claim {i} of {n} not seen");
                        }
                        reads += 1;
                        tokio::task::yield_now().await;
                    }
                    reads
                })
            })
            .collect();
        for n in 0..400 {
            assert_eq!(
                store.commit(claim_unit(coin(n))).await.unwrap(),
                CommitOutcome::Committed
            );
            committed.store(n + 1, Ordering::Release);
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            assert!(reader.await.unwrap() > 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_left_by_an_interrupted_compaction_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        for n in 0..20 {
            store.commit(claim_unit(coin(n))).await.unwrap();
        }
        store.close().await.unwrap();
        {
            // What a crash in the middle of a compaction leaves: an output run the
            // manifest does not name (here holding a claim no unit ever made), and its
            // filter.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(TableDefinition::<Bytes, Bytes>::new("claims-blocks-999"))
                .unwrap()
                .insert(coin(1_000).key_bytes().as_slice(), &b"not a claim"[..])
                .unwrap();
            let mut key = 999u64.to_be_bytes().to_vec();
            key.extend_from_slice(&0u32.to_be_bytes());
            txn.open_table(TableDefinition::<Bytes, Bytes>::new("claims-filters"))
                .unwrap()
                .insert(key.as_slice(), &[0xff; 8][..])
                .unwrap();
            txn.commit().unwrap();
        }
        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        assert_all_held(&store, 20).await;
        assert_eq!(store.claims(&[coin(1_000)]).await.unwrap(), vec![None]);
        store.close().await.unwrap();
        assert!(!table_names(&path).contains(&"claims-blocks-999".to_string()));
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let filters = txn
            .open_table(TableDefinition::<Bytes, Bytes>::new("claims-filters"))
            .unwrap();
        let mut from = 999u64.to_be_bytes().to_vec();
        from.extend_from_slice(&0u32.to_be_bytes());
        let left = filters.range::<&[u8]>(from.as_slice()..).unwrap().next();
        assert!(left.is_none(), "the filter of run 999 is left");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_format_1_file_is_migrated_and_its_claims_table_merged_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        let held = held_claim();
        {
            // As format 1 left it: every claim in one `claims` B-tree, format 1 in meta.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let mut claims = txn.open_table(definition(Table::Claims)).unwrap();
            for n in 0..10 {
                claims
                    .insert(
                        coin(n).key_bytes().as_slice(),
                        scrip_tokens::codec::encode(&held).unwrap().as_slice(),
                    )
                    .unwrap();
            }
            drop(claims);
            txn.open_table(definition(Table::Meta))
                .unwrap()
                .insert(crate::engine::META_FORMAT, 1u16.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        assert_eq!(store.claims(&[coin(3)]).await.unwrap(), vec![Some(held)]);
        assert_all_held(&store, 10).await;
        for n in 10..100 {
            store.commit(claim_unit(coin(n))).await.unwrap();
        }
        assert_all_held(&store, 100).await;
        store.close().await.unwrap();
        assert!(
            !table_names(&path).contains(&"claims".to_string()),
            "format 1's table was merged into a run and deleted"
        );
        assert_eq!(stored_format(&path), Some(claims::REDB_FORMAT_VERSION));
        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        assert_all_held(&store, 100).await;
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_format_2_file_is_migrated_and_its_entry_runs_merged_into_block_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        let held = held_claim();
        {
            // As format 2 left it: a run of one table entry per claim.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            let value = scrip_tokens::codec::encode(&held).unwrap();
            let claims = |range: std::ops::Range<u64>| -> Vec<(Vec<u8>, Vec<u8>)> {
                range
                    .map(|n| (coin(n).key_bytes(), value.clone()))
                    .collect()
            };
            // 40 claims in a run, 2 still in the log (fewer than TINY's `log_max`).
            claims::write_format_2_for_tests(
                &txn,
                definition(Table::Meta),
                &claims(0..40),
                &claims(40..42),
            )
            .unwrap();
            txn.commit().unwrap();
        }
        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        assert_eq!(
            store.claims(&[coin(7), coin(41)]).await.unwrap(),
            vec![Some(held.clone()), Some(held)]
        );
        assert_all_held(&store, 42).await;
        for n in 42..200 {
            store.commit(claim_unit(coin(n))).await.unwrap();
        }
        assert_all_held(&store, 200).await;
        store.close().await.unwrap();
        let names = table_names(&path);
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("claims-run-") || n == "claims-log"),
            "format 2's run was merged into block runs and its log emptied: {names:?}"
        );
        assert!(names.iter().any(|n| n.starts_with("claims-blocks-")));
        assert_eq!(stored_format(&path), Some(3));
        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        assert_all_held(&store, 200).await;
        assert_eq!(store.claims(&[coin(200)]).await.unwrap(), vec![None]);
        store.close().await.unwrap();
    }

    #[test]
    fn a_file_of_a_later_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(definition(Table::Meta))
                .unwrap()
                .insert(crate::engine::META_FORMAT, 4u16.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(
            RedbStore::open(&path),
            Err(StoreError::UnsupportedFormat {
                found: 4,
                supported: 3
            })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_log_position_never_overwrites_a_logged_claim() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        let store = RedbStore::open(&path).unwrap();
        for n in 0..3 {
            store.commit(claim_unit(coin(n))).await.unwrap();
        }
        store.close().await.unwrap();
        {
            // A writer that believes the log empty (as one did after a failed commit that
            // landed all the same) appends a claim: it must go after the logged ones.
            let db = Database::create(&path).unwrap();
            let (index, _) = load_index(&db, ClaimsIndexLimits::default()).unwrap();
            let txn = db.begin_write().unwrap();
            let mut claims = ClaimsWrite::open(&txn, Arc::new(index), 0, ClaimMap::new()).unwrap();
            let value = scrip_tokens::codec::encode(&held_claim()).unwrap();
            assert_eq!(claims.claim(&coin(3).key_bytes(), &value).unwrap(), None);
            claims.finish().unwrap();
            txn.commit().unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_all_held(&store, 3).await;
        assert!(store.claims(&[coin(3)]).await.unwrap()[0].is_some());
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_with_a_claims_index_but_no_format_is_refused_not_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrip.redb");
        let store = RedbStore::open_with_limits(&path, TINY).unwrap();
        for n in 0..10 {
            store.commit(claim_unit(coin(n))).await.unwrap();
        }
        store.close().await.unwrap();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(definition(Table::Meta))
                .unwrap()
                .remove(crate::engine::META_FORMAT)
                .unwrap();
            txn.commit().unwrap();
        }
        let before = table_names(&path);
        assert!(matches!(
            RedbStore::open_with_limits(&path, TINY),
            Err(StoreError::Corrupted(_))
        ));
        // Nothing was migrated away.
        assert_eq!(table_names(&path), before);
    }

    #[test]
    fn a_log_four_times_its_size_refuses_new_batches() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("scrip.redb")).unwrap();
        let limits = ClaimsIndexLimits {
            log_max: 3,
            ..ClaimsIndexLimits::default()
        };
        let (index, writer) = load_index(&db, limits).unwrap();
        assert!(writer.check_room(&index).is_ok());
        // A log its flushes never emptied (they kept failing).
        let txn = db.begin_write().unwrap();
        let mut claims = ClaimsWrite::open(&txn, Arc::new(index), 0, ClaimMap::new()).unwrap();
        for n in 0..12 {
            claims.claim(&coin(n).key_bytes(), b"v").unwrap();
        }
        claims.finish().unwrap();
        txn.commit().unwrap();
        let (index, writer) = load_index(&db, limits).unwrap();
        assert!(matches!(
            writer.check_room(&index),
            Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::StorageFull
        ));
    }
}
