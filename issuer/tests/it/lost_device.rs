//! Fraud and recovery: the fraud log (double spends with the holder of identified coins,
//! equivocations, overspends), revocation of a lost device, and revoke-and-reissue of its
//! unspent identified coins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use scrip_issuer::api::{CoinHolder, FraudKind};
use scrip_issuer::coins_outstanding_account;
use scrip_issuer::IssuerError;
use scrip_stores::{LedgerAccount, MemoryStore, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

async fn outstanding(issuer: &TestIssuer<MemoryStore>) -> i128 {
    issuer
        .store()
        .balance(&coins_outstanding_account(), EUR)
        .await
        .unwrap()
}

/// Every ledger balance of `EUR` added up: zero, always (double-entry).
async fn ledger_sum(issuer: &TestIssuer<MemoryStore>) -> i128 {
    issuer
        .store()
        .balances(None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, c, _)| *c == EUR)
        .map(|(_, _, b)| b)
        .sum()
}

fn invalid_code(outcome: &RedemptionOutcome) -> &str {
    match outcome {
        RedemptionOutcome::Invalid { reason } => reason.code.as_str(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn the_fraud_log_names_double_spenders_equivocators_and_overspenders() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(1);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let rival = Shop::register(&issuer, 2, &mut rng).await;

    // Alice spends an identified coin (and a blind one) twice.
    let alice = RawWallet::open(&issuer, 1, &mut rng).await;
    alice.deposit(&issuer, 100, &mut rng).await;
    let alice_virtual_id = issuer.account(alice.account_id).await.unwrap().virtual_id;
    let identified = alice.withdraw_identified(&issuer, &[5, 2], &mut rng).await;
    let blind = alice.withdraw_blind(&issuer, &[1], &mut rng).await;
    let mut first = identified.clone();
    first.extend(blind.clone());
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(shop.endorse(first, &mut rng))],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(8) }]
    );
    let again = vec![identified[0].clone(), blind[0].clone()];
    let batch = rival.batch(
        vec![RedemptionItem::Coins(rival.endorse(again, &mut rng))],
        &mut rng,
    );
    let report = issuer.redeem(&batch, at(1)).await.unwrap();
    match &report.outcomes[..] {
        [RedemptionOutcome::DoubleSpent {
            first_redeemed_at,
            coins,
        }] => {
            assert_eq!(*first_redeemed_at, NOW);
            let mut coins = coins.clone();
            coins.sort_unstable();
            let mut expected = vec![identified[0].id(), blind[0].id()];
            expected.sort_unstable();
            assert_eq!(coins, expected);
        }
        other => panic!("{other:?}"),
    }
    // The rival retries its upload later: same answer, logged once.
    let retry = issuer.redeem(&batch, at(2)).await.unwrap();
    assert!(matches!(
        retry.outcomes[..],
        [RedemptionOutcome::DoubleSpent { .. }]
    ));

    // Bob's device signs two different records with one sequence number.
    let mut bob = RawWallet::open(&issuer, 2, &mut rng).await;
    bob.deposit(&issuer, 1_000, &mut rng).await;
    let cert = bob.certificate(&issuer, 500, NOW, &mut rng).await;
    let sequence = cert.payload.first_sequence;
    let r1 = bob.sign_record(
        &cert,
        &shop.request(100, &mut rng),
        sequence,
        100,
        NOW,
        &mut rng,
    );
    let r2 = bob.sign_record(
        &cert,
        &rival.request(50, &mut rng),
        sequence,
        50,
        NOW,
        &mut rng,
    );
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(shop.countersign(&r1, &mut rng))],
            at(3),
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(100) }]
    );
    let outcomes = rival
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(rival.countersign(&r2, &mut rng))],
            at(4),
            &mut rng,
        )
        .await;
    // The rival checked everything it could offline: it is paid (see the policy).
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(50) }]
    );
    let evidence = issuer.record(r2.payload.record_id).await.unwrap().unwrap();
    assert!(evidence.equivocation);
    assert_eq!(evidence.record, r2);
    assert!(
        !issuer
            .record(r1.payload.record_id)
            .await
            .unwrap()
            .unwrap()
            .equivocation
    );
    assert!(issuer.frozen(bob.account_id).await.unwrap().is_some());
    let request = bob.certificate_request(Some(10), LockRules::default(), Vec::new(), &mut rng);
    assert!(matches!(
        issuer.issue_balance_certificate(&request, at(5), &mut rng).await,
        Err(IssuerError::AccountFrozen(a)) if a == bob.account_id
    ));

    // Carol's device lies about its cumulative amount to spend more than certified.
    let mut carol = RawWallet::open(&issuer, 3, &mut rng).await;
    carol.deposit(&issuer, 1_000, &mut rng).await;
    let cert = carol.certificate(&issuer, 300, NOW, &mut rng).await;
    assert_eq!(issuer.balance(carol.account_id, EUR).await.unwrap(), 700);
    let honest = carol.pay(&cert, &shop.request(200, &mut rng), NOW, &mut rng);
    assert_eq!(honest.payload.cumulative, eur(200));
    // Should say 400; says 200, which each merchant can only check against `available`.
    let lying = carol.sign_record(
        &cert,
        &rival.request(200, &mut rng),
        carol.sequence,
        200,
        NOW,
        &mut rng,
    );
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(shop.countersign(&honest, &mut rng))],
            at(6),
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(200) }]
    );
    let outcomes = rival
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(rival.countersign(&lying, &mut rng))],
            at(7),
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(200) }]
    );
    // The excess came out of the balance, and the account is frozen.
    assert_eq!(issuer.balance(carol.account_id, EUR).await.unwrap(), 600);
    assert_eq!(
        issuer
            .record(lying.payload.record_id)
            .await
            .unwrap()
            .unwrap()
            .paid_from_balance,
        100
    );
    assert!(issuer.frozen(carol.account_id).await.unwrap().is_some());
    // Uploading the honest record again changes nothing and logs nothing.
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(shop.countersign(&honest, &mut rng))],
            at(8),
            &mut rng,
        )
        .await;
    assert!(matches!(
        outcomes[..],
        [RedemptionOutcome::AlreadyAccepted { .. }]
    ));

    // The log, oldest first.
    let log = issuer.fraud_log(None, 100).await.unwrap();
    assert_eq!(log.len(), 3, "{log:#?}");
    let entries: Vec<_> = log.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(entries[0].at, at(1));
    match &entries[0].kind {
        FraudKind::DoubleSpend {
            merchant,
            coins,
            first_redeemed_at,
            holders,
        } => {
            assert_eq!(*merchant, rival.id());
            assert_eq!(coins.len(), 2);
            assert_eq!(*first_redeemed_at, NOW);
            // The identified coin names its holder; the blind one names nobody.
            assert_eq!(
                holders,
                &vec![CoinHolder {
                    coin_id: identified[0].id(),
                    virtual_id: alice_virtual_id,
                    account_id: Some(alice.account_id),
                    revoked: false,
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(entries[1].at, at(4));
    assert_eq!(
        entries[1].kind,
        FraudKind::Equivocation {
            account_id: bob.account_id,
            device_id: bob.device_id,
            sequence,
            first: Some(r1.payload.record_id),
            second: r2.payload.record_id,
        }
    );
    assert_eq!(entries[2].at, at(7));
    assert_eq!(
        entries[2].kind,
        FraudKind::Overspend {
            account_id: carol.account_id,
            device_id: carol.device_id,
            certificate: cert.payload.serial,
            excess: eur(100),
        }
    );
    // Paging with the key of the last entry seen.
    let page = issuer.fraud_log(None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    let rest = issuer.fraud_log(Some(&page[0].0), 100).await.unwrap();
    assert_eq!(rest, log[1..].to_vec());
    // Alice, whose coins were presented twice, is not frozen (the bearer is unknown).
    assert!(issuer.frozen(alice.account_id).await.unwrap().is_none());
    assert_eq!(ledger_sum(&issuer).await, 0);
}

#[tokio::test]
async fn a_revoked_device_gets_nothing_new_and_only_its_earlier_records_count() {
    // No revocation grace, and the list published at the revocation: a record counts only
    // if paid before it (tests/it/revocation.rs covers the grace).
    let config = scrip_issuer::IssuerConfig {
        revocation_grace: Duration::ZERO,
        ..scrip_issuer::IssuerConfig::default()
    };
    let issuer = issuer_with(MemoryStore::new(), config);
    let mut rng = rng(2);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let mut phone = RawWallet::open(&issuer, 1, &mut rng).await;
    let mut watch = phone.add_device(&issuer, 2, &mut rng).await;
    phone.deposit(&issuer, 1_000, &mut rng).await;
    let cert = phone.certificate(&issuer, 400, NOW, &mut rng).await;
    let before = phone.pay(&cert, &shop.request(100, &mut rng), at(10), &mut rng);

    // The phone is lost; the account holder revokes it an hour in.
    let revoked_at = at(60);
    assert_eq!(
        issuer
            .revoke_device(phone.device_id, revoked_at)
            .await
            .unwrap(),
        revoked_at
    );
    assert_eq!(
        issuer.revoked(phone.device_id).await.unwrap().unwrap().at,
        revoked_at
    );
    issuer.publish_revocations(revoked_at).await.unwrap();
    // Idempotent: revoking again keeps the first time.
    assert_eq!(
        issuer.revoke_device(phone.device_id, at(90)).await.unwrap(),
        revoked_at
    );
    assert!(matches!(
        issuer
            .revoke_device(DeviceId::random(&mut rng), at(90))
            .await,
        Err(IssuerError::UnknownDevice(_))
    ));

    let just_before = phone.pay(
        &cert,
        &shop.request(50, &mut rng),
        revoked_at.saturating_sub(Duration::from_millis(1)),
        &mut rng,
    );
    let at_revocation = phone.pay(&cert, &shop.request(20, &mut rng), revoked_at, &mut rng);
    let after = phone.pay(&cert, &shop.request(30, &mut rng), at(120), &mut rng);

    // Nothing new for the phone.
    let t = at(120);
    let request = phone.certificate_request(Some(10), LockRules::default(), Vec::new(), &mut rng);
    let refused = issuer
        .issue_balance_certificate(&request, t, &mut rng)
        .await
        .unwrap_err();
    assert!(matches!(refused, IssuerError::DeviceRevoked(d) if d == phone.device_id));
    assert_eq!(refused.code(), "device_revoked");
    let request = phone.identified_request(&[5], [1; 32], &mut rng);
    assert!(matches!(
        issuer.withdraw_identified(&request, t, &mut rng).await,
        Err(IssuerError::DeviceRevoked(_))
    ));
    let keyset = issuer
        .keys()
        .directory(t)
        .unwrap()
        .current_keyset(EUR, t)
        .unwrap()
        .clone();
    let (request, _) = phone.blind_request(&keyset, &[5], [2; 32], &mut rng);
    assert!(matches!(
        issuer.withdraw_blind(&request, t, &mut rng).await,
        Err(IssuerError::DeviceRevoked(_))
    ));
    assert!(matches!(
        issuer
            .deposit(&phone.deposit_request(10, &mut rng), t, &mut rng)
            .await,
        Err(IssuerError::DeviceRevoked(_))
    ));

    // The merchant uploads everything it accepted offline.
    let items = [&before, &just_before, &at_revocation, &after]
        .into_iter()
        .map(|r| RedemptionItem::Record(shop.countersign(r, &mut rng)))
        .collect();
    let outcomes = shop.redeem(&issuer, items, at(180), &mut rng).await;
    assert_eq!(
        outcomes[0],
        RedemptionOutcome::Accepted { credited: eur(100) }
    );
    assert_eq!(
        outcomes[1],
        RedemptionOutcome::Accepted { credited: eur(50) }
    );
    assert_eq!(invalid_code(&outcomes[2]), "device_revoked");
    assert_eq!(invalid_code(&outcomes[3]), "device_revoked");
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(shop.id()), EUR)
            .await
            .unwrap(),
        150
    );
    assert!(issuer
        .record(after.payload.record_id)
        .await
        .unwrap()
        .is_none());
    // Refusing a lost device is not fraud by the account: nothing logged, not frozen.
    assert!(issuer.fraud_log(None, 10).await.unwrap().is_empty());
    assert!(issuer.frozen(phone.account_id).await.unwrap().is_none());

    // The account's other device carries on.
    assert!(issuer.revoked(watch.device_id).await.unwrap().is_none());
    let cert = watch.certificate(&issuer, 100, t, &mut rng).await;
    assert_eq!(cert.payload.device_id, watch.device_id);
    let paid = watch.pay(&cert, &shop.request(40, &mut rng), t, &mut rng);
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(shop.countersign(&paid, &mut rng))],
            at(180),
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(40) }]
    );
    assert_eq!(ledger_sum(&issuer).await, 0);
}

#[tokio::test]
async fn a_lost_devices_unspent_identified_coins_are_revoked_and_reissued() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(3);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let thief_shop = Shop::register(&issuer, 2, &mut rng).await;
    let phone = RawWallet::open(&issuer, 1, &mut rng).await;
    let watch = phone.add_device(&issuer, 2, &mut rng).await;
    let virtual_id = issuer.account(phone.account_id).await.unwrap().virtual_id;
    phone.deposit(&issuer, 100, &mut rng).await;
    let phone_coins = phone
        .withdraw_identified(&issuer, &[10, 5, 2, 1], &mut rng)
        .await;
    let watch_coins = watch.withdraw_identified(&issuer, &[5], &mut rng).await;
    // One coin was spent before the phone was lost.
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Coins(
                shop.endorse(vec![phone_coins[3].clone()], &mut rng),
            )],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(1) }]
    );
    assert_eq!(outstanding(&issuer).await, 22);
    assert_eq!(issuer.balance(phone.account_id, EUR).await.unwrap(), 77);

    // Not before the device is revoked.
    assert!(matches!(
        issuer
            .reissue_identified_coins(phone.device_id, watch.device_id, at(30), &mut rng)
            .await,
        Err(IssuerError::Unsupported(_))
    ));
    assert!(issuer
        .revoked_coin(phone_coins[0].id())
        .await
        .unwrap()
        .is_none());

    issuer.revoke_device(phone.device_id, at(60)).await.unwrap();
    let reissued_at = at(61);
    let reissued = issuer
        .reissue_identified_coins(phone.device_id, watch.device_id, reissued_at, &mut rng)
        .await
        .unwrap();

    // The three unspent coins come back with the same holder and values, fresh ids.
    let mut values: Vec<u64> = reissued
        .iter()
        .map(|c| c.payload.amount.minor_units)
        .collect();
    values.sort_unstable();
    assert_eq!(values, vec![2, 5, 10]);
    let old_ids: Vec<CoinId> = phone_coins
        .iter()
        .chain(&watch_coins)
        .map(Coin::id)
        .collect();
    let directory = issuer.keys().directory(reissued_at).unwrap();
    for coin in &reissued {
        assert_eq!(coin.payload.holder, virtual_id);
        assert_eq!(coin.payload.issued_at, reissued_at);
        assert!(!old_ids.contains(&coin.payload.coin_id));
        Coin::Identified(coin.clone())
            .verify(&directory, reissued_at)
            .unwrap();
    }
    let mut new_ids: Vec<CoinId> = reissued.iter().map(|c| c.payload.coin_id).collect();
    new_ids.sort_unstable();
    new_ids.dedup();
    assert_eq!(new_ids.len(), 3);
    for old in &phone_coins[..3] {
        let revoked = issuer.revoked_coin(old.id()).await.unwrap().unwrap();
        assert_eq!(revoked.at, reissued_at);
        let replacement = reissued
            .iter()
            .find(|c| c.payload.coin_id == revoked.replacement)
            .expect("replacement is one of the new coins");
        assert_eq!(replacement.payload.amount, old.amount());
    }
    // The spent coin and the other device's coin are left alone.
    assert!(issuer
        .revoked_coin(phone_coins[3].id())
        .await
        .unwrap()
        .is_none());
    assert!(issuer
        .revoked_coin(watch_coins[0].id())
        .await
        .unwrap()
        .is_none());
    // Money is conserved: the same value is outstanding, the account is not debited.
    assert_eq!(outstanding(&issuer).await, 22);
    assert_eq!(issuer.balance(phone.account_id, EUR).await.unwrap(), 77);

    // A second call (the operator retries) returns the same coins, issues nothing.
    let again = issuer
        .reissue_identified_coins(phone.device_id, watch.device_id, at(62), &mut rng)
        .await
        .unwrap();
    assert_eq!(again, reissued);

    // The thief spends a revoked coin: refused as already spent, with the holder logged.
    let stolen = shop_payment(&thief_shop, vec![phone_coins[0].clone()], &mut rng);
    let outcomes = thief_shop
        .redeem(&issuer, vec![stolen], at(90), &mut rng)
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::DoubleSpent {
            first_redeemed_at: reissued_at,
            coins: vec![phone_coins[0].id()],
        }]
    );
    // A payment mixing a revoked coin with a good one is refused as a whole...
    let mixed = shop_payment(
        &thief_shop,
        vec![phone_coins[1].clone(), watch_coins[0].clone()],
        &mut rng,
    );
    let outcomes = thief_shop
        .redeem(&issuer, vec![mixed], at(91), &mut rng)
        .await;
    assert!(matches!(
        &outcomes[..],
        [RedemptionOutcome::DoubleSpent { coins, .. }] if coins == &vec![phone_coins[1].id()]
    ));
    // ...so the good coin is still spendable.
    let outcomes = shop
        .redeem(
            &issuer,
            vec![shop_payment(&shop, watch_coins.clone(), &mut rng)],
            at(92),
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(5) }]
    );
    let log = issuer.fraud_log(None, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    for (_, entry) in &log {
        match &entry.kind {
            FraudKind::DoubleSpend {
                merchant, holders, ..
            } => {
                assert_eq!(*merchant, thief_shop.id());
                assert_eq!(holders.len(), 1);
                assert_eq!(holders[0].virtual_id, virtual_id);
                assert_eq!(holders[0].account_id, Some(phone.account_id));
            }
            other => panic!("{other:?}"),
        }
    }

    // The new coins are good money.
    let new_coins: Vec<Coin> = reissued.iter().cloned().map(Coin::Identified).collect();
    let outcomes = shop
        .redeem(
            &issuer,
            vec![shop_payment(&shop, new_coins, &mut rng)],
            at(120),
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(17) }]
    );
    assert_eq!(outstanding(&issuer).await, 0);
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(shop.id()), EUR)
            .await
            .unwrap(),
        1 + 5 + 17
    );
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(thief_shop.id()), EUR)
            .await
            .unwrap(),
        0
    );
    // Still the same answer once they are spent.
    let again = issuer
        .reissue_identified_coins(phone.device_id, watch.device_id, at(130), &mut rng)
        .await
        .unwrap();
    assert_eq!(again, reissued);

    // The watch, revoked later, has nothing left to reissue.
    assert!(matches!(
        issuer
            .reissue_identified_coins(watch.device_id, phone.device_id, at(140), &mut rng)
            .await,
        Err(IssuerError::Unsupported(_))
    ));
    // The coins the watch holds go to a tablet added before the watch is revoked.
    let tablet = watch.add_device(&issuer, 3, &mut rng).await;
    issuer
        .revoke_device(watch.device_id, at(140))
        .await
        .unwrap();
    let none = issuer
        .reissue_identified_coins(watch.device_id, tablet.device_id, at(141), &mut rng)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(ledger_sum(&issuer).await, 0);
}

fn shop_payment(shop: &Shop, coins: Vec<Coin>, rng: &mut rand::rngs::StdRng) -> RedemptionItem {
    RedemptionItem::Coins(shop.endorse(coins, rng))
}

#[tokio::test]
async fn reissue_covers_more_coins_than_one_store_page() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(4);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let phone = RawWallet::open(&issuer, 1, &mut rng).await;
    // Another account's device, whose coins must not be touched.
    let other = RawWallet::open(&issuer, 2, &mut rng).await;
    phone.deposit(&issuer, 300, &mut rng).await;
    other.deposit(&issuer, 10, &mut rng).await;
    let mut coins = phone
        .withdraw_identified(&issuer, &[1; 150], &mut rng)
        .await;
    coins.extend(
        phone
            .withdraw_identified(&issuer, &[1; 150], &mut rng)
            .await,
    );
    let others = other.withdraw_identified(&issuer, &[5, 5], &mut rng).await;
    let spent = coins.pop().unwrap();
    let outcomes = shop
        .redeem(
            &issuer,
            vec![shop_payment(&shop, vec![spent], &mut rng)],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(1) }]
    );
    assert_eq!(outstanding(&issuer).await, 309);

    let tablet = phone.add_device(&issuer, 3, &mut rng).await;
    issuer.revoke_device(phone.device_id, at(1)).await.unwrap();
    let reissued = issuer
        .reissue_identified_coins(phone.device_id, tablet.device_id, at(2), &mut rng)
        .await
        .unwrap();
    assert_eq!(reissued.len(), 299);
    for coin in &coins {
        assert!(issuer.revoked_coin(coin.id()).await.unwrap().is_some());
    }
    for coin in &others {
        assert!(issuer.revoked_coin(coin.id()).await.unwrap().is_none());
    }
    assert_eq!(outstanding(&issuer).await, 309);
    assert_eq!(ledger_sum(&issuer).await, 0);
}

#[tokio::test]
async fn a_thief_cannot_backdate_records_past_the_merchants_acceptance_time() {
    // Listed at the revocation, no grace (tests/it/revocation.rs covers the grace).
    let config = scrip_issuer::IssuerConfig {
        revocation_grace: Duration::ZERO,
        ..scrip_issuer::IssuerConfig::default()
    };
    let issuer = issuer_with(MemoryStore::new(), config);
    let mut rng = rng(9);
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let mut phone = RawWallet::open(&issuer, 1, &mut rng).await;
    phone.deposit(&issuer, 1_000, &mut rng).await;
    let cert = phone.certificate(&issuer, 500, NOW, &mut rng).await;
    issuer.revoke_device(phone.device_id, at(10)).await.unwrap();
    issuer.publish_revocations(at(10)).await.unwrap();
    // The thief sets the phone's clock back: the record claims minute 5, but the merchant
    // accepted (and signed that) at minute 20, after the revocation.
    let record = phone.sign_record(&cert, &shop.request(100, &mut rng), 1, 100, at(5), &mut rng);
    let receipt = CountersignedRecord::sign(
        CountersignedRecordPayload {
            record,
            accepted_at: at(20),
        },
        &shop.key,
        &mut rng,
    )
    .unwrap();
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(receipt)],
            at(30),
            &mut rng,
        )
        .await;
    assert_eq!(invalid_code(&outcomes[0]), "device_revoked");
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Merchant(shop.id()), EUR)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn the_operator_recovers_an_account_whose_every_device_is_lost() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(10);
    let phone = RawWallet::open(&issuer, 1, &mut rng).await;
    phone.deposit(&issuer, 700, &mut rng).await;
    issuer.revoke_device(phone.device_id, at(1)).await.unwrap();
    let new_key = scrip_tokens::fixtures::device(4);
    let certificate = issuer
        .recover_account(
            &registration(&new_key, Some(phone.account_id), &mut rng),
            NOW,
            &mut rng,
        )
        .await
        .unwrap();
    assert_eq!(certificate.payload.account_id, phone.account_id);
    assert_eq!(&certificate.payload.device_key, new_key.verifying_key());
    // The new device spends the account's balance.
    let replacement = RawWallet {
        key: new_key,
        account_id: phone.account_id,
        device_id: certificate.payload.device_id,
        certificate,
        sequence: 1,
        cumulative: Default::default(),
    };
    let coins = replacement
        .withdraw_identified(&issuer, &[5], &mut rng)
        .await;
    assert_eq!(coins.len(), 1);
    assert_eq!(issuer.balance(phone.account_id, EUR).await.unwrap(), 695);
    // An account that does not exist cannot be "recovered".
    let stranger = scrip_tokens::fixtures::device(5);
    assert!(matches!(
        issuer
            .recover_account(
                &registration(&stranger, Some(AccountId::random(&mut rng)), &mut rng),
                at(3),
                &mut rng
            )
            .await,
        Err(IssuerError::UnknownAccount(_))
    ));
}
