//! The placement policy: every rule that decides whether a placement is accepted, written
//! once here and executed by both backends (the embedded writer thread calls [`decide`];
//! the shared backend's Redis script mirrors it line by line and is checked against the
//! same [`vectors`]).
//!
//! # Shape
//! [`decide`] is pure: it reads the [`Prior`] state of the user and of the address, the
//! [`Params`] and the moment, runs every check, and only if all pass returns the new state
//! to store ([`Decision::Accept`]). A refused placement therefore spends nothing: no
//! cooldown starts, no rate budget is used and no one-time proof is spent. Each rule is a
//! check in [`decide`] that reads its part of [`Prior`] and contributes its part of the
//! new state.
//!
//! # The rules, in the order they are checked
//! 1. Ban: a ban of the user (any of their identities) or of a network holding the
//!    address refuses until it ends ([`BanRef`]; the caller finds the bans that name the
//!    placer, [`applying_ban`] picks the one to report).
//! 2. Protected area: a pixel inside a protected rectangle may be placed by moderators
//!    only (the caller says whether the pixel is inside one).
//! 3. One-time proof: a proof ([`crate::OnceToken`]) that an accepted placement spent in
//!    the last [`ONCE_TTL_MS`] refuses; an accepted placement spends the one it carries.
//! 4. The user rule, one of two models ([`Params::with_charges`] picks):
//!    - fixed: a user may place again `cooldown` after their last accepted placement;
//!    - charges ([`Charges`]): a pool of up to N placements per user, one regained every
//!      T, kept as a GCRA arrival time per user; a new user has a full pool. An empty
//!      pool is refused as a cooldown until the next charge arrives.
//! 5. Per-address rate: a generic cell rate algorithm (GCRA) per [`AddrKey`]. Each
//!    accepted placement moves the address's theoretical arrival time (TAT) one `period`
//!    later; a placement is allowed while the TAT runs ahead of now by at most the burst
//!    tolerance (`(burst - 1) * period`). Times are unix microseconds, as in the script.
//!    Accounts and anonymous visitors share the address's TAT but have their own rate:
//!    an account's placement costs one account period of it, an anonymous one one
//!    anonymous period.
//!
//! Placements through the load generator's token path (and the admin token's) are
//! `exempt`: no check runs, not even the ban (the operator's own token cannot be banned,
//! and the load generator must measure placing, not moderation); the user's cooldown is
//! still recorded, the address's budget is not touched, no proof is spent, and a charges
//! pool is neither checked nor spent.

mod addr;
mod charges;
mod net;
mod standing;
pub mod vectors;

pub use addr::{AddrKey, Ipv6Prefix, Ipv6PrefixError};
pub use charges::{ChargeStatus, Charges, ChargesError, MAX_CHARGES, MAX_EVERY_MS};
pub use net::{BanNet, BanNetError, V4_MIN_BITS, V6_MIN_BITS, hex_addr, length_tag, net_key};
pub use standing::{BanRef, ONCE_TTL_MS, OnceState, applying_ban};

use crate::placement::Cooldown;
use std::net::IpAddr;

/// The parameters of every rule. Both backends get them from the server's configuration
/// through this one type; the shared backend passes them to its script as arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Time between two accepted placements of one user (the fixed model; zero in the
    /// charges model).
    cooldown: Cooldown,
    /// The charges model's pool, if it is the model in force.
    charges: Option<Charges>,
    /// The per-address GCRA for anonymous visitors.
    addr_rate: AddrRate,
    /// The per-address GCRA for placements by accounts (usually more generous: a login
    /// costs more than a cookie).
    account_rate: AddrRate,
    /// How much of an IPv6 address identifies one client.
    ipv6_prefix: Ipv6Prefix,
}

impl Params {
    /// Accounts get the same rate as anonymous visitors until [`Params::with_account_rate`].
    pub fn new(cooldown: Cooldown, addr_rate: AddrRate, ipv6_prefix: Ipv6Prefix) -> Self {
        Self {
            cooldown,
            charges: None,
            addr_rate,
            account_rate: addr_rate,
            ipv6_prefix,
        }
    }

    /// The charges model instead of the fixed cooldown: the cooldown becomes zero, so
    /// exactly one user rule is in force.
    pub fn with_charges(self, charges: Charges) -> Self {
        Self {
            cooldown: Cooldown::from_millis(0),
            charges: Some(charges),
            ..self
        }
    }

    /// The charges model's pool, if it is the model in force.
    pub fn charges(&self) -> Option<Charges> {
        self.charges
    }

    /// What `user`'s state allows at `now_ms`: when they may place next and, in the
    /// charges model, their pool. What `GET /api/config` and a placement's answer show.
    pub fn quota(&self, user: UserState, now_ms: i64) -> Quota {
        let fixed = user
            .last_ms
            .map(|last| self.cooldown.next_at(last))
            .filter(|&at| self.cooldown.as_millis() > 0 && at > now_ms);
        let pool = self.charges.map(|c| (c, c.next_at(user.tat_ms, now_ms)));
        Quota {
            next_at_ms: fixed.max(pool.and_then(|(_, at)| at)),
            charges: pool.map(|(c, _)| c.status(user.tat_ms, now_ms)),
        }
    }

    pub fn with_account_rate(self, account_rate: AddrRate) -> Self {
        Self {
            account_rate,
            ..self
        }
    }

    pub fn account_rate(&self) -> AddrRate {
        self.account_rate
    }

    /// The rate that applies to a placement by an account or by an anonymous visitor.
    pub fn rate_for(&self, account: bool) -> AddrRate {
        if account {
            self.account_rate
        } else {
            self.addr_rate
        }
    }

    /// Whether neither rate limits anything: the address state need not be read.
    pub fn rates_off(&self) -> bool {
        self.addr_rate.is_off() && self.account_rate.is_off()
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
    /// Time of the last accepted placement (unix ms), if it may still matter (the fixed
    /// model).
    last_ms: Option<i64>,
    /// The charges pool's theoretical arrival time (unix ms); `None` or any time in the
    /// past is a full pool (the charges model).
    tat_ms: Option<i64>,
}

impl UserState {
    pub fn new(last_ms: Option<i64>) -> Self {
        Self {
            last_ms,
            tat_ms: None,
        }
    }

    /// With the charges pool's arrival time.
    pub fn with_tat(self, tat_ms: Option<i64>) -> Self {
        Self { tat_ms, ..self }
    }

    pub fn last_ms(&self) -> Option<i64> {
        self.last_ms
    }

    pub fn tat_ms(&self) -> Option<i64> {
        self.tat_ms
    }
}

/// What a user may do now: [`Params::quota`] of their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// When they may place next (unix ms); `None` if now.
    next_at_ms: Option<i64>,
    /// Their pool, in the charges model.
    charges: Option<ChargeStatus>,
}

impl Quota {
    pub fn next_at_ms(&self) -> Option<i64> {
        self.next_at_ms
    }

    pub fn charges(&self) -> Option<ChargeStatus> {
        self.charges
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
    /// The ban that applies to the placer (see [`applying_ban`]), if any.
    ban: Option<BanRef>,
    /// The pixel lies inside a protected area.
    protected: bool,
    /// The placer is a moderator or an admin: protected areas do not stop them.
    moderator: bool,
    /// The placer is logged in: the account rate applies instead of the anonymous one.
    account: bool,
    /// The one-time proof the placement carries, with what the store knows of it.
    once: Option<OnceState>,
}

impl Prior {
    /// An anonymous visitor's attempt on an unprotected pixel, without ban or proof; the
    /// `with_` methods add the rest.
    pub fn new(user: UserState, addr: AddrState, exempt: bool) -> Self {
        Self {
            user,
            addr,
            exempt,
            ..Self::default()
        }
    }

    pub fn with_ban(self, ban: Option<BanRef>) -> Self {
        Self { ban, ..self }
    }

    pub fn with_protected(self, protected: bool) -> Self {
        Self { protected, ..self }
    }

    pub fn with_standing(self, moderator: bool, account: bool) -> Self {
        Self {
            moderator,
            account,
            ..self
        }
    }

    pub fn with_once(self, once: Option<OnceState>) -> Self {
        Self { once, ..self }
    }

    pub fn ban(&self) -> Option<BanRef> {
        self.ban
    }

    pub fn protected(&self) -> bool {
        self.protected
    }

    pub fn moderator(&self) -> bool {
        self.moderator
    }

    pub fn account(&self) -> bool {
        self.account
    }

    pub fn once(&self) -> Option<OnceState> {
        self.once
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
    /// Until when the placement's one-time proof is to be remembered as spent (unix ms),
    /// if it carried one.
    once_until_ms: Option<i64>,
}

impl Accepted {
    pub fn once_until_ms(&self) -> Option<i64> {
        self.once_until_ms
    }

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
    /// A ban applies; the caller shows its reason.
    Banned { ban: BanRef },
    /// The pixel is protected and the placer is no moderator.
    Protected,
    /// The one-time proof was spent by an accepted placement.
    OnceSpent,
    /// The user's cooldown runs until `next_at_ms` (unix ms); in the charges model, their
    /// pool is empty until the next charge arrives then.
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
    if prior.exempt {
        return Ok(accepted(params, prior.user, prior.addr, None, now));
    }
    if let Some(ban) = prior.ban.filter(|b| b.applies_at(now)) {
        return Err(Refusal::Banned { ban });
    }
    if prior.protected && !prior.moderator {
        return Err(Refusal::Protected);
    }
    if prior.once.is_some_and(|o| o.is_spent_at(now)) {
        return Err(Refusal::OnceSpent);
    }
    let user = cooldown_rule(params.cooldown, prior.user, now)?;
    let user = charges_rule(params.charges, user, now)?;
    let addr = addr_rate_rule(params.rate_for(prior.account), prior.addr, now)?;
    let once_until = prior.once.map(|_| now.millis() + ONCE_TTL_MS);
    Ok(accepted(params, user, addr, once_until, now))
}

fn accepted(
    params: &Params,
    user: UserState,
    addr: AddrState,
    once_until_ms: Option<i64>,
    now: Now,
) -> Accepted {
    // The cooldown is recorded even for exempt placements, as a normal one would be.
    let user = if params.cooldown.as_millis() > 0 {
        UserState {
            last_ms: Some(now.millis()),
            ..user
        }
    } else {
        user
    };
    // In the charges model: now while a charge is left, else when the next one arrives.
    let pool_next = params
        .charges
        .and_then(|c| c.next_at(user.tat_ms, now.millis()));
    Accepted {
        user,
        addr,
        at_ms: now.millis(),
        next_at_ms: params
            .cooldown
            .next_at(now.millis())
            .max(pool_next.unwrap_or(i64::MIN)),
        once_until_ms,
    }
}

/// Rule 4. Returns the user state to keep (the caller records the new placement time).
fn cooldown_rule(cooldown: Cooldown, user: UserState, now: Now) -> Result<UserState, Refusal> {
    match cooldown.check(user.last_ms, now.millis()) {
        Ok(_) => Ok(user),
        Err(next_at_ms) => Err(Refusal::Cooldown { next_at_ms }),
    }
}

/// Rule 4 in the charges model. Returns the user state with one charge spent.
fn charges_rule(charges: Option<Charges>, user: UserState, now: Now) -> Result<UserState, Refusal> {
    let Some(c) = charges else {
        return Ok(user);
    };
    match c.spend(user.tat_ms, now.millis()) {
        Ok(tat) => Ok(user.with_tat(Some(tat))),
        Err(next_at_ms) => Err(Refusal::Cooldown { next_at_ms }),
    }
}

/// Rule 5, the GCRA. Returns the address's new state.
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
mod tests;
