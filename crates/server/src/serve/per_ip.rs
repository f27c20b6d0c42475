//! Counting what one client address holds (TCP connections, websockets), so that one
//! address cannot take every descriptor or every websocket slot of an instance.
//!
//! IPv6 addresses are counted by their /64: whoever has one address of a /64 usually has
//! all 2^64 of them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The key an address is counted under: IPv4 as it is, IPv6 by its /64 (an IPv4-mapped
/// IPv6 address counts as its IPv4 address).
pub fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Open items per address, at most `max` each. Entries go when their count reaches zero,
/// so the map holds at most as many entries as items are open. Cheap to clone.
#[derive(Clone)]
pub struct PerIp {
    /// Counts by [`key`].
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Most items one address may hold; 0 for no limit.
    max: usize,
}

impl PerIp {
    pub fn new(max: usize) -> Self {
        PerIp {
            counts: Arc::default(),
            max,
        }
    }

    /// A permit for one more item of `ip`, or `None` if it holds `max` already. The item
    /// counts until the permit is dropped.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<Permit> {
        if self.max == 0 {
            return Some(Permit(None));
        }
        let k = key(ip);
        let mut counts = self.counts.lock().expect("per-ip lock");
        let n = counts.entry(k).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Permit(Some((self.clone(), k))))
    }

    /// Items `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().expect("per-ip lock");
        counts.get(&key(ip)).copied().unwrap_or(0)
    }

    fn release(&self, k: IpAddr) {
        let mut counts = self.counts.lock().expect("per-ip lock");
        if let Some(n) = counts.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&k);
            }
        }
    }
}

/// One counted item; releases its slot when dropped.
pub struct Permit(
    /// The counter and key to release, `None` when there is no limit.
    Option<(PerIp, IpAddr)>,
);

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((per_ip, k)) = self.0.take() {
            per_ip.release(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_max_and_gets_its_slots_back() {
        let caps = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = caps.try_acquire(a).unwrap();
        let _p2 = caps.try_acquire(a).unwrap();
        assert!(caps.try_acquire(a).is_none());
        assert!(
            caps.try_acquire(b).is_some(),
            "another address is not affected"
        );
        drop(p1);
        assert!(caps.try_acquire(a).is_some());
        assert_eq!(caps.held(b), 0, "released entries are removed");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let caps = PerIp::new(1);
        let _p = caps
            .try_acquire("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        assert!(
            caps.try_acquire("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none()
        );
        assert!(
            caps.try_acquire("2001:db8:1:3::1".parse().unwrap())
                .is_some()
        );
        let _q = caps.try_acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(
            caps.try_acquire("::ffff:192.0.2.7".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn zero_means_no_limit() {
        let caps = PerIp::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..100).map(|_| caps.try_acquire(a).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
