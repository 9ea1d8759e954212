//! `scrip load`: merchants upload redemption batches of fresh coins to a running server
//! as fast as it answers, for a fixed time, and the run reports redemptions per second,
//! batch latency and, measured in the same process, the single-core coin-verification
//! rate (the hardware limit a redemption server works against).
//!
//! Every coin needs one RSA private-key operation to exist, about twenty times the cost of
//! verifying it, so the coins are minted (blind withdrawals over HTTP) and the payments
//! signed before the clock starts; the timed phase is uploads only. Each merchant gets its
//! own coins: every outcome should be `Accepted`, and anything else is counted.
//!
//! Uploads that fail in transport or with a 5xx are retried, re-signed (fresh nonce and
//! time), until the server acknowledges them or the run ends; that is what a merchant
//! does after a crash, and it is how the crash-under-load test drives a server it kills.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use scrip_tokens::keys::{Device, DirectoryRoot, Merchant as MerchantRole, DEFAULT_RSA_BITS};
use scrip_tokens::{
    codec, Amount, Backend, BlindCoin, BlindWithdrawalRequest, BlindWithdrawalRequestPayload, Coin,
    CoinPayment, CoinSpendId, Currency, DepositConfirmation, DepositConfirmationPayload, DepositId,
    DepositRequest, DepositRequestPayload, DeviceRegistration, DeviceRegistrationPayload,
    EndorsedCoinPayment, EndorsedCoinPaymentPayload, KeyDirectory, MerchantCategory,
    MerchantCertificate, MerchantId, PaymentRequest, PaymentRequestPayload, PendingCoin,
    ReasonCode, RedemptionBatch, RedemptionBatchPayload, RedemptionItem, RedemptionOutcome,
    RequestId, SigningKey, VerifyingKey,
};
use serde::Serialize;

use crate::client::HttpClient;
use crate::setup::{now, register_merchant};
use crate::swapping;
use crate::Error;
use scrip_api::ClientError;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Concurrent merchants (each uploads one batch at a time).
    pub merchants: usize,
    /// Length of the timed phase.
    pub duration: Duration,
    /// Coins minted before the timed phase (the run ends early when they are used up).
    pub coins: usize,
    /// Coins per payment (one redemption item).
    pub coins_per_payment: usize,
    /// Payments per uploaded batch.
    pub payments_per_batch: usize,
    /// Denomination of every coin (minor units of the keyset's currency).
    pub denomination: u64,
    /// Currency of the keyset to mint from.
    pub currency: Currency,
    /// Blind withdrawals in flight at once while minting.
    pub mint_concurrency: usize,
    /// How long each of the two single-core verification measurements runs (one before
    /// the timed phase, one after it).
    pub verify_measurement: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Pause of each merchant between two uploads (zero: as fast as the server answers).
    /// Paces a run whose length must not depend on the server's speed.
    pub pause: Duration,
    /// Cores the server runs on, for [`LoadReport::fraction_of_verify_limit`] (`None`: the
    /// cores this process may run on, right when both share the machine unpinned).
    pub server_cores: Option<usize>,
    /// Swap every minted coin once, in swaps of [`crate::swapping::PER_SWAP`] coins, timed
    /// like the withdrawals (`mint_concurrency` in flight), before the payments are
    /// signed with the new coins: [`LoadReport::swapping`].
    pub swap: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            merchants: 8,
            duration: Duration::from_secs(20),
            coins: 20_000,
            coins_per_payment: 5,
            payments_per_batch: 20,
            denomination: 1,
            currency: Currency::EUR,
            mint_concurrency: 4,
            verify_measurement: Duration::from_secs(2),
            progress: true,
            pause: Duration::ZERO,
            server_cores: None,
            swap: true,
        }
    }
}

/// Batch latency percentiles, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// What a run measured (the final JSON line of `scrip load`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    /// Server URL.
    pub server: String,
    /// Concurrent merchants.
    pub merchants: usize,
    /// Coins per payment and payments per batch.
    pub coins_per_payment: usize,
    /// Payments per batch.
    pub payments_per_batch: usize,
    /// Length of the timed phase actually run (shorter when the coins ran out).
    pub elapsed_s: f64,
    /// Coins the server acknowledged as redeemed (`Accepted`, or `AlreadyAccepted` on a
    /// retry) during the timed phase.
    pub coins_redeemed: u64,
    /// `coins_redeemed` per second: the headline figure.
    pub redemptions_per_s: f64,
    /// Payments (redemption items) acknowledged per second.
    pub payments_per_s: f64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Latency of acknowledged batch uploads.
    pub batch_latency: Latency,
    /// Coin signatures one core of this machine verifies per second (measured in this
    /// run, on the minted coins, with the directory lookup a server does): the mean of
    /// `verify_per_s_before` and `verify_per_s_after`, so the limit is taken on both sides
    /// of the timed phase on a machine whose speed drifts.
    pub single_core_verify_per_s: f64,
    /// The measurement made after minting, before the timed phase.
    pub verify_per_s_before: f64,
    /// The measurement made right after the timed phase, the server idle again.
    pub verify_per_s_after: f64,
    /// The backend `single_core_verify_per_s` was measured on (the fastest compiled in).
    pub verify_backend: String,
    /// Cores the server runs on: `--server-cores`, else those this process may run on.
    pub cores: usize,
    /// `redemptions_per_s / (cores * single_core_verify_per_s)`: the distance to the
    /// hardware limit when the server runs on this machine.
    pub fraction_of_verify_limit: f64,
    /// The blind withdrawals of the setup: issuance over HTTP.
    pub issuance: Issuance,
    /// The swaps of the setup (every minted coin swapped once), over HTTP in the same run:
    /// compare `coins_per_s` with the issuance's. `None` without [`LoadConfig::swap`].
    pub swapping: Option<crate::swapping::Swapping>,
    /// Upload attempts that failed (transport, 5xx) and were retried.
    pub retried_uploads: u64,
    /// Items answered other than `Accepted`/`AlreadyAccepted` (should be 0).
    pub unexpected_outcomes: u64,
    /// Seconds spent minting coins and signing payments before the timed phase.
    pub setup_s: f64,
}

/// A merchant of the load run: key, certificate, and its payments still to upload.
struct Shop {
    key: Arc<SigningKey<MerchantRole>>,
    certificate: MerchantCertificate,
    batches: VecDeque<Vec<RedemptionItem>>,
}

/// The coins one merchant saw acknowledged, per merchant id: what the server must never
/// lose (the crash test checks them after every restart).
#[derive(Clone, Debug, Default)]
pub struct Acknowledged {
    /// (merchant, coin) pairs acknowledged.
    pub coins: Vec<(MerchantId, CoinSpendId)>,
}

fn say(progress: bool, line: &str) {
    if progress {
        eprintln!("{line}");
    }
}

/// The issuance part of a run: blind withdrawals over HTTP (the wallet's blinding before,
/// its unblinding after, the timed part).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Issuance {
    /// Blind withdrawals sent (`PER_WITHDRAWAL` coins each, the last one the rest).
    pub withdrawals: usize,
    /// Coins signed.
    pub coins: usize,
    /// Seconds from the first request to the last answer.
    pub seconds: f64,
    /// Withdrawals answered per second.
    pub withdrawals_per_s: f64,
    /// Coins signed per second (one RSA private-key operation each).
    pub coins_per_s: f64,
}

/// Coins per blind withdrawal while minting.
const PER_WITHDRAWAL: u64 = 100;

/// Opens an account, deposits, and mints `config.coins` blind coins over HTTP, timing the
/// withdrawals alone.
pub async fn mint(
    client: &HttpClient,
    directory: &KeyDirectory,
    config: &LoadConfig,
    rng: &mut StdRng,
) -> Result<(Vec<BlindCoin>, Issuance), Error> {
    let device = SigningKey::<Device>::generate(rng, DEFAULT_RSA_BITS)?;
    let registration = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: device.verifying_key().clone(),
            account_id: None,
            created_at: now(),
            nonce: rng.random(),
        },
        &device,
        rng,
    )?;
    let opened = client.open_account(&registration).await?;
    let (account_id, device_id) = (opened.account_id, opened.device_id);

    let total = config
        .denomination
        .checked_mul(config.coins as u64)
        .ok_or_else(|| Error::Usage("coins × denomination overflows".into()))?;
    let deposit = DepositRequest::sign(
        DepositRequestPayload {
            deposit_id: DepositId::random(rng),
            account_id,
            device_id,
            amount: Amount::new(total, config.currency),
            created_at: now(),
        },
        &device,
        rng,
    )?;
    let record = client.deposit(&deposit).await?;
    let confirmation = DepositConfirmation::sign(
        DepositConfirmationPayload {
            deposit_id: record.payload.deposit_id(),
            account_id,
            device_id,
            deposit_record_digest: codec::digest(&record)?,
            confirmed_at: now(),
        },
        &device,
        rng,
    )?;
    client.confirm_deposit(&confirmation).await?;

    let keyset = directory
        .current_keyset(config.currency, now())
        .ok_or_else(|| Error::Usage(format!("the server issues no {} coins", config.currency)))?
        .clone();
    let key = keyset.key_for(config.denomination)?.clone();

    // Blinding (the wallet's work, pure Rust, ~1 ms a coin) is done before the clock
    // starts, on every core, so the timed phase measures the server's issuance.
    say(
        config.progress,
        "  blinding coins and signing withdrawal requests",
    );
    let mut chunks = Vec::new();
    let mut left = config.coins as u64;
    while left > 0 {
        let take = left.min(PER_WITHDRAWAL);
        chunks.push(take);
        left -= take;
    }
    let device = Arc::new(device);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut preparing = tokio::task::JoinSet::new();
    for (i, part) in chunks
        .chunks(chunks.len().div_ceil(workers).max(1))
        .enumerate()
    {
        let (part, keyset, device) = (part.to_vec(), keyset.clone(), device.clone());
        let (denomination, currency) = (config.denomination, config.currency);
        let mut rng = StdRng::from_rng(rng);
        preparing.spawn_blocking(move || {
            let mut out = Vec::with_capacity(part.len());
            for take in part {
                let pending = (0..take)
                    .map(|_| {
                        PendingCoin::new(&mut rng, &keyset, Amount::new(denomination, currency))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let request = BlindWithdrawalRequest::sign(
                    BlindWithdrawalRequestPayload {
                        account_id,
                        device_id,
                        keyset_id: keyset.id(),
                        coins: pending
                            .iter()
                            .map(|p| (denomination, p.blinded().clone()))
                            .collect(),
                        idempotency_key: rng.random(),
                        created_at: now(),
                        nonce: rng.random(),
                    },
                    &device,
                    &mut rng,
                )?;
                out.push((pending, request));
            }
            Ok::<_, Error>((i, out))
        });
    }
    let mut prepared = Vec::new();
    while let Some(joined) = preparing.join_next().await {
        prepared.push(joined.map_err(|e| Error::Demo(format!("preparing withdrawals: {e}")))??);
    }
    prepared.sort_by_key(|(i, _)| *i);
    let queue: VecDeque<_> = prepared.into_iter().flat_map(|(_, part)| part).collect();
    let withdrawals = queue.len();
    let queue = Arc::new(Mutex::new(queue));

    // Timed: the withdrawals over HTTP, `mint_concurrency` in flight.
    let answered = Arc::new(Mutex::new(Vec::with_capacity(withdrawals)));
    let signed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..config.mint_concurrency.max(1) {
        let (client, queue, answered, signed) = (
            client.clone(),
            queue.clone(),
            answered.clone(),
            signed.clone(),
        );
        let (progress, goal) = (config.progress, config.coins);
        tasks.spawn(async move {
            loop {
                let next = queue.lock().map_err(|_| poisoned())?.pop_front();
                let Some((pending, request)) = next else {
                    return Ok::<(), Error>(());
                };
                let response = client.withdraw_blind(&request).await?;
                let done = signed.fetch_add(pending.len() as u64, Ordering::Relaxed)
                    + pending.len() as u64;
                answered
                    .lock()
                    .map_err(|_| poisoned())?
                    .push((pending, response));
                if progress {
                    eprint!(
                        "\r  minting: {} {done}/{goal} coins ({:.0}/s)   ",
                        bar(done as f64 / goal as f64),
                        done as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| Error::Demo(format!("minting task: {e}")))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    say(config.progress, "");
    let answered = std::mem::take(&mut *answered.lock().map_err(|_| poisoned())?);
    let issuance = Issuance {
        withdrawals,
        coins: config.coins,
        seconds: round(seconds, 3),
        withdrawals_per_s: round(withdrawals as f64 / seconds.max(1e-9), 1),
        coins_per_s: round(config.coins as f64 / seconds.max(1e-9), 1),
    };

    // Unblinding and checking (the wallet's work again), after the clock.
    let mut minted = Vec::with_capacity(config.coins);
    for (pending, response) in answered {
        if response.signatures.len() != pending.len() {
            return Err(Error::Demo("the issuer answered for other coins".into()));
        }
        for (p, signature) in pending.iter().zip(&response.signatures) {
            minted.push(p.finalize(&key, signature)?);
        }
    }
    Ok((minted, issuance))
}

fn poisoned() -> Error {
    Error::Demo("a load task panicked".into())
}

fn bar(fraction: f64) -> String {
    const WIDTH: usize = 30;
    let filled = ((fraction.clamp(0.0, 1.0)) * WIDTH as f64) as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(WIDTH - filled))
}

/// Registers `count` merchants (operator token required on `client`).
async fn open_shops(
    client: &HttpClient,
    count: usize,
    rng: &mut StdRng,
) -> Result<Vec<Shop>, Error> {
    let mut shops = Vec::with_capacity(count);
    for _ in 0..count {
        // Key generation is the slow part; it runs off the async workers.
        let mut key_rng = StdRng::from_rng(&mut *rng);
        let key = tokio::task::spawn_blocking(move || {
            SigningKey::<MerchantRole>::generate(&mut key_rng, DEFAULT_RSA_BITS)
        })
        .await
        .map_err(|e| Error::Demo(format!("key generation: {e}")))??;
        let certificate =
            register_merchant(client, &key, MerchantCategory::GROCERY, "DE-BY", rng).await?;
        shops.push(Shop {
            key: Arc::new(key),
            certificate,
            batches: VecDeque::new(),
        });
    }
    Ok(shops)
}

/// Signs one payment of `coins` to `shop` (request and endorsement), as its point of sale
/// would have offline.
fn payment(
    key: &SigningKey<MerchantRole>,
    certificate: &MerchantCertificate,
    coins: Vec<Coin>,
    rng: &mut StdRng,
) -> Result<RedemptionItem, Error> {
    let merchant_id = certificate.payload.merchant_id;
    let mut total = Amount::new(
        0,
        coins.first().map_or(Currency::EUR, |c| c.amount().currency),
    );
    for coin in &coins {
        total = total.checked_add(coin.amount())?;
    }
    let request = PaymentRequest::sign(
        PaymentRequestPayload {
            request_id: RequestId::random(rng),
            merchant_id,
            amount: total,
            created_at: now(),
            category: certificate.payload.category,
            region: certificate.payload.region.clone(),
        },
        key,
        rng,
    )?;
    let endorsed = EndorsedCoinPayment::sign(
        EndorsedCoinPaymentPayload {
            payment: CoinPayment { request, coins },
            merchant_id,
            endorsed_at: now(),
        },
        key,
        rng,
    )?;
    Ok(RedemptionItem::Coins(endorsed))
}

/// Deals the coins out to the shops and signs every payment (on all cores).
async fn prepare_payments(
    shops: &mut [Shop],
    coins: Vec<BlindCoin>,
    config: &LoadConfig,
    rng: &mut StdRng,
) -> Result<(), Error> {
    let per_payment = config.coins_per_payment.max(1);
    let per_batch = config.payments_per_batch.max(1);
    let mut groups: Vec<Vec<Coin>> = Vec::new();
    let mut coins = coins.into_iter().map(Coin::Blind).peekable();
    while coins.peek().is_some() {
        groups.push(coins.by_ref().take(per_payment).collect());
    }
    let shop_count = shops.len().max(1);
    // Payment i goes to shop i % shops, so every shop has work until the end.
    let mut per_shop: Vec<Vec<Vec<Coin>>> = (0..shop_count).map(|_| Vec::new()).collect();
    for (i, group) in groups.into_iter().enumerate() {
        if let Some(list) = per_shop.get_mut(i % shop_count) {
            list.push(group);
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (shop, groups)) in shops.iter().zip(per_shop).enumerate() {
        let key = shop.key.clone();
        let certificate = shop.certificate.clone();
        let mut rng = StdRng::from_rng(&mut *rng);
        tasks.spawn_blocking(move || {
            let items = groups
                .into_iter()
                .map(|coins| payment(&key, &certificate, coins, &mut rng))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, Error>((index, items))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (index, items) = joined.map_err(|e| Error::Demo(format!("signing task: {e}")))??;
        if let Some(shop) = shops.get_mut(index) {
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                shop.batches
                    .push_back(items.by_ref().take(per_batch).collect());
            }
        }
    }
    Ok(())
}

/// Verifies coin signatures on this thread for `time`; returns verifications per second.
fn single_core_verify_rate(coins: &[BlindCoin], directory: &KeyDirectory, time: Duration) -> f64 {
    if coins.is_empty() {
        return 0.0;
    }
    let at = now();
    let started = Instant::now();
    let mut verified = 0u64;
    while started.elapsed() < time {
        for coin in coins.iter().take(256) {
            if coin.verify(directory, at).is_ok() {
                verified += 1;
            }
        }
    }
    verified as f64 / started.elapsed().as_secs_f64()
}

/// [`single_core_verify_rate`] of `sample` off the async runtime.
async fn measure_verify_rate(
    sample: &Arc<(Vec<BlindCoin>, KeyDirectory)>,
    time: Duration,
) -> Result<f64, Error> {
    let sample = sample.clone();
    tokio::task::spawn_blocking(move || single_core_verify_rate(&sample.0, &sample.1, time))
        .await
        .map_err(|e| Error::Demo(format!("verify measurement: {e}")))
}

/// Shared counters of the timed phase.
#[derive(Default)]
struct Counters {
    coins: AtomicU64,
    payments: AtomicU64,
    batches: AtomicU64,
    retried: AtomicU64,
    unexpected: AtomicU64,
}

/// Uploads one batch until the server acknowledges it (re-signing each attempt), the
/// deadline passes or `stop` is set. Returns the report's outcomes and the latency of the
/// acknowledged attempt, or `None` when it gave up. An answer counts only once its
/// signature checks out under `directory`'s answer key, for the batch just sent.
#[allow(clippy::too_many_arguments)]
pub async fn upload_until_acknowledged(
    client: &HttpClient,
    directory: &KeyDirectory,
    key: &SigningKey<MerchantRole>,
    merchant_id: MerchantId,
    items: &[RedemptionItem],
    deadline: Instant,
    stop: &AtomicBool,
    retried: &AtomicU64,
    rng: &mut StdRng,
) -> Result<Option<(Vec<RedemptionOutcome>, Duration)>, Error> {
    let mut backoff = Duration::from_millis(20);
    loop {
        let batch = RedemptionBatch::sign(
            RedemptionBatchPayload {
                merchant_id,
                items: items.to_vec(),
                created_at: now(),
                nonce: rng.random(),
            },
            key,
            rng,
        )?;
        let sent = Instant::now();
        match client.redeem(&batch).await {
            Ok(report) => {
                let latency = sent.elapsed();
                let answer = report.verify_for(&batch, directory, now())?;
                return Ok(Some((answer.outcomes.clone(), latency)));
            }
            Err(ClientError::Transport(_)) => {}
            // A server restarted since the batch was signed refuses it as stale (its
            // replay cache starts empty); a 5xx is the server's own failure. Re-sign and
            // try again; every other refusal is final.
            Err(ClientError::Refused { status, .. }) if status >= 500 => {}
            Err(ClientError::Refused {
                code: ReasonCode::StaleRequest,
                ..
            }) => {}
            Err(other) => return Err(other.into()),
        }
        retried.fetch_add(1, Ordering::Relaxed);
        if Instant::now() + backoff > deadline || stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// The spend ids of an item's coins (what the issuer claims them under).
pub fn item_coins(item: &RedemptionItem) -> Result<Vec<CoinSpendId>, Error> {
    match item {
        RedemptionItem::Coins(endorsed) => Ok(endorsed
            .payload
            .payment
            .coins
            .iter()
            .map(Coin::spend_id)
            .collect::<Result<_, _>>()?),
        RedemptionItem::Record(_) => Ok(Vec::new()),
    }
}

/// Everything made before the clock starts: the merchants with their signed payments,
/// and the single-core verification rate.
pub struct Prepared {
    shops: Vec<Shop>,
    /// The verified key directory: answers are checked against it.
    directory: Arc<KeyDirectory>,
    /// Coins minted and dealt out.
    pub coins: usize,
    /// Which merchant was given which coin.
    pub assignment: Vec<(MerchantId, CoinSpendId)>,
    /// Single-core coin verifications per second, measured before the timed phase.
    pub verify_rate: f64,
    /// The backend `verify_rate` was measured on.
    pub verify_backend: Backend,
    /// The coins and keys it was measured with, to measure again after the timed phase.
    verify_sample: Arc<(Vec<BlindCoin>, KeyDirectory)>,
    /// The blind withdrawals that minted the coins, timed.
    pub issuance: Issuance,
    /// The swaps of the minted coins, timed.
    pub swapping: Option<crate::swapping::Swapping>,
    /// Seconds the setup took.
    pub setup_s: f64,
}

/// Mints the coins, measures single-core verification, registers the merchants and signs
/// their payments.
pub async fn prepare(
    client: &HttpClient,
    root: &VerifyingKey<DirectoryRoot>,
    config: &LoadConfig,
    rng: &mut StdRng,
) -> Result<Prepared, Error> {
    let setup_started = Instant::now();
    client.health().await?;
    let signed_directory = client.key_directory().await?;
    let directory = signed_directory.verify(root)?.clone();
    let answers_directory = Arc::new(directory.clone());

    say(
        config.progress,
        &format!(
            "setup: minting {} coins of {} minor units, registering {} merchants",
            config.coins, config.denomination, config.merchants
        ),
    );
    let (coins, issuance) = mint(client, &directory, config, rng).await?;
    let minted = coins.len();
    say(
        config.progress,
        &format!(
            "  issued {} coins in {} blind withdrawals: {:.0} coins/s, {:.1} withdrawals/s",
            issuance.coins, issuance.withdrawals, issuance.coins_per_s, issuance.withdrawals_per_s
        ),
    );

    // The hardware limit: one core verifying coins as the server does, on the fastest
    // backend compiled in (the server's default) with the keys parsed once.
    let backend = Backend::fastest();
    say(
        config.progress,
        &format!("measuring single-core coin verification ({backend})"),
    );
    let sample: Vec<BlindCoin> = coins.iter().take(256).cloned().collect();
    let measure = config.verify_measurement;
    let on_backend = directory.on_backend(backend);
    let verify_sample = Arc::new((sample, on_backend));
    let verify_rate = measure_verify_rate(&verify_sample, measure).await?;
    say(
        config.progress,
        &format!("  one core verifies {verify_rate:.0} coins/s"),
    );

    let (coins, swapping) = if config.swap {
        let keyset = directory
            .current_keyset(config.currency, now())
            .ok_or_else(|| Error::Usage(format!("the server issues no {} coins", config.currency)))?
            .clone();
        say(config.progress, "swapping every coin once");
        let jobs = swapping::prepare(coins, &keyset, swapping::PER_SWAP, rng).await?;
        let (answered, measured) = swapping::run(
            client,
            &answers_directory,
            jobs,
            config.mint_concurrency,
            Duration::ZERO,
            Arc::default(),
        )
        .await?;
        say(
            config.progress,
            &format!(
                "  swapped {} coins in {} swaps: {:.0} coins/s, {:.1} swaps/s",
                measured.coins, measured.swaps, measured.coins_per_s, measured.swaps_per_s
            ),
        );
        let coins = swapping::new_coins(&answered, &directory)?;
        if coins.len() != minted {
            return Err(Error::Demo(format!(
                "{minted} coins minted, {} came back from swaps",
                coins.len()
            )));
        }
        (coins, Some(measured))
    } else {
        (coins, None)
    };
    let mut shops = open_shops(client, config.merchants.max(1), rng).await?;
    say(config.progress, "signing payments");
    prepare_payments(&mut shops, coins, config, rng).await?;
    let mut assignment = Vec::with_capacity(minted);
    for shop in &shops {
        let merchant_id = shop.certificate.payload.merchant_id;
        for item in shop.batches.iter().flatten() {
            assignment.extend(item_coins(item)?.into_iter().map(|c| (merchant_id, c)));
        }
    }
    Ok(Prepared {
        shops,
        directory: answers_directory,
        coins: minted,
        assignment,
        verify_rate,
        verify_backend: backend,
        verify_sample,
        issuance,
        swapping,
        setup_s: setup_started.elapsed().as_secs_f64(),
    })
}

/// Runs the whole load: [`prepare`], then [`redeem`].
pub async fn run(
    client: &HttpClient,
    root: &VerifyingKey<DirectoryRoot>,
    config: &LoadConfig,
) -> Result<(LoadReport, Acknowledged), Error> {
    run_across(std::slice::from_ref(client), root, config).await
}

/// [`run`] against several servers sharing one store: the setup (minting, merchant
/// registration) goes to the first, the timed uploads are spread as [`redeem_across`]
/// does.
pub async fn run_across(
    servers: &[HttpClient],
    root: &VerifyingKey<DirectoryRoot>,
    config: &LoadConfig,
) -> Result<(LoadReport, Acknowledged), Error> {
    let first = servers
        .first()
        .ok_or_else(|| Error::Usage("no server to load".into()))?;
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let prepared = prepare(first, root, config, &mut rng).await?;
    redeem_across(servers, prepared, config, &mut rng, Arc::default()).await
}

/// What [`run_handing_over`] prints on stderr (always, progress bar or not) once the setup
/// is done and it starts waiting for the redeeming servers: the cue for a driver script
/// to stop the minting server and start the redeeming one on the same data directory.
pub const HANDING_OVER: &str = "setup done, handing over: waiting for";

/// [`run_across`] with the setup and the timed phase on different servers of one issuer:
/// coins are minted and merchants registered on `mint`; then, once `redeem` all answer
/// `/healthz` (polled for up to `wait`), the timed uploads are spread over them as
/// [`redeem_across`] does.
///
/// For a benchmark of one pinned core: blind signing (0.3–0.4 ms a coin) and the
/// wallet's blinding make minting a hundred thousand coins take minutes on one core, and
/// redeeming them seconds. A driver runs the minting server on every core, and on
/// [`HANDING_OVER`] stops it and starts the server to measure, pinned, on the same data
/// directory (`benches/scaling_load.sh`).
pub async fn run_handing_over(
    mint: &HttpClient,
    redeem: &[HttpClient],
    root: &VerifyingKey<DirectoryRoot>,
    config: &LoadConfig,
    wait: Duration,
) -> Result<(LoadReport, Acknowledged), Error> {
    if redeem.is_empty() {
        return Err(Error::Usage("no server to redeem on".into()));
    }
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let prepared = prepare(mint, root, config, &mut rng).await?;
    let names: Vec<&str> = redeem.iter().map(HttpClient::base_url).collect();
    eprintln!("{HANDING_OVER} {}", names.join(", "));
    let until = Instant::now() + wait;
    for server in redeem {
        while let Err(e) = server.health().await {
            if Instant::now() >= until {
                return Err(Error::Demo(format!(
                    "{} did not answer within {} s: {e}",
                    server.base_url(),
                    wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    redeem_across(redeem, prepared, config, &mut rng, Arc::default()).await
}

/// The timed phase: every merchant uploads its batches one at a time, each until it is
/// acknowledged, until `config.duration` has passed, `stop` is set, or the batches are
/// all uploaded.
pub async fn redeem(
    client: &HttpClient,
    prepared: Prepared,
    config: &LoadConfig,
    rng: &mut StdRng,
    stop: Arc<AtomicBool>,
) -> Result<(LoadReport, Acknowledged), Error> {
    redeem_across(std::slice::from_ref(client), prepared, config, rng, stop).await
}

/// [`redeem`] against several servers of one cluster (one store): merchant `i` uploads
/// to `servers[i % servers.len()]`, as a load balancer pinning each merchant would.
pub async fn redeem_across(
    servers: &[HttpClient],
    prepared: Prepared,
    config: &LoadConfig,
    rng: &mut StdRng,
    stop: Arc<AtomicBool>,
) -> Result<(LoadReport, Acknowledged), Error> {
    if servers.is_empty() {
        return Err(Error::Usage("no server to load".into()));
    }
    let Prepared {
        shops,
        directory,
        verify_rate: verify_before,
        verify_backend,
        verify_sample,
        issuance,
        swapping,
        setup_s,
        ..
    } = prepared;
    say(
        config.progress,
        &format!(
            "redeeming for up to {} s with {} merchants",
            config.duration.as_secs(),
            shops.len()
        ),
    );
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let finished = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + config.duration;

    let ticker = config.progress.then(|| {
        let (counters, finished, duration) = (counters.clone(), finished.clone(), config.duration);
        tokio::spawn(async move {
            while !finished.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let t = started.elapsed().as_secs_f64();
                let coins = counters.coins.load(Ordering::Relaxed);
                eprint!(
                    "\r  {} {t:5.1}/{} s  {coins} coins  {:.0}/s   ",
                    bar(t / duration.as_secs_f64()),
                    duration.as_secs(),
                    coins as f64 / t.max(1e-9)
                );
            }
        })
    });

    let mut tasks = tokio::task::JoinSet::new();
    for (i, shop) in shops.into_iter().enumerate() {
        let client = servers[i % servers.len()].clone();
        let (counters, latencies, acknowledged) =
            (counters.clone(), latencies.clone(), acknowledged.clone());
        let mut rng = StdRng::from_rng(&mut *rng);
        let stop = stop.clone();
        let directory = Arc::clone(&directory);
        let pause = config.pause;
        tasks.spawn(async move {
            let merchant_id = shop.certificate.payload.merchant_id;
            for items in &shop.batches {
                if Instant::now() >= deadline || stop.load(Ordering::SeqCst) {
                    break;
                }
                let Some((outcomes, latency)) = upload_until_acknowledged(
                    &client,
                    &directory,
                    &shop.key,
                    merchant_id,
                    items,
                    deadline,
                    &stop,
                    &counters.retried,
                    &mut rng,
                )
                .await?
                else {
                    break;
                };
                let mut acked = Vec::new();
                for (item, outcome) in items.iter().zip(&outcomes) {
                    match outcome {
                        RedemptionOutcome::Accepted { .. }
                        | RedemptionOutcome::AlreadyAccepted { .. } => {
                            let ids = item_coins(item)?;
                            counters
                                .coins
                                .fetch_add(ids.len() as u64, Ordering::Relaxed);
                            counters.payments.fetch_add(1, Ordering::Relaxed);
                            acked.extend(ids.into_iter().map(|id| (merchant_id, id)));
                        }
                        _ => {
                            counters.unexpected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                counters.batches.fetch_add(1, Ordering::Relaxed);
                latencies.lock().map_err(|_| poisoned())?.push(latency);
                acknowledged
                    .lock()
                    .map_err(|_| poisoned())?
                    .coins
                    .extend(acked);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            Ok::<(), Error>(())
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(|e| Error::Demo(format!("merchant task: {e}")));
        if let Err(e) = result.and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    finished.store(true, Ordering::Relaxed);
    if let Some(ticker) = ticker {
        let _ = ticker.await;
        eprintln!();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // The limit again, on the far side of the timed phase, the server idle again.
    say(
        config.progress,
        "measuring single-core coin verification again",
    );
    let verify_after = measure_verify_rate(&verify_sample, config.verify_measurement).await?;
    let verify_rate = (verify_before + verify_after) / 2.0;

    let mut latencies = std::mem::take(&mut *latencies.lock().map_err(|_| poisoned())?);
    latencies.sort();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies
            .get(index.min(latencies.len() - 1))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let coins = counters.coins.load(Ordering::Relaxed);
    let cores = config
        .server_cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rate = coins as f64 / elapsed.max(1e-9);
    let report = LoadReport {
        server: servers
            .iter()
            .map(HttpClient::base_url)
            .collect::<Vec<_>>()
            .join(","),
        merchants: config.merchants,
        coins_per_payment: config.coins_per_payment,
        payments_per_batch: config.payments_per_batch,
        elapsed_s: round(elapsed, 3),
        coins_redeemed: coins,
        redemptions_per_s: round(rate, 1),
        payments_per_s: round(
            counters.payments.load(Ordering::Relaxed) as f64 / elapsed.max(1e-9),
            1,
        ),
        batches: counters.batches.load(Ordering::Relaxed),
        batch_latency: Latency {
            p50_ms: round(percentile(0.50), 2),
            p99_ms: round(percentile(0.99), 2),
            max_ms: round(percentile(1.0), 2),
        },
        single_core_verify_per_s: round(verify_rate, 1),
        verify_per_s_before: round(verify_before, 1),
        verify_per_s_after: round(verify_after, 1),
        verify_backend: verify_backend.to_string(),
        cores,
        fraction_of_verify_limit: round(rate / (cores as f64 * verify_rate).max(1e-9), 3),
        retried_uploads: counters.retried.load(Ordering::Relaxed),
        unexpected_outcomes: counters.unexpected.load(Ordering::Relaxed),
        setup_s: round(setup_s, 1),
        issuance,
        swapping,
    };
    let acknowledged = std::mem::take(&mut *acknowledged.lock().map_err(|_| poisoned())?);
    Ok((report, acknowledged))
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}
