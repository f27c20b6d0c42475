//! One clock for every process of a run.
//!
//! Acks are stamped by the placer in the parent process and frame arrivals by clients that
//! may live in worker processes, so instants must be comparable across processes:
//! nanoseconds since the unix epoch, taken once from the wall clock and advanced with the
//! monotonic clock (so an NTP step during a run does not bend the latencies).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static BASE: OnceLock<(Instant, u64)> = OnceLock::new();

fn base() -> &'static (Instant, u64) {
    BASE.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64;
        (Instant::now(), wall)
    })
}

/// Nanoseconds since the unix epoch, monotonic within this process.
pub fn now_ns() -> u64 {
    let (at, wall) = base();
    wall + at.elapsed().as_nanos() as u64
}
