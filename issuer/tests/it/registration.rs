//! Onboarding: accounts with device keys (account certificates), more devices per
//! account approved by an existing device, merchants (merchant certificates), and the
//! registrations the issuer refuses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use rand::rngs::StdRng;
use scrip_issuer::IssuerError;
use scrip_stores::MemoryStore;
use scrip_tokens::fixtures::{self, NOW};
use scrip_tokens::keys::Device;
use scrip_tokens::*;

fn directory(issuer: &TestIssuer<MemoryStore>, rng: &mut StdRng) -> KeyDirectory {
    let signed = issuer.key_directory(NOW, rng).unwrap();
    signed
        .verify(fixtures::directory_root().verifying_key())
        .unwrap()
        .clone()
}

fn approval(
    signer: &SigningKey<Device>,
    account_id: AccountId,
    approving_device: DeviceId,
    new_key: KeyId,
    rng: &mut StdRng,
) -> DeviceApproval {
    DeviceApproval::sign(
        DeviceApprovalPayload {
            account_id,
            approving_device,
            new_device_key: new_key,
            created_at: NOW,
            nonce: nonce(rng),
        },
        signer,
        rng,
    )
    .unwrap()
}

fn merchant_registration(
    key: &SigningKey<scrip_tokens::keys::Merchant>,
    category: MerchantCategory,
    region: &str,
    rng: &mut StdRng,
) -> MerchantRegistration {
    MerchantRegistration::sign(
        MerchantRegistrationPayload {
            merchant_key: key.verifying_key().clone(),
            category,
            region: Region::new(region).unwrap(),
            created_at: NOW,
            nonce: nonce(rng),
        },
        key,
        rng,
    )
    .unwrap()
}

#[tokio::test]
async fn opening_an_account_certifies_the_device_key() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(1);
    let key = fixtures::device(1);
    let registration = registration(&key, None, &mut rng);
    let opened = issuer
        .open_account(&registration, NOW, &mut rng)
        .await
        .unwrap();

    let directory = directory(&issuer, &mut rng);
    let cert = opened.certificate.verify(&directory, NOW).unwrap();
    assert_eq!(cert.account_id, opened.account_id);
    assert_eq!(cert.device_id, opened.device_id);
    assert_eq!(&cert.device_key, key.verifying_key());
    assert_eq!(
        cert.validity,
        // A year, but never beyond the signing key's end.
        Validity::new(
            NOW,
            NOW.saturating_add(issuer.config().account_certificate_lifetime)
                .min(key_validity().not_after)
        )
        .unwrap()
    );
    assert_eq!(
        opened.certificate.key_id,
        issuer
            .keys()
            .account_certifier
            .current(NOW)
            .unwrap()
            .key_id()
    );
    // Valid while both it and the issuer key are (the fixture key ends first).
    opened
        .certificate
        .verify(&directory, NOW.saturating_add(DAY * 100))
        .unwrap();
    assert!(opened
        .certificate
        .verify(&directory, cert.validity.not_after.saturating_add(DAY))
        .is_err());
    assert!(opened
        .certificate
        .verify(&directory, NOW.saturating_sub(DAY))
        .is_err());

    // What the issuer keeps.
    let account = issuer.account(opened.account_id).await.unwrap();
    assert_eq!(account.virtual_id, opened.virtual_id);
    assert_eq!(account.opened_at, NOW);
    assert_eq!(
        issuer
            .account_of_virtual_id(opened.virtual_id)
            .await
            .unwrap(),
        Some(opened.account_id)
    );
    let device = issuer.device(opened.device_id).await.unwrap();
    assert_eq!(device.certificate, opened.certificate);
    assert_eq!(device.registered_at, NOW);
    assert_eq!(issuer.revoked(opened.device_id).await.unwrap(), None);
    assert_eq!(issuer.frozen(opened.account_id).await.unwrap(), None);

    // A replay of the identical registration (lost answer) returns the same account.
    let again = issuer
        .open_account(&registration, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(again, opened);

    // Two accounts have different ids and virtual ids.
    let other = issuer
        .open_account(
            &common::registration(&fixtures::device(2), None, &mut rng),
            NOW,
            &mut rng,
        )
        .await
        .unwrap();
    assert_ne!(other.account_id, opened.account_id);
    assert_ne!(other.virtual_id, opened.virtual_id);
    assert_ne!(other.device_id, opened.device_id);
}

#[tokio::test]
async fn an_account_has_several_devices_each_approved_by_an_existing_one() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(2);
    let phone = RawWallet::open(&issuer, 1, &mut rng).await;
    let watch = phone.add_device(&issuer, 2, &mut rng).await;
    // The new device approves a third one.
    let mut card = watch.add_device(&issuer, 3, &mut rng).await;

    let directory = directory(&issuer, &mut rng);
    let mut devices = Vec::new();
    for (wallet, n) in [(&phone, 1), (&watch, 2), (&card, 3)] {
        let cert = wallet.certificate.verify(&directory, NOW).unwrap();
        assert_eq!(cert.account_id, phone.account_id);
        assert_eq!(cert.device_id, wallet.device_id);
        assert_eq!(&cert.device_key, fixtures::device(n).verifying_key());
        assert_eq!(
            issuer.device(wallet.device_id).await.unwrap().certificate,
            wallet.certificate
        );
        devices.push(wallet.device_id);
    }
    devices.sort_unstable();
    devices.dedup();
    assert_eq!(devices.len(), 3);

    // Each device acts for the account: a deposit from one, a certificate for another.
    phone.deposit(&issuer, 1_000, &mut rng).await;
    let cert = card.certificate(&issuer, 300, NOW, &mut rng).await;
    cert.verify(&directory, &card.certificate.payload, NOW)
        .unwrap();
    assert_eq!(cert.payload.device_id, card.device_id);
    assert_eq!(issuer.balance(phone.account_id, EUR).await.unwrap(), 700);

    // A replay of the identical add-device request returns the same certificate.
    let key = fixtures::device(4);
    let registration = registration(&key, Some(phone.account_id), &mut rng);
    let approval = approval(
        &phone.key,
        phone.account_id,
        phone.device_id,
        key.key_id(),
        &mut rng,
    );
    let first = issuer
        .add_device(&registration, &approval, NOW, &mut rng)
        .await
        .unwrap();
    let again = issuer
        .add_device(&registration, &approval, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(again, first);
    first.verify(&directory, NOW).unwrap();
}

#[tokio::test]
async fn a_registration_must_be_signed_by_the_key_it_presents() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(3);
    let presented = fixtures::device(1);
    let signer = fixtures::device(2);
    let payload = DeviceRegistrationPayload {
        device_key: presented.verifying_key().clone(),
        account_id: None,
        created_at: NOW,
        nonce: nonce(&mut rng),
    };
    // Signed by another key (it names the signer's key id).
    let other = DeviceRegistration::sign(payload.clone(), &signer, &mut rng).unwrap();
    assert!(matches!(
        issuer.open_account(&other, NOW, &mut rng).await,
        Err(IssuerError::Invalid(Error::UnknownKey(_)))
    ));
    // Signed by another key but claiming the presented key's id.
    let forged = DeviceRegistration {
        key_id: presented.key_id(),
        ..other.clone()
    };
    assert!(matches!(
        issuer.open_account(&forged, NOW, &mut rng).await,
        Err(IssuerError::Invalid(Error::BadSignature))
    ));
    // A tampered payload under a genuine signature.
    let genuine = DeviceRegistration::sign(payload, &presented, &mut rng).unwrap();
    let mut tampered = genuine.clone();
    tampered.payload.device_key = signer.verifying_key().clone();
    assert!(issuer.open_account(&tampered, NOW, &mut rng).await.is_err());

    // Nothing was registered by the refusals: both keys can still open accounts.
    let opened = issuer.open_account(&genuine, NOW, &mut rng).await.unwrap();
    assert_eq!(
        &opened.certificate.payload.device_key,
        presented.verifying_key()
    );
    issuer
        .open_account(&registration(&signer, None, &mut rng), NOW, &mut rng)
        .await
        .unwrap();

    // An add-device registration signed by another key is refused the same way.
    let wallet = RawWallet::open(&issuer, 3, &mut rng).await;
    let new_key = fixtures::device(4);
    let bad = DeviceRegistration::sign(
        DeviceRegistrationPayload {
            device_key: new_key.verifying_key().clone(),
            account_id: Some(wallet.account_id),
            created_at: NOW,
            nonce: nonce(&mut rng),
        },
        &wallet.key,
        &mut rng,
    )
    .unwrap();
    let ok = approval(
        &wallet.key,
        wallet.account_id,
        wallet.device_id,
        new_key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer.add_device(&bad, &ok, NOW, &mut rng).await,
        Err(IssuerError::Invalid(_))
    ));
}

#[tokio::test]
async fn device_approvals_are_checked() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(4);
    let alice = RawWallet::open(&issuer, 1, &mut rng).await;
    let mallory = RawWallet::open(&issuer, 2, &mut rng).await;
    let new_key = fixtures::device(3);
    let joins_alice = registration(&new_key, Some(alice.account_id), &mut rng);

    // Approved by a device of another account (naming Alice's account).
    let foreign = approval(
        &mallory.key,
        alice.account_id,
        mallory.device_id,
        new_key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer
            .add_device(&joins_alice, &foreign, NOW, &mut rng)
            .await,
        Err(IssuerError::Invalid(Error::WrongAccount))
    ));
    // Approved by a device of another account, naming its own account.
    let own = approval(
        &mallory.key,
        mallory.account_id,
        mallory.device_id,
        new_key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer.add_device(&joins_alice, &own, NOW, &mut rng).await,
        Err(IssuerError::Invalid(Error::WrongAccount))
    ));
    // Naming Alice's device but signed by Mallory's key.
    let forged = approval(
        &mallory.key,
        alice.account_id,
        alice.device_id,
        new_key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer
            .add_device(&joins_alice, &forged, NOW, &mut rng)
            .await,
        Err(IssuerError::Invalid(Error::UnknownKey(_)))
    ));
    // Alice's genuine approval, but of another key than the one registering.
    let other_key = fixtures::device(4);
    let elsewhere = approval(
        &alice.key,
        alice.account_id,
        alice.device_id,
        other_key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer.add_device(&joins_alice, &elsewhere, NOW, &mut rng).await,
        Err(IssuerError::Invalid(Error::UnknownKey(id))) if id == other_key.key_id()
    ));
    // An approving device that does not exist.
    let ghost = approval(
        &alice.key,
        alice.account_id,
        DeviceId::random(&mut rng),
        new_key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer.add_device(&joins_alice, &ghost, NOW, &mut rng).await,
        Err(IssuerError::UnknownDevice(_))
    ));
    // A registration that names no account cannot join one.
    let no_account = registration(&new_key, None, &mut rng);
    let genuine = approval(
        &alice.key,
        alice.account_id,
        alice.device_id,
        new_key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer
            .add_device(&no_account, &genuine, NOW, &mut rng)
            .await,
        Err(IssuerError::Unsupported(_))
    ));
    // A registration naming an account cannot open a new one.
    assert!(matches!(
        issuer.open_account(&joins_alice, NOW, &mut rng).await,
        Err(IssuerError::Unsupported(_))
    ));
    // A revoked device approves nothing.
    let spare = alice.add_device(&issuer, 5, &mut rng).await;
    issuer.revoke_device(spare.device_id, NOW).await.unwrap();
    let by_revoked = approval(
        &spare.key,
        alice.account_id,
        spare.device_id,
        new_key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer.add_device(&joins_alice, &by_revoked, NOW, &mut rng).await,
        Err(IssuerError::DeviceRevoked(d)) if d == spare.device_id
    ));

    // None of that registered the key: Alice's genuine approval still works.
    let cert = issuer
        .add_device(&joins_alice, &genuine, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(cert.payload.account_id, alice.account_id);
    assert_eq!(&cert.payload.device_key, new_key.verifying_key());
}

/// The account certifier's key, counting its signatures.
struct CountingSigner {
    inner: std::sync::Arc<dyn scrip_tokens::keys::backend::PssSigner>,
    signed: std::sync::atomic::AtomicUsize,
}

impl scrip_tokens::keys::backend::PssSigner for CountingSigner {
    fn public_key(&self) -> &scrip_tokens::keys::PublicKey {
        self.inner.public_key()
    }
    fn sign_pss_sha256(
        &self,
        rng: &mut dyn rand::CryptoRng,
        message: &[u8],
    ) -> scrip_tokens::Result<Vec<u8>> {
        self.signed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.sign_pss_sha256(rng, message)
    }
}

/// A registration is self-signed and admitted again for as long as its clock window
/// lasts, so anyone can resend one: each resend is answered with the stored certificate,
/// and the issuer signs no new one (a certificate signature costs about twenty
/// verifications). The same holds for a device added to an account and for a key that a
/// new registration tries to register again.
#[tokio::test]
async fn a_replayed_registration_is_answered_without_signing_again() {
    let issuer = issuer(MemoryStore::new());
    let counting = std::sync::Arc::new(CountingSigner {
        inner: fixtures::account_certifier().signer(),
        signed: std::sync::atomic::AtomicUsize::new(0),
    });
    let mut keyring = fixture_keyring();
    keyring.account_certifier = scrip_issuer::RoleKeys::new(vec![scrip_issuer::IssuerKey {
        key: SigningKey::from_signer(counting.clone()).unwrap(),
        validity: key_validity(),
    }])
    .unwrap();
    issuer.replace_keyring(keyring);
    let signed = || counting.signed.load(std::sync::atomic::Ordering::SeqCst);
    let mut rng = rng(9);

    let key = fixtures::device(1);
    let opening = registration(&key, None, &mut rng);
    let first = issuer.open_account(&opening, NOW, &mut rng).await.unwrap();
    assert_eq!(signed(), 1);
    for _ in 0..3 {
        let again = issuer.open_account(&opening, NOW, &mut rng).await.unwrap();
        assert_eq!(again, first);
    }
    assert!(matches!(
        issuer
            .open_account(&registration(&key, None, &mut rng), NOW, &mut rng)
            .await,
        Err(IssuerError::AlreadyRegistered)
    ));
    assert_eq!(signed(), 1);

    let new_key = fixtures::device(2);
    let joining = registration(&new_key, Some(first.account_id), &mut rng);
    let approved = approval(
        &key,
        first.account_id,
        first.device_id,
        new_key.key_id(),
        &mut rng,
    );
    let added = issuer
        .add_device(&joining, &approved, NOW, &mut rng)
        .await
        .unwrap();
    for _ in 0..3 {
        let again = issuer
            .add_device(&joining, &approved, NOW, &mut rng)
            .await
            .unwrap();
        assert_eq!(again, added);
    }
    assert_eq!(signed(), 2);
}

#[tokio::test]
async fn a_key_is_registered_once() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(5);
    let alice = RawWallet::open(&issuer, 1, &mut rng).await;
    let bob = RawWallet::open(&issuer, 2, &mut rng).await;

    // The same key, a new registration (new nonce): refused.
    let key = fixtures::device(1);
    assert!(matches!(
        issuer
            .open_account(&registration(&key, None, &mut rng), NOW, &mut rng)
            .await,
        Err(IssuerError::AlreadyRegistered)
    ));
    // Bob's account cannot take Alice's key as a device either.
    let joins_bob = registration(&key, Some(bob.account_id), &mut rng);
    let approved = approval(
        &bob.key,
        bob.account_id,
        bob.device_id,
        key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer
            .add_device(&joins_bob, &approved, NOW, &mut rng)
            .await,
        Err(IssuerError::AlreadyRegistered)
    ));
    // Nor can Alice add her own key a second time.
    let joins_alice = registration(&key, Some(alice.account_id), &mut rng);
    let approved = approval(
        &alice.key,
        alice.account_id,
        alice.device_id,
        key.key_id(),
        &mut rng,
    );
    assert!(matches!(
        issuer
            .add_device(&joins_alice, &approved, NOW, &mut rng)
            .await,
        Err(IssuerError::AlreadyRegistered)
    ));
    // A key added as a device cannot open an account of its own.
    let watch = alice.add_device(&issuer, 3, &mut rng).await;
    assert!(matches!(
        issuer
            .open_account(&registration(&watch.key, None, &mut rng), NOW, &mut rng)
            .await,
        Err(IssuerError::AlreadyRegistered)
    ));
    // The refusals changed nothing: the original device still belongs to Alice.
    let device = issuer.device(alice.device_id).await.unwrap();
    assert_eq!(device.certificate, alice.certificate);
    assert_eq!(
        issuer
            .device(watch.device_id)
            .await
            .unwrap()
            .certificate
            .payload
            .account_id,
        alice.account_id
    );
    assert_eq!(IssuerError::AlreadyRegistered.code(), "already_registered");
}

#[tokio::test]
async fn merchant_registration_certifies_key_category_and_region() {
    let issuer = issuer(MemoryStore::new());
    let mut rng = rng(6);
    let key = fixtures::merchant(1);
    let registration = merchant_registration(&key, MerchantCategory::RESTAURANT, "FR-75", &mut rng);
    let certificate = issuer
        .register_merchant(&registration, NOW, &mut rng)
        .await
        .unwrap();

    let directory = directory(&issuer, &mut rng);
    let cert = certificate.verify(&directory, NOW).unwrap();
    assert_eq!(cert.category, MerchantCategory::RESTAURANT);
    assert_eq!(cert.region, Region::new("FR-75").unwrap());
    assert_eq!(&cert.merchant_key, key.verifying_key());
    assert_eq!(
        cert.validity,
        Validity::new(
            NOW,
            NOW.saturating_add(issuer.config().merchant_certificate_lifetime)
                .min(key_validity().not_after)
        )
        .unwrap()
    );
    assert_eq!(
        certificate.key_id,
        issuer
            .keys()
            .merchant_certifier
            .current(NOW)
            .unwrap()
            .key_id()
    );
    let stored = issuer.merchant(cert.merchant_id).await.unwrap();
    assert_eq!(stored.certificate, certificate);
    assert_eq!(stored.registered_at, NOW);

    // Replay: the same certificate. The same key again: refused.
    let again = issuer
        .register_merchant(&registration, NOW, &mut rng)
        .await
        .unwrap();
    assert_eq!(again, certificate);
    let second = merchant_registration(&key, MerchantCategory::GROCERY, "DE", &mut rng);
    assert!(matches!(
        issuer.register_merchant(&second, NOW, &mut rng).await,
        Err(IssuerError::AlreadyRegistered)
    ));

    // Another merchant, other category and region (a whole country).
    let transit = Shop::register_as(&issuer, 2, MerchantCategory::TRANSIT, "DE", &mut rng).await;
    let cert = transit.certificate.verify(&directory, NOW).unwrap();
    assert_eq!(cert.category, MerchantCategory::TRANSIT);
    assert_eq!(cert.region.as_str(), "DE");
    assert_ne!(cert.merchant_id, certificate.payload.merchant_id);

    // Signed by another key than the one presented: refused, nothing registered.
    let presented = fixtures::merchant(3);
    let forged = MerchantRegistration::sign(
        MerchantRegistrationPayload {
            merchant_key: presented.verifying_key().clone(),
            category: MerchantCategory::GROCERY,
            region: Region::new("DE-BY").unwrap(),
            created_at: NOW,
            nonce: nonce(&mut rng),
        },
        &fixtures::merchant(4),
        &mut rng,
    )
    .unwrap();
    assert!(matches!(
        issuer.register_merchant(&forged, NOW, &mut rng).await,
        Err(IssuerError::Invalid(_))
    ));
    let genuine = merchant_registration(&presented, MerchantCategory::GROCERY, "DE-BY", &mut rng);
    issuer
        .register_merchant(&genuine, NOW, &mut rng)
        .await
        .unwrap();
    // A merchant certificate is not an account certificate: no role confusion.
    assert!(matches!(
        directory.issuer_key::<scrip_tokens::keys::AccountCertifier>(certificate.key_id, NOW),
        Err(Error::WrongKeyRole { .. })
    ));
}
