//! Batches and prefix purges, the one implementation every Redis engine
//! calls (`RedisCache`, `CryptRedisCache` through it, and the two-tier
//! `GenericRedisCache`), whatever the topology.
//!
//! - [`run_keyed`]: single-key commands in one round trip per node: one
//!   pipeline on a standalone server or through Sentinel, one pipeline per
//!   primary on a cluster (see [`ClusterConnection`](super::ClusterConnection)).
//! - [`purge`]: every key of one namespace, `SCAN` + `UNLINK` in batches, on
//!   every primary of a cluster.
//!
//! A purge matches its prefix as a namespace. The prefix must end in a
//! separator (ASCII punctuation, `:` by convention): `app:` purges exactly the
//! keys that start with `app:`, never those of a sibling such as `app2:`. A
//! prefix that ends in a letter or digit (`app`) is refused, since `app*`
//! would also match `app2:…`; so is the empty prefix, which would match the
//! whole database (use `flush_db()` for that). The refusals are
//! [`CacheError::Config`] errors, returned before Redis is asked anything.

use super::RedisConnection;
use crate::error::{CacheError, Result};
use redis::{Cmd, Value};

/// How many keys one SCAN step asks for and one UNLINK removes.
pub(crate) const PURGE_BATCH: usize = 500;

/// Runs single-key commands (`keys[i]` is the key `cmds[i]` touches) and
/// returns one reply per command, in order. A server error answered by one
/// command is returned in place on a cluster (as `Value::ServerError`) and
/// fails the whole batch elsewhere, as a pipeline does.
pub(crate) async fn run_keyed(conn: &mut RedisConnection, cmds: Vec<(String, Cmd)>) -> Result<Vec<Value>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    if let RedisConnection::Cluster(cluster) = conn {
        return Ok(cluster.run_keyed(cmds).await?);
    }
    let mut pipe = redis::pipe();
    for (_, cmd) in cmds {
        pipe.add_command(cmd);
    }
    Ok(pipe.query_async(conn).await?)
}

/// Fails with the first server error among `replies`.
pub(crate) fn first_error(replies: &[Value]) -> Result<()> {
    match replies.iter().find_map(|reply| match reply {
        Value::ServerError(err) => Some(err.clone()),
        _ => None,
    }) {
        Some(err) => Err(CacheError::from(redis::RedisError::from(err))),
        None => Ok(()),
    }
}

/// The `SCAN MATCH` pattern of the namespace `prefix`, or the `Config`
/// error that refuses it (see the module docs).
pub(crate) fn namespace_pattern(prefix: &str) -> Result<String> {
    match prefix.chars().last() {
        None => Err(CacheError::config(
            "prefix",
            "purge() with an empty prefix would delete every key in the database; \
             set a prefix such as `app:`, or call flush_db() if that is what you mean",
        )),
        Some(last) if !last.is_ascii_punctuation() => Err(CacheError::config(
            "prefix",
            "purge() needs a prefix that ends in a separator such as `:` (`app:`), \
             so that it cannot also match a sibling prefix (`app2:`)",
        )),
        Some(_) => Ok(crate::keys::scan_pattern(prefix)),
    }
}

/// Deletes every key of the namespace `prefix` (see the module docs).
pub(crate) async fn purge(conn: &mut RedisConnection, prefix: &str) -> Result<()> {
    let pattern = namespace_pattern(prefix)?;
    if let RedisConnection::Cluster(cluster) = conn {
        // SCAN sees one node's keys: scan every primary.
        return Ok(cluster.scan_unlink(&pattern, PURGE_BATCH).await?);
    }
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(PURGE_BATCH)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(keys).query_async::<()>(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_a_namespace() {
        assert_eq!(namespace_pattern("app:").unwrap(), "app:*");
        assert_eq!(namespace_pattern("a*b?[c]\\:").unwrap(), "a\\*b\\?\\[c\\]\\\\:*");
        for refused in ["", "app", "app2"] {
            assert!(namespace_pattern(refused).unwrap_err().is_config(), "{refused:?}");
        }
        assert!(namespace_pattern("").unwrap_err().to_string().contains("flush_db()"));
    }
}
