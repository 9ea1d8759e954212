//! Signature checks a wallet, merchant or issuer relies on: every genuine token verifies,
//! any single altered byte is caught, signatures never cross types, validity windows and
//! bindings (account, device, merchant, key role) are enforced with typed errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::{AccountCertifier, BalanceCertifier, IssuerKeyRole};
use scrip_tokens::*;

#[test]
fn every_genuine_token_verifies() {
    let w = world();
    let objects = w.signed_objects();
    assert_eq!(objects.len(), 14);
    for (name, bytes, verify) in &objects {
        verify(&w, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn altering_any_single_byte_is_detected() {
    let w = world();
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
    let w = world();
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
    let w = world();
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
        assert_eq!(
            forged.verify_signature(device_key),
            Err(Error::BadSignature)
        );
    }
    for sig in [&record_sig, &confirmation_sig] {
        let forged = DepositRequest {
            signature: sig.clone(),
            ..w.deposit_request.clone()
        };
        assert_eq!(
            forged.verify_signature(device_key),
            Err(Error::BadSignature)
        );
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
        swapped.verify_signature(as_balance.verifying_key()),
        Err(Error::BadSignature)
    );
    assert!(balance_cert
        .verify_signature(as_balance.verifying_key())
        .is_ok());
}

#[test]
fn decoders_refuse_other_types_by_tag() {
    // Tag uniqueness and raw cross-tag verification are unit tests in `signed.rs`.
    assert_eq!(WithdrawalRecordPayload::TAG, "scrip/withdrawal-record/v1");
    // A decoder for one type refuses another type's bytes by tag, before reading them.
    let w = world();
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
    let w = world();
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
    let w = world();
    let key_id = w.issuer.account_certifier.key_id();
    let with_account_key = |role: IssuerKeyRole, validity: Validity| {
        let mut keys = w.directory().issuer_keys().to_vec();
        for entry in keys.iter_mut().filter(|e| e.key.key_id() == key_id) {
            entry.role = role;
            entry.validity = validity;
        }
        KeyDirectory::new(NOW, keys, w.directory().keysets().to_vec()).unwrap()
    };
    let past = Validity::new(NOW.saturating_sub(DAY * 10), NOW.saturating_sub(DAY)).unwrap();
    assert_eq!(
        w.account_cert.verify(
            &with_account_key(IssuerKeyRole::AccountCertificate, past),
            NOW
        ),
        Err(Error::KeyExpired {
            key_id,
            not_after: NOW.saturating_sub(DAY)
        })
    );
    let future = Validity::new(NOW.saturating_add(DAY), NOW.saturating_add(DAY * 10)).unwrap();
    assert_eq!(
        w.account_cert.verify(
            &with_account_key(IssuerKeyRole::AccountCertificate, future),
            NOW
        ),
        Err(Error::KeyNotYetValid {
            key_id,
            not_before: NOW.saturating_add(DAY)
        })
    );
    // Listed under another role: a balance-certificate key cannot vouch for accounts.
    let current = w.directory().issuer_keys()[0].validity;
    assert_eq!(
        w.account_cert.verify(
            &with_account_key(IssuerKeyRole::BalanceCertificate, current),
            NOW
        ),
        Err(Error::WrongKeyRole {
            key_id,
            expected: "account-certifier",
            found: "balance-certifier"
        })
    );
    // Not listed at all.
    let mut keys = w.directory().issuer_keys().to_vec();
    keys.retain(|e| e.key.key_id() != key_id);
    let dir = KeyDirectory::new(NOW, keys, w.directory().keysets().to_vec()).unwrap();
    assert_eq!(
        w.account_cert.verify(&dir, NOW),
        Err(Error::UnknownKey(key_id))
    );
}

#[test]
fn rotated_keys_keep_verifying_until_they_expire() {
    let w = world();
    // The old balance key is retired: it verifies until tomorrow. The new one took over
    // an hour ago.
    let retiring = Validity::new(NOW.saturating_sub(DAY * 30), NOW.saturating_add(DAY)).unwrap();
    let mut keys = w.directory().issuer_keys().to_vec();
    for entry in keys
        .iter_mut()
        .filter(|e| e.role == IssuerKeyRole::BalanceCertificate)
    {
        entry.validity = retiring;
    }
    let new_key = SigningKey::<BalanceCertifier>::from_pem(fixtures::unrelated_key_pem()).unwrap();
    keys.push(IssuerKeyEntry {
        role: IssuerKeyRole::BalanceCertificate,
        key: new_key.verifying_key().public_key().clone(),
        validity: Validity::new(
            NOW.saturating_sub(Duration::from_secs(3600)),
            NOW.saturating_add(DAY * 30),
        )
        .unwrap(),
    });
    let dir = KeyDirectory::new(NOW, keys, w.directory().keysets().to_vec()).unwrap();
    let mut rng = rng(9);
    let mut payload = w.balance_cert.payload.clone();
    payload.expires_at = NOW.saturating_add(DAY * 3);
    let old =
        BalanceCertificate::sign(payload.clone(), &w.issuer.balance_certifier, &mut rng).unwrap();
    let fresh = BalanceCertificate::sign(payload, &new_key, &mut rng).unwrap();
    assert!(
        old.verify(&dir, w.account(), NOW).is_ok(),
        "old key before it expires"
    );
    assert!(fresh.verify(&dir, w.account(), NOW).is_ok(), "new key");
    let later = NOW.saturating_add(DAY * 2);
    let old_key_id = w.issuer.balance_certifier.key_id();
    assert_eq!(
        old.verify(&dir, w.account(), later),
        Err(Error::KeyExpired {
            key_id: old_key_id,
            not_after: NOW.saturating_add(DAY)
        })
    );
    assert!(
        fresh.verify(&dir, w.account(), later).is_ok(),
        "the new key keeps verifying"
    );
}

#[test]
fn a_key_may_serve_only_one_purpose_in_a_directory() {
    let w = world();
    let keys = w.directory().issuer_keys().to_vec();
    let keysets = w.directory().keysets().to_vec();
    // A blind key that also signs balance certificates would be a signing oracle: a wallet
    // could submit any padded message as a "blinded coin".
    let blind_key = w.issuer.keyset.key_for(5).unwrap().public_key().clone();
    let mut reused = keys.clone();
    reused.push(IssuerKeyEntry {
        role: IssuerKeyRole::BalanceCertificate,
        key: blind_key.clone(),
        validity: keys[0].validity,
    });
    assert_eq!(
        KeyDirectory::new(NOW, reused, keysets.clone()),
        Err(Error::DuplicateKey(blind_key.key_id()))
    );
    // One key under two issuer roles.
    let mut two_roles = keys.clone();
    let mut extra = keys[0].clone();
    extra.role = IssuerKeyRole::Deposit;
    two_roles.push(extra);
    assert!(matches!(
        KeyDirectory::new(NOW, two_roles, keysets.clone()),
        Err(Error::DuplicateKey(_))
    ));
    // The same check runs when a directory is decoded.
    let mut json = serde_json::to_value(w.directory()).unwrap();
    let blind_der = serde_json::to_value(&blind_key).unwrap();
    json["issuer_keys"][0]["key"] = blind_der;
    let err = serde_json::from_value::<KeyDirectory>(json).unwrap_err();
    assert!(err.to_string().contains("more than once"), "{err}");
}

#[test]
fn a_keyset_may_not_use_one_key_for_two_denominations() {
    let w = world();
    let key = w.issuer.keyset.key_for(1).unwrap().clone();
    let entries = vec![
        DenominationKeyEntry {
            minor_units: 1,
            key: key.clone(),
        },
        DenominationKeyEntry {
            minor_units: 1000,
            key: key.clone(),
        },
    ];
    let validity = w.issuer.keyset.validity();
    assert_eq!(
        Keyset::new(EUR, validity, validity.not_after, entries),
        Err(Error::DuplicateKey(key.key_id()))
    );
}

#[test]
fn the_key_directory_is_signed_by_the_pinned_root() {
    let w = world();
    let mut rng = rng(10);
    let signed = w.issuer.signed_directory(&mut rng);
    let root = w.issuer.directory_root.verifying_key();
    assert_eq!(signed.verify(root).unwrap(), w.directory());
    // A directory signed by anyone else (a man in the middle) is refused.
    let impostor =
        SigningKey::<scrip_tokens::keys::DirectoryRoot>::from_pem(fixtures::unrelated_key_pem())
            .unwrap();
    let forged = SignedKeyDirectory::sign(w.directory().clone(), &impostor, &mut rng).unwrap();
    assert_eq!(
        forged.verify(root),
        Err(Error::UnknownKey(impostor.key_id()))
    );
    let relabelled = SignedKeyDirectory {
        key_id: root.key_id(),
        ..forged
    };
    assert_eq!(relabelled.verify(root), Err(Error::BadSignature));
}

#[test]
fn tokens_bound_to_another_account_device_or_merchant_are_rejected() {
    let w = world();
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
    let w = world();
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
    let w = world();
    let cert = &w.balance_cert.payload;
    assert_eq!((cert.first_sequence, cert.max_payments), (1, 10));
    assert!(!cert.covers_sequence(0));
    assert!(cert.covers_sequence(1));
    assert!(cert.covers_sequence(10));
    assert!(!cert.covers_sequence(11));
    assert!(!cert.covers_sequence(u64::MAX));
}

fn record_with(
    w: &World,
    edit: impl FnOnce(&mut WithdrawalRecordPayload),
) -> WithdrawalRecordPayload {
    let mut payload = w.record.payload.clone();
    edit(&mut payload);
    payload
}

#[test]
fn records_are_checked_against_every_rule_of_their_certificate() {
    let w = world();
    let cert = &w.balance_cert.payload;
    assert_eq!(cert.authorize(&w.record.payload), Ok(()));
    let mut rng = rng(11);

    let other_serial = record_with(&w, |r| {
        r.certificate_serial = CertificateSerial::random(&mut rng)
    });
    assert_eq!(cert.authorize(&other_serial), Err(Error::WrongCertificate));

    let late = record_with(&w, |r| {
        r.signed_at = cert.expires_at.saturating_add(Duration::from_millis(1))
    });
    assert!(matches!(cert.authorize(&late), Err(Error::Expired { .. })));

    let beyond = record_with(&w, |r| {
        r.sequence = cert.first_sequence + u64::from(cert.max_payments)
    });
    assert_eq!(
        cert.authorize(&beyond),
        Err(Error::SequenceOutOfRange {
            sequence: 11,
            first: 1,
            max_payments: 10
        })
    );
    let before = record_with(&w, |r| r.sequence = 0);
    assert!(matches!(
        cert.authorize(&before),
        Err(Error::SequenceOutOfRange { .. })
    ));

    let over_available = record_with(&w, |r| r.cumulative = eur(5_001));
    assert_eq!(
        cert.authorize(&over_available),
        Err(Error::AvailableExceeded {
            cumulative: eur(5_001),
            available: eur(5_000)
        })
    );

    // Requests signed by the merchant, varied one rule at a time.
    let request_with = |edit: &dyn Fn(&mut PaymentRequestPayload), rng: &mut rand::rngs::StdRng| {
        let mut p = w.request.payload.clone();
        edit(&mut p);
        let request = PaymentRequest::sign(p, &w.merchant, rng).unwrap();
        record_with(&w, |r| {
            r.cumulative = request.payload.amount;
            r.payment_request = request;
        })
    };
    let big = request_with(&|p| p.amount = eur(2_001), &mut rng);
    assert_eq!(
        cert.authorize(&big),
        Err(Error::PaymentCapExceeded {
            amount: eur(2_001),
            cap: eur(2_000)
        })
    );
    let restaurant = request_with(&|p| p.category = MerchantCategory::RESTAURANT, &mut rng);
    assert_eq!(
        cert.authorize(&restaurant),
        Err(Error::CategoryNotAllowed(MerchantCategory::RESTAURANT))
    );
    let abroad = request_with(&|p| p.region = Region::new("FR").unwrap(), &mut rng);
    assert_eq!(
        cert.authorize(&abroad),
        Err(Error::RegionNotAllowed(Region::new("FR").unwrap()))
    );
    let dollars = request_with(&|p| p.amount = Amount::new(5, Currency::USD), &mut rng);
    assert!(matches!(
        cert.authorize(&dollars),
        Err(Error::CurrencyMismatch { .. })
    ));
}

#[test]
fn sequence_ranges_do_not_overflow_at_the_top() {
    let w = world();
    let mut cert = w.balance_cert.payload.clone();
    cert.first_sequence = u64::MAX - 1;
    cert.max_payments = u32::MAX;
    assert!(!cert.covers_sequence(u64::MAX - 2));
    assert!(cert.covers_sequence(u64::MAX - 1));
    assert!(cert.covers_sequence(u64::MAX));
    cert.max_payments = 0;
    assert!(!cert.covers_sequence(u64::MAX - 1));
}

#[test]
fn coin_payments_must_add_up_exactly_without_repeats() {
    let w = world();
    let merchant = w.merchant_payload();
    assert!(w.coin_payment.verify(merchant, w.directory(), NOW).is_ok());

    // The 10-cent coin listed twice would count twice but redeem once.
    let mut repeated = w.coin_payment.clone();
    repeated.coins.push(repeated.coins[0].clone());
    assert_eq!(
        repeated.total(),
        Err(Error::DuplicateCoin(w.blind_coin.coin_id))
    );
    assert_eq!(
        repeated.verify(merchant, w.directory(), NOW).map(|_| ()),
        Err(Error::DuplicateCoin(w.blind_coin.coin_id))
    );

    // Short by five cents.
    let mut short = w.coin_payment.clone();
    short.coins.pop();
    assert_eq!(
        short.verify(merchant, w.directory(), NOW).map(|_| ()),
        Err(Error::AmountMismatch {
            expected: eur(15),
            found: eur(10)
        })
    );
}

#[test]
fn deposit_records_carry_a_checkable_device_signature() {
    let w = world();
    let record = w
        .deposit_record
        .verify(w.directory(), w.account(), NOW)
        .unwrap();
    assert_eq!(record.amount(), eur(10_000));
    // The issuer cannot credit a different amount than the device asked for: the embedded
    // request would no longer carry the device's signature.
    let mut rng = rng(12);
    let mut forged_request = w.deposit_request.clone();
    forged_request.payload.amount = eur(1);
    let forged = DepositRecord::sign(
        DepositRecordPayload {
            request: forged_request,
            credited_at: NOW,
        },
        &w.issuer.deposit_issuer,
        &mut rng,
    )
    .unwrap();
    assert_eq!(
        forged.verify(w.directory(), w.account(), NOW).map(|_| ()),
        Err(Error::BadSignature)
    );
}

#[test]
fn empty_validity_windows_are_refused_when_decoding() {
    let json = r#"{"not_before":20,"not_after":10}"#;
    assert!(serde_json::from_str::<Validity>(json).is_err());
    assert!(serde_json::from_str::<Validity>(r#"{"not_before":10,"not_after":10}"#).is_ok());
}

#[test]
fn signatures_must_be_exactly_modulus_sized() {
    // A signature whose first byte is zero also verifies mathematically without that byte
    // (or with an extra leading zero); accepting those would give one signed object several
    // encodings and content digests. Find such a signature, then try both spellings.
    let w = world();
    let key = fixtures::device(1);
    let mut seed = 0u64;
    let request = loop {
        let request = DepositRequest::sign(
            w.deposit_request.payload.clone(),
            &key,
            &mut rng(1_000 + seed),
        )
        .unwrap();
        if request.signature.as_bytes()[0] == 0 {
            break request;
        }
        seed += 1;
        assert!(seed < 5_000, "no signature with a leading zero byte found");
    };
    request.verify(w.account()).unwrap();
    let mut stripped = request.clone();
    stripped.signature.0.remove(0);
    assert_eq!(stripped.verify(w.account()), Err(Error::BadSignature));
    let mut padded = request.clone();
    padded.signature.0.insert(0, 0);
    assert_eq!(padded.verify(w.account()), Err(Error::BadSignature));
}
