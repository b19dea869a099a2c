//! The stored byte format of the two-tier engine: a small versioned header,
//! then the body.
//!
//! ```text
//! byte 0      magic 0xD7
//! byte 1      format version (1)
//! byte 2      flags: bit 0 = zlib-compressed, bit 1 = encrypted,
//!                    bit 2 = stamped, bit 3 = tombstone
//! byte 3      codec: 0 = other, 1 = msgpack, 2 = json, 3 = pickle, 4 = raw bytes
//! bytes 4..12 write stamp, when stamped: microseconds since the Unix epoch,
//!             big-endian u64, taken when the value was first written
//! then        body: codec bytes, compressed if flagged, then encrypted if
//!             flagged (a tombstone has no body)
//! ```
//!
//! The write stamp is an additive field: a value without it (flag bit 2
//! clear) has the 4-byte header of earlier releases and reads as before.
//! Every value [`Envelope::seal`] writes carries one, so that a write replayed
//! after an outage can be compared with what Redis holds, and never replaces a
//! newer one (last original write wins, by the writers' clocks). A tombstone
//! is a stamped header with no body: the two-tier engine writes it for a
//! removal, so that an older replayed write cannot bring the key back; every
//! read treats it as a miss. [`Header::len`] is the header's length in bytes
//! (4, or 12 when stamped).
//!
//! With encryption on, the whole header (stamp included) is also encrypted with the body and
//! compared on read, so the cipher's MAC covers every header byte: flags or
//! the codec cannot be changed without the read failing.
//!
//! Any reader knows from the header how to decode a value, whatever the
//! writer's settings were: a reader with compression off still reads a
//! compressed value, and a value written without encryption is refused by a
//! reader that holds a key (it could have been planted by anyone with write
//! access to Redis).
//!
//! [`Envelope`] is a [`Transform`], so it is one stage of the one value
//! [`Pipeline`](crate::Pipeline): codec -> compress -> encrypt -> header.
//!
//! ```
//! use memorix_runtime::{Compression, Envelope, Header, MsgPack, Transform};
//!
//! let envelope = Envelope::new(&MsgPack).compression(Compression::new().threshold(16).build()?);
//! let stored = envelope.seal(&[7u8; 1_000])?;
//! let header = Header::parse(&stored)?.0;
//! assert!(header.compressed() && !header.encrypted());
//! assert_eq!(envelope.open(&stored)?, vec![7u8; 1_000]);
//! # Ok::<_, memorix_runtime::CacheError>(())
//! ```

use crate::codec::{BuiltinCodec, Codec};
use crate::compression::Compression;
use crate::error::{CacheError, Result};
use crate::metrics::CompressionCounters;
use crate::pipeline::Transform;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// First byte of every enveloped value.
pub const ENVELOPE_MAGIC: u8 = 0xD7;
/// Current format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Length in bytes of the header without a write stamp.
pub const HEADER_LEN: usize = 4;
/// Length in bytes of the write stamp that follows the header when stamped.
pub const STAMP_LEN: usize = 8;

const FLAG_COMPRESSED: u8 = 0b0001;
const FLAG_ENCRYPTED: u8 = 0b0010;
const FLAG_STAMPED: u8 = 0b0100;
const FLAG_TOMBSTONE: u8 = 0b1000;
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_STAMPED | FLAG_TOMBSTONE;

/// The parsed header of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    flags: u8,
    codec: u8,
    stamp: Option<u64>,
}

/// A write stamp for a value written now: microseconds since the Unix epoch,
/// strictly increasing within this process (two writes in one microsecond
/// still order).
pub fn write_stamp() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let previous = LAST
        .fetch_update(Relaxed, Relaxed, |last| Some(now.max(last.saturating_add(1))))
        .unwrap_or(now);
    now.max(previous.saturating_add(1))
}

/// A tombstone: the stored form of a removal made at `stamp`.
pub fn tombstone(stamp: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + STAMP_LEN);
    out.extend_from_slice(&[ENVELOPE_MAGIC, ENVELOPE_VERSION, FLAG_STAMPED | FLAG_TOMBSTONE, 0]);
    out.extend_from_slice(&stamp.to_be_bytes());
    out
}

/// True when `stored` is a tombstone (reads treat it as a miss).
pub fn is_tombstone(stored: &[u8]) -> bool {
    matches!(Header::parse(stored), Ok((header, _)) if header.tombstone())
}

impl Header {
    /// Splits stored bytes into header and body, or fails with
    /// [`CacheError::Codec`] when they do not start with a known header.
    pub fn parse(stored: &[u8]) -> Result<(Header, &[u8])> {
        let bad = |why: String| CacheError::codec("envelope", why);
        if stored.len() < HEADER_LEN {
            return Err(bad(format!("{} bytes is too short for the header", stored.len())));
        }
        if stored[0] != ENVELOPE_MAGIC {
            return Err(bad(format!(
                "missing header (first byte 0x{:02x}): not written by GenericRedisCache",
                stored[0]
            )));
        }
        if stored[1] != ENVELOPE_VERSION {
            return Err(bad(format!("unsupported format version {}", stored[1])));
        }
        let flags = stored[2];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(bad(format!("unknown flags 0b{flags:08b}")));
        }
        let (stamp, body) = if flags & FLAG_STAMPED != 0 {
            let Some(stamp) = stored.get(HEADER_LEN..HEADER_LEN + STAMP_LEN) else {
                return Err(bad(format!("{} bytes is too short for a stamped header", stored.len())));
            };
            let mut be = [0u8; STAMP_LEN];
            be.copy_from_slice(stamp);
            (Some(u64::from_be_bytes(be)), &stored[HEADER_LEN + STAMP_LEN..])
        } else {
            (None, &stored[HEADER_LEN..])
        };
        if flags & FLAG_TOMBSTONE != 0 && (stamp.is_none() || !body.is_empty()) {
            return Err(bad("a tombstone is a stamped header without a body".to_owned()));
        }
        Ok((
            Header {
                flags,
                codec: stored[3],
                stamp,
            },
            body,
        ))
    }

    /// The header's length in bytes: [`HEADER_LEN`], plus [`STAMP_LEN`] when stamped.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        HEADER_LEN + if self.stamp.is_some() { STAMP_LEN } else { 0 }
    }

    /// When the value was first written (microseconds since the Unix
    /// epoch), if the writer stamped it.
    pub fn stamp(&self) -> Option<u64> {
        self.stamp
    }

    /// True for a tombstone: a removal marker, read as a miss.
    pub fn tombstone(&self) -> bool {
        self.flags & FLAG_TOMBSTONE != 0
    }

    /// True when the body is zlib-compressed.
    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    /// True when the body is encrypted.
    pub fn encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }

    /// The codec id byte (0 = a user codec, 1 = msgpack, 2 = json, 3 = pickle, 4 = raw).
    pub fn codec_id(&self) -> u8 {
        self.codec
    }
}

/// The codec id written into the header.
pub(crate) fn codec_id(codec: &dyn Codec) -> u8 {
    match codec.builtin() {
        Some(BuiltinCodec::MsgPack) => 1,
        Some(BuiltinCodec::Json) => 2,
        Some(BuiltinCodec::Pickle) => 3,
        Some(BuiltinCodec::RawBytes) => 4,
        _ => 0,
    }
}

fn codec_name(id: u8) -> &'static str {
    match id {
        1 => "msgpack",
        2 => "json",
        3 => "pickle",
        4 => "raw",
        _ => "a user codec",
    }
}

/// The header stage: compresses above a threshold, encrypts with any cipher
/// [`Transform`], and frames the result with a [`Header`].
#[derive(Clone)]
#[must_use]
pub struct Envelope {
    codec: u8,
    codec_name: &'static str,
    compression: Option<Compression>,
    cipher: Option<Arc<dyn Transform>>,
    counters: Arc<CompressionCounters>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("codec", &self.codec_name)
            .field("compression", &self.compression)
            .field("encrypted", &self.cipher.is_some())
            .finish()
    }
}

impl Envelope {
    /// An envelope for values encoded by `codec`, without compression or encryption.
    pub fn new(codec: &dyn Codec) -> Self {
        Envelope {
            codec: codec_id(codec),
            codec_name: codec.name(),
            compression: None,
            cipher: None,
            counters: Arc::default(),
        }
    }

    /// Compresses values above the stage's threshold.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Encrypts every value with `cipher` (for example the crypto module's Fernet stage).
    pub fn cipher(mut self, cipher: Arc<dyn Transform>) -> Self {
        self.cipher = Some(cipher);
        self
    }

    /// Records compression work into `counters`.
    pub(crate) fn counters(mut self, counters: Arc<CompressionCounters>) -> Self {
        self.counters = counters;
        self
    }

    /// True when a cipher is configured.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    fn cap(&self) -> usize {
        self.compression
            .map_or(crate::compression::DEFAULT_MAX_DECOMPRESSED, |c| {
                c.max_decompressed_bytes()
            })
    }
}

impl Transform for Envelope {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let mut flags = 0;
        let mut body: Option<Vec<u8>> = None;
        if let Some(compression) = &self.compression {
            if plain.len() > compression.threshold_bytes() {
                let started = Instant::now();
                let packed = compression.compress_if_worth(plain)?;
                self.counters.record(
                    plain.len(),
                    packed.as_ref().map_or(plain.len(), Vec::len),
                    started.elapsed(),
                );
                if let Some(packed) = packed {
                    flags |= FLAG_COMPRESSED;
                    body = Some(packed);
                }
            }
        }
        if self.cipher.is_some() {
            flags |= FLAG_ENCRYPTED;
        }
        let mut header = Vec::with_capacity(HEADER_LEN + STAMP_LEN);
        header.extend_from_slice(&[ENVELOPE_MAGIC, ENVELOPE_VERSION, flags | FLAG_STAMPED, self.codec]);
        header.extend_from_slice(&write_stamp().to_be_bytes());
        if let Some(cipher) = &self.cipher {
            body = Some(cipher.seal(&authenticated(&header, body.as_deref().unwrap_or(plain)))?);
        }
        let body = body.as_deref().unwrap_or(plain);
        let mut out = header;
        out.reserve(body.len());
        out.extend_from_slice(body);
        Ok(out)
    }

    fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
        let (header, body) = Header::parse(stored)?;
        if header.tombstone() {
            return Err(CacheError::codec(self.codec_name, "a removal marker, not a value"));
        }
        let header_bytes = &stored[..stored.len() - body.len()];
        if header.codec != self.codec && header.codec != 0 && self.codec != 0 {
            return Err(CacheError::codec(
                self.codec_name,
                format!("value was written with {}", codec_name(header.codec)),
            ));
        }
        let decrypted;
        let body = match (header.encrypted(), &self.cipher) {
            (true, Some(cipher)) => {
                decrypted = cipher.open(body)?;
                strip_authenticated(header_bytes, &decrypted)?
            }
            (true, None) => return Err(CacheError::Crypto("value is encrypted but no key is configured".into())),
            (false, Some(_)) => {
                return Err(CacheError::Crypto(
                    "refusing an unencrypted value: this cache encrypts, so plain values are not trusted".into(),
                ))
            }
            (false, None) => body,
        };
        if header.compressed() {
            crate::compression::decompress(body, self.cap())
        } else {
            Ok(body.to_vec())
        }
    }
}

/// What the cipher seals: the header bytes, then the body. The header is
/// authenticated whatever fields it holds.
fn authenticated(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

/// The body behind the authenticated copy of the header, which must equal
/// the header in front of the token.
fn strip_authenticated<'a>(header: &[u8], opened: &'a [u8]) -> Result<&'a [u8]> {
    opened.strip_prefix(header).ok_or_else(|| {
        CacheError::Crypto("the header differs from its authenticated copy: flags or codec were altered".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Json, MsgPack};

    /// A user codec (id 0): reads values of any codec id.
    #[derive(Debug)]
    struct Wrapped;
    impl Codec for Wrapped {
        fn name(&self) -> &'static str {
            "wrapped"
        }
        fn encode_erased(&self, _: &dyn erased_serde::Serialize) -> Result<Vec<u8>, crate::BoxError> {
            Ok(Vec::new())
        }
        fn decode_erased(&self, _: &[u8], _: &mut crate::codec::DecodeSink<'_>) -> Result<(), crate::BoxError> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Xor;
    impl Transform for Xor {
        fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
            Ok(plain.iter().map(|b| b ^ 0x5a).collect())
        }
        fn open(&self, stored: &[u8]) -> Result<Vec<u8>> {
            self.seal(stored)
        }
    }

    #[test]
    fn flags_tell_how_to_read() {
        let compression = Compression::new().threshold(8).build().unwrap();
        let writer = Envelope::new(&MsgPack).compression(compression).cipher(Arc::new(Xor));
        let value = vec![1u8; 500];
        let stored = writer.seal(&value).unwrap();
        let (header, _) = Header::parse(&stored).unwrap();
        assert!(header.compressed() && header.encrypted());
        assert_eq!(header.codec_id(), 1);
        // A reader without compression configured still inflates.
        let reader = Envelope::new(&MsgPack).cipher(Arc::new(Xor));
        assert_eq!(reader.open(&stored).unwrap(), value);
        // Small values are not compressed.
        let small = writer.seal(b"abc").unwrap();
        assert!(!Header::parse(&small).unwrap().0.compressed());
        assert_eq!(writer.open(&small).unwrap(), b"abc");
    }

    #[test]
    fn an_encrypted_header_cannot_be_altered() {
        let envelope = Envelope::new(&MsgPack).cipher(Arc::new(Xor));
        let stored = envelope.seal(b"value").unwrap();
        assert_eq!(envelope.open(&stored).unwrap(), b"value");
        // A compressed flag, or a codec byte a user-codec reader accepts.
        for (at, value) in [(2, FLAG_ENCRYPTED | FLAG_COMPRESSED), (3, 0)] {
            let mut altered = stored.clone();
            altered[at] = value;
            let err = envelope.open(&altered).unwrap_err();
            assert!(matches!(err, CacheError::Crypto(_)), "byte {at}: {err}");
            let any_codec = Envelope::new(&Wrapped).cipher(Arc::new(Xor));
            assert!(any_codec.open(&altered).unwrap_err().is_corrupt_entry());
        }
    }

    #[test]
    fn every_value_is_stamped_and_tombstones_read_as_markers() {
        let envelope = Envelope::new(&MsgPack);
        let (first, second) = (envelope.seal(b"a").unwrap(), envelope.seal(b"b").unwrap());
        let (h1, body) = Header::parse(&first).unwrap();
        assert_eq!((h1.len(), body), (HEADER_LEN + STAMP_LEN, &b"a"[..]));
        let h2 = Header::parse(&second).unwrap().0;
        assert!(h2.stamp().unwrap() > h1.stamp().unwrap(), "stamps increase");
        // A value of an earlier release (no stamp) still reads.
        assert_eq!(envelope.open(b"\xd7\x01\x00\x01x").unwrap(), b"x");
        let tomb = tombstone(42);
        assert!(is_tombstone(&tomb) && !is_tombstone(&first));
        assert_eq!(Header::parse(&tomb).unwrap().0.stamp(), Some(42));
        assert!(envelope.open(&tomb).unwrap_err().is_corrupt_entry());
    }

    #[test]
    fn mismatches_are_typed_errors() {
        let plain = Envelope::new(&MsgPack);
        let encrypted = Envelope::new(&MsgPack).cipher(Arc::new(Xor));
        let stored_plain = plain.seal(b"x").unwrap();
        let stored_enc = encrypted.seal(b"x").unwrap();
        assert!(matches!(encrypted.open(&stored_plain), Err(CacheError::Crypto(_))));
        assert!(matches!(plain.open(&stored_enc), Err(CacheError::Crypto(_))));
        assert!(Envelope::new(&Json).open(&stored_plain).unwrap_err().is_corrupt_entry());
        for bad in [
            &b""[..],
            b"\xd7\x01",
            b"abcd",
            b"\xd7\x09\x00\x01",
            b"\xd7\x01\x80\x01",
            b"\xd7\x01\x04\x01\x00",
            b"\xd7\x01\x08\x01",
        ] {
            assert!(plain.open(bad).unwrap_err().is_corrupt_entry(), "{bad:?}");
        }
        let bomb = crate::compression::compress(&vec![0u8; 2 << 20], 9).unwrap();
        let mut stored = vec![ENVELOPE_MAGIC, ENVELOPE_VERSION, FLAG_COMPRESSED, 1];
        stored.extend_from_slice(&bomb);
        let capped = Envelope::new(&MsgPack).compression(Compression::new().max_decompressed(1 << 20).build().unwrap());
        assert!(matches!(capped.open(&stored), Err(CacheError::Compression(_))));
    }
}
