//! What the server refuses over HTTP, and how: malformed, oversized, mistyped, unsigned,
//! stale and replayed requests each get a 4xx with a JSON `{code, message}`, and the server
//! keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use scrip::client::HttpClient;
use scrip::demo::{self, Phone};
use scrip::issuer::api::{DeviceEnrollment, ErrorBody, BINCODE, JSON};
use scrip::issuer::server::{self, KeySource, RunningServer, ServerConfig, StoreKind};
use scrip::issuer::{IssuerConfig, Keyring, KeysetKeys};
use scrip::stores::{LedgerAccount, RecordStore};
use scrip::tokens::keys::{Device, DEFAULT_RSA_BITS};
use scrip::tokens::{
    codec, fixtures, Amount, BalanceCertificateRequest, BalanceCertificateRequestPayload,
    BlindWithdrawalRequest, BlindWithdrawalRequestPayload, Coin, CoinPayment, Currency,
    DenominationSigningKey, DepositId, DepositRequest, DepositRequestPayload, DeviceApproval,
    DeviceApprovalPayload, DeviceRegistration, DeviceRegistrationPayload, EndorsedCoinPayment,
    EndorsedCoinPaymentPayload, IdentifiedWithdrawalRequest, IdentifiedWithdrawalRequestPayload,
    KeysetId, LockRules, Message, Nonce, PaymentRequest, PaymentRequestPayload, PendingCoin,
    RedemptionBatch, RedemptionBatchPayload, RedemptionItem, RedemptionOutcome, RequestId,
    SigningKey, StatementRequest, StatementRequestPayload, SyncRequest, SyncRequestPayload,
    Validity,
};
use scrip::wallet::{CertificateOptions, StorageKey, Wallet};

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
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = SigningKey::generate(&mut rng, DEFAULT_RSA_BITS).unwrap();
    harness_on(server, dir, key).await
}

/// A harness over `server` whose registered phone signs with `key`.
async fn harness_on(
    server: RunningServer,
    dir: tempfile::TempDir,
    key: SigningKey<Device>,
) -> Harness {
    let client = common::client(&server);
    let phone = common::register_phone(&client, key).await;
    let rng = StdRng::from_rng(&mut rand::rng());
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

/// An in-process server's configuration: memory store, fixture keys, loopback port 0.
fn memory_config(dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        dir,
        common::OPERATOR_TOKEN.to_owned(),
    );
    config.store = StoreKind::Memory;
    config.keys = KeySource::Provided(Box::new(common::fixture_keyring()));
    config
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
    assert_eq!((status, body.code.as_str()), (401, "bad_signature"));

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
        Err(scrip::api::ClientError::Refused { status, code, .. }) => {
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
    let key = SigningKey::generate(&mut rng, DEFAULT_RSA_BITS).unwrap();
    let mut phone = common::register_phone(&client, key).await;
    let request = phone.wallet.sync_request(demo::now(), &mut rng).unwrap();
    client.sync(&request).await.unwrap();

    // The nonce cache is in memory; the restart must not reopen the window.
    server.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let server = common::start(StoreKind::Redb, dir.path()).await;
    let client = common::client(&server);
    match client.sync(&request).await {
        Err(scrip::api::ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (401, "stale_request"))
        }
        other => panic!("a pre-restart request was accepted again: {other:?}"),
    }
    // A freshly signed one works.
    let request = phone.wallet.sync_request(demo::now(), &mut rng).unwrap();
    client.sync(&request).await.unwrap();
    server.shutdown().await.unwrap();
}

// ---- currencies, expired certificates, expired keysets ---------------------------------

/// A server over the memory store with `keyring` and `issuer` limits.
async fn start_with(dir: &Path, keyring: Keyring, issuer: IssuerConfig) -> RunningServer {
    let mut config = memory_config(dir);
    config.keys = KeySource::Provided(Box::new(keyring));
    config.issuer = issuer;
    server::start(config).await.unwrap()
}

/// POSTs `body` as JSON and parses the refusal.
async fn post_json<T: serde::Serialize>(
    server: &RunningServer,
    path: &str,
    body: &T,
) -> (u16, ErrorBody) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .header("content-type", JSON)
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    refusal(response).await
}

fn nonce(rng: &mut StdRng) -> Nonce {
    let mut n = Nonce::default();
    rng.fill_bytes(&mut n);
    n
}

fn eur(v: u64) -> Amount {
    Amount::new(v, Currency::EUR)
}

impl Harness {
    async fn balance(&mut self) -> i128 {
        let request = self
            .phone
            .wallet
            .statement_request(Currency::EUR, None, 100, demo::now(), &mut self.rng)
            .unwrap();
        self.client
            .statement(&request)
            .await
            .unwrap()
            .payload
            .balance
    }

    async fn deposit(&mut self, amount: u64) {
        let request = self
            .phone
            .wallet
            .deposit_request(eur(amount), demo::now(), &mut self.rng)
            .unwrap();
        let request = self.phone.send(request).unwrap();
        let record = self.client.deposit(&request).await.unwrap();
        self.phone
            .wallet
            .on_deposit_record(record, demo::now(), &mut self.rng)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_a_currency_the_issuer_does_not_serve_are_refused() {
    let mut h = harness().await;
    let now = demo::now;

    // The issuer's keys are EUR only. A deposit in dollars: nothing collected or credited.
    let request = h
        .phone
        .wallet
        .deposit_request(Amount::new(500, Currency::USD), now(), &mut h.rng)
        .unwrap();
    let request = h.phone.send(request).unwrap();
    let (status, body) = post_json(&h.server, "/v1/deposits", &request).await;
    assert_eq!((status, body.code.as_str()), (400, "unsupported"));

    // A balance certificate in dollars (there is no dollar balance to reserve).
    let request = h
        .phone
        .wallet
        .certificate_request(CertificateOptions::any(Currency::USD), now(), &mut h.rng)
        .unwrap();
    let request = h.phone.send(request).unwrap();
    let (status, body) = post_json(&h.server, "/v1/balance-certificates", &request).await;
    assert_eq!((status, body.code.as_str()), (400, "unsupported"));

    // Identified coins in dollars.
    let request = h
        .phone
        .wallet
        .identified_withdrawal_request(
            &[10].map(|v| Amount::new(v, Currency::USD)),
            now(),
            &mut h.rng,
        )
        .unwrap();
    let request = h.phone.send(request).unwrap();
    let (status, body) = post_json(&h.server, "/v1/withdrawals/identified", &request).await;
    assert_eq!((status, body.code.as_str()), (400, "unsupported"));
    // Blind dollar coins cannot even be asked for: no keyset to blind them for.
    assert!(h
        .phone
        .wallet
        .blind_withdrawal_request(
            &[10].map(|v| Amount::new(v, Currency::USD)),
            now(),
            &mut h.rng
        )
        .is_err());

    // Nothing moved: the account's ledger is empty, in euros and in dollars.
    let account = LedgerAccount::Customer(h.phone.wallet.account().unwrap().account_id);
    let store = h.server.state().issuer.store();
    for currency in [Currency::EUR, Currency::USD] {
        assert_eq!(store.balance(&account, currency).await.unwrap(), 0);
        assert!(store
            .ledger_entries(&account, currency, None, 10)
            .await
            .unwrap()
            .is_empty());
    }

    // The same deposit in euros goes through.
    h.deposit(500).await;
    assert_eq!(h.balance().await, 500);
    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_account_certificate_expired_is_refused() {
    // Account certificates valid for no time at all: each expires the millisecond after
    // it is issued.
    let dir = tempfile::tempdir().unwrap();
    let config = IssuerConfig {
        account_certificate_lifetime: Duration::ZERO,
        ..IssuerConfig::default()
    };
    let server = start_with(dir.path(), common::fixture_keyring(), config).await;
    let client = common::client(&server);
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = fixtures::device(1);
    let registration = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: key.verifying_key().clone(),
            account_id: None,
            created_at: demo::now(),
            nonce: nonce(&mut rng),
        },
        &key,
        &mut rng,
    )
    .unwrap();
    let opened = client.open_account(&registration).await.unwrap();
    let (account_id, device_id) = (opened.account_id, opened.device_id);
    let validity = opened.certificate.payload.validity;
    assert_eq!(validity.not_before, validity.not_after);
    // Waits for the wall clock to pass the end of the certificate (a millisecond or two).
    while demo::now() <= validity.not_after {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // Every request the device signs from now on is refused as expired, freshly signed
    // and otherwise valid as it is.
    let deposit = DepositRequest::sign(
        DepositRequestPayload {
            deposit_id: DepositId::random(&mut rng),
            account_id,
            device_id,
            amount: eur(100),
            created_at: demo::now(),
        },
        &key,
        &mut rng,
    )
    .unwrap();
    let (status, body) = post_json(&server, "/v1/deposits", &deposit).await;
    assert_eq!((status, body.code.as_str()), (400, "expired"));

    let certificate = BalanceCertificateRequest::sign(
        BalanceCertificateRequestPayload {
            account_id,
            device_id,
            currency: Currency::EUR,
            requested_amount: None,
            max_payments: None,
            per_payment_cap: None,
            lock: LockRules::default(),
            unsent_records: Vec::new(),
            deposit_confirmations: Vec::new(),
            created_at: demo::now(),
            nonce: nonce(&mut rng),
        },
        &key,
        &mut rng,
    )
    .unwrap();
    let (status, body) = post_json(&server, "/v1/balance-certificates", &certificate).await;
    assert_eq!((status, body.code.as_str()), (400, "expired"));

    let withdrawal = IdentifiedWithdrawalRequest::sign(
        IdentifiedWithdrawalRequestPayload {
            account_id,
            device_id,
            currency: Currency::EUR,
            amounts: vec![1],
            idempotency_key: rng.random(),
            created_at: demo::now(),
            nonce: nonce(&mut rng),
        },
        &key,
        &mut rng,
    )
    .unwrap();
    let (status, body) = post_json(&server, "/v1/withdrawals/identified", &withdrawal).await;
    assert_eq!((status, body.code.as_str()), (400, "expired"));

    let sync = SyncRequest::sign(
        SyncRequestPayload {
            account_id,
            device_id,
            unsent_records: Vec::new(),
            deposit_confirmations: Vec::new(),
            created_at: demo::now(),
            nonce: nonce(&mut rng),
        },
        &key,
        &mut rng,
    )
    .unwrap();
    let (status, body) = post_json(&server, "/v1/sync", &sync).await;
    assert_eq!((status, body.code.as_str()), (400, "expired"));

    let statement = StatementRequest::sign(
        StatementRequestPayload {
            account_id,
            device_id,
            currency: Currency::EUR,
            after_seq: None,
            limit: 10,
            created_at: demo::now(),
            nonce: nonce(&mut rng),
        },
        &key,
        &mut rng,
    )
    .unwrap();
    let (status, body) = post_json(
        &server,
        &format!("/v1/accounts/{account_id}/statement"),
        &statement,
    )
    .await;
    assert_eq!((status, body.code.as_str()), (400, "expired"));

    // Nor can it vouch for a new device of the account.
    let new_key = fixtures::device(2);
    let registration = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: new_key.verifying_key().clone(),
            account_id: Some(account_id),
            created_at: demo::now(),
            nonce: nonce(&mut rng),
        },
        &new_key,
        &mut rng,
    )
    .unwrap();
    let approval = DeviceApproval::sign(
        DeviceApprovalPayload {
            account_id,
            approving_device: device_id,
            new_device_key: new_key.key_id(),
            created_at: demo::now(),
            nonce: nonce(&mut rng),
        },
        &key,
        &mut rng,
    )
    .unwrap();
    let (status, body) = post_json(
        &server,
        "/v1/devices",
        &DeviceEnrollment {
            registration,
            approval,
        },
    )
    .await;
    assert_eq!((status, body.code.as_str()), (400, "expired"));

    // Nothing was credited; the server keeps serving, and the refused key is free to
    // open an account of its own.
    assert_eq!(
        server
            .state()
            .issuer
            .balance(account_id, Currency::EUR)
            .await
            .unwrap(),
        0
    );
    client.health().await.unwrap();
    let registration = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: new_key.verifying_key().clone(),
            account_id: None,
            created_at: demo::now(),
            nonce: nonce(&mut rng),
        },
        &new_key,
        &mut rng,
    )
    .unwrap();
    let other = client.open_account(&registration).await.unwrap();
    assert_ne!(other.account_id, account_id);
    server.shutdown().await.unwrap();
}

/// A merchant whose certificate was valid for no time at all uploads, after it expired, a
/// batch of two coin payments: the first requested and endorsed while the certificate was
/// valid (the merchant signs those times), the second after it expired. Returns the
/// harness, the merchant, the coins of the two payments and the issuer's report.
async fn expired_merchant_upload() -> (
    Harness,
    scrip::tokens::MerchantId,
    Vec<Coin>,
    scrip::tokens::RedemptionReport,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = IssuerConfig {
        merchant_certificate_lifetime: Duration::ZERO,
        ..IssuerConfig::default()
    };
    let server = start_with(dir.path(), common::fixture_keyring(), config).await;
    let mut h = harness_on(server, dir, fixtures::device(1)).await;
    h.deposit(1_000).await;
    let request = h
        .phone
        .wallet
        .blind_withdrawal_request(
            &[10, 5].map(|v| Amount::new(v, Currency::EUR)),
            demo::now(),
            &mut h.rng,
        )
        .unwrap();
    let request = h.phone.send(request).unwrap();
    let response = h.client.withdraw_blind(&request).await.unwrap();
    h.phone
        .wallet
        .on_blind_withdrawal(&request, &response, demo::now())
        .unwrap();
    let coins = h.phone.wallet.coins().to_vec();
    assert_eq!(coins.len(), 2);

    let key = fixtures::merchant(1);
    let certificate = scrip::setup::register_merchant(
        &h.client,
        &key,
        scrip::tokens::MerchantCategory::GROCERY,
        "DE-BY",
        &mut h.rng,
    )
    .await
    .unwrap();
    let cert = certificate.payload.clone();
    let taken_at = cert.validity.not_after;
    // Waits for the wall clock to pass the end of the certificate (a millisecond or two).
    while demo::now() <= taken_at {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut item = |coin: &Coin, at| {
        let request = PaymentRequest::sign(
            PaymentRequestPayload {
                request_id: RequestId::random(&mut h.rng),
                merchant_id: cert.merchant_id,
                amount: coin.amount(),
                created_at: at,
                category: cert.category,
                region: cert.region.clone(),
            },
            &key,
            &mut h.rng,
        )
        .unwrap();
        RedemptionItem::Coins(
            EndorsedCoinPayment::sign(
                EndorsedCoinPaymentPayload {
                    payment: CoinPayment {
                        request,
                        coins: vec![coin.clone()],
                    },
                    merchant_id: cert.merchant_id,
                    endorsed_at: at,
                },
                &key,
                &mut h.rng,
            )
            .unwrap(),
        )
    };
    let items = vec![item(&coins[0], taken_at), item(&coins[1], demo::now())];
    let batch = RedemptionBatch::sign(
        RedemptionBatchPayload {
            merchant_id: cert.merchant_id,
            items,
            created_at: demo::now(),
            nonce: nonce(&mut h.rng),
        },
        &key,
        &mut h.rng,
    )
    .unwrap();
    let report = h.client.redeem(&batch).await.unwrap();
    assert_eq!(report.payload.outcomes.len(), 2);
    (h, cert.merchant_id, coins, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_whose_certificate_expired_is_paid_for_what_it_took_while_valid() {
    let (mut h, _, coins, report) = expired_merchant_upload().await;
    // Reconnecting late costs the merchant nothing it took while it was certified.
    assert_eq!(
        report.payload.outcomes[0],
        RedemptionOutcome::Accepted {
            credited: coins[0].amount()
        }
    );
    assert!(matches!(
        h.client
            .coin_state(coins[0].spend_id().unwrap())
            .await
            .unwrap()
            .state,
        scrip::issuer::api::CoinStatus::Redeemed { .. }
    ));
    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}

/// The issuer judges a merchant's certificate at the times the merchant signed (request
/// and endorsement): a payment taken after the certificate expired is not credited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_taken_after_the_merchant_certificate_expired_is_not_credited() {
    let (mut h, merchant_id, coins, report) = expired_merchant_upload().await;
    match &report.payload.outcomes[1] {
        RedemptionOutcome::Invalid { reason } => assert_eq!(reason.code, "expired"),
        other => panic!("a payment taken by an expired merchant was answered {other:?}"),
    }
    assert_eq!(
        h.client
            .coin_state(coins[1].spend_id().unwrap())
            .await
            .unwrap()
            .state,
        scrip::issuer::api::CoinStatus::NotRedeemed
    );
    assert_eq!(
        h.server
            .state()
            .issuer
            .store()
            .balance(&LedgerAccount::Merchant(merchant_id), Currency::EUR)
            .await
            .unwrap(),
        i128::from(coins[0].amount().minor_units)
    );
    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coins_of_an_expired_keyset_are_neither_issued_nor_redeemed() {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    // A keyset (one denomination, 10) whose validity ended yesterday, kept in the keyring
    // as an old keyset is after rotation, and a coin it signed while it was valid.
    let now = demo::now();
    let day = Duration::from_secs(86_400);
    let validity = Validity::new(now.saturating_sub(day * 30), now.saturating_sub(day)).unwrap();
    let denomination = tokio::task::spawn_blocking(|| {
        DenominationSigningKey::generate(&mut StdRng::from_rng(&mut rand::rng()), DEFAULT_RSA_BITS)
            .unwrap()
    })
    .await
    .unwrap();
    let old = KeysetKeys::new(
        Currency::EUR,
        validity,
        now.saturating_sub(day * 2),
        vec![(10, denomination)],
    )
    .unwrap();
    let keyset = old.keyset.clone();
    let pending = PendingCoin::new(&mut rng, &keyset, eur(10)).unwrap();
    let blind_signature = old.keys[0]
        .1
        .sign_blinded(&mut rng, pending.blinded())
        .unwrap();
    let old_coin = Coin::Blind(
        pending
            .finalize(keyset.key_for(10).unwrap(), &blind_signature)
            .unwrap(),
    );
    let mut keyring = common::fixture_keyring();
    keyring.keysets.insert(0, old);
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), keyring, IssuerConfig::default()).await;
    let mut h = harness_on(server, dir, fixtures::device(1)).await;
    h.deposit(1_000).await;

    // The published directory no longer lists the old keyset.
    let directory = h.client.key_directory().await.unwrap();
    let listed: Vec<KeysetId> = directory.payload.keysets().iter().map(|k| k.id()).collect();
    assert_eq!(listed.len(), 1);
    assert!(!listed.contains(&keyset.id()));

    // A blind withdrawal from it is refused before anything is signed or debited; so is
    // one from a keyset the issuer never had.
    let key = fixtures::device(1);
    let account = h.phone.wallet.account().unwrap().clone();
    let mut withdrawal = |keyset_id| {
        let coin = PendingCoin::new(&mut h.rng, &keyset, eur(10)).unwrap();
        BlindWithdrawalRequest::sign(
            BlindWithdrawalRequestPayload {
                account_id: account.account_id,
                device_id: account.device_id,
                keyset_id,
                coins: vec![(10, coin.blinded().clone())],
                idempotency_key: h.rng.random(),
                created_at: demo::now(),
                nonce: nonce(&mut h.rng),
            },
            &key,
            &mut h.rng,
        )
        .unwrap()
    };
    let expired = withdrawal(keyset.id());
    let unknown = withdrawal(KeysetId([7; 32]));
    let (status, body) = post_json(&h.server, "/v1/withdrawals/blind", &expired).await;
    assert_eq!((status, body.code.as_str()), (400, "keyset_not_issuing"));
    let (status, body) = post_json(&h.server, "/v1/withdrawals/blind", &unknown).await;
    assert_eq!((status, body.code.as_str()), (400, "unknown_keyset"));
    assert_eq!(h.balance().await, 1_000);

    // A merchant redeeming the old coin (its point of sale should have refused it; this
    // one did not) gets it back as invalid, and is credited nothing.
    let merchant_key = fixtures::merchant(1);
    let certificate = scrip::setup::register_merchant(
        &h.client,
        &merchant_key,
        scrip::tokens::MerchantCategory::GROCERY,
        "DE-BY",
        &mut h.rng,
    )
    .await
    .unwrap();
    let cert = &certificate.payload;
    let request = PaymentRequest::sign(
        PaymentRequestPayload {
            request_id: RequestId::random(&mut h.rng),
            merchant_id: cert.merchant_id,
            amount: eur(10),
            created_at: demo::now(),
            category: cert.category,
            region: cert.region.clone(),
        },
        &merchant_key,
        &mut h.rng,
    )
    .unwrap();
    let endorsed = EndorsedCoinPayment::sign(
        EndorsedCoinPaymentPayload {
            payment: CoinPayment {
                request,
                coins: vec![old_coin.clone()],
            },
            merchant_id: cert.merchant_id,
            endorsed_at: demo::now(),
        },
        &merchant_key,
        &mut h.rng,
    )
    .unwrap();
    let batch = RedemptionBatch::sign(
        RedemptionBatchPayload {
            merchant_id: cert.merchant_id,
            items: vec![RedemptionItem::Coins(endorsed)],
            created_at: demo::now(),
            nonce: nonce(&mut h.rng),
        },
        &merchant_key,
        &mut h.rng,
    )
    .unwrap();
    let report = h.client.redeem(&batch).await.unwrap();
    match &report.payload.outcomes[..] {
        [RedemptionOutcome::Invalid { reason }] => {
            assert_eq!(reason.code, "keyset_expired", "{reason:?}")
        }
        other => panic!("a coin of an expired keyset was not refused: {other:?}"),
    }
    assert_eq!(
        h.client
            .coin_state(old_coin.spend_id().unwrap())
            .await
            .unwrap()
            .state,
        scrip::issuer::api::CoinStatus::NotRedeemed
    );
    assert_eq!(
        h.server
            .state()
            .issuer
            .store()
            .balance(&LedgerAccount::Merchant(cert.merchant_id), Currency::EUR)
            .await
            .unwrap(),
        0
    );

    // Coins of the current keyset are issued as before.
    let request = h
        .phone
        .wallet
        .blind_withdrawal_request(
            &[10].map(|v| Amount::new(v, Currency::EUR)),
            demo::now(),
            &mut h.rng,
        )
        .unwrap();
    let request = h.phone.send(request).unwrap();
    let response = h.client.withdraw_blind(&request).await.unwrap();
    assert_ne!(response.keyset_id, keyset.id());
    h.phone
        .wallet
        .on_blind_withdrawal(&request, &response, demo::now())
        .unwrap();
    assert_eq!(h.balance().await, 990);
    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}

// ---- slow senders ------------------------------------------------------------------------

/// Reads until the server closes the connection (or 10 s pass: then it never would).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut response = Vec::new();
    // An error (a reset) ends the connection too: only the timeout matters.
    let ended =
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    assert!(ended.is_ok(), "the server kept a stalled connection open");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stall_mid_request_are_cut_off_and_the_server_keeps_serving() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = memory_config(dir.path());
    config.read_timeout = Duration::from_millis(500);
    let server = server::start(config).await.unwrap();
    let addr = server.local_addr();

    // A connection that never sends, headers that never end ("slowloris"), and a body
    // that stops halfway.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut headers_stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    headers_stalled
        .write_all(b"POST /v1/sync HTTP/1.1\r\nhost: scrip\r\ncontent-type: application/json\r\n")
        .await
        .unwrap();
    let mut body_stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    body_stalled
        .write_all(
            b"POST /v1/sync HTTP/1.1\r\nhost: scrip\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"payload\":",
        )
        .await
        .unwrap();

    // While both hang, others are served.
    let client = common::client(&server);
    client.health().await.unwrap();

    let answer = read_until_closed(&mut silent).await;
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
    let answer = read_until_closed(&mut headers_stalled).await;
    assert!(
        !answer.starts_with("HTTP/1.1 2"),
        "a request without its end of headers was answered: {answer}"
    );
    let answer = read_until_closed(&mut body_stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");

    // A fresh client: the first one's pooled connection sat idle past the read timeout
    // too, and the server closing it may race the client reusing it.
    let client = common::client(&server);
    client.health().await.unwrap();
    client.key_directory().await.unwrap();
    server.shutdown().await.unwrap();
}

// ---- below the routes --------------------------------------------------------------------

/// Sends `raw` and reads the whole answer until the server closes the connection.
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    read_until_closed(&mut stream).await
}

/// The status and `{code, message}` body of a whole answer, which must be JSON.
fn json_refusal(answer: &str) -> (u16, ErrorBody) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer}"
    );
    let status = head[9..12].parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_below_the_routes_speak_json_and_head_answers_like_get() {
    let mut h = harness().await;
    let addr = h.server.local_addr();
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let cases: [(&[u8], u16, &str); 5] = [
        (b"GARBAGE\r\n\r\n", 400, "malformed_request"),
        (
            b"GET /healthz HTTP/9.9\r\nhost: x\r\n\r\n",
            400,
            "malformed_request",
        ),
        (
            b"POST /v1/sync HTTP/1.1\r\nhost: x\r\ncontent-length: ten\r\n\r\n",
            400,
            "malformed_request",
        ),
        (huge_header.as_bytes(), 431, "headers_too_large"),
        (long_uri.as_bytes(), 431, "headers_too_large"),
    ];
    for (raw, status, code) in cases {
        let answer = exchange(addr, raw).await;
        let (got, body) = json_refusal(&answer);
        assert_eq!((got, body.code.as_str()), (status, code), "{answer}");
        assert!(!body.message.is_empty());
    }

    // HEAD on a GET route: the GET's status and headers, no body.
    for path in ["/healthz", "/v1/keys", "/v1/root-key"] {
        let response = h.http.head(h.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "HEAD {path}");
        let length: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(length > 0);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    // HEAD on a POST route: a JSON 405 like GET.
    let response = h.http.head(h.url("/v1/sync")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_and_bodies_over_the_budget_get_503_and_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = memory_config(dir.path());
    config.max_connections = 6;
    config.max_body_bytes = 1 << 20;
    config.body_budget_bytes = 2 << 20;
    let server = server::start(config).await.unwrap();
    let addr = server.local_addr();
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = SigningKey::generate(&mut rng, DEFAULT_RSA_BITS).unwrap();
    let mut h = harness_on(server, dir, key).await;

    // Two uploads of 1 MiB that stall one byte short hold the whole 2 MiB budget (a body
    // holds the budget for what it has sent, so holding it takes sending it): a third
    // large body is refused as its first bytes arrive.
    let head = "POST /v1/redemptions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 1048576\r\n\r\n";
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&vec![b' '; (1 << 20) - 1]).await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = [head.as_bytes(), &[b' '; 64 << 10]].concat();
    let (status, body) = json_refusal(&exchange(addr, &third).await);
    assert_eq!((status, body.code.as_str()), (503, "busy"));
    // Small bodies need no reservation: a genuine request is served meanwhile.
    h.still_serving().await;

    // Fill the connection cap (the two stalled uploads, plus idle connections).
    for _ in 0..4 {
        stalled.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = exchange(addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (status, body) = json_refusal(&answer);
    assert_eq!((status, body.code.as_str()), (503, "busy"), "{answer}");

    // Once they go away, everyone is served again.
    drop(stalled);
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.still_serving().await;
    let metrics = h.client.metrics().await.unwrap();
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..].trim().parse().unwrap()
    };
    assert!(
        counter("scrip_http_connections_refused_total") >= 1,
        "{metrics}"
    );
    assert_eq!(counter("scrip_http_bodies_refused_total"), 1, "{metrics}");
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seen_nonce_copied_into_a_request_of_another_device_does_not_use_it_up() {
    // Someone who saw a request's type, nonce and time signs a request of their own
    // device with the same three first: the replay identity includes the signer, so the
    // genuine request is still fresh.
    let mut h = harness().await;
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = SigningKey::generate(&mut rng, DEFAULT_RSA_BITS).unwrap();
    let mut attacker = common::register_phone(&h.client, key).await;
    let t = demo::now();
    let genuine = h
        .phone
        .wallet
        .sync_request(t, &mut StdRng::seed_from_u64(7))
        .unwrap();
    let squat = attacker
        .wallet
        .sync_request(t, &mut StdRng::seed_from_u64(7))
        .unwrap();
    assert_eq!(
        (genuine.payload.nonce, genuine.payload.created_at),
        (squat.payload.nonce, squat.payload.created_at)
    );
    h.client.sync(&squat).await.unwrap();
    h.client.sync(&genuine).await.unwrap();
    match h.client.sync(&genuine).await {
        Err(scrip::api::ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (409, "replayed"))
        }
        other => panic!("a replay was not refused: {other:?}"),
    }
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_registrations_are_not_remembered_and_a_replay_opens_nothing_new() {
    // Anyone can make a key and sign registrations with it: they must not fill the
    // replay cache. A replayed registration is harmless: the key is registered once.
    let h = harness().await;
    let before = h.server.state().replay.remembered();
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = SigningKey::generate(&mut rng, DEFAULT_RSA_BITS).unwrap();
    let mut phone = Phone::new(
        Wallet::new(key, common::root()).unwrap(),
        StorageKey::random(&mut rng),
    );
    let mut registrations = Vec::new();
    for _ in 0..10 {
        let registration = phone
            .wallet
            .registration_request(None, demo::now(), &mut rng)
            .unwrap();
        registrations.push(phone.send(registration).unwrap());
    }
    let opened = h.client.open_account(&registrations[0]).await.unwrap();
    for registration in &registrations[1..] {
        match h.client.open_account(registration).await {
            Err(scrip::api::ClientError::Refused { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (409, "already_registered"))
            }
            other => panic!("a second registration of one key: {other:?}"),
        }
    }
    let replayed = h.client.open_account(&registrations[0]).await.unwrap();
    assert_eq!(replayed.account_id, opened.account_id);
    assert_eq!(h.server.state().replay.remembered(), before);
    h.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_account_and_merchant_routes_need_the_token_and_work_with_it() {
    let mut h = harness().await;
    let account_id = h.phone.wallet.account().unwrap().account_id;
    let key = common::merchant_key(1);
    let certificate = scrip::setup::register_merchant(
        &h.client,
        &key,
        scrip::tokens::MerchantCategory::GROCERY,
        "DE-BY",
        &mut h.rng,
    )
    .await
    .unwrap();
    let merchant_id = certificate.payload.merchant_id;
    let reason = serde_json::to_vec(&serde_json::json!({ "reason": "review" })).unwrap();

    // Without the token (or with a wrong one): 401 on each, and nothing is done.
    let response = h
        .http
        .get(h.url("/v1/frozen-accounts"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(response).await.1.code.as_str(),
        "operator_token_required"
    );
    for path in [
        format!("/v1/accounts/{account_id}/freeze"),
        format!("/v1/accounts/{account_id}/unfreeze"),
        format!("/v1/merchants/{merchant_id}/revoke"),
    ] {
        let response = h
            .http
            .post(h.url(&path))
            .header("content-type", JSON)
            .header("authorization", "Bearer guess")
            .body(reason.clone())
            .send()
            .await
            .unwrap();
        let (status, body) = refusal(response).await;
        assert_eq!(
            (status, body.code.as_str()),
            (401, "operator_token_required"),
            "{path}"
        );
    }
    assert!(h
        .client
        .frozen_accounts(None, 10)
        .await
        .unwrap()
        .accounts
        .is_empty());

    // With it: freeze, list, unfreeze (and a second unfreeze is a 409).
    let frozen = h
        .client
        .freeze_account(account_id, "chargeback under review")
        .await
        .unwrap();
    assert_eq!(frozen.reason, "chargeback under review");
    let page = h.client.frozen_accounts(None, 10).await.unwrap();
    assert_eq!(page.accounts, vec![frozen.clone()]);
    assert!(h
        .client
        .frozen_accounts(Some(account_id), 10)
        .await
        .unwrap()
        .accounts
        .is_empty());
    let unfrozen = h
        .client
        .unfreeze_account(account_id, "resolved")
        .await
        .unwrap();
    assert_eq!(
        (unfrozen.frozen_reason.as_str(), unfrozen.reason.as_str()),
        ("chargeback under review", "resolved")
    );
    match h.client.unfreeze_account(account_id, "again").await {
        Err(scrip::api::ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (409, "account_not_frozen"));
        }
        other => panic!("expected account_not_frozen, got {other:?}"),
    }
    let response = h
        .http
        .get(h.url("/v1/frozen-accounts?after=nope"))
        .header(
            "authorization",
            format!("Bearer {}", common::OPERATOR_TOKEN),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = refusal(response).await;
    assert_eq!((status, body.code.as_str()), (400, "invalid_query"));

    // Revoke the merchant: its later batches are refused with merchant_revoked.
    let revoked = h
        .client
        .revoke_merchant(merchant_id, "terminated contract")
        .await
        .unwrap();
    assert_eq!(revoked.merchant_id, merchant_id);
    let batch = RedemptionBatch::sign(
        RedemptionBatchPayload {
            merchant_id,
            items: Vec::new(),
            created_at: demo::now(),
            nonce: nonce(&mut h.rng),
        },
        &key,
        &mut h.rng,
    )
    .unwrap();
    match h.client.redeem(&batch).await {
        Err(scrip::api::ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "merchant_revoked"));
        }
        other => panic!("expected merchant_revoked, got {other:?}"),
    }
    // Unknown merchant or account: 404.
    let stranger = scrip::tokens::MerchantId::random(&mut h.rng);
    match h.client.revoke_merchant(stranger, "why").await {
        Err(scrip::api::ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (404, "unknown_merchant"));
        }
        other => panic!("expected unknown_merchant, got {other:?}"),
    }

    h.still_serving().await;
    h.server.shutdown().await.unwrap();
}
