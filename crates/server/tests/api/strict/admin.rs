//! The admin token, and an OpenAPI document that matches the router (admin routes included).

use super::{ADMIN_TOKEN, json_error};
use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

fn admin_get(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .get(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token() {
    let app = spawn_app(&["--admin-token", ADMIN_TOKEN]).await;
    let client = reqwest::Client::new();
    let wrong = [
        None,
        Some("wrong".to_string()),
        Some(ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1].to_string()),
        Some(format!("{ADMIN_TOKEN}x")),
        Some(BENCH_TOKEN.to_string()),
    ];
    for path in [
        "/api/admin/status",
        "/api/admin/nope",
        "/api/admin",
        "/api/admin/",
    ] {
        for token in &wrong {
            let mut req = client.get(app.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{path} with {token:?}");
            assert!(
                r.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer")
            );
            assert_eq!(json_error(r, path).await["error"], "unauthorized");
        }
    }
    // Unknown admin paths answer 404 only once authenticated.
    for path in ["/api/admin/nope", "/api/admin/status/deeper"] {
        let r = admin_get(&app, path).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(json_error(r, path).await["error"], "not_found");
    }

    app.bench_place(1, 2, 3, 4).await;
    let mut ws = app.ws().await;
    hello(&mut ws).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let r = admin_get(&app, "/api/admin/status").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let s: Value = r.json().await.unwrap();
        if s["ws_clients"] == 1 || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["ws_clients"], 1, "{status}");
    assert_eq!(status["width"], 16);
    assert_eq!(status["height"], 8);
    assert_eq!(status["seq"], 1);
    assert_eq!(status["backend"], "embedded");
    assert_eq!(status["draining"], false);
    assert!(status["uptime_s"].as_f64().unwrap() >= 0.0, "{status}");
    app.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_admin_is_disabled() {
    let app = spawn_app(&[]).await;
    for path in ["/api/admin/status", "/api/admin/nope"] {
        let r = admin_get(&app, path).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let body = json_error(r, path).await;
        assert_eq!(body["error"], "admin_disabled");
        assert!(body["message"].as_str().unwrap().contains("--admin-token"));
    }
    app.stop().await;
}

#[test]
fn a_short_admin_token_stops_the_start_naming_the_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rplace"))
        .args(["--admin-token", "too-short", "--listen", "127.0.0.1:0"])
        .args(["--data-dir", "/nonexistent-never-created"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--admin-token") && stderr.contains("32"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_served_openapi_matches_the_configuration_and_the_router() {
    let app = spawn_app(&[
        "--width",
        "40",
        "--height",
        "30",
        "--admin-token",
        ADMIN_TOKEN,
    ])
    .await;
    let spec: Value = reqwest::get(app.url("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let place = &spec["components"]["schemas"]["PlaceRequest"]["properties"];
    assert_eq!(place["x"]["maximum"], 39);
    assert_eq!(place["y"]["maximum"], 29);
    assert_eq!(place["color"]["maximum"], 15);
    let params = spec["paths"]["/api/pixel"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for (name, max) in [("x", 39), ("y", 29)] {
        let p = params.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(p["schema"]["maximum"], max, "{name}");
    }
    let ws = &spec["paths"]["/ws"]["get"]["responses"];
    for code in ["101", "400", "403", "503"] {
        assert!(ws[code].is_object(), "/ws lacks {code}");
    }
    // Every route, with every method it serves (from its 405's Allow), is documented, and
    // the document lists no route the server lacks.
    let paths = rplace::routes::paths();
    let client = reqwest::Client::new();
    for path in &paths {
        let r = client
            .request(Method::OPTIONS, app.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
        let allow = r.headers()["allow"].to_str().unwrap().to_string();
        for m in allow.split(',').filter(|m| *m != "HEAD") {
            let op = &spec["paths"][path][m.to_ascii_lowercase()];
            assert!(op.is_object(), "openapi lacks {m} {path}");
        }
    }
    for documented in spec["paths"].as_object().unwrap().keys() {
        assert!(
            paths.contains(documented),
            "openapi documents {documented}, not routed"
        );
    }
    let codes = spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"].clone();
    for code in [
        "method_not_allowed",
        "invalid_host",
        "admin_disabled",
        "origin_not_allowed",
    ] {
        assert!(codes.as_array().unwrap().contains(&json!(code)), "{code}");
    }
    app.stop().await;
}
