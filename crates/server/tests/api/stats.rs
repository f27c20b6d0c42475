//! Presence and statistics: `GET /api/stats`, `GET /api/stats/me`, `GET
//! /api/leaderboard`, `PUT /api/me/leaderboard`, and the websocket's `online` messages.

use crate::accounts::{LoginApp, logged_in, set_name, spawn_with_provider};
use crate::helpers::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Polls `/api/stats` until `ok` holds for it (the counts follow the log by a round).
async fn stats_until(app: &TestApp, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(
        Duration::from_secs(20),
        "the stats to show the placements",
        || async {
            let s = app.get_json("/api/stats").await;
            ok(&s).then_some(s)
        },
    )
    .await
}

contract_test!(counts_follow_the_log_per_color_and_per_user);
/// Placements by three people in known colors: the totals, the per-color counts, the
/// distinct placers and each person's own count equal what was placed.
async fn counts_follow_the_log_per_color_and_per_user(backend: Backend) {
    let app = spawn_app_on(backend, &["--cooldown", "0", "--ip-rate", "0"]).await;
    let people = [client(), client(), client()];
    let mut per_color = [0u64; 16];
    let mut per_person = [0u64; 3];
    for i in 0..60u32 {
        let who = (i % 3) as usize;
        let color = (i * 7 % 5) as u8 + 1;
        if i < 3 {
            app.login(&people[who]).await;
        }
        let r = app
            .put_pixel(
                &people[who],
                json!({"x": i % 10, "y": i / 10, "color": color}),
            )
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        per_color[color as usize] += 1;
        per_person[who] += 1;
    }
    let s = stats_until(&app, |s| s["placements"] == 60).await;
    assert_eq!(s["placers"], 3);
    let colors = s["colors"].as_array().unwrap();
    assert_eq!(colors.len(), 16, "one entry per palette color");
    for (i, c) in colors.iter().enumerate() {
        assert_eq!(c["color"], i);
        assert_eq!(c["placements"], per_color[i], "color {i}");
        assert!(c["hex"].as_str().unwrap().starts_with('#'));
    }
    assert!(s["counted_through"].as_u64().unwrap() >= 60);
    for (who, c) in people.iter().enumerate() {
        let me = app.get_json_as(c, "/api/stats/me").await;
        assert_eq!(me["placements"], per_person[who], "person {who}: {me}");
        assert_eq!(me["leaderboard"], false);
        assert!(me["last_at"].as_i64().unwrap() > 0);
    }
    // Someone who never placed (no cookie yet) has placed nothing.
    let stranger = app.get_json_as(&client(), "/api/stats/me").await;
    assert_eq!(stranger["placements"], 0);

    // The counts survive a restart and go on from the watermark, counting nothing twice.
    let app = app.restart(&["--cooldown", "0", "--ip-rate", "0"]).await;
    app.bench_place(77, 1, 1, 9).await;
    let s = stats_until(&app, |s| s["placements"] == 61).await;
    assert_eq!(s["colors"][9]["placements"], per_color[9] + 1);
    assert_eq!(s["placers"], 4);
}

contract_test!(online_counts_websockets_and_tells_them);
/// `online` counts open websockets at once in `/api/stats` and in `hello`, and clients
/// are told when it changes.
async fn online_counts_websockets_and_tells_them(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    assert_eq!(app.get_json("/api/stats").await["online"], 0);
    let mut first = app.ws().await;
    let hello = next_text(&mut first).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["online"], 1, "{hello}");
    let mut second = app.ws().await;
    assert_eq!(next_text(&mut second).await["online"], 2);
    assert_eq!(app.get_json("/api/stats").await["online"], 2);
    // The first client learns that two are online at a presence round (it may hear of
    // one first, if a round came between the two connections).
    let told = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let msg = next_text(&mut first).await;
            if msg["type"] == "online" && msg["n"] == 2 {
                break;
            }
        }
    });
    told.await.expect("an online message saying 2 within 20 s");
    second.close(None).await.unwrap();
    drop(second);
    eventually(
        Duration::from_secs(10),
        "the closed socket to leave",
        || async { (app.get_json("/api/stats").await["online"] == 1).then_some(()) },
    )
    .await;
}

contract_test!(
    online_is_summed_over_instances,
    ignore_embedded = "one process: nothing to sum"
);
/// Two instances on one Redis: each one's `online` counts the other's websockets once
/// it has published them.
async fn online_is_summed_over_instances(backend: Backend) {
    let a = spawn_app_on(backend, &[]).await;
    let b = a.sibling(&[]).await;
    let mut on_a = a.ws().await;
    next_text(&mut on_a).await;
    let mut on_b = [b.ws().await, b.ws().await];
    for ws in &mut on_b {
        next_text(ws).await;
    }
    for app in [&a, &b] {
        eventually(
            Duration::from_secs(20),
            "both instances' sockets",
            || async { (app.get_json("/api/stats").await["online"] == 3).then_some(()) },
        )
        .await;
    }
    drop(on_a);
}

contract_test!(the_leaderboard_lists_only_named_accounts_that_opt_in);
/// Opting in needs a login and a display name; listed accounts appear by placements,
/// most first; opting out removes them; anonymous placers never appear.
async fn the_leaderboard_lists_only_named_accounts_that_opt_in(backend: Backend) {
    let LoginApp { app, idp: _idp } =
        spawn_with_provider(backend, &["--cooldown", "0", "--ip-rate", "0"]).await;
    // Not logged in: no opt-in.
    app.login(&app.client).await;
    let r = show(&app, &app.client, true).await;
    assert_eq!(r.status(), 401);
    let alice = logged_in(&app, "alice").await;
    let bob = logged_in(&app, "bob").await;
    // Logged in without a name: told to pick one first.
    let r = show(&app, &alice.client, true).await;
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "name_required", "{body}");
    for (b, name) in [(&alice, "Alice"), (&bob, "Bob")] {
        assert_eq!(set_name(&app, b, name).await.status(), 200);
        let r = show(&app, &b.client, true).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    // A bad body says what is allowed.
    let r = alice
        .client
        .put(app.url("/api/me/leaderboard"))
        .header("origin", app.url(""))
        .json(&json!({"show": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Alice places 3, Bob 5, an anonymous visitor 9.
    for (c, n) in [(&alice.client, 3), (&bob.client, 5), (&app.client, 9)] {
        for i in 0..n {
            let r = app.put_pixel(c, json!({"x": i, "y": 3, "color": 2})).await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        }
    }
    let board = eventually(Duration::from_secs(20), "the leaderboard", || async {
        let l = app.get_json("/api/leaderboard").await;
        (l["entries"].as_array().unwrap().len() == 2
            && l["entries"][0]["placements"] == 5
            && l["entries"][1]["placements"] == 3)
            .then_some(l)
    })
    .await;
    assert_eq!(board["entries"][0]["name"], "Bob");
    assert_eq!(board["entries"][0]["rank"], 1);
    assert_eq!(board["entries"][1]["name"], "Alice");
    let me = app.get_json_as(&alice.client, "/api/stats/me").await;
    assert_eq!(me["leaderboard"], true);
    assert_eq!(me["placements"], 3);
    // limit is checked and honoured.
    let one = app.get_json("/api/leaderboard?limit=1").await;
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    let r = app
        .client
        .get(app.url("/api/leaderboard?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Bob opts out: gone, Alice first.
    assert_eq!(show(&app, &bob.client, false).await.status(), 200);
    eventually(
        Duration::from_secs(10),
        "Bob to leave the leaderboard",
        || async {
            let l = app.get_json("/api/leaderboard").await;
            let e = l["entries"].as_array().unwrap();
            (e.len() == 1 && e[0]["name"] == "Alice").then_some(())
        },
    )
    .await;
}

/// `PUT /api/me/leaderboard` from the canvas's own page (its Origin).
async fn show(app: &TestApp, c: &reqwest::Client, on: bool) -> reqwest::Response {
    c.put(app.url("/api/me/leaderboard"))
        .header("origin", app.url(""))
        .json(&json!({ "show": on }))
        .send()
        .await
        .unwrap()
}

/// The next text message on `ws`, as JSON (binary frames skipped).
async fn next_text(ws: &mut Ws) -> Value {
    loop {
        match next_any(ws, Duration::from_secs(15)).await {
            Some(Message::Text(t)) => return serde_json::from_str(&t).unwrap(),
            Some(_) => continue,
            None => panic!("no text message within 15 s"),
        }
    }
}
