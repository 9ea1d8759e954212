//! Cluster mode of the server, against an in-memory stand-in for the cluster's shared
//! state (the PostgreSQL implementation has its own tests in scrip-stores, and
//! `cluster_postgres.rs` runs these start-up rules against the real one): what a server
//! refuses at start, how it follows the published keyring, that one server leads the
//! periodic jobs, and that the demo funding source is the cluster's, not a process's.
//!
//! Its own test binary, not a module of `tests/it/`: it times a leader's failover, which
//! tests of other modules running beside it on the same cores would slow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use scrip_issuer::server::{
    self, cluster, ApiError, KeySource, OperatorToken, RunningServer, ServerConfig, ServerFunding,
    StoreKind,
};
use scrip_issuer::{
    keyring_files, FundingError, FundingSource, IssuerError, Keyring, RecordedDemoFunding,
};
use scrip_stores::{ClusterState, KeyringEpoch, MemoryStore, PublishOutcome, RecordStore};
use scrip_testkit::{eur, fixture_keyring, registration, rng, validity_around, DAY};
use scrip_tokens::keys::{IssuerKeyRole, DEFAULT_RSA_BITS};
use scrip_tokens::{
    fixtures, AccountId, DepositId, DepositRequest, DepositRequestPayload, Timestamp,
};

/// The cluster's shared state in memory, with the semantics of the trait: nonces
/// remembered once, leases with one holder at a time, keyring epochs by compare and set,
/// and a clock `offset_ms` behind the node's. Each `forget_nonces` call takes
/// `forget_delay_ms` (a slow database).
#[derive(Default)]
struct FakeCluster {
    nonces: Mutex<HashMap<[u8; 16], Timestamp>>,
    leases: Mutex<HashMap<String, (uuid::Uuid, Instant)>>,
    epochs: Mutex<Vec<KeyringEpoch>>,
    offset_ms: AtomicI64,
    forget_delay_ms: AtomicU64,
}

impl FakeCluster {
    /// Who holds the lease on `job` (expired or not), if anyone.
    fn holder(&self, job: &str) -> Option<uuid::Uuid> {
        self.leases
            .lock()
            .unwrap()
            .get(job)
            .map(|(holder, _)| *holder)
    }
}

#[async_trait]
impl ClusterState for FakeCluster {
    async fn remember_nonce(
        &self,
        key: [u8; 16],
        forget_at: Timestamp,
    ) -> scrip_stores::Result<bool> {
        let mut nonces = self.nonces.lock().unwrap();
        if nonces.contains_key(&key) {
            return Ok(false);
        }
        nonces.insert(key, forget_at);
        Ok(true)
    }

    async fn forget_nonces(&self, before: Timestamp, max_rows: u64) -> scrip_stores::Result<u64> {
        let delay = self.forget_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let mut nonces = self.nonces.lock().unwrap();
        let due: Vec<[u8; 16]> = nonces
            .iter()
            .filter(|(_, at)| **at < before)
            .map(|(key, _)| *key)
            .take(max_rows as usize)
            .collect();
        for key in &due {
            nonces.remove(key);
        }
        Ok(due.len() as u64)
    }

    async fn try_lead(
        &self,
        job: &str,
        holder: uuid::Uuid,
        lease: Duration,
    ) -> scrip_stores::Result<bool> {
        let mut leases = self.leases.lock().unwrap();
        let now = Instant::now();
        match leases.get(job) {
            Some((other, until)) if *other != holder && *until > now => Ok(false),
            _ => {
                leases.insert(job.to_owned(), (holder, now + lease));
                Ok(true)
            }
        }
    }

    async fn release_lead(&self, job: &str, holder: uuid::Uuid) -> scrip_stores::Result<()> {
        let mut leases = self.leases.lock().unwrap();
        if leases.get(job).is_some_and(|(h, _)| *h == holder) {
            leases.remove(job);
        }
        Ok(())
    }

    async fn cluster_now(&self) -> scrip_stores::Result<Timestamp> {
        let offset = self.offset_ms.load(Ordering::SeqCst);
        let now = server::now().as_unix_millis();
        Ok(Timestamp::from_unix_millis(
            now.saturating_add_signed(-offset),
        ))
    }

    async fn keyring_epoch(&self) -> scrip_stores::Result<Option<KeyringEpoch>> {
        Ok(self.epochs.lock().unwrap().last().cloned())
    }

    async fn publish_keyring(
        &self,
        fingerprint: [u8; 32],
        expected_previous: Option<u64>,
    ) -> scrip_stores::Result<PublishOutcome> {
        let mut epochs = self.epochs.lock().unwrap();
        let current = epochs.last().cloned();
        if let Some(current) = &current {
            if current.fingerprint == fingerprint {
                return Ok(PublishOutcome::Current(current.clone()));
            }
        }
        if current.as_ref().map(|c| c.epoch) != expected_previous {
            return Ok(PublishOutcome::Stale { current });
        }
        let next = KeyringEpoch {
            epoch: current.map_or(1, |c| c.epoch + 1),
            fingerprint,
        };
        epochs.push(next.clone());
        Ok(PublishOutcome::Current(next))
    }
}

const TOKEN: &str = "cluster-operator-token";

/// The fixture keys valid around the wall clock (the servers use it), saved in `dir`.
fn save_keys(dir: &Path) -> Keyring {
    let keyring = fixture_keyring(validity_around(server::now(), DAY * 30, DAY * 30));
    keyring_files::save(&keyring, dir).unwrap();
    keyring_files::load(dir).unwrap()
}

/// A cluster-mode server config: its own data directory, the shared store and cluster
/// state, keys from `keys_dir`, fast loops.
fn node(
    data_dir: &Path,
    keys_dir: &Path,
    store: &Arc<MemoryStore>,
    cluster: &Arc<FakeCluster>,
) -> ServerConfig {
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        data_dir,
        OperatorToken::Given(TOKEN.into()),
    );
    config.issuer.backend = scrip_testkit::backend();
    config.store = StoreKind::Memory;
    let store: Arc<dyn RecordStore> = store.clone();
    config.custom_store = Some(store);
    let cluster: Arc<dyn ClusterState> = cluster.clone();
    config.custom_cluster = Some(cluster);
    config.keys = KeySource::Directory {
        dir: keys_dir.to_path_buf(),
        generate: Default::default(),
    };
    config.release_interval = Duration::from_millis(50);
    config.keyring_poll_interval = Duration::from_millis(50);
    config
}

async fn publish(cluster: &FakeCluster, keyring: &Keyring) -> KeyringEpoch {
    cluster::publish_keyring(keyring, "test", cluster, false)
        .await
        .unwrap()
}

/// Waits (up to 10 s) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 request to `server` (a JSON `body`, if any): the status and the body of
/// the answer.
async fn http(
    server: &RunningServer,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: scrip\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn metric(server: &RunningServer, name: &str) -> f64 {
    let state = server.state();
    let text = state.metrics.render(&state.issuer.store().stats());
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_cluster_server_refuses_a_per_node_operator_token_and_a_missing_database() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    let keys = tmp.path().join("keys");
    publish(&cluster, &save_keys(&keys)).await;

    let mut config = node(&data, &keys, &store, &cluster);
    config.operator_token = OperatorToken::DataDir;
    match server::start(config).await {
        Err(IssuerError::ClusterConfig(why)) => assert!(why.contains("operator token"), "{why}"),
        other => panic!("{:?}", other.err()),
    }
    // Refused before anything was written: no token file was generated.
    assert!(!data.join(server::OPERATOR_TOKEN_FILE).exists());

    // The postgres store without a database URL.
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        &data,
        OperatorToken::Given(TOKEN.into()),
    );
    config.issuer.backend = scrip_testkit::backend();
    config.store = StoreKind::Postgres;
    assert!(matches!(
        server::start(config).await.err(),
        Some(IssuerError::DatabaseUrlMissing)
    ));
    assert_eq!("postgres".parse::<StoreKind>(), Ok(StoreKind::Postgres));
    assert_eq!(StoreKind::Postgres.to_string(), "postgres");
}

#[tokio::test]
async fn a_cluster_server_never_generates_keys_and_needs_the_published_keyring() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    let empty = tmp.path().join("no-keys");

    // Nothing published, no keys: refused, and nothing generated.
    let config = node(&tmp.path().join("a"), &empty, &store, &cluster);
    assert!(matches!(
        server::start(config).await.err(),
        Some(IssuerError::KeyringNotPublished)
    ));
    assert!(!keyring_files::exists(&empty));

    // Keys on disk, nothing published: still refused.
    let keys = tmp.path().join("keys");
    let keyring = save_keys(&keys);
    let config = node(&tmp.path().join("a"), &keys, &store, &cluster);
    assert!(matches!(
        server::start(config).await.err(),
        Some(IssuerError::KeyringNotPublished)
    ));

    // Another keyring published: this one is refused, naming both fingerprints.
    let other = [7u8; 32];
    cluster.publish_keyring(other, None).await.unwrap();
    let config = node(&tmp.path().join("a"), &keys, &store, &cluster);
    match server::start(config).await.err() {
        Some(IssuerError::KeyringMismatch {
            local,
            epoch,
            published,
            ref source_name,
        }) => {
            assert_eq!(local, keyring.fingerprint());
            assert_eq!((epoch, published), (1, other));
            assert_eq!(source_name, &keys.display().to_string());
        }
        other => panic!("{other:?}"),
    }
    // Keys provided in process are held to the same rule.
    let mut config = node(&tmp.path().join("a"), &keys, &store, &cluster);
    config.keys = KeySource::Provided(Box::new(keyring_files::load(&keys).unwrap()));
    assert!(matches!(
        server::start(config).await.err(),
        Some(IssuerError::KeyringMismatch { .. })
    ));

    // Once the directory's keyring is the published one, the server starts.
    cluster::publish_keyring(&keyring, "test", cluster.as_ref(), true)
        .await
        .unwrap();
    let running = server::start(node(&tmp.path().join("a"), &keys, &store, &cluster))
        .await
        .unwrap();
    assert!(running.state().is_cluster());
    assert_eq!(running.state().keyring_epoch(), Some(2));
    assert!(running.state().replay.is_shared());
}

#[tokio::test]
async fn a_cluster_server_refuses_a_clock_too_far_from_the_databases() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    let keys = tmp.path().join("keys");
    publish(&cluster, &save_keys(&keys)).await;
    cluster.offset_ms.store(5_000, Ordering::SeqCst);
    let config = node(&tmp.path().join("a"), &keys, &store, &cluster);
    match server::start(config).await.err() {
        Some(IssuerError::ClockSkew { skew_ms, bound_ms }) => {
            assert!((4_900..=5_100).contains(&skew_ms), "{skew_ms}");
            assert_eq!(bound_ms, 2_000);
        }
        other => panic!("{other:?}"),
    }
    // Within a wider bound it starts.
    let mut config = node(&tmp.path().join("a"), &keys, &store, &cluster);
    config.max_node_clock_skew = Duration::from_secs(10);
    server::start(config).await.unwrap();
}

#[tokio::test]
async fn a_cluster_server_decides_by_the_databases_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    let keys = tmp.path().join("keys");
    publish(&cluster, &save_keys(&keys)).await;
    // The database's clock 1.5 s ahead of this node's (within the 2 s bound).
    cluster.offset_ms.store(-1_500, Ordering::SeqCst);
    let server = server::start(node(&tmp.path().join("a"), &keys, &store, &cluster))
        .await
        .unwrap();
    let ahead = |expected_ms: i128| {
        let decided = i128::from(server.state().now().as_unix_millis());
        let local = i128::from(server::now().as_unix_millis());
        (decided - local - expected_ms).abs() < 250
    };
    assert!(ahead(1_500), "the server decides by its own clock");
    // The database's clock moves (the node's drifts): the next round measures it again.
    cluster.offset_ms.store(1_000, Ordering::SeqCst);
    until("the server follows the database's clock", || ahead(-1_000)).await;
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn servers_share_one_keys_directory_and_one_of_them_leads() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    let keys = tmp.path().join("keys");
    publish(&cluster, &save_keys(&keys)).await;
    // Two servers on one host, one keys directory (not locked in cluster mode).
    let a = server::start(node(&tmp.path().join("a"), &keys, &store, &cluster))
        .await
        .unwrap();
    let b = server::start(node(&tmp.path().join("b"), &keys, &store, &cluster))
        .await
        .unwrap();
    assert_ne!(a.state().node_id(), b.state().node_id());
    // Each keeps its own data directory to itself.
    let mut same_dir = node(&tmp.path().join("a"), &keys, &store, &cluster);
    same_dir.listen = ([127, 0, 0, 1], 0).into();
    assert!(matches!(
        server::start(same_dir).await.err(),
        Some(IssuerError::DirectoryInUse(_))
    ));

    // Several rounds: always exactly one leader.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        let leaders = metric(&a, "scrip_cluster_leader") + metric(&b, "scrip_cluster_leader");
        assert_eq!(leaders, 1.0);
    }
    let holder = cluster.leases.lock().unwrap()[cluster::RELEASE_JOB].0;
    assert!(holder == a.state().node_id().unwrap() || holder == b.state().node_id().unwrap());

    // The leader prunes the shared nonces, but only those stale on every node: a nonce
    // whose window ended within the node clock bound (2 s) ago is kept.
    let now = server::now();
    let old = now.saturating_sub(Duration::from_secs(5));
    let recent = now.saturating_sub(Duration::from_millis(500));
    cluster.remember_nonce([1; 16], old).await.unwrap();
    cluster.remember_nonce([2; 16], recent).await.unwrap();
    until("the expired nonce is forgotten", || {
        !cluster.nonces.lock().unwrap().contains_key(&[1; 16])
    })
    .await;
    assert!(cluster.nonces.lock().unwrap().contains_key(&[2; 16]));

    // The leader stops: the other takes over once the lease (3 rounds, at least 1 s) ends.
    let (stopped, survivor) = if holder == a.state().node_id().unwrap() {
        (a, b)
    } else {
        (b, a)
    };
    drop(stopped);
    let survivor_id = survivor.state().node_id().unwrap();
    until("the other server leads", || {
        cluster.leases.lock().unwrap()[cluster::RELEASE_JOB].0 == survivor_id
    })
    .await;
}

#[tokio::test]
async fn a_rotation_reaches_every_server_once_its_keys_directory_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    // Host 1: the operator's keys directory, shared by servers a and b. Host 2: a copy.
    let keys = tmp.path().join("keys");
    let copy = tmp.path().join("keys-copy");
    let keyring = save_keys(&keys);
    keyring_files::save(&keyring, &copy).unwrap();
    assert_eq!(publish(&cluster, &keyring).await.epoch, 1);
    let a = server::start(node(&tmp.path().join("a"), &keys, &store, &cluster))
        .await
        .unwrap();
    let b = server::start(node(&tmp.path().join("b"), &keys, &store, &cluster))
        .await
        .unwrap();
    let c = server::start(node(&tmp.path().join("c"), &copy, &store, &cluster))
        .await
        .unwrap();
    assert_eq!(metric(&a, "scrip_cluster_keyring_epoch"), 1.0);

    let rotated = cluster::rotate_key(
        &keys,
        IssuerKeyRole::Answer,
        server::now(),
        DAY * 30,
        DEFAULT_RSA_BITS,
        Some(cluster.as_ref()),
    )
    .await
    .unwrap();
    let published = rotated.epoch.clone().unwrap();
    assert_eq!(published.epoch, 2);
    assert_ne!(rotated.fingerprint, keyring.fingerprint());
    assert_eq!(published.fingerprint, rotated.fingerprint);

    for server in [&a, &b] {
        until("the rotation reaches the server", || {
            server.state().keyring_epoch() == Some(2)
        })
        .await;
        let keys = server.state().issuer.keys();
        assert_eq!(keys.fingerprint(), rotated.fingerprint);
        assert_eq!(keys.answer_signer.all().len(), 2);
        assert_eq!(metric(server, "scrip_cluster_keyring_epoch"), 2.0);
    }
    // Host 2 has not received the files: it keeps serving the old keys, and says so.
    until("host 2 notices", || {
        metric(&c, "scrip_cluster_keyring_reload_failures_total") >= 2.0
    })
    .await;
    assert_eq!(c.state().keyring_epoch(), Some(1));
    assert_eq!(c.state().issuer.keys().fingerprint(), keyring.fingerprint());
    // The operator copies the directory over: host 2 follows.
    keyring_files::save(&keyring_files::load(&keys).unwrap(), &copy).unwrap();
    until("host 2 follows", || c.state().keyring_epoch() == Some(2)).await;
    assert_eq!(c.state().issuer.keys().fingerprint(), rotated.fingerprint);

    // A server started now on the stale copy of an old keyring would be refused; one on
    // the rotated directory starts at epoch 2.
    let d = server::start(node(&tmp.path().join("d"), &keys, &store, &cluster))
        .await
        .unwrap();
    assert_eq!(d.state().keyring_epoch(), Some(2));
}

#[tokio::test]
async fn rotating_a_stale_copy_is_refused_before_anything_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = FakeCluster::default();
    let keys = tmp.path().join("keys");
    let stale = tmp.path().join("stale");
    let keyring = save_keys(&keys);
    keyring_files::save(&keyring, &stale).unwrap();
    publish(&cluster, &keyring).await;
    cluster::rotate_key(
        &keys,
        IssuerKeyRole::Deposit,
        server::now(),
        DAY,
        DEFAULT_RSA_BITS,
        Some(&cluster),
    )
    .await
    .unwrap();
    let manifest = std::fs::read(stale.join("keyring.json")).unwrap();
    let refused = cluster::rotate_key(
        &stale,
        IssuerKeyRole::Deposit,
        server::now(),
        DAY,
        DEFAULT_RSA_BITS,
        Some(&cluster),
    )
    .await;
    assert!(
        matches!(refused, Err(IssuerError::KeyringMismatch { epoch: 2, .. })),
        "{:?}",
        refused.err()
    );
    assert_eq!(std::fs::read(stale.join("keyring.json")).unwrap(), manifest);
    assert_eq!(cluster.keyring_epoch().await.unwrap().unwrap().epoch, 2);

    // `keys publish` of the stale copy: refused unless asked to replace.
    assert!(matches!(
        cluster::publish_keys(&stale, &cluster, false).await,
        Err(IssuerError::KeyringMismatch { .. })
    ));
    let replaced = cluster::publish_keys(&stale, &cluster, true).await.unwrap();
    assert_eq!(replaced.epoch, 3);
    assert_eq!(replaced.fingerprint, keyring.fingerprint());
    // Publishing it again is a no-op.
    assert_eq!(
        cluster::publish_keys(&stale, &cluster, false)
            .await
            .unwrap(),
        replaced
    );
}

#[tokio::test]
async fn keys_init_generates_once_and_publishes_epoch_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = FakeCluster::default();
    let keys = tmp.path().join("keys");
    let config = scrip_issuer::KeyringConfig {
        denominations: vec![(scrip_tokens::Currency::EUR, vec![1, 2])],
        ..Default::default()
    };
    let status = cluster::init_keys(&keys, &config, Some(&cluster), server::now())
        .await
        .unwrap();
    let epoch = status.epoch.clone().unwrap();
    assert_eq!(epoch.epoch, 1);
    assert_eq!(epoch.fingerprint, status.fingerprint);
    assert_eq!(
        keyring_files::load(&keys).unwrap().fingerprint(),
        status.fingerprint
    );
    // Never over existing keys.
    assert!(matches!(
        cluster::init_keys(&keys, &config, None, server::now()).await,
        Err(IssuerError::KeyringExists(_))
    ));
    // Never a second keyring for a cluster: refused before generating anything.
    let second = tmp.path().join("second");
    assert!(matches!(
        cluster::init_keys(&second, &config, Some(&cluster), server::now()).await,
        Err(IssuerError::KeyringAlreadyPublished { epoch: 1, .. })
    ));
    assert!(!keyring_files::exists(&second));
    assert_eq!(cluster.epochs.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_demo_funding_of_a_cluster_is_the_clusters() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    let keys = tmp.path().join("keys");
    publish(&cluster, &save_keys(&keys)).await;
    let a = server::start(node(&tmp.path().join("a"), &keys, &store, &cluster))
        .await
        .unwrap();
    let b = server::start(node(&tmp.path().join("b"), &keys, &store, &cluster))
        .await
        .unwrap();
    let deposit = DepositId(uuid::Uuid::from_u128(1));
    let account = AccountId(uuid::Uuid::from_u128(2));
    let (fa, fb) = (a.state().issuer.funding(), b.state().issuer.funding());
    fa.collect(deposit, account, eur(100)).await.unwrap();
    fb.collect(deposit, account, eur(100)).await.unwrap();
    // Server b never saw this deposit itself, yet refuses its id with another amount.
    assert_eq!(
        fb.collect(deposit, account, eur(200)).await,
        Err(FundingError::Mismatch)
    );
}

#[tokio::test]
async fn a_leader_that_shuts_down_hands_the_job_over_at_the_next_round() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Arc::new(FakeCluster::default());
    let keys = tmp.path().join("keys");
    publish(&cluster, &save_keys(&keys)).await;
    // A store each: shutting one server down closes its store, and the survivor's must
    // stay open (the lease is in the cluster state anyway).
    let (store_a, store_b) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let a = server::start(node(&tmp.path().join("a"), &keys, &store_a, &cluster))
        .await
        .unwrap();
    let b = server::start(node(&tmp.path().join("b"), &keys, &store_b, &cluster))
        .await
        .unwrap();
    until("one of them leads", || {
        cluster.holder(cluster::RELEASE_JOB).is_some()
    })
    .await;
    let (leader, survivor) = if cluster.holder(cluster::RELEASE_JOB) == a.state().node_id() {
        (a, b)
    } else {
        (b, a)
    };
    let (leader_id, survivor_id) = (
        leader.state().node_id().unwrap(),
        survivor.state().node_id().unwrap(),
    );

    leader.shutdown().await.unwrap();
    let stopped = Instant::now();
    // Given up at shutdown: nobody holds it, or the survivor already took it.
    let holder = cluster.holder(cluster::RELEASE_JOB);
    assert_ne!(
        holder,
        Some(leader_id),
        "the stopped leader still holds the lease"
    );
    // The survivor leads at one of its next rounds (50 ms apart), not once the lease
    // (3 rounds, at least 1 s) would have run out.
    until("the survivor leads", || {
        cluster.holder(cluster::RELEASE_JOB) == Some(survivor_id)
    })
    .await;
    assert!(
        stopped.elapsed() < Duration::from_millis(500),
        "took {:?}",
        stopped.elapsed()
    );
    until("the survivor counts itself the leader", || {
        metric(&survivor, "scrip_cluster_leader") == 1.0
    })
    .await;
    survivor.shutdown().await.unwrap();
    assert_eq!(cluster.holder(cluster::RELEASE_JOB), None);
}

#[tokio::test]
async fn a_nonce_backlog_is_pruned_over_several_rounds_each_within_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    let keys = tmp.path().join("keys");
    publish(&cluster, &save_keys(&keys)).await;
    // 200 000 expired nonces (the job stood still), forgotten 10 000 a call at 100 ms a
    // call: 2 s of pruning, twice the lease (1 s: the release interval is 50 ms).
    {
        let mut nonces = cluster.nonces.lock().unwrap();
        for n in 0..200_000u128 {
            nonces.insert(n.to_le_bytes(), Timestamp::from_unix_millis(1_000));
        }
    }
    cluster.forget_delay_ms.store(100, Ordering::SeqCst);
    let a = server::start(node(&tmp.path().join("a"), &keys, &store, &cluster))
        .await
        .unwrap();
    let b = server::start(node(&tmp.path().join("b"), &keys, &store, &cluster))
        .await
        .unwrap();
    // The leader stops each round's pruning in time to renew its lease: the other never
    // takes over (it would, after a second, if one round pruned the whole backlog).
    let mut holders = HashSet::new();
    until("the backlog is forgotten", || {
        holders.extend(cluster.holder(cluster::RELEASE_JOB));
        cluster.nonces.lock().unwrap().is_empty()
    })
    .await;
    holders.extend(cluster.holder(cluster::RELEASE_JOB));
    assert_eq!(holders.len(), 1, "the lease changed hands: {holders:?}");
    let leader = holders.into_iter().next();
    assert!(leader == a.state().node_id() || leader == b.state().node_id());
}

#[tokio::test]
async fn readyz_fails_while_a_server_serves_an_older_keyring_than_the_published_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    // The server's keys directory, and the operator's copy, where the rotation happens.
    let keys = tmp.path().join("keys");
    let operator = tmp.path().join("operator");
    let keyring = save_keys(&keys);
    keyring_files::save(&keyring, &operator).unwrap();
    publish(&cluster, &keyring).await;
    let mut config = node(&tmp.path().join("a"), &keys, &store, &cluster);
    // A grace of 3 polls: 750 ms.
    config.keyring_poll_interval = Duration::from_millis(250);
    let a = server::start(config).await.unwrap();
    assert_eq!(http(&a, "GET", "/readyz", None).await.0, 200);

    let rotated = cluster::rotate_key(
        &operator,
        IssuerKeyRole::Answer,
        server::now(),
        DAY * 30,
        DEFAULT_RSA_BITS,
        Some(cluster.as_ref()),
    )
    .await
    .unwrap();
    assert_eq!(rotated.epoch.unwrap().epoch, 2);
    // Within the grace the server is still ready (the copy may be on its way).
    assert_eq!(http(&a, "GET", "/readyz", None).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refusal = loop {
        let (status, body) = http(&a, "GET", "/readyz", None).await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(Instant::now() < deadline, "readyz never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let body: serde_json::Value = serde_json::from_str(&refusal).unwrap();
    assert_eq!(body["code"], "keyring_error", "{refusal}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("epoch 1") && message.contains("epoch 2"),
        "{message}"
    );
    // It keeps serving: the load balancer takes it out, not the server itself.
    assert_eq!(http(&a, "GET", "/healthz", None).await.0, 200);
    assert_eq!(http(&a, "GET", "/v1/keys", None).await.0, 200);
    assert_eq!(a.state().keyring_epoch(), Some(1));

    // The files arrive: the server follows, and is ready again.
    keyring_files::save(&keyring_files::load(&operator).unwrap(), &keys).unwrap();
    until("the server follows", || {
        a.state().keyring_epoch() == Some(2)
    })
    .await;
    assert_eq!(http(&a, "GET", "/readyz", None).await.0, 200);
    a.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_funding_source_that_cannot_be_reached_is_a_503_not_a_502() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, cluster) = (
        Arc::new(MemoryStore::new()),
        Arc::new(FakeCluster::default()),
    );
    let keys = tmp.path().join("keys");
    publish(&cluster, &save_keys(&keys)).await;
    // The demo funding over a store that is closed: its record cannot be written, as
    // when the cluster's database is unreachable.
    let unreachable = Arc::new(MemoryStore::new());
    unreachable.close().await.unwrap();
    let funding: Arc<dyn FundingSource> = Arc::new(RecordedDemoFunding::new(unreachable));
    let mut config = node(&tmp.path().join("a"), &keys, &store, &cluster);
    config.funding = ServerFunding::Source(funding);
    let a = server::start(config).await.unwrap();

    let mut rng = rng(7);
    let device = fixtures::device(1);
    let now = a.state().now();
    let opened = a
        .state()
        .issuer
        .open_account(&registration(&device, None, &mut rng), now, &mut rng)
        .await
        .unwrap();
    let request = DepositRequest::sign(
        DepositRequestPayload {
            deposit_id: DepositId::random(&mut rng),
            account_id: opened.account_id,
            device_id: opened.device_id,
            amount: eur(1_000),
            created_at: a.state().now(),
        },
        &device,
        &mut rng,
    )
    .unwrap();
    let (status, body) = http(
        &a,
        "POST",
        "/v1/deposits",
        Some(serde_json::to_vec(&request).unwrap()),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "funding_failed");
    // Nothing was credited.
    assert_eq!(
        a.state()
            .issuer
            .balance(opened.account_id, scrip_testkit::EUR)
            .await
            .unwrap(),
        0
    );
    // A source that answered and refused stays a bad gateway.
    for refused in [
        FundingError::Declined("card".into()),
        FundingError::Mismatch,
    ] {
        let error = ApiError::from(IssuerError::Funding(refused));
        assert_eq!(
            (error.status.as_u16(), error.code.as_str()),
            (502, "funding_failed")
        );
    }
    let error = ApiError::from(IssuerError::Funding(FundingError::Unavailable("x".into())));
    assert_eq!(error.status.as_u16(), 503);
    a.shutdown().await.unwrap();
}
