//! `MemoryStore`: everything in RAM, for tests and demos. Same semantics as the durable
//! backends except durability.

use std::sync::{Arc, RwLock};

use crate::engine::apply_unit;
use crate::model::{CommitOutcome, Unit};
use crate::store::{Backend, BatchCommitter, Store};
use crate::tables::MemTables;
use crate::{Result, StoreError};

/// A store that lives in memory and dies with the process.
pub type MemoryStore = Store<MemoryBackend>;

/// Tables in memory, shared by readers and the writer: the memory backend, and the file
/// backend's image of its log.
#[derive(Default)]
pub struct MemoryBackend {
    tables: Arc<RwLock<MemTables>>,
}

impl MemoryBackend {
    /// Backend over `tables`.
    pub(crate) fn new(tables: MemTables) -> Self {
        MemoryBackend {
            tables: Arc::new(RwLock::new(tables)),
        }
    }

    /// The tables, for the writer that changes them.
    pub(crate) fn tables(&self) -> Arc<RwLock<MemTables>> {
        Arc::clone(&self.tables)
    }
}

impl Backend for MemoryBackend {
    type Tables = MemTables;

    fn read<T>(&self, read: impl FnOnce(&MemTables) -> Result<T>) -> Result<T> {
        read(&*self.tables.read().map_err(|_| StoreError::Poisoned)?)
    }
}

/// Applies batches straight to the tables: nothing to make durable.
struct MemoryCommitter {
    tables: Arc<RwLock<MemTables>>,
}

impl BatchCommitter for MemoryCommitter {
    fn commit_batch(&mut self, units: &[Unit]) -> Result<Vec<CommitOutcome>> {
        let mut tables = self.tables.write().map_err(|_| StoreError::Poisoned)?;
        units
            .iter()
            .map(|unit| apply_unit(&mut *tables, unit))
            .collect()
    }

    fn probe(&mut self) -> Result<()> {
        Ok(())
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let backend = MemoryBackend::default();
        let committer = MemoryCommitter {
            tables: backend.tables(),
        };
        Store::inline(backend, committer)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}
