//! CPU time and memory of a process, from `/proc`.

use serde::{Deserialize, Serialize};

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// Resident set now, KiB.
    pub rss_kib: u64,
    /// Peak resident set (VmHWM), KiB.
    pub hwm_kib: u64,
}

/// What a process used between two readings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcUsage {
    pub pid: u32,
    pub cpu_s: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub peak_rss_kib: u64,
}

impl ProcUsage {
    pub fn between(pid: u32, a: ProcSample, b: ProcSample) -> Self {
        ProcUsage {
            pid,
            cpu_s: b.cpu_s - a.cpu_s,
            rss_start_kib: a.rss_kib,
            rss_end_kib: b.rss_kib,
            peak_rss_kib: b.hwm_kib,
        }
    }
}

/// Reads `/proc/<pid>`; `None` when the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        // USER_HZ is 100 on every Linux this runs on.
        cpu_s: ticks as f64 / 100.0,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// This process.
pub fn own() -> ProcSample {
    sample(std::process::id()).unwrap_or_default()
}

/// CPU seconds the whole machine spent busy so far (every process, all cores), from
/// `/proc/stat`: with the server's and the bench's own share taken out, what is left is
/// the noise of whatever else ran.
pub fn machine_busy_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    busy as f64 / 100.0
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}
