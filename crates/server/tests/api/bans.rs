//! Bans: of users and of networks, with reason and expiry, decided atomically with
//! placements on both backends; `/api/admin/bans` needs credentials.

use crate::helpers::*;
use crate::strict::ADMIN_TOKEN;
use serde_json::{Value, json};
use std::time::Duration;

/// An admin-token request; the status and the JSON answer.
pub async fn admin(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(method, app.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A fresh identity and its public id.
pub async fn visitor(app: &TestApp) -> (reqwest::Client, String) {
    let c = client();
    let config = app.login(&c).await;
    let id = config["user"]["id"].as_str().unwrap().to_string();
    (c, id)
}

/// PUTs (x, y) with `c`; the status and the answer.
pub async fn put(app: &TestApp, c: &reqwest::Client, x: u32, y: u32) -> (u16, Value) {
    let r = app.put_pixel(c, json!({"x": x, "y": y, "color": 2})).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

contract_test!(a_banned_user_is_refused_with_the_reason_until_unbanned);
async fn a_banned_user_is_refused_with_the_reason_until_unbanned(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN, "--cooldown", "60"]).await;
    let (c, id) = visitor(&app).await;
    let until = now_ms() + 3_600_000;
    let (status, ban) = admin(
        &app,
        "POST",
        "/api/admin/bans",
        Some(json!({"user": id, "reason": "griefing", "until": until})),
    )
    .await;
    assert_eq!(status, 201, "{ban}");
    assert_eq!(ban["user"], json!(id));
    assert_eq!(ban["identities"], json!([id]));
    assert_eq!(ban["by"], json!("0000000000000000"));
    let ban_id = ban["id"].as_u64().unwrap();
    let (status, body) = put(&app, &c, 1, 1).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "banned");
    assert_eq!(body["reason"], "griefing");
    assert_eq!(body["until"], json!(until));
    // Someone else still places.
    let (other, _) = visitor(&app).await;
    assert_eq!(put(&app, &other, 2, 1).await.0, 200);
    let (_, list) = admin(&app, "GET", "/api/admin/bans", None).await;
    assert_eq!(list["bans"][0]["id"], json!(ban_id));
    assert_eq!(list["bans"][0]["active"], json!(true));
    let (status, lifted) = admin(&app, "DELETE", &format!("/api/admin/bans/{ban_id}"), None).await;
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(lifted["active"], json!(false));
    // The refusal started no cooldown: the first accepted placement comes right away.
    let (status, body) = put(&app, &c, 1, 1).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = admin(&app, "GET", "/api/admin/bans", None).await;
    assert_eq!(list["bans"], json!([]));
    let (status, shown) = admin(&app, "GET", &format!("/api/admin/bans/{ban_id}"), None).await;
    assert_eq!(
        (status, &shown["lifted_by"]),
        (200, &json!("0000000000000000"))
    );
    let (_, all) = admin(&app, "GET", "/api/admin/bans?all=true", None).await;
    assert_eq!(all["bans"][0]["id"], json!(ban_id));
    assert_eq!(all["bans"][0]["lifted_by"], json!("0000000000000000"));
    assert_eq!(
        admin(&app, "DELETE", &format!("/api/admin/bans/{ban_id}"), None)
            .await
            .0,
        404
    );
}

contract_test!(a_ban_ends_at_its_time);
async fn a_ban_ends_at_its_time(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    let (c, id) = visitor(&app).await;
    let until = now_ms() + 1_500;
    let (status, ban) = admin(
        &app,
        "POST",
        "/api/admin/bans",
        Some(json!({"user": id, "reason": "cool off", "until": until})),
    )
    .await;
    assert_eq!(status, 201, "{ban}");
    let (status, body) = put(&app, &c, 0, 0).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("banned")));
    eventually(Duration::from_secs(10), "the ban ends", || async {
        let (status, _) = put(&app, &c, 0, 0).await;
        (status == 200).then_some(())
    })
    .await;
    assert!(now_ms() >= until, "placed before the ban's end");
}

contract_test!(networks_are_banned_by_prefix);
async fn networks_are_banned_by_prefix(backend: Backend) {
    let app = spawn_app_on(
        backend,
        &[
            "--admin-token",
            ADMIN_TOKEN,
            "--trusted-proxies",
            "127.0.0.1",
        ],
    )
    .await;
    for ip in ["198.51.100.0/24", "2001:db8:1:2::5"] {
        let (status, ban) = admin(
            &app,
            "POST",
            "/api/admin/bans",
            Some(json!({"ip": ip, "reason": "botnet"})),
        )
        .await;
        assert_eq!(status, 201, "{ban}");
    }
    let (_, list) = admin(&app, "GET", "/api/admin/bans", None).await;
    let ips: Vec<&str> = list["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["2001:db8:1:2::/64", "198.51.100.0/24"]);
    for (xff, banned) in [
        ("198.51.100.7", true),
        ("198.51.100.255", true),
        ("::ffff:198.51.100.9", true),
        ("198.51.101.7", false),
        ("2001:db8:1:2:ffff::1", true),
        ("2001:db8:1:3::1", false),
        ("203.0.113.1", false),
    ] {
        let (status, error) = app.put_forwarded(xff, 3).await;
        if banned {
            assert_eq!((status, error.as_str()), (403, "banned"), "{xff}");
        } else {
            assert_eq!(status, 200, "{xff}: {error}");
        }
    }
}

contract_test!(bad_bans_are_refused_with_what_is_allowed);
async fn bad_bans_are_refused_with_what_is_allowed(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    let long = "x".repeat(501);
    for (body, field) in [
        (json!({"user": "00000000000000aa"}), "reason"),
        (
            json!({"user": "00000000000000aa", "reason": "  "}),
            "reason",
        ),
        (
            json!({"user": "00000000000000aa", "reason": long}),
            "reason",
        ),
        (json!({"user": "xyz", "reason": "r"}), "user"),
        (json!({"reason": "r"}), "user"),
        (
            json!({"user": "00000000000000aa", "ip": "10.0.0.1", "reason": "r"}),
            "user",
        ),
        (json!({"ip": "10.0.0.0/7", "reason": "r"}), "ip"),
        (json!({"ip": "2001:db8::/15", "reason": "r"}), "ip"),
        (json!({"ip": "nope", "reason": "r"}), "ip"),
        (
            json!({"user": "00000000000000aa", "reason": "r", "until": 1000}),
            "until",
        ),
    ] {
        let (status, answer) = admin(&app, "POST", "/api/admin/bans", Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["field"], json!(field), "{body}: {answer}");
    }
    let (status, answer) = admin(
        &app,
        "POST",
        "/api/admin/bans",
        Some(json!({"user": "00000000000000aa", "reason": "r", "extra": 1})),
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_json"))
    );
    assert_eq!(
        admin(&app, "DELETE", "/api/admin/bans/999", None).await.0,
        404
    );
    assert_eq!(
        admin(&app, "GET", "/api/admin/bans?all=maybe", None)
            .await
            .0,
        400
    );
}

contract_test!(moderation_endpoints_need_credentials);
async fn moderation_endpoints_need_credentials(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", ADMIN_TOKEN]).await;
    let c = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/api/admin/bans"),
        ("POST", "/api/admin/bans"),
        ("GET", "/api/admin/bans/1"),
        ("DELETE", "/api/admin/bans/1"),
        ("GET", "/api/admin/protect/1"),
        ("GET", "/api/admin/protect"),
        ("POST", "/api/admin/protect"),
        ("DELETE", "/api/admin/protect/1"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c
            .request(m.clone(), app.url(path))
            .json(&json!({"user": "00000000000000aa", "reason": "r"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        let r = c
            .request(m, app.url(path))
            .bearer_auth("not-the-admin-token-at-all-0000")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path} with a wrong token");
    }
}

// One user PUTs from many tasks while a moderator bans them: through two instances in
// shared mode (the embedded store is one process: there both halves go to it). Every PUT
// sent after the ban's answer is refused, on both instances, and every accepted one was
// decided before the ban (its seq is not after the ban's `after_seq`).
contract_test!(
    a_ban_stops_parallel_placements_on_every_instance_at_its_answer,
    tokio(flavor = "multi_thread", worker_threads = 4)
);
async fn a_ban_stops_parallel_placements_on_every_instance_at_its_answer(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::time::Instant;
    let args = ["--admin-token", ADMIN_TOKEN];
    let a = Arc::new(spawn_app_on(backend, &args).await);
    let b = if backend.is_shared() {
        Arc::new(a.sibling(&args).await)
    } else {
        a.clone()
    };
    // One identity for both instances: the cookie key is shared, and the cookie jar
    // ignores ports.
    let (c, id) = visitor(&a).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (c, stop) = (c.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let (status, body) = put(&app, &c, i % 16, (i / 16) % 8).await;
                seen.push((i % 2, sent, status, body));
            }
            seen
        }));
    }
    // Let placements flow on both instances first.
    eventually(
        Duration::from_secs(10),
        "placements are accepted",
        || async { (a.get_json("/api/config").await["seq"].as_u64().unwrap() > 20).then_some(()) },
    )
    .await;
    let (status, ban) = admin(
        &a,
        "POST",
        "/api/admin/bans",
        Some(json!({"user": id, "reason": "raid"})),
    )
    .await;
    assert_eq!(status, 201, "{ban}");
    let answered = Instant::now();
    let after_seq = ban["after_seq"].as_u64().unwrap();
    // Keep trying for a while after the answer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut refused_after = [0, 0];
    let mut accepted = 0;
    for t in tasks {
        for (instance, sent, status, body) in t.await.unwrap() {
            match status {
                200 => {
                    accepted += 1;
                    let seq = body["seq"].as_u64().unwrap();
                    assert!(
                        seq <= after_seq,
                        "seq {seq} accepted after the ban ({after_seq})"
                    );
                    assert!(
                        sent < answered,
                        "a PUT sent after the ban's answer was accepted"
                    );
                }
                403 => {
                    assert_eq!(body["error"], "banned");
                    if sent >= answered {
                        refused_after[instance as usize] += 1;
                    }
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    assert!(accepted > 20, "{accepted}");
    assert!(
        refused_after.iter().all(|&n| n > 0),
        "both instances refused after the ban: {refused_after:?}"
    );
}

contract_test!(bans_and_protected_areas_survive_a_restart);
async fn bans_and_protected_areas_survive_a_restart(backend: Backend) {
    let args = ["--admin-token", ADMIN_TOKEN];
    let app = spawn_app_on(backend, &args).await;
    let (c, id) = visitor(&app).await;
    let (status, _) = admin(
        &app,
        "POST",
        "/api/admin/bans",
        Some(json!({"user": id, "reason": "still banned"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = admin(
        &app,
        "POST",
        "/api/admin/protect",
        Some(json!({"rect": {"x": 0, "y": 7, "w": 16, "h": 1}})),
    )
    .await;
    assert_eq!(status, 201);
    let app = app.restart(&args).await;
    let (status, body) = put(&app, &c, 0, 0).await;
    assert_eq!((status, &body["reason"]), (403, &json!("still banned")));
    let (other, _) = visitor(&app).await;
    let (status, body) = put(&app, &other, 3, 7).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("protected")));
    assert_eq!(put(&app, &other, 3, 6).await.0, 200);
}
