//! Group commit: one writer thread per durable store takes every unit submitted since its
//! last durable write, applies them in order, makes them durable with one write (one
//! fsync, one transaction commit), then answers every submitter. Throughput is therefore
//! not one fsync per request: under load, a batch holds as many units as arrived during
//! the previous fsync.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::model::{CommitOutcome, Unit};
use crate::{StoreError, StoreStats};

/// Most units in one durable write.
const MAX_BATCH_UNITS: usize = 4096;
/// Most claims + postings + writes in one durable write (bounds memory and log frames).
const MAX_BATCH_ITEMS: usize = 200_000;

/// The durable half of a backend, run on the writer thread.
pub(crate) trait BatchCommitter: Send + 'static {
    /// Applies `units` in order and makes the result durable with one write. An `Err`
    /// fails every unit of the batch (none of them may be visible to readers).
    fn commit_batch(&mut self, units: &[Unit]) -> Result<Vec<CommitOutcome>, StoreError>;

    /// Makes one empty write durable (recovering the backend first if a failed write left
    /// it unusable): how a store that failed to write finds out it can write again.
    fn probe(&mut self) -> Result<(), StoreError>;

    /// Called once when the store closes, after the last batch.
    fn close(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Least time between two probes: a public readiness check cannot make a failing store
/// fsync more often than this.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

type Reply = oneshot::Sender<Result<Vec<CommitOutcome>, StoreError>>;

enum Job {
    Commit {
        units: Vec<Unit>,
        reply: Reply,
    },
    Probe {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

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
}

/// Handle to the writer thread.
pub(crate) struct GroupCommit {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
    /// When the last probe ran and what it found.
    last_probe: tokio::sync::Mutex<Option<(Instant, Result<(), StoreError>)>>,
}

fn items(unit: &Unit) -> usize {
    1 + unit.claims.len() + unit.postings.len() + unit.writes.len()
}

impl GroupCommit {
    pub(crate) fn start(name: &str, committer: impl BatchCommitter) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name(format!("scrip-{name}-writer"))
            .spawn(move || writer_loop(committer, receiver, &thread_counters))
            .map_err(|e| StoreError::io("starting the writer thread", e))?;
        Ok(GroupCommit {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            counters,
            last_probe: tokio::sync::Mutex::new(None),
        })
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let guard = self.sender.lock().map_err(|_| StoreError::Poisoned)?;
        guard
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(job)
            .map_err(|_| StoreError::Closed)
    }

    pub(crate) async fn submit(&self, units: Vec<Unit>) -> Result<Vec<CommitOutcome>, StoreError> {
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Job::Commit { units, reply })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(crate) fn stats(&self) -> StoreStats {
        self.counters.snapshot()
    }

    /// `Ok` while writes succeed; after a failed one, the outcome of an empty durable
    /// write on the writer thread (at most one per [`PROBE_INTERVAL`]; callers in between
    /// get the last outcome).
    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        if !self.counters.failing.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut last = self.last_probe.lock().await;
        // A recent failed probe stands (a public readiness check cannot make a failing
        // store write more often); a recent successful one does not, as writes have failed
        // since.
        if let Some((at, Err(e))) = last.as_ref() {
            if at.elapsed() < PROBE_INTERVAL {
                return Err(e.clone());
            }
        }
        let (reply, answer) = oneshot::channel();
        self.send(Job::Probe { reply })?;
        let outcome = answer.await.map_err(|_| StoreError::Closed)?;
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }

    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        match self.send(Job::Close { reply }) {
            Ok(()) => {}
            Err(StoreError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Dropping the sender ends the writer loop once queued jobs are done.
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Ok(mut thread) = self.thread.lock() {
            if let Some(handle) = thread.take() {
                let _ = handle.join();
            }
        }
    }
}

fn writer_loop(
    mut committer: impl BatchCommitter,
    receiver: mpsc::Receiver<Job>,
    counters: &Counters,
) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None => match receiver.recv() {
                Ok(job) => job,
                Err(_) => {
                    let _ = committer.close();
                    return;
                }
            },
        };
        let (units, reply) = match first {
            Job::Close { reply } => {
                let _ = reply.send(committer.close());
                return;
            }
            Job::Probe { reply } => {
                let outcome = committer.probe();
                counters.failing.store(outcome.is_err(), Ordering::Release);
                let _ = reply.send(outcome);
                continue;
            }
            Job::Commit { units, reply } => (units, reply),
        };
        // Gather everything else already waiting, up to the batch limits.
        let mut batch_items: usize = units.iter().map(items).sum();
        let mut jobs: Vec<(usize, Reply)> = vec![(units.len(), reply)];
        let mut batch: Vec<Unit> = units;
        while batch.len() < MAX_BATCH_UNITS && batch_items < MAX_BATCH_ITEMS {
            match receiver.try_recv() {
                Ok(Job::Commit { units, reply }) => {
                    batch_items += units.iter().map(items).sum::<usize>();
                    jobs.push((units.len(), reply));
                    batch.extend(units);
                }
                Ok(other @ (Job::Close { .. } | Job::Probe { .. })) => {
                    pending = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = committer.commit_batch(&batch);
        counters
            .units
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.batch_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // A batch that wrote nothing (every unit a repeat or a conflict) says nothing about
        // whether the store can write.
        match &result {
            Err(_) => counters.failing.store(true, Ordering::Release),
            Ok(outcomes) if outcomes.contains(&CommitOutcome::Committed) => {
                counters.failing.store(false, Ordering::Release)
            }
            Ok(_) => {}
        }
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (count, reply) in jobs {
                    let mine: Vec<CommitOutcome> = outcomes.by_ref().take(count).collect();
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for (_, reply) in jobs {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
