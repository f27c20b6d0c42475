//! A dead hub cannot go unnoticed: readiness fails at once and `run` returns an error (so
//! the binary exits non-zero and is restarted). In a test binary of its own, because the
//! fault it injects reaches every hub in the process.

use rplace::Config;
use std::time::Duration;

#[tokio::test]
async fn a_dead_hub_fails_readiness_and_makes_run_return_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_args([
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--width",
        "16",
        "--height",
        "8",
        "--sync",
        "normal",
        "--drain",
        "5",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // The shutdown signal never comes: only the failure may end `run`.
    let task = tokio::spawn(rplace::run(listener, config, std::future::pending()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/readyz")).await
            && r.status() == 200
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", &url[7..]))
        .await
        .unwrap();

    rplace::hub::fault::panic_every_hub();

    // Readiness fails (for the drain period, so a load balancer notices) and the other
    // endpoints keep answering instead of panicking on the poisoned lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = reqwest::get(format!("{url}/readyz")).await.unwrap();
        if r.status() == 503 {
            assert_eq!(r.text().await.unwrap(), "live updates stopped");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never failed"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for path in ["/api/board", "/api/updates?since=0", "/api/pixel?x=1&y=1"] {
        let r = reqwest::get(format!("{url}{path}")).await.unwrap();
        assert!(r.status().as_u16() < 500, "{path}: {}", r.status());
    }

    let result = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("run ends by itself once the hub is dead")
        .unwrap();
    match result {
        Err(rplace::RunError::LivePath(reason)) => {
            assert!(reason.contains("panicked"), "{reason}")
        }
        other => panic!("expected a live-path error, got {other:?}"),
    }
    drop(ws);
}
