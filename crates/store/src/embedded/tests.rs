use super::*;
use rplace_domain::Cooldown;
use rplace_domain::policy::AddrRate;
use std::net::Ipv4Addr;

fn cfg(dir: &std::path::Path) -> EmbeddedConfig {
    EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        dims: Dimensions::parse(8, 4).unwrap(),
        depth: Depth::Four,
        policy: Params::new(
            Cooldown::from_secs(60),
            AddrRate::OFF,
            rplace_domain::Ipv6Prefix::DEFAULT,
        ),
        idempotency_window: Duration::from_secs(600),
        sync: SyncMode::Normal,
        snapshot_every: 3,
        max_catchup: 1000,
    }
}

fn new(x: u32, user: u64) -> NewPlacement {
    NewPlacement {
        coord: Coord::new_unchecked(x, 1),
        color: ColorIndex::new_unchecked(5),
        user: UserId(user),
        ip: Ipv4Addr::LOCALHOST.into(),
        bypass_limits: false,
        idempotency_key: None,
        standing: Default::default(),
    }
}

/// A hub that stops reading costs at most the feed queue: the placements past it are
/// dropped and it gets one reset (the board at the newest seq) once it reads again.
#[tokio::test]
async fn a_feed_nobody_reads_stays_bounded_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(cfg(dir.path())).unwrap();
    let mut feed = store.take_feed().unwrap();
    let total = crate::FEED_CAPACITY as u64 + 20;
    for i in 0..total {
        let mut p = new((i % 8) as u32, i);
        p.bypass_limits = true;
        store.place(p).await.unwrap();
    }
    let mut next = 1;
    let reset = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), feed.recv())
            .await
            .expect("the feed goes on")
            .unwrap()
        {
            FeedEvent::Placements(ps) => {
                for p in ps {
                    assert_eq!(p.seq, Seq(next));
                    next += 1;
                }
            }
            FeedEvent::Reset(s) => break s,
            FeedEvent::Grown(_) => panic!("no growth expected"),
        }
    };
    assert_eq!(
        next - 1,
        crate::FEED_CAPACITY as u64,
        "the queue held its capacity"
    );
    let now = store.snapshot().await.unwrap();
    assert_eq!((reset, now.seq), (Seq(total), Seq(total)));
    // After the reset, placements flow again.
    let mut p = new(0, 0);
    p.bypass_limits = true;
    store.place(p).await.unwrap();
    match feed.recv().await.unwrap() {
        FeedEvent::Placements(ps) => assert_eq!(ps[0].seq, Seq(total + 1)),
        FeedEvent::Reset(_) => panic!("one reset only"),
        FeedEvent::Grown(_) => panic!("no growth expected"),
    }
}

#[tokio::test]
async fn places_persists_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(cfg(dir.path())).unwrap();
    let mut feed = store.take_feed().unwrap();
    assert!(store.take_feed().is_none());
    for i in 0..5u32 {
        let placed = store.place(new(i, i as u64)).await.unwrap();
        assert_eq!(placed.seq, Seq(i as u64 + 1));
    }
    assert!(matches!(
        store.place(new(7, 0)).await,
        Err(PlaceError::Cooldown { .. })
    ));
    let mut seen = Vec::new();
    while seen.len() < 5 {
        match feed.recv().await.unwrap() {
            FeedEvent::Placements(p) => seen.extend(p),
            FeedEvent::Reset(_) => panic!("no reset expected"),
            FeedEvent::Grown(_) => panic!("no growth expected"),
        }
    }
    assert_eq!(
        seen.iter().map(|p| p.seq.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let ups = store.updates_since(Seq(3), 100).await.unwrap();
    assert_eq!(ups.len(), 2);
    let hist = store
        .pixel_history(Coord::new_unchecked(2, 1), 5)
        .await
        .unwrap();
    assert_eq!(hist[0].user, UserId(2));
    let before = store.snapshot().await.unwrap();
    // Drop without close: the restore must still see every committed row.
    drop(store);
    let again = EmbeddedStore::open(cfg(dir.path())).unwrap();
    let after = again.snapshot().await.unwrap();
    assert_eq!(after.seq, Seq(5));
    assert_eq!(after.board, before.board);
    assert!(again.next_allowed(UserId(3)).await.unwrap().is_some());
    assert!(matches!(
        again.place(new(7, 4)).await,
        Err(PlaceError::Cooldown { .. })
    ));
    again.close().await.unwrap();
}

fn seqs(h: &[Placement]) -> Vec<u64> {
    h.iter().map(|p| p.seq.0).collect()
}

#[tokio::test]
async fn pixel_history_follows_links_across_snapshots_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(cfg(dir.path())).unwrap();
    // Seqs 1..=7 alternate between pixels (2,1) and (3,1); snapshot_every = 3 puts
    // snapshots in between.
    for user in 1..=7u64 {
        store
            .place(new(if user % 2 == 1 { 2 } else { 3 }, user))
            .await
            .unwrap();
    }
    let at = |x| Coord::new_unchecked(x, 1);
    assert_eq!(
        seqs(&store.pixel_history(at(2), 10).await.unwrap()),
        [7, 5, 3, 1]
    );
    assert_eq!(seqs(&store.pixel_history(at(3), 2).await.unwrap()), [6, 4]);
    assert!(store.pixel_history(at(4), 10).await.unwrap().is_empty());
    assert!(store.pixel_history(at(9), 10).await.unwrap().is_empty());
    drop(store);
    // Restart from the last snapshot (seq 6) plus replay, then place on top.
    let again = EmbeddedStore::open(cfg(dir.path())).unwrap();
    again.place(new(3, 8)).await.unwrap();
    let hist = again.pixel_history(at(3), 10).await.unwrap();
    assert_eq!(seqs(&hist), [8, 6, 4, 2]);
    assert_eq!(hist[0].user, UserId(8));
    assert_eq!(
        seqs(&again.pixel_history(at(2), 10).await.unwrap()),
        [7, 5, 3, 1]
    );
    again.close().await.unwrap();
}

/// A row off the board (a database edited by hand, or from a larger canvas) is
/// reported as corrupt when the store opens, not a panic in `Board::set`.
#[tokio::test]
async fn a_placement_row_off_the_board_is_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(cfg(dir.path())).unwrap();
    store.place(new(1, 1)).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    // After the close's snapshot, so that the opening store replays it.
    conn.execute(
        "INSERT INTO placements (seq, x, y, color, user, ts) VALUES (2, 500, 1, 5, 2, ?1)",
        [now_ms()],
    )
    .unwrap();
    drop(conn);
    let err = EmbeddedStore::open(cfg(dir.path())).err().expect("refused");
    assert!(
        matches!(err, StoreError::Backend(BackendError::Corrupt(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_version_1_data_dir_is_migrated_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    {
        // What the first schema left: an index instead of links, a snapshot without
        // pixel seqs (taken at seq 2), and rows after it.
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.execute_batch(&format!("{}; PRAGMA user_version = 1;", MIGRATIONS[0]))
            .unwrap();
        check_shape(&conn, &c).unwrap();
        let old = now_ms() - 3_600_000;
        for (seq, x) in [(1, 2), (2, 3), (3, 2), (4, 2)] {
            conn.execute(
                "INSERT INTO placements (seq, x, y, color, user, ts) VALUES (?1, ?2, 1, 5, ?1, ?3)",
                params![seq, x, old + seq],
            )
            .unwrap();
        }
        let mut board = Board::new(c.dims, c.depth);
        for x in [2, 3] {
            board.set(Coord::new_unchecked(x, 1), ColorIndex::new_unchecked(5));
        }
        conn.execute(
            "INSERT INTO snapshot (id, seq, board) VALUES (1, 2, ?1)",
            [board.as_bytes()],
        )
        .unwrap();
    }
    let store = EmbeddedStore::open(c).unwrap();
    let at = |x| Coord::new_unchecked(x, 1);
    assert_eq!(
        seqs(&store.pixel_history(at(2), 10).await.unwrap()),
        [4, 3, 1]
    );
    assert_eq!(seqs(&store.pixel_history(at(3), 10).await.unwrap()), [2]);
    assert_eq!(store.place(new(3, 9)).await.unwrap().seq, Seq(5));
    assert_eq!(seqs(&store.pixel_history(at(3), 10).await.unwrap()), [5, 2]);
    store.close().await.unwrap();
}

#[test]
fn pixel_seqs_round_trip_and_must_fit_the_board() {
    let seqs: Vec<u64> = (0..20_000u64).map(|i| i * i * 7919 % 1_000_003).collect();
    let blob = encode_pixel_seq(&seqs).unwrap();
    assert_eq!(decode_pixel_seq(&blob, seqs.len()).unwrap(), seqs);
    assert!(decode_pixel_seq(&blob, seqs.len() + 1).is_err());
    assert!(decode_pixel_seq(&blob, seqs.len() - 1).is_err());
    assert!(decode_pixel_seq(b"not zstd", 4).is_err());
}

#[tokio::test]
async fn refuses_a_data_dir_of_another_size() {
    let dir = tempfile::tempdir().unwrap();
    EmbeddedStore::open(cfg(dir.path()))
        .unwrap()
        .close()
        .await
        .unwrap();
    let mut other = cfg(dir.path());
    other.dims = Dimensions::parse(9, 4).unwrap();
    let err = EmbeddedStore::open(other).err().unwrap();
    assert!(err.to_string().contains("width = 8"), "{err}");
}

#[tokio::test]
async fn too_old_catch_up_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_catchup = 2;
    c.policy = Params::new(
        Cooldown::from_secs(0),
        AddrRate::OFF,
        rplace_domain::Ipv6Prefix::DEFAULT,
    );
    let store = EmbeddedStore::open(c).unwrap();
    for i in 0..5 {
        store.place(new(i, 1)).await.unwrap();
    }
    assert!(matches!(
        store.updates_since(Seq(1), 10).await,
        Err(StoreError::Gone { .. })
    ));
    assert_eq!(store.updates_since(Seq(3), 10).await.unwrap().len(), 2);
}
