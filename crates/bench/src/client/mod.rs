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

mod session;
mod tiles;

use session::*;

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
    /// The canvas's size (for choosing views).
    #[serde(default)]
    pub width: u64,
    #[serde(default)]
    pub height: u64,
    /// Each client views a random rectangle of this many tiles (w, h) and receives only
    /// their frames; `None`: the whole canvas, as before.
    #[serde(default)]
    pub view: Option<(u32, u32)>,
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
    /// When any view client last received a frame (ns since the epoch): view clients
    /// cannot say which seq they are current to, so the end waits for quiet instead.
    last_arrival: AtomicU64,
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
    /// A view client's record (then `sync` is unused).
    view: Option<tiles::ViewState>,
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
            last_arrival: AtomicU64::new(0),
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
            .map(|i| match shared.cfg.view {
                Some(view) => tokio::spawn(tiles::run_view_client(shared.clone(), i, view)),
                None => tokio::spawn(run_client(shared.clone(), i)),
            })
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
    /// View clients cannot tell: for them it waits until no frame came for 500 ms.
    pub async fn wait_seq(&self, seq: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        if self.shared.cfg.view.is_some() {
            let quiet = Duration::from_millis(500).as_nanos() as u64;
            loop {
                let last = self.shared.last_arrival.load(Ordering::Relaxed);
                if now_ns().saturating_sub(last) > quiet {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
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
                if let Some(vs) = &st.view {
                    return tiles::view_report(
                        st,
                        vs,
                        acks,
                        &mut one,
                        &mut all,
                        &mut sent_all,
                        &mut sync,
                    );
                }
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
                    expected: acked,
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
    /// The tile (`TileId::key`) of seq `first_seq + i`; `u64::MAX` when unknown.
    pub tile: Vec<u64>,
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
            tile: vec![u64::MAX; at.len()],
            at,
        }
    }

    /// Adds the tile of each placement, as (seq, tile key).
    pub fn with_tiles(mut self, pairs: &[(u64, u64)]) -> Self {
        for &(seq, key) in pairs {
            if let Some(i) = seq.checked_sub(self.first_seq)
                && let Some(slot) = self.tile.get_mut(i as usize)
            {
                *slot = key;
            }
        }
        self
    }

    /// The tile key of an acked placement.
    pub fn tile(&self, seq: u64) -> Option<u64> {
        let i = seq.checked_sub(self.first_seq)? as usize;
        self.tile.get(i).copied().filter(|&t| t != u64::MAX)
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

    /// Little-endian: first seq, then one ack instant per seq, one send instant per seq,
    /// and one tile key per seq.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * (3 * self.at.len() + 1));
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        for t in self.at.iter().chain(&self.sent_at).chain(&self.tile) {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> anyhow::Result<Self> {
        if b.len() < 8 || !b.len().is_multiple_of(8) || !(b.len() / 8 - 1).is_multiple_of(3) {
            bail!("acks file of {} bytes is not a list of u64", b.len());
        }
        let mut words = b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
        let first_seq = words.next().unwrap_or(0);
        let mut at: Vec<u64> = words.collect();
        let n = at.len() / 3;
        let tile = at.split_off(2 * n);
        let sent_at = at.split_off(n);
        Ok(Acks {
            first_seq,
            at,
            sent_at,
            tile,
        })
    }
}
