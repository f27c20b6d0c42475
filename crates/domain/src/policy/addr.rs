//! The key the per-address rule counts under: an IPv4 address as it is, an IPv6 address
//! masked to a prefix, since whoever holds one /64 holds 2^64 addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How many leading bits of an IPv6 address identify one client (32 to 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Prefix {
    /// Prefix length in bits, within [`Ipv6Prefix::MIN`]..=128.
    bits: u8,
}

/// A prefix length outside 32..=128.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an IPv6 prefix length must be from {min} to 128, got {got}", min = Ipv6Prefix::MIN)]
pub struct Ipv6PrefixError {
    /// The length asked for.
    pub got: u32,
}

impl Ipv6Prefix {
    /// Shorter prefixes would put whole providers behind one key.
    pub const MIN: u8 = 32;
    /// One /64 is what a single subscriber or host usually gets.
    pub const DEFAULT: Ipv6Prefix = Ipv6Prefix { bits: 64 };

    pub fn new(bits: u32) -> Result<Self, Ipv6PrefixError> {
        if (u32::from(Self::MIN)..=128).contains(&bits) {
            Ok(Self { bits: bits as u8 })
        } else {
            Err(Ipv6PrefixError { got: bits })
        }
    }

    pub fn bits(self) -> u8 {
        self.bits
    }
}

impl Default for Ipv6Prefix {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What one address counts as. Equal keys share one rate budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// The address (an IPv6 one already masked) and, for IPv6, its prefix length.
    inner: Inner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Inner {
    V4(Ipv4Addr),
    V6(Ipv6Addr, u8),
}

impl AddrKey {
    /// The key of `ip`. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a dual-stack
    /// socket reports IPv4 peers) count as the IPv4 address.
    pub fn new(ip: IpAddr, prefix: Ipv6Prefix) -> Self {
        let inner = match ip.to_canonical() {
            IpAddr::V4(v4) => Inner::V4(v4),
            IpAddr::V6(v6) => {
                let bits = prefix.bits;
                let mask = if bits >= 128 {
                    u128::MAX
                } else {
                    !(u128::MAX >> bits)
                };
                Inner::V6(Ipv6Addr::from(u128::from(v6) & mask), bits)
            }
        };
        Self { inner }
    }
}

/// `203.0.113.7` or `2001:db8:1:2::/64`: the form used in Redis key names and logs.
impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner {
            Inner::V4(a) => a.fmt(f),
            Inner::V6(a, bits) => write!(f, "{a}/{bits}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str, bits: u32) -> String {
        AddrKey::new(s.parse().unwrap(), Ipv6Prefix::new(bits).unwrap()).to_string()
    }

    #[test]
    fn ipv6_is_masked_to_the_prefix() {
        assert_eq!(key("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9", 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:3::1", 64), "2001:db8:1:3::/64");
        assert_eq!(key("2001:db8:1:2:aaaa::1", 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(key("203.0.113.7", 64), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7", 64), "203.0.113.7");
    }

    #[test]
    fn prefix_lengths_are_bounded() {
        assert!(Ipv6Prefix::new(31).is_err());
        assert!(Ipv6Prefix::new(129).is_err());
        assert_eq!(Ipv6Prefix::new(32).unwrap().bits(), 32);
        assert_eq!(Ipv6Prefix::default().bits(), 64);
    }
}
