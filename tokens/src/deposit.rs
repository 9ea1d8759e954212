//! The pending-deposit flow: the device signs a request, the issuer credits the account
//! and returns a signed deposit record, the device later confirms it.

use serde::{Deserialize, Serialize};

use crate::certificates::AccountCertificatePayload;
use crate::keys::{DepositIssuer, Device, Signature};
use crate::signed::signed_token;
use crate::{AccountId, Amount, ContentDigest, DepositId, DeviceId, Error, Result, Timestamp};

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
        let payload = self.verify_with(&account.device_key)?;
        if payload.account_id != account.account_id {
            return Err(Error::WrongAccount);
        }
        if payload.device_id != account.device_id {
            return Err(Error::WrongDevice);
        }
        Ok(payload)
    }
}

/// The issuer's record of a credited deposit, carrying the device's request signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRecordPayload {
    /// The deposit (as in the request).
    pub deposit_id: DepositId,
    /// The credited account.
    pub account_id: AccountId,
    /// The requesting device.
    pub device_id: DeviceId,
    /// The credited amount.
    pub amount: Amount,
    /// When the issuer credited the account.
    pub credited_at: Timestamp,
    /// The device's signature over its [`DepositRequest`] (the session signature).
    pub device_signature: Signature,
}

signed_token!(
    /// A [`DepositRecordPayload`] signed by the issuer's deposit key.
    DepositRecord = DepositRecordPayload,
    signer: DepositIssuer,
    tag: "deposit-record"
);

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
        let payload = self.verify_with(&account.device_key)?;
        if payload.account_id != account.account_id {
            return Err(Error::WrongAccount);
        }
        if payload.device_id != account.device_id {
            return Err(Error::WrongDevice);
        }
        Ok(payload)
    }
}
