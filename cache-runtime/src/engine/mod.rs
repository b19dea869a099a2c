//! Cache engines: where the bytes live.
//!
//! - [`RedisCache`]: one Redis server (or a connection you built).
//! - [`CryptRedisCache`]: a `RedisCache` whose values are encrypted at rest.
//! - [`GenericRedisCache`]: two tiers (in-process L1 + Redis), degradation, coherence.
//! - [`MemoryCache`]: in-process, bounded, per-entry TTL.
//! - [`NullCache`]: stores nothing; for tests and for switching caching off.

mod crypt;
mod generic;
mod memory;
mod null;
mod redis;

pub use self::crypt::{CryptRedisCache, CryptRedisCacheBuilder, Rotation, RotationSummary};
pub use self::generic::{
    CacheEvent, CacheFactory, Callback, CallbackId, EventInfo, GenericRedisCache, GenericRedisCacheBuilder,
    SecurityConfig, SecurityStatus, SecurityValidation, Tier, TlsVersion, SECURE_SCORE,
};
pub use self::memory::MemoryCache;
pub use self::null::NullCache;
pub use self::redis::{RedisCache, RedisCacheBuilder};
