use crate::helpers::*;
use serde_json::json;
use std::time::Duration;

contract_test!(placement_round_trip);
async fn placement_round_trip(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    let me = app.login(&app.client).await;
    assert_eq!(me["width"], 16);
    assert_eq!(me["palette"].as_array().unwrap().len(), 16);
    assert_eq!(me["bits_per_pixel"], 4);
    let r = app
        .put_pixel(&app.client, json!({"x": 3, "y": 2, "color": 13}))
        .await;
    assert_eq!(r.status(), 200);
    let placed: serde_json::Value = r.json().await.unwrap();
    assert_eq!(placed["seq"], 1);
    assert!(placed["next_at"].as_i64().unwrap() >= placed["at"].as_i64().unwrap());

    let (seq, board) = app.board_after(1).await;
    assert_eq!(seq, 1);
    assert_eq!(board.len(), 16 * 8 / 2);
    assert_eq!(nibble(&board, 2 * 16 + 3), 13);
    assert_eq!(board.iter().filter(|b| **b != 0).count(), 1);

    let info = app.pixel_after(3, 2, 1).await;
    assert_eq!(info["color"], 13);
    assert_eq!(info["seq"], 1);
    assert_eq!(info["user"], me["user"]["id"]);
    assert_eq!(info["history"].as_array().unwrap().len(), 1);
    let blank = app.get_json("/api/pixel?x=0&y=0").await;
    assert_eq!(blank["color"], 0);
    assert!(blank["user"].is_null());
    app.stop().await;
}

contract_test!(pixel_history_lists_the_latest_first);
async fn pixel_history_lists_the_latest_first(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    for (i, color) in [1u8, 2, 3].iter().enumerate() {
        app.bench_place(i as u64 + 1, 5, 5, *color).await;
    }
    let info = app.pixel_after(5, 5, 3).await;
    let hist = info["history"].as_array().unwrap();
    assert_eq!(
        hist.iter()
            .map(|h| h["color"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert_eq!(info["user"], format!("{:016x}", 3));
    app.stop().await;
}

contract_test!(cooldown_holds_and_then_expires);
async fn cooldown_holds_and_then_expires(backend: Backend) {
    let app = spawn_app_on(backend, &["--cooldown", "0.6"]).await;
    app.login(&app.client).await;
    let first = app
        .put_pixel(&app.client, json!({"x": 1, "y": 1, "color": 1}))
        .await;
    assert_eq!(first.status(), 200);
    let second = app
        .put_pixel(&app.client, json!({"x": 2, "y": 1, "color": 2}))
        .await;
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"], "cooldown");
    assert!(body["next_at"].as_i64().unwrap() > 0);
    // The rejected placement changed nothing.
    let (seq, board) = app.board_after(1).await;
    assert_eq!(seq, 1);
    assert_eq!(nibble(&board, 16 + 2), 0);
    // Config reports the pending cooldown.
    let me = app.login(&app.client).await;
    assert!(me["user"]["next_at"].as_i64().is_some());
    // Another identity is not affected.
    let other = client();
    app.login(&other).await;
    assert_eq!(
        app.put_pixel(&other, json!({"x": 2, "y": 1, "color": 2}))
            .await
            .status(),
        200
    );
    // Lets the 0.6 s cooldown pass for real: the server has no clock to inject.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        app.put_pixel(&app.client, json!({"x": 2, "y": 1, "color": 3}))
            .await
            .status(),
        200
    );
    app.stop().await;
}

contract_test!(per_ip_limit_holds_when_cookies_are_cleared);
async fn per_ip_limit_holds_when_cookies_are_cleared(backend: Backend) {
    let app = spawn_app_on(backend, &["--ip-rate", "1", "--ip-burst", "3"]).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let fresh = client();
        app.login(&fresh).await;
        let r = app
            .put_pixel(&fresh, json!({"x": i, "y": 0, "color": 1}))
            .await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited");
        }
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    app.stop().await;
}

contract_test!(identity_cookie_is_signed_http_only_and_lax);
async fn identity_cookie_is_signed_http_only_and_lax(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    let r = reqwest::get(app.url("/api/config")).await.unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("rplace_id="), "{cookie}");
    assert!(cookie.contains("HttpOnly"));
    assert!(cookie.contains("SameSite=Lax"));
    // The page hands one out too.
    let page = reqwest::get(app.url("/")).await.unwrap();
    assert!(page.headers().contains_key("set-cookie"));
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    // A tampered value is no identity.
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("rplace_id=")
        .to_string();
    let (mac, id) = value.split_at(value.len() - 16);
    let last = if id.ends_with('0') { "1" } else { "0" };
    let forged_id = format!("{}{last}", &id[..15]);
    let place_as = |cookie: String| {
        reqwest::Client::new()
            .put(app.url("/api/pixel"))
            .header("cookie", format!("rplace_id={cookie}"))
            .json(&json!({"x": 0, "y": 0, "color": 1}))
            .send()
    };
    assert_eq!(
        place_as(format!("{mac}{forged_id}"))
            .await
            .unwrap()
            .status(),
        401
    );
    // And the genuine one works.
    assert_eq!(place_as(value.clone()).await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn bench_path_needs_the_exact_token() {
    let app = spawn_app(&[]).await;
    let r = reqwest::Client::new()
        .put(app.url("/api/pixel"))
        .header("authorization", "Bearer wrong-token-wrong-token")
        .header("x-rplace-user", "0000000000000001")
        .json(&json!({"x": 0, "y": 0, "color": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
    // Without --bench-token the header is no way in (checked on the embedded store only:
    // the check is in the route, before any store).
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_string();
    let config =
        rplace::Config::from_args(["--data-dir", &dir, "--width", "4", "--height", "4"]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(rplace::run(listener, config, async move {
        let _ = rx.await;
    }));
    let readyz = format!("http://{addr}/readyz");
    eventually(Duration::from_secs(30), "the server is ready", || async {
        let r = reqwest::get(&readyz).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let r = reqwest::Client::new()
        .put(format!("http://{addr}/api/pixel"))
        .header("authorization", format!("Bearer {BENCH_TOKEN}"))
        .header("x-rplace-user", "0000000000000001")
        .json(&json!({"x": 0, "y": 0, "color": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

contract_test!(behind_trusted_proxies_the_limit_keys_on_the_forwarded_address);
async fn behind_trusted_proxies_the_limit_keys_on_the_forwarded_address(backend: Backend) {
    // The test is the proxy at 127.0.0.1, with another proxy in 10.0.0.0/8 before it.
    let app = spawn_app_on(backend, ONE_PER_ADDRESS_BEHIND_PROXIES).await;
    let code = |xff: &'static str| {
        let app = &app;
        async move { app.put_forwarded(xff, 0).await.0 }
    };
    // "client, first proxy": right to left past the trusted proxies.
    assert_eq!(code("203.0.113.1, 10.0.0.1").await, 200);
    assert_eq!(code("203.0.113.1, 10.0.0.2").await, 429);
    assert_eq!(code("203.0.113.2, 10.0.0.1").await, 200);
    // What the client wrote itself, left of the address the proxies saw, is not used.
    assert_eq!(code("198.51.100.9, 203.0.113.2, 10.0.0.1").await, 429);
    // An entry that does not parse fails closed instead of being skipped.
    let (status, error) = app.put_forwarded("203.0.113.3, not-an-ip", 0).await;
    assert_eq!((status, error.as_str()), (400, "invalid_forwarded_for"));
    assert_eq!(
        code("203.0.113.3, 10.0.0.1").await,
        200,
        "the 400 spent nothing"
    );
    app.stop().await;
}

contract_test!(a_direct_clients_own_forwarded_for_is_ignored);
async fn a_direct_clients_own_forwarded_for_is_ignored(backend: Backend) {
    // The peer (127.0.0.1) is not a trusted proxy.
    let app = spawn_app_on(
        backend,
        &[
            "--ip-rate",
            "1",
            "--ip-burst",
            "1",
            "--trusted-proxies",
            "10.0.0.0/8",
        ],
    )
    .await;
    assert_eq!(app.put_forwarded("203.0.113.1", 0).await.0, 200);
    // A different forged address each time is still the same peer: limited.
    assert_eq!(app.put_forwarded("203.0.113.2", 0).await.0, 429);
    assert_eq!(
        app.put_forwarded("nonsense", 0).await.0,
        429,
        "not read at all"
    );
    app.stop().await;
}

contract_test!(a_placement_refused_for_cooldown_spends_no_address_budget);
/// Issue 8: in embedded mode a placement refused for cooldown used to spend the address's
/// rate budget, so 35 refused PUTs from one user behind a NAT locked everyone on that
/// address out. A refused placement spends nothing.
async fn a_placement_refused_for_cooldown_spends_no_address_budget(backend: Backend) {
    let app = spawn_app_on(
        backend,
        &["--cooldown", "60", "--ip-rate", "1", "--ip-burst", "3"],
    )
    .await;
    app.login(&app.client).await;
    let place = |c: reqwest::Client, x: u32| {
        let app = &app;
        async move { app.put_pixel(&c, json!({"x": x, "y": 0, "color": 1})).await }
    };
    assert_eq!(place(app.client.clone(), 0).await.status(), 200);
    for attempt in 0..35 {
        let r = place(app.client.clone(), 1).await;
        assert_eq!(r.status(), 429, "attempt {attempt}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "cooldown", "attempt {attempt}: {body}");
    }
    // Two more users on the same address: the burst of 3 had one placement spent.
    for x in 6..8 {
        let other = client();
        app.login(&other).await;
        assert_eq!(
            place(other, x).await.status(),
            200,
            "user {x} was locked out"
        );
    }
    app.stop().await;
}
