//! `rplace-bench`: flags, then one scenario. See the crate docs and BENCHMARKS.md.

use clap::{Parser, Subcommand};
use rplace_bench::live::{self, LiveArgs};
use rplace_bench::report::write_json;
use rplace_bench::scenarios::{
    self, BoardArgs, ColdStartArgs, MakeHistoryArgs, MaxRateArgs, RewriteSoakArgs,
};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "rplace-bench", version, about = "Load generator for rplace")]
struct Cli {
    /// Write the full result as JSON here.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// C synced clients, placements at P/s for D s: completeness, latency, cost.
    Live(LiveArgs),
    /// Highest placement rate with 100% completeness (steps the rate up).
    MaxRate(MaxRateArgs),
    /// Time and server CPU to connect and sync C clients.
    Admission(LiveArgs),
    /// Server RSS growth per idle websocket.
    IdleMemory {
        #[command(flatten)]
        live: LiveArgs,
        /// Seconds to wait after the last connect before reading the RSS.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
    },
    /// Server process start to `/readyz` 200.
    ColdStart(ColdStartArgs),
    /// `GET /api/board` throughput with wrk, beside nginx serving the same bytes.
    Board(BoardArgs),
    /// `GET /api/export/placements.csv.gz`: rows per second, decompressed and counted.
    Export(scenarios::ExportArgs),
    /// The canvas at past moments (`?seq=`, `?at=` on tiles and the board): p50/p99.
    History(scenarios::HistoryArgs),
    /// `POST /api/timelapse` to done: the render's time, the file's frames and size.
    Timelapse(scenarios::TimelapseArgs),
    /// Writes a placements log with no snapshot, for recovery timing.
    MakeHistory(MakeHistoryArgs),
    /// `live` with a large rollback or fill in the middle: its reach and its cost.
    RewriteSoak(RewriteSoakArgs),
    /// Internal: one group of clients driven by a parent `live` over stdin/stdout.
    #[command(hide = true)]
    Worker { config: String },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let json = cli.json.clone();
        let save = |v: &dyn erased::Json| -> anyhow::Result<()> {
            if let Some(p) = &json {
                v.write(p)?;
            }
            Ok(())
        };
        match cli.cmd {
            Cmd::Live(a) => {
                let r = live::live(&a).await?;
                println!("{}", r.line());
                save(&r)?;
            }
            Cmd::MaxRate(a) => save(&scenarios::max_rate(&a).await?)?,
            Cmd::Admission(a) => {
                let r = scenarios::admission(&a).await?;
                let cpu: f64 = r.server.iter().map(|u| u.cpu_s).sum();
                println!(
                    "admission C={}: all synced in {:.2} s (per client p50 {:.0} ms, p99 {:.0} ms), \
                     server cpu {:.2} s, bench cpu {:.2} s, {} errors, {} reconnects",
                    r.clients,
                    r.seconds,
                    r.client_sync.p50_ms,
                    r.client_sync.p99_ms,
                    cpu,
                    r.bench.cpu_s,
                    r.errors,
                    r.reconnects
                );
                save(&r)?;
            }
            Cmd::IdleMemory { live, settle } => {
                let r = scenarios::idle_memory(&live, Duration::from_secs_f64(settle)).await?;
                println!(
                    "idle-memory C={}: server RSS {} -> {} KiB, {:.0} bytes per connection, {} errors",
                    r.clients, r.rss_before_kib, r.rss_after_kib, r.bytes_per_connection, r.errors
                );
                save(&r)?;
            }
            Cmd::ColdStart(a) => {
                let r = scenarios::cold_start(&a).await?;
                println!(
                    "cold-start: median {:.1} ms (min {:.1}, max {:.1}) over {} runs",
                    r.median_ms,
                    r.min_ms,
                    r.max_ms,
                    r.runs_ms.len()
                );
                save(&r)?;
            }
            Cmd::Board(a) => {
                let r = scenarios::board(&a).await?;
                let list = |v: &[f64]| {
                    v.iter()
                        .map(|r| format!("{r:.2}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                println!(
                    "board: rplace/nginx requests/s ratio (median of {} rounds) raw {:.2} [{}], gzip {:.2} [{}]",
                    r.rounds_raw.len(),
                    r.ratio_raw,
                    list(&r.rounds_raw),
                    r.ratio_gzip,
                    list(&r.rounds_gzip)
                );
                save(&r)?;
            }
            Cmd::Export(a) => {
                let r = scenarios::export(&a).await?;
                println!(
                    "export: {} rows, {} bytes gzip, median {:.0} rows/s over {} rounds",
                    r.rows,
                    r.bytes,
                    r.median_rows_per_s,
                    r.rows_per_s.len()
                );
                save(&r)?;
            }
            Cmd::History(a) => {
                let r = scenarios::history(&a).await?;
                let l = |l: &rplace_bench::report::Latency| {
                    format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", l.p50_ms, l.p99_ms, l.max_ms)
                };
                println!(
                    "history: head {}, keyframes ready after {:.1} s; tile?seq {}; tile?at {}",
                    r.head,
                    r.index_wait_s,
                    l(&r.tile_seq),
                    l(&r.tile_at)
                );
                if let (Some(s), Some(t)) = (&r.board_seq, &r.board_at) {
                    println!(
                        "history: board?seq {}; board?at {} ({} bytes)",
                        l(s),
                        l(t),
                        r.board_bytes
                    );
                }
                save(&r)?;
            }
            Cmd::Timelapse(a) => {
                let r = scenarios::timelapse(&a).await?;
                println!(
                    "timelapse: {} frames, {} bytes, median render {:.2} s over {} rounds (download {:.2} s)",
                    r.frames,
                    r.bytes,
                    r.median_render_s,
                    r.render_s.len(),
                    r.download_s
                );
                save(&r)?;
            }
            Cmd::MakeHistory(a) => scenarios::make_history(&a)?,
            Cmd::RewriteSoak(a) => {
                let r = scenarios::rewrite_soak(&a).await?;
                println!("{}", r.line());
                save(&r)?;
            }
            Cmd::Worker { config } => live::worker(&config).await?,
        }
        Ok(())
    })
}

/// Lets one closure save any of the reports.
mod erased {
    pub trait Json {
        fn write(&self, path: &std::path::Path) -> anyhow::Result<()>;
    }
    impl<T: serde::Serialize> Json for T {
        fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
            super::write_json(path, self)
        }
    }
}
