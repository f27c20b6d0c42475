//! The Redis a shared-mode deployment runs on, either kind: one `redis-server` or a
//! three-master [`RedisCluster`], behind one type so that a test (or the topology) is
//! written once and run on both.

use super::*;

/// Which Redis to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisKind {
    /// One `redis-server` ([`RedisServer`]).
    Single,
    /// A three-master Redis Cluster ([`RedisCluster`]); the instances get `--redis-cluster`.
    Cluster,
}

/// A Redis of either kind, its servers stopped on drop.
pub enum SharedRedis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl SharedRedis {
    /// Starts a fresh one of `kind`, not shared with other tests (so it may be flushed,
    /// killed or restarted).
    pub fn start(kind: RedisKind) -> SharedRedis {
        match kind {
            RedisKind::Single => SharedRedis::Single(RedisServer::start()),
            RedisKind::Cluster => SharedRedis::Cluster(RedisCluster::start()),
        }
    }

    pub fn kind(&self) -> RedisKind {
        match self {
            SharedRedis::Single(_) => RedisKind::Single,
            SharedRedis::Cluster(_) => RedisKind::Cluster,
        }
    }

    /// What `--redis-url` takes: the server's URL, or the cluster's seed list.
    pub fn url(&self) -> String {
        match self {
            SharedRedis::Single(r) => r.url(),
            SharedRedis::Cluster(c) => c.seed_url(),
        }
    }

    /// The rplace flags that select it: `--redis-url URL`, plus `--redis-cluster` for a
    /// cluster.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["--redis-url".to_string(), self.url()];
        if self.kind() == RedisKind::Cluster {
            args.push("--redis-cluster".into());
        }
        args
    }

    /// Every `redis-server` process: the one, or the masters.
    pub fn servers(&self) -> &[RedisServer] {
        match self {
            SharedRedis::Single(r) => std::slice::from_ref(r),
            SharedRedis::Cluster(c) => c.nodes(),
        }
    }

    /// Deletes every key (`FLUSHALL` on every master of a cluster).
    pub fn flush_all(&self) {
        match self {
            SharedRedis::Single(r) => {
                r.cli(&["FLUSHALL"]);
            }
            SharedRedis::Cluster(c) => c.flush_all(),
        }
    }

    /// Kills every server with SIGKILL: Redis is gone until [`SharedRedis::restart_all`].
    pub fn kill_all(&mut self) {
        match self {
            SharedRedis::Single(r) => r.kill(),
            SharedRedis::Cluster(c) => (0..c.nodes().len()).for_each(|i| c.kill_node(i)),
        }
    }

    /// Kills every server and starts it again, empty, on the same ports (a cluster with its
    /// slots as before); returns once it serves again.
    pub fn restart_all(&mut self) {
        match self {
            SharedRedis::Single(r) => r.restart(),
            SharedRedis::Cluster(c) => c.restart_all(),
        }
    }

    /// SIGSTOPs every server ([`RedisServer::pause`]).
    pub fn pause_all(&self) {
        self.servers().iter().for_each(RedisServer::pause);
    }

    /// SIGCONTs every server.
    pub fn resume_all(&self) {
        self.servers().iter().for_each(RedisServer::resume);
    }

    /// The servers' logs, to print when a test fails.
    pub fn logs(&self) -> String {
        self.servers()
            .iter()
            .map(|s| format!("== redis-server :{}\n{}", s.port(), s.log()))
            .collect()
    }
}
