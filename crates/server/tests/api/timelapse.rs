//! `POST /api/timelapse`, `GET /api/timelapse/{id}`, `GET /api/timelapse/{id}/file`: an
//! animated PNG of a region over time, rendered in the background.

use crate::helpers::*;
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "test-admin-token-timelapse-0123456789abcdef";

/// POSTs a timelapse request as `client`: status and body.
async fn post(app: &TestApp, client: &reqwest::Client, body: Value) -> (u16, Value) {
    let r = client
        .post(app.url("/api/timelapse"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Polls a job until it is done (or failed); its last status.
async fn until_finished(app: &TestApp, id: &str) -> Value {
    let path = format!("/api/timelapse/{id}");
    eventually(
        Duration::from_secs(60),
        "the timelapse finishes",
        || async {
            let s = app.get_json(&path).await;
            let p = s["progress"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p), "{s}");
            matches!(s["state"].as_str(), Some("done" | "failed")).then_some(s)
        },
    )
    .await
}

/// Waits until the log as the timelapse reads it (the dataset export's head: in shared
/// mode the history's watermark, which trails the acknowledgement) holds `seq`.
async fn history_holds(app: &TestApp, seq: u64) {
    eventually(
        Duration::from_secs(10),
        "the history holds the seq",
        || async {
            let r = client()
                .get(app.url("/api/export/placements.csv.gz"))
                .send()
                .await
                .unwrap();
            // 503 while the previous poll's export still holds the one export slot.
            let head = r.headers().get("x-export-seq")?;
            (head.to_str().unwrap().parse::<u64>().unwrap() >= seq).then_some(())
        },
    )
    .await
}

contract_test!(the_last_frame_is_the_board_after_a_fill);
/// A job goes from queued to done; its file is an APNG with the frames asked for, scaled,
/// whose first frame is the blank board before the first placement and whose last is the
/// board region now, a moderator's fill (placements in the log) included.
async fn the_last_frame_is_the_board_after_a_fill(backend: Backend) {
    let app = spawn_app_on(backend, &["--admin-token", TOKEN]).await;
    let before = rplace_store::now_ms() - 1;
    for (i, (x, y, c)) in [(2, 1, 3u8), (5, 4, 7), (11, 6, 2), (3, 3, 9), (15, 7, 1)]
        .into_iter()
        .enumerate()
    {
        app.bench_place(i as u64 + 1, x, y, c).await;
    }
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/fill"))
        .bearer_auth(TOKEN)
        .json(&json!({"rect": {"x": 4, "y": 2, "w": 3, "h": 2}, "color": 12}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fill: Value = r.json().await.unwrap();
    let last = app.bench_place(9, 6, 5, 4).await;
    assert!(last > fill["last_seq"].as_u64().unwrap());
    history_holds(&app, last).await;
    let (_, board) = app.board_after(last).await;

    let c = client();
    app.login(&c).await;
    let (region, scale, frames) = ((2u32, 1u32, 12u32, 6u32), 3u32, 7u32);
    let (status, job) = post(
        &app,
        &c,
        json!({"x": region.0, "y": region.1, "w": region.2, "h": region.3,
               "from": before, "frames": frames, "fps": 12, "scale": scale, "format": "apng"}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["state"], "queued", "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    // Not done yet, or done: never an error other than 409 before it is.
    let s = until_finished(&app, &id).await;
    assert_eq!(s["state"], "done", "{s}");
    assert_eq!(s["progress"], 1.0);
    assert_eq!(s["frames_done"], frames);
    assert_eq!(s["from"], before);

    let r = c
        .get(app.url(&format!("/api/timelapse/{id}/file")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/apng");
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, s["bytes"].as_u64().unwrap());
    let (w, h, decoded) = rplace_testsupport::apng_frames(&bytes);
    assert_eq!((w, h), (region.2 * scale, region.3 * scale));
    assert_eq!(decoded.len(), frames as usize);
    assert!(
        decoded[0].iter().all(|&c| c == 0),
        "the board before the first placement"
    );
    let end = decoded.last().unwrap();
    let mut filled = 0;
    for y in 0..h {
        for x in 0..w {
            let (bx, by) = (region.0 + x / scale, region.1 + y / scale);
            let want = nibble(&board, (by * 16 + bx) as usize);
            assert_eq!(
                end[(y * w + x) as usize],
                want,
                "({x}, {y}) = board ({bx}, {by})"
            );
            filled += (want == 12) as u32;
        }
    }
    assert_eq!(filled, 6 * scale * scale, "the fill is in the last frame");
    app.stop().await;
}

contract_test!(requests_out_of_range_say_what_is_allowed);
/// Every limit answers JSON naming the field and what is allowed; without an identity
/// 401; an unknown job 404; a file before it is done 409 or, once done, 200.
async fn requests_out_of_range_say_what_is_allowed(backend: Backend) {
    let app = spawn_app_on(backend, &[]).await;
    let c = client();
    app.login(&c).await;
    let ok = json!({"x": 0, "y": 0, "w": 16, "h": 8});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("w", json!(17)), "w"),
        (with("x", json!(16)), "x"),
        (with("h", json!(0)), "h"),
        (with("frames", json!(0)), "frames"),
        (with("frames", json!(3601)), "frames"),
        (with("fps", json!(61)), "fps"),
        (with("scale", json!(9)), "scale"),
        (with("format", json!("gif")), "format"),
        (
            json!({"x": 0, "y": 0, "w": 16, "h": 8, "from": 10, "to": 5}),
            "to",
        ),
        (with("colour", json!(1)), "body"),
    ] {
        let (status, e) = post(&app, &c, body.clone()).await;
        assert_eq!(status, 422, "{body}: {e}");
        assert_eq!(e["error"], "invalid_field", "{e}");
        assert_eq!(e["field"], field, "{e}");
        assert!(e["allowed"].as_str().is_some_and(|a| !a.is_empty()), "{e}");
    }
    let (status, e) = post(&app, &c, json!({"y": 0, "w": 1, "h": 1})).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (422, Some("missing_field")),
        "{e}"
    );

    let (status, e) = post(&app, &client(), ok.clone()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (401, Some("unauthorized")),
        "{e}"
    );

    let r = c
        .post(app.url("/api/timelapse"))
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    for path in ["/api/timelapse/nope", "/api/timelapse/nope/file"] {
        let r = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "not_found", "{e}");
    }

    let (status, job) = post(&app, &c, ok).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let file = format!("/api/timelapse/{id}/file");
    // Before it is done the file is 409 with the state; then 200.
    eventually(Duration::from_secs(60), "the file is served", || async {
        let r = c.get(app.url(&file)).send().await.unwrap();
        match r.status().as_u16() {
            200 => Some(()),
            409 => {
                let e: Value = r.json().await.unwrap();
                assert_eq!(e["error"], "not_done", "{e}");
                assert!(
                    matches!(e["state"].as_str(), Some("queued" | "rendering")),
                    "{e}"
                );
                None
            }
            s => panic!("{file}: {s}"),
        }
    })
    .await;
    app.stop().await;
}

contract_test!(a_full_queue_answers_busy_and_each_user_is_limited);
/// With one renderer and one place in the queue, of many requests at once only two are
/// taken (the rest get 503 `busy` with Retry-After) and both end done; one identity may
/// not have more than two unfinished jobs.
async fn a_full_queue_answers_busy_and_each_user_is_limited(backend: Backend) {
    let app = spawn_app_on(
        backend,
        &[
            "--width",
            "1024",
            "--height",
            "1024",
            "--timelapse-concurrency",
            "1",
            "--timelapse-queue",
            "1",
        ],
    )
    .await;
    // Opposite corners change between every two frames: each frame is the whole
    // 1024² region, so a job takes far longer than the requests below.
    let t0 = rplace_store::now_ms() - 1;
    let mut last = 0;
    for i in 0..16u64 {
        last = app.bench_place(1, 0, 0, (i % 15 + 1) as u8).await;
        last = last.max(app.bench_place(1, 1023, 1023, (i % 15 + 1) as u8).await);
    }
    history_holds(&app, last).await;
    let t1 = rplace_store::now_ms();
    let heavy = json!({"x": 0, "y": 0, "w": 1024, "h": 1024, "from": t0, "to": t1, "frames": 6});
    let clients: Vec<reqwest::Client> = (0..6).map(|_| client()).collect();
    for c in &clients {
        app.login(c).await;
    }
    let answers =
        futures_util::future::join_all(clients.iter().map(|c| post(&app, c, heavy.clone()))).await;
    let taken: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, b)| b)
        .collect();
    let busy: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(taken.len(), 2, "{answers:?}");
    assert_eq!(busy.len(), 4, "{answers:?}");
    for b in busy {
        assert_eq!(b["error"], "busy", "{b}");
    }

    // The per-user limit: one identity, two unfinished jobs at most. Once the queue has
    // room again (the first two are done), a third from one identity is refused while
    // its two others are unfinished.
    for b in &taken {
        let s = until_finished(&app, b["id"].as_str().unwrap()).await;
        assert_eq!(s["state"], "done", "{s}");
    }
    let app2 = spawn_app_on(
        backend,
        &[
            "--timelapse-concurrency",
            "1",
            "--timelapse-queue",
            "4",
            "--width",
            "1024",
            "--height",
            "1024",
        ],
    )
    .await;
    for i in 0..16u64 {
        app2.bench_place(1, 0, 0, (i % 15 + 1) as u8).await;
        last = app2.bench_place(1, 1023, 1023, (i % 15 + 1) as u8).await;
    }
    history_holds(&app2, last).await;
    let heavy = json!({"x": 0, "y": 0, "w": 1024, "h": 1024, "from": t0, "frames": 6});
    let one = client();
    app2.login(&one).await;
    let (a, _) = post(&app2, &one, heavy.clone()).await;
    let (b, _) = post(&app2, &one, heavy.clone()).await;
    let (c, e) = post(&app2, &one, heavy.clone()).await;
    assert_eq!((a, b), (202, 202));
    assert_eq!(
        (c, e["error"].as_str()),
        (429, Some("too_many_jobs")),
        "{e}"
    );
    app2.stop().await;
    app.stop().await;
}
