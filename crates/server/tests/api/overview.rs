//! The overview pyramid on a canvas far larger than what is painted: a zoomed-out tile
//! renders only the quarters below it that hold paint (`server::overview`).

use crate::helpers::*;
use crate::tiles::decode_png;
use std::time::Duration;

/// `rplace_overview_renders_total` now.
async fn renders(app: &TestApp) -> u64 {
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("rplace_overview_renders_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Places a `side`² block of `color` with its top-left at (x, y); the last seq.
async fn block(app: &TestApp, x: u32, y: u32, side: u32, color: u8) -> u64 {
    let mut last = 0;
    for dy in 0..side {
        for dx in 0..side {
            last = app.bench_place(1, x + dx, y + dy, color).await;
        }
    }
    last
}

/// The top overview tile's RGB once it was rendered through `seq`.
async fn top_after(app: &TestApp, seq: u64) -> Vec<u8> {
    eventually(
        Duration::from_secs(20),
        "the overview to render through the seq",
        || async {
            let r = reqwest::get(app.url("/api/tiles/4/0/0.png")).await.unwrap();
            assert_eq!(r.status(), 200);
            let v: u64 = r.headers()["x-tile-version"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let rgb = decode_png(&r.bytes().await.unwrap());
            (v >= seq).then_some(rgb)
        },
    )
    .await
}

fn rgb_at(rgb: &[u8], x: usize, y: usize) -> &[u8] {
    &rgb[(y * 256 + x) * 3..(y * 256 + x) * 3 + 3]
}

contract_test!(a_zoomed_out_tile_renders_only_the_painted_quarters_below_it);
/// A 4096² canvas: the top overview tile (level 4) covers 256 tiles, and a full render
/// of the pyramid under it is 85 overview tiles. With paint on two tiles it renders the
/// two chains above them, 7 tiles, and shows both pictures; a tile painted afterwards
/// shows at the next refresh.
async fn a_zoomed_out_tile_renders_only_the_painted_quarters_below_it(backend: Backend) {
    let args = unlimited("4096");
    let app = spawn_app_on(backend, &args).await;
    assert_eq!(app.get_json("/api/config").await["levels"], 5);
    // 16² blocks on 16-aligned corners are one pixel each at level 4.
    block(&app, 0, 0, 16, 5).await;
    let last = block(&app, 4000, 4000, 16, 9).await;
    // Once the painted-tiles index counted them, the render is final (not provisional).
    eventually(
        Duration::from_secs(30),
        "the index to count the blocks",
        || async {
            let r = reqwest::get(app.url("/api/tiles/15/15/activity"))
                .await
                .unwrap();
            let through: u64 = r.headers()["x-activity-through"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (through >= last).then_some(())
        },
    )
    .await;
    let before = renders(&app).await;
    let rgb = top_after(&app, last).await;
    assert_eq!(
        renders(&app).await - before,
        7,
        "one chain of 3 per painted tile, and the top"
    );
    let palette = app.get_json("/api/config").await["palette"].clone();
    let hex = |c: usize| {
        let v = u32::from_str_radix(&palette[c].as_str().unwrap()[1..], 16).unwrap();
        vec![(v >> 16) as u8, (v >> 8) as u8, v as u8]
    };
    assert_eq!(rgb_at(&rgb, 0, 0), hex(5));
    assert_eq!(rgb_at(&rgb, 250, 250), hex(9));
    assert_eq!(rgb_at(&rgb, 128, 0), hex(0), "nothing painted there yet");

    // A block on a tile never painted before, at once (the index may not have counted it).
    let later = block(&app, 2048, 0, 16, 13).await;
    let rgb = eventually(
        Duration::from_secs(20),
        "the new block in the overview",
        || async {
            let rgb = top_after(&app, later).await;
            (rgb_at(&rgb, 128, 0) == hex(13)).then_some(rgb)
        },
    )
    .await;
    assert_eq!(rgb_at(&rgb, 0, 0), hex(5));
    assert_eq!(rgb_at(&rgb, 250, 250), hex(9));
    app.stop().await;
}
