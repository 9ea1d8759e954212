//! The one error type of this crate: why a call to the issuer's server failed.

/// Why a call to the issuer's server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached, or the connection failed mid-request: the request
    /// may or may not have been carried out (sign it again and retry; idempotency keys make
    /// that safe).
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with an error body.
    #[error("server refused with {status} ({code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable machine-readable code.
        code: scrip_tokens::ReasonCode,
        /// Detail for people.
        message: String,
    },
    /// An answer did not decode as the type the route returns, or a body did not encode.
    #[error("decode: {0}")]
    Decode(String),
    /// A token failed to encode or decode.
    #[error("token: {0}")]
    Token(#[from] scrip_tokens::Error),
    /// The server URL is not `http://...` or `https://...`.
    #[error("server URL must start with http:// or https://, got {0:?}")]
    BadUrl(String),
    /// An operator route was called without an operator token (`with_operator_token`).
    #[error("this call needs the operator token (with_operator_token)")]
    NoOperatorToken,
    /// The operator token cannot travel in an HTTP header.
    #[error("the operator token is not a valid header value")]
    BadOperatorToken,
}
