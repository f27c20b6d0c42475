//! Real Redis and PostgreSQL servers for tests, with no mocks in between.
//!
//! # Layout
//! - [`RedisServer`]: one `redis-server` per test, on a free port, without persistence, so
//!   that [`RedisServer::restart`] brings it back empty (as a crashed cache would); one
//!   per test binary ([`RedisServer::shared`]) for tests that keep apart by key prefix; or with
//!   extra arguments ([`RedisServer::start_with`], e.g. an AOF), and [`RedisServer::pause`]
//!   to stall it as an overloaded or partitioned server would.
//! - [`Postgres`]: one PostgreSQL cluster per test binary ([`Postgres::shared`]), because
//!   `initdb` costs seconds, and a fresh database per test ([`Postgres::create_database`]).
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

pub mod topology;

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

/// A `redis-server` without persistence on a free port of 127.0.0.1, stopped on drop.
pub struct RedisServer {
    /// Where the server listens; kept across [`RedisServer::restart`].
    port: u16,
    /// Arguments after the defaults (later ones win), kept across restarts.
    extra: Vec<String>,
    /// Holds the log (and would hold dump files, but persistence is off).
    dir: tempfile::TempDir,
    /// The running server, if any.
    process: Option<Watched>,
}

impl RedisServer {
    /// One server for the whole test binary, started on first use and stopped by its
    /// watchdog when the test process exits (statics are never dropped). Tests sharing it
    /// keep apart by key prefix; a test that kills or restarts Redis needs its own
    /// ([`RedisServer::start`]).
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(RedisServer::start)
    }

    /// Starts a server and waits until it accepts connections.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server with `args` after the defaults, e.g.
    /// `["--appendonly", "yes", "--appendfsync", "always"]` for one that keeps everything
    /// in its AOF (in its temp dir) across [`RedisServer::kill`] and
    /// [`RedisServer::restart`].
    pub fn start_with(args: &[&str]) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("rplace-redis-")
            .tempdir()
            .expect("temp dir");
        let mut server = RedisServer {
            port: 0,
            extra: args.iter().map(|s| s.to_string()).collect(),
            dir,
            process: None,
        };
        for attempt in 0.. {
            server.port = free_port();
            match server.launch() {
                Ok(()) => break,
                Err(e) if attempt < 5 => {
                    eprintln!(
                        "redis-server on port {} failed ({e}); trying another port",
                        server.port
                    )
                }
                Err(e) => panic!("{e}"),
            }
        }
        server
    }

    fn launch(&mut self) -> Result<(), String> {
        let bin = std::env::var("RPLACE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let log = self.dir.path().join("redis.log");
        let mut cmd: Vec<String> = [
            bin.as_str(),
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
            "--protected-mode",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cmd.extend(self.extra.iter().cloned());
        let mut p = Watched::spawn(&cmd, &log);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.cli_raw(&["PING"]).trim() == "PONG"
            {
                self.process = Some(p);
                return Ok(());
            }
            if !p.is_running() || Instant::now() > deadline {
                p.stop("-KILL");
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "redis-server did not start on port {}:\n{log}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL, as a crash would; everything it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("-KILL");
        }
    }

    /// The server log so far, to print when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Stops the server with SIGSTOP: it keeps its connections and its port but answers
    /// nothing, until [`RedisServer::resume`].
    pub fn pause(&self) {
        if let Some(p) = &self.process {
            p.signal("-STOP");
        }
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(p) = &self.process {
            p.signal("-CONT");
        }
    }

    /// Kills the server and starts one on the same port: empty, unless it was started
    /// with persistence ([`RedisServer::start_with`]), which it then loads.
    pub fn restart(&mut self) {
        self.kill();
        // The port was just ours; if another process grabbed it, the test cannot go on.
        self.launch().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `redis-cli` against this server and returns its output (raw mode, one reply
    /// element per line), e.g. `cli(&["CLIENT", "KILL", "TYPE", "pubsub"])`.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_raw(args)
    }

    fn cli_raw(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL cluster on a free port of 127.0.0.1 with `trust` authentication for the
/// `postgres` user, stopped on drop (or, for [`Postgres::shared`], when the test process
/// exits).
pub struct Postgres {
    /// Where the server listens.
    port: u16,
    /// The data directory, log and socket folder.
    dir: tempfile::TempDir,
    /// Folder of `initdb`, `postgres` and `psql`.
    bin: PathBuf,
    /// The postmaster's command line, to start it again after [`Postgres::stop`].
    cmd: Vec<String>,
    /// The running postmaster (`None` while stopped).
    process: Option<Watched>,
}

/// Numbers the databases made by this process, so names never collide.
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

impl Postgres {
    /// One cluster for the whole test binary, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Postgres::start)
    }

    /// Creates a cluster (`initdb`) and starts it. Takes a few seconds; prefer
    /// [`Postgres::shared`] plus [`Postgres::create_database`] in tests.
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("rplace-pg-")
            .tempdir()
            .expect("temp dir");
        let as_root = is_root();
        if as_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let data = dir.path().join("data");
        let mut initdb = as_postgres(as_root, &bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ]);
        run(&mut initdb);
        let log = dir.path().join("postgres.log");
        for attempt in 0.. {
            let port = free_port();
            let mut cmd: Vec<String> = Vec::new();
            if as_root {
                cmd.extend(setpriv_prefix());
            }
            cmd.push(bin.join("postgres").display().to_string());
            for arg in [
                "-D".to_string(),
                data.display().to_string(),
                "-p".into(),
                port.to_string(),
                "-k".into(),
                dir.path().display().to_string(),
                "-c".into(),
                "listen_addresses=127.0.0.1".into(),
                // The tests kill processes, not machines: skipping fsync loses nothing they check.
                "-c".into(),
                "fsync=off".into(),
                "-c".into(),
                "full_page_writes=off".into(),
                "-c".into(),
                "max_connections=400".into(),
            ] {
                cmd.push(arg);
            }
            let mut process = Watched::spawn(&cmd, &log);
            let deadline = Instant::now() + READY_TIMEOUT;
            let mut ready = false;
            while Instant::now() < deadline && process.is_running() {
                let ok = Command::new(bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    ready = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if ready {
                return Postgres {
                    port,
                    dir,
                    bin,
                    cmd,
                    process: Some(process),
                };
            }
            process.stop("-KILL");
            if attempt >= 5 {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("postgres did not start:\n{log}");
            }
        }
        unreachable!("the loop returns or panics")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: connections are cut, the port closes), as an
    /// outage or a failover would. Use a cluster of its own ([`Postgres::start`]), not the
    /// shared one.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("-INT");
        }
    }

    /// Starts a stopped server again on the same port and data, and waits until it
    /// accepts connections.
    pub fn resume(&mut self) {
        if self.process.is_some() {
            return;
        }
        let log = self.dir.path().join("postgres.log");
        let mut process = Watched::spawn(&self.cmd, &log);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline && process.is_running() {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                self.process = Some(process);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        process.stop("-KILL");
        panic!("postgres did not start again:\n{}", self.log());
    }

    /// Connection URL of database `db` as user `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database with a fresh name and returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs `sql` in database `db` with `psql` and returns its unaligned, tuples-only output
    /// (one row a line, columns separated by `|`). Panics if the statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        if !out.status.success() {
            panic!(
                "psql failed on {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server log so far, to print when a test fails.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown; the data dir is thrown away anyway.
        if let Some(mut p) = self.process.take() {
            p.stop("-QUIT");
        }
    }
}

fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("RPLACE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no PostgreSQL found under /usr/lib/postgresql (install postgresql, or set RPLACE_PG_BIN)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn setpriv_prefix() -> Vec<String> {
    [
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn as_postgres(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("setpriv");
        c.args(&setpriv_prefix()[1..]).arg(program);
        c
    } else {
        Command::new(program)
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
