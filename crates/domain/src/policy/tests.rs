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
