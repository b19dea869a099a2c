//! [`CacheFactory`]: ready-made two-tier caches for common workloads.
//!
//! Every preset degrades the same way: when Redis is unreachable the cache
//! works from memory and switches to Redis once it answers, or `connect()`
//! fails when `fail_on_connection_error` is set.

use super::{GenericRedisCache, GenericRedisCacheBuilder};
use crate::connection::RedisConfig;
use crate::duration::parse_duration;
use crate::error::{CacheError, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// Keys longer than this many bytes are hashed by the AI preset.
pub const AI_KEY_HASH_THRESHOLD: usize = 1000;

/// Replaces a long key by a short readable head plus its SHA-256 digest.
pub(crate) fn hashed_key(key: &str) -> String {
    let mut head = 32.min(key.len());
    while !key.is_char_boundary(head) {
        head -= 1;
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(head + 72);
    out.push_str(&key[..head]);
    out.push_str("#sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Presets for [`GenericRedisCache`].
///
/// ```no_run
/// use memorix_runtime::CacheFactory;
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let web = CacheFactory::for_web_app("redis://127.0.0.1:6379/0").await?;
/// let ai = CacheFactory::ai_app().redis_url("redis://127.0.0.1:6379/1").prefix("ai:").connect().await?;
/// let from_env = CacheFactory::from_env()?.connect().await?;
/// # let _ = (web, ai, from_env); Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct CacheFactory;

impl CacheFactory {
    /// Web applications: TTL 30 min, L1 of 200 entries, compression above 2000 bytes.
    pub fn web_app() -> GenericRedisCacheBuilder {
        GenericRedisCache::builder()
            .default_ttl(Duration::from_secs(1800))
            .l1_cache_size(200)
            .compression_threshold(2000)
    }

    /// [`Self::web_app`] connected to `url`.
    pub async fn for_web_app(url: &str) -> Result<GenericRedisCache> {
        Self::web_app().redis_url(url).connect().await
    }

    /// AI applications: TTL 1 h, L1 of 100, compression above 1000 bytes,
    /// per-operation TTLs (`summarize` 2 h, `sentiment` 24 h, `key_points` 2 h,
    /// `questions` 1 h, `qa` 30 min; use [`GenericRedisCache::set_for`]) and
    /// keys longer than 1000 bytes (long prompts) replaced by their SHA-256.
    pub fn ai_app() -> GenericRedisCacheBuilder {
        GenericRedisCache::builder()
            .default_ttl(Duration::from_secs(3600))
            .l1_cache_size(100)
            .compression_threshold(1000)
            .operation_ttl("summarize", Duration::from_secs(7200))
            .operation_ttl("sentiment", Duration::from_secs(86_400))
            .operation_ttl("key_points", Duration::from_secs(7200))
            .operation_ttl("questions", Duration::from_secs(3600))
            .operation_ttl("qa", Duration::from_secs(1800))
            .hash_keys_longer_than(AI_KEY_HASH_THRESHOLD)
    }

    /// [`Self::ai_app`] connected to `url`.
    pub async fn for_ai_app(url: &str) -> Result<GenericRedisCache> {
        Self::ai_app().redis_url(url).connect().await
    }

    /// Tests: TTL 60 s, database 15, no L1 (memory still covers an outage).
    pub fn testing(url: &str) -> Result<GenericRedisCacheBuilder> {
        let config = RedisConfig::from_url(url)?.into_builder().db(15).build()?;
        Ok(GenericRedisCache::builder()
            .redis(config)
            .default_ttl(Duration::from_secs(60))
            .enable_l1_cache(false))
    }

    /// [`Self::testing`] connected.
    pub async fn for_testing(url: &str) -> Result<GenericRedisCache> {
        Self::testing(url)?.connect().await
    }

    /// A builder from string settings, e.g. parsed from a config file.
    ///
    /// Keys: `preset` (`web`, `ai`, `testing`), `redis_url`, `default_ttl`,
    /// `enable_l1_cache`, `l1_cache_size`, `l1_ttl`, `compression_threshold`,
    /// `compression_level`, `fail_on_connection_error`, `prefix`, `namespace`.
    /// Durations accept `90`, `30s`, `5m`, `1h30m`. An unknown key or a bad
    /// value is a config error naming it.
    pub fn from_map(settings: &HashMap<String, String>) -> Result<GenericRedisCacheBuilder> {
        let get = |k: &str| settings.get(k).map(|v| v.trim());
        let mut builder = match get("preset") {
            None | Some("") | Some("default") => GenericRedisCache::builder(),
            Some("web") | Some("web_app") => Self::web_app(),
            Some("ai") | Some("ai_app") => Self::ai_app(),
            Some("testing") => {
                let url = get("redis_url").map_or_else(|| "redis://127.0.0.1:6379".to_owned(), str::to_owned);
                Self::testing(&url)?
            }
            Some(other) => {
                return Err(CacheError::config(
                    "preset",
                    format!("`{other}` is not a preset; expected one of: web, ai, testing"),
                ))
            }
        };
        for (key, value) in settings {
            let value = value.trim();
            builder = match key.as_str() {
                "preset" => builder,
                "redis_url" if get("preset") == Some("testing") => builder,
                "redis_url" => builder.redis_url(value),
                "default_ttl" => builder.default_ttl(parse_duration("default_ttl", value)?),
                "l1_ttl" => builder.l1_ttl(parse_duration("l1_ttl", value)?),
                "enable_l1_cache" => builder.enable_l1_cache(parse_bool("enable_l1_cache", value)?),
                "fail_on_connection_error" => {
                    builder.fail_on_connection_error(parse_bool("fail_on_connection_error", value)?)
                }
                "l1_cache_size" => builder.l1_cache_size(parse_num("l1_cache_size", value)?),
                "compression_threshold" => builder.compression_threshold(parse_num("compression_threshold", value)?),
                "compression_level" => builder.compression_level(parse_num("compression_level", value)?),
                "prefix" => builder.prefix(value),
                "namespace" => builder.namespace(value),
                _ => {
                    return Err(CacheError::config(
                        "settings",
                        format!(
                            "unknown key `{key}`; expected one of: preset, redis_url, default_ttl, l1_ttl, \
                             enable_l1_cache, l1_cache_size, compression_threshold, compression_level, \
                             fail_on_connection_error, prefix, namespace"
                        ),
                    ))
                }
            };
        }
        Ok(builder)
    }

    /// A builder from `MEMORIX_*` environment variables (the [`Self::from_map`]
    /// keys in upper case: `MEMORIX_PRESET`, `MEMORIX_DEFAULT_TTL`, ...), with
    /// the URL from `MEMORIX_REDIS_URL` or else `REDIS_URL`.
    pub fn from_env() -> Result<GenericRedisCacheBuilder> {
        let mut settings: HashMap<String, String> = std::env::vars()
            .filter_map(|(k, v)| Some((k.strip_prefix("MEMORIX_")?.to_ascii_lowercase(), v)))
            .collect();
        if !settings.contains_key("redis_url") {
            if let Ok(url) = std::env::var("REDIS_URL") {
                settings.insert("redis_url".into(), url);
            }
        }
        Self::from_map(&settings)
    }
}

fn parse_bool(field: &'static str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(CacheError::config(field, format!("`{value}` is not a boolean"))),
    }
}

fn parse_num<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| CacheError::config(field, format!("`{value}` is not a valid number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_hash_to_short_stable_ones() {
        let long = "é".repeat(800);
        let a = hashed_key(&long);
        assert_eq!(a, hashed_key(&long));
        assert!(a.len() < 110, "{}", a.len());
        assert_ne!(a, hashed_key(&format!("{long}x")));
    }

    #[test]
    fn settings_map_errors_name_the_field() {
        let mut map = HashMap::new();
        map.insert("l1_cache_size".to_owned(), "lots".to_owned());
        let err = CacheFactory::from_map(&map).unwrap_err();
        assert!(err.to_string().contains("`l1_cache_size`"), "{err}");
        map.clear();
        map.insert("colour".to_owned(), "blue".to_owned());
        assert!(CacheFactory::from_map(&map).unwrap_err().to_string().contains("colour"));
        map.clear();
        map.insert("preset".to_owned(), "mainframe".to_owned());
        assert!(CacheFactory::from_map(&map)
            .unwrap_err()
            .to_string()
            .contains("`preset`"));
    }
}
