//! Every moderation action leaves one audit entry once it took effect, naming who did it,
//! the reason and how many pixels it changed; a preview and a refused action leave none.
//! On both backends.

use crate::helpers::*;
use crate::strict::ADMIN_TOKEN;
use serde_json::{Value, json};

/// The admin token's identity.
const OPERATOR: &str = "0000000000000000";

async fn act(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(method.clone(), app.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{method} {path}: {}", r.status());
    r.json().await.unwrap()
}

/// The newest audit entry.
async fn newest(app: &TestApp) -> Value {
    let log = act(app, reqwest::Method::GET, "/api/admin/audit?limit=1", None).await;
    log["entries"][0].clone()
}

async fn entries(app: &TestApp) -> usize {
    let log = act(
        app,
        reqwest::Method::GET,
        "/api/admin/audit?limit=500",
        None,
    )
    .await;
    log["entries"].as_array().unwrap().len()
}

contract_test!(every_moderation_action_is_audited_once_it_took_effect);
async fn every_moderation_action_is_audited_once_it_took_effect(backend: Backend) {
    use reqwest::Method;
    let app = spawn_app_on(
        backend,
        &["--admin-token", ADMIN_TOKEN, "--bench-token", BENCH_TOKEN],
    )
    .await;
    let griefer = 0x0000_0000_00ab_0001u64;
    let mut last = 0;
    for x in 0..4 {
        last = app.bench_place(griefer, x, 0, 5).await;
    }
    app.board_after(last).await;
    let user = format!("{griefer:016x}");
    let rect = json!({"x": 0, "y": 0, "w": 4, "h": 1});

    let check = |e: Value, kind: &str, reason: Option<&str>, pixels: u64| {
        assert_eq!(e["kind"], kind, "{e}");
        assert_eq!(e["actor"], OPERATOR, "{e}");
        assert_eq!(e["reason"], json!(reason), "{e}");
        assert_eq!(e["pixels"], pixels, "{e}");
        assert!(e["at"].as_i64().unwrap() > 0, "{e}");
    };

    // A preview changes nothing and is not an action.
    let before = entries(&app).await;
    let preview = act(
        &app,
        Method::POST,
        "/api/admin/rollback",
        Some(json!({"user": user, "preview": true})),
    )
    .await;
    assert_eq!(preview["pixels"], 4);
    assert_eq!(entries(&app).await, before);

    let ban = act(
        &app,
        Method::POST,
        "/api/admin/bans",
        Some(json!({"user": user, "reason": "griefing"})),
    )
    .await;
    check(newest(&app).await, "ban", Some("griefing"), 0);
    act(
        &app,
        Method::DELETE,
        &format!("/api/admin/bans/{}", ban["id"]),
        None,
    )
    .await;
    // Lifting names the ban it lifted, with its reason.
    check(newest(&app).await, "unban", Some("griefing"), 0);

    act(
        &app,
        Method::POST,
        "/api/admin/rollback",
        Some(json!({"user": user, "reason": "raid"})),
    )
    .await;
    check(newest(&app).await, "rollback", Some("raid"), 4);

    act(
        &app,
        Method::POST,
        "/api/admin/fill",
        Some(json!({"rect": rect, "color": 3, "reason": "repair"})),
    )
    .await;
    check(newest(&app).await, "fill", Some("repair"), 4);

    act(
        &app,
        Method::POST,
        "/api/admin/restore",
        Some(json!({"rect": rect, "seq": last, "reason": "back"})),
    )
    .await;
    check(newest(&app).await, "restore", Some("back"), 4);

    let area = act(
        &app,
        Method::POST,
        "/api/admin/protect",
        Some(json!({"rect": rect, "reason": "logo"})),
    )
    .await;
    check(newest(&app).await, "protect", Some("logo"), 0);
    act(
        &app,
        Method::DELETE,
        &format!("/api/admin/protect/{}", area["id"]),
        None,
    )
    .await;
    check(newest(&app).await, "unprotect", Some("logo"), 0);

    // A 2x1 stamp of palette color 0 (white in r/place 2017's palette) at (0, 0).
    let mut png = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png, 2, 1);
        enc.set_color(png::ColorType::Rgba);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[255, 255, 255, 255, 255, 255, 255, 255])
            .unwrap();
    }
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/stamp?x=0&y=0&reason=art"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    check(newest(&app).await, "stamp", Some("art"), 2);

    // A refused action (a ban without a reason) leaves nothing.
    let n = entries(&app).await;
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/bans"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"user": user}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(entries(&app).await, n);
}
