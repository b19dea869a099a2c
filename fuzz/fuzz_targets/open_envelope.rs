//! Arbitrary stored bytes through the two-tier envelope (header, zlib with its
//! output cap, optional Fernet256) and through bare decompression.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memorix_runtime::{decompress, Compression, Envelope, Fernet256, MsgPack, Transform};
use std::sync::Arc;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let compression = || {
        Compression::builder()
            .threshold(16)
            .max_decompressed(1 << 20)
            .build()
            .unwrap()
    };
    let plain = Envelope::new(&MsgPack).compression(compression());
    let _ = plain.open(data);
    let cipher = Fernet256::new(KEY).unwrap();
    let encrypted = Envelope::new(&MsgPack)
        .compression(compression())
        .cipher(Arc::new(cipher));
    let _ = encrypted.open(data);
    if let Ok(out) = decompress(data, 1 << 20) {
        assert!(out.len() <= 1 << 20, "the cap holds");
    }
});
