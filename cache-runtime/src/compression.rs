//! zlib compression of stored values, with a hard cap on decompressed size.
//!
//! [`compress`] and [`decompress`] are the raw operations; [`Compression`] is
//! the [`Transform`] stage that compresses only values above a size threshold
//! and marks every stored value with one tag byte saying whether it is
//! compressed, so a reader never guesses.
//!
//! Decompression reads through a limit of `max_output + 1` bytes: a zlib bomb
//! (a few KiB that inflate to gigabytes) stops at the cap with
//! [`CacheError::Compression`], and memory stays bounded by the cap.
//!
//! ```
//! use memorix_runtime::{Compression, Pipeline, Transform};
//! use std::sync::Arc;
//!
//! let stage = Compression::new().threshold(100).level(6).build()?;
//! let text = "hello ".repeat(1_000);
//! let stored = stage.seal(text.as_bytes())?;
//! assert!(stored.len() < text.len() / 10);
//! assert_eq!(stage.open(&stored)?, text.as_bytes());
//!
//! // Small values are stored as they are, behind the one tag byte.
//! assert_eq!(stage.seal(b"tiny")?.len(), 5);
//!
//! // As a pipeline stage of any engine:
//! let pipeline = Pipeline::plain().then(Arc::new(stage));
//! # let _ = pipeline;
//! # Ok::<_, memorix_runtime::CacheError>(())
//! ```

use crate::error::{CacheError, Result};
use crate::pipeline::Transform;
use std::io::Read;

/// Default decompressed-size cap: 64 MiB.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 64 * 1024 * 1024;

/// Default threshold: values larger than this many bytes are compressed.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1_000;

/// Default zlib level (1 = fastest, 9 = smallest).
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 6;

/// Tag byte of a value stored as it is.
const TAG_RAW: u8 = 0x00;
/// Tag byte of a zlib-compressed value.
const TAG_ZLIB: u8 = 0x01;

/// Compresses `bytes` as one zlib stream at `level` (0..=9).
///
/// ```
/// let packed = memorix_runtime::compress(&[b'a'; 10_000], 6)?;
/// assert!(packed.len() < 100);
/// assert_eq!(memorix_runtime::decompress(&packed, 10_000)?, vec![b'a'; 10_000]);
/// # Ok::<_, memorix_runtime::CacheError>(())
/// ```
pub fn compress(bytes: &[u8], level: u32) -> Result<Vec<u8>> {
    check_level(level)?;
    let mut encoder = flate2::read::ZlibEncoder::new(bytes, flate2::Compression::new(level));
    let mut out = Vec::with_capacity(bytes.len() / 4 + 16);
    encoder
        .read_to_end(&mut out)
        .map_err(|e| CacheError::Compression(format!("zlib compression failed: {e}")))?;
    Ok(out)
}

/// Inflates one zlib stream, refusing to produce more than `max_output` bytes.
///
/// Fails with [`CacheError::Compression`] when the input is not a complete
/// zlib stream, has bytes after the stream, or would inflate past the cap.
/// At most `max_output + 1` bytes are ever held.
pub fn decompress(bytes: &[u8], max_output: usize) -> Result<Vec<u8>> {
    let mut decoder = flate2::bufread::ZlibDecoder::new(bytes);
    let mut out = Vec::new();
    let limit = u64::try_from(max_output).unwrap_or(u64::MAX).saturating_add(1);
    decoder
        .by_ref()
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| CacheError::Compression(format!("corrupt zlib data: {e}")))?;
    if out.len() > max_output {
        return Err(CacheError::Compression(format!(
            "value inflates past the {max_output}-byte cap (possible zlib bomb)"
        )));
    }
    if !decoder.into_inner().is_empty() {
        return Err(CacheError::Compression("unexpected bytes after the zlib stream".into()));
    }
    Ok(out)
}

fn check_level(level: u32) -> Result<()> {
    if level > 9 {
        return Err(CacheError::config(
            "compression_level",
            format!("must be between 0 and 9, got {level}"),
        ));
    }
    Ok(())
}

/// The compression [`Transform`]: zlib above a size threshold, with a
/// decompressed-size cap.
///
/// Stored form: one tag byte (`0x00` = as is, `0x01` = zlib) then the payload.
/// A value is stored compressed only when it is larger than the threshold and
/// compression actually makes it smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    threshold: usize,
    level: u32,
    max_output: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            threshold: DEFAULT_COMPRESSION_THRESHOLD,
            level: DEFAULT_COMPRESSION_LEVEL,
            max_output: DEFAULT_MAX_DECOMPRESSED,
        }
    }
}

/// Builds a [`Compression`]; `build()` validates the fields.
#[derive(Debug, Clone, Copy, Default)]
#[must_use]
pub struct CompressionBuilder(Compression);

impl CompressionBuilder {
    /// Only values larger than this many bytes are compressed (default 1000).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.0.threshold = bytes;
        self
    }

    /// zlib level, 0..=9 (default 6).
    pub fn level(mut self, level: u32) -> Self {
        self.0.level = level;
        self
    }

    /// Largest decompressed size accepted (default 64 MiB); bigger fails with
    /// [`CacheError::Compression`].
    pub fn max_decompressed(mut self, bytes: usize) -> Self {
        self.0.max_output = bytes;
        self
    }

    /// Validates and returns the stage. Errors name the bad field.
    pub fn build(self) -> Result<Compression> {
        check_level(self.0.level)?;
        if self.0.max_output == 0 {
            return Err(CacheError::config("max_decompressed", "must be greater than zero"));
        }
        Ok(self.0)
    }
}

impl Compression {
    /// A builder starting from the defaults (threshold 1000 B, level 6, cap 64 MiB).
    /// `Compression::default()` is the built stage with those defaults.
    #[allow(clippy::new_ret_no_self)] // `Compression::new().threshold(..).build()` reads as intended
    pub fn new() -> CompressionBuilder {
        CompressionBuilder::default()
    }

    /// Same as [`Compression::new`].
    pub fn builder() -> CompressionBuilder {
        CompressionBuilder::default()
    }

    /// The size threshold in bytes.
    pub fn threshold_bytes(&self) -> usize {
        self.threshold
    }

    /// The zlib level.
    pub fn zlib_level(&self) -> u32 {
        self.level
    }

    /// The decompressed-size cap in bytes.
    pub fn max_decompressed_bytes(&self) -> usize {
        self.max_output
    }

    /// Compresses `plain` if it is above the threshold and compression pays:
    /// `Some(zlib bytes)`, else `None` (store it as it is).
    pub fn compress_if_worth(&self, plain: &[u8]) -> Result<Option<Vec<u8>>> {
        if plain.len() <= self.threshold {
            return Ok(None);
        }
        let packed = compress(plain, self.level)?;
        Ok((packed.len() < plain.len()).then_some(packed))
    }

    /// Inflates `packed` within this stage's cap.
    pub fn decompress(&self, packed: &[u8]) -> Result<Vec<u8>> {
        decompress(packed, self.max_output)
    }
}

impl Transform for Compression {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let (tag, body) = match self.compress_if_worth(plain)? {
            Some(packed) => (TAG_ZLIB, packed),
            None => (TAG_RAW, plain.to_vec()),
        };
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(tag);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
        match stored.split_first() {
            Some((&TAG_RAW, body)) => Ok(body.to_vec()),
            Some((&TAG_ZLIB, body)) => self.decompress(body),
            Some((tag, _)) => Err(CacheError::Compression(format!(
                "unknown compression tag 0x{tag:02x}: not written by memorix's compression stage"
            ))),
            None => Err(CacheError::Compression(
                "empty value: missing the compression tag".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bomb(inflated: usize) -> Vec<u8> {
        compress(&vec![0u8; inflated], 9).unwrap()
    }

    #[test]
    fn round_trips_and_respects_threshold() {
        let stage = Compression::new().threshold(10).build().unwrap();
        let small = stage.seal(b"0123456789").unwrap();
        assert_eq!(small, b"\x000123456789");
        let big = vec![b'x'; 5_000];
        let sealed = stage.seal(&big).unwrap();
        assert_eq!(sealed[0], TAG_ZLIB);
        assert!(sealed.len() < 100);
        assert_eq!(stage.open(&sealed).unwrap(), big);
        assert_eq!(stage.open(&small).unwrap(), b"0123456789");
    }

    #[test]
    fn incompressible_values_are_stored_raw() {
        // A de Bruijn-free pseudo-random sequence does not shrink.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..4_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let stage = Compression::default();
        let sealed = stage.seal(&noise).unwrap();
        assert_eq!(sealed[0], TAG_RAW);
        assert_eq!(stage.open(&sealed).unwrap(), noise);
    }

    #[test]
    fn zlib_bomb_is_refused_at_the_cap() {
        let packed = bomb(10 * 1024 * 1024);
        assert!(packed.len() < 20 * 1024);
        let err = decompress(&packed, 1024 * 1024).unwrap_err();
        assert!(matches!(err, CacheError::Compression(_)), "{err}");
        assert!(err.is_corrupt_entry());
        // Exactly at the cap is fine.
        assert_eq!(decompress(&packed, 10 * 1024 * 1024).unwrap().len(), 10 * 1024 * 1024);
    }

    #[test]
    fn corrupt_input_is_a_typed_error() {
        let stage = Compression::default();
        for bad in [&b""[..], b"\x07abc", b"\x01not zlib", b"\x01\x78\x9c"] {
            let err = stage.open(bad).unwrap_err();
            assert!(matches!(err, CacheError::Compression(_)), "{bad:?}: {err}");
        }
        let mut trailing = compress(b"hello", 6).unwrap();
        trailing.extend_from_slice(b"junk");
        assert!(decompress(&trailing, 100).is_err());
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = Compression::new().level(10).build().unwrap_err();
        assert!(err.to_string().contains("`compression_level`"));
        let err = Compression::new().max_decompressed(0).build().unwrap_err();
        assert!(err.to_string().contains("`max_decompressed`"));
        assert!(compress(b"x", 11).is_err());
    }
}
