//! What the server refuses over HTTP, and how: malformed, oversized, mistyped, unsigned,
//! stale and replayed requests each get a 4xx with a JSON `{code, message}`, and the server
//! keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip::client::HttpClient;
use scrip::demo::{self, Phone};
use scrip::issuer::api::{ErrorBody, BINCODE, JSON};
use scrip::issuer::server::{RunningServer, StoreKind};
use scrip::tokens::{codec, Message, SyncRequest};
use scrip::wallet::{StorageKey, Wallet};

struct Harness {
    server: RunningServer,
    client: HttpClient,
    http: reqwest::Client,
    phone: Phone,
    rng: StdRng,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(StoreKind::Memory, dir.path()).await;
    let client = common::client(&server);
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut phone = Phone::new(
        Wallet::generate(common::root(), &mut rng).unwrap(),
        StorageKey::random(&mut rng),
    );
    phone
        .wallet
        .update_directory(client.key_directory().await.unwrap(), demo::now())
        .unwrap();
    let registration = phone
        .wallet
        .registration_request(None, demo::now(), &mut rng)
        .unwrap();
    let registration = phone.send(registration).unwrap();
    let opened = client.open_account(&registration).await.unwrap();
    phone
        .wallet
        .on_account_certificate(opened.certificate, demo::now())
        .unwrap();
    Harness {
        server,
        client,
        http: reqwest::Client::new(),
        phone,
        rng,
        _dir: dir,
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    async fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, ErrorBody) {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        refusal(response).await
    }

    fn sync_request_at(&mut self, created_at: scrip::tokens::Timestamp) -> SyncRequest {
        self.phone
            .wallet
            .sync_request(created_at, &mut self.rng)
            .unwrap()
    }

    /// The server still answers normal requests.
    async fn still_serving(&mut self) {
        self.client.health().await.unwrap();
        let request = self.sync_request_at(demo::now());
        self.client.sync(&request).await.unwrap();
    }
}

/// Sends raw bytes of an HTTP/1.1 request and parses the status and JSON error body.
async fn raw_request(h: &Harness, head: &str) -> (u16, ErrorBody) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(h.server.local_addr())
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap();
            if response.len() >= end + 4 + length {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text[9..12].parse().unwrap();
    let end = text.find("\r\n\r\n").unwrap();
    assert!(text[..end]
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    (status, serde_json::from_str(&text[end + 4..]).unwrap())
}

/// The status and the JSON error body of a refused request.
async fn refusal(response: reqwest::Response) -> (u16, ErrorBody) {
    let status = response.status().as_u16();
    assert!((400..500).contains(&status), "expected a 4xx, got {status}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, JSON);
    let bytes = response.bytes().await.unwrap();
    let body: ErrorBody = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not a JSON error ({e}): {bytes:?}"));
    assert!(!body.message.is_empty());
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mistyped_and_oversized_bodies_get_json_errors() {
    let mut h = harness().await;
    let (status, body) = h.post("/v1/sync", JSON, b"{\"payload\":".to_vec()).await;
    assert_eq!((status, body.code.as_str()), (400, "malformed_body"));

    let (status, body) = h.post("/v1/sync", JSON, b"[1,2,3]".to_vec()).await;
    assert_eq!((status, body.code.as_str()), (400, "malformed_body"));

    let (status, body) = h.post("/v1/sync", "text/plain", b"hello".to_vec()).await;
    assert_eq!(
        (status, body.code.as_str()),
        (415, "unsupported_media_type")
    );

    // Binary bodies: another type's tag, a truncated body, trailing bytes, a future version.
    let request = h.sync_request_at(demo::now());
    let bytes = codec::encode(&request).unwrap();
    let (status, body) = h.post("/v1/redemptions", BINCODE, bytes.clone()).await;
    assert_eq!((status, body.code.as_str()), (400, "wrong_type"));
    let (status, body) = h
        .post("/v1/sync", BINCODE, bytes[..bytes.len() / 2].to_vec())
        .await;
    assert_eq!((status, body.code.as_str()), (400, "malformed"));
    let mut trailing = bytes.clone();
    trailing.push(0);
    let (status, body) = h.post("/v1/sync", BINCODE, trailing).await;
    assert_eq!((status, body.code.as_str()), (400, "trailing_bytes"));
    let mut future = bytes.clone();
    let at = SyncRequest::TAG.len() + 1;
    future[at] = 9;
    let (status, body) = h.post("/v1/sync", BINCODE, future).await;
    assert_eq!((status, body.code.as_str()), (400, "unsupported_version"));

    // Over the 8 MiB body limit: refused from the Content-Length alone, before the body
    // is read (a client streaming it anyway sees the connection close).
    let (status, body) = raw_request(
        &h,
        &format!(
            "POST /v1/sync HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            9 << 20
        ),
    )
    .await;
    assert_eq!((status, body.code.as_str()), (413, "body_too_large"));

    // Unknown route, wrong method.
    let response = h.http.get(h.url("/v1/nothing-here")).send().await.unwrap();
    assert_eq!(refusal(response).await.1.code, "not_found");
    let response = h.http.get(h.url("/v1/redemptions")).send().await.unwrap();
    let (status, _) = refusal(response).await;
    assert!(status == 405 || status == 404, "{status}");

    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_wrongly_signed_requests_are_refused() {
    let mut h = harness().await;
    let request = h.sync_request_at(demo::now());
    // Flip one bit of the signature. A forgery does not use up the genuine request's
    // nonce: the genuine one still goes through afterwards.
    let mut forged = request.clone();
    forged.signature.0[10] ^= 1;
    let (status, body) = h
        .post("/v1/sync", JSON, serde_json::to_vec(&forged).unwrap())
        .await;
    assert_eq!((status, body.code.as_str()), (401, "bad_signature"));
    h.client.sync(&request).await.unwrap();

    // No signature at all.
    let mut request = h.sync_request_at(demo::now());
    request.signature.0.clear();
    let (status, body) = h
        .post("/v1/sync", JSON, serde_json::to_vec(&request).unwrap())
        .await;
    assert_eq!(status, 401, "{body:?}");

    // Signed by a key the issuer does not know for that device.
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let stranger = Wallet::generate(common::root(), &mut rng).unwrap();
    let mut request = h.sync_request_at(demo::now());
    request.key_id = stranger.device_key_id();
    let (status, body) = h
        .post("/v1/sync", JSON, serde_json::to_vec(&request).unwrap())
        .await;
    assert_eq!((status, body.code.as_str()), (401, "unknown_key"));

    // Operator routes without the operator token.
    let response = h
        .http
        .get(h.url("/v1/fraud-log"))
        .header("authorization", "Bearer guess")
        .send()
        .await
        .unwrap();
    let (status, body) = refusal(response).await;
    assert_eq!(
        (status, body.code.as_str()),
        (401, "operator_token_required")
    );

    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_stale_requests_are_refused() {
    let mut h = harness().await;
    let request = h.sync_request_at(demo::now());
    h.client.sync(&request).await.unwrap();
    // The same signed request again (a replay): refused, nothing done twice.
    match h.client.sync(&request).await {
        Err(scrip::Error::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (409, "replayed"))
        }
        other => panic!("a replay was not refused: {other:?}"),
    }
    // Also in the other encoding.
    let (status, body) = h
        .post("/v1/sync", BINCODE, codec::encode(&request).unwrap())
        .await;
    assert_eq!((status, body.code.as_str()), (409, "replayed"));

    // Older than the allowed clock skew (5 minutes), or from the future.
    let stale = h.sync_request_at(demo::now().saturating_sub(Duration::from_secs(600)));
    let (status, body) = h
        .post("/v1/sync", JSON, serde_json::to_vec(&stale).unwrap())
        .await;
    assert_eq!((status, body.code.as_str()), (401, "stale_request"));
    let future = h.sync_request_at(demo::now().saturating_add(Duration::from_secs(600)));
    let (status, body) = h
        .post("/v1/sync", JSON, serde_json::to_vec(&future).unwrap())
        .await;
    assert_eq!((status, body.code.as_str()), (401, "stale_request"));

    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_before_a_restart_cannot_be_replayed_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(StoreKind::Redb, dir.path()).await;
    let client = common::client(&server);
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut phone = Phone::new(
        Wallet::generate(common::root(), &mut rng).unwrap(),
        StorageKey::random(&mut rng),
    );
    phone
        .wallet
        .update_directory(client.key_directory().await.unwrap(), demo::now())
        .unwrap();
    let registration = phone
        .wallet
        .registration_request(None, demo::now(), &mut rng)
        .unwrap();
    let registration = phone.send(registration).unwrap();
    let opened = client.open_account(&registration).await.unwrap();
    phone
        .wallet
        .on_account_certificate(opened.certificate, demo::now())
        .unwrap();
    let request = phone.wallet.sync_request(demo::now(), &mut rng).unwrap();
    client.sync(&request).await.unwrap();

    // The nonce cache is in memory; the restart must not reopen the window.
    server.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let server = common::start(StoreKind::Redb, dir.path()).await;
    let client = common::client(&server);
    match client.sync(&request).await {
        Err(scrip::Error::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (401, "stale_request"))
        }
        other => panic!("a pre-restart request was accepted again: {other:?}"),
    }
    // A freshly signed one works.
    let request = phone.wallet.sync_request(demo::now(), &mut rng).unwrap();
    client.sync(&request).await.unwrap();
    server.shutdown().await.unwrap();
}
