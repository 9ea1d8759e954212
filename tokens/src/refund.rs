//! Refunds of settled payments. A payment is named by the merchant's payment request
//! ([`RequestId`]): both records and coin payments pay one signed request.
//!
//! - **Record payments** are refunded to the paying account: the merchant signs a
//!   [`RefundRequest`] and sends it to the issuer, which moves the amount from the
//!   merchant's credit to the account and answers with a signed [`RefundReceipt`].
//! - **Coin payments** are refunded as fresh coins, keeping the customer anonymous: the
//!   merchant signs a [`RefundVoucher`] and hands it to the customer offline (its bytes,
//!   over NFC or a QR code); the customer's wallet withdraws blind coins against it with a
//!   [`VoucherWithdrawalRequest`], which carries no account and no device signature.
//!
//! A voucher is a **bearer instrument**, like a coin: whoever holds its bytes can withdraw
//! it, once. The merchant hands it only to the customer, and the customer keeps it like
//! cash until it is withdrawn.

use serde::{Deserialize, Serialize};

use crate::certificates::MerchantCertificatePayload;
use crate::keys::{AnswerSigner, BlindedMessage, Merchant};
use crate::messages::Nonce;
use crate::signed::{message, signed_token};
use crate::{
    codec, AccountId, Amount, ContentDigest, Error, KeyDirectory, KeysetId, MerchantId, RefundId,
    RequestId, Result, Timestamp,
};

/// A merchant refunds (part of) a payment by withdrawal record to the account that paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequestPayload {
    /// The merchant refunding (it was paid).
    pub merchant_id: MerchantId,
    /// Chosen by the merchant, one per refund: sending the same refund again (signed
    /// again) is answered with the first receipt and pays once.
    pub refund_id: RefundId,
    /// The payment refunded: the id of the payment request the record paid.
    pub request_id: RequestId,
    /// How much to give back (more than zero; with earlier refunds of the payment, at most
    /// what was paid).
    pub amount: Amount,
    /// When the merchant created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`RefundRequestPayload`] signed by the merchant's key.
    RefundRequest = RefundRequestPayload,
    signer: Merchant,
    tag: "refund-request"
);

/// A merchant's promise to refund (part of) a coin payment as fresh coins, to whoever
/// presents it first. No nonce: it is made once and redeemed once, under its refund id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundVoucherPayload {
    /// The merchant refunding (it was paid).
    pub merchant_id: MerchantId,
    /// Chosen by the merchant, one per refund: the voucher is withdrawn once.
    pub refund_id: RefundId,
    /// The payment refunded: the id of the payment request the coins paid.
    pub request_id: RequestId,
    /// How much the coins withdrawn against it are worth together (more than zero).
    pub amount: Amount,
    /// When the merchant made it.
    pub created_at: Timestamp,
}

signed_token!(
    /// A [`RefundVoucherPayload`] signed by the merchant's key: a bearer instrument.
    RefundVoucher = RefundVoucherPayload,
    signer: Merchant,
    tag: "refund-voucher"
);

/// The customer withdraws blind coins against a voucher. Unsigned: the voucher (signed by
/// the merchant) is the authorization, and the request names no account, so the issuer
/// cannot link the coins to the customer. The coins must add up to exactly the voucher's
/// amount. Sending the same request again returns the same signatures; other coins
/// against a withdrawn voucher are refused (`voucher_already_used`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherWithdrawalRequest {
    /// The merchant-signed voucher.
    pub voucher: RefundVoucher,
    /// The keyset to sign with (one of the voucher's currency that issues now).
    pub keyset_id: KeysetId,
    /// (denomination in minor units, blinded coin message) per coin, as in a blind
    /// withdrawal.
    pub coins: Vec<(u64, BlindedMessage)>,
}
message!(VoucherWithdrawalRequest, tag: "voucher-withdrawal-request");

/// The issuer's answer to a [`RefundRequest`]: the refund was paid to the account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundReceiptPayload {
    /// The merchant that refunded.
    pub merchant_id: MerchantId,
    /// The refund.
    pub refund_id: RefundId,
    /// The payment refunded.
    pub request_id: RequestId,
    /// The account credited.
    pub account_id: AccountId,
    /// What this refund gave back.
    pub amount: Amount,
    /// Everything refunded of the payment so far, this refund included (as of when this
    /// refund was paid).
    pub refunded_total: Amount,
    /// When the refund was paid (the first time, for a repeated request).
    pub refunded_at: Timestamp,
    /// `codec::digest` of the signed refund request it answers.
    pub request_digest: ContentDigest,
    /// When the issuer answered.
    pub answered_at: Timestamp,
}

signed_token!(
    /// A [`RefundReceiptPayload`] signed by the issuer's answer key.
    RefundReceipt = RefundReceiptPayload,
    signer: AnswerSigner,
    tag: "refund-receipt"
);

/// The common checks of what a merchant signs for a refund: its merchant, and an amount
/// of something.
fn check_refund(merchant_id: MerchantId, amount: Amount, merchant: MerchantId) -> Result<()> {
    if merchant_id != merchant {
        return Err(Error::WrongMerchant);
    }
    if amount.minor_units == 0 {
        return Err(Error::InvalidField {
            field: "amount",
            reason: "a refund of nothing",
        });
    }
    Ok(())
}

impl RefundRequest {
    /// Checks that `merchant` (whose certificate the caller verified) signed it, and that
    /// it refunds more than nothing.
    pub fn verify(&self, merchant: &MerchantCertificatePayload) -> Result<&RefundRequestPayload> {
        check_refund(
            self.payload.merchant_id,
            self.payload.amount,
            merchant.merchant_id,
        )?;
        self.verify_signature(&merchant.merchant_key)
    }
}

impl RefundVoucher {
    /// Checks that `merchant` (whose certificate the caller verified) signed it, and that
    /// it is worth more than nothing.
    pub fn verify(&self, merchant: &MerchantCertificatePayload) -> Result<&RefundVoucherPayload> {
        check_refund(
            self.payload.merchant_id,
            self.payload.amount,
            merchant.merchant_id,
        )?;
        self.verify_signature(&merchant.merchant_key)
    }
}

impl RefundReceipt {
    /// Checks the issuer's signature under the answer key `directory` lists at `now`, and
    /// that the receipt answers `request` (its digest, merchant, refund, payment and
    /// amount). Count the refund as paid only after this.
    pub fn verify_for(
        &self,
        request: &RefundRequest,
        directory: &KeyDirectory,
        now: Timestamp,
    ) -> Result<&RefundReceiptPayload> {
        let payload = self.verify_in(directory, now)?;
        let asked = &request.payload;
        if payload.merchant_id != asked.merchant_id {
            return Err(Error::WrongMerchant);
        }
        if payload.request_digest != codec::digest(request)?
            || payload.refund_id != asked.refund_id
            || payload.request_id != asked.request_id
            || payload.amount != asked.amount
        {
            return Err(Error::InvalidField {
                field: "request_digest",
                reason: "the answer is for another request",
            });
        }
        Ok(payload)
    }
}
