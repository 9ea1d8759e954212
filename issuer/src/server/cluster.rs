//! Cluster mode: several `scrip-server` processes on one PostgreSQL database
//! (`--store postgres`), answering as one server would.
//!
//! What one process would keep to itself is shared through the database
//! ([`ClusterState`]): the nonces of signed requests (see [`super::ReplayGuard::shared`]),
//! which process releases expired certificates and prunes those nonces (a lease), and
//! which keyring the cluster serves (an epoch and the keyring's
//! [fingerprint](Keyring::fingerprint)).
//!
//! Keys are the operator's business, not a server's: [`init_keys`] generates a keyring
//! once and publishes it, [`publish_keys`] publishes a keys directory as it is, and
//! [`rotate_key`] rotates one role's key and publishes the result. A server in cluster
//! mode never generates keys: it loads the keys directory, refuses to start unless its
//! fingerprint is the published one, and polls the epoch to pick up rotations, reloading
//! its keys directory once that holds the newly published keyring.
//!
//! Clock: every node decides with the database server's clock (request freshness, nonce
//! expiry, certificate expiry), as its own clock corrected by the offset it measures
//! against the database at start and on every tick of its periodic loop
//! ([`ClusterNode::now`]): one clock for the cluster without a round trip per request. A
//! node refuses to start when its own clock is more than `max_node_clock_skew` off (a
//! host without time synchronisation), and warns and counts when a later measurement is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use scrip_stores::{
    ClusterState, KeyringEpoch, PostgresOptions, PostgresStore, PostgresTls, PublishOutcome,
    RecordStore,
};
use scrip_tokens::keys::IssuerKeyRole;
use scrip_tokens::Timestamp;
use uuid::Uuid;

use super::{now, AppState, DirectoryLock, KeySource, Metrics};
use crate::{keyring_files, IssuerError, Keyring, KeyringConfig, Result};

/// The lease name of the periodic job one process of a cluster runs at a time: releasing
/// the reservations of expired certificates and forgetting expired nonces.
pub const RELEASE_JOB: &str = "release-expired";

/// How many keyring polls a server may spend serving an older keyring than the published
/// one before `/readyz` fails: long enough for an operator's copy to reach the host (or a
/// poll to fail once), short enough that a host left behind leaves the load balancer.
pub const KEYRING_LAG_POLLS: u32 = 3;

/// Connects to the cluster's PostgreSQL database at `url` with at most `connections`
/// connections (migrating it if needed, the issuer's system accounts striped): the record
/// store and the cluster state, one connection pool. Must run inside a tokio runtime.
pub async fn connect_database(
    url: &str,
    connections: usize,
) -> Result<(Arc<dyn RecordStore>, Arc<dyn ClusterState>)> {
    connect_database_with(url, connections, PostgresTls::Off).await
}

/// [`connect_database`] with `tls` (a database on another host:
/// [`PostgresTls::VerifyWithCaFile`]).
pub async fn connect_database_with(
    url: &str,
    connections: usize,
    tls: PostgresTls,
) -> Result<(Arc<dyn RecordStore>, Arc<dyn ClusterState>)> {
    let options = PostgresOptions {
        tls,
        max_connections: connections.max(1),
        striped_accounts: vec![
            (
                crate::coins_outstanding_account(),
                super::SYSTEM_ACCOUNT_STRIPES,
            ),
            (crate::funding_account(), super::SYSTEM_ACCOUNT_STRIPES),
            // Every payout posts to both (merchants paid out at once must not queue on
            // one row).
            (
                crate::payouts_pending_account(),
                super::SYSTEM_ACCOUNT_STRIPES,
            ),
            (crate::paid_out_account(), super::SYSTEM_ACCOUNT_STRIPES),
        ],
    };
    let store = Arc::new(PostgresStore::connect_with(url, options).await?);
    // The URL may carry a password: only the fact is logged.
    tracing::info!("connected to the PostgreSQL store");
    let cluster: Arc<dyn ClusterState> = store.clone();
    Ok((store, cluster))
}

/// What an operator command left behind: the keyring's fingerprint, and the epoch it is
/// published as (`None` when no database was given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringStatus {
    /// [`Keyring::fingerprint`] of the keys directory's keyring.
    pub fingerprint: [u8; 32],
    /// The cluster's epoch for it, if published.
    pub epoch: Option<KeyringEpoch>,
}

/// The key role named `name` as the operator commands spell it: `account-certificate`,
/// `merchant-certificate`, `balance-certificate`, `deposit`, `identified-coin`, `answer`.
pub fn parse_key_role(name: &str) -> Option<IssuerKeyRole> {
    Some(match name {
        "account-certificate" => IssuerKeyRole::AccountCertificate,
        "merchant-certificate" => IssuerKeyRole::MerchantCertificate,
        "balance-certificate" => IssuerKeyRole::BalanceCertificate,
        "deposit" => IssuerKeyRole::Deposit,
        "identified-coin" => IssuerKeyRole::IdentifiedCoin,
        "answer" => IssuerKeyRole::Answer,
        _ => return None,
    })
}

/// The names [`parse_key_role`] knows.
pub const KEY_ROLE_NAMES: &[&str] = &[
    "account-certificate",
    "merchant-certificate",
    "balance-certificate",
    "deposit",
    "identified-coin",
    "answer",
];

/// Runs blocking key work (RSA generation, PEM parsing, file writes) off the runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| IssuerError::Io(format!("key work stopped: {e}")))?
}

/// `scrip-server keys init`: generates a keyring with `config` into `keys_dir` (created
/// 0700, files 0600), which must not hold one already, and with a `cluster`, publishes its
/// fingerprint as the cluster's first epoch. Refuses a cluster that already serves a
/// keyring (its keys directory is to be copied, not generated again) before generating
/// anything.
pub async fn init_keys(
    keys_dir: &Path,
    config: &KeyringConfig,
    cluster: Option<&dyn ClusterState>,
    now: Timestamp,
) -> Result<KeyringStatus> {
    if keyring_files::exists(keys_dir) {
        return Err(IssuerError::KeyringExists(keys_dir.to_path_buf()));
    }
    if let Some(cluster) = cluster {
        if let Some(current) = cluster.keyring_epoch().await? {
            return Err(IssuerError::KeyringAlreadyPublished {
                epoch: current.epoch,
                fingerprint: current.fingerprint,
            });
        }
    }
    let dir = keys_dir.to_path_buf();
    let config = config.clone();
    let fingerprint = blocking(move || {
        // Two `keys init` at once on one directory: the second waits for nothing and
        // fails at the lock, or finds the first one's keyring once it has the lock.
        let _lock = DirectoryLock::create_and_acquire(&dir)?;
        if keyring_files::exists(&dir) {
            return Err(IssuerError::KeyringExists(dir));
        }
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let keyring = Keyring::generate(&config, now, &mut rng)?;
        keyring_files::save(&keyring, &dir)?;
        Ok(keyring.fingerprint())
    })
    .await?;
    tracing::info!(
        dir = %keys_dir.display(),
        fingerprint = %hex::encode(fingerprint),
        "generated the issuer keyring"
    );
    let epoch = match cluster {
        None => None,
        Some(cluster) => Some(publish(cluster, fingerprint, None).await?),
    };
    Ok(KeyringStatus { fingerprint, epoch })
}

/// `scrip-server keys publish`: publishes the keyring in `keys_dir` as the cluster's.
/// Idempotent: publishing the keyring the cluster serves answers its epoch. A different
/// keyring replaces the published one only with `replace` (a keyring rotated by hand, or a
/// rotation whose publication failed); otherwise it is refused with
/// [`IssuerError::KeyringMismatch`].
pub async fn publish_keys(
    keys_dir: &Path,
    cluster: &dyn ClusterState,
    replace: bool,
) -> Result<KeyringEpoch> {
    let dir = keys_dir.to_path_buf();
    let keyring = blocking(move || keyring_files::load(&dir)).await?;
    publish_keyring(&keyring, &keys_dir.display().to_string(), cluster, replace).await
}

/// [`publish_keys`] for a keyring at hand (`source_name` says where it came from, for
/// errors). Tests that run servers on [`KeySource::Provided`] keys publish them with this.
pub async fn publish_keyring(
    keyring: &Keyring,
    source_name: &str,
    cluster: &dyn ClusterState,
    replace: bool,
) -> Result<KeyringEpoch> {
    let fingerprint = keyring.fingerprint();
    let current = cluster.keyring_epoch().await?;
    match &current {
        Some(current) if current.fingerprint == fingerprint => return Ok(current.clone()),
        Some(current) if !replace => {
            return Err(IssuerError::KeyringMismatch {
                source_name: source_name.to_owned(),
                local: fingerprint,
                epoch: current.epoch,
                published: current.fingerprint,
            })
        }
        _ => {}
    }
    publish(cluster, fingerprint, current.map(|c| c.epoch)).await
}

/// Publishes `fingerprint` over `expected` (compare and swap); losing the race to another
/// command is an error unless that command published the same keyring.
async fn publish(
    cluster: &dyn ClusterState,
    fingerprint: [u8; 32],
    expected: Option<u64>,
) -> Result<KeyringEpoch> {
    match cluster.publish_keyring(fingerprint, expected).await? {
        PublishOutcome::Current(epoch) => {
            tracing::info!(
                epoch = epoch.epoch,
                fingerprint = %hex::encode(fingerprint),
                "published the cluster's keyring"
            );
            Ok(epoch)
        }
        PublishOutcome::Stale {
            current: Some(current),
        } if current.fingerprint == fingerprint => Ok(current),
        PublishOutcome::Stale { current } => Err(IssuerError::KeyringPublishRaced {
            expected,
            found: current.map(|c| c.epoch),
        }),
    }
}

/// `scrip-server keys rotate`: adds a new key for `role` to the keyring in `keys_dir`
/// (valid from `now` for `lifetime`, `rsa_bits` bits; the old key keeps verifying until
/// it expires), saved under the directory's lock, and with a `cluster` publishes the new
/// fingerprint over the epoch the directory's keyring was published as. With a cluster,
/// the directory must hold the published keyring (a stale copy is refused before
/// anything changes).
///
/// Servers reload the keys directory when they see the new epoch; a host whose copy has
/// not been updated yet keeps serving the old keys and warns until it has.
pub async fn rotate_key(
    keys_dir: &Path,
    role: IssuerKeyRole,
    now: Timestamp,
    lifetime: Duration,
    rsa_bits: usize,
    cluster: Option<&dyn ClusterState>,
) -> Result<KeyringStatus> {
    // An embedded server holds its keys directory's lock while it runs; a cluster server
    // only reads the directory (its files are replaced atomically, manifest last).
    let lock = DirectoryLock::acquire(keys_dir)?;
    let dir = keys_dir.to_path_buf();
    let keyring = blocking(move || keyring_files::load(&dir)).await?;
    let published = match cluster {
        None => None,
        Some(cluster) => {
            let current = cluster
                .keyring_epoch()
                .await?
                .ok_or(IssuerError::KeyringNotPublished)?;
            if current.fingerprint != keyring.fingerprint() {
                return Err(IssuerError::KeyringMismatch {
                    source_name: keys_dir.display().to_string(),
                    local: keyring.fingerprint(),
                    epoch: current.epoch,
                    published: current.fingerprint,
                });
            }
            Some(current)
        }
    };
    let dir = keys_dir.to_path_buf();
    let fingerprint = blocking(move || {
        let mut keyring = keyring;
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        keyring.rotate(role, now, lifetime, rsa_bits, &mut rng)?;
        keyring_files::save(&keyring, &dir)?;
        Ok(keyring.fingerprint())
    })
    .await?;
    drop(lock);
    tracing::info!(
        dir = %keys_dir.display(),
        role = role.name(),
        fingerprint = %hex::encode(fingerprint),
        "rotated a key"
    );
    let epoch = match (cluster, published) {
        (Some(cluster), Some(previous)) => {
            Some(publish(cluster, fingerprint, Some(previous.epoch)).await?)
        }
        _ => None,
    };
    Ok(KeyringStatus { fingerprint, epoch })
}

/// This node's clock minus the cluster's (the database server's), in milliseconds,
/// measured against the middle of the round trip.
pub async fn clock_skew_ms(cluster: &dyn ClusterState) -> Result<i64> {
    let before = now().as_unix_millis();
    let theirs = cluster.cluster_now().await?.as_unix_millis();
    let after = now().as_unix_millis();
    let ours = i128::from(before) + (i128::from(after) - i128::from(before)) / 2;
    let skew = ours - i128::from(theirs);
    Ok(i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX }))
}

/// A random (version 4) id for this process.
fn random_node_id() -> Uuid {
    use rand::Rng;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How far (ms) a node's clock is trusted to be from the database's without correction:
/// what NTP keeps hosts within, and more than a measurement's error on a network.
pub const CLOCK_TRUSTED_MS: i128 = 100;

/// A server's membership of a cluster.
pub(crate) struct ClusterNode {
    pub(crate) state: Arc<dyn ClusterState>,
    /// This process, as the holder of job leases.
    pub(crate) node_id: Uuid,
    /// Where rotated keys are reloaded from (`None`: keys provided in process).
    keys_dir: Option<PathBuf>,
    /// The published keyring this server serves.
    serving: Mutex<KeyringEpoch>,
    /// Since when a poll has found a newer published keyring than the one served (the
    /// keys directory did not hold it yet), and that keyring; `None` while up to date.
    behind: Mutex<Option<(Instant, KeyringEpoch)>>,
    /// How long this server may stay behind before it says it is not ready.
    keyring_grace: Duration,
    max_clock_skew: Duration,
    /// The database's clock minus this node's, as last measured: added to the node's
    /// clock, it gives every node of the cluster the database's time.
    clock_offset_ms: AtomicI64,
}

impl ClusterNode {
    /// Checks this node against the cluster before it serves: its clock within
    /// `max_clock_skew` of the database's, and its keys the published keyring. Never
    /// generates keys; loads a keys directory read-only (no lock: several servers on one
    /// host may share it), warning if other users can read it. `keyring_poll_interval`
    /// is how often [`keyring_watch_loop`] will poll.
    pub(crate) async fn join(
        cluster: Arc<dyn ClusterState>,
        keys: KeySource,
        max_clock_skew: Duration,
        keyring_poll_interval: Duration,
        metrics: &Metrics,
    ) -> Result<(Keyring, ClusterNode)> {
        let skew = clock_skew_ms(cluster.as_ref()).await?;
        metrics.cluster_clock(skew, false);
        if skew.unsigned_abs() > millis(max_clock_skew) {
            return Err(IssuerError::ClockSkew {
                skew_ms: skew,
                bound_ms: millis(max_clock_skew),
            });
        }
        // Nothing published is the first thing to say (the keys directory may well be
        // missing too: `keys init` makes both).
        let published = cluster
            .keyring_epoch()
            .await?
            .ok_or(IssuerError::KeyringNotPublished)?;
        let (keyring, keys_dir, source_name) = match keys {
            KeySource::Provided(keyring) => (*keyring, None, "provided in process".to_owned()),
            KeySource::Directory { dir, .. } => {
                let load_from = dir.clone();
                let keyring = blocking(move || {
                    super::data_dir::warn_if_keys_readable_by_others(&load_from);
                    keyring_files::load(&load_from)
                })
                .await?;
                let name = dir.display().to_string();
                (keyring, Some(dir), name)
            }
        };
        let local = keyring.fingerprint();
        if local != published.fingerprint {
            return Err(IssuerError::KeyringMismatch {
                source_name,
                local,
                epoch: published.epoch,
                published: published.fingerprint,
            });
        }
        metrics.cluster_started(published.epoch);
        tracing::info!(
            epoch = published.epoch,
            fingerprint = %hex::encode(local),
            clock_skew_ms = skew,
            "joined the cluster"
        );
        let node = ClusterNode {
            state: cluster,
            node_id: random_node_id(),
            keys_dir,
            serving: Mutex::new(published),
            behind: Mutex::new(None),
            keyring_grace: keyring_poll_interval
                .max(Duration::from_millis(10))
                .saturating_mul(KEYRING_LAG_POLLS),
            max_clock_skew,
            clock_offset_ms: AtomicI64::new(skew.saturating_neg()),
        };
        Ok((keyring, node))
    }

    /// The published epoch this server serves.
    pub(crate) fn serving_epoch(&self) -> u64 {
        self.serving().epoch
    }

    fn serving(&self) -> KeyringEpoch {
        match self.serving.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_serving(&self, epoch: KeyringEpoch) {
        match self.serving.lock() {
            Ok(mut s) => *s = epoch,
            Err(poisoned) => *poisoned.into_inner() = epoch,
        }
    }

    /// Notes that `published` is not the keyring served (`None`: it is, or nothing is
    /// behind any more). The first time counts: a host that keeps missing rotations stays
    /// behind since the first one it missed.
    fn set_behind(&self, published: Option<KeyringEpoch>) {
        let mut behind = match self.behind.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        *behind = published.map(|p| {
            let since = behind
                .as_ref()
                .map_or_else(Instant::now, |(since, _)| *since);
            (since, p)
        });
    }

    /// When this server has served an older keyring than the published one for longer
    /// than its grace ([`KEYRING_LAG_POLLS`] polls): the epoch it serves, the one
    /// published, and for how long. `/readyz` then fails, so that a load balancer stops
    /// sending it requests signed with keys it does not know yet (it keeps serving those
    /// it still gets).
    pub(crate) fn keyring_lag(&self) -> Option<(u64, u64, Duration)> {
        let behind = match self.behind.lock() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let (since, published) = behind?;
        let lag = since.elapsed();
        (lag > self.keyring_grace).then(|| (self.serving_epoch(), published.epoch, lag))
    }

    /// The cluster's time: this node's clock corrected by the offset to the database's
    /// clock measured at start and on every tick of the periodic loop. Every decision of a
    /// cluster server (request freshness, nonce expiry, certificate expiry) uses it, so all
    /// nodes judge by one clock, within [`CLOCK_TRUSTED_MS`] plus the error of a
    /// measurement (half a round trip, and the drift between two ticks), without a round
    /// trip per request.
    ///
    /// Only the part of the offset beyond [`CLOCK_TRUSTED_MS`] is corrected: a smaller one
    /// is within what time synchronisation and the measurement itself get wrong, and
    /// applying it would date what the server signs (certificates valid "from now") a few
    /// milliseconds ahead of clients that share the node's clock, which would then find
    /// them not yet valid.
    pub(crate) fn now(&self) -> Timestamp {
        let local = i128::from(now().as_unix_millis());
        let offset = i128::from(self.clock_offset_ms.load(Ordering::Relaxed));
        let correction = offset.signum() * (offset.abs() - CLOCK_TRUSTED_MS).max(0);
        let corrected = local + correction;
        Timestamp::from_unix_millis(u64::try_from(corrected.max(0)).unwrap_or(u64::MAX))
    }

    /// Before which `forget_at` a nonce may be forgotten at the cluster's time `now`:
    /// twice the clock bound later than strictly needed, so that no node whose
    /// correction is a measurement behind still admits a request whose nonce is gone.
    pub(crate) fn forget_nonces_before(&self, now: Timestamp) -> Timestamp {
        now.saturating_sub(self.max_clock_skew.saturating_mul(2))
    }

    /// Measures this node's clock against the cluster's; beyond the bound it warns and
    /// counts (it keeps serving: stopping every node whose clock drifts would take the
    /// cluster down with its time source).
    pub(crate) async fn check_clock(&self, metrics: &Metrics) {
        match clock_skew_ms(self.state.as_ref()).await {
            Ok(skew) => {
                self.clock_offset_ms
                    .store(skew.saturating_neg(), Ordering::Relaxed);
                let exceeded = skew.unsigned_abs() > millis(self.max_clock_skew);
                metrics.cluster_clock(skew, exceeded);
                if exceeded {
                    tracing::warn!(
                        skew_ms = skew,
                        bound_ms = millis(self.max_clock_skew),
                        "this node's clock is further from the database server's than allowed; \
                         fix its time synchronisation"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the cluster's clock"),
        }
    }

    /// Follows the published keyring: on a new epoch, reloads the keys directory and swaps
    /// it in if it is the published keyring; if it is not (the new files have not reached
    /// this host yet) warns and keeps serving the old keys until a later poll finds them.
    pub(crate) async fn poll_keyring(&self, app: &AppState) {
        let published = match self.state.keyring_epoch().await {
            Ok(Some(published)) => published,
            Ok(None) => {
                tracing::warn!(
                    "the cluster has no published keyring any more; serving the old keys"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the cluster's keyring epoch");
                return;
            }
        };
        let serving = self.serving();
        if published == serving {
            self.set_behind(None);
            return;
        }
        // Cleared below once the new keyring is loaded.
        self.set_behind(Some(published.clone()));
        let Some(dir) = self.keys_dir.clone() else {
            app.metrics.cluster_keyring_reload_failed();
            tracing::warn!(
                published = published.epoch,
                serving = serving.epoch,
                "the cluster published a new keyring, but this server's keys were provided in \
                 process and cannot be reloaded; restart it with the new keys"
            );
            return;
        };
        let name = dir.display().to_string();
        // Moving the keys onto the backend parses and loads each one: off the runtime too
        // (`replace_keyring` then finds them there).
        let backend = app.issuer.config().backend;
        let loaded =
            blocking(move || keyring_files::load(&dir).map(|k| k.on_backend(backend))).await;
        match loaded {
            Ok(keyring) if keyring.fingerprint() == published.fingerprint => {
                if let Some(dir) = self.keys_dir.clone() {
                    // New files may have come with the copy's permissions.
                    let _ = blocking(move || {
                        super::data_dir::warn_if_keys_readable_by_others(&dir);
                        Ok(())
                    })
                    .await;
                }
                app.issuer.replace_keyring(keyring);
                app.forget_directory();
                app.metrics.cluster_keyring(published.epoch);
                tracing::info!(
                    epoch = published.epoch,
                    previous = serving.epoch,
                    fingerprint = %hex::encode(published.fingerprint),
                    "serving the cluster's new keyring"
                );
                self.set_serving(published);
                self.set_behind(None);
            }
            Ok(keyring) => {
                app.metrics.cluster_keyring_reload_failed();
                tracing::warn!(
                    dir = %name,
                    published = published.epoch,
                    published_fingerprint = %hex::encode(published.fingerprint),
                    found_fingerprint = %hex::encode(keyring.fingerprint()),
                    serving = serving.epoch,
                    "the keys directory does not hold the cluster's new keyring yet; serving the \
                     old keys until it does"
                );
            }
            Err(e) => {
                app.metrics.cluster_keyring_reload_failed();
                tracing::warn!(
                    dir = %name,
                    error = %e,
                    published = published.epoch,
                    "could not load the keys directory for the cluster's new keyring; serving \
                     the old keys"
                );
            }
        }
    }
}

/// Follows the published keyring every `every`, forever.
pub(crate) async fn keyring_watch_loop(app: Arc<AppState>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once: the keyring was just checked at start.
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Some(node) = &app.cluster {
            node.poll_keyring(&app).await;
        }
    }
}
