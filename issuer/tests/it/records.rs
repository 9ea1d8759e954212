//! Redemption of withdrawal records and coin payments: every refusal reason, equivocation,
//! the overspend policy, all-or-nothing coin payments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use rand::rngs::StdRng;
use scrip_issuer::api::FraudKind;
use scrip_issuer::IssuerError;
use scrip_stores::{LedgerAccount, MemoryStore, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

struct Scene {
    issuer: TestIssuer<MemoryStore>,
    wallet: RawWallet,
    shop: Shop,
    cert: BalanceCertificate,
    rng: StdRng,
}

/// A funded account (10 000) with a certificate of 3 000 (cap 2 000, 10 payments, grocery
/// in DE only) and a grocery shop in DE-BY.
async fn scene(seed: u64) -> Scene {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(seed);
    let mut wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 10_000, &mut rng).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let request = BalanceCertificateRequest::sign(
        BalanceCertificateRequestPayload {
            max_payments: Some(10),
            per_payment_cap: Some(2_000),
            ..wallet
                .certificate_request(
                    Some(3_000),
                    LockRules {
                        allowed_categories: Allowed::Only(vec![MerchantCategory::GROCERY]),
                        allowed_regions: Allowed::Only(vec![Region::new("DE").unwrap()]),
                        ..LockRules::default()
                    },
                    Vec::new(),
                    &mut rng,
                )
                .payload
        },
        &wallet.key,
        &mut rng,
    )
    .unwrap();
    let cert = issuer
        .issue_balance_certificate(&request, NOW, &mut rng)
        .await
        .unwrap();
    wallet.adopt(&cert);
    Scene {
        issuer,
        wallet,
        shop,
        cert,
        rng,
    }
}

fn code(outcome: &RedemptionOutcome) -> &str {
    match outcome {
        RedemptionOutcome::Invalid { reason } => reason.code.as_str(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

async fn upload(s: &mut Scene, shop: &Shop, record: &WithdrawalRecord) -> RedemptionOutcome {
    let receipt = shop.countersign(record, &mut s.rng);
    let mut outcomes = shop
        .redeem(
            &s.issuer,
            vec![RedemptionItem::Record(receipt)],
            NOW,
            &mut s.rng,
        )
        .await;
    outcomes.pop().unwrap()
}

#[tokio::test]
async fn records_breaking_an_offline_checkable_rule_are_invalid_and_not_paid() {
    let mut s = scene(1).await;
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    let cert = s.cert.clone();
    let restaurant =
        Shop::register_as(&s.issuer, 2, MerchantCategory::RESTAURANT, "DE", &mut s.rng).await;
    let abroad = Shop::register_as(&s.issuer, 3, MerchantCategory::GROCERY, "FR", &mut s.rng).await;

    let over_cap = s.wallet.sign_record(
        &cert,
        &shop.request(2_001, &mut s.rng),
        1,
        2_001,
        NOW,
        &mut s.rng,
    );
    assert_eq!(
        code(&upload(&mut s, &shop, &over_cap).await),
        "payment_cap_exceeded"
    );

    let over_available = s.wallet.sign_record(
        &cert,
        &shop.request(100, &mut s.rng),
        2,
        3_100,
        NOW,
        &mut s.rng,
    );
    assert_eq!(
        code(&upload(&mut s, &shop, &over_available).await),
        "available_exceeded"
    );

    let out_of_range = s.wallet.sign_record(
        &cert,
        &shop.request(100, &mut s.rng),
        11,
        100,
        NOW,
        &mut s.rng,
    );
    assert_eq!(
        code(&upload(&mut s, &shop, &out_of_range).await),
        "sequence_out_of_range"
    );

    let late = cert.payload.expires_at.saturating_add(HOUR);
    let after_expiry = s.wallet.sign_record(
        &cert,
        &shop.request(100, &mut s.rng),
        3,
        100,
        late,
        &mut s.rng,
    );
    assert_eq!(code(&upload(&mut s, &shop, &after_expiry).await), "expired");

    let wrong_category = s.wallet.sign_record(
        &cert,
        &restaurant.request(100, &mut s.rng),
        4,
        100,
        NOW,
        &mut s.rng,
    );
    assert_eq!(
        code(&upload(&mut s, &restaurant, &wrong_category).await),
        "category_not_allowed"
    );

    let wrong_region = s.wallet.sign_record(
        &cert,
        &abroad.request(100, &mut s.rng),
        5,
        100,
        NOW,
        &mut s.rng,
    );
    assert_eq!(
        code(&upload(&mut s, &abroad, &wrong_region).await),
        "region_not_allowed"
    );

    // A record paying another merchant, uploaded by this one.
    let theirs = s.wallet.sign_record(
        &cert,
        &restaurant.request(100, &mut s.rng),
        6,
        100,
        NOW,
        &mut s.rng,
    );
    assert_eq!(
        code(&upload(&mut s, &shop, &theirs).await),
        "wrong_merchant"
    );

    // A tampered record (amount raised after signing).
    let mut tampered = s.wallet.sign_record(
        &cert,
        &shop.request(100, &mut s.rng),
        7,
        100,
        NOW,
        &mut s.rng,
    );
    tampered.payload.cumulative = eur(150);
    assert_eq!(
        code(&upload(&mut s, &shop, &tampered).await),
        "bad_signature"
    );

    // A certificate the issuer never signed.
    let mut forged_cert = cert.clone();
    forged_cert.payload.serial = CertificateSerial::random(&mut s.rng);
    let unknown = s.wallet.sign_record(
        &forged_cert,
        &shop.request(100, &mut s.rng),
        8,
        100,
        NOW,
        &mut s.rng,
    );
    assert_eq!(
        code(&upload(&mut s, &shop, &unknown).await),
        "unknown_certificate"
    );

    // Nothing of the above was paid or claimed.
    assert_eq!(
        s.issuer
            .store()
            .balance(&LedgerAccount::Merchant(shop.id()), EUR)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.issuer
            .store()
            .balance(&LedgerAccount::Reservation(cert.payload.serial), EUR)
            .await
            .unwrap(),
        3_000
    );
    assert!(s.issuer.fraud_log(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn equivocation_is_honoured_kept_as_evidence_and_freezes_the_account() {
    let mut s = scene(2).await;
    let rival = Shop::register(&s.issuer, 2, &mut s.rng).await;
    let cert = s.cert.clone();
    let shop_request = s.shop.request(400, &mut s.rng);
    let rival_request = rival.request(700, &mut s.rng);
    let first = s
        .wallet
        .sign_record(&cert, &shop_request, 1, 400, NOW, &mut s.rng);
    let second = s
        .wallet
        .sign_record(&cert, &rival_request, 1, 700, NOW, &mut s.rng);
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    assert_eq!(
        upload(&mut s, &shop, &first).await,
        RedemptionOutcome::Accepted { credited: eur(400) }
    );
    assert_eq!(
        upload(&mut s, &rival, &second).await,
        RedemptionOutcome::Accepted { credited: eur(700) }
    );
    // A retry of the second upload is recognised.
    assert!(matches!(
        upload(&mut s, &rival, &second).await,
        RedemptionOutcome::AlreadyAccepted { .. }
    ));

    let account = s.wallet.account_id;
    assert!(s.issuer.frozen(account).await.unwrap().is_some());
    let log = s.issuer.fraud_log(None, 10).await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    match &log[0].1.kind {
        FraudKind::Equivocation {
            device_id,
            sequence,
            first: f,
            second: sec,
            ..
        } => {
            assert_eq!((*device_id, *sequence), (s.wallet.device_id, 1));
            assert_eq!(*f, Some(first.payload.record_id));
            assert_eq!(*sec, second.payload.record_id);
        }
        other => panic!("{other:?}"),
    }
    // Both records are kept.
    assert!(
        !s.issuer
            .record(first.payload.record_id)
            .await
            .unwrap()
            .unwrap()
            .equivocation
    );
    assert!(
        s.issuer
            .record(second.payload.record_id)
            .await
            .unwrap()
            .unwrap()
            .equivocation
    );
    assert_eq!(
        s.issuer
            .store()
            .balance(&LedgerAccount::Merchant(rival.id()), EUR)
            .await
            .unwrap(),
        700
    );
}

#[tokio::test]
async fn overspending_by_a_lying_device_is_paid_from_the_balance_logged_and_frozen() {
    let mut s = scene(3).await;
    let cert = s.cert.clone();
    let rival = Shop::register(&s.issuer, 2, &mut s.rng).await;
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    // Each record claims a cumulative of 2 000 (within the 3 000 available), but together
    // they spend 4 000.
    let a = s.wallet.sign_record(
        &cert,
        &shop.request(2_000, &mut s.rng),
        1,
        2_000,
        NOW,
        &mut s.rng,
    );
    let b = s.wallet.sign_record(
        &cert,
        &rival.request(2_000, &mut s.rng),
        2,
        2_000,
        NOW,
        &mut s.rng,
    );
    assert_eq!(
        upload(&mut s, &shop, &a).await,
        RedemptionOutcome::Accepted {
            credited: eur(2_000)
        }
    );
    assert_eq!(
        upload(&mut s, &rival, &b).await,
        RedemptionOutcome::Accepted {
            credited: eur(2_000)
        }
    );

    let account = s.wallet.account_id;
    // 3 000 from the reservation, 1 000 from the 7 000 left in the account.
    assert_eq!(s.issuer.balance(account, EUR).await.unwrap(), 6_000);
    assert_eq!(
        s.issuer
            .store()
            .balance(&LedgerAccount::Reservation(cert.payload.serial), EUR)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.issuer
            .record(b.payload.record_id)
            .await
            .unwrap()
            .unwrap()
            .paid_from_balance,
        1_000
    );
    assert!(s.issuer.frozen(account).await.unwrap().is_some());
    let log = s.issuer.fraud_log(None, 10).await.unwrap();
    assert!(
        log.iter().any(
            |(_, e)| matches!(&e.kind, FraudKind::Overspend { excess, .. } if *excess == eur(1_000))
        ),
        "{log:?}"
    );
    // Frozen: no more coins either.
    let request = s.wallet.identified_request(&[1], [3; 32], &mut s.rng);
    assert!(matches!(
        s.issuer
            .withdraw_identified(&request, NOW, &mut s.rng)
            .await,
        Err(IssuerError::AccountFrozen(_))
    ));
}

#[tokio::test]
async fn a_record_id_reused_for_another_record_is_honoured_logged_and_frozen() {
    // The merchant cannot see offline that a device reused a record id: like
    // equivocation, the second record is paid, kept, logged, and the account frozen.
    let mut s = scene(4).await;
    let cert = s.cert.clone();
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    let first = s.wallet.sign_record(
        &cert,
        &shop.request(100, &mut s.rng),
        1,
        100,
        NOW,
        &mut s.rng,
    );
    assert!(matches!(
        upload(&mut s, &shop, &first).await,
        RedemptionOutcome::Accepted { .. }
    ));
    let mut payload = first.payload.clone();
    payload.sequence = 2;
    payload.cumulative = eur(200);
    let reuse = WithdrawalRecord::sign(payload, &s.wallet.key, &mut s.rng).unwrap();
    assert_eq!(
        upload(&mut s, &shop, &reuse).await,
        RedemptionOutcome::Accepted { credited: eur(100) }
    );
    assert!(matches!(
        upload(&mut s, &shop, &reuse).await,
        RedemptionOutcome::AlreadyAccepted { .. }
    ));
    assert_eq!(
        s.issuer
            .store()
            .balance(&LedgerAccount::Merchant(shop.id()), EUR)
            .await
            .unwrap(),
        200
    );
    assert!(s
        .issuer
        .frozen(s.wallet.account_id)
        .await
        .unwrap()
        .is_some());
    let log = s.issuer.fraud_log(None, 10).await.unwrap();
    assert!(
        log.iter().any(|(_, e)| matches!(e.kind, FraudKind::RecordIdReuse { record_id, .. } if record_id == first.payload.record_id)),
        "{log:?}"
    );
}

#[tokio::test]
async fn coin_payments_are_checked_whole_and_redeemed_all_or_nothing() {
    let mut s = scene(5).await;
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    let rival = Shop::register(&s.issuer, 2, &mut s.rng).await;
    let coins = s
        .wallet
        .withdraw_blind(&s.issuer, &[5, 2, 1], &mut s.rng)
        .await;

    // The rival redeems one of the three first.
    let outcomes = rival
        .redeem(
            &s.issuer,
            vec![RedemptionItem::Coins(
                rival.endorse(vec![coins[1].clone()], &mut s.rng),
            )],
            NOW,
            &mut s.rng,
        )
        .await;
    assert!(matches!(outcomes[0], RedemptionOutcome::Accepted { .. }));
    // Then the shop presents all three: refused as a whole, none of the other two marked.
    let outcomes = shop
        .redeem(
            &s.issuer,
            vec![RedemptionItem::Coins(
                shop.endorse(coins.clone(), &mut s.rng),
            )],
            NOW,
            &mut s.rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::DoubleSpent {
            first_redeemed_at: NOW,
            coins: vec![coins[1].id()]
        }]
    );
    let held = s
        .issuer
        .store()
        .claims(&[
            scrip_stores::ClaimId::Coin(coins[0].spend_id().unwrap()),
            scrip_stores::ClaimId::Coin(coins[2].spend_id().unwrap()),
        ])
        .await
        .unwrap();
    assert!(held.iter().all(Option::is_none));
    // The two unspent coins are still good.
    let outcomes = shop
        .redeem(
            &s.issuer,
            vec![RedemptionItem::Coins(shop.endorse(
                vec![coins[0].clone(), coins[2].clone()],
                &mut s.rng,
            ))],
            NOW,
            &mut s.rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(6) }]
    );

    // Malformed payments are Invalid with precise codes.
    let more = s.wallet.withdraw_blind(&s.issuer, &[10], &mut s.rng).await;
    let mut short = shop.endorse(more.clone(), &mut s.rng);
    short.payload.payment.request = shop.request(11, &mut s.rng);
    let short = EndorsedCoinPayment::sign(short.payload, &shop.key, &mut s.rng).unwrap();
    let twice = {
        let payment = CoinPayment {
            request: shop.request(20, &mut s.rng),
            coins: vec![more[0].clone(), more[0].clone()],
        };
        EndorsedCoinPayment::sign(
            EndorsedCoinPaymentPayload {
                payment,
                merchant_id: shop.id(),
                endorsed_at: NOW,
            },
            &shop.key,
            &mut s.rng,
        )
        .unwrap()
    };
    let mut forged_coin = more[0].clone();
    if let Coin::Blind(c) = &mut forged_coin {
        c.amount = eur(5);
        c.key_id = s.issuer.keys().keysets[0]
            .keyset
            .key_for(5)
            .unwrap()
            .key_id();
    }
    let forged = shop.endorse(vec![forged_coin], &mut s.rng);
    let by_rival = rival.endorse(more.clone(), &mut s.rng);
    let outcomes = shop
        .redeem(
            &s.issuer,
            vec![
                RedemptionItem::Coins(short),
                RedemptionItem::Coins(twice),
                RedemptionItem::Coins(forged),
                RedemptionItem::Coins(by_rival),
            ],
            NOW,
            &mut s.rng,
        )
        .await;
    let codes: Vec<&str> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        vec![
            "amount_mismatch",
            "duplicate_coin",
            "bad_signature",
            "unknown_key"
        ]
    );
    assert!(s
        .issuer
        .store()
        .claims(&[scrip_stores::ClaimId::Coin(more[0].spend_id().unwrap())])
        .await
        .unwrap()[0]
        .is_none());
}

#[tokio::test]
async fn a_batch_not_signed_by_the_merchant_is_refused_whole() {
    let mut s = scene(6).await;
    let impostor = Shop::new(
        scrip_tokens::fixtures::merchant(4),
        s.shop.certificate.clone(),
    );
    let coins = s.wallet.withdraw_blind(&s.issuer, &[1], &mut s.rng).await;
    let batch = impostor.batch(
        vec![RedemptionItem::Coins(impostor.endorse(coins, &mut s.rng))],
        &mut s.rng,
    );
    assert!(matches!(
        s.issuer.redeem(&batch, NOW).await,
        Err(IssuerError::Invalid(Error::UnknownKey(_)))
    ));
}

#[tokio::test]
async fn a_record_backdated_into_the_certificates_validity_is_judged_by_the_merchants_clock() {
    let mut s = scene(7).await;
    let cert = s.cert.clone();
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    // The device claims it signed while the certificate was valid, but the merchant
    // accepted the payment (and signed that) a day after the certificate expired.
    let record = s.wallet.sign_record(
        &cert,
        &shop.request(100, &mut s.rng),
        1,
        100,
        NOW,
        &mut s.rng,
    );
    let late = cert.payload.expires_at.saturating_add(DAY);
    let receipt = CountersignedRecord::sign(
        CountersignedRecordPayload {
            record,
            accepted_at: late,
        },
        &shop.key,
        &mut s.rng,
    )
    .unwrap();
    let outcomes = shop
        .redeem(
            &s.issuer,
            vec![RedemptionItem::Record(receipt)],
            late,
            &mut s.rng,
        )
        .await;
    assert_eq!(code(&outcomes[0]), "expired");
}

#[tokio::test]
async fn a_batch_of_records_is_recorded_as_if_one_by_one() {
    // Fresh records of one batch share one store call; repeats within the batch,
    // equivocations and overspends must come out exactly as if uploaded one at a time:
    // the reservation is used in batch order and only the rest comes from the balance.
    let mut s = scene(6).await;
    let cert = s.cert.clone();
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    let record = |sequence, amount, cumulative, rng: &mut StdRng| {
        let request = shop.request(amount, rng);
        s.wallet
            .sign_record(&cert, &request, sequence, cumulative, NOW, rng)
    };
    let a = record(1, 1_000, 1_000, &mut s.rng);
    let b = record(2, 1_500, 2_500, &mut s.rng);
    // Same sequence as b, another record: equivocation.
    let e = record(2, 500, 2_000, &mut s.rng);
    // The device lies about its cumulative: the reservation (3 000) is used up by a, b
    // and e, so c is paid from the balance and overspends the certificate.
    let c = record(3, 1_000, 2_000, &mut s.rng);
    let items: Vec<RedemptionItem> = [&a, &b, &a, &e, &c]
        .into_iter()
        .map(|r| RedemptionItem::Record(shop.countersign(r, &mut s.rng)))
        .collect();
    let outcomes = shop.redeem(&s.issuer, items.clone(), NOW, &mut s.rng).await;
    assert_eq!(
        outcomes[0],
        RedemptionOutcome::Accepted {
            credited: eur(1_000)
        }
    );
    assert_eq!(
        outcomes[1],
        RedemptionOutcome::Accepted {
            credited: eur(1_500)
        }
    );
    assert!(
        matches!(outcomes[2], RedemptionOutcome::AlreadyAccepted { .. }),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(
        outcomes[3],
        RedemptionOutcome::Accepted { credited: eur(500) }
    );
    assert_eq!(
        outcomes[4],
        RedemptionOutcome::Accepted {
            credited: eur(1_000)
        }
    );

    let store = s.issuer.store();
    let account = s.wallet.account_id;
    let ledger =
        |account: LedgerAccount| async move { store.balance(&account, EUR).await.unwrap() };
    assert_eq!(ledger(LedgerAccount::Merchant(shop.id())).await, 4_000);
    assert_eq!(
        ledger(LedgerAccount::Reservation(cert.payload.serial)).await,
        0
    );
    assert_eq!(s.issuer.balance(account, EUR).await.unwrap(), 6_000);
    let paid_from_balance = |id: RecordId| {
        let issuer = &s.issuer;
        async move { issuer.record(id).await.unwrap().unwrap().paid_from_balance }
    };
    assert_eq!(paid_from_balance(a.payload.record_id).await, 0);
    assert_eq!(paid_from_balance(b.payload.record_id).await, 0);
    assert_eq!(paid_from_balance(e.payload.record_id).await, 0);
    assert_eq!(paid_from_balance(c.payload.record_id).await, 1_000);
    assert!(s.issuer.frozen(account).await.unwrap().is_some());
    let log = s.issuer.fraud_log(None, 10).await.unwrap();
    assert!(
        log.iter()
            .any(|(_, f)| matches!(f.kind, FraudKind::Equivocation { sequence: 2, .. })),
        "{log:?}"
    );
    assert!(
        log.iter().any(
            |(_, f)| matches!(&f.kind, FraudKind::Overspend { excess, .. } if *excess == eur(1_000))
        ),
        "{log:?}"
    );

    // The merchant retries the whole batch, then the customer hands in its copies:
    // nothing moves again.
    let again = shop.redeem(&s.issuer, items, NOW, &mut s.rng).await;
    assert!(
        again
            .iter()
            .all(|o| matches!(o, RedemptionOutcome::AlreadyAccepted { .. })),
        "{again:?}"
    );
    let request =
        s.wallet
            .certificate_request(None, LockRules::default(), vec![a, b, e, c], &mut s.rng);
    assert!(matches!(
        s.issuer
            .issue_balance_certificate(&request, NOW, &mut s.rng)
            .await,
        Err(IssuerError::AccountFrozen(_))
    ));
    assert_eq!(ledger(LedgerAccount::Merchant(shop.id())).await, 4_000);
    assert_eq!(s.issuer.balance(account, EUR).await.unwrap(), 6_000);
    let overspends = s
        .issuer
        .fraud_log(None, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, f)| matches!(f.kind, FraudKind::Overspend { .. }))
        .count();
    assert_eq!(overspends, 1, "the overspend is logged once");
}

/// Issue 17 (6): records handed in with a certificate request are answered one by one,
/// exactly as a sync answers them, so a device learns that its copy of a record was
/// refused (before, the refusal was only in the issuer's log) — on a retry too.
#[tokio::test]
async fn records_handed_in_with_a_certificate_request_are_answered_per_record() {
    let mut s = scene(8).await;
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    let cert = s.cert.clone();
    let honest = s.wallet.sign_record(
        &cert,
        &shop.request(500, &mut s.rng),
        1,
        500,
        NOW,
        &mut s.rng,
    );
    let over_cap = s.wallet.sign_record(
        &cert,
        &shop.request(2_001, &mut s.rng),
        2,
        2_501,
        NOW,
        &mut s.rng,
    );
    let request = s.wallet.certificate_request(
        Some(1_000),
        LockRules::default(),
        vec![honest.clone(), over_cap.clone()],
        &mut s.rng,
    );
    let (certificate, report) = s
        .issuer
        .issue_balance_certificate_answered(&request, NOW, &mut s.rng)
        .await
        .unwrap();
    assert_eq!(certificate.payload.account_id, s.wallet.account_id);
    assert_eq!(report.request_digest, codec::digest(&request).unwrap());
    assert_eq!(report.records.len(), 2);
    assert_eq!(
        report.records[0],
        RedemptionOutcome::Accepted {
            credited: Amount::new(500, Currency::EUR)
        }
    );
    assert_eq!(code(&report.records[1]), "payment_cap_exceeded");

    // The same request again (a lost answer): the same certificate, and each hand-in is
    // answered again (the honest one as already recorded, nothing paid twice).
    let (again, report) = s
        .issuer
        .issue_balance_certificate_answered(&request, NOW, &mut s.rng)
        .await
        .unwrap();
    assert_eq!(again, certificate);
    assert!(matches!(
        report.records[0],
        RedemptionOutcome::AlreadyAccepted { .. }
    ));
    assert_eq!(code(&report.records[1]), "payment_cap_exceeded");
    assert_eq!(
        s.issuer
            .store()
            .balance(&LedgerAccount::Merchant(shop.id()), Currency::EUR)
            .await
            .unwrap(),
        500
    );

    // What the server signs verifies for exactly this request, and not for a sync.
    let signed = s.issuer.sign_answer(report, NOW, &mut s.rng).unwrap();
    let directory = s.issuer.key_directory(NOW, &mut s.rng).unwrap().payload;
    assert!(signed
        .verify_for_certificate_request(&request, &directory, NOW)
        .is_ok());
    let sync = SyncRequest::sign(
        SyncRequestPayload {
            account_id: s.wallet.account_id,
            device_id: s.wallet.device_id,
            unsent_records: vec![honest, over_cap],
            deposit_confirmations: Vec::new(),
            created_at: NOW,
            nonce: [9; 16],
        },
        &s.wallet.key,
        &mut s.rng,
    )
    .unwrap();
    assert!(signed.verify_for(&sync, &directory, NOW).is_err());
}

/// Issue 17 (6): a wallet asks what became of a coin payment by its receipt: unsettled
/// until the merchant uploads it, settled after; a payment whose coin went elsewhere
/// first can never settle, and says which coin.
#[tokio::test]
async fn a_coin_payment_is_looked_up_by_its_receipt() {
    use scrip_issuer::api::CoinPaymentStatus;
    let mut s = scene(9).await;
    let shop = Shop::new(
        scrip_tokens::fixtures::merchant(1),
        s.shop.certificate.clone(),
    );
    let rival = Shop::register(&s.issuer, 2, &mut s.rng).await;
    let coins = s
        .wallet
        .withdraw_blind(&s.issuer, &[5, 2, 1], &mut s.rng)
        .await;

    let paid = shop.endorse(coins[..2].to_vec(), &mut s.rng);
    let state = s.issuer.coin_payment_state(&paid).await.unwrap();
    assert_eq!(state.state, CoinPaymentStatus::Unsettled);
    assert_eq!(
        state.request_id,
        paid.payload.payment.request.payload.request_id
    );
    shop.redeem(
        &s.issuer,
        vec![RedemptionItem::Coins(paid.clone())],
        NOW,
        &mut s.rng,
    )
    .await;
    assert_eq!(
        s.issuer.coin_payment_state(&paid).await.unwrap().state,
        CoinPaymentStatus::Settled { settled_at: NOW }
    );

    // The same coins endorsed for another payment (a double spend at the same shop): the
    // receipt of that one shows the coins taken, not "settled".
    let twice = shop.endorse(coins[1..].to_vec(), &mut s.rng);
    assert_eq!(
        s.issuer.coin_payment_state(&twice).await.unwrap().state,
        CoinPaymentStatus::DoubleSpent {
            first_redeemed_at: NOW,
            coins: vec![coins[1].id()]
        }
    );
    // Nor is a receipt settled by another merchant's redemption of the same payment.
    let elsewhere = rival.endorse(coins[..2].to_vec(), &mut s.rng);
    assert!(matches!(
        s.issuer.coin_payment_state(&elsewhere).await.unwrap().state,
        CoinPaymentStatus::DoubleSpent { .. }
    ));
}
