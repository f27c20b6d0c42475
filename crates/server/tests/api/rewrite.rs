//! Moderation changes made of many placements: rollback by user, restore to a moment,
//! fill, stamp, the user lookup, and how a large change reaches websocket clients.

use crate::helpers::*;
use base64::Engine;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "test-admin-token-rewrite-0123456789abcdef";
const WIDTH: usize = 16;

async fn app_on(backend: Backend, extra: &[&str]) -> TestApp {
    let mut args = vec!["--admin-token", TOKEN];
    args.extend_from_slice(extra);
    spawn_app_on(backend, &args).await
}

/// POSTs JSON to an admin endpoint with the admin token: status and body.
async fn admin(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/admin{path}")))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Places as `user` through the load generator's path; seq and time.
async fn place(app: &TestApp, user: u64, x: u32, y: u32, color: u8) -> (u64, i64) {
    let r = reqwest::Client::new()
        .put(app.url("/api/pixel"))
        .header("authorization", format!("Bearer {BENCH_TOKEN}"))
        .header("x-rplace-user", format!("{user:016x}"))
        .json(&json!({"x": x, "y": y, "color": color}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    (v["seq"].as_u64().unwrap(), v["at"].as_i64().unwrap())
}

fn id(user: u64) -> String {
    format!("{user:016x}")
}

fn px(board: &[u8], x: usize, y: usize) -> u8 {
    nibble(board, y * WIDTH + x)
}

/// Waits until the clock is past `at`, so that the next placement has a later time.
async fn after(at: i64) {
    eventually(Duration::from_secs(5), "the clock moves on", || async {
        (rplace_store::now_ms() > at).then_some(())
    })
    .await
}

/// The answer's PNG as RGBA rows.
fn decode_png(answer: &Value) -> (u32, u32, Vec<u8>) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer["png"].as_str().unwrap())
        .unwrap();
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn palette(config: &Value) -> Vec<[u8; 3]> {
    config["palette"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let h = c.as_str().unwrap().trim_start_matches('#');
            let b = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).unwrap();
            [b(0), b(2), b(4)]
        })
        .collect()
}

contract_test!(rollback_reverts_a_users_pixels_and_keeps_later_paint);
async fn rollback_reverts_a_users_pixels_and_keeps_later_paint(backend: Backend) {
    let app = app_on(backend, &[]).await;
    let (griefer, other) = (0xa1, 0xb2);
    place(&app, other, 0, 0, 5).await;
    place(&app, griefer, 0, 0, 1).await;
    place(&app, griefer, 1, 0, 2).await;
    place(&app, griefer, 2, 0, 3).await;
    place(&app, other, 2, 0, 4).await; // painted over later: stays
    place(&app, griefer, 3, 0, 6).await;
    let (head, _) = place(&app, griefer, 3, 0, 7).await; // two undone in a row: blank
    let (_, before) = app.board_after(head).await;

    let (status, preview) = admin(
        &app,
        "/rollback",
        json!({"user": id(griefer), "preview": true}),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["pixels"], 3);
    assert_eq!(preview["applied"], false);
    assert_eq!(preview["bbox"], json!({"x": 0, "y": 0, "w": 4, "h": 1}));
    assert_eq!(preview["first_seq"], Value::Null);
    let pal = palette(&app.get_json("/api/config").await);
    let (w, h, rgba) = decode_png(&preview);
    assert_eq!((w, h), (4, 1));
    assert_eq!(&rgba[0..4], &[pal[5][0], pal[5][1], pal[5][2], 255]);
    assert_eq!(&rgba[4..8], &[pal[0][0], pal[0][1], pal[0][2], 255]);
    assert_eq!(rgba[11], 0, "a pixel that does not change is transparent");
    assert_eq!(&rgba[12..16], &[pal[0][0], pal[0][1], pal[0][2], 255]);
    // A preview changes nothing.
    assert_eq!(app.board().await, (head, before.clone()));

    let (status, done) = admin(
        &app,
        "/rollback",
        json!({"user": id(griefer), "reason": "griefing"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["applied"], true);
    assert_eq!(done["pixels"], preview["pixels"]);
    assert_eq!(done["png"], preview["png"]);
    assert_eq!(done["skipped"], 0);
    let (first, last) = (
        done["first_seq"].as_u64().unwrap(),
        done["last_seq"].as_u64().unwrap(),
    );
    assert_eq!((first, last), (head + 1, head + 3));
    let (_, board) = app.board_after(last).await;
    assert_eq!(
        (
            px(&board, 0, 0),
            px(&board, 1, 0),
            px(&board, 2, 0),
            px(&board, 3, 0)
        ),
        (5, 0, 4, 0)
    );
    // The change is in the history as the moderator's placement.
    let info = app.pixel_after(0, 0, first).await;
    assert_eq!(info["user"], "0000000000000000");
    assert_eq!(info["color"], 5);
    assert_eq!(info["history"][1]["user"], id(griefer));
    // Nothing is left to undo.
    let (_, again) = admin(&app, "/rollback", json!({"user": id(griefer)})).await;
    assert_eq!(again["pixels"], 0);
    assert_eq!(again["bbox"], Value::Null);
    assert_eq!(again["png"], Value::Null);
    app.stop().await;
}

contract_test!(rollback_filters_by_time_and_rectangle);
async fn rollback_filters_by_time_and_rectangle(backend: Backend) {
    let app = app_on(backend, &[]).await;
    let u = 0xc3;
    let (_, t1) = place(&app, u, 5, 5, 1).await;
    after(t1).await;
    let (_, t2) = place(&app, u, 6, 5, 2).await;
    after(t2).await;
    let (head, _) = place(&app, u, 7, 5, 3).await;
    app.board_after(head).await;

    // Only the middle one by time.
    let (_, p) = admin(
        &app,
        "/rollback",
        json!({"user": id(u), "since": t2, "until": t2, "preview": true}),
    )
    .await;
    assert_eq!(p["pixels"], 1);
    assert_eq!(p["bbox"], json!({"x": 6, "y": 5, "w": 1, "h": 1}));
    // Everything up to t1, by time.
    let (_, p) = admin(
        &app,
        "/rollback",
        json!({"user": id(u), "until": t1, "preview": true}),
    )
    .await;
    assert_eq!(p["bbox"], json!({"x": 5, "y": 5, "w": 1, "h": 1}));
    // By rectangle.
    let (status, done) = admin(
        &app,
        "/rollback",
        json!({"user": id(u), "rect": {"x": 7, "y": 0, "w": 9, "h": 8}}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["pixels"], 1);
    let (_, board) = app.board_after(done["last_seq"].as_u64().unwrap()).await;
    assert_eq!(
        (px(&board, 5, 5), px(&board, 6, 5), px(&board, 7, 5)),
        (1, 2, 0)
    );
    // Refusals name what is allowed.
    let (status, e) = admin(&app, "/rollback", json!({"user": "nope"})).await;
    assert_eq!((status, e["field"].as_str()), (422, Some("user")));
    // A number, even one of 16 digits, is not a public id.
    let (status, e) = admin(&app, "/rollback", json!({"user": 1234567890123456u64})).await;
    assert_eq!((status, e["field"].as_str()), (422, Some("user")));
    let (status, e) = admin(&app, "/rollback", json!({})).await;
    assert_eq!((status, e["error"].as_str()), (422, Some("missing_field")));
    let (status, e) = admin(
        &app,
        "/rollback",
        json!({"user": id(u), "rect": {"x": 10, "y": 0, "w": 9, "h": 1}}),
    )
    .await;
    assert_eq!((status, e["field"].as_str()), (422, Some("rect")));
    app.stop().await;
}

contract_test!(restore_returns_an_area_to_a_seq_and_a_time);
async fn restore_returns_an_area_to_a_seq_and_a_time(backend: Backend) {
    let app = app_on(backend, &[]).await;
    let mut last = (0, 0);
    for i in 0..40u64 {
        last = place(
            &app,
            i % 3 + 1,
            (i * 5 % 16) as u32,
            (i * 3 % 8) as u32,
            (i % 15 + 1) as u8,
        )
        .await;
    }
    let (s, t) = last;
    let (_, then) = app.board_after(s).await;
    after(t).await;
    for i in 0..60u64 {
        last = place(
            &app,
            i % 4 + 7,
            (i * 7 % 16) as u32,
            (i * 5 % 8) as u32,
            (i % 16) as u8,
        )
        .await;
    }
    app.board_after(last.0).await;
    let whole = json!({"x": 0, "y": 0, "w": 16, "h": 8});

    let (status, p) = admin(
        &app,
        "/restore",
        json!({"rect": whole, "seq": s, "preview": true}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    let (status, done) = admin(&app, "/restore", json!({"rect": whole, "seq": s})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["pixels"], p["pixels"]);
    assert!(done["pixels"].as_u64().unwrap() > 0);
    let (_, now) = app.board_after(done["last_seq"].as_u64().unwrap()).await;
    assert_eq!(now, then, "the board equals the board at seq {s}");

    // Paint again, then restore only the left half by time.
    for i in 0..30u64 {
        last = place(
            &app,
            9,
            (i % 16) as u32,
            (i % 8) as u32,
            ((i + 3) % 16) as u8,
        )
        .await;
    }
    let (_, painted) = app.board_after(last.0).await;
    let half = json!({"x": 0, "y": 0, "w": 8, "h": 8});
    let (status, done) = admin(&app, "/restore", json!({"rect": half, "at": t})).await;
    assert_eq!(status, 200, "{done}");
    let (_, now) = match done["last_seq"].as_u64() {
        Some(l) => app.board_after(l).await,
        None => app.board().await,
    };
    for y in 0..8 {
        for x in 0..16 {
            let want = if x < 8 {
                px(&then, x, y)
            } else {
                px(&painted, x, y)
            };
            assert_eq!(px(&now, x, y), want, "pixel ({x}, {y})");
        }
    }
    let (status, e) = admin(&app, "/restore", json!({"rect": whole})).await;
    assert_eq!((status, e["error"].as_str()), (422, Some("missing_field")));
    let (status, _) = admin(&app, "/restore", json!({"rect": whole, "at": t, "seq": s})).await;
    assert_eq!(status, 422);
    app.stop().await;
}

contract_test!(fill_paints_a_rectangle_in_one_color);
async fn fill_paints_a_rectangle_in_one_color(backend: Backend) {
    let app = app_on(backend, &["--max-rewrite-pixels", "64"]).await;
    let (s, _) = place(&app, 4, 3, 2, 7).await; // already the fill's color
    app.board_after(s).await;
    let rect = json!({"x": 2, "y": 2, "w": 3, "h": 2});
    let (status, p) = admin(
        &app,
        "/fill",
        json!({"rect": rect, "color": 7, "preview": true}),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["pixels"], 5);
    let (status, done) = admin(
        &app,
        "/fill",
        json!({"rect": rect, "color": 7, "reason": "art"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["pixels"], 5);
    assert_eq!(done["bbox"], rect);
    let (_, board) = app.board_after(done["last_seq"].as_u64().unwrap()).await;
    for y in 0..8 {
        for x in 0..16 {
            let inside = (2..5).contains(&x) && (2..4).contains(&y);
            assert_eq!(px(&board, x, y), if inside { 7 } else { 0 }, "({x}, {y})");
        }
    }
    let (_, again) = admin(&app, "/fill", json!({"rect": rect, "color": 7})).await;
    assert_eq!(
        (again["pixels"].as_u64(), again["applied"].as_bool()),
        (Some(0), Some(true))
    );
    let (status, e) = admin(&app, "/fill", json!({"rect": rect, "color": 16})).await;
    assert_eq!((status, e["field"].as_str()), (422, Some("color")));
    let (status, e) = admin(
        &app,
        "/fill",
        json!({"rect": {"x": 0, "y": 0, "w": 17, "h": 1}, "color": 1}),
    )
    .await;
    assert_eq!((status, e["field"].as_str()), (422, Some("rect")));
    // Larger than --max-rewrite-pixels.
    let (status, e) = admin(
        &app,
        "/fill",
        json!({"rect": {"x": 0, "y": 0, "w": 16, "h": 5}, "color": 1}),
    )
    .await;
    assert_eq!(status, 413, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--max-rewrite-pixels")
    );
    app.stop().await;
}

/// A PNG of `w` x `h` RGBA pixels.
fn rgba_png(w: u32, h: u32, rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(rgba).unwrap();
    wr.finish().unwrap();
    out
}

async fn post_stamp(app: &TestApp, query: &str, png: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/admin/stamp?{query}")))
        .bearer_auth(TOKEN)
        .header("content-type", "image/png")
        .body(png)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

contract_test!(stamp_maps_an_image_to_the_nearest_palette_colors);
async fn stamp_maps_an_image_to_the_nearest_palette_colors(backend: Backend) {
    let app = app_on(backend, &[]).await;
    let pal = palette(&app.get_json("/api/config").await);
    let near = |c: [u8; 3]| {
        [
            c[0].saturating_sub(3),
            c[1].saturating_add(2),
            c[2].saturating_sub(1),
        ]
    };
    // 3 x 2: exact colors, near colors, and one transparent pixel.
    let mut rgba = Vec::new();
    for (c, a) in [
        (pal[5], 255),
        (near(pal[9]), 255),
        ([1, 2, 3], 0),
        (near(pal[12]), 200),
        (pal[3], 255),
        (near(pal[15]), 255),
    ] {
        rgba.extend_from_slice(&c);
        rgba.push(a);
    }
    let image = rgba_png(3, 2, &rgba);
    let (status, p) = post_stamp(&app, "x=10&y=5&preview=true", image.clone()).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["pixels"], 5);
    assert_eq!(p["applied"], false);
    let (status, done) = post_stamp(&app, "x=10&y=5", image.clone()).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["pixels"], 5);
    assert_eq!(done["bbox"], json!({"x": 10, "y": 5, "w": 3, "h": 2}));
    let (_, board) = app.board_after(done["last_seq"].as_u64().unwrap()).await;
    assert_eq!(
        [px(&board, 10, 5), px(&board, 11, 5), px(&board, 12, 5)],
        [5, 9, 0]
    );
    assert_eq!(
        [px(&board, 10, 6), px(&board, 11, 6), px(&board, 12, 6)],
        [12, 3, 15]
    );
    // Past the board's edge, not a PNG, the wrong type.
    let (status, e) = post_stamp(&app, "x=14&y=0", image.clone()).await;
    assert_eq!(status, 422, "{e}");
    assert!(
        e["allowed"].as_str().unwrap().contains("at most 2x8"),
        "{e}"
    );
    let (status, _) = post_stamp(&app, "x=0&y=0", b"not a png".to_vec()).await;
    assert_eq!(status, 422);
    let (status, _) = post_stamp(&app, "x=16&y=0", image.clone()).await;
    assert_eq!(status, 400);
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/stamp?x=0&y=0"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(image)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    app.stop().await;
}

contract_test!(user_lookup_lists_a_users_placements);
async fn user_lookup_lists_a_users_placements(backend: Backend) {
    let app = app_on(backend, &[]).await;
    let u = 0xd4;
    let (s1, t1) = place(&app, u, 1, 1, 3).await;
    place(&app, 99, 2, 1, 4).await;
    let (s2, t2) = place(&app, u, 3, 1, 5).await;
    app.board_after(s2).await;
    let path = format!("/api/admin/users/{}", id(u));
    let v = eventually(Duration::from_secs(10), "the history has both", || async {
        let r = reqwest::Client::new()
            .get(app.url(&path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        (v["placements"] == 2).then_some(v)
    })
    .await;
    assert_eq!(v["user"], id(u));
    assert_eq!(v["identities"], json!([id(u)]));
    assert_eq!(
        (v["first_at"].as_i64(), v["last_at"].as_i64()),
        (Some(t1), Some(t2))
    );
    assert_eq!(v["pixels"], json!([[3, 1, 5, s2, t2], [1, 1, 3, s1, t1]]));
    assert_eq!(v["truncated"], false);
    let r = reqwest::Client::new()
        .get(app.url("/api/admin/users/xyz"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    app.stop().await;
}

contract_test!(rewrite_endpoints_need_credentials);
async fn rewrite_endpoints_need_credentials(backend: Backend) {
    let app = app_on(backend, &[]).await;
    let c = reqwest::Client::new();
    for path in ["/rollback", "/restore", "/fill", "/stamp?x=0&y=0"] {
        let r = c
            .post(app.url(&format!("/api/admin{path}")))
            .json(&json!({"user": id(1), "rect": {"x": 0, "y": 0, "w": 1, "h": 1}, "color": 1, "seq": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = c
        .get(app.url(&format!("/api/admin/users/{}", id(1))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.board().await.0, 0, "nothing was placed");
    app.stop().await;
}

contract_test!(a_large_fill_reaches_websocket_clients_exactly);
/// 100,352 pixels in one fill: a websocket client follows it frame by frame, ends with the
/// server's board, and never had to refetch the board or got a 410.
async fn a_large_fill_reaches_websocket_clients_exactly(backend: Backend) {
    let app = app_on(backend, &["--width", "512", "--height", "256"]).await;
    let mut ws = app.ws().await;
    let seq = hello(&mut ws).await;
    let mut client = SyncClient::start(&app, 512).await;
    client.on_hello(seq);
    assert!(client.settle(&app).await);
    // Others keep placing during the fill.
    let app = std::sync::Arc::new(app);
    let placer = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..200u64 {
                place(
                    &app,
                    i % 20 + 1,
                    (i * 37 % 512) as u32,
                    (200 + i % 56) as u32,
                    (i % 15 + 1) as u8,
                )
                .await;
            }
        })
    };
    let started = std::time::Instant::now();
    let (status, done) = admin(
        &app,
        "/fill",
        json!({"rect": {"x": 0, "y": 0, "w": 512, "h": 196}, "color": 3}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["pixels"], 512 * 196);
    placer.await.unwrap();
    let (head, board) = app.board_after(done["last_seq"].as_u64().unwrap()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client.seq() < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never reached seq {head}"
        );
        match next_msg(&mut ws, Duration::from_secs(10)).await {
            Some(Message::Binary(f)) => client.on_frame(&app, &f).await,
            Some(Message::Text(t)) => panic!("unexpected message during the fill: {t}"),
            other => panic!("the websocket ended: {other:?}"),
        }
    }
    eprintln!(
        "a 100,352-pixel fill reached the client in {:?}",
        started.elapsed()
    );
    // It may have gone past `head` with the placer's last frames: compare at one seq.
    let (head, board) = if client.seq() == head {
        (head, board)
    } else {
        app.board_after(client.seq()).await
    };
    assert_eq!(client.seq(), head);
    assert_eq!(client.board(), &board[..]);
    assert_eq!(
        client.sync.stats().boards,
        1,
        "the client never refetched the board"
    );
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}
