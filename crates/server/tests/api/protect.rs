//! Protected areas: only moderators (and the admin token) place inside; others get 403
//! `protected`, which spends nothing.

use crate::bans::{admin, put, visitor};
use crate::helpers::*;
use crate::strict::ADMIN_TOKEN;
use serde_json::json;

/// PUTs (x, y) with the admin token; the status.
async fn put_as_admin(app: &TestApp, x: u32, y: u32) -> u16 {
    reqwest::Client::new()
        .put(app.url("/api/pixel"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"x": x, "y": y, "color": 5}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

contract_test!(only_moderators_place_in_a_protected_area);
async fn only_moderators_place_in_a_protected_area(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN, "--cooldown", "60"]).await;
    let (status, area) = admin(
        &app,
        "POST",
        "/api/admin/protect",
        Some(json!({"rect": {"x": 2, "y": 1, "w": 3, "h": 2}, "reason": "logo"})),
    )
    .await;
    assert_eq!(status, 201, "{area}");
    assert_eq!(area["rect"], json!({"x": 2, "y": 1, "w": 3, "h": 2}));
    let id = area["id"].as_u64().unwrap();
    let (c, _) = visitor(&app).await;
    for (x, y) in [(2, 1), (4, 2), (3, 1)] {
        let (status, body) = put(&app, &c, x, y).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("protected")),
            "({x}, {y})"
        );
    }
    // The refusals started no cooldown; just outside the area is not protected.
    let (status, body) = put(&app, &c, 5, 1).await;
    assert_eq!(status, 200, "{body}");
    // The admin token places inside, again and again (no cooldown).
    assert_eq!(put_as_admin(&app, 2, 1).await, 200);
    assert_eq!(put_as_admin(&app, 3, 2).await, 200);
    let (_, list) = admin(&app, "GET", "/api/admin/protect", None).await;
    assert_eq!(list["areas"][0]["id"], json!(id));
    assert_eq!(list["areas"][0]["reason"], json!("logo"));
    assert_eq!(list["areas"][0]["by"], json!("0000000000000000"));
    let (status, shown) = admin(&app, "GET", &format!("/api/admin/protect/{id}"), None).await;
    assert_eq!((status, &shown["rect"]), (200, &area["rect"]));
    let (status, _) = admin(&app, "DELETE", &format!("/api/admin/protect/{id}"), None).await;
    assert_eq!(status, 200);
    let (other, _) = visitor(&app).await;
    let (status, body) = put(&app, &other, 2, 1).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = admin(&app, "GET", "/api/admin/protect", None).await;
    assert_eq!(list["areas"], json!([]));
    for method in ["GET", "DELETE"] {
        let path = format!("/api/admin/protect/{id}");
        assert_eq!(admin(&app, method, &path, None).await.0, 404);
    }
}

contract_test!(protected_areas_must_lie_on_the_board);
async fn protected_areas_must_lie_on_the_board(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    for (rect, field) in [
        (json!({"x": 16, "y": 0, "w": 1, "h": 1}), "rect.x"),
        (json!({"x": 0, "y": -1, "w": 1, "h": 1}), "rect.y"),
        (json!({"x": 10, "y": 0, "w": 7, "h": 1}), "rect.w"),
        (json!({"x": 0, "y": 0, "w": 1, "h": 0}), "rect.h"),
    ] {
        let (status, answer) = admin(
            &app,
            "POST",
            "/api/admin/protect",
            Some(json!({"rect": rect})),
        )
        .await;
        assert_eq!(status, 422, "{rect}: {answer}");
        assert_eq!(answer["field"], json!(field), "{rect}: {answer}");
    }
    let (status, answer) = admin(&app, "POST", "/api/admin/protect", Some(json!({}))).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_json"))
    );
}
