//! Who the client is: the peer address, or, when the peer is one of the configured trusted
//! proxies, the address `X-Forwarded-For` names for it.
//!
//! A proxy appends the address it received the request from, so the header reads
//! `client, proxy1, proxy2` and the peer is the last proxy. Walking from the right, every
//! entry that is itself a trusted proxy is skipped; the first one that is not is the
//! client. Whatever a client writes into the header itself stays left of that entry and is
//! never used. An entry that does not parse fails the request: skipping it would let the
//! entry left of it, which the client wrote, be taken for the client.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;
use std::str::FromStr;

/// The proxies whose `X-Forwarded-For` and PROXY protocol headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// Addresses (as /32 or /128) and networks.
    nets: Vec<IpNet>,
}

/// A `--trusted-proxies` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum TrustedProxiesError {
    #[error(
        "a number of hops ({0}) is no longer accepted: list the proxies' addresses or networks instead, e.g. 127.0.0.1,10.0.0.0/8,::1"
    )]
    HopCount(String),
    #[error("{0:?} is not an IP address or CIDR network (e.g. 10.0.0.0/8)")]
    Entry(String),
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    /// A comma-separated list of addresses and CIDR networks; empty for none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nets = Vec::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.bytes().all(|b| b.is_ascii_digit()) {
                if entry == "0" && s.trim() == "0" {
                    // The old default: no proxy.
                    return Ok(TrustedProxies::default());
                }
                return Err(TrustedProxiesError::HopCount(entry.into()));
            }
            let net = match entry.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => entry
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| TrustedProxiesError::Entry(entry.into()))?,
            };
            nets.push(net);
        }
        Ok(TrustedProxies { nets })
    }
}

/// Maps an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports)
/// to its IPv4 form, so that one list entry covers both spellings.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// An `X-Forwarded-For` from a trusted proxy with an entry that is not an address.
#[derive(Debug, thiserror::Error)]
#[error("X-Forwarded-For entry {entry:?} is not an IP address")]
pub struct ForwardedError {
    /// The entry, cut to a printable length.
    pub entry: String,
}

/// Parses one `X-Forwarded-For` entry: an address, optionally with a port
/// (`192.0.2.1:80`, `[2001:db8::1]:80`), as some proxies write it.
fn entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// The client's address for a request that arrived from `peer`.
pub fn client_ip(
    trusted: &TrustedProxies,
    peer: IpAddr,
    headers: &HeaderMap,
) -> Result<IpAddr, ForwardedError> {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return Ok(peer);
    }
    // Every X-Forwarded-For line, in order, as one list.
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value.to_str().map_err(|_| ForwardedError {
            entry: String::from_utf8_lossy(value.as_bytes())
                .chars()
                .take(64)
                .collect(),
        })?;
        for part in text.split(',') {
            hops.push(entry(part).ok_or_else(|| ForwardedError {
                entry: part.trim().chars().take(64).collect(),
            })?);
        }
    }
    // Right to left past the trusted proxies; if all are trusted, the leftmost is the
    // farthest address known. No header: the proxy itself (e.g. its health check).
    Ok(hops
        .iter()
        .rev()
        .find(|ip| !trusted.contains(**ip))
        .or(hops.first())
        .copied()
        .unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lists_parse_and_hop_counts_are_refused_by_name() {
        let t: TrustedProxies = "127.0.0.1, 10.0.0.0/8,::1,2001:db8::/32".parse().unwrap();
        assert!(t.contains(ip("127.0.0.1")));
        assert!(t.contains(ip("10.200.3.4")));
        assert!(
            t.contains(ip("::ffff:10.0.0.1")),
            "mapped IPv4 counts as IPv4"
        );
        assert!(t.contains(ip("2001:db8:ffff::1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(!t.contains(ip("::2")));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert!("0".parse::<TrustedProxies>().unwrap().is_empty());
        let e = "2".parse::<TrustedProxies>().unwrap_err().to_string();
        assert!(e.contains("10.0.0.0/8"), "{e}");
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.local".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let h = headers(&["203.0.113.5"]);
        assert_eq!(
            client_ip(&t, ip("198.51.100.1"), &h).unwrap(),
            ip("198.51.100.1")
        );
        // Even a malformed header from an untrusted peer is simply not read.
        let bad = headers(&["nonsense"]);
        assert_eq!(
            client_ip(&t, ip("198.51.100.1"), &bad).unwrap(),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_entry_from_the_right_is_the_client() {
        let t: TrustedProxies = "10.0.0.0/8,127.0.0.1".parse().unwrap();
        let peer = ip("127.0.0.1");
        // The client forged "1.2.3.4"; the proxies appended what they saw.
        let h = headers(&["1.2.3.4, 203.0.113.9", "10.0.0.3"]);
        assert_eq!(client_ip(&t, peer, &h).unwrap(), ip("203.0.113.9"));
        let h = headers(&["203.0.113.9:5555, [2001:db8::1]:80"]);
        assert_eq!(client_ip(&t, peer, &h).unwrap(), ip("2001:db8::1"));
        assert_eq!(client_ip(&t, peer, &HeaderMap::new()).unwrap(), peer);
        let h = headers(&["10.0.0.9, 10.0.0.3"]);
        assert_eq!(client_ip(&t, peer, &h).unwrap(), ip("10.0.0.9"));
    }

    #[test]
    fn a_malformed_entry_from_a_trusted_proxy_fails_closed() {
        let t: TrustedProxies = "127.0.0.1".parse().unwrap();
        for bad in [
            "203.0.113.1, garbage",
            "unknown",
            "203.0.113.1,,10.0.0.1",
            "",
        ] {
            let e = client_ip(&t, ip("127.0.0.1"), &headers(&[bad]));
            assert!(e.is_err(), "{bad:?} was accepted");
        }
    }
}
