//! The PROXY protocol, version 2 (HAProxy's `send-proxy-v2`): a binary header that a proxy
//! sends before the first byte of the connection, carrying the client's address.
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>, section 2.2.
//!
//! Only the addresses are read; TLVs (TLS details, unique ids) are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12 bytes every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest header read: the addresses plus room for the TLVs HAProxy sends. A longer one
/// is refused instead of buffered.
pub const MAX_LEN: usize = 1024;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("not a PROXY protocol v2 header")]
    Signature,
    #[error("PROXY protocol version {0} is not supported (only 2)")]
    Version(u8),
    #[error("unknown PROXY command {0}")]
    Command(u8),
    #[error("PROXY header of {0} bytes is longer than {MAX_LEN}")]
    TooLong(usize),
    #[error("PROXY address block of {got} bytes is shorter than the {need} its family needs")]
    Short { got: usize, need: usize },
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one version 2 header from `r`, consuming exactly its bytes. Returns the source
/// address it carries, or `None` when it carries none (a `LOCAL` connection such as the
/// proxy's own health check, or an unspecified or unix family): then the peer is the client.
pub async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut head = [0u8; 16];
    r.read_exact(&mut head).await?;
    if head[..12] != SIGNATURE {
        return Err(ProxyHeaderError::Signature);
    }
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    if len > MAX_LEN {
        return Err(ProxyHeaderError::TooLong(len));
    }
    let mut rest = vec![0u8; len];
    r.read_exact(&mut rest).await?;
    parse(head[12], head[13], &rest)
}

/// Decodes the version/command byte, the family byte and the address block.
fn parse(ver_cmd: u8, family: u8, block: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::Version(ver_cmd >> 4));
    }
    match ver_cmd & 0x0f {
        0 => return Ok(None), // LOCAL: the proxy speaking for itself.
        1 => {}
        c => return Err(ProxyHeaderError::Command(c)),
    }
    let need = |n: usize| {
        if block.len() < n {
            Err(ProxyHeaderError::Short {
                got: block.len(),
                need: n,
            })
        } else {
            Ok(())
        }
    };
    // High nibble: address family; low nibble: transport (stream or datagram).
    match family >> 4 {
        1 => {
            need(12)?;
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            let port = u16::from_be_bytes([block[8], block[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 => {
            need(36)?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&block[..16]);
            let port = u16::from_be_bytes([block[32], block[33]]);
            Ok(Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)))
        }
        _ => Ok(None),
    }
}

/// A version 2 `PROXY` header for a TCP connection from `src` to `dst`, as a proxy sends
/// it (for tests and tools).
pub fn encode(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    let mut block = Vec::new();
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            block.extend(s.ip().octets());
            block.extend(d.ip().octets());
        }
        (s, d) => {
            out.push(0x21);
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            block.extend(v6(s).octets());
            block.extend(v6(d).octets());
        }
    }
    block.extend(src.port().to_be_bytes());
    block.extend(dst.port().to_be_bytes());
    out.extend((block.len() as u16).to_be_bytes());
    out.extend(block);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
        let mut r = bytes;
        read_header(&mut r).await
    }

    #[tokio::test]
    async fn v4_and_v6_sources_are_read_and_nothing_past_the_header() {
        let src: SocketAddr = "203.0.113.9:4321".parse().unwrap();
        let dst: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        let mut bytes = encode(src, dst);
        bytes.extend(b"GET / HTTP/1.1\r\n");
        let mut r = &bytes[..];
        assert_eq!(read_header(&mut r).await.unwrap(), Some(src));
        assert_eq!(r, b"GET / HTTP/1.1\r\n", "the request is left for HTTP");
        let src6: SocketAddr = "[2001:db8::7]:1".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8::1]:2".parse().unwrap();
        assert_eq!(read(&encode(src6, dst6)).await.unwrap(), Some(src6));
    }

    #[tokio::test]
    async fn tlvs_are_skipped_and_local_carries_no_address() {
        let src: SocketAddr = "198.51.100.1:1000".parse().unwrap();
        let mut bytes = encode(src, "10.0.0.1:80".parse().unwrap());
        // Append a 5-byte TLV and fix the length.
        bytes.extend([0x04, 0x00, 0x02, b'h', b'i']);
        let len = (bytes.len() - 16) as u16;
        bytes[14..16].copy_from_slice(&len.to_be_bytes());
        assert_eq!(read(&bytes).await.unwrap(), Some(src));
        let mut local = SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0x00, 0x00]);
        assert_eq!(read(&local).await.unwrap(), None);
    }

    #[tokio::test]
    async fn malformed_headers_are_refused() {
        let good = encode(
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
        );
        let mut sig = good.clone();
        sig[3] = b'x';
        assert!(matches!(read(&sig).await, Err(ProxyHeaderError::Signature)));
        let mut ver = good.clone();
        ver[12] = 0x11;
        assert!(matches!(
            read(&ver).await,
            Err(ProxyHeaderError::Version(1))
        ));
        let mut cmd = good.clone();
        cmd[12] = 0x2f;
        assert!(matches!(
            read(&cmd).await,
            Err(ProxyHeaderError::Command(15))
        ));
        let mut long = good.clone();
        long[14..16].copy_from_slice(&4000u16.to_be_bytes());
        assert!(matches!(
            read(&long).await,
            Err(ProxyHeaderError::TooLong(4000))
        ));
        let mut short = good.clone();
        short[14..16].copy_from_slice(&4u16.to_be_bytes());
        assert!(matches!(
            read(&short[..20]).await,
            Err(ProxyHeaderError::Short { got: 4, need: 12 })
        ));
        assert!(matches!(
            read(&good[..10]).await,
            Err(ProxyHeaderError::Io(_))
        ));
    }
}
