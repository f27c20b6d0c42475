//! `history`: latency of the canvas at a past moment (`GET /api/tiles/{tx}/{ty}?seq=S`,
//! `?at=T`, and `GET /api/board?seq=S` / `?at=T` on a whole canvas), one request at a
//! time at uniformly random moments and tiles. First waits until the server's keyframes
//! reach the head (a history made by `make-history` has none: the server builds them in
//! the background after its start), and reports how long that took.

use crate::report::{Latency, new_histogram};
use anyhow::{Context, bail};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Flags of `history`.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Requests of each kind.
    #[arg(long, default_value_t = 200)]
    pub requests: u64,
    /// Longest wait for the keyframes to reach the head.
    #[arg(long, default_value_t = 1800)]
    pub index_timeout_s: u64,
    /// Skip the whole-board reads (a canvas not served whole has none).
    #[arg(long)]
    pub no_board: bool,
}

#[derive(Debug, Serialize)]
pub struct HistoryReport {
    /// The newest seq at the start.
    pub head: u64,
    /// Time from the first request until a read at the head answered (keyframe catch-up).
    pub index_wait_s: f64,
    pub tile_seq: Latency,
    pub tile_at: Latency,
    pub board_seq: Option<Latency>,
    pub board_at: Option<Latency>,
    /// Mean body bytes of a board answer.
    pub board_bytes: u64,
}

/// A small xorshift: the moments and tiles need no more.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// GET `path`: status, `X-Board-Seq`, body length.
async fn get(c: &reqwest::Client, base: &str, path: &str) -> anyhow::Result<(u16, u64, usize)> {
    let r = c
        .get(format!("{base}{path}"))
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = r.status().as_u16();
    let seq = r
        .headers()
        .get("x-board-seq")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let len = r.bytes().await?.len();
    Ok((status, seq, len))
}

/// The seq of time `ms` (what `at` resolves to).
async fn seq_at(c: &reqwest::Client, base: &str, ms: i64) -> anyhow::Result<u64> {
    let (status, seq, _) = get(c, base, &format!("/api/tiles/0/0?at={ms}")).await?;
    if status != 200 && status != 503 {
        bail!("at={ms}: HTTP {status}");
    }
    Ok(seq)
}

pub async fn history(a: &HistoryArgs) -> anyhow::Result<HistoryReport> {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = a.url.trim_end_matches('/').to_string();
    let config: serde_json::Value = c
        .get(format!("{base}/api/config"))
        .send()
        .await?
        .json()
        .await?;
    let (w, h) = (
        config["width"].as_u64().context("config width")?,
        config["height"].as_u64().context("config height")?,
    );
    let (across, down) = (w.div_ceil(256), h.div_ceil(256));
    let now = (crate::clock::now_ns() / 1_000_000) as i64;
    // While the keyframes are built, reads answer 503 (and no seq): wait for them.
    let started = Instant::now();
    while get(&c, &base, "/api/tiles/0/0?seq=0").await?.0 == 503
        || get(&c, &base, &format!("/api/tiles/0/0?at={}", now + 3_600_000))
            .await?
            .0
            == 503
    {
        if started.elapsed() > Duration::from_secs(a.index_timeout_s) {
            bail!("past reads still catching up after {} s", a.index_timeout_s);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let head = seq_at(&c, &base, now + 3_600_000).await?;
    if head == 0 {
        bail!("the history is empty");
    }
    // The time of the first placement: the first ms whose moment holds one.
    let (mut lo, mut hi) = (0i64, now + 3_600_000);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if seq_at(&c, &base, mid).await? >= 1 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let (first_ms, last_ms) = (lo, now);
    loop {
        let (status, _, _) = get(&c, &base, &format!("/api/tiles/0/0?seq={head}")).await?;
        if status == 200 {
            break;
        }
        if started.elapsed() > Duration::from_secs(a.index_timeout_s) {
            bail!(
                "keyframes did not reach seq {head} in {} s",
                a.index_timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let index_wait_s = started.elapsed().as_secs_f64();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let span = (last_ms - first_ms).max(1) as u64;
    let mut measure = async |board: bool, by_time: bool| -> anyhow::Result<(Latency, u64)> {
        let mut hist = new_histogram();
        let mut bytes = 0u64;
        for _ in 0..a.requests {
            let moment = if by_time {
                format!("at={}", first_ms + rng.below(span) as i64)
            } else {
                format!("seq={}", 1 + rng.below(head))
            };
            let path = if board {
                format!("/api/board?{moment}")
            } else {
                format!(
                    "/api/tiles/{}/{}?{moment}",
                    rng.below(across),
                    rng.below(down)
                )
            };
            let t = Instant::now();
            let (status, _, len) = get(&c, &base, &path).await?;
            if status != 200 {
                bail!("{path}: HTTP {status}");
            }
            hist.record(t.elapsed().as_micros().max(1) as u64)?;
            bytes += len as u64;
        }
        Ok((Latency::of(&hist), bytes / a.requests.max(1)))
    };
    let (tile_seq, _) = measure(false, false).await?;
    let (tile_at, _) = measure(false, true).await?;
    let (board_seq, board_at, board_bytes) = if a.no_board {
        (None, None, 0)
    } else {
        let (s, bytes) = measure(true, false).await?;
        let (t, _) = measure(true, true).await?;
        (Some(s), Some(t), bytes)
    };
    Ok(HistoryReport {
        head,
        index_wait_s,
        tile_seq,
        tile_at,
        board_seq,
        board_at,
        board_bytes,
    })
}
