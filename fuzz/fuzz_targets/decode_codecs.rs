//! Arbitrary bytes into every codec: errors are fine, panics and stack
//! overflows are bugs. Each input is also tried behind thousands of opened
//! containers in each format, so the depth limits are fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memorix_runtime::{decode, Codec, Json, MsgPack, Pickle, RawBytes, MAX_DECODE_DEPTH};
use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Record {
    id: u64,
    name: String,
    tags: BTreeMap<String, Vec<Option<i32>>>,
    nested: Option<Box<Record>>,
}

fn decode_all(codec: &dyn Codec, data: &[u8]) {
    let _ = decode::<Record>(codec, data);
    let _ = decode::<String>(codec, data);
    let _ = decode::<Vec<u8>>(codec, data);
    if let Ok(value) = decode::<serde_json::Value>(codec, data) {
        assert!(depth(&value) <= MAX_DECODE_DEPTH, "{} decoded past the depth limit", codec.name());
    }
}

/// Nesting depth of a JSON value, without recursion.
fn depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0)];
    while let Some((value, d)) = stack.pop() {
        let children: Vec<&serde_json::Value> = match value {
            serde_json::Value::Array(items) => items.iter().collect(),
            serde_json::Value::Object(map) => map.values().collect(),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.into_iter().map(|c| (c, d + 1)));
    }
    deepest
}

/// `data` behind `n` opened containers: JSON arrays, MessagePack one-element
/// arrays, pickle lists (both serde-pickle's and CPython's memo style).
fn behind_openers(n: usize, data: &[u8]) -> [(&'static dyn Codec, Vec<u8>); 4] {
    let mut json = vec![b'['; n];
    json.extend_from_slice(data);
    let mut msgpack = vec![0x91; n];
    msgpack.extend_from_slice(data);
    let mut pickle = vec![0x80, 3];
    pickle.extend(std::iter::repeat_n(b']', n));
    pickle.extend_from_slice(data);
    let mut memo = vec![0x80, 4];
    for _ in 0..n {
        memo.extend_from_slice(&[b']', 0x94]);
    }
    memo.extend_from_slice(data);
    [(&Json, json), (&MsgPack, msgpack), (&Pickle, pickle), (&Pickle, memo)]
}

fuzz_target!(|data: &[u8]| {
    let codecs: [&dyn Codec; 4] = [&MsgPack, &Json, &Pickle, &RawBytes];
    for codec in codecs {
        decode_all(codec, data);
    }
    if let Some((&n, rest)) = data.split_first() {
        let n = usize::from(n) * 400;
        for (codec, bytes) in behind_openers(n, rest) {
            decode_all(codec, &bytes);
        }
    }
});
