//! Cluster mode of the server, against an in-memory stand-in for the cluster's shared
//! state (the PostgreSQL implementation has its own tests in scrip-stores, and
//! `cluster_postgres.rs` runs these start-up rules against the real one): what a server
//! refuses at start, how it follows the published keyring, that one server leads the
//! periodic jobs, and that the demo funding source is the cluster's, not a process's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use scrip_issuer::server::{
    self, cluster, KeySource, OperatorToken, RunningServer, ServerConfig, StoreKind,
};
use scrip_issuer::{keyring_files, FundingError, FundingSource, IssuerError, Keyring};
use scrip_stores::{ClusterState, KeyringEpoch, MemoryStore, PublishOutcome, RecordStore};
use scrip_testkit::{eur, fixture_keyring, validity_around, DAY};
use scrip_tokens::keys::{IssuerKeyRole, DEFAULT_RSA_BITS};
use scrip_tokens::{AccountId, DepositId, Timestamp};

/// The cluster's shared state in memory, with the semantics of the trait: nonces
/// remembered once, leases with one holder at a time, keyring epochs by compare and set,
/// and a clock `offset_ms` behind the node's.
#[derive(Default)]
struct FakeCluster {
    nonces: Mutex<HashMap<[u8; 16], Timestamp>>,
    leases: Mutex<HashMap<String, (uuid::Uuid, Instant)>>,
    epochs: Mutex<Vec<KeyringEpoch>>,
    offset_ms: AtomicI64,
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

    async fn forget_nonces(&self, before: Timestamp) -> scrip_stores::Result<u64> {
        let mut nonces = self.nonces.lock().unwrap();
        let n = nonces.len();
        nonces.retain(|_, at| *at >= before);
        Ok((n - nonces.len()) as u64)
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
