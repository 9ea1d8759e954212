//! Requirement 6 of the wallet and merchant issue: accepted payments wait in a persistent
//! queue (the durable `scrip-stores` backends) until the issuer has answered them. A
//! restart keeps the queue, the unsettled total and the cached key directory; a failed
//! sync keeps the queue; the exposure limit holds under concurrent accepts, is freed by
//! settlement, and a new limit applies on reopen.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use scrip_merchant::{ClientError, IssuerClient, Merchant, MerchantConfig, MerchantError};
use scrip_stores::{FileStore, LedgerAccount, MemoryStore, RecordStore, RedbStore};
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::*;
use scrip_wallet::PayWith;

/// Opens merchant 1 again over `store`, with the certificate it was registered with.
async fn reopen<S: RecordStore>(
    store: S,
    certificate: &MerchantCertificate,
    limit: u64,
    now: Timestamp,
) -> Merchant<S> {
    Merchant::open(
        store,
        fixtures::merchant(1),
        certificate.clone(),
        root(),
        MerchantConfig::new(eur(limit)),
        now,
    )
    .await
    .unwrap()
}

async fn credited(issuer: &TestIssuer, merchant: &MerchantCertificate) -> i128 {
    issuer
        .store()
        .balance(&LedgerAccount::Merchant(merchant.payload.merchant_id), EUR)
        .await
        .unwrap()
}

fn file_store(dir: &tempfile::TempDir) -> impl Fn() -> FileStore + '_ {
    move || FileStore::open(dir.path().join("merchant")).unwrap()
}

fn redb_store(dir: &tempfile::TempDir) -> impl Fn() -> RedbStore + '_ {
    move || RedbStore::open(dir.path().join("merchant.redb")).unwrap()
}

/// Serves the key directory, but the upload's answer never comes back: the batch either
/// never reaches the issuer, or reaches it and the connection drops on the way back.
struct Flaky {
    issuer: Arc<TestIssuer>,
    now: Timestamp,
    reaches_issuer: bool,
}

#[async_trait]
impl IssuerClient for Flaky {
    async fn key_directory(&self) -> Result<SignedKeyDirectory, ClientError> {
        client(&self.issuer, self.now).key_directory().await
    }

    async fn redeem(&self, batch: &RedemptionBatch) -> Result<RedemptionReport, ClientError> {
        if self.reaches_issuer {
            self.issuer.redeem(batch, self.now).await.unwrap();
        }
        Err(ClientError::Transport("connection reset".into()))
    }

    async fn revocations(&self, since: Option<u64>) -> Result<RevocationList, ClientError> {
        client(&self.issuer, self.now).revocations(since).await
    }
}

fn transport_error<T: std::fmt::Debug>(result: Result<T, MerchantError>) {
    match result {
        Err(MerchantError::Client(ClientError::Transport(_))) => {}
        other => panic!("expected a transport error, got {other:?}"),
    }
}

// ---- restart ----------------------------------------------------------------------------

async fn the_queue_survives_a_restart<S: RecordStore>(open: impl Fn() -> S) {
    let issuer = issuer();
    let merchant = shop_over(&issuer, 1, 100_000, open()).await;
    let certificate = merchant.certificate().clone();
    let mut phone = Phone::open(&issuer, 1, 10_000, 1).await;
    phone.certificate(&issuer, up_to(3_000), NOW).await;
    phone.withdraw_blind(&issuer, &[10, 5, 2]).await;
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 1_250, PayWith::Record, at(1)).await
    ));
    // A coin payment whose bytes the test keeps, to present them again later.
    let offer = merchant.offer(eur(17), at(2), &mut rng(2)).await.unwrap();
    let answer = phone
        .wallet
        .pay_bytes(
            &codec::encode(&offer).unwrap(),
            PayWith::Coins,
            at(2),
            &mut rng(3),
        )
        .unwrap();
    let coin_answer = phone.send(answer);
    let coin_reply = merchant
        .accept_bytes(&coin_answer, at(2), &mut rng(4))
        .await
        .unwrap();
    let reply: MerchantReply = codec::decode(&coin_reply).unwrap();
    assert!(is_receipt(&reply));
    phone.wallet.on_merchant_reply(&reply, at(2)).unwrap();
    // An offer made before the restart, paid after it.
    let open_offer = merchant.offer(eur(500), at(3), &mut rng(5)).await.unwrap();
    let queued = merchant.pending(10).await.unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_267));
    drop(merchant);

    // The terminal restarts, still offline (and now uploads two items per batch).
    let config = MerchantConfig {
        batch_size: 2,
        ..MerchantConfig::new(eur(100_000))
    };
    let merchant = Merchant::open(
        open(),
        fixtures::merchant(1),
        certificate.clone(),
        root(),
        config,
        at(5),
    )
    .await
    .unwrap();
    assert_eq!(merchant.pending(10).await.unwrap(), queued);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_267));
    assert_eq!(merchant.directory_age(at(5)), Some(MINUTE * 5));
    // A repeated answer gets the receipt it got before the restart, and is not queued again.
    assert_eq!(
        merchant
            .accept_bytes(&coin_answer, at(5), &mut rng(6))
            .await
            .unwrap(),
        coin_reply
    );
    assert_eq!(merchant.pending(10).await.unwrap(), queued);
    // The open request survived too, and the cached directory verifies its payment offline.
    let answer = phone
        .wallet
        .pay_by_record(&open_offer, at(6), &mut rng(7))
        .unwrap();
    let answer = phone.send(answer);
    let reply = merchant.accept(&answer, at(6), &mut rng(8)).await.unwrap();
    assert!(is_receipt(&reply));
    phone.wallet.on_merchant_reply(&reply, at(6)).unwrap();
    assert_eq!(merchant.pending(10).await.unwrap().len(), 3);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_767));

    // Online again: everything settles (in two batches), and the directory is fresh.
    let summary = merchant
        .sync(&client(&issuer, at(40)), at(40), &mut rng(9))
        .await
        .unwrap();
    assert_eq!((summary.accepted, summary.already_accepted), (3, 0));
    assert!(merchant.pending(10).await.unwrap().is_empty());
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert_eq!(merchant.directory_age(at(40)), Some(Duration::ZERO));
    assert_eq!(credited(&issuer, &certificate).await, 1_767);
    drop(merchant);

    // And that, too, survives a restart.
    let merchant = reopen(open(), &certificate, 100_000, at(50)).await;
    assert!(merchant.pending(10).await.unwrap().is_empty());
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert_eq!(merchant.settlements(10).await.unwrap().len(), 3);
    assert_eq!(merchant.directory_age(at(50)), Some(MINUTE * 10));
    // Nothing is uploaded twice.
    let summary = merchant
        .sync(&client(&issuer, at(51)), at(51), &mut rng(10))
        .await
        .unwrap();
    assert_eq!(summary, scrip_merchant::SyncSummary::default());
    assert_eq!(credited(&issuer, &certificate).await, 1_767);
}

#[tokio::test]
async fn the_queue_survives_a_restart_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    the_queue_survives_a_restart(file_store(&dir)).await;
}

#[tokio::test]
async fn the_queue_survives_a_restart_on_the_redb_store() {
    let dir = tempfile::tempdir().unwrap();
    the_queue_survives_a_restart(redb_store(&dir)).await;
}

// ---- failed syncs -------------------------------------------------------------------------

async fn a_failed_sync_keeps_the_queue<S: RecordStore>(open: impl Fn() -> S) {
    let issuer = issuer();
    let merchant = shop_over(&issuer, 1, 100_000, open()).await;
    let certificate = merchant.certificate().clone();
    let mut phone = Phone::open(&issuer, 1, 10_000, 4).await;
    phone.certificate(&issuer, up_to(3_000), NOW).await;
    phone.withdraw_blind(&issuer, &[10, 5, 2]).await;
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 1_250, PayWith::Record, at(1)).await
    ));
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 17, PayWith::Coins, at(2)).await
    ));
    let queued = merchant.pending(10).await.unwrap();

    // The issuer is unreachable: nothing moves, not even the directory.
    let offline = InProcess {
        issuer: Arc::clone(&issuer),
        now: at(10),
        offline: true,
    };
    transport_error(merchant.sync(&offline, at(10), &mut rng(5)).await);
    assert_eq!(merchant.pending(10).await.unwrap(), queued);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_267));
    assert_eq!(merchant.directory_age(at(10)), Some(MINUTE * 10));

    // The directory comes through, the upload does not.
    let dropped = Flaky {
        issuer: Arc::clone(&issuer),
        now: at(11),
        reaches_issuer: false,
    };
    transport_error(merchant.sync(&dropped, at(11), &mut rng(6)).await);
    assert_eq!(merchant.pending(10).await.unwrap(), queued);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_267));
    assert_eq!(merchant.directory_age(at(11)), Some(Duration::ZERO));
    assert_eq!(credited(&issuer, &certificate).await, 0);
    drop(merchant);

    // After a restart, a sync that gets through settles everything.
    let merchant = reopen(open(), &certificate, 100_000, at(20)).await;
    assert_eq!(merchant.pending(10).await.unwrap(), queued);
    let summary = merchant
        .sync(&client(&issuer, at(20)), at(20), &mut rng(7))
        .await
        .unwrap();
    assert_eq!((summary.accepted, summary.already_accepted), (2, 0));
    assert!(merchant.pending(10).await.unwrap().is_empty());
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert_eq!(credited(&issuer, &certificate).await, 1_267);

    // The issuer credits an upload but its answer is lost: the payment stays queued and
    // the next sync learns it was already accepted.
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 300, PayWith::Record, at(21)).await
    ));
    let lost = Flaky {
        issuer: Arc::clone(&issuer),
        now: at(22),
        reaches_issuer: true,
    };
    transport_error(merchant.sync(&lost, at(22), &mut rng(8)).await);
    assert_eq!(merchant.pending(10).await.unwrap().len(), 1);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(300));
    assert_eq!(credited(&issuer, &certificate).await, 1_567);
    let summary = merchant
        .sync(&client(&issuer, at(23)), at(23), &mut rng(9))
        .await
        .unwrap();
    assert_eq!((summary.accepted, summary.already_accepted), (0, 1));
    assert!(merchant.pending(10).await.unwrap().is_empty());
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert_eq!(credited(&issuer, &certificate).await, 1_567);
}

#[tokio::test]
async fn a_failed_sync_keeps_the_queue_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    a_failed_sync_keeps_the_queue(file_store(&dir)).await;
}

#[tokio::test]
async fn a_failed_sync_keeps_the_queue_on_the_redb_store() {
    let dir = tempfile::tempdir().unwrap();
    a_failed_sync_keeps_the_queue(redb_store(&dir)).await;
}

// ---- exposure limit ---------------------------------------------------------------------

/// Presents every answer at once, each from its own task.
async fn accept_all<S: RecordStore + 'static>(
    merchant: &Arc<Merchant<S>>,
    answers: &[PaymentAnswer],
    now: Timestamp,
) -> Vec<MerchantReply> {
    let tasks: Vec<_> = answers
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, answer)| {
            let merchant = Arc::clone(merchant);
            tokio::spawn(async move {
                let mut rng = rng(500 + i as u64);
                merchant.accept(&answer, now, &mut rng).await.unwrap()
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn codes(replies: &[MerchantReply]) -> (usize, usize) {
    let receipts = replies.iter().filter(|r| is_receipt(r)).count();
    for reply in replies.iter().filter(|r| !is_receipt(r)) {
        assert_eq!(rejection_code(reply), "exposure_limit");
    }
    (receipts, replies.len() - receipts)
}

async fn the_limit_holds_under_concurrent_accepts<S: RecordStore + 'static>(store: S) {
    let issuer = issuer();
    // 20 payments of 100 against a limit of 500: five fit.
    let merchant = Arc::new(shop_over(&issuer, 1, 500, store).await);
    let mut phone = Phone::open(&issuer, 1, 10_000, 10).await;
    phone.certificate(&issuer, up_to(5_000), NOW).await;
    let mut answers = Vec::new();
    for i in 0..20 {
        let offer = merchant
            .offer(eur(100), at(1), &mut rng(100 + i))
            .await
            .unwrap();
        let answer = phone
            .wallet
            .pay_by_record(&offer, at(1), &mut phone.rng)
            .unwrap();
        answers.push(phone.send(answer));
    }

    let first = accept_all(&merchant, &answers, at(2)).await;
    assert_eq!(codes(&first), (5, 15));
    assert_eq!(merchant.pending(100).await.unwrap().len(), 5);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(500));

    // Settling frees the limit.
    let summary = merchant
        .sync(&client(&issuer, at(3)), at(3), &mut rng(11))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 5);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));

    // All twenty again, at once: the five accepted get their receipts again (and take no
    // room), five of the refused fit now.
    let second = accept_all(&merchant, &answers, at(4)).await;
    assert_eq!(codes(&second), (10, 10));
    for (before, after) in first.iter().zip(&second) {
        if is_receipt(before) {
            assert_eq!(before, after);
        }
    }
    assert_eq!(merchant.pending(100).await.unwrap().len(), 5);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(500));
    let summary = merchant
        .sync(&client(&issuer, at(5)), at(5), &mut rng(12))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 5);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert_eq!(credited(&issuer, merchant.certificate()).await, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_holds_under_concurrent_accepts_on_the_memory_store() {
    the_limit_holds_under_concurrent_accepts(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_holds_under_concurrent_accepts_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    the_limit_holds_under_concurrent_accepts(file_store(&dir)()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_holds_under_concurrent_accepts_on_the_redb_store() {
    let dir = tempfile::tempdir().unwrap();
    the_limit_holds_under_concurrent_accepts(redb_store(&dir)()).await;
}

async fn a_new_limit_applies_on_reopen<S: RecordStore>(open: impl Fn() -> S) {
    let issuer = issuer();
    let merchant = shop_over(&issuer, 1, 500, open()).await;
    let certificate = merchant.certificate().clone();
    let mut phone = Phone::open(&issuer, 1, 10_000, 13).await;
    phone.certificate(&issuer, up_to(5_000), NOW).await;
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 300, PayWith::Record, at(1)).await
    ));
    drop(merchant);

    // Raised to 1 000: 700 more fit, not a cent beyond.
    let merchant = reopen(open(), &certificate, 1_000, at(2)).await;
    assert_eq!(merchant.unsettled().await.unwrap(), eur(300));
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 700, PayWith::Record, at(3)).await
    ));
    let reply = pay(&mut phone, &merchant, 1, PayWith::Record, at(4)).await;
    assert_eq!(rejection_code(&reply), "exposure_limit");
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_000));
    drop(merchant);

    // Lowered to 200, below what is unsettled: nothing fits until the issuer has settled.
    let merchant = reopen(open(), &certificate, 200, at(5)).await;
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_000));
    let reply = pay(&mut phone, &merchant, 1, PayWith::Record, at(6)).await;
    assert_eq!(rejection_code(&reply), "exposure_limit");
    let summary = merchant
        .sync(&client(&issuer, at(7)), at(7), &mut rng(14))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 2);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 200, PayWith::Record, at(8)).await
    ));
    let reply = pay(&mut phone, &merchant, 1, PayWith::Record, at(9)).await;
    assert_eq!(rejection_code(&reply), "exposure_limit");
    drop(merchant);

    // Reopening with the same limit does not add room again.
    let merchant = reopen(open(), &certificate, 200, at(10)).await;
    let reply = pay(&mut phone, &merchant, 1, PayWith::Record, at(11)).await;
    assert_eq!(rejection_code(&reply), "exposure_limit");
    assert_eq!(merchant.unsettled().await.unwrap(), eur(200));
    assert_eq!(merchant.pending(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_new_limit_applies_on_reopen_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    a_new_limit_applies_on_reopen(file_store(&dir)).await;
}

#[tokio::test]
async fn a_new_limit_applies_on_reopen_on_the_redb_store() {
    let dir = tempfile::tempdir().unwrap();
    a_new_limit_applies_on_reopen(redb_store(&dir)).await;
}
