//! The `live` scenario: C synced clients, placements at P/s for D seconds, then scores.
//!
//! Clients run in this process, or, past `--clients-per-worker`, in worker processes
//! (this binary again, `worker` subcommand) because one process may hold at most 20,000
//! files. A worker speaks lines on stdin/stdout: it prints `synced` once its clients are,
//! then obeys `measure`, `wait <seq> <ms>` (answers `caught_up <bool>`) and
//! `finish <acks file>` (answers its [`GroupReport`] as one JSON line and exits).

use crate::client::{Acks, BoardFetch, ClientGroup, GroupConfig};
use crate::placer::{self, PlacerConfig};
use crate::procstat::{self, ProcUsage};
use crate::report::{GroupReport, Latency, LiveReport, new_histogram};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Flags of `live` (and of the scenarios built on it).
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// The server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Websocket clients.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub clients: u32,
    /// Placements per second, in total.
    #[arg(long, short = 'p', default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of placing.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// The server's --bench-token.
    #[arg(long, env = "RPLACE_BENCH_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Keep-alive HTTP connections placing.
    #[arg(long, default_value_t = 64)]
    pub conns: usize,
    /// Distinct identities placing.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Source addresses 127.0.0.2 .. for the websockets (0: the kernel chooses).
    #[arg(long, default_value_t = 64)]
    pub sources: u32,
    /// Most clients in one process; more are spread over worker processes.
    #[arg(long, default_value_t = 15_000)]
    pub clients_per_worker: u32,
    /// Worker processes; 0 picks from --clients-per-worker (1 means: in this process).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// How clients get the board.
    #[arg(long, value_enum, default_value_t = BoardFetch::PerClient)]
    pub board: BoardFetch,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Board and catch-up requests in flight at once, per process.
    #[arg(long, default_value_t = 64)]
    pub http_concurrency: usize,
    /// Seconds to wait after the last ack for every client to see it.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    /// Seconds allowed to connect and sync every client.
    #[arg(long, default_value_t = 300.0)]
    pub sync_timeout: f64,
    /// A server process to measure (CPU, RSS); repeat for several.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Keep every client's numbers in the JSON.
    #[arg(long)]
    pub per_client: bool,
    /// Each client views a random rectangle of WxH tiles (e.g. 4x3) and receives only
    /// their placements; unset: whole-canvas clients.
    #[arg(long, value_parser = parse_view)]
    pub view: Option<(u32, u32)>,
    /// Put this fraction of placements (e.g. 0.9) in a block of 1% of the tiles at the
    /// canvas's centre; unset: uniform.
    #[arg(long, conflicts_with = "tiles")]
    pub hot_spot: Option<f64>,
    /// Scatter placements uniformly over this many tiles spread over the canvas.
    #[arg(long)]
    pub tiles: Option<u64>,
}

fn parse_view(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("expected WxH tiles, e.g. 4x3, got {s:?}"))?;
    let n = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|&n| (1..=256).contains(&n))
            .ok_or_else(|| format!("tile counts must be 1..=256, got {v:?}"))
    };
    Ok((n(w)?, n(h)?))
}

impl LiveArgs {
    /// Where the placer puts placements.
    pub fn spread(&self) -> crate::placer::Spread {
        match (self.hot_spot, self.tiles) {
            (Some(f), _) => crate::placer::Spread::HotSpot(f.clamp(0.0, 1.0)),
            (None, Some(n)) => crate::placer::Spread::Tiles(n),
            (None, None) => crate::placer::Spread::Uniform,
        }
    }
}

/// Board shape and palette size, from `GET /api/config`.
pub struct ServerShape {
    pub width: u64,
    pub height: u64,
    pub colors: u64,
}

pub async fn server_shape(addr: SocketAddr) -> anyhow::Result<ServerShape> {
    let v: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("http://{addr}/api/config"))
        .send()
        .await
        .context("GET /api/config")?
        .json()
        .await?;
    Ok(ServerShape {
        width: v["width"].as_u64().context("config.width")?,
        height: v["height"].as_u64().context("config.height")?,
        colors: v["palette"].as_array().map_or(16, |p| p.len() as u64),
    })
}

/// A worker process and its pipes.
pub struct Remote {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

/// A group of clients here or in a worker process.
pub enum Group {
    Local(Box<ClientGroup>),
    Remote(Box<Remote>),
}

impl Group {
    async fn line(stdout: &mut tokio::io::Lines<BufReader<ChildStdout>>) -> anyhow::Result<String> {
        stdout
            .next_line()
            .await?
            .context("worker exited without answering")
    }

    pub async fn wait_synced(&mut self, within: Duration) -> anyhow::Result<f64> {
        match self {
            Group::Local(g) => g.wait_synced(within).await,
            Group::Remote(r) => {
                let l = tokio::time::timeout(within, Self::line(&mut r.stdout))
                    .await
                    .context("worker did not sync in time")??;
                l.strip_prefix("synced ")
                    .and_then(|s| s.parse().ok())
                    .with_context(|| format!("worker said {l:?}"))
            }
        }
    }

    async fn send(stdin: &mut ChildStdin, line: String) -> anyhow::Result<()> {
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    pub async fn begin_measure(&mut self) -> anyhow::Result<()> {
        match self {
            Group::Local(g) => g.begin_measure(),
            Group::Remote(r) => Self::send(&mut r.stdin, "measure".into()).await?,
        }
        Ok(())
    }

    pub async fn wait_seq(&mut self, seq: u64, within: Duration) -> anyhow::Result<bool> {
        match self {
            Group::Local(g) => Ok(g.wait_seq(seq, within).await),
            Group::Remote(r) => {
                Self::send(&mut r.stdin, format!("wait {seq} {}", within.as_millis())).await?;
                Ok(Self::line(&mut r.stdout).await? == "caught_up true")
            }
        }
    }

    pub async fn finish(
        self,
        acks: &Acks,
        acks_file: &std::path::Path,
    ) -> anyhow::Result<GroupReport> {
        match self {
            Group::Local(g) => Ok(g.finish(acks).await),
            Group::Remote(mut r) => {
                Self::send(&mut r.stdin, format!("finish {}", acks_file.display())).await?;
                let l = Self::line(&mut r.stdout).await?;
                let _ = r.child.wait().await;
                Ok(serde_json::from_str(&l)?)
            }
        }
    }
}

fn group_configs(a: &LiveArgs, shape: &ServerShape) -> Vec<GroupConfig> {
    let workers = if a.workers > 0 {
        a.workers
    } else {
        (a.clients.div_ceil(a.clients_per_worker.max(1))).max(1) as usize
    };
    let per = a.clients.div_ceil(workers as u32);
    (0..workers as u32)
        .map(|w| GroupConfig {
            addr: a.addr,
            clients: per.min(a.clients.saturating_sub(w * per)),
            first_id: w * per,
            sources: a.sources,
            board: a.board,
            connect_concurrency: a.connect_concurrency.div_ceil(workers),
            http_concurrency: a.http_concurrency,
            width: shape.width,
            height: shape.height,
            view: a.view,
        })
        .filter(|g| g.clients > 0)
        .collect()
}

pub async fn start_groups(a: &LiveArgs) -> anyhow::Result<Vec<Group>> {
    let shape = server_shape(a.addr).await?;
    let cfgs = group_configs(a, &shape);
    if cfgs.len() == 1 {
        return Ok(vec![Group::Local(Box::new(ClientGroup::start(
            cfgs[0].clone(),
        )?))]);
    }
    let exe = std::env::current_exe()?;
    let mut groups = Vec::new();
    for cfg in cfgs {
        let mut child = Command::new(&exe)
            .arg("worker")
            .arg(serde_json::to_string(&cfg)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawn worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        groups.push(Group::Remote(Box::new(Remote {
            child,
            stdin,
            stdout,
        })));
    }
    Ok(groups)
}

/// Runs the scenario and scores it.
pub async fn live(a: &LiveArgs) -> anyhow::Result<LiveReport> {
    let shape = server_shape(a.addr).await?;
    let mut groups = start_groups(a).await?;
    let mut sync_s: f64 = 0.0;
    for g in &mut groups {
        sync_s = sync_s.max(
            g.wait_synced(Duration::from_secs_f64(a.sync_timeout))
                .await?,
        );
    }
    let server_start: Vec<_> = a
        .server_pids
        .iter()
        .map(|&p| procstat::sample(p).with_context(|| format!("no process {p}")))
        .collect::<anyhow::Result<_>>()?;
    let bench_start = procstat::own();
    let busy_start = procstat::machine_busy_s();
    let window = std::time::Instant::now();
    for g in &mut groups {
        g.begin_measure().await?;
    }
    let placer_cfg = PlacerConfig {
        addr: a.addr,
        token: a.token.clone(),
        rate: a.rate,
        duration: Duration::from_secs_f64(a.duration),
        conns: a.conns,
        width: shape.width,
        height: shape.height,
        colors: shape.colors,
        users: a.users,
        spread: a.spread(),
    };
    // On a thread of its own: on the runtime that also reads the clients' frames, the
    // placer's reads of its answers would wait behind them and inflate the PUT latency.
    let placed = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(placer::run(placer_cfg))
    })
    .await??;
    let acks = Acks::from_pairs(&placed.acks)
        .with_sent(&placed.sent)
        .with_tiles(&placed.tiles);
    for g in &mut groups {
        g.wait_seq(acks.last_seq(), Duration::from_secs_f64(a.drain))
            .await?;
    }
    let server: Vec<ProcUsage> = a
        .server_pids
        .iter()
        .zip(&server_start)
        .filter_map(|(&p, &s)| procstat::sample(p).map(|e| ProcUsage::between(p, s, e)))
        .collect();
    let bench_self = ProcUsage::between(std::process::id(), bench_start, procstat::own());
    let busy = procstat::machine_busy_s() - busy_start;
    let window_s = window.elapsed().as_secs_f64();
    let acks_file = tempfile::NamedTempFile::new()?;
    std::fs::write(acks_file.path(), acks.to_bytes())?;
    let mut reports = Vec::new();
    for g in groups {
        reports.push(g.finish(&acks, acks_file.path()).await?);
    }
    let mut r = merge(a, placed.report, reports, server, bench_self, sync_s);
    let own_cpu: f64 = r.server.iter().chain(&r.bench).map(|u| u.cpu_s).sum();
    r.other_cpu_s = (busy - own_cpu).max(0.0);
    r.window_s = window_s;
    r.loadavg = procstat::loadavg();
    Ok(r)
}

/// Scores a run from its parts (also for the scenarios built on `live`).
pub fn merge(
    a: &LiveArgs,
    placer: crate::report::PlacerReport,
    groups: Vec<GroupReport>,
    server: Vec<ProcUsage>,
    bench_self: ProcUsage,
    sync_s: f64,
) -> LiveReport {
    let mut lat = new_histogram();
    let mut sent_lat = new_histogram();
    let mut bench = vec![bench_self];
    let mut clients = Vec::new();
    for g in groups {
        g.latency.add_to(&mut lat);
        g.send_latency.add_to(&mut sent_lat);
        // A worker is a separate process; in-process groups are already in bench_self.
        if let Some(u) = g.usage.filter(|u| u.pid != std::process::id()) {
            bench.push(u);
        }
        clients.extend(g.clients);
    }
    let expected: u64 = clients.iter().map(|c| c.expected).sum();
    let delivered: u64 = clients.iter().map(|c| c.delivered).sum();
    let sum = |f: fn(&crate::report::ClientReport) -> u64| clients.iter().map(f).sum::<u64>();
    let bytes = sum(|c| c.bytes);
    let mut r = LiveReport {
        clients: clients.len() as u64,
        workers: bench.len(),
        placer,
        completeness: if expected == 0 {
            0.0
        } else {
            delivered as f64 / expected as f64
        },
        complete_clients: clients
            .iter()
            .filter(|c| c.missing == 0 && c.duplicates == 0)
            .count() as u64,
        missing: sum(|c| c.missing),
        duplicates: sum(|c| c.duplicates),
        via_catch_up: sum(|c| c.via_catch_up),
        gaps: sum(|c| c.gaps),
        resyncs: sum(|c| c.resyncs as u64),
        reconnects: sum(|c| c.reconnects as u64),
        client_errors: sum(|c| c.errors as u64),
        latency: Latency::of(&lat),
        send_to_receipt: Latency::of(&sent_lat),
        worst_client_p99_ms: clients.iter().map(|c| c.p99_ms).fold(0.0, f64::max),
        bytes_per_placement: if expected == 0 {
            0.0
        } else {
            bytes as f64 / expected as f64
        },
        sync_s,
        server,
        bench,
        per_client: Vec::new(),
        ..Default::default()
    };
    if a.per_client {
        r.per_client = clients;
    }
    r
}

/// The `worker` role: one group of clients driven over stdin/stdout.
pub async fn worker(cfg_json: &str) -> anyhow::Result<()> {
    let cfg: GroupConfig = serde_json::from_str(cfg_json)?;
    let mut group = ClientGroup::start(cfg)?;
    let sync_s = group.wait_synced(Duration::from_secs(3600)).await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("synced {sync_s}\n").as_bytes())
        .await?;
    out.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("measure") => group.begin_measure(),
            Some("wait") => {
                let seq: u64 = words.next().context("wait seq")?.parse()?;
                let ms: u64 = words.next().context("wait ms")?.parse()?;
                let ok = group.wait_seq(seq, Duration::from_millis(ms)).await;
                out.write_all(format!("caught_up {ok}\n").as_bytes())
                    .await?;
                out.flush().await?;
            }
            Some("finish") => {
                let path = words.next().context("finish path")?;
                let acks = Acks::from_bytes(&std::fs::read(path)?)?;
                let report = group.finish(&acks).await;
                let mut line = serde_json::to_vec(&report)?;
                line.push(b'\n');
                out.write_all(&line).await?;
                out.flush().await?;
                return Ok(());
            }
            other => bail!("worker: unknown command {other:?}"),
        }
    }
    Ok(())
}
