//! Test vectors of the placement policy: (params, prior state, now) and the decision with
//! the state it leaves. The domain's unit test checks [`super::decide`] against them, and
//! `crates/store/tests/policy_vectors.rs` runs each through the real Redis script, so the
//! two implementations cannot drift apart.
//!
//! Every `now` is a whole millisecond in the year 2100: the store test makes the script
//! decide at that moment by setting the script's clock floor (its "never behind the last
//! placement" key) to it, since Redis's own clock cannot be set.

use super::{
    Accepted, AddrRate, AddrState, BanRef, Charges, Decision, Ipv6Prefix, Now, ONCE_TTL_MS,
    OnceState, Params, Prior, Refusal, UserState,
};
use crate::placement::Cooldown;

/// 2100-01-01T00:00:00Z in unix ms.
pub const BASE_MS: i64 = 4_102_444_800_000;

/// One case.
#[derive(Debug, Clone)]
pub struct Vector {
    /// What it shows, for failure messages.
    name: &'static str,
    /// The rules' parameters.
    params: Params,
    /// The state before the attempt.
    prior: Prior,
    /// The moment of the attempt (a whole ms, see the module docs).
    now: Now,
    /// What must be decided.
    expect: Decision,
}

impl Vector {
    pub fn name(&self) -> &'static str {
        self.name
    }
    pub fn params(&self) -> Params {
        self.params
    }
    pub fn prior(&self) -> Prior {
        self.prior
    }
    pub fn now(&self) -> Now {
        self.now
    }
    pub fn expect(&self) -> Decision {
        self.expect
    }
}

const SEC_US: i64 = 1_000_000;

fn at(offset_ms: i64) -> Now {
    Now::from_micros((BASE_MS + offset_ms) * 1000)
}

/// Unix µs `offset_us` after [`BASE_MS`].
fn us(offset_us: i64) -> i64 {
    BASE_MS * 1000 + offset_us
}

fn prior(last_offset_ms: Option<i64>, tat_offset_us: Option<i64>, exempt: bool) -> Prior {
    Prior::new(
        UserState::new(last_offset_ms.map(|o| BASE_MS + o)),
        AddrState::new(tat_offset_us.map(us)),
        exempt,
    )
}

fn accept(user_last: Option<i64>, tat_offset_us: Option<i64>, next_at_offset_ms: i64) -> Decision {
    Decision::Accept(Accepted {
        user: UserState::new(user_last.map(|o| BASE_MS + o)),
        addr: AddrState::new(tat_offset_us.map(us)),
        at_ms: BASE_MS,
        next_at_ms: BASE_MS + next_at_offset_ms,
        once_until_ms: None,
    })
}

/// A prior in the charges model: the pool's arrival time `tat_offset_ms` after
/// [`BASE_MS`] (`None`: no state, a full pool).
fn pool_prior(tat_offset_ms: Option<i64>, addr_tat_offset_us: Option<i64>, exempt: bool) -> Prior {
    Prior::new(
        UserState::new(None).with_tat(tat_offset_ms.map(|o| BASE_MS + o)),
        AddrState::new(addr_tat_offset_us.map(us)),
        exempt,
    )
}

/// [`accept`] in the charges model, leaving the pool's arrival time at `tat_offset_ms`.
fn accept_pool(
    tat_offset_ms: Option<i64>,
    addr_tat_offset_us: Option<i64>,
    next_at_offset_ms: i64,
) -> Decision {
    match accept(None, addr_tat_offset_us, next_at_offset_ms) {
        Decision::Accept(a) => Decision::Accept(Accepted {
            user: a.user.with_tat(tat_offset_ms.map(|o| BASE_MS + o)),
            ..a
        }),
        d => d,
    }
}

/// [`accept`] of a placement that spends its one-time proof.
fn accept_spending(
    user_last: Option<i64>,
    tat_offset_us: Option<i64>,
    next_at_offset_ms: i64,
) -> Decision {
    match accept(user_last, tat_offset_us, next_at_offset_ms) {
        Decision::Accept(a) => Decision::Accept(Accepted {
            once_until_ms: Some(BASE_MS + ONCE_TTL_MS),
            ..a
        }),
        d => d,
    }
}

/// A ban ending `offset_ms` after [`BASE_MS`] (`None`: never).
pub fn ban(id: u64, until_offset_ms: Option<i64>) -> BanRef {
    BanRef::new(id, until_offset_ms.map(|o| BASE_MS + o))
}

/// A one-time proof spent until `offset_ms` after [`BASE_MS`] (`None`: never spent).
fn once(spent_until_offset_ms: Option<i64>) -> Option<OnceState> {
    Some(OnceState::new(spent_until_offset_ms.map(|o| BASE_MS + o)))
}

/// One case of the network names the ban rule looks up: the address, the prefix length
/// and the name [`super::net_key`] gives (and the script must build).
pub fn net_vectors() -> Vec<(&'static str, u8, &'static str)> {
    vec![
        ("203.0.113.7", 32, "4:cb007107/32"),
        ("203.0.113.7", 24, "4:cb007100/24"),
        ("203.0.113.7", 22, "4:cb007000/22"),
        ("203.0.113.7", 21, "4:cb007000/21"),
        ("203.0.113.255", 23, "4:cb007000/23"),
        ("10.255.1.2", 9, "4:0a800000/9"),
        ("10.255.1.2", 8, "4:0a000000/8"),
        ("::ffff:203.0.113.7", 24, "4:cb007100/24"),
        (
            "2001:db8:1:2:aaaa::1",
            64,
            "6:20010db8000100020000000000000000/64",
        ),
        (
            "2001:db8:1:2:aaaa::1",
            63,
            "6:20010db8000100020000000000000000/63",
        ),
        (
            "2001:db8:1:3:aaaa::1",
            63,
            "6:20010db8000100020000000000000000/63",
        ),
        (
            "2001:db8:1:3:aaaa::1",
            49,
            "6:20010db8000100000000000000000000/49",
        ),
        (
            "2001:8db8:ffff:3::1",
            17,
            "6:20018000000000000000000000000000/17",
        ),
        (
            "2001:db8:1:3:aaaa::1",
            128,
            "6:20010db800010003aaaa000000000001/128",
        ),
        (
            "2001:db8:1:3:aaaa::1",
            127,
            "6:20010db800010003aaaa000000000000/127",
        ),
    ]
}

/// Every case, each decided at [`BASE_MS`].
pub fn vectors() -> Vec<Vector> {
    // 60 s cooldown; 60 per minute with a burst of 3: period 1 s, tolerance 2 s.
    let std = Params::new(
        Cooldown::from_secs(60),
        AddrRate::per_minute(60, 3),
        Ipv6Prefix::DEFAULT,
    );
    let no_cooldown = Params::new(
        Cooldown::from_secs(0),
        AddrRate::per_minute(60, 3),
        Ipv6Prefix::DEFAULT,
    );
    let nothing = Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT);
    let cooldown_only = Params::new(Cooldown::from_secs(5), AddrRate::OFF, Ipv6Prefix::DEFAULT);
    let one_per_minute = Params::new(
        Cooldown::from_secs(0),
        AddrRate::per_minute(1, 1),
        Ipv6Prefix::DEFAULT,
    );
    // Accounts get 60 per minute with a burst of 6 where anonymous visitors get 3.
    let accounts = std.with_account_rate(AddrRate::per_minute(120, 6));
    // The charges model: 3 charges, one back every 30 s, with the usual address rate.
    const T: i64 = 30_000;
    let pool = std.with_charges(Charges::new(3, T).expect("valid"));
    let pool_only = nothing.with_charges(Charges::new(3, T).expect("valid"));
    let pool_of_one = nothing.with_charges(Charges::new(1, 5_000).expect("valid"));
    let v = |name, params, prior, expect| Vector {
        name,
        params,
        prior,
        now: at(0),
        expect,
    };
    vec![
        v(
            "a fresh user on a fresh address is accepted",
            std,
            prior(None, None, false),
            accept(Some(0), Some(SEC_US), 60_000),
        ),
        v(
            "a running cooldown refuses",
            std,
            prior(Some(-1_000), Some(-SEC_US), false),
            Decision::Refuse(Refusal::Cooldown {
                next_at_ms: BASE_MS + 59_000,
            }),
        ),
        v(
            "a cooldown ends exactly cooldown after the last placement",
            std,
            prior(Some(-60_000), None, false),
            accept(Some(0), Some(SEC_US), 60_000),
        ),
        v(
            "the cooldown is checked first, and refusing spends no budget",
            std,
            prior(Some(-1_000), Some(3 * SEC_US), false),
            Decision::Refuse(Refusal::Cooldown {
                next_at_ms: BASE_MS + 59_000,
            }),
        ),
        v(
            "an address past its burst is refused, with the wait rounded up to ms",
            std,
            prior(None, Some(2 * SEC_US + 500_000), false),
            Decision::Refuse(Refusal::RateLimited {
                retry_after_ms: 500,
            }),
        ),
        v(
            "one microsecond over the tolerance waits one ms",
            std,
            prior(None, Some(2 * SEC_US + 1), false),
            Decision::Refuse(Refusal::RateLimited { retry_after_ms: 1 }),
        ),
        v(
            "exactly at the tolerance is still allowed",
            std,
            prior(None, Some(2 * SEC_US), false),
            accept(Some(0), Some(3 * SEC_US), 60_000),
        ),
        v(
            "within the burst the arrival time moves one period on",
            std,
            prior(None, Some(SEC_US + 500_000), false),
            accept(Some(0), Some(2 * SEC_US + 500_000), 60_000),
        ),
        v(
            "an arrival time in the past counts from now",
            std,
            prior(Some(-3_600_000), Some(-5 * SEC_US), false),
            accept(Some(0), Some(SEC_US), 60_000),
        ),
        v(
            "the exempt path skips both checks, records the cooldown, keeps the budget",
            std,
            prior(Some(-1_000), Some(3 * SEC_US), true),
            accept(Some(0), Some(3 * SEC_US), 60_000),
        ),
        v(
            "without a cooldown the user state is left alone",
            no_cooldown,
            prior(Some(-5), None, false),
            accept(Some(-5), Some(SEC_US), 0),
        ),
        v(
            "without a cooldown the address limit still applies",
            no_cooldown,
            prior(None, Some(2 * SEC_US + 250_000), false),
            Decision::Refuse(Refusal::RateLimited {
                retry_after_ms: 250,
            }),
        ),
        v(
            "with every rule off everything is accepted",
            nothing,
            prior(Some(-5), Some(9 * SEC_US), false),
            accept(Some(-5), Some(9 * SEC_US), 0),
        ),
        v(
            "a cooldown alone leaves the address state alone",
            cooldown_only,
            prior(None, Some(9 * SEC_US), false),
            accept(Some(0), Some(9 * SEC_US), 5_000),
        ),
        v(
            "a burst of one on a fresh address",
            one_per_minute,
            prior(None, None, false),
            accept(None, Some(60 * SEC_US), 0),
        ),
        v(
            "a burst of one, used",
            one_per_minute,
            prior(None, Some(60 * SEC_US), false),
            Decision::Refuse(Refusal::RateLimited {
                retry_after_ms: 60_000,
            }),
        ),
        v(
            "a ban refuses, before the cooldown, spending nothing",
            std,
            prior(Some(-1_000), Some(3 * SEC_US), false).with_ban(Some(ban(7, None))),
            Decision::Refuse(Refusal::Banned { ban: ban(7, None) }),
        ),
        v(
            "a ban with an end refuses until then",
            std,
            prior(None, None, false).with_ban(Some(ban(8, Some(1)))),
            Decision::Refuse(Refusal::Banned {
                ban: ban(8, Some(1)),
            }),
        ),
        v(
            "a ban stops applying exactly at its end",
            std,
            prior(None, None, false).with_ban(Some(ban(9, Some(0)))),
            accept(Some(0), Some(SEC_US), 60_000),
        ),
        v(
            "a ban applies to moderators too",
            std,
            prior(None, None, false)
                .with_ban(Some(ban(3, None)))
                .with_standing(true, true),
            Decision::Refuse(Refusal::Banned { ban: ban(3, None) }),
        ),
        v(
            "a protected pixel refuses a visitor, before the cooldown",
            std,
            prior(Some(-1_000), None, false).with_protected(true),
            Decision::Refuse(Refusal::Protected),
        ),
        v(
            "a protected pixel refuses an account that is no moderator",
            std,
            prior(None, None, false)
                .with_protected(true)
                .with_standing(false, true),
            Decision::Refuse(Refusal::Protected),
        ),
        v(
            "a moderator places on a protected pixel, under the usual limits",
            std,
            prior(None, None, false)
                .with_protected(true)
                .with_standing(true, false),
            accept(Some(0), Some(SEC_US), 60_000),
        ),
        v(
            "a moderator still has a cooldown",
            std,
            prior(Some(-1_000), None, false)
                .with_protected(true)
                .with_standing(true, false),
            Decision::Refuse(Refusal::Cooldown {
                next_at_ms: BASE_MS + 59_000,
            }),
        ),
        v(
            "the ban is checked before the protected area",
            std,
            prior(None, None, false)
                .with_protected(true)
                .with_ban(Some(ban(4, None))),
            Decision::Refuse(Refusal::Banned { ban: ban(4, None) }),
        ),
        v(
            "the exempt path skips bans and protected areas too",
            std,
            prior(None, None, true)
                .with_protected(true)
                .with_ban(Some(ban(5, None))),
            accept(Some(0), None, 60_000),
        ),
        v(
            "a fresh one-time proof is accepted and spent",
            std,
            prior(None, None, false).with_once(once(None)),
            accept_spending(Some(0), Some(SEC_US), 60_000),
        ),
        v(
            "a spent proof refuses, before the cooldown and the rate",
            std,
            prior(Some(-1_000), Some(3 * SEC_US), false).with_once(once(Some(1))),
            Decision::Refuse(Refusal::OnceSpent),
        ),
        v(
            "a proof spent long ago is forgotten",
            std,
            prior(None, None, false).with_once(once(Some(0))),
            accept_spending(Some(0), Some(SEC_US), 60_000),
        ),
        v(
            "a cooldown refusal does not spend the proof",
            std,
            prior(Some(-1_000), None, false).with_once(once(None)),
            Decision::Refuse(Refusal::Cooldown {
                next_at_ms: BASE_MS + 59_000,
            }),
        ),
        v(
            "a protected refusal does not spend the proof",
            std,
            prior(None, None, false)
                .with_protected(true)
                .with_once(once(None)),
            Decision::Refuse(Refusal::Protected),
        ),
        v(
            "the exempt path neither checks nor spends a proof",
            std,
            prior(None, None, true).with_once(once(Some(1))),
            accept(Some(0), None, 60_000),
        ),
        v(
            "an account is held to the account rate",
            accounts,
            prior(None, Some(2 * SEC_US + 500_000), false).with_standing(false, true),
            accept(Some(0), Some(3 * SEC_US), 60_000),
        ),
        v(
            "an anonymous visitor at the same address is held to the anonymous rate",
            accounts,
            prior(None, Some(2 * SEC_US + 500_000), false),
            Decision::Refuse(Refusal::RateLimited {
                retry_after_ms: 500,
            }),
        ),
        v(
            "an account past its own burst is refused",
            accounts,
            prior(None, Some(2 * SEC_US + 500_001), false).with_standing(false, true),
            Decision::Refuse(Refusal::RateLimited { retry_after_ms: 1 }),
        ),
        v(
            "charges: a new user has a full pool and spends one",
            pool,
            pool_prior(None, None, false),
            accept_pool(Some(T), Some(SEC_US), 0),
        ),
        v(
            "charges: with two left one more is spent, and one is still left",
            pool,
            pool_prior(Some(T), None, false),
            accept_pool(Some(2 * T), Some(SEC_US), 0),
        ),
        v(
            "charges: the last charge is spent; the next place waits for the next charge",
            pool,
            pool_prior(Some(2 * T), None, false),
            accept_pool(Some(3 * T), Some(SEC_US), T),
        ),
        v(
            "charges: an empty pool refuses until the next charge, spending no address budget",
            pool,
            pool_prior(Some(3 * T), Some(2 * SEC_US + 500_000), false),
            Decision::Refuse(Refusal::Cooldown {
                next_at_ms: BASE_MS + T,
            }),
        ),
        v(
            "charges: one ms before a charge is back still refuses",
            pool,
            pool_prior(Some(2 * T + 1), None, false),
            Decision::Refuse(Refusal::Cooldown {
                next_at_ms: BASE_MS + 1,
            }),
        ),
        v(
            "charges: a pool idle for long is full, counted from now (capped at the max)",
            pool,
            pool_prior(Some(-3_600_000), None, false),
            accept_pool(Some(T), Some(SEC_US), 0),
        ),
        v(
            "charges: an address over its budget refuses and leaves the pool alone",
            pool,
            pool_prior(Some(T), Some(2 * SEC_US + 1), false),
            Decision::Refuse(Refusal::RateLimited { retry_after_ms: 1 }),
        ),
        v(
            "charges: the exempt path neither checks nor spends the pool",
            pool,
            pool_prior(Some(3 * T), Some(3 * SEC_US), true),
            accept_pool(Some(3 * T), Some(3 * SEC_US), T),
        ),
        v(
            "charges: a last placement time of the fixed model is ignored and kept",
            pool_only,
            Prior::new(
                UserState::new(Some(BASE_MS - 1_000)),
                AddrState::new(None),
                false,
            ),
            Decision::Accept(Accepted {
                user: UserState::new(Some(BASE_MS - 1_000)).with_tat(Some(BASE_MS + T)),
                addr: AddrState::new(None),
                at_ms: BASE_MS,
                next_at_ms: BASE_MS,
                once_until_ms: None,
            }),
        ),
        v(
            "charges: a pool of one behaves as a fixed cooldown",
            pool_of_one,
            pool_prior(None, None, false),
            accept_pool(Some(5_000), None, 5_000),
        ),
        v(
            "charges: a pool of one, spent",
            pool_of_one,
            pool_prior(Some(4_000), None, false),
            Decision::Refuse(Refusal::Cooldown {
                next_at_ms: BASE_MS + 4_000,
            }),
        ),
        v(
            "charges: a ban refuses before the pool, spending nothing",
            pool,
            pool_prior(None, None, false).with_ban(Some(ban(6, None))),
            Decision::Refuse(Refusal::Banned { ban: ban(6, None) }),
        ),
    ]
}
