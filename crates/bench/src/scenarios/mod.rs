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

mod board;
mod cold_start;
mod export;
mod history;
mod rewrite_soak;
mod timelapse;

pub use board::{BoardArgs, BoardReport, WrkRun, board};
pub use cold_start::{ColdStartArgs, ColdStartReport, cold_start};
pub use export::{ExportArgs, ExportReport, export};
pub use history::{HistoryArgs, HistoryReport, history};
pub use rewrite_soak::{RewriteSoakArgs, RewriteSoakReport, rewrite_soak};
pub use timelapse::{TimelapseArgs, TimelapseReport, timelapse};

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
        tile_cache: rplace_store::DEFAULT_TILE_CACHE,
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

fn terminate(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}
