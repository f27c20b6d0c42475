//! Tiles: their bytes, versions and caching, unpainted tiles, the overview pyramid, the
//! websocket's view with per-tile frames and catch-up, canvases too large to be served
//! whole, and live expansion. On both backends.

use crate::helpers::*;
use crate::strict::ADMIN_TOKEN;
use futures_util::SinkExt;
use rplace_domain::board::{Depth, get_packed};
use rplace_domain::placement::Seq;
use rplace_domain::tile::{Tile, TileId, downsample};
use rplace_domain::tile_sync::{TileFetch, TileSync};
use rplace_domain::wire::decode_tile_frame;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A tile as `GET /api/tiles/{tx}/{ty}` answers it.
struct Got {
    status: u16,
    version: u64,
    etag: String,
    body: Vec<u8>,
}

async fn get_tile(app: &TestApp, tx: u32, ty: u32) -> Got {
    let r = reqwest::get(app.url(&format!("/api/tiles/{tx}/{ty}")))
        .await
        .unwrap();
    let status = r.status().as_u16();
    let version = r
        .headers()
        .get("x-tile-version")
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    let etag = r
        .headers()
        .get("etag")
        .map_or(String::new(), |v| v.to_str().unwrap().to_string());
    Got {
        status,
        version,
        etag,
        body: r.bytes().await.unwrap().to_vec(),
    }
}

/// The 4-bit pixel at tile-local (x, y).
fn at(tile: &[u8], x: u32, y: u32) -> u8 {
    get_packed(tile, Depth::Four, (y * 256 + x) as usize)
}

/// The tile once this instance has applied `seq` (in shared mode the feed trails the
/// acknowledgement; a tile read from the store waits for it, but a cached one is served).
async fn tile_after(app: &TestApp, tx: u32, ty: u32, seq: u64) -> Got {
    eventually(
        Duration::from_secs(10),
        "the tile reaches the seq",
        || async {
            let g = get_tile(app, tx, ty).await;
            (g.status == 200 && app.get_json("/api/config").await["seq"].as_u64() >= Some(seq))
                .then_some(())
        },
    )
    .await;
    get_tile(app, tx, ty).await
}

contract_test!(tile_bytes_equal_the_placements);
/// A tile is the board's layout restricted to the tile, padded with 0 past the canvas,
/// with the seq of its last placement as its version.
async fn tile_bytes_equal_the_placements(backend: Backend) {
    // 3 x 2 tiles, the last column and row partial.
    let app = spawn_app_on(backend, &["--width", "600", "--height", "300"]).await;
    let cfg = app.get_json("/api/config").await;
    assert_eq!(cfg["tile_size"], 256);
    assert_eq!(cfg["levels"], 3);
    assert_eq!(cfg["whole"], true);
    // Read every tile once first: from then on each follows its own placements.
    for (tx, ty) in [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)] {
        assert_eq!(get_tile(&app, tx, ty).await.status, 200);
    }
    let s1 = app.bench_place(1, 256, 0, 3).await;
    let s2 = app.bench_place(1, 599, 299, 7).await;
    let s3 = app.bench_place(1, 300, 10, 9).await;
    let t = tile_after(&app, 1, 0, s3).await;
    assert_eq!(t.body.len(), 32_768);
    assert_eq!(t.version, s3);
    assert_eq!(t.etag, format!("\"{s3}\""));
    assert_eq!(at(&t.body, 0, 0), 3);
    assert_eq!(at(&t.body, 44, 10), 9);
    let nonzero = (0..65_536).filter(|&i| get_packed(&t.body, Depth::Four, i) != 0);
    assert_eq!(nonzero.count(), 2);
    let corner = get_tile(&app, 2, 1).await;
    assert_eq!(corner.version, s2);
    assert_eq!(at(&corner.body, 599 - 512, 299 - 256), 7);
    assert!(s1 < s2);
    // The same bytes as the board restricted to the tile.
    let (_, board) = app.board_after(s3).await;
    for y in 0..256u32 {
        for x in 0..256u32 {
            let (bx, by) = (256 + x, y);
            let want = if bx < 600 && by < 300 {
                nibble(&board, (by * 600 + bx) as usize)
            } else {
                0
            };
            assert_eq!(at(&t.body, x, y), want, "({bx}, {by})");
        }
    }
    // The PNG shows the palette's color.
    let r = reqwest::get(app.url("/api/tiles/1/0.png")).await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-tile-version"], s3.to_string().as_str());
    let rgb = decode_png(&r.bytes().await.unwrap());
    let px = (10 * 256 + 44) * 3;
    assert_eq!(&rgb[px..px + 3], &[0x94, 0xE0, 0x44], "color 9 is #94E044");
    app.stop().await;
}

pub(crate) fn decode_png(bytes: &[u8]) -> Vec<u8> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (256, 256));
    buf
}

contract_test!(each_tile_has_its_own_etag_and_304);
async fn each_tile_has_its_own_etag_and_304(backend: Backend) {
    let app = spawn_app_on(backend, &["--width", "512", "--height", "256"]).await;
    get_tile(&app, 0, 0).await;
    get_tile(&app, 1, 0).await;
    let s = app.bench_place(1, 5, 5, 4).await;
    let a = tile_after(&app, 0, 0, s).await;
    assert_eq!(a.version, s);
    let c = client();
    let r = c
        .get(app.url("/api/tiles/0/0"))
        .header("if-none-match", &a.etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["x-tile-version"], s.to_string().as_str());
    assert_eq!(r.headers()["cache-control"], "public, max-age=0");
    // A placement on the other tile leaves this one's version alone.
    let s2 = app.bench_place(1, 300, 5, 4).await;
    let b = tile_after(&app, 1, 0, s2).await;
    assert_eq!(b.version, s2);
    let r = c
        .get(app.url("/api/tiles/0/0"))
        .header("if-none-match", format!("W/{}", a.etag))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304, "weak form too");
    // One on this tile changes it.
    let s3 = app.bench_place(1, 6, 5, 4).await;
    let a2 = tile_after(&app, 0, 0, s3).await;
    assert_eq!(a2.version, s3);
    let r = c
        .get(app.url("/api/tiles/0/0"))
        .header("if-none-match", &a.etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Compressed bodies decode to the raw tile.
    for enc in ["gzip", "br", "zstd"] {
        let r = c
            .get(app.url("/api/tiles/0/0"))
            .header("accept-encoding", enc)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], enc);
        assert_eq!(r.headers()["vary"], "accept-encoding");
        let body = r.bytes().await.unwrap().to_vec();
        let mut out = Vec::new();
        match enc {
            "gzip" => {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .unwrap();
            }
            "br" => {
                brotli::Decompressor::new(&body[..], 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            _ => out = zstd::stream::decode_all(&body[..]).unwrap(),
        }
        assert_eq!(out, a2.body, "{enc}");
    }
    app.stop().await;
}

contract_test!(unpainted_and_off_canvas_tiles);
/// Unpainted tiles are version 0 and all blank; tiles off the canvas are 404 JSON saying
/// what exists.
async fn unpainted_and_off_canvas_tiles(backend: Backend) {
    let app = spawn_app_on(backend, &["--width", "1000", "--height", "600"]).await;
    let a = get_tile(&app, 3, 2).await;
    let b = get_tile(&app, 0, 1).await;
    for t in [&a, &b] {
        assert_eq!((t.status, t.version, t.etag.as_str()), (200, 0, "\"0\""));
        assert_eq!(t.body, vec![0u8; 32_768]);
    }
    let r = reqwest::get(app.url("/api/tiles/0/0.png")).await.unwrap();
    assert_eq!(r.status(), 200);
    let rgb = decode_png(&r.bytes().await.unwrap());
    assert!(rgb.chunks(3).all(|p| p == [255, 255, 255]));
    for path in [
        "/api/tiles/4/0",
        "/api/tiles/0/3",
        "/api/tiles/0/3.png",
        "/api/tiles/-1/0",
        "/api/tiles/x/0",
        "/api/tiles/0/0.gif",
        "/api/tiles/0/0/updates?since=0"
            .replace("0/0", "9/9")
            .as_str(),
        "/api/tiles/3/0/0.png",
        "/api/tiles/1/2/0.png",
        "/api/tiles/1/0/0",
    ] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not_found", "{path}");
        assert!(v["allowed"].as_str().is_some(), "{path}: {v}");
    }
    let v: Value = reqwest::get(app.url("/api/tiles/4/0"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["allowed"]
            .as_str()
            .unwrap()
            .contains("tx 0..=3, ty 0..=2"),
        "{v}"
    );
    app.stop().await;
}

contract_test!(overview_tiles_are_the_downsampled_tiles);
async fn overview_tiles_are_the_downsampled_tiles(backend: Backend) {
    // 4 x 2 tiles: levels 0, 1 (2 x 1 tiles), 2 (1 tile).
    let app = spawn_app_on(backend, &["--width", "1024", "--height", "512"]).await;
    assert_eq!(app.get_json("/api/config").await["levels"], 3);
    // 2x2 blocks survive downsampling; a lone pixel does not.
    let mut last = 0;
    for (x0, y0, color, side) in [
        (10u32, 10u32, 5u8, 2),
        (300, 100, 9, 2),
        (600, 400, 13, 4),
        (1020, 508, 2, 2),
    ] {
        for dy in 0..side {
            for dx in 0..side {
                last = app.bench_place(1, x0 + dx, y0 + dy, color).await;
            }
        }
    }
    last = last.max(app.bench_place(1, 801, 3, 7).await);
    check_overviews(&app, last, true).await;
    // The 4 x 4 block at (600, 400) lands on level 2 at (150, 100).
    let r = reqwest::get(app.url("/api/tiles/2/0/0.png")).await.unwrap();
    let rgb = decode_png(&r.bytes().await.unwrap());
    let px = (100 * 256 + 150) * 3;
    assert_eq!(&rgb[px..px + 3], &[0x00, 0x00, 0xEA], "color 13 is #0000EA");
    // A change shows at every level once the TTL (0 here) passed.
    let mut s = 0;
    for (x, y) in [(10, 10), (11, 10), (10, 11)] {
        s = app.bench_place(1, x, y, 1).await;
    }
    check_overviews(&app, s, false).await;
    // z = 0 is the tile itself.
    let r = reqwest::get(app.url("/api/tiles/0/1/0.png")).await.unwrap();
    assert_eq!(r.status(), 200);
    let rgb = decode_png(&r.bytes().await.unwrap());
    let px = (100 * 256 + 44) * 3;
    assert_eq!(&rgb[px..px + 3], &[0x94, 0xE0, 0x44]);
    app.stop().await;
}

/// Every overview tile of a 1024 x 512 canvas is the downsampling of the tiles, once the
/// server has applied `seq`; those over tile (0, 0), and with `all` every one, rendered
/// through `seq` (an overview tile with no change below it keeps its version).
async fn check_overviews(app: &TestApp, seq: u64, all: bool) {
    tile_after(app, 0, 0, seq).await;
    let mut tiles = HashMap::new();
    for ty in 0..2 {
        for tx in 0..4 {
            let t = get_tile(app, tx, ty).await;
            tiles.insert((tx, ty), Tile::from_bytes(Depth::Four, t.body).unwrap());
        }
    }
    let palette: Vec<[u8; 3]> = app.get_json("/api/config").await["palette"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let v = u32::from_str_radix(&c.as_str().unwrap()[1..], 16).unwrap();
            [(v >> 16) as u8, (v >> 8) as u8, v as u8]
        })
        .collect();
    let level1 = |tx: u32| {
        let kids = [(0, 0), (1, 0), (0, 1), (1, 1)].map(|(dx, dy)| tiles.get(&(2 * tx + dx, dy)));
        downsample(Depth::Four, kids).unwrap()
    };
    let (a, b) = (level1(0), level1(1));
    let top = downsample(Depth::Four, [Some(&a), Some(&b), None, None]).unwrap();
    for (path, want) in [
        ("/api/tiles/1/0/0.png", &a),
        ("/api/tiles/1/1/0.png", &b),
        ("/api/tiles/2/0/0.png", &top),
    ] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: u64 = r.headers()["x-tile-version"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if all || path != "/api/tiles/1/1/0.png" {
            assert!(v >= seq, "{path} rendered through {v}, before {seq}");
        }
        let rgb = decode_png(&r.bytes().await.unwrap());
        for i in 0..=u16::MAX {
            let p = &rgb[i as usize * 3..i as usize * 3 + 3];
            assert_eq!(p, palette[want.get(i).get() as usize], "{path} pixel {i}");
        }
    }
}

/// A websocket client with a view, keeping each of its tiles exact by the client rule.
struct Viewer {
    ws: Ws,
    tiles: HashMap<TileId, TileSync>,
}

impl Viewer {
    /// Connects, reads hello, sends the view of tiles `(tx, ty, w, h)` and reads its answer.
    async fn connect(app: &TestApp, view: (u32, u32, u32, u32)) -> Viewer {
        let mut ws = app.ws().await;
        let hello = match next_msg(&mut ws, Duration::from_secs(5)).await {
            Some(Message::Text(t)) => serde_json::from_str::<Value>(&t).unwrap(),
            other => panic!("expected hello, got {other:?}"),
        };
        assert_eq!(hello["tile_size"], 256);
        let (tx, ty, w, h) = view;
        let msg = json!({"type": "view", "tx": tx, "ty": ty, "w": w, "h": h});
        ws.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        // Until the view is answered the connection is a whole-canvas one: its frames
        // (0x01) may come first. Tile frames come only after the answer.
        loop {
            match next_msg(&mut ws, Duration::from_secs(5)).await {
                Some(Message::Binary(b)) if b[0] == 0x01 => continue,
                Some(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(
                        v,
                        json!({"type": "view", "tx": tx, "ty": ty, "w": w, "h": h})
                    );
                    break;
                }
                other => panic!("expected the view's answer, got {other:?}"),
            }
        }
        let mut tiles = HashMap::new();
        for y in ty..ty + h {
            for x in tx..tx + w {
                let id = TileId::new_unchecked(x, y);
                tiles.insert(id, TileSync::new(id));
            }
        }
        Viewer { ws, tiles }
    }

    /// Performs every fetch the tiles' state machines ask for.
    async fn settle(&mut self, app: &TestApp) {
        for _ in 0..100 {
            let mut idle = true;
            for s in self.tiles.values_mut() {
                let Some(f) = s.next_fetch() else { continue };
                idle = false;
                let id = s.id();
                match f {
                    TileFetch::Tile => {
                        let g = get_tile(app, id.tx(), id.ty()).await;
                        assert_eq!(g.status, 200);
                        s.on_tile(Depth::Four, &g.body, Seq(g.version)).unwrap();
                    }
                    TileFetch::Updates { since } => {
                        let r = reqwest::get(app.url(&format!(
                            "/api/tiles/{}/{}/updates?since={since}",
                            id.tx(),
                            id.ty()
                        )))
                        .await
                        .unwrap();
                        assert_eq!(r.status(), 200);
                        s.on_updates(&r.bytes().await.unwrap()).unwrap();
                    }
                }
            }
            if idle {
                return;
            }
        }
        panic!("the tiles keep asking for fetches");
    }

    /// Reads messages until every tile has reached `seq` or `within` passes; every binary
    /// message must be a tile frame of the view.
    async fn read_until(&mut self, app: &TestApp, want: &HashMap<TileId, u64>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.settle(app).await;
            if want
                .iter()
                .all(|(id, v)| self.tiles[id].version() >= Some(Seq(*v)))
            {
                return;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "tiles never reached {want:?}");
            match next_msg(&mut self.ws, left).await {
                Some(Message::Binary(b)) => {
                    assert_eq!(b[0], 0x02, "only tile frames after a view");
                    let f = decode_tile_frame(&b).unwrap();
                    let s = self
                        .tiles
                        .get_mut(&f.tile)
                        .unwrap_or_else(|| panic!("a frame of tile {:?}, not in the view", f.tile));
                    s.on_frame(&b).unwrap();
                }
                Some(Message::Text(t)) => panic!("unexpected {t}"),
                other => panic!("the websocket ended: {other:?}"),
            }
        }
    }
}

contract_test!(a_view_gets_only_its_tiles_and_ends_exact_after_a_reconnect);
async fn a_view_gets_only_its_tiles_and_ends_exact_after_a_reconnect(backend: Backend) {
    // Tiles A = (0, 0), B = (1, 0), C = (2, 0).
    let app = spawn_app_on(backend, &["--width", "768", "--height", "256"]).await;
    let (a, b) = (TileId::new_unchecked(0, 0), TileId::new_unchecked(1, 0));
    let mut v = Viewer::connect(&app, (0, 0, 2, 1)).await;
    v.settle(&app).await;
    // Placements on C, then one on A and one on B: the first frames are A's and B's.
    for i in 0..5 {
        app.bench_place(1, 600 + i, 7, 3).await;
    }
    let sa = app.bench_place(1, 1, 2, 4).await;
    let sb = app.bench_place(1, 257, 2, 5).await;
    v.read_until(&app, &HashMap::from([(a, sa), (b, sb)])).await;
    // Gone for a while: placements on A, B and C meanwhile.
    drop(v.ws);
    let mut last = HashMap::new();
    for i in 0..20u32 {
        let s = app.bench_place(1, 10 + i, 20, (i % 15 + 1) as u8).await;
        last.insert(a, s);
        let s = app.bench_place(1, 300 + i, 30, (i % 15 + 1) as u8).await;
        last.insert(b, s);
        app.bench_place(1, 700, i, 6).await;
    }
    // Back: the same view again, each tile caught up from its version.
    let states = std::mem::take(&mut v.tiles);
    let mut v2 = Viewer::connect(&app, (0, 0, 2, 1)).await;
    v2.tiles = states;
    for s in v2.tiles.values() {
        assert!(s.version().unwrap() < Seq(last[&s.id()]));
    }
    // The next frame of each tile starts after the gap: the client rule catches up.
    let sa = app.bench_place(1, 100, 100, 9).await;
    let sb = app.bench_place(1, 400, 100, 9).await;
    v2.read_until(&app, &HashMap::from([(a, sa), (b, sb)]))
        .await;
    for id in [a, b] {
        let fresh = get_tile(&app, id.tx(), id.ty()).await;
        let s = &v2.tiles[&id];
        assert_eq!(s.version(), Some(Seq(fresh.version)), "{id:?}");
        assert_eq!(
            s.tile().unwrap().as_bytes(),
            &fresh.body[..],
            "{id:?} exact"
        );
    }
    app.stop().await;
}

contract_test!(bad_views_are_answered_and_the_connection_stays);
async fn bad_views_are_answered_and_the_connection_stays(backend: Backend) {
    let app = spawn_app_on(backend, &["--width", "1000", "--height", "1000"]).await;
    let mut ws = app.ws().await;
    hello(&mut ws).await;
    for bad in [
        "hello".to_string(),
        json!({"type": "view", "tx": 0, "ty": 0, "w": 17, "h": 16}).to_string(),
        json!({"type": "view", "tx": -1, "ty": 0, "w": 1, "h": 1}).to_string(),
        json!({"type": "view", "tx": 0, "ty": 0, "w": 0, "h": 1}).to_string(),
        json!({"type": "subscribe"}).to_string(),
    ] {
        ws.send(Message::Text(bad.clone().into())).await.unwrap();
        match next_msg(&mut ws, Duration::from_secs(5)).await {
            Some(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(
                    (v["type"].as_str(), v["code"].as_str()),
                    (Some("error"), Some("view")),
                    "{bad}"
                );
                assert!(!v["message"].as_str().unwrap().is_empty());
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Clamped to the canvas (4 x 4 tiles).
    let view = json!({"type": "view", "tx": 2, "ty": 3, "w": 16, "h": 16});
    ws.send(Message::Text(view.to_string().into()))
        .await
        .unwrap();
    match next_msg(&mut ws, Duration::from_secs(5)).await {
        Some(Message::Text(t)) => {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v, json!({"type": "view", "tx": 2, "ty": 3, "w": 2, "h": 1}));
        }
        other => panic!("{other:?}"),
    }
    // Whole-canvas frames stop; a placement in view arrives as a tile frame.
    let s = app.bench_place(1, 5, 5, 1).await;
    let s2 = app.bench_place(1, 999, 999, 2).await;
    assert!(s < s2);
    match next_msg(&mut ws, Duration::from_secs(10)).await {
        Some(Message::Binary(b)) => {
            let f = decode_tile_frame(&b).unwrap();
            assert_eq!(f.tile, TileId::new_unchecked(3, 3));
            assert_eq!(f.updates.last().unwrap().version, Seq(s2));
        }
        other => panic!("{other:?}"),
    }
    app.stop().await;
}

contract_test!(large_canvases_are_served_in_tiles_only);
/// Past 8192 on a side there is no whole board and no whole-canvas frame: 404 JSON naming
/// the tile endpoints. Coordinates beyond 65,535 work everywhere.
async fn large_canvases_are_served_in_tiles_only(backend: Backend) {
    let app = spawn_app_on(backend, &["--width", "70000", "--height", "3"]).await;
    let cfg = app.get_json("/api/config").await;
    assert_eq!(
        (cfg["width"].as_u64(), cfg["whole"].as_bool()),
        (Some(70_000), Some(false))
    );
    for path in ["/api/board", "/api/board.png", "/api/updates?since=0"] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not_whole", "{path}");
        assert!(
            v["message"].as_str().unwrap().contains("/api/tiles/"),
            "{v}"
        );
    }
    let mut ws = app.ws().await;
    let hello = match next_msg(&mut ws, Duration::from_secs(5)).await {
        Some(Message::Text(t)) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (hello["width"].as_u64(), hello["whole"].as_bool()),
        (Some(70_000), Some(false))
    );
    // Read once first: from then on each tile follows its own placements.
    get_tile(&app, 273, 0).await;
    get_tile(&app, 256, 0).await;
    let s = app.bench_place(1, 69_999, 2, 11).await;
    let s2 = app.bench_place(1, 65_536, 1, 12).await;
    let t = tile_after(&app, 273, 0, s).await;
    assert_eq!(at(&t.body, 69_999 - 273 * 256, 2), 11);
    let t = get_tile(&app, 256, 0).await;
    assert_eq!((t.version, at(&t.body, 0, 1)), (s2, 12));
    let info = app.pixel_after(69_999, 2, s).await;
    assert_eq!(info["color"], 11);
    let r = reqwest::get(app.url("/api/tiles/273/0/updates?since=0"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tile-version"], s.to_string().as_str());
    let f = decode_tile_frame(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(f.updates.len(), 1);
    assert_eq!(f.updates[0].version, Seq(s));
    // A client without a view gets no whole-canvas frame here.
    assert!(
        next_msg(&mut ws, Duration::from_millis(300))
            .await
            .is_none(),
        "no frames without a view on a canvas this large"
    );
    app.stop().await;
}

contract_test!(a_100000_square_canvas_has_exact_tiles_far_out);
async fn a_100000_square_canvas_has_exact_tiles_far_out(backend: Backend) {
    let app = spawn_app_on(backend, &["--width", "100000", "--height", "100000"]).await;
    let spots = [
        (99_999u32, 99_999u32, 3u8),
        (65_536, 65_537, 4),
        (70_000, 12, 5),
    ];
    let mut seqs = Vec::new();
    for (x, y, c) in spots {
        seqs.push(app.bench_place(1, x, y, c).await);
    }
    for ((x, y, c), s) in spots.into_iter().zip(seqs) {
        let t = tile_after(&app, x / 256, y / 256, s).await;
        assert_eq!(t.version, s);
        assert_eq!(at(&t.body, x % 256, y % 256), c);
        assert_eq!(app.pixel_after(x, y, s).await["color"], c);
    }
    let r = reqwest::get(app.url("/api/board")).await.unwrap();
    assert_eq!(r.status(), 404);
    let top = app.get_json("/api/config").await["levels"]
        .as_u64()
        .unwrap()
        - 1;
    let r = reqwest::get(app.url(&format!("/api/tiles/{top}/0/0.png")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

async fn grow(app: &TestApp, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/canvas"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

contract_test!(growing_the_canvas_is_checked);
async fn growing_the_canvas_is_checked(backend: Backend) {
    let app = spawn_app_on(
        backend,
        &[
            "--width",
            "300",
            "--height",
            "200",
            "--admin-token",
            ADMIN_TOKEN,
        ],
    )
    .await;
    let (status, v) = grow(&app, json!({"width": 299, "height": 400})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("cannot_shrink")),
        "{v}"
    );
    let (status, v) = grow(&app, json!({"width": 4_194_305, "height": 400})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_size")),
        "{v}"
    );
    assert!(v["allowed"].as_str().unwrap().contains("4194304"));
    let (status, v) = grow(&app, json!({"width": 400})).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (422, Some("missing_field")),
        "{v}"
    );
    // Without credentials, nothing.
    let r = reqwest::Client::new()
        .post(app.url("/api/admin/canvas"))
        .json(&json!({"width": 400, "height": 400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.get_json("/api/config").await["width"], 300);
    app.stop().await;
}

contract_test!(the_canvas_grows_live);
async fn the_canvas_grows_live(backend: Backend) {
    let app = spawn_app_on(
        backend,
        &[
            "--width",
            "300",
            "--height",
            "200",
            "--admin-token",
            ADMIN_TOKEN,
        ],
    )
    .await;
    let s0 = app.bench_place(1, 299, 199, 6).await;
    let mut whole = app.ws().await;
    hello(&mut whole).await;
    let mut viewer = Viewer::connect(&app, (0, 0, 2, 1)).await;
    assert_eq!(get_tile(&app, 2, 0).await.status, 404);
    let (status, v) = grow(&app, json!({"width": 9000, "height": 300})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"width": 9000, "height": 300}));
    let canvas = json!({"type": "canvas", "width": 9000, "height": 300});
    for ws in [&mut whole, &mut viewer.ws] {
        loop {
            match next_msg(ws, Duration::from_secs(10)).await {
                Some(Message::Text(t)) => {
                    assert_eq!(serde_json::from_str::<Value>(&t).unwrap(), canvas);
                    break;
                }
                Some(Message::Binary(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    }
    let cfg = app.get_json("/api/config").await;
    assert_eq!(
        (cfg["width"].as_u64(), cfg["whole"].as_bool()),
        (Some(9000), Some(false))
    );
    // Nothing painted moved; the new area takes placements and is served.
    let t = get_tile(&app, 1, 0).await;
    assert_eq!((t.version, at(&t.body, 299 - 256, 199)), (s0, 6));
    let s = app.bench_place(1, 8999, 299, 8).await;
    let t = tile_after(&app, 35, 1, s).await;
    assert_eq!(at(&t.body, 8999 - 35 * 256, 299 - 256), 8);
    let audit: Value = reqwest::Client::new()
        .get(app.url("/api/admin/audit?limit=1"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["entries"][0]["kind"], "canvas.grow");
    // The store keeps the size across a restart.
    let app = app
        .restart(&[
            "--width",
            "300",
            "--height",
            "200",
            "--admin-token",
            ADMIN_TOKEN,
        ])
        .await;
    assert_eq!(app.get_json("/api/config").await["width"], 9000);
    app.stop().await;
}
