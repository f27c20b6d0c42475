//! `export`: the dataset export's rate, end to end: download
//! `GET /api/export/placements.csv.gz`, decompress it as it arrives and count its rows.

use anyhow::{Context, bail};
use serde::Serialize;
use std::io::Write;
use std::time::Instant;

/// Flags of `export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Downloads, each measured on its own (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

#[derive(Debug, Serialize)]
pub struct ExportReport {
    /// Rows (without the header) of the last round.
    pub rows: u64,
    /// Compressed bytes of the last round.
    pub bytes: u64,
    /// Rows per second of each round, first byte to last.
    pub rows_per_s: Vec<f64>,
    pub median_rows_per_s: f64,
}

/// Counts the lines of a gzip stream written to it, decompressing as it goes.
struct LineCount(u64);

impl Write for LineCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.iter().filter(|b| **b == b'\n').count() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub async fn export(a: &ExportArgs) -> anyhow::Result<ExportReport> {
    let client = reqwest::Client::new();
    let url = format!(
        "{}/api/export/placements.csv.gz",
        a.url.trim_end_matches('/')
    );
    let mut rates = Vec::new();
    let (mut rows, mut bytes) = (0, 0);
    for _ in 0..a.rounds.max(1) {
        let start = Instant::now();
        let mut r = client.get(&url).send().await.context("GET the export")?;
        if !r.status().is_success() {
            bail!("{url}: {}", r.status());
        }
        let mut gz = flate2::write::GzDecoder::new(LineCount(0));
        bytes = 0;
        while let Some(chunk) = r.chunk().await.context("read the export")? {
            bytes += chunk.len() as u64;
            gz.write_all(&chunk)?;
        }
        let lines = gz.finish().context("the export is not complete gzip")?.0;
        rows = lines.saturating_sub(1);
        let secs = start.elapsed().as_secs_f64();
        rates.push(rows as f64 / secs);
    }
    let median_rows_per_s = super::board::median(&rates);
    Ok(ExportReport {
        rows,
        bytes,
        rows_per_s: rates,
        median_rows_per_s,
    })
}
