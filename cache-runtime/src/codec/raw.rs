//! Raw bytes: the value's bytes stored as they are, with no framing.
//!
//! Useful for entries written by other programs (a rendered page, an image, a
//! protobuf) and for byte-exact interop. Only byte-like values encode: byte
//! strings (`serde_bytes`, `Vec<u8>`, `[u8; N]`) and strings; a struct or a
//! number is a codec error, never a silent guess at a format.

use crate::BoxError;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// Stores the value's own bytes, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

super::builtin_codec!(RawBytes, RawBytes, "raw");

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError> {
    Ok(value.serialize(ByteSink)?)
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    Ok(T::deserialize(ByteSource(bytes))?)
}

fn with_deserializer(bytes: &[u8], sink: &mut super::DecodeSink<'_>) -> Result<(), BoxError> {
    sink(&mut <dyn erased_serde::Deserializer<'_>>::erase(ByteSource(bytes)))?;
    Ok(())
}

/// The error of the raw codec: the value was not byte-like.
#[derive(Debug)]
pub struct RawError(String);

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for RawError {}
impl ser::Error for RawError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RawError(msg.to_string())
    }
}
impl de::Error for RawError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RawError(msg.to_string())
    }
}

fn not_bytes(what: &str) -> RawError {
    RawError(format!(
        "the raw codec stores only bytes or strings, not {what}; use MsgPack or Json"
    ))
}

/// Serializer that accepts bytes, strings and sequences of `u8`.
struct ByteSink;

/// Collects the elements of a `Vec<u8>`-style sequence.
struct SeqSink(Vec<u8>);

impl ser::SerializeSeq for SeqSink {
    type Ok = Vec<u8>;
    type Error = RawError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RawError> {
        self.0.push(value.serialize(U8Sink)?);
        Ok(())
    }
    fn end(self) -> Result<Vec<u8>, RawError> {
        Ok(self.0)
    }
}

impl ser::SerializeTuple for SeqSink {
    type Ok = Vec<u8>;
    type Error = RawError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), RawError> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<Vec<u8>, RawError> {
        Ok(self.0)
    }
}

/// Generates the `serialize_*` methods that reject a non-byte value.
macro_rules! reject {
    ($($method:ident($($arg:ty),*) -> $what:literal;)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, RawError> { Err(not_bytes($what)) })*
    };
}

impl ser::Serializer for ByteSink {
    type Ok = Vec<u8>;
    type Error = RawError;
    type SerializeSeq = SeqSink;
    type SerializeTuple = SeqSink;
    type SerializeTupleStruct = Impossible<Vec<u8>, RawError>;
    type SerializeTupleVariant = Impossible<Vec<u8>, RawError>;
    type SerializeMap = Impossible<Vec<u8>, RawError>;
    type SerializeStruct = Impossible<Vec<u8>, RawError>;
    type SerializeStructVariant = Impossible<Vec<u8>, RawError>;

    fn serialize_bytes(self, v: &[u8]) -> Result<Vec<u8>, RawError> {
        Ok(v.to_vec())
    }
    fn serialize_str(self, v: &str) -> Result<Vec<u8>, RawError> {
        Ok(v.as_bytes().to_vec())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSink, RawError> {
        Ok(SeqSink(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSink, RawError> {
        Ok(SeqSink(Vec::with_capacity(len)))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<Vec<u8>, RawError> {
        value.serialize(self)
    }
    reject! {
        serialize_bool(bool) -> "a bool";
        serialize_i8(i8) -> "a number";
        serialize_i16(i16) -> "a number";
        serialize_i32(i32) -> "a number";
        serialize_i64(i64) -> "a number";
        serialize_u8(u8) -> "a number";
        serialize_u16(u16) -> "a number";
        serialize_u32(u32) -> "a number";
        serialize_u64(u64) -> "a number";
        serialize_f32(f32) -> "a number";
        serialize_f64(f64) -> "a number";
        serialize_char(char) -> "a char";
        serialize_none() -> "an Option";
        serialize_unit() -> "a unit";
        serialize_unit_struct(&'static str) -> "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) -> "an enum";
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Vec<u8>, RawError> {
        Err(not_bytes("an Option"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Vec<u8>, RawError> {
        Err(not_bytes("an enum"))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, RawError> {
        Err(not_bytes("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RawError> {
        Err(not_bytes("an enum"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RawError> {
        Err(not_bytes("a map"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, RawError> {
        Err(not_bytes("a struct"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RawError> {
        Err(not_bytes("an enum"))
    }
}

/// Accepts exactly one `u8`: an element of a byte sequence.
struct U8Sink;

impl ser::Serializer for U8Sink {
    type Ok = u8;
    type Error = RawError;
    type SerializeSeq = Impossible<u8, RawError>;
    type SerializeTuple = Impossible<u8, RawError>;
    type SerializeTupleStruct = Impossible<u8, RawError>;
    type SerializeTupleVariant = Impossible<u8, RawError>;
    type SerializeMap = Impossible<u8, RawError>;
    type SerializeStruct = Impossible<u8, RawError>;
    type SerializeStructVariant = Impossible<u8, RawError>;

    fn serialize_u8(self, v: u8) -> Result<u8, RawError> {
        Ok(v)
    }
    reject! {
        serialize_bool(bool) -> "a sequence of bools";
        serialize_i8(i8) -> "a sequence of i8";
        serialize_i16(i16) -> "a sequence of numbers";
        serialize_i32(i32) -> "a sequence of numbers";
        serialize_i64(i64) -> "a sequence of numbers";
        serialize_u16(u16) -> "a sequence of numbers";
        serialize_u32(u32) -> "a sequence of numbers";
        serialize_u64(u64) -> "a sequence of numbers";
        serialize_f32(f32) -> "a sequence of numbers";
        serialize_f64(f64) -> "a sequence of numbers";
        serialize_char(char) -> "a sequence of chars";
        serialize_str(&str) -> "a sequence of strings";
        serialize_bytes(&[u8]) -> "nested byte strings";
        serialize_none() -> "a sequence of Options";
        serialize_unit() -> "a sequence of units";
        serialize_unit_struct(&'static str) -> "a sequence of structs";
        serialize_unit_variant(&'static str, u32, &'static str) -> "a sequence of enums";
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<u8, RawError> {
        Err(not_bytes("a sequence of Options"))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<u8, RawError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, RawError> {
        Err(not_bytes("a sequence of enums"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RawError> {
        Err(not_bytes("nested sequences"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RawError> {
        Err(not_bytes("nested sequences"))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, RawError> {
        Err(not_bytes("nested sequences"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RawError> {
        Err(not_bytes("a sequence of enums"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RawError> {
        Err(not_bytes("a sequence of maps"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, RawError> {
        Err(not_bytes("a sequence of structs"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RawError> {
        Err(not_bytes("a sequence of enums"))
    }
}

/// Deserializer over stored bytes: offers them as bytes, as a string when they
/// are UTF-8 and asked for, or as a sequence of `u8` (for `Vec<u8>`).
struct ByteSource<'a>(&'a [u8]);

impl<'de> de::Deserializer<'de> for ByteSource<'_> {
    type Error = RawError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_bytes(self.0)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        match std::str::from_utf8(self.0) {
            Ok(s) => visitor.visit_str(s),
            Err(_) => Err(RawError("stored bytes are not valid UTF-8".into())),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        self.deserialize_str(visitor)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_seq(de::value::SeqDeserializer::new(
            self.0
                .iter()
                .map(|b| IntoDeserializer::<RawError>::into_deserializer(*b)),
        ))
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_newtype_struct(self)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        option unit unit_struct tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_strings_and_vecs_round_trip_unchanged() {
        assert_eq!(encode(&serde_bytes_like(b"\x00\xffab")).unwrap(), b"\x00\xffab");
        assert_eq!(encode("héllo").unwrap(), "héllo".as_bytes());
        assert_eq!(encode(&vec![1u8, 2, 3]).unwrap(), [1, 2, 3]);
        let v: Vec<u8> = decode(&[9, 8, 7]).unwrap();
        assert_eq!(v, [9, 8, 7]);
        let s: String = decode("héllo".as_bytes()).unwrap();
        assert_eq!(s, "héllo");
    }

    #[test]
    fn non_byte_values_are_rejected_with_advice() {
        let err = encode(&42u32).unwrap_err().to_string();
        assert!(err.contains("only bytes or strings"), "{err}");
        assert!(decode::<String>(&[0xff, 0xfe]).is_err());
        assert!(decode::<u32>(&[1, 2]).is_err());
    }

    fn serde_bytes_like(b: &[u8]) -> impl Serialize + '_ {
        struct B<'a>(&'a [u8]);
        impl Serialize for B<'_> {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        B(b)
    }
}
