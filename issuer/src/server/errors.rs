//! Every refusal the server gives: an HTTP status and a JSON `{code, message}` body. The
//! one rejection handler ([`recover`]) maps warp's own rejections (unknown route, wrong
//! method, oversized body) to the same shape, so clients parse one error format.

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use scrip_tokens::ReasonCode;

use crate::api::ErrorBody;
use crate::IssuerError;

/// A refusal: status, stable code, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (a snake_case string on the wire).
    pub code: ReasonCode,
    /// Detail for people.
    pub message: String,
}

impl ApiError {
    /// A refusal with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: ReasonCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn stale(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ReasonCode::StaleRequest, message)
    }

    pub(crate) fn replayed() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            ReasonCode::Replayed,
            "this request (nonce) was already received; sign a new one",
        )
    }

    pub(crate) fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::Busy,
            "too many requests in the replay window; retry later",
        )
    }

    /// The cluster's nonce table could not be reached: the request was not admitted (and
    /// not remembered), so sending it again is safe. The database's own message goes to
    /// the log, not to the client.
    pub(crate) fn nonce_store_unavailable(e: &scrip_stores::StoreError) -> Self {
        tracing::warn!(error = %e, "the shared nonce table could not be reached");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::StoreError,
            "the replay check could not reach the issuer's database; retry shortly",
        )
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ReasonCode::MalformedBody, message)
    }

    pub(crate) fn unauthorized_operator() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ReasonCode::OperatorTokenRequired,
            "this route needs the operator token (Authorization: Bearer <token>)",
        )
    }

    /// For operator routes naming a device or a merchant: an unknown one is a 404 there,
    /// not an authentication failure.
    pub(crate) fn operator_lookup(e: IssuerError) -> Self {
        match e {
            IssuerError::UnknownDevice(d) => Self::new(
                StatusCode::NOT_FOUND,
                ReasonCode::UnknownDevice,
                format!("unknown device {d}"),
            ),
            IssuerError::UnknownMerchant(m) => Self::new(
                StatusCode::NOT_FOUND,
                ReasonCode::UnknownMerchant,
                format!("unknown merchant {m}"),
            ),
            other => other.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ReasonCode::NotFound, message)
    }

    /// The `{code, message}` JSON body.
    pub fn json_body(&self) -> Vec<u8> {
        let body = ErrorBody {
            code: self.code.clone(),
            message: self.message.clone(),
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The JSON error response. A 503 (busy, or the store cannot write) says when to
    /// retry.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(self.json_body().into());
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                warp::http::header::RETRY_AFTER,
                warp::http::HeaderValue::from_static("1"),
            );
        }
        *response.status_mut() = self.status;
        response.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            warp::http::HeaderValue::from_static(crate::api::JSON),
        );
        response
    }
}

impl From<IssuerError> for ApiError {
    fn from(e: IssuerError) -> Self {
        use scrip_tokens::Error as T;
        let status = match &e {
            IssuerError::Invalid(t) => match t {
                T::BadSignature | T::UnknownKey(_) => StatusCode::UNAUTHORIZED,
                T::WrongAccount | T::WrongDevice | T::WrongMerchant => StatusCode::FORBIDDEN,
                T::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                // A blinded message of the wrong size fails in the blind signer: the
                // client's fault, not the server's.
                T::Signing(_) | T::Encoding(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
            IssuerError::UnknownDevice(_) | IssuerError::UnknownMerchant(_) => {
                StatusCode::UNAUTHORIZED
            }
            IssuerError::UnknownAccount(_) | IssuerError::UnknownCertificate(_) => {
                StatusCode::NOT_FOUND
            }
            IssuerError::DeviceRevoked(_)
            | IssuerError::AccountFrozen(_)
            | IssuerError::MerchantRevoked(_) => StatusCode::FORBIDDEN,
            IssuerError::AccountNotFrozen(_) => StatusCode::CONFLICT,
            IssuerError::UnknownPayment { .. } => StatusCode::NOT_FOUND,
            IssuerError::WrongPaymentKind { .. }
            | IssuerError::RefundExceedsPayment { .. }
            | IssuerError::MerchantBalanceShort { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            IssuerError::AmbiguousPayment(_)
            | IssuerError::RefundIdReused(_)
            | IssuerError::VoucherAlreadyUsed(_)
            | IssuerError::AlreadyRedeemed(_) => StatusCode::CONFLICT,
            IssuerError::AlreadyRegistered | IssuerError::IdempotencyKeyReused => {
                StatusCode::CONFLICT
            }
            IssuerError::InsufficientFunds { .. } | IssuerError::NothingAvailable => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            IssuerError::Unsupported(_)
            | IssuerError::KeysetNotIssuing(_)
            | IssuerError::KeysetExpired(_) => StatusCode::BAD_REQUEST,
            // The source could not be reached: the issuer cannot take deposits for now,
            // and the client retries (collecting is idempotent per deposit id), as after a
            // store error. A source that answered and refused gave its verdict: 502.
            IssuerError::Funding(crate::FundingError::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            IssuerError::Funding(_) => StatusCode::BAD_GATEWAY,
            IssuerError::PayoutIdReused(_) => StatusCode::CONFLICT,
            // Unreachable bank: the payout is pending, the merchant sends it again.
            IssuerError::Payout(crate::PayoutError::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            IssuerError::Payout(_) => StatusCode::BAD_GATEWAY,
            IssuerError::Store(
                scrip_stores::StoreError::InvalidUnit(_)
                | scrip_stores::StoreError::UnbalancedPostings { .. },
            ) => StatusCode::BAD_REQUEST,
            IssuerError::Store(_) | IssuerError::Contended { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        // The database server's own text (details with key values, table names) is for
        // the log only.
        if let IssuerError::Store(scrip_stores::StoreError::Database { .. }) = e {
            return ApiError::new(
                status,
                e.code(),
                "the issuer's database failed this request; retry shortly",
            );
        }
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        ApiError::into_response(self)
    }
}

/// The request body did not arrive within the server's read timeout.
#[derive(Debug)]
pub(crate) struct BodyTimeout;
impl warp::reject::Reject for BodyTimeout {}

/// The request body is longer than the server's limit (a client sending more than its
/// Content-Length said).
#[derive(Debug)]
pub(crate) struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

/// The bodies being received already hold the server's whole body budget.
#[derive(Debug)]
pub(crate) struct BodyBudgetExhausted;
impl warp::reject::Reject for BodyBudgetExhausted {}

/// The request body could not be read (the client reset or broke the stream).
#[derive(Debug)]
pub(crate) struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

/// The one rejection handler: warp's rejections become JSON errors.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let error = if rejection.is_not_found() {
        ApiError::not_found("no such route")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some()
        || rejection.find::<BodyTooLarge>().is_some()
    {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ReasonCode::BodyTooLarge,
            "the request body exceeds the server's limit",
        )
    } else if rejection.find::<BodyBudgetExhausted>().is_some() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ReasonCode::Busy,
            "the server is receiving too many large request bodies; retry shortly",
        )
    } else if rejection.find::<BodyTimeout>().is_some() {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ReasonCode::RequestTimeout,
            "the request body did not arrive in time",
        )
    } else if rejection.find::<BodyUnreadable>().is_some() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ReasonCode::BodyUnreadable,
            "the request body could not be read",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            ReasonCode::LengthRequired,
            "send a Content-Length header",
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ReasonCode::MethodNotAllowed,
            "this route does not take that method",
        )
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ReasonCode::InvalidQuery,
            e.to_string(),
        )
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ReasonCode::InvalidHeader,
            e.to_string(),
        )
    } else {
        tracing::warn!(?rejection, "unhandled rejection");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ReasonCode::BadRequest,
            "the request could not be read",
        )
    };
    Ok(error.into_response())
}
