//! The seed's architecture on one machine: rplace instances behind HAProxy (the load
//! balancer: round robin, websocket-aware, health checks on `/readyz`) behind Varnish (the
//! CDN: caches `GET /api/board` as its `Cache-Control` says, pipes websockets).
//!
//! The instances share one Redis of either kind ([`RedisKind`]: one `redis-server` or a
//! three-master Redis Cluster, held as a [`SharedRedis`]) and one PostgreSQL.
//!
//! Used by the topology tests and by the `rplace-topology` binary, which runs it all.

pub use super::{RedisKind, SharedRedis};
use super::{Watched, free_port};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Waits until something accepts TCP connections on `port`, failing early if `process`
/// exits.
fn wait_port(port: u16, what: &str, log: &Path, process: &mut Watched) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && process.is_running() {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{what} did not listen on {port}; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Blocks until `GET /readyz` on `port` answers 200, failing early if `alive` says the
/// process is gone.
pub fn wait_ready(port: u16, log: &Path, mut alive: impl FnMut() -> bool) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && alive() {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "instance on {port} never became ready; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// One rplace process, started with the given arguments on a free port.
pub struct Instance {
    /// Where it listens.
    pub port: u16,
    /// Its arguments, to start it again.
    args: Vec<String>,
    /// The binary.
    bin: PathBuf,
    /// Its data dir and log.
    dir: tempfile::TempDir,
    /// The running process.
    process: Option<Watched>,
}

impl Instance {
    pub fn start(bin: &Path, args: &[String]) -> Instance {
        let mut inst = Instance {
            port: free_port(),
            args: args.to_vec(),
            bin: bin.to_path_buf(),
            dir: tempfile::tempdir().expect("temp dir"),
            process: None,
        };
        inst.launch();
        inst
    }

    fn launch(&mut self) {
        let mut cmd = vec![
            self.bin.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--data-dir".into(),
            self.dir.path().display().to_string(),
        ];
        cmd.extend(self.args.iter().cloned());
        let log = self.log_path();
        let mut process = Watched::spawn(&cmd, &log);
        wait_ready(self.port, &log, || process.is_running());
        self.process = Some(process);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("rplace.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.pid)
    }

    /// `kill -9`: no drain, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("-KILL");
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("-TERM");
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        if let Some(p) = &self.process {
            p.signal("-TERM");
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// HAProxy in front of `backends`.
pub struct Haproxy {
    pub port: u16,
    _dir: tempfile::TempDir,
    process: Watched,
}

impl Haproxy {
    pub fn start(backends: &[u16]) -> Haproxy {
        Haproxy::start_with(backends, false)
    }

    /// With `proxy_protocol`, every connection to a backend (health checks too) starts
    /// with a PROXY v2 header; the instances need `--proxy-protocol`.
    pub fn start_with(backends: &[u16], proxy_protocol: bool) -> Haproxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let send_proxy = if proxy_protocol { " send-proxy-v2" } else { "" };
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server r{i} 127.0.0.1:{p} check{send_proxy}\n"))
            .collect();
        // No `on-marked-down shutdown-sessions`: a draining instance marked down keeps its
        // websockets until it closes them with 1001 itself (cutting them gave clients
        // 1006). A request that found no live instance (connection refused, or closed
        // without an answer) is sent again to another one: the API's PUT is idempotent.
        let cfg = format!(
            "global\n    maxconn 8000\n    maxpipes 1000\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n    \
             timeout tunnel 1h\n    timeout client-fin 5s\n    option forwardfor\n    option splice-auto\n    http-reuse always\n    \
             retries 3\n    option redispatch 1\n    retry-on conn-failure empty-response\n\
             frontend fe\n    bind 127.0.0.1:{port}\n    default_backend rplace\n\
             backend rplace\n    balance roundrobin\n    option httpchk GET /readyz\n    \
             http-check expect status 200\n    default-server inter 300ms fall 1 rise 2\n\
             {servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).expect("write haproxy.cfg");
        let log = dir.path().join("haproxy.log");
        let bin = std::env::var("RPLACE_HAPROXY").unwrap_or_else(|_| "haproxy".into());
        let mut process = Watched::spawn(
            &[bin, "-db".into(), "-f".into(), path.display().to_string()],
            &log,
        );
        wait_port(port, "haproxy", &log, &mut process);
        Haproxy {
            port,
            _dir: dir,
            process,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.process.stop("-TERM");
    }
}

/// Varnish in front of one backend (HAProxy).
pub struct Varnish {
    pub port: u16,
    _dir: tempfile::TempDir,
    process: Watched,
}

impl Varnish {
    pub fn start(backend: u16) -> Varnish {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        // Board reads carry the identity cookie, which would make Varnish pass them:
        // the board is the same for everyone, so the cookie is dropped for those URLs only.
        let vcl = format!(
            r#"vcl 4.1;
backend default {{ .host = "127.0.0.1"; .port = "{backend}"; }}
sub vcl_recv {{
    if (req.http.upgrade ~ "(?i)websocket") {{ return (pipe); }}
    if (req.method == "GET" && req.url ~ "^/api/board(\.png)?$") {{
        unset req.http.cookie;
        return (hash);
    }}
}}
sub vcl_pipe {{
    if (req.http.upgrade) {{
        set bereq.http.upgrade = req.http.upgrade;
        set bereq.http.connection = req.http.connection;
    }}
}}
"#
        );
        let vcl_path = dir.path().join("rplace.vcl");
        std::fs::write(&vcl_path, vcl).expect("write vcl");
        let log = dir.path().join("varnish.log");
        let workdir = dir.path().join("varnish");
        let bin = std::env::var("RPLACE_VARNISHD").unwrap_or_else(|_| {
            if Path::new("/usr/sbin/varnishd").exists() {
                "/usr/sbin/varnishd".into()
            } else {
                "varnishd".into()
            }
        });
        let mut process = Watched::spawn(
            &[
                bin,
                "-F".into(),
                "-a".into(),
                format!("127.0.0.1:{port}"),
                "-f".into(),
                vcl_path.display().to_string(),
                "-n".into(),
                workdir.display().to_string(),
                "-s".into(),
                "malloc,64m".into(),
                "-p".into(),
                "default_grace=0".into(),
            ],
            &log,
        );
        wait_port(port, "varnishd", &log, &mut process);
        Varnish {
            port,
            _dir: dir,
            process,
        }
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        self.process.stop("-TERM");
    }
}
