//! A small "users" service with memoized reads (cache-aside), write-through
//! updates and eviction on delete.
//!
//! Runs on the embedded in-memory cache; set `REDIS_URL` to cache in Redis.
//!
//! ```text
//! cargo run --example users_service
//! REDIS_URL=redis://127.0.0.1:6379/0 cargo run --example users_service
//! ```

use memorix::{cache_evict, cache_put, cached};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[derive(Debug)]
enum DbError {
    NotFound(u64),
}

/// Stands in for a database; counts the queries it answers.
#[derive(Default)]
struct Db {
    rows: Mutex<HashMap<u64, User>>,
    queries: AtomicUsize,
}

impl Db {
    fn query(&self, id: u64) -> Result<User, DbError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.get(&id).cloned().ok_or(DbError::NotFound(id))
    }

    fn upsert(&self, user: &User) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.insert(user.id, user.clone());
    }

    fn delete(&self, id: u64) -> bool {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.remove(&id).is_some()
    }
}

struct UsersService {
    db: Db,
}

impl UsersService {
    /// Cache-aside: served from the cache for 5 minutes; `Err` is not cached;
    /// concurrent misses of one id run one query.
    #[cached(ttl = "5m", key = "user:{id}")]
    async fn get(&self, id: u64) -> Result<User, DbError> {
        self.db.query(id)
    }

    /// Write-through: the saved user replaces the cached one.
    #[cache_put(ttl = "5m", key = "user:{user.id}")]
    async fn save(&self, user: User) -> Result<User, DbError> {
        self.db.upsert(&user);
        Ok(user)
    }

    /// Eviction: after a successful delete, the entry is gone.
    #[cache_evict(key = "user:{id}")]
    async fn delete(&self, id: u64) -> Result<bool, DbError> {
        Ok(self.db.delete(id))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if memorix::memo::init_from_env().await? {
        println!("caching in Redis (REDIS_URL)");
    } else {
        println!("caching in memory (set REDIS_URL to use Redis)");
    }
    let users = UsersService { db: Db::default() };
    let ada = User {
        id: 1,
        name: "Ada".into(),
        email: "ada@example.com".into(),
    };

    users.save(ada.clone()).await.map_err(|e| format!("{e:?}"))?;
    let first = users.get(1).await.map_err(|e| format!("{e:?}"))?;
    let second = users.get(1).await.map_err(|e| format!("{e:?}"))?;
    assert_eq!(first, second);
    println!(
        "get(1) twice -> {} database queries (write-through filled the cache)",
        users.db.queries.load(Ordering::Relaxed)
    );

    let renamed = User {
        name: "Ada Lovelace".into(),
        ..ada
    };
    users.save(renamed).await.map_err(|e| format!("{e:?}"))?;
    let user = users.get(1).await.map_err(|e| format!("{e:?}"))?;
    println!(
        "after save: {} (still {} queries)",
        user.name,
        users.db.queries.load(Ordering::Relaxed)
    );

    users.delete(1).await.map_err(|e| format!("{e:?}"))?;
    match users.get(1).await {
        Err(DbError::NotFound(id)) => println!("after delete: user {id} not found (evicted, database asked)"),
        Ok(user) => println!("unexpected: {user:?}"),
    }
    println!("cache key of user 1: {}", users.get_cache_key(1));
    println!("memo stats: {:?}", memorix::memo::stats());
    Ok(())
}
