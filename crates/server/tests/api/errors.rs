//! Every bad input gets a 4xx JSON error naming the problem, and changes nothing.

use crate::helpers::*;
use serde_json::json;

async fn expect_error(r: reqwest::Response, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(r.status(), status);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty());
    if let Some(f) = field {
        assert_eq!(body["field"], f, "{body}");
        assert!(body["allowed"].is_string(), "{body}");
    }
}

contract_test!(bad_placements_are_rejected_with_clear_errors_and_change_nothing);
async fn bad_placements_are_rejected_with_clear_errors_and_change_nothing(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    app.login(&app.client).await;
    let cases = [
        (
            json!({"x": 16, "y": 0, "color": 1}),
            422,
            "invalid_field",
            Some("x"),
        ),
        (
            json!({"x": -1, "y": 0, "color": 1}),
            422,
            "invalid_field",
            Some("x"),
        ),
        (
            json!({"x": 0, "y": 8, "color": 1}),
            422,
            "invalid_field",
            Some("y"),
        ),
        (
            json!({"x": 1.5, "y": 0, "color": 1}),
            422,
            "invalid_field",
            Some("x"),
        ),
        (
            json!({"x": "1", "y": 0, "color": 1}),
            422,
            "invalid_field",
            Some("x"),
        ),
        (
            json!({"x": 0, "y": 0, "color": 16}),
            422,
            "invalid_field",
            Some("color"),
        ),
        (
            json!({"x": 0, "y": 0, "color": -2}),
            422,
            "invalid_field",
            Some("color"),
        ),
        (json!({"y": 0, "color": 1}), 422, "missing_field", Some("x")),
        (json!({"x": 0, "color": 1}), 422, "missing_field", Some("y")),
        (json!({"x": 0, "y": 0}), 422, "missing_field", Some("color")),
        (json!([1, 2, 3]), 400, "invalid_json", None),
    ];
    for (body, status, code, field) in cases {
        let r = app.put_pixel(&app.client, body.clone()).await;
        expect_error(r, status, code, field).await;
    }
    let raw = |body: &'static str, ctype: &'static str| {
        app.client
            .put(app.url("/api/pixel"))
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    expect_error(
        raw("{\"x\": 1,", "application/json").await.unwrap(),
        400,
        "invalid_json",
        None,
    )
    .await;
    expect_error(
        raw("x=1&y=1&color=1", "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        415,
        "unsupported_media_type",
        None,
    )
    .await;
    let big = format!(
        "{{\"x\":1,\"y\":1,\"color\":1,\"pad\":\"{}\"}}",
        "a".repeat(2000)
    );
    let r = app
        .client
        .put(app.url("/api/pixel"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large", None).await;
    // No identity at all.
    let r = reqwest::Client::new()
        .put(app.url("/api/pixel"))
        .json(&json!({"x": 0, "y": 0, "color": 1}))
        .send()
        .await
        .unwrap();
    expect_error(r, 401, "unauthorized", None).await;

    let (seq, board) = app.board().await;
    assert_eq!(seq, 0);
    assert!(board.iter().all(|b| *b == 0));
    app.stop().await;
}

contract_test!(bad_queries_and_unknown_paths);
async fn bad_queries_and_unknown_paths(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    expect_error(
        reqwest::get(app.url("/api/pixel?x=1")).await.unwrap(),
        400,
        "invalid_query",
        None,
    )
    .await;
    expect_error(
        reqwest::get(app.url("/api/pixel?x=a&y=1")).await.unwrap(),
        400,
        "invalid_query",
        None,
    )
    .await;
    expect_error(
        reqwest::get(app.url("/api/pixel?x=99&y=1")).await.unwrap(),
        422,
        "invalid_field",
        Some("x"),
    )
    .await;
    expect_error(
        reqwest::get(app.url("/api/updates")).await.unwrap(),
        400,
        "invalid_query",
        None,
    )
    .await;
    expect_error(
        reqwest::get(app.url("/api/updates?since=-4"))
            .await
            .unwrap(),
        400,
        "invalid_query",
        None,
    )
    .await;
    expect_error(
        reqwest::get(app.url("/api/nope")).await.unwrap(),
        404,
        "not_found",
        None,
    )
    .await;
    assert_eq!(
        reqwest::get(app.url("/nope.js")).await.unwrap().status(),
        404
    );
    app.stop().await;
}

#[test]
fn invalid_configuration_fails_at_start_naming_the_setting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rplace"))
        .args(["--width", "0", "--data-dir", "/nonexistent-never-created"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--width"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rplace"))
        .args(["--palette", "#12345"])
        .env("RPLACE_DATA_DIR", "/nonexistent-never-created")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--palette"));
}

#[test]
fn unreachable_shared_services_fail_the_start_with_a_clear_error() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = "cd".repeat(64);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rplace"))
        .args(["--listen", "127.0.0.1:0", "--cookie-key", &key])
        .args(["--redis-url", &format!("redis://127.0.0.1:{dead}")])
        .args([
            "--database-url",
            &format!("postgres://nobody@127.0.0.1:{dead}/none"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Redis") || stderr.contains("PostgreSQL"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&dead.to_string()),
        "the error names the address: {stderr}"
    );
    // Shared mode without a common cookie key is refused up front.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rplace"))
        .args([
            "--redis-url",
            "redis://127.0.0.1:1",
            "--database-url",
            "postgres://x@127.0.0.1:1/x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cookie-key"));
}
