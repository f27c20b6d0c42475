//! `spawn_app()` and the clients the tests share.

use futures_util::StreamExt;
use rplace::Config;
use rplace_domain::board::{Depth, get_packed};
use rplace_domain::wire;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const BENCH_TOKEN: &str = "test-bench-token-0123456789";

/// A server running in this process.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// A client with a cookie jar: one identity.
    pub client: reqwest::Client,
    /// The data dir; kept alive as long as the app.
    pub data_dir: tempfile::TempDir,
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

/// Starts a server with test-friendly defaults (small board, no cooldown unless asked,
/// fresh board versions) plus `args`.
pub async fn spawn_app(args: &[&str]) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    spawn_app_in(data_dir, args).await
}

pub async fn spawn_app_in(data_dir: tempfile::TempDir, args: &[&str]) -> TestApp {
    let dir = data_dir.path().to_str().unwrap().to_string();
    let mut all: Vec<String> = [
        "--data-dir",
        &dir,
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
    .map(|s| s.to_string())
    .collect();
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
        data_dir,
        shutdown: Some(tx),
        task,
    };
    app.wait_ready().await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(self.url("/readyz")).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server at {} never became ready", self.addr);
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
    pub async fn bench_place(&self, user: u64, x: u16, y: u16, color: u8) -> u64 {
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

/// A client that keeps an exact board the way docs/API.md says the page does.
pub struct SyncClient {
    pub board: Vec<u8>,
    pub seq: u64,
    pub width: usize,
}

impl SyncClient {
    /// Fetches the board, then catches up from `/api/updates` and applies `pending` frames.
    pub async fn start(app: &TestApp, width: usize) -> Self {
        let (seq, board) = app.board().await;
        SyncClient { board, seq, width }
    }

    pub fn apply(&mut self, updates: &[wire::Update]) {
        for u in updates {
            if u.seq.0 <= self.seq {
                continue;
            }
            assert_eq!(
                u.seq.0,
                self.seq + 1,
                "gap: at {} got {}",
                self.seq,
                u.seq.0
            );
            let i = u.coord.y as usize * self.width + u.coord.x as usize;
            let b = &mut self.board[i / 2];
            *b = if i.is_multiple_of(2) {
                (*b & 0x0f) | (u.color.get() << 4)
            } else {
                (*b & 0xf0) | u.color.get()
            };
            self.seq = u.seq.0;
        }
    }

    /// Catches up over HTTP from the current seq; `false` on 410.
    pub async fn catch_up(&mut self, app: &TestApp) -> bool {
        loop {
            let r = reqwest::get(app.url(&format!("/api/updates?since={}", self.seq)))
                .await
                .unwrap();
            if r.status() == 410 {
                return false;
            }
            assert_eq!(r.status(), 200);
            let more = r.headers().get("x-updates-more").is_some();
            let body = r.bytes().await.unwrap();
            for frame in wire::split_frames(&body).unwrap() {
                self.apply(&wire::decode_frame(frame).unwrap());
            }
            if !more {
                return true;
            }
        }
    }

    /// Applies one websocket frame, catching up first if it starts after a gap.
    pub async fn on_frame(&mut self, app: &TestApp, frame: &[u8]) {
        let ups = wire::decode_frame(frame).unwrap();
        if ups.first().is_some_and(|u| u.seq.0 > self.seq + 1) {
            assert!(self.catch_up(app).await, "catch-up answered 410");
        }
        self.apply(&ups);
    }
}

/// Next message that is not a ping/pong, with a timeout.
pub async fn next_msg(ws: &mut Ws, within: Duration) -> Option<Message> {
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
