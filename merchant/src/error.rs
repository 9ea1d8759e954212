//! The one error type of this crate.

use scrip_stores::StoreError;

/// Why the issuer could not be reached or refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The network or the server failed; retry later (syncing is safe to repeat).
    #[error("transport: {0}")]
    Transport(String),
    /// The issuer answered with an error.
    #[error("issuer refused ({code}): {message}")]
    Refused {
        /// Machine-readable code.
        code: scrip_tokens::ReasonCode,
        /// Detail.
        message: String,
    },
}

/// Why a merchant operation failed. Refusing a wallet's payment is not an error: it is a
/// signed rejection reply.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MerchantError {
    /// A token or message does not verify or decode.
    #[error("invalid: {0}")]
    Invalid(#[from] scrip_tokens::Error),
    /// No key directory is cached yet: sync once before accepting payments.
    #[error("no key directory: sync with the issuer first")]
    NoDirectory,
    /// The local store failed; the operation may be retried.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Talking to the issuer failed; nothing was lost, sync again later.
    #[error("issuer: {0}")]
    Client(#[from] ClientError),
    /// Local state does not decode.
    #[error("corrupted merchant state: {0}")]
    Corrupted(String),
    /// An answer said to come from the issuer does not verify (signature, key, or it
    /// answers another batch): nothing was applied. Sync again.
    #[error("the issuer's answer does not verify, nothing applied: {0}")]
    UnverifiedAnswer(scrip_tokens::Error),
    /// An offer in a currency this terminal does not take (its exposure limit's).
    #[error("this terminal takes only its exposure limit's currency, not {0}")]
    OtherCurrency(scrip_tokens::Currency),
    /// An offer for nothing.
    #[error("an offer must be for more than zero")]
    ZeroAmount,
    /// No coin payment is queued to take as coins, or the take was applied or cancelled
    /// already.
    #[error("no coin payment to take as coins (or that take is settled already)")]
    NothingToTake,
}

/// Result alias of this crate.
pub type Result<T, E = MerchantError> = std::result::Result<T, E>;
