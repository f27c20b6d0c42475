//! Real Redis and PostgreSQL servers for tests, with no mocks in between.
//!
//! # Layout
//! - [`RedisServer`]: one `redis-server` per test, on a free port, without persistence, so
//!   that [`RedisServer::restart`] brings it back empty (as a crashed cache would); one
//!   per test binary ([`RedisServer::shared`]) for tests that keep apart by key prefix; or with
//!   extra arguments ([`RedisServer::start_with`], e.g. an AOF), and [`RedisServer::pause`]
//!   to stall it as an overloaded or partitioned server would.
//! - [`RedisCluster`]: a real three-master Redis Cluster (`--cluster-enabled yes`, joined by
//!   `redis-cli --cluster create`) on free ports, for the code that spreads tiles over
//!   hash slots; one per test binary ([`RedisCluster::shared`]) as for `RedisServer`, and
//!   [`RedisCluster::restart_node`] to have one master lose its keys.
//! - [`SharedRedis`]: either of those, chosen by [`RedisKind`], for tests and the topology
//!   that run on both (its `args()` are the rplace flags that select it).
//! - [`OidcProvider`]: a real OpenID Connect provider (npm `oidc-provider` under node,
//!   `tests/oidc/provider.mjs`) with one static client, for login round trips.
//! - [`Postgres`]: one PostgreSQL cluster per test binary ([`Postgres::shared`]), because
//!   `initdb` costs seconds, and a fresh database per test ([`Postgres::create_database`]).
//! - [`apng_frames`]: an animated PNG's frames as a viewer composites them.
//! - [`siteverify::SiteVerify`]: a local stand-in for a captcha provider's siteverify
//!   endpoint, speaking the protocol Turnstile and hCaptcha document.
//!
//! Every server runs under a small `sh` watchdog that stops it when the test process is
//! gone, so a test binary that is killed or aborts leaves no server behind; a server held
//! by a value is also stopped when the value is dropped.
//!
//! PostgreSQL refuses to run as root. When the tests run as root, the cluster is created
//! and started as the `postgres` user (with `setpriv`) in a temporary folder it owns.
//! `RPLACE_PG_BIN` may name the folder holding `initdb` and `postgres`; by default the
//! newest `/usr/lib/postgresql/*/bin` is used. `RPLACE_REDIS_SERVER` may name the
//! `redis-server` binary.

mod apng;
mod oidc;
mod postgres;
mod redis;
mod redis_cluster;
mod shared_redis;
pub mod siteverify;
pub mod topology;
mod wait;

pub use apng::apng_frames;
pub use oidc::OidcProvider;
pub use postgres::Postgres;
pub use redis::RedisServer;
pub use redis_cluster::RedisCluster;
pub use shared_redis::{RedisKind, SharedRedis};
pub use wait::eventually;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A port nobody listens on right now. Another process may take it before the server
/// binds it; the `start` functions retry with a new port when that happens.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// A server process started under the watchdog.
struct Watched {
    /// The watchdog shell; it exits when the server does.
    watchdog: Child,
    /// The server's own pid, reported by the watchdog, for signals that must reach it.
    pid: u32,
}

impl Watched {
    /// Starts `cmd` under a shell that kills it once this test process has exited.
    fn spawn(cmd: &[String], log: &Path) -> Watched {
        let script = r#"
            parent=$1; log=$2; shift 2
            "$@" >>"$log" 2>&1 &
            child=$!
            echo "$child"
            while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.2; done
            kill -TERM "$child" 2>/dev/null
            wait "$child"
        "#;
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("rplace-watchdog")
            .arg(std::process::id().to_string())
            .arg(log)
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", cmd[0]));
        let stdout: ChildStdout = watchdog.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server pid from the watchdog");
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("watchdog printed {line:?}, not a pid"));
        Watched { watchdog, pid }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }

    fn is_running(&mut self) -> bool {
        matches!(self.watchdog.try_wait(), Ok(None))
    }

    /// Sends `sig` to the server and waits for it (and so the watchdog) to exit.
    fn stop(&mut self, sig: &str) {
        self.signal(sig);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.is_running() {
            self.signal("-KILL");
            let _ = self.watchdog.kill();
        }
        let _ = self.watchdog.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_starts_restarts_empty_and_stops() {
        let mut r = RedisServer::start();
        assert_eq!(r.cli(&["SET", "k", "v"]).trim(), "OK");
        assert_eq!(r.cli(&["GET", "k"]).trim(), "v");
        let port = r.port();
        r.restart();
        assert_eq!(r.port(), port);
        assert_eq!(r.cli(&["EXISTS", "k"]).trim(), "0");
        drop(r);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    /// A test that panics (or a binary that aborts) leaves no server behind: a held one is
    /// stopped on unwinding, a shared one (a static, never dropped) by its watchdog.
    #[test]
    fn servers_die_with_a_test_process_that_fails() {
        if let Some(how) = std::env::var_os("RPLACE_WATCHDOG_CHILD") {
            let shared = RedisServer::shared();
            let held = RedisServer::start();
            println!("\nports {} {}", shared.port(), held.port());
            if how == "abort" {
                std::process::abort();
            }
            panic!("a failing test");
        }
        for how in ["panic", "abort"] {
            let out = Command::new(std::env::current_exe().unwrap())
                .args([
                    "tests::servers_die_with_a_test_process_that_fails",
                    "--exact",
                ])
                .args(["--nocapture", "--test-threads=1"])
                .env("RPLACE_WATCHDOG_CHILD", how)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .unwrap();
            assert!(!out.status.success(), "{how}: the child test failed");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let ports: Vec<u16> = stdout
                .lines()
                .find_map(|l| l.strip_prefix("ports "))
                .unwrap_or_else(|| panic!("{how}: no ports in {stdout:?}"))
                .split(' ')
                .map(|p| p.parse().unwrap())
                .collect();
            let deadline = Instant::now() + Duration::from_secs(10);
            while ports
                .iter()
                .any(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok())
            {
                assert!(
                    Instant::now() < deadline,
                    "{how}: a redis-server outlived its test process by 10 s"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    #[test]
    fn postgres_databases_are_separate() {
        let pg = Postgres::shared();
        let a = pg.create_database();
        let b = pg.create_database();
        assert_ne!(a, b);
        let db_a = a.rsplit('/').next().unwrap();
        let db_b = b.rsplit('/').next().unwrap();
        pg.psql(db_a, "CREATE TABLE t (x int); INSERT INTO t VALUES (7)");
        assert_eq!(pg.psql(db_a, "SELECT x FROM t").trim(), "7");
        assert_eq!(
            pg.psql(db_b, "SELECT count(*) FROM pg_tables WHERE tablename = 't'")
                .trim(),
            "0"
        );
    }
}
