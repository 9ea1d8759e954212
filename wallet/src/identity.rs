//! The device's identity: its key, registering it (alone or approved by another device of the
//! account), its account certificate, and the issuer's key directory it verifies against.

use std::time::Duration;

use rand_core::CryptoRng;
use scrip_tokens::keys::Device;
use scrip_tokens::{
    AccountCertificate, AccountCertificatePayload, AccountId, DeviceApproval,
    DeviceApprovalPayload, DeviceRegistration, DeviceRegistrationPayload, KeyDirectory, KeyId,
    RevocationCache, RevocationList, Timestamp, VerifyingKey,
};

use crate::{nonce, Result, Unreleased, Wallet, WalletError};

impl Wallet {
    /// The device key's id.
    pub fn device_key_id(&self) -> KeyId {
        self.key.key_id()
    }

    /// The device's public key.
    pub fn device_key(&self) -> &VerifyingKey<Device> {
        self.key.verifying_key()
    }

    /// The account certificate, once registered.
    pub fn account(&self) -> Option<&AccountCertificatePayload> {
        self.state.account.as_ref().map(|c| &c.payload)
    }

    pub(crate) fn registered(&self) -> Result<&AccountCertificate> {
        self.state
            .account
            .as_ref()
            .ok_or(WalletError::NotRegistered)
    }

    /// A registration presenting this device's key: to open an account (`None`) or to join
    /// `account` (then an existing device approves it with [`Wallet::approve_device`]).
    pub fn registration_request<G: CryptoRng + ?Sized>(
        &mut self,
        account: Option<AccountId>,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<Unreleased<DeviceRegistration>> {
        let registration = DeviceRegistration::sign(
            DeviceRegistrationPayload {
                device_key: self.key.verifying_key().clone(),
                account_id: account,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?;
        Ok(self.unreleased(registration))
    }

    /// This (registered) device approves another device's key joining the account.
    pub fn approve_device<G: CryptoRng + ?Sized>(
        &self,
        new_device_key: KeyId,
        now: Timestamp,
        rng: &mut G,
    ) -> Result<DeviceApproval> {
        let account = &self.registered()?.payload;
        Ok(DeviceApproval::sign(
            DeviceApprovalPayload {
                account_id: account.account_id,
                approving_device: account.device_id,
                new_device_key,
                created_at: now,
                nonce: nonce(rng),
            },
            &self.key,
            rng,
        )?)
    }

    /// Takes the account certificate the issuer returned for this device's registration.
    pub fn on_account_certificate(
        &mut self,
        certificate: AccountCertificate,
        now: Timestamp,
    ) -> Result<()> {
        let payload = certificate.verify(self.directory()?, now)?;
        if payload.device_key != *self.key.verifying_key() {
            return Err(scrip_tokens::Error::UnknownKey(payload.device_key.key_id()).into());
        }
        self.state.account = Some(certificate);
        self.touch();
        Ok(())
    }

    // ---- key directory --------------------------------------------------------------

    /// Takes a key directory fetched from the issuer (checked against the pinned root key).
    pub fn update_directory(
        &mut self,
        signed: scrip_tokens::SignedKeyDirectory,
        now: Timestamp,
    ) -> Result<()> {
        let directory = signed.verify(&self.state.root)?.clone();
        self.directory = Some(directory);
        self.state.directory = Some((signed, now));
        self.touch();
        Ok(())
    }

    /// How old the cached key directory is.
    pub fn directory_age(&self, now: Timestamp) -> Option<Duration> {
        self.state.directory.as_ref().map(|(_, at)| {
            Duration::from_millis(now.as_unix_millis().saturating_sub(at.as_unix_millis()))
        })
    }

    // ---- revocation list ------------------------------------------------------------

    /// Takes the issuer's revocation list (fetched with the key directory: the delta since
    /// [`RevocationCache::version`] of [`Self::revocations`], or the full list), verified
    /// against the key directory. A delta against another version or an older list
    /// changes nothing and is an error: fetch the full list. The wallet then refuses to
    /// pay a merchant the list names ([`WalletError::MerchantRevoked`]).
    pub fn update_revocations(&mut self, list: &RevocationList, now: Timestamp) -> Result<()> {
        let directory = self.directory.as_ref().ok_or(WalletError::NoDirectory)?;
        self.revocations.apply(list, directory, now)?;
        Ok(())
    }

    /// The revocation list held. It is not sealed with [`Self::save`] (the state's format
    /// stays as it was): keep `codec::encode(wallet.revocations())` beside the saved
    /// wallet and give it back with [`Self::set_revocations`] after loading, or fetch the
    /// full list again.
    pub fn revocations(&self) -> &RevocationCache {
        &self.revocations
    }

    /// Restores a revocation list kept beside the saved wallet.
    pub fn set_revocations(&mut self, revocations: RevocationCache) {
        self.revocations = revocations;
    }

    /// How old the revocation list held is (`None`: none yet).
    pub fn revocation_list_age(&self, now: Timestamp) -> Option<Duration> {
        self.revocations.age(now)
    }

    pub(crate) fn directory(&self) -> Result<&KeyDirectory> {
        self.directory.as_ref().ok_or(WalletError::NoDirectory)
    }
}
