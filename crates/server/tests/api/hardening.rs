//! Hostile connections: half-sent heads, silence, stalled bodies, header floods, many
//! connections or websockets from one address, descriptors running out, PROXY headers.
//! Each test uses short timeouts set by flags and waits by polling with a generous bound.

use crate::helpers::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest any test here waits for the server to act on a timeout of ~1 s.
const PATIENCE: Duration = Duration::from_secs(20);

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (or resets it); what it sent, or `None`
/// if it is still open after `within`.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|_| got)
}

/// `GET path` over a new connection from `from`: what the server sent before it closed
/// the connection, or `None` if it could not connect or the connection stayed open 5 s.
async fn raw_get(from: &str, addr: SocketAddr, path: &str) -> Option<String> {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let mut s = tokio::time::timeout(Duration::from_secs(5), socket.connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await; // a refused one may be closed already
    let got = read_to_close(&mut s, Duration::from_secs(5)).await?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Polls `/healthz` from `from` until it answers 200.
async fn healthz_answers(from: &str, addr: SocketAddr) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if raw_get(from, addr, "/healthz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_half_sent_head_and_a_silent_connection_are_closed_after_the_header_timeout() {
    let app = spawn_app(&["--header-timeout", "1"]).await;
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let t0 = tokio::time::Instant::now();
    assert!(
        read_to_close(&mut half, PATIENCE).await.is_some(),
        "a half-sent head stayed open"
    );
    assert!(
        read_to_close(&mut silent, PATIENCE).await.is_some(),
        "a silent connection stayed open"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "closed too early"
    );
    // A keep-alive connection that answered and then went quiet is closed as well.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut kept, PATIENCE).await.expect("closed");
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let app = spawn_app(&["--body-timeout", "1", "--header-timeout", "60"]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "PUT /api/pixel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 40\r\nAuthorization: Bearer {BENCH_TOKEN}\r\n\
         X-Rplace-User: 0000000000000001\r\n\r\n{{\"x\": 1,"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut s, PATIENCE)
        .await
        .expect("the connection stayed open");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\":\"body_timeout\""), "{text}");
    assert_eq!(app.board().await.0, 0, "nothing was placed");
    app.stop().await;
}

#[tokio::test]
async fn a_header_flood_is_refused_with_431_or_closed() {
    let app = spawn_app(&["--header-timeout", "60"]).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    // 200 KiB of headers, never ended: within hyper's default ~400 KiB buffer, past ours.
    let mut flood = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..2000 {
        flood.extend(format!("X-Flood-{i}: {}\r\n", "a".repeat(90)).as_bytes());
    }
    let _ = s.write_all(&flood).await; // the server may close before it has read it all
    let answer = read_to_close(&mut s, PATIENCE)
        .await
        .expect("a header flood kept the connection open");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "unexpected answer: {text}"
    );
    app.stop().await;
}

/// A keep-alive connection from `from` that got an answer: held by the server. `None` if
/// the server refused it.
async fn held_connection(from: &str, addr: SocketAddr) -> Option<TcpStream> {
    let mut s = connect_from(from, addr).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf[..n].starts_with(b"HTTP/1.1 200").then_some(s)
}

#[tokio::test]
async fn one_address_holds_at_most_its_connections_and_others_are_served() {
    let app = spawn_app(&["--max-connections-per-ip", "5", "--header-timeout", "60"]).await;
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    // Retried: the readiness probe's connection may still count for a moment.
    while held.len() < 5 && tokio::time::Instant::now() < deadline {
        match held_connection("127.0.0.1", app.addr).await {
            Some(s) => held.push(s),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(held.len(), 5);
    let refused = raw_get("127.0.0.1", app.addr, "/healthz").await;
    assert!(
        refused
            .as_deref()
            .is_none_or(|r| r.starts_with("HTTP/1.1 429") || r.is_empty()),
        "the sixth connection was served: {refused:?}"
    );
    assert!(refused.is_some(), "the sixth connection was left hanging");
    assert!(healthz_answers("127.0.0.2", app.addr).await);
    // Closing one gives its slot back.
    drop(held.pop());
    assert!(healthz_answers("127.0.0.1", app.addr).await);
    app.stop().await;
}

/// A websocket to `app` over a connection from `from`; the HTTP status if refused.
async fn ws_from(from: &str, addr: SocketAddr) -> Result<Ws, u16> {
    let stream = connect_from(from, addr).await;
    let url = format!("ws://{addr}/ws");
    match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("websocket failed: {e}"),
    }
}

#[tokio::test]
async fn one_address_holds_at_most_its_websockets_and_others_are_accepted() {
    let app = spawn_app(&["--max-websockets-per-ip", "3"]).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut ws = ws_from("127.0.0.1", app.addr).await.unwrap();
        hello(&mut ws).await;
        open.push(ws);
    }
    assert_eq!(ws_from("127.0.0.1", app.addr).await.err(), Some(429));
    let mut other = ws_from("127.0.0.2", app.addr).await.unwrap();
    hello(&mut other).await;
    // A closed websocket gives its slot back.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match ws_from("127.0.0.1", app.addr).await {
            Ok(_) => break,
            Err(429) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("the freed slot was not given back: {s}"),
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_proxy_protocol_header_from_a_trusted_proxy_sets_the_client_address() {
    let app = spawn_app(&[
        "--proxy-protocol",
        "--trusted-proxies",
        "127.0.0.1",
        "--max-websockets-per-ip",
        "1",
    ])
    .await;
    // Two clients behind the proxy at 127.0.0.1: one websocket each is allowed, a second
    // one for the same client is not.
    let via_proxy = |client: &'static str| async move {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let src: SocketAddr = client.parse().unwrap();
        let header = rplace::serve::proxy_protocol::encode(src, app.addr);
        s.write_all(&header).await.unwrap();
        let url = format!("ws://{}/ws", app.addr);
        match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(s))
            .await
        {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("websocket failed: {e}"),
        }
    };
    let _a = via_proxy("203.0.113.1:1000").await.unwrap();
    let _b = via_proxy("203.0.113.2:1000").await.unwrap();
    assert_eq!(via_proxy("203.0.113.1:2000").await.err(), Some(429));
    // The proxy's own connections (health checks) need no header.
    assert!(healthz_answers("127.0.0.1", app.addr).await);
    // From an untrusted peer a PROXY header is not read: the request is not HTTP.
    let mut s = connect_from("127.0.0.2", app.addr).await;
    let header = rplace::serve::proxy_protocol::encode("203.0.113.9:1".parse().unwrap(), app.addr);
    s.write_all(&header).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut s, PATIENCE).await.expect("closed");
    assert!(!answer.starts_with(b"HTTP/1.1 200"));
    app.stop().await;
}

/// The binary under `ulimit -n 64`, killed when dropped.
struct LowFdServer {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl LowFdServer {
    async fn start(per_ip: &str) -> LowFdServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = std::process::Command::new("sh")
            .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_rplace"))
            .args(["--listen", &addr.to_string()])
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--width", "16", "--height", "16", "--sync", "normal"])
            .args(["--header-timeout", "120"])
            .args(["--max-connections-per-ip", per_ip])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = LowFdServer {
            child,
            addr,
            _dir: dir,
        };
        assert!(
            healthz_answers("127.0.0.1", addr).await,
            "never became ready"
        );
        server
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for LowFdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 300 silent connections from 127.0.0.1.
async fn silent_flood(addr: SocketAddr) -> Vec<TcpStream> {
    let mut all = Vec::new();
    for _ in 0..300 {
        all.push(connect_from("127.0.0.1", addr).await);
    }
    all
}

#[tokio::test]
async fn with_few_descriptors_a_flood_from_one_address_locks_nobody_else_out() {
    let mut server = LowFdServer::start("20").await;
    let flood = silent_flood(server.addr).await;
    assert!(
        healthz_answers("127.0.0.2", server.addr).await,
        "another client was locked out"
    );
    assert!(server.running());
    drop(flood);
}

#[tokio::test]
async fn when_descriptors_run_out_the_server_sheds_and_recovers() {
    // No per-address cap: the flood takes every descriptor.
    let mut server = LowFdServer::start("0").await;
    let flood = silent_flood(server.addr).await;
    // Descriptors ran out: the server closes connections it cannot serve instead of
    // leaving them in the backlog.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let closed = |flood: &[TcpStream]| {
        let mut buf = [0u8; 1];
        flood
            .iter()
            .filter(|s| {
                !matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            })
            .count()
    };
    while closed(&flood) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed(&flood) > 0, "nothing was shed");
    assert!(server.running(), "the server died when descriptors ran out");
    // And it does not spin on the failing accept meanwhile.
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let (t0, c0) = (std::time::Instant::now(), cpu());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks = (cpu() - c0) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        ticks < 50.0,
        "{ticks} CPU ticks per second while out of descriptors"
    );
    drop(flood);
    assert!(
        healthz_answers("127.0.0.2", server.addr).await,
        "the server did not recover once descriptors were free"
    );
    assert!(server.running());
}

#[tokio::test]
async fn behind_a_trusted_proxy_websockets_count_for_the_forwarded_client() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-websockets-per-ip",
        "1",
    ])
    .await;
    let open = |xff: &'static str| {
        let url = format!("ws://{}/ws", app.addr);
        async move {
            let mut req = url.into_client_request().unwrap();
            req.headers_mut()
                .insert("x-forwarded-for", xff.parse().unwrap());
            match tokio_tungstenite::connect_async(req).await {
                Ok((ws, _)) => Ok(ws),
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
                Err(e) => panic!("websocket failed: {e}"),
            }
        }
    };
    let _a = open("203.0.113.1").await.unwrap();
    let _b = open("203.0.113.2").await.unwrap();
    assert_eq!(open("203.0.113.1").await.err(), Some(429));
    assert_eq!(open("203.0.113.3, bogus").await.err(), Some(400));
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answers_is_dropped_after_the_send_timeout() {
    // 256 KiB boards; 40 pipelined requests are 10 MiB, more than socket buffers hold.
    let app = spawn_app(&["--width", "1024", "--height", "512", "--send-timeout", "1"]).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(app.addr).await.unwrap();
    let one = b"GET /api/board HTTP/1.1\r\nHost: x\r\n\r\n";
    s.write_all(&one.repeat(40)).await.unwrap();
    // Read nothing until the server has had time to give up, then see what is left.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    tokio::time::sleep(Duration::from_secs(3)).await;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("still open after {got} bytes"),
        }
    }
    assert!(
        got < 40 * 1024 * 512 / 2,
        "got all {got} bytes: nothing was cut"
    );
    app.stop().await;
}

#[tokio::test]
async fn by_default_one_address_gets_128_websockets_and_not_600() {
    let app = spawn_app(&[]).await;
    let mut open = Vec::new();
    for i in 0..128 {
        match ws_from("127.0.0.1", app.addr).await {
            Ok(ws) => open.push(ws),
            Err(s) => panic!("websocket {i} refused with {s}"),
        }
    }
    assert_eq!(ws_from("127.0.0.1", app.addr).await.err(), Some(429));
    assert!(ws_from("127.0.0.2", app.addr).await.is_ok());
    app.stop().await;
}
