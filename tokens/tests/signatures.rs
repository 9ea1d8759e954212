//! Signature checks a wallet, merchant or issuer relies on: every genuine token verifies,
//! any single altered byte is caught, signatures never cross types, validity windows and
//! bindings (account, device, merchant, key role) are enforced with typed errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::{AccountCertifier, BalanceCertifier, Device, IssuerKeyRole};
use scrip_tokens::*;

#[test]
fn every_genuine_token_verifies() {
    let w = World::new();
    let objects = w.signed_objects();
    assert_eq!(objects.len(), 13);
    for (name, bytes, verify) in &objects {
        verify(&w, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn altering_any_single_byte_is_detected() {
    let w = World::new();
    let mut checked = 0usize;
    for (name, bytes, verify) in w.signed_objects() {
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80] {
                let mut tampered = bytes.clone();
                tampered[i] ^= flip;
                assert!(
                    verify(&w, &tampered).is_err(),
                    "{name}: flipping bit {flip:#04x} of byte {i} of {} went unnoticed",
                    bytes.len()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000, "only {checked} alterations tried");
}

#[test]
fn truncated_or_extended_tokens_are_rejected() {
    let w = World::new();
    for (name, bytes, verify) in w.signed_objects() {
        for len in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                verify(&w, &bytes[..len]).is_err(),
                "{name} truncated to {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            verify(&w, &longer),
            Err(Error::TrailingBytes { count: 1 }),
            "{name} with a trailing byte"
        );
    }
}

#[test]
fn a_signature_never_verifies_as_another_type() {
    let w = World::new();
    // The device key signs three types. Move each signature onto the others' payloads.
    let record_sig = w.record.signature.clone();
    let request_sig = w.deposit_request.signature.clone();
    let confirmation_sig = w.deposit_confirmation.signature.clone();
    let device_key = w.device.verifying_key();
    for sig in [&request_sig, &confirmation_sig] {
        let forged = WithdrawalRecord {
            signature: sig.clone(),
            ..w.record.clone()
        };
        assert_eq!(forged.verify_with(device_key), Err(Error::BadSignature));
    }
    for sig in [&record_sig, &confirmation_sig] {
        let forged = DepositRequest {
            signature: sig.clone(),
            ..w.deposit_request.clone()
        };
        assert_eq!(forged.verify_with(device_key), Err(Error::BadSignature));
    }

    // The same key listed for two issuer roles (a misconfigured directory) still cannot
    // turn an account certificate's signature into a balance certificate's.
    let shared_pem = fixtures::unrelated_key_pem();
    let as_account = SigningKey::<AccountCertifier>::from_pem(shared_pem).unwrap();
    let as_balance = SigningKey::<BalanceCertifier>::from_pem(shared_pem).unwrap();
    let mut rng = rng(3);
    let account_cert =
        AccountCertificate::sign(w.account_cert.payload.clone(), &as_account, &mut rng).unwrap();
    let balance_cert =
        BalanceCertificate::sign(w.balance_cert.payload.clone(), &as_balance, &mut rng).unwrap();
    let swapped = BalanceCertificate {
        signature: account_cert.signature.clone(),
        ..balance_cert.clone()
    };
    assert_eq!(
        swapped.verify_with(as_balance.verifying_key()),
        Err(Error::BadSignature)
    );
    assert!(balance_cert.verify_with(as_balance.verifying_key()).is_ok());
}

#[test]
fn decoders_refuse_other_types_by_tag() {
    // Tag uniqueness and raw cross-tag verification are unit tests in `signed.rs`.
    assert_eq!(WithdrawalRecordPayload::TAG, "scrip/withdrawal-record/v1");
    // A decoder for one type refuses another type's bytes by tag, before reading them.
    let w = World::new();
    let bytes = codec::encode(&w.deposit_request).unwrap();
    assert_eq!(
        codec::decode::<DepositConfirmation>(&bytes),
        Err(Error::WrongType {
            expected: DepositConfirmation::TAG
        })
    );
    assert_eq!(codec::peek_tag(&bytes), Some(DepositRequest::TAG));
}

#[test]
fn certificates_outside_their_validity_window_are_rejected() {
    let w = World::new();
    let dir = w.directory();
    let validity = w.account_cert.payload.validity;
    let before = validity.not_before.saturating_sub(Duration::from_millis(1));
    let after = validity.not_after.saturating_add(Duration::from_millis(1));

    assert_eq!(
        w.account_cert.verify(dir, before),
        Err(Error::NotYetValid {
            not_before: validity.not_before,
            now: before
        })
    );
    assert_eq!(
        w.account_cert.verify(dir, after),
        Err(Error::Expired {
            not_after: validity.not_after,
            now: after
        })
    );
    assert!(w.account_cert.verify(dir, validity.not_after).is_ok());
    assert!(matches!(
        w.merchant_cert.verify(dir, before),
        Err(Error::NotYetValid { .. })
    ));
    assert!(matches!(
        w.merchant_cert.verify(dir, after),
        Err(Error::Expired { .. })
    ));

    let balance = &w.balance_cert.payload;
    let late = balance.expires_at.saturating_add(Duration::from_millis(1));
    assert_eq!(
        w.balance_cert.verify(dir, w.account(), late),
        Err(Error::Expired {
            not_after: balance.expires_at,
            now: late
        })
    );
    let early = balance.issued_at.saturating_sub(Duration::from_millis(1));
    assert!(matches!(
        w.balance_cert.verify(dir, w.account(), early),
        Err(Error::NotYetValid { .. })
    ));
}

#[test]
fn issuer_keys_outside_their_window_or_role_are_rejected() {
    let w = World::new();
    let key_id = w.issuer.account_certifier.key_id();
    let mut dir = w.directory().clone();
    let index = dir
        .issuer_keys
        .iter()
        .position(|e| e.role == IssuerKeyRole::AccountCertificate)
        .unwrap();
    dir.issuer_keys[index].validity =
        Validity::new(NOW.saturating_sub(DAY * 10), NOW.saturating_sub(DAY)).unwrap();
    assert_eq!(
        w.account_cert.verify(&dir, NOW),
        Err(Error::KeyExpired {
            key_id,
            not_after: NOW.saturating_sub(DAY)
        })
    );
    dir.issuer_keys[index].validity =
        Validity::new(NOW.saturating_add(DAY), NOW.saturating_add(DAY * 10)).unwrap();
    assert_eq!(
        w.account_cert.verify(&dir, NOW),
        Err(Error::KeyNotYetValid {
            key_id,
            not_before: NOW.saturating_add(DAY)
        })
    );
    // Listed under another role: a balance-certificate key cannot vouch for accounts.
    dir.issuer_keys[index].validity = w.directory().issuer_keys[index].validity;
    dir.issuer_keys[index].role = IssuerKeyRole::BalanceCertificate;
    assert_eq!(
        w.account_cert.verify(&dir, NOW),
        Err(Error::WrongKeyRole {
            key_id,
            expected: "account-certifier",
            found: "balance-certifier"
        })
    );
    // Not listed at all.
    dir.issuer_keys.retain(|e| e.key.key_id() != key_id);
    assert_eq!(
        w.account_cert.verify(&dir, NOW),
        Err(Error::UnknownKey(key_id))
    );
}

#[test]
fn rotated_keys_keep_verifying_until_they_expire() {
    let w = World::new();
    let mut dir = w.directory().clone();
    let old = dir
        .issuer_keys
        .iter()
        .find(|e| e.role == IssuerKeyRole::BalanceCertificate)
        .unwrap()
        .clone();
    let new_key = SigningKey::<BalanceCertifier>::from_pem(fixtures::unrelated_key_pem()).unwrap();
    dir.issuer_keys.push(IssuerKeyEntry {
        role: IssuerKeyRole::BalanceCertificate,
        key: new_key.verifying_key().public_key().clone(),
        validity: old.validity,
    });
    let mut rng = rng(9);
    let fresh =
        BalanceCertificate::sign(w.balance_cert.payload.clone(), &new_key, &mut rng).unwrap();
    assert!(
        w.balance_cert.verify(&dir, w.account(), NOW).is_ok(),
        "old key"
    );
    assert!(fresh.verify(&dir, w.account(), NOW).is_ok(), "new key");
}

#[test]
fn tokens_bound_to_another_account_device_or_merchant_are_rejected() {
    let w = World::new();
    let mut rng = rng(5);
    let other_device = fixtures::device(2);
    let mut other_account = w.account().clone();
    other_account.account_id = AccountId::random(&mut rng);
    assert_eq!(
        w.balance_cert.verify(w.directory(), &other_account, NOW),
        Err(Error::WrongAccount)
    );
    let mut other_device_cert = w.account().clone();
    other_device_cert.device_id = DeviceId::random(&mut rng);
    assert_eq!(
        w.balance_cert
            .verify(w.directory(), &other_device_cert, NOW),
        Err(Error::WrongDevice)
    );

    // A record signed by the right key but naming another account.
    let mut payload = w.record.payload.clone();
    payload.account_id = other_account.account_id;
    let forged = WithdrawalRecord::sign(payload, &w.device, &mut rng).unwrap();
    assert_eq!(forged.verify(w.account()), Err(Error::WrongAccount));

    // A record signed by another device's key than the certified one.
    let impostor =
        WithdrawalRecord::sign(w.record.payload.clone(), &other_device, &mut rng).unwrap();
    assert_eq!(
        impostor.verify(w.account()),
        Err(Error::UnknownKey(other_device.key_id()))
    );

    // A payment request naming a merchant other than the certificate's.
    let mut request = w.request.payload.clone();
    request.merchant_id = MerchantId::random(&mut rng);
    let request = PaymentRequest::sign(request, &w.merchant, &mut rng).unwrap();
    assert_eq!(
        request.verify(w.merchant_payload()),
        Err(Error::WrongMerchant)
    );

    // A receipt countersigned by another merchant.
    let other_merchant = fixtures::merchant(2);
    let mut other_cert = w.merchant_payload().clone();
    other_cert.merchant_key = other_merchant.verifying_key().clone();
    other_cert.merchant_id = MerchantId::random(&mut rng);
    let receipt =
        CountersignedRecord::sign(w.countersigned.payload.clone(), &other_merchant, &mut rng)
            .unwrap();
    assert_eq!(receipt.verify(&other_cert), Err(Error::WrongMerchant));
}

#[test]
fn a_record_whose_cumulative_is_below_its_amount_or_in_another_currency_is_rejected() {
    let w = World::new();
    let mut rng = rng(6);
    let mut payload = w.record.payload.clone();
    payload.cumulative = eur(1);
    let record = WithdrawalRecord::sign(payload.clone(), &w.device, &mut rng).unwrap();
    assert!(matches!(
        record.verify(w.account()),
        Err(Error::InvalidField {
            field: "cumulative",
            ..
        })
    ));
    payload.cumulative = Amount::new(5_000, Currency::USD);
    let record = WithdrawalRecord::sign(payload, &w.device, &mut rng).unwrap();
    assert_eq!(
        record.verify(w.account()),
        Err(Error::CurrencyMismatch {
            expected: EUR,
            found: Currency::USD
        })
    );
}

#[test]
fn sequence_ranges_of_balance_certificates() {
    let w = World::new();
    let cert = &w.balance_cert.payload;
    assert_eq!((cert.first_sequence, cert.max_payments), (1, 10));
    assert!(!cert.covers_sequence(0));
    assert!(cert.covers_sequence(1));
    assert!(cert.covers_sequence(10));
    assert!(!cert.covers_sequence(11));
    assert!(!cert.covers_sequence(u64::MAX));
}

#[test]
fn device_keys_verify_only_their_own_role() {
    // Compile-time role typing: a `VerifyingKey<Device>` is what a record verifies with.
    // This asserts the run-time half: keys from PEM keep their key id.
    let key = fixtures::device(1);
    let public =
        VerifyingKey::<Device>::from_pem(&key.verifying_key().public_key().to_pem().unwrap())
            .unwrap();
    assert_eq!(public, *key.verifying_key());
}
