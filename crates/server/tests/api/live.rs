use crate::helpers::*;
use rplace_domain::wire;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

contract_test!(placements_reach_websocket_clients_as_identical_frames);
async fn placements_reach_websocket_clients_as_identical_frames(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    let mut a = app.ws().await;
    let mut b = app.ws().await;
    assert_eq!(hello(&mut a).await, 0);
    assert_eq!(hello(&mut b).await, 0);
    let seq = app.bench_place(7, 4, 3, 11).await;
    let fa = match next_msg(&mut a, Duration::from_secs(5)).await {
        Some(Message::Binary(f)) => f,
        other => panic!("expected a frame, got {other:?}"),
    };
    let fb = match next_msg(&mut b, Duration::from_secs(5)).await {
        Some(Message::Binary(f)) => f,
        other => panic!("expected a frame, got {other:?}"),
    };
    assert_eq!(fa, fb);
    let ups = wire::decode_frame(&fa).unwrap();
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].seq.0, seq);
    assert_eq!(
        (ups[0].coord.x(), ups[0].coord.y(), ups[0].color.get()),
        (4, 3, 11)
    );
    app.stop().await;
}

contract_test!(placements_within_a_tick_share_one_frame);
async fn placements_within_a_tick_share_one_frame(backend: Backend) {
    let app = spawn_app_on(backend, &["--tick-ms", "400"]).await;
    let mut ws = app.ws().await;
    hello(&mut ws).await;
    let placing: Vec<_> = (0..20u32)
        .map(|i| app.bench_place(i as u64 + 1, i % 16, i / 16, 3))
        .collect();
    futures_util::future::join_all(placing).await;
    let mut got = Vec::new();
    let mut frames = 0;
    while got.len() < 20 {
        match next_msg(&mut ws, Duration::from_secs(5)).await {
            Some(Message::Binary(f)) => {
                frames += 1;
                got.extend(wire::decode_frame(&f).unwrap());
            }
            other => panic!("expected frames, got {other:?}"),
        }
    }
    assert_eq!(
        got.iter().map(|u| u.seq.0).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    assert!(
        frames <= 2,
        "20 placements within one 400 ms tick took {frames} frames"
    );
    app.stop().await;
}

contract_test!(reconnecting_client_catches_up_without_gaps);
/// A client that drops mid-stream and reconnects ends with the exact board.
async fn reconnecting_client_catches_up_without_gaps(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app_on(backend, &[]).await);
    let placer = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..400u64 {
                app.bench_place(
                    i % 50 + 1,
                    (i * 7 % 16) as u32,
                    (i * 3 % 8) as u32,
                    (i % 16) as u8,
                )
                .await;
                if i % 20 == 0 {
                    // Pacing, not a wait: spreads the placements over the reconnects.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    let mut client: Option<SyncClient> = None;
    for _round in 0..3 {
        let mut ws = app.ws().await;
        let seq = hello(&mut ws).await;
        let c = match client.as_mut() {
            None => client.insert(SyncClient::start(&app, 16).await),
            Some(c) => c,
        };
        // After a reconnect: catch up from the last seq applied to the one the hello says.
        c.on_hello(seq);
        assert!(c.settle(&app).await);
        // Take a few frames live, then drop the connection.
        for _ in 0..5 {
            match next_msg(&mut ws, Duration::from_secs(5)).await {
                Some(Message::Binary(f)) => c.on_frame(&app, &f).await,
                Some(_) => {}
                None => break,
            }
        }
        drop(ws);
        // Deliberately away for a while, so that placements are missed and caught up.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    placer.await.unwrap();
    let (seq, board) = app.board_after(400).await;
    let c = client.as_mut().unwrap();
    assert!(c.catch_up(&app).await);
    assert_eq!(seq, 400);
    assert_eq!(c.seq(), 400);
    assert_eq!(c.board(), &board[..]);
    assert_eq!(
        c.sync.stats().boards,
        1,
        "reconnects caught up without a new board"
    );
}

contract_test!(a_stalled_client_does_not_hold_back_others);
/// A client that stops reading does not hold back the others. (What happens to the
/// stalled client itself is tested without sockets in `routes::ws::tests`, since loopback
/// kernel buffers absorb megabytes before a send blocks.)
async fn a_stalled_client_does_not_hold_back_others(backend: Backend) {
    let app = std::sync::Arc::new(
        spawn_app_on(backend, &["--client-queue", "4", "--tick-ms", "1"]).await,
    );
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let stream = sock.connect(app.addr).await.unwrap();
    let (_stalled, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", app.addr), stream)
        .await
        .unwrap();
    let mut good = app.ws().await;
    hello(&mut good).await;
    let n = 2000u64;
    let placer = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for i in 0..n {
                let app = app.clone();
                tasks.push(tokio::spawn(async move {
                    app.bench_place(i + 1, (i % 16) as u32, (i / 16 % 8) as u32, (i % 16) as u8)
                        .await
                }));
                if tasks.len() >= 32 {
                    for t in tasks.drain(..) {
                        t.await.unwrap();
                    }
                }
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    let mut last = 0u64;
    while last < n {
        match next_msg(&mut good, Duration::from_secs(10)).await {
            Some(Message::Binary(f)) => {
                for u in wire::decode_frame(&f).unwrap() {
                    assert_eq!(u.seq.0, last + 1, "frames arrive in seq order without gaps");
                    last = u.seq.0;
                }
            }
            Some(Message::Close(c)) => panic!("the good client was closed after {last}: {c:?}"),
            other => panic!("the good client stopped after {last}: {other:?}"),
        }
    }
    placer.await.unwrap();
}
