//! The shared store's configuration: where Redis and PostgreSQL are and the limits it
//! keeps, with passwords kept out of messages and logs.

use super::*;

/// The key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "rplace:";

/// Requests that may wait for the batcher or the writer before `place` itself waits
/// (backpressure).
pub(super) const TASK_QUEUE: usize = 65_536;

/// What the shared store needs to know. [`SharedConfig::new`] fills in the defaults.
#[derive(Clone)]
pub struct SharedConfig {
    /// `redis://[:password@]host:port[/db]`; with [`SharedConfig::redis_cluster`], the
    /// seed nodes of the cluster, comma-separated.
    pub redis_url: String,
    /// Redis is a Redis Cluster: the tiles are spread over its hash slots (each tile in
    /// its own), everything else lives in the slot of the prefix's hash tag. See
    /// `shared/mod.rs`, "Redis Cluster". Default false: one redis-server.
    pub redis_cluster: bool,
    /// `postgres://user[:password]@host:port/database`.
    pub postgres_url: String,
    /// The canvas's size, at least: a larger one than PostgreSQL and Redis hold grows the
    /// canvas at open, a smaller one keeps theirs ([`Store::dims`] says what is in force).
    pub dims: Dimensions,
    /// Bits per pixel; must match what PostgreSQL already holds.
    pub depth: Depth,
    /// The placement policy's parameters (cooldown, per-address rate, IPv6 prefix),
    /// enforced across all instances by the placement script.
    pub policy: Params,
    /// How long an idempotency key's first outcome is kept in Redis. Default 600 s.
    pub idempotency_window: Duration,
    /// Prefix of every Redis key and of the channel, so that deployments (and tests) can
    /// share a Redis. Default [`DEFAULT_PREFIX`].
    pub key_prefix: String,
    /// Recent placements kept in the Redis stream for catch-up (`updates_since`, feed gap
    /// filling, reconciling); approximate, at least this many. Default 100,000.
    pub stream_capacity: u64,
    /// Most placements that may wait in Redis for PostgreSQL while it is away (durable
    /// Redis only); past it placements answer `503`. Bounds Redis's memory (about 100
    /// bytes each). Default 1,000,000.
    pub backlog_limit: u64,
    /// Longest one Redis command (or connection attempt) may take. Default 1 s.
    pub redis_timeout: Duration,
    /// Longest one PostgreSQL call (pool checkout included) may take. Default 2 s.
    pub database_timeout: Duration,
    /// PostgreSQL connections of this instance. Default 8.
    pub pg_pool_size: usize,
    /// Longest `place` waits for its history commit (retries included) before answering
    /// `Unavailable`, or, with a durable Redis, acknowledging from Redis. Default 3 s.
    pub ack_timeout: Duration,
    /// Longest `place` and `snapshot` wait for a running rebuild. Default 10 s.
    pub rebuild_wait: Duration,
    /// How often the stream is reconciled into PostgreSQL (and snapshots are considered).
    /// Default 2 s.
    pub reconcile_interval: Duration,
    /// Stream entries younger than this are left to the writer of the instance that made
    /// them. Default 5 s.
    pub reconcile_grace: Duration,
    /// Write a tile snapshot round (the tiles placed on since the last one) to PostgreSQL
    /// after this many placements. Default 100,000.
    pub snapshot_every: u64,
    /// How often Redis (and a failing PostgreSQL) is probed and missing state noticed.
    /// Default 250 ms, so that readiness fails within it plus `redis_timeout`.
    pub health_interval: Duration,
    /// How often the feed compares its position with the seq in Redis, in case a Pub/Sub
    /// message was lost without the connection dropping. Default 1 s.
    pub feed_check_interval: Duration,
}

impl SharedConfig {
    pub fn new(
        redis_url: impl Into<String>,
        postgres_url: impl Into<String>,
        dims: Dimensions,
        depth: Depth,
        policy: Params,
    ) -> Self {
        Self {
            redis_url: redis_url.into(),
            redis_cluster: false,
            postgres_url: postgres_url.into(),
            dims,
            depth,
            policy,
            idempotency_window: Duration::from_secs(600),
            key_prefix: DEFAULT_PREFIX.into(),
            stream_capacity: 100_000,
            backlog_limit: 1_000_000,
            redis_timeout: Duration::from_secs(1),
            database_timeout: Duration::from_secs(2),
            pg_pool_size: 8,
            ack_timeout: Duration::from_secs(3),
            rebuild_wait: Duration::from_secs(10),
            reconcile_interval: Duration::from_secs(2),
            reconcile_grace: Duration::from_secs(5),
            snapshot_every: 100_000,
            health_interval: Duration::from_millis(250),
            feed_check_interval: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConfig")
            .field("redis_url", &redact(&self.redis_url))
            .field("redis_cluster", &self.redis_cluster)
            .field("postgres_url", &redact(&self.postgres_url))
            .field("dims", &self.dims)
            .field("depth", &self.depth)
            .field("policy", &self.policy)
            .field("idempotency_window", &self.idempotency_window)
            .field("key_prefix", &self.key_prefix)
            .field("stream_capacity", &self.stream_capacity)
            .field("backlog_limit", &self.backlog_limit)
            .field("redis_timeout", &self.redis_timeout)
            .field("database_timeout", &self.database_timeout)
            .field("pg_pool_size", &self.pg_pool_size)
            .field("ack_timeout", &self.ack_timeout)
            .field("rebuild_wait", &self.rebuild_wait)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("reconcile_grace", &self.reconcile_grace)
            .field("snapshot_every", &self.snapshot_every)
            .field("health_interval", &self.health_interval)
            .field("feed_check_interval", &self.feed_check_interval)
            .finish()
    }
}

/// A URL with its password replaced, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    // A cluster's seed list: each URL on its own.
    if url.contains("://") && url.contains(',') {
        return url.split(',').map(redact).collect::<Vec<_>>().join(",");
    }
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!(
                "{}://{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            );
        }
        return url.to_string();
    }
    // key=value form: hide the password's value.
    url.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/rplace"),
            "postgres://app:***@db:5432/rplace"
        );
        assert_eq!(
            redact("redis://:pw@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redact("redis://cache:6379/"), "redis://cache:6379/");
        assert_eq!(
            redact("host=db user=app password=s3cret"),
            "host=db user=app password=***"
        );
    }
}
