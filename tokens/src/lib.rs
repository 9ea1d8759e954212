#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod codec;
pub mod hazmat;
pub mod keys;

mod amount;
mod answers;
mod bytes;
mod certificates;
mod coin;
mod deposit;
mod directory;
mod error;
mod ids;
mod messages;
mod payment;
mod payouts;
mod reason;
mod received;
mod refund;
mod revocation;
mod signed;
mod swap;

#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;

pub use amount::{Amount, Currency};
pub use answers::{
    RedemptionReport, RedemptionReportPayload, Statement, StatementEntry, StatementPayload,
    SyncReport, SyncReportPayload,
};
pub use certificates::{
    AccountCertificate, AccountCertificatePayload, Allowed, BalanceCertificate,
    BalanceCertificatePayload, MerchantCategory, MerchantCertificate, MerchantCertificatePayload,
    Region,
};
pub use codec::Message;
pub use coin::{
    BlindCoin, BlindCoinMessage, Coin, CoinPayment, CoinVariant, EndorsedCoinPayment,
    EndorsedCoinPaymentPayload, IdentifiedCoin, IdentifiedCoinPayload, PendingCoin,
    MAX_COINS_PER_PAYMENT, SPEND_ID_TAG,
};
pub use deposit::{
    DepositConfirmation, DepositConfirmationPayload, DepositRecord, DepositRecordPayload,
    DepositRequest, DepositRequestPayload,
};
pub use directory::{
    DenominationKeyEntry, IssuerKeyEntry, KeyDirectory, Keyset, SignedKeyDirectory,
    MAX_DENOMINATIONS,
};
pub use error::{Error, Result};
pub use ids::{
    random_uuid, AccountId, CertificateSerial, CoinId, CoinSpendId, ContentDigest, DepositId,
    DeviceId, KeyId, KeysetId, MerchantId, PayoutId, RecordId, RefundId, RequestId, Timestamp,
    Validity, VirtualId,
};
pub use keys::{
    Backend, BlindSignature, BlindedMessage, DenominationSigningKey, DenominationVerifyingKey,
    PublicKey, Signature, SigningKey, VerifyingKey,
};
pub use messages::{
    BalanceCertificateRequest, BalanceCertificateRequestPayload, BlindWithdrawalRequest,
    BlindWithdrawalRequestPayload, BlindWithdrawalResponse, DeviceApproval, DeviceApprovalPayload,
    DeviceRegistration, DeviceRegistrationPayload, IdentifiedWithdrawalRequest,
    IdentifiedWithdrawalRequestPayload, IdentifiedWithdrawalResponse, LockRules, MerchantOffer,
    MerchantRegistration, MerchantRegistrationPayload, MerchantReply, Nonce, PaymentAnswer,
    PaymentReceipt, PaymentRejection, PaymentRejectionPayload, RedemptionBatch,
    RedemptionBatchPayload, RedemptionItem, RedemptionOutcome, RejectReason, StatementRequest,
    StatementRequestPayload, SyncRequest, SyncRequestPayload, UserLock,
};
pub use payment::{
    CountersignedRecord, CountersignedRecordPayload, PaymentRequest, PaymentRequestPayload,
    WithdrawalRecord, WithdrawalRecordPayload,
};
pub use payouts::{
    MerchantStatement, MerchantStatementPayload, MerchantStatementRequest,
    MerchantStatementRequestPayload, PayoutReceipt, PayoutReceiptPayload, PayoutRequest,
    PayoutRequestPayload, PayoutState, MAX_PAYOUT_REASON_LEN, MAX_PAYOUT_REFERENCE_LEN,
};
pub use reason::{ReasonCode, UnknownCode};
pub use received::{ReceivedBatch, ReceivedPayment};
pub use refund::{
    RefundReceipt, RefundReceiptPayload, RefundRequest, RefundRequestPayload, RefundVoucher,
    RefundVoucherPayload, VoucherWithdrawalRequest,
};
pub use revocation::{
    RevocationCache, RevocationEntry, RevocationList, RevocationListPayload, RevokedItem,
    MAX_REVOCATION_ENTRIES,
};
pub use signed::{Signed, SignedPayload};
pub use swap::{
    DeviceSwapRequest, DeviceSwapRequestPayload, MerchantSwapRequest, MerchantSwapRequestPayload,
    SwapOutcome, SwapReceipt, SwapReceiptPayload, SwapRequest, MAX_COINS_PER_SWAP,
};
