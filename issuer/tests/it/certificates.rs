//! Balance certificates: lock rules, limits, restrictions, sequence ranges, the
//! reservation invariant under concurrency, release after the settlement window (late
//! records: `settlement.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::sync::Arc;

use common::*;
use scrip_issuer::{IssuerConfig, IssuerError};
use scrip_stores::{LedgerAccount, MemoryStore, RecordStore};
use scrip_tokens::fixtures::NOW;
use scrip_tokens::*;

async fn funded(
    balance: u64,
    seed: u64,
) -> (TestIssuer<MemoryStore>, RawWallet, rand::rngs::StdRng) {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(seed);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, balance, &mut rng).await;
    (issuer, wallet, rng)
}

async fn issue(
    issuer: &TestIssuer<MemoryStore>,
    wallet: &RawWallet,
    requested: Option<u64>,
    lock: LockRules,
    now: Timestamp,
    rng: &mut rand::rngs::StdRng,
) -> Result<BalanceCertificate, IssuerError> {
    let request = wallet.certificate_request(requested, lock, Vec::new(), rng);
    issuer.issue_balance_certificate(&request, now, rng).await
}

#[tokio::test]
async fn lock_rules_keep_the_largest_locked_amount() {
    let (issuer, wallet, mut rng) = funded(10_000, 1).await;
    let cases: Vec<(LockRules, u64)> = vec![
        (
            LockRules {
                min_balance: 2_000,
                ..LockRules::default()
            },
            2_000,
        ),
        (
            LockRules {
                locked_basis_points: 2_500,
                ..LockRules::default()
            },
            2_500,
        ),
        (
            LockRules {
                user_lock: Some(UserLock {
                    amount: 3_000,
                    unlocked_until: None,
                }),
                ..LockRules::default()
            },
            3_000,
        ),
        // All three: the largest wins.
        (
            LockRules {
                min_balance: 1_000,
                locked_basis_points: 4_000,
                user_lock: Some(UserLock {
                    amount: 3_000,
                    unlocked_until: None,
                }),
                ..LockRules::default()
            },
            4_000,
        ),
        // A user lock lifted until after now does not apply...
        (
            LockRules {
                user_lock: Some(UserLock {
                    amount: 3_000,
                    unlocked_until: Some(NOW.saturating_add(HOUR)),
                }),
                ..LockRules::default()
            },
            0,
        ),
        // ...and applies again once the unlock window is over.
        (
            LockRules {
                user_lock: Some(UserLock {
                    amount: 3_000,
                    unlocked_until: Some(NOW.saturating_sub(HOUR)),
                }),
                ..LockRules::default()
            },
            3_000,
        ),
    ];
    for (lock, expected_locked) in cases {
        // Each certificate takes its available amount out of the balance; release it by
        // asking against a fresh account each time.
        let fresh_issuer = issuer_with(MemoryStore::new(), IssuerConfig::default());
        let mut w = RawWallet::open(&fresh_issuer, 1, &mut rng).await;
        w.deposit(&fresh_issuer, 10_000, &mut rng).await;
        let cert = issue(&fresh_issuer, &w, None, lock.clone(), NOW, &mut rng)
            .await
            .unwrap();
        assert_eq!(cert.payload.locked, eur(expected_locked), "{lock:?}");
        assert_eq!(
            cert.payload.available,
            eur(10_000 - expected_locked),
            "{lock:?}"
        );
        assert_eq!(
            fresh_issuer.balance(w.account_id, EUR).await.unwrap(),
            i128::from(expected_locked),
            "the locked amount stays spendable online"
        );
        w.adopt(&cert);
    }
    // Everything locked: nothing to certify.
    let all = LockRules {
        min_balance: 10_000,
        ..LockRules::default()
    };
    assert!(matches!(
        issue(&issuer, &wallet, None, all, NOW, &mut rng).await,
        Err(IssuerError::NothingAvailable)
    ));
    let bad = LockRules {
        locked_basis_points: 10_001,
        ..LockRules::default()
    };
    assert!(matches!(
        issue(&issuer, &wallet, None, bad, NOW, &mut rng).await,
        Err(IssuerError::Invalid(Error::InvalidField {
            field: "locked_basis_points",
            ..
        }))
    ));
}

#[tokio::test]
async fn limits_and_restrictions_are_written_into_the_certificate() {
    let config = IssuerConfig {
        max_certificate_amount: 5_000,
        max_per_payment_cap: 1_500,
        max_payments_per_certificate: 7,
        ..IssuerConfig::default()
    };
    let issuer = issuer_with(MemoryStore::new(), config.clone());
    let mut rng = rng(2);
    let wallet = RawWallet::open(&issuer, 1, &mut rng).await;
    wallet.deposit(&issuer, 100_000, &mut rng).await;
    let lock = LockRules {
        allowed_categories: Allowed::Only(vec![MerchantCategory::TRANSIT]),
        allowed_regions: Allowed::Only(vec![Region::new("DE").unwrap()]),
        ..LockRules::default()
    };
    let cert = issue(&issuer, &wallet, None, lock, NOW, &mut rng)
        .await
        .unwrap();
    let p = &cert.payload;
    assert_eq!(p.available, eur(5_000), "capped by the issuer's maximum");
    assert_eq!(p.per_payment_cap, eur(1_500));
    assert_eq!(p.max_payments, 7);
    assert_eq!(p.issued_at, NOW);
    assert_eq!(
        p.expires_at,
        NOW.saturating_add(config.balance_certificate_lifetime)
    );
    assert_eq!(
        p.allowed_categories,
        Allowed::Only(vec![MerchantCategory::TRANSIT])
    );
    assert_eq!(
        p.allowed_regions,
        Allowed::Only(vec![Region::new("DE").unwrap()])
    );
    let directory = issuer.keys().directory(NOW).unwrap();
    cert.verify(&directory, &wallet.certificate.payload, NOW)
        .unwrap();

    // The device may ask for less than the maxima.
    let request = BalanceCertificateRequest::sign(
        BalanceCertificateRequestPayload {
            requested_amount: Some(800),
            max_payments: Some(2),
            per_payment_cap: Some(300),
            ..wallet
                .certificate_request(None, LockRules::default(), Vec::new(), &mut rng)
                .payload
        },
        &wallet.key,
        &mut rng,
    )
    .unwrap();
    let small = issuer
        .issue_balance_certificate(&request, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(
        (
            small.payload.available,
            small.payload.per_payment_cap,
            small.payload.max_payments
        ),
        (eur(800), eur(300), 2)
    );
    // Sequence ranges of one device never overlap.
    assert_eq!(p.first_sequence, 1);
    assert_eq!(small.payload.first_sequence, 1 + 7);
}

#[tokio::test]
async fn a_retried_request_returns_the_same_certificate_and_reserves_once() {
    let (issuer, wallet, mut rng) = funded(10_000, 3).await;
    let request =
        wallet.certificate_request(Some(4_000), LockRules::default(), Vec::new(), &mut rng);
    let first = issuer
        .issue_balance_certificate(&request, NOW, &mut rng)
        .await
        .unwrap();
    let again = issuer
        .issue_balance_certificate(&request, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(issuer.balance(wallet.account_id, EUR).await.unwrap(), 6_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_devices_never_reserve_more_than_the_balance() {
    let issuer = Arc::new(issuer(MemoryStore::new()));
    let mut rng = rng(4);
    let first = RawWallet::open(&issuer, 1, &mut rng).await;
    first.deposit(&issuer, 10_000, &mut rng).await;
    let mut devices = vec![];
    for n in 2..=8 {
        devices.push(first.add_device(&issuer, n, &mut rng).await);
    }
    devices.push(first);
    // Every device asks for 3 000 at once, twice.
    let mut tasks = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        for round in 0..2u64 {
            let request =
                device.certificate_request(Some(3_000), LockRules::default(), Vec::new(), &mut rng);
            let issuer = Arc::clone(&issuer);
            let seed = i as u64 * 10 + round;
            tasks.push(tokio::spawn(async move {
                let mut rng = common::rng(seed);
                issuer
                    .issue_balance_certificate(&request, NOW, &mut rng)
                    .await
            }));
        }
    }
    let mut reserved = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(cert) => reserved += cert.payload.available.minor_units,
            Err(IssuerError::NothingAvailable) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let account = devices[0].account_id;
    let left = issuer.balance(account, EUR).await.unwrap();
    assert!(left >= 0, "balance went negative: {left}");
    assert_eq!(
        i128::from(reserved) + left,
        10_000,
        "reserved {reserved}, left {left}"
    );
    // Three full certificates and one for the remaining 1 000.
    assert_eq!(reserved, 10_000);
    let reservations: i128 = issuer
        .store()
        .balances(None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|(a, _, _)| matches!(a, LedgerAccount::Reservation(_)))
        .map(|(_, _, b)| b)
        .sum();
    assert_eq!(reservations, 10_000);
}

#[tokio::test]
async fn the_reservation_is_released_after_the_upload_grace_minus_what_records_consumed() {
    let (issuer, mut wallet, mut rng) = funded(10_000, 5).await;
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let cert = wallet.certificate(&issuer, 3_000, NOW, &mut rng).await;
    let paid = wallet.pay(&cert, &shop.request(1_200, &mut rng), NOW, &mut rng);
    let late = wallet.pay(&cert, &shop.request(300, &mut rng), NOW, &mut rng);
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(shop.countersign(&paid, &mut rng))],
            NOW,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted {
            credited: eur(1_200)
        }]
    );

    // Nothing is released before expiry, nor within the upload grace after it.
    let deadline = issuer.settlement_deadline(&cert.payload);
    assert_eq!(
        deadline,
        cert.payload
            .expires_at
            .saturating_add(issuer.config().upload_grace)
    );
    for not_yet in [
        cert.payload.expires_at.saturating_sub(HOUR),
        cert.payload.expires_at.saturating_add(HOUR),
        deadline.saturating_sub(MINUTE),
    ] {
        assert!(issuer
            .release_expired(not_yet, 100)
            .await
            .unwrap()
            .is_empty());
    }
    let after = deadline.saturating_add(HOUR);
    let released = issuer.release_expired(after, 100).await.unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].amount, eur(1_800));
    assert!(
        issuer.release_expired(after, 100).await.unwrap().is_empty(),
        "released once"
    );
    assert_eq!(
        issuer.balance(wallet.account_id, EUR).await.unwrap(),
        7_000 + 1_800
    );
    let serial = cert.payload.serial;
    assert_eq!(
        issuer
            .store()
            .balance(&LedgerAccount::Reservation(serial), EUR)
            .await
            .unwrap(),
        0
    );

    // A record the merchant uploads only after the release (past the settlement window)
    // is still honoured while the balance covers it (it was made within the certificate's
    // limits): paid from the balance, not fraud.
    let outcomes = shop
        .redeem(
            &issuer,
            vec![RedemptionItem::Record(shop.countersign(&late, &mut rng))],
            after,
            &mut rng,
        )
        .await;
    assert_eq!(
        outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(300) }]
    );
    assert_eq!(
        issuer.balance(wallet.account_id, EUR).await.unwrap(),
        8_800 - 300
    );
    assert!(issuer.frozen(wallet.account_id).await.unwrap().is_none());
    assert!(issuer.fraud_log(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn frozen_accounts_and_unknown_currencies_get_no_certificate() {
    let (issuer, mut wallet, mut rng) = funded(10_000, 6).await;
    let request = BalanceCertificateRequest::sign(
        BalanceCertificateRequestPayload {
            currency: Currency::USD,
            ..wallet
                .certificate_request(None, LockRules::default(), Vec::new(), &mut rng)
                .payload
        },
        &wallet.key,
        &mut rng,
    )
    .unwrap();
    assert!(matches!(
        issuer
            .issue_balance_certificate(&request, NOW, &mut rng)
            .await,
        Err(IssuerError::Unsupported(_))
    ));

    // Equivocate to get frozen: two records with one sequence number.
    let shop = Shop::register(&issuer, 1, &mut rng).await;
    let cert = wallet.certificate(&issuer, 2_000, NOW, &mut rng).await;
    let a = wallet.sign_record(&cert, &shop.request(100, &mut rng), 1, 100, NOW, &mut rng);
    let b = wallet.sign_record(&cert, &shop.request(200, &mut rng), 1, 200, NOW, &mut rng);
    let items = vec![
        RedemptionItem::Record(shop.countersign(&a, &mut rng)),
        RedemptionItem::Record(shop.countersign(&b, &mut rng)),
    ];
    shop.redeem(&issuer, items, NOW, &mut rng).await;
    assert!(issuer.frozen(wallet.account_id).await.unwrap().is_some());
    assert!(matches!(
        issue(&issuer, &wallet, None, LockRules::default(), NOW, &mut rng).await,
        Err(IssuerError::AccountFrozen(_))
    ));
}

#[tokio::test]
async fn a_signature_by_another_device_is_refused() {
    let (issuer, wallet, mut rng) = funded(10_000, 7).await;
    let impostor = scrip_tokens::fixtures::device(5);
    let request = wallet.certificate_request(None, LockRules::default(), Vec::new(), &mut rng);
    let forged = BalanceCertificateRequest::sign(request.payload, &impostor, &mut rng).unwrap();
    assert!(matches!(
        issuer
            .issue_balance_certificate(&forged, NOW, &mut rng)
            .await,
        Err(IssuerError::Invalid(Error::UnknownKey(_)))
    ));
    assert_eq!(
        issuer.balance(wallet.account_id, EUR).await.unwrap(),
        10_000
    );
}
