use crate::helpers::*;

contract_test!(health_metrics_and_openapi);
async fn health_metrics_and_openapi(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    assert_eq!(
        reqwest::get(app.url("/healthz"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    app.bench_place(1, 0, 0, 1).await;
    let mut ws = app.ws().await;
    hello(&mut ws).await;
    let _ = reqwest::get(app.url("/api/board")).await.unwrap();
    let metrics = app.metrics().await;
    for name in [
        "rplace_placements_total",
        "rplace_ws_clients",
        "rplace_board_requests_total",
        "rplace_store_commit_seconds_bucket",
        "rplace_tick_seconds_bucket",
        "rplace_frames_sent_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    let spec: serde_json::Value = reqwest::get(app.url("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    for path in [
        "/api/config",
        "/api/board",
        "/api/board.png",
        "/api/pixel",
        "/api/updates",
        "/ws",
        "/readyz",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lacks {path}");
    }
    app.stop().await;
}
