//! JSON: readable, and shared with any language.

use crate::BoxError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON via `serde_json`. Byte strings become arrays of numbers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

super::builtin_codec!(Json, Json, "json");

pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BoxError> {
    Ok(serde_json::to_vec(value)?)
}

// serde_json refuses nesting beyond 128 levels by itself: the `[` that would
// open the 128th container is the error, so it accepts `MAX_DECODE_DEPTH` (127).
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BoxError> {
    Ok(serde_json::from_slice(bytes)?)
}

fn with_deserializer(bytes: &[u8], sink: &mut super::DecodeSink<'_>) -> Result<(), BoxError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    sink(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut de))?;
    de.end()?;
    Ok(())
}
