//! `RedbStore`: the embedded default. Each group-committed batch is one redb write
//! transaction (durability `Immediate`: fsynced before commit returns); the engine's checks
//! run inside that transaction, so they hold even if several processes share the file in
//! redb's multi-writer mode. Reads use redb's MVCC read transactions and never block
//! writes.

use std::path::Path;
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

/// Every table of one transaction, open at once, indexed by [`Table`].
pub(crate) struct OpenTables<T> {
    tables: Vec<T>,
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
    fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        let tables = Table::ALL
            .iter()
            .map(|t| txn.open_table(definition(*t)).map_err(backend))
            .collect::<Result<Vec<_>>>()?;
        Ok(OpenTables { tables })
    }
}

impl ReadTables {
    fn open(txn: &ReadTransaction) -> Result<Self> {
        let tables = Table::ALL
            .iter()
            .map(|t| txn.open_table(definition(*t)).map_err(backend))
            .collect::<Result<Vec<_>>>()?;
        Ok(OpenTables { tables })
    }
}

impl<T: ReadableTable<Bytes, Bytes>> KvGet for OpenTables<T> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .table(table)?
            .get(key)
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }
}

impl KvPut for WriteTables<'_> {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<()> {
        let t = self
            .tables
            .get_mut(table as usize)
            .ok_or(StoreError::Corrupted("missing table".into()))?;
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
        self.write(|db| {
            let txn = db.begin_write().map_err(backend)?;
            let outcomes = {
                let mut tables = WriteTables::open(&txn)?;
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
}

impl Backend for RedbBackend {
    type Tables = ReadTables;

    fn read<T>(&self, read: impl FnOnce(&ReadTables) -> Result<T>) -> Result<T> {
        let db = database(&self.slot)?;
        let txn = db.begin_read().map_err(backend)?;
        read(&ReadTables::open(&txn)?)
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
    /// inject write failures.
    pub fn open_with(
        open: impl Fn() -> Result<Database> + Send + 'static,
        has_space: impl Fn() -> bool + Send + 'static,
    ) -> Result<Self> {
        let db = open()?;
        {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut tables = WriteTables::open(&txn)?;
                check_format(&mut tables)?;
            }
            txn.commit().map_err(backend)?;
        }
        let slot = Arc::new(RwLock::new(Slot::Open(Arc::new(db))));
        let committer = RedbCommitter {
            slot: Arc::clone(&slot),
            open: Box::new(open),
            has_space: Box::new(has_space),
            needs_reopen: false,
            last_reopen_attempt: None,
        };
        Store::group_committed("redb", RedbBackend { slot }, committer)
    }
}
