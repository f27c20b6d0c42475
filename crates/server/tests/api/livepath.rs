//! The live path under bad input and dead peers: a malformed record on the shared channel
//! does not stop live updates, and a websocket client that does not answer pings is closed
//! while one that does is kept.

use crate::helpers::{TestApp, hello, next_msg, spawn_app};
use futures_util::StreamExt;
use rplace_domain::wire;
use rplace_testsupport::{Postgres, RedisServer};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Waits until the websocket brings a frame containing `seq`.
async fn frame_with(ws: &mut crate::helpers::Ws, seq: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_msg(ws, left).await {
            Some(Message::Binary(b)) => {
                let ups = wire::decode_frame(&b).unwrap();
                if ups.iter().any(|u| u.seq.0 == seq) {
                    return;
                }
            }
            Some(_) => {}
            None => panic!("no frame with seq {seq}: live updates stopped"),
        }
    }
}

#[tokio::test]
async fn malformed_records_on_the_shared_channel_do_not_stop_live_updates() {
    let redis = RedisServer::start();
    let db = Postgres::shared().create_database();
    let key = "ef".repeat(64);
    let app = spawn_app(&[
        "--redis-url",
        &redis.url(),
        "--database-url",
        &db,
        "--cookie-key",
        &key,
    ])
    .await;
    let mut ws = app.ws().await;
    hello(&mut ws).await;
    let seq = app.bench_place(1, 1, 1, 3).await;
    frame_with(&mut ws, seq).await;

    let epoch = redis.cli(&["GET", "rplace:epoch"]).trim().to_string();
    let next = seq + 1;
    for msg in [
        // Off the board (16x8), at exactly the next seq: applying it would panic.
        format!("P {epoch} {next} 60000 60000 5 1 1000"),
        // A color a 16-color board cannot hold.
        format!("P {epoch} {next} 1 1 200 1 1000"),
        // Seqs that overflow.
        format!("P {epoch} 18446744073709551615 1 1 1 1 1000;1 1 1 1 1000"),
        // Not a record at all.
        format!("P {epoch} {next} garbage"),
        "Z".into(),
    ] {
        let receivers = redis.cli(&["PUBLISH", "rplace:feed", &msg]);
        assert_eq!(receivers.trim(), "1", "the instance is subscribed");
    }
    // Placements after them still reach the board and every client.
    let seq = app.bench_place(2, 2, 2, 4).await;
    assert_eq!(seq, next);
    frame_with(&mut ws, seq).await;
    let mut fresh = app.ws().await;
    hello(&mut fresh).await;
    let seq = app.bench_place(3, 3, 3, 5).await;
    frame_with(&mut fresh, seq).await;
    assert_eq!(app.board().await.0, seq);
    assert_eq!(
        reqwest::get(app.url("/readyz")).await.unwrap().status(),
        200
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("rplace_store_feed_malformed_total"),
        "malformed messages are counted"
    );
    app.stop().await;
}

/// Opens a websocket by hand and returns the raw socket after the 101: reading it does
/// not answer pings (a library would), so this client never sends a pong.
async fn raw_ws(app: &TestApp) -> TcpStream {
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            app.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "closed during the handshake"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// The server's (unmasked, short) frames in `bytes`, as (opcode, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (op, len) = (bytes[0] & 0x0f, (bytes[1] & 0x7f) as usize);
        let (start, len) = match len {
            126 => (4, u16::from_be_bytes([bytes[2], bytes[3]]) as usize),
            127 => panic!("no frame this long is expected"),
            n => (2, n),
        };
        out.push((op, bytes[start..start + len].to_vec()));
        bytes = &bytes[start + len..];
    }
    out
}

#[tokio::test]
async fn a_client_that_does_not_answer_pings_is_closed_and_one_that_does_is_kept() {
    let app = spawn_app(&["--ws-ping-interval", "0.2", "--ws-pong-timeout", "0.5"]).await;
    // This one is read (so tungstenite answers every ping) all along.
    let mut alive = app.ws().await;
    hello(&mut alive).await;
    let (pings_tx, mut pings) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = alive.next().await {
            if matches!(m, Message::Ping(_)) {
                let _ = pings_tx.send(());
            }
            if let Message::Binary(b) = m {
                let ups = wire::decode_frame(&b).unwrap();
                if ups.iter().any(|u| u.coord.x() == 7) {
                    return true;
                }
            }
        }
        false
    });
    // This one reads, but never answers: the server closes it with 4001, then hangs up.
    let mut silent = raw_ws(&app).await;
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .expect("the silent client was not closed");
    let frames = frames(&got);
    assert!(
        frames.iter().any(|f| f.0 == 0x9),
        "it was pinged: {frames:?}"
    );
    let close = frames.last().expect("frames");
    assert_eq!(close.0, 0x8, "the last frame is a close: {frames:?}");
    assert_eq!(&close.1[..2], &4001u16.to_be_bytes());
    // The answering client lived through several pings and still gets frames.
    for _ in 0..3 {
        pings.recv().await.expect("pinged");
    }
    app.bench_place(1, 7, 0, 2).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(20), reader)
            .await
            .unwrap()
            .unwrap()
    );
    app.stop().await;
}
