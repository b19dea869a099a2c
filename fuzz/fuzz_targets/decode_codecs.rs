//! Arbitrary bytes into every codec: errors are fine, panics are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memorix_runtime::{decode, Codec, Json, MsgPack, Pickle, RawBytes};
use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Record {
    id: u64,
    name: String,
    tags: BTreeMap<String, Vec<Option<i32>>>,
    nested: Option<Box<Record>>,
}

fuzz_target!(|data: &[u8]| {
    let codecs: [&dyn Codec; 4] = [&MsgPack, &Json, &Pickle, &RawBytes];
    for codec in codecs {
        let _ = decode::<Record>(codec, data);
        let _ = decode::<serde_json::Value>(codec, data);
        let _ = decode::<String>(codec, data);
        let _ = decode::<Vec<u8>>(codec, data);
    }
});
