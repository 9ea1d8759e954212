//! The encoder behind [`super::encode`]: a serde `Serializer` that writes exactly what
//! bincode 2 writes under [`super::config`] (little-endian, fixed-width integers), straight
//! into a [`Sink`]: a `Vec<u8>`, a SHA-256 ([`Hashing`]), or the bytes a decoder was given
//! ([`Comparing`]).
//!
//! Why not bincode itself: every signature check re-encodes what it verifies, and decoding
//! re-encodes to prove the input canonical, so a redemption batch is encoded three times.
//! bincode's serde path pays a layered, fallible write per byte of every fixed-size array
//! (digests, ids, UUIDs), which made encoding 5-8 % of a pinned redeem server's CPU.
//! Pushing onto the vector directly is 4x faster on a 200-coin batch (`cargo bench --bench
//! codec`, BENCHMARKS.md). bincode stays the decoder, and the tests compare this encoder
//! with bincode's, byte for byte, over every serde shape.
//!
//! The layout, per serde data-model item (bincode 2, `with_fixed_int_encoding`):
//! integers and floats little-endian at their width (`usize` lengths as `u64`); `bool` one
//! byte; `char` UTF-8; `str` and bytes a `u64` length then the bytes; `Option` a `0`/`1`
//! byte then the value; enum variants a `u32` index then the fields; sequences and maps a
//! `u64` length then the items (a length is required); tuples and structs their fields in
//! order, no length; unit and unit structs nothing.

use std::fmt;

use serde::ser::{self, Serialize};
use sha2::{Digest as _, Sha256};

/// Why a value has no canonical encoding.
#[derive(Debug)]
pub(super) struct WriteError(String);

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WriteError {}

impl ser::Error for WriteError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        WriteError(msg.to_string())
    }
}

/// Appends the canonical encoding of `value` to `out`.
pub(super) fn write<T: Serialize + ?Sized, S: Sink>(value: &T, out: &mut S) -> Result {
    value.serialize(&mut Writer { out })
}

/// Where the encoder's bytes go. Hashing and comparing take them as they come, so a
/// digest or a canonical-encoding check of a large batch needs no buffer of its size
/// (growing one took a redeeming server's allocator and page faults, BENCHMARKS.md).
pub(super) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    #[inline]
    fn push(&mut self, byte: u8) {
        self.put(&[byte]);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
}

/// SHA-256 of what is written. The encoder writes a few bytes at a time; they are
/// gathered here and handed to the hash a kilobyte at a time.
pub(super) struct Hashing {
    hasher: Sha256,
    buffer: [u8; 1024],
    filled: usize,
}

impl Hashing {
    pub(super) fn new() -> Self {
        Hashing {
            hasher: Sha256::new(),
            buffer: [0; 1024],
            filled: 0,
        }
    }

    pub(super) fn finish(mut self) -> [u8; 32] {
        self.hasher.update(&self.buffer[..self.filled]);
        self.hasher.finalize().into()
    }
}

impl Sink for Hashing {
    /// A byte at a time is how every fixed-size array (ids, digests) arrives, so the
    /// common case, a free slot in the buffer, skips `put`'s slice arithmetic.
    #[inline]
    fn push(&mut self, byte: u8) {
        match self.buffer.get_mut(self.filled) {
            Some(slot) => {
                *slot = byte;
                self.filled += 1;
            }
            None => self.put(&[byte]),
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.filled + bytes.len();
        if let Some(room) = self.buffer.get_mut(self.filled..end) {
            room.copy_from_slice(bytes);
            self.filled = end;
            return;
        }
        self.hasher.update(&self.buffer[..self.filled]);
        self.filled = 0;
        if bytes.len() >= self.buffer.len() {
            self.hasher.update(bytes);
        } else {
            self.buffer[..bytes.len()].copy_from_slice(bytes);
            self.filled = bytes.len();
        }
    }
}

/// Both sinks get every byte: two digests from one encoding pass.
pub(super) struct Both<'a, A, B>(pub(super) &'a mut A, pub(super) &'a mut B);

impl<A: Sink, B: Sink> Sink for Both<'_, A, B> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0.put(bytes);
        self.1.put(bytes);
    }

    #[inline]
    fn push(&mut self, byte: u8) {
        self.0.push(byte);
        self.1.push(byte);
    }
}

/// Whether what is written is exactly `expected`: how a decoder proves its input was the
/// canonical encoding without encoding it again into a buffer.
pub(super) struct Comparing<'e> {
    rest: &'e [u8],
    differs: bool,
}

impl<'e> Comparing<'e> {
    pub(super) fn new(expected: &'e [u8]) -> Self {
        Comparing {
            rest: expected,
            differs: false,
        }
    }

    /// True when everything written matched and nothing of `expected` is left over.
    pub(super) fn matched_all(&self) -> bool {
        !self.differs && self.rest.is_empty()
    }
}

impl Sink for Comparing<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        match self.rest.strip_prefix(bytes) {
            Some(rest) if !self.differs => self.rest = rest,
            _ => self.differs = true,
        }
    }
}

/// Counts what is written: where a piece ends in an encoding that was received.
pub(super) struct Counting(pub(super) usize);

impl Sink for Counting {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

struct Writer<'a, S> {
    out: &'a mut S,
}

type Result<T = ()> = std::result::Result<T, WriteError>;

impl<S: Sink> Writer<'_, S> {
    #[inline]
    fn len(&mut self, len: Option<usize>) -> Result {
        let len = len.ok_or_else(|| WriteError("a sequence or map must know its length".into()))?;
        self.out.put(&(len as u64).to_le_bytes());
        Ok(())
    }

    #[inline]
    fn variant(&mut self, index: u32) {
        self.out.put(&index.to_le_bytes());
    }
}

macro_rules! little_endian {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            #[inline]
            fn $method(self, v: $ty) -> Result {
                self.out.put(&v.to_le_bytes());
                Ok(())
            }
        )*
    };
}

impl<'a, S: Sink> ser::Serializer for &mut Writer<'a, S> {
    type Ok = ();
    type Error = WriteError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    little_endian! {
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128, serialize_f32: f32, serialize_f64: f64,
    }

    #[inline]
    fn serialize_u8(self, v: u8) -> Result {
        self.out.push(v);
        Ok(())
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result {
        self.out.push(u8::from(v));
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result {
        let mut buf = [0u8; 4];
        self.out.put(v.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result {
        self.serialize_bytes(v.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result {
        self.len(Some(v.len()))?;
        self.out.put(v);
        Ok(())
    }

    fn serialize_none(self) -> Result {
        self.out.push(0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.out.push(1);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        Ok(())
    }

    fn serialize_unit_variant(self, _name: &'static str, index: u32, _v: &'static str) -> Result {
        self.variant(index);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result {
        self.variant(index);
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.len(len)?;
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.variant(index);
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.len(len)?;
        Ok(self)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.variant(index);
        Ok(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(
            impl<'a, S: Sink> ser::$trait for &mut Writer<'a, S> {
                type Ok = ();
                type Error = WriteError;

                #[inline]
                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
                    value.serialize(&mut **self)
                }

                #[inline]
                fn end(self) -> Result {
                    Ok(())
                }
            }
        )*
    };
}

elements! {
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
}

impl<'a, S: Sink> ser::SerializeMap for &mut Writer<'a, S> {
    type Ok = ();
    type Error = WriteError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        key.serialize(&mut **self)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result {
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),* $(,)?) => {
        $(
            impl<'a, S: Sink> ser::$trait for &mut Writer<'a, S> {
                type Ok = ();
                type Error = WriteError;

                #[inline]
                fn serialize_field<T: Serialize + ?Sized>(
                    &mut self,
                    _key: &'static str,
                    value: &T,
                ) -> Result {
                    value.serialize(&mut **self)
                }

                fn end(self) -> Result {
                    Ok(())
                }
            }
        )*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::write;

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(u16);

    #[derive(Serialize)]
    struct Pair(i8, u64);

    #[derive(Serialize)]
    enum Shape {
        Empty,
        Wrapped(u32),
        Tuple(u8, i64),
        Named { a: bool, b: Option<String> },
    }

    #[derive(Serialize)]
    struct Everything {
        flags: (bool, bool),
        small: (i8, i16, i32, i64, i128),
        unsigned: (u8, u16, u32, u64, u128),
        floats: (f32, f64),
        chars: [char; 4],
        text: String,
        empty_text: String,
        #[serde(with = "crate::bytes::vec")]
        bytes: Vec<u8>,
        #[serde(with = "crate::bytes::array")]
        array: [u8; 33],
        nothing: Option<u8>,
        something: Option<Vec<u16>>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        pair: Pair,
        shapes: Vec<Shape>,
        map: BTreeMap<String, (u8, Option<bool>)>,
        nested: Vec<Vec<[u8; 2]>>,
    }

    fn bincode(value: &impl Serialize) -> Vec<u8> {
        match bincode::serde::encode_to_vec(value, super::super::config()) {
            Ok(bytes) => bytes,
            Err(e) => panic!("bincode refused the value: {e}"),
        }
    }

    fn ours(value: &impl Serialize) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = write(value, &mut out) {
            panic!("the writer refused the value: {e}");
        }
        out
    }

    #[test]
    fn every_serde_shape_encodes_exactly_as_bincode_does() {
        let value = Everything {
            flags: (true, false),
            small: (-1, i16::MIN, -123_456, i64::MIN + 7, -(1i128 << 100)),
            unsigned: (0xAB, 0xBEEF, 0xDEAD_BEEF, u64::MAX - 1, u128::MAX / 3),
            floats: (1.5, -0.1),
            chars: ['a', 'é', '€', '🦀'],
            text: "scrip ✓".into(),
            empty_text: String::new(),
            bytes: (0..=255).collect(),
            array: [7; 33],
            nothing: None,
            something: Some(vec![1, 2, 0xFFFF]),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(0x1234),
            pair: Pair(-5, 5),
            shapes: vec![
                Shape::Empty,
                Shape::Wrapped(9),
                Shape::Tuple(1, -1),
                Shape::Named {
                    a: true,
                    b: Some("x".into()),
                },
                Shape::Named { a: false, b: None },
            ],
            map: [("k".to_string(), (1, Some(true))), ("l".into(), (2, None))]
                .into_iter()
                .collect(),
            nested: vec![vec![], vec![[1, 2], [3, 4]]],
        };
        assert_eq!(ours(&value), bincode(&value));
    }

    #[test]
    fn appends_to_what_is_already_there() {
        let mut out = b"header".to_vec();
        assert!(write(&(1u8, "a"), &mut out).is_ok());
        assert_eq!(out, [b"header".as_slice(), &bincode(&(1u8, "a"))].concat());
    }

    #[test]
    fn a_sequence_of_unknown_length_is_refused_as_bincode_refuses_it() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        assert!(write(&Unsized, &mut Vec::new()).is_err());
        assert!(bincode::serde::encode_to_vec(&Unsized, super::super::config()).is_err());
    }
}
