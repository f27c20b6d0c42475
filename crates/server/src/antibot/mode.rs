//! When a placement must carry a proof (`--pow` and `--captcha-mode`), and the bounded
//! counters that decide it.
//!
//! The counters live in this instance's memory, not in the store: they only decide when
//! to *ask*, while the rule that matters (one placement per solved challenge) is the
//! store's, atomic with the placement on every instance. Kept here they cost no round
//! trip per placement; the price is that in shared mode another instance (or this one
//! after a restart, or after the bounded tables forgot an identity) may ask again early.
//! That errs on the side of asking, never of letting through.

use rplace_domain::{AddrKey, UserId};
use std::collections::HashMap;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Mutex;

/// Identities whose proof coverage is remembered (two generations of half this each).
pub const MAX_IDENTITIES: usize = 200_000;
/// Addresses whose recent placements `auto` remembers (two generations of half this).
pub const MAX_ADDRESSES: usize = 100_000;
/// Intervals between an address's placements that the regularity rule looks at.
pub const REGULAR_INTERVALS: usize = 8;
/// Regular intervals this long or longer are not suspicious (a patient human).
pub const REGULAR_MAX_INTERVAL_MS: i64 = 60_000;
/// How long an address that looked automated is asked for a proof on every placement.
pub const AUTO_HOLD_MS: i64 = 10 * 60 * 1000;

/// When a placement needs a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Never.
    Off,
    /// On an identity's first placement (as this instance knows it).
    First,
    /// On the first placement and then once every N placements of an identity.
    Every(u32),
    /// On every placement from an address whose recent rate looks automated (see [`Auto`]).
    Auto,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" => Ok(Mode::Off),
            "first" => Ok(Mode::First),
            "auto" => Ok(Mode::Auto),
            other => {
                let n = other.strip_prefix("every:").ok_or_else(|| {
                    format!("expected off, first, every:N or auto, got {other:?}")
                })?;
                match n.parse::<u32>() {
                    Ok(n) if n >= 1 => Ok(Mode::Every(n)),
                    _ => Err(format!("every:N needs N from 1, got {n:?}")),
                }
            }
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Off => f.write_str("off"),
            Mode::First => f.write_str("first"),
            Mode::Every(n) => write!(f, "every:{n}"),
            Mode::Auto => f.write_str("auto"),
        }
    }
}

/// The parameters of `auto`: an address looks automated when it placed more than
/// `per_minute` times within a minute (a token bucket of that size refilled at that rate
/// per minute), or when its last [`REGULAR_INTERVALS`] intervals between placements, each
/// shorter than [`REGULAR_MAX_INTERVAL_MS`], differ by at most `jitter_ms` from each
/// other (a script's timer; people are not that regular). Then every placement from it
/// needs a proof for [`AUTO_HOLD_MS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auto {
    /// Placements per minute one address key may make before it is asked.
    pub per_minute: u32,
    /// Largest spread (max - min) of regular intervals, ms; 0 turns the rule off.
    pub jitter_ms: u32,
}

/// A map of at most `cap` entries that forgets its least recently used half at once:
/// lookups move entries into the current generation; when that holds `cap / 2`, the
/// previous one is dropped. O(1), no per-entry timestamps.
pub struct Generations<K, V> {
    /// Entries used since the last rotation.
    current: HashMap<K, V>,
    /// Entries of the generation before; moved to `current` when used.
    previous: HashMap<K, V>,
    /// Size of one generation.
    half: usize,
}

impl<K: Hash + Eq, V> Generations<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            half: (cap / 2).max(1),
        }
    }

    /// The entry for `k`, made current (inserted with `make` if absent).
    pub fn entry(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.current.contains_key(&k) {
            if self.current.len() >= self.half {
                self.previous = std::mem::take(&mut self.current);
            }
            let v = self.previous.remove(&k).unwrap_or_else(make);
            return self.current.entry(k).or_insert(v);
        }
        self.current.get_mut(&k).expect("checked")
    }

    /// The entry for `k` without touching its age.
    pub fn peek(&self, k: &K) -> Option<&V> {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per identity: how many more placements the last proof covers (`first` and
/// `every:N`). Unknown identities are covered by nothing.
pub struct Coverage {
    /// Placements after a proof that need none: `N - 1` for `every:N`, all for `first`.
    after_proof: u32,
    /// Remaining covered placements per identity.
    left: Mutex<Generations<UserId, u32>>,
}

impl Coverage {
    pub fn new(mode: Mode) -> Option<Self> {
        let after_proof = match mode {
            Mode::First => u32::MAX,
            Mode::Every(n) => n - 1,
            Mode::Off | Mode::Auto => return None,
        };
        Some(Self {
            after_proof,
            left: Mutex::new(Generations::new(MAX_IDENTITIES)),
        })
    }

    /// Whether `user`'s next placement needs a proof.
    pub fn needs_proof(&self, user: UserId) -> bool {
        let left = self.left.lock().expect("coverage lock");
        left.peek(&user).is_none_or(|&n| n == 0)
    }

    /// An accepted placement of `user`, with or without a proof.
    pub fn placed(&self, user: UserId, with_proof: bool) {
        let mut left = self.left.lock().expect("coverage lock");
        let n = left.entry(user, || 0);
        if with_proof {
            *n = self.after_proof;
        } else if *n != u32::MAX {
            *n = n.saturating_sub(1);
        }
    }
}

/// One address key's recent placements, for `auto`.
#[derive(Debug, Clone, Default)]
struct Activity {
    /// Token bucket: when it is full again, unix ms (GCRA's theoretical arrival time).
    tat_ms: i64,
    /// The last placement, unix ms.
    last_ms: Option<i64>,
    /// The last intervals between placements, ms, newest at `next % len`.
    intervals: [i64; REGULAR_INTERVALS],
    /// How many intervals were recorded (saturating at the array's length).
    filled: usize,
    /// Where the next interval goes.
    next: usize,
    /// Until when this address is asked on every placement.
    flagged_until_ms: i64,
}

/// The addresses' activity for `auto`.
pub struct AutoTracker {
    /// The rule's parameters.
    params: Auto,
    /// Activity per address key.
    addrs: Mutex<Generations<AddrKey, Activity>>,
}

impl AutoTracker {
    pub fn new(params: Auto) -> Self {
        Self {
            params,
            addrs: Mutex::new(Generations::new(MAX_ADDRESSES)),
        }
    }

    pub fn params(&self) -> Auto {
        self.params
    }

    /// Whether a placement from `addr` at `now_ms` needs a proof: the address is held, or
    /// its recent placements look automated (which starts the hold).
    pub fn needs_proof(&self, addr: AddrKey, now_ms: i64) -> bool {
        let mut addrs = self.addrs.lock().expect("auto lock");
        let Some(a) = addrs.peek(&addr) else {
            return false;
        };
        if now_ms < a.flagged_until_ms {
            return true;
        }
        let period = 60_000 / i64::from(self.params.per_minute.max(1));
        // The bucket holds `per_minute` placements: empty once the TAT is a minute ahead.
        let fast = a.tat_ms - now_ms > 60_000 - period;
        let regular = self.params.jitter_ms > 0 && a.filled == REGULAR_INTERVALS && {
            let (lo, hi) = a
                .intervals
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            hi < REGULAR_MAX_INTERVAL_MS && hi - lo <= i64::from(self.params.jitter_ms)
        };
        if fast || regular {
            addrs.entry(addr, Activity::default).flagged_until_ms = now_ms + AUTO_HOLD_MS;
        }
        fast || regular
    }

    /// An accepted placement from `addr` at `now_ms`.
    pub fn placed(&self, addr: AddrKey, now_ms: i64) {
        let period = 60_000 / i64::from(self.params.per_minute.max(1));
        let mut addrs = self.addrs.lock().expect("auto lock");
        let a = addrs.entry(addr, Activity::default);
        a.tat_ms = a.tat_ms.max(now_ms) + period;
        if let Some(last) = a.last_ms {
            a.intervals[a.next] = (now_ms - last).max(0);
            a.next = (a.next + 1) % REGULAR_INTERVALS;
            a.filled = (a.filled + 1).min(REGULAR_INTERVALS);
        }
        a.last_ms = Some(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rplace_domain::Ipv6Prefix;

    #[test]
    fn modes_parse_and_print() {
        for s in ["off", "first", "every:3", "auto"] {
            assert_eq!(s.parse::<Mode>().unwrap().to_string(), s);
        }
        assert!("every:0".parse::<Mode>().is_err());
        assert!("every:x".parse::<Mode>().is_err());
        assert!("sometimes".parse::<Mode>().is_err());
    }

    #[test]
    fn every_n_asks_on_the_first_and_every_nth_placement() {
        let c = Coverage::new(Mode::Every(3)).unwrap();
        let u = UserId(7);
        let mut asked = vec![];
        for _ in 0..7 {
            let need = c.needs_proof(u);
            asked.push(need);
            c.placed(u, need);
        }
        assert_eq!(asked, [true, false, false, true, false, false, true]);
        let first = Coverage::new(Mode::First).unwrap();
        first.placed(u, true);
        for _ in 0..100 {
            first.placed(u, false);
        }
        assert!(!first.needs_proof(u));
        assert!(first.needs_proof(UserId(8)));
    }

    #[test]
    fn generations_stay_bounded_and_keep_recent_entries() {
        let mut g = Generations::new(10);
        for i in 0..1000u32 {
            *g.entry(i, || 0) += 1;
            *g.entry(0, || 0) += 1;
            assert!(g.len() <= 10);
        }
        assert_eq!(g.peek(&0), Some(&1001));
        assert_eq!(g.peek(&500), None);
    }

    fn key() -> AddrKey {
        AddrKey::new("203.0.113.9".parse().unwrap(), Ipv6Prefix::new(64).unwrap())
    }

    #[test]
    fn auto_asks_a_fast_address_and_holds_it() {
        let t = AutoTracker::new(Auto {
            per_minute: 5,
            jitter_ms: 0,
        });
        let mut now = 1_000_000;
        for _ in 0..5 {
            assert!(!t.needs_proof(key(), now));
            t.placed(key(), now);
            now += 1000;
        }
        assert!(t.needs_proof(key(), now));
        // Held even after a quiet minute.
        assert!(t.needs_proof(key(), now + 60_000));
        assert!(!t.needs_proof(key(), now + AUTO_HOLD_MS + 1));
    }

    #[test]
    fn auto_asks_a_regular_address() {
        let t = AutoTracker::new(Auto {
            per_minute: 1000,
            jitter_ms: 20,
        });
        let mut now = 0;
        for i in 0..=REGULAR_INTERVALS as i64 {
            assert!(!t.needs_proof(key(), now), "placement {i}");
            t.placed(key(), now);
            now += 5000 + (i % 3) * 7;
        }
        assert!(t.needs_proof(key(), now));
        // Human-like spread is not regular.
        let t = AutoTracker::new(Auto {
            per_minute: 1000,
            jitter_ms: 20,
        });
        let mut now = 0;
        for i in 0..50 {
            assert!(!t.needs_proof(key(), now));
            t.placed(key(), now);
            now += 5000 + (i * 137) % 900;
        }
    }
}
