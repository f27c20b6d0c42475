//! The domain's checks of the policy: every vector, and the properties behind them.

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

#[test]
fn every_network_name_vector_holds() {
    for (ip, bits, want) in vectors::net_vectors() {
        assert_eq!(net_key(ip.parse().unwrap(), bits), want, "{ip}/{bits}");
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

/// The charges model through `decide` and `quota`: a full pool, spent down, refused (the
/// refusal spends nothing), one back after a period, never more than the max.
#[test]
fn a_pool_spent_down_refused_and_regained() {
    const T: i64 = 10_000;
    let p = Params::new(Cooldown::from_secs(60), AddrRate::OFF, Ipv6Prefix::DEFAULT)
        .with_charges(Charges::new(4, T).unwrap());
    assert_eq!(
        p.cooldown().as_millis(),
        0,
        "the charges model replaces the cooldown"
    );
    let now_ms = 1_000_000;
    let now = Now::from_micros(now_ms * 1000);
    let full = p.quota(UserState::default(), now_ms);
    assert_eq!(full.next_at_ms(), None);
    assert_eq!(
        full.charges(),
        Some(ChargeStatus {
            charges: 4,
            next_charge_at_ms: None
        })
    );
    let mut user = UserState::default();
    for left in (0..4).rev() {
        match decide(&p, &Prior::new(user, AddrState::default(), false), now) {
            Decision::Accept(a) => {
                user = a.user();
                let q = p.quota(user, now_ms);
                assert_eq!(q.charges().unwrap().charges, left);
                assert_eq!(q.charges().unwrap().next_charge_at_ms, Some(now_ms + T));
                let next = if left == 0 { now_ms + T } else { now_ms };
                assert_eq!(a.next_at_ms(), next, "{left} left");
                assert_eq!(q.next_at_ms(), (left == 0).then_some(now_ms + T));
            }
            other => panic!("{left} left: {other:?}"),
        }
    }
    for i in 1..10 {
        let later = Now::from_micros((now_ms + i) * 1000);
        let prior = Prior::new(user, AddrState::default(), false);
        assert_eq!(
            decide(&p, &prior, later),
            Decision::Refuse(Refusal::Cooldown {
                next_at_ms: now_ms + T
            })
        );
    }
    // One charge back after one period, all after four, never a fifth.
    assert_eq!(p.quota(user, now_ms + T).charges().unwrap().charges, 1);
    assert_eq!(
        p.quota(user, now_ms + T)
            .charges()
            .unwrap()
            .next_charge_at_ms,
        Some(now_ms + 2 * T)
    );
    assert_eq!(p.quota(user, now_ms + 4 * T).charges().unwrap().charges, 4);
    assert_eq!(p.quota(user, now_ms + 40 * T).charges().unwrap().charges, 4);
    let back = Now::from_micros((now_ms + T) * 1000);
    let Decision::Accept(a) = decide(&p, &Prior::new(user, AddrState::default(), false), back)
    else {
        panic!("a charge came back")
    };
    assert_eq!(p.quota(a.user(), now_ms + T).charges().unwrap().charges, 0);
}

#[test]
fn the_fixed_model_quota_is_the_cooldown() {
    let p = Params::new(Cooldown::from_secs(5), AddrRate::OFF, Ipv6Prefix::DEFAULT);
    let q = p.quota(UserState::new(Some(1_000)), 2_000);
    assert_eq!(q.next_at_ms(), Some(6_000));
    assert_eq!(q.charges(), None);
    assert_eq!(
        p.quota(UserState::new(Some(1_000)), 6_000).next_at_ms(),
        None
    );
}
