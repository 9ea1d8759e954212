//! End to end over HTTP: the real server (warp on a loopback port) over each store backend,
//! the typed client, the wallet and merchant libraries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip::client::HttpClient;
use scrip::demo::{self, Outcomes, Phone};
use scrip::issuer::api::CoinStatus;
use scrip::issuer::server::StoreKind;
use scrip::merchant::SyncSummary;
use scrip::tokens::{Amount, Currency};
use scrip::wallet::{StorageKey, Wallet};

fn eur(v: u64) -> Amount {
    Amount::new(v, Currency::EUR)
}

fn rng() -> StdRng {
    StdRng::from_rng(&mut rand::rng())
}

async fn demo_story(kind: StoreKind, bincode: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(kind, dir.path()).await;
    let client = if bincode {
        common::bincode_client(&server)
    } else {
        common::client(&server)
    };
    let mut log = Vec::new();
    let outcomes = demo::run(&client, &common::root(), &mut log).await;
    let log = String::from_utf8_lossy(&log).into_owned();
    let outcomes = outcomes.unwrap_or_else(|e| panic!("demo failed: {e}\n{log}"));
    assert_eq!(outcomes, Outcomes::EXPECTED, "{log}");

    // The server counted what it answered: 3 accepted and a double spend from merchants
    // (the customer's copy comes through /v1/sync and is not a merchant redemption), and
    // two swaps (the customer's change, merchant B taking its payment as coins).
    let metrics = client.metrics().await.unwrap();
    assert!(
        metrics.contains("scrip_redemptions_total{outcome=\"accepted\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scrip_swaps_total{outcome=\"swapped\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scrip_redemptions_total{outcome=\"already_accepted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scrip_redemptions_total{outcome=\"double_spent\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("scrip_store_commit_seconds_count"));

    // The double spend is in the fraud log, for the operator only.
    let log_page = client.fraud_log(None, 100).await.unwrap();
    assert!(!log_page.entries.is_empty());
    let anonymous = HttpClient::new(&server.url())
        .unwrap()
        .with_operator_token("not-the-token");
    assert!(matches!(
        anonymous.fraud_log(None, 100).await,
        Err(scrip::api::ClientError::Refused { status: 401, .. })
    ));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_story_over_http_with_the_memory_store() {
    demo_story(StoreKind::Memory, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_story_over_http_with_the_file_store() {
    demo_story(StoreKind::File, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_story_over_http_with_the_redb_store() {
    demo_story(StoreKind::Redb, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_story_over_http_with_the_postgres_store() {
    demo_story(StoreKind::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_story_with_binary_bodies() {
    demo_story(StoreKind::Redb, true).await;
}

/// A registered customer with `deposit` on its account.
async fn customer(client: &HttpClient, deposit: u64) -> Phone {
    let mut rng = rng();
    let now = demo::now;
    let wallet = Wallet::generate(common::root(), &mut rng).unwrap();
    let mut phone = Phone::new(wallet, StorageKey::random(&mut rng));
    phone
        .wallet
        .update_directory(client.key_directory().await.unwrap(), now())
        .unwrap();
    let registration = phone
        .wallet
        .registration_request(None, now(), &mut rng)
        .unwrap();
    let registration = phone.send(registration).unwrap();
    let opened = client.open_account(&registration).await.unwrap();
    phone
        .wallet
        .on_account_certificate(opened.certificate, now())
        .unwrap();
    let request = phone
        .wallet
        .deposit_request(eur(deposit), now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let record = client.deposit(&request).await.unwrap();
    phone
        .wallet
        .on_deposit_record(record, now(), &mut rng)
        .unwrap();
    phone.save().unwrap();
    phone
}

async fn restart_mid_story(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(kind, dir.path()).await;
    let client = common::client(&server);
    let keys_before = client.key_directory().await.unwrap();

    let mut phone = customer(&client, 1_000).await;
    common::withdraw_blind(&mut phone, &client, &[10, 5, 2]).await;
    let merchant = common::shop(&client, common::merchant_key(1)).await;
    common::pay_coins(&mut phone, &merchant, 15).await;
    let (account, _) = {
        let a = phone.wallet.account().unwrap();
        (a.account_id, a.device_id)
    };
    let mut rng = rng();
    let statement_before = client
        .statement(
            &phone
                .wallet
                .statement_request(Currency::EUR, None, 100, demo::now(), &mut rng)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(statement_before.payload.balance, 1_000 - 17);

    // The issuer restarts while the merchant is offline.
    server.shutdown().await.unwrap();
    let server = common::start(kind, dir.path()).await;
    let client = common::client(&server);

    // Same keys (loaded, not generated again): old tokens keep verifying.
    let keys_after = client.key_directory().await.unwrap();
    assert_eq!(
        keys_before.payload.issuer_keys(),
        keys_after.payload.issuer_keys()
    );

    // Nothing lost: the account, its ledger and the customer's device are still there.
    let statement_after = client
        .statement(
            &phone
                .wallet
                .statement_request(Currency::EUR, None, 100, demo::now(), &mut rng)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(statement_after.payload.account_id, account);
    assert_eq!(
        statement_after.payload.entries,
        statement_before.payload.entries
    );

    // The merchant reconnects after the restart: its payment is accepted once.
    let summary = merchant.sync(&client, demo::now(), &mut rng).await.unwrap();
    assert_eq!(
        summary,
        SyncSummary {
            accepted: 1,
            ..SyncSummary::default()
        }
    );

    // And after a second restart the redemption is still there.
    server.shutdown().await.unwrap();
    let server = common::start(kind, dir.path()).await;
    let client = common::client(&server);
    let coin = merchant.settlements(10).await.unwrap()[0]
        .payment
        .item
        .clone();
    let spend_id = match coin {
        scrip::tokens::RedemptionItem::Coins(c) => c.payload.payment.coins[0].spend_id().unwrap(),
        scrip::tokens::RedemptionItem::Record(_) => panic!("expected coins"),
    };
    assert!(matches!(
        client.coin_state(spend_id).await.unwrap().state,
        CoinStatus::Redeemed { .. }
    ));
    // The customer can keep working against the restarted server.
    common::withdraw_blind(&mut phone, &client, &[1]).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_story_with_the_redb_store_loses_nothing() {
    restart_mid_story(StoreKind::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_story_with_the_file_store_loses_nothing() {
    restart_mid_story(StoreKind::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_story_with_the_postgres_store_loses_nothing() {
    restart_mid_story(StoreKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_merchants_race_to_redeem_one_coin_and_exactly_one_wins() {
    const MERCHANTS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(StoreKind::Redb, dir.path()).await;
    let client = common::client(&server);

    let mut phone = customer(&client, 100).await;
    common::withdraw_blind(&mut phone, &client, &[10]).await;
    let copied = phone.saved.clone();

    // 50 points of sale, each paid offline with the same coin by a copy of the wallet.
    let keys = common::merchant_keys(MERCHANTS).await;
    let mut merchants = Vec::new();
    for key in keys {
        let merchant = common::shop(&client, key).await;
        let mut copy = Phone::new(
            Wallet::load(&copied, &phone.storage_key).unwrap(),
            StorageKey::random(&mut rng()),
        );
        common::pay_coins(&mut copy, &merchant, 10).await;
        merchants.push(Arc::new(merchant));
    }

    // All reconnect at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(MERCHANTS));
    let mut tasks = Vec::new();
    for merchant in &merchants {
        let merchant = Arc::clone(merchant);
        let client = client.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let mut rng = rng();
            let batch = merchant
                .build_batch(demo::now(), &mut rng)
                .await
                .unwrap()
                .unwrap();
            barrier.wait().await;
            let report = client.redeem(&batch).await.unwrap();
            merchant
                .apply_report(&batch, &report, demo::now())
                .await
                .unwrap()
        }));
    }
    let mut total = SyncSummary::default();
    for task in tasks {
        let s = task.await.unwrap();
        total.accepted += s.accepted;
        total.already_accepted += s.already_accepted;
        total.double_spent += s.double_spent;
        total.invalid += s.invalid;
    }
    assert_eq!(
        total,
        SyncSummary {
            accepted: 1,
            double_spent: MERCHANTS - 1,
            ..SyncSummary::default()
        }
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_signed_again_gets_the_first_answer_and_is_not_executed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(StoreKind::Redb, dir.path()).await;
    let client = common::client(&server);
    let mut phone = customer(&client, 1_000).await;
    let mut rng = rng();

    // A deposit whose answer was lost: the same bytes again are a replay, the request
    // signed again is credited once and answered with the first record.
    let request = phone
        .wallet
        .deposit_request(eur(500), demo::now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let first = client.deposit(&request).await.unwrap();
    assert!(matches!(
        client.deposit(&request).await,
        Err(scrip::api::ClientError::Refused { status: 409, .. })
    ));
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let retry = phone
        .wallet
        .resign_deposit_request(request.payload.deposit_id, demo::now(), &mut rng)
        .unwrap();
    let retry = phone.send(retry).unwrap();
    assert_ne!(retry, request);
    assert_eq!(client.deposit(&retry).await.unwrap(), first);
    phone
        .wallet
        .on_deposit_record(first, demo::now(), &mut rng)
        .unwrap();

    // A certificate request whose answer was lost: the re-signed retry gets the same
    // certificate, and the account is reserved once.
    let request = phone
        .wallet
        .certificate_request(demo::up_to(300), demo::now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let first = client.balance_certificate(&request).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let retry = phone
        .wallet
        .resign_certificate_request(demo::now(), &mut rng)
        .unwrap();
    let retry = phone.send(retry).unwrap();
    assert_eq!(client.balance_certificate(&retry).await.unwrap(), first);
    phone
        .wallet
        .on_balance_certificate(first, demo::now())
        .unwrap();

    let statement = client
        .statement(
            &phone
                .wallet
                .statement_request(Currency::EUR, None, 100, demo::now(), &mut rng)
                .unwrap(),
        )
        .await
        .unwrap();
    // 1000 + 500 deposited once, 300 reserved once.
    assert_eq!(statement.payload.balance, 1_200);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_is_readable_by_its_owner_only() {
    // The store holds identified coins: anyone who can copy them can spend them.
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let mode = |dir: &std::path::Path| std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    for binary_creates_token_first in [false, true] {
        let data_dir = parent
            .path()
            .join(format!("scrip-data-{binary_creates_token_first}"));
        let token = if binary_creates_token_first {
            // What `scrip-server` does without --operator-token.
            scrip::issuer::server::OperatorToken::DataDir
        } else {
            common::OPERATOR_TOKEN.to_owned().into()
        };
        let mut config =
            scrip::issuer::server::ServerConfig::new(([127, 0, 0, 1], 0).into(), &data_dir, token);
        config.keys =
            scrip::issuer::server::KeySource::Provided(Box::new(common::fixture_keyring()));
        let server = scrip::issuer::server::start(config).await.unwrap();
        assert_eq!(
            mode(&data_dir),
            0o700,
            "data directory mode {:o}",
            mode(&data_dir)
        );
        server.shutdown().await.unwrap();
    }
}

/// Swaps over HTTP (`POST /v1/swaps`), in JSON and in bincode: the wallet's change request
/// is answered with a signed receipt the wallet verifies; the same request sent again (a
/// lost answer) gets the same signatures; coins swapped before are answered double spent,
/// signed too, and nothing is claimed; a refusal says why; the metrics count both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_over_http_are_idempotent_signed_and_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(StoreKind::Redb, dir.path()).await;
    let mut rng = rng();
    for bincode in [false, true] {
        let client = if bincode {
            common::bincode_client(&server)
        } else {
            common::client(&server)
        };
        let mut phone = customer(&client, 100).await;
        common::withdraw_blind(&mut phone, &client, &[10, 5]).await;
        let old_coins = phone.wallet.coins().to_vec();
        let request = phone
            .wallet
            .change_request(&[eur(3)], demo::now(), &mut rng)
            .unwrap()
            .unwrap();
        let request = phone.send(request).unwrap();
        let receipt = client.swap(&request).await.unwrap();
        let again = client.swap(&request).await.unwrap();
        assert_eq!(again.payload.outcome, receipt.payload.outcome);
        let result = phone
            .wallet
            .on_swap_receipt(&request, &again, demo::now())
            .unwrap();
        assert!(
            matches!(result, scrip::wallet::SwapResult::Swapped { .. }),
            "{result:?}"
        );
        assert_eq!(phone.wallet.coin_total(Currency::EUR), eur(15));

        // The old coins again, in another request: double spent, nothing claimed.
        let keyset = common::key_directory(&client)
            .await
            .current_keyset(Currency::EUR, demo::now())
            .unwrap()
            .clone();
        let (replay, _) = scrip_testkit::swap_request(&keyset, old_coins, &[5, 5, 5], &mut rng);
        let refused = client.swap(&replay).await.unwrap();
        let directory = common::key_directory(&client).await;
        let payload = refused
            .verify_for(&replay, &directory, demo::now())
            .unwrap();
        assert!(
            matches!(&payload.outcome, scrip::tokens::SwapOutcome::DoubleSpent { coins, .. } if coins.len() == 2),
            "{:?}",
            payload.outcome
        );

        // Outputs worth more than the coins: refused, with the reason.
        let mine = phone.wallet.coins().to_vec();
        let (greedy, _) = scrip_testkit::swap_request(&keyset, mine, &[10, 10], &mut rng);
        match client.swap(&greedy).await {
            Err(scrip::api::ClientError::Refused { status, code, .. }) => {
                assert_eq!(status, 400);
                assert_eq!(code, scrip::tokens::ReasonCode::AmountMismatch);
            }
            other => panic!("{other:?}"),
        }
    }
    let metrics = common::client(&server).metrics().await.unwrap();
    assert!(
        metrics.contains("scrip_swaps_total{outcome=\"swapped\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scrip_swaps_total{outcome=\"double_spent\"} 2"),
        "{metrics}"
    );
    server.shutdown().await.unwrap();
}

/// `GET /v1/keys` is open to anyone, and a signed key directory costs an RSA signature:
/// requests that find the cache cold (or stale) at the same moment wait for one signature
/// instead of each signing their own. PSS signatures are randomized, so directories signed
/// twice differ: every answer of a burst on a cold cache must be the same bytes.
// Eight workers, so that several requests reach the cold cache while one is signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_burst_of_key_directory_requests_on_a_cold_cache_is_answered_with_one_signature() {
    // Whether a burst meets a signing in progress is timing: several fresh servers, each
    // with a cold cache, make a second signature near certain where requests do not wait.
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = scrip::issuer::server::ServerConfig::new(
            ([127, 0, 0, 1], 0).into(),
            dir.path(),
            common::OPERATOR_TOKEN.to_owned(),
        );
        config.store = StoreKind::Memory;
        config.keys =
            scrip::issuer::server::KeySource::Provided(Box::new(common::fixture_keyring()));
        // The pure-Rust signer, slower than OpenSSL: a wider window for a second signature.
        config.issuer.backend = scrip::tokens::Backend::RustCrypto;
        let server = scrip::issuer::server::start(config).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        // Each request on its own connection, opened beforehand, all sent at once.
        const BURST: usize = 48;
        let start = Arc::new(tokio::sync::Barrier::new(BURST));
        let requests: Vec<_> = (0..BURST)
            .map(|_| {
                let (base, start) = (base.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let ready = http.get(format!("{base}/healthz")).send().await.unwrap();
                    assert_eq!(ready.status().as_u16(), 200);
                    start.wait().await;
                    let response = http.get(format!("{base}/v1/keys")).send().await.unwrap();
                    assert_eq!(response.status().as_u16(), 200);
                    response.bytes().await.unwrap()
                })
            })
            .collect();
        let mut bodies = Vec::new();
        for request in requests {
            bodies.push(request.await.unwrap());
        }
        assert!(
            bodies.iter().all(|b| *b == bodies[0]),
            "round {round}: the directory was signed more than once"
        );
        server.shutdown().await.unwrap();
    }
}
