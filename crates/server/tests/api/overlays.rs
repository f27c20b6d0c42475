//! The overlays' data: `GET /api/tiles/{tx}/{ty}/activity` and `GET /api/me/pixels`.

use crate::helpers::*;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The unix second now.
fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A tile's activity once it counts every placement up to `seq`: version and times.
async fn activity_after(app: &TestApp, tx: u32, ty: u32, seq: u64) -> (u64, Vec<u32>) {
    eventually(
        Duration::from_secs(30),
        "the activity to count the placements",
        || async move {
            let r = reqwest::get(app.url(&format!("/api/tiles/{tx}/{ty}/activity")))
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let header =
                |name: &str| -> u64 { r.headers()[name].to_str().unwrap().parse().unwrap() };
            let (through, version) = (header("x-activity-through"), header("x-activity-version"));
            assert_eq!(r.headers()["etag"], format!("\"{version}\"").as_str());
            assert_eq!(r.headers()["content-type"], "application/octet-stream");
            if through < seq {
                return None;
            }
            let body = r.bytes().await.unwrap();
            assert_eq!(body.len(), 4 * 65_536);
            let times = body
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            Some((version, times))
        },
    )
    .await
}

async fn my_pixels(app: &TestApp, c: &reqwest::Client, tx: u32, ty: u32, seq: u64) -> Vec<u64> {
    eventually(
        Duration::from_secs(30),
        "my pixels to be counted",
        || async {
            let v = app
                .get_json_as(c, &format!("/api/me/pixels?tx={tx}&ty={ty}"))
                .await;
            assert_eq!(
                (v["tx"].as_u64(), v["ty"].as_u64()),
                (Some(tx.into()), Some(ty.into()))
            );
            (v["through"].as_u64().unwrap() >= seq).then(|| {
                v["pixels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_u64().unwrap())
                    .collect()
            })
        },
    )
    .await
}

contract_test!(activity_has_each_pixels_last_time_and_zero_where_never_placed);
/// Placed pixels carry the second of their last placement, all others 0; the version is
/// the tile's last placement; 304 on the ETag; unpainted tiles are all zeros; a pixel
/// placed again carries the newer time; tiles off the canvas are 404 JSON.
async fn activity_has_each_pixels_last_time_and_zero_where_never_placed(backend: Backend) {
    let args = unlimited("512");
    let app = spawn_app_on(backend, &args).await;
    let before = now_s();
    app.bench_place(1, 3, 0, 2).await;
    app.bench_place(2, 255, 255, 3).await;
    let last = app.bench_place(3, 300, 300, 4).await;
    let after = now_s();
    let (version, times) = activity_after(&app, 0, 0, last).await;
    assert_eq!(version, last - 1, "the tile's last placement");
    let placed = [3usize, 255 * 256 + 255];
    for (i, t) in times.iter().enumerate() {
        if placed.contains(&i) {
            assert!((before..=after).contains(&u64::from(*t)), "pixel {i}: {t}");
        } else {
            assert_eq!(*t, 0, "pixel {i} was never placed");
        }
    }
    let (v11, t11) = activity_after(&app, 1, 1, last).await;
    assert_eq!(v11, last);
    assert_ne!(t11[44 * 256 + 44], 0);
    let (v10, t10) = activity_after(&app, 1, 0, last).await;
    assert_eq!(v10, 0, "never painted");
    assert!(t10.iter().all(|t| *t == 0));

    let r = reqwest::Client::new()
        .get(app.url("/api/tiles/0/0/activity"))
        .header("if-none-match", format!("\"{version}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    for path in [
        "/api/tiles/2/0/activity",
        "/api/tiles/0/9/activity",
        "/api/tiles/0/0.png/activity",
    ] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path}: {body}");
    }

    // The same pixel again, a second later at least: the newer time, a newer version.
    eventually(Duration::from_secs(5), "a second to pass", || async {
        (now_s() > after).then_some(())
    })
    .await;
    let again = app.bench_place(4, 3, 0, 5).await;
    let (version, times) = activity_after(&app, 0, 0, again).await;
    assert_eq!(version, again);
    assert!(u64::from(times[3]) > after, "{} after {after}", times[3]);
    assert_ne!(times[255 * 256 + 255], 0);
    app.stop().await;
}

contract_test!(my_pixels_are_those_still_standing_and_survive_a_restart);
/// Each person sees the pixels whose last placement is theirs: one painted over by
/// someone else is no longer theirs; a stranger has none; the rasters survive a restart
/// and go on from their watermark.
async fn my_pixels_are_those_still_standing_and_survive_a_restart(backend: Backend) {
    let args = unlimited("512");
    let app = spawn_app_on(backend, &args).await;
    let (a, b) = (client(), client());
    app.login(&a).await;
    app.login(&b).await;
    let mut last = 0;
    for (who, x, y) in [(&a, 1, 1), (&a, 2, 2), (&b, 2, 2), (&b, 7, 0), (&a, 260, 5)] {
        let r = app
            .put_pixel(who, json!({"x": x, "y": y, "color": 3}))
            .await;
        assert_eq!(r.status(), 200);
        last = r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    }
    assert_eq!(my_pixels(&app, &a, 0, 0, last).await, vec![256 + 1]);
    assert_eq!(my_pixels(&app, &b, 0, 0, last).await, vec![7, 2 * 256 + 2]);
    assert_eq!(my_pixels(&app, &a, 1, 0, last).await, vec![5 * 256 + 4]);
    assert!(my_pixels(&app, &client(), 0, 0, last).await.is_empty());
    // A rollback-free overwrite by someone without a cookie (the bench path) counts too.
    let over = app.bench_place(99, 1, 1, 6).await;
    assert!(my_pixels(&app, &a, 0, 0, over).await.is_empty());

    for (query, status) in [("tx=0", 400), ("tx=a&ty=0", 400), ("tx=2&ty=0", 404)] {
        let r = a
            .get(app.url(&format!("/api/me/pixels?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{query}: {body}"
        );
    }

    let app = app.restart(&args).await;
    let r = app.put_pixel(&b, json!({"x": 9, "y": 9, "color": 3})).await;
    assert_eq!(r.status(), 200);
    let seq = r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    assert_eq!(
        my_pixels(&app, &b, 0, 0, seq).await,
        vec![7, 2 * 256 + 2, 9 * 256 + 9]
    );
    assert_eq!(my_pixels(&app, &a, 1, 0, seq).await, vec![5 * 256 + 4]);
}

contract_test!(activity_counts_placements_spread_over_more_tiles_than_a_step);
/// 150 placements on 150 tiles (a step takes 64 tiles), then 1,200 from eight placers at
/// once on 150 pixels of one tile: every tile ends with its own pixels, and a cookie's
/// pixel elsewhere stays its own.
async fn activity_counts_placements_spread_over_more_tiles_than_a_step(backend: Backend) {
    let args = unlimited("4096");
    let app = spawn_app_on(backend, &args).await;
    let mut last = 0;
    for t in 0..150u32 {
        last = app
            .bench_place(u64::from(t) + 1, (t % 16) * 256 + t / 16, (t / 16) * 256, 1)
            .await;
    }
    let c = client();
    app.login(&c).await;
    let r = app
        .put_pixel(&c, json!({"x": 4095, "y": 4095, "color": 2}))
        .await;
    assert_eq!(r.status(), 200);
    let mine = r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    for t in (0..150u32).step_by(7).chain([149]) {
        let (tx, ty) = (t % 16, t / 16);
        let (_, times) = activity_after(&app, tx, ty, last).await;
        let placed: Vec<usize> = (0..times.len()).filter(|&i| times[i] != 0).collect();
        assert_eq!(placed, vec![(t / 16) as usize], "tile {tx},{ty}");
    }
    let placer = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for part in 0..8u64 {
        let app = placer.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = 0;
            for i in 0..150u64 {
                s = app.bench_place(1000 + part, i as u32, 4000, 1).await;
            }
            s
        }));
    }
    let mut end = mine;
    for t in tasks {
        end = end.max(t.await.unwrap());
    }
    let app = placer;
    let (_, times) = activity_after(&app, 15, 15, end).await;
    assert_ne!(times[65_535], 0);
    assert_eq!(my_pixels(&app, &c, 15, 15, end).await, vec![65_535]);
    let (_, times) = activity_after(&app, 0, 15, end).await;
    let row = 4000 % 256 * 256;
    assert!((0..150).all(|x| times[row + x] != 0));
    assert!(times[row + 150] == 0 && times[row - 1] == 0);
}

contract_test!(
    instances_sharing_a_history_count_each_placement_once_into_one_raster,
    ignore_embedded = "one process by design: no second instance"
);
async fn instances_sharing_a_history_count_each_placement_once_into_one_raster(backend: Backend) {
    let args = unlimited("512");
    let a = spawn_app_on(backend, &args).await;
    let b = a.sibling(&args).await;
    let (ca, cb) = (client(), client());
    a.login(&ca).await;
    b.login(&cb).await;
    let mut last = 0;
    // Both instances count while both place, on the same tile.
    for i in 0..120u32 {
        let (app, c) = if i % 2 == 0 { (&a, &ca) } else { (&b, &cb) };
        let r = app
            .put_pixel(c, json!({"x": i % 60, "y": i / 60, "color": 1}))
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        last = last.max(r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap());
    }
    let evens: Vec<u64> = (0..120u64)
        .filter(|i| i % 2 == 0)
        .map(|i| i / 60 * 256 + i % 60)
        .collect();
    let odds: Vec<u64> = (0..120u64)
        .filter(|i| i % 2 == 1)
        .map(|i| i / 60 * 256 + i % 60)
        .collect();
    assert_eq!(my_pixels(&a, &ca, 0, 0, last).await, evens);
    assert_eq!(my_pixels(&b, &cb, 0, 0, last).await, odds);
    let (_, times) = activity_after(&b, 0, 0, last).await;
    assert_eq!(times.iter().filter(|t| **t != 0).count(), 120);
}
