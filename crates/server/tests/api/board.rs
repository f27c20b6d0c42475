use crate::helpers::*;
use std::io::Read;

#[tokio::test]
async fn etag_304_and_compression() {
    let app = spawn_app(&[]).await;
    app.bench_place(1, 15, 7, 9).await;
    let (seq, raw) = app.board().await;
    let c = client();
    let r = c.get(app.url("/api/board")).send().await.unwrap();
    assert_eq!(r.headers()["etag"], format!("\"{seq}\""));
    assert_eq!(r.headers()["cache-control"], "public, max-age=0");
    assert!(r.headers().get("content-encoding").is_none());
    let r = c
        .get(app.url("/api/board"))
        .header("if-none-match", format!("\"{seq}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["x-board-seq"], seq.to_string().as_str());
    assert!(r.bytes().await.unwrap().is_empty());
    // Weak form, as a gzipping cache sends it back.
    let r = c
        .get(app.url("/api/board"))
        .header("if-none-match", format!("W/\"{seq}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = c
        .get(app.url("/api/board"))
        .header("if-none-match", "\"999\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    for enc in ["gzip", "br", "zstd"] {
        let r = c
            .get(app.url("/api/board"))
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
        assert_eq!(out, raw, "{enc} body decodes to the raw board");
    }
    app.stop().await;
}

#[tokio::test]
async fn board_is_cached_for_its_ttl_and_catch_up_fills_the_gap() {
    let app = spawn_app(&["--board-ttl", "30"]).await;
    let (seq0, _) = app.board().await;
    app.bench_place(1, 1, 1, 4).await;
    app.bench_place(1, 2, 1, 5).await;
    let r = reqwest::get(app.url("/api/board")).await.unwrap();
    assert_eq!(r.headers()["cache-control"], "public, max-age=30");
    assert_eq!(
        r.headers()["x-board-seq"],
        seq0.to_string().as_str(),
        "within the TTL the same version is served"
    );
    // A client that got the stale board ends up exact through /api/updates.
    let mut c = SyncClient::start(&app, 16).await;
    assert!(c.catch_up(&app).await);
    assert_eq!(c.seq, 2);
    assert_eq!(nibble(&c.board, 16 + 1), 4);
    assert_eq!(nibble(&c.board, 16 + 2), 5);
    app.stop().await;
}

#[tokio::test]
async fn board_png_renders_the_palette() {
    let app = spawn_app(&[]).await;
    app.bench_place(1, 3, 2, 5).await; // #E50000
    let r = reqwest::get(app.url("/api/board.png")).await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.headers().contains_key("etag"));
    let bytes = r.bytes().await.unwrap();
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (16, 8));
    let px = (2 * 16 + 3) * 3;
    assert_eq!(&buf[px..px + 3], &[0xE5, 0x00, 0x00]);
    app.stop().await;
}

#[tokio::test]
async fn updates_are_gone_when_older_than_the_log() {
    let app = spawn_app(&["--updates-log", "4"]).await;
    for i in 0..10 {
        app.bench_place(1, i, 0, 1).await;
    }
    let r = reqwest::get(app.url("/api/updates?since=2")).await.unwrap();
    assert_eq!(r.status(), 410);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "gone");
    let r = reqwest::get(app.url("/api/updates?since=7")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-board-seq"], "10");
    let body = r.bytes().await.unwrap();
    let ups: Vec<_> = rplace_domain::wire::split_frames(&body)
        .unwrap()
        .into_iter()
        .flat_map(|f| rplace_domain::wire::decode_frame(f).unwrap())
        .collect();
    assert_eq!(
        ups.iter().map(|u| u.seq.0).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    let r = reqwest::get(app.url("/api/updates?since=10"))
        .await
        .unwrap();
    assert!(r.bytes().await.unwrap().is_empty());
    app.stop().await;
}

/// The raw board of a large canvas goes out by sendfile (crate::zerocopy); whatever the
/// path, every client gets exactly the board, also many at once on one connection each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_boards_are_sent_from_a_file_byte_for_byte() {
    let app = spawn_app(&["--width", "1024", "--height", "512", "--sendfile"]).await;
    // 262,144 bytes at 4 bits per pixel: above the zero-copy threshold.
    let mut pixels = Vec::new();
    for i in 0..40u16 {
        let (x, y, color) = (i * 25 % 1024, i * 13 % 512, (i % 15 + 1) as u8);
        app.bench_place(i as u64 + 1, x, y, color).await;
        pixels.push((x as usize, y as usize, color));
    }
    let sent = || async {
        app.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix("rplace_sendfile_bytes_total "))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let before = sent().await;
    let fetches: Vec<_> = (0..8)
        .map(|_| {
            let url = app.url("/api/board");
            tokio::spawn(async move {
                let r = client().get(url).send().await.unwrap();
                assert!(r.headers().get("content-encoding").is_none());
                r.bytes().await.unwrap()
            })
        })
        .collect();
    for f in fetches {
        let board = f.await.unwrap();
        assert_eq!(board.len(), 1024 * 512 / 2);
        for &(x, y, color) in &pixels {
            assert_eq!(nibble(&board, y * 1024 + x), color, "pixel ({x}, {y})");
        }
        let placed = board
            .iter()
            .map(|b| (b >> 4 != 0) as usize + (b & 15 != 0) as usize);
        assert_eq!(placed.sum::<usize>(), pixels.len());
    }
    // All eight bodies (metrics are process-wide: other tests only add to it).
    assert!(sent().await - before >= (8 * 1024 * 512 / 2) as f64);
    app.stop().await;
}
