//! `spawn_app` and the clients the tests share.
//!
//! # One contract, three backends
//! Every test of the HTTP API runs against every backend unless it is about one of them:
//!
//! ```ignore
//! contract_test!(placement_round_trip);
//! /// What it checks.
//! async fn placement_round_trip(backend: Backend) {
//!     let app = spawn_app_on(backend, &["--cooldown", "1"]).await;
//!     ...
//! }
//! ```
//!
//! makes `placement_round_trip::embedded`, `placement_round_trip::shared` and
//! `placement_round_trip::cluster` (run them all with
//! `cargo test -p rplace --test api placement_round_trip`). Options after the name, in
//! this order: `tokio(flavor = "multi_thread", worker_threads = 2)` for the runtime,
//! `ignore_shared = "why"` (shared and cluster) / `ignore_cluster = "why"` (cluster only) /
//! `ignore_embedded = "why"` for a known difference between the backends (a bug to fix:
//! say which in the test's comment); `ignore = "why"` alone for all three. A test that
//! cannot run on the binary's one shared cluster (it flushes or kills Redis, or reads keys
//! by name) starts its own ([`RedisCluster::start`]) or says why it is `ignore_cluster`.
//!
//! - [`Backend::Embedded`]: the SQLite store in a fresh data dir.
//! - [`Backend::Shared`]: Redis + PostgreSQL. One `redis-server` and one PostgreSQL cluster
//!   per test binary, started on first use and stopped when the process exits
//!   (rplace-testsupport's watchdog); each app gets its own key prefix and database.
//! - [`Backend::Cluster`]: the same on a three-master Redis Cluster (`--redis-cluster`,
//!   one [`RedisCluster::shared`] per test binary). [`Backend::is_shared`] is true for
//!   both: anything about "a shared-mode app" (siblings, a fleet) holds on either.
//!
//! `spawn_app(args)` is `spawn_app_on(Backend::Embedded, args)`, for tests that are about
//! the embedded store (say why in a comment). [`TestApp::restart`] stops an app and starts
//! it again on the same data (dir, or prefix and database); [`TestApp::sibling`] starts a
//! second instance on the same shared data (shared-mode tests: see `fleet.rs`).
//!
//! In shared mode an instance learns of a placement from the Redis feed, so reads right
//! after an acknowledgement use [`TestApp::board_after`] / [`TestApp::pixel_after`]. Wait
//! for anything else with [`eventually`] (polling with a deadline), never a fixed sleep.
//! [`SyncClient`] keeps an exact board with the domain's sync ([`rplace_domain::sync`]).

use futures_util::StreamExt;
use rplace::Config;
use rplace_domain::board::{Board, Depth, Dimensions, get_packed};
use rplace_domain::placement::Seq;
use rplace_domain::sync::{Fetch, Sync};
pub use rplace_testsupport::eventually;
use rplace_testsupport::{Postgres, RedisCluster, RedisServer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const BENCH_TOKEN: &str = "test-bench-token-0123456789";

/// The cookie key of every shared-mode app (shared mode requires one): 64 bytes in hex.
pub fn cookie_key() -> String {
    "5a".repeat(64)
}

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in a data dir, one process.
    Embedded,
    /// Redis + PostgreSQL, as a fleet of instances runs.
    Shared,
    /// A Redis Cluster + PostgreSQL: shared mode with the tiles spread over hash slots.
    Cluster,
}

impl Backend {
    /// Whether apps on it are shared-mode apps (Redis and PostgreSQL, siblings possible):
    /// [`Backend::Shared`] and [`Backend::Cluster`].
    pub fn is_shared(self) -> bool {
        matches!(self, Backend::Shared | Backend::Cluster)
    }
}

/// Where an app keeps its data, so that [`TestApp::restart`] finds it again.
pub struct Env {
    /// The backend.
    pub backend: Backend,
    /// The data dir (the embedded store; the cookie key file in embedded mode).
    pub data_dir: tempfile::TempDir,
    /// Redis key prefix of this app (shared mode, on one Redis or the cluster).
    pub redis_prefix: Option<String>,
    /// Its own PostgreSQL database (shared mode).
    pub database_url: Option<String>,
}

/// Numbers the Redis key prefixes of this test binary.
static NEXT_PREFIX: AtomicU64 = AtomicU64::new(0);

impl Env {
    pub fn new(backend: Backend) -> Env {
        let data_dir = tempfile::tempdir().unwrap();
        let (redis_prefix, database_url) = match backend {
            Backend::Embedded => (None, None),
            Backend::Shared | Backend::Cluster => (
                Some(format!("t{}:", NEXT_PREFIX.fetch_add(1, Ordering::Relaxed))),
                Some(Postgres::shared().create_database()),
            ),
        };
        Env {
            backend,
            data_dir,
            redis_prefix,
            database_url,
        }
    }

    /// The flags that select this backend and its data.
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir.path().to_str().unwrap().to_string(),
        ];
        if let (Some(prefix), Some(db)) = (&self.redis_prefix, &self.database_url) {
            let redis_url = match self.backend {
                Backend::Cluster => {
                    args.push("--redis-cluster".to_string());
                    RedisCluster::shared().seed_url()
                }
                Backend::Shared | Backend::Embedded => RedisServer::shared().url(),
            };
            args.extend([
                "--redis-url".to_string(),
                redis_url,
                "--redis-prefix".to_string(),
                prefix.clone(),
                "--database-url".to_string(),
                db.clone(),
                "--cookie-key".to_string(),
                cookie_key(),
            ]);
        }
        args
    }
}

/// A server running in this process.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A client with a cookie jar: one identity.
    pub client: reqwest::Client,
    /// The data dir; kept alive as long as the app.
    pub data_dir: tempfile::TempDir,
    /// Which store it runs on.
    pub backend: Backend,
    /// Redis prefix and database in shared mode, for a restart.
    shared: (Option<String>, Option<String>),
    /// Resolving this starts the graceful shutdown.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server task.
    pub task: tokio::task::JoinHandle<Result<(), rplace::RunError>>,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// An embedded-store server with test-friendly defaults plus `args`; see the module docs
/// (most tests want [`spawn_app_on`] in a `contract_test!`).
/// Arguments for a `side`² canvas where anyone may place as fast as they like (no
/// cooldown, no address limit).
pub fn unlimited(side: &'static str) -> [&'static str; 8] {
    [
        "--width",
        side,
        "--height",
        side,
        "--cooldown",
        "0",
        "--ip-rate",
        "0",
    ]
}

pub async fn spawn_app(args: &[&str]) -> TestApp {
    spawn_app_on(Backend::Embedded, args).await
}

/// Starts a server on `backend` with test-friendly defaults (small board, no cooldown
/// unless asked, fresh board versions) plus `args`.
pub async fn spawn_app_on(backend: Backend, args: &[&str]) -> TestApp {
    spawn_app_with(Env::new(backend), args).await
}

/// An embedded-store server on an existing data dir (a restart; [`TestApp::restart`] does
/// it on either backend).
#[allow(dead_code)]
pub async fn spawn_app_in(data_dir: tempfile::TempDir, args: &[&str]) -> TestApp {
    let env = Env {
        backend: Backend::Embedded,
        data_dir,
        redis_prefix: None,
        database_url: None,
    };
    spawn_app_with(env, args).await
}

/// Starts a server on `env`'s data.
pub async fn spawn_app_with(env: Env, args: &[&str]) -> TestApp {
    let mut all: Vec<String> = env.args();
    all.extend(
        [
            "--width",
            "16",
            "--height",
            "8",
            "--cooldown",
            "0",
            "--board-ttl",
            "0",
            "--tick-ms",
            "5",
            "--sync",
            "normal",
            "--ip-rate",
            "0",
            "--bench-token",
            BENCH_TOKEN,
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    all.extend(args.iter().map(|s| s.to_string()));
    let config = Config::from_args(all).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(rplace::run(listener, config, async move {
        let _ = rx.await;
    }));
    let app = TestApp {
        addr,
        client: client(),
        data_dir: env.data_dir,
        backend: env.backend,
        shared: (env.redis_prefix, env.database_url),
        shutdown: Some(tx),
        task,
    };
    app.wait_ready().await;
    app
}

/// One placement per address (no refill within a test), with this test as the proxy at
/// 127.0.0.1 behind another in 10.0.0.0/8: the per-address limit made visible.
pub const ONE_PER_ADDRESS_BEHIND_PROXIES: &[&str] = &[
    "--ip-rate",
    "1",
    "--ip-burst",
    "1",
    "--trusted-proxies",
    "127.0.0.1,10.0.0.0/8",
];

impl TestApp {
    /// PUTs pixel (x, 0) from a fresh identity with `X-Forwarded-For: xff`; the status and
    /// the error code.
    pub async fn put_forwarded(&self, xff: &str, x: u32) -> (u16, String) {
        let fresh = client();
        self.login(&fresh).await;
        let r = fresh
            .put(self.url("/api/pixel"))
            .header("x-forwarded-for", xff)
            .json(&serde_json::json!({"x": x, "y": 0, "color": 1}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        (status, body["error"].as_str().unwrap_or("").to_string())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Waits until `/readyz` answers 200 (generously: shared mode connects to two
    /// services, on a machine that may be busy compiling).
    pub async fn wait_ready(&self) {
        let url = self.url("/readyz");
        eventually(Duration::from_secs(30), "the server is ready", || async {
            assert!(
                !self.task.is_finished(),
                "the server stopped before it was ready"
            );
            match reqwest::get(&url).await {
                Ok(r) if r.status() == 200 => Some(()),
                _ => None,
            }
        })
        .await
    }

    /// Stops the server (graceful) and starts it again on the same data with `args`.
    pub async fn restart(self, args: &[&str]) -> TestApp {
        let (backend, shared) = (self.backend, self.shared.clone());
        let data_dir = self.stop().await;
        let env = Env {
            backend,
            data_dir,
            redis_prefix: shared.0,
            database_url: shared.1,
        };
        spawn_app_with(env, args).await
    }

    /// GETs `path` with `client` and parses the JSON answer.
    pub async fn get_json_as(&self, client: &reqwest::Client, path: &str) -> serde_json::Value {
        client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// GETs `path` with this app's client and parses the JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get_json_as(&self.client, path).await
    }

    /// Gets an identity cookie into `client`; returns the config.
    pub async fn login(&self, client: &reqwest::Client) -> serde_json::Value {
        self.get_json_as(client, "/api/config").await
    }

    pub async fn put_pixel(
        &self,
        client: &reqwest::Client,
        body: serde_json::Value,
    ) -> reqwest::Response {
        client
            .put(self.url("/api/pixel"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Places through the load generator's path as `user`, returning the seq.
    pub async fn bench_place(&self, user: u64, x: u32, y: u32, color: u8) -> u64 {
        let r = reqwest::Client::new()
            .put(self.url("/api/pixel"))
            .header("authorization", format!("Bearer {BENCH_TOKEN}"))
            .header("x-rplace-user", format!("{user:016x}"))
            .json(&serde_json::json!({"x": x, "y": y, "color": color}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json::<serde_json::Value>().await.unwrap()["seq"]
            .as_u64()
            .unwrap()
    }

    /// The Prometheus page.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The raw board and its seq.
    pub async fn board(&self) -> (u64, Vec<u8>) {
        let r = reqwest::get(self.url("/api/board")).await.unwrap();
        assert_eq!(r.status(), 200);
        let seq = r.headers()["x-board-seq"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (seq, r.bytes().await.unwrap().to_vec())
    }

    /// Another instance on this one's shared data (same Redis prefix and database, its own
    /// port and runtime state), as a fleet behind a load balancer runs. Shared mode only
    /// (on one Redis or the cluster).
    pub async fn sibling(&self, args: &[&str]) -> TestApp {
        assert!(
            self.backend.is_shared(),
            "only shared-mode apps have siblings"
        );
        let env = Env {
            backend: self.backend,
            data_dir: tempfile::tempdir().unwrap(),
            redis_prefix: self.shared.0.clone(),
            database_url: self.shared.1.clone(),
        };
        spawn_app_with(env, args).await
    }

    /// The board once it has every placement up to `seq`. In shared mode an instance
    /// learns of a placement from the Redis feed, so its board trails the acknowledgement
    /// by a moment (the embedded store's does not): a test that reads right after placing
    /// waits for it, with a deadline.
    pub async fn board_after(&self, seq: u64) -> (u64, Vec<u8>) {
        eventually(
            Duration::from_secs(10),
            "the board reaches the seq",
            || async {
                let b = self.board().await;
                (b.0 >= seq).then_some(b)
            },
        )
        .await
    }

    /// `GET /api/pixel` once its history has seq `seq` (in shared mode the history is
    /// written to PostgreSQL behind the acknowledgement).
    pub async fn pixel_after(&self, x: u32, y: u32, seq: u64) -> serde_json::Value {
        let path = format!("/api/pixel?x={x}&y={y}");
        eventually(
            Duration::from_secs(10),
            "the pixel's history has the seq",
            || async {
                let info = self.get_json(&path).await;
                (info["seq"].as_u64() >= Some(seq)).then_some(info)
            },
        )
        .await
    }

    pub async fn ws(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr))
            .await
            .unwrap();
        ws
    }

    /// Starts the graceful shutdown and waits for the server to finish.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("server stops within 15 s")
            .unwrap()
            .unwrap();
        self.data_dir
    }

    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Reads the 4-bit pixel at `i` of a packed board.
pub fn nibble(board: &[u8], i: usize) -> u8 {
    get_packed(board, Depth::Four, i)
}

/// A client that keeps an exact board the way docs/API.md says the page does: the
/// domain's sync state machine ([`rplace_domain::sync`]) over real HTTP.
pub struct SyncClient {
    /// The state machine and the board it keeps.
    pub sync: Sync<Board>,
}

impl SyncClient {
    /// Fetches the board (of a `width` × `len * 2 / width` canvas at 4 bits a pixel).
    pub async fn start(app: &TestApp, width: usize) -> Self {
        let (seq, board) = app.board().await;
        let height = board.len() * 2 / width;
        let dims = Dimensions::parse(width as u64, height as u64).unwrap();
        let mut sync = Sync::new(Board::new(dims, Depth::Four));
        sync.open_gate();
        sync.on_board(&board, Seq(seq)).unwrap();
        SyncClient { sync }
    }

    /// The board as bytes.
    pub fn board(&self) -> &[u8] {
        self.sync.target().as_bytes()
    }

    /// Newest seq applied.
    pub fn seq(&self) -> u64 {
        self.sync.current().unwrap().0
    }

    /// Performs every fetch the state machine asks for; `false` if a catch-up got 410.
    pub async fn settle(&mut self, app: &TestApp) -> bool {
        let mut gone = false;
        let mut fetches = 0;
        while let Some(f) = self.sync.next_fetch() {
            fetches += 1;
            assert!(fetches < 1000, "sync keeps asking: {f:?}");
            match f {
                Fetch::Board { .. } => {
                    let (seq, board) = app.board().await;
                    self.sync.on_board(&board, Seq(seq)).unwrap();
                }
                Fetch::Updates { since, retry } => {
                    if retry > 0 {
                        // The log may lag the live feed briefly (shared mode): back off.
                        tokio::time::sleep(Duration::from_millis(100 * u64::from(retry))).await;
                    }
                    let r = reqwest::get(app.url(&format!("/api/updates?since={since}")))
                        .await
                        .unwrap();
                    if r.status() == 410 {
                        gone = true;
                        self.sync.on_updates_gone();
                        continue;
                    }
                    assert_eq!(r.status(), 200);
                    let more = r.headers().get("x-updates-more").is_some();
                    let body = r.bytes().await.unwrap();
                    self.sync.on_updates(since, &body, more).unwrap();
                }
            }
        }
        !gone
    }

    /// Catches up over HTTP from the current seq, as after a reconnect; `false` on 410
    /// (the board was then fetched again).
    pub async fn catch_up(&mut self, app: &TestApp) -> bool {
        loop {
            let since = self.sync.current().unwrap();
            let r = reqwest::get(app.url(&format!("/api/updates?since={since}")))
                .await
                .unwrap();
            if r.status() == 410 {
                self.sync.on_updates_gone();
                self.settle(app).await;
                return false;
            }
            assert_eq!(r.status(), 200);
            let more = r.headers().get("x-updates-more").is_some();
            let body = r.bytes().await.unwrap();
            self.sync.on_updates(since, &body, more).unwrap();
            if !more {
                return self.settle(app).await;
            }
        }
    }

    /// A new websocket connection and its hello.
    pub fn on_hello(&mut self, seq: u64) {
        self.sync.on_connect();
        self.sync.on_hello(Seq(seq));
    }

    /// Applies one websocket frame, catching up first if it starts after a gap.
    pub async fn on_frame(&mut self, app: &TestApp, frame: &[u8]) {
        self.sync.on_frame(frame).unwrap();
        assert!(self.settle(app).await, "catch-up answered 410");
    }
}

/// Next message that is not a ping/pong nor a presence message (`{"type":"online"}`,
/// sent whenever the number of connections changes: `stats.rs` reads those with
/// [`next_any`]), with a timeout.
pub async fn next_msg(ws: &mut Ws, within: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_any(ws, left).await {
            Some(Message::Text(t)) if is_online(&t) => continue,
            other => return other,
        }
    }
}

fn is_online(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["type"] == "online")
}

/// Next message that is not a ping/pong, with a timeout.
pub async fn next_any(ws: &mut Ws, within: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(None) => return None,
            Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return Some(m),
        }
    }
}

/// Reads the hello message and returns its seq.
pub async fn hello(ws: &mut Ws) -> u64 {
    match next_msg(ws, Duration::from_secs(5)).await {
        Some(Message::Text(t)) => {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["type"], "hello");
            v["seq"].as_u64().unwrap()
        }
        other => panic!("expected hello, got {other:?}"),
    }
}

/// Runs `async fn name(backend: Backend)` as `name::embedded`, `name::shared` and
/// `name::cluster`: see the module docs. (`ignore_shared` ignores `cluster` too, so it is
/// never given with `ignore_cluster`.)
macro_rules! contract_test {
    ($name:ident $(, tokio($($rt:tt)*))? $(, ignore_shared = $why_shared:literal)? $(, ignore_cluster = $why_cluster:literal)? $(, ignore_embedded = $why_embedded:literal)? $(,)?) => {
        mod $name {
            #[tokio::test $(($($rt)*))?]
            $(#[ignore = $why_embedded])?
            async fn embedded() {
                super::$name($crate::helpers::Backend::Embedded).await
            }

            #[tokio::test $(($($rt)*))?]
            $(#[ignore = $why_shared])?
            async fn shared() {
                super::$name($crate::helpers::Backend::Shared).await
            }

            #[tokio::test $(($($rt)*))?]
            $(#[ignore = $why_shared])?
            $(#[ignore = $why_cluster])?
            async fn cluster() {
                super::$name($crate::helpers::Backend::Cluster).await
            }
        }
    };
    // All ignored: a test of what another branch provides (say which).
    ($name:ident, ignore = $why:literal $(,)?) => {
        mod $name {
            #[tokio::test]
            #[ignore = $why]
            async fn embedded() {
                super::$name($crate::helpers::Backend::Embedded).await
            }

            #[tokio::test]
            #[ignore = $why]
            async fn shared() {
                super::$name($crate::helpers::Backend::Shared).await
            }

            #[tokio::test]
            #[ignore = $why]
            async fn cluster() {
                super::$name($crate::helpers::Backend::Cluster).await
            }
        }
    };
}
