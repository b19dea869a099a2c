//! Properties of the decode path and the memory engine, checked on generated
//! inputs: what comes out of a codec is what went in, and no bytes, however
//! malformed, make a decoder panic.

use memorix::prelude::*;
use memorix::{
    decode, decompress, encode, Codec, Compression, Envelope, Fernet, Fernet256, Json, MemoryCache, MsgPack, Pickle,
    RawBytes, RedisConfig, Transform,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Point(i64, i64),
    Named { label: String, weight: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    #[serde(with = "serde_bytes")]
    blob: Vec<u8>,
    tags: BTreeMap<String, i32>,
    shapes: Vec<Shape>,
    flag: Option<bool>,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Empty),
        (any::<i64>(), any::<i64>()).prop_map(|(x, y)| Shape::Point(x, y)),
        (".{0,12}", proptest::option::of(any::<u32>())).prop_map(|(label, weight)| Shape::Named { label, weight }),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        ".{0,24}",
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::btree_map(".{0,8}", any::<i32>(), 0..6),
        proptest::collection::vec(shape(), 0..5),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(id, name, blob, tags, shapes, flag)| Record {
            id,
            name,
            blob,
            tags,
            shapes,
            flag,
        })
}

fn structured_codecs() -> Vec<Box<dyn Codec>> {
    vec![Box::new(MsgPack), Box::new(Json), Box::new(Pickle)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn structured_codecs_round_trip(mut value in record()) {
        // serde-pickle cannot decode integers above i64::MAX (see the Pickle docs
        // and `pickle_rejects_u64_above_i64_max` below).
        value.id &= i64::MAX as u64;
        for codec in structured_codecs() {
            let bytes = encode(codec.as_ref(), &value).unwrap();
            let back: Record = decode(codec.as_ref(), &bytes).unwrap();
            prop_assert_eq!(&back, &value, "codec {}", codec.name());
        }
    }

    #[test]
    fn raw_codec_round_trips_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let stored = encode(&RawBytes, &serde_bytes::Bytes::new(&bytes)).unwrap();
        prop_assert_eq!(&stored, &bytes);
        let back: serde_bytes::ByteBuf = decode(&RawBytes, &stored).unwrap();
        prop_assert_eq!(back.into_vec(), bytes);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        for codec in structured_codecs().into_iter().chain([Box::new(RawBytes) as Box<dyn Codec>]) {
            // Errors are fine; a panic fails the property.
            let _ = decode::<Record>(codec.as_ref(), &bytes);
            let _ = decode::<String>(codec.as_ref(), &bytes);
            let _ = decode::<Vec<u64>>(codec.as_ref(), &bytes);
            let _ = decode::<HashMap<String, Option<f64>>>(codec.as_ref(), &bytes);
        }
    }

    #[test]
    fn truncated_encodings_are_errors_not_panics(value in record(), cut in 0usize..64) {
        for codec in structured_codecs() {
            let bytes = encode(codec.as_ref(), &value).unwrap();
            let cut = cut.min(bytes.len().saturating_sub(1));
            prop_assert!(decode::<Record>(codec.as_ref(), &bytes[..cut]).is_err(), "codec {}", codec.name());
        }
    }

    #[test]
    fn config_parsing_never_panics(text in ".{0,80}", url_tail in "[a-z0-9:@/?=&%.\\[\\]-]{0,60}") {
        let _ = RedisConfig::from_url(&text);
        let _ = RedisConfig::from_url(&format!("redis://{url_tail}"));
        let _ = memorix::parse_duration("ttl", &text);
    }
}

#[test]
fn pickle_rejects_u64_above_i64_max() {
    // Found by `structured_codecs_round_trip`: serde-pickle writes such a value
    // as a Python long but cannot read it back into a u64. An error, not a panic.
    let bytes = encode(&Pickle, &u64::MAX).unwrap();
    assert!(decode::<u64>(&Pickle, &bytes).unwrap_err().is_corrupt_entry());
    assert_eq!(
        decode::<u64>(&Pickle, &encode(&Pickle, &(i64::MAX as u64)).unwrap()).unwrap(),
        i64::MAX as u64
    );
}

const KEY256: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const KEY128: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";

fn envelope(encrypted: bool) -> Envelope {
    let compression = Compression::builder()
        .threshold(16)
        .max_decompressed(1 << 16)
        .build()
        .unwrap();
    let envelope = Envelope::new(&MsgPack).compression(compression);
    if encrypted {
        envelope.cipher(Arc::new(Fernet256::new(KEY256).unwrap()))
    } else {
        envelope
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// The rest of the decode path: stored bytes from anywhere are an error or
    /// a value, never a panic, and decompression never exceeds its cap.
    #[test]
    fn envelope_decompress_and_decrypt_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = envelope(false).open(&bytes);
        let _ = envelope(true).open(&bytes);
        if let Ok(out) = decompress(&bytes, 4096) {
            prop_assert!(out.len() <= 4096);
        }
        let _ = Fernet256::new(KEY256).unwrap().decrypt(&bytes);
        let _ = Fernet::new(KEY128).unwrap().decrypt(&bytes);
    }

    #[test]
    fn envelope_round_trips_and_detects_tampering(
        plain in proptest::collection::vec(any::<u8>(), 0..400),
        flip in any::<usize>(),
    ) {
        for encrypted in [false, true] {
            let env = envelope(encrypted);
            let stored = env.seal(&plain).unwrap();
            prop_assert_eq!(&env.open(&stored).unwrap(), &plain);
            if encrypted {
                let mut tampered = stored.clone();
                let i = flip % tampered.len();
                tampered[i] ^= 0x01;
                // Authenticated: a changed byte is an error (or, in the base64
                // padding bits, the same plaintext), never different data.
                if let Ok(out) = env.open(&tampered) {
                    prop_assert_eq!(out, plain.clone());
                }
            }
        }
    }
}

/// One step of the model test.
#[derive(Debug, Clone)]
enum Op {
    Set(u8, u32),
    Remove(u8),
    Get(u8),
    Has(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..16, any::<u32>()).prop_map(|(k, v)| Op::Set(k, v)),
        (0u8..16).prop_map(Op::Remove),
        (0u8..16).prop_map(Op::Get),
        (0u8..16).prop_map(Op::Has),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Below its bound, MemoryCache behaves exactly like a map.
    #[test]
    fn memory_cache_matches_a_map_model(ops in proptest::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let cache = MemoryCache::new(1_000);
            let mut model: HashMap<u8, u32> = HashMap::new();
            for op in ops {
                let key = |k: u8| format!("k{k}");
                match op {
                    Op::Set(k, v) => {
                        cache.set(&key(k), &v, None).await.unwrap();
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(cache.remove(&key(k)).await.unwrap(), model.remove(&k).is_some());
                    }
                    Op::Get(k) => {
                        prop_assert_eq!(cache.get::<u32>(&key(k)).await.unwrap(), model.get(&k).copied());
                    }
                    Op::Has(k) => {
                        prop_assert_eq!(cache.has(&key(k)).await.unwrap(), model.contains_key(&k));
                    }
                }
            }
            Ok(())
        })?;
    }
}
