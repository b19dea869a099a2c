//! Redis Cluster: opening the connection, and the multi-key operations that
//! redis-rs does not group by node on its own.
//!
//! What redis-rs's cluster routing already does, and what is added here:
//! - single-key commands and scripts: routed by key slot, `MOVED` / `ASK`
//!   followed, slots refreshed after a failover. Nothing to add.
//! - `MGET` over keys of many slots: redis-rs splits it into one request per
//!   slot. [`ClusterConnection`] groups the per-slot `MGET`s into one pipeline
//!   per primary instead (one round trip per node).
//! - pipelines: redis-rs sends a pipeline to the node of its first key and
//!   refuses one that spans slots (`CROSSSLOT`), so a batch of single-key
//!   commands is split here into one pipeline per primary.
//! - `SCAN`: redis-rs sends it to one random node. A prefix purge runs `SCAN`
//!   on every primary here, and `UNLINK`s each batch in one pipeline per node.

use super::{connection_info, RedisConfig, RedisConnection};
use crate::error::{CacheError, Result};
use arc_swap::ArcSwapOption;
use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, RedisError, RedisResult, ServerErrorKind, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Number of hash slots of a Redis Cluster.
const SLOTS: usize = 16384;

/// A connection to a Redis Cluster, cheap to clone.
///
/// It wraps redis-rs's `cluster_async::ClusterConnection` (which routes every
/// single-key command to the primary owning the key's slot and follows
/// failovers) and remembers which primary serves which slot, so that batch
/// operations of every engine cost one round trip per node.
///
/// ```no_run
/// use memorix_runtime::{RedisCache, RedisConfig};
///
/// # async fn demo() -> memorix_runtime::Result<()> {
/// let config = RedisConfig::from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")?;
/// let cache = RedisCache::connect(config).await?;
/// # let _ = cache; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClusterConnection {
    inner: redis::cluster_async::ClusterConnection,
    slots: Arc<ArcSwapOption<SlotMap>>,
}

impl std::fmt::Debug for ClusterConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let primaries = self.slots.load().as_ref().map(|map| map.primaries.len());
        f.debug_struct("ClusterConnection")
            .field("known_primaries", &primaries)
            .finish_non_exhaustive()
    }
}

impl From<redis::cluster_async::ClusterConnection> for ClusterConnection {
    fn from(inner: redis::cluster_async::ClusterConnection) -> Self {
        ClusterConnection {
            inner,
            slots: Arc::new(ArcSwapOption::empty()),
        }
    }
}

impl From<redis::cluster_async::ClusterConnection> for RedisConnection {
    fn from(inner: redis::cluster_async::ClusterConnection) -> Self {
        RedisConnection::Cluster(inner.into())
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(conn: ClusterConnection) -> Self {
        RedisConnection::Cluster(conn)
    }
}

/// Which primary serves each slot, as `CLUSTER SLOTS` reported it.
struct SlotMap {
    /// Index into `primaries` per slot; `None` for a slot no node serves.
    owner: Vec<Option<u16>>,
    /// One slot of each primary, to route a command to that node.
    primaries: Vec<u16>,
}

impl SlotMap {
    fn parse(reply: Value) -> RedisResult<SlotMap> {
        let ranges: Vec<Vec<Value>> = redis::from_redis_value(reply)?;
        let mut owner = vec![None; SLOTS];
        let mut nodes: HashMap<(String, i64), u16> = HashMap::new();
        let mut primaries = Vec::new();
        for range in ranges {
            let mut fields = range.into_iter();
            let (Some(start), Some(end), Some(primary)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad_reply("a CLUSTER SLOTS range has fewer than 3 fields"));
            };
            let start: usize = redis::from_redis_value(start)?;
            let end: usize = redis::from_redis_value(end)?;
            let mut primary = redis::from_redis_value::<Vec<Value>>(primary)?.into_iter();
            let (Some(host), Some(port)) = (primary.next(), primary.next()) else {
                return Err(bad_reply("a CLUSTER SLOTS node has no host and port"));
            };
            let node = (
                redis::from_redis_value::<String>(host)?,
                redis::from_redis_value::<i64>(port)?,
            );
            if start > end || end >= SLOTS {
                return Err(bad_reply("a CLUSTER SLOTS range is out of bounds"));
            }
            let index = *nodes.entry(node).or_insert_with(|| {
                primaries.push(start as u16);
                (primaries.len() - 1) as u16
            });
            owner[start..=end].iter_mut().for_each(|slot| *slot = Some(index));
        }
        Ok(SlotMap { owner, primaries })
    }
}

fn bad_reply(what: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::UnexpectedReturnType, what))
}

/// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its `{hash tag}`
/// when it has a non-empty one, modulo 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

/// True when a reply inside a per-node pipeline means "this key is served
/// elsewhere now": the command is then re-sent on its own, through redis-rs's
/// routing, which follows the redirect.
fn is_redirect(kind: Option<ServerErrorKind>) -> bool {
    matches!(
        kind,
        Some(
            ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        )
    )
}

fn to_primary(slot: u16) -> SingleNodeRoutingInfo {
    SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master))
}

impl ClusterConnection {
    /// The redis-rs cluster connection underneath.
    pub fn inner(&self) -> &redis::cluster_async::ClusterConnection {
        &self.inner
    }

    /// Asks the cluster which primary serves which slot, and remembers it.
    async fn refresh_slots(&mut self) -> RedisResult<Arc<SlotMap>> {
        let reply = self
            .inner
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await?;
        let map = Arc::new(SlotMap::parse(reply)?);
        self.slots.store(Some(map.clone()));
        Ok(map)
    }

    /// The remembered slot map, fetched on first use. `None` when it cannot be
    /// fetched: batches then go out per slot, which redis-rs routes itself.
    async fn slot_map(&mut self) -> Option<Arc<SlotMap>> {
        if let Some(map) = self.slots.load_full() {
            return Some(map);
        }
        match self.refresh_slots().await {
            Ok(map) => Some(map),
            Err(err) => {
                tracing::debug!(error = %err, "CLUSTER SLOTS failed; batches go out per slot");
                None
            }
        }
    }

    /// Runs `cmds` (each touching keys of one slot only) with one pipeline per
    /// primary, all primaries at once, and returns the replies in order.
    /// Commands answered with a redirect (the slot moved, a failover is under
    /// way) are re-sent one by one through redis-rs's routing.
    async fn run_by_node(&mut self, cmds: Vec<(u16, Cmd)>) -> RedisResult<Vec<Value>> {
        let map = self.slot_map().await;
        // Group by owning primary; slots no node serves each get their own group.
        let mut groups: BTreeMap<(u16, u16), Vec<usize>> = BTreeMap::new();
        for (i, (slot, _)) in cmds.iter().enumerate() {
            let owner = map.as_ref().and_then(|m| m.owner[usize::from(*slot)]);
            let group = match owner {
                Some(node) => (node, 0),
                None => (u16::MAX, *slot),
            };
            groups.entry(group).or_default().push(i);
        }
        let sends = groups.into_values().map(|indices| {
            let mut conn = self.inner.clone();
            let mut pipe = redis::pipe();
            for &i in &indices {
                pipe.add_command(cmds[i].1.clone());
            }
            let route = to_primary(cmds[indices[0]].0);
            async move {
                let count = indices.len();
                (indices, conn.route_pipeline(pipe, 0, count, route).await)
            }
        });
        let mut replies: Vec<Option<Value>> = vec![None; cmds.len()];
        let mut resend = Vec::new();
        for (indices, result) in join_all(sends).await {
            match result {
                Ok(values) if values.len() == indices.len() => {
                    for (i, value) in indices.into_iter().zip(values) {
                        match &value {
                            Value::ServerError(err) if is_redirect(err.kind()) => resend.push(i),
                            _ => replies[i] = Some(value),
                        }
                    }
                }
                Ok(_) => return Err(bad_reply("a pipeline returned the wrong number of replies")),
                // The node is unreachable (a failover may be under way): redis-rs
                // retries single commands with a slot refresh, so fall back to those.
                Err(err) if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() => {
                    tracing::debug!(error = %err, "per-node pipeline failed; resending its commands one by one");
                    resend.extend(indices);
                }
                Err(err) => return Err(err),
            }
        }
        if !resend.is_empty() {
            self.slots.store(None);
            let singles = resend.iter().map(|&i| {
                let mut conn = self.inner.clone();
                let cmd = &cmds[i].1;
                async move { conn.req_packed_command(cmd).await }
            });
            for (i, result) in resend.iter().zip(join_all(singles).await) {
                replies[*i] = Some(result?);
            }
        }
        replies
            .into_iter()
            .map(|reply| reply.ok_or_else(|| bad_reply("a batch command got no reply")))
            .collect()
    }

    /// `MGET` of keys spread over any number of slots: one `MGET` per slot,
    /// one pipeline per primary. Replies are in the order of `keys`.
    pub(crate) async fn mget(&mut self, keys: &[String]) -> RedisResult<Vec<Option<Vec<u8>>>> {
        let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, key) in keys.iter().enumerate() {
            by_slot.entry(key_slot(key.as_bytes())).or_default().push(i);
        }
        let cmds = by_slot
            .iter()
            .map(|(slot, indices)| {
                let mut cmd = redis::cmd("MGET");
                for &i in indices {
                    cmd.arg(&keys[i]);
                }
                (*slot, cmd)
            })
            .collect();
        let replies = self.run_by_node(cmds).await?;
        let mut out = vec![None; keys.len()];
        for (indices, reply) in by_slot.into_values().zip(replies) {
            let values: Vec<Option<Vec<u8>>> = match reply {
                Value::ServerError(err) => return Err(err.into()),
                other => redis::from_redis_value(other)?,
            };
            if values.len() != indices.len() {
                return Err(bad_reply("MGET returned the wrong number of values"));
            }
            for (i, value) in indices.into_iter().zip(values) {
                out[i] = value;
            }
        }
        Ok(out)
    }

    /// Runs single-key commands (a batch write, a batch of `GET` + `PTTL`, a
    /// replay), one pipeline per primary. `key` of each pair is the key the
    /// command touches. Replies come back in order; a server error answered by
    /// one command stays in its place.
    pub(crate) async fn run_keyed(&mut self, cmds: Vec<(String, Cmd)>) -> RedisResult<Vec<Value>> {
        let cmds = cmds
            .into_iter()
            .map(|(key, cmd)| (key_slot(key.as_bytes()), cmd))
            .collect();
        self.run_by_node(cmds).await
    }

    /// Deletes every key matching `pattern` on every primary: `SCAN` per
    /// primary, and each batch found is `UNLINK`ed per slot in one pipeline.
    pub(crate) async fn scan_unlink(&mut self, pattern: &str, batch: usize) -> RedisResult<()> {
        // Fresh map: a purge must not miss a primary added or promoted since.
        let map = self.refresh_slots().await?;
        let scans = map.primaries.iter().map(|&slot| {
            let mut conn = self.clone();
            async move { conn.scan_unlink_node(slot, pattern, batch).await }
        });
        join_all(scans).await.into_iter().collect()
    }

    async fn scan_unlink_node(&mut self, slot: u16, pattern: &str, batch: usize) -> RedisResult<()> {
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(batch);
            let reply = self
                .inner
                .route_command(scan, RoutingInfo::SingleNode(to_primary(slot)))
                .await?;
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::from_redis_value(reply)?;
            if !keys.is_empty() {
                let mut by_slot: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
                for key in keys {
                    by_slot.entry(key_slot(&key)).or_default().push(key);
                }
                let unlinks = by_slot
                    .into_iter()
                    .map(|(slot, keys)| {
                        let mut cmd = redis::cmd("UNLINK");
                        cmd.arg(keys);
                        (slot, cmd)
                    })
                    .collect();
                for reply in self.run_by_node(unlinks).await? {
                    if let Value::ServerError(err) = reply {
                        return Err(err.into());
                    }
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl ConnectionLike for ClusterConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> redis::RedisFuture<'a, Value> {
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.inner.req_packed_commands(pipeline, offset, count).await {
                // redis-rs refuses a pipeline whose keys live in several slots
                // (a write plus its PUBLISH, a replay of many keys). A plain
                // pipeline promises order, not atomicity: run its commands one
                // by one, in order, each routed to its own node.
                Err(err) if is_cross_slot(&err) && !pipeline.is_transaction() => {
                    let mut replies = Vec::with_capacity(count);
                    for cmd in pipeline.cmd_iter() {
                        replies.push(self.inner.req_packed_command(cmd).await?);
                    }
                    Ok(replies)
                }
                other => other,
            }
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Opens `config.max_connections()` connections to the cluster whose seed
/// nodes `config` lists.
pub(super) async fn open(config: &RedisConfig) -> Result<Vec<RedisConnection>> {
    let nodes = config
        .cluster_nodes()
        .iter()
        .map(|(host, port)| {
            let mut node = config.clone();
            node.cluster_nodes.clear();
            node.host = host.clone();
            node.port = *port;
            connection_info(&node)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut builder = ClusterClientBuilder::new(nodes)
        .tcp_settings(connection_info(config)?.tcp_settings().clone())
        .connection_timeout(config.connect_timeout())
        .response_timeout(config.response_timeout())
        .retries(u32::try_from(config.reconnect_retries()).unwrap_or(u32::MAX))
        .max_retry_wait(500);
    if let Some(user) = config.username() {
        builder = builder.username(user);
    }
    if let Some(password) = config.password() {
        builder = builder.password(password.expose());
    }
    if let Some(tls) = config.tls() {
        builder = builder.tls(super::tls_mode(tls)?);
        if let Some(certs) = super::tls_certificates(tls)? {
            builder = builder.certs(certs);
        }
    }
    let client = builder.build().map_err(CacheError::from)?;
    let mut conns = Vec::with_capacity(config.max_connections());
    for _ in 0..config.max_connections() {
        let conn = client.get_async_connection().await?;
        conns.push(RedisConnection::Cluster(conn.into()));
    }
    Ok(conns)
}

/// A redis-rs client for the first seed node that answers `PING`, for
/// pub/sub (a classic `PUBLISH` reaches subscribers on every node of a
/// cluster) and probes. Call it again after a failure: it tries the seeds anew.
pub(super) async fn seed_client(config: &RedisConfig) -> Result<redis::Client> {
    let settings = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout()))
        .set_response_timeout(Some(config.response_timeout()));
    let mut last_err = CacheError::config("cluster_nodes", "at least one seed node is required");
    for (host, port) in config.cluster_nodes() {
        let mut node = config.clone();
        node.cluster_nodes.clear();
        node.host = host.clone();
        node.port = *port;
        let client = super::client_for(&node)?;
        let ping = async {
            let mut conn = client.get_multiplexed_async_connection_with_config(&settings).await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        match ping.await {
            Ok(()) => return Ok(client),
            Err(err) => last_err = err.into(),
        }
    }
    Err(last_err)
}

fn is_cross_slot(err: &redis::RedisError) -> bool {
    matches!(err.kind(), redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot))
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn key_slot_matches_redis() {
        // Values from `CLUSTER KEYSLOT` on redis-server 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(
            key_slot(b"foo{}{bar}"),
            key_slot(b"bar"),
            "an empty tag hashes the whole key"
        );
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }
}
