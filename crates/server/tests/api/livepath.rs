//! The live path under bad input and dead peers: a malformed record on the shared channel
//! does not stop live updates, and a websocket client that does not answer pings is closed
//! while one that does is kept.

use crate::helpers::{BENCH_TOKEN, TestApp, hello, next_msg, spawn_app};
use futures_util::StreamExt;
use rplace_domain::wire;
use rplace_testsupport::{Postgres, RedisServer};
use std::time::Duration;
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

/// `rplace_ws_clients` as the server reports it.
async fn ws_clients(app: &TestApp) -> Option<u64> {
    app.metrics()
        .await
        .lines()
        .find(|l| l.starts_with("rplace_ws_clients "))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|v| v as u64)
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
                if ups.iter().any(|u| u.coord.x == 7) {
                    return true;
                }
            }
        }
        false
    });
    // This one is never read, so it never answers.
    let mut silent = app.ws().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ws_clients(&app).await != Some(1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silent client was not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The silent client's stream: hello, pings, then the close.
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), silent.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => break f,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.unwrap().code), 4001);
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
    let _ = BENCH_TOKEN;
    app.stop().await;
}
