//! The placement policy: every rule that decides whether a placement is accepted, written
//! once here and executed by both backends (the embedded writer thread calls [`decide`];
//! the shared backend's Redis script mirrors it line by line and is checked against the
//! same [`vectors`]).
//!
//! # Shape
//! [`decide`] is pure: it reads the [`Prior`] state of the user and of the address, the
//! [`Params`] and the moment, runs every check, and only if all pass returns the new state
//! to store ([`Decision::Accept`]). A refused placement therefore spends nothing: no
//! cooldown starts and no rate budget is used. Rules still to come (bans, protected
//! areas, charges: a pool of N placements regaining one every T) slot in as more checks
//! in [`decide`], each reading its part of [`Prior`] and contributing its part of the new
//! state.
//!
//! # The rules today, in the order they are checked
//! 1. Cooldown: a user may place again `cooldown` after their last accepted placement.
//! 2. Per-address rate: a generic cell rate algorithm (GCRA) per [`AddrKey`]. Each
//!    accepted placement moves the address's theoretical arrival time (TAT) one `period`
//!    later; a placement is allowed while the TAT runs ahead of now by at most the burst
//!    tolerance (`(burst - 1) * period`). Times are unix microseconds, as in the script.
//!
//! Placements through the load generator's token path are `exempt`: no check runs, the
//! user's cooldown is still recorded, the address's budget is not touched.

mod addr;
pub mod vectors;

pub use addr::{AddrKey, Ipv6Prefix, Ipv6PrefixError};

use crate::placement::Cooldown;
use std::net::IpAddr;

/// The parameters of every rule. Both backends get them from the server's configuration
/// through this one type; the shared backend passes them to its script as arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Time between two accepted placements of one user.
    cooldown: Cooldown,
    /// The per-address GCRA.
    addr_rate: AddrRate,
    /// How much of an IPv6 address identifies one client.
    ipv6_prefix: Ipv6Prefix,
}

impl Params {
    pub fn new(cooldown: Cooldown, addr_rate: AddrRate, ipv6_prefix: Ipv6Prefix) -> Self {
        Self {
            cooldown,
            addr_rate,
            ipv6_prefix,
        }
    }

    pub fn cooldown(&self) -> Cooldown {
        self.cooldown
    }

    pub fn addr_rate(&self) -> AddrRate {
        self.addr_rate
    }

    pub fn ipv6_prefix(&self) -> Ipv6Prefix {
        self.ipv6_prefix
    }

    /// The key the per-address rule counts `ip` under.
    pub fn addr_key(&self, ip: IpAddr) -> AddrKey {
        AddrKey::new(ip, self.ipv6_prefix)
    }
}

/// The per-address GCRA's parameters, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRate {
    /// Emission interval: one placement per `period_us` sustained; 0 turns the rule off.
    period_us: i64,
    /// How far the arrival time may run ahead of now: `(burst - 1) * period_us`.
    tolerance_us: i64,
}

impl AddrRate {
    /// No per-address limit.
    pub const OFF: AddrRate = AddrRate {
        period_us: 0,
        tolerance_us: 0,
    };

    /// `per_minute` placements per minute sustained, `burst` back to back (a burst of 0
    /// counts as 1); `per_minute = 0` turns the rule off.
    pub fn per_minute(per_minute: u32, burst: u32) -> Self {
        if per_minute == 0 {
            return Self::OFF;
        }
        let period_us = 60_000_000 / i64::from(per_minute);
        Self {
            period_us,
            tolerance_us: period_us * (i64::from(burst.max(1)) - 1),
        }
    }

    /// Directly from the GCRA's two numbers (tests and vectors).
    pub fn gcra(period_us: i64, tolerance_us: i64) -> Self {
        Self {
            period_us: period_us.max(0),
            tolerance_us: tolerance_us.max(0),
        }
    }

    pub fn is_off(&self) -> bool {
        self.period_us == 0
    }

    pub fn period_us(&self) -> i64 {
        self.period_us
    }

    pub fn tolerance_us(&self) -> i64 {
        self.tolerance_us
    }
}

/// The moment a placement is decided, unix microseconds. Backends build it from their
/// clock with [`Now::not_before_ms`], so times never go backwards along the seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Now {
    /// Unix microseconds.
    us: i64,
}

impl Now {
    pub fn from_micros(us: i64) -> Self {
        Self { us }
    }

    /// `clock_us`, moved up to `floor_ms` (the last placement's time) if it is behind.
    pub fn not_before_ms(clock_us: i64, floor_ms: i64) -> Self {
        Self {
            us: clock_us.max(floor_ms.saturating_mul(1000)),
        }
    }

    pub fn micros(self) -> i64 {
        self.us
    }

    /// Whole milliseconds (floor), the unit of placement times and cooldowns.
    pub fn millis(self) -> i64 {
        self.us.div_euclid(1000)
    }
}

/// What the policy knows about one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserState {
    /// Time of the last accepted placement (unix ms), if it may still matter.
    last_ms: Option<i64>,
}

impl UserState {
    pub fn new(last_ms: Option<i64>) -> Self {
        Self { last_ms }
    }

    pub fn last_ms(&self) -> Option<i64> {
        self.last_ms
    }
}

/// What the policy knows about one address key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddrState {
    /// The GCRA's theoretical arrival time (unix µs); `None` (or any time in the past)
    /// means a full burst is available.
    tat_us: Option<i64>,
}

impl AddrState {
    pub fn new(tat_us: Option<i64>) -> Self {
        Self { tat_us }
    }

    pub fn tat_us(&self) -> Option<i64> {
        self.tat_us
    }

    /// Whether this state says nothing more than no state at `now`: it can be forgotten.
    pub fn is_idle_at(&self, now: Now) -> bool {
        self.tat_us.is_none_or(|t| t <= now.micros())
    }
}

/// Everything [`decide`] reads about one placement attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prior {
    /// The placing user's state.
    user: UserState,
    /// The state of the address key the attempt came from.
    addr: AddrState,
    /// The load generator's token path: no check applies.
    exempt: bool,
}

impl Prior {
    pub fn new(user: UserState, addr: AddrState, exempt: bool) -> Self {
        Self { user, addr, exempt }
    }

    pub fn user(&self) -> UserState {
        self.user
    }

    pub fn addr(&self) -> AddrState {
        self.addr
    }

    pub fn exempt(&self) -> bool {
        self.exempt
    }
}

/// An accepted placement's effects: the state to store and what to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The user's new state.
    user: UserState,
    /// The address key's new state.
    addr: AddrState,
    /// The placement's time, unix ms.
    at_ms: i64,
    /// When this user may place again, unix ms.
    next_at_ms: i64,
}

impl Accepted {
    pub fn user(&self) -> UserState {
        self.user
    }

    pub fn addr(&self) -> AddrState {
        self.addr
    }

    pub fn at_ms(&self) -> i64 {
        self.at_ms
    }

    pub fn next_at_ms(&self) -> i64 {
        self.next_at_ms
    }
}

/// Why a placement is refused. A refusal changes no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user's cooldown runs until `next_at_ms` (unix ms).
    Cooldown { next_at_ms: i64 },
    /// The address has used its budget; one more placement fits in `retry_after_ms`.
    RateLimited { retry_after_ms: i64 },
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept(Accepted),
    Refuse(Refusal),
}

/// Decides one placement attempt. Every check runs before any effect is computed into
/// the new state, so a refusal leaves the caller nothing to store.
pub fn decide(params: &Params, prior: &Prior, now: Now) -> Decision {
    match checks(params, prior, now) {
        Ok(a) => Decision::Accept(a),
        Err(r) => Decision::Refuse(r),
    }
}

fn checks(params: &Params, prior: &Prior, now: Now) -> Result<Accepted, Refusal> {
    let (user, addr) = if prior.exempt {
        (prior.user, prior.addr)
    } else {
        (
            cooldown_rule(params.cooldown, prior.user, now)?,
            addr_rate_rule(params.addr_rate, prior.addr, now)?,
        )
    };
    // The cooldown is recorded even for exempt placements, as a normal one would be.
    let user = if params.cooldown.as_millis() > 0 {
        UserState::new(Some(now.millis()))
    } else {
        user
    };
    Ok(Accepted {
        user,
        addr,
        at_ms: now.millis(),
        next_at_ms: params.cooldown.next_at(now.millis()),
    })
}

/// Rule 1. Returns the user state to keep (the caller records the new placement time).
fn cooldown_rule(cooldown: Cooldown, user: UserState, now: Now) -> Result<UserState, Refusal> {
    match cooldown.check(user.last_ms, now.millis()) {
        Ok(_) => Ok(user),
        Err(next_at_ms) => Err(Refusal::Cooldown { next_at_ms }),
    }
}

/// Rule 2, the GCRA. Returns the address's new state.
fn addr_rate_rule(rate: AddrRate, addr: AddrState, now: Now) -> Result<AddrState, Refusal> {
    if rate.is_off() {
        return Ok(addr);
    }
    let now_us = now.micros();
    let tat = addr.tat_us.unwrap_or(0).max(now_us);
    let wait = tat - rate.tolerance_us - now_us;
    if wait > 0 {
        // Whole ms, rounded up, at least 1: the client never retries too early.
        return Err(Refusal::RateLimited {
            retry_after_ms: ((wait + 999) / 1000).max(1),
        });
    }
    Ok(AddrState::new(Some(tat + rate.period_us)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vector_holds() {
        for v in vectors::vectors() {
            assert_eq!(
                decide(&v.params(), &v.prior(), v.now()),
                v.expect(),
                "vector {}",
                v.name()
            );
        }
    }

    /// The NAT case of issue 8: refusals for cooldown do not spend the address's budget.
    #[test]
    fn refused_placements_spend_nothing() {
        let p = Params::new(
            Cooldown::from_secs(60),
            AddrRate::per_minute(60, 30),
            Ipv6Prefix::DEFAULT,
        );
        let now = Now::from_micros(1_000_000_000);
        let Decision::Accept(first) = decide(&p, &Prior::default(), now) else {
            panic!("first placement refused")
        };
        let mut addr = first.addr();
        for i in 1..=35 {
            let later = Now::from_micros(now.micros() + i * 1000);
            let prior = Prior::new(first.user(), addr, false);
            match decide(&p, &prior, later) {
                Decision::Refuse(Refusal::Cooldown { .. }) => {}
                other => panic!("attempt {i}: {other:?}"),
            }
            // The caller stores nothing on a refusal: addr stays as it was.
            addr = prior.addr();
        }
        let other_user = Prior::new(UserState::default(), addr, false);
        assert!(matches!(
            decide(&p, &other_user, Now::from_micros(now.micros() + 36_000)),
            Decision::Accept(_)
        ));
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let p = Params::new(
            Cooldown::from_secs(0),
            AddrRate::per_minute(60, 3),
            Ipv6Prefix::DEFAULT,
        );
        let now = Now::from_micros(5_000_000);
        let mut addr = AddrState::default();
        for _ in 0..3 {
            match decide(&p, &Prior::new(UserState::default(), addr, false), now) {
                Decision::Accept(a) => addr = a.addr(),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            decide(&p, &Prior::new(UserState::default(), addr, false), now),
            Decision::Refuse(Refusal::RateLimited {
                retry_after_ms: 1000
            })
        );
        let later = Now::from_micros(6_000_000);
        assert!(matches!(
            decide(&p, &Prior::new(UserState::default(), addr, false), later),
            Decision::Accept(_)
        ));
        assert!(!addr.is_idle_at(later));
        assert!(addr.is_idle_at(Now::from_micros(8_000_000)));
    }

    #[test]
    fn the_clock_never_goes_back() {
        assert_eq!(Now::not_before_ms(5_000_500, 4_000).micros(), 5_000_500);
        assert_eq!(Now::not_before_ms(3_000_500, 4_000).micros(), 4_000_000);
        assert_eq!(Now::from_micros(1_999).millis(), 1);
    }
}
