//! The one error type of this crate.

use scrip_stores::StoreError;
use scrip_tokens::{
    AccountId, Amount, CertificateSerial, DeviceId, MerchantId, ReasonCode, RefundId, RequestId,
};

use crate::funding::FundingError;
use crate::payouts::PayoutError;

/// Why the issuer refused or failed a request.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    /// The request or a token in it does not verify (signature, binding, validity, rule).
    #[error("invalid request: {0}")]
    Invalid(#[from] scrip_tokens::Error),
    /// No such account.
    #[error("unknown account {0}")]
    UnknownAccount(AccountId),
    /// No such device.
    #[error("unknown device {0}")]
    UnknownDevice(DeviceId),
    /// No such merchant.
    #[error("unknown merchant {0}")]
    UnknownMerchant(MerchantId),
    /// The issuer never signed this balance certificate.
    #[error("unknown balance certificate {0}")]
    UnknownCertificate(CertificateSerial),
    /// The device was revoked (lost or stolen).
    #[error("device {0} is revoked")]
    DeviceRevoked(DeviceId),
    /// The account is frozen (equivocation or overspending was detected).
    #[error("account {0} is frozen")]
    AccountFrozen(AccountId),
    /// The operator asked to unfreeze an account that is not frozen.
    #[error("account {0} is not frozen")]
    AccountNotFrozen(AccountId),
    /// The merchant was revoked by the operator: its batches are refused.
    #[error("merchant {0} is revoked")]
    MerchantRevoked(MerchantId),
    /// A refund names a payment this merchant was not paid.
    #[error("merchant {merchant} was paid nothing for request {request}")]
    UnknownPayment {
        /// The merchant refunding.
        merchant: MerchantId,
        /// The request it named.
        request: RequestId,
    },
    /// A refund of the wrong kind for its payment.
    #[error("request {request} was paid by {paid_by}: {refund}")]
    WrongPaymentKind {
        /// The payment's request.
        request: RequestId,
        /// How it was paid ("coins", "withdrawal record").
        paid_by: &'static str,
        /// What refunds it instead.
        refund: &'static str,
    },
    /// Records of several accounts paid the request: a refund cannot tell whose it is.
    #[error("request {0} was paid by several accounts")]
    AmbiguousPayment(RequestId),
    /// With the earlier refunds, the refund would give back more than was paid.
    #[error("refunding {requested} would exceed the payment: {paid} paid, {refunded} refunded")]
    RefundExceedsPayment {
        /// What the payment brought the merchant.
        paid: Amount,
        /// What was refunded of it before.
        refunded: Amount,
        /// What this refund asked.
        requested: Amount,
    },
    /// The refund id was used before for another refund.
    #[error("refund id {0} was used for another refund")]
    RefundIdReused(RefundId),
    /// The voucher was withdrawn already, for other coins.
    #[error("the voucher of refund {0} was withdrawn already")]
    VoucherAlreadyUsed(RefundId),
    /// A merchant's swap holds a payment this merchant settled already (redeemed for
    /// account credit, or taken as coins by another swap): nothing was claimed or signed.
    #[error("the payment of request {0} was settled by this merchant already: upload it for its outcome")]
    AlreadyRedeemed(RequestId),
    /// The merchant's balance does not cover a refund (it was paid out or refunded
    /// already); the refund may be sent again once the merchant is credited again.
    #[error("merchant {merchant}'s balance does not cover the refund of {requested}")]
    MerchantBalanceShort {
        /// The merchant.
        merchant: MerchantId,
        /// The refund.
        requested: Amount,
    },
    /// The key is already registered.
    #[error("this key is already registered")]
    AlreadyRegistered,
    /// Not enough spendable balance for the request.
    #[error("insufficient funds: {requested} requested")]
    InsufficientFunds {
        /// What the request needed.
        requested: Amount,
    },
    /// The lock rules leave nothing to put on a certificate.
    #[error("nothing available for a balance certificate after locks")]
    NothingAvailable,
    /// Concurrent requests kept changing what this one depends on (a balance, a
    /// reservation, a device's coins) through every retry, so it was not done; sending it
    /// again is safe.
    #[error("{operation} lost every retry to concurrent requests; try again")]
    Contended {
        /// What was being done.
        operation: &'static str,
    },
    /// The idempotency key was used before for a different request.
    #[error("idempotency key reused for a different request")]
    IdempotencyKeyReused,
    /// The request asks for something the issuer does not offer (denomination, currency,
    /// an empty or oversized list).
    #[error("unsupported request: {0}")]
    Unsupported(&'static str),
    /// A withdrawal from a keyset outside its issuance window (not valid yet, or past
    /// `issue_until`): the wallet should take a fresh key directory.
    #[error("keyset {0} is not issuing coins now")]
    KeysetNotIssuing(scrip_tokens::KeysetId),
    /// A coin of a keyset whose acceptance window has ended: it is no longer redeemable
    /// (an unknown keyset is `unknown_keyset`).
    #[error("keyset {0} has expired; its coins are no longer accepted")]
    KeysetExpired(scrip_tokens::KeysetId),
    /// The funding source refused or failed.
    #[error("funding failed: {0}")]
    Funding(#[from] FundingError),
    /// The payout id was used before with another merchant or amount.
    #[error("payout id {0} was used before for another payout")]
    PayoutIdReused(scrip_tokens::PayoutId),
    /// The payout sink could not pay (unreachable, or its records disagree with the
    /// issuer's): the payout stays pending; sending it again finishes it.
    #[error("payout not made yet: {0}")]
    Payout(PayoutError),
    /// The record store failed; the outcome of the request is unknown and it may be
    /// retried.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// Keyring files could not be read or written.
    #[error("keyring: {0}")]
    Keyring(String),
    /// A file or socket operation of the server failed (data directory, listener).
    #[error("i/o: {0}")]
    Io(String),
    /// Another process holds the directory (a server runs on it): one data directory, one
    /// server.
    #[error("{0} is in use by another scrip process")]
    DirectoryInUse(std::path::PathBuf),
    /// Stored issuer state does not decode.
    #[error("corrupted issuer state: {0}")]
    Corrupted(String),
    /// Cluster mode (`--store postgres`) was asked for without a database to share.
    #[error("the postgres store needs a database URL (--database-url or SCRIP_DATABASE_URL)")]
    DatabaseUrlMissing,
    /// A setting that would differ between the processes of a cluster (each would answer
    /// by its own), refused in cluster mode.
    #[error("cluster mode: {0}")]
    ClusterConfig(&'static str),
    /// No operator published a keyring for the cluster yet, and a cluster server never
    /// generates one itself.
    #[error(
        "no keyring is published for this cluster: run `scrip-server keys init --keys-dir DIR \
         --database-url URL` (or `keys publish` for an existing keys directory) first"
    )]
    KeyringNotPublished,
    /// The keyring at hand is not the one the cluster serves.
    #[error(
        "the keyring {} (fingerprint {}) is not the cluster's keyring (epoch {epoch}, \
         fingerprint {}): distribute the published keys directory to this host, or publish \
         this one with `scrip-server keys publish`",
        .source_name, hex::encode(.local), hex::encode(.published)
    )]
    KeyringMismatch {
        /// Where the keyring at hand came from (a keys directory, or "provided").
        source_name: String,
        /// Its fingerprint.
        local: [u8; 32],
        /// The cluster's epoch.
        epoch: u64,
        /// The cluster's fingerprint.
        published: [u8; 32],
    },
    /// `keys init` on a directory that already holds a keyring (it never overwrites keys).
    #[error("{0} already holds a keyring; keys init never overwrites keys")]
    KeyringExists(std::path::PathBuf),
    /// `keys init` on a cluster that already serves a keyring.
    #[error(
        "the cluster already serves a keyring (epoch {epoch}, fingerprint {}): copy its keys \
         directory instead of generating another one",
        hex::encode(.fingerprint)
    )]
    KeyringAlreadyPublished {
        /// The cluster's epoch.
        epoch: u64,
        /// Its fingerprint.
        fingerprint: [u8; 32],
    },
    /// Another operator command changed the cluster's keyring between this one's read and
    /// its write; nothing was published.
    #[error(
        "the cluster's keyring changed while publishing (expected epoch {expected:?}, found \
         {found:?}); nothing was published: check the keys directory and run the command again"
    )]
    KeyringPublishRaced {
        /// The epoch this command read (`None`: nothing published).
        expected: Option<u64>,
        /// The epoch the cluster had when it wrote.
        found: Option<u64>,
    },
    /// This node's clock is further from the cluster's (the database server's) than the
    /// configured bound: its time decisions (freshness, expiry) would differ from the
    /// other nodes'.
    #[error(
        "this node's clock is {skew_ms} ms off the database server's, more than the allowed \
         {bound_ms} ms: fix its time synchronisation"
    )]
    ClockSkew {
        /// Node clock minus cluster clock, in milliseconds.
        skew_ms: i64,
        /// The bound, in milliseconds.
        bound_ms: u64,
    },
}

impl IssuerError {
    /// A stable, machine-readable code (snake_case) for answers to clients.
    pub fn code(&self) -> ReasonCode {
        match self {
            IssuerError::Invalid(e) => e.code(),
            IssuerError::UnknownAccount(_) => ReasonCode::UnknownAccount,
            IssuerError::UnknownDevice(_) => ReasonCode::UnknownDevice,
            IssuerError::UnknownMerchant(_) => ReasonCode::UnknownMerchant,
            IssuerError::UnknownCertificate(_) => ReasonCode::UnknownCertificate,
            IssuerError::DeviceRevoked(_) => ReasonCode::DeviceRevoked,
            IssuerError::AccountFrozen(_) => ReasonCode::AccountFrozen,
            IssuerError::AccountNotFrozen(_) => ReasonCode::AccountNotFrozen,
            IssuerError::MerchantRevoked(_) => ReasonCode::MerchantRevoked,
            IssuerError::UnknownPayment { .. } => ReasonCode::UnknownPayment,
            IssuerError::WrongPaymentKind { .. } => ReasonCode::WrongPaymentKind,
            IssuerError::AmbiguousPayment(_) => ReasonCode::AmbiguousPayment,
            IssuerError::RefundExceedsPayment { .. } => ReasonCode::RefundExceedsPayment,
            IssuerError::RefundIdReused(_) => ReasonCode::RefundIdReused,
            IssuerError::VoucherAlreadyUsed(_) => ReasonCode::VoucherAlreadyUsed,
            IssuerError::AlreadyRedeemed(_) => ReasonCode::AlreadyRedeemed,
            IssuerError::MerchantBalanceShort { .. } => ReasonCode::InsufficientFunds,
            IssuerError::AlreadyRegistered => ReasonCode::AlreadyRegistered,
            IssuerError::InsufficientFunds { .. } => ReasonCode::InsufficientFunds,
            IssuerError::NothingAvailable => ReasonCode::NothingAvailable,
            IssuerError::Contended { .. } => ReasonCode::Contended,
            IssuerError::IdempotencyKeyReused => ReasonCode::IdempotencyKeyReused,
            IssuerError::Unsupported(_) => ReasonCode::Unsupported,
            IssuerError::KeysetNotIssuing(_) => ReasonCode::KeysetNotIssuing,
            IssuerError::KeysetExpired(_) => ReasonCode::KeysetExpired,
            IssuerError::Funding(_) => ReasonCode::FundingFailed,
            IssuerError::PayoutIdReused(_) => ReasonCode::PayoutIdReused,
            IssuerError::Payout(PayoutError::Unavailable(_)) => ReasonCode::PayoutUnavailable,
            IssuerError::Payout(_) => ReasonCode::PayoutFailed,
            IssuerError::Store(
                scrip_stores::StoreError::InvalidUnit(_)
                | scrip_stores::StoreError::UnbalancedPostings { .. },
            ) => ReasonCode::InvalidRequest,
            IssuerError::Store(_) => ReasonCode::StoreError,
            IssuerError::Keyring(_) => ReasonCode::KeyringError,
            IssuerError::Io(_) => ReasonCode::IoError,
            IssuerError::DirectoryInUse(_) => ReasonCode::DirectoryInUse,
            IssuerError::Corrupted(_) => ReasonCode::CorruptedState,
            // The cluster errors stop a server or an operator command at start; no client
            // sees them. The closest existing codes keep `code()` total.
            IssuerError::DatabaseUrlMissing
            | IssuerError::ClusterConfig(_)
            | IssuerError::ClockSkew { .. } => ReasonCode::IoError,
            IssuerError::KeyringNotPublished
            | IssuerError::KeyringMismatch { .. }
            | IssuerError::KeyringExists(_)
            | IssuerError::KeyringAlreadyPublished { .. }
            | IssuerError::KeyringPublishRaced { .. } => ReasonCode::KeyringError,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = IssuerError> = std::result::Result<T, E>;
