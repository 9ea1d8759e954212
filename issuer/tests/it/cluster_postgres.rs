//! Cluster mode on a real PostgreSQL (a throwaway server the tests start themselves, one
//! fresh schema per test): the start-up rules, the operator's `keys` commands, the shared
//! nonce table and the demo funding source, through `PostgresStore`'s `ClusterState`.
//! (Two servers answering HTTP requests as one are the root crate's `tests/it/two_servers.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use scrip_issuer::server::{
    self, cluster, KeySource, OperatorToken, RunningServer, ServerConfig, StoreKind,
};
use scrip_issuer::{
    keyring_files, FundingError, FundingSource, IssuerError, Keyring, KeyringConfig,
    RecordedDemoFunding,
};
use scrip_stores::conformance::PostgresHarness;
use scrip_stores::{ClusterState, RecordStore};
use scrip_testkit::{eur, fixture_keyring, validity_around, DAY};
use scrip_tokens::keys::{IssuerKeyRole, DEFAULT_RSA_BITS};
use scrip_tokens::{AccountId, Currency, DepositId, ReasonCode};

const TOKEN: &str = "cluster-operator-token";

fn save_keys(dir: &Path) -> Keyring {
    let keyring = fixture_keyring(validity_around(server::now(), DAY * 30, DAY * 30));
    keyring_files::save(&keyring, dir).unwrap();
    keyring_files::load(dir).unwrap()
}

/// What a test does to run a cluster server in process: store postgres, the database URL,
/// a given operator token, the keys directory the operator published.
fn node(data_dir: &Path, keys_dir: &Path, url: &str) -> ServerConfig {
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        data_dir,
        OperatorToken::Given(TOKEN.into()),
    );
    config.issuer.backend = scrip_testkit::backend();
    config.store = StoreKind::Postgres;
    config.database_url = Some(url.to_owned());
    config.database_connections = 4;
    config.keys = KeySource::Directory {
        dir: keys_dir.to_path_buf(),
        generate: KeyringConfig::default(),
    };
    config.release_interval = Duration::from_millis(100);
    config.keyring_poll_interval = Duration::from_millis(100);
    config
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

async fn database(url: &str) -> (Arc<dyn RecordStore>, Arc<dyn ClusterState>) {
    cluster::connect_database(url, 4).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_server_starts_only_on_the_published_keyring() {
    let pg = PostgresHarness::new();
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let keyring = save_keys(&keys);

    // A per-node operator token is refused before anything else.
    let mut config = node(&tmp.path().join("a"), &keys, pg.url());
    config.operator_token = OperatorToken::DataDir;
    assert!(matches!(
        server::start(config).await.err(),
        Some(IssuerError::ClusterConfig(_))
    ));
    // Nothing published yet.
    assert!(matches!(
        server::start(node(&tmp.path().join("a"), &keys, pg.url()))
            .await
            .err(),
        Some(IssuerError::KeyringNotPublished)
    ));
    // Another keyring published.
    let (store, shared) = database(pg.url()).await;
    shared.publish_keyring([9; 32], None).await.unwrap();
    match server::start(node(&tmp.path().join("a"), &keys, pg.url()))
        .await
        .err()
    {
        Some(IssuerError::KeyringMismatch {
            local,
            epoch: 1,
            published,
            ..
        }) => {
            assert_eq!(local, keyring.fingerprint());
            assert_eq!(published, [9; 32]);
        }
        other => panic!("{other:?}"),
    }
    // The operator publishes this directory: two servers start on it.
    let epoch = cluster::publish_keys(&keys, shared.as_ref(), true)
        .await
        .unwrap();
    assert_eq!(epoch.epoch, 2);
    let a = server::start(node(&tmp.path().join("a"), &keys, pg.url()))
        .await
        .unwrap();
    let b = server::start(node(&tmp.path().join("b"), &keys, pg.url()))
        .await
        .unwrap();
    assert_eq!(a.state().keyring_epoch(), Some(2));
    assert_eq!(b.state().keyring_epoch(), Some(2));

    // A rotation published through the database reaches both.
    let rotated = cluster::rotate_key(
        &keys,
        IssuerKeyRole::BalanceCertificate,
        server::now(),
        DAY * 30,
        DEFAULT_RSA_BITS,
        Some(shared.as_ref()),
    )
    .await
    .unwrap();
    assert_eq!(rotated.epoch.as_ref().map(|e| e.epoch), Some(3));
    for running in [&a, &b] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while running.state().keyring_epoch() != Some(3) {
            assert!(
                std::time::Instant::now() < deadline,
                "rotation not followed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            running.state().issuer.keys().fingerprint(),
            rotated.fingerprint
        );
    }
    // One of them leads the periodic job; each gives its lease up at shutdown, so that
    // the job is free at once rather than for the rest of the lease (1 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&a, "scrip_cluster_leader") + metric(&b, "scrip_cluster_leader") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    let next = uuid::Uuid::from_u128(7);
    assert!(shared
        .try_lead(cluster::RELEASE_JOB, next, Duration::from_secs(60))
        .await
        .unwrap());
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_init_publishes_once_and_publish_is_idempotent() {
    let pg = PostgresHarness::new();
    let tmp = tempfile::tempdir().unwrap();
    let (store, shared) = database(pg.url()).await;
    let config = KeyringConfig {
        denominations: vec![(Currency::EUR, vec![1])],
        ..KeyringConfig::default()
    };
    let keys = tmp.path().join("keys");
    let status = cluster::init_keys(&keys, &config, Some(shared.as_ref()), server::now())
        .await
        .unwrap();
    let first = status.epoch.unwrap();
    assert_eq!(first.epoch, 1);
    assert_eq!(first.fingerprint, status.fingerprint);
    assert_eq!(shared.keyring_epoch().await.unwrap(), Some(first.clone()));
    // Publishing the same directory again changes nothing.
    assert_eq!(
        cluster::publish_keys(&keys, shared.as_ref(), false)
            .await
            .unwrap(),
        first
    );
    // A second `keys init` for this cluster is refused before generating anything.
    let second = tmp.path().join("second");
    assert!(matches!(
        cluster::init_keys(&second, &config, Some(shared.as_ref()), server::now()).await,
        Err(IssuerError::KeyringAlreadyPublished { epoch: 1, .. })
    ));
    assert!(!keyring_files::exists(&second));
    // Another keyring is not published over it without --replace.
    let other = tmp.path().join("other");
    save_keys(&other);
    assert!(matches!(
        cluster::publish_keys(&other, shared.as_ref(), false).await,
        Err(IssuerError::KeyringMismatch { epoch: 1, .. })
    ));
    assert_eq!(shared.keyring_epoch().await.unwrap(), Some(first));
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_admitted_through_one_connection_is_a_replay_through_another() {
    let pg = PostgresHarness::new();
    let (store_a, a) = database(pg.url()).await;
    let (store_b, b) = database(pg.url()).await;
    let skew = Duration::from_secs(60);
    let guard_a = server::ReplayGuard::shared(skew, a);
    let guard_b = server::ReplayGuard::shared(skew, b);
    let now = server::now();
    guard_a.admit(now, b"request", now).await.unwrap();
    assert_eq!(
        guard_b.admit(now, b"request", now).await.unwrap_err().code,
        ReasonCode::Replayed
    );
    guard_b.admit(now, b"another", now).await.unwrap();
    store_a.close().await.unwrap();
    store_b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_funding_source_answers_alike_through_every_connection() {
    let pg = PostgresHarness::new();
    let (store_a, _) = database(pg.url()).await;
    let (store_b, _) = database(pg.url()).await;
    let a = RecordedDemoFunding::new(Arc::clone(&store_a));
    let b = RecordedDemoFunding::new(Arc::clone(&store_b));
    let deposit = DepositId(uuid::Uuid::from_u128(7));
    let account = AccountId(uuid::Uuid::from_u128(8));
    a.collect(deposit, account, eur(300)).await.unwrap();
    b.collect(deposit, account, eur(300)).await.unwrap();
    assert_eq!(
        b.collect(deposit, account, eur(301)).await,
        Err(FundingError::Mismatch)
    );
    store_a.close().await.unwrap();
    store_b.close().await.unwrap();
}
