//! MessagePack, the default codec: compact, fast, schema-free.

use crate::BoxError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// MessagePack with named struct fields, so entries survive field reordering
/// and can be read by other languages' msgpack libraries.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

super::builtin_codec!(MsgPack, MsgPack, "msgpack");

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    Ok(T::deserialize(&mut deserializer(bytes))?)
}

/// A deserializer bounded to [`MAX_DECODE_DEPTH`](super::MAX_DECODE_DEPTH) nested
/// containers (rmp-serde counts the one it refuses, hence the `+ 1`).
fn deserializer(bytes: &[u8]) -> rmp_serde::Deserializer<rmp_serde::decode::ReadRefReader<'_, [u8]>> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(super::MAX_DECODE_DEPTH + 1);
    de
}

fn with_deserializer(bytes: &[u8], sink: &mut super::DecodeSink<'_>) -> Result<(), BoxError> {
    let mut de = deserializer(bytes);
    sink(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?;
    Ok(())
}
