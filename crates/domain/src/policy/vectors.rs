//! Test vectors of the placement policy: (params, prior state, now) and the decision with
//! the state it leaves. The domain's unit test checks [`super::decide`] against them, and
//! `crates/store/tests/policy_vectors.rs` runs each through the real Redis script, so the
//! two implementations cannot drift apart.
//!
//! Every `now` is a whole millisecond in the year 2100: the store test makes the script
//! decide at that moment by setting the script's clock floor (its "never behind the last
//! placement" key) to it, since Redis's own clock cannot be set.

use super::{
    Accepted, AddrRate, AddrState, Decision, Ipv6Prefix, Now, Params, Prior, Refusal, UserState,
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
    })
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
    ]
}
