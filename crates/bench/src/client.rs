//! Websocket clients that keep in sync the way the page does (docs/API.md, "How a client
//! stays exact", implemented once in [`rplace_domain::sync`]), and record when every
//! update frame arrived.
//!
//! A [`ClientGroup`] runs many clients in this process. Clients do not keep the board's
//! pixels (15,000 copies of it would not fit); their sync target ([`Arrivals`]) keeps seqs,
//! which is all that completeness and latency need: the live stream must bring every seq
//! after it once, in order.

use crate::clock::now_ns;
use crate::procstat::{self, ProcSample, ProcUsage};
use crate::report::{ClientReport, GroupReport, HistogramData, new_histogram};
use anyhow::{Context, bail};
use futures_util::StreamExt;
use rplace_domain::placement::Seq;
use rplace_domain::sync::{Fetch, Run, Source, Sync, SyncError, Target};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

/// How clients get the board before the live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum BoardFetch {
    /// Every client fetches `/api/board`, as every page does.
    PerClient,
    /// One fetch for the whole group, after every client has its hello.
    Shared,
    /// No board: clients start from their hello seq (idle connections).
    None,
}

/// What a group of clients connects to and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupConfig {
    /// The server.
    pub addr: SocketAddr,
    /// Clients in this group.
    pub clients: u32,
    /// Id of the first client, so ids are unique across worker processes.
    pub first_id: u32,
    /// Source addresses 127.0.0.2 .. 127.0.0.(1 + sources), round robin, so that one
    /// address's ephemeral ports are never the limit; 0 lets the kernel choose.
    pub sources: u32,
    pub board: BoardFetch,
    /// Connections being opened at once (the server's accept backlog is finite).
    pub connect_concurrency: usize,
    /// HTTP requests (board, catch-up) in flight at once.
    pub http_concurrency: usize,
}

/// What the clients share.
struct Shared {
    cfg: GroupConfig,
    http: reqwest::Client,
    http_slots: Semaphore,
    connect_slots: Semaphore,
    stop: CancellationToken,
    /// Clients that have their hello (the shared board waits for all of them).
    hellos: AtomicU32,
    /// Clients synced for the first time.
    synced: AtomicU32,
    /// Each client's newest applied seq, for waiting until the stream has drained.
    seqs: Vec<AtomicU64>,
    /// Bytes and frames count only inside the measured window.
    measuring: AtomicBool,
    /// The shared board's seq, once fetched.
    shared_board: watch::Receiver<Option<u64>>,
    started: Instant,
}

/// Bytes of frames one client's sync may hold while it fetches.
const BUFFERED_FRAMES_MAX: usize = 64 * 1024;

/// What a client's sync keeps instead of pixels: when each seq arrived.
#[derive(Default)]
struct Arrivals {
    /// (first seq, count, arrival ns) of every run of new seqs received.
    runs: Vec<(u64, u32, u64)>,
    /// Newest seq recorded or loaded: a seq is recorded once, even if a later board
    /// is older than it.
    newest: u64,
    /// Arrival instant of the message being fed to the sync.
    at: u64,
}

impl Target for Arrivals {
    fn load(&mut self, _board: &[u8], seq: Seq) -> Result<(), SyncError> {
        self.newest = self.newest.max(seq.0);
        Ok(())
    }

    fn apply(&mut self, run: Run<'_>, _source: Source) -> Result<(), SyncError> {
        let (first, last) = (run.first().0, run.last().0);
        if last > self.newest {
            let from = first.max(self.newest + 1);
            self.runs.push((from, (last - from + 1) as u32, self.at));
            self.newest = last;
        }
        Ok(())
    }
}

/// A client's own record of the run.
struct ClientState {
    id: u32,
    /// The sync state machine, around the arrival times.
    sync: Sync<Arrivals>,
    reconnects: u32,
    errors: u32,
    bytes: u64,
    frames: u64,
    /// Time from the group's start to this client's first sync.
    sync_ms: u64,
}

impl ClientState {
    /// Newest seq applied (0 before the first board).
    fn current(&self) -> u64 {
        self.sync.current().map_or(0, |s| s.0)
    }
}

/// Many clients in this process.
pub struct ClientGroup {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<ClientState>>,
    board_task: Option<JoinHandle<()>>,
    measure_start: Option<ProcSample>,
    sync_s: f64,
}

/// Server-to-client websocket header bytes for a payload of `len` (unmasked).
fn ws_header_len(len: usize) -> u64 {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

impl ClientGroup {
    /// Starts connecting every client; see [`ClientGroup::wait_synced`].
    pub fn start(cfg: GroupConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_proxy()
            .pool_max_idle_per_host(cfg.http_concurrency)
            .timeout(Duration::from_secs(60))
            .build()?;
        let (board_tx, board_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            http_slots: Semaphore::new(cfg.http_concurrency.max(1)),
            connect_slots: Semaphore::new(cfg.connect_concurrency.max(1)),
            stop: CancellationToken::new(),
            hellos: AtomicU32::new(0),
            synced: AtomicU32::new(0),
            seqs: (0..cfg.clients).map(|_| AtomicU64::new(0)).collect(),
            measuring: AtomicBool::new(false),
            shared_board: board_rx,
            started: Instant::now(),
            http,
            cfg,
        });
        let board_task = (shared.cfg.board == BoardFetch::Shared).then(|| {
            let sh = shared.clone();
            tokio::spawn(async move {
                while sh.hellos.load(Ordering::Relaxed) < sh.cfg.clients {
                    if sh.stop.is_cancelled() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                loop {
                    match fetch_board(&sh).await {
                        Ok(seq) => {
                            let _ = board_tx.send(Some(seq));
                            return;
                        }
                        Err(e) => {
                            eprintln!("shared board fetch failed: {e:#}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            })
        });
        let tasks = (0..shared.cfg.clients)
            .map(|i| tokio::spawn(run_client(shared.clone(), i)))
            .collect();
        Ok(ClientGroup {
            shared,
            tasks,
            board_task,
            measure_start: None,
            sync_s: 0.0,
        })
    }

    /// Clients synced so far.
    pub fn synced(&self) -> u32 {
        self.shared.synced.load(Ordering::Relaxed)
    }

    /// Waits until every client is synced; returns the seconds since the start.
    pub async fn wait_synced(&mut self, within: Duration) -> anyhow::Result<f64> {
        let deadline = Instant::now() + within;
        while self.synced() < self.shared.cfg.clients {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} clients synced within {:?}",
                    self.synced(),
                    self.shared.cfg.clients,
                    within
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.sync_s = self.shared.started.elapsed().as_secs_f64();
        Ok(self.sync_s)
    }

    /// Starts counting bytes and frames, and this process's CPU.
    pub fn begin_measure(&mut self) {
        self.measure_start = Some(procstat::own());
        self.shared.measuring.store(true, Ordering::Relaxed);
    }

    /// Waits until every client has applied `seq`; `false` if `within` ran out first.
    pub async fn wait_seq(&self, seq: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self
                .shared
                .seqs
                .iter()
                .all(|s| s.load(Ordering::Relaxed) >= seq)
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every client and scores it against the acknowledged placements.
    pub async fn finish(self, acks: &Acks) -> GroupReport {
        let end = procstat::own();
        self.shared.stop.cancel();
        if let Some(t) = self.board_task {
            t.abort();
        }
        let mut states = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            if let Ok(s) = t.await {
                states.push(s);
            }
        }
        let mut all = new_histogram();
        let mut sent_all = new_histogram();
        let mut one = new_histogram();
        let mut sync = new_histogram();
        let acked = acks.count();
        let clients = states
            .iter()
            .map(|st| {
                one.reset();
                let mut delivered = 0;
                let stats = st.sync.stats();
                for &(first, n, at) in &st.sync.target().runs {
                    for seq in first..first + n as u64 {
                        if let Some(ack) = acks.at(seq) {
                            delivered += 1;
                            let us = at.saturating_sub(ack) / 1000;
                            one.saturating_record(us.max(1));
                            if let Some(sent) = acks.sent(seq) {
                                let us = at.saturating_sub(sent) / 1000;
                                sent_all.saturating_record(us.max(1));
                            }
                        }
                    }
                }
                all.add(&one).expect("same histogram bounds");
                sync.saturating_record(st.sync_ms.max(1));
                let ms = |q: f64| {
                    if one.is_empty() {
                        0.0
                    } else {
                        one.value_at_quantile(q) as f64 / 1000.0
                    }
                };
                ClientReport {
                    id: st.id,
                    delivered,
                    missing: acked.saturating_sub(delivered),
                    duplicates: stats.duplicates,
                    via_catch_up: stats.caught_up,
                    gaps: stats.gaps,
                    resyncs: (stats.resyncs + stats.gone) as u32,
                    reconnects: st.reconnects,
                    errors: st.errors,
                    bytes: st.bytes,
                    frames: st.frames,
                    p50_ms: ms(0.5),
                    p99_ms: ms(0.99),
                    max_ms: if one.is_empty() {
                        0.0
                    } else {
                        one.max() as f64 / 1000.0
                    },
                }
            })
            .collect();
        GroupReport {
            clients,
            latency: HistogramData::from_histogram(&all),
            send_latency: HistogramData::from_histogram(&sent_all),
            sync_s: self.sync_s,
            sync_ms: HistogramData::from_histogram(&sync),
            usage: self
                .measure_start
                .map(|a| ProcUsage::between(std::process::id(), a, end)),
        }
    }
}

/// The ack instant of every acknowledged placement, by seq.
#[derive(Debug, Default)]
pub struct Acks {
    /// Seq of `at[0]`.
    pub first_seq: u64,
    /// Ack instant (ns since the epoch) of seq `first_seq + i`; 0 when not acked.
    pub at: Vec<u64>,
    /// Instant the request of seq `first_seq + i` was written; 0 when unknown.
    pub sent_at: Vec<u64>,
}

impl Acks {
    pub fn from_pairs(pairs: &[(u64, u64)]) -> Self {
        let Some(first) = pairs.iter().map(|p| p.0).min() else {
            return Acks::default();
        };
        let last = pairs.iter().map(|p| p.0).max().unwrap_or(first);
        let mut at = vec![0; (last - first + 1) as usize];
        for &(seq, t) in pairs {
            at[(seq - first) as usize] = t.max(1);
        }
        Acks {
            first_seq: first,
            sent_at: vec![0; at.len()],
            at,
        }
    }

    /// Adds when each placement was sent, as (seq, ns since the epoch).
    pub fn with_sent(mut self, pairs: &[(u64, u64)]) -> Self {
        for &(seq, t) in pairs {
            if let Some(i) = seq.checked_sub(self.first_seq)
                && let Some(slot) = self.sent_at.get_mut(i as usize)
            {
                *slot = t.max(1);
            }
        }
        self
    }

    /// When the request of an acked placement was written.
    pub fn sent(&self, seq: u64) -> Option<u64> {
        let i = seq.checked_sub(self.first_seq)? as usize;
        self.sent_at.get(i).copied().filter(|&t| t != 0)
    }

    pub fn at(&self, seq: u64) -> Option<u64> {
        let i = seq.checked_sub(self.first_seq)? as usize;
        self.at.get(i).copied().filter(|&t| t != 0)
    }

    pub fn count(&self) -> u64 {
        self.at.iter().filter(|&&t| t != 0).count() as u64
    }

    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.at.len().saturating_sub(1) as u64
    }

    /// Little-endian: first seq, then one ack instant per seq, then one send instant per
    /// seq.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * (2 * self.at.len() + 1));
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        for t in self.at.iter().chain(&self.sent_at) {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> anyhow::Result<Self> {
        if b.len() < 8 || !b.len().is_multiple_of(8) || !(b.len() / 8 - 1).is_multiple_of(2) {
            bail!("acks file of {} bytes is not a list of u64", b.len());
        }
        let mut words = b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
        let first_seq = words.next().unwrap_or(0);
        let mut at: Vec<u64> = words.collect();
        let sent_at = at.split_off(at.len() / 2);
        Ok(Acks {
            first_seq,
            at,
            sent_at,
        })
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

fn source_ip(cfg: &GroupConfig, idx: u32) -> Option<IpAddr> {
    if cfg.sources == 0 {
        return None;
    }
    let n = 2 + (cfg.first_id + idx) % cfg.sources;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, (n >> 8) as u8, n as u8)))
}

/// Opens the websocket from this client's source address and reads the hello.
async fn connect(sh: &Shared, idx: u32) -> anyhow::Result<(Ws, u64)> {
    let _slot = sh.connect_slots.acquire().await?;
    let addr = sh.cfg.addr;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source_ip(&sh.cfg, idx).filter(|_| addr.is_ipv4()) {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = socket.connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    // The server's frames are small; a 128 KiB read buffer a client would cost 2 GB at 15k.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}/ws"),
        stream,
        Some(config),
    )
    .await
    .context("websocket handshake")?;
    let hello = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t)?;
                    if v["type"] == "hello" {
                        return v["seq"].as_u64().context("hello without seq");
                    }
                    bail!("expected hello, got {t}");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => bail!("expected hello, got {other:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before hello"),
            }
        }
    })
    .await
    .context("no hello within 60 s")??;
    Ok((ws, hello))
}

/// `GET /api/board` as a page would (compressed if the server offers it); returns its seq.
async fn fetch_board(sh: &Shared) -> anyhow::Result<u64> {
    let _slot = sh.http_slots.acquire().await?;
    let r = sh
        .http
        .get(format!("http://{}/api/board", sh.cfg.addr))
        .header("accept-encoding", "zstd, br, gzip")
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("board answered {}", r.status());
    }
    let seq = r
        .headers()
        .get("x-board-seq")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("board without X-Board-Seq")?;
    r.bytes().await?;
    Ok(seq)
}

/// Performs the fetches the sync asks for (board, catch-up) until it asks for nothing.
async fn drive(sh: &Shared, st: &mut ClientState) -> anyhow::Result<()> {
    // A bound, so that a server that keeps answering uselessly cannot spin a client.
    for _ in 0..1000 {
        match st.sync.next_fetch() {
            None => return Ok(()),
            Some(Fetch::Board { retry, .. }) => {
                backoff(retry).await;
                let seq = fetch_board(sh).await?;
                st.sync.on_board(&[], Seq(seq))?;
            }
            Some(Fetch::Updates { since, retry }) => {
                backoff(retry).await;
                let _slot = sh.http_slots.acquire().await?;
                let r = sh
                    .http
                    .get(format!(
                        "http://{}/api/updates?since={}",
                        sh.cfg.addr, since.0
                    ))
                    .send()
                    .await?;
                if r.status() == 410 {
                    st.sync.on_updates_gone();
                    continue;
                }
                if !r.status().is_success() {
                    bail!("updates answered {}", r.status());
                }
                let more = r.headers().contains_key("x-updates-more");
                let body = r.bytes().await?;
                st.sync.target_mut().at = now_ns();
                st.sync.on_updates(since, &body, more)?;
            }
        }
    }
    bail!("the sync kept asking for fetches")
}

/// The pause the sync asks for before a retried fetch.
async fn backoff(retry: u32) {
    if retry > 0 {
        tokio::time::sleep(Duration::from_millis(100 * u64::from(retry))).await;
    }
}

async fn run_client(sh: Arc<Shared>, idx: u32) -> ClientState {
    let mut st = ClientState {
        id: sh.cfg.first_id + idx,
        // Fetches are awaited before the next message is read, so at most a frame or two
        // wait at a time; the bound only keeps 15,000 clients' worst case small.
        sync: Sync::new(Arrivals::default()).with_max_buffered(BUFFERED_FRAMES_MAX),
        reconnects: 0,
        errors: 0,
        bytes: 0,
        frames: 0,
        sync_ms: 0,
    };
    let mut synced = false;
    let mut said_hello = false;
    let mut backoff = Duration::from_millis(50);
    'connection: while !sh.stop.is_cancelled() {
        let connected = tokio::select! {
            _ = sh.stop.cancelled() => break,
            c = connect(&sh, idx) => c,
        };
        let (mut ws, hello) = match connected {
            Ok(c) => c,
            Err(e) => {
                st.errors += 1;
                if st.errors <= 3 {
                    eprintln!("client {}: {e:#}", st.id);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        st.sync.on_connect();
        st.sync.on_hello(Seq(hello));
        if !said_hello {
            said_hello = true;
            sh.hellos.fetch_add(1, Ordering::Relaxed);
        }
        if !synced {
            let board = match sh.cfg.board {
                BoardFetch::PerClient => fetch_board(&sh).await,
                BoardFetch::Shared => {
                    let mut rx = sh.shared_board.clone();
                    tokio::select! {
                        _ = sh.stop.cancelled() => break,
                        r = rx.wait_for(|s| s.is_some()) => r.map(|s| s.unwrap_or(0)).map_err(Into::into),
                    }
                }
                BoardFetch::None => Ok(hello),
            };
            match board {
                Ok(seq) => {
                    st.sync
                        .on_board(&[], Seq(seq))
                        .expect("seq-only boards always load");
                }
                Err(e) => {
                    st.errors += 1;
                    eprintln!("client {}: board: {e:#}", st.id);
                    continue;
                }
            }
            synced = true;
            st.sync_ms = sh.started.elapsed().as_millis() as u64;
            sh.seqs[idx as usize].store(st.current(), Ordering::Relaxed);
            sh.synced.fetch_add(1, Ordering::Relaxed);
        }
        // After a reconnect: catch up to the hello from the last seq applied.
        if let Err(e) = drive(&sh, &mut st).await {
            st.errors += 1;
            eprintln!("client {}: {e:#}", st.id);
        }
        loop {
            let msg = tokio::select! {
                _ = sh.stop.cancelled() => break 'connection,
                m = ws.next() => m,
            };
            match msg {
                Some(Ok(Message::Binary(data))) => {
                    let at = now_ns();
                    if sh.measuring.load(Ordering::Relaxed) {
                        st.bytes += data.len() as u64 + ws_header_len(data.len());
                        st.frames += 1;
                    }
                    st.sync.target_mut().at = at;
                    let fed = st.sync.on_frame(&data).map_err(anyhow::Error::from);
                    if let Err(e) = match fed {
                        Ok(()) => drive(&sh, &mut st).await,
                        Err(e) => Err(e),
                    } {
                        st.errors += 1;
                        eprintln!("client {}: {e:#}", st.id);
                    }
                    sh.seqs[idx as usize].store(st.current(), Ordering::Relaxed);
                }
                Some(Ok(Message::Text(t))) => {
                    if t.contains("\"resync\"") {
                        st.sync.on_resync();
                        if drive(&sh, &mut st).await.is_err() {
                            st.errors += 1;
                        }
                        sh.seqs[idx as usize].store(st.current(), Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if !sh.stop.is_cancelled() {
                        st.reconnects += 1;
                        if st.reconnects <= 3 {
                            eprintln!("client {}: closed: {frame:?}", st.id);
                        }
                    }
                    continue 'connection;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    st.reconnects += 1;
                    st.errors += 1;
                    if st.errors <= 3 {
                        eprintln!("client {}: websocket: {e}", st.id);
                    }
                    continue 'connection;
                }
                None => {
                    st.reconnects += 1;
                    continue 'connection;
                }
            }
        }
    }
    st
}
