//! The one error type of the `scrip` package's command line, demo and load run.

/// Why a client call, the demo or a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A call to the issuer's server failed (unreachable, refused, undecodable answer).
    #[error(transparent)]
    Client(#[from] scrip_api::ClientError),
    /// A file or an output did not decode or encode.
    #[error("decode: {0}")]
    Decode(String),
    /// A token failed to encode, decode or verify.
    #[error("token: {0}")]
    Token(#[from] scrip_tokens::Error),
    /// The wallet refused.
    #[error("wallet: {0}")]
    Wallet(#[from] scrip_wallet::WalletError),
    /// The point of sale failed.
    #[error("merchant: {0}")]
    Merchant(#[from] scrip_merchant::MerchantError),
    /// The issuer (in-process server) failed.
    #[error("issuer: {0}")]
    Issuer(#[from] scrip_issuer::IssuerError),
    /// A local store failed.
    #[error("store: {0}")]
    Store(#[from] scrip_stores::StoreError),
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The command was used wrongly.
    #[error("{0}")]
    Usage(String),
    /// The demo saw something other than the story expects.
    #[error("demo: {0}")]
    Demo(String),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// A wallet step that saves to storage: the wallet's refusal, or the storage's failure.
impl From<scrip_wallet::SaveError<Error>> for Error {
    fn from(e: scrip_wallet::SaveError<Error>) -> Self {
        match e {
            scrip_wallet::SaveError::Wallet(w) => Error::Wallet(w),
            scrip_wallet::SaveError::Storage(s) => s,
        }
    }
}
