//! The main flows end to end against the issuer core: deposit, balance certificate,
//! offline payment by record, coin withdrawal, redemption.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use rand::Rng;
use scrip_issuer::IssuerError;
use scrip_issuer::{coins_outstanding_account, funding_account};
use scrip_stores::{LedgerAccount, MemoryStore, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

#[tokio::test]
async fn deposit_credits_once_and_returns_a_verifiable_record() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(1);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let request = wallet.deposit_request(10_000, &mut rng);
    let record = issuer.deposit(&request, NOW, &mut rng).await.unwrap();
    let directory = issuer.keys().directory(NOW).unwrap();
    let verified = record
        .verify(&directory, &wallet.certificate.payload, NOW)
        .unwrap();
    assert_eq!(verified.amount(), eur(10_000));
    // The device retries (lost answer): same record, credited once.
    let again = issuer.deposit(&request, NOW, &mut rng).await.unwrap();
    assert_eq!(again, record);
    assert_eq!(
        issuer.balance(wallet.account_id, EUR).await.unwrap(),
        10_000
    );
    assert_eq!(issuer.funding().total_collected(), 10_000);
    assert_eq!(
        issuer
            .store()
            .balance(&funding_account(), EUR)
            .await
            .unwrap(),
        -10_000
    );
    // The same deposit id with another amount is refused.
    let mut reused = request.payload.clone();
    reused.amount = eur(1);
    let reused = DepositRequest::sign(reused, &wallet.key, &mut rng).unwrap();
    assert!(matches!(
        issuer.deposit(&reused, NOW, &mut rng).await,
        Err(IssuerError::IdempotencyKeyReused)
    ));
    // The device confirms it stored the record.
    let confirmation = DepositConfirmation::sign(
        DepositConfirmationPayload {
            deposit_id: request.payload.deposit_id,
            account_id: wallet.account_id,
            device_id: wallet.device_id,
            deposit_record_digest: codec::digest(&record).unwrap(),
            confirmed_at: NOW,
        },
        &wallet.key,
        &mut rng,
    )
    .unwrap();
    issuer.confirm_deposit(&confirmation, NOW).await.unwrap();
    assert_eq!(
        issuer
            .deposit_confirmation(request.payload.deposit_id)
            .await
            .unwrap(),
        Some(confirmation)
    );
}

#[tokio::test]
async fn a_declined_deposit_credits_nothing() {
    let issuer = scrip_issuer::Issuer::new(
        MemoryStore::new(),
        scrip_issuer::InMemoryFunding::with_limit(500),
        fixture_keyring(),
        scrip_issuer::IssuerConfig::default(),
    );
    let mut rng = rng(2);
    let key = scrip_tokens::fixtures::device(1);
    let opened = issuer
        .open_account(&registration(&key, None, &mut rng), NOW, &mut rng)
        .await
        .unwrap();
    let request = DepositRequest::sign(
        DepositRequestPayload {
            deposit_id: DepositId::random(&mut rng),
            account_id: opened.account_id,
            device_id: opened.device_id,
            amount: eur(501),
            created_at: NOW,
        },
        &key,
        &mut rng,
    )
    .unwrap();
    assert!(matches!(
        issuer.deposit(&request, NOW, &mut rng).await,
        Err(IssuerError::Funding(_))
    ));
    assert_eq!(issuer.balance(opened.account_id, EUR).await.unwrap(), 0);
}

#[tokio::test]
async fn offline_payment_by_record_settles_once_whichever_copy_arrives_first() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(3);
    let mut wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 10_000, &mut rng).await;
    let cert = wallet.certificate(&issuer, 3_000, NOW, &mut rng).await;
    assert_eq!(cert.payload.available, eur(3_000));
    assert_eq!(issuer.balance(wallet.account_id, EUR).await.unwrap(), 7_000);

    // Two payments offline.
    let first = wallet.pay(&cert, &shop.request(1_000, &mut rng), NOW, &mut rng);
    let second = wallet.pay(&cert, &shop.request(500, &mut rng), NOW, &mut rng);

    // The merchant uploads the first; the customer's copy of it arrives later.
    let receipt = shop.countersign(&first, &mut rng);
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(receipt.clone())],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted {
            credited: eur(1_000)
        }]
    );

    // The customer syncs both records with its next certificate request: the second one
    // (not uploaded by the merchant yet) is recorded now and credited to the merchant.
    let request = wallet.certificate_request(
        Some(100),
        LockRules::default(),
        vec![first.clone(), second.clone()],
        &mut rng,
    );
    issuer
        .issue_balance_certificate(&request, NOW, &mut rng)
        .await
        .unwrap();
    let merchant = LedgerAccount::Merchant(shop.id());
    assert_eq!(issuer.store().balance(&merchant, EUR).await.unwrap(), 1_500);

    // The merchant's uploads after that change nothing.
    let outcomes = shop
        .redeem(
            &issuer,
            vec![
                RedemptionItem::Record(receipt),
                RedemptionItem::Record(shop.countersign(&second, &mut rng)),
            ],
            NOW,
            &mut rng,
        )
        .await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, RedemptionOutcome::AlreadyAccepted { .. })),
        "{outcomes:?}"
    );
    assert_eq!(issuer.store().balance(&merchant, EUR).await.unwrap(), 1_500);
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Reservation(cert.payload.serial), EUR)
            .await
            .unwrap(),
        1_500
    );
}

#[tokio::test]
async fn blind_coins_are_withdrawn_once_and_redeemed_once() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(4);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let rival = Shop::register(&issuer, 2, &mut rng).await;
    wallet.deposit(&issuer, 100, &mut rng).await;

    let directory = issuer.keys().directory(NOW).unwrap();
    let keyset = directory.current_keyset(EUR, NOW).unwrap().clone();
    let (request, pending) = wallet.blind_request(&keyset, &[10, 5, 2], [7; 32], &mut rng);
    let response = issuer
        .withdraw_blind(&request, NOW, &mut rng)
        .await
        .unwrap();
    // A retry (same idempotency key) gets the same signatures and is debited once.
    let retry = issuer
        .withdraw_blind(&request, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(retry, response);
    assert_eq!(issuer.balance(wallet.account_id, EUR).await.unwrap(), 83);
    assert_eq!(
        issuer
            .store()
            .balance(&coins_outstanding_account(), EUR)
            .await
            .unwrap(),
        17
    );
    let coins = finalize(&keyset, &pending, &response);
    for coin in &coins {
        coin.verify(&directory, NOW).unwrap();
    }

    // The same key for another request is refused.
    let (other, _) = wallet.blind_request(&keyset, &[1], [7; 32], &mut rng);
    assert!(matches!(
        issuer.withdraw_blind(&other, NOW, &mut rng).await,
        Err(IssuerError::IdempotencyKeyReused)
    ));

    // Spent at one shop (uploaded twice), then again at another.
    let payment = shop.endorse(coins.clone(), &mut rng);
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(payment.clone())],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(17) }]
    );
    let outcomes = shop
        .redeem(&issuer, vec![RedemptionItem::Coins(payment)], NOW, &mut rng)
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::AlreadyAccepted {
            first_accepted_at: NOW
        }]
    );
    let outcomes = rival
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(
                rival.endorse(coins[..1].to_vec(), &mut rng),
            )],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::DoubleSpent {
            first_redeemed_at: NOW,
            coins: vec![coins[0].id()]
        }]
    );
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(shop.id()), EUR)
            .await
            .unwrap(),
        17
    );
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(rival.id()), EUR)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        issuer
            .store()
            .balance(&coins_outstanding_account(), EUR)
            .await
            .unwrap(),
        0
    );
    let log = issuer.fraud_log(None, 10).await.unwrap();
    assert_eq!(log.len(), 1);
}

#[tokio::test]
async fn a_withdrawal_beyond_the_balance_is_refused_and_debits_nothing() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(5);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 10, &mut rng).await;
    let request = wallet.identified_request(&[10, 1], [1; 32], &mut rng);
    assert!(matches!(
        issuer.withdraw_identified(&request, NOW, &mut rng).await,
        Err(IssuerError::InsufficientFunds { .. })
    ));
    assert_eq!(issuer.balance(wallet.account_id, EUR).await.unwrap(), 10);
    let coins = wallet.withdraw_identified(&issuer, &[10], &mut rng).await;
    let account = issuer.account(wallet.account_id).await.unwrap();
    assert_eq!(coins[0].holder(), Some(account.virtual_id));
    assert_eq!(issuer.balance(wallet.account_id, EUR).await.unwrap(), 0);
    assert_eq!(
        issuer
            .store()
            .balance(&coins_outstanding_account(), EUR)
            .await
            .unwrap(),
        10
    );
}

#[allow(dead_code)]
fn assert_send<T: Send>(_: T) {}

#[allow(dead_code)]
fn issuer_futures_are_send<S: RecordStore + 'static>(
    issuer: &TestIssuer<S>,
    batch: &RedemptionBatch,
) {
    // The server runs these on a multi-threaded runtime.
    assert_send(issuer.redeem(batch, NOW));
}

#[tokio::test]
async fn deposit_confirmations_arrive_inside_the_synced_history() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(6);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let record = wallet.deposit(&issuer, 5_000, &mut rng).await;
    let deposit_id = record.payload.deposit_id();
    assert_eq!(issuer.deposit_confirmation(deposit_id).await.unwrap(), None);
    let confirmation = DepositConfirmation::sign(
        DepositConfirmationPayload {
            deposit_id,
            account_id: wallet.account_id,
            device_id: wallet.device_id,
            deposit_record_digest: codec::digest(&record).unwrap(),
            confirmed_at: NOW,
        },
        &wallet.key,
        &mut rng,
    )
    .unwrap();
    let mut request =
        wallet.certificate_request(Some(1_000), LockRules::default(), Vec::new(), &mut rng);
    request.payload.deposit_confirmations = vec![confirmation.clone()];
    let request = BalanceCertificateRequest::sign(request.payload, &wallet.key, &mut rng).unwrap();
    issuer
        .issue_balance_certificate(&request, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(
        issuer.deposit_confirmation(deposit_id).await.unwrap(),
        Some(confirmation)
    );

    // A confirmation that does not match the issued record is refused.
    let mut wrong = DepositConfirmation::sign(
        DepositConfirmationPayload {
            deposit_id,
            account_id: wallet.account_id,
            device_id: wallet.device_id,
            deposit_record_digest: ContentDigest::of(b"something else"),
            confirmed_at: NOW,
        },
        &wallet.key,
        &mut rng,
    )
    .unwrap();
    assert!(matches!(
        issuer.confirm_deposit(&wrong, NOW).await,
        Err(IssuerError::Invalid(Error::InvalidField {
            field: "deposit_record_digest",
            ..
        }))
    ));
    wrong.payload.deposit_record_digest = codec::digest(&record).unwrap();
    assert!(matches!(
        issuer.confirm_deposit(&wrong, NOW).await,
        Err(IssuerError::Invalid(Error::BadSignature))
    ));
}

#[tokio::test]
async fn a_deposit_retried_with_a_fresh_signature_is_credited_once() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(7);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    let request = wallet.deposit_request(2_500, &mut rng);
    let first = issuer.deposit(&request, NOW, &mut rng).await.unwrap();
    // The device lost the answer and signs the same deposit again (PSS signatures are
    // randomized, so the bytes differ).
    let resigned = DepositRequest::sign(request.payload.clone(), &wallet.key, &mut rng).unwrap();
    assert_ne!(resigned.signature, request.signature);
    let again = issuer.deposit(&resigned, NOW, &mut rng).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(issuer.balance(wallet.account_id, EUR).await.unwrap(), 2_500);
}

/// A withdrawal retried after the keyring changed under it (its keyset withdrawn from
/// issuing) still gets the coins it was charged for: the stored answer is looked up before
/// the keyring's checks, while a new withdrawal under that keyset is refused.
#[tokio::test]
async fn a_withdrawal_retried_after_its_keyset_left_the_keyring_gets_its_coins() {
    let mut rng = rng(71);
    let issuer = issuer(MemoryStore::new());
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 100, &mut rng).await;
    let old = keyset(&directory(&issuer));
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let (request, _) = wallet.blind_request(&old, &[10, 5], key, &mut rng);
    let first = issuer
        .withdraw_blind(&request, NOW, &mut rng)
        .await
        .unwrap();

    let mut keyring = fixture_keyring();
    let config = scrip_issuer::KeyringConfig {
        denominations: Vec::new(),
        key_lifetime: DAY * 365,
        keyset_issue_period: DAY * 200,
        keyset_redeem_grace: DAY * 30,
        rsa_bits: scrip_tokens::keys::DEFAULT_RSA_BITS,
    };
    keyring
        .add_keyset(EUR, &[1, 20], &config, NOW, &mut rng)
        .unwrap();
    keyring.keysets.retain(|set| set.keyset.id() != old.id());
    issuer.replace_keyring(keyring);

    rng.fill_bytes(&mut key);
    let (fresh, _) = wallet.blind_request(&old, &[10], key, &mut rng);
    assert!(issuer.withdraw_blind(&fresh, NOW, &mut rng).await.is_err());
    let again = issuer
        .withdraw_blind(&request, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(issuer.balance(wallet.account_id, EUR).await.unwrap(), 85);
}
