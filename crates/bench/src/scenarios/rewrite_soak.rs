//! `rewrite-soak`: the `live` scenario at design load with one large moderation change
//! (a fill, or a rollback of a fill) in the middle of it. It answers how long the change
//! took to reach every client, what it did to the placement latency (before, during and
//! after it), and whether every client still ended exact (no missing placement, no
//! duplicate, no board refetch, no `410`).

use crate::client::Acks;
use crate::live::{self, LiveArgs};
use crate::placer::{self, PlacerConfig};
use crate::procstat::{self, ProcUsage};
use crate::report::{Latency, LiveReport, new_histogram};
use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Which change runs during the soak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// `POST /api/admin/fill` of about `--pixels` pixels.
    Fill,
    /// A fill of about `--pixels` pixels before the clients connect, rolled back (as the
    /// admin token's user) during the soak.
    Rollback,
}

/// Flags of `rewrite-soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct RewriteSoakArgs {
    #[command(flatten)]
    pub live: LiveArgs,
    /// The server's --admin-token.
    #[arg(long, env = "RPLACE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Which change.
    #[arg(long, value_enum, default_value_t = Change::Rollback)]
    pub change: Change,
    /// About how many pixels it changes (whole rows from the top of the board).
    #[arg(long, default_value_t = 100_000)]
    pub pixels: u64,
    /// Seconds into the placing when the change starts (default: half the duration).
    #[arg(long)]
    pub at: Option<f64>,
}

/// The result.
#[derive(Debug, Serialize)]
pub struct RewriteSoakReport {
    /// The change.
    pub change: Change,
    /// Pixels it changed, as the server answered.
    pub pixels: u64,
    /// Pixels it left alone because someone placed on them after the plan.
    pub skipped: u64,
    /// From sending the request to its answer (plan and apply, durable).
    pub answer_s: f64,
    /// From sending the request until every client had its last placement.
    pub reach_clients_s: f64,
    /// Every client had the change's last placement within the wait.
    pub all_clients_reached: bool,
    /// PUT latency of placements sent before the change.
    pub put_before: Latency,
    /// PUT latency of placements sent while the change ran (until every client had it).
    pub put_during: Latency,
    /// PUT latency of placements sent after it.
    pub put_after: Latency,
    /// The whole soak, as `live` reports it.
    pub live: LiveReport,
}

impl RewriteSoakReport {
    pub fn line(&self) -> String {
        format!(
            "rewrite-soak {:?}: {} pixels ({} skipped) answered in {:.2} s, at every client in {:.2} s; \
             PUT p50/p99 before {:.1}/{:.1} ms, during {:.1}/{:.1} ms, after {:.1}/{:.1} ms; {}",
            self.change,
            self.pixels,
            self.skipped,
            self.answer_s,
            self.reach_clients_s,
            self.put_before.p50_ms,
            self.put_before.p99_ms,
            self.put_during.p50_ms,
            self.put_during.p99_ms,
            self.put_after.p50_ms,
            self.put_after.p99_ms,
            self.live.line()
        )
    }
}

async fn admin_post(
    http: &reqwest::Client,
    a: &RewriteSoakArgs,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let r = http
        .post(format!("http://{}/api/admin{path}", a.live.addr))
        .bearer_auth(&a.admin_token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST /api/admin{path}"))?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("POST /api/admin{path} answered {status}: {v}");
    }
    Ok(v)
}

fn now_ms() -> i64 {
    (crate::clock::now_ns() / 1_000_000) as i64
}

pub async fn rewrite_soak(a: &RewriteSoakArgs) -> anyhow::Result<RewriteSoakReport> {
    let shape = live::server_shape(a.live.addr).await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()?;
    let rows = a.pixels.div_ceil(shape.width).min(shape.height);
    let rect = json!({"x": 0, "y": 0, "w": shape.width, "h": rows});
    let (path, body) = match a.change {
        Change::Fill => ("/fill", json!({"rect": rect, "color": 3, "reason": "soak"})),
        Change::Rollback => {
            let since = now_ms();
            admin_post(&http, a, "/fill", json!({"rect": rect, "color": 5})).await?;
            (
                "/rollback",
                json!({"user": "0000000000000000", "since": since, "reason": "soak"}),
            )
        }
    };
    let mut groups = live::start_groups(&a.live).await?;
    let mut sync_s: f64 = 0.0;
    for g in &mut groups {
        sync_s = sync_s.max(
            g.wait_synced(Duration::from_secs_f64(a.live.sync_timeout))
                .await?,
        );
    }
    let server_start: Vec<_> = a
        .live
        .server_pids
        .iter()
        .map(|&p| procstat::sample(p).with_context(|| format!("no process {p}")))
        .collect::<anyhow::Result<_>>()?;
    let bench_start = procstat::own();
    for g in &mut groups {
        g.begin_measure().await?;
    }
    let placer_cfg = PlacerConfig {
        addr: a.live.addr,
        token: a.live.token.clone(),
        rate: a.live.rate,
        duration: Duration::from_secs_f64(a.live.duration),
        conns: a.live.conns,
        width: shape.width,
        height: shape.height,
        colors: shape.colors,
        users: a.live.users,
        spread: a.live.spread(),
    };
    // As in `live`: the placer on a thread of its own.
    let placer = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(placer::run(placer_cfg))
    });
    tokio::time::sleep(Duration::from_secs_f64(
        a.at.unwrap_or(a.live.duration / 2.0),
    ))
    .await;
    let started_ns = crate::clock::now_ns();
    let started = Instant::now();
    let answer = admin_post(&http, a, path, body).await?;
    let answer_s = started.elapsed().as_secs_f64();
    let last = answer["last_seq"].as_u64().unwrap_or(0);
    let mut reached = true;
    for g in &mut groups {
        reached &= g.wait_seq(last, Duration::from_secs(60)).await?;
    }
    let reach_clients_s = started.elapsed().as_secs_f64();
    let reached_ns = crate::clock::now_ns();
    let placed = placer.await??;
    let acks = Acks::from_pairs(&placed.acks)
        .with_sent(&placed.sent)
        .with_tiles(&placed.tiles);
    for g in &mut groups {
        g.wait_seq(acks.last_seq(), Duration::from_secs_f64(a.live.drain))
            .await?;
    }
    let server: Vec<ProcUsage> = a
        .live
        .server_pids
        .iter()
        .zip(&server_start)
        .filter_map(|(&p, &s)| procstat::sample(p).map(|e| ProcUsage::between(p, s, e)))
        .collect();
    let bench_self = ProcUsage::between(std::process::id(), bench_start, procstat::own());
    let acks_file = tempfile::NamedTempFile::new()?;
    std::fs::write(acks_file.path(), acks.to_bytes())?;
    let mut reports = Vec::new();
    for g in groups {
        reports.push(g.finish(&acks, acks_file.path()).await?);
    }
    // PUT latency by when the request was sent: before, during, after the change.
    let sent: std::collections::HashMap<u64, u64> = placed.sent.iter().copied().collect();
    let mut hist = [new_histogram(), new_histogram(), new_histogram()];
    for &(seq, acked) in &placed.acks {
        let Some(&s) = sent.get(&seq) else { continue };
        let phase = if s < started_ns {
            0
        } else if s <= reached_ns {
            1
        } else {
            2
        };
        hist[phase].saturating_record((acked.saturating_sub(s) / 1000).max(1));
    }
    let live = live::merge(&a.live, placed.report, reports, server, bench_self, sync_s);
    Ok(RewriteSoakReport {
        change: a.change,
        pixels: answer["pixels"].as_u64().unwrap_or(0),
        skipped: answer["skipped"].as_u64().unwrap_or(0),
        answer_s,
        reach_clients_s,
        all_clients_reached: reached,
        put_before: Latency::of(&hist[0]),
        put_during: Latency::of(&hist[1]),
        put_after: Latency::of(&hist[2]),
        live,
    })
}
