//! The embedded backend's per-address state: the GCRA arrival time of every address key
//! that placed recently, read and written by the writer thread only.
//!
//! This used to be a `governor` rate limiter checked before a request reached the writer.
//! It is now plain state for the domain's policy ([`rplace_domain::policy::decide`]), for
//! two reasons: the shared backend's Redis script must run the very same GCRA arithmetic
//! (same units, same rounding), which only one implementation of ours can guarantee, and
//! the limit must be decided together with the cooldown, so that a placement refused for
//! either spends nothing of the other (governor counted a placement before the writer
//! could refuse it for cooldown).

use rplace_domain::AddrKey;
use rplace_domain::policy::{AddrState, Now};
use std::collections::HashMap;

/// Entries kept before idle ones are dropped.
const SOFT_CAP: usize = 100_000;

/// Address keys and their arrival times.
///
/// Bounded: an entry is only worth keeping while its arrival time is in the future (an
/// idle one says no more than a missing one), and an arrival time is at most one period
/// plus the burst tolerance ahead of the placement that set it. So past the soft cap,
/// idle entries are dropped, and at most as many remain as placements were accepted in
/// the last period plus tolerance.
#[derive(Debug)]
pub struct AddrStates {
    /// Arrival time (unix µs) per key.
    tat_us: HashMap<AddrKey, i64>,
    /// Size at which idle entries are dropped next; grows if most entries are active, so
    /// that the scan is not repeated on every insert.
    evict_at: usize,
}

impl Default for AddrStates {
    fn default() -> Self {
        Self {
            tat_us: HashMap::new(),
            evict_at: SOFT_CAP,
        }
    }
}

impl AddrStates {
    pub fn get(&self, key: &AddrKey) -> AddrState {
        AddrState::new(self.tat_us.get(key).copied())
    }

    /// Stores `state` for `key` (forgetting it if it is idle at `now`).
    pub fn set(&mut self, key: AddrKey, state: AddrState, now: Now) {
        match state.tat_us() {
            Some(t) if !state.is_idle_at(now) => {
                self.tat_us.insert(key, t);
            }
            _ => {
                self.tat_us.remove(&key);
            }
        }
        if self.tat_us.len() >= self.evict_at {
            self.tat_us.retain(|_, t| *t > now.micros());
            self.evict_at = SOFT_CAP.max(self.tat_us.len() * 2);
        }
    }

    pub fn len(&self) -> usize {
        self.tat_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tat_us.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rplace_domain::Ipv6Prefix;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn idle_entries_are_dropped_past_the_cap() {
        let mut s = AddrStates::default();
        let key = |i: u32| AddrKey::new(IpAddr::V4(Ipv4Addr::from(i)), Ipv6Prefix::DEFAULT);
        let t0 = Now::from_micros(1_000_000);
        for i in 0..SOFT_CAP as u32 - 2 {
            s.set(key(i), AddrState::new(Some(2_000_000)), t0);
        }
        s.set(key(u32::MAX), AddrState::new(Some(9_000_000)), t0);
        // Later, all but the last are idle: the next insert past the cap drops them.
        let later = Now::from_micros(3_000_000);
        s.set(key(u32::MAX - 1), AddrState::new(Some(4_000_000)), later);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(&key(u32::MAX)).tat_us(), Some(9_000_000));
        assert_eq!(s.get(&key(1)).tat_us(), None);
        // An idle state is not stored at all.
        s.set(key(7), AddrState::new(Some(1)), later);
        assert_eq!(s.len(), 2);
    }
}
