//! The wallet against the real issuer core: device key, registration, deposits, balance
//! certificates, blind and identified withdrawals, sync; what the wallet keeps of each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use scrip_tokens::fixtures::NOW;
use scrip_tokens::keys::AnswerSigner;
use scrip_tokens::*;
use scrip_wallet::{CertificateOptions, StorageKey, Wallet, WalletError};

#[tokio::test]
async fn a_generated_device_key_registers_and_is_held_by_the_wallet() {
    let issuer = issuer();
    let mut rng = rng(1);
    let mut wallet = Wallet::generate(root(), &mut rng).unwrap();
    // Nothing that needs an account works before registration.
    assert_eq!(
        wallet.deposit_request(eur(10), NOW, &mut rng).err(),
        Some(WalletError::NotRegistered)
    );
    // Nor does anything that needs the directory.
    let shop_key_id = fixtures::merchant(1).key_id();
    assert_eq!(
        wallet.approve_device(shop_key_id, NOW, &mut rng).err(),
        Some(WalletError::NotRegistered)
    );
    wallet
        .update_directory(issuer.key_directory(NOW, &mut rng).unwrap(), NOW)
        .unwrap();
    assert_eq!(wallet.directory_age(at(5)), Some(MINUTE * 5));

    let registration = wallet.registration_request(None, NOW, &mut rng).unwrap();
    let saved = wallet
        .save(&StorageKey::random(&mut rng), &mut rng)
        .unwrap();
    let registration = registration.release(&saved).unwrap();
    assert_eq!(registration.payload.device_key, *wallet.device_key());
    assert_eq!(registration.payload.account_id, None);
    registration.verify().unwrap();

    let opened = issuer
        .open_account(&registration, NOW, &mut rng)
        .await
        .unwrap();
    wallet
        .on_account_certificate(opened.certificate.clone(), NOW)
        .unwrap();
    let account = wallet.account().unwrap();
    assert_eq!(account.account_id, opened.account_id);
    assert_eq!(account.device_id, opened.device_id);
    assert_eq!(account.device_key.key_id(), wallet.device_key_id());
    // The issuer knows the device by the wallet's key.
    let device = issuer.device(opened.device_id).await.unwrap();
    assert_eq!(device.certificate.payload.device_key, *wallet.device_key());

    // Another device's certificate is not taken.
    let mut other = Phone::new(&issuer, 2, 2);
    let registration = other
        .wallet
        .registration_request(None, NOW, &mut other.rng)
        .unwrap();
    let registration = other.send(registration);
    let theirs = issuer
        .open_account(&registration, NOW, &mut rng)
        .await
        .unwrap();
    assert!(matches!(
        wallet.on_account_certificate(theirs.certificate, NOW),
        Err(WalletError::Invalid(Error::UnknownKey(_)))
    ));
    assert_eq!(wallet.account().unwrap().device_id, opened.device_id);
}

#[tokio::test]
async fn deposits_are_credited_and_confirmed_through_the_next_certificate_request() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 0, 1).await;
    let (account, device) = phone.ids();

    assert_eq!(
        phone
            .wallet
            .deposit_request(eur(0), NOW, &mut phone.rng)
            .err(),
        Some(WalletError::ZeroDeposit)
    );
    let request = phone
        .wallet
        .deposit_request(eur(500), NOW, &mut phone.rng)
        .unwrap();
    let request = phone.send(request);
    assert_eq!(request.payload.account_id, account);
    assert_eq!(request.payload.device_id, device);
    // Kept until the record arrives, to send again on a retry.
    assert_eq!(
        phone.wallet.pending_deposits(),
        std::slice::from_ref(&request)
    );
    let record = issuer.deposit(&request, NOW, &mut phone.rng).await.unwrap();
    // A retry of the same request credits once and returns the same record.
    let again = issuer.deposit(&request, NOW, &mut phone.rng).await.unwrap();
    assert_eq!(again, record);
    assert_eq!(issuer.balance(account, EUR).await.unwrap(), 500);

    let confirmation = phone
        .wallet
        .on_deposit_record(record.clone(), NOW, &mut phone.rng)
        .unwrap();
    assert!(phone.wallet.pending_deposits().is_empty());
    assert_eq!(confirmation.payload.deposit_id, request.payload.deposit_id);
    assert_eq!(
        confirmation.payload.deposit_record_digest,
        codec::digest(&record).unwrap()
    );
    // A record for no pending deposit is refused.
    assert!(phone
        .wallet
        .on_deposit_record(record, NOW, &mut phone.rng)
        .is_err());

    // The confirmation rides along with the next certificate request, once.
    let cert_request = phone
        .wallet
        .certificate_request(up_to(200), NOW, &mut phone.rng)
        .unwrap();
    let cert_request = phone.send(cert_request);
    assert_eq!(
        cert_request.payload.deposit_confirmations,
        vec![confirmation.clone()]
    );
    assert_eq!(
        phone.wallet.pending_certificate_request(),
        Some(&cert_request)
    );
    let cert = issuer
        .issue_balance_certificate(&cert_request, NOW, &mut phone.rng)
        .await
        .unwrap();
    assert_eq!(
        issuer
            .deposit_confirmation(request.payload.deposit_id)
            .await
            .unwrap(),
        Some(confirmation)
    );
    phone.wallet.on_balance_certificate(cert, NOW).unwrap();
    assert_eq!(phone.wallet.pending_certificate_request(), None);
    let next = phone
        .wallet
        .certificate_request(up_to(100), at(1), &mut phone.rng)
        .unwrap();
    let next = phone.send(next);
    assert!(next.payload.deposit_confirmations.is_empty());
}

#[tokio::test]
async fn balance_certificates_are_kept_with_their_rules_and_set_the_sequence_counter() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let (account, device) = phone.ids();
    assert_eq!(phone.wallet.next_sequence(), 1);
    assert_eq!(phone.wallet.offline_spendable(EUR, NOW), eur(0));

    let options = CertificateOptions {
        currency: EUR,
        requested_amount: Some(eur(300)),
        max_payments: Some(3),
        per_payment_cap: Some(eur(120)),
        lock: LockRules {
            allowed_categories: Allowed::Only(vec![MerchantCategory::GROCERY]),
            allowed_regions: Allowed::Only(vec![Region::new("DE").unwrap()]),
            ..LockRules::default()
        },
    };
    let request = phone
        .wallet
        .certificate_request(options, NOW, &mut phone.rng)
        .unwrap();
    let request = phone.send(request);
    assert_eq!(request.payload.account_id, account);
    assert_eq!(request.payload.device_id, device);
    assert_eq!(request.payload.requested_amount, Some(300));
    assert_eq!(request.payload.max_payments, Some(3));
    assert_eq!(request.payload.per_payment_cap, Some(120));
    let cert = issuer
        .issue_balance_certificate(&request, NOW, &mut phone.rng)
        .await
        .unwrap();
    // A retry (same signed request) gets the same certificate.
    assert_eq!(
        issuer
            .issue_balance_certificate(&request, NOW, &mut phone.rng)
            .await
            .unwrap(),
        cert
    );
    phone
        .wallet
        .on_balance_certificate(cert.clone(), NOW)
        .unwrap();
    // Taking the same certificate twice keeps one.
    phone
        .wallet
        .on_balance_certificate(cert.clone(), NOW)
        .unwrap();

    let p = &cert.payload;
    assert_eq!(p.available, eur(300));
    assert_eq!(p.max_payments, 3);
    assert_eq!(p.per_payment_cap, eur(120));
    assert_eq!(
        p.allowed_categories,
        Allowed::Only(vec![MerchantCategory::GROCERY])
    );
    let held: Vec<_> = phone.wallet.certificates().collect();
    assert_eq!(held, vec![(&cert, eur(0))]);
    assert_eq!(phone.wallet.offline_spendable(EUR, NOW), eur(300));
    // Expired certificates allow nothing.
    assert_eq!(
        phone
            .wallet
            .offline_spendable(EUR, NOW.saturating_add(DAY * 2)),
        eur(0)
    );
    assert_eq!(phone.wallet.next_sequence(), p.first_sequence);
    assert_eq!(issuer.balance(account, EUR).await.unwrap(), 700);

    // The next certificate starts past the first one's range: the counter moves up.
    let second = phone.certificate(&issuer, up_to(100), at(1)).await;
    assert_eq!(second.payload.first_sequence, p.first_sequence + 3);
    assert_eq!(phone.wallet.next_sequence(), second.payload.first_sequence);
    assert_eq!(phone.wallet.certificates().count(), 2);

    // A certificate of another device is refused.
    let mut other = Phone::open(&issuer, 2, 100, 2).await;
    let theirs = other.certificate(&issuer, up_to(50), NOW).await;
    assert!(matches!(
        phone.wallet.on_balance_certificate(theirs, NOW),
        Err(WalletError::Invalid(Error::WrongAccount))
    ));
}

#[tokio::test]
async fn blind_withdrawals_are_unblinded_verified_and_kept() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 100, 1).await;
    let (account, device) = phone.ids();
    let directory = directory(&issuer);

    assert_eq!(
        phone
            .wallet
            .blind_withdrawal_request(&[].map(|v| Amount::new(v, EUR)), NOW, &mut phone.rng)
            .err(),
        Some(WalletError::EmptyWithdrawal)
    );
    let request = phone
        .wallet
        .blind_withdrawal_request(
            &[10, 5, 2, 1, 1].map(|v| Amount::new(v, EUR)),
            NOW,
            &mut phone.rng,
        )
        .unwrap();
    let request = phone.send(request);
    assert_eq!(request.payload.account_id, account);
    assert_eq!(request.payload.device_id, device);
    assert_eq!(request.payload.coins.len(), 5);
    let values: Vec<u64> = request.payload.coins.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, vec![10, 5, 2, 1, 1]);
    // Five different blinded messages: the issuer sees nothing it could link later.
    let blinded: std::collections::HashSet<Vec<u8>> = request
        .payload
        .coins
        .iter()
        .map(|(_, m)| m.0.clone())
        .collect();
    assert_eq!(blinded.len(), 5);

    let response = issuer
        .withdraw_blind(&request, NOW, &mut phone.rng)
        .await
        .unwrap();
    assert_eq!(issuer.balance(account, EUR).await.unwrap(), 81);

    // An answer that does not match is refused and the withdrawal stays pending.
    let mut short = response.clone();
    short.signatures.pop();
    assert_eq!(
        phone
            .wallet
            .on_blind_withdrawal(&request, &short, NOW)
            .err(),
        Some(WalletError::MismatchedWithdrawal)
    );
    // Signatures in the wrong order do not unblind into valid coins.
    let mut swapped = response.clone();
    swapped.signatures.swap(0, 1);
    assert!(matches!(
        phone.wallet.on_blind_withdrawal(&request, &swapped, NOW),
        Err(WalletError::BadCoin(_))
    ));
    assert!(phone.wallet.coins().is_empty());

    let ids = phone
        .wallet
        .on_blind_withdrawal(&request, &response, NOW)
        .unwrap();
    assert_eq!(ids.len(), 5);
    assert_eq!(phone.wallet.coins().len(), 5);
    assert_eq!(phone.wallet.coin_total(EUR), eur(19));
    for coin in phone.wallet.coins() {
        assert_eq!(coin.variant(), CoinVariant::Blind);
        assert_eq!(coin.holder(), None);
        coin.verify(&directory, NOW).unwrap();
        assert!(ids.contains(&coin.id()));
        // The unblinded signature is not the blind one the issuer returned.
        let Coin::Blind(blind) = coin else { panic!() };
        assert!(response
            .signatures
            .iter()
            .all(|s| s.0 != blind.signature.as_bytes()));
    }
    // The answer is taken once.
    assert_eq!(
        phone
            .wallet
            .on_blind_withdrawal(&request, &response, NOW)
            .err(),
        Some(WalletError::UnrequestedWithdrawal)
    );
    assert_eq!(phone.wallet.coins().len(), 5);
}

#[tokio::test]
async fn identified_withdrawals_are_verified_and_kept() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 100, 1).await;
    let (account, device) = phone.ids();
    let virtual_id = issuer.account(account).await.unwrap().virtual_id;
    let directory = directory(&issuer);

    let request = phone
        .wallet
        .identified_withdrawal_request(
            &[10, 10, 2].map(|v| Amount::new(v, EUR)),
            NOW,
            &mut phone.rng,
        )
        .unwrap();
    let request = phone.send(request);
    assert_eq!(request.payload.account_id, account);
    assert_eq!(request.payload.device_id, device);
    assert_eq!(request.payload.amounts, vec![10, 10, 2]);
    let response = issuer
        .withdraw_identified(&request, NOW, &mut phone.rng)
        .await
        .unwrap();

    // Coins that do not match the request are refused.
    let mut other = response.clone();
    other.coins.reverse();
    assert_eq!(
        phone
            .wallet
            .on_identified_withdrawal(&request, &other, NOW)
            .err(),
        Some(WalletError::MismatchedWithdrawal)
    );
    // A coin whose payload was altered does not verify.
    let mut forged = response.clone();
    forged.coins[2].payload.holder = VirtualId::random(&mut phone.rng);
    assert!(matches!(
        phone
            .wallet
            .on_identified_withdrawal(&request, &forged, NOW),
        Err(WalletError::BadCoin(_))
    ));
    assert!(phone.wallet.coins().is_empty());

    let ids = phone
        .wallet
        .on_identified_withdrawal(&request, &response, NOW)
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(phone.wallet.coin_total(EUR), eur(22));
    for coin in phone.wallet.coins() {
        assert_eq!(coin.variant(), CoinVariant::Identified);
        assert_eq!(coin.holder(), Some(virtual_id));
        coin.verify(&directory, NOW).unwrap();
    }
    assert_eq!(issuer.balance(account, EUR).await.unwrap(), 78);

    // Blind and identified coins live side by side.
    phone.withdraw_blind(&issuer, &[5]).await;
    assert_eq!(phone.wallet.coin_total(EUR), eur(27));
    assert_eq!(phone.coin_values(), vec![2, 5, 10, 10]);
}

#[tokio::test]
async fn sync_and_certificate_requests_hand_in_the_outbox() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 1).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    let first = phone.certificate(&issuer, up_to(300), NOW).await;

    // Two payments with receipts: both records wait in the outbox.
    let mut records = Vec::new();
    for (i, amount) in [40u64, 60].into_iter().enumerate() {
        let now = at(i as u32 + 1);
        let offer = shop.offer(amount, now);
        let answer = phone.pay_record(&offer, now);
        records.push(record_of(&answer).clone());
        let reply = shop.receipt(&answer, now);
        phone.wallet.on_merchant_reply(&reply, now).unwrap();
    }
    assert_eq!(phone.wallet.outbox(), records.as_slice());
    assert_eq!(
        records
            .iter()
            .map(|r| r.payload.sequence)
            .collect::<Vec<_>>(),
        vec![
            first.payload.first_sequence,
            first.payload.first_sequence + 1
        ]
    );

    // A sync hands them in; the issuer records them; they leave the outbox.
    let sync = phone.wallet.sync_request(at(5), &mut phone.rng).unwrap();
    assert_eq!(sync.payload.unsent_records, records);
    let report = issuer.sync(&sync, at(5)).await.unwrap();
    assert_eq!(report.records.len(), 2);
    for outcome in &report.records {
        assert!(
            matches!(outcome, RedemptionOutcome::Accepted { .. }),
            "{outcome:?}"
        );
    }
    for record in &records {
        assert!(issuer
            .record(record.payload.record_id)
            .await
            .unwrap()
            .is_some());
    }
    // Answers the wallet must not act on change nothing: one signed for another request,
    // one signed by a key that is not the issuer's answer key.
    let mut elsewhere = report.clone();
    elsewhere.request_digest = ContentDigest::of(b"another request");
    let elsewhere = issuer
        .sign_answer(elsewhere, at(5), &mut phone.rng)
        .unwrap();
    let impostor = SigningKey::<AnswerSigner>::from_pem(fixtures::unrelated_key_pem()).unwrap();
    let forged = SyncReport::sign(report.clone(), &impostor, &mut phone.rng).unwrap();
    for answer in [&elsewhere, &forged] {
        assert!(matches!(
            phone.wallet.on_sync_report(&sync, answer, at(5)),
            Err(WalletError::UnverifiedAnswer(_))
        ));
        assert_eq!(
            phone.wallet.outbox().len(),
            2,
            "an unverified answer was acted on"
        );
    }
    let report = issuer.sign_answer(report, at(5), &mut phone.rng).unwrap();
    phone.wallet.on_sync_report(&sync, &report, at(5)).unwrap();
    assert!(phone.wallet.outbox().is_empty());

    // A statement is read only once it checks out, for the request that asked for it.
    let request = phone
        .wallet
        .statement_request(EUR, None, 100, at(5), &mut phone.rng)
        .unwrap();
    let statement = issuer.statement_for(&request, at(5)).await.unwrap();
    let signed = issuer
        .sign_answer(statement.clone(), at(5), &mut phone.rng)
        .unwrap();
    let shown = phone
        .wallet
        .verify_statement(&request, &signed, at(5))
        .unwrap();
    assert_eq!(shown.balance, statement.balance);
    let mut inflated = signed.clone();
    inflated.payload.balance += 1_000_000;
    assert!(matches!(
        phone.wallet.verify_statement(&request, &inflated, at(5)),
        Err(WalletError::UnverifiedAnswer(_))
    ));
    let other_request = phone
        .wallet
        .statement_request(EUR, None, 100, at(5), &mut phone.rng)
        .unwrap();
    assert!(matches!(
        phone
            .wallet
            .verify_statement(&other_request, &signed, at(5)),
        Err(WalletError::UnverifiedAnswer(_))
    ));

    // The next receipted record goes in with a certificate request instead.
    let offer = shop.offer(25, at(6));
    let answer = phone.pay_record(&offer, at(6));
    let reply = shop.receipt(&answer, at(6));
    phone.wallet.on_merchant_reply(&reply, at(6)).unwrap();
    assert_eq!(phone.wallet.outbox().len(), 1);
    let request = phone
        .wallet
        .certificate_request(up_to(100), at(7), &mut phone.rng)
        .unwrap();
    let request = phone.send(request);
    assert_eq!(
        request.payload.unsent_records,
        vec![record_of(&answer).clone()]
    );
    let second = issuer
        .issue_balance_certificate(&request, at(7), &mut phone.rng)
        .await
        .unwrap();
    phone
        .wallet
        .on_balance_certificate(second.clone(), at(7))
        .unwrap();
    assert!(phone.wallet.outbox().is_empty());
    assert!(issuer
        .record(record_of(&answer).payload.record_id)
        .await
        .unwrap()
        .is_some());
    // The new certificate's range starts past every sequence used.
    assert!(second.payload.first_sequence > record_of(&answer).payload.sequence);
    assert_eq!(phone.wallet.next_sequence(), second.payload.first_sequence);
    assert_eq!(phone.wallet.receipts().len(), 3);
}

/// Issue 17 (6): the answer to a certificate request carries one outcome per handed-in
/// record; the wallet acts on it only once it verifies for that request, and returns the
/// outcomes so the user learns of each.
#[tokio::test]
async fn a_certificate_answer_tells_the_wallet_what_became_of_each_hand_in() {
    let issuer = issuer();
    let mut phone = Phone::open(&issuer, 1, 1_000, 2).await;
    let mut shop = Shop::grocery(&issuer, 1).await;
    phone.certificate(&issuer, up_to(300), NOW).await;
    let offer = shop.offer(45, at(1));
    let answer = phone.pay_record(&offer, at(1));
    let reply = shop.receipt(&answer, at(1));
    phone.wallet.on_merchant_reply(&reply, at(1)).unwrap();

    let request = phone
        .wallet
        .certificate_request(up_to(100), at(2), &mut phone.rng)
        .unwrap();
    let request = phone.send(request);
    let (certificate, report) = issuer
        .issue_balance_certificate_answered(&request, at(2), &mut phone.rng)
        .await
        .unwrap();

    // A report for another request, or not signed by the answer key: nothing changes.
    let mut elsewhere = report.clone();
    elsewhere.request_digest = ContentDigest::of(b"another request");
    let elsewhere = issuer
        .sign_answer(elsewhere, at(2), &mut phone.rng)
        .unwrap();
    let impostor = SigningKey::<AnswerSigner>::from_pem(fixtures::unrelated_key_pem()).unwrap();
    let forged = SyncReport::sign(report.clone(), &impostor, &mut phone.rng).unwrap();
    for hand_ins in [&elsewhere, &forged] {
        assert!(matches!(
            phone
                .wallet
                .on_balance_certificate_answer(certificate.clone(), hand_ins, at(2)),
            Err(WalletError::UnverifiedAnswer(_))
        ));
        assert_eq!(phone.wallet.outbox().len(), 1);
        assert!(phone.wallet.pending_certificate_request().is_some());
        assert!(!phone
            .wallet
            .certificates()
            .any(|(c, _)| c.payload.serial == certificate.payload.serial));
    }

    let signed = issuer.sign_answer(report, at(2), &mut phone.rng).unwrap();
    let outcomes = phone
        .wallet
        .on_balance_certificate_answer(certificate.clone(), &signed, at(2))
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].record_id, record_of(&answer).payload.record_id);
    assert_eq!(outcomes[0].merchant_id, shop.id());
    assert_eq!(outcomes[0].amount, eur(45));
    assert_eq!(
        outcomes[0].outcome,
        RedemptionOutcome::Accepted { credited: eur(45) }
    );
    assert!(phone.wallet.outbox().is_empty());
    assert!(phone.wallet.pending_certificate_request().is_none());
    assert!(phone
        .wallet
        .certificates()
        .any(|(c, _)| c.payload.serial == certificate.payload.serial));
}
