//! Two `scrip-server`s, one PostgreSQL database: they must answer as one server would.
//! Each test starts a throwaway PostgreSQL (once per test process, a fresh schema per
//! test), publishes the fixture keyring as the cluster's keys (the operator's `keys init`),
//! and starts the real servers on loopback ports. (Killing a server mid-batch needs a
//! server process of its own: that test is in `crash_under_load.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use common::TestCluster;
use rand::rngs::StdRng;
use rand::SeedableRng;
use scrip::client::HttpClient;
use scrip::demo::{self, Phone};
use scrip::issuer::api::CoinStatus;
use scrip::merchant::{Merchant, SyncSummary};
use scrip::stores::MemoryStore;
use scrip::tokens::{Amount, Currency, ReasonCode};
use scrip::wallet::{CertificateOptions, PaymentStatus, StorageKey, Wallet};

fn eur(v: u64) -> Amount {
    Amount::new(v, Currency::EUR)
}

fn rng() -> StdRng {
    StdRng::from_rng(&mut rand::rng())
}

/// A wallet with an account opened over `client`.
async fn customer(client: &HttpClient) -> Phone {
    let mut rng = rng();
    let wallet = Wallet::generate(common::root(), &mut rng).unwrap();
    let mut phone = Phone::new(wallet, StorageKey::random(&mut rng));
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
    phone.save().unwrap();
    phone
}

async fn deposit(phone: &mut Phone, client: &HttpClient, amount: u64) {
    let mut rng = rng();
    let request = phone
        .wallet
        .deposit_request(eur(amount), demo::now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let record = client.deposit(&request).await.unwrap();
    let confirmation = phone
        .wallet
        .on_deposit_record(record, demo::now(), &mut rng)
        .unwrap();
    phone.save().unwrap();
    client.confirm_deposit(&confirmation).await.unwrap();
}

async fn pay_record(phone: &mut Phone, merchant: &Merchant<MemoryStore>, amount: u64) {
    let mut rng = rng();
    let now = demo::now();
    let offer = merchant.offer(eur(amount), now, &mut rng).await.unwrap();
    let answer = phone.wallet.pay_by_record(&offer, now, &mut rng).unwrap();
    let answer = phone.send(answer).unwrap();
    let reply = merchant.accept(&answer, now, &mut rng).await.unwrap();
    let status = phone.wallet.on_merchant_reply(&reply, now).unwrap();
    assert!(matches!(status, PaymentStatus::Completed(_)), "{status:?}");
    phone.save().unwrap();
}

async fn statement_balance(phone: &mut Phone, client: &HttpClient) -> (i128, usize) {
    let mut rng = rng();
    let request = phone
        .wallet
        .statement_request(Currency::EUR, None, 100, demo::now(), &mut rng)
        .unwrap();
    let statement = client.statement(&request).await.unwrap();
    phone
        .wallet
        .verify_statement(&request, &statement, demo::now())
        .unwrap();
    (statement.payload.balance, statement.payload.entries.len())
}

fn accepted(n: usize) -> SyncSummary {
    SyncSummary {
        accepted: n,
        ..SyncSummary::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_story_split_across_two_servers_adds_up_on_both() {
    let cluster = TestCluster::new().await;
    let (a, _a_dir) = cluster.node().await;
    let (b, _b_dir) = cluster.node().await;
    let (ca, cb) = (common::client(&a), common::client(&b));
    let mut rng = rng();

    // Account opened on A, money deposited on B, coins withdrawn on A, the balance
    // certificate taken on B.
    let mut phone = customer(&ca).await;
    deposit(&mut phone, &cb, 1_000).await;
    common::withdraw_blind(&mut phone, &ca, &[10, 5, 2, 1]).await;
    let request = phone
        .wallet
        .certificate_request(CertificateOptions::up_to(eur(300)), demo::now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    let certificate = cb.balance_certificate(&request).await.unwrap();
    phone
        .wallet
        .on_balance_certificate(certificate, demo::now())
        .unwrap();
    phone.save().unwrap();

    // One merchant registered on A, paid four times offline; it redeems half on each.
    let merchant = common::shop(&ca, common::merchant_key(1)).await;
    common::pay_coins(&mut phone, &merchant, 10).await;
    pay_record(&mut phone, &merchant, 40).await;
    assert_eq!(
        merchant.sync(&ca, demo::now(), &mut rng).await.unwrap(),
        accepted(2)
    );
    common::pay_coins(&mut phone, &merchant, 7).await;
    pay_record(&mut phone, &merchant, 60).await;
    assert_eq!(
        merchant.sync(&cb, demo::now(), &mut rng).await.unwrap(),
        accepted(2)
    );
    // Uploading everything again to the other server credits nothing twice.
    let settled = merchant.settlements(10).await.unwrap();
    assert_eq!(settled.len(), 4);

    // Both servers tell the same story: the customer's statement, the coins' states.
    let on_a = statement_balance(&mut phone, &ca).await;
    let on_b = statement_balance(&mut phone, &cb).await;
    assert_eq!(on_a, on_b);
    // 1000 deposited; 18 in coins and the 300 certificate's reservation left the
    // spendable balance (the records' 100 are paid from the reservation).
    assert_eq!(on_a.0, 1_000 - 18 - 300);
    for settlement in &settled {
        if let scrip::tokens::RedemptionItem::Coins(c) = &settlement.payment.item {
            for coin in &c.payload.payment.coins {
                let id = coin.spend_id().unwrap();
                for client in [&ca, &cb] {
                    assert!(matches!(
                        client.coin_state(id).await.unwrap().state,
                        CoinStatus::Redeemed { .. }
                    ));
                }
            }
        }
    }

    // The books, read from the database both servers share.
    let books = cluster.books().await;
    assert!(books.sums_to_zero(), "{books:?}");
    assert_eq!(books.funding, -1_000);
    assert_eq!(books.merchants, 10 + 40 + 7 + 60);
    assert_eq!(books.outstanding, 18 - 10 - 7);
    assert_eq!(books.reservations, 300 - 40 - 60);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_merchants_race_one_coin_across_two_servers_and_exactly_one_wins() {
    const MERCHANTS: usize = 50;
    let cluster = TestCluster::new().await;
    let (a, _a_dir) = cluster.node().await;
    let (b, _b_dir) = cluster.node().await;
    let servers = [common::client(&a), common::client(&b)];

    let mut phone = customer(&servers[0]).await;
    deposit(&mut phone, &servers[1], 100).await;
    common::withdraw_blind(&mut phone, &servers[0], &[10]).await;
    let copied = phone.saved.clone();

    // 50 points of sale, registered on either server, each paid offline with the same
    // coin by a copy of the wallet.
    let keys = common::merchant_keys(MERCHANTS).await;
    let mut merchants = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let merchant = common::shop(&servers[i % 2], key).await;
        let mut copy = Phone::new(
            Wallet::load(&copied, &phone.storage_key).unwrap(),
            StorageKey::random(&mut rng()),
        );
        common::pay_coins(&mut copy, &merchant, 10).await;
        merchants.push(Arc::new(merchant));
    }

    // All reconnect at once, half to each server.
    let barrier = Arc::new(tokio::sync::Barrier::new(MERCHANTS));
    let mut tasks = Vec::new();
    for (i, merchant) in merchants.iter().enumerate() {
        let merchant = Arc::clone(merchant);
        let client = servers[i % 2].clone();
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
        total.add(&task.await.unwrap());
    }
    assert_eq!(
        total,
        SyncSummary {
            accepted: 1,
            double_spent: MERCHANTS - 1,
            ..SyncSummary::default()
        }
    );
    let books = cluster.books().await;
    assert!(books.sums_to_zero(), "{books:?}");
    assert_eq!(books.merchants, 10, "one merchant credited, once");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_replayed_to_the_other_server_is_refused_as_replayed() {
    let cluster = TestCluster::new().await;
    let (a, _a_dir) = cluster.node().await;
    let (b, _b_dir) = cluster.node().await;
    let (ca, cb) = (common::client(&a), common::client(&b));
    let mut rng = rng();
    let mut phone = customer(&ca).await;

    // A deposit request: answered by A, the same bytes sent to B are a replay.
    let request = phone
        .wallet
        .deposit_request(eur(500), demo::now(), &mut rng)
        .unwrap();
    let request = phone.send(request).unwrap();
    ca.deposit(&request).await.unwrap();
    match cb.deposit(&request).await {
        Err(scrip::api::ClientError::Refused { code, .. }) => {
            assert_eq!(code, ReasonCode::Replayed)
        }
        other => panic!("a replay to the other server was not refused: {other:?}"),
    }

    // A merchant's redemption batch: the same.
    common::withdraw_blind(&mut phone, &ca, &[5]).await;
    let merchant = common::shop(&cb, common::merchant_key(2)).await;
    common::pay_coins(&mut phone, &merchant, 5).await;
    let batch = merchant
        .build_batch(demo::now(), &mut rng)
        .await
        .unwrap()
        .unwrap();
    // The same payments signed again (a fresh nonce): what a merchant sends when it
    // retries after a lost answer.
    let retry = merchant
        .build_batch(demo::now(), &mut rng)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(batch.payload.nonce, retry.payload.nonce);
    cb.redeem(&batch).await.unwrap();
    match ca.redeem(&batch).await {
        Err(scrip::api::ClientError::Refused { code, .. }) => {
            assert_eq!(code, ReasonCode::Replayed)
        }
        other => panic!("a replayed batch was not refused: {other:?}"),
    }
    // The retry is answered by the other server with the first outcome, not executed
    // twice.
    let report = ca.redeem(&retry).await.unwrap();
    assert_eq!(
        merchant
            .apply_report(&retry, &report, demo::now())
            .await
            .unwrap(),
        SyncSummary {
            already_accepted: 1,
            ..SyncSummary::default()
        }
    );
    let books = cluster.books().await;
    assert_eq!(books.funding, -500, "the deposit was credited once");
    assert_eq!(books.merchants, 5);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
