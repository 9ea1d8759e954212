//! The one error type of this crate.

use scrip_tokens::{Amount, CoinId, RequestId};

/// Why a wallet operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// A token or message does not verify, or breaks a rule.
    #[error("invalid: {0}")]
    Invalid(#[from] scrip_tokens::Error),
    /// The wallet has no account certificate yet.
    #[error("the wallet is not registered yet")]
    NotRegistered,
    /// The wallet has no key directory to verify against.
    #[error("no key directory: fetch one from the issuer")]
    NoDirectory,
    /// The stored state could not be decrypted: wrong key, or the bytes were altered.
    #[error("wrong storage key, or the stored wallet was altered")]
    WrongKeyOrCorrupted,
    /// The stored state is in a format this release cannot read.
    #[error("stored wallet format {found} not supported (this release reads {supported})")]
    UnsupportedFormat {
        /// The version found.
        found: u16,
        /// The version this release reads.
        supported: u16,
    },
    /// A message was released before the state it depends on was saved.
    #[error("save the wallet before sending this message (generation {needed}, saved {saved})")]
    NotPersisted {
        /// The generation the message needs saved.
        needed: u64,
        /// The generation that was saved.
        saved: u64,
    },
    /// No balance certificate allows this payment; each candidate's reason is listed.
    #[error("no balance certificate allows this payment: {reasons:?}")]
    NoUsableCertificate {
        /// Why each certificate was ruled out (machine-readable codes).
        reasons: Vec<String>,
    },
    /// The wallet's coins cannot make up the exact amount (no change can be given
    /// offline).
    #[error("cannot pay exactly {requested} with the coins held (closest below: {closest_below}, closest above: {closest_above:?})")]
    ExactChangeImpossible {
        /// The requested amount.
        requested: Amount,
        /// The largest amount not above the request that the coins can make.
        closest_below: Amount,
        /// The smallest amount above the request that the coins can make, if any.
        closest_above: Option<Amount>,
    },
    /// This request was paid before.
    #[error("request {0} was already paid")]
    AlreadyPaid(RequestId),
    /// An answer said to come from the issuer does not verify (signature, key, or it
    /// answers another request): the wallet changed nothing.
    #[error("the issuer's answer does not verify, nothing changed: {0}")]
    UnverifiedAnswer(scrip_tokens::Error),
    /// The reply or response does not belong to anything the wallet is waiting for.
    #[error("unexpected reply: {0}")]
    Unexpected(&'static str),
    /// A coin from the issuer does not verify.
    #[error("coin {0} from the issuer does not verify")]
    BadCoin(CoinId),
    /// The request asks for something impossible (an empty withdrawal, a zero deposit).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// Result alias of this crate.
pub type Result<T, E = WalletError> = std::result::Result<T, E>;
