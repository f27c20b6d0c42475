//! PostgreSQL clusters for tests (as the `postgres` user when the tests run as root).

use super::*;

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
