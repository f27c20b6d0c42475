//! The per-IP placement limit: a generic cell rate algorithm (governor) keyed by address,
//! so that clearing cookies does not multiply one machine's speed.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use std::net::IpAddr;
use std::num::NonZeroU32;

/// How many placements one address may make: `per_minute` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpLimit {
    /// Sustained placements per minute; 0 turns the limit off.
    pub per_minute: u32,
    /// Placements allowed back to back before the sustained rate applies.
    pub burst: u32,
}

/// A process-local limiter for [`IpLimit`].
pub struct IpLimiter {
    /// `None` when the limit is off.
    inner: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl IpLimiter {
    pub fn new(limit: IpLimit) -> Self {
        let inner = NonZeroU32::new(limit.per_minute).map(|per_minute| {
            let burst = NonZeroU32::new(limit.burst.max(1)).expect("max(1) is non-zero");
            RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
        });
        Self { inner }
    }

    /// `Ok` if `ip` may place now (and counts it), else the wait in ms.
    pub fn check(&self, ip: IpAddr) -> Result<(), i64> {
        let Some(l) = &self.inner else { return Ok(()) };
        l.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_millis().max(1) as i64
        })?;
        // Forget addresses that have been idle long enough to be back at full burst.
        if l.len() > 100_000 {
            l.retain_recent();
        }
        Ok(())
    }
}
