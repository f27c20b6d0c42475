use super::*;

fn row(seq: u64, x: u32, color: u8, user: u64) -> Placement {
    Placement {
        seq: Seq(seq),
        coord: Coord::new_unchecked(x, 1),
        color: ColorIndex::new_unchecked(color),
        user: UserId(user),
        at_ms: 1_764_300_000_000 + seq as i64,
    }
}

/// Collects what a rebuild hands out, by tile.
#[derive(Default)]
struct Collect(std::collections::BTreeMap<TileId, (Seq, Tile)>);

impl TileSink for Collect {
    async fn put(&mut self, tiles: Vec<RebuiltTile>) -> Result<(), StoreError> {
        for (id, version, tile) in tiles {
            assert!(self.0.insert(id, (version, tile)).is_none(), "{id:?} twice");
        }
        Ok(())
    }
}

async fn rebuild(h: &History) -> (Rebuilt, Collect) {
    let mut sink = Collect::default();
    let r = h.rebuild(&mut sink).await.unwrap();
    (r, sink)
}

#[tokio::test]
async fn writes_are_fenced_by_the_epoch_and_checked_on_conflict() {
    let url = rplace_testsupport::Postgres::shared().create_database();
    let dims = Dimensions::parse(4, 2).unwrap();
    let h = History::connect(&url, 2, dims, Depth::Four, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(h.state().await.unwrap(), (0, Seq(0)));
    let first = [row(1, 0, 3, 10), row(2, 1, 4, 11)];
    assert_eq!(
        h.write(0, &first).await.unwrap(),
        Written::Stored { conflicts: vec![] }
    );
    // The same rows again (the reconciler after the writer): nothing to report.
    assert_eq!(
        h.write(0, &first).await.unwrap(),
        Written::Stored { conflicts: vec![] }
    );

    let (r, tiles) = rebuild(&h).await;
    assert_eq!((r.epoch, r.seq, r.replayed, r.tiles), (1, Seq(2), 2, 1));
    assert_eq!(r.dims, dims);
    let (version, tile) = &tiles.0[&TileId::new_unchecked(0, 0)];
    assert_eq!(*version, Seq(2));
    // Row 1 of the tile starts at tile-local pixel 256 (byte 128 at 4 bits).
    assert_eq!(tile.as_bytes()[128], 0x34);
    assert_eq!(tile.as_bytes().iter().filter(|&&b| b != 0).count(), 1);
    assert_eq!(r.last_ms, first[1].at_ms);

    // A placement made on the state the rebuild replaced is not written.
    assert_eq!(
        h.write(0, &[row(3, 2, 5, 12)]).await.unwrap(),
        Written::Stale
    );
    assert_eq!(h.max_seq().await.unwrap(), Seq(2));
    // Another placement under a taken seq is reported, and the stored one stays.
    let other = row(2, 3, 9, 99);
    assert_eq!(
        h.write(1, &[other, row(3, 2, 5, 12)]).await.unwrap(),
        Written::Stored {
            conflicts: vec![Seq(2)]
        }
    );
    let hist = h
        .pixel_history(Coord::new_unchecked(1, 1), 5)
        .await
        .unwrap();
    assert_eq!(hist, vec![first[1]]);
    assert_eq!(h.count_between(Seq(0), Seq(3)).await.unwrap(), 3);
}

#[tokio::test]
async fn tile_snapshots_shorten_the_replay_without_changing_the_tiles() {
    let url = rplace_testsupport::Postgres::shared().create_database();
    let dims = Dimensions::parse(70_000, 300).unwrap();
    let h = History::connect(&url, 2, dims, Depth::Eight, Duration::from_secs(5))
        .await
        .unwrap();
    // Three tiles, one of them beyond x = 65,535.
    let xs = [0u32, 300, 69_999];
    let rows: Vec<Placement> = (1..=10)
        .map(|s| row(s, xs[s as usize % 3], s as u8, s))
        .collect();
    h.write(0, &rows).await.unwrap();
    let (full, full_tiles) = rebuild(&h).await;
    assert_eq!((full.replayed, full.tiles), (10, 3));
    // The watermark is at 10 after the rebuild; a round is due.
    assert_eq!(h.maybe_snapshot(5).await.unwrap(), Some(Seq(10)));
    assert_eq!(h.maybe_snapshot(5).await.unwrap(), None);
    let db = h.client().await.unwrap();
    let n: i64 = db
        .query_one("SELECT count(*) FROM tile_snapshots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // Only the tile placed on since is rewritten by the next round.
    let more: Vec<Placement> = (11..=12).map(|s| row(s, 69_999, 200, s)).collect();
    h.write(full.epoch, &more).await.unwrap();
    let (fast, fast_tiles) = rebuild(&h).await;
    assert_eq!((fast.replayed, fast.seq, fast.tiles), (2, Seq(12), 3));
    let far = TileId::new_unchecked(69_999 / 256, 0);
    let mut expected = full_tiles.0.clone();
    let (v, t) = expected.get_mut(&far).unwrap();
    *v = Seq(12);
    t.set(
        far.local_index(Coord::new_unchecked(69_999, 1)),
        ColorIndex::new_unchecked(200),
    );
    assert_eq!(fast_tiles.0, expected);
    h.advance_durable(fast.epoch, Seq(12)).await.unwrap();
    assert_eq!(h.maybe_snapshot(1).await.unwrap(), Some(Seq(12)));
    let seqs: Vec<(i32, i64)> = db
        .query("SELECT tx, seq FROM tile_snapshots ORDER BY tx", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(seqs, vec![(0, 10), (1, 10), (far.tx() as i32, 12)]);
    let (after, after_tiles) = rebuild(&h).await;
    assert_eq!(after.replayed, 0);
    assert_eq!(after_tiles.0, expected);
}

#[tokio::test]
async fn another_depth_is_refused_and_the_size_only_grows() {
    let url = rplace_testsupport::Postgres::shared().create_database();
    let dims = Dimensions::parse(3, 3).unwrap();
    let h = History::connect(&url, 2, dims, Depth::Four, Duration::from_secs(5))
        .await
        .unwrap();
    let err = History::connect(&url, 2, dims, Depth::Eight, Duration::from_secs(5))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("bits_per_pixel = 4"), "{err}");
    // A larger start grows; a smaller one keeps the larger size.
    let larger = Dimensions::parse(5, 4).unwrap();
    History::connect(&url, 2, larger, Depth::Four, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(h.dims().await.unwrap(), larger);
    History::connect(&url, 2, dims, Depth::Four, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(h.dims().await.unwrap(), larger);
    let wide = Dimensions::parse(100_000, 2).unwrap();
    assert_eq!(
        h.grow(wide).await.unwrap(),
        Dimensions::parse(100_000, 4).unwrap()
    );
}
