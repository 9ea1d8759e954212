//! The one error type of this crate.

use scrip_tokens::{Amount, CoinId, Currency, DepositId, RequestId};

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
        reasons: Vec<scrip_tokens::ReasonCode>,
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
    /// The issuer's revocation list names the merchant: it will not be paid, and neither
    /// would a refund from it.
    #[error("the issuer revoked merchant {0}")]
    MerchantRevoked(scrip_tokens::MerchantId),
    /// This request was paid before.
    #[error("request {0} was already paid")]
    AlreadyPaid(RequestId),
    /// An answer said to come from the issuer does not verify (signature, key, or it
    /// answers another request): the wallet changed nothing.
    #[error("the issuer's answer does not verify, nothing changed: {0}")]
    UnverifiedAnswer(scrip_tokens::Error),
    /// No deposit request with this id is pending (it was completed, or never made here).
    #[error("no pending deposit {0}")]
    UnknownDeposit(DepositId),
    /// A deposit record answers no request this wallet has pending.
    #[error("a deposit record for no pending request (deposit {0})")]
    UnrequestedDepositRecord(DepositId),
    /// There is no certificate request to sign again.
    #[error("no pending certificate request")]
    NoPendingCertificateRequest,
    /// A withdrawal response answers no request this wallet has pending.
    #[error("an answer to no pending withdrawal")]
    UnrequestedWithdrawal,
    /// A withdrawal response does not match its request (number of coins, keyset or
    /// values): nothing was taken from it.
    #[error("a withdrawal answer that does not match the request")]
    MismatchedWithdrawal,
    /// A receipt for a payment this wallet is not waiting on.
    #[error("a receipt for no payment in flight (request {0})")]
    ReceiptForUnknownPayment(RequestId),
    /// A rejection of a payment this wallet is not waiting on.
    #[error("a rejection of no payment in flight (request {0})")]
    RejectionOfUnknownPayment(RequestId),
    /// No coins were handed over for this request (or they were answered already).
    #[error("no coins in flight for request {0}")]
    NoCoinsInFlight(RequestId),
    /// A coin from the issuer does not verify.
    #[error("coin {0} from the issuer does not verify")]
    BadCoin(CoinId),
    /// A deposit of zero.
    #[error("a deposit must be more than zero")]
    ZeroDeposit,
    /// A withdrawal of no coins.
    #[error("a withdrawal must ask for at least one coin")]
    EmptyWithdrawal,
    /// The directory has no keyset issuing coins of this currency now.
    #[error("no keyset issues {0} coins now")]
    NoOpenKeyset(Currency),
    /// A payment request for nothing (refused rather than paid with an empty payment).
    #[error("the payment request is for nothing")]
    ZeroRequest,
    /// An amount the current keyset's denominations cannot make: a refund voucher's (or
    /// nothing, or only with more than [`crate::MAX_VOUCHER_COINS`] coins), or one asked
    /// of [`crate::Wallet::change_request`].
    #[error("no coins of the current keyset make exactly {0}")]
    NoCoinsMake(Amount),
    /// The coin is not in the purse (unknown, spent, or handed over and awaiting an answer).
    #[error("coin {0} is not held")]
    CoinNotHeld(CoinId),
    /// The coins held are worth less than the amounts asked for.
    #[error("the coins held ({held}) are worth less than {needed}")]
    NotEnoughCoins {
        /// What the amounts add up to.
        needed: Amount,
        /// What the coins held are worth.
        held: Amount,
    },
    /// More coins than one request holds.
    #[error("{needed} coins needed, one request holds at most {max}")]
    TooManyCoins {
        /// Coins needed.
        needed: usize,
        /// The most one request holds.
        max: usize,
    },
    /// Sealing the state failed (the AEAD refused; it does so only for absurd sizes).
    #[error("sealing the wallet state failed")]
    Sealing,
}

/// Result alias of this crate.
pub type Result<T, E = WalletError> = std::result::Result<T, E>;
