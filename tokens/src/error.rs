//! The one error type of this crate.

use crate::{
    Amount, CoinId, Currency, KeyId, KeysetId, MerchantCategory, ReasonCode, Region, Timestamp,
};

/// Everything that can go wrong while building, encoding, decoding, signing or verifying
/// a token. Variants are precise so that callers (merchant rejections, issuer answers)
/// can map them to machine-readable reasons without parsing strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- money -------------------------------------------------------------------------
    /// Two amounts of different currencies were combined or compared.
    #[error("currency mismatch: expected {expected}, found {found}")]
    CurrencyMismatch {
        /// The currency the operation expected.
        expected: Currency,
        /// The currency it got.
        found: Currency,
    },
    /// An addition exceeded `u64::MAX` minor units.
    #[error("amount overflow")]
    AmountOverflow,
    /// A subtraction would go below zero.
    #[error("amount underflow: {minuend} - {subtrahend} is negative")]
    AmountUnderflow {
        /// Left operand, in minor units.
        minuend: u64,
        /// Right operand, in minor units.
        subtrahend: u64,
    },
    /// A currency code that is not three ASCII upper-case letters.
    #[error("invalid currency code")]
    InvalidCurrency,
    /// A field value outside its documented domain (region code, category, list length...).
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// Why it is invalid.
        reason: &'static str,
    },

    // --- codec -------------------------------------------------------------------------
    /// The input is longer than the decoder accepts.
    #[error("message too large: {len} bytes, limit {limit}")]
    TooLarge {
        /// Input length in bytes.
        len: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// The input carries another type's domain tag (or none at all).
    #[error("wrong message type: expected {expected}")]
    WrongType {
        /// The tag the decoder expected.
        expected: &'static str,
    },
    /// The input carries a format version this release cannot read.
    #[error("unsupported version {found} of {tag} (this release reads {supported})")]
    UnsupportedVersion {
        /// The type's domain tag.
        tag: &'static str,
        /// The version found in the input.
        found: u16,
        /// The version this release reads.
        supported: u16,
    },
    /// Bytes left over after a complete message.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// The input decodes but is not in canonical form (re-encoding differs).
    #[error("non-canonical encoding")]
    NonCanonical,
    /// The input is not a valid encoding of the expected type.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// Encoding failed (only possible for values that violate their own invariants).
    #[error("encoding failed: {0}")]
    Encoding(String),

    // --- keys --------------------------------------------------------------------------
    /// Key bytes or PEM text that do not parse as an RSA key of the accepted kind.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// An RSA modulus outside 2048..=4096 bits.
    #[error("unsupported RSA modulus size: {bits} bits (accepted: 2048..=4096)")]
    UnsupportedKeySize {
        /// Modulus size in bits.
        bits: usize,
    },
    /// No key with this id is known (in the key directory, or it is not the key given).
    #[error("unknown key {0}")]
    UnknownKey(KeyId),
    /// The key exists but belongs to another role than the token requires.
    #[error("key {key_id} has role {found}, expected {expected}")]
    WrongKeyRole {
        /// The key in question.
        key_id: KeyId,
        /// The role the token requires.
        expected: &'static str,
        /// The role the directory lists for it.
        found: &'static str,
    },
    /// The signing key is past its validity window.
    #[error("key {key_id} expired at {not_after}")]
    KeyExpired {
        /// The key in question.
        key_id: KeyId,
        /// End of its validity window.
        not_after: Timestamp,
    },
    /// The signing key's validity window has not started.
    #[error("key {key_id} not valid before {not_before}")]
    KeyNotYetValid {
        /// The key in question.
        key_id: KeyId,
        /// Start of its validity window.
        not_before: Timestamp,
    },
    /// No keyset with this id is known.
    #[error("unknown keyset {0}")]
    UnknownKeyset(KeysetId),
    /// The keyset has no key for this denomination.
    #[error("keyset {keyset_id} has no denomination of {minor_units} minor units")]
    UnknownDenomination {
        /// The keyset.
        keyset_id: KeysetId,
        /// The denomination asked for.
        minor_units: u64,
    },

    // --- verification ------------------------------------------------------------------
    /// The signature does not verify for the claimed key over the claimed content.
    #[error("bad signature")]
    BadSignature,
    /// The token is past its validity window.
    #[error("expired at {not_after} (now {now})")]
    Expired {
        /// End of the validity window.
        not_after: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The token's validity window has not started.
    #[error("not valid before {not_before} (now {now})")]
    NotYetValid {
        /// Start of the validity window.
        not_before: Timestamp,
        /// The time of the check.
        now: Timestamp,
    },
    /// The token belongs to another account than the one it is checked against.
    #[error("token belongs to another account")]
    WrongAccount,
    /// The token belongs to another device of the account.
    #[error("token belongs to another device")]
    WrongDevice,
    /// The token belongs to another merchant.
    #[error("token belongs to another merchant")]
    WrongMerchant,
    /// The record names another balance certificate than the one it is checked against.
    #[error("record was made under another balance certificate")]
    WrongCertificate,
    /// The record's sequence number is outside the certificate's range.
    #[error("sequence {sequence} outside the certificate's range {first}..{first}+{max_payments}")]
    SequenceOutOfRange {
        /// The record's sequence number.
        sequence: u64,
        /// The certificate's first sequence number.
        first: u64,
        /// The certificate's payment count.
        max_payments: u32,
    },
    /// A single payment above the certificate's per-payment cap.
    #[error("payment of {amount} exceeds the per-payment cap of {cap}")]
    PaymentCapExceeded {
        /// The payment.
        amount: Amount,
        /// The cap.
        cap: Amount,
    },
    /// Payments under the certificate would add up to more than it makes available.
    #[error("cumulative {cumulative} exceeds the certificate's available {available}")]
    AvailableExceeded {
        /// Total of the records under the certificate, this one included.
        cumulative: Amount,
        /// What the certificate makes available.
        available: Amount,
    },
    /// The certificate does not allow this merchant category.
    #[error("merchant category {0} not allowed by the certificate")]
    CategoryNotAllowed(MerchantCategory),
    /// The certificate does not allow payments in this region.
    #[error("region {0} not allowed by the certificate")]
    RegionNotAllowed(Region),
    /// The same coin appears twice in one payment.
    #[error("coin {0} appears twice in the payment")]
    DuplicateCoin(CoinId),
    /// The coins do not add up to the requested amount (no change can be given offline).
    #[error("coins add up to {found}, the request is for {expected}")]
    AmountMismatch {
        /// The requested amount.
        expected: Amount,
        /// The coins' total.
        found: Amount,
    },
    /// One key appears twice in a key directory or keyset (a key must serve one purpose:
    /// a blind key that also signed certificates would sign anything a wallet sends).
    #[error("key {0} is listed more than once in the directory")]
    DuplicateKey(KeyId),
    /// A blind-signature operation failed (blinding, signing or finalizing).
    #[error("blind signature operation failed: {0}")]
    Blind(String),
    /// Signing failed inside the RSA implementation.
    #[error("signing failed: {0}")]
    Signing(String),
    /// A private-key result failed its check under the public key (a fault in the
    /// computation); it was not released.
    #[error("a signature failed its check under the public key and was withheld")]
    SigningFault,
    /// The private key is held elsewhere (an HSM, a remote signer) and cannot be exported.
    #[error("the private key is not held in this process and cannot be exported")]
    KeyNotExportable,
    /// A crypto backend name that is not compiled in.
    #[error("unknown crypto backend {0}")]
    UnknownBackend(String),

    // --- revocation list -----------------------------------------------------------------
    /// A revocation list older than the one held: a replay cannot lift a revocation.
    #[error("revocation list version {received} is older than the version {held} held")]
    OutdatedRevocationList {
        /// The version held.
        held: u64,
        /// The version received.
        received: u64,
    },
    /// A revocation delta against another version than the one held: fetch the full list.
    #[error("revocation delta against version {base}, but version {held} is held")]
    RevocationDeltaBase {
        /// The version held.
        held: u64,
        /// The version the delta applies to.
        base: u64,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable, machine-readable code of the error, for rejection reasons
    /// that point-of-sale software and wallets act on without parsing messages.
    pub fn code(&self) -> ReasonCode {
        match self {
            Error::CurrencyMismatch { .. } => ReasonCode::CurrencyMismatch,
            Error::AmountOverflow => ReasonCode::AmountOverflow,
            Error::AmountUnderflow { .. } => ReasonCode::AmountUnderflow,
            Error::InvalidCurrency => ReasonCode::InvalidCurrency,
            Error::InvalidField { .. } => ReasonCode::InvalidField,
            Error::TooLarge { .. } => ReasonCode::TooLarge,
            Error::WrongType { .. } => ReasonCode::WrongType,
            Error::UnsupportedVersion { .. } => ReasonCode::UnsupportedVersion,
            Error::TrailingBytes { .. } => ReasonCode::TrailingBytes,
            Error::NonCanonical => ReasonCode::NonCanonical,
            Error::Malformed(_) => ReasonCode::Malformed,
            Error::Encoding(_) => ReasonCode::Encoding,
            Error::InvalidKey(_) => ReasonCode::InvalidKey,
            Error::UnsupportedKeySize { .. } => ReasonCode::UnsupportedKeySize,
            Error::UnknownKey(_) => ReasonCode::UnknownKey,
            Error::WrongKeyRole { .. } => ReasonCode::WrongKeyRole,
            Error::KeyExpired { .. } => ReasonCode::KeyExpired,
            Error::KeyNotYetValid { .. } => ReasonCode::KeyNotYetValid,
            Error::UnknownKeyset(_) => ReasonCode::UnknownKeyset,
            Error::UnknownDenomination { .. } => ReasonCode::UnknownDenomination,
            Error::BadSignature => ReasonCode::BadSignature,
            Error::Expired { .. } => ReasonCode::Expired,
            Error::NotYetValid { .. } => ReasonCode::NotYetValid,
            Error::WrongAccount => ReasonCode::WrongAccount,
            Error::WrongDevice => ReasonCode::WrongDevice,
            Error::WrongMerchant => ReasonCode::WrongMerchant,
            Error::WrongCertificate => ReasonCode::WrongCertificate,
            Error::SequenceOutOfRange { .. } => ReasonCode::SequenceOutOfRange,
            Error::PaymentCapExceeded { .. } => ReasonCode::PaymentCapExceeded,
            Error::AvailableExceeded { .. } => ReasonCode::AvailableExceeded,
            Error::CategoryNotAllowed(_) => ReasonCode::CategoryNotAllowed,
            Error::RegionNotAllowed(_) => ReasonCode::RegionNotAllowed,
            Error::DuplicateCoin(_) => ReasonCode::DuplicateCoin,
            Error::AmountMismatch { .. } => ReasonCode::AmountMismatch,
            Error::DuplicateKey(_) => ReasonCode::DuplicateKey,
            Error::Blind(_) => ReasonCode::BlindSignatureFailed,
            Error::Signing(_) | Error::SigningFault => ReasonCode::SigningFailed,
            Error::KeyNotExportable | Error::UnknownBackend(_) => ReasonCode::InvalidKey,
            Error::OutdatedRevocationList { .. } => ReasonCode::OutdatedRevocationList,
            Error::RevocationDeltaBase { .. } => ReasonCode::RevocationDeltaBase,
        }
    }
}
