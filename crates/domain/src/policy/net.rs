//! Networks that can be banned, and the canonical name of the network of one length that
//! holds an address: what the ban rule looks bans up by. The shared backend's script
//! computes the same name from the address's hex form ([`hex_addr`]), checked against
//! the same vectors ([`super::vectors::net_vectors`]).

use super::Ipv6Prefix;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Shortest IPv4 network a ban may name: a /8 is already a sixteenth of a million hosts.
pub const V4_MIN_BITS: u8 = 8;
/// Shortest IPv6 network a ban may name.
pub const V6_MIN_BITS: u8 = 16;

/// A banned address or network, masked to its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BanNet {
    /// The network's first address (IPv4 for IPv4-mapped input).
    addr: IpAddr,
    /// Its prefix length, within the family's bounds.
    bits: u8,
}

/// Why a ban's `ip` is not a network it can name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanNetError {
    #[error("not an IP address or CIDR network: {0:?}")]
    Syntax(String),
    #[error("an IPv4 prefix length must be from {min} to 32, got {got}", min = V4_MIN_BITS)]
    V4Bits { got: u32 },
    #[error("an IPv6 prefix length must be from {min} to 128, got {got}", min = V6_MIN_BITS)]
    V6Bits { got: u32 },
}

impl BanNet {
    /// `203.0.113.7` (a /32), `203.0.113.0/24`, `2001:db8::1` (its network of
    /// `ipv6_prefix`, as the rate limit counts it), `2001:db8::/48`. IPv4-mapped IPv6
    /// (`::ffff:203.0.113.7`, `::ffff:203.0.113.0/120`) names the IPv4 network. Host bits
    /// are masked off.
    pub fn parse(s: &str, ipv6_prefix: Ipv6Prefix) -> Result<Self, BanNetError> {
        let syntax = || BanNetError::Syntax(s.chars().take(64).collect());
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => {
                let bits: u32 = b.parse().map_err(|_| syntax())?;
                (a.parse::<IpAddr>().map_err(|_| syntax())?, Some(bits))
            }
            None => (s.trim().parse::<IpAddr>().map_err(|_| syntax())?, None),
        };
        // IPv4-mapped: the IPv4 network, its length less the 96 bits of the mapping.
        let (addr, bits) = match (addr, addr.to_canonical()) {
            (IpAddr::V6(_), IpAddr::V4(v4)) => (
                IpAddr::V4(v4),
                match bits {
                    Some(b) if b < 96 => return Err(BanNetError::V6Bits { got: b }),
                    b => b.map(|b| b - 96),
                },
            ),
            (a, _) => (a, bits),
        };
        let bits = match addr {
            IpAddr::V4(_) => {
                let b = bits.unwrap_or(32);
                if !(u32::from(V4_MIN_BITS)..=32).contains(&b) {
                    return Err(BanNetError::V4Bits { got: b });
                }
                b as u8
            }
            IpAddr::V6(_) => {
                let b = bits.unwrap_or(u32::from(ipv6_prefix.bits()));
                if !(u32::from(V6_MIN_BITS)..=128).contains(&b) {
                    return Err(BanNetError::V6Bits { got: b });
                }
                b as u8
            }
        };
        Ok(Self {
            addr: mask(addr, bits),
            bits,
        })
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The name bans of this network are kept under: [`net_key`] of its address.
    pub fn key(&self) -> String {
        net_key(self.addr, self.bits)
    }

    /// `4/24` or `6/64`: the family and length, of which the ban rule tries each in use.
    pub fn length_tag(&self) -> String {
        length_tag(self.addr, self.bits)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.bits) == self.addr
    }
}

/// CIDR notation: `203.0.113.0/24`, `2001:db8:1:2::/64`.
impl fmt::Display for BanNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits.min(32)))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// `4:cb007109` or `6:` and 32 hex digits: an address (IPv4-mapped as IPv4) as the
/// placement script receives it, to mask it without parsing.
pub fn hex_addr(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => format!("4:{:08x}", u32::from(a)),
        IpAddr::V6(a) => format!("6:{:032x}", u128::from(a)),
    }
}

/// The canonical name of the network of `bits` that holds `ip`: the family, the masked
/// address as fixed-width lowercase hex, the length: `4:cb007100/24`. The placement
/// script builds the same string from [`hex_addr`] by keeping `bits / 4` hex digits,
/// masking the next one and padding with zeros.
pub fn net_key(ip: IpAddr, bits: u8) -> String {
    let ip = ip.to_canonical();
    let hex = hex_addr(mask(ip, bits));
    format!("{hex}/{bits}")
}

/// `4/24`: the family and length of a network of `bits` holding `ip`.
pub fn length_tag(ip: IpAddr, bits: u8) -> String {
    let family = if ip.to_canonical().is_ipv4() { 4 } else { 6 };
    format!("{family}/{bits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, BanNetError> {
        BanNet::parse(s, Ipv6Prefix::DEFAULT).map(|n| n.to_string())
    }

    #[test]
    fn networks_parse_and_mask() {
        assert_eq!(parse("203.0.113.7").unwrap(), "203.0.113.7/32");
        assert_eq!(parse("203.0.113.7/24").unwrap(), "203.0.113.0/24");
        assert_eq!(parse("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(parse("2001:db8:1:2:aaaa::1").unwrap(), "2001:db8:1:2::/64");
        assert_eq!(parse("2001:db8:1:2::1/48").unwrap(), "2001:db8:1::/48");
        assert_eq!(parse("2001:db8::1/128").unwrap(), "2001:db8::1/128");
        assert_eq!(parse("::ffff:203.0.113.7").unwrap(), "203.0.113.7/32");
        assert_eq!(parse("::ffff:203.0.113.7/120").unwrap(), "203.0.113.0/24");
        assert_eq!(
            BanNet::parse("2001:db8:1:2:3::1", Ipv6Prefix::new(48).unwrap())
                .unwrap()
                .to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn out_of_range_networks_are_refused() {
        assert_eq!(parse("10.0.0.0/7"), Err(BanNetError::V4Bits { got: 7 }));
        assert_eq!(parse("10.0.0.0/33"), Err(BanNetError::V4Bits { got: 33 }));
        assert_eq!(parse("2001:db8::/15"), Err(BanNetError::V6Bits { got: 15 }));
        assert_eq!(
            parse("2001:db8::/129"),
            Err(BanNetError::V6Bits { got: 129 })
        );
        assert_eq!(
            parse("::ffff:10.0.0.0/95"),
            Err(BanNetError::V6Bits { got: 95 })
        );
        assert!(matches!(parse("nope"), Err(BanNetError::Syntax(_))));
        assert!(matches!(parse("10.0.0.0/x"), Err(BanNetError::Syntax(_))));
    }

    #[test]
    fn a_network_contains_its_addresses() {
        let n = BanNet::parse("203.0.113.0/24", Ipv6Prefix::DEFAULT).unwrap();
        assert!(n.contains("203.0.113.200".parse().unwrap()));
        assert!(n.contains("::ffff:203.0.113.1".parse().unwrap()));
        assert!(!n.contains("203.0.114.1".parse().unwrap()));
        assert!(!n.contains("2001:db8::1".parse().unwrap()));
        assert_eq!(n.key(), net_key("203.0.113.77".parse().unwrap(), 24));
        assert_eq!(n.length_tag(), "4/24");
    }
}
