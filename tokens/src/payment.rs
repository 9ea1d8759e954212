//! The account-based offline payment: a merchant's request, the device's withdrawal
//! record, and the merchant's countersignature (the receipt both sides keep).

use serde::{Deserialize, Serialize};

use crate::certificates::{
    AccountCertificatePayload, MerchantCategory, MerchantCertificatePayload, Region,
};
use crate::keys::{Device, Merchant};
use crate::signed::signed_token;
use crate::{
    AccountId, Amount, CertificateSerial, DeviceId, Error, MerchantId, RecordId, RequestId, Result,
    Timestamp,
};

/// What a merchant asks to be paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequestPayload {
    /// Unique per request; a wallet pays a request at most once.
    pub request_id: RequestId,
    /// The merchant asking.
    pub merchant_id: MerchantId,
    /// The price.
    pub amount: Amount,
    /// When the merchant created the request.
    pub created_at: Timestamp,
    /// The merchant's category (as in its certificate).
    pub category: MerchantCategory,
    /// Where the payment happens (as in, or within, its certificate's region).
    pub region: Region,
}

signed_token!(
    /// A [`PaymentRequestPayload`] signed by the merchant's key.
    PaymentRequest = PaymentRequestPayload,
    signer: Merchant,
    tag: "payment-request"
);

impl PaymentRequest {
    /// Checks the merchant's signature under the key of `merchant` (whose certificate the
    /// caller has verified), and that id, category and region agree with the certificate.
    pub fn verify(&self, merchant: &MerchantCertificatePayload) -> Result<&PaymentRequestPayload> {
        // Named first (nothing is acted on yet): a request of another merchant is
        // `WrongMerchant`, not a confusing `UnknownKey`.
        if self.payload.merchant_id != merchant.merchant_id {
            return Err(Error::WrongMerchant);
        }
        let payload = self.verify_signature(&merchant.merchant_key)?;
        if payload.category != merchant.category {
            return Err(Error::InvalidField {
                field: "category",
                reason: "differs from the merchant certificate",
            });
        }
        if !payload.region.is_within(&merchant.region) {
            return Err(Error::InvalidField {
                field: "region",
                reason: "outside the merchant certificate's region",
            });
        }
        Ok(payload)
    }
}

/// The device's promise to pay one payment request under one balance certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalRecordPayload {
    /// Chosen by the device; the issuer records each record id once.
    pub record_id: RecordId,
    /// The paying account.
    pub account_id: AccountId,
    /// The paying device.
    pub device_id: DeviceId,
    /// The balance certificate the payment is made under.
    pub certificate_serial: CertificateSerial,
    /// The device's monotonic payment counter. Two different records with the same
    /// (device, sequence) are proof of double spending.
    pub sequence: u64,
    /// Total of all records under this certificate, this one included.
    pub cumulative: Amount,
    /// When the device signed.
    pub signed_at: Timestamp,
    /// The merchant's signed request; the amount paid is its amount.
    pub payment_request: PaymentRequest,
}

signed_token!(
    /// A [`WithdrawalRecordPayload`] signed by the paying device's key.
    WithdrawalRecord = WithdrawalRecordPayload,
    signer: Device,
    tag: "withdrawal-record"
);

impl WithdrawalRecordPayload {
    /// The amount paid (the payment request's amount).
    pub fn amount(&self) -> Amount {
        self.payment_request.payload.amount
    }
}

impl WithdrawalRecord {
    /// Checks the device's signature under the key of `account` (whose certificate the
    /// caller has verified), that the record is for that account and device, and that
    /// the cumulative amount is in the payment's currency and covers the payment.
    ///
    /// The balance-certificate rules (cap, available amount, sequence range, category,
    /// region, expiry) are the merchant's and issuer's checks, not this one.
    pub fn verify(&self, account: &AccountCertificatePayload) -> Result<&WithdrawalRecordPayload> {
        let payload = self.verify_signature(&account.device_key)?;
        if payload.account_id != account.account_id {
            return Err(Error::WrongAccount);
        }
        if payload.device_id != account.device_id {
            return Err(Error::WrongDevice);
        }
        let amount = payload.amount();
        if amount.checked_cmp(&payload.cumulative)? == std::cmp::Ordering::Greater {
            return Err(Error::InvalidField {
                field: "cumulative",
                reason: "smaller than the payment itself",
            });
        }
        Ok(payload)
    }
}

/// The merchant's acceptance of a withdrawal record: the receipt both sides keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersignedRecordPayload {
    /// The device-signed record, exactly as received.
    pub record: WithdrawalRecord,
    /// When the merchant accepted it.
    pub accepted_at: Timestamp,
}

signed_token!(
    /// A [`CountersignedRecordPayload`] signed by the merchant's key.
    CountersignedRecord = CountersignedRecordPayload,
    signer: Merchant,
    tag: "countersigned-record"
);

impl CountersignedRecord {
    /// Checks the merchant's countersignature under the key of `merchant` (whose
    /// certificate the caller has verified), and that the record pays that merchant.
    /// The inner device signature is checked separately with
    /// [`WithdrawalRecord::verify`].
    pub fn verify(
        &self,
        merchant: &MerchantCertificatePayload,
    ) -> Result<&CountersignedRecordPayload> {
        let payload = self.verify_signature(&merchant.merchant_key)?;
        if payload.record.payload.payment_request.payload.merchant_id != merchant.merchant_id {
            return Err(Error::WrongMerchant);
        }
        Ok(payload)
    }
}
