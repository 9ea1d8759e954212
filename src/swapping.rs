//! Swaps over HTTP in bulk: the swap phase of `scrip load` (timed in the same run as the
//! blind withdrawals that minted the coins, so the two rates compare) and the driver of the
//! SIGKILL-during-swaps test.
//!
//! Each swap hands in `per_swap` coins and asks for as many new coins of the same value,
//! so a swap costs the server what a withdrawal of as many coins costs (one blind signature
//! per coin) plus verifying the coins handed in and claiming them. The blinding (the
//! wallet's work) is done before the clock starts and the unblinding after it.
//!
//! A swap whose answer is lost (transport error, 5xx, the server busy) is sent again,
//! byte for byte, until it is answered or the run stops: what a wallet with a pending swap
//! does, and how the crash test drives a server it kills.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use scrip_api::ClientError;
use scrip_tokens::{
    BlindCoin, Coin, KeyDirectory, Keyset, PendingCoin, SwapOutcome, SwapReceipt, SwapRequest,
};
use serde::Serialize;

use crate::client::HttpClient;
use crate::setup::now;
use crate::Error;

/// Coins handed in (and asked for) per swap in `scrip load`: as many as one of its blind
/// withdrawals signs, so the coins-per-second figures compare.
pub const PER_SWAP: usize = 100;

/// The swap part of a run, measured over HTTP.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Swapping {
    /// Swaps answered.
    pub swaps: usize,
    /// Coins handed in (and as many signed).
    pub coins: usize,
    /// Seconds from the first request to the last answer.
    pub seconds: f64,
    /// Swaps answered per second.
    pub swaps_per_s: f64,
    /// Coins swapped per second (one verification, one claim and one blind signature
    /// each).
    pub coins_per_s: f64,
    /// Attempts whose answer was lost and that were sent again.
    pub retried: u64,
}

/// A swap ready to send: the request and the wallet's half-made new coins.
pub struct SwapJob {
    /// The request (sent, and sent again, unchanged).
    pub request: SwapRequest,
    pending: Vec<PendingCoin>,
}

/// A swap the server answered, its signed receipt checked.
pub struct Answered {
    /// The request.
    pub request: SwapRequest,
    /// The server's signed answer.
    pub receipt: SwapReceipt,
    pending: Vec<PendingCoin>,
}

/// Blinds `per_swap` new coins of the same value for every `per_swap` coins of `coins`
/// (on every core), one swap each, under `keyset`.
pub async fn prepare(
    coins: Vec<BlindCoin>,
    keyset: &Keyset,
    per_swap: usize,
    rng: &mut StdRng,
) -> Result<Vec<SwapJob>, Error> {
    let groups: Vec<Vec<BlindCoin>> = coins.chunks(per_swap.max(1)).map(|c| c.to_vec()).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_worker = groups.len().div_ceil(workers).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut groups = groups.into_iter();
    for part in 0.. {
        let chunk: Vec<Vec<BlindCoin>> = groups.by_ref().take(per_worker).collect();
        if chunk.is_empty() {
            break;
        }
        let keyset = keyset.clone();
        let mut rng = StdRng::from_rng(&mut *rng);
        tasks.spawn_blocking(move || {
            let mut jobs = Vec::with_capacity(chunk.len());
            for group in chunk {
                let pending = group
                    .iter()
                    .map(|c| PendingCoin::new(&mut rng, &keyset, c.amount))
                    .collect::<Result<Vec<_>, _>>()?;
                let request = SwapRequest {
                    request_key: rng.random(),
                    coins: group.into_iter().map(Coin::Blind).collect(),
                    keyset_id: keyset.id(),
                    outputs: pending
                        .iter()
                        .map(|p| (p.amount().minor_units, p.blinded().clone()))
                        .collect(),
                };
                jobs.push(SwapJob { request, pending });
            }
            Ok::<_, Error>((part, jobs))
        });
    }
    let mut parts = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        parts.push(joined.map_err(|e| Error::Demo(format!("preparing swaps: {e}")))??);
    }
    parts.sort_by_key(|(part, _)| *part);
    Ok(parts.into_iter().flat_map(|(_, jobs)| jobs).collect())
}

/// Sends `request` until the server answers (a lost answer is retried unchanged), `stop`
/// is set, or the server refuses it (an error). The receipt is checked against
/// `directory` before it counts.
pub async fn swap_until_answered(
    client: &HttpClient,
    directory: &KeyDirectory,
    request: &SwapRequest,
    stop: &AtomicBool,
    retried: &AtomicU64,
) -> Result<Option<SwapReceipt>, Error> {
    let mut backoff = Duration::from_millis(20);
    loop {
        match client.swap(request).await {
            Ok(receipt) => {
                receipt.verify_for(request, directory, now())?;
                return Ok(Some(receipt));
            }
            Err(ClientError::Transport(_)) => {}
            Err(ClientError::Refused { status, .. }) if status >= 500 || status == 429 => {}
            Err(other) => return Err(other.into()),
        }
        retried.fetch_add(1, Ordering::Relaxed);
        if stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Sends every job, `concurrency` at a time (pausing `pause` after each answer), until all
/// are answered or `stop` is set; times the whole. Returns the answered swaps in no
/// particular order.
pub async fn run(
    client: &HttpClient,
    directory: &Arc<KeyDirectory>,
    jobs: Vec<SwapJob>,
    concurrency: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Result<(Vec<Answered>, Swapping), Error> {
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let retried = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, directory, queue, answered, retried, stop) = (
            client.clone(),
            Arc::clone(directory),
            queue.clone(),
            answered.clone(),
            retried.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            loop {
                if stop.load(Ordering::SeqCst) {
                    return Ok::<(), Error>(());
                }
                let next = queue.lock().map_err(|_| poisoned())?.pop_front();
                let Some(job) = next else {
                    return Ok(());
                };
                let Some(receipt) =
                    swap_until_answered(&client, &directory, &job.request, &stop, &retried).await?
                else {
                    return Ok(());
                };
                answered.lock().map_err(|_| poisoned())?.push(Answered {
                    request: job.request,
                    receipt,
                    pending: job.pending,
                });
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| Error::Demo(format!("swap task: {e}")))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let answered = std::mem::take(&mut *answered.lock().map_err(|_| poisoned())?);
    let coins: usize = answered.iter().map(|a| a.request.coins.len()).sum();
    let swapping = Swapping {
        swaps: answered.len(),
        coins,
        seconds: round(seconds, 3),
        swaps_per_s: round(answered.len() as f64 / seconds.max(1e-9), 1),
        coins_per_s: round(coins as f64 / seconds.max(1e-9), 1),
        retried: retried.load(Ordering::Relaxed),
    };
    Ok((answered, swapping))
}

/// The new coins of swapped answers, unblinded and checked against `directory` (the
/// wallet's work, after the clock). A double-spent answer is an error: the run's coins are
/// its own.
pub fn new_coins(answered: &[Answered], directory: &KeyDirectory) -> Result<Vec<BlindCoin>, Error> {
    let mut coins = Vec::new();
    for a in answered {
        let SwapOutcome::Swapped {
            keyset_id,
            signatures,
        } = &a.receipt.payload.outcome
        else {
            return Err(Error::Demo(
                "a swap of the run's own coins was double spent".into(),
            ));
        };
        let keyset = directory.keyset(*keyset_id)?;
        if signatures.len() != a.pending.len() {
            return Err(Error::Demo("the issuer answered for other coins".into()));
        }
        for (p, signature) in a.pending.iter().zip(signatures) {
            let key = keyset.key_for(p.amount().minor_units)?;
            coins.push(p.finalize(key, signature)?);
        }
    }
    Ok(coins)
}

fn poisoned() -> Error {
    Error::Demo("a swap task panicked".into())
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}
