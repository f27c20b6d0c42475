//! A real Redis Cluster for tests: three masters (`redis-server --cluster-enabled yes`)
//! on free ports, joined by `redis-cli --cluster create`, each owning a third of the
//! 16,384 hash slots.

use super::*;

/// Masters in the cluster: the smallest cluster `redis-cli --cluster create` accepts.
pub const MASTERS: usize = 3;

/// A three-master Redis Cluster on 127.0.0.1, stopped on drop.
pub struct RedisCluster {
    /// The masters; each keeps its cluster state (`nodes.conf`) in its own temp dir.
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// One cluster for the whole test binary, started on first use and stopped by its
    /// masters' watchdogs when the test process exits (statics are never dropped), as
    /// [`RedisServer::shared`]. Tests sharing it keep apart by key prefix; a test that
    /// flushes, kills or restarts a master needs its own ([`RedisCluster::start`]).
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(RedisCluster::start)
    }

    /// Starts three masters, creates the cluster and waits until every node says
    /// `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..MASTERS)
            .map(|_| {
                // The bus port is chosen too: the default (port + 10,000) may be above
                // 65,535 or taken.
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Whether every node sees the whole cluster and all slots served.
    fn is_ok(&self) -> bool {
        self.nodes.iter().all(|n| {
            let info = n.cli(&["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok")
                && info.contains(&format!("cluster_known_nodes:{MASTERS}"))
        })
    }

    /// One `redis://` URL per master, the seed list a cluster client takes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The seed list as `--redis-url` takes it with `--redis-cluster`: [`RedisCluster::urls`]
    /// joined by `,`.
    pub fn seed_url(&self) -> String {
        self.urls().join(",")
    }

    /// The masters, e.g. to run `redis-cli` on one or to pause one.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Kills master `i` with SIGKILL, as a crash would: its slots go unserved (the
    /// cluster reports `cluster_state:fail` once the others notice) until
    /// [`RedisCluster::restart_node`].
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Kills master `i` and starts it again on the same ports, empty (no persistence) but
    /// with its cluster state (`nodes.conf` in its dir), so it takes back its own slots;
    /// waits until the cluster is `cluster_state:ok` again. What a master that lost its
    /// memory looks like to the clients: its third of the keys is gone, the rest is kept.
    pub fn restart_node(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_ok();
    }

    /// Kills every master, then starts each again empty on its ports (as
    /// [`RedisCluster::restart_node`]): the whole cluster lost its memory, not its layout.
    pub fn restart_all(&mut self) {
        self.nodes.iter_mut().for_each(RedisServer::kill);
        self.nodes.iter_mut().for_each(RedisServer::restart);
        self.wait_ok();
    }

    /// Waits until every node says `cluster_state:ok` and knows every master.
    fn wait_ok(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.is_ok() {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok:\n{}",
                self.nodes[0].cli(&["CLUSTER", "INFO"])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `redis-cli -c` (following redirects) against the first master.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "-c",
                "-h",
                "127.0.0.1",
                "-p",
                &self.nodes[0].port().to_string(),
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deletes every key on every master (`FLUSHALL` acts on one node only).
    pub fn flush_all(&self) {
        for n in &self.nodes {
            n.cli(&["FLUSHALL"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_masters_share_the_slots_and_redirect() {
        let mut c = RedisCluster::start();
        // Keys in different slots land on different masters, reached through redirects.
        for i in 0..30 {
            assert_eq!(c.cli(&["SET", &format!("k{i}"), "v"]).trim(), "OK");
        }
        let held: Vec<usize> = c
            .nodes()
            .iter()
            .map(|n| n.cli(&["DBSIZE"]).trim().parse().unwrap())
            .collect();
        assert_eq!(held.iter().sum::<usize>(), 30);
        assert!(
            held.iter().all(|&n| n > 0),
            "every master holds keys: {held:?}"
        );
        // One hash tag keeps keys together, so one script may touch both.
        assert_eq!(
            c.cli(&["CLUSTER", "KEYSLOT", "{t:1:2}a"]),
            c.cli(&["CLUSTER", "KEYSLOT", "{t:1:2}b"])
        );
        // A master that restarts empty takes back its slots and loses only its own keys.
        c.restart_node(1);
        assert_eq!(c.nodes()[1].cli(&["DBSIZE"]).trim(), "0");
        let kept: usize = [0, 2]
            .iter()
            .map(|&i| {
                c.nodes()[i]
                    .cli(&["DBSIZE"])
                    .trim()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        assert_eq!(kept, held[0] + held[2]);
        for i in 0..30 {
            assert_eq!(c.cli(&["SET", &format!("k{i}"), "w"]).trim(), "OK");
        }
        c.flush_all();
        assert_eq!(c.cli(&["GET", "k1"]).trim(), "");
    }
}
