//! What a sender without a key can make the server hold: a flood of unsigned and wrongly
//! signed requests, as fast as this machine sends them, leaves nothing in the replay cache;
//! hundreds of slow uploads of the largest bodies keep the server's memory under a stated
//! bound; and genuine clients stay served while either lasts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Its own test binary, not a module of `tests/it/`: it asserts latencies under a flood,
// which tests of other modules running beside it on the same cores would skew.
#[path = "it/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use scrip::demo;
use scrip::issuer::api::BINCODE;
use scrip::issuer::server::{self, KeySource, ServerConfig, StoreKind};
use scrip::tokens::keys::DEFAULT_RSA_BITS;
use scrip::tokens::{codec, AccountId, SigningKey, SyncRequest};

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(4);
/// Concurrent flooding connections.
const FLOODERS: usize = 8;

/// A forgery built from a genuine request: a fresh random nonce, dated at the far end of
/// the allowed skew (the longest a nonce would be remembered), and one of three faults.
fn forgery(genuine: &SyncRequest, n: u64, rng: &mut StdRng) -> Vec<u8> {
    let mut forged = genuine.clone();
    rng.fill_bytes(&mut forged.payload.nonce);
    forged.payload.created_at = demo::now().saturating_add(Duration::from_secs(290));
    match n % 3 {
        // The real device under an account it does not belong to (refused 403 before the
        // signature was checked, and its nonce kept, before this was fixed).
        0 => forged.payload.account_id = AccountId(uuid::Uuid::from_u128(rng.random())),
        // The real device and account, a signature that does not verify.
        1 => forged.signature.0[7] ^= 0x40,
        // No signature at all.
        _ => forged.signature.0.clear(),
    }
    codec::encode(&forged).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_requests_leaves_nothing_behind_and_genuine_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(StoreKind::Memory, dir.path()).await;
    let client = common::client(&server);
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = SigningKey::generate(&mut rng, DEFAULT_RSA_BITS).unwrap();
    let mut phone = common::register_phone(&client, key).await;
    let template = phone.wallet.sync_request(demo::now(), &mut rng).unwrap();
    let remembered_before = server.state().replay.remembered();

    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + FLOOD;
    let url = format!("{}/v1/sync", server.url());
    let mut flooders = Vec::new();
    for f in 0..FLOODERS {
        let (sent, url, template) = (Arc::clone(&sent), url.clone(), template.clone());
        flooders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut rng = StdRng::seed_from_u64(f as u64);
            let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
            let mut n = f as u64;
            while Instant::now() < deadline {
                let body = forgery(&template, n, &mut rng);
                n += 1;
                let response = http
                    .post(&url)
                    .header("content-type", BINCODE)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                *statuses.entry(response.status().as_u16()).or_default() += 1;
                response.bytes().await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
            }
            statuses
        }));
    }

    // Meanwhile a genuine wallet keeps syncing and a monitor keeps probing /healthz.
    let started = Instant::now();
    let mut health = Vec::new();
    let mut genuine = 0usize;
    while Instant::now() < deadline {
        let probe = Instant::now();
        client.health().await.unwrap();
        health.push(probe.elapsed());
        let request = phone.wallet.sync_request(demo::now(), &mut rng).unwrap();
        client.sync(&request).await.unwrap();
        genuine += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for f in flooders {
        for (status, n) in f.await.unwrap() {
            *statuses.entry(status).or_default() += n;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    health.sort();
    let p50 = health[health.len() / 2];
    let max = health[health.len() - 1];
    eprintln!(
        "flood: {sent} forged requests in {elapsed:.1} s ({:.0}/s), statuses {statuses:?}; \
         {genuine} genuine syncs served; /healthz p50 {p50:?}, max {max:?}; \
         {} nonces remembered",
        sent as f64 / elapsed,
        server.state().replay.remembered(),
    );

    assert!(sent > 1_000, "the flood sent only {sent} requests");
    assert!(
        statuses.keys().all(|s| [401, 403].contains(s)),
        "every forgery is refused as unauthenticated: {statuses:?}"
    );
    // Only the genuine, verified requests are remembered: nothing of the flood.
    assert_eq!(
        server.state().replay.remembered(),
        remembered_before + genuine,
    );
    assert!(genuine >= 10, "only {genuine} genuine requests got through");
    assert!(
        p50 < Duration::from_millis(250),
        "/healthz slowed to a median of {p50:?} under the flood"
    );
    server.shutdown().await.unwrap();
}

// ---- memory before authentication ------------------------------------------------------

const CHILD_ENV: &str = "SCRIP_FLOOD_SERVER_CHILD";

/// Not a test of its own: a server with the default limits in its own process, so that
/// its memory can be read from /proc while it is attacked.
#[test]
#[ignore = "started by the memory flood test"]
fn flood_server_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (port, dir) = spec.split_once(':').unwrap();
    let (port, dir): (u16, PathBuf) = (port.parse().unwrap(), dir.into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut config = ServerConfig::new(
            ([127, 0, 0, 1], port).into(),
            &dir,
            common::OPERATOR_TOKEN.to_owned(),
        );
        config.store = StoreKind::Memory;
        config.keys = KeySource::Provided(Box::new(common::fixture_keyring()));
        let _running = server::start(config).await.unwrap();
        std::future::pending::<()>().await;
    });
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Slow uploads of the largest body the server takes.
const UPLOADS: usize = 300;
/// What the server may hold beyond its idle size under them, with the default limits:
/// the 64 MiB body budget, every connection's 16 KiB head buffer and small body, and
/// allocator slack.
const MEMORY_BOUND: u64 = 160 << 20;

/// One upload: the head of an 8 MiB body, then the body as fast as the server takes it,
/// stopping one byte short and holding the connection (until the server's read timeout
/// or a refusal ends it, or `hold` has passed).
async fn slow_upload(addr: std::net::SocketAddr, hold: Duration) -> &'static str {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: usize = 8 << 20;
    static CHUNK: [u8; 64 << 10] = [b'x'; 64 << 10];
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return "connect failed";
    };
    let head = format!(
        "POST /v1/redemptions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {BODY}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return "refused";
    }
    let (mut reader, mut writer) = stream.split();
    let upload = async {
        let mut sent = 0;
        while sent < BODY - 1 {
            let n = CHUNK.len().min(BODY - 1 - sent);
            writer.write_all(&CHUNK[..n]).await?;
            sent += n;
        }
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(())
    };
    let mut answer = [0u8; 16];
    tokio::select! {
        _ = tokio::time::sleep(hold) => "held",
        _ = upload => "refused",
        read = reader.read(&mut answer) => match read {
            Ok(n) if n > 0 => "answered",
            _ => "refused",
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_of_the_largest_bodies_keep_memory_bounded_and_genuine_clients_served() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "flood_server_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, format!("{port}:{}", dir.path().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = scrip::client::HttpClient::new(&url)
        .unwrap()
        .with_operator_token(common::OPERATOR_TOKEN);
    let started = Instant::now();
    while client.health().await.is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the server died");
        assert!(started.elapsed() < Duration::from_secs(30), "no server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = SigningKey::generate(&mut rng, DEFAULT_RSA_BITS).unwrap();
    let mut phone = common::register_phone(&client, key).await;
    let idle = rss(child.id());

    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let hold = Duration::from_secs(4);
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| tokio::spawn(slow_upload(addr, hold)))
        .collect();
    let mut peak = idle;
    let mut genuine = 0;
    let deadline = Instant::now() + hold;
    while Instant::now() < deadline {
        peak = peak.max(rss(child.id()));
        client.health().await.unwrap();
        let request = phone.wallet.sync_request(demo::now(), &mut rng).unwrap();
        client.sync(&request).await.unwrap();
        genuine += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for upload in uploads {
        *outcomes.entry(upload.await.unwrap()).or_default() += 1;
    }
    peak = peak.max(rss(child.id()));
    eprintln!(
        "{UPLOADS} slow 8 MiB uploads: {outcomes:?}; server RSS idle {} MiB, peak {} MiB; \
         {genuine} genuine syncs served",
        idle >> 20,
        peak >> 20
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        peak.saturating_sub(idle) < MEMORY_BOUND,
        "the server grew by {} MiB under slow uploads",
        (peak - idle) >> 20
    );
    assert!(genuine >= 10, "only {genuine} genuine requests were served");
}
