//! zlib compression of stored values, with a hard cap on decompressed size.
//!
//! [`compress`] and [`decompress`] are the raw operations; [`Compression`] is
//! the [`Transform`] stage that compresses only values above a size threshold
//! and marks every stored value with one tag byte saying whether it is
//! compressed, so a reader never guesses.
//!
//! Decompression stops at a limit of `max_output + 1` bytes: a zlib bomb (a
//! few KiB that inflate to gigabytes) stops at the cap with
//! [`CacheError::Compression`], and memory stays bounded by the cap.
//!
//! Speed on small values: a zlib stream costs a fixed setup (a fresh state
//! allocates and clears about 300 KiB) and, above level 1, Huffman tables
//! built per block. Both dominated values of a few KiB, so each thread keeps one
//! compressor and one decompressor and resets them between values (the
//! zlib-rs backend, whose reset is cheaper than miniz_oxide's), and values up
//! to `DEFAULT_FAST_BELOW` bytes are compressed at level 1 (fixed Huffman
//! codes, no tables): a 1 KiB JSON value becomes 388 bytes in about a third
//! of the time level 6 takes for 300 (BENCHMARKS.md). The stream is plain zlib either way,
//! so any zlib reader (Python's `zlib.decompress` included) reads it. The
//! price is the kept state: about 300 KiB per thread that has compressed a
//! value, freed when the thread exits.
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
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

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

/// Values up to this many bytes are compressed at level 1 by default (see
/// [`CompressionBuilder::fast_below`]).
pub const DEFAULT_FAST_BELOW: usize = 4096;

/// How much a decompression buffer grows per step when the stream inflates
/// beyond its first guess; bounded by the cap.
const INFLATE_STEP: usize = 64 * 1024;

thread_local! {
    /// This thread's compressor, reset between values; `None` until first use.
    static DEFLATE: RefCell<Option<(Compress, u32)>> = const { RefCell::new(None) };
    /// This thread's decompressor, reset between values.
    static INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

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
    DEFLATE.with(|slot| match slot.try_borrow_mut() {
        Ok(mut slot) => {
            let state = match slot.take() {
                Some((mut state, at)) => {
                    state.reset();
                    if at != level {
                        state
                            .set_level(flate2::Compression::new(level))
                            .map_err(deflate_error)?;
                    }
                    state
                }
                None => Compress::new(flate2::Compression::new(level), true),
            };
            let (state, packed) = deflate_all(state, bytes)?;
            *slot = Some((state, level));
            Ok(packed)
        }
        // Only reached if a compression re-entered this thread's state.
        Err(_) => Ok(deflate_all(Compress::new(flate2::Compression::new(level), true), bytes)?.1),
    })
}

/// Runs one whole stream through `state`; hands the state back for reuse
/// (dropped on error, so a failed stream never leaves state behind).
fn deflate_all(mut state: Compress, bytes: &[u8]) -> Result<(Compress, Vec<u8>)> {
    // The zlib bound: the output never needs more than this in one call.
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 1000 + 64);
    loop {
        let consumed = usize::try_from(state.total_in()).unwrap_or(usize::MAX);
        let input = bytes.get(consumed..).unwrap_or_default();
        match state
            .compress_vec(input, &mut out, FlushCompress::Finish)
            .map_err(deflate_error)?
        {
            Status::StreamEnd => return Ok((state, out)),
            _ => out.reserve(out.capacity().max(64)),
        }
    }
}

fn deflate_error(err: flate2::CompressError) -> CacheError {
    CacheError::Compression(format!("zlib compression failed: {err}"))
}

/// Inflates one zlib stream, refusing to produce more than `max_output` bytes.
///
/// Fails with [`CacheError::Compression`] when the input is not a complete
/// zlib stream, has bytes after the stream, or would inflate past the cap.
/// At most `max_output + 1` bytes are ever held.
pub fn decompress(bytes: &[u8], max_output: usize) -> Result<Vec<u8>> {
    INFLATE.with(|slot| match slot.try_borrow_mut() {
        Ok(mut slot) => {
            let state = match slot.take() {
                Some(mut state) => {
                    state.reset(true);
                    state
                }
                None => Decompress::new(true),
            };
            let (state, plain) = inflate_all(state, bytes, max_output)?;
            *slot = Some(state);
            Ok(plain)
        }
        Err(_) => Ok(inflate_all(Decompress::new(true), bytes, max_output)?.1),
    })
}

/// Inflates `bytes` through `state` within `max_output`; hands the state
/// back for reuse on success.
fn inflate_all(mut state: Decompress, bytes: &[u8], max_output: usize) -> Result<(Decompress, Vec<u8>)> {
    let limit = max_output.saturating_add(1);
    // Small values inflate a few times over; bigger ones grow in steps.
    let mut out = Vec::with_capacity(limit.min(bytes.len().saturating_mul(4).max(256)));
    loop {
        let consumed = usize::try_from(state.total_in()).unwrap_or(usize::MAX);
        let input = bytes.get(consumed..).unwrap_or_default();
        let before = (state.total_in(), state.total_out());
        let status = state
            .decompress_vec(input, &mut out, FlushDecompress::Finish)
            .map_err(|e| CacheError::Compression(format!("corrupt zlib data: {e}")))?;
        if out.len() > max_output {
            return Err(CacheError::Compression(format!(
                "value inflates past the {max_output}-byte cap (possible zlib bomb)"
            )));
        }
        if status == Status::StreamEnd {
            if usize::try_from(state.total_in()).ok() != Some(bytes.len()) {
                return Err(CacheError::Compression("unexpected bytes after the zlib stream".into()));
            }
            return Ok((state, out));
        }
        if out.len() < out.capacity() && before == (state.total_in(), state.total_out()) {
            // Room to write, and nothing moved: the input ended mid-stream.
            return Err(CacheError::Compression(
                "corrupt zlib data: the stream is truncated".into(),
            ));
        }
        if out.len() == out.capacity() {
            let room = (limit - out.len()).min(INFLATE_STEP.max(out.len()));
            out.reserve_exact(room);
        }
    }
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
    fast_below: usize,
    max_output: usize,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            threshold: DEFAULT_COMPRESSION_THRESHOLD,
            level: DEFAULT_COMPRESSION_LEVEL,
            fast_below: DEFAULT_FAST_BELOW,
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

    /// zlib level, 0..=9 (default 6), for values larger than
    /// [`fast_below`](Self::fast_below).
    pub fn level(mut self, level: u32) -> Self {
        self.0.level = level;
        self
    }

    /// Values up to this many bytes (default `DEFAULT_FAST_BELOW`, 4 KiB)
    /// are compressed at level 1 whatever [`level`](Self::level) says: at
    /// that size higher levels spend more time building Huffman tables than
    /// they save in bytes (1 KiB of JSON: 388 bytes at level 1, 300 at level
    /// 6 in three times the time). `0` compresses everything at `level`.
    pub fn fast_below(mut self, bytes: usize) -> Self {
        self.0.fast_below = bytes;
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
    /// A builder starting from the defaults (threshold 1000 B, level 6 above
    /// 4 KiB and 1 up to it, cap 64 MiB).
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

    /// The zlib level a value of `len` bytes is compressed at.
    pub fn level_for(&self, len: usize) -> u32 {
        if len <= self.fast_below {
            self.level.min(1)
        } else {
            self.level
        }
    }

    /// Compresses `plain` if it is above the threshold and compression pays:
    /// `Some(zlib bytes)`, else `None` (store it as it is).
    pub fn compress_if_worth(&self, plain: &[u8]) -> Result<Option<Vec<u8>>> {
        if plain.len() <= self.threshold {
            return Ok(None);
        }
        let packed = compress(plain, self.level_for(plain.len()))?;
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

    fn open_owned(&self, mut stored: Vec<u8>) -> Result<Vec<u8>> {
        if stored.first() == Some(&TAG_RAW) {
            // Stored as is: drop the tag in place instead of copying the body.
            stored.remove(0);
            return Ok(stored);
        }
        self.open(&stored)
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
        assert_eq!(stage.open_owned(small).unwrap(), b"0123456789");
        assert_eq!(stage.open_owned(sealed).unwrap(), big);
        assert!(stage.open_owned(Vec::new()).is_err());
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
    fn reads_streams_written_by_python_zlib() {
        // `zlib.compress(b"hello " * 50, 6)` and `zlib.compress(b"hello", 1)`.
        let six = [
            0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x18, 0x25, 0x89, 0x20, 0x01, 0xe7, 0xaa, 0x6e, 0x29,
        ];
        assert_eq!(decompress(&six, 300).unwrap(), b"hello ".repeat(50));
        let one = [
            0x78, 0x01, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x06, 0x2c, 0x02, 0x15,
        ];
        assert_eq!(decompress(&one, 5).unwrap(), b"hello");
        assert!(decompress(&one, 4).is_err(), "one byte over the cap");
    }

    #[test]
    fn reused_state_round_trips_across_levels_and_failures() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"id\":{i}}},").into_bytes())
            .collect();
        for (round, level) in [6, 1, 9, 0, 6, 1].into_iter().enumerate() {
            let len = 500 + round * 3_000;
            let packed = compress(&text[..len], level).unwrap();
            assert_eq!(decompress(&packed, len).unwrap(), &text[..len], "level {level}");
            // A failed inflate leaves nothing behind for the next call.
            assert!(decompress(&packed[..packed.len() / 2], len).is_err());
            assert!(decompress(b"\x78\x9cnot deflate", len).is_err());
        }
        // A value needing several growth steps.
        let big = compress(&text, 6).unwrap();
        assert_eq!(decompress(&big, text.len()).unwrap(), text);
    }

    #[test]
    fn small_values_use_the_fast_level() {
        let stage = Compression::default();
        assert_eq!(stage.level_for(1_024), 1);
        assert_eq!(stage.level_for(DEFAULT_FAST_BELOW + 1), 6);
        let exact = Compression::new().fast_below(0).build().unwrap();
        assert_eq!(exact.level_for(1_024), 6);
        let stored = Compression::new().level(0).build().unwrap();
        assert_eq!(stored.level_for(10), 0);
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
