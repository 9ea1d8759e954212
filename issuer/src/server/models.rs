//! Content negotiation: request bodies in JSON or bincode (by `Content-Type`), answers in
//! the format the client `Accept`s (JSON unless it asks for bincode).

use bytes::Bytes;
use scrip_tokens::ReasonCode;
use scrip_tokens::{codec, Message, ReceivedBatch, RedemptionBatch};
use serde::de::DeserializeOwned;
use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;

use super::errors::ApiError;
use crate::api::{BINCODE, JSON};

/// A body format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/vnd.scrip.bincode` (the canonical codec).
    Bincode,
}

impl Format {
    /// The media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => JSON,
            Format::Bincode => BINCODE,
        }
    }

    /// The format of a request body, from its `Content-Type` (JSON if absent).
    pub fn of_content_type(header: Option<&str>) -> Result<Format, ApiError> {
        let Some(header) = header else {
            return Ok(Format::Json);
        };
        let media = header.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(JSON) {
            Ok(Format::Json)
        } else if media.eq_ignore_ascii_case(BINCODE) {
            Ok(Format::Bincode)
        } else {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ReasonCode::UnsupportedMediaType,
                format!("send {JSON} or {BINCODE}"),
            ))
        }
    }

    /// The answer format, from `Accept`: bincode if the client lists it, JSON otherwise.
    pub fn of_accept(header: Option<&str>) -> Format {
        match header {
            Some(h)
                if h.split(',').any(|m| {
                    m.split(';')
                        .next()
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case(BINCODE))
                }) =>
            {
                Format::Bincode
            }
            _ => Format::Json,
        }
    }
}

/// A request body and the formats negotiated for it.
pub struct Body {
    /// The body's format.
    pub content: Result<Format, ApiError>,
    /// The answer's format.
    pub accept: Format,
    /// The raw body.
    pub bytes: Bytes,
    /// The size limit that applied.
    pub limit: usize,
    /// Its share of the body budget, given back when the body is dropped.
    pub(super) _reservation: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Body {
    /// Decodes the body as `T`; malformed input is a 400, never a panic.
    pub fn decode<T: Message + DeserializeOwned>(&self) -> Result<T, ApiError> {
        match self.content.clone()? {
            Format::Json => serde_json::from_slice(&self.bytes)
                .map_err(|e| ApiError::malformed(format!("invalid JSON body: {e}"))),
            Format::Bincode => codec::decode_with_limit(&self.bytes, self.limit)
                .map_err(|e| Self::binary_refused(&e)),
        }
    }

    /// Decodes the body as a redemption batch: a binary one with every digest taken from
    /// the bytes (the same decoding rules as [`Self::decode`]), a JSON one by encoding it.
    pub fn received_batch(&self) -> Result<ReceivedBatch<'static>, ApiError> {
        match self.content.clone()? {
            Format::Json => {
                let batch: RedemptionBatch = self.decode()?;
                ReceivedBatch::from_batch(batch)
                    .map_err(|e| ApiError::malformed(format!("invalid JSON body: {e}")))
            }
            Format::Bincode => ReceivedBatch::decode_with_limit(&self.bytes, self.limit)
                .map_err(|e| Self::binary_refused(&e)),
        }
    }

    fn binary_refused(e: &scrip_tokens::Error) -> ApiError {
        let status = match e {
            scrip_tokens::Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), format!("invalid binary body: {e}"))
    }
}

/// Encodes `value` as `format` with status 200.
pub fn reply<T: Message + Serialize>(value: &T, format: Format) -> Response {
    let encoded = match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        Format::Bincode => codec::encode(value).map_err(|e| e.to_string()),
    };
    match encoded {
        Ok(bytes) => reply_bytes(bytes.into(), format),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ReasonCode::Encoding,
            format!("could not encode the answer: {e}"),
        )
        .into_response(),
    }
}

/// An answer already encoded as `format`.
pub fn reply_bytes(bytes: bytes::Bytes, format: Format) -> Response {
    let mut response = Response::new(bytes.into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static(format.media_type()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_bincode_only_when_listed() {
        assert_eq!(Format::of_accept(None), Format::Json);
        assert_eq!(Format::of_accept(Some("*/*")), Format::Json);
        assert_eq!(
            Format::of_accept(Some(
                "application/json, application/vnd.scrip.bincode;q=0.9"
            )),
            Format::Bincode
        );
    }

    #[test]
    fn content_type_parameters_are_ignored_and_unknown_types_refused() {
        assert_eq!(
            Format::of_content_type(Some("application/json; charset=utf-8")),
            Ok(Format::Json)
        );
        assert_eq!(
            Format::of_content_type(Some("text/plain"))
                .unwrap_err()
                .code,
            ReasonCode::UnsupportedMediaType
        );
    }
}
