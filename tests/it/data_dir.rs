//! One data directory, one server. Before this was enforced, two servers started together
//! on a fresh directory both generated keys and the loser overwrote the winner's (coins
//! then `unknown_key` after a restart), two servers with different `--store` both ran on
//! one directory and credited the same coin twice, and a refused second server still
//! rewrote `root-key.pem`. Now a server locks the directory before touching anything in
//! it, binds its port before generating keys, and writes key and pin files atomically.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use scrip::issuer::server::{self, KeySource, OperatorToken, ServerConfig, StoreKind};
use scrip::issuer::{IssuerError, KeyringConfig};
use scrip::tokens::Currency;

const CHILD_ENV: &str = "SCRIP_DATA_DIR_CHILD";

/// A small keyring to generate (two denominations), so a first start takes a second.
fn small_keyring() -> KeyringConfig {
    KeyringConfig {
        denominations: vec![(Currency::EUR, vec![1, 2])],
        ..KeyringConfig::default()
    }
}

fn config(dir: &Path, port: u16, store: StoreKind) -> ServerConfig {
    let mut config = ServerConfig::new(([127, 0, 0, 1], port).into(), dir, OperatorToken::DataDir);
    config.store = store;
    config.keys = KeySource::Directory {
        dir: dir.join("keys"),
        generate: small_keyring(),
    };
    config
}

/// Not a test of its own: a `scrip-server`-like process on a fresh data directory,
/// generating keys on first start as the binary does.
#[test]
#[ignore = "started by the data directory tests"]
fn data_dir_server_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (port, dir) = spec.split_once(':').unwrap();
    let (port, dir): (u16, PathBuf) = (port.parse().unwrap(), dir.into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        match server::start(config(&dir, port, StoreKind::Redb)).await {
            Ok(_running) => {
                println!("ready");
                std::future::pending::<()>().await;
            }
            Err(e) => {
                eprintln!("refused: {e}");
                std::process::exit(3);
            }
        }
    });
}

fn spawn_child(dir: &Path, port: u16) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "data_dir::data_dir_server_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, format!("{port}:{}", dir.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The root key a running server publishes over HTTP, as PEM.
async fn served_root(port: u16) -> Option<String> {
    let client = scrip::client::HttpClient::new(&format!("http://127.0.0.1:{port}")).ok()?;
    let root = client.root_key().await.ok()?;
    Some(root.key.public_key().to_pem().unwrap())
}

/// Every file under `dir` (but the lock file) with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != server::LOCK_FILE {
                files.insert(
                    path.clone(),
                    (std::fs::read(&path).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_started_together_on_a_fresh_directory_leave_one_keyring_that_survives_a_restart(
) {
    for attempt in 0..3 {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("scrip-data");
        let ports = [free_port(), free_port()];
        let mut children: Vec<Child> = ports.iter().map(|p| spawn_child(&dir, *p)).collect();

        // Exactly one serves; the other stops at the lock.
        let started = Instant::now();
        let winner = loop {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "nobody came up"
            );
            let exited: Vec<bool> = children
                .iter_mut()
                .map(|c| c.try_wait().unwrap().is_some())
                .collect();
            let mut serving = Vec::new();
            for (i, port) in ports.iter().enumerate() {
                if !exited[i] && served_root(*port).await.is_some() {
                    serving.push(i);
                }
            }
            if serving.len() == 1 && exited[1 - serving[0]] {
                break serving[0];
            }
            assert!(
                serving.len() < 2,
                "attempt {attempt}: two servers run on one directory"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut winner_child = children.swap_remove(winner);
        let loser_out = children.pop().unwrap().wait_with_output().unwrap();
        assert_eq!(loser_out.status.code(), Some(3));
        let why = String::from_utf8_lossy(&loser_out.stderr);
        assert!(why.contains("in use by another scrip process"), "{why}");

        // The keys on disk are the winner's: the pinned root file matches what it serves.
        let root = served_root(ports[winner]).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(server::ROOT_KEY_FILE)).unwrap(),
            root
        );
        winner_child.kill().unwrap();
        winner_child.wait().unwrap();

        // A restart loads that keyring (it does not generate another).
        let port = free_port();
        let mut again = spawn_child(&dir, port);
        let started = Instant::now();
        let restarted_root = loop {
            if let Some(root) = served_root(port).await {
                break root;
            }
            assert!(again.try_wait().unwrap().is_none(), "the restart failed");
            assert!(started.elapsed() < Duration::from_secs(60), "no restart");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(restarted_root, root, "attempt {attempt}: the keys changed");
        again.kill().unwrap();
        again.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_directory_is_refused_whatever_its_store_and_changes_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("scrip-data");
    let running = server::start(config(&dir, 0, StoreKind::Redb))
        .await
        .unwrap();
    let before = snapshot(&dir);
    assert!(before.contains_key(&dir.join(server::ROOT_KEY_FILE)));
    assert!(before.contains_key(&dir.join(server::OPERATOR_TOKEN_FILE)));
    // Coarse file timestamps must not hide a rewrite.
    tokio::time::sleep(Duration::from_millis(20)).await;

    for store in [StoreKind::File, StoreKind::Memory, StoreKind::Redb] {
        match server::start(config(&dir, 0, store)).await {
            Err(IssuerError::DirectoryInUse(d)) => assert_eq!(d, dir),
            Err(other) => panic!("{store}: refused for another reason: {other}"),
            Ok(_) => panic!("a {store} server started on a directory in use"),
        }
    }
    assert_eq!(
        snapshot(&dir),
        before,
        "a refused server changed the directory"
    );
    assert!(
        !dir.join("store").exists(),
        "a refused file server created its store"
    );

    // Once the first server has stopped, the directory is free again.
    running.shutdown().await.unwrap();
    let running = server::start(config(&dir, 0, StoreKind::Redb))
        .await
        .unwrap();
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_data_directory_cannot_borrow_a_running_servers_keys() {
    // Two issuers with one keyring and two stores would each accept every coin once.
    let parent = tempfile::tempdir().unwrap();
    let a = parent.path().join("a");
    let running = server::start(config(&a, 0, StoreKind::Redb)).await.unwrap();
    let mut borrower = config(&parent.path().join("b"), 0, StoreKind::Redb);
    borrower.keys = KeySource::Directory {
        dir: a.join("keys"),
        generate: small_keyring(),
    };
    match server::start(borrower).await {
        Err(IssuerError::DirectoryInUse(d)) => assert_eq!(d, a.join("keys")),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a second issuer runs on the first one's keys"),
    }
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_fails_before_any_key_is_generated() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("scrip-data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    match server::start(config(&dir, port, StoreKind::Redb)).await {
        Err(IssuerError::Io(message)) => assert!(message.contains("binding"), "{message}"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("started on a taken port"),
    }
    assert!(!dir.join("keys").join("keyring.json").exists());
    assert!(!dir.join(server::ROOT_KEY_FILE).exists());
    assert!(!dir.join("scrip.redb").exists());
}

#[test]
fn a_wallet_directory_takes_one_command_at_a_time() {
    // Two commands on one wallet at once would both spend the same coins and sequence
    // numbers, and the last to save would erase the other's payments.
    let dir = tempfile::tempdir().unwrap();
    let held = server::DirectoryLock::acquire(dir.path()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_scrip"))
        .args(["wallet", "--dir", dir.path().to_str().unwrap(), "show"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let why = String::from_utf8_lossy(&output.stderr);
    assert!(why.contains("in use by another"), "{why}");
    drop(held);
    // Free again: the command runs (and fails only because there is no wallet yet).
    let output = Command::new(env!("CARGO_BIN_EXE_scrip"))
        .args(["wallet", "--dir", dir.path().to_str().unwrap(), "show"])
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&output.stderr);
    assert!(!why.contains("in use by another"), "{why}");
}
