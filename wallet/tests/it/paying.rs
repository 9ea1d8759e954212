//! Paying offline: the certificate's rules checked before a record is signed (one test per
//! rule), exact change with coins, offers checked, receipts, rejections, coins taken back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::keys::MerchantCertifier;
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, PaymentStatus, WalletError};

/// The reasons of a `NoUsableCertificate`, and checks that nothing was used up.
fn refused(phone: &mut Phone, offer: &MerchantOffer, now: Timestamp) -> Vec<ReasonCode> {
    let sequence = phone.wallet.next_sequence();
    let spent: Vec<Amount> = phone.wallet.certificates().map(|(_, s)| s).collect();
    let reasons = match phone.wallet.pay_by_record(offer, now, &mut phone.rng) {
        Err(WalletError::NoUsableCertificate { reasons }) => reasons,
        Err(other) => panic!("expected NoUsableCertificate, got {other:?}"),
        Ok(_) => panic!("expected NoUsableCertificate, got an answer"),
    };
    // A refused payment uses no sequence number, spends nothing, and is not "paid".
    assert_eq!(phone.wallet.next_sequence(), sequence);
    assert_eq!(
        phone
            .wallet
            .certificates()
            .map(|(_, s)| s)
            .collect::<Vec<_>>(),
        spent
    );
    phone.wallet.check_offer(offer, now).unwrap();
    reasons
}

/// The codes, as their wire strings say (the strings are what a vendor's UI keys on).
fn reasons(codes: &[&str]) -> Vec<ReasonCode> {
    codes.iter().map(|c| ReasonCode::parse(c)).collect()
}

fn with_lock(lock: LockRules) -> CertificateOptions {
    CertificateOptions {
        requested_amount: Some(eur(500)),
        lock,
        ..CertificateOptions::any(EUR)
    }
}

#[tokio::test]
async fn a_payment_by_record_follows_the_certificate_and_the_receipt_is_kept() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let cert = phone.certificate(&issuer, up_to(300), NOW).await;
    let (account, device) = phone.ids();
    let directory = directory(&issuer);

    let offer = shop.offer(120, at(1));
    assert_eq!(
        phone.wallet.check_offer(&offer, at(1)).unwrap(),
        &offer.request.payload
    );
    let answer = phone.pay_record(&offer, at(1));
    let PaymentAnswer::ByRecord {
        record,
        account_certificate,
        balance_certificate,
    } = &answer
    else {
        panic!("expected a record")
    };
    // Everything a merchant checks offline holds.
    let account_payload = account_certificate.verify(&directory, at(1)).unwrap();
    let payload = record.verify(account_payload).unwrap();
    let cert_payload = balance_certificate
        .verify(&directory, account_payload, at(1))
        .unwrap();
    cert_payload.authorize(payload).unwrap();
    assert_eq!(balance_certificate, &cert);
    assert_eq!(payload.account_id, account);
    assert_eq!(payload.device_id, device);
    assert_eq!(payload.sequence, cert.payload.first_sequence);
    assert_eq!(payload.cumulative, eur(120));
    assert_eq!(payload.signed_at, at(1));
    assert_eq!(payload.payment_request, offer.request);
    assert_eq!(
        phone.wallet.next_sequence(),
        cert.payload.first_sequence + 1
    );
    assert_eq!(phone.wallet.offline_spendable(EUR, at(1)), eur(180));

    // Not in the outbox until the merchant's receipt.
    assert!(phone.wallet.outbox().is_empty());
    let reply = shop.receipt(&answer, at(2));
    let status = phone.wallet.on_merchant_reply(&reply, at(2)).unwrap();
    let MerchantReply::Receipt(receipt) = &reply else {
        panic!()
    };
    assert_eq!(status, PaymentStatus::Completed(Box::new(receipt.clone())));
    assert_eq!(phone.wallet.receipts(), std::slice::from_ref(receipt));
    assert_eq!(phone.wallet.outbox(), std::slice::from_ref(record));
    // A receipt is taken once.
    assert_eq!(
        phone.wallet.on_merchant_reply(&reply, at(2)).err(),
        Some(WalletError::ReceiptForUnknownPayment(
            offer.request.payload.request_id
        ))
    );

    // The second payment counts both in its cumulative amount.
    let answer = phone.pay_record(&shop.offer(30, at(3)), at(3));
    assert_eq!(record_of(&answer).payload.cumulative, eur(150));
    assert_eq!(
        record_of(&answer).payload.sequence,
        cert.payload.first_sequence + 1
    );
    let spent: Vec<_> = phone.wallet.certificates().map(|(_, s)| s).collect();
    assert_eq!(spent, vec![eur(150)]);
}

#[tokio::test]
async fn an_expired_certificate_is_not_used() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let cert = phone.certificate(&issuer, up_to(300), NOW).await;
    let after = cert.payload.expires_at.saturating_add(MINUTE);
    let offer = shop.offer(10, after);
    assert_eq!(refused(&mut phone, &offer, after), reasons(&["expired"]));
    // The same payment the minute before expiry is fine.
    let before = cert.payload.expires_at.saturating_sub(MINUTE);
    let offer = shop.offer(10, before);
    let answer = phone.pay_record(&offer, before);
    assert_eq!(record_of(&answer).payload.signed_at, before);
}

#[tokio::test]
async fn a_payment_above_the_per_payment_cap_is_refused() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let options = CertificateOptions {
        per_payment_cap: Some(eur(50)),
        ..up_to(300)
    };
    let cert = phone.certificate(&issuer, options, NOW).await;
    assert_eq!(cert.payload.per_payment_cap, eur(50));
    let offer = shop.offer(51, at(1));
    assert_eq!(
        refused(&mut phone, &offer, at(1)),
        reasons(&["payment_cap_exceeded"])
    );
    // Exactly the cap is allowed.
    phone.pay_record(&shop.offer(50, at(1)), at(1));
}

#[tokio::test]
async fn a_payment_above_what_remains_is_refused() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone.certificate(&issuer, up_to(100), NOW).await;
    phone.pay_record(&shop.offer(80, at(1)), at(1));
    assert_eq!(phone.wallet.offline_spendable(EUR, at(1)), eur(20));
    let offer = shop.offer(21, at(2));
    assert_eq!(
        refused(&mut phone, &offer, at(2)),
        reasons(&["available_exceeded"])
    );
    // What remains exactly is allowed.
    let answer = phone.pay_record(&shop.offer(20, at(3)), at(3));
    assert_eq!(record_of(&answer).payload.cumulative, eur(100));
}

#[tokio::test]
async fn a_payment_past_the_payment_count_is_refused() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let options = CertificateOptions {
        max_payments: Some(2),
        ..up_to(300)
    };
    let cert = phone.certificate(&issuer, options, NOW).await;
    assert_eq!(cert.payload.max_payments, 2);
    phone.pay_record(&shop.offer(10, at(1)), at(1));
    phone.pay_record(&shop.offer(10, at(2)), at(2));
    let offer = shop.offer(10, at(3));
    assert_eq!(
        refused(&mut phone, &offer, at(3)),
        reasons(&["sequence_out_of_range"])
    );
}

#[tokio::test]
async fn a_merchant_category_the_certificate_does_not_allow_is_refused() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut grocery = Shop::grocery(&issuer, 1).await;
    let mut restaurant = Shop::seeded(&issuer, 2, MerchantCategory::RESTAURANT, "DE-BY").await;
    phone
        .certificate(
            &issuer,
            with_lock(LockRules {
                allowed_categories: Allowed::Only(vec![
                    MerchantCategory::GROCERY,
                    MerchantCategory::TRANSIT,
                ]),
                ..LockRules::default()
            }),
            NOW,
        )
        .await;
    let offer = restaurant.offer(10, at(1));
    assert_eq!(
        refused(&mut phone, &offer, at(1)),
        reasons(&["category_not_allowed"])
    );
    phone.pay_record(&grocery.offer(10, at(1)), at(1));
}

#[tokio::test]
async fn a_region_the_certificate_does_not_allow_is_refused() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut bavaria = Shop::grocery(&issuer, 1).await;
    let mut berlin = Shop::seeded(&issuer, 2, MerchantCategory::GROCERY, "DE-BE").await;
    let mut austria = Shop::seeded(&issuer, 3, MerchantCategory::GROCERY, "AT").await;
    phone
        .certificate(
            &issuer,
            with_lock(LockRules {
                allowed_regions: Allowed::Only(vec![Region::new("DE-BY").unwrap()]),
                ..LockRules::default()
            }),
            NOW,
        )
        .await;
    let offer = austria.offer(10, at(1));
    assert_eq!(
        refused(&mut phone, &offer, at(1)),
        reasons(&["region_not_allowed"])
    );
    let offer = berlin.offer(10, at(1));
    assert_eq!(
        refused(&mut phone, &offer, at(1)),
        reasons(&["region_not_allowed"])
    );
    phone.pay_record(&bavaria.offer(10, at(1)), at(1));
}

#[tokio::test]
async fn a_country_wide_region_allows_its_subdivisions() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut bavaria = Shop::grocery(&issuer, 1).await;
    let mut austria = Shop::seeded(&issuer, 2, MerchantCategory::GROCERY, "AT").await;
    phone
        .certificate(
            &issuer,
            with_lock(LockRules {
                allowed_regions: Allowed::Only(vec![Region::new("DE").unwrap()]),
                ..LockRules::default()
            }),
            NOW,
        )
        .await;
    phone.pay_record(&bavaria.offer(10, at(1)), at(1));
    let offer = austria.offer(10, at(1));
    assert_eq!(
        refused(&mut phone, &offer, at(1)),
        reasons(&["region_not_allowed"])
    );
}

#[tokio::test]
async fn without_a_certificate_nothing_is_paid_by_record() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let offer = shop.offer(10, at(1));
    assert_eq!(refused(&mut phone, &offer, at(1)), Vec::<ReasonCode>::new());
}

#[tokio::test]
async fn every_certificate_gives_its_reason_newest_first() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut restaurant = Shop::seeded(&issuer, 2, MerchantCategory::RESTAURANT, "DE-BY").await;
    let older = phone
        .certificate(
            &issuer,
            with_lock(LockRules {
                allowed_categories: Allowed::Only(vec![MerchantCategory::GROCERY]),
                ..LockRules::default()
            }),
            NOW,
        )
        .await;
    let newer = phone
        .certificate(
            &issuer,
            CertificateOptions {
                per_payment_cap: Some(eur(20)),
                ..up_to(300)
            },
            at(1),
        )
        .await;
    // The newer certificate's cap is too low; the older one does not allow the category
    // (and is past its range anyway: the counter moved on to the newer one's).
    assert!(!older.payload.covers_sequence(phone.wallet.next_sequence()));
    let offer = restaurant.offer(50, at(2));
    assert_eq!(
        refused(&mut phone, &offer, at(2)),
        reasons(&["payment_cap_exceeded", "sequence_out_of_range"])
    );
    // Within the newer certificate's cap the newer one pays.
    let answer = phone.pay_record(&restaurant.offer(20, at(3)), at(3));
    assert_eq!(
        record_of(&answer).payload.certificate_serial,
        newer.payload.serial
    );
}

/// Once a newer certificate moved the counter past an older certificate's sequence
/// range, the older one can never pay again; `offline_spendable` should not count it.
///
#[tokio::test]
async fn offline_spendable_counts_only_certificates_that_can_still_pay() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone
        .certificate(
            &issuer,
            CertificateOptions {
                max_payments: Some(1),
                ..up_to(300)
            },
            NOW,
        )
        .await;
    phone.pay_record(&shop.offer(10, at(1)), at(1));
    // The only certificate's one payment is used: nothing more can be paid by record.
    let offer = shop.offer(10, at(2));
    assert_eq!(
        refused(&mut phone, &offer, at(2)),
        reasons(&["sequence_out_of_range"])
    );
    // Fails today: reports 290.
    assert_eq!(phone.wallet.offline_spendable(EUR, at(2)), eur(0));
}

#[tokio::test]
async fn coins_pay_exact_change_with_the_fewest_coins_and_are_redeemable() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 100, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone.withdraw_blind(&issuer, &[10, 5, 2, 2, 1]).await;
    phone.withdraw_identified(&issuer, &[5]).await;
    let directory = directory(&issuer);

    let offer = shop.offer(9, at(1));
    let answer = phone.pay_coins(&offer, at(1));
    let PaymentAnswer::ByCoins(payment) = &answer else {
        panic!()
    };
    // 5 + 2 + 2 (or 5 + ...): three coins, exactly 9.
    assert_eq!(payment.coins.len(), 3);
    assert_eq!(payment.total().unwrap(), eur(9));
    payment
        .verify(&shop.certificate.payload, &directory, at(1))
        .unwrap();
    assert_eq!(payment.request, offer.request);
    // The coins left the wallet.
    assert_eq!(phone.wallet.coin_total(EUR), eur(16));
    for coin in &payment.coins {
        assert!(!phone.wallet.coins().contains(coin));
    }

    let reply = shop.receipt(&answer, at(2));
    let status = phone.wallet.on_merchant_reply(&reply, at(2)).unwrap();
    assert!(matches!(status, PaymentStatus::Completed(_)));
    assert_eq!(phone.wallet.receipts().len(), 1);
    assert!(phone.wallet.outbox().is_empty());
    assert_eq!(phone.wallet.coin_total(EUR), eur(16));

    // The merchant redeems the endorsed payment: the issuer accepts the coins.
    let MerchantReply::Receipt(PaymentReceipt::Coins(endorsed)) = reply else {
        panic!()
    };
    let batch = RedemptionBatch::sign(
        RedemptionBatchPayload {
            merchant_id: shop.certificate.payload.merchant_id,
            items: vec![RedemptionItem::Coins(endorsed)],
            created_at: at(3),
            nonce: [7; 16],
        },
        &shop.key,
        &mut shop.rng,
    )
    .unwrap();
    let report = issuer.redeem(&batch, at(3)).await.unwrap();
    assert_eq!(
        report.outcomes,
        vec![RedemptionOutcome::Accepted { credited: eur(9) }]
    );

    // 16 = 10 + 5 + 1: all remaining coins.
    let answer = phone.pay_coins(&shop.offer(16, at(4)), at(4));
    assert_eq!(coins_of(&answer).len(), 3);
    assert!(phone.wallet.coins().is_empty());
}

#[tokio::test]
async fn impossible_exact_change_says_what_the_coins_can_make() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 100, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone.withdraw_blind(&issuer, &[5, 5, 10]).await;

    let offer = shop.offer(7, at(1));
    assert_eq!(
        phone.wallet.pay_by_coins(&offer, at(1)).err(),
        Some(WalletError::ExactChangeImpossible {
            requested: eur(7),
            closest_below: eur(5),
            closest_above: Some(eur(10)),
        })
    );
    let offer = shop.offer(21, at(1));
    assert_eq!(
        phone.wallet.pay_by_coins(&offer, at(1)).err(),
        Some(WalletError::ExactChangeImpossible {
            requested: eur(21),
            closest_below: eur(20),
            closest_above: None,
        })
    );
    let message = phone
        .wallet
        .pay_by_coins(&offer, at(1))
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("cannot pay exactly"), "{message}");
    // Nothing left the wallet, and the offer can still be paid another way.
    assert_eq!(phone.coin_values(), vec![5, 5, 10]);
    phone.wallet.check_offer(&offer, at(1)).unwrap();
    // Without coins at all.
    let mut empty = Phone::open(&issuer, 2, 100, 2).await;
    assert_eq!(
        empty.wallet.pay_by_coins(&offer, at(1)).err(),
        Some(WalletError::ExactChangeImpossible {
            requested: eur(21),
            closest_below: eur(0),
            closest_above: None,
        })
    );
}

#[tokio::test]
async fn offers_are_checked_against_the_directory_and_the_request_signature() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    phone.certificate(&issuer, up_to(300), NOW).await;
    phone.withdraw_blind(&issuer, &[10]).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let other = Shop::grocery(&issuer, 2).await;

    // A merchant certificate signed by a key the directory does not list.
    let offer = shop.offer(10, at(1));
    let rogue_key =
        SigningKey::<MerchantCertifier>::from_pem(fixtures::unrelated_key_pem()).unwrap();
    let rogue = MerchantCertificate::sign(
        offer.merchant_certificate.payload.clone(),
        &rogue_key,
        &mut phone.rng,
    )
    .unwrap();
    let forged = MerchantOffer {
        request: offer.request.clone(),
        merchant_certificate: rogue,
    };
    assert_eq!(
        phone.wallet.check_offer(&forged, at(1)).err(),
        Some(WalletError::Invalid(Error::UnknownKey(rogue_key.key_id())))
    );
    assert!(phone
        .wallet
        .pay_by_record(&forged, at(1), &mut phone.rng)
        .is_err());
    assert!(phone.wallet.pay_by_coins(&forged, at(1)).is_err());

    // A merchant certificate no longer valid.
    let expired_at = shop
        .certificate
        .payload
        .validity
        .not_after
        .saturating_add(MINUTE);
    let late = shop.offer(10, expired_at);
    assert!(matches!(
        phone.wallet.check_offer(&late, expired_at),
        Err(WalletError::Invalid(_))
    ));

    // A request altered after signing.
    let mut altered = shop.offer(10, at(1));
    altered.request.payload.amount = eur(1);
    assert_eq!(
        phone.wallet.check_offer(&altered, at(1)).err(),
        Some(WalletError::Invalid(Error::BadSignature))
    );
    assert!(phone
        .wallet
        .pay_by_record(&altered, at(1), &mut phone.rng)
        .is_err());
    assert!(phone.wallet.pay_by_coins(&altered, at(1)).is_err());

    // One merchant's request shown with another merchant's certificate (refused as
    // `WrongMerchant` or, by the signature, `UnknownKey`).
    let mut theirs = shop.offer(10, at(1));
    theirs.merchant_certificate = other.certificate.clone();
    assert!(matches!(
        phone.wallet.check_offer(&theirs, at(1)),
        Err(WalletError::Invalid(
            Error::WrongMerchant | Error::UnknownKey(_)
        ))
    ));
    // A request naming the other merchant but signed with this merchant's key.
    let mut impersonated = theirs.request.payload.clone();
    impersonated.merchant_id = other.certificate.payload.merchant_id;
    let impersonation = MerchantOffer {
        request: PaymentRequest::sign(impersonated, &shop.key, &mut phone.rng).unwrap(),
        merchant_certificate: other.certificate.clone(),
    };
    assert_eq!(
        phone.wallet.check_offer(&impersonation, at(1)).err(),
        Some(WalletError::Invalid(Error::UnknownKey(shop.key.key_id())))
    );
    // A request naming another category than the certificate.
    let cert = &shop.certificate.payload;
    let request = PaymentRequest::sign(
        PaymentRequestPayload {
            request_id: RequestId::random(&mut phone.rng),
            merchant_id: cert.merchant_id,
            amount: eur(10),
            created_at: at(1),
            category: MerchantCategory::RESTAURANT,
            region: cert.region.clone(),
        },
        &shop.key,
        &mut phone.rng,
    )
    .unwrap();
    let recategorised = MerchantOffer {
        request,
        merchant_certificate: shop.certificate.clone(),
    };
    assert!(matches!(
        phone.wallet.check_offer(&recategorised, at(1)),
        Err(WalletError::Invalid(Error::InvalidField {
            field: "category",
            ..
        }))
    ));
    // A request for nothing.
    let zero = shop.offer(0, at(1));
    assert!(matches!(
        phone.wallet.check_offer(&zero, at(1)),
        Err(WalletError::ZeroRequest)
    ));

    // Nothing was paid by any of those.
    assert_eq!(phone.wallet.next_sequence(), 1);
    assert_eq!(phone.coin_values(), vec![10]);
}

#[tokio::test]
async fn a_request_is_paid_once() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    phone.certificate(&issuer, up_to(300), NOW).await;
    phone.withdraw_blind(&issuer, &[10, 10]).await;
    let mut shop = Shop::grocery(&issuer, 1).await;

    let offer = shop.offer(10, at(1));
    let id = offer.request.payload.request_id;
    phone.pay_record(&offer, at(1));
    assert_eq!(
        phone.wallet.check_offer(&offer, at(1)).err(),
        Some(WalletError::AlreadyPaid(id))
    );
    assert_eq!(
        phone
            .wallet
            .pay_by_record(&offer, at(1), &mut phone.rng)
            .err(),
        Some(WalletError::AlreadyPaid(id))
    );
    assert_eq!(
        phone.wallet.pay_by_coins(&offer, at(1)).err(),
        Some(WalletError::AlreadyPaid(id))
    );
    // As bytes too.
    let bytes = codec::encode(&offer).unwrap();
    assert_eq!(
        phone
            .wallet
            .pay_bytes(&bytes, scrip_wallet::PayWith::Coins, at(1), &mut phone.rng)
            .err(),
        Some(WalletError::AlreadyPaid(id))
    );

    let offer = shop.offer(10, at(2));
    let id = offer.request.payload.request_id;
    phone.pay_coins(&offer, at(2));
    assert_eq!(
        phone
            .wallet
            .pay_by_record(&offer, at(2), &mut phone.rng)
            .err(),
        Some(WalletError::AlreadyPaid(id))
    );
    assert_eq!(phone.coin_values(), vec![10]);
    // The paid request is remembered across a restart.
    phone.crash_and_restart();
    assert_eq!(
        phone.wallet.check_offer(&offer, at(2)).err(),
        Some(WalletError::AlreadyPaid(id))
    );
}

#[tokio::test]
async fn a_signed_rejection_gives_the_coins_back() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 100, 1).await;
    phone.withdraw_blind(&issuer, &[10, 5, 2]).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let mut other = Shop::grocery(&issuer, 2).await;

    let offer = shop.offer(7, at(1));
    let answer = phone.pay_coins(&offer, at(1));
    assert_eq!(phone.coin_values(), vec![10]);

    // A rejection signed by someone else, or for another answer, gives nothing back.
    let forged = MerchantReply::Rejection(rejection(
        &other.key,
        &answer,
        "coin_already_seen",
        at(2),
        &mut other.rng,
    ));
    assert!(matches!(
        phone.wallet.on_merchant_reply(&forged, at(2)),
        Err(WalletError::Invalid(_))
    ));
    let mut elsewhere = rejection(
        &shop.key,
        &answer,
        "coin_already_seen",
        at(2),
        &mut shop.rng,
    );
    elsewhere.payload.answer_digest = ContentDigest::of(b"another answer");
    let elsewhere = MerchantReply::Rejection(
        PaymentRejection::sign(elsewhere.payload, &shop.key, &mut shop.rng).unwrap(),
    );
    assert_eq!(
        phone.wallet.on_merchant_reply(&elsewhere, at(2)).err(),
        Some(WalletError::RejectionOfUnknownPayment(
            offer.request.payload.request_id
        ))
    );
    assert_eq!(phone.coin_values(), vec![10]);
    // An endorsement by another merchant is no receipt either.
    let fake_receipt = other.receipt(&answer, at(2));
    assert!(phone
        .wallet
        .on_merchant_reply(&fake_receipt, at(2))
        .is_err());

    let reply = shop.reject(&answer, "exposure_limit", at(2));
    let status = phone.wallet.on_merchant_reply(&reply, at(2)).unwrap();
    let PaymentStatus::Rejected(reason) = status else {
        panic!("expected a rejection")
    };
    assert_eq!(reason.code, "exposure_limit");
    assert_eq!(phone.coin_values(), vec![2, 5, 10]);
    assert!(phone.wallet.receipts().is_empty());
    // Taken once.
    assert!(phone.wallet.on_merchant_reply(&reply, at(2)).is_err());
    assert_eq!(phone.coin_values(), vec![2, 5, 10]);
    // The refused request may be paid again, with the same coins.
    let again = phone.pay_coins(&offer, at(3));
    let ids = |a: &PaymentAnswer| {
        let mut ids: Vec<CoinId> = coins_of(a).iter().map(Coin::id).collect();
        ids.sort_unstable();
        ids
    };
    assert_eq!(ids(&again), ids(&answer));
}

#[tokio::test]
async fn a_rejected_record_keeps_its_sequence_number_and_amount_used() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let cert = phone.certificate(&issuer, up_to(100), NOW).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let first = cert.payload.first_sequence;

    let offer = shop.offer(30, at(1));
    let answer = phone.pay_record(&offer, at(1));
    let reply = shop.reject(&answer, "offline_limit", at(2));
    let status = phone.wallet.on_merchant_reply(&reply, at(2)).unwrap();
    assert!(matches!(status, PaymentStatus::Rejected(r) if r.code == "offline_limit"));
    assert!(phone.wallet.outbox().is_empty());
    assert!(phone.wallet.receipts().is_empty());
    // The merchant may still upload what it refused: the wallet never reuses either.
    assert_eq!(phone.wallet.next_sequence(), first + 1);
    assert_eq!(phone.wallet.offline_spendable(EUR, at(2)), eur(70));

    // Paying the same request again signs a new record with the next number.
    let again = phone.pay_record(&offer, at(3));
    let record = &record_of(&again).payload;
    assert_eq!(record.sequence, first + 1);
    assert_eq!(record.cumulative, eur(60));
    assert_ne!(record.record_id, record_of(&answer).payload.record_id);
}

#[tokio::test]
async fn coins_without_an_answer_can_be_taken_back() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 100, 1).await;
    phone.withdraw_blind(&issuer, &[10, 5, 2, 1]).await;
    phone.withdraw_identified(&issuer, &[5]).await;
    let mut shop = Shop::grocery(&issuer, 1).await;

    let offer = shop.offer(16, at(1));
    let id = offer.request.payload.request_id;
    let answer = phone.pay_coins(&offer, at(1));
    assert_eq!(coins_of(&answer).len(), 3);
    assert_eq!(phone.wallet.coin_total(EUR), eur(7));
    // Coins in flight survive a restart.
    phone.crash_and_restart();
    assert_eq!(phone.wallet.coin_total(EUR), eur(7));

    assert_eq!(phone.wallet.take_back_unanswered_coins(id).unwrap(), 3);
    assert_eq!(phone.wallet.coin_total(EUR), eur(23));
    assert_eq!(phone.coin_values(), vec![1, 2, 5, 5, 10]);
    assert_eq!(
        phone.wallet.take_back_unanswered_coins(id).err(),
        Some(WalletError::NoCoinsInFlight(id))
    );
    // A late receipt for coins taken back matches nothing.
    let late = shop.receipt(&answer, at(5));
    assert_eq!(
        phone.wallet.on_merchant_reply(&late, at(5)).err(),
        Some(WalletError::ReceiptForUnknownPayment(id))
    );
    // Records are not coins: nothing to take back for them.
    let mut rich = Phone::open(&issuer, 2, 1_000, 2).await;
    rich.certificate(&issuer, up_to(100), NOW).await;
    let offer = shop.offer(10, at(6));
    rich.pay_record(&offer, at(6));
    assert!(rich
        .wallet
        .take_back_unanswered_coins(offer.request.payload.request_id)
        .is_err());
}
