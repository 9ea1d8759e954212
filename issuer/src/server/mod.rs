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

mod connections;
mod data_dir;
mod errors;
mod filters;
mod handlers;
mod metrics;
mod models;
mod replay;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use scrip_stores::{FileStore, MemoryStore, RecordStore, RedbStore};
use scrip_tokens::Timestamp;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use data_dir::{DirectoryLock, LOCK_FILE, OPERATOR_TOKEN_FILE, ROOT_KEY_FILE};
pub use errors::ApiError;
pub use metrics::{MeteredStore, Metrics};
pub use replay::ReplayGuard;

use crate::{FundingSource, InMemoryFunding, Issuer, IssuerConfig, IssuerError, Keyring, Result};

/// The store backend the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded redb database `<data-dir>/scrip.redb` (the default).
    Redb,
    /// Append-only checksummed log in `<data-dir>/store/`.
    File,
    /// In memory: everything is lost when the server stops (tests, demos).
    Memory,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "redb" => Ok(StoreKind::Redb),
            "file" => Ok(StoreKind::File),
            "memory" => Ok(StoreKind::Memory),
            other => Err(format!("unknown store {other:?}: use redb, file or memory")),
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Redb => "redb",
            StoreKind::File => "file",
            StoreKind::Memory => "memory",
        })
    }
}

/// How long a graceful shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Where the server's keys come from.
pub enum KeySource {
    /// Load `<dir>/keyring.json` and its PEM files, or generate them there on first start
    /// (files written 0600).
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
    /// `<data-dir>/operator-token`, created (0600, random) on first start.
    DataDir,
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
    /// Most connections served at once; more are answered `503 busy` and closed.
    pub max_connections: usize,
    /// Largest request head (request line and headers) a connection may buffer; larger
    /// heads get `431 headers_too_large`.
    pub max_header_bytes: usize,
    /// Bytes of request bodies larger than [`SMALL_BODY_BYTES`] held at once, reserved chunk
    /// by chunk as they arrive; a body that does not fit gets `503 busy`. Smaller bodies need
    /// no reservation (they are bounded by the connection cap).
    pub body_budget_bytes: usize,
    /// Where deposits are collected from.
    pub funding: Arc<dyn FundingSource>,
}

/// Bodies up to this size are read without a reservation from the body budget: every
/// connection may hold one, so together they are bounded by `max_connections` times this.
pub const SMALL_BODY_BYTES: usize = 16 << 10;

impl ServerConfig {
    /// Defaults: redb in `data_dir`, keys in `<data_dir>/keys`, 8 MiB bodies, 5 minutes of
    /// clock skew, 30 seconds to send headers and 30 more to send the body, 1024
    /// connections, 16 KiB request heads, 64 MiB of large bodies in flight, a demo funding
    /// source that accepts every deposit.
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
            issuer: IssuerConfig::default(),
            operator_token: operator_token.into(),
            max_body_bytes: 8 << 20,
            max_clock_skew: Duration::from_secs(300),
            release_interval: Duration::from_secs(60),
            read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_header_bytes: 16 << 10,
            body_budget_bytes: 64 << 20,
            funding: Arc::new(InMemoryFunding::new()),
        }
    }
}

/// The issuer as the server runs it.
pub type ServerIssuer = Issuer<MeteredStore<Arc<dyn RecordStore>>, Arc<dyn FundingSource>>;

/// Shared state of all handlers.
pub struct AppState {
    /// The issuer core.
    pub issuer: ServerIssuer,
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
    directory: std::sync::Mutex<Option<(Timestamp, scrip_tokens::SignedKeyDirectory)>>,
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
                .admit(request.created_at(), &request.replay_id(), now)?;
        }
        Ok(authenticated)
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

/// Opens the configured store backend.
pub fn open_store(kind: StoreKind, data_dir: &Path) -> Result<Arc<dyn RecordStore>> {
    Ok(match kind {
        StoreKind::Redb => Arc::new(RedbStore::open(data_dir.join("scrip.redb"))?),
        StoreKind::File => Arc::new(FileStore::open(data_dir.join("store"))?),
        StoreKind::Memory => Arc::new(MemoryStore::new()),
    })
}

/// A started server.
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    serve: JoinHandle<()>,
    release: JoinHandle<()>,
}

impl Drop for RunningServer {
    /// A server dropped without [`RunningServer::shutdown`] stops accepting and releasing;
    /// its directory locks go with the last connection still being served.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.release.abort();
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
    /// store (everything acknowledged is durable).
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
        // Cancelled tasks let go of the state (and its directory locks) when they end.
        let _ = (&mut self.release).await;
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
pub async fn start(config: ServerConfig) -> Result<RunningServer> {
    data_dir::create_private_dir(&config.data_dir)?;
    let mut locks = vec![DirectoryLock::acquire(&config.data_dir)?];
    if let KeySource::Directory { dir, .. } = &config.keys {
        // The keys are this server's alone too, wherever they are (another server may
        // name them with --keys-dir): two issuers with one keyring and two stores would
        // each accept every coin once.
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
    // The root key wallets and merchants pin, published next to the data (public).
    let root_pem = keyring
        .root
        .verifying_key()
        .public_key()
        .to_pem()
        .map_err(IssuerError::Invalid)?;
    data_dir::publish_root_key(&config.data_dir, &root_pem)?;
    let metrics = Arc::new(Metrics::default());
    let store = match config.custom_store {
        Some(store) => store,
        None => open_store(config.store, &config.data_dir)?,
    };
    let store = MeteredStore::new(store, Arc::clone(&metrics));
    let issuer = Issuer::new(store, config.funding, keyring, config.issuer);
    let state = Arc::new(AppState {
        issuer,
        replay: ReplayGuard::new(config.max_clock_skew, started),
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
    });

    let (stop, stopped) = oneshot::channel::<()>();
    let routes = filters::routes(Arc::clone(&state));
    let limits = connections::ConnectionLimits {
        read_timeout: config.read_timeout,
        max_connections: config.max_connections.max(1),
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
    tracing::info!(%addr, store = %config.store, data_dir = %config.data_dir.display(), "listening");
    Ok(RunningServer {
        addr,
        state,
        stop: Some(stop),
        serve,
        release,
    })
}

/// Releases the reservations of expired balance certificates, and lets the replay cache
/// forget expired nonces, forever.
async fn release_expired_loop(state: Arc<AppState>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.replay.prune(now());
        // Page until a short page: many certificates may expire within one tick.
        loop {
            match state.issuer.release_expired(now(), crate::MAX_PAGE).await {
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
