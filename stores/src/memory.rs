//! `MemoryStore`: everything in RAM, for tests and demos. Same semantics as the durable
//! backends except durability.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Instant;

use async_trait::async_trait;
use scrip_tokens::Currency;

use crate::engine::{self, apply_unit};
use crate::model::{ClaimId, CommitOutcome, ExistingClaim, LedgerAccount, LedgerEntry, Unit};
use crate::tables::MemTables;
use crate::{Collection, RecordStore, Result, StoreError, StoreStats};

/// A store that lives in memory and dies with the process.
#[derive(Default)]
pub struct MemoryStore {
    tables: RwLock<MemTables>,
    closed: AtomicBool,
    units: AtomicU64,
    batches: AtomicU64,
    batch_micros: AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read<T>(&self, f: impl FnOnce(&MemTables) -> Result<T>) -> Result<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let tables = self.tables.read().map_err(|_| StoreError::Poisoned)?;
        f(&tables)
    }
}

#[async_trait]
impl RecordStore for MemoryStore {
    async fn commit_many(&self, units: Vec<Unit>) -> Result<Vec<CommitOutcome>> {
        for unit in &units {
            unit.validate()?;
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let started = Instant::now();
        let outcomes = {
            let mut tables = self.tables.write().map_err(|_| StoreError::Poisoned)?;
            units
                .iter()
                .map(|unit| apply_unit(&mut *tables, unit))
                .collect::<Result<Vec<_>>>()?
        };
        self.units.fetch_add(units.len() as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(outcomes)
    }

    async fn claims(&self, ids: &[ClaimId]) -> Result<Vec<Option<ExistingClaim>>> {
        self.read(|t| engine::claims(t, ids))
    }

    async fn balance(&self, account: &LedgerAccount, currency: Currency) -> Result<i128> {
        self.read(|t| engine::balance(t, account, currency))
    }

    async fn balances(
        &self,
        after: Option<(LedgerAccount, Currency)>,
        limit: usize,
    ) -> Result<Vec<(LedgerAccount, Currency, i128)>> {
        self.read(|t| engine::balances(t, after.as_ref(), limit))
    }

    async fn ledger_entries(
        &self,
        account: &LedgerAccount,
        currency: Currency,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>> {
        self.read(|t| engine::ledger_entries(t, account, currency, after_seq, limit))
    }

    async fn get(&self, collection: Collection, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(|t| engine::document(t, collection, key))
    }

    async fn scan(
        &self,
        collection: Collection,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.read(|t| engine::documents(t, collection, after, limit))
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            units: self.units.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batch_micros: self.batch_micros.load(Ordering::Relaxed),
        }
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
