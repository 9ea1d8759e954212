//! The one canonical codec. Every byte string that is signed, stored or sent is produced
//! here, so the encoding can be swapped (or a version added) in one place.
//!
//! Layout of every encoded message (see `interop/WIRE.md`):
//!
//! ```text
//! tag (ASCII, e.g. "scrip/withdrawal-record/v1") || 0x00 || version (u16 little-endian)
//!     || bincode-2 encoding of the value (fixed-width little-endian integers)
//! ```
//!
//! The NUL after the tag makes tags self-delimiting, so no tag is a prefix of another
//! type's header. For a signed object the *signed bytes* are exactly the encoding of its
//! payload, which is how every signature is domain-separated by type.
//!
//! Decoding untrusted bytes is bounded (input length and total allocation), rejects other
//! types' tags, unknown versions, trailing bytes and non-canonical encodings, and never
//! panics.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{ContentDigest, Error, Result};

mod writer;

/// Default upper bound on an encoded message accepted by [`decode`]: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 1 << 20;

/// Hard upper bound on what one decode may allocate, whatever the input claims.
/// bincode pre-allocates claimed byte-string lengths, so this is what keeps a forged
/// length prefix from requesting gigabytes.
const ALLOCATION_LIMIT: usize = 16 << 20;

type Config = Configuration<LittleEndian, Fixint, Limit<ALLOCATION_LIMIT>>;

fn config() -> Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<ALLOCATION_LIMIT>()
}

/// A type with a canonical encoding: a distinct domain tag and a format version.
pub trait Message: Serialize + DeserializeOwned {
    /// Domain tag, ASCII without NUL, unique across all types (e.g.
    /// `scrip/withdrawal-record/v1`).
    const TAG: &'static str;
    /// Format version of the encoding. Decoders reject other versions, so a later release
    /// can add a migration instead of misreading old data.
    const VERSION: u16;
}

fn header_len<T: Message>() -> usize {
    T::TAG.len() + 1 + 2
}

/// Encodes `value` as `tag || 0x00 || version || bincode(value)`.
pub fn encode<T: Message>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(header_len::<T>() + 256);
    out.extend_from_slice(T::TAG.as_bytes());
    out.push(0);
    out.extend_from_slice(&T::VERSION.to_le_bytes());
    writer::write(value, &mut out).map_err(|e| Error::Encoding(e.to_string()))?;
    Ok(out)
}

/// Decodes a message produced by [`encode`], accepting at most
/// [`DEFAULT_MAX_MESSAGE_LEN`] bytes.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T> {
    decode_with_limit(bytes, DEFAULT_MAX_MESSAGE_LEN)
}

/// Decodes a message produced by [`encode`], accepting at most `limit` bytes.
pub fn decode_with_limit<T: Message>(bytes: &[u8], limit: usize) -> Result<T> {
    if bytes.len() > limit {
        return Err(Error::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let body = strip_header::<T>(bytes)?;
    let (value, used): (T, usize) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| Error::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(Error::TrailingBytes {
            count: body.len() - used,
        });
    }
    // One value, one encoding: signatures and content digests are computed over
    // re-encoded values, so an alternative spelling of the same value must not exist.
    let reencoded = encode(&value)?;
    if reencoded != bytes {
        return Err(Error::NonCanonical);
    }
    Ok(value)
}

fn strip_header<T: Message>(bytes: &[u8]) -> Result<&[u8]> {
    let tag = T::TAG.as_bytes();
    let wrong_type = Error::WrongType { expected: T::TAG };
    let rest = bytes.strip_prefix(tag).ok_or(wrong_type.clone())?;
    let rest = rest.strip_prefix(&[0u8]).ok_or(wrong_type)?;
    let (version, body) = match rest {
        [lo, hi, body @ ..] => (u16::from_le_bytes([*lo, *hi]), body),
        _ => return Err(Error::Malformed("truncated header".into())),
    };
    if version != T::VERSION {
        return Err(Error::UnsupportedVersion {
            tag: T::TAG,
            found: version,
            supported: T::VERSION,
        });
    }
    Ok(body)
}

/// Reads the domain tag at the start of `bytes`, if it has one; lets a receiver (an NFC
/// reader, say) dispatch on the message type before decoding it.
pub fn peek_tag(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().take(128).position(|b| *b == 0)?;
    let tag = bytes.get(..end)?;
    std::str::from_utf8(tag).ok()
}

/// SHA-256 of the canonical encoding of `value`.
pub fn digest<T: Message>(value: &T) -> Result<ContentDigest> {
    Ok(ContentDigest::of(&encode(value)?))
}
