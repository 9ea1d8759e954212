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

use writer::Sink;

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
    write_message(value, &mut out)?;
    Ok(out)
}

/// `prefix` followed by [`encode`] of `value`, in one buffer: for signed bytes that put
/// something before an encoding (a blind coin's randomizer).
pub(crate) fn encode_after<T: Message>(prefix: &[u8], value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(prefix.len() + header_len::<T>() + 256);
    out.extend_from_slice(prefix);
    write_message(value, &mut out)?;
    Ok(out)
}

/// Writes the encoding of [`encode`] to `out`, whatever it is (a buffer, a hash).
fn write_message<T: Message, S: Sink>(value: &T, out: &mut S) -> Result<()> {
    write_header::<T, S>(out);
    write_value(value, out)
}

/// Writes `tag || 0x00 || version` of `T`.
fn write_header<T: Message, S: Sink>(out: &mut S) {
    out.put(T::TAG.as_bytes());
    out.push(0);
    out.put(&T::VERSION.to_le_bytes());
}

/// Writes the bincode part of an encoding (no header) to `out`.
fn write_value<T: Serialize + ?Sized, S: Sink>(value: &T, out: &mut S) -> Result<()> {
    writer::write(value, out).map_err(|e| Error::Encoding(e.to_string()))
}

/// Decodes a message produced by [`encode`], accepting at most
/// [`DEFAULT_MAX_MESSAGE_LEN`] bytes.
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T> {
    decode_with_limit(bytes, DEFAULT_MAX_MESSAGE_LEN)
}

/// Decodes a message produced by [`encode`], accepting at most `limit` bytes.
pub fn decode_with_limit<T: Message>(bytes: &[u8], limit: usize) -> Result<T> {
    let mut pieces = Pieces::new::<T>(bytes, limit)?;
    let (value, _) = pieces.next::<T>()?;
    pieces.finish()?;
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

/// SHA-256 of the canonical encoding of `value` (hashed as it is encoded: no buffer of
/// the encoding's size is made).
pub fn digest<T: Message>(value: &T) -> Result<ContentDigest> {
    let mut hashing = writer::Hashing::new();
    write_message(value, &mut hashing)?;
    Ok(ContentDigest(hashing.finish()))
}

/// The digests of `outer` and of `leading`, from one pass over `leading`'s encoding:
/// `outer`'s encoding must be `leading`'s value followed by `rest` (a tuple of `outer`'s
/// other fields in order, which encodes as those fields one after the other). A receiver
/// that needs both, such as the issuer checking a merchant's endorsement of a payment and
/// claiming the payment's coins under its digest, then encodes the payment once, not
/// twice. The callers' tests compare both digests with [`digest`].
pub(crate) fn digest_with_leading<T: Message, U: Message, R: Serialize>(
    leading: &U,
    rest: &R,
) -> Result<(ContentDigest, ContentDigest)> {
    let mut outer = writer::Hashing::new();
    let mut inner = writer::Hashing::new();
    write_header::<T, _>(&mut outer);
    write_header::<U, _>(&mut inner);
    write_value(leading, &mut writer::Both(&mut outer, &mut inner))?;
    write_value(rest, &mut outer)?;
    Ok((ContentDigest(outer.finish()), ContentDigest(inner.finish())))
}

/// Reads the canonical encoding of a `T` one piece at a time, for a receiver that needs to
/// know where each piece lies in the bytes: it can then hash a piece from the bytes it
/// received instead of encoding the decoded value again (a thousand-coin redemption batch
/// is otherwise encoded twice more just to be hashed, see [`crate::ReceivedBatch`]).
///
/// [`decode_with_limit`] reads its `T` as one piece. Reading every field of a `T` in order
/// instead (a sequence as its `u64` length, then its items), then [`Pieces::finish`],
/// accepts the same inputs: the same input bound, header check, canonical check (each
/// piece re-encoded and compared with the bytes it was read from) and no trailing bytes;
/// bincode's allocation bound then applies to each piece rather than to the whole.
pub(crate) struct Pieces<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Pieces<'a> {
    /// Starts reading `bytes` as a `T`: checks the length bound and the header.
    pub(crate) fn new<T: Message>(bytes: &'a [u8], limit: usize) -> Result<Self> {
        if bytes.len() > limit {
            return Err(Error::TooLarge {
                len: bytes.len(),
                limit,
            });
        }
        Ok(Pieces {
            body: strip_header::<T>(bytes)?,
            at: 0,
        })
    }

    /// Decodes the next piece as a `V`; returns it and where its encoding lies in
    /// [`Self::body`].
    pub(crate) fn next<V: Serialize + DeserializeOwned>(
        &mut self,
    ) -> Result<(V, std::ops::Range<usize>)> {
        let rest = self.body.get(self.at..).unwrap_or_default();
        let (value, used): (V, usize) = bincode::serde::decode_from_slice(rest, config())
            .map_err(|e| Error::Malformed(e.to_string()))?;
        let read = rest.get(..used).ok_or(Error::NonCanonical)?;
        // One value, one encoding: signatures and content digests are computed over
        // re-encoded values (or, by `ReceivedBatch`, over these bytes), so an alternative
        // spelling of the same value must not exist. The re-encoding is compared with the
        // input as it is written, not buffered.
        let mut reencoded = writer::Comparing::new(read);
        write_value(&value, &mut reencoded)?;
        if !reencoded.matched_all() {
            return Err(Error::NonCanonical);
        }
        let start = self.at;
        self.at += used;
        Ok((value, start..self.at))
    }

    /// Bytes not read yet.
    pub(crate) fn left(&self) -> usize {
        self.body.len().saturating_sub(self.at)
    }

    /// The encoding after the header: what [`Self::next`]'s ranges index.
    pub(crate) fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Fails with [`Error::TrailingBytes`] if anything is left unread.
    pub(crate) fn finish(self) -> Result<()> {
        match self.left() {
            0 => Ok(()),
            count => Err(Error::TrailingBytes { count }),
        }
    }
}

/// [`digest`] of a `T` whose encoding after the header is `body` (a piece of received
/// bytes that was checked to be canonical): the header and `body` hashed, nothing encoded.
pub(crate) fn digest_of_body<T: Message>(body: &[u8]) -> ContentDigest {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(T::TAG.as_bytes());
    hasher.update([0]);
    hasher.update(T::VERSION.to_le_bytes());
    hasher.update(body);
    ContentDigest(hasher.finalize().into())
}

/// How many bytes the encoding of `value` (no header) takes.
pub(crate) fn encoded_len<R: Serialize + ?Sized>(value: &R) -> Result<usize> {
    let mut counting = writer::Counting(0);
    write_value(value, &mut counting)?;
    Ok(counting.0)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Deserializer, Serialize};

    use super::{decode, digest, encode, Message};
    use crate::{ContentDigest, Error};

    /// Small fields around a byte string, so the hashed encoding's writes straddle the
    /// hashing sink's buffer at every length tried.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Blob {
        head: u8,
        #[serde(with = "crate::bytes::vec")]
        bytes: Vec<u8>,
        parts: Vec<(u16, [u8; 3])>,
        tail: u64,
    }

    impl Message for Blob {
        const TAG: &'static str = "scrip/test-blob/v1";
        const VERSION: u16 = 1;
    }

    #[test]
    fn a_digest_is_the_sha256_of_the_encoding_at_every_length() {
        for len in [0, 1, 31, 1000, 1013, 1014, 1024, 1025, 2047, 2048, 5000] {
            let blob = Blob {
                head: 7,
                bytes: (0..len).map(|i| i as u8).collect(),
                parts: (0..len % 97).map(|i| (i as u16, [i as u8; 3])).collect(),
                tail: u64::MAX - len as u64,
            };
            let encoded = match encode(&blob) {
                Ok(bytes) => bytes,
                Err(e) => panic!("encode: {e}"),
            };
            assert_eq!(
                digest(&blob),
                Ok(ContentDigest::of(&encoded)),
                "{len} bytes"
            );
        }
    }

    /// Reads any byte and keeps only its lowest bit: a decoder that accepts more than one
    /// spelling of a value, as a careless `Deserialize` would.
    #[derive(Debug, PartialEq, Serialize)]
    struct Lenient(u8);

    impl<'de> Deserialize<'de> for Lenient {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u8::deserialize(d).map(|b| Lenient(b & 1))
        }
    }

    impl Message for Lenient {
        const TAG: &'static str = "scrip/test-lenient/v1";
        const VERSION: u16 = 1;
    }

    #[test]
    fn an_input_that_is_not_the_values_encoding_is_refused() {
        let canonical = match encode(&Lenient(1)) {
            Ok(bytes) => bytes,
            Err(e) => panic!("encode: {e}"),
        };
        assert_eq!(decode::<Lenient>(&canonical), Ok(Lenient(1)));
        let mut other_spelling = canonical.clone();
        if let Some(last) = other_spelling.last_mut() {
            *last = 3;
        }
        assert_eq!(decode::<Lenient>(&other_spelling), Err(Error::NonCanonical));
    }
}
