//! Requirement 7 of the wallet and merchant issue: the offline payment itself, in process
//! against the issuer core.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use common::*;
use scrip_merchant::Merchant;
use scrip_stores::{LedgerAccount, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, PayWith};

#[tokio::test]
async fn a_full_offline_payment_by_record() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut phone = Phone::open(&issuer, 1, 10_000, 1).await;
    phone
        .certificate(
            &issuer,
            CertificateOptions {
                requested_amount: Some(eur(3_000)),
                ..CertificateOptions::any(EUR)
            },
            NOW,
        )
        .await;
    assert_eq!(phone.wallet.offline_spendable(EUR, NOW), eur(3_000));

    // Offline: both sides, no issuer involved.
    let reply = pay(&mut phone, &merchant, 1_250, PayWith::Record, at(5)).await;
    assert!(is_receipt(&reply));
    assert_eq!(phone.wallet.offline_spendable(EUR, at(5)), eur(1_750));
    assert_eq!(phone.wallet.receipts().len(), 1);
    assert_eq!(phone.wallet.outbox().len(), 1);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(1_250));

    // The merchant reconnects.
    let summary = merchant
        .sync(&client(&issuer, at(60)), at(60), &mut rng(2))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 1);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert!(merchant.pending(10).await.unwrap().is_empty());
    let merchant_id = merchant.certificate().payload.merchant_id;
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(merchant_id), EUR)
            .await
            .unwrap(),
        1_250
    );

    // The customer's copy arrives with its next sync: recorded once.
    let sync = phone.wallet.sync_request(at(70), &mut phone.rng).unwrap();
    let report = issuer.sync(&sync, at(70)).await.unwrap();
    assert!(matches!(
        report.records[0],
        RedemptionOutcome::AlreadyAccepted { .. }
    ));
    let report = issuer.sign_answer(report, at(70), &mut rng(71)).unwrap();
    phone.wallet.on_sync_report(&sync, &report, at(70)).unwrap();
    assert!(phone.wallet.outbox().is_empty());
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(merchant_id), EUR)
            .await
            .unwrap(),
        1_250
    );
}

#[tokio::test]
async fn the_customer_copy_may_arrive_before_the_merchants() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut phone = Phone::open(&issuer, 1, 10_000, 3).await;
    phone
        .certificate(
            &issuer,
            CertificateOptions {
                requested_amount: Some(eur(3_000)),
                ..CertificateOptions::any(EUR)
            },
            NOW,
        )
        .await;
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 700, PayWith::Record, at(1)).await
    ));

    // The customer asks for a new certificate first: its outbox goes along and the merchant
    // is credited from it.
    phone
        .certificate(
            &issuer,
            CertificateOptions {
                requested_amount: Some(eur(100)),
                ..CertificateOptions::any(EUR)
            },
            at(10),
        )
        .await;
    assert!(phone.wallet.outbox().is_empty());
    let merchant_id = merchant.certificate().payload.merchant_id;
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(merchant_id), EUR)
            .await
            .unwrap(),
        700
    );

    // The merchant's upload afterwards is already accepted, and leaves its queue.
    let summary = merchant
        .sync(&client(&issuer, at(20)), at(20), &mut rng(4))
        .await
        .unwrap();
    assert_eq!((summary.accepted, summary.already_accepted), (0, 1));
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(merchant_id), EUR)
            .await
            .unwrap(),
        700
    );
}

#[tokio::test]
async fn a_full_offline_payment_by_coins_with_exact_change() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut phone = Phone::open(&issuer, 1, 100, 5).await;
    phone.withdraw_blind(&issuer, &[10, 10, 5, 2, 1]).await;
    phone.withdraw_identified(&issuer, &[5]).await;
    assert_eq!(phone.wallet.coin_total(EUR), eur(33));

    // 17 = 10 + 5 + 2: three coins.
    let reply = pay(&mut phone, &merchant, 17, PayWith::Coins, at(1)).await;
    let MerchantReply::Receipt(PaymentReceipt::Coins(endorsed)) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(endorsed.payload.payment.coins.len(), 3);
    assert_eq!(phone.wallet.coin_total(EUR), eur(16));

    // No exact change for 4 with {10, 5, 1}: said clearly, nothing leaves the wallet.
    let offer = merchant.offer(eur(4), at(2), &mut rng(6)).await.unwrap();
    match phone.wallet.pay_by_coins(&offer, at(2)) {
        Err(scrip_wallet::WalletError::ExactChangeImpossible {
            requested,
            closest_below,
            closest_above,
        }) => {
            assert_eq!(
                (requested, closest_below, closest_above),
                (eur(4), eur(1), Some(eur(5)))
            );
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(phone.wallet.coin_total(EUR), eur(16));

    let summary = merchant
        .sync(&client(&issuer, at(30)), at(30), &mut rng(7))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 1);
    let merchant_id = merchant.certificate().payload.merchant_id;
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(merchant_id), EUR)
            .await
            .unwrap(),
        17
    );
}

#[tokio::test]
async fn the_same_coins_offered_to_two_merchants_offline_are_caught_at_redemption() {
    let issuer = issuer();
    let first = shop(&issuer, 1, 100_000).await;
    let second = shop(&issuer, 2, 100_000).await;
    let mut phone = Phone::open(&issuer, 1, 100, 8).await;
    phone.withdraw_blind(&issuer, &[10]).await;
    // A cheating wallet keeps a copy of its coins and restores them after paying.
    let backup = phone
        .wallet
        .backup_blind_coins(&phone.storage_key, &mut rng(9))
        .unwrap();
    assert!(is_receipt(
        &pay(&mut phone, &first, 10, PayWith::Coins, at(1)).await
    ));
    let restored = phone
        .wallet
        .restore_blind_coins(&backup, &phone.storage_key, at(2))
        .unwrap();
    assert_eq!(restored, 1);
    // The second merchant, offline, cannot know: it accepts.
    assert!(is_receipt(
        &pay(&mut phone, &second, 10, PayWith::Coins, at(3)).await
    ));

    let one = first
        .sync(&client(&issuer, at(10)), at(10), &mut rng(10))
        .await
        .unwrap();
    let two = second
        .sync(&client(&issuer, at(11)), at(11), &mut rng(11))
        .await
        .unwrap();
    assert_eq!((one.accepted, two.double_spent), (1, 1));
    let settled = second.settlements(10).await.unwrap();
    assert!(matches!(
        settled[0].outcome,
        RedemptionOutcome::DoubleSpent { .. }
    ));
    assert_eq!(issuer.fraud_log(None, 10).await.unwrap().len(), 1);
}

/// A customer (its generator seeded by `seed`) pays `merchant` EUR 10.00 by record at
/// `at(1)` and EUR 0.07 in coins at `at(2)`: two payments queued.
async fn queue_a_record_and_coins<S: RecordStore>(
    issuer: &Arc<TestIssuer>,
    merchant: &Merchant<S>,
    seed: u64,
) {
    let mut phone = Phone::open(issuer, 1, 10_000, seed).await;
    phone
        .certificate(
            issuer,
            CertificateOptions {
                requested_amount: Some(eur(5_000)),
                ..CertificateOptions::any(EUR)
            },
            NOW,
        )
        .await;
    phone.withdraw_blind(issuer, &[5, 2]).await;
    assert!(is_receipt(
        &pay(&mut phone, merchant, 1_000, PayWith::Record, at(1)).await
    ));
    assert!(is_receipt(
        &pay(&mut phone, merchant, 7, PayWith::Coins, at(2)).await
    ));
}

#[tokio::test]
async fn syncing_the_same_batch_twice_counts_nothing_twice() {
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    queue_a_record_and_coins(&issuer, &merchant, 12).await;

    // The upload reaches the issuer but the answer is lost (timeout, crash).
    let batch = merchant
        .build_batch(at(10), &mut rng(13))
        .await
        .unwrap()
        .unwrap();
    let lost = issuer.redeem(&batch, at(10)).await.unwrap();
    assert!(lost
        .outcomes
        .iter()
        .all(|o| matches!(o, RedemptionOutcome::Accepted { .. })));
    assert_eq!(merchant.pending(10).await.unwrap().len(), 2);

    // The next sync uploads the same items again: already accepted, nothing twice.
    let summary = merchant
        .sync(&client(&issuer, at(20)), at(20), &mut rng(14))
        .await
        .unwrap();
    assert_eq!((summary.accepted, summary.already_accepted), (0, 2));
    // And applying the first (lost) answer late changes nothing either.
    let lost = issuer.sign_answer(lost, at(10), &mut rng(15)).unwrap();
    let again = merchant.apply_report(&batch, &lost, at(21)).await.unwrap();
    assert_eq!(again, scrip_merchant::SyncSummary::default());
    let merchant_id = merchant.certificate().payload.merchant_id;
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(merchant_id), EUR)
            .await
            .unwrap(),
        1_007
    );
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
    assert_eq!(merchant.settlements(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn two_syncs_applying_one_answer_at_once_count_each_payment_once() {
    // A terminal that syncs from two tasks (a timer and a button) can apply the same
    // answer twice at once: both read a payment still queued, one settles it. The
    // summaries the operator sees must add up to what was settled. On redb, whose commits
    // wait for the writer thread, the two calls interleave.
    let issuer = issuer();
    let dir = tempfile::tempdir().unwrap();
    let store = scrip_stores::RedbStore::open(dir.path().join("shop.redb")).unwrap();
    let merchant = shop_over(&issuer, 1, 100_000, store).await;
    queue_a_record_and_coins(&issuer, &merchant, 41).await;
    let batch = merchant
        .build_batch(at(10), &mut rng(42))
        .await
        .unwrap()
        .unwrap();
    let report = issuer.redeem(&batch, at(10)).await.unwrap();
    let report = issuer.sign_answer(report, at(10), &mut rng(43)).unwrap();

    let (first, second) = tokio::join!(
        merchant.apply_report(&batch, &report, at(11)),
        merchant.apply_report(&batch, &report, at(11)),
    );
    let mut total = first.unwrap();
    total.add(&second.unwrap());
    assert_eq!(total.accepted, 2);
    assert_eq!(merchant.settlements(10).await.unwrap().len(), 2);
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
}

#[tokio::test]
async fn only_the_issuers_signed_answer_to_this_batch_settles_payments() {
    // Anyone on the path between terminal and issuer could answer "accepted" for the
    // queued payments; the terminal must keep them queued unless the issuer's answer key
    // signed an answer to the very batch it sent.
    let issuer = issuer();
    let merchant = shop(&issuer, 1, 100_000).await;
    let mut phone = Phone::open(&issuer, 1, 10_000, 31).await;
    phone
        .certificate(
            &issuer,
            CertificateOptions {
                requested_amount: Some(eur(5_000)),
                ..CertificateOptions::any(EUR)
            },
            NOW,
        )
        .await;
    assert!(is_receipt(
        &pay(&mut phone, &merchant, 1_000, PayWith::Record, at(1)).await
    ));
    merchant
        .refresh_directory(issuer.key_directory(at(2), &mut rng(32)).unwrap(), at(2))
        .await
        .unwrap();
    let batch = merchant
        .build_batch(at(3), &mut rng(33))
        .await
        .unwrap()
        .unwrap();
    let answer = issuer.redeem(&batch, at(3)).await.unwrap();

    let impostor =
        SigningKey::<keys::AnswerSigner>::from_pem(fixtures::unrelated_key_pem()).unwrap();
    let forged = RedemptionReport::sign(answer.clone(), &impostor, &mut rng(34)).unwrap();
    let mut tampered = issuer
        .sign_answer(answer.clone(), at(3), &mut rng(35))
        .unwrap();
    tampered.payload.outcomes[0] = RedemptionOutcome::AlreadyAccepted {
        first_accepted_at: at(0),
    };
    let mut elsewhere = answer.clone();
    elsewhere.batch_digest = ContentDigest::of(b"another batch");
    let elsewhere = issuer.sign_answer(elsewhere, at(3), &mut rng(36)).unwrap();
    for bad in [&forged, &tampered, &elsewhere] {
        assert!(matches!(
            merchant.apply_report(&batch, bad, at(4)).await,
            Err(scrip_merchant::MerchantError::UnverifiedAnswer(_))
        ));
        assert_eq!(
            merchant.pending(10).await.unwrap().len(),
            1,
            "settled on a bad answer"
        );
        assert_eq!(merchant.unsettled().await.unwrap(), eur(1_000));
    }

    let genuine = issuer.sign_answer(answer, at(3), &mut rng(37)).unwrap();
    let summary = merchant
        .apply_report(&batch, &genuine, at(4))
        .await
        .unwrap();
    assert_eq!(summary.accepted, 1);
    assert!(merchant.pending(10).await.unwrap().is_empty());
    assert_eq!(merchant.unsettled().await.unwrap(), eur(0));
}
