//! A full disk under the running server: writes are refused with `503 store_error` while it
//! lasts, `/readyz` says the store cannot write (`/healthz` only says the process is up),
//! and once space is back the same server serves writes again, without a restart, having
//! credited nothing twice and lost nothing acknowledged. The redb store runs on a storage
//! backend that fails writes on demand (`FullDiskBackend`); before the fix, redb latched
//! the first failure and every later write failed until a restart. The store-level tests
//! (`stores/tests/full_disk.rs`) cover the file store with a real kernel limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip::client::HttpClient;
use scrip::demo::{self, Phone};
use scrip::issuer::server::{self, KeySource, ServerConfig};
use scrip::stores::conformance::FullDiskBackend;
use scrip::stores::RecordStore;
use scrip::tokens::keys::DEFAULT_RSA_BITS;
use scrip::tokens::{Amount, Currency, SigningKey};

async fn deposit(
    phone: &mut Phone,
    client: &HttpClient,
    amount: u64,
) -> Result<(), scrip::api::ClientError> {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let request = phone
        .wallet
        .deposit_request(Amount::new(amount, Currency::EUR), demo::now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let record = client.deposit(&request).await?;
    phone
        .wallet
        .on_deposit_record(record, demo::now(), &mut rng)
        .unwrap();
    Ok(())
}

/// `GET path`: the status and the `code` of a refusal (empty for a success).
async fn probe(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let code = body["code"].as_str().unwrap_or("").to_owned();
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_by_readyz_and_the_server_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let path = dir.path().join("scrip.redb");
    let store = FullDiskBackend::store(path.clone(), Arc::clone(&full)).unwrap();
    let mut config = ServerConfig::new(
        ([127, 0, 0, 1], 0).into(),
        dir.path(),
        common::OPERATOR_TOKEN.to_owned(),
    );
    config.custom_store = Some(Arc::new(store));
    config.keys = KeySource::Provided(Box::new(common::fixture_keyring()));
    let running = server::start(config).await.unwrap();
    let client = common::client(&running);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", running.url());
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = SigningKey::generate(&mut rng, DEFAULT_RSA_BITS).unwrap();
    let mut phone = common::register_phone(&client, key).await;
    let account = phone.wallet.account().unwrap().account_id;
    deposit(&mut phone, &client, 1_000).await.unwrap();
    assert_eq!(probe(&http, &url("/readyz")).await, (200, String::new()));

    // The disk fills.
    full.store(true, Ordering::SeqCst);
    match deposit(&mut phone, &client, 500).await {
        Err(scrip::api::ClientError::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (503, "store_error"))
        }
        other => panic!("a write on a full disk: {other:?}"),
    }
    assert_eq!(
        probe(&http, &url("/readyz")).await,
        (503, "store_unwritable".to_owned())
    );
    assert_eq!(probe(&http, &url("/healthz")).await.0, 200);

    // Space comes back: readiness returns within a few probes, writes work again.
    full.store(false, Ordering::SeqCst);
    let started = Instant::now();
    while probe(&http, &url("/readyz")).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    deposit(&mut phone, &client, 250).await.unwrap();
    let balance = running
        .state()
        .issuer
        .balance(account, Currency::EUR)
        .await
        .unwrap();
    assert_eq!(
        balance, 1_250,
        "the refused deposit was credited, or one was lost"
    );
    running.shutdown().await.unwrap();

    // And all of it is on disk.
    let reopened = scrip::stores::RedbStore::open(&path).unwrap();
    let on_disk = reopened
        .balance(
            &scrip::stores::LedgerAccount::Customer(account),
            Currency::EUR,
        )
        .await
        .unwrap();
    assert_eq!(on_disk, 1_250);
    reopened.close().await.unwrap();
}
