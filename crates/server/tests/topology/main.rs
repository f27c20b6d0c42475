//! The seed's architecture, for real: redis-server, PostgreSQL, three rplace processes,
//! HAProxy and Varnish, all started by the harness on free ports. No mocks.
//!
//! The tests about the fleet and about losing an instance or Redis run twice: on one
//! `redis-server` and, as `..._on_a_cluster`, on a three-master Redis Cluster
//! ([`RedisKind::Cluster`]), where "Redis is lost" is every master flushed, one master
//! restarted empty, then all of them.

use futures_util::StreamExt;
use rplace_domain::board::{Board, Depth, Dimensions, get_packed, set_packed};
use rplace_domain::placement::Seq;
use rplace_domain::sync::{Fetch, Sync};
use rplace_domain::wire;
use rplace_testsupport::Postgres;
use rplace_testsupport::topology::{Haproxy, Instance, RedisKind, SharedRedis, Varnish};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

mod scale_down;

const TOKEN: &str = "topology-bench-token-0123456789";

struct Topology {
    redis: SharedRedis,
    nodes: Vec<Instance>,
    haproxy: Haproxy,
    varnish: Option<Varnish>,
}

fn start(extra: &[&str], with_varnish: bool) -> Topology {
    start_with(RedisKind::Single, extra, with_varnish, false)
}

/// On a Redis of `kind` of its own. With `proxy_protocol`, HAProxy sends PROXY v2 headers
/// (`send-proxy-v2`) and the instances read them (`--proxy-protocol`).
fn start_with(
    kind: RedisKind,
    extra: &[&str],
    with_varnish: bool,
    proxy_protocol: bool,
) -> Topology {
    let redis = SharedRedis::start(kind);
    let pg = Postgres::shared();
    let db_url = pg.create_database();
    let key = "ab".repeat(64);
    let mut args: Vec<String> = redis.args();
    args.extend([
        "--database-url".into(),
        db_url,
        "--cookie-key".into(),
        key,
        "--width".into(),
        "32".into(),
        "--height".into(),
        "32".into(),
        "--ip-rate".into(),
        "0".into(),
        "--tick-ms".into(),
        "10".into(),
        "--bench-token".into(),
        TOKEN.into(),
        "--sync".into(),
        "normal".into(),
        "--trusted-proxies".into(),
        "127.0.0.1".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    if proxy_protocol {
        args.push("--proxy-protocol".into());
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_rplace"));
    let nodes: Vec<Instance> = (0..3).map(|_| Instance::start(bin, &args)).collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let haproxy = Haproxy::start_with(&ports, proxy_protocol);
    let varnish = with_varnish.then(|| Varnish::start(haproxy.port));
    Topology {
        redis,
        nodes,
        haproxy,
        varnish,
    }
}

fn url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

async fn bench_put(
    http: &reqwest::Client,
    port: u16,
    user: u64,
    x: u32,
    y: u32,
    color: u8,
) -> reqwest::Response {
    http.put(url(port, "/api/pixel"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("x-rplace-user", format!("{user:016x}"))
        .json(&json!({"x": x, "y": y, "color": color}))
        .send()
        .await
        .unwrap()
}

/// The board and its seq, or the status that answered instead (a 503 while the store
/// rebuilds).
async fn try_board(port: u16) -> Result<(u64, Vec<u8>), u16> {
    let r = reqwest::get(url(port, "/api/board"))
        .await
        .map_err(|_| 0u16)?;
    if r.status() != 200 {
        return Err(r.status().as_u16());
    }
    let seq = r.headers()["x-board-seq"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    Ok((seq, r.bytes().await.map_err(|_| 0u16)?.to_vec()))
}

async fn board(port: u16) -> (u64, Vec<u8>) {
    let r = reqwest::get(url(port, "/api/board")).await.unwrap();
    assert_eq!(r.status(), 200);
    let seq = r.headers()["x-board-seq"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (seq, r.bytes().await.unwrap().to_vec())
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(port: u16) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
        .await
        .unwrap()
        .0
}

async fn next_updates(ws: &mut Ws, within: Duration) -> Option<Vec<wire::Update>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Binary(f)))) => return Some(wire::decode_frame(&f).unwrap()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn metric(port: u16, name: &str) -> f64 {
    let text = reqwest::blocking_get_text(url(port, "/metrics"));
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

mod reqwest {
    pub use ::reqwest::*;
    /// A GET from sync code in an async test, without a second runtime.
    pub fn blocking_get_text(url: String) -> String {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
        })
        .join()
        .unwrap()
    }
}

/// Runs `async fn name(kind: RedisKind)` as `name::single` (one redis-server) and
/// `name::cluster` (a three-master Redis Cluster), each on a multi-threaded runtime.
macro_rules! on_each_redis {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn single() {
                super::$name(rplace_testsupport::RedisKind::Single).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                super::$name(rplace_testsupport::RedisKind::Cluster).await
            }
        }
    };
}
pub(crate) use on_each_redis;

on_each_redis!(a_placement_through_haproxy_reaches_clients_of_every_instance);
async fn a_placement_through_haproxy_reaches_clients_of_every_instance(kind: RedisKind) {
    let t = start_with(kind, &["--board-ttl", "0"], false, false);
    let mut clients = Vec::new();
    for n in &t.nodes {
        clients.push(ws(n.port).await);
    }
    let http = reqwest::Client::new();
    let r = bench_put(&http, t.haproxy.port, 1, 5, 6, 7).await;
    assert_eq!(r.status(), 200);
    let seq = r.json::<serde_json::Value>().await.unwrap()["seq"]
        .as_u64()
        .unwrap();
    for (i, c) in clients.iter_mut().enumerate() {
        let ups = next_updates(c, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("instance {i} sent nothing"));
        assert_eq!(ups[0].seq.0, seq);
        assert_eq!(
            (ups[0].coord.x(), ups[0].coord.y(), ups[0].color.get()),
            (5, 6, 7)
        );
    }
    // Every instance serves the same board from its own memory.
    for n in &t.nodes {
        let (s, b) = board(n.port).await;
        assert_eq!(s, seq);
        assert_eq!(b[(6 * 32 + 5) / 2] & 0x0f, 7);
    }
}

on_each_redis!(one_users_cooldown_holds_across_instances);
async fn one_users_cooldown_holds_across_instances(kind: RedisKind) {
    // Four tiles wide: each placement on a tile of its own, so that on a cluster the
    // user's keys and the tiles are in different slots.
    let t = start_with(
        kind,
        &["--cooldown", "60", "--width", "1024", "--height", "32"],
        false,
        false,
    );
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    c.get(url(t.haproxy.port, "/api/config"))
        .send()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for round in 0..4 {
        for n in &t.nodes {
            let c = c.clone();
            let port = n.port;
            tasks.push(tokio::spawn(async move {
                c.put(url(port, "/api/pixel"))
                    .json(&json!({"x": round * 256, "y": 0, "color": 3}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varnish_absorbs_board_reads_within_the_ttl() {
    let t = start(&["--board-ttl", "3"], true);
    let varnish = t.varnish.as_ref().unwrap().port;
    let before: f64 = t
        .nodes
        .iter()
        .map(|n| metric(n.port, "rplace_board_requests_total"))
        .sum();
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let r = http
            .get(url(varnish, "/api/board"))
            .header("cookie", "rplace_id=whatever")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 32 * 32 / 2);
    }
    let after: f64 = t
        .nodes
        .iter()
        .map(|n| metric(n.port, "rplace_board_requests_total"))
        .sum();
    assert!(
        after - before <= 2.0,
        "200 board GETs through Varnish reached the instances {} times",
        after - before
    );
    // The page and websockets work through the whole chain.
    let page = http.get(url(varnish, "/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let mut c = ws(varnish).await;
    let r = bench_put(&http, varnish, 9, 1, 1, 2).await;
    assert_eq!(r.status(), 200);
    assert!(next_updates(&mut c, Duration::from_secs(5)).await.is_some());
}

/// Keeps an exact board through HAProxy with the domain's sync state machine, reconnecting
/// when its instance dies.
struct Follower {
    /// The state machine and the board it keeps.
    sync: Sync<Board>,
    /// Connections that ended under it.
    reconnects: u32,
    /// Counts followers that got their first hello, so the test knows all are live.
    hellos: Arc<AtomicUsize>,
}

impl Follower {
    fn new(hellos: Arc<AtomicUsize>) -> Self {
        let dims = Dimensions::parse(32, 32).unwrap();
        Follower {
            sync: Sync::new(Board::new(dims, Depth::Four)),
            reconnects: 0,
            hellos,
        }
    }

    fn seq(&self) -> u64 {
        self.sync.current().map_or(0, |s| s.0)
    }

    fn board(&self) -> &[u8] {
        self.sync.target().as_bytes()
    }

    /// Performs what the state machine asks for; an instance that fails is retried (the
    /// load balancer moves us to another one).
    async fn settle(&mut self, port: u16) {
        while let Some(f) = self.sync.next_fetch() {
            let ok = match f {
                Fetch::Board { retry, .. } => {
                    backoff(retry).await;
                    match reqwest::get(url(port, "/api/board")).await {
                        Ok(r) if r.status() == 200 => {
                            let seq = r.headers()["x-board-seq"].to_str().unwrap().parse();
                            match (seq, r.bytes().await) {
                                (Ok(seq), Ok(b)) => {
                                    self.sync.on_board(&b, Seq(seq)).unwrap();
                                    true
                                }
                                _ => false,
                            }
                        }
                        _ => false,
                    }
                }
                Fetch::Updates { since, retry } => {
                    backoff(retry).await;
                    match reqwest::get(url(port, &format!("/api/updates?since={since}"))).await {
                        Ok(r) if r.status() == 410 => {
                            self.sync.on_updates_gone();
                            true
                        }
                        Ok(r) if r.status() == 200 => {
                            let more = r.headers().get("x-updates-more").is_some();
                            match r.bytes().await {
                                Ok(b) => {
                                    self.sync.on_updates(since, &b, more).unwrap();
                                    true
                                }
                                Err(_) => false,
                            }
                        }
                        _ => false,
                    }
                }
            };
            if !ok {
                // Not a wait for a condition: a retry pause while an instance is down.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Follows until `stop_at` is applied.
    async fn run(mut self, port: u16, stop_at: tokio::sync::watch::Receiver<u64>) -> Follower {
        let mut first = true;
        loop {
            let socket =
                tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await;
            let Ok((mut socket, _)) = socket else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            self.sync.on_connect();
            loop {
                let target = *stop_at.borrow();
                if target > 0 && self.seq() >= target && self.sync.is_settled() {
                    return self;
                }
                let msg = tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
                match msg {
                    Ok(Some(Ok(Message::Binary(f)))) => self.sync.on_frame(&f).unwrap(),
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                        match v["type"].as_str() {
                            Some("hello") => {
                                self.sync.on_hello(Seq(v["seq"].as_u64().unwrap()));
                                if std::mem::take(&mut first) {
                                    self.hellos.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Some("resync") => self.sync.on_resync(),
                            _ => {}
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    Err(_) => {
                        // Quiet: when told where to stop, make sure nothing is missing.
                        if target > 0 {
                            self.sync.on_hello(Seq(target));
                        }
                    }
                    Ok(Some(Err(_))) | Ok(None) => {
                        self.reconnects += 1;
                        self.settle(port).await;
                        break;
                    }
                }
                self.settle(port).await;
            }
        }
    }
}

/// Waits `retry` × 100 ms before a fetch the sync asks to retry.
async fn backoff(retry: u32) {
    if retry > 0 {
        tokio::time::sleep(Duration::from_millis(100 * u64::from(retry))).await;
    }
}

on_each_redis!(kill_9_of_an_instance_loses_nothing_and_clients_recover);
async fn kill_9_of_an_instance_loses_nothing_and_clients_recover(kind: RedisKind) {
    let mut t = start_with(kind, &["--board-ttl", "0"], false, false);
    let lb = t.haproxy.port;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(0u64);
    let hellos = Arc::new(AtomicUsize::new(0));
    let followers: Vec<_> = (0..6)
        .map(|_| tokio::spawn(Follower::new(hellos.clone()).run(lb, stop_rx.clone())))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hellos.load(Ordering::Relaxed) < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "followers never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let http = reqwest::Client::new();
    let mut acked = Vec::new();
    for i in 0..600u64 {
        if i == 200 {
            t.nodes[1].kill9();
        }
        let (x, y, color) = ((i % 32) as u32, (i / 32 % 32) as u32, (i % 15 + 1) as u8);
        // Through HAProxy: a request that hit the dead instance fails and is retried.
        for _attempt in 0..20 {
            match http
                .put(url(lb, "/api/pixel"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("x-rplace-user", format!("{:016x}", i + 1))
                .json(&json!({"x": x, "y": y, "color": color}))
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => {
                    let v: serde_json::Value = r.json().await.unwrap();
                    acked.push((v["seq"].as_u64().unwrap(), x, y, color));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    assert!(
        acked.len() >= 590,
        "only {} of 600 placements were acknowledged",
        acked.len()
    );
    let (final_seq, final_board) = board(t.nodes[0].port).await;
    let max_acked = acked.iter().map(|a| a.0).max().unwrap();
    assert!(final_seq >= max_acked);
    stop_tx.send(final_seq).unwrap();
    let mut reconnects = 0;
    for f in followers {
        let f = tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .expect("follower finished")
            .unwrap();
        assert_eq!(f.seq(), final_seq);
        assert_eq!(
            f.board(),
            &final_board[..],
            "a follower's board differs from the server's"
        );
        reconnects += f.reconnects;
    }
    assert!(reconnects > 0, "no follower was on the killed instance");
    // No acknowledged placement is missing. Each placement has a pixel of its own, and a
    // retry repeats the same color, so every acknowledged color must be on the board.
    for (s, x, y, c) in &acked {
        let i = *y as usize * 32 + *x as usize;
        let got = get_packed(&final_board, Depth::Four, i);
        assert_eq!(got, *c, "acknowledged seq {s} at ({x},{y}) is missing");
    }
    let _ = &t.redis;
}

/// A way of losing what Redis holds.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// `FLUSHALL` (on every master of a cluster): keys gone, servers up.
    FlushAll,
    /// One master of a cluster killed and started again empty: the keys in its third of
    /// the slots are gone, the others kept.
    RestartMaster(usize),
    /// Every server killed and started again empty.
    RestartAll,
}

on_each_redis!(redis_loss_rebuilds_board_and_seq_from_postgres);
/// After each loss of Redis state (one Redis: flushed, then restarted; a cluster: every
/// master flushed, each master in turn restarted empty, then all of them) placements go on
/// with the next seq, every instance converges on the board, and an instance started again
/// (which reads the board from the store) has every pixel: the rebuild from PostgreSQL
/// covers each tile, whichever master held it.
async fn redis_loss_rebuilds_board_and_seq_from_postgres(kind: RedisKind) {
    // Six tiles of 256², so that a cluster spreads them over its masters.
    const W: u32 = 768;
    const H: u32 = 512;
    let mut t = start_with(
        kind,
        &["--board-ttl", "0", "--width", "768", "--height", "512"],
        false,
        false,
    );
    let http = reqwest::Client::new();
    let lb = t.haproxy.port;
    // Ten pixels in each tile.
    for i in 0..60u32 {
        let (tile, k) = (i % 6, i / 6);
        let (x, y) = (tile % 3 * 256 + k * 7, tile / 3 * 256 + k * 11);
        let r = bench_put(&http, lb, u64::from(i) + 1, x, y, (i % 15 + 1) as u8).await;
        assert_eq!(r.status(), 200);
    }
    let (mut seq, mut expected) = board(t.nodes[0].port).await;
    assert_eq!(seq, 60);
    assert_eq!(expected.len(), (W * H / 2) as usize);

    let losses: &[Loss] = match kind {
        RedisKind::Single => &[Loss::FlushAll, Loss::RestartAll],
        RedisKind::Cluster => &[
            Loss::FlushAll,
            Loss::RestartMaster(0),
            Loss::RestartMaster(1),
            Loss::RestartMaster(2),
            Loss::RestartAll,
        ],
    };
    for (k, &loss) in losses.iter().enumerate() {
        let k = k as u32;
        tokio::task::block_in_place(|| match loss {
            Loss::FlushAll => t.redis.flush_all(),
            Loss::RestartMaster(i) => match &mut t.redis {
                SharedRedis::Cluster(c) => c.restart_node(i),
                SharedRedis::Single(_) => unreachable!("one redis-server has no masters"),
            },
            Loss::RestartAll => t.redis.restart_all(),
        });
        // Placements go on, each time in another tile: the first may wait for the rebuild.
        let (x, y, color) = (k % 3 * 256 + 250, k / 3 % 2 * 256 + 250, (k + 1) as u8);
        let mut placed = None;
        for _ in 0..100 {
            let r = bench_put(&http, lb, 999, x, y, color).await;
            if r.status() == 200 {
                placed = r.json::<serde_json::Value>().await.unwrap()["seq"].as_u64();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seq += 1;
        assert_eq!(
            placed,
            Some(seq),
            "{loss:?}: placements did not resume at the next seq\n{}",
            t.redis.logs()
        );
        set_packed(&mut expected, Depth::Four, (y * W + x) as usize, color);
        if let SharedRedis::Single(r) = &t.redis {
            // One Redis's keys are known (a cluster's are the store's business).
            let raw = r.cli(&["GET", "rplace:seq"]);
            assert_eq!(raw.trim(), seq.to_string(), "{loss:?}: seq in Redis");
        }
        // An instance started now reads the board from the rebuilt store.
        tokio::task::block_in_place(|| t.nodes[2].restart());
        // Every instance converges on the rebuilt board (it may answer 503 meanwhile).
        for n in &t.nodes {
            let (mut got, mut last) = ((0, Vec::new()), Ok(()));
            for _ in 0..100 {
                match try_board(n.port).await {
                    Ok(b) => {
                        got = b;
                        last = Ok(());
                        if got.0 == seq && got.1 == expected {
                            break;
                        }
                    }
                    Err(status) => last = Err(status),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let wrong = (0..(W * H) as usize)
                .filter(|&i| {
                    got.1.len() != expected.len()
                        || get_packed(&got.1, Depth::Four, i)
                            != get_packed(&expected, Depth::Four, i)
                })
                .count();
            assert!(
                got.0 == seq && wrong == 0,
                "{loss:?}: instance {} did not converge on the rebuilt board \
                 (seq {} of {seq}, {wrong} pixels differ; last answer {last:?})",
                n.port,
                got.0
            );
        }
    }
}
