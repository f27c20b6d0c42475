//! The placement policy and idempotent placing, end to end over HTTP, on both backends.

use crate::helpers::*;
use serde_json::json;

contract_test!(ipv6_addresses_in_one_prefix_share_a_limit);
/// Addresses in one IPv6 /64 share one limit (whoever has one has 2^64 addresses);
/// another /64 has its own, and IPv4 addresses are counted one by one.
async fn ipv6_addresses_in_one_prefix_share_a_limit(backend: Backend) {
    let app = spawn_app_on(backend, ONE_PER_ADDRESS_BEHIND_PROXIES).await;
    let place = |xff: &'static str, x: u32| {
        let app = &app;
        async move { app.put_forwarded(&format!("{xff}, 10.0.0.1"), x).await.0 }
    };
    assert_eq!(place("2001:db8:1:2::1", 0).await, 200);
    assert_eq!(place("2001:db8:1:2:ffff:ffff:ffff:fffe", 1).await, 429);
    assert_eq!(place("2001:db8:1:3::1", 2).await, 200);
    assert_eq!(place("203.0.113.1", 3).await, 200);
    assert_eq!(place("203.0.113.2", 4).await, 200);
    app.stop().await;

    // With --ipv6-prefix 128 every IPv6 address counts alone.
    let args = [ONE_PER_ADDRESS_BEHIND_PROXIES, &["--ipv6-prefix", "128"]].concat();
    let app = spawn_app_on(backend, &args).await;
    let (first, _) = app.put_forwarded("2001:db8:1:2::1, 10.0.0.1", 0).await;
    let (second, _) = app.put_forwarded("2001:db8:1:2::2, 10.0.0.1", 1).await;
    assert_eq!((first, second), (200, 200));
    app.stop().await;
}

async fn put_keyed(app: &TestApp, c: &reqwest::Client, key: &str, x: u32) -> reqwest::Response {
    c.put(app.url("/api/pixel"))
        .header("idempotency-key", key)
        .json(&json!({"x": x, "y": 3, "color": 4}))
        .send()
        .await
        .unwrap()
}

contract_test!(a_repeated_idempotency_key_answers_the_first_attempt);
/// A resend of a PUT with its Idempotency-Key (what an HTTP client's or a proxy's
/// automatic retry does) answers what the first attempt answered and places nothing.
async fn a_repeated_idempotency_key_answers_the_first_attempt(backend: Backend) {
    let app = spawn_app_on(backend, &["--cooldown", "60"]).await;
    let c = client();
    app.login(&c).await;
    let first = put_keyed(&app, &c, "intent-1", 5).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = first.json().await.unwrap();
    let board = app.board().await;
    for x in [5, 6] {
        let again = put_keyed(&app, &c, "intent-1", x).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: serde_json::Value = again.json().await.unwrap();
        assert_eq!(again, first);
    }
    assert_eq!(app.board().await, board, "the repeat placed nothing");
    let info = app.get_json("/api/pixel?x=5&y=3").await;
    assert_eq!(info["history"].as_array().unwrap().len(), 1, "{info}");
    assert_eq!(app.get_json("/api/pixel?x=6&y=3").await["seq"], json!(null));
    // A new key is a new attempt, refused by the cooldown.
    let other = put_keyed(&app, &c, "intent-2", 7).await;
    assert_eq!(other.status(), 429);
    // Keys are per user.
    let d = client();
    app.login(&d).await;
    let theirs = put_keyed(&app, &d, "intent-1", 8).await;
    assert_eq!(theirs.status(), 200);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    app.stop().await;
}

contract_test!(concurrent_attempts_with_one_key_place_once);
async fn concurrent_attempts_with_one_key_place_once(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    let c = client();
    app.login(&c).await;
    let (seq, _) = app.board().await;
    let attempts = (0..8u32).map(|i| put_keyed(&app, &c, "together", i));
    let answers = futures_util::future::join_all(attempts).await;
    let mut bodies = Vec::new();
    for r in answers {
        assert_eq!(r.status(), 200);
        bodies.push(r.json::<serde_json::Value>().await.unwrap());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    assert_eq!(bodies[0]["seq"], seq + 1);
    assert_eq!(app.board().await.0, seq + 1, "one placement");
    app.stop().await;
}

contract_test!(an_invalid_idempotency_key_is_a_json_400);
async fn an_invalid_idempotency_key_is_a_json_400(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    let c = client();
    app.login(&c).await;
    let long = "x".repeat(65);
    for bad in ["", "has space", "colon:inside", long.as_str()] {
        let r = put_keyed(&app, &c, bad, 0).await;
        assert_eq!(r.status(), 400, "{bad:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_header", "{body}");
        assert_eq!(body["header"], "Idempotency-Key");
        assert!(body["allowed"].as_str().unwrap().contains("64"), "{body}");
    }
    let twice = c
        .put(app.url("/api/pixel"))
        .header("idempotency-key", "a")
        .header("idempotency-key", "b")
        .json(&json!({"x": 0, "y": 0, "color": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);
    assert_eq!(app.board().await.0, 0, "nothing placed");
    app.stop().await;
}
