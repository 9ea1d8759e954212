//! [`RecordStore`] written once, over the two small traits a backend implements:
//!
//! - [`Backend`], the read side, shared by every caller: a consistent view of the committed
//!   tables ([`Backend::read`]) and the release of files and locks on close;
//! - [`BatchCommitter`], the write side, owned by one writer: apply a batch of validated
//!   units and make it durable with one write, probe, close.
//!
//! [`Store`] adds everything the backends share: unit validation, the closed flag, the
//! commit counters and their timing, and the choice of writer (on the caller's thread for
//! the memory backend, a group-commit thread for the durable ones). Like redb's
//! `StorageBackend`, the traits hold only what really differs between backends.
//!
//! Both traits are crate-private on purpose: their primitives work on the engine's table
//! layout, which is the on-disk format. A backend outside this crate (PostgreSQL, a point
//! of sale's own storage) implements [`RecordStore`] itself and proves it with
//! [`store_conformance!`](crate::store_conformance).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use scrip_tokens::Currency;

use crate::engine::{self, KvRead};
use crate::model::{ClaimId, CommitOutcome, ExistingClaim, LedgerAccount, LedgerEntry, Unit};
use crate::{Collection, RecordStore, Result, StoreError, StoreStats};

/// The read side of a backend.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The committed tables, as a read sees them.
    type Tables: KvRead;

    /// Runs `read` on a consistent view of the committed tables: everything durable, and
    /// nothing that is not yet. [`Store`] has already refused the call if it is closed.
    fn read<T>(&self, read: impl FnOnce(&Self::Tables) -> Result<T>) -> Result<T>;

    /// Called once on close, after the writer has closed: releases the backend's files and
    /// their lock, so that the store can be opened again at once.
    fn release(&self) {}
}

/// The write side of a backend, run by one writer at a time (on the caller's thread, or on
/// the group-commit thread).
pub(crate) trait BatchCommitter: Send + 'static {
    /// Applies `units` (already validated) in order and makes the result durable with one
    /// write. An `Err` fails every unit of the batch (none of them may be visible to
    /// readers).
    fn commit_batch(&mut self, units: &[Unit]) -> Result<Vec<CommitOutcome>>;

    /// Makes one empty write durable (recovering the backend first if a failed write left
    /// it unusable): how a store that failed to write finds out it can write again.
    fn probe(&mut self) -> Result<()>;

    /// Background upkeep the backend wants done on its writer thread (redb's claims
    /// index); called after each batch once its submitters have their answers, so it must
    /// do a bounded amount of work per call.
    fn maintain(&mut self) {}

    /// Called once when a group-committed store closes, after the last batch.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Commit counters, kept by whichever writer runs the batches.
#[derive(Default)]
pub(crate) struct Counters {
    units: AtomicU64,
    batches: AtomicU64,
    batch_micros: AtomicU64,
    /// The last durable write (batch or probe) failed, and none has succeeded since.
    failing: AtomicBool,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            units: self.units.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batch_micros: self.batch_micros.load(Ordering::Relaxed),
        }
    }

    /// Counts a batch of `units` that started at `started` and ended with `result`.
    pub(crate) fn record_batch(
        &self,
        units: usize,
        started: Instant,
        result: &Result<Vec<CommitOutcome>>,
    ) {
        self.units.fetch_add(units as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // A batch that wrote nothing (every unit a repeat or a conflict) says nothing about
        // whether the store can write.
        match result {
            Err(_) => self.set_failing(true),
            Ok(outcomes) if outcomes.contains(&CommitOutcome::Committed) => self.set_failing(false),
            Ok(_) => {}
        }
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Release);
    }

    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

/// Who runs the batches.
enum Writer {
    /// The caller's thread, one batch per call: the memory backend, whose writes cost no
    /// I/O to share.
    Inline(Mutex<Box<dyn BatchCommitter>>),
    /// A writer thread that group-commits concurrent calls: the durable backends.
    #[cfg(any(feature = "file", feature = "redb"))]
    Group(crate::group::GroupCommit),
}

/// A [`RecordStore`] over a backend `B`: `MemoryStore`, `FileStore` and `RedbStore` are
/// this type with their own backend.
pub struct Store<B> {
    /// Declared before `backend` so that it drops first: the writer thread finishes its
    /// last batch before the backend lets go of its files and their lock.
    writer: Writer,
    backend: B,
    counters: Arc<Counters>,
    closed: AtomicBool,
}

// No `B: Backend` bound on the block: the trait is crate-private and `Store` is public.
impl<B> Store<B> {
    /// A store whose batches run on the caller's thread.
    pub(crate) fn inline(backend: B, committer: impl BatchCommitter) -> Self {
        Self::with_writer(
            backend,
            Writer::Inline(Mutex::new(Box::new(committer))),
            Arc::default(),
        )
    }

    /// A store whose batches run on a group-commit writer thread named after `name`.
    #[cfg(any(feature = "file", feature = "redb"))]
    pub(crate) fn group_committed(
        name: &str,
        backend: B,
        committer: impl BatchCommitter,
    ) -> Result<Self> {
        let counters = Arc::<Counters>::default();
        let group = crate::group::GroupCommit::start(name, committer, Arc::clone(&counters))?;
        Ok(Self::with_writer(backend, Writer::Group(group), counters))
    }

    fn with_writer(backend: B, writer: Writer, counters: Arc<Counters>) -> Self {
        Store {
            writer,
            backend,
            counters,
            closed: AtomicBool::new(false),
        }
    }

    /// The backend, for what only one kind of store offers.
    #[cfg_attr(not(feature = "file"), allow(dead_code))]
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    fn read<T>(&self, read: impl FnOnce(&B::Tables) -> Result<T>) -> Result<T>
    where
        B: Backend,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.backend.read(read)
    }
}

#[async_trait]
impl<B: Backend> RecordStore for Store<B> {
    async fn commit_many(&self, units: Vec<Unit>) -> Result<Vec<CommitOutcome>> {
        for unit in &units {
            unit.validate()?;
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        match &self.writer {
            Writer::Inline(committer) => {
                let started = Instant::now();
                let mut committer = committer.lock().map_err(|_| StoreError::Poisoned)?;
                let result = committer.commit_batch(&units);
                self.counters.record_batch(units.len(), started, &result);
                committer.maintain();
                result
            }
            #[cfg(any(feature = "file", feature = "redb"))]
            Writer::Group(group) => group.submit(units).await,
        }
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
        self.counters.snapshot()
    }

    async fn check_writable(&self) -> Result<()> {
        match &self.writer {
            // Memory writes cannot run out of space.
            Writer::Inline(_) => Ok(()),
            #[cfg(any(feature = "file", feature = "redb"))]
            Writer::Group(group) => group.check_writable().await,
        }
    }

    async fn close(&self) -> Result<()> {
        let closed = match &self.writer {
            // Every batch finished on its caller's thread: nothing to wait for or flush.
            Writer::Inline(_) => Ok(()),
            #[cfg(any(feature = "file", feature = "redb"))]
            Writer::Group(group) => group.close().await,
        };
        self.closed.store(true, Ordering::Release);
        // A read in flight keeps what it holds for its duration.
        self.backend.release();
        closed
    }
}
