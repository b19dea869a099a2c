//! The runtime of [memorix](https://docs.rs/memorix): one asynchronous cache API
//! over Redis, memory or nothing, with pluggable codecs and byte transforms.
//!
//! Most users depend on the `memorix` facade crate, which re-exports this one
//! together with the attribute macros.
//!
//! - [`Cache`]: the object-safe byte-level trait every engine implements;
//!   [`CacheExt`] adds typed `get` / `set` through the engine's [`Codec`].
//! - Engines: [`RedisCache`], [`MemoryCache`], [`NullCache`].
//! - [`BlockingCache`]: the same API for synchronous code.
//! - [`RedisConfig`]: connection settings, from code, a URL or `REDIS_URL`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod blocking;
mod cache;
mod codec;
mod compression;
mod connection;
mod distributed;
mod duration;
mod duration_grammar;
mod engine;
mod envelope;
mod error;
mod keys;
mod l1;
mod metrics;
mod pipeline;
mod stats;

pub mod crypto;
pub mod memo;
pub mod ratelimit;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use crate::blocking::BlockingCache;
pub use crate::cache::{Cache, CacheExt, CorruptEntryPolicy};
pub use crate::codec::{
    decode, encode, BuiltinCodec, Codec, DecodeSink, Json, MsgPack, Pickle, RawBytes, MAX_DECODE_DEPTH,
};
pub use crate::compression::{
    compress, decompress, Compression, CompressionBuilder, DEFAULT_COMPRESSION_LEVEL, DEFAULT_COMPRESSION_THRESHOLD,
    DEFAULT_MAX_DECOMPRESSED,
};
pub use crate::connection::{
    client_for, install_tls_floor, pubsub_client, ClusterConnection, ReconnectingConnection, RedisConfig,
    RedisConfigBuilder, RedisConnection, Secret, SentinelConnection, TlsConfig, Topology,
};
pub use crate::crypto::{Fernet, Fernet256, Keyring};
pub use crate::distributed::{DistributedLoader, Lease, Turn};
pub use crate::duration::parse_duration;
pub use crate::engine::{
    CacheEvent, CacheFactory, Callback, CallbackId, EventInfo, GenericRedisCache, GenericRedisCacheBuilder,
    SecurityConfig, SecurityStatus, SecurityValidation, Tier, TlsVersion, SECURE_SCORE,
};
pub use crate::engine::{
    CryptRedisCache, CryptRedisCacheBuilder, MemoryCache, NullCache, RedisCache, RedisCacheBuilder, Rotation,
    RotationSummary,
};
pub use crate::envelope::{Envelope, Header, ENVELOPE_MAGIC, ENVELOPE_VERSION, HEADER_LEN, STAMP_LEN};
pub use crate::error::{BoxError, CacheError, Result};
pub use crate::memo::{init, init_from_env, register};
pub use crate::metrics::{CompressionStats, GenericStats, LatencyStats, TierStats, L1_SAMPLE_EVERY};
pub use crate::pipeline::{Pipeline, Transform};
pub use crate::stats::{CacheStats, StatsSnapshot};

/// Re-exports of the crates whose types appear in memorix's API.
pub mod reexports {
    pub use erased_serde;
    pub use redis;
}

/// Everything needed to use a cache: `use memorix_runtime::prelude::*;`.
pub mod prelude {
    pub use crate::{Cache, CacheExt};
}
