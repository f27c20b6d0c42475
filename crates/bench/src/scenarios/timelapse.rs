//! `timelapse`: a timelapse job end to end: `POST /api/timelapse`, poll its state until
//! done, download the APNG and check its frame count (the `acTL` chunk). The time is from
//! the POST to the state `done` (the render), the download timed apart.

use anyhow::{Context, bail};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Flags of `timelapse`.
#[derive(Debug, Clone, clap::Args)]
pub struct TimelapseArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The region: left, top, width, height.
    #[arg(long, num_args = 4, value_names = ["X", "Y", "W", "H"], default_values_t = [0, 0, 1000, 1000])]
    pub region: Vec<u32>,
    #[arg(long, default_value_t = 600)]
    pub frames: u32,
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    #[arg(long, default_value_t = 1)]
    pub scale: u32,
    /// Jobs, one after the other, each measured on its own (the median is reported).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct TimelapseReport {
    /// Frames in the last file (its `acTL`).
    pub frames: u32,
    /// Bytes of the last file.
    pub bytes: u64,
    /// Seconds from the POST to `done`, each round.
    pub render_s: Vec<f64>,
    pub median_render_s: f64,
    /// Seconds to download the last file.
    pub download_s: f64,
}

/// The `num_frames` of an APNG's `acTL` chunk.
fn num_frames(png: &[u8]) -> anyhow::Result<u32> {
    if png.get(..8) != Some(b"\x89PNG\r\n\x1a\n".as_slice()) {
        bail!("not a PNG");
    }
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into()?) as usize;
        let kind = &png[at + 4..at + 8];
        if kind == b"acTL" {
            let data = png.get(at + 8..at + 12).context("short acTL")?;
            return Ok(u32::from_be_bytes(data.try_into()?));
        }
        if kind == b"IDAT" {
            break;
        }
        at += 12 + len;
    }
    bail!("no acTL before the image data: not an APNG")
}

pub async fn timelapse(a: &TimelapseArgs) -> anyhow::Result<TimelapseReport> {
    let base = a.url.trim_end_matches('/');
    // The identity cookie, sent back on every request (as a browser would).
    let r = reqwest::Client::new()
        .get(format!("{base}/api/config"))
        .send()
        .await
        .context("GET /api/config")?;
    let cookie = r
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("GET /api/config set no identity cookie")?
        .to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie.parse()?);
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(600))
        .build()?;
    let body = serde_json::json!({
        "x": a.region[0], "y": a.region[1], "w": a.region[2], "h": a.region[3],
        "frames": a.frames, "fps": a.fps, "scale": a.scale, "format": "apng",
    });
    let mut times = Vec::new();
    let (mut frames, mut bytes, mut download_s) = (0, 0, 0.0);
    for _ in 0..a.rounds.max(1) {
        let start = Instant::now();
        let r = client
            .post(format!("{base}/api/timelapse"))
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let job: serde_json::Value = r.json().await?;
        if !status.is_success() {
            bail!("POST /api/timelapse: {status} {job}");
        }
        let id = job["id"].as_str().context("no id")?.to_string();
        loop {
            let s: serde_json::Value = client
                .get(format!("{base}/api/timelapse/{id}"))
                .send()
                .await?
                .json()
                .await?;
            match s["state"].as_str() {
                Some("done") => break,
                Some("failed") => bail!("the job failed: {s}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        times.push(start.elapsed().as_secs_f64());
        let t = Instant::now();
        let file = client
            .get(format!("{base}/api/timelapse/{id}/file"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        download_s = t.elapsed().as_secs_f64();
        frames = num_frames(&file)?;
        if frames != a.frames {
            bail!("the file has {frames} frames, asked for {}", a.frames);
        }
        bytes = file.len() as u64;
    }
    Ok(TimelapseReport {
        frames,
        bytes,
        median_render_s: super::board::median(&times),
        render_s: times,
        download_s,
    })
}
