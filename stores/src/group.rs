//! Group commit: one writer thread per durable store takes every unit submitted since its
//! last durable write, applies them in order, makes them durable with one write (one
//! fsync, one transaction commit), then answers every submitter. Throughput is therefore
//! not one fsync per request: under load, a batch holds as many units as arrived during
//! the previous fsync.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::model::{CommitOutcome, Unit};
use crate::store::{BatchCommitter, Counters};
use crate::StoreError;

/// Most units in one durable write.
const MAX_BATCH_UNITS: usize = 4096;
/// Most claims + postings + writes in one durable write (bounds memory and log frames).
const MAX_BATCH_ITEMS: usize = 200_000;

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
    /// Starts the writer thread, which counts its batches in `counters`.
    pub(crate) fn start(
        name: &str,
        committer: impl BatchCommitter,
        counters: Arc<Counters>,
    ) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel();
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

    /// `Ok` while writes succeed; after a failed one, the outcome of an empty durable
    /// write on the writer thread (at most one per [`PROBE_INTERVAL`]; callers in between
    /// get the last outcome).
    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        if !self.counters.failing() {
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
                counters.set_failing(outcome.is_err());
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
        counters.record_batch(batch.len(), started, &result);
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
        committer.maintain();
    }
}
