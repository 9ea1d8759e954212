//! Requests to the issuer and its answers. Every request from a device or merchant is
//! signed by its key and carries a creation time and a random nonce, so the transport can
//! reject stale and replayed requests; the issuer core verifies every signature before
//! acting.

use serde::{Deserialize, Serialize};

use crate::certificates::{Allowed, MerchantCategory, Region};
use crate::coin::{EndorsedCoinPayment, IdentifiedCoin};
use crate::deposit::DepositConfirmation;
use crate::keys::{BlindSignature, BlindedMessage, Device, Merchant, VerifyingKey};
use crate::payment::{CountersignedRecord, WithdrawalRecord};
use crate::reason::ReasonCode;
use crate::signed::{message, signed_token};
use crate::{
    AccountId, Amount, CoinId, Currency, DeviceId, Error, KeyId, KeysetId, MerchantId, Result,
    Timestamp,
};

/// A fresh random value per request, so two identical requests are distinguishable and a
/// replayed one is recognisable.
pub type Nonce = [u8; 16];

/// A device presents its key: to open an account (`account_id: None`) or to join one.
/// Signed by the presented key itself (proof of possession).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRegistrationPayload {
    /// The device's public key.
    pub device_key: VerifyingKey<Device>,
    /// The account to join, or `None` to open a new one.
    pub account_id: Option<AccountId>,
    /// When the device created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`DeviceRegistrationPayload`] signed by the key it presents.
    DeviceRegistration = DeviceRegistrationPayload,
    signer: Device,
    tag: "device-registration"
);

impl DeviceRegistration {
    /// Checks that the presented key signed the registration (proof of possession).
    pub fn verify(&self) -> Result<&DeviceRegistrationPayload> {
        self.verify_signature(&self.payload.device_key)
    }
}

/// An existing device of an account approves a new device's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceApprovalPayload {
    /// The account.
    pub account_id: AccountId,
    /// The approving (already registered) device.
    pub approving_device: DeviceId,
    /// Key id of the new device's key.
    pub new_device_key: KeyId,
    /// When the approving device signed.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`DeviceApprovalPayload`] signed by the approving device's key.
    DeviceApproval = DeviceApprovalPayload,
    signer: Device,
    tag: "device-approval"
);

/// A merchant presents its key, category and region. Signed by the presented key itself;
/// the operator authorizes the registration out of band.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRegistrationPayload {
    /// The merchant's public key.
    pub merchant_key: VerifyingKey<Merchant>,
    /// Merchant category code.
    pub category: MerchantCategory,
    /// Where it trades.
    pub region: Region,
    /// When the merchant created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`MerchantRegistrationPayload`] signed by the key it presents.
    MerchantRegistration = MerchantRegistrationPayload,
    signer: Merchant,
    tag: "merchant-registration"
);

impl MerchantRegistration {
    /// Checks that the presented key signed the registration (proof of possession).
    pub fn verify(&self) -> Result<&MerchantRegistrationPayload> {
        self.verify_signature(&self.payload.merchant_key)
    }
}

/// A lock the account holder puts on part of the balance, optionally lifted for a while.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLock {
    /// Minor units kept out of offline spending.
    pub amount: u64,
    /// The lock does not apply before this instant (a time-limited unlock).
    pub unlocked_until: Option<Timestamp>,
}

/// How much of the balance a balance certificate must leave untouched, and where it may
/// be spent. The locked amount is the largest of the rules that apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRules {
    /// Always keep at least this much (minor units) in the account.
    pub min_balance: u64,
    /// Keep this share of the balance, in basis points (0..=10000).
    pub locked_basis_points: u16,
    /// A lock chosen by the user, possibly lifted for a while.
    pub user_lock: Option<UserLock>,
    /// Merchant categories the certificate may pay.
    pub allowed_categories: Allowed<MerchantCategory>,
    /// Regions the certificate may pay in.
    pub allowed_regions: Allowed<Region>,
}

impl Default for LockRules {
    fn default() -> Self {
        LockRules {
            min_balance: 0,
            locked_basis_points: 0,
            user_lock: None,
            allowed_categories: Allowed::Any,
            allowed_regions: Allowed::Any,
        }
    }
}

impl LockRules {
    /// The amount (minor units) these rules keep out of a certificate when the spendable
    /// balance is `balance` at `now`: the largest of the minimum balance, the locked share,
    /// and the user lock unless it is lifted at `now`.
    pub fn locked(&self, balance: u64, now: Timestamp) -> Result<u64> {
        if self.locked_basis_points > 10_000 {
            return Err(Error::InvalidField {
                field: "locked_basis_points",
                reason: "above 10000 (100%)",
            });
        }
        // u64 * 10_000 fits in u128; rounding up keeps at least the requested share.
        let share = (u128::from(balance) * u128::from(self.locked_basis_points)).div_ceil(10_000);
        let share = u64::try_from(share).unwrap_or(u64::MAX);
        let user = match &self.user_lock {
            Some(lock) if lock.unlocked_until.is_none_or(|until| now > until) => lock.amount,
            _ => 0,
        };
        Ok(self.min_balance.max(share).max(user))
    }
}

/// A device asks for a balance certificate; it hands in the records it has not uploaded
/// yet and its history of deposit confirmations, which the issuer records first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceCertificateRequestPayload {
    /// The account.
    pub account_id: AccountId,
    /// The requesting device.
    pub device_id: DeviceId,
    /// Currency of the certificate.
    pub currency: Currency,
    /// At most this much (minor units); `None`: as much as the rules allow.
    pub requested_amount: Option<u64>,
    /// At most this many payments; `None`: the issuer's maximum.
    pub max_payments: Option<u32>,
    /// At most this per payment (minor units); `None`: the issuer's maximum.
    pub per_payment_cap: Option<u64>,
    /// Lock and restriction rules.
    pub lock: LockRules,
    /// Records the device signed that it has not seen uploaded.
    pub unsent_records: Vec<WithdrawalRecord>,
    /// Deposit confirmations from the device's history.
    pub deposit_confirmations: Vec<DepositConfirmation>,
    /// When the device created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`BalanceCertificateRequestPayload`] signed by the device's key.
    BalanceCertificateRequest = BalanceCertificateRequestPayload,
    signer: Device,
    tag: "balance-certificate-request"
);

/// A device hands in what the issuer has not seen from it (records it paid with, deposit
/// confirmations) without asking for a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequestPayload {
    /// The account.
    pub account_id: AccountId,
    /// The device.
    pub device_id: DeviceId,
    /// Records the device signed that it has not seen uploaded.
    pub unsent_records: Vec<WithdrawalRecord>,
    /// Deposit confirmations from the device's history.
    pub deposit_confirmations: Vec<DepositConfirmation>,
    /// When the device created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`SyncRequestPayload`] signed by the device's key.
    SyncRequest = SyncRequestPayload,
    signer: Device,
    tag: "sync-request"
);

/// A device asks for its account's statement (ledger entries) in one currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRequestPayload {
    /// The account.
    pub account_id: AccountId,
    /// The asking device (one of the account's).
    pub device_id: DeviceId,
    /// The currency.
    pub currency: Currency,
    /// Entries after this ledger sequence number (paging), or from the start.
    pub after_seq: Option<u64>,
    /// Most entries wanted (the issuer caps it).
    pub limit: u32,
    /// When the device created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`StatementRequestPayload`] signed by the device's key.
    StatementRequest = StatementRequestPayload,
    signer: Device,
    tag: "statement-request"
);

/// A device withdraws blind coins: one blinded message per coin, by denomination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindWithdrawalRequestPayload {
    /// The account to debit.
    pub account_id: AccountId,
    /// The requesting device.
    pub device_id: DeviceId,
    /// The keyset to sign with.
    pub keyset_id: KeysetId,
    /// (denomination in minor units, blinded coin message) per coin.
    pub coins: Vec<(u64, BlindedMessage)>,
    /// Chosen by the client; a retry with the same key gets the same answer and is
    /// debited once.
    #[serde(with = "crate::bytes::array")]
    pub idempotency_key: [u8; 32],
    /// When the device created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`BlindWithdrawalRequestPayload`] signed by the device's key.
    BlindWithdrawalRequest = BlindWithdrawalRequestPayload,
    signer: Device,
    tag: "blind-withdrawal-request"
);

/// The issuer's blind signatures, in the order of the request's coins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindWithdrawalResponse {
    /// The keyset signed with.
    pub keyset_id: KeysetId,
    /// One per requested coin.
    pub signatures: Vec<BlindSignature>,
}
message!(BlindWithdrawalResponse, tag: "blind-withdrawal-response");

/// A device withdraws identified coins (the issuer picks the ids and writes the holder's
/// virtual id into them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifiedWithdrawalRequestPayload {
    /// The account to debit.
    pub account_id: AccountId,
    /// The requesting device.
    pub device_id: DeviceId,
    /// Currency of the coins.
    pub currency: Currency,
    /// Face values of the coins, in minor units.
    pub amounts: Vec<u64>,
    /// Chosen by the client; a retry with the same key gets the same coins and is
    /// debited once.
    #[serde(with = "crate::bytes::array")]
    pub idempotency_key: [u8; 32],
    /// When the device created the request.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// An [`IdentifiedWithdrawalRequestPayload`] signed by the device's key.
    IdentifiedWithdrawalRequest = IdentifiedWithdrawalRequestPayload,
    signer: Device,
    tag: "identified-withdrawal-request"
);

/// The identified coins issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifiedWithdrawalResponse {
    /// The coins, in the order of the requested amounts.
    pub coins: Vec<IdentifiedCoin>,
}
message!(IdentifiedWithdrawalResponse, tag: "identified-withdrawal-response");

/// One thing a merchant redeems.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedemptionItem {
    /// Coins it accepted for one payment (all or nothing).
    Coins(EndorsedCoinPayment),
    /// A withdrawal record it countersigned.
    Record(CountersignedRecord),
}

/// A merchant's upload of the payments it accepted offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionBatchPayload {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// The items.
    pub items: Vec<RedemptionItem>,
    /// When the merchant created the batch.
    pub created_at: Timestamp,
    /// Random per request.
    #[serde(with = "crate::bytes::array")]
    pub nonce: Nonce,
}

signed_token!(
    /// A [`RedemptionBatchPayload`] signed by the merchant's key.
    RedemptionBatch = RedemptionBatchPayload,
    signer: Merchant,
    tag: "redemption-batch"
);

/// Why an item was refused: a stable machine-readable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectReason {
    /// Stable code (on the wire a snake_case string such as `bad_signature`,
    /// `payment_cap_exceeded`, `device_revoked`).
    pub code: ReasonCode,
    /// Human-readable detail.
    pub message: String,
}

impl From<&Error> for RejectReason {
    fn from(e: &Error) -> Self {
        RejectReason {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// The issuer's answer for one redemption item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedemptionOutcome {
    /// Credited to the merchant now.
    Accepted {
        /// The amount credited.
        credited: Amount,
    },
    /// Already credited to this merchant (an earlier upload of this item, or, for a
    /// record, the customer's copy): nothing credited twice.
    AlreadyAccepted {
        /// When it was first recorded.
        first_accepted_at: Timestamp,
    },
    /// Someone redeemed (some of) these coins first; none of this payment's coins were
    /// marked spent.
    DoubleSpent {
        /// When the first of the conflicting coins was redeemed.
        first_redeemed_at: Timestamp,
        /// The coins already spent.
        coins: Vec<CoinId>,
    },
    /// Refused.
    Invalid {
        /// Why.
        reason: RejectReason,
    },
}

/// What a merchant shows a wallet to get paid (over NFC, BLE, QR): its signed request and
/// its certificate, so the wallet can check both offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantOffer {
    /// The merchant's signed payment request.
    pub request: crate::PaymentRequest,
    /// The merchant's certificate.
    pub merchant_certificate: crate::MerchantCertificate,
}
message!(MerchantOffer, tag: "merchant-offer");

/// How a wallet pays an offer.
// A message built once per payment and sent away: the size of the larger variant does not
// matter, and unboxed fields keep it a plain serde type.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentAnswer {
    /// A withdrawal record, with the certificates a merchant needs to check it offline.
    ByRecord {
        /// The device-signed record.
        record: WithdrawalRecord,
        /// The paying device's account certificate.
        account_certificate: crate::AccountCertificate,
        /// The balance certificate the record is made under.
        balance_certificate: crate::BalanceCertificate,
    },
    /// Coins adding up exactly to the requested amount.
    ByCoins(crate::CoinPayment),
}
message!(PaymentAnswer, tag: "payment-answer");

/// The merchant's receipt: the record countersigned, or the coin payment endorsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentReceipt {
    /// For a payment by record.
    Record(CountersignedRecord),
    /// For a payment by coins.
    Coins(EndorsedCoinPayment),
}
message!(PaymentReceipt, tag: "payment-receipt");

/// A merchant's refusal of a payment answer, with a machine-readable reason. Signed, so
/// a wallet only takes coins back on the merchant's word, and keeps that word as evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRejectionPayload {
    /// The request the answer was for.
    pub request_id: crate::RequestId,
    /// Digest of the refused answer ([`crate::codec::digest`] of the [`PaymentAnswer`]).
    pub answer_digest: crate::ContentDigest,
    /// Why.
    pub reason: RejectReason,
    /// When the merchant refused.
    pub rejected_at: Timestamp,
}

signed_token!(
    /// A [`PaymentRejectionPayload`] signed by the merchant's key.
    PaymentRejection = PaymentRejectionPayload,
    signer: Merchant,
    tag: "payment-rejection"
);

/// The merchant's reply to a payment answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MerchantReply {
    /// Accepted: the receipt.
    Receipt(PaymentReceipt),
    /// Refused.
    Rejection(PaymentRejection),
}
message!(MerchantReply, tag: "merchant-reply");
