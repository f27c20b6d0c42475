//! A short `live` run against the real server in this process, so the generator keeps
//! working as the server changes. The full scenarios are in BENCHMARKS.md, not here.

use rplace_bench::client::BoardFetch;
use rplace_bench::{LiveArgs, live};
use std::time::Duration;

const TOKEN: &str = "smoke-bench-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_twenty_clients_see_every_placement() {
    let data = tempfile::tempdir().unwrap();
    let config = rplace::Config::from_args([
        "--data-dir",
        data.path().to_str().unwrap(),
        "--width",
        "64",
        "--height",
        "64",
        "--cooldown",
        "0",
        "--ip-rate",
        "0",
        "--tick-ms",
        "20",
        "--sync",
        "normal",
        "--bench-token",
        TOKEN,
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rplace::run(listener, config, async move {
        let _ = stopped.await;
    }));

    let args = LiveArgs {
        addr,
        clients: 20,
        rate: 200.0,
        duration: 2.0,
        token: TOKEN.into(),
        conns: 4,
        users: 1000,
        sources: 4,
        clients_per_worker: 15_000,
        workers: 1,
        board: BoardFetch::PerClient,
        connect_concurrency: 20,
        http_concurrency: 8,
        drain: 10.0,
        sync_timeout: 30.0,
        server_pids: vec![std::process::id()],
        per_client: true,
        view: None,
        hot_spot: None,
        tiles: None,
    };
    let r = live(&args).await.unwrap();
    println!("{}", r.line());
    assert_eq!(r.placer.scheduled, 400);
    assert_eq!(r.placer.acked, 400, "{:?}", r.placer.error_samples);
    assert_eq!(r.placer.errors, 0);
    assert_eq!(r.completeness, 1.0, "{}", r.line());
    assert_eq!(r.missing + r.duplicates + r.client_errors, 0);
    assert_eq!(r.per_client.len(), 20);
    assert!(r.latency.count == 400 * 20 && r.latency.p99_ms > 0.0);
    // 13 header bytes a frame plus 5 a placement, and the websocket header.
    assert!(r.bytes_per_placement > 5.0 && r.bytes_per_placement < 20.0);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// View clients on a canvas of 4×4 tiles, each showing 2×2 of them, with most placements
/// in the middle tiles: every client gets exactly the placements on its tiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_clients_see_exactly_their_tiles() {
    let data = tempfile::tempdir().unwrap();
    let config = rplace::Config::from_args([
        "--data-dir",
        data.path().to_str().unwrap(),
        "--width",
        "1024",
        "--height",
        "1024",
        "--cooldown",
        "0",
        "--ip-rate",
        "0",
        "--tick-ms",
        "20",
        "--sync",
        "normal",
        "--bench-token",
        TOKEN,
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rplace::run(listener, config, async move {
        let _ = stopped.await;
    }));
    let args = LiveArgs {
        addr,
        clients: 12,
        rate: 300.0,
        duration: 2.0,
        token: TOKEN.into(),
        conns: 4,
        users: 1000,
        sources: 4,
        clients_per_worker: 15_000,
        workers: 1,
        board: BoardFetch::PerClient,
        connect_concurrency: 12,
        http_concurrency: 8,
        drain: 10.0,
        sync_timeout: 30.0,
        server_pids: vec![std::process::id()],
        per_client: true,
        view: Some((2, 2)),
        hot_spot: Some(0.5),
        tiles: None,
    };
    let r = live(&args).await.unwrap();
    println!("{}", r.line());
    assert_eq!(r.placer.acked, 600, "{:?}", r.placer.error_samples);
    assert_eq!(r.completeness, 1.0, "{}", r.line());
    // `duplicates` counts frames for tiles a client did not ask for.
    assert_eq!(
        r.missing + r.duplicates + r.client_errors,
        0,
        "{}",
        r.line()
    );
    let expected: u64 = r.per_client.iter().map(|c| c.expected).sum();
    // Each client sees a quarter of the canvas, or more of the placements where it
    // covers the hot middle: never all of them, never none.
    assert!(expected > 0 && expected < 600 * 12, "{expected}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
