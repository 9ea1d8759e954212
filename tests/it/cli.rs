//! The `scrip` command end to end, as a point-of-sale or wallet integrator would script it:
//! each step is one process, state lives in a directory per wallet and per terminal, and
//! the payment messages travel as files. A real server runs on a loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::path::Path;
use std::process::Command;

use scrip::issuer::server::StoreKind;

/// Runs `scrip <args>`; panics with its output unless it succeeds. Returns stdout.
fn scrip(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_scrip"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scrip {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_and_a_terminal_pay_and_settle_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let server = common::start(StoreKind::Redb, data.path()).await;
    let url = server.url();
    let work = tempfile::tempdir().unwrap();
    let wallet = work.path().join("wallet");
    let shop = work.path().join("shop");
    let file = |name: &str| work.path().join(name);
    let w = |args: &[&str]| {
        let mut all = vec!["wallet", "--dir", path(&wallet)];
        all.extend_from_slice(args);
        scrip(&all)
    };
    let m = |args: &[&str]| {
        let mut all = vec!["merchant", "--dir", path(&shop)];
        all.extend_from_slice(args);
        scrip(&all)
    };

    // The commands are processes that block this thread: the server keeps running on the
    // runtime's other worker meanwhile.
    tokio::task::block_in_place(|| {
        let opened = w(&["init", "--server", &url, "--data-dir", path(data.path())]);
        assert!(opened.starts_with("account "), "{opened}");
        assert_eq!(w(&["deposit", "1000"]).trim(), "deposited 1000");
        let certificate = w(&["certificate", "--amount", "500"]);
        assert!(
            certificate.contains(": 500 spendable offline"),
            "{certificate}"
        );
        assert_eq!(w(&["withdraw", "--blind", "10,5"]).trim(), "2 blind coins");
    });
    // The pinned root key is the server's.
    assert_eq!(
        std::fs::read(wallet.join("root-key.pem")).unwrap(),
        std::fs::read(data.path().join("root-key.pem")).unwrap()
    );

    tokio::task::block_in_place(|| {
        let registered = m(&[
            "init",
            "--server",
            &url,
            "--data-dir",
            path(data.path()),
            "--operator-token",
            common::OPERATOR_TOKEN,
        ]);
        assert!(registered.starts_with("merchant "), "{registered}");

        // Paid by withdrawal record: offer → answer → reply, all files.
        m(&["offer", "120", "--out", path(&file("offer-1"))]);
        w(&[
            "pay",
            "--offer",
            path(&file("offer-1")),
            "--out",
            path(&file("answer-1")),
        ]);
        m(&[
            "accept",
            "--answer",
            path(&file("answer-1")),
            "--out",
            path(&file("reply-1")),
        ]);
        assert_eq!(
            w(&["reply", "--reply", path(&file("reply-1"))]).trim(),
            "paid: receipt kept"
        );

        // Paid by coins: exact change from the 10 and the 5.
        m(&["offer", "15", "--out", path(&file("offer-2"))]);
        w(&[
            "pay",
            "--offer",
            path(&file("offer-2")),
            "--with",
            "coins",
            "--out",
            path(&file("answer-2")),
        ]);
        m(&[
            "accept",
            "--answer",
            path(&file("answer-2")),
            "--out",
            path(&file("reply-2")),
        ]);
        assert_eq!(
            w(&["reply", "--reply", path(&file("reply-2"))]).trim(),
            "paid: receipt kept"
        );

        // The same answer again is not a second payment: the terminal replays its reply
        // and the queue still holds two payments.
        m(&[
            "accept",
            "--answer",
            path(&file("answer-2")),
            "--out",
            path(&file("reply-2-again")),
        ]);
        assert_eq!(
            std::fs::read(file("reply-2")).unwrap(),
            std::fs::read(file("reply-2-again")).unwrap()
        );
        let before = json(&m(&["show"]));
        assert_eq!(before["queued"], 2);
        assert_eq!(before["unsettled"], 135);

        // Online again: the terminal settles, the wallet hands in its record.
        let settled = json(&m(&["sync"]));
        assert_eq!(settled["accepted"], 2, "{settled}");
        assert_eq!(settled["double_spent"], 0, "{settled}");
        let after = json(&m(&["show"]));
        assert_eq!(
            (after["queued"].clone(), after["settled"].clone()),
            (0.into(), 2.into())
        );
        assert_eq!(after["unsettled"], 0);
        let synced = w(&["sync"]);
        assert!(synced.starts_with("1 records handed in"), "{synced}");
        let shown = json(&w(&["show"]));
        assert_eq!(shown["coins"], serde_json::json!([]));
        assert_eq!(shown["offline_spendable"], 500 - 120);
        assert_eq!(shown["receipts"], 2);
    });
    server.shutdown().await.unwrap();
}

/// `scrip wallet swap`: change made online for the amounts the user expects to pay
/// offline, a chosen split, refresh (nothing to do with one keyset), a refused swap
/// (outputs short of the coins) that gives the coins back, and identified coins swapped
/// for blind ones (signed by the device).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_swaps_its_coins_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let server = common::start(StoreKind::Redb, data.path()).await;
    let url = server.url();
    let work = tempfile::tempdir().unwrap();
    let wallet = work.path().join("wallet");
    let w = |args: &[&str]| {
        let mut all = vec!["wallet", "--dir", path(&wallet)];
        all.extend_from_slice(args);
        scrip(&all)
    };
    let coins = |shown: &str| -> Vec<u64> {
        let mut v: Vec<u64> = json(shown)["coins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    tokio::task::block_in_place(|| {
        w(&["init", "--server", &url, "--data-dir", path(data.path())]);
        w(&["deposit", "1000"]);
        w(&["withdraw", "--blind", "10,10"]);
        let changed = w(&["swap", "--change", "3,4"]);
        assert!(changed.contains("swapped: "), "{changed}");
        // 3 = 2 + 1, 4 = 2 + 2, the other 13 in the ladder (1, 2, 2, 5) and 2 + 1.
        assert_eq!(coins(&w(&["show"])), [1, 1, 1, 2, 2, 2, 2, 2, 2, 5]);
        let again = w(&["swap", "--change", "3,4"]);
        assert!(again.contains("already pay"), "{again}");
        let split = w(&["swap", "--into", "10,10"]);
        assert!(split.contains("swapped: 2 new coins"), "{split}");
        assert_eq!(coins(&w(&["show"])), [10, 10]);
        let refresh = w(&["swap", "--refresh"]);
        assert!(refresh.contains("no coin needs refreshing"), "{refresh}");

        // Outputs worth less than the coins (a fee this issuer does not charge): refused
        // with its reason, and the coins are back in the wallet.
        let refused = Command::new(env!("CARGO_BIN_EXE_scrip"))
            .args(["wallet", "--dir", path(&wallet), "swap", "--into", "10,5"])
            .output()
            .unwrap();
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("amount_mismatch"), "{stderr}");
        assert!(stderr.contains("coins are back"), "{stderr}");
        assert_eq!(coins(&w(&["show"])), [10, 10]);

        // Identified coins: swapped for blind coins through the device-signed route.
        w(&["withdraw", "--identified", "5"]);
        let identified = w(&["swap", "--identified"]);
        assert!(identified.contains("swapped: "), "{identified}");
        assert_eq!(coins(&w(&["show"])).iter().sum::<u64>(), 25);
        let none = w(&["swap", "--identified"]);
        assert!(none.contains("no identified coin to swap"), "{none}");
    });
    server.shutdown().await.unwrap();
}

/// `scrip load --redeem-server`, as benches/scaling_load.sh uses it to time one pinned
/// core: the coins are minted on one server; on the tool's hand-over line that server
/// stops and another starts on its data directory; every coin is then redeemed on the
/// successor, none refused or lost across the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrip_load_hands_over_from_the_minting_server_to_its_successor() {
    use std::io::BufRead;

    let data = tempfile::tempdir().unwrap();
    let minting = common::start(StoreKind::Redb, data.path()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let successor_url = format!("http://127.0.0.1:{port}");
    let mut load = Command::new(env!("CARGO_BIN_EXE_scrip"))
        .args([
            "load",
            "--server",
            &minting.url(),
            "--redeem-server",
            &successor_url,
            "--data-dir",
            path(data.path()),
            "--operator-token",
            common::OPERATOR_TOKEN,
            "--coins",
            "120",
            "--merchants",
            "3",
            "--coins-per-payment",
            "4",
            "--payments-per-batch",
            "5",
            "--duration",
            "60",
            "--mint-concurrency",
            "2",
            "--no-swap",
            "--bincode",
            "--quiet",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Stderr is read on a thread until it closes; the hand-over line is passed on.
    let stderr = load.stderr.take().unwrap();
    let (handed_over, on_hand_over) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if line.contains(scrip::load::HANDING_OVER) {
                handed_over.send(line.clone()).unwrap();
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let line = tokio::task::block_in_place(|| {
        on_hand_over.recv_timeout(std::time::Duration::from_secs(120))
    })
    .unwrap_or_else(|e| panic!("no hand-over line: {e}"));
    assert!(line.ends_with(&successor_url), "{line}");

    minting.shutdown().await.unwrap();
    let successor = common::start_on(StoreKind::Redb, data.path(), port).await;
    let output = tokio::task::block_in_place(|| load.wait_with_output()).unwrap();
    let stderr = reader.join().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scrip load failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let report = json(stdout.lines().last().unwrap_or_default());
    assert_eq!(report["server"], serde_json::json!(successor_url));
    assert_eq!(report["coins_redeemed"], 120, "{report}");
    assert_eq!(report["unexpected_outcomes"], 0, "{report}");
    assert_eq!(report["issuance"]["coins"], 120, "{report}");
    successor.shutdown().await.unwrap();
}

/// `--redeem-server` mints on one server: further `--server` URLs would go unused, so the
/// command refuses them before it contacts anything.
#[test]
fn scrip_load_refuses_to_hand_over_from_several_minting_servers() {
    let output = Command::new(env!("CARGO_BIN_EXE_scrip"))
        .args([
            "load",
            "--server",
            "http://127.0.0.1:9,http://127.0.0.1:10",
            "--redeem-server",
            "http://127.0.0.1:11",
            "--operator-token",
            common::OPERATOR_TOKEN,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("give one --server to mint on"), "{stderr}");
}
