//! The pending-deposit flow: the device signs a request, the issuer credits the account
//! and returns a signed deposit record, the device later confirms it.

use serde::{Deserialize, Serialize};

use crate::certificates::AccountCertificatePayload;
use crate::keys::{DepositIssuer, Device};
use crate::signed::signed_token;
use crate::{
    AccountId, Amount, ContentDigest, DepositId, DeviceId, Error, KeyDirectory, Result, Timestamp,
};

/// A device's request to credit its account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRequestPayload {
    /// Chosen by the device; a retried request carries the same id and is credited once.
    pub deposit_id: DepositId,
    /// The account to credit.
    pub account_id: AccountId,
    /// The requesting device.
    pub device_id: DeviceId,
    /// How much.
    pub amount: Amount,
    /// When the device created the request.
    pub created_at: Timestamp,
}

signed_token!(
    /// A [`DepositRequestPayload`] signed by the device's key (the "session signature").
    DepositRequest = DepositRequestPayload,
    signer: Device,
    tag: "deposit-request"
);

impl DepositRequest {
    /// Checks the device's signature under the key of `account` and that the request is
    /// for that account and device.
    pub fn verify(&self, account: &AccountCertificatePayload) -> Result<&DepositRequestPayload> {
        let payload = self.verify_signature(&account.device_key)?;
        if payload.account_id != account.account_id {
            return Err(Error::WrongAccount);
        }
        if payload.device_id != account.device_id {
            return Err(Error::WrongDevice);
        }
        Ok(payload)
    }
}

/// The issuer's record of a credited deposit. It carries the device's signed request (the
/// "session signature" of the pending-deposit design) whole, so anyone holding the record
/// can check both signatures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRecordPayload {
    /// The device's signed request: deposit id, account, device, amount.
    pub request: DepositRequest,
    /// When the issuer credited the account.
    pub credited_at: Timestamp,
}

signed_token!(
    /// A [`DepositRecordPayload`] signed by the issuer's deposit key.
    DepositRecord = DepositRecordPayload,
    signer: DepositIssuer,
    tag: "deposit-record"
);

impl DepositRecordPayload {
    /// The deposit id.
    pub fn deposit_id(&self) -> DepositId {
        self.request.payload.deposit_id
    }

    /// The credited amount.
    pub fn amount(&self) -> Amount {
        self.request.payload.amount
    }
}

impl DepositRecord {
    /// Checks the issuer's signature (key from `directory`, valid at `now`) and the
    /// embedded request's device signature under the key of `account`.
    pub fn verify(
        &self,
        directory: &KeyDirectory,
        account: &AccountCertificatePayload,
        now: Timestamp,
    ) -> Result<&DepositRecordPayload> {
        let payload = self.verify_in(directory, now)?;
        payload.request.verify(account)?;
        Ok(payload)
    }
}

/// The device's confirmation that it received and stored a deposit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositConfirmationPayload {
    /// The deposit.
    pub deposit_id: DepositId,
    /// The account.
    pub account_id: AccountId,
    /// The confirming device.
    pub device_id: DeviceId,
    /// [`crate::codec::digest`] of the [`DepositRecord`] the device stored.
    pub deposit_record_digest: ContentDigest,
    /// When the device confirmed.
    pub confirmed_at: Timestamp,
}

signed_token!(
    /// A [`DepositConfirmationPayload`] signed by the device's key.
    DepositConfirmation = DepositConfirmationPayload,
    signer: Device,
    tag: "deposit-confirmation"
);

impl DepositConfirmation {
    /// Checks the device's signature under the key of `account` and that the confirmation
    /// is from that account and device.
    pub fn verify(
        &self,
        account: &AccountCertificatePayload,
    ) -> Result<&DepositConfirmationPayload> {
        let payload = self.verify_signature(&account.device_key)?;
        if payload.account_id != account.account_id {
            return Err(Error::WrongAccount);
        }
        if payload.device_id != account.device_id {
            return Err(Error::WrongDevice);
        }
        Ok(payload)
    }
}
