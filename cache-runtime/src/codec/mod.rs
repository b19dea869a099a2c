//! Codecs turn values into bytes and back.
//!
//! A [`Codec`] is object-safe so that any engine can hold one behind
//! `Arc<dyn Codec>` and every engine stays swappable behind `dyn Cache`. The
//! built-in codecs ([`MsgPack`], [`Json`], [`Pickle`], [`RawBytes`]) are also
//! reachable through [`Codec::builtin`], which lets the typed API skip the
//! type-erased path and call serde directly: user codecs cost one dynamic
//! dispatch per serde call, built-ins cost nothing extra.
//!
//! Stored bytes are untrusted (anyone with write access to Redis can plant
//! them), so every built-in codec refuses values nested deeper than
//! [`MAX_DECODE_DEPTH`] containers with [`CacheError::Codec`] before recursion could
//! overflow the stack. A user [`Codec`] must bound its own recursion.
//!
//! ```
//! use memorix_runtime::{Codec, Json, MsgPack, encode, decode};
//!
//! let bytes = encode(&MsgPack, &vec![1u32, 2, 3]).unwrap();
//! let back: Vec<u32> = decode(&MsgPack, &bytes).unwrap();
//! assert_eq!(back, [1, 2, 3]);
//! assert_eq!(Json.name(), "json");
//! ```

mod json;
mod msgpack;
mod pickle;
mod pickle_depth;
mod raw;

pub use json::Json;
pub use msgpack::MsgPack;
pub use pickle::Pickle;
pub use raw::RawBytes;

use crate::error::{CacheError, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// The deepest nesting of lists, maps, tuples or sets that the built-in codecs
/// decode: 127 containers inside one another (`[[...]]` with 127 brackets).
/// One more is a [`CacheError::Codec`]. This is `serde_json`'s fixed limit;
/// MessagePack and pickle apply the same, so no codec can be driven into a
/// stack overflow by a hostile stored value, even on a 2 MiB tokio worker stack.
pub const MAX_DECODE_DEPTH: usize = 127;

/// The built-in codecs, for the fast, non-erased path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuiltinCodec {
    /// MessagePack with field names (`rmp_serde::to_vec_named`).
    MsgPack,
    /// JSON.
    Json,
    /// Python pickle (protocol 3), readable by Python's `pickle.loads`.
    Pickle,
    /// The value's own bytes, unchanged: only byte strings and strings encode.
    RawBytes,
}

/// Receives a type-erased deserializer from [`Codec::decode_erased`].
pub type DecodeSink<'a> =
    dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> std::result::Result<(), erased_serde::Error> + 'a;

/// Turns values into bytes and back. Implement it to plug in your own format.
///
/// ```
/// use memorix_runtime::{BoxError, Codec, DecodeSink};
///
/// /// JSON wrapped in an envelope, like rick's custom serializer example.
/// #[derive(Debug)]
/// struct Wrapped;
///
/// impl Codec for Wrapped {
///     fn name(&self) -> &'static str { "wrapped-json" }
///     fn encode_erased(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, BoxError> {
///         let inner = serde_json::to_value(value)?;
///         Ok(serde_json::to_vec(&serde_json::json!({ "_data": inner }))?)
///     }
///     fn decode_erased(&self, bytes: &[u8], sink: &mut DecodeSink<'_>) -> Result<(), BoxError> {
///         let outer: serde_json::Value = serde_json::from_slice(bytes)?;
///         let inner = outer.get("_data").cloned().unwrap_or(serde_json::Value::Null);
///         sink(&mut <dyn erased_serde::Deserializer>::erase(inner))?;
///         Ok(())
///     }
/// }
///
/// let bytes = memorix_runtime::encode(&Wrapped, &42u8).unwrap();
/// assert_eq!(bytes, br#"{"_data":42}"#);
/// let back: u8 = memorix_runtime::decode(&Wrapped, &bytes).unwrap();
/// assert_eq!(back, 42);
/// ```
pub trait Codec: Send + Sync + Debug + 'static {
    /// A short name used in errors and metrics.
    fn name(&self) -> &'static str;

    /// Serializes a type-erased value.
    fn encode_erased(&self, value: &dyn erased_serde::Serialize) -> Result<Vec<u8>, crate::BoxError>;

    /// Builds a deserializer over `bytes` and hands it to `sink`.
    fn decode_erased(&self, bytes: &[u8], sink: &mut DecodeSink<'_>) -> Result<(), crate::BoxError>;

    /// Which built-in this is, if any. Built-ins skip type erasure.
    fn builtin(&self) -> Option<BuiltinCodec> {
        None
    }
}

/// Encodes `value` with `codec`.
pub fn encode<T: Serialize + ?Sized>(codec: &dyn Codec, value: &T) -> Result<Vec<u8>> {
    let name = codec.name();
    let fail = |e: crate::BoxError| CacheError::codec(name, e);
    match codec.builtin() {
        Some(BuiltinCodec::MsgPack) => msgpack::encode(value).map_err(fail),
        Some(BuiltinCodec::Json) => json::encode(value).map_err(fail),
        Some(BuiltinCodec::Pickle) => pickle::encode(value).map_err(fail),
        Some(BuiltinCodec::RawBytes) => raw::encode(value).map_err(fail),
        None => codec.encode_erased(&value).map_err(fail),
    }
}

/// Decodes bytes produced by `codec` into a `T`.
pub fn decode<T: DeserializeOwned>(codec: &dyn Codec, bytes: &[u8]) -> Result<T> {
    let name = codec.name();
    let fail = |e: crate::BoxError| CacheError::codec(name, e);
    match codec.builtin() {
        Some(BuiltinCodec::MsgPack) => msgpack::decode(bytes).map_err(fail),
        Some(BuiltinCodec::Json) => json::decode(bytes).map_err(fail),
        Some(BuiltinCodec::Pickle) => pickle::decode(bytes).map_err(fail),
        Some(BuiltinCodec::RawBytes) => raw::decode(bytes).map_err(fail),
        None => {
            let mut out: Option<T> = None;
            codec
                .decode_erased(bytes, &mut |de| {
                    out = Some(erased_serde::deserialize::<T>(de)?);
                    Ok(())
                })
                .map_err(fail)?;
            out.ok_or_else(|| fail("codec returned without decoding a value".into()))
        }
    }
}

/// Implements [`Codec::encode_erased`] / [`Codec::decode_erased`] for a built-in
/// whose module exposes generic `encode` and `decode` plus a deserializer builder.
macro_rules! builtin_codec {
    ($ty:ident, $variant:ident, $name:literal) => {
        impl $crate::codec::Codec for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn encode_erased(
                &self,
                value: &dyn erased_serde::Serialize,
            ) -> std::result::Result<Vec<u8>, $crate::BoxError> {
                encode(value)
            }
            fn decode_erased(
                &self,
                bytes: &[u8],
                sink: &mut $crate::codec::DecodeSink<'_>,
            ) -> std::result::Result<(), $crate::BoxError> {
                with_deserializer(bytes, sink)
            }
            fn builtin(&self) -> Option<$crate::codec::BuiltinCodec> {
                Some($crate::codec::BuiltinCodec::$variant)
            }
        }
    };
}
pub(crate) use builtin_codec;
