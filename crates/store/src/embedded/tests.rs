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
        tile_cache: DEFAULT_TILE_CACHE,
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
async fn a_larger_start_grows_a_smaller_one_keeps_the_size_and_the_depth_must_match() {
    let dir = tempfile::tempdir().unwrap();
    EmbeddedStore::open(cfg(dir.path()))
        .unwrap()
        .close()
        .await
        .unwrap();
    let mut larger = cfg(dir.path());
    larger.dims = Dimensions::parse(9, 4).unwrap();
    let store = EmbeddedStore::open(larger).unwrap();
    assert_eq!(store.dims(), Dimensions::parse(9, 4).unwrap());
    store.close().await.unwrap();
    drop(store);
    // Smaller than stored on one axis: the stored size stays, on both.
    let mut smaller = cfg(dir.path());
    smaller.dims = Dimensions::parse(8, 6).unwrap();
    let store = EmbeddedStore::open(smaller).unwrap();
    assert_eq!(store.dims(), Dimensions::parse(9, 6).unwrap());
    store.close().await.unwrap();
    drop(store);
    let mut deeper = cfg(dir.path());
    deeper.depth = Depth::Eight;
    let err = EmbeddedStore::open(deeper).err().unwrap();
    assert!(err.to_string().contains("bits_per_pixel = 4"), "{err}");
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

// ---- tiles ----

use rplace_domain::Tile;
use rplace_domain::tile::TILE_SIZE;
use std::collections::BTreeMap;

/// A store on a canvas of `side`², holding at most `tiles` tiles, writing its tiles
/// every `every` placements, with no cooldown.
fn tiled(dir: &std::path::Path, side: u64, tiles: usize, every: u64) -> EmbeddedConfig {
    EmbeddedConfig {
        dims: Dimensions::parse(side, side).unwrap(),
        policy: Params::new(
            Cooldown::from_secs(0),
            AddrRate::OFF,
            rplace_domain::Ipv6Prefix::DEFAULT,
        ),
        snapshot_every: every,
        tile_cache: tiles,
        ..cfg(dir)
    }
}

fn put(x: u32, y: u32, color: u8, user: u64) -> NewPlacement {
    NewPlacement {
        coord: Coord::new_unchecked(x, y),
        color: ColorIndex::new_unchecked(color),
        user: UserId(user),
        ip: Ipv4Addr::LOCALHOST.into(),
        bypass_limits: true,
        idempotency_key: None,
        standing: Default::default(),
    }
}

/// Leaves a store as `kill -9` would: its writer never hears of it again, so the dirty
/// tiles it holds are never written (the thread idles until the test process ends).
fn crash<S>(store: S) {
    std::mem::forget(store);
}

/// What the placements made: each pixel's color and seqs, newest last.
#[derive(Default)]
struct Model {
    pixels: BTreeMap<(u32, u32), (u8, Vec<u64>)>,
}

impl Model {
    fn place(&mut self, p: &NewPlacement, seq: Seq) {
        let e = self.pixels.entry((p.coord.x(), p.coord.y())).or_default();
        e.0 = p.color.get();
        e.1.push(seq.0);
    }

    /// Every painted tile: its version and its pixels.
    fn tiles(&self, depth: Depth) -> BTreeMap<TileId, (u64, Tile)> {
        let mut out: BTreeMap<TileId, (u64, Tile)> = BTreeMap::new();
        for (&(x, y), (color, seqs)) in &self.pixels {
            let c = Coord::new_unchecked(x, y);
            let id = TileId::of(c);
            let e = out.entry(id).or_insert_with(|| (0, Tile::new(depth)));
            e.0 = e.0.max(*seqs.last().unwrap());
            e.1.set(id.local_index(c), ColorIndex::new_unchecked(*color));
        }
        out
    }

    /// Checks every painted tile, a blank one, and every pixel's history.
    async fn check(&self, store: &EmbeddedStore) {
        let tiles = self.tiles(Depth::Four);
        for (&id, (version, pixels)) in &tiles {
            let read = store.tile(id).await.unwrap();
            assert_eq!(read.version, Seq(*version), "version of {id:?}");
            assert!(read.through >= read.version);
            assert_eq!(read.pixels.as_ref(), Some(pixels), "pixels of {id:?}");
        }
        let blank = (0..)
            .map(|k| TileId::new_unchecked(k, 1))
            .find(|id| !tiles.contains_key(id))
            .unwrap();
        if blank.on(store.dims()) {
            let read = store.tile(blank).await.unwrap();
            assert_eq!((read.version, read.pixels), (Seq(0), None));
        }
        for (&(x, y), (_, seqs)) in &self.pixels {
            let hist = store
                .pixel_history(Coord::new_unchecked(x, y), 1000)
                .await
                .unwrap();
            let want: Vec<u64> = seqs.iter().rev().copied().collect();
            assert_eq!(super::tests::seqs(&hist), want, "history of ({x}, {y})");
        }
    }
}

/// Places `ps` one at a time (so each is its own batch) and records them in `model`.
async fn place_all(store: &EmbeddedStore, model: &mut Model, ps: &[NewPlacement]) {
    for p in ps {
        let placed = store.place(*p).await.unwrap();
        model.place(p, placed.seq);
    }
}

/// Places `ps` all at once (so that the writer takes them in few batches).
async fn place_many(store: &Arc<EmbeddedStore>, model: &mut Model, ps: &[NewPlacement]) {
    let tasks: Vec<_> = ps
        .iter()
        .map(|&p| {
            let s = store.clone();
            tokio::spawn(async move { (p, s.place(p).await.unwrap()) })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done.sort_by_key(|(_, placed)| placed.seq);
    for (p, placed) in done {
        model.place(&p, placed.seq);
    }
}

/// A few pseudo-random placements on a `side`² canvas, some on the same pixels.
fn scatter(n: u64, side: u32, seed: u64) -> Vec<NewPlacement> {
    let mut r = seed | 1;
    (0..n)
        .map(|i| {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            // Every fourth placement repaints an earlier pixel's neighbourhood.
            let (x, y) = if i % 4 == 3 {
                ((r % 8) as u32, ((r >> 8) % 8) as u32)
            } else {
                ((r % side as u64) as u32, ((r >> 24) % side as u64) as u32)
            };
            put(x, y, (r >> 50) as u8 % 16, i % 7)
        })
        .collect()
}

#[tokio::test]
async fn tile_bytes_and_the_whole_board_equal_the_placements() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(tiled(dir.path(), 1000, 64, 1_000_000)).unwrap());
    let mut model = Model::default();
    place_many(&store, &mut model, &scatter(3000, 1000, 7)).await;
    // The last partial tiles too: their padding stays 0.
    place_all(
        &store,
        &mut model,
        &[put(999, 999, 3, 1), put(768, 999, 9, 2)],
    )
    .await;
    model.check(&store).await;
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.seq, Seq(3002));
    let mut board = Board::new(snap.board.dims(), Depth::Four);
    for (&(x, y), (color, _)) in &model.pixels {
        board.set(
            Coord::new_unchecked(x, y),
            ColorIndex::new_unchecked(*color),
        );
    }
    assert_eq!(snap.board, board);
    let off = store.tile(TileId::new_unchecked(4, 0)).await.unwrap();
    assert_eq!((off.version, off.through), (Seq(0), Seq(3002)));
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_restart_is_exact_from_the_tiles_and_the_log_after_their_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        // A checkpoint every 500 placements. The first 600 at once put the first
        // checkpoint somewhere in 500..=600 (at the end of a batch); one by one after
        // that, the next comes exactly 500 later (1000..=1100), so at least the last 200
        // are only in the log.
        let store = Arc::new(EmbeddedStore::open(tiled(dir.path(), 2048, 16, 500)).unwrap());
        let ps = scatter(1300, 2048, 11);
        place_many(&store, &mut model, &ps[..600]).await;
        place_all(&store, &mut model, &ps[600..]).await;
        model.check(&store).await;
        crash(store);
    }
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let watermark: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [TILES_THROUGH],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        (1000..=1100).contains(&watermark),
        "a checkpoint was written and placements follow it: {watermark}"
    );
    drop(conn);
    let store = Arc::new(EmbeddedStore::open(tiled(dir.path(), 2048, 16, 500)).unwrap());
    model.check(&store).await;
    // Placing on goes on from there, links included.
    place_many(&store, &mut model, &scatter(400, 2048, 12)).await;
    model.check(&store).await;
    store.close().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(tiled(dir.path(), 2048, 16, 500)).unwrap();
    model.check(&store).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn memory_is_bounded_by_the_tile_cache_on_a_world_canvas() {
    let dir = tempfile::tempdir().unwrap();
    let side = rplace_domain::board::MAX_SIDE;
    let cache = 4;
    let mut model = Model::default();
    // 40 tiles, ten times what the cache holds, across the whole 2^22² canvas, each
    // placed on several times in turn (so tiles leave and come back).
    let spots: Vec<(u32, u32)> = (0..40u32)
        .map(|k| {
            let t = (k * 104_729) % (side / TILE_SIZE);
            (t * TILE_SIZE + k % TILE_SIZE, (side - 1) - k * 99_991)
        })
        .collect();
    {
        let store =
            Arc::new(EmbeddedStore::open(tiled(dir.path(), side as u64, cache, 50)).unwrap());
        assert!(store.snapshot().await.is_err(), "no whole board of 2^22²");
        for round in 0..3u32 {
            let ps: Vec<_> = spots
                .iter()
                .enumerate()
                .map(|(i, &(x, y))| put(x, y - round % 2, (i as u8 + round as u8) % 16, i as u64))
                .collect();
            // Some one by one, some in batches larger than the cache.
            if round == 1 {
                place_all(&store, &mut model, &ps).await;
            } else {
                place_many(&store, &mut model, &ps).await;
            }
            assert!(store.cached_tiles() <= cache, "{}", store.cached_tiles());
        }
        assert_eq!(model.tiles(Depth::Four).len(), 40);
        model.check(&store).await;
        assert!(store.cached_tiles() <= cache, "reads do not fill the cache");
        crash(store);
    }
    let store = EmbeddedStore::open(tiled(dir.path(), side as u64, cache, 50)).unwrap();
    assert!(store.cached_tiles() <= cache, "replay is bounded too");
    model.check(&store).await;
    let corner = TileId::of(Coord::new_unchecked(side - 1, side - 1));
    assert_eq!(store.tile(corner).await.unwrap().version, Seq(0));
    store.close().await.unwrap();
}

#[tokio::test]
async fn coordinates_beyond_65535_are_placed_read_back_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let ps = [
        put(70_000, 99_999, 5, 1),
        put(65_536, 65_536, 6, 2),
        put(99_999, 0, 7, 3),
        put(70_000, 99_999, 8, 4),
    ];
    {
        let store = EmbeddedStore::open(tiled(dir.path(), 100_000, 2, 1000)).unwrap();
        place_all(&store, &mut model, &ps).await;
        model.check(&store).await;
        let t = store
            .tile(TileId::of(Coord::new_unchecked(70_000, 99_999)))
            .await
            .unwrap();
        let id = TileId::of(Coord::new_unchecked(70_000, 99_999));
        assert_eq!(
            t.pixels
                .unwrap()
                .get(id.local_index(Coord::new_unchecked(70_000, 99_999))),
            ColorIndex::new_unchecked(8)
        );
        assert_eq!(
            store.updates_since(Seq(0), 10).await.unwrap()[1].coord.x(),
            65_536
        );
        crash(store);
    }
    let store = EmbeddedStore::open(tiled(dir.path(), 100_000, 2, 1000)).unwrap();
    model.check(&store).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_canvas_grows_durably_and_the_feed_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        let store = EmbeddedStore::open(tiled(dir.path(), 300, 8, 1000)).unwrap();
        let mut feed = store.take_feed().unwrap();
        place_all(&store, &mut model, &[put(299, 299, 4, 1)]).await;
        let small = Dimensions::parse(200, 400).unwrap();
        assert!(matches!(
            store.grow(small).await,
            Err(StoreError::Config(_))
        ));
        let big = Dimensions::parse(1000, 600).unwrap();
        assert_eq!(store.grow(big).await.unwrap(), big);
        assert_eq!(store.dims(), big);
        // Growing to the same size again changes nothing.
        assert_eq!(store.grow(big).await.unwrap(), big);
        place_all(
            &store,
            &mut model,
            &[put(999, 599, 9, 2), put(299, 299, 5, 3)],
        )
        .await;
        let mut events = Vec::new();
        while events.len() < 4 {
            match feed.recv().await.unwrap() {
                FeedEvent::Placements(ps) => {
                    events.extend(ps.iter().map(|p| format!("p{}", p.seq.0)))
                }
                FeedEvent::Grown(d) => events.push(format!("grown {}x{}", d.width(), d.height())),
                FeedEvent::Reset(_) => panic!("no reset expected"),
            }
        }
        assert_eq!(events, ["p1", "grown 1000x600", "p2", "p3"]);
        model.check(&store).await;
        assert_eq!(store.snapshot().await.unwrap().board.dims(), big);
        store.close().await.unwrap();
    }
    // The configured size is the old one: the grown one stays.
    let store = EmbeddedStore::open(tiled(dir.path(), 300, 8, 1000)).unwrap();
    assert_eq!(store.dims(), Dimensions::parse(1000, 600).unwrap());
    model.check(&store).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn pixel_history_links_hold_across_evictions_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    // One tile in memory: every placement alternates between tiles, so each evicts the
    // other (dirty) tile and loads it back from its row.
    let ps: Vec<_> = (0..12u64)
        .map(|i| match i % 3 {
            0 => put(1, 1, i as u8, i),
            1 => put(300, 2, i as u8, i),
            _ => put(600, 3, i as u8, i),
        })
        .collect();
    {
        let store = EmbeddedStore::open(tiled(dir.path(), 1024, 1, 1000)).unwrap();
        place_all(&store, &mut model, &ps).await;
        assert_eq!(store.cached_tiles(), 1);
        model.check(&store).await;
        crash(store);
    }
    let store = EmbeddedStore::open(tiled(dir.path(), 1024, 1, 1000)).unwrap();
    model.check(&store).await;
    place_all(&store, &mut model, &ps[..3]).await;
    model.check(&store).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_whole_board_snapshot_of_an_older_version_becomes_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let c = tiled(dir.path(), 300, 8, 1000);
    let mut model = Model::default();
    {
        // What version 3 left: a board snapshot at seq 3 with pixel seqs, one row after it.
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        for (i, m) in MIGRATIONS[..3].iter().enumerate() {
            conn.execute_batch(&format!("{m}; PRAGMA user_version = {};", i + 1))
                .unwrap();
        }
        for (key, value) in [("width", 300), ("height", 300), ("bits_per_pixel", 4)] {
            conn.execute("INSERT INTO meta VALUES (?1, ?2)", params![key, value])
                .unwrap();
        }
        let mut board = Board::new(c.dims, c.depth);
        let mut pixel_seq = vec![0u64; c.dims.pixels()];
        let rows = [
            (1, 5, 5, 3, 0),
            (2, 290, 5, 4, 0),
            (3, 5, 5, 6, 1),
            (4, 290, 299, 7, 0),
        ];
        for (seq, x, y, color, prev) in rows {
            conn.execute(
                "INSERT INTO placements (seq, x, y, color, user, ts, prev) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
                params![seq, x, y, color, now_ms() - 1000, (prev != 0).then_some(prev)],
            )
            .unwrap();
            let p = put(x, y, color as u8, 1);
            model.place(&p, Seq(seq as u64));
            if seq <= 3 {
                board.set(p.coord, p.color);
                pixel_seq[p.coord.index(c.dims)] = seq as u64;
            }
        }
        conn.execute(
            "INSERT INTO snapshot (id, seq, board, pixel_seq) VALUES (1, 3, ?1, ?2)",
            params![board.as_bytes(), encode_pixel_seq(&pixel_seq).unwrap()],
        )
        .unwrap();
    }
    let store = EmbeddedStore::open(c).unwrap();
    model.check(&store).await;
    place_all(&store, &mut model, &[put(5, 5, 1, 2)]).await;
    model.check(&store).await;
    store.close().await.unwrap();
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM snapshot", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

/// Moderation changes read and write tiles too: with one tile in memory, a fill across
/// six tiles is applied in chunks of one tile each, keeps what others placed after the
/// plan, and a restore and a rollback read the history back through the evicted tiles.
#[tokio::test]
async fn moderation_changes_work_through_a_cache_of_one_tile() {
    use crate::rewrite::{Moment, Rewrite, RollbackQuery};
    use rplace_domain::Rect;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(tiled(dir.path(), 768, 1, 1000)).unwrap();
    let griefer = put(10, 10, 3, 66);
    let before = store.place(put(10, 10, 2, 1)).await.unwrap().seq;
    store.place(griefer).await.unwrap();
    store.place(put(700, 500, 3, 66)).await.unwrap();
    let area = Rect::new_unchecked(0, 0, 768, 512);
    let color = ColorIndex::new_unchecked(6);
    let fill: Vec<_> = area.coords().step_by(97).map(|c| (c, color)).collect();
    let plan = store.plan_paint(fill.clone()).await.unwrap();
    assert_eq!(plan.changes.len(), fill.len());
    // After the plan, someone paints on two of its pixels, on different tiles.
    let late = [fill[1].0, fill[fill.len() - 1].0];
    for (i, &c) in late.iter().enumerate() {
        store
            .place(put(c.x(), c.y(), 2, 10 + i as u64))
            .await
            .unwrap();
    }
    let applied = store.apply(&plan, UserId(0)).await.unwrap();
    let skipped: Vec<Coord> = applied
        .skipped
        .iter()
        .map(|&i| plan.changes[i].coord)
        .collect();
    assert_eq!(skipped, late);
    assert_eq!(store.cached_tiles(), 1);
    let snap = store.snapshot().await.unwrap();
    for &(c, _) in &fill {
        let want = if late.contains(&c) { 2 } else { 6 };
        assert_eq!(snap.board.get(c).get(), want, "{c:?}");
    }
    // Back to before the griefer's first placement, over the whole area.
    let restore = store
        .plan_restore(
            Rect::new_unchecked(0, 0, 20, 20),
            Moment::Seq(before),
            10_000,
        )
        .await
        .unwrap();
    let at_griefer = restore
        .changes
        .iter()
        .find(|c| c.coord == griefer.coord)
        .expect("the griefed pixel goes back");
    assert_eq!(at_griefer.color.get(), 2);
    // A rollback of the griefer finds their other pixel, on a tile not in memory.
    let rollback = store
        .plan_rollback(
            &RollbackQuery {
                users: vec![UserId(66)],
                since_ms: None,
                until_ms: None,
                rect: Some(Rect::new_unchecked(600, 400, 168, 112)),
            },
            100,
        )
        .await
        .unwrap();
    assert_eq!(rollback.changes.len(), 1);
    assert_eq!(rollback.changes[0].coord, Coord::new_unchecked(700, 500));
    assert_eq!(rollback.changes[0].color.get(), 0);
    store.close().await.unwrap();
}

/// A tile read while the writer places, evicts and reloads tiles is exactly the tile at
/// the seq it names: no placement after `through` shows, none before it is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_read_during_evictions_are_exact_at_their_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(tiled(dir.path(), 1024, 1, 40)).unwrap());
    let ids = [0u32, 1, 2].map(|k| TileId::new_unchecked(k, k));
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut placed = Vec::new();
            for i in 0..600u32 {
                let id = TileId::new_unchecked(i % 3, i % 3);
                let c = id.coord_at(((i * 31) % 512) as u16);
                let p = put(c.x(), c.y(), (i % 15 + 1) as u8, 1);
                placed.push((store.place(p).await.unwrap().seq, p));
            }
            placed
        })
    };
    let mut reads = Vec::new();
    while !writer.is_finished() {
        for id in ids {
            reads.push((id, store.tile(id).await.unwrap()));
        }
    }
    let placed = writer.await.unwrap();
    assert!(
        reads.len() > 30,
        "reads overlapped the writes: {}",
        reads.len()
    );
    for (id, read) in reads {
        let mut want = Tile::new(Depth::Four);
        let mut version = 0;
        for (seq, p) in placed
            .iter()
            .filter(|(s, p)| *s <= read.through && TileId::of(p.coord) == id)
        {
            want.set(id.local_index(p.coord), p.color);
            version = seq.0;
        }
        assert_eq!(
            read.version,
            Seq(version),
            "{id:?} through {:?}",
            read.through
        );
        if version == 0 {
            assert!(read.pixels.is_none());
        } else {
            assert_eq!(
                read.pixels.as_ref(),
                Some(&want),
                "{id:?} through {:?}",
                read.through
            );
        }
    }
    store.close().await.unwrap();
}

/// The write path on a whole 8192² canvas (run by hand: `cargo test --release -p
/// rplace-store --lib write_path -- --ignored --nocapture`): placements per second through
/// `place` from many tasks, then the close (last checkpoint) and a start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn write_path_on_a_whole_8192_canvas() {
    let dir = tempfile::tempdir_in("/work/wt10").unwrap();
    let c = EmbeddedConfig {
        dims: Dimensions::parse(8192, 8192).unwrap(),
        policy: Params::new(
            Cooldown::from_secs(0),
            AddrRate::OFF,
            rplace_domain::Ipv6Prefix::DEFAULT,
        ),
        snapshot_every: 100_000,
        sync: SyncMode::Full,
        ..cfg(dir.path())
    };
    let store = Arc::new(EmbeddedStore::open(c.clone()).unwrap());
    let mut feed = store.take_feed().unwrap();
    tokio::spawn(async move { while feed.recv().await.is_some() {} });
    let (tasks, each) = (1024u64, 500u64);
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut r = (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..each {
                    r ^= r << 13;
                    r ^= r >> 7;
                    r ^= r << 17;
                    let mut p = new(0, t);
                    p.coord = Coord::new_unchecked((r % 8192) as u32, ((r >> 20) % 8192) as u32);
                    p.bypass_limits = true;
                    s.place(p).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = tasks * each;
    println!("BENCH placed {n} in {secs:.2} s: {:.0}/s", n as f64 / secs);
    let t = std::time::Instant::now();
    store.close().await.unwrap();
    println!("BENCH close {:.2} s", t.elapsed().as_secs_f64());
    drop(store);
    let t = std::time::Instant::now();
    let again = EmbeddedStore::open(c).unwrap();
    println!("BENCH open {:.2} s", t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let snap = again.snapshot().await.unwrap();
    println!(
        "BENCH snapshot {:.2} s at {}",
        t.elapsed().as_secs_f64(),
        snap.seq.0
    );
    again.close().await.unwrap();
}

/// The write path on a 2^22² canvas, placements scattered over 10,000 tiles with the
/// default cache (run by hand like the one above): placements per second, the cache's
/// bytes, the process's RSS and the file's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn write_path_on_a_world_canvas() {
    let dir = tempfile::tempdir_in("/work/wt10").unwrap();
    let side = rplace_domain::board::MAX_SIDE;
    let c = EmbeddedConfig {
        snapshot_every: 100_000,
        sync: SyncMode::Full,
        ..tiled(dir.path(), side as u64, DEFAULT_TILE_CACHE, 100_000)
    };
    let store = Arc::new(EmbeddedStore::open(c.clone()).unwrap());
    let mut feed = store.take_feed().unwrap();
    tokio::spawn(async move { while feed.recv().await.is_some() {} });
    let (tasks, each) = (1000u64, 200u64);
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut r = (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for _ in 0..each {
                    r ^= r << 13;
                    r ^= r >> 7;
                    r ^= r << 17;
                    let tile = (r % 10_000) as u32;
                    let id = TileId::new_unchecked(tile % 100 * 163, tile / 100 * 163);
                    let c = id.coord_at((r >> 32) as u16);
                    s.place(put(c.x(), c.y(), (r >> 50) as u8 % 16, t))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = tasks * each;
    let bytes = store.state.lock().unwrap().tiles.heap_bytes();
    let rss = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or_default()
        .to_string();
    println!(
        "BENCH world: placed {n} in {secs:.2} s: {:.0}/s; {} tiles cached, {} MiB; {rss}",
        n as f64 / secs,
        store.cached_tiles(),
        bytes >> 20
    );
    let t = std::time::Instant::now();
    store.close().await.unwrap();
    println!("BENCH world close {:.2} s", t.elapsed().as_secs_f64());
    let size = std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
    println!("BENCH world file {} MiB", size >> 20);
    drop(store);
    let t = std::time::Instant::now();
    let again = EmbeddedStore::open(c).unwrap();
    println!("BENCH world open {:.2} s", t.elapsed().as_secs_f64());
    again.close().await.unwrap();
}
