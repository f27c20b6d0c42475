//! The canvas at a past moment: `GET /api/board?seq=S` / `?at=T` and
//! `GET /api/tiles/{tx}/{ty}?seq=S` / `?at=T`, checked against a replay of the log.

use crate::helpers::*;
use rplace_domain::board::{Board, Depth, Dimensions};
use rplace_domain::{ColorIndex, Coord, TileId};
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "test-admin-token-history-0123456789abcdef";
/// 3 x 2 tiles, the last column and row partial.
const W: u32 = 600;
const H: u32 = 300;

/// A small interval, so that reads use keyframes and log tails both.
fn args(every: &'static str) -> Vec<&'static str> {
    vec![
        "--width",
        "600",
        "--height",
        "300",
        "--history-keyframe-every",
        every,
        "--admin-token",
        TOKEN,
    ]
}

/// One placement as the server acknowledged it.
#[derive(Debug, Clone, Copy)]
struct Placed {
    seq: u64,
    at: i64,
    x: u32,
    y: u32,
    color: u8,
}

async fn place(app: &TestApp, user: u64, x: u32, y: u32, color: u8) -> Placed {
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
    Placed {
        seq: v["seq"].as_u64().unwrap(),
        at: v["at"].as_i64().unwrap(),
        x,
        y,
        color,
    }
}

/// `n` placements over a pool of pixels in every tile, so pixels are painted over.
async fn place_many(app: &TestApp, n: usize) -> Vec<Placed> {
    let mut r = 0x2545_f491_4f6c_dd1du64;
    let mut pool = Vec::new();
    for _ in 0..60 {
        r = r
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        pool.push(((r >> 33) as u32 % W, (r >> 13) as u32 % H));
    }
    let mut out = Vec::new();
    for i in 0..n {
        r = r
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (x, y) = pool[(r >> 40) as usize % pool.len()];
        out.push(place(app, 1 + (i as u64 % 7), x, y, ((r >> 20) % 16) as u8).await);
    }
    out
}

fn dims() -> Dimensions {
    Dimensions::parse(u64::from(W), u64::from(H)).unwrap()
}

/// The board after every placement up to `seq`.
fn replay(log: &[Placed], seq: u64) -> Board {
    let mut b = Board::new(dims(), Depth::Four);
    for p in log.iter().filter(|p| p.seq <= seq) {
        b.set(
            Coord::new_unchecked(p.x, p.y),
            ColorIndex::new_unchecked(p.color),
        );
    }
    b
}

/// Status, headers and body of a GET.
async fn get(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = client().get(app.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> u64 {
    h[name].to_str().unwrap().parse().unwrap()
}

/// Waits until the history holds `head` and its keyframes reach it (built in the
/// background), so that every seq up to it can be read.
async fn indexed(app: &TestApp, head: u64) {
    eventually(
        Duration::from_secs(20),
        "the keyframes reach the head",
        || async {
            let (status, h, _) = get(app, &format!("/api/board?seq={head}")).await;
            (status == 200 && header(&h, "x-board-seq") == head).then_some(())
        },
    )
    .await
}

contract_test!(the_past_board_and_tiles_equal_replaying_the_log);
/// At many seqs (on marks, between them, at 0 and the head) and times, the board and each
/// tile are the replay of the log up to that moment, with the moment in the headers.
async fn the_past_board_and_tiles_equal_replaying_the_log(backend: Backend) {
    let app = spawn_app_on(backend, &args("37")).await;
    let log = place_many(&app, 260).await;
    let head = log.last().unwrap().seq;
    indexed(&app, head).await;
    let first = log[0].seq;
    let mut seqs = vec![0, first, first + 36, first + 37, first + 38, first + 74];
    seqs.extend([first + 111, first + 150, head - 1, head]);
    for s in seqs.into_iter().chain((0..head).step_by(23)) {
        let (status, h, body) = get(&app, &format!("/api/board?seq={s}")).await;
        assert_eq!(status, 200, "seq {s}: {}", String::from_utf8_lossy(&body));
        assert_eq!(header(&h, "x-board-seq"), s);
        assert_eq!(h["etag"], format!("\"{s}\""));
        assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
        assert_eq!(body, replay(&log, s).as_bytes(), "board at seq {s}");
        for (tx, ty) in [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)] {
            let id = TileId::new_unchecked(tx, ty);
            let (status, h, body) = get(&app, &format!("/api/tiles/{tx}/{ty}?seq={s}")).await;
            assert_eq!(status, 200);
            let version = log
                .iter()
                .filter(|p| p.seq <= s && TileId::of(Coord::new_unchecked(p.x, p.y)) == id)
                .map(|p| p.seq)
                .max()
                .unwrap_or(0);
            assert_eq!(
                header(&h, "x-tile-version"),
                version,
                "tile {tx},{ty} at {s}"
            );
            assert_eq!(header(&h, "x-board-seq"), s);
            assert_eq!(
                body,
                replay(&log, s).tile(id).as_bytes(),
                "tile {tx},{ty} at seq {s}"
            );
        }
    }
    // A time: the last placement made at or before it.
    for p in log.iter().step_by(41).chain([log.last().unwrap()]) {
        let want = log
            .iter()
            .filter(|q| q.at <= p.at)
            .map(|q| q.seq)
            .max()
            .unwrap();
        let (status, h, body) = get(&app, &format!("/api/board?at={}", p.at)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "x-board-seq"), want, "at {}", p.at);
        assert_eq!(body, replay(&log, want).as_bytes());
        let (_, h, _) = get(&app, &format!("/api/tiles/1/1?at={}", p.at)).await;
        assert_eq!(header(&h, "x-board-seq"), want);
    }
    let (status, h, body) = get(&app, &format!("/api/board?at={}", log[0].at - 1)).await;
    assert_eq!((status, header(&h, "x-board-seq")), (200, 0));
    assert!(body.iter().all(|b| *b == 0));
    // A moment's PNGs are served too.
    let (status, h, png) = get(&app, &format!("/api/board.png?seq={}", head / 2)).await;
    assert_eq!(
        (status, &h["content-type"]),
        (200, &"image/png".parse().unwrap())
    );
    assert!(png.starts_with(b"\x89PNG"));
    let (status, _, png) = get(&app, &format!("/api/tiles/2/1.png?seq={}", head / 2)).await;
    assert_eq!(status, 200);
    assert!(png.starts_with(b"\x89PNG"));
}

contract_test!(a_past_moment_out_of_range_says_what_is_allowed);
/// A seq beyond the head is a 404 naming the range; malformed moments are 400s; an
/// answer revalidates by its ETag.
async fn a_past_moment_out_of_range_says_what_is_allowed(backend: Backend) {
    let app = spawn_app_on(backend, &args("5")).await;
    let log = place_many(&app, 12).await;
    let head = log.last().unwrap().seq;
    indexed(&app, head).await;
    for path in [
        format!("/api/board?seq={}", head + 1000),
        format!("/api/tiles/0/0?seq={}", head + 1000),
    ] {
        let (status, _, body) = get(&app, &path).await;
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 404, "{e}");
        assert_eq!(e["error"], "seq_out_of_range");
        assert_eq!(e["allowed"], format!("seq 0..={head}"));
    }
    for (path, field) in [
        ("/api/board?seq=abc", "seq"),
        ("/api/board?seq=-1", "seq"),
        ("/api/tiles/0/0?at=soon", "at"),
        ("/api/board?seq=1&at=2", "seq"),
    ] {
        let (status, _, body) = get(&app, path).await;
        let e: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, &e["error"], &e["field"]),
            (400, &json!("invalid_query"), &json!(field)),
            "{path}: {e}"
        );
    }
    // Off the canvas is the tile route's usual 404.
    let (status, _, _) = get(&app, "/api/tiles/9/0?seq=1").await;
    assert_eq!(status, 404);
    let r = client()
        .get(app.url("/api/board?seq=3"))
        .header("if-none-match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // A time after the newest placement may still gain placements: not immutable.
    let (status, h, _) = get(
        &app,
        &format!("/api/board?at={}", log.last().unwrap().at + 60_000),
    )
    .await;
    assert_eq!((status, header(&h, "x-board-seq")), (200, head));
    assert!(!h["cache-control"].to_str().unwrap().contains("immutable"));
}

contract_test!(the_past_includes_rewrites);
/// A fill is placements in the log: the board before it is the board then, and at its
/// last seq the board after it (a fill of more pixels than the keyframe interval, so
/// marks fall inside it).
async fn the_past_includes_rewrites(backend: Backend) {
    let app = spawn_app_on(backend, &args("3")).await;
    let log = place_many(&app, 20).await;
    let before = log.last().unwrap().seq;
    let (_, board_before) = app.board_after(before).await;
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/fill"))
        .bearer_auth(TOKEN)
        .json(&json!({"rect": {"x": 250, "y": 250, "w": 10, "h": 4}, "color": 9, "reason": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done: Value = r.json().await.unwrap();
    let last = done["last_seq"].as_u64().unwrap();
    assert!(last >= before + 30, "{done}");
    let (_, board_after) = app.board_after(last).await;
    indexed(&app, last).await;
    let (_, _, past) = get(&app, &format!("/api/board?seq={before}")).await;
    assert_eq!(past, board_before);
    let (_, _, past) = get(&app, &format!("/api/board?seq={last}")).await;
    assert_eq!(past, board_after);
    let filled = Board::from_bytes(dims(), Depth::Four, past).unwrap();
    assert_eq!(filled.get(Coord::new_unchecked(255, 251)).get(), 9);
    assert_eq!(filled.get(Coord::new_unchecked(259, 253)).get(), 9);
    // The tile across which the fill runs, at its end.
    let (_, h, tile) = get(&app, &format!("/api/tiles/1/0?seq={last}")).await;
    assert_eq!(tile, filled.tile(TileId::new_unchecked(1, 0)).as_bytes());
    assert!(header(&h, "x-tile-version") > before);
}
