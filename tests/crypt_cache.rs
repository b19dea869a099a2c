//! CryptRedisCache and the ciphers: known answers from rick, bad input, every
//! Cache method against a real redis-server, codecs, compression, rotation.

mod support;

use memorix::crypto::{self, Algorithm, Cipher, Fernet, Fernet256, Keyring};
use memorix::prelude::*;
use memorix::{
    CacheError, Compression, CorruptEntryPolicy, CryptRedisCache, Json, MsgPack, Pickle, RawBytes, RedisCache,
    Rotation, Transform,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use support::{unique_prefix, RedisServer};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const IV: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const TIME: u64 = 1_700_000_000;

/// Tokens made by rick 0.8.6 (`rick.crypto.Fernet256(urlsafe_b64encode(KEY.encode()))
/// ._encrypt_from_parts(plain, 1700000000, bytes(range(16)))`). The Python interop
/// test re-creates them live; these pin them without Python.
fn rick_vectors() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (b"".to_vec(), "gQAAAABlU_EAAAECAwQFBgcICQoLDA0OD2-xn0na6p0dXDJsuHtn3Ohv5k5lPUO0Ix-m_MYrlbFYMe0ETTxi_kq5zXBFJCb0LQ=="),
        (b"a".to_vec(), "gQAAAABlU_EAAAECAwQFBgcICQoLDA0OD0JpST-yThzpsGVxanL7DnhlPdzDKSivf-9IWYOsmFMgFdRqM8Cjc39EZ7PO7Kje2w=="),
        (b"hello".to_vec(), "gQAAAABlU_EAAAECAwQFBgcICQoLDA0ODzGDUpebmFelfbTh-UUl7QwOoD6h-pLw_c0Re3FCLAqcw7d45DGYHaIWEcQAo2qQhw=="),
        (vec![b'x'; 15], "gQAAAABlU_EAAAECAwQFBgcICQoLDA0OD8q1sxx1rr5u9Q6uyH0Jbceq6uKqk4m11yY0MVD14na_YHmgO3ctFhiYUGqIaFCSzA=="),
        (vec![b'y'; 16], "gQAAAABlU_EAAAECAwQFBgcICQoLDA0OD8rrY6X3sZe0fFtnaQLVHNEI3gw6t2_7ga4bOiVOMtG_hwhQsMZR7Mre4EoNmlhzYE75aLM1aiUUc7HobCCGD00="),
        (vec![b'z'; 17], "gQAAAABlU_EAAAECAwQFBgcICQoLDA0OD6THTLW8ATvOcq4FsXMqS-RPAoCqrlwRJ6N1_OXdzm2vVyimc3GLc88Y5qdtv14YA62PkvfrjgnMhza47A1FVWE="),
        ((0u8..100).collect(), "gQAAAABlU_EAAAECAwQFBgcICQoLDA0OD329iCcvslk3aSo7gQBHQXUgrpJfVVv1sJ05KuHerQLzSPHfx80mmMRgcQj_JZauEPaVRr-xrtTy9aokTJgJwXt8jq25IYUXIvK3lTeOftGLAWdMyIOnxp16VbatCPFH8JLT-Tzt_0AQzue1q8et1Dj2evQSgVyxigkn540o1i-HkyDN9yuWFh3hpa_Txu_Owg=="),
    ]
}

/// 60 characters, 64 UTF-8 bytes: rick accepts it (it counts bytes).
const NON_ASCII_KEY: &str = "ключkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
/// rick: `Fernet256(urlsafe_b64encode(NON_ASCII_KEY.encode()))._encrypt_from_parts(b"hello", TIME, IV)`.
const NON_ASCII_HELLO: &str =
    "gQAAAABlU_EAAAECAwQFBgcICQoLDA0ODznaCldvpuINPeZpLRKMKdfS1OzXd_BswkcNTZL3F4ALwOea8F-EAJFuK5mJG0sX_Q==";

fn fresh_key() -> String {
    crypto::generate_key().unwrap()
}

fn crypto_reason(err: CacheError) -> String {
    match err {
        CacheError::Crypto(reason) => reason,
        other => panic!("expected CacheError::Crypto, got {other:?}"),
    }
}

fn config_error(err: CacheError) -> (&'static str, String) {
    match err {
        CacheError::Config { field, reason } => (field, reason),
        other => panic!("expected CacheError::Config, got {other:?}"),
    }
}

async fn crypt_cache(server: &RedisServer, key: &str, test: &str) -> CryptRedisCache {
    CryptRedisCache::builder()
        .config(server.config())
        .key(key)
        .prefix(unique_prefix(test))
        .connect()
        .await
        .unwrap()
}

async fn raw_get(server: &RedisServer, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut server.raw().await)
        .await
        .unwrap()
}

async fn raw_set(server: &RedisServer, key: &str, value: &[u8]) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(&mut server.raw().await)
        .await
        .unwrap();
}

// ---------------------------------------------------------------- known answers

#[test]
fn fernet256_tokens_are_byte_identical_to_ricks() {
    let f = Fernet256::new(KEY).unwrap();
    for (plain, token) in rick_vectors() {
        assert_eq!(
            f.encrypt_with_iv(&plain, TIME, IV),
            token,
            "plaintext of {} bytes",
            plain.len()
        );
        assert_eq!(f.decrypt(token).unwrap(), plain);
        assert_eq!(f.extract_timestamp(token).unwrap(), TIME);
    }
}

#[test]
fn non_ascii_key_of_64_bytes_is_accepted_like_rick() {
    assert_eq!(NON_ASCII_KEY.len(), 64);
    assert_eq!(NON_ASCII_KEY.chars().count(), 60);
    let f = Fernet256::new(NON_ASCII_KEY).unwrap();
    assert_eq!(f.encrypt_with_iv(b"hello", TIME, IV), NON_ASCII_HELLO);
    assert_eq!(f.decrypt(NON_ASCII_HELLO).unwrap(), b"hello");
}

#[test]
fn non_ascii_key_of_64_characters_is_rejected_for_its_byte_length() {
    let key = "é".repeat(64); // 64 characters, 128 bytes
    let (field, reason) = config_error(Fernet256::new(&key).unwrap_err());
    assert_eq!(field, "key");
    assert!(reason.contains("64 characters / 128 bytes"), "{reason}");
}

#[test]
fn keys_of_63_and_65_characters_are_config_errors_stating_the_rule() {
    for len in [63, 65, 0, 32] {
        let key = "k".repeat(len);
        let (field, reason) = config_error(Fernet256::new(&key).unwrap_err());
        assert_eq!(field, "key");
        assert!(reason.contains("exactly 64 bytes"), "{reason}");
        assert!(reason.contains(&format!("got {len} characters")), "{reason}");
        assert!(
            !reason.contains(&key) || len == 0,
            "the key must not be echoed: {reason}"
        );
    }
}

#[test]
fn max_age_and_clock_skew_follow_rick() {
    let f = Fernet256::new(KEY).unwrap();
    let token = f.encrypt_with_iv(b"v", TIME, IV);
    let max = Duration::from_secs(30);
    assert_eq!(f.decrypt_at_time(&token, max, TIME + 30).unwrap(), b"v");
    assert!(crypto_reason(f.decrypt_at_time(&token, max, TIME + 31).unwrap_err()).contains("expired"));
    assert!(crypto_reason(f.decrypt_at_time(&token, max, TIME - 61).unwrap_err()).contains("future"));
    assert_eq!(f.decrypt_with_max_age(f.encrypt(b"now").unwrap(), max).unwrap(), b"now");
}

#[test]
fn generated_keys_are_64_url_safe_characters_and_distinct() {
    let a = crypto::generate_key().unwrap();
    let b = Fernet256::generate_key().unwrap();
    assert_eq!(a.len(), 64);
    assert!(
        a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{a}"
    );
    assert_ne!(a, b);
    Fernet256::new(&a).unwrap();
    Fernet::new(&Fernet::generate_key().unwrap()).unwrap();
}

// ---------------------------------------------------------------- bad input

/// Every malformed token, through the cipher and through the cache.
fn bad_tokens() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE;
    let f = Fernet256::new(KEY).unwrap();
    let good = b64.decode(f.encrypt_with_iv(b"some secret value", TIME, IV)).unwrap();
    let flip = |index: usize| {
        let mut raw = good.clone();
        raw[index] ^= 0x01;
        b64.encode(raw).into_bytes()
    };
    let last = good.len() - 1;
    let mut wrong_version = good.clone();
    wrong_version[0] = 0x82;
    vec![
        (
            "truncated",
            b64.encode(&good[..good.len() - 5]).into_bytes(),
            "truncated",
        ),
        (
            "truncated to a header",
            b64.encode(&good[..20]).into_bytes(),
            "truncated",
        ),
        ("flipped bit in MAC", flip(last), "HMAC mismatch"),
        ("flipped bit in IV", flip(12), "HMAC mismatch"),
        ("flipped bit in ciphertext", flip(30), "HMAC mismatch"),
        ("flipped bit in timestamp", flip(8), "HMAC mismatch"),
        (
            "wrong version byte",
            b64.encode(&wrong_version).into_bytes(),
            "version byte 0x82",
        ),
        ("not base64", b"this is not base64!".to_vec(), "not url-safe base64"),
        (
            "plaintext pickle",
            b"\x80\x04\x95\x05\x00".to_vec(),
            "not url-safe base64",
        ),
        ("empty value", Vec::new(), "empty"),
        (
            "standard Fernet token",
            Fernet::new(&Fernet::generate_key().unwrap())
                .unwrap()
                .encrypt(b"x")
                .unwrap()
                .into_bytes(),
            "version byte 0x80",
        ),
    ]
}

#[test]
fn bad_tokens_are_crypto_errors_from_the_cipher() {
    let f = Fernet256::new(KEY).unwrap();
    for (what, token, expected) in bad_tokens() {
        let reason = crypto_reason(f.decrypt(&token).unwrap_err());
        assert!(reason.contains(expected), "{what}: {reason}");
        assert!(reason.starts_with("Fernet256: "), "{what}: {reason}");
        let via_transform = f.open(&token).unwrap_err();
        assert!(via_transform.is_corrupt_entry(), "{what}");
    }
}

#[tokio::test]
async fn bad_entries_are_crypto_errors_from_the_cache_never_plaintext() {
    let server = RedisServer::start();
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .key(KEY)
        .codec(RawBytes)
        .prefix("bad:")
        .connect()
        .await
        .unwrap();
    for (what, token, expected) in bad_tokens() {
        raw_set(&server, "bad:entry", &token).await;
        let reason = crypto_reason(cache.get_bytes("entry").await.unwrap_err());
        assert!(reason.contains(expected), "{what}: {reason}");
        let typed = cache.get::<serde_bytes::ByteBuf>("entry").await.unwrap_err();
        assert!(matches!(typed, CacheError::Crypto(_)), "{what}: {typed:?}");
        let many = cache.get_many_bytes(&["entry"]).await.unwrap_err();
        assert!(matches!(many, CacheError::Crypto(_)), "{what}");
    }
    // A plaintext string that happens to be valid base64 is still rejected.
    raw_set(&server, "bad:entry", b"hello").await;
    assert!(matches!(
        cache.get_bytes("entry").await.unwrap_err(),
        CacheError::Crypto(_)
    ));
}

#[tokio::test]
async fn wrong_key_is_a_crypto_error_and_miss_policy_turns_it_into_a_counted_miss() {
    let server = RedisServer::start();
    let prefix = unique_prefix("wrong_key");
    let writer = CryptRedisCache::builder()
        .config(server.config())
        .key(&fresh_key())
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    writer.set("k", &"secret", None).await.unwrap();

    let reader = CryptRedisCache::builder()
        .config(server.config())
        .key(&fresh_key())
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    let reason = crypto_reason(reader.get::<String>("k").await.unwrap_err());
    assert!(reason.contains("HMAC mismatch"), "{reason}");

    let lenient = CryptRedisCache::builder()
        .config(server.config())
        .key(&fresh_key())
        .prefix(&prefix)
        .on_corrupt_entry(CorruptEntryPolicy::Miss)
        .connect()
        .await
        .unwrap();
    assert_eq!(lenient.get::<String>("k").await.unwrap(), None);
    assert_eq!(lenient.stats().snapshot().corrupt, 1);
    assert!(
        lenient.has("k").await.unwrap(),
        "an entry that does not decrypt is never deleted"
    );
}

#[tokio::test]
async fn bad_keys_fail_before_connecting() {
    // Nothing listens on this port: a config error must come first.
    let config =
        memorix::RedisConfig::from_url(&format!("redis://127.0.0.1:{}/0", support::redis_server::free_port())).unwrap();
    for len in [63, 65] {
        let err = CryptRedisCache::new(&"k".repeat(len), config.clone())
            .await
            .unwrap_err();
        let (field, reason) = config_error(err);
        assert_eq!(field, "key");
        assert!(reason.contains("exactly 64 bytes"), "{reason}");
    }
    let (field, reason) = config_error(
        CryptRedisCache::builder()
            .config(config.clone())
            .connect()
            .await
            .unwrap_err(),
    );
    assert_eq!(field, "key");
    assert!(reason.contains("needs a key"), "{reason}");

    let err = CryptRedisCache::builder()
        .config(config.clone())
        .key(KEY)
        .old_key("short")
        .connect()
        .await
        .unwrap_err();
    assert!(config_error(err).1.contains("decryption key #1"));

    let err = CryptRedisCache::builder()
        .config(config.clone())
        .algorithm(Algorithm::Fernet)
        .key(KEY)
        .connect()
        .await
        .unwrap_err();
    assert!(config_error(err).1.contains("standard Fernet key"));

    let err = CryptRedisCache::builder()
        .config(config)
        .key(KEY)
        .keyring(Keyring::new(Fernet256::new(KEY).unwrap()))
        .connect()
        .await
        .unwrap_err();
    assert!(config_error(err).1.contains("not both"));
}

#[tokio::test]
async fn keys_never_show_in_debug() {
    let server = RedisServer::start();
    let key = fresh_key();
    let old = fresh_key();
    let builder = CryptRedisCache::builder()
        .config(server.config())
        .key(&key)
        .old_key(&old);
    let shown = format!("{builder:?}");
    assert!(!shown.contains(&key) && !shown.contains(&old), "{shown}");
    let cache = builder.connect().await.unwrap();
    for shown in [
        format!("{cache:?}"),
        format!("{:?}", cache.keyring()),
        format!("{:#?}", cache.pipeline()),
        format!("{:?}", Fernet256::new(&key).unwrap()),
    ] {
        assert!(!shown.contains(&key) && !shown.contains(&old), "{shown}");
        assert!(!shown.contains(&key[..16]), "{shown}");
    }
}

// ---------------------------------------------------------------- the cache

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session {
    user_id: i64,
    username: String,
    roles: Vec<String>,
    score: f64,
    admin: bool,
    note: Option<String>,
    attrs: BTreeMap<String, i64>,
}

fn session() -> Session {
    Session {
        user_id: 123,
        username: "jdoe".into(),
        roles: vec!["user".into(), "admin".into()],
        score: 4.5,
        admin: true,
        note: None,
        attrs: BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), -2)]),
    }
}

type WithCodec = Box<dyn Fn(memorix::CryptRedisCacheBuilder) -> memorix::CryptRedisCacheBuilder>;

#[tokio::test]
async fn values_are_stored_as_fernet256_tokens_of_the_codec_bytes_for_every_codec() {
    let server = RedisServer::start();
    let key = fresh_key();
    let cipher = Fernet256::new(&key).unwrap();
    let codecs: Vec<(&str, WithCodec)> = vec![
        ("pickle", Box::new(|b| b.codec(Pickle))),
        ("msgpack", Box::new(|b| b.codec(MsgPack))),
        ("json", Box::new(|b| b.codec(Json))),
    ];
    for (name, with_codec) in codecs {
        let prefix = format!("codec:{name}:");
        let cache = with_codec(
            CryptRedisCache::builder()
                .config(server.config())
                .key(&key)
                .prefix(&prefix),
        )
        .connect()
        .await
        .unwrap();
        assert_eq!(cache.codec().name(), name);
        cache.set("s", &session(), None).await.unwrap();
        assert_eq!(cache.get::<Session>("s").await.unwrap(), Some(session()), "{name}");

        let stored = raw_get(&server, &format!("{prefix}s")).await.unwrap();
        assert!(stored.starts_with(b"gQAAAA"), "{name}: stored {stored:?}");
        let plain = cipher.decrypt(&stored).unwrap();
        assert_eq!(
            plain,
            memorix::encode(cache.codec(), &session()).unwrap(),
            "{name}: codec -> encrypt"
        );
        assert!(
            !String::from_utf8_lossy(&stored).contains("jdoe"),
            "{name}: plaintext leaked"
        );
    }
    // RawBytes: bytes in, bytes out.
    let raw = CryptRedisCache::builder()
        .config(server.config())
        .key(&key)
        .codec(RawBytes)
        .connect()
        .await
        .unwrap();
    raw.set("b", &serde_bytes::Bytes::new(b"\x00\xffbin"), None)
        .await
        .unwrap();
    let back: serde_bytes::ByteBuf = raw.get("b").await.unwrap().unwrap();
    assert_eq!(back.as_ref(), b"\x00\xffbin");
}

#[tokio::test]
async fn new_uses_fernet256_and_pickle_like_rick() {
    let server = RedisServer::start();
    let cache = CryptRedisCache::new(KEY, server.config()).await.unwrap();
    assert_eq!(cache.codec().name(), "pickle");
    assert_eq!(cache.keyring().primary().algorithm(), Algorithm::Fernet256);
    cache.set("greeting", &"Hello, World!", None).await.unwrap();
    let stored = raw_get(&server, "greeting").await.unwrap();
    let pickled = Fernet256::new(KEY).unwrap().decrypt(&stored).unwrap();
    assert_eq!(pickled, memorix::encode(&Pickle, &"Hello, World!").unwrap());
    assert_eq!(
        cache.get::<String>("greeting").await.unwrap().as_deref(),
        Some("Hello, World!")
    );
}

#[tokio::test]
async fn every_other_method_is_the_redis_cache_one() {
    let server = RedisServer::start();
    let prefix = unique_prefix("methods");
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .key(&fresh_key())
        .prefix(&prefix)
        .default_ttl(Duration::from_secs(300))
        .connect()
        .await
        .unwrap();
    assert_eq!(cache.prefix(), prefix);

    // has / remove / miss
    assert_eq!(cache.get::<i64>("missing").await.unwrap(), None);
    cache.set("n", &7i64, None).await.unwrap();
    assert!(cache.has("n").await.unwrap());
    assert!(cache.remove("n").await.unwrap());
    assert!(!cache.remove("n").await.unwrap());
    assert!(!cache.has("n").await.unwrap());

    // TTLs: default and explicit; zero is a config error
    cache.set("d", &1i64, None).await.unwrap();
    let ttl = cache.ttl("d").await.unwrap().unwrap();
    assert!(
        ttl > Duration::from_secs(290) && ttl <= Duration::from_secs(300),
        "{ttl:?}"
    );
    cache.set("e", &1i64, Some(Duration::from_secs(20))).await.unwrap();
    assert!(cache.ttl("e").await.unwrap().unwrap() <= Duration::from_secs(20));
    assert!(cache
        .set("z", &1i64, Some(Duration::ZERO))
        .await
        .unwrap_err()
        .is_config());

    // batches, each value its own token
    cache.set_many(&[("m1", 1i64), ("m2", 2i64)], None).await.unwrap();
    assert_eq!(
        cache.get_many::<i64>(&["m1", "nope", "m2"]).await.unwrap(),
        vec![Some(1), None, Some(2)]
    );
    let t1 = raw_get(&server, &format!("{prefix}m1")).await.unwrap();
    let t2 = raw_get(&server, &format!("{prefix}m2")).await.unwrap();
    assert!(t1.starts_with(b"gQAAAA") && t2.starts_with(b"gQAAAA"));

    // stats are counted
    let snapshot = cache.stats().snapshot();
    assert!(snapshot.hits >= 2 && snapshot.misses >= 2, "{snapshot:?}");

    // client() is the raw connection
    let mut conn = cache.client().unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    assert!(cache.redis_client().is_some());

    // purge removes only this prefix; flush_db removes everything
    raw_set(&server, "other:key", b"x").await;
    cache.purge().await.unwrap();
    assert!(!cache.has("m1").await.unwrap());
    assert!(raw_get(&server, "other:key").await.is_some());
    cache.flush_db().await.unwrap();
    assert!(raw_get(&server, "other:key").await.is_none());

    // set_prefix
    cache.set_prefix("moved:");
    cache.set("p", &1i64, None).await.unwrap();
    assert!(raw_get(&server, "moved:p").await.is_some());

    // close
    cache.close().await.unwrap();
    assert!(matches!(cache.get::<i64>("p").await.unwrap_err(), CacheError::Closed));
}

#[tokio::test]
async fn compression_runs_before_encryption() {
    let server = RedisServer::start();
    let key = fresh_key();
    let compression = Compression::new().threshold(64).build().unwrap();
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .key(&key)
        .codec(Json)
        .transform(Arc::new(compression))
        .prefix("z:")
        .connect()
        .await
        .unwrap();
    let big = "abc".repeat(10_000);
    cache.set("big", &big, None).await.unwrap();
    assert_eq!(cache.get::<String>("big").await.unwrap(), Some(big.clone()));

    let stored = raw_get(&server, "z:big").await.unwrap();
    assert!(
        stored.len() < big.len() / 10,
        "compressed before encrypting: {} bytes",
        stored.len()
    );
    let inner = Fernet256::new(&key).unwrap().decrypt(&stored).unwrap();
    assert_eq!(inner[0], 0x01, "the decrypted bytes carry the zlib tag");
    assert_eq!(compression.open(&inner).unwrap(), memorix::encode(&Json, &big).unwrap());
}

#[tokio::test]
async fn the_cipher_is_a_transform_any_engine_can_use() {
    let server = RedisServer::start();
    let key = fresh_key();
    let plain_engine = RedisCache::builder()
        .config(server.config())
        .codec(Pickle)
        .transform(Arc::new(Fernet256::new(&key).unwrap()))
        .connect()
        .await
        .unwrap();
    plain_engine.set("shared", &session(), None).await.unwrap();
    let crypt = CryptRedisCache::new(&key, server.config()).await.unwrap();
    assert_eq!(crypt.get::<Session>("shared").await.unwrap(), Some(session()));

    // A keyring and a single Cipher are transforms too.
    let ring: Arc<dyn Transform> = Arc::new(Keyring::new(Fernet256::new(&key).unwrap()));
    let cipher: Arc<dyn Transform> = Arc::new(Cipher::new(Algorithm::Fernet256, &key).unwrap());
    assert_eq!(cipher.open(&ring.seal(b"x").unwrap()).unwrap(), b"x");
}

#[tokio::test]
async fn standard_fernet_is_a_cipher_choice() {
    let server = RedisServer::start();
    let key = Fernet::generate_key().unwrap();
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .algorithm(Algorithm::Fernet)
        .key(&key)
        .prefix("std:")
        .connect()
        .await
        .unwrap();
    cache.set("s", &session(), None).await.unwrap();
    assert_eq!(cache.get::<Session>("s").await.unwrap(), Some(session()));
    let stored = raw_get(&server, "std:s").await.unwrap();
    assert!(stored.starts_with(b"gAAAAA"), "version 0x80");
    let plain = Fernet::new(&key).unwrap().decrypt(&stored).unwrap();
    assert_eq!(plain, memorix::encode(&Pickle, &session()).unwrap());
}

#[tokio::test]
async fn max_age_rejects_old_tokens() {
    let server = RedisServer::start();
    let key = fresh_key();
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .key(&key)
        .max_age(Duration::from_secs(60))
        .codec(RawBytes)
        .prefix("age:")
        .connect()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let f = Fernet256::new(&key).unwrap();
    raw_set(
        &server,
        "age:old",
        f.encrypt_at_time(b"v", now - 3600).unwrap().as_bytes(),
    )
    .await;
    raw_set(&server, "age:new", f.encrypt_at_time(b"v", now - 5).unwrap().as_bytes()).await;
    assert!(crypto_reason(cache.get_bytes("old").await.unwrap_err()).contains("expired"));
    assert_eq!(cache.get_bytes("new").await.unwrap().as_deref(), Some(&b"v"[..]));
}

// ---------------------------------------------------------------- rotation

#[tokio::test]
async fn rotation_decrypts_with_any_key_and_rewrites_under_the_first() {
    let server = RedisServer::start();
    let prefix = unique_prefix("rotate");
    let (old_key, new_key) = (fresh_key(), fresh_key());
    let old = CryptRedisCache::builder()
        .config(server.config())
        .key(&old_key)
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    old.set("a", &"alpha", Some(Duration::from_secs(600))).await.unwrap();
    old.set("b", &"beta", None).await.unwrap();
    let old_token = raw_get(&server, &format!("{prefix}a")).await.unwrap();
    let old_timestamp = Fernet256::new(&old_key).unwrap().extract_timestamp(&old_token).unwrap();

    let rotating = CryptRedisCache::builder()
        .config(server.config())
        .key(&new_key)
        .old_key(&old_key)
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    assert_eq!(rotating.keyring().keys().len(), 2);
    // Reads under either key; writes under the new one.
    assert_eq!(rotating.get::<String>("a").await.unwrap().as_deref(), Some("alpha"));
    rotating.set("c", &"gamma", None).await.unwrap();
    let c_token = raw_get(&server, &format!("{prefix}c")).await.unwrap();
    Fernet256::new(&new_key).unwrap().decrypt(&c_token).unwrap();

    assert_eq!(rotating.rotate("a").await.unwrap(), Rotation::Rotated);
    assert_eq!(rotating.rotate("a").await.unwrap(), Rotation::Current);
    assert_eq!(rotating.rotate("c").await.unwrap(), Rotation::Current);
    assert_eq!(rotating.rotate("nope").await.unwrap(), Rotation::Missing);

    let new_token = raw_get(&server, &format!("{prefix}a")).await.unwrap();
    let new_cipher = Fernet256::new(&new_key).unwrap();
    assert_eq!(
        new_cipher.extract_timestamp(&new_token).unwrap(),
        old_timestamp,
        "timestamp kept"
    );
    let ttl = rotating.ttl("a").await.unwrap().expect("TTL kept");
    assert!(ttl > Duration::from_secs(590), "{ttl:?}");
    assert_eq!(rotating.ttl("b").await.unwrap(), None, "no TTL stays no TTL");

    // rotate_all moves the rest; then the old key can go.
    let summary = rotating.rotate_all().await.unwrap();
    assert_eq!((summary.rotated, summary.current), (1, 2), "{summary:?}");
    let new_only = CryptRedisCache::builder()
        .config(server.config())
        .key(&new_key)
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    for (key, value) in [("a", "alpha"), ("b", "beta"), ("c", "gamma")] {
        assert_eq!(new_only.get::<String>(key).await.unwrap().as_deref(), Some(value));
    }
    assert!(matches!(
        old.get::<String>("a").await.unwrap_err(),
        CacheError::Crypto(_)
    ));
}

#[tokio::test]
async fn rotation_leaves_undecryptable_entries_alone() {
    let server = RedisServer::start();
    let prefix = unique_prefix("rotate_bad");
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .key(&fresh_key())
        .old_key(&fresh_key())
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    let foreign = Fernet256::new(&fresh_key()).unwrap().encrypt(b"x").unwrap();
    raw_set(&server, &format!("{prefix}f"), foreign.as_bytes()).await;
    let reason = crypto_reason(cache.rotate("f").await.unwrap_err());
    assert!(reason.contains("under all 2 keys"), "{reason}");
    let reason = crypto_reason(cache.rotate_all().await.unwrap_err());
    assert!(reason.contains(&format!("{prefix}f")), "{reason}");
    assert_eq!(
        raw_get(&server, &format!("{prefix}f")).await.unwrap(),
        foreign.as_bytes()
    );
}

#[tokio::test]
async fn rotation_from_standard_fernet_to_fernet256_with_a_mixed_keyring() {
    let server = RedisServer::start();
    let fernet_key = Fernet::generate_key().unwrap();
    let fernet256_key = fresh_key();
    let legacy = CryptRedisCache::builder()
        .config(server.config())
        .algorithm(Algorithm::Fernet)
        .key(&fernet_key)
        .prefix("mix:")
        .connect()
        .await
        .unwrap();
    legacy.set("k", &"v", None).await.unwrap();

    let ring = Keyring::new(Fernet256::new(&fernet256_key).unwrap()).with_old_key(Fernet::new(&fernet_key).unwrap());
    let cache = CryptRedisCache::builder()
        .config(server.config())
        .keyring(ring)
        .prefix("mix:")
        .connect()
        .await
        .unwrap();
    assert_eq!(cache.get::<String>("k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(cache.rotate("k").await.unwrap(), Rotation::Rotated);
    let stored = raw_get(&server, "mix:k").await.unwrap();
    assert!(stored.starts_with(b"gQAAAA"), "now Fernet256");
    assert!(crypto_reason(legacy.get::<String>("k").await.unwrap_err()).contains("version byte 0x81"));
}

#[tokio::test]
async fn concurrent_readers_and_writers_share_one_cache() {
    let server = RedisServer::start();
    let cache = Arc::new(crypt_cache(&server, &fresh_key(), "concurrent").await);
    let mut tasks = Vec::new();
    for i in 0..32i64 {
        let cache = Arc::clone(&cache);
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            cache.set(&key, &i, None).await.unwrap();
            assert_eq!(cache.get::<i64>(&key).await.unwrap(), Some(i));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
