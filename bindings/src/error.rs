//! [`ScripError`]: every failure the SDK reports, one exception class per variant in the
//! foreign languages. Variants that carry `code` carry the stable snake_case reason code
//! (`bad_signature`, `exact_change_impossible`, ...; every known one is listed by
//! [`crate::reason_codes`]), the same string the issuer's HTTP refusals and the
//! merchant's signed rejections use.

use scrip_merchant::MerchantError;
use scrip_tokens::ReasonCode;
use scrip_wallet::{SaveError, WalletError};

/// What went wrong in an SDK call. Nothing panics across the boundary: every Rust error
/// becomes one of these.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ScripError {
    /// Bytes passed to the call that do not decode as the message it expects, or that
    /// fail a check (signature, expiry, key, amount). `code` says which.
    #[error("{code}: {message}")]
    Invalid {
        /// The stable reason code.
        code: String,
        /// Detail for people.
        message: String,
    },
    /// An argument that is not usable: an unknown currency, a key that does not parse, a
    /// storage key of the wrong length.
    #[error("bad argument: {message}")]
    BadArgument {
        /// Detail for people.
        message: String,
    },
    /// The sealed state does not open with this key, or was altered.
    #[error("the sealed state does not open with this key, or was altered")]
    WrongKeyOrCorrupted,
    /// The sealed state is of a version this SDK does not read (a newer SDK wrote it):
    /// keep the bytes and update the app. The version is the envelope's
    /// (`versions().sealed_format`) or, inside it, the state's (`versions().wallet_state`,
    /// which also reads every older one).
    #[error("sealed state of version {found}; this SDK reads version {supported}")]
    UnsupportedStateVersion {
        /// The version in the bytes.
        found: u32,
        /// The version this SDK reads (and writes).
        supported: u32,
    },
    /// The wallet cannot do this now (not registered yet, no key directory, no usable
    /// certificate, an answer to nothing it asked, a merchant that was revoked, ...), or
    /// an issuer's answer does not verify (`code`: the failed check, e.g.
    /// `bad_signature`; nothing changed). `code` is the stable reason.
    #[error("{code}: {message}")]
    Wallet {
        /// The stable reason code.
        code: String,
        /// Detail for people.
        message: String,
    },
    /// The coins held cannot make this amount exactly: tell the user, or split coins
    /// while online.
    #[error("cannot pay {requested_minor} {currency} exactly with the coins held")]
    ExactChangeImpossible {
        /// The amount asked for, in minor units.
        requested_minor: u64,
        /// Its currency.
        currency: String,
        /// The largest amount at most `requested_minor` the coins make.
        closest_below_minor: u64,
        /// The smallest amount above it they make, if any.
        closest_above_minor: Option<u64>,
    },
    /// The point of sale cannot do this (no key directory yet, another currency, its
    /// store failed), or an issuer's answer does not verify (`code`: the failed check;
    /// nothing changed). `code` is the stable reason.
    #[error("{code}: {message}")]
    Merchant {
        /// The stable reason code.
        code: String,
        /// Detail for people.
        message: String,
    },
    /// The issuer refused the request (an HTTP refusal with its reason code).
    #[error("the issuer refused: {code}: {message}")]
    Refused {
        /// The stable reason code.
        code: String,
        /// Detail for people.
        message: String,
    },
    /// The issuer could not be reached, or answered something that is not scrip.
    #[error("transport: {message}")]
    Transport {
        /// Detail for people.
        message: String,
    },
    /// The app's storage callback failed: nothing was released and the wallet went back
    /// to the state last stored; the same call can be retried.
    #[error("the app's storage failed: {message}")]
    Storage {
        /// What the app reported.
        message: String,
    },
}

/// The result of an SDK call.
pub type Result<T, E = ScripError> = std::result::Result<T, E>;

impl ScripError {
    pub(crate) fn bad_argument(message: impl Into<String>) -> Self {
        ScripError::BadArgument {
            message: message.into(),
        }
    }

    /// The stable reason code of this error, for the variants that have one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ScripError::Invalid { code, .. }
            | ScripError::Wallet { code, .. }
            | ScripError::Merchant { code, .. }
            | ScripError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

fn invalid(e: &scrip_tokens::Error) -> ScripError {
    ScripError::Invalid {
        code: e.code().as_str().to_owned(),
        message: e.to_string(),
    }
}

impl From<scrip_tokens::Error> for ScripError {
    fn from(e: scrip_tokens::Error) -> Self {
        invalid(&e)
    }
}

/// The stable code a wallet error is reported under: the token error's own for checks
/// that failed, else a code of the wallet's own (the snake_case name of its situation).
fn wallet_code(e: &WalletError) -> String {
    let own = match e {
        WalletError::Invalid(inner) | WalletError::UnverifiedAnswer(inner) => {
            return inner.code().as_str().to_owned()
        }
        WalletError::NotRegistered => "not_registered",
        WalletError::NoDirectory => "no_directory",
        WalletError::NotPersisted { .. } => "not_persisted",
        WalletError::NoUsableCertificate { .. } => "no_usable_certificate",
        WalletError::MerchantRevoked(_) => ReasonCode::MerchantRevoked.as_str(),
        WalletError::AlreadyPaid(_) => "already_paid",
        WalletError::UnknownDeposit(_) => "unknown_deposit",
        WalletError::UnrequestedDepositRecord(_) => "unrequested_deposit_record",
        WalletError::NoPendingCertificateRequest => "no_pending_certificate_request",
        WalletError::UnrequestedWithdrawal => "unrequested_withdrawal",
        WalletError::MismatchedWithdrawal => "mismatched_withdrawal",
        WalletError::ReceiptForUnknownPayment(_) | WalletError::RejectionOfUnknownPayment(_) => {
            "unknown_payment"
        }
        WalletError::NoCoinsInFlight(_) => "no_coins_in_flight",
        WalletError::BadCoin(_) => "bad_coin",
        WalletError::ZeroDeposit | WalletError::ZeroRequest => "zero_amount",
        WalletError::EmptyWithdrawal => "empty_withdrawal",
        WalletError::NoOpenKeyset(_) => "no_open_keyset",
        WalletError::NoCoinsMake(_) => "no_coins_make",
        WalletError::CoinNotHeld(_) => "coin_not_held",
        WalletError::NotEnoughCoins { .. } => "not_enough_coins",
        WalletError::TooManyCoins { .. } => "too_many_coins",
        WalletError::Sealing => "sealing",
        _ => "wallet",
    };
    own.to_owned()
}

impl From<WalletError> for ScripError {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::Invalid(inner) => invalid(&inner),
            WalletError::WrongKeyOrCorrupted => ScripError::WrongKeyOrCorrupted,
            WalletError::UnsupportedFormat { found, supported } => {
                ScripError::UnsupportedStateVersion {
                    found: u32::from(found),
                    supported: u32::from(supported),
                }
            }
            WalletError::ExactChangeImpossible {
                requested,
                closest_below,
                closest_above,
            } => ScripError::ExactChangeImpossible {
                requested_minor: requested.minor_units,
                currency: requested.currency.to_string(),
                closest_below_minor: closest_below.minor_units,
                closest_above_minor: closest_above.map(|a| a.minor_units),
            },
            other => ScripError::Wallet {
                code: wallet_code(&other),
                message: other.to_string(),
            },
        }
    }
}

/// The app's storage failing is already a [`ScripError::Storage`] (from its callback).
impl From<SaveError<ScripError>> for ScripError {
    fn from(e: SaveError<ScripError>) -> Self {
        match e {
            SaveError::Wallet(inner) => inner.into(),
            SaveError::Storage(inner) => inner,
        }
    }
}

impl From<MerchantError> for ScripError {
    fn from(e: MerchantError) -> Self {
        let (code, message) = match &e {
            MerchantError::Invalid(inner) => return invalid(inner),
            MerchantError::UnverifiedAnswer(inner) => {
                (inner.code().as_str().to_owned(), e.to_string())
            }
            MerchantError::Client(scrip_merchant::ClientError::Refused { code, message }) => {
                return ScripError::Refused {
                    code: code.as_str().to_owned(),
                    message: message.clone(),
                }
            }
            MerchantError::Client(scrip_merchant::ClientError::Transport(message)) => {
                return ScripError::Transport {
                    message: message.clone(),
                }
            }
            MerchantError::NoDirectory => ("no_directory".to_owned(), e.to_string()),
            MerchantError::OtherCurrency(_) => (
                ReasonCode::CurrencyMismatch.as_str().to_owned(),
                e.to_string(),
            ),
            MerchantError::ZeroAmount => ("zero_amount".to_owned(), e.to_string()),
            MerchantError::Store(_) | MerchantError::Corrupted(_) => {
                ("store".to_owned(), e.to_string())
            }
            _ => ("merchant".to_owned(), e.to_string()),
        };
        ScripError::Merchant { code, message }
    }
}

impl From<scrip_stores::StoreError> for ScripError {
    fn from(e: scrip_stores::StoreError) -> Self {
        MerchantError::Store(e).into()
    }
}

#[cfg(feature = "http")]
impl From<scrip_api::ClientError> for ScripError {
    fn from(e: scrip_api::ClientError) -> Self {
        use scrip_api::ClientError as C;
        match e {
            C::Refused { code, message, .. } => ScripError::Refused {
                code: code.as_str().to_owned(),
                message,
            },
            C::Token(inner) => invalid(&inner),
            C::BadUrl(_) | C::NoOperatorToken | C::BadOperatorToken => ScripError::BadArgument {
                message: e.to_string(),
            },
            other => ScripError::Transport {
                message: other.to_string(),
            },
        }
    }
}

/// A foreign storage callback that threw something the SDK did not declare.
impl From<uniffi::UnexpectedUniFFICallbackError> for ScripError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        ScripError::Storage { message: e.reason }
    }
}
