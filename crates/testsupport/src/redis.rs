//! `redis-server` processes for tests.

use super::*;

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

    /// The server's pid while it runs, e.g. to measure its CPU under a benchmark.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.pid)
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
