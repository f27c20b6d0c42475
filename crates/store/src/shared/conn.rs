//! One connection type over the two Redis deployments: a single redis-server (a
//! [`ConnectionManager`], which reconnects by itself) or a Redis Cluster (a
//! [`ClusterConnection`], which follows the slot map and its redirects). Everything else in
//! the shared backend sends commands through [`RedisConn`] and does not care which it is,
//! except where a cluster needs more than one call: commands on keys of several slots
//! (`live`), and `SCAN`, which a cluster answers per node ([`RedisConn::scan_keys`]).

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// A connection to the live state's Redis, whichever kind it is. Cheap to clone: both
/// kinds multiplex.
#[derive(Clone)]
pub(crate) enum RedisConn {
    /// One redis-server.
    Single(ConnectionManager),
    /// A connection of its own to one redis-server, for long calls (a rewrite's chunks).
    Dedicated(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

/// Where to reach a Redis, parsed from the configured URL.
#[derive(Clone)]
pub(crate) enum Target {
    Single(redis::Client),
    /// The seed nodes of a cluster (the URL split at commas).
    Cluster(Box<redis::cluster::ClusterClient>, Vec<redis::Client>),
}

impl Target {
    /// `url` as one server, or with `cluster` as a comma-separated seed list.
    pub fn parse(url: &str, cluster: bool) -> RedisResult<Self> {
        if !cluster {
            return Ok(Target::Single(redis::Client::open(url)?));
        }
        let seeds: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let nodes = seeds
            .iter()
            .map(|s| redis::Client::open(*s))
            .collect::<RedisResult<Vec<_>>>()?;
        let client = redis::cluster::ClusterClient::builder(seeds).build()?;
        Ok(Target::Cluster(Box::new(client), nodes))
    }

    /// A connection whose connection attempts take at most `connect` and whose commands
    /// take at most `respond`, retried `retries` times (a cluster's retries also follow
    /// redirects while slots move).
    pub async fn connect(
        &self,
        connect: Duration,
        respond: Duration,
        retries: usize,
    ) -> RedisResult<RedisConn> {
        match self {
            Target::Single(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(respond))
                    .set_number_of_retries(retries);
                Ok(RedisConn::Single(
                    ConnectionManager::new_with_config(client.clone(), config).await?,
                ))
            }
            Target::Cluster(client, _) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(connect)
                    .set_response_timeout(respond);
                // The cluster client retries (and follows redirects) on its own.
                let _ = retries;
                Ok(RedisConn::Cluster(
                    client.get_async_connection_with_config(config).await?,
                ))
            }
        }
    }

    /// A connection of its own whose commands may take up to `respond` (see
    /// [`RedisConn::Dedicated`]); on a cluster, a cluster connection of its own.
    pub async fn dedicated(&self, connect: Duration, respond: Duration) -> RedisResult<RedisConn> {
        match self {
            Target::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect))
                    .set_response_timeout(Some(respond));
                Ok(RedisConn::Dedicated(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            Target::Cluster(..) => self.connect(connect, respond, 0).await,
        }
    }

    /// Clients for Pub/Sub, in the order to try them: Pub/Sub on a cluster reaches every
    /// node's subscribers, so any one node will do.
    pub fn pubsub_clients(&self) -> Vec<redis::Client> {
        match self {
            Target::Single(client) => vec![client.clone()],
            Target::Cluster(_, nodes) => nodes.clone(),
        }
    }
}

impl RedisConn {
    /// Whether this is a cluster, where a script or `MULTI` may only touch one slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }

    /// Every key matching `pattern` (`SCAN MATCH`), on a cluster from every master (a
    /// `SCAN` cursor belongs to one node).
    pub async fn scan_keys(&mut self, pattern: &str) -> RedisResult<Vec<String>> {
        let nodes: Vec<Option<(String, u16)>> = if self.is_cluster() {
            self.masters().await?.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, page): (u64, Vec<String>) = match (&mut *self, &node) {
                    (RedisConn::Cluster(c), Some((host, port))) => {
                        let at = SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        };
                        redis::from_redis_value(
                            c.route_command(cmd, RoutingInfo::SingleNode(at)).await?,
                        )?
                    }
                    (conn, _) => cmd.query_async(conn).await?,
                };
                keys.extend(page);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// The cluster's masters as `(host, port)` (`CLUSTER SHARDS` would do too, but
    /// `CLUSTER NODES` is older); empty for one server.
    pub async fn masters(&mut self) -> RedisResult<Vec<(String, u16)>> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(self).await?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                // <id> <ip:port@cport[,hostname]> <flags> ...; a master serving slots.
                let flags = f.get(2)?;
                if !flags.contains("master") || flags.contains("fail") || f.len() < 9 {
                    return None;
                }
                let addr = f.get(1)?.split('@').next()?;
                let (host, port) = addr.rsplit_once(':')?;
                Some((host.to_string(), port.parse().ok()?))
            })
            .collect())
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Dedicated(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Dedicated(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Dedicated(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
