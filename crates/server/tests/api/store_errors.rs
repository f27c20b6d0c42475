//! What a client sees when the store fails: a JSON `503` that says it may retry, and
//! nothing of the backend (no service names, addresses or OS error text); the log keeps
//! the chain. Each test runs on its own Redis, one `redis-server` or a Redis Cluster
//! (whose masters all fail together here; the topology tests lose one at a time).

use crate::helpers::{client, spawn_app};
use rplace_testsupport::{Postgres, RedisKind, SharedRedis};
use std::time::{Duration, Instant};

/// Words of internal error text that must never reach a client.
const INTERNAL: &[&str] = &[
    "redis",
    "postgres",
    "sqlite",
    "127.0.0.1",
    "refused",
    "os error",
    "timed out",
    "timeout",
    "connection",
    "broken pipe",
    "i/o",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_answers_503_without_internal_text() {
    a_failed_store_answers_503_without_internal_text_on(RedisKind::Single).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_cluster_answers_503_without_internal_text() {
    a_failed_store_answers_503_without_internal_text_on(RedisKind::Cluster).await
}

async fn a_failed_store_answers_503_without_internal_text_on(kind: RedisKind) {
    let mut redis = SharedRedis::start(kind);
    let pg_url = Postgres::shared().create_database();
    let key = "ab".repeat(64);
    let redis_args = redis.args();
    let mut args: Vec<&str> = redis_args.iter().map(String::as_str).collect();
    args.extend([
        "--database-url",
        &pg_url,
        "--cookie-key",
        &key,
        "--redis-timeout-ms",
        "500",
    ]);
    let app = spawn_app(&args).await;
    let c = client();
    app.login(&c).await;
    let ok = app
        .put_pixel(&c, serde_json::json!({"x": 1, "y": 1, "color": 2}))
        .await;
    assert_eq!(ok.status(), 200);

    redis.kill_all();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, headers, body) = loop {
        let r = app
            .put_pixel(&c, serde_json::json!({"x": 2, "y": 1, "color": 3}))
            .await;
        if r.status() == 503 {
            break (r.status(), r.headers().clone(), r.text().await.unwrap());
        }
        assert!(Instant::now() < deadline, "never got a 503: {}", r.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "unavailable", "{body}");
    assert_eq!(
        json["message"],
        "the canvas cannot take placements right now; retry in a moment"
    );
    assert!(json["retry_after_ms"].as_i64().unwrap() > 0, "{body}");
    assert!(headers.contains_key("retry-after"));
    let lower = body.to_lowercase();
    let ports: Vec<String> = redis
        .servers()
        .iter()
        .map(|s| s.port().to_string())
        .collect();
    for word in INTERNAL
        .iter()
        .copied()
        .chain(ports.iter().map(String::as_str))
    {
        assert!(!lower.contains(word), "the 503 body shows {word:?}: {body}");
    }
    // Reads that need the store answer the same way.
    let r = c.get(app.url("/api/updates?since=0")).send().await.unwrap();
    if r.status() == 503 {
        let body = r.text().await.unwrap().to_lowercase();
        for word in INTERNAL {
            assert!(!body.contains(word), "the 503 body shows {word:?}: {body}");
        }
    }
}

/// A stalled Redis (SIGSTOP) fails `/readyz` within about a second and holds no `PUT`
/// longer than `--redis-timeout-ms`; after SIGCONT the instance is ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_fails_readiness_and_bounds_puts() {
    a_stalled_redis_fails_readiness_and_bounds_puts_on(RedisKind::Single).await
}

/// The same with every master of a cluster stalled at once (for less than
/// `--cluster-node-timeout`, so that the cluster itself sees no failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_cluster_fails_readiness_and_bounds_puts() {
    a_stalled_redis_fails_readiness_and_bounds_puts_on(RedisKind::Cluster).await
}

async fn a_stalled_redis_fails_readiness_and_bounds_puts_on(kind: RedisKind) {
    let redis = SharedRedis::start(kind);
    let pg_url = Postgres::shared().create_database();
    let key = "cd".repeat(64);
    let redis_args = redis.args();
    let mut args: Vec<&str> = redis_args.iter().map(String::as_str).collect();
    args.extend([
        "--database-url",
        &pg_url,
        "--cookie-key",
        &key,
        "--redis-timeout-ms",
        "800",
    ]);
    let app = spawn_app(&args).await;
    let c = client();
    app.login(&c).await;
    let ready = || async { reqwest::get(app.url("/readyz")).await.unwrap().status() == 200 };
    assert!(ready().await);

    redis.pause_all();
    let stalled = Instant::now();
    let put = app
        .put_pixel(&c, serde_json::json!({"x": 3, "y": 1, "color": 4}))
        .await;
    let put_took = stalled.elapsed();
    assert_eq!(put.status(), 503);
    while ready().await {
        assert!(stalled.elapsed() < Duration::from_secs(10), "still ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let not_ready = stalled.elapsed();
    eprintln!(
        "stalled Redis ({kind:?}) over HTTP: PUT 503 after {put_took:?}, /readyz 503 after {not_ready:?}"
    );
    assert!(put_took < Duration::from_millis(800 + 1500), "{put_took:?}");
    assert!(not_ready < Duration::from_millis(2500), "{not_ready:?}");

    redis.resume_all();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready().await {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
