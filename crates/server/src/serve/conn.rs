//! One accepted connection: the optional PROXY header, its per-address permit, and HTTP/1.1
//! on hyper with a timer (so that the header timeout fires), a bounded buffer, websocket
//! upgrades, and a graceful end when the server stops.

use super::per_ip::Permit;
use super::{Options, Peer, proxy_protocol};
use crate::routes::strict::Guarded;
use crate::zerocopy::{Bodies, ZcStream};
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Answers and closes a connection refused by the per-address cap. The answer is written
/// only if the socket takes it at once: a refused client gets no buffer or task.
pub fn refuse(stream: TcpStream) {
    metrics::counter!("rplace_connections_refused_total", "reason" => "per_ip").increment(1);
    let body = serde_json::json!({
        "error": "too_many_connections_from_address",
        "message": "too many open connections from this address; close some and retry",
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
}

/// Reads a PROXY v2 header if the connection starts with one. A trusted proxy's own
/// connections (health checks) may come without one: an HTTP request never starts with
/// `\r`, the header's first byte.
async fn proxied_source(stream: &mut TcpStream) -> Result<Option<SocketAddr>, String> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await.map_err(|e| e.to_string())?;
    if n == 0 || first[0] != proxy_protocol::SIGNATURE[0] {
        return Ok(None);
    }
    proxy_protocol::read_header(stream)
        .await
        .map_err(|e| e.to_string())
}

/// Serves `stream` until it closes, fails a timeout, or `stop` asks it to finish.
pub async fn serve(
    mut stream: TcpStream,
    mut peer: SocketAddr,
    mut permit: Option<Permit>,
    router: Guarded,
    opts: Arc<Options>,
    bodies: Bodies,
    stop: CancellationToken,
) {
    // Every write is a whole message (a response, a websocket frame, or a head held back
    // by MSG_MORE for its body), so nothing is gained by Nagle, and with it the tail of a
    // sendfile body waited for a delayed ACK.
    let _ = stream.set_nodelay(true);
    if opts.proxy_protocol && opts.trusted.contains(peer.ip()) {
        match tokio::time::timeout(opts.header_timeout, proxied_source(&mut stream)).await {
            Ok(Ok(Some(source))) => {
                peer = source;
                if permit.is_none() && !opts.trusted.contains(source.ip()) {
                    match opts.per_ip.try_acquire(source.ip()) {
                        Some(p) => permit = Some(p),
                        None => return refuse(stream),
                    }
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "bad PROXY header; closing");
                return;
            }
            Err(_) => return,
        }
    }
    let _permit = permit;
    let io =
        super::send_timeout::SendTimeout::new(ZcStream::new(stream, bodies), opts.send_timeout);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(Peer(peer)));
        router.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .max_buf_size(opts.max_buf)
        .keep_alive(true);
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
