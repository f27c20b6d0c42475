//! `GET /api/export/placements.csv.gz`: every placement as gzipped CSV.

use crate::helpers::*;
use flate2::read::GzDecoder;
use std::io::Read;

/// The export's rows, and its `X-Export-Seq`.
async fn export(app: &TestApp) -> (u64, Vec<Vec<String>>) {
    let r = client()
        .get(app.url("/api/export/placements.csv.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let seq: u64 = r.headers()["x-export-seq"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let gz = r.bytes().await.unwrap();
    let mut csv = String::new();
    GzDecoder::new(&gz[..]).read_to_string(&mut csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,user,x,y,color"));
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (seq, rows)
}

contract_test!(the_export_holds_every_placement_in_order_with_pseudonyms);
/// Every placement, in seq order, with u32 coordinates, its time and a pseudonym that is
/// the same for one user, different between users, and not the user id.
async fn the_export_holds_every_placement_in_order_with_pseudonyms(backend: Backend) {
    let app = spawn_app_on(backend, &["--width", "70000", "--height", "300"]).await;
    let before = rplace_store::now_ms();
    let placed = [
        (1u64, 69_999u32, 0u32, 3u8),
        (2, 0, 299, 7),
        (1, 65_536, 17, 15),
        (3, 12, 12, 1),
    ];
    let mut last = 0;
    for (user, x, y, color) in placed {
        last = app.bench_place(user, x, y, color).await;
    }
    // The shared history's watermark follows the writes within moments.
    let rows = eventually(
        std::time::Duration::from_secs(10),
        "the export reaches the last placement",
        || async {
            let (seq, rows) = export(&app).await;
            (seq >= last && rows.len() == placed.len()).then_some(rows)
        },
    )
    .await;
    let after = rplace_store::now_ms();
    for (row, (_, x, y, color)) in rows.iter().zip(placed) {
        assert_eq!(row.len(), 5, "{row:?}");
        let t: i64 = row[0].parse().unwrap();
        assert!(
            (before - 1000..=after + 1000).contains(&t),
            "{t} not in {before}..{after}"
        );
        assert_eq!(row[1].len(), 16);
        assert!(row[1].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(row[2], x.to_string());
        assert_eq!(row[3], y.to_string());
        assert_eq!(row[4], color.to_string());
    }
    assert_eq!(rows[0][1], rows[2][1], "one user, one pseudonym");
    assert_ne!(rows[0][1], rows[1][1]);
    assert_ne!(rows[1][1], rows[3][1]);
    assert_ne!(rows[0][1], format!("{:016x}", 1));
    let times: Vec<i64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

contract_test!(an_export_turned_off_says_so);
/// `--export-concurrency 0` turns the export off with a JSON 404.
async fn an_export_turned_off_says_so(backend: Backend) {
    let app = spawn_app_on(backend, &["--export-concurrency", "0"]).await;
    let r = client()
        .get(app.url("/api/export/placements.csv.gz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "export_off");
}
