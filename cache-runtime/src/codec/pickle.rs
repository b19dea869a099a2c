//! Python pickle, for sharing entries with Python services (rick's default).

use crate::BoxError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Python pickle (protocol 3) via `serde-pickle`.
///
/// Python's `pickle.loads` reads what this writes, and this reads what Python
/// writes for the plain types: `str`, `int`, `float`, `bool`, `None`, `bytes`,
/// `list`, `tuple`, `dict`, `set`. Python class instances (datetime, Decimal)
/// cannot be decoded: they are not data but calls into Python code.
///
/// Integers must fit in an `i64` to decode: serde-pickle writes a larger `u64`
/// as a Python long but cannot read it back (a codec error, not a panic).
///
/// Values nested deeper than [`MAX_DECODE_DEPTH`](super::MAX_DECODE_DEPTH) are refused, as
/// are values that contain themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pickle;

super::builtin_codec!(Pickle, Pickle, "pickle");

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError> {
    Ok(serde_pickle::to_vec(&value, serde_pickle::SerOptions::new())?)
}

/// serde-pickle recurses without a limit when it drops, clones or
/// deserializes a value, so the opcodes are scanned for depth first.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    super::pickle_depth::check(bytes)?;
    Ok(serde_pickle::from_slice(bytes, de_options())?)
}

/// Python 3 writes `str` keys and values; decode them as strings, and accept
/// the `bytes` that Python 2 style pickles carry as strings too.
fn de_options() -> serde_pickle::DeOptions {
    serde_pickle::DeOptions::new().decode_strings()
}

fn with_deserializer(bytes: &[u8], sink: &mut super::DecodeSink<'_>) -> Result<(), BoxError> {
    super::pickle_depth::check(bytes)?;
    let mut de = serde_pickle::Deserializer::new(bytes, de_options());
    sink(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?;
    de.end()?;
    Ok(())
}
