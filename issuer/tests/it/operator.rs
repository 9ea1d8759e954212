//! The operator's actions on accounts and merchants: freezing, listing frozen accounts,
//! unfreezing (with its history) and freezing again, revoking a merchant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use scrip_issuer::IssuerError;
use scrip_stores::{MemoryStore, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

/// Freezes `wallet`'s account the way fraud detection does: two records with one
/// sequence number (an equivocation).
async fn equivocate(
    issuer: &TestIssuer<MemoryStore>,
    wallet: &mut RawWallet,
    shop: &Shop,
    rng: &mut rand::rngs::StdRng,
) {
    let cert = wallet.certificate(issuer, 2_000, NOW, rng).await;
    let a = wallet.sign_record(&cert, &shop.request(100, rng), 1, 100, NOW, rng);
    let b = wallet.sign_record(&cert, &shop.request(200, rng), 1, 200, NOW, rng);
    let items = vec![
        RedemptionItem::Record(shop.countersign(&a, rng)),
        RedemptionItem::Record(shop.countersign(&b, rng)),
    ];
    shop.redeem(issuer, items, NOW, rng).await;
}

#[tokio::test]
async fn a_frozen_account_is_listed_unfrozen_with_a_reason_and_can_be_frozen_again() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(31);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let mut alice = RawWallet::open(&issuer, 1, &mut rng).await;
    alice.deposit(&issuer, 10_000, &mut rng).await;
    let bob = RawWallet::open(&issuer, 2, &mut rng).await;
    bob.deposit(&issuer, 1_000, &mut rng).await;

    assert!(issuer.frozen_accounts(None, 10).await.unwrap().is_empty());
    equivocate(&issuer, &mut alice, &shop, &mut rng).await;
    let bob_frozen = issuer
        .freeze_account(bob.account_id, "chargeback under review", at(1))
        .await
        .unwrap();
    assert_eq!(bob_frozen.reason, "chargeback under review");
    // Idempotent while frozen: the first reason stands.
    let again = issuer
        .freeze_account(bob.account_id, "another reason", at(2))
        .await
        .unwrap();
    assert_eq!(again, bob_frozen);

    let listed = issuer.frozen_accounts(None, 10).await.unwrap();
    let mut ids: Vec<AccountId> = listed.iter().map(|(a, _)| *a).collect();
    let mut expected = vec![alice.account_id, bob.account_id];
    expected.sort();
    assert_eq!(ids, expected, "in account id order");
    // Paging: one at a time, `after` the last seen.
    let first = issuer.frozen_accounts(None, 1).await.unwrap();
    let second = issuer.frozen_accounts(Some(first[0].0), 1).await.unwrap();
    assert_eq!(vec![first[0].0, second[0].0], expected);
    assert!(issuer
        .frozen_accounts(Some(second[0].0), 1)
        .await
        .unwrap()
        .is_empty());

    // Unfreeze Alice: the lifted freeze and the reason are kept.
    let lifted = issuer
        .unfreeze_account(alice.account_id, "customer explained the duplicate", at(3))
        .await
        .unwrap();
    assert_eq!(lifted.reason, "customer explained the duplicate");
    assert_eq!(lifted.generation, 0);
    assert!(lifted.frozen.reason.contains("sequence number"));
    assert!(issuer.frozen(alice.account_id).await.unwrap().is_none());
    ids = issuer
        .frozen_accounts(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(ids, vec![bob.account_id]);
    // She gets certificates again.
    alice.certificate(&issuer, 500, at(4), &mut rng).await;

    // Unfreezing again is refused: she is not frozen.
    assert!(matches!(
        issuer
            .unfreeze_account(alice.account_id, "again", at(5))
            .await,
        Err(IssuerError::AccountNotFrozen(a)) if a == alice.account_id
    ));

    // Frozen again (a second generation): the new reason is the one that stands.
    let refrozen = issuer
        .freeze_account(alice.account_id, "second incident", at(6))
        .await
        .unwrap();
    assert_eq!(refrozen.reason, "second incident");
    assert_eq!(refrozen.at, at(6));
    assert!(matches!(
        issuer
            .issue_balance_certificate(
                &alice.certificate_request(Some(500), LockRules::default(), Vec::new(), &mut rng),
                at(7),
                &mut rng,
            )
            .await,
        Err(IssuerError::AccountFrozen(_))
    ));
    let second = issuer
        .unfreeze_account(alice.account_id, "resolved again", at(8))
        .await
        .unwrap();
    assert_eq!(second.generation, 1);
    assert_eq!(second.frozen.reason, "second incident");
    let history = issuer.unfreezes(alice.account_id).await.unwrap();
    assert_eq!(history, vec![lifted, second]);
}

#[tokio::test]
async fn operator_account_actions_refuse_unknown_accounts_and_blank_reasons() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(32);
    let nobody = AccountId::random(&mut rng);
    assert!(matches!(
        issuer.freeze_account(nobody, "why", NOW).await,
        Err(IssuerError::UnknownAccount(a)) if a == nobody
    ));
    assert!(matches!(
        issuer.unfreeze_account(nobody, "why", NOW).await,
        Err(IssuerError::UnknownAccount(a)) if a == nobody
    ));
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    assert!(matches!(
        issuer.freeze_account(wallet.account_id, "  ", NOW).await,
        Err(IssuerError::Unsupported(_))
    ));
    assert!(matches!(
        issuer.unfreeze_account(wallet.account_id, "why", NOW).await,
        Err(IssuerError::AccountNotFrozen(_))
    ));
}

#[tokio::test]
async fn a_revoked_merchants_later_batches_are_refused_and_its_settled_ones_stay() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(33);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 100, &mut rng).await;
    let coins = wallet.withdraw_blind(&issuer, &[5, 2], &mut rng).await;
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(
                shop.endorse(vec![coins[0].clone()], &mut rng),
            )],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(5) }]
    );
    let settled = issuer
        .store()
        .balance(&scrip_stores::LedgerAccount::Merchant(shop.id()), EUR)
        .await
        .unwrap();

    let mark = issuer
        .revoke_merchant(shop.id(), "terminated contract", at(1))
        .await
        .unwrap();
    assert_eq!(mark.reason, "terminated contract");
    // Recorded once: a repeat answers the first revocation.
    assert_eq!(
        issuer
            .revoke_merchant(shop.id(), "again", at(2))
            .await
            .unwrap(),
        mark
    );
    let batch = shop.batch(
        vec![RedemptionItem::Coins(
            shop.endorse(vec![coins[1].clone()], &mut rng),
        )],
        &mut rng,
    );
    let refused = issuer.redeem(&batch, at(3)).await.unwrap_err();
    assert!(matches!(refused, IssuerError::MerchantRevoked(m) if m == shop.id()));
    assert_eq!(refused.code(), ReasonCode::MerchantRevoked);
    assert_eq!(refused.code().as_str(), "merchant_revoked");
    // What it redeemed before stays settled.
    assert_eq!(
        issuer
            .store()
            .balance(&scrip_stores::LedgerAccount::Merchant(shop.id()), EUR,)
            .await
            .unwrap(),
        settled
    );

    let unknown = MerchantId::random(&mut rng);
    assert!(matches!(
        issuer.revoke_merchant(unknown, "why", NOW).await,
        Err(IssuerError::UnknownMerchant(m)) if m == unknown
    ));
}
