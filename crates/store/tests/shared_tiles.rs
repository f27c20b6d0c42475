//! The shared backend on tiles, against a real `redis-server` and a real PostgreSQL: tile
//! bytes and versions equal the placements, coordinates beyond 65,535 survive a Redis
//! `FLUSHALL`, a grow reaches a second instance, and Redis holds no board-sized key.

mod common;

use common::{Env, env};
use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, Params};
use rplace_domain::tile::tiles_across;
use rplace_domain::{
    Board, ColorIndex, Cooldown, Coord, Dimensions, Ipv6Prefix, Seq, Tile, TileId, UserId,
};
use rplace_store::{
    FeedEvent, NewPlacement, SharedConfig, SharedStore, Store, StoreError, TileRead,
};
use rplace_testsupport::eventually;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

fn config(env: &Env, w: u64, h: u64) -> SharedConfig {
    let mut c = SharedConfig::new(
        env.redis.url(),
        env.pg_url.clone(),
        Dimensions::parse(w, h).unwrap(),
        Depth::Four,
        Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT),
    );
    c.key_prefix = "tiles:".into();
    c.pg_pool_size = 4;
    c.health_interval = Duration::from_millis(100);
    c.reconcile_interval = Duration::from_millis(200);
    c.reconcile_grace = Duration::from_secs(1);
    c.feed_check_interval = Duration::from_millis(200);
    c
}

fn at(x: u32, y: u32, color: u8, user: u64) -> NewPlacement {
    NewPlacement {
        coord: Coord::new_unchecked(x, y),
        color: ColorIndex::new_unchecked(color),
        user: UserId(user),
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        bypass_limits: false,
        idempotency_key: None,
        standing: Default::default(),
    }
}

/// What the tiles must hold after some placements: per tile, its pixels and version.
#[derive(Default)]
struct Model {
    tiles: HashMap<TileId, (Seq, Tile)>,
}

impl Model {
    fn place(&mut self, c: Coord, color: u8, seq: Seq) {
        let id = TileId::of(c);
        let (version, tile) = self
            .tiles
            .entry(id)
            .or_insert_with(|| (Seq(0), Tile::new(Depth::Four)));
        tile.set(id.local_index(c), ColorIndex::new_unchecked(color));
        *version = seq;
    }

    /// Checks a tile read against the model.
    fn check(&self, id: TileId, read: &TileRead, head: Seq) {
        assert_eq!(read.through, head, "{id:?}");
        match self.tiles.get(&id) {
            Some((version, tile)) => {
                assert_eq!(read.version, *version, "{id:?}");
                assert_eq!(read.pixels.as_ref(), Some(tile), "{id:?}");
            }
            None => {
                assert_eq!(read.version, Seq(0), "{id:?}");
                assert!(read.pixels.is_none(), "{id:?}");
            }
        }
    }
}

async fn place(store: &SharedStore, model: &mut Model, p: NewPlacement) -> Seq {
    let seq = store.place(p).await.unwrap().seq;
    model.place(p.coord, p.color.get(), seq);
    seq
}

async fn redis_conn(env: &Env) -> redis::aio::MultiplexedConnection {
    redis::Client::open(env.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every key in Redis with its `MEMORY USAGE` in bytes.
async fn key_sizes(env: &Env) -> Vec<(String, u64)> {
    let mut r = redis_conn(env).await;
    let mut cursor = 0u64;
    let mut out = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut r)
            .await
            .unwrap();
        for k in keys {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&k)
                .arg("SAMPLES")
                .arg(0)
                .query_async(&mut r)
                .await
                .unwrap();
            out.push((k, bytes.unwrap_or(0)));
        }
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

async fn next_event(feed: &mut Receiver<FeedEvent>, within: Duration) -> FeedEvent {
    tokio::time::timeout(within, feed.recv())
        .await
        .expect("a feed event in time")
        .expect("feed ended")
}

#[tokio::test]
async fn tile_bytes_and_versions_equal_the_placements() {
    let env = env();
    // 4 x 3 tiles, the last column and row partial.
    let (w, h) = (1000u64, 600u64);
    let store = SharedStore::open(config(&env, w, h)).await.unwrap();
    let mut model = Model::default();
    let mut seed = 7u64;
    let mut last = Seq(0);
    for i in 0..300u64 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Leave tile (1, 1) unpainted.
        let (x, y) = ((seed >> 33) % w, (seed >> 13) % h);
        if (256..512).contains(&x) && (256..512).contains(&y) {
            continue;
        }
        last = place(
            &store,
            &mut model,
            at(x as u32, y as u32, (i % 15 + 1) as u8, i),
        )
        .await;
    }
    // Overwrites, and the edge pixels of the partial tiles.
    for (x, y) in [(999, 599), (768, 512), (0, 0), (0, 0), (255, 255), (256, 0)] {
        last = place(&store, &mut model, at(x, y, 9, 1)).await;
    }
    let (across, down) = tiles_across(store.dims());
    assert_eq!((across, down), (4, 3));
    for ty in 0..down {
        for tx in 0..across {
            let id = TileId::new_unchecked(tx, ty);
            model.check(id, &store.tile(id).await.unwrap(), last);
        }
    }
    assert!(
        store
            .tile(TileId::new_unchecked(1, 1))
            .await
            .unwrap()
            .pixels
            .is_none()
    );
    // Off the canvas: never painted, at the head.
    model.check(
        TileId::new_unchecked(4, 0),
        &store.tile(TileId::new_unchecked(4, 0)).await.unwrap(),
        last,
    );
    // The whole-canvas snapshot is composed of the same tiles.
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.seq, last);
    let mut board = Board::new(store.dims(), Depth::Four);
    for (id, (_, tile)) in &model.tiles {
        board.put_tile(*id, tile);
    }
    assert_eq!(snap.board, board);
    // One pixel key and one version key per painted tile, nothing for the unpainted one.
    let keys: Vec<String> = key_sizes(&env)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("tiles:tile:"))
        .collect();
    assert_eq!(keys.len(), 2 * model.tiles.len(), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("{1,1}")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinates_beyond_65535_survive_a_flushall() {
    let env = env();
    let mut cfg = config(&env, 100_000, 70_000);
    cfg.snapshot_every = 4;
    let store = SharedStore::open(cfg).await.unwrap();
    assert!(matches!(store.snapshot().await, Err(StoreError::Config(_))));
    let mut model = Model::default();
    let far = [
        (99_999, 69_999),
        (65_536, 0),
        (0, 65_536),
        (70_000, 65_535),
        (65_535, 65_535),
        (99_999, 69_999),
    ];
    for (i, &(x, y)) in far.iter().enumerate() {
        place(&store, &mut model, at(x, y, (i + 3) as u8, 10 + i as u64)).await;
    }
    // Let the maintenance task take tile snapshots, then place more after them, so the
    // rebuild uses both.
    let db = {
        let (client, conn) = tokio_postgres::connect(&env.pg_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    };
    eventually(Duration::from_secs(10), "tile snapshots", || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM tile_snapshots", &[])
            .await
            .unwrap()
            .get(0);
        (n > 0).then_some(())
    })
    .await;
    let last = place(&store, &mut model, at(99_998, 69_999, 14, 99)).await;
    let tiles: Vec<TileId> = model.tiles.keys().copied().collect();
    for &id in &tiles {
        model.check(id, &store.tile(id).await.unwrap(), last);
    }
    // PostgreSQL holds the coordinates as integers.
    let hist = store
        .pixel_history(Coord::new_unchecked(99_999, 69_999), 10)
        .await
        .unwrap();
    assert_eq!(
        hist.iter().map(|p| p.color.get()).collect::<Vec<_>>(),
        vec![8, 3]
    );
    let row = db
        .query_one("SELECT x, y FROM placements WHERE seq = 2", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (65_536, 0));

    env.redis.cli(&["FLUSHALL"]);

    for &id in &tiles {
        model.check(id, &store.tile(id).await.unwrap(), last);
    }
    assert_eq!(store.dims(), Dimensions::parse(100_000, 70_000).unwrap());
    // And placing goes on from the same seq.
    let next = place(&store, &mut model, at(65_537, 65_537, 2, 100)).await;
    assert_eq!(next, last.next());
    let id = TileId::of(Coord::new_unchecked(65_537, 65_537));
    model.check(id, &store.tile(id).await.unwrap(), next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grow_reaches_a_second_instance_and_outlives_a_restart() {
    let env = env();
    let cfg = config(&env, 300, 200);
    let a = SharedStore::open(cfg.clone()).await.unwrap();
    let b = SharedStore::open(cfg.clone()).await.unwrap();
    b.snapshot().await.unwrap();
    let mut feed = b.take_feed().unwrap();
    a.place(at(299, 199, 5, 1)).await.unwrap();
    assert!(matches!(
        next_event(&mut feed, Duration::from_secs(5)).await,
        FeedEvent::Placements(p) if p[0].seq == Seq(1)
    ));

    let grown = Dimensions::parse(100_000, 300).unwrap();
    assert_eq!(a.grow(grown).await.unwrap(), grown);
    assert_eq!(a.dims(), grown);
    match next_event(&mut feed, Duration::from_secs(5)).await {
        FeedEvent::Grown(d) => assert_eq!(d, grown),
        other => panic!("expected Grown, got {other:?}"),
    }
    assert_eq!(b.dims(), grown);
    // Growing to the same size again changes nothing; shrinking is refused.
    assert_eq!(b.grow(grown).await.unwrap(), grown);
    assert!(matches!(
        b.grow(Dimensions::parse(100_000, 200).unwrap()).await,
        Err(StoreError::Config(_))
    ));
    // Nothing painted moved, and the new area takes placements on both instances.
    let old = TileId::new_unchecked(1, 0);
    let read = b.tile(old).await.unwrap();
    assert_eq!(read.version, Seq(1));
    let c = Coord::new_unchecked(299, 199);
    assert_eq!(read.pixels.unwrap().get(old.local_index(c)).get(), 5);
    let placed = a.place(at(99_999, 299, 7, 2)).await.unwrap();
    match next_event(&mut feed, Duration::from_secs(5)).await {
        FeedEvent::Placements(p) => {
            assert_eq!(p[0].seq, placed.seq);
            assert_eq!(p[0].coord, Coord::new_unchecked(99_999, 299));
        }
        other => panic!("expected the placement, got {other:?}"),
    }
    let far = TileId::of(Coord::new_unchecked(99_999, 299));
    let read = b.tile(far).await.unwrap();
    assert_eq!((read.version, read.through), (placed.seq, placed.seq));
    assert!(matches!(b.snapshot().await, Err(StoreError::Config(_))));
    a.close().await.unwrap();
    b.close().await.unwrap();
    drop((a, b));

    // A restart with the old configured size keeps the grown one, in both stores, even
    // after Redis lost it.
    let c = SharedStore::open(cfg.clone()).await.unwrap();
    assert_eq!(c.dims(), grown);
    c.close().await.unwrap();
    drop(c);
    env.redis.cli(&["FLUSHALL"]);
    let d = SharedStore::open(cfg).await.unwrap();
    assert_eq!(d.dims(), grown);
    let read = d.tile(far).await.unwrap();
    assert_eq!(read.version, placed.seq);
    let mut r = redis_conn(&env).await;
    let dims: String = redis::cmd("GET")
        .arg("tiles:dims")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(dims, "100000 300");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_grow_message_is_made_up_by_the_feed() {
    let env = env();
    let cfg = config(&env, 300, 200);
    let a = SharedStore::open(cfg.clone()).await.unwrap();
    let b = SharedStore::open(cfg).await.unwrap();
    b.snapshot().await.unwrap();
    let mut feed = b.take_feed().unwrap();
    // As if the `G` message were lost: only the size key changes.
    let grown = Dimensions::parse(9000, 200).unwrap();
    env.redis.cli(&["SET", "tiles:dims", "9000 200"]);
    let placed = a.place(at(5, 5, 1, 1)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut saw_grown = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(&mut feed, left).await {
            FeedEvent::Grown(d) => {
                assert_eq!(d, grown);
                saw_grown = true;
            }
            FeedEvent::Placements(p) if p.last().unwrap().seq == placed.seq => break,
            FeedEvent::Placements(_) => {}
            FeedEvent::Reset(s) => panic!("unexpected reset at {s}"),
        }
    }
    // The periodic check reads the size with the stream.
    if !saw_grown {
        match next_event(&mut feed, Duration::from_secs(5)).await {
            FeedEvent::Grown(d) => assert_eq!(d, grown),
            other => panic!("expected Grown, got {other:?}"),
        }
    }
    eventually(Duration::from_secs(5), "b learns the size", || async {
        (b.dims() == grown).then_some(())
    })
    .await;
}

/// No key in Redis grows with the canvas: a whole 8192² canvas painted in every tile
/// corner holds nothing larger than a tile (a board key would be 32 MiB).
#[tokio::test]
async fn redis_holds_no_board_sized_key() {
    let env = env();
    let store = SharedStore::open(config(&env, 8192, 8192)).await.unwrap();
    let mut n = 0;
    for ty in (0..32).step_by(3) {
        for tx in (0..32).step_by(3) {
            let mut p = at(tx * 256 + 255, ty * 256 + 255, 3, n);
            p.bypass_limits = true;
            store.place(p).await.unwrap();
            n += 1;
        }
    }
    // One tile painted in its middle, then at its end: a string grown by BITFIELD in
    // steps is where Redis preallocates twice the length.
    for y in [100, 254] {
        let mut p = at(256 + 7, 256 + y, 4, n);
        p.bypass_limits = true;
        store.place(p).await.unwrap();
        n += 1;
    }
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.seq, Seq(n));
    assert_eq!(snap.board.get(Coord::new_unchecked(8191, 8191)).get(), 0);
    assert_eq!(snap.board.get(Coord::new_unchecked(255, 255)).get(), 3);
    let sizes = key_sizes(&env).await;
    let tiles = sizes
        .iter()
        .filter(|(k, _)| k.starts_with("tiles:tile:") && !k.ends_with(":v"))
        .count();
    assert_eq!(tiles, 11 * 11 + 1);
    // A tile is 32 KiB; the allocator rounds it up (to jemalloc's 40 KiB class, plus the
    // key), but no more: grown by BITFIELD, Redis held twice the tile (65,608 bytes).
    let tile_len = Tile::len(Depth::Four) as u64;
    for (k, bytes) in &sizes {
        assert!(
            *bytes <= tile_len + tile_len / 4 + 512,
            "{k} uses {bytes} bytes, more than a tile"
        );
    }
    assert!(!sizes.iter().any(|(k, _)| k == "tiles:board"));
}

/// A deployment from before tiles: smallint coordinates, a whole-board snapshot and a
/// board key in Redis. Opening it migrates the columns to integer, rebuilds the tiles from
/// the log and drops the board key.
#[tokio::test]
async fn a_store_from_before_tiles_is_migrated() {
    let env = env();
    let (db, conn) = tokio_postgres::connect(&env.pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.batch_execute(
        "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version, name) VALUES (1, 'placements, snapshots, state');
         CREATE TABLE rplace_meta (key text PRIMARY KEY, value bigint NOT NULL);
         INSERT INTO rplace_meta VALUES ('width', 16), ('height', 8), ('bits_per_pixel', 4);
         CREATE TABLE rplace_state (id int PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL,
             durable_seq bigint NOT NULL);
         INSERT INTO rplace_state VALUES (1, 3, 2);
         CREATE TABLE placements (seq bigint PRIMARY KEY, x smallint NOT NULL,
             y smallint NOT NULL, color smallint NOT NULL, user_id bigint NOT NULL,
             ts timestamptz NOT NULL);
         CREATE INDEX placements_pixel ON placements (x, y, seq DESC);
         CREATE INDEX placements_ts ON placements USING brin (ts);
         INSERT INTO placements VALUES (1, 15, 7, 9, 1, now()), (2, 3, 1, 4, 2, now());
         CREATE TABLE board_snapshots (seq bigint PRIMARY KEY, board bytea NOT NULL,
             taken_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO board_snapshots (seq, board) VALUES (1, '\\x00');",
    )
    .await
    .unwrap();
    env.redis.cli(&["SET", "tiles:board", "0123456789abcdef"]);
    env.redis.cli(&["SET", "tiles:seq", "2"]);
    env.redis.cli(&["SET", "tiles:epoch", "3"]);

    let store = SharedStore::open(config(&env, 16, 8)).await.unwrap();
    let types: Vec<String> = db
        .query(
            "SELECT data_type FROM information_schema.columns
             WHERE table_name = 'placements' AND column_name IN ('x', 'y')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, ["integer", "integer"]);
    let read = store.tile(TileId::new_unchecked(0, 0)).await.unwrap();
    assert_eq!((read.version, read.through), (Seq(2), Seq(2)));
    let tile = read.pixels.unwrap();
    let id = TileId::new_unchecked(0, 0);
    assert_eq!(
        tile.get(id.local_index(Coord::new_unchecked(15, 7))).get(),
        9
    );
    assert_eq!(
        tile.get(id.local_index(Coord::new_unchecked(3, 1))).get(),
        4
    );
    let hist = store
        .pixel_history(Coord::new_unchecked(15, 7), 5)
        .await
        .unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(store.place(at(1, 1, 2, 3)).await.unwrap().seq, Seq(3));
    let keys: Vec<String> = key_sizes(&env).await.into_iter().map(|(k, _)| k).collect();
    assert!(!keys.iter().any(|k| k == "tiles:board"), "{keys:?}");
}

/// A grow between opening and taking the feed is still told: the consumer may have read
/// the size before it.
#[tokio::test]
async fn a_grow_before_the_feed_is_taken_is_told() {
    let env = env();
    let store = SharedStore::open(config(&env, 300, 200)).await.unwrap();
    let grown = Dimensions::parse(600, 200).unwrap();
    store.grow(grown).await.unwrap();
    let mut feed = store.take_feed().unwrap();
    match next_event(&mut feed, Duration::from_secs(5)).await {
        FeedEvent::Grown(d) => assert_eq!(d, grown),
        other => panic!("expected Grown, got {other:?}"),
    }
}
