//! Results: what a run measured, as JSON and as one line.

use crate::procstat::ProcUsage;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, up to a minute.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A histogram as (value, count) pairs, to move it between processes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistogramData(pub Vec<(u64, u64)>);

impl HistogramData {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        HistogramData(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    pub fn add_to(&self, h: &mut Histogram<u64>) {
        for &(v, n) in &self.0 {
            h.saturating_record_n(v, n);
        }
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// One client's account of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientReport {
    /// Index of the client across all workers.
    pub id: u32,
    /// Acknowledged placements it saw exactly once, in order.
    pub delivered: u64,
    /// Acknowledged placements it never saw.
    pub missing: u64,
    /// Entries a websocket repeated.
    pub duplicates: u64,
    /// Placements that came through `/api/updates` after a gap in the live stream.
    pub via_catch_up: u64,
    /// Live frames that started after a gap.
    pub gaps: u64,
    /// `{"type":"resync"}` messages and 410 answers that made it refetch the board.
    pub resyncs: u32,
    /// Connection losses it recovered from (close 4000 or 1001, errors).
    pub reconnects: u32,
    /// Failures: refused connections, bad frames, failed fetches.
    pub errors: u32,
    /// Websocket bytes received during the measured window, frame headers included.
    pub bytes: u64,
    /// Update frames received in the measured window.
    pub frames: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Acknowledged placements it should have seen: all of them for a whole-canvas
    /// client, those on its tiles for a view client.
    #[serde(default)]
    pub expected: u64,
}

/// What one group of clients (one process) measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupReport {
    pub clients: Vec<ClientReport>,
    /// Ack to frame arrival.
    pub latency: HistogramData,
    /// From the instant the placement's request was written to the frame's arrival.
    #[serde(default)]
    pub send_latency: HistogramData,
    /// Time from the group's start to its last client being synced, seconds.
    pub sync_s: f64,
    /// Per-client time from start to synced, milliseconds.
    pub sync_ms: HistogramData,
    /// This process's CPU and memory during the measured window.
    pub usage: Option<ProcUsage>,
}

/// The placer's account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlacerReport {
    /// Target rate, placements/s.
    pub rate: f64,
    pub duration_s: f64,
    /// Placements due by the end of the schedule.
    pub scheduled: u64,
    /// Answered 200.
    pub acked: u64,
    /// Answered anything else, or failed on the connection.
    pub errors: u64,
    /// First few error messages.
    pub error_samples: Vec<String>,
    /// Acked placements per second over the whole time to the last ack.
    pub ack_rate: f64,
    /// How long after the schedule's end the last ack came, ms.
    pub behind_ms: f64,
    /// From when a placement was due to its ack.
    pub ack_latency: Latency,
    /// The PUT's own answer: from writing the request to reading the whole response.
    #[serde(default)]
    pub put_latency: Latency,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// A whole `live` run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LiveReport {
    pub clients: u64,
    pub workers: usize,
    pub placer: PlacerReport,
    /// Fraction of (client, acked placement) pairs delivered exactly once, in order.
    pub completeness: f64,
    pub complete_clients: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub via_catch_up: u64,
    pub gaps: u64,
    pub resyncs: u64,
    pub reconnects: u64,
    pub client_errors: u64,
    /// Ack to frame arrival, over every client and placement.
    pub latency: Latency,
    /// Send to receipt: from writing the placement's request to the frame's arrival, over
    /// every client and placement (what a person who clicks sees on another screen).
    #[serde(default)]
    pub send_to_receipt: Latency,
    /// Worst client's p99.
    pub worst_client_p99_ms: f64,
    /// Websocket bytes received per placement per client.
    pub bytes_per_placement: f64,
    /// Seconds to connect and sync every client.
    pub sync_s: f64,
    pub server: Vec<ProcUsage>,
    pub bench: Vec<ProcUsage>,
    /// CPU seconds used by other processes on the machine during the measured window.
    pub other_cpu_s: f64,
    /// Seconds of the measured window (placing and draining).
    pub window_s: f64,
    /// 1-minute load average at the end.
    pub loadavg: f64,
    /// Every client, when asked for (`--per-client`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_client: Vec<ClientReport>,
}

impl LiveReport {
    /// The one-line summary.
    pub fn line(&self) -> String {
        let cpu: f64 = self.server.iter().map(|u| u.cpu_s).sum();
        let rss: u64 = self.server.iter().map(|u| u.peak_rss_kib).sum();
        let bench_cpu: f64 = self.bench.iter().map(|u| u.cpu_s).sum();
        format!(
            "live C={} P={}/s D={}s: acked {}/{} ({:.0}/s, behind {:.0} ms, {} put errors) \
             completeness {:.4}% ({} missing, {} dup, {} via catch-up, {} reconnects, {} client errors) \
             latency p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms (worst client p99 {:.1}) \
             send-to-receipt p50 {:.1} p99 {:.1} max {:.1} ms; put answer p50 {:.1} p99 {:.1} max {:.1} ms; \
             {:.2} B/placement/client; sync {:.2}s; server cpu {:.2}s peak rss {} MiB; bench cpu {:.2}s; \
             other processes cpu {:.1}s of {:.1}s window (load {:.1})",
            self.clients,
            self.placer.rate,
            self.placer.duration_s,
            self.placer.acked,
            self.placer.scheduled,
            self.placer.ack_rate,
            self.placer.behind_ms,
            self.placer.errors,
            self.completeness * 100.0,
            self.missing,
            self.duplicates,
            self.via_catch_up,
            self.reconnects,
            self.client_errors,
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            self.worst_client_p99_ms,
            self.send_to_receipt.p50_ms,
            self.send_to_receipt.p99_ms,
            self.send_to_receipt.max_ms,
            self.placer.put_latency.p50_ms,
            self.placer.put_latency.p99_ms,
            self.placer.put_latency.max_ms,
            self.bytes_per_placement,
            self.sync_s,
            cpu,
            rss / 1024,
            bench_cpu,
            self.other_cpu_s,
            self.window_s,
            self.loadavg,
        )
    }

    /// 100% completeness and no errors anywhere.
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.client_errors == 0
            && self.placer.errors == 0
            && self.placer.acked == self.placer.scheduled
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &std::path::Path, value: &impl Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    Ok(())
}
