//! Registration of accounts, devices and merchants; lookups of who is active.

use rand_core::CryptoRng;
use scrip_stores::{Claimant, CommitOutcome, RecordStore, Unit, Write};
use scrip_tokens::{
    codec, AccountCertificate, AccountCertificatePayload, AccountId, DeviceApproval, DeviceId,
    DeviceRegistration, MerchantCertificate, MerchantCertificatePayload, MerchantId,
    MerchantRegistration, Timestamp, Validity, VirtualId,
};

use crate::api::DeviceEnrollment;
use crate::authentication::Authenticated;
use crate::schema::{
    key2, AccountDoc, DeviceDoc, Mark, MerchantDoc, RawValue, ACCOUNTS, ACCOUNT_DEVICES, DEVICES,
    DEVICE_KEY, DEVICE_KEYS, FROZEN, MERCHANTS, MERCHANT_KEY, MERCHANT_KEYS, REVOKED_DEVICES,
    VIRTUAL_IDS,
};
use crate::{encode, FundingSource, Issuer, IssuerError, Result};

/// What opening an account gives the new device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountOpened {
    /// The new account.
    pub account_id: AccountId,
    /// The registered device.
    pub device_id: DeviceId,
    /// The account's virtual id (written into identified coins).
    pub virtual_id: VirtualId,
    /// The device's account certificate.
    pub certificate: AccountCertificate,
}

impl From<AccountOpened> for scrip_api::AccountOpenedBody {
    fn from(o: AccountOpened) -> Self {
        scrip_api::AccountOpenedBody {
            account_id: o.account_id,
            device_id: o.device_id,
            virtual_id: o.virtual_id,
            certificate: o.certificate,
        }
    }
}

/// A device registration ready to commit.
struct NewDevice {
    device_id: DeviceId,
    certificate: AccountCertificate,
    unit: Unit,
}

impl<S: RecordStore, F: FundingSource> Issuer<S, F> {
    /// Opens an account for the device whose (self-signed) registration this is, and
    /// certifies the device's key. A replayed registration returns the same account; a key
    /// registered before is refused.
    pub async fn open_account<G: CryptoRng + Send + ?Sized>(
        &self,
        registration: &DeviceRegistration,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<AccountOpened> {
        let registration = self.authenticate(registration).await?;
        self.open_account_authenticated(registration, now, rng)
            .await
    }

    /// [`Self::open_account`] for a registration whose signature was checked.
    pub async fn open_account_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        registration: Authenticated<'_, DeviceRegistration>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<AccountOpened> {
        let registration = registration.request();
        let payload = &registration.payload;
        if payload.account_id.is_some() {
            return Err(IssuerError::Unsupported(
                "opening an account: the registration must not name an account",
            ));
        }
        if let Some(device) = self.registered_before(registration).await? {
            let account = self.account(device.certificate.payload.account_id).await?;
            return Ok(AccountOpened {
                account_id: account.account_id,
                device_id: device.certificate.payload.device_id,
                virtual_id: account.virtual_id,
                certificate: device.certificate,
            });
        }
        let account_id = AccountId::random(rng);
        let virtual_id = VirtualId::random(rng);
        let account = AccountDoc {
            account_id,
            virtual_id,
            opened_at: now,
        };
        let NewDevice {
            device_id,
            certificate,
            unit,
        } = self.device_unit(registration, account_id, now, rng)?;
        let unit = unit
            .write(Write::put(
                ACCOUNTS,
                account_id.as_bytes().to_vec(),
                encode(&account)?,
            ))
            .write(Write::put(
                VIRTUAL_IDS,
                virtual_id.as_bytes().to_vec(),
                account_id.to_raw(),
            ));
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => Ok(AccountOpened {
                account_id,
                device_id,
                virtual_id,
                certificate,
            }),
            CommitOutcome::Repeated { .. } => {
                let device = self.device_by_key(registration).await?;
                let account = self.account(device.certificate.payload.account_id).await?;
                Ok(AccountOpened {
                    account_id: account.account_id,
                    device_id: device.certificate.payload.device_id,
                    virtual_id: account.virtual_id,
                    certificate: device.certificate,
                })
            }
            _ => Err(IssuerError::AlreadyRegistered),
        }
    }

    /// Adds a device to an account: the new key's self-signed registration naming the
    /// account, approved by a registered, active device of that account.
    pub async fn add_device<G: CryptoRng + Send + ?Sized>(
        &self,
        registration: &DeviceRegistration,
        approval: &DeviceApproval,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<AccountCertificate> {
        let enrollment = DeviceEnrollment {
            registration: registration.clone(),
            approval: approval.clone(),
        };
        let enrollment = self.authenticate(&enrollment).await?;
        self.add_device_authenticated(enrollment, now, rng).await
    }

    /// [`Self::add_device`] for an enrollment whose two signatures were checked.
    pub async fn add_device_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        enrollment: Authenticated<'_, DeviceEnrollment>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<AccountCertificate> {
        let approver = enrollment.signer();
        let DeviceEnrollment {
            registration,
            approval,
        } = enrollment.request();
        let payload = &registration.payload;
        let Some(account_id) = payload.account_id else {
            return Err(IssuerError::Unsupported(
                "adding a device: name the account",
            ));
        };
        self.check_active(approver, account_id, now).await?;
        let approved = &approval.payload;
        if approved.account_id != account_id {
            return Err(scrip_tokens::Error::WrongAccount.into());
        }
        if approved.new_device_key != payload.device_key.key_id() {
            return Err(scrip_tokens::Error::UnknownKey(approved.new_device_key).into());
        }
        if let Some(device) = self.registered_before(registration).await? {
            return Ok(device.certificate);
        }
        let device = self.device_unit(registration, account_id, now, rng)?;
        match self.store.commit(device.unit).await? {
            CommitOutcome::Committed => Ok(device.certificate),
            CommitOutcome::Repeated { .. } => {
                Ok(self.device_by_key(registration).await?.certificate)
            }
            _ => Err(IssuerError::AlreadyRegistered),
        }
    }

    /// Registers a device for an account on the operator's authority, without approval
    /// by another device: the recovery path when every device of the account is lost
    /// (the operator has checked the holder's identity out of band).
    pub async fn recover_account<G: CryptoRng + Send + ?Sized>(
        &self,
        registration: &DeviceRegistration,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<AccountCertificate> {
        let registration = self.authenticate(registration).await?;
        self.recover_account_authenticated(registration, now, rng)
            .await
    }

    /// [`Self::recover_account`] for a registration whose signature was checked.
    pub async fn recover_account_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        registration: Authenticated<'_, DeviceRegistration>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<AccountCertificate> {
        let registration = registration.request();
        let payload = &registration.payload;
        let Some(account_id) = payload.account_id else {
            return Err(IssuerError::Unsupported(
                "account recovery: name the account",
            ));
        };
        self.account(account_id).await?;
        if let Some(device) = self.registered_before(registration).await? {
            return Ok(device.certificate);
        }
        let device = self.device_unit(registration, account_id, now, rng)?;
        match self.store.commit(device.unit).await? {
            CommitOutcome::Committed => Ok(device.certificate),
            CommitOutcome::Repeated { .. } => {
                Ok(self.device_by_key(registration).await?.certificate)
            }
            _ => Err(IssuerError::AlreadyRegistered),
        }
    }

    /// The unit registering a device key under `account_id`, and its new certificate.
    fn device_unit<G: CryptoRng + ?Sized>(
        &self,
        registration: &DeviceRegistration,
        account_id: AccountId,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<NewDevice> {
        let keys = self.keys();
        let device_id = DeviceId::random(rng);
        let key = &registration.payload.device_key;
        let signer = keys.account_certifier.current(now)?;
        let not_after = signer.cap(now.saturating_add(self.config.account_certificate_lifetime));
        let certificate = AccountCertificate::sign(
            AccountCertificatePayload {
                account_id,
                device_id,
                device_key: key.clone(),
                validity: Validity::new(now, not_after)?,
            },
            &signer.key,
            rng,
        )?;
        let device = DeviceDoc {
            certificate: certificate.clone(),
            registered_at: now,
        };
        let key_id = key.key_id();
        let unit = Unit::new(Claimant::Issuer, now)
            .claim(
                DEVICE_KEY.claim(key_id.as_bytes().to_vec()),
                codec::digest(registration)?,
            )
            .write(Write::put(
                DEVICES,
                device_id.as_bytes().to_vec(),
                encode(&device)?,
            ))
            .write(Write::put(
                DEVICE_KEYS,
                key_id.as_bytes().to_vec(),
                device_id.to_raw(),
            ))
            .write(Write::put(
                ACCOUNT_DEVICES,
                key2(account_id.as_bytes(), device_id.as_bytes()),
                Vec::new(),
            ));
        Ok(NewDevice {
            device_id,
            certificate,
            unit,
        })
    }

    /// The device `registration` registered, if these very bytes were registered before
    /// (`AlreadyRegistered` if its key was registered by another registration). Read before
    /// anything is signed, so that a replayed registration (one self-signed body, resent
    /// for as long as its clock window admits it) costs a read, not a certificate
    /// signature. Two first sends racing both sign; the store keeps one, and
    /// [`CommitOutcome::Repeated`] answers the other from it.
    async fn registered_before(
        &self,
        registration: &DeviceRegistration,
    ) -> Result<Option<DeviceDoc>> {
        let key_id = registration.payload.device_key.key_id();
        let claim = DEVICE_KEY.claim(key_id.as_bytes().to_vec());
        match self.held_claim(claim).await? {
            Some(held) if held.digest == codec::digest(registration)? => {
                Ok(Some(self.device_by_key(registration).await?))
            }
            Some(_) => Err(IssuerError::AlreadyRegistered),
            None => Ok(None),
        }
    }

    async fn device_by_key(&self, registration: &DeviceRegistration) -> Result<DeviceDoc> {
        let key_id = registration.payload.device_key.key_id();
        let device_id = self
            .raw_value(DEVICE_KEYS, key_id.as_bytes())
            .await?
            .ok_or_else(|| IssuerError::Corrupted("registered key without device".into()))?;
        self.device(device_id).await
    }

    /// Registers a merchant (the operator authorizes this call) and certifies its key,
    /// category and region.
    pub async fn register_merchant<G: CryptoRng + Send + ?Sized>(
        &self,
        registration: &MerchantRegistration,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantCertificate> {
        let registration = self.authenticate(registration).await?;
        self.register_merchant_authenticated(registration, now, rng)
            .await
    }

    /// [`Self::register_merchant`] for a registration whose signature was checked.
    pub async fn register_merchant_authenticated<G: CryptoRng + Send + ?Sized>(
        &self,
        registration: Authenticated<'_, MerchantRegistration>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<MerchantCertificate> {
        let registration = registration.request();
        let payload = &registration.payload;
        let keys = self.keys();
        let merchant_id = MerchantId::random(rng);
        let signer = keys.merchant_certifier.current(now)?;
        let not_after = signer.cap(now.saturating_add(self.config.merchant_certificate_lifetime));
        let certificate = MerchantCertificate::sign(
            MerchantCertificatePayload {
                merchant_id,
                merchant_key: payload.merchant_key.clone(),
                category: payload.category,
                region: payload.region.clone(),
                validity: Validity::new(now, not_after)?,
            },
            &signer.key,
            rng,
        )?;
        let doc = MerchantDoc {
            certificate: certificate.clone(),
            registered_at: now,
        };
        let key_id = payload.merchant_key.key_id();
        let unit = Unit::new(Claimant::Issuer, now)
            .claim(
                MERCHANT_KEY.claim(key_id.as_bytes().to_vec()),
                codec::digest(registration)?,
            )
            .write(Write::put(
                MERCHANTS,
                merchant_id.as_bytes().to_vec(),
                encode(&doc)?,
            ))
            .write(Write::put(
                MERCHANT_KEYS,
                key_id.as_bytes().to_vec(),
                merchant_id.to_raw(),
            ));
        match self.store.commit(unit).await? {
            CommitOutcome::Committed => Ok(certificate),
            CommitOutcome::Repeated { .. } => {
                let merchant_id = self
                    .raw_value(MERCHANT_KEYS, key_id.as_bytes())
                    .await?
                    .ok_or_else(|| {
                        IssuerError::Corrupted("registered key without merchant".into())
                    })?;
                Ok(self.merchant(merchant_id).await?.certificate)
            }
            _ => Err(IssuerError::AlreadyRegistered),
        }
    }

    /// An account.
    pub async fn account(&self, account_id: AccountId) -> Result<AccountDoc> {
        self.doc(ACCOUNTS, account_id.as_bytes())
            .await?
            .ok_or(IssuerError::UnknownAccount(account_id))
    }

    /// The account behind a virtual id (names the holder of identified coins; unknown if
    /// the index entry is unreadable: it only enriches the fraud log).
    pub async fn account_of_virtual_id(&self, virtual_id: VirtualId) -> Result<Option<AccountId>> {
        self.evidence(VIRTUAL_IDS, virtual_id.as_bytes()).await
    }

    /// A registered device.
    /// Its key verifies on the issuer's backend (parsed for it here, once per lookup: the
    /// request, its records and its certificate checks all use this one).
    pub async fn device(&self, device_id: DeviceId) -> Result<DeviceDoc> {
        let mut doc: DeviceDoc = self
            .doc(DEVICES, device_id.as_bytes())
            .await?
            .ok_or(IssuerError::UnknownDevice(device_id))?;
        let key = &mut doc.certificate.payload.device_key;
        *key = key.on_backend(self.config.backend);
        Ok(doc)
    }

    /// A registered merchant, its key verifying on the issuer's backend (as for
    /// [`Self::device`]).
    pub async fn merchant(&self, merchant_id: MerchantId) -> Result<MerchantDoc> {
        let mut doc: MerchantDoc = self
            .doc(MERCHANTS, merchant_id.as_bytes())
            .await?
            .ok_or(IssuerError::UnknownMerchant(merchant_id))?;
        let key = &mut doc.certificate.payload.merchant_key;
        *key = key.on_backend(self.config.backend);
        Ok(doc)
    }

    /// Why the account is frozen, if it is.
    pub async fn frozen(&self, account_id: AccountId) -> Result<Option<Mark>> {
        self.doc(FROZEN, account_id.as_bytes()).await
    }

    /// When the device was revoked, if it was.
    pub async fn revoked(&self, device_id: DeviceId) -> Result<Option<Mark>> {
        self.doc(REVOKED_DEVICES, device_id.as_bytes()).await
    }

    /// Checks that the device belongs to `account_id`, is not revoked and its certificate
    /// is valid at `now` (whether or not the account is frozen).
    pub(crate) async fn check_unrevoked(
        &self,
        device: &DeviceDoc,
        account_id: AccountId,
        now: Timestamp,
    ) -> Result<()> {
        let certificate = &device.certificate.payload;
        if certificate.account_id != account_id {
            return Err(scrip_tokens::Error::WrongAccount.into());
        }
        certificate.validity.check(now)?;
        if self.revoked(certificate.device_id).await?.is_some() {
            return Err(IssuerError::DeviceRevoked(certificate.device_id));
        }
        Ok(())
    }

    /// [`Self::check_unrevoked`], and the account is not frozen: the device may get
    /// certificates and coins.
    pub(crate) async fn check_active(
        &self,
        device: &DeviceDoc,
        account_id: AccountId,
        now: Timestamp,
    ) -> Result<()> {
        self.check_unrevoked(device, account_id, now).await?;
        if self.frozen(account_id).await?.is_some() {
            return Err(IssuerError::AccountFrozen(account_id));
        }
        Ok(())
    }
}
