//! The warp issuer and redeem server (feature `server`).
//!
//! Layout follows warp's examples: `filters` builds the routes, `handlers` turns a
//! decoded, fresh request into a call of the issuer core, `models` negotiates JSON or
//! bincode bodies, `errors` is the one place that turns refusals and warp rejections into
//! `{code, message}` answers. The issuer core stays pure; the clock, randomness, the store
//! and the network live here.
//!
//! Authentication: every request from a device or merchant is a token signed by its key
//! that carries `created_at` and a random `nonce` (see `scrip_tokens::messages`). The
//! server refuses requests created outside the allowed clock skew or before it started,
//! and nonces it has seen (the replay window); the issuer core then verifies the signature
//! before acting. A client that retries signs its request again: business idempotency
//! (deposit ids, withdrawal idempotency keys, one claim per coin and record) makes the
//! re-signed retry safe. Operator routes take a bearer token.

pub mod cluster;
mod connections;
mod data_dir;
mod errors;
mod filters;
mod handlers;
mod metrics;
mod models;
mod payout_file;
mod replay;
mod revocations;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use scrip_stores::{ClusterState, FileStore, MemoryStore, RecordStore, RedbStore};
use scrip_tokens::Timestamp;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use data_dir::{DirectoryLock, LOCK_FILE, OPERATOR_TOKEN_FILE, ROOT_KEY_FILE};
pub use errors::ApiError;
pub use metrics::{MeteredStore, Metrics};
pub use payout_file::{DemoPayoutFile, DEMO_PAYOUTS_FILE};
pub use replay::ReplayGuard;

use crate::{
    FundingSource, InMemoryFunding, Issuer, IssuerConfig, IssuerError, Keyring, PayoutSink,
    RecordedDemoFunding, Result,
};

/// The signed key directory served: when it was signed, from which keyring, and itself.
type CachedDirectory = (
    Timestamp,
    Arc<Keyring>,
    Arc<scrip_tokens::SignedKeyDirectory>,
);

/// The store backend the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded redb database `<data-dir>/scrip.redb` (the default).
    Redb,
    /// Append-only checksummed log in `<data-dir>/store/`.
    File,
    /// In memory: everything is lost when the server stops (tests, demos).
    Memory,
    /// A PostgreSQL database shared by every server of a cluster (cluster mode: see
    /// [`cluster`]). Needs [`ServerConfig::database_url`].
    Postgres,
}

impl StoreKind {
    /// Whether servers on this store form a cluster (they share state through the
    /// database and never keep their own).
    pub fn is_shared(self) -> bool {
        matches!(self, StoreKind::Postgres)
    }
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "redb" => Ok(StoreKind::Redb),
            "file" => Ok(StoreKind::File),
            "memory" => Ok(StoreKind::Memory),
            "postgres" => Ok(StoreKind::Postgres),
            other => Err(format!(
                "unknown store {other:?}: use redb, file, memory or postgres"
            )),
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Redb => "redb",
            StoreKind::File => "file",
            StoreKind::Memory => "memory",
            StoreKind::Postgres => "postgres",
        })
    }
}

/// How long a graceful shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a cluster server's shutdown waits to give up its lease: an unreachable
/// database must not hold the shutdown up (the lease then runs out by itself).
const LEASE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most nonces one call of [`ClusterState::forget_nonces`] forgets: the leader checks its
/// round's deadline between calls.
const FORGET_BATCH: u64 = 10_000;

/// Where the server's keys come from.
pub enum KeySource {
    /// Load `<dir>/keyring.json` and its PEM files, or generate them there on first start
    /// (files written 0600). In cluster mode the directory is only read (never generated
    /// into, migrated or locked): `scrip-server keys init` made it, and several servers
    /// may share it.
    Directory {
        /// The key directory.
        dir: PathBuf,
        /// What to generate if nothing is there yet.
        generate: crate::KeyringConfig,
    },
    /// Keys held by the caller (tests, embedding).
    Provided(Box<Keyring>),
}

/// Where the operator token comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorToken {
    /// This token.
    Given(String),
    /// `<data-dir>/operator-token`, created (0600, random) on first start. Refused in
    /// cluster mode: each server would make its own.
    DataDir,
}

/// Where deposits are collected from.
pub enum ServerFunding {
    /// The built-in demo source (accepts every deposit). In cluster mode it is
    /// [`RecordedDemoFunding`] over the shared store, so that every server answers a
    /// deposit alike; on an embedded store it is [`InMemoryFunding`], as in earlier
    /// releases (one process is the whole issuer).
    Demo,
    /// [`RecordedDemoFunding`] over the server's own store, whatever the store: each
    /// collected deposit is a claim in the store, so the answer survives restarts and is
    /// the same on every server of a cluster. What `scrip-server` uses.
    RecordedDemo,
    /// This source (a payment provider).
    Source(Arc<dyn FundingSource>),
}

/// Where merchants' payouts go.
pub enum ServerPayouts {
    /// The built-in demo sink, [`DemoPayoutFile`]: each payout is appended once to
    /// `<data-dir>/demo-payouts.jsonl` and nothing is paid anywhere.
    Demo,
    /// This sink (a bank, a payment provider).
    Sink(Arc<dyn PayoutSink>),
}

impl From<Arc<dyn PayoutSink>> for ServerPayouts {
    fn from(sink: Arc<dyn PayoutSink>) -> Self {
        ServerPayouts::Sink(sink)
    }
}

impl From<Arc<dyn FundingSource>> for ServerFunding {
    fn from(source: Arc<dyn FundingSource>) -> Self {
        ServerFunding::Source(source)
    }
}

impl From<String> for OperatorToken {
    fn from(token: String) -> Self {
        OperatorToken::Given(token)
    }
}

/// Everything the server needs to start.
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Data directory (store files live here).
    pub data_dir: PathBuf,
    /// Store backend.
    pub store: StoreKind,
    /// A store the embedder opened itself (a custom backend): used instead of opening
    /// `store` in the data directory.
    pub custom_store: Option<Arc<dyn RecordStore>>,
    /// Issuer keys.
    pub keys: KeySource,
    /// Issuer limits and lifetimes.
    pub issuer: IssuerConfig,
    /// Bearer token for operator routes.
    pub operator_token: OperatorToken,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How far a request's `created_at` may be from the server's clock.
    pub max_clock_skew: Duration,
    /// How often expired certificates' reservations are released.
    pub release_interval: Duration,
    /// How long a client may take to send a request's headers, and then its body: a
    /// slower client is cut off (headers: the connection is closed; body: `408
    /// request_timeout`), so slow senders cannot hold connections forever.
    pub read_timeout: Duration,
    /// Most connections served at once; more are answered `503 busy` and closed. Lowered
    /// at start (with a warning) to fit the process's open-files limit, less the
    /// descriptors open then, the database pool and descriptors kept for files the store
    /// opens later and for answering refusals.
    pub max_connections: usize,
    /// Largest request head (request line and headers) a connection may buffer; larger
    /// heads get `431 headers_too_large`.
    pub max_header_bytes: usize,
    /// Bytes of request bodies larger than [`SMALL_BODY_BYTES`] held at once, reserved chunk
    /// by chunk as they arrive; a body that does not fit gets `503 busy`. Smaller bodies need
    /// no reservation (they are bounded by the connection cap).
    pub body_budget_bytes: usize,
    /// Where deposits are collected from.
    pub funding: ServerFunding,
    /// Where merchants' payouts go.
    pub payouts: ServerPayouts,
    /// The PostgreSQL connection string of [`StoreKind::Postgres`] (it may carry a
    /// password: never logged).
    pub database_url: Option<String>,
    /// Most connections this server opens to the database (each server of a cluster has
    /// its own pool).
    pub database_connections: usize,
    /// TLS to the database (default off: a Unix socket or a trusted network).
    pub database_tls: scrip_stores::PostgresTls,
    /// Cluster state the embedder provides with its [`Self::custom_store`] (cluster mode
    /// on a backend of its own). With `store` postgres and no custom store, the database
    /// provides it.
    pub custom_cluster: Option<Arc<dyn ClusterState>>,
    /// Cluster mode: how often the published keyring epoch is read, to follow rotations.
    pub keyring_poll_interval: Duration,
    /// Cluster mode: how far this node's clock may be from the database server's. Beyond
    /// it the server refuses to start, and warns (metric
    /// `scrip_cluster_clock_skew_exceeded_total`) when a later check finds it.
    pub max_node_clock_skew: Duration,
    /// How often the revocation list is published (a new version stored if anything was
    /// revoked, frozen or unfrozen, and the list signed afresh so that clients' copies stay
    /// young). Operator actions on this server also publish at once.
    pub revocation_publish_interval: Duration,
}

/// Bodies up to this size are read without a reservation from the body budget: every
/// connection may hold one, so together they are bounded by `max_connections` times this.
pub const SMALL_BODY_BYTES: usize = 16 << 10;

impl ServerConfig {
    /// Defaults: redb in `data_dir`, keys in `<data_dir>/keys`, 8 MiB bodies, 5 minutes of
    /// clock skew, 30 seconds to send headers and 30 more to send the body, 1024
    /// connections, 16 KiB request heads, 64 MiB of large bodies in flight, the demo
    /// funding source ([`ServerFunding::Demo`]); in cluster mode 16 database connections,
    /// keyring polled every 5 seconds, node clocks within 2 seconds of the database's.
    pub fn new(
        listen: SocketAddr,
        data_dir: impl Into<PathBuf>,
        operator_token: impl Into<OperatorToken>,
    ) -> Self {
        let data_dir = data_dir.into();
        ServerConfig {
            listen,
            keys: KeySource::Directory {
                dir: data_dir.join("keys"),
                generate: crate::KeyringConfig::default(),
            },
            data_dir,
            store: StoreKind::Redb,
            custom_store: None,
            // The server verifies and signs on the fastest backend compiled in.
            issuer: IssuerConfig {
                backend: scrip_tokens::Backend::fastest(),
                ..IssuerConfig::default()
            },
            operator_token: operator_token.into(),
            max_body_bytes: 8 << 20,
            max_clock_skew: Duration::from_secs(300),
            release_interval: Duration::from_secs(60),
            read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_header_bytes: 16 << 10,
            body_budget_bytes: 64 << 20,
            funding: ServerFunding::Demo,
            payouts: ServerPayouts::Demo,
            database_url: None,
            database_connections: 16,
            database_tls: scrip_stores::PostgresTls::Off,
            custom_cluster: None,
            keyring_poll_interval: Duration::from_secs(5),
            max_node_clock_skew: Duration::from_secs(2),
            revocation_publish_interval: Duration::from_secs(10),
        }
    }
}

/// The issuer as the server runs it.
pub type ServerIssuer = Issuer<MeteredStore<Arc<dyn RecordStore>>, Arc<dyn FundingSource>>;

/// Shared state of all handlers.
pub struct AppState {
    /// The issuer core.
    pub issuer: ServerIssuer,
    /// Where merchants' payouts go.
    pub payouts: Arc<dyn PayoutSink>,
    /// Stale and replayed request guard.
    pub replay: ReplayGuard,
    /// Prometheus counters.
    pub metrics: Arc<Metrics>,
    operator_token: String,
    max_body_bytes: usize,
    read_timeout: Duration,
    body_budget: Arc<tokio::sync::Semaphore>,
    /// The data (and keys) directory locks: held as long as anything of the server
    /// (a connection still finishing, the release loop) can still use the store.
    _locks: Vec<DirectoryLock>,
    /// The signed key directory served, when it was signed, and the keyring it was signed
    /// from (a rotation replaces the keyring: the cache is then stale).
    directory: std::sync::Mutex<Option<CachedDirectory>>,
    /// Held while the key directory is signed again, so that requests finding the cache
    /// stale together wait for one signature instead of each making its own.
    directory_signing: tokio::sync::Mutex<()>,
    /// This server's membership of a cluster (cluster mode only).
    pub(crate) cluster: Option<cluster::ClusterNode>,
    /// The signed revocation lists served.
    pub(crate) revocations: revocations::PublishedRevocations,
}

impl AppState {
    /// Admits a signed request, in the order that keeps unauthenticated senders from
    /// leaving state behind: its time (no work), then its signature (a store read and
    /// one verification), and only then its nonce, remembered for the replay window.
    pub async fn admit<'r, R>(
        &self,
        request: &'r R,
        now: Timestamp,
    ) -> std::result::Result<crate::Authenticated<'r, R>, ApiError>
    where
        R: crate::SignedRequest + replay::Fresh,
    {
        self.replay.check_time(request.created_at(), now)?;
        let authenticated = self.issuer.authenticate(request).await?;
        if R::REMEMBERED {
            self.replay
                .admit(request.created_at(), &request.replay_id(), now)
                .await?;
            // Once more with the time after remembering: the signature check and the
            // nonce table may have taken a while, and a nonce is forgotten only once its
            // request is stale. A request that went stale meanwhile might have found its
            // nonce forgotten already.
            self.replay.check_time(request.created_at(), self.now())?;
        }
        Ok(authenticated)
    }

    /// The time this server decides by: the cluster's (the database server's clock, see
    /// [`cluster`]) in cluster mode, the wall clock otherwise.
    pub fn now(&self) -> Timestamp {
        match &self.cluster {
            Some(node) => node.now(),
            None => now(),
        }
    }

    /// Whether this server is one of a cluster (store postgres).
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// In cluster mode, this process's id as the holder of job leases.
    pub fn node_id(&self) -> Option<uuid::Uuid> {
        self.cluster.as_ref().map(|c| c.node_id)
    }

    /// In cluster mode, the published keyring epoch this server serves (it follows
    /// rotations within [`ServerConfig::keyring_poll_interval`] once the keys directory
    /// holds the new keyring).
    pub fn keyring_epoch(&self) -> Option<u64> {
        self.cluster.as_ref().map(|c| c.serving_epoch())
    }

    /// Drops the cached signed key directory (after the keyring changed).
    pub(crate) fn forget_directory(&self) {
        self.replace_directory(None);
    }

    fn replace_directory(&self, entry: Option<CachedDirectory>) {
        match self.directory.lock() {
            Ok(mut c) => *c = entry,
            Err(p) => *p.into_inner() = entry,
        }
    }

    /// The cached signed key directory, if it was signed from `keys` (the keyring served
    /// now, not one a rotation has replaced) less than `ttl` before `now`.
    pub(crate) fn cached_directory(
        &self,
        now: Timestamp,
        keys: &Arc<Keyring>,
        ttl: Duration,
    ) -> Option<Arc<scrip_tokens::SignedKeyDirectory>> {
        let cached = match self.directory.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let (at, signed_by, directory) = cached?;
        (now < at.saturating_add(ttl) && now >= at && Arc::ptr_eq(&signed_by, keys))
            .then_some(directory)
    }

    /// Signs the key directory of the keyring served now and caches it, unless a request
    /// that held the signing lock before this one already did. The keyring is read after
    /// the lock is taken: a request that waited through a rotation signs the new keys, not
    /// the ones the rotation withdrew.
    pub(crate) async fn sign_directory<G: rand::CryptoRng + ?Sized>(
        &self,
        ttl: Duration,
        rng: &mut G,
    ) -> Result<Arc<scrip_tokens::SignedKeyDirectory>> {
        let _signing = self.directory_signing.lock().await;
        let keys = self.issuer.keys();
        let now = self.now();
        if let Some(directory) = self.cached_directory(now, &keys, ttl) {
            return Ok(directory);
        }
        let directory = Arc::new(keys.signed_directory(now, rng)?);
        self.replace_directory(Some((now, keys, Arc::clone(&directory))));
        Ok(directory)
    }

    /// Whether `presented` is the operator token (compared in constant time).
    pub fn is_operator(&self, presented: Option<&str>) -> bool {
        let Some(presented) = presented else {
            return false;
        };
        let (a, b) = (presented.as_bytes(), self.operator_token.as_bytes());
        if a.len() != b.len() || b.is_empty() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The wall clock as a protocol timestamp.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(ms)
}

/// A fresh CSPRNG for one request, seeded from the thread-local generator (which is
/// seeded from the OS).
pub(crate) fn request_rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::from_rng(&mut rand::rng())
}

/// Opens an embedded store backend in `data_dir`. The postgres store is connected with
/// [`connect_store`] (it is async).
pub fn open_store(kind: StoreKind, data_dir: &Path) -> Result<Arc<dyn RecordStore>> {
    Ok(match kind {
        StoreKind::Redb => Arc::new(RedbStore::open(data_dir.join("scrip.redb"))?),
        StoreKind::File => Arc::new(FileStore::open(data_dir.join("store"))?),
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Postgres => {
            return Err(IssuerError::Unsupported(
                "the postgres store is connected with connect_store",
            ))
        }
    })
}

/// Stripes of each of the issuer's system ledger accounts in PostgreSQL: every deposit,
/// withdrawal and redemption posts to one of them, so one balance row each would
/// serialize the whole cluster on it (the "no hot row" rule).
pub const SYSTEM_ACCOUNT_STRIPES: u16 = 64;

/// The store `kind` for a server: an embedded one in `data_dir` ([`open_store`]), or for
/// [`StoreKind::Postgres`] the database at `database_url` (migrated if needed, the
/// issuer's system accounts striped), which is also the cluster's shared state. Must run
/// inside a tokio runtime.
pub async fn connect_store(
    kind: StoreKind,
    data_dir: &Path,
    database_url: Option<&str>,
    database_connections: usize,
    database_tls: &scrip_stores::PostgresTls,
) -> Result<(Arc<dyn RecordStore>, Option<Arc<dyn ClusterState>>)> {
    if !kind.is_shared() {
        return Ok((open_store(kind, data_dir)?, None));
    }
    let url = database_url
        .filter(|u| !u.trim().is_empty())
        .ok_or(IssuerError::DatabaseUrlMissing)?;
    let (store, cluster) =
        cluster::connect_database_with(url, database_connections, database_tls.clone()).await?;
    Ok((store, Some(cluster)))
}

/// A started server.
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    serve: JoinHandle<()>,
    release: JoinHandle<()>,
    /// Cluster mode: follows the published keyring.
    keyring_watch: Option<JoinHandle<()>>,
    /// Publishes the revocation list.
    revocation_publish: JoinHandle<()>,
}

impl Drop for RunningServer {
    /// A server dropped without [`RunningServer::shutdown`] stops accepting and releasing;
    /// its directory locks go with the last connection still being served. A cluster
    /// server's lease is not given up here (that takes the database): it runs out.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.release.abort();
        self.revocation_publish.abort();
        if let Some(watch) = &self.keyring_watch {
            watch.abort();
        }
    }
}

impl RunningServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state (issuer, metrics).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Graceful shutdown: stops accepting, lets in-flight requests finish, then closes the
    /// store (everything acknowledged is durable). A cluster server also gives up its
    /// lease on the periodic job once its loop has stopped, so that another server takes
    /// the job over at its next round rather than when the lease runs out.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // In-flight requests get a grace period; a client that never finishes its request
        // must not keep the store from being closed.
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.serve)
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period; closing anyway");
            self.serve.abort();
            let _ = (&mut self.serve).await;
        }
        self.release.abort();
        self.revocation_publish.abort();
        let _ = (&mut self.revocation_publish).await;
        if let Some(watch) = self.keyring_watch.take() {
            watch.abort();
            let _ = watch.await;
        }
        // Cancelled tasks let go of the state (and its directory locks) when they end.
        let _ = (&mut self.release).await;
        // Only now: the loop can no longer renew the lease after it is given up. Before
        // closing the store, which (PostgreSQL) is also the cluster state's connection.
        if let Some(node) = &self.state.cluster {
            let released = tokio::time::timeout(
                LEASE_RELEASE_TIMEOUT,
                node.state.release_lead(cluster::RELEASE_JOB, node.node_id),
            )
            .await;
            match released {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not give up the release lease; it runs out by itself")
                }
                Err(_) => tracing::warn!(
                    "giving up the release lease took too long; it runs out by itself"
                ),
            }
        }
        self.state.issuer.store().close().await?;
        tracing::info!("store closed; server stopped");
        Ok(())
    }

    /// Runs until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) -> Result<()> {
        signal.await;
        tracing::info!("shutting down: finishing in-flight requests");
        self.shutdown().await
    }
}

/// Takes the data directory, binds the listener, loads (or on first start generates) the
/// keys, opens the store and starts serving. In that order: a second server on the same
/// directory stops at the lock having changed nothing, and a taken port fails before any
/// key is generated.
///
/// In cluster mode (store postgres, or a [`ServerConfig::custom_cluster`]) the settings
/// that would differ between servers are refused first (an operator token generated per
/// data directory, a missing database URL); then, after connecting, the node's clock is
/// compared with the database's and its keys with the published keyring (see
/// [`cluster`]). Keys are never generated there.
pub async fn start(config: ServerConfig) -> Result<RunningServer> {
    let cluster_mode = config.custom_cluster.is_some() || config.store.is_shared();
    if cluster_mode {
        check_cluster_config(&config)?;
    }
    data_dir::create_private_dir(&config.data_dir)?;
    let mut locks = vec![DirectoryLock::acquire(&config.data_dir)?];
    if let (KeySource::Directory { dir, .. }, false) = (&config.keys, cluster_mode) {
        // The keys are this server's alone too, wherever they are (another server may
        // name them with --keys-dir): two issuers with one keyring and two stores would
        // each accept every coin once. (A cluster's servers share one store, and only
        // read their keys directory.)
        data_dir::make_private_dir(dir)?;
        if !data_dir::same_directory(dir, &config.data_dir)? {
            locks.push(DirectoryLock::acquire(dir)?);
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| IssuerError::Io(format!("binding {}: {e}", config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| IssuerError::Io(format!("listener address: {e}")))?;
    let operator_token = match config.operator_token {
        OperatorToken::Given(token) if !token.is_empty() => token,
        OperatorToken::Given(_) => {
            return Err(IssuerError::Io("the operator token is empty".into()));
        }
        OperatorToken::DataDir => data_dir::load_or_create_operator_token(&config.data_dir)?,
    };
    let started = now();
    let metrics = Arc::new(Metrics::default());
    let (keyring, store, cluster) = if cluster_mode {
        let (store, cluster, owned) = match config.custom_store {
            Some(store) => (store, config.custom_cluster, false),
            None => {
                let (store, cluster) = connect_store(
                    config.store,
                    &config.data_dir,
                    config.database_url.as_deref(),
                    config.database_connections,
                    &config.database_tls,
                )
                .await?;
                (store, cluster.or(config.custom_cluster), true)
            }
        };
        let Some(shared) = cluster else {
            return Err(IssuerError::ClusterConfig(
                "a custom store in cluster mode needs its cluster state (custom_cluster)",
            ));
        };
        let joined = cluster::ClusterNode::join(
            shared,
            config.keys,
            config.max_node_clock_skew,
            config.keyring_poll_interval,
            &metrics,
        )
        .await;
        match joined {
            Ok((keyring, node)) => (keyring, store, Some(node)),
            Err(e) => {
                // A store this function connected is closed again (its pool and writer).
                if owned {
                    let _ = store.close().await;
                }
                return Err(e);
            }
        }
    } else {
        let keyring = match config.keys {
            KeySource::Provided(k) => *k,
            KeySource::Directory { dir, generate } => {
                let mut rng = request_rng();
                let (keyring, generated) =
                    crate::keyring_files::load_or_generate(&dir, &generate, started, &mut rng)?;
                if generated {
                    tracing::info!(dir = %dir.display(), "generated issuer keys (first start)");
                } else {
                    tracing::info!(dir = %dir.display(), "loaded issuer keys");
                }
                keyring
            }
        };
        let store = match config.custom_store {
            Some(store) => store,
            None => open_store(config.store, &config.data_dir)?,
        };
        (keyring, store, None)
    };
    // The root key wallets and merchants pin, published next to the data (public).
    let root_pem = keyring
        .root
        .verifying_key()
        .public_key()
        .to_pem()
        .map_err(IssuerError::Invalid)?;
    data_dir::publish_root_key(&config.data_dir, &root_pem)?;
    let funding: Arc<dyn FundingSource> = match config.funding {
        ServerFunding::Source(source) => source,
        ServerFunding::RecordedDemo => Arc::new(RecordedDemoFunding::new(Arc::clone(&store))),
        ServerFunding::Demo if cluster.is_some() => {
            Arc::new(RecordedDemoFunding::new(Arc::clone(&store)))
        }
        ServerFunding::Demo => Arc::new(InMemoryFunding::new()),
    };
    let payouts: Arc<dyn PayoutSink> = match config.payouts {
        ServerPayouts::Sink(sink) => sink,
        ServerPayouts::Demo => Arc::new(DemoPayoutFile::open(
            config.data_dir.join(DEMO_PAYOUTS_FILE),
        )?),
    };
    let replay = match &cluster {
        Some(node) => ReplayGuard::shared(config.max_clock_skew, Arc::clone(&node.state)),
        None => ReplayGuard::new(config.max_clock_skew, started),
    };
    let store = MeteredStore::new(store, Arc::clone(&metrics));
    let crypto_backend = config.issuer.backend;
    let issuer = Issuer::new(store, funding, keyring, config.issuer);
    let state = Arc::new(AppState {
        issuer,
        payouts,
        replay,
        metrics,
        operator_token,
        max_body_bytes: config.max_body_bytes,
        read_timeout: config.read_timeout,
        // At least one largest body must fit, or large requests could never be served.
        body_budget: Arc::new(tokio::sync::Semaphore::new(
            config
                .body_budget_bytes
                .max(config.max_body_bytes)
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        )),
        _locks: locks,
        directory: std::sync::Mutex::new(None),
        directory_signing: tokio::sync::Mutex::new(()),
        cluster,
        revocations: revocations::PublishedRevocations::default(),
    });

    let (stop, stopped) = oneshot::channel::<()>();
    let routes = filters::routes(Arc::clone(&state));
    let open_files = connections::open_files_limit();
    // Descriptors open now, and the database pool's, which opens connections as it needs.
    let pool = if cluster_mode {
        config.database_connections
    } else {
        0
    };
    let in_use = connections::open_descriptors()
        .unwrap_or(0)
        .saturating_add(u64::try_from(pool).unwrap_or(u64::MAX));
    let max_connections = connections::connection_cap(config.max_connections, open_files, in_use);
    if max_connections < config.max_connections {
        tracing::warn!(
            configured = config.max_connections,
            serving = max_connections,
            open_files_limit = open_files,
            descriptors_in_use = in_use,
            "max_connections lowered to fit the open-files limit; raise the limit \
             (ulimit -n, systemd LimitNOFILE) to serve more"
        );
    }
    let limits = connections::ConnectionLimits {
        read_timeout: config.read_timeout,
        max_connections,
        max_header_bytes: config.max_header_bytes,
    };
    let serve = tokio::spawn(connections::serve(
        listener,
        routes,
        limits,
        Arc::clone(&state.metrics),
        async move {
            let _ = stopped.await;
        },
    ));
    let release = tokio::spawn(release_expired_loop(
        Arc::clone(&state),
        config.release_interval,
    ));
    let revocation_publish = tokio::spawn(revocations::publish_loop(
        Arc::clone(&state),
        config.revocation_publish_interval,
    ));
    let keyring_watch = state.is_cluster().then(|| {
        tokio::spawn(cluster::keyring_watch_loop(
            Arc::clone(&state),
            config.keyring_poll_interval,
        ))
    });
    tracing::info!(
        %addr,
        store = %config.store,
        cluster = state.is_cluster(),
        %crypto_backend,
        data_dir = %config.data_dir.display(),
        "listening"
    );
    Ok(RunningServer {
        addr,
        state,
        stop: Some(stop),
        serve,
        release,
        keyring_watch,
        revocation_publish,
    })
}

/// Refuses, before anything is touched, the settings under which the servers of a
/// cluster would answer differently.
fn check_cluster_config(config: &ServerConfig) -> Result<()> {
    if config.operator_token == OperatorToken::DataDir {
        return Err(IssuerError::ClusterConfig(
            "the operator token must be given (--operator-token or SCRIP_OPERATOR_TOKEN), the \
             same on every server; one generated in each data directory would differ",
        ));
    }
    if config.custom_store.is_none()
        && config.store.is_shared()
        && config
            .database_url
            .as_deref()
            .is_none_or(|u| u.trim().is_empty())
    {
        return Err(IssuerError::DatabaseUrlMissing);
    }
    Ok(())
}

/// Releases the reservations of expired balance certificates, and lets the replay cache
/// forget expired nonces, forever. In cluster mode one server at a time does both (the
/// holder of the [`cluster::RELEASE_JOB`] lease); every server checks its clock.
async fn release_expired_loop(state: Arc<AppState>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A leader that stops renewing (it died, or lost the database) is replaced once its
    // lease runs out: three rounds, so one slow round does not hand the job over.
    let lease = every.saturating_mul(3).max(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(node) = &state.cluster else {
            state.replay.prune(now());
            release_expired_round(&state, None).await;
            continue;
        };
        node.check_clock(&state.metrics).await;
        // Taken before the lease is: the lease runs from the database's statement, later.
        let round_start = tokio::time::Instant::now();
        match node
            .state
            .try_lead(cluster::RELEASE_JOB, node.node_id, lease)
            .await
        {
            Ok(true) => {
                state.metrics.cluster_leader(true);
                // The whole round ends within half the lease, so that leadership stays
                // with one holder; whatever is left waits for the next round. Pruning
                // gets the first half of that (a backlog of nonces must not starve the
                // releases, which free customers' money), releasing the rest.
                // (Releasing twice is harmless anyway: each release is a claim.)
                let deadline = round_start + lease / 2;
                let prune_until = round_start + lease / 4;
                // Forgotten only once stale on every node, with a margin for the nodes'
                // clock corrections.
                let before = node.forget_nonces_before(node.now());
                forget_expired_nonces(node.state.as_ref(), before, prune_until).await;
                release_expired_round(&state, Some(deadline)).await;
            }
            Ok(false) => state.metrics.cluster_leader(false),
            Err(e) => {
                state.metrics.cluster_leader(false);
                tracing::warn!(error = %e, "could not take or renew the release lease");
            }
        }
    }
}

/// Forgets the nonces due before `before`, [`FORGET_BATCH`] at a time, until none is left
/// or `deadline` passes (a backlog, after the job stood still, is worked off over several
/// rounds, each within the lease).
async fn forget_expired_nonces(
    cluster: &dyn ClusterState,
    before: Timestamp,
    deadline: tokio::time::Instant,
) {
    let mut forgotten = 0u64;
    loop {
        match cluster.forget_nonces(before, FORGET_BATCH).await {
            Ok(n) => {
                forgotten = forgotten.saturating_add(n);
                if n < FORGET_BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "forgetting expired nonces failed");
                break;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!(
                count = forgotten,
                "forgetting expired nonces: the round's time is up, the rest waits for the next"
            );
            return;
        }
    }
    if forgotten > 0 {
        tracing::debug!(count = forgotten, "forgot expired nonces");
    }
}

/// Releases expired certificates page by page until a short page (many may expire within
/// one tick), or until `deadline`.
async fn release_expired_round(state: &AppState, deadline: Option<tokio::time::Instant>) {
    loop {
        match state
            .issuer
            .release_expired(state.now(), crate::MAX_PAGE)
            .await
        {
            Ok(released) => {
                if !released.is_empty() {
                    tracing::info!(count = released.len(), "released expired certificates");
                }
                if released.len() < crate::MAX_PAGE {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "releasing expired certificates failed");
                break;
            }
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
    }
}

/// A random operator token (32 bytes, hex).
pub fn generate_operator_token() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
