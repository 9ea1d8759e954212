//! Crash under load: while merchants upload redemption batches as fast as the server
//! answers (the `scrip load` engine), the server process is killed with SIGKILL at random
//! moments and restarted on the same port and data directory; merchants re-sign and retry
//! whatever was not acknowledged. After the kill cycles, the store is opened directly and
//! must show:
//! - every redemption a merchant saw acknowledged, held by that merchant;
//! - no coin held by a merchant other than the one it was given to (none accepted twice);
//! - money conserved: every currency sums to zero, funding is minus the deposits, each
//!   merchant is credited exactly the coins it holds, and the coins-outstanding account
//!   is exactly the coins no merchant holds.
//!
//! SIGKILL during swaps: wallets swap coins while the server is killed and restarted; no
//! coin may end up claimed without its swap's signatures stored (see `crash_during_swaps`).
//!
//! The server runs in a child process (this test binary, re-executed to run the ignored
//! `crash_server_child` test), so SIGKILL hits only the server. `SCRIP_CRASH_CYCLES` sets
//! the kill count (default 10).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use scrip::client::HttpClient;
use scrip::issuer::server::{self, KeySource, ServerConfig, StoreKind};
use scrip::issuer::{coins_outstanding_account, funding_account};
use scrip::issuer::{InMemoryFunding, Issuer, IssuerConfig};
use scrip::load::{self, LoadConfig};
use scrip::stores::{ClaimId, Claimant, LedgerAccount, RecordStore};
use scrip::swapping;
use scrip::tokens::{codec, Currency, MerchantId, SwapOutcome, SwapRequest};

const CHILD_ENV: &str = "SCRIP_CRASH_SERVER_CHILD";

/// Not a test of its own: the server process the crash tests start and kill.
#[test]
#[ignore = "started (and killed) by the crash_under_load tests"]
fn crash_server_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    // kind|port|data dir, and for postgres |database url|keys dir.
    let mut parts = spec.split('|');
    let kind = match parts.next().unwrap() {
        "redb" => StoreKind::Redb,
        "file" => StoreKind::File,
        "postgres" => StoreKind::Postgres,
        other => panic!("unknown store {other}"),
    };
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(parts.next().unwrap());
    let cluster = parts.next().map(|url| {
        (
            url.to_owned(),
            std::path::PathBuf::from(parts.next().unwrap()),
        )
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        if let Some((url, keys)) = cluster {
            let node = common::cluster_node_config(&url, &keys, &dir, port);
            let _running = server::start(node).await.unwrap();
            println!("ready");
            std::future::pending::<()>().await;
        }
        let keys = dir.join("keys");
        if !keys.join("keyring.json").exists() {
            scrip::issuer::keyring_files::save(&common::fixture_keyring(), &keys).unwrap();
        }
        let mut config = ServerConfig::new(
            ([127, 0, 0, 1], port).into(),
            &dir,
            common::OPERATOR_TOKEN.to_owned(),
        );
        config.store = kind;
        config.keys = KeySource::Directory {
            dir: keys,
            generate: scrip::issuer::KeyringConfig::default(),
        };
        let _running = server::start(config).await.unwrap();
        println!("ready");
        std::future::pending::<()>().await;
    });
}

/// Where a server process keeps its store: its data directory, or the cluster's database.
#[derive(Clone)]
enum Backend {
    Embedded(StoreKind, &'static str),
    Cluster(Arc<common::TestCluster>),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Embedded(_, name) => name,
            Backend::Cluster(_) => "postgres",
        }
    }

    /// The store the servers wrote, opened directly (after the last kill).
    async fn open(&self, dir: &Path) -> Arc<dyn RecordStore> {
        match self {
            Backend::Embedded(kind, _) => server::open_store(*kind, dir).unwrap(),
            Backend::Cluster(cluster) => cluster.store().await,
        }
    }
}

fn spawn_server(backend: &Backend, port: u16, dir: &Path) -> Child {
    let spec = match backend {
        Backend::Embedded(_, name) => format!("{name}|{port}|{}", dir.display()),
        Backend::Cluster(cluster) => format!(
            "postgres|{port}|{}|{}|{}",
            dir.display(),
            cluster.url(),
            cluster.keys_dir().display()
        ),
    };
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_under_load::crash_server_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_until_serving(client: &HttpClient, child: &mut Child) {
    let started = Instant::now();
    loop {
        if client.health().await.is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited while starting: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kill(child: &mut Child) {
    // std's kill is SIGKILL on Unix: no shutdown code runs, nothing is flushed.
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn crash_under_load(backend: Backend) {
    let kind_name = backend.name();
    let cycles: usize = std::env::var("SCRIP_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_server(&backend, port, dir.path());
    let client = HttpClient::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_operator_token(common::OPERATOR_TOKEN);
    wait_until_serving(&client, &mut child).await;

    // Tiny batches (many commits, 1 500 of them) and more than the kill cycles can use
    // up, so the merchants are uploading at every kill. Paced: a server on the fast RSA
    // backend redeemed all 3 000 coins unpaced in 2.4 s, before the ten kills were done.
    let config = LoadConfig {
        merchants: 4,
        duration: Duration::from_secs(600),
        coins: 3_000,
        coins_per_payment: 1,
        payments_per_batch: 2,
        denomination: 2,
        mint_concurrency: 2,
        verify_measurement: Duration::from_millis(50),
        progress: false,
        pause: Duration::from_millis(10),
        swap: false,
        ..LoadConfig::default()
    };
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let prepared = load::prepare(&client, &common::root(), &config, &mut rng)
        .await
        .unwrap();
    let assignment: HashMap<_, MerchantId> = prepared
        .assignment
        .iter()
        .map(|(merchant, coin)| (*coin, *merchant))
        .collect();
    assert_eq!(assignment.len(), config.coins);

    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (client, config, stop) = (client.clone(), config.clone(), stop.clone());
        let mut rng = StdRng::from_rng(&mut rng);
        tokio::spawn(async move { load::redeem(&client, prepared, &config, &mut rng, stop).await })
    };

    let mut kills_under_load = 0;
    for _ in 0..cycles {
        // Let the merchants get going again, then kill at a random moment.
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        if !loader.is_finished() {
            kills_under_load += 1;
        }
        kill(&mut child);
        child = spawn_server(&backend, port, dir.path());
        wait_until_serving(&client, &mut child).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (report, acknowledged) = loader.await.unwrap().unwrap();
    assert_eq!(
        kills_under_load, cycles,
        "the load ended before the kills did: {report:?}"
    );
    assert_eq!(report.unexpected_outcomes, 0, "{report:?}");
    assert!(
        report.retried_uploads > 0,
        "no upload was interrupted: {report:?}"
    );
    assert!(report.coins_redeemed > 0);

    // One last kill, then the store itself is the witness.
    kill(&mut child);
    let store = backend.open(dir.path()).await;

    let (acked, redeemed) = check_store(&*store, &config, &assignment, &acknowledged).await;
    store.close().await.unwrap();
    eprintln!(
        "{kind_name}: {cycles} kills under load, {acked} coins acknowledged, {redeemed} redeemed, \
         {} retried uploads",
        report.retried_uploads
    );
}

/// What the store must show after the kills: every acknowledged coin held by the merchant
/// it was given to, no coin held by anyone else, and money conserved to the unit. Returns
/// the coins acknowledged and redeemed.
async fn check_store(
    store: &dyn RecordStore,
    config: &LoadConfig,
    assignment: &HashMap<scrip::tokens::CoinSpendId, MerchantId>,
    acknowledged: &load::Acknowledged,
) -> (usize, i128) {
    let acked: HashSet<_> = acknowledged.coins.iter().copied().collect();
    assert_eq!(
        acked.len(),
        acknowledged.coins.len(),
        "a coin was acknowledged twice"
    );
    let ids: Vec<_> = assignment.keys().copied().collect();
    let claims = store
        .claims(&ids.iter().map(|c| ClaimId::Coin(*c)).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut held: BTreeMap<MerchantId, i128> = BTreeMap::new();
    let mut unredeemed = 0i128;
    for (coin, claim) in ids.iter().zip(&claims) {
        let given_to = assignment[coin];
        match claim {
            Some(claim) => {
                assert_eq!(
                    claim.claimant,
                    Claimant::Merchant(given_to),
                    "coin {coin} held by someone it was never given to"
                );
                *held.entry(given_to).or_default() += 1;
            }
            None => {
                assert!(
                    !acked.contains(&(given_to, *coin)),
                    "acknowledged coin {coin} lost"
                );
                unredeemed += 1;
            }
        }
    }
    for (merchant, coin) in &acked {
        assert_eq!(assignment[coin], *merchant);
    }
    let redeemed: i128 = held.values().sum();
    assert!(redeemed >= acked.len() as i128);

    // Conservation, read from the reopened store.
    let denomination = i128::from(config.denomination);
    let deposited = denomination * config.coins as i128;
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    let mut merchants: BTreeMap<MerchantId, i128> = BTreeMap::new();
    let (mut customers, mut reservations, mut outstanding, mut funding) = (0, 0, 0, 0);
    for (account, currency, balance) in store.balances(None, usize::MAX).await.unwrap() {
        *sums.entry(currency).or_default() += balance;
        match account {
            LedgerAccount::Customer(_) => customers += balance,
            LedgerAccount::Reservation(_) => reservations += balance,
            LedgerAccount::Merchant(m) => *merchants.entry(m).or_default() += balance,
            a if a == coins_outstanding_account() => outstanding += balance,
            a if a == funding_account() => funding += balance,
            other => panic!("unexpected ledger account {other:?}"),
        }
    }
    assert!(sums.values().all(|s| *s == 0), "balances sum to {sums:?}");
    assert_eq!(funding, -deposited, "funding = -deposits");
    assert_eq!(customers + reservations, 0, "every deposit became coins");
    assert_eq!(outstanding, unredeemed * denomination, "coins outstanding");
    for (merchant, coins) in &held {
        assert_eq!(
            merchants.get(merchant).copied().unwrap_or(0),
            coins * denomination,
            "merchant {merchant} credited other than the coins it holds"
        );
    }
    assert_eq!(
        merchants.values().sum::<i128>(),
        redeemed * denomination,
        "merchants credited for coins nobody holds"
    );
    (acked.len(), redeemed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_with_the_redb_store_loses_nothing() {
    crash_under_load(Backend::Embedded(StoreKind::Redb, "redb")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_with_the_file_store_loses_nothing() {
    crash_under_load(Backend::Embedded(StoreKind::File, "file")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_with_the_postgres_store_loses_nothing() {
    crash_under_load(Backend::Cluster(Arc::new(common::TestCluster::new().await))).await;
}

/// Accepted redemptions a server has answered since it started (its metrics).
async fn accepted_by(client: &HttpClient) -> u64 {
    let metrics = client.metrics().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("scrip_redemptions_total{outcome=\"accepted\"} "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_of_two_servers_mid_batch_while_the_other_keeps_serving() {
    const KILLS: usize = 5;
    let cluster = Arc::new(common::TestCluster::new().await);
    let backend = Backend::Cluster(Arc::clone(&cluster));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let mut a = spawn_server(&backend, port_a, dir_a.path());
    let mut b = spawn_server(&backend, port_b, dir_b.path());
    let client = |port: u16| {
        HttpClient::new(&format!("http://127.0.0.1:{port}"))
            .unwrap()
            .with_operator_token(common::OPERATOR_TOKEN)
    };
    let (ca, cb) = (client(port_a), client(port_b));
    wait_until_serving(&ca, &mut a).await;
    wait_until_serving(&cb, &mut b).await;

    // Merchants 0 and 2 upload to A, 1 and 3 to B; tiny batches, so A dies mid-batch.
    // Paced (each merchant at most 50 batches a second), so that B's merchants still
    // have coins to redeem at the last kill however fast the servers are: 500 batches
    // each, 10 s at least, against about 5 s of kills.
    let config = LoadConfig {
        merchants: 4,
        duration: Duration::from_secs(600),
        coins: 2_000,
        coins_per_payment: 1,
        payments_per_batch: 1,
        denomination: 2,
        mint_concurrency: 2,
        verify_measurement: Duration::from_millis(50),
        progress: false,
        pause: Duration::from_millis(20),
        swap: false,
        ..LoadConfig::default()
    };
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let prepared = load::prepare(&ca, &common::root(), &config, &mut rng)
        .await
        .unwrap();
    let assignment: HashMap<_, MerchantId> = prepared
        .assignment
        .iter()
        .map(|(merchant, coin)| (*coin, *merchant))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let (servers, config, stop) = ([ca.clone(), cb.clone()], config.clone(), stop.clone());
        let mut rng = StdRng::from_rng(&mut rng);
        tokio::spawn(async move {
            load::redeem_across(&servers, prepared, &config, &mut rng, stop).await
        })
    };

    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
        assert!(!loader.is_finished(), "the load ended before the kills did");
        kill(&mut a);
        // While A is down, B goes on accepting its merchants' batches.
        let before = accepted_by(&cb).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let after = accepted_by(&cb).await;
        assert!(after > before, "B stopped serving while A was down");
        a = spawn_server(&backend, port_a, dir_a.path());
        wait_until_serving(&ca, &mut a).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (report, acknowledged) = loader.await.unwrap().unwrap();
    assert_eq!(report.unexpected_outcomes, 0, "{report:?}");
    assert!(
        report.retried_uploads > 0,
        "no upload to A was cut: {report:?}"
    );
    kill(&mut a);
    kill(&mut b);
    let store = cluster.store().await;
    let (acked, redeemed) = check_store(&*store, &config, &assignment, &acknowledged).await;
    assert!(acked > 0);
    store.close().await.unwrap();
    eprintln!("two servers, {KILLS} kills of one: {acked} coins acknowledged, {redeemed} redeemed");
}

/// SIGKILL during swaps: wallets swap coins (two in, two out per swap, four in flight) and
/// send every swap whose answer was lost again, unchanged, while the server is killed at
/// random moments and restarted. Afterwards the store, opened directly, must show no coin
/// both claimed and unsigned-for: every swap's coins are claimed all or none, by the
/// swap's holder with that swap's digest, and every swap whose coins are claimed has its
/// blind signatures stored (the same request answers `swapped`, with exactly the
/// signatures a wallet was given if it was answered before). Swaps move no money: coins
/// outstanding stay what was minted.
async fn crash_during_swaps(backend: Backend) {
    const KILLS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_server(&backend, port, dir.path());
    let client = HttpClient::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_operator_token(common::OPERATOR_TOKEN);
    wait_until_serving(&client, &mut child).await;

    let config = LoadConfig {
        coins: 3_000,
        denomination: 2,
        mint_concurrency: 2,
        progress: false,
        swap: false,
        ..LoadConfig::default()
    };
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let directory = Arc::new(common::key_directory(&client).await);
    let (coins, _) = load::mint(&client, &directory, &config, &mut rng)
        .await
        .unwrap();
    let keyset = directory
        .current_keyset(Currency::EUR, server::now())
        .unwrap()
        .clone();
    let jobs = swapping::prepare(coins, &keyset, 2, &mut rng)
        .await
        .unwrap();
    let requests: Vec<SwapRequest> = jobs.iter().map(|j| j.request.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // Paced (each of the four wallets pauses 10 ms after each answer), so that swaps are in
    // flight at every kill.
    let swapper = {
        let (client, directory, stop) = (client.clone(), Arc::clone(&directory), stop.clone());
        tokio::spawn(async move {
            swapping::run(
                &client,
                &directory,
                jobs,
                4,
                Duration::from_millis(10),
                stop,
            )
            .await
        })
    };
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
        assert!(
            !swapper.is_finished(),
            "the swaps ended before the kills did"
        );
        kill(&mut child);
        child = spawn_server(&backend, port, dir.path());
        wait_until_serving(&client, &mut child).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (answered, swapping) = swapper.await.unwrap().unwrap();
    assert!(swapping.retried > 0, "no swap was cut: {swapping:?}");
    kill(&mut child);

    let store = backend.open(dir.path()).await;
    let keys = match &backend {
        Backend::Embedded(..) => dir.path().join("keys"),
        Backend::Cluster(cluster) => cluster.keys_dir().to_owned(),
    };
    let keyring = scrip::issuer::keyring_files::load(&keys).unwrap();
    let issuer = Issuer::new(
        Arc::clone(&store),
        InMemoryFunding::new(),
        keyring,
        IssuerConfig::default(),
    );
    let acked: HashMap<[u8; 32], SwapOutcome> = answered
        .iter()
        .map(|a| (a.request.request_key, a.receipt.payload.outcome.clone()))
        .collect();
    let (mut swapped, mut untouched) = (0, 0);
    for request in &requests {
        let digest = codec::digest(request).unwrap();
        let ids: Vec<ClaimId> = request
            .coins
            .iter()
            .map(|c| ClaimId::Coin(c.spend_id().unwrap()))
            .collect();
        let claims = store.claims(&ids).await.unwrap();
        let claimed = claims.iter().flatten().count();
        assert!(
            claimed == 0 || claimed == ids.len(),
            "a swap claimed {claimed} of its {} coins",
            ids.len()
        );
        for claim in claims.iter().flatten() {
            assert_eq!(claim.claimant, Claimant::Holder);
            assert_eq!(claim.digest, digest, "a coin claimed for another request");
        }
        let acknowledged = acked.get(&request.request_key);
        if claimed == 0 {
            assert!(
                acknowledged.is_none(),
                "an answered swap left its coins free"
            );
            untouched += 1;
            continue;
        }
        // Claimed, so signed for: the same request reads the stored signatures back.
        let mut rng = StdRng::from_rng(&mut rand::rng());
        let answer = issuer.swap(request, server::now(), &mut rng).await.unwrap();
        assert!(
            matches!(answer.outcome, SwapOutcome::Swapped { .. }),
            "coins claimed without their signatures: {:?}",
            answer.outcome
        );
        if let Some(first) = acknowledged {
            assert_eq!(&answer.outcome, first, "signed twice");
        }
        swapped += 1;
    }
    let minted = i128::from(config.denomination) * config.coins as i128;
    assert_eq!(
        store
            .balance(&coins_outstanding_account(), Currency::EUR)
            .await
            .unwrap(),
        minted,
        "coins outstanding"
    );
    let sums: i128 = store
        .balances(None, usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|(_, _, b)| b)
        .sum();
    assert_eq!(sums, 0);
    store.close().await.unwrap();
    eprintln!(
        "{}: {KILLS} kills during swaps: {} swaps answered, {swapped} done, {untouched} not \
         sent or not done, {} attempts sent again",
        backend.name(),
        answered.len(),
        swapping.retried
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_swaps_with_the_redb_store_leaves_no_coin_claimed_and_unsigned() {
    crash_during_swaps(Backend::Embedded(StoreKind::Redb, "redb")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_swaps_with_the_file_store_leaves_no_coin_claimed_and_unsigned() {
    crash_during_swaps(Backend::Embedded(StoreKind::File, "file")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_swaps_with_the_postgres_store_leaves_no_coin_claimed_and_unsigned() {
    crash_during_swaps(Backend::Cluster(Arc::new(common::TestCluster::new().await))).await;
}
