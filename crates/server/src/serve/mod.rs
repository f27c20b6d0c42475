//! The HTTP server: an accept loop and hyper connections with every timeout and cap that
//! `axum::serve` does not give (it runs hyper without a timer, so a connection that sends
//! half a request head, or nothing, stayed open forever).
//!
//! - [`accept`]: what to do when accepting fails (descriptors exhausted: shed and pause).
//! - [`conn`]: one connection: PROXY header, per-address permit, HTTP/1.1 with upgrades.
//! - [`per_ip`]: counts per client address (connections here, websockets in the route).
//! - [`proxy_protocol`]: the PROXY protocol v2 header.
//! - [`send_timeout`]: the bound on a write the peer does not take.
//!
//! Timeouts: the request head must be complete within `header_timeout` of the moment the
//! server waits for it (the connection opened, or the previous answer was sent, so it is
//! also the keep-alive idle time); a body within `body_timeout` (enforced where the body is
//! read, answering 408); and a write may wait at most `send_timeout` for the peer to take a
//! byte.

pub mod accept;
pub mod conn;
pub mod per_ip;
pub mod proxy_protocol;
pub mod send_timeout;

use crate::client_addr::TrustedProxies;
use crate::routes::strict::Guarded;
use crate::zerocopy::Bodies;
use per_ip::PerIp;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bound of a connection's read buffer, and so of the request head: a stalled connection
/// holds at most this much (hyper's default is ~400 KiB). A longer head gets 431.
pub const MAX_BUF: usize = 32 * 1024;

/// The peer of a request for `ConnectInfo<Peer>` in handlers: the TCP peer, or the source
/// a trusted proxy gave in a PROXY header.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Connection-level settings.
pub struct Options {
    /// Time to receive a whole request head (see the module documentation).
    pub header_timeout: Duration,
    /// Time a write may wait for the peer to take a byte.
    pub send_timeout: Duration,
    /// Read buffer bound, [`MAX_BUF`] outside tests.
    pub max_buf: usize,
    /// Open connections per client address; trusted proxies are not counted (every
    /// client comes through them).
    pub per_ip: PerIp,
    /// Whose PROXY headers are read, and who is exempt from `per_ip`.
    pub trusted: TrustedProxies,
    /// Whether trusted peers may start connections with a PROXY v2 header.
    pub proxy_protocol: bool,
}

/// Accepts on `listener` until `stop_accepting` resolves; then closes the listener, lets
/// every connection finish the request it is serving (idle ones close at once) and returns
/// when all have ended, or after `finish_within`. Upgraded websockets are not waited for:
/// they are the caller's.
pub async fn serve(
    listener: TcpListener,
    router: Guarded,
    opts: Options,
    bodies: Bodies,
    stop_accepting: impl Future<Output = ()>,
    finish_within: Duration,
) {
    let opts = Arc::new(opts);
    let conns = TaskTracker::new();
    let finish = CancellationToken::new();
    let mut reserve = accept::Reserve::default();
    let mut stop_accepting = std::pin::pin!(stop_accepting);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop_accepting => break,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept::recover(e, &listener, &mut reserve).await;
                    continue;
                }
            },
        };
        let permit = if opts.trusted.contains(peer.ip()) {
            None
        } else {
            match opts.per_ip.try_acquire(peer.ip()) {
                Some(p) => Some(p),
                None => {
                    conn::refuse(stream);
                    continue;
                }
            }
        };
        conns.spawn(conn::serve(
            stream,
            peer,
            permit,
            router.clone(),
            opts.clone(),
            bodies.clone(),
            finish.clone(),
        ));
    }
    drop(listener);
    finish.cancel();
    conns.close();
    if tokio::time::timeout(finish_within, conns.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = conns.len(),
            "some connections did not finish in time; not waiting for them"
        );
    }
}

/// A websocket permit for the client of a request from `peer`, or the error to answer.
pub fn ws_permit(
    app: &crate::app::AppState,
    peer: SocketAddr,
    headers: &axum::http::HeaderMap,
) -> Result<per_ip::Permit, crate::error::ApiError> {
    let ip = crate::client_addr::client_ip(&app.settings.trusted_proxies, peer.ip(), headers)?;
    app.ws_per_ip.try_acquire(ip).ok_or_else(|| {
        metrics::counter!("rplace_connections_refused_total", "reason" => "ws_per_ip").increment(1);
        crate::error::ApiError::TooManyFromAddress {
            max: app.config.max_websockets_per_ip,
        }
    })
}
