//! The scenarios built on the clients and the placer, and the ones outside them
//! (`board` drives wrk and nginx, `cold-start` spawns the server binary).

use crate::client::Acks;
use crate::live::{self, LiveArgs};
use crate::procstat;
use crate::report::{Latency, LiveReport, new_histogram};
use anyhow::{Context, bail};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Flags of `max-rate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MaxRateArgs {
    #[command(flatten)]
    pub live: LiveArgs,
    /// First rate tried.
    #[arg(long, default_value_t = 5000.0)]
    pub start: f64,
    /// Each next rate is this many times the last one that passed.
    #[arg(long, default_value_t = 1.25)]
    pub factor: f64,
    /// Stop after a rate this high.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub limit: f64,
    /// A rate fails when the last ack comes later than this after the schedule's end.
    #[arg(long, default_value_t = 500.0)]
    pub max_behind_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct MaxRateReport {
    /// Highest rate with 100% completeness, no errors and acks keeping up.
    pub best_rate: f64,
    pub steps: Vec<LiveReport>,
}

/// Steps the rate up until completeness drops below 100% or the acks fall behind.
pub async fn max_rate(a: &MaxRateArgs) -> anyhow::Result<MaxRateReport> {
    let mut rate = a.start;
    let mut best = 0.0;
    let mut steps = Vec::new();
    while rate <= a.limit {
        let mut l = a.live.clone();
        l.rate = rate;
        let r = live::live(&l).await?;
        let ok = r.is_clean() && r.placer.behind_ms <= a.max_behind_ms;
        println!("{} => {}", r.line(), if ok { "pass" } else { "FAIL" });
        steps.push(r);
        if !ok {
            break;
        }
        best = rate;
        rate = (rate * a.factor).round();
    }
    println!("max-rate: highest passing rate {best}/s");
    Ok(MaxRateReport {
        best_rate: best,
        steps,
    })
}

#[derive(Debug, Serialize)]
pub struct AdmissionReport {
    pub clients: u64,
    /// From the first connect to the last client synced.
    pub seconds: f64,
    pub client_sync: Latency,
    pub errors: u64,
    pub reconnects: u64,
    pub server: Vec<procstat::ProcUsage>,
    pub bench: procstat::ProcUsage,
}

/// Connects and syncs C clients; measures the time and the server's CPU.
pub async fn admission(a: &LiveArgs) -> anyhow::Result<AdmissionReport> {
    let start: Vec<_> = a
        .server_pids
        .iter()
        .map(|&p| (p, procstat::sample(p).unwrap_or_default()))
        .collect();
    let own = procstat::own();
    let t0 = Instant::now();
    let mut groups = live::start_groups(a).await?;
    for g in &mut groups {
        g.wait_synced(Duration::from_secs_f64(a.sync_timeout))
            .await?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let server = start
        .iter()
        .filter_map(|&(p, s)| procstat::sample(p).map(|e| procstat::ProcUsage::between(p, s, e)))
        .collect();
    let bench = procstat::ProcUsage::between(std::process::id(), own, procstat::own());
    let empty = Acks::default();
    let tmp = tempfile::NamedTempFile::new()?;
    std::fs::write(tmp.path(), empty.to_bytes())?;
    let mut sync = new_histogram();
    let (mut errors, mut reconnects, mut clients) = (0, 0, 0);
    for g in groups {
        let r = g.finish(&empty, tmp.path()).await?;
        // Sync times are kept in ms; the histogram counts microseconds.
        for &(v, n) in &r.sync_ms.0 {
            sync.saturating_record_n(v * 1000, n);
        }
        clients += r.clients.len() as u64;
        errors += r.clients.iter().map(|c| c.errors as u64).sum::<u64>();
        reconnects += r.clients.iter().map(|c| c.reconnects as u64).sum::<u64>();
    }
    Ok(AdmissionReport {
        clients,
        seconds,
        client_sync: Latency::of(&sync),
        errors,
        reconnects,
        server,
        bench,
    })
}

#[derive(Debug, Serialize)]
pub struct IdleMemoryReport {
    pub clients: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub hwm_after_kib: u64,
    /// (after - before) / clients.
    pub bytes_per_connection: f64,
    pub errors: u64,
}

/// Opens C idle websockets (hello only) and reports the server's RSS growth per socket.
pub async fn idle_memory(a: &LiveArgs, settle: Duration) -> anyhow::Result<IdleMemoryReport> {
    let &[pid] = a.server_pids.as_slice() else {
        bail!("idle-memory needs exactly one --server-pid");
    };
    let before = procstat::sample(pid).context("server process")?;
    let mut a = a.clone();
    a.board = crate::client::BoardFetch::None;
    let mut groups = live::start_groups(&a).await?;
    for g in &mut groups {
        g.wait_synced(Duration::from_secs_f64(a.sync_timeout))
            .await?;
    }
    tokio::time::sleep(settle).await;
    let after = procstat::sample(pid).context("server process")?;
    let empty = Acks::default();
    let tmp = tempfile::NamedTempFile::new()?;
    std::fs::write(tmp.path(), empty.to_bytes())?;
    let (mut errors, mut clients) = (0, 0);
    for g in groups {
        let r = g.finish(&empty, tmp.path()).await?;
        clients += r.clients.len() as u64;
        errors += r.clients.iter().map(|c| c.errors as u64).sum::<u64>();
    }
    Ok(IdleMemoryReport {
        clients,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        hwm_after_kib: after.hwm_kib,
        bytes_per_connection: (after.rss_kib as f64 - before.rss_kib as f64) * 1024.0
            / clients.max(1) as f64,
        errors,
    })
}

/// Flags of `cold-start`.
#[derive(Debug, Clone, clap::Args)]
pub struct ColdStartArgs {
    /// The server binary.
    #[arg(long, default_value = "target/release/rplace")]
    pub bin: PathBuf,
    /// Data dir the server starts with.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Copy this dir over --data-dir before every start (a start may write a snapshot,
    /// which would make the next start cheaper).
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Where the server listens (passed as --listen).
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// More server flags (after `--`).
    #[arg(last = true)]
    pub server_args: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ColdStartReport {
    /// Process start to the first `GET /readyz` that answered 200, each run, ms.
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub peak_rss_kib: Vec<u64>,
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

async fn ready(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.is_ok() && &buf[9..12] == b"200"
}

fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// Times process start to ready, `runs` times.
pub async fn cold_start(a: &ColdStartArgs) -> anyhow::Result<ColdStartReport> {
    let mut runs = Vec::new();
    let mut rss = Vec::new();
    for i in 0..a.runs {
        if let Some(t) = &a.template {
            copy_dir(t, &a.data_dir)?;
        }
        // Page the binary and the data in as a restarted machine's second start would.
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new(&a.bin)
            .arg("--listen")
            .arg(a.listen.to_string())
            .arg("--data-dir")
            .arg(&a.data_dir)
            .args(&a.server_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", a.bin.display()))?;
        let pid = child.id().context("server pid")?;
        loop {
            if ready(a.listen).await {
                break;
            }
            if let Some(st) = child.try_wait()? {
                bail!("server exited with {st} before it was ready");
            }
            if t0.elapsed() > Duration::from_secs(600) {
                bail!("server not ready in 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        rss.push(procstat::sample(pid).map_or(0, |s| s.hwm_kib));
        println!("cold-start run {}: ready in {ms:.1} ms", i + 1);
        runs.push(ms);
        terminate(pid);
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(ColdStartReport {
        median_ms: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        min_ms: sorted.first().copied().unwrap_or(0.0),
        max_ms: sorted.last().copied().unwrap_or(0.0),
        runs_ms: runs,
        peak_rss_kib: rss,
    })
}

/// Flags of `board`.
#[derive(Debug, Clone, clap::Args)]
pub struct BoardArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// nginx worker processes (the server uses every core).
    #[arg(long, default_value_t = 2)]
    pub nginx_workers: u32,
    /// Rounds of (server, nginx) pairs; who goes first alternates, and the ratios are the
    /// medians of the rounds, so that a noisy machine drifting during a run cancels out.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
}

#[derive(Debug, Serialize)]
pub struct WrkRun {
    pub round: u32,
    pub target: String,
    pub encoding: String,
    pub body_bytes: usize,
    pub requests_per_s: f64,
    pub transfer: String,
    pub latency_p99: String,
    pub non_2xx: u64,
}

#[derive(Debug, Serialize)]
pub struct BoardReport {
    pub runs: Vec<WrkRun>,
    /// Server requests/s over nginx requests/s, uncompressed: the median of the rounds.
    pub ratio_raw: f64,
    /// The same with `Accept-Encoding: gzip`.
    pub ratio_gzip: f64,
    /// Each round's ratio, raw.
    pub rounds_raw: Vec<f64>,
    /// Each round's ratio, gzip.
    pub rounds_gzip: Vec<f64>,
}

async fn fetch(addr: SocketAddr, gzip: bool) -> anyhow::Result<(Vec<u8>, Option<String>)> {
    let mut req = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_proxy()
        .build()?
        .get(format!("http://{addr}/api/board"));
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let r = req.send().await?.error_for_status()?;
    let enc = r
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((r.bytes().await?.to_vec(), enc))
}

fn wrk(a: &BoardArgs, url: &str, gzip: bool) -> anyhow::Result<(f64, String, String, u64)> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.arg(format!("-t{}", a.threads))
        .arg(format!("-c{}", a.connections))
        .arg(format!("-d{}s", a.duration))
        .arg("--latency");
    if gzip {
        cmd.arg("-H").arg("Accept-Encoding: gzip");
    }
    let out = cmd
        .arg(url)
        .output()
        .context("run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("")
            .to_string()
    };
    let rps = field("Requests/sec:").parse().unwrap_or(0.0);
    let non2xx = field("Non-2xx or 3xx responses:").parse().unwrap_or(0);
    if rps == 0.0 {
        bail!("wrk said: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((rps, field("Transfer/sec:"), field("99%"), non2xx))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET /api/board` with wrk against the server and against nginx serving the same bytes.
pub async fn board(a: &BoardArgs) -> anyhow::Result<BoardReport> {
    use std::os::unix::fs::PermissionsExt;
    let (raw, _) = fetch(a.addr, false).await?;
    let (gz, enc) = fetch(a.addr, true).await?;
    if enc.as_deref() != Some("gzip") {
        bail!("the server answered Accept-Encoding: gzip with {enc:?}");
    }
    let dir = tempfile::tempdir()?;
    let www = dir.path().join("www/api");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("board"), &raw)?;
    std::fs::write(www.join("board.gz"), &gz)?;
    for p in [
        dir.path().to_path_buf(),
        dir.path().join("www"),
        www.clone(),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    let port = free_port()?;
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes {w};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  default_type application/octet-stream;\n  \
             sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n  \
             client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  \
             fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n    \
             location /api/ {{ gzip_static on; }}\n  }}\n}}\n",
            w = a.nginx_workers,
            d = dir.path().display(),
        ),
    )?;
    let mut nginx = tokio::process::Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .kill_on_drop(true)
        .spawn()
        .context("start nginx (apt-get install nginx)")?;
    let nginx_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let t0 = Instant::now();
    while tokio::net::TcpStream::connect(nginx_addr).await.is_err() {
        if t0.elapsed() > Duration::from_secs(5) {
            bail!(
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let result = async {
        let (n_raw, _) = fetch(nginx_addr, false).await?;
        let (n_gz, n_enc) = fetch(nginx_addr, true).await?;
        if n_raw != raw || n_gz != gz || n_enc.as_deref() != Some("gzip") {
            bail!("nginx does not serve the same bytes as the server");
        }
        let mut runs = Vec::new();
        let (mut rounds_raw, mut rounds_gzip) = (Vec::new(), Vec::new());
        for round in 0..a.rounds.max(1) {
            for (gzip, body) in [(false, raw.len()), (true, gz.len())] {
                let mut pair = [("rplace", a.addr, 0.0), ("nginx", nginx_addr, 0.0)];
                if round % 2 == 1 {
                    pair.reverse();
                }
                for (target, addr, rps_out) in &mut pair {
                    let (rps, transfer, p99, non2xx) =
                        wrk(a, &format!("http://{addr}/api/board"), gzip)?;
                    println!(
                        "board round {round} {target} {}: {rps:.0} req/s, {transfer}/s, p99 {p99}",
                        if gzip { "gzip" } else { "raw" }
                    );
                    *rps_out = rps;
                    runs.push(WrkRun {
                        round,
                        target: target.to_string(),
                        encoding: if gzip { "gzip" } else { "identity" }.into(),
                        body_bytes: body,
                        requests_per_s: rps,
                        transfer,
                        latency_p99: p99,
                        non_2xx: non2xx,
                    });
                }
                let rps = |name: &str| pair.iter().find(|p| p.0 == name).map_or(0.0, |p| p.2);
                let ratio = rps("rplace") / rps("nginx");
                if gzip {
                    rounds_gzip.push(ratio);
                } else {
                    rounds_raw.push(ratio);
                }
            }
        }
        Ok(BoardReport {
            ratio_raw: median(&rounds_raw),
            ratio_gzip: median(&rounds_gzip),
            rounds_raw,
            rounds_gzip,
            runs,
        })
    }
    .await;
    if let Some(pid) = nginx.id() {
        terminate(pid);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), nginx.wait()).await;
    result
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Flags of `make-history`.
#[derive(Debug, Clone, clap::Args)]
pub struct MakeHistoryArgs {
    /// Data dir to create `rplace.sqlite3` in (must not hold one).
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    #[arg(long, default_value_t = 1000)]
    pub width: u64,
    #[arg(long, default_value_t = 1000)]
    pub height: u64,
}

/// Writes a log of `rows` placements and no snapshot into a new embedded data dir (schema
/// from the store itself), so a start must replay all of it.
pub fn make_history(a: &MakeHistoryArgs) -> anyhow::Result<()> {
    let path = a.data_dir.join("rplace.sqlite3");
    if path.exists() {
        bail!("{} exists", path.display());
    }
    let mut conn = rplace_store::open_database(&rplace_store::EmbeddedConfig {
        data_dir: a.data_dir.clone(),
        dims: rplace_domain::Dimensions::parse(a.width, a.height)?,
        depth: rplace_domain::board::Depth::Four,
        policy: rplace_domain::policy::Params::new(
            rplace_domain::Cooldown::from_secs(0),
            rplace_domain::policy::AddrRate::OFF,
            rplace_domain::Ipv6Prefix::DEFAULT,
        ),
        idempotency_window: std::time::Duration::from_secs(600),
        sync: rplace_store::SyncMode::Normal,
        snapshot_every: u64::MAX,
        max_catchup: 0,
    })?;
    conn.execute_batch("PRAGMA synchronous = OFF;")?;
    let now_ms = (crate::clock::now_ns() / 1_000_000) as i64;
    // Each row links to the one before it on its pixel, as the store's writer does.
    let mut last = vec![0u64; (a.width * a.height) as usize];
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO placements (seq, x, y, color, user, ts, prev) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut r: u64 = 0x9E37_79B9_7F4A_7C15;
        for seq in 1..=a.rows {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let (x, y) = (r % a.width, (r >> 16) % a.height);
            let prev = std::mem::replace(&mut last[(y * a.width + x) as usize], seq);
            stmt.execute(rusqlite::params![
                seq as i64,
                x as i64,
                y as i64,
                ((r >> 40) % 16) as i64,
                ((r >> 8) % 1_000_000) as i64,
                now_ms - (a.rows - seq) as i64,
                (prev != 0).then_some(prev as i64),
            ])?;
        }
    }
    tx.commit()?;
    println!("wrote {} placements to {}", a.rows, path.display());
    Ok(())
}
