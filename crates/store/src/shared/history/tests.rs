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

    let r = h.rebuild().await.unwrap();
    assert_eq!((r.epoch, r.seq, r.replayed), (1, Seq(2), 2));
    assert_eq!(r.board, vec![0, 0, 0x34, 0]);
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
async fn snapshots_shorten_the_replay_without_changing_the_board() {
    let url = rplace_testsupport::Postgres::shared().create_database();
    let dims = Dimensions::parse(3, 3).unwrap();
    let h = History::connect(&url, 2, dims, Depth::Eight, Duration::from_secs(5))
        .await
        .unwrap();
    let rows: Vec<Placement> = (1..=10)
        .map(|s| row(s, (s % 3) as u32, s as u8, s))
        .collect();
    h.write(0, &rows).await.unwrap();
    let full = h.rebuild().await.unwrap();
    assert_eq!(full.replayed, 10);
    // The watermark is at 10 after the rebuild; a snapshot is due.
    assert_eq!(h.maybe_snapshot(5).await.unwrap(), Some(Seq(10)));
    assert_eq!(h.maybe_snapshot(5).await.unwrap(), None);
    let more: Vec<Placement> = (11..=12).map(|s| row(s, 0, 200, s)).collect();
    h.write(full.epoch, &more).await.unwrap();
    let fast = h.rebuild().await.unwrap();
    assert_eq!((fast.replayed, fast.seq), (2, Seq(12)));
    let mut expected = full.board.clone();
    expected[3] = 200;
    assert_eq!(fast.board, expected);
}

#[tokio::test]
async fn another_shape_is_refused() {
    let url = rplace_testsupport::Postgres::shared().create_database();
    let dims = Dimensions::parse(3, 3).unwrap();
    History::connect(&url, 2, dims, Depth::Four, Duration::from_secs(5))
        .await
        .unwrap();
    let err = History::connect(&url, 2, dims, Depth::Eight, Duration::from_secs(5))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("bits_per_pixel = 4"), "{err}");
}
