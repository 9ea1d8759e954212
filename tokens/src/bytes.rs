//! Serde helpers for byte fields: raw bytes in the binary codec, lower-case hex in JSON.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Serializer;

/// Upper bound on any variable-length byte field (keys, signatures, blinded messages).
/// RSA-4096 material is 512 bytes raw and ~550 bytes as SPKI DER.
pub(crate) const MAX_BYTE_FIELD: usize = 1024;

/// `#[serde(with = "crate::bytes::vec")]` for `Vec<u8>` fields.
pub(crate) mod vec {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(bytes))
        } else {
            s.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s: String = serde::Deserialize::deserialize(d)?;
            let bytes = hex::decode(s).map_err(de::Error::custom)?;
            check_len(bytes.len())?;
            Ok(bytes)
        } else {
            d.deserialize_bytes(BytesVisitor)
        }
    }
}

/// `#[serde(with = "crate::bytes::array")]` for `[u8; N]` fields.
pub(crate) mod array {
    use super::*;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(bytes))
        } else {
            // Fixed-size arrays carry no length prefix: a tuple of N bytes.
            use serde::ser::SerializeTuple;
            let mut t = s.serialize_tuple(N)?;
            for b in bytes {
                t.serialize_element(b)?;
            }
            t.end()
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        if d.is_human_readable() {
            let s: String = serde::Deserialize::deserialize(d)?;
            let v = hex::decode(s).map_err(de::Error::custom)?;
            let len = v.len();
            v.try_into()
                .map_err(|_| de::Error::invalid_length(len, &"a fixed-size hex string"))
        } else {
            d.deserialize_tuple(N, ArrayVisitor::<N>)
        }
    }

    struct ArrayVisitor<const N: usize>;

    impl<'de, const N: usize> Visitor<'de> for ArrayVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
            let mut out = [0u8; N];
            for (i, slot) in out.iter_mut().enumerate() {
                *slot = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(i, &self))?;
            }
            Ok(out)
        }
    }
}

fn check_len<E: de::Error>(len: usize) -> Result<(), E> {
    if len > MAX_BYTE_FIELD {
        Err(E::invalid_length(len, &"at most 1024 bytes"))
    } else {
        Ok(())
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string of at most 1024 bytes")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        check_len(v.len())?;
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        check_len(v.len())?;
        Ok(v)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::new();
        while let Some(b) = seq.next_element()? {
            check_len(out.len() + 1)?;
            out.push(b);
        }
        Ok(out)
    }
}
