//! memorix in 30 seconds.
//!
//! ```sh
//! cargo run --example quickstart                                   # embedded memory cache
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --example quickstart  # the same code on Redis
//! ```

use memorix::prelude::*;
use memorix::{MemoryCache, RedisCache, RedisConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    roles: Vec<String>,
}

/// Redis when `REDIS_URL` is set, the embedded memory cache otherwise.
async fn open_cache() -> memorix::Result<Arc<dyn Cache>> {
    match std::env::var("REDIS_URL") {
        Ok(_) => {
            let config = RedisConfig::from_env()?;
            println!("using Redis at {config}"); // Display masks any password
            Ok(Arc::new(
                RedisCache::builder()
                    .config(config)
                    .prefix("quickstart:")
                    .connect()
                    .await?,
            ))
        }
        Err(_) => {
            println!("REDIS_URL is not set: using the embedded in-memory cache");
            Ok(Arc::new(
                MemoryCache::builder()
                    .max_entries(10_000)
                    .prefix("quickstart:")
                    .build()?,
            ))
        }
    }
}

/// Cache-aside: read the cache, load on a miss, store for next time.
async fn load_user(cache: &dyn Cache, id: u64) -> memorix::Result<User> {
    let key = format!("user:{id}");
    if let Some(user) = cache.get::<User>(&key).await? {
        println!("  hit  {key}");
        return Ok(user);
    }
    println!("  miss {key}: loading from the database");
    let user = User {
        id,
        name: format!("user-{id}"),
        roles: vec!["reader".into()],
    };
    cache.set(&key, &user, Some(Duration::from_secs(60))).await?;
    Ok(user)
}

#[tokio::main]
async fn main() -> memorix::Result<()> {
    let cache = open_cache().await?;

    println!("cache-aside, twice for the same user:");
    let first = load_user(cache.as_ref(), 42).await?;
    let second = load_user(cache.as_ref(), 42).await?;
    assert_eq!(first.name, second.name);
    println!("  -> {second:?}");

    println!("a value with a 200 ms TTL:");
    cache
        .set("flash", &"now you see me", Some(Duration::from_millis(200)))
        .await?;
    println!("  has(flash) = {}", cache.has("flash").await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("  has(flash) after 300 ms = {}", cache.has("flash").await?);

    println!("batch write and read (one round trip each on Redis):");
    cache.set_many(&[("a", 1u32), ("b", 2), ("c", 3)], None).await?;
    let values = cache.get_many::<u32>(&["a", "b", "c", "d"]).await?;
    println!("  get_many(a, b, c, d) = {values:?}");

    println!("remove(user:42) = {}", cache.remove("user:42").await?);
    println!("hit rate so far: {:.0}%", cache.hit_rate() * 100.0);

    cache.purge().await?; // removes only keys under "quickstart:"
    cache.close().await?;
    println!("done");
    Ok(())
}
