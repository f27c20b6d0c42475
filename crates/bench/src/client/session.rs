//! One client's life: connect from its source address, read the hello, fetch the board,
//! follow the stream, and reconnect with backoff when the server tells it to.

use super::*;

pub(super) type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

pub(super) fn source_ip(cfg: &GroupConfig, idx: u32) -> Option<IpAddr> {
    if cfg.sources == 0 {
        return None;
    }
    let n = 2 + (cfg.first_id + idx) % cfg.sources;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, (n >> 8) as u8, n as u8)))
}

/// Opens the websocket from this client's source address and reads the hello.
pub(super) async fn connect(sh: &Shared, idx: u32) -> anyhow::Result<(Ws, u64)> {
    let _slot = sh.connect_slots.acquire().await?;
    let addr = sh.cfg.addr;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source_ip(&sh.cfg, idx).filter(|_| addr.is_ipv4()) {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = socket.connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    // The server's frames are small; a 128 KiB read buffer a client would cost 2 GB at 15k.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}/ws"),
        stream,
        Some(config),
    )
    .await
    .context("websocket handshake")?;
    let hello = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t)?;
                    if v["type"] == "hello" {
                        return v["seq"].as_u64().context("hello without seq");
                    }
                    bail!("expected hello, got {t}");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => bail!("expected hello, got {other:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => bail!("closed before hello"),
            }
        }
    })
    .await
    .context("no hello within 60 s")??;
    Ok((ws, hello))
}

/// `GET /api/board` as a page would (compressed if the server offers it); returns its seq.
pub(super) async fn fetch_board(sh: &Shared) -> anyhow::Result<u64> {
    let _slot = sh.http_slots.acquire().await?;
    let r = sh
        .http
        .get(format!("http://{}/api/board", sh.cfg.addr))
        .header("accept-encoding", "zstd, br, gzip")
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("board answered {}", r.status());
    }
    let seq = r
        .headers()
        .get("x-board-seq")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("board without X-Board-Seq")?;
    r.bytes().await?;
    Ok(seq)
}

/// Performs the fetches the sync asks for (board, catch-up) until it asks for nothing.
pub(super) async fn drive(sh: &Shared, st: &mut ClientState) -> anyhow::Result<()> {
    // A bound, so that a server that keeps answering uselessly cannot spin a client.
    for _ in 0..1000 {
        match st.sync.next_fetch() {
            None => return Ok(()),
            Some(Fetch::Board { retry, .. }) => {
                backoff(retry).await;
                let seq = fetch_board(sh).await?;
                st.sync.on_board(&[], Seq(seq))?;
            }
            Some(Fetch::Updates { since, retry }) => {
                backoff(retry).await;
                let _slot = sh.http_slots.acquire().await?;
                let r = sh
                    .http
                    .get(format!(
                        "http://{}/api/updates?since={}",
                        sh.cfg.addr, since.0
                    ))
                    .send()
                    .await?;
                if r.status() == 410 {
                    st.sync.on_updates_gone();
                    continue;
                }
                if !r.status().is_success() {
                    bail!("updates answered {}", r.status());
                }
                let more = r.headers().contains_key("x-updates-more");
                let body = r.bytes().await?;
                st.sync.target_mut().at = now_ns();
                st.sync.on_updates(since, &body, more)?;
            }
        }
    }
    bail!("the sync kept asking for fetches")
}

/// The pause the sync asks for before a retried fetch.
pub(super) async fn backoff(retry: u32) {
    if retry > 0 {
        tokio::time::sleep(Duration::from_millis(100 * u64::from(retry))).await;
    }
}

pub(super) async fn run_client(sh: Arc<Shared>, idx: u32) -> ClientState {
    let mut st = ClientState {
        id: sh.cfg.first_id + idx,
        // Fetches are awaited before the next message is read, so at most a frame or two
        // wait at a time; the bound only keeps 15,000 clients' worst case small.
        sync: Sync::new(Arrivals::default()).with_max_buffered(BUFFERED_FRAMES_MAX),
        reconnects: 0,
        errors: 0,
        bytes: 0,
        frames: 0,
        sync_ms: 0,
        view: None,
    };
    let mut synced = false;
    let mut said_hello = false;
    let mut backoff = Duration::from_millis(50);
    'connection: while !sh.stop.is_cancelled() {
        let connected = tokio::select! {
            _ = sh.stop.cancelled() => break,
            c = connect(&sh, idx) => c,
        };
        let (mut ws, hello) = match connected {
            Ok(c) => c,
            Err(e) => {
                st.errors += 1;
                if st.errors <= 3 {
                    eprintln!("client {}: {e:#}", st.id);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        st.sync.on_connect();
        st.sync.on_hello(Seq(hello));
        if !said_hello {
            said_hello = true;
            sh.hellos.fetch_add(1, Ordering::Relaxed);
        }
        if !synced {
            let board = match sh.cfg.board {
                BoardFetch::PerClient => fetch_board(&sh).await,
                BoardFetch::Shared => {
                    let mut rx = sh.shared_board.clone();
                    tokio::select! {
                        _ = sh.stop.cancelled() => break,
                        r = rx.wait_for(|s| s.is_some()) => r.map(|s| s.unwrap_or(0)).map_err(Into::into),
                    }
                }
                BoardFetch::None => Ok(hello),
            };
            match board {
                Ok(seq) => {
                    st.sync
                        .on_board(&[], Seq(seq))
                        .expect("seq-only boards always load");
                }
                Err(e) => {
                    st.errors += 1;
                    eprintln!("client {}: board: {e:#}", st.id);
                    continue;
                }
            }
            synced = true;
            st.sync_ms = sh.started.elapsed().as_millis() as u64;
            sh.seqs[idx as usize].store(st.current(), Ordering::Relaxed);
            sh.synced.fetch_add(1, Ordering::Relaxed);
        }
        // After a reconnect: catch up to the hello from the last seq applied.
        if let Err(e) = drive(&sh, &mut st).await {
            st.errors += 1;
            eprintln!("client {}: {e:#}", st.id);
        }
        loop {
            let msg = tokio::select! {
                _ = sh.stop.cancelled() => break 'connection,
                m = ws.next() => m,
            };
            match msg {
                Some(Ok(Message::Binary(data))) => {
                    let at = now_ns();
                    if sh.measuring.load(Ordering::Relaxed) {
                        st.bytes += data.len() as u64 + ws_header_len(data.len());
                        st.frames += 1;
                    }
                    st.sync.target_mut().at = at;
                    let fed = st.sync.on_frame(&data).map_err(anyhow::Error::from);
                    if let Err(e) = match fed {
                        Ok(()) => drive(&sh, &mut st).await,
                        Err(e) => Err(e),
                    } {
                        st.errors += 1;
                        eprintln!("client {}: {e:#}", st.id);
                    }
                    sh.seqs[idx as usize].store(st.current(), Ordering::Relaxed);
                }
                Some(Ok(Message::Text(t))) => {
                    if t.contains("\"resync\"") {
                        st.sync.on_resync();
                        if drive(&sh, &mut st).await.is_err() {
                            st.errors += 1;
                        }
                        sh.seqs[idx as usize].store(st.current(), Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    if !sh.stop.is_cancelled() {
                        st.reconnects += 1;
                        if st.reconnects <= 3 {
                            eprintln!("client {}: closed: {frame:?}", st.id);
                        }
                    }
                    continue 'connection;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    st.reconnects += 1;
                    st.errors += 1;
                    if st.errors <= 3 {
                        eprintln!("client {}: websocket: {e}", st.id);
                    }
                    continue 'connection;
                }
                None => {
                    st.reconnects += 1;
                    continue 'connection;
                }
            }
        }
    }
    st
}
