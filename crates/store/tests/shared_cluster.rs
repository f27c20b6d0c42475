//! The shared backend on a real three-master Redis Cluster (one per test) and a real
//! PostgreSQL: tiles spread over the masters, the user's cooldown atomic although the
//! user's keys and the tiles are in different slots, tile writes applied in seq order
//! however instances interleave them, and tiles repaired from the history when a write
//! never came or a master lost its data.

use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, Params};
use rplace_domain::{ColorIndex, Cooldown, Coord, Dimensions, Ipv6Prefix, Seq, TileId, UserId};
use rplace_store::{NewPlacement, PlaceError, SharedConfig, SharedStore, Store};
use rplace_testsupport::{Postgres, RedisCluster, eventually};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// 16 × 16 tiles of 256².
const SIDE: u64 = 4096;

struct Env {
    cluster: RedisCluster,
    pg_url: String,
}

fn env() -> Env {
    Env {
        cluster: RedisCluster::start(),
        pg_url: Postgres::shared().create_database(),
    }
}

fn config(env: &Env) -> SharedConfig {
    let mut c = SharedConfig::new(
        env.cluster.urls().join(","),
        env.pg_url.clone(),
        Dimensions::parse(SIDE, SIDE).unwrap(),
        Depth::Four,
        Params::new(Cooldown::from_secs(60), AddrRate::OFF, Ipv6Prefix::DEFAULT),
    );
    c.redis_cluster = true;
    c.key_prefix = "test:".into();
    c.pg_pool_size = 4;
    c.health_interval = Duration::from_millis(100);
    c.reconcile_interval = Duration::from_millis(200);
    c.reconcile_grace = Duration::from_millis(500);
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

fn free(x: u32, y: u32, color: u8, user: u64) -> NewPlacement {
    let mut p = at(x, y, color, user);
    p.bypass_limits = true;
    p
}

/// How many of this test's tile keys each master holds.
fn tile_keys_per_master(env: &Env) -> Vec<usize> {
    env.cluster
        .nodes()
        .iter()
        .map(|n| {
            n.cli(&["--scan", "--pattern", "test:tile:*"])
                .lines()
                .filter(|l| !l.is_empty())
                .count()
        })
        .collect()
}

/// Every pixel's color by replaying PostgreSQL's rows in seq order.
async fn replayed(pg_url: &str) -> HashMap<(u32, u32), u8> {
    let (db, conn) = tokio_postgres::connect(pg_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = db
        .query("SELECT x, y, color FROM placements ORDER BY seq", &[])
        .await
        .unwrap();
    let mut out = HashMap::new();
    for r in rows {
        out.insert(
            (r.get::<_, i32>(0) as u32, r.get::<_, i32>(1) as u32),
            r.get::<_, i16>(2) as u8,
        );
    }
    out
}

/// Whether every tile holding a pixel of `want` reads back exactly `want`'s colors there.
async fn tiles_match(store: &SharedStore, want: &HashMap<(u32, u32), u8>) -> bool {
    let mut by_tile: HashMap<TileId, Vec<(Coord, u8)>> = HashMap::new();
    for (&(x, y), &c) in want {
        let coord = Coord::new_unchecked(x, y);
        by_tile
            .entry(TileId::of(coord))
            .or_default()
            .push((coord, c));
    }
    for (id, pixels) in by_tile {
        let read = store.tile(id).await.unwrap();
        let Some(tile) = read.pixels else {
            return false;
        };
        if pixels
            .iter()
            .any(|&(coord, c)| tile.get(id.local_index(coord)).get() != c)
        {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_spread_over_the_masters_and_read_back_exactly() {
    let env = env();
    let store = SharedStore::open(config(&env)).await.unwrap();
    let mut want = HashMap::new();
    for i in 0..64u32 {
        let (x, y) = ((i % 16) * 256 + i, (i / 16) * 256 + 2 * i);
        store
            .place(free(x, y, (i % 15 + 1) as u8, 1))
            .await
            .unwrap();
        want.insert((x, y), (i % 15 + 1) as u8);
    }
    let held = tile_keys_per_master(&env);
    assert!(
        held.iter().all(|&n| n > 0),
        "every master holds tiles: {held:?}"
    );
    assert!(tiles_match(&store, &want).await);
    // A tile's version is the seq of its last placement, and the read is through the head.
    let read = store.tile(TileId::new_unchecked(3, 0)).await.unwrap();
    assert_eq!((read.version, read.through), (Seq(4), Seq(64)));
    // The whole canvas in one snapshot, from every slot.
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.seq, Seq(64));
    for (&(x, y), &c) in &want {
        assert_eq!(snap.board.get(Coord::new_unchecked(x, y)).get(), c);
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cooldown_race_across_instances_and_slots_accepts_exactly_one() {
    let env = env();
    let a = Arc::new(SharedStore::open(config(&env)).await.unwrap());
    let b = Arc::new(SharedStore::open(config(&env)).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        // Each on a tile of its own: the tiles are in different slots from the user's.
        let p = at((i % 16) * 256, (i / 16) * 256, 3, 77);
        tasks.push(tokio::spawn(async move { store.place(p).await }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(PlaceError::Cooldown { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(replayed(&env.pg_url).await.len(), 1);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Two instances placing on the same few tiles at once write each tile out of order at
/// times; each tile still ends as the history's replay in seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tiles_written_by_racing_instances_equal_the_history() {
    let env = env();
    let a = Arc::new(SharedStore::open(config(&env)).await.unwrap());
    let b = Arc::new(SharedStore::open(config(&env)).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        // 4 pixels on each of 2 tiles, painted over and over.
        let (x, y) = ((i % 2) * 256 + (i / 2) % 4, 0);
        let p = free(x, y, (i % 16) as u8, u64::from(i));
        tasks.push(tokio::spawn(async move { store.place(p).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let want = replayed(&env.pg_url).await;
    assert_eq!(want.len(), 8);
    assert!(tiles_match(&a, &want).await);
    assert!(tiles_match(&b, &want).await);
    for tx in [0, 1] {
        let read = a.tile(TileId::new_unchecked(tx, 0)).await.unwrap();
        assert_eq!(read.through, Seq(400), "no tile lags");
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Writes to one tile that arrive out of order (a slow instance) are applied in seq
/// order: a write waits for the one before it, and a late one is not applied over a
/// newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiles_writes_apply_in_seq_order_whatever_order_they_arrive_in() {
    let env = env();
    let mut cfg = config(&env);
    // No repair while the test holds writes back.
    cfg.reconcile_grace = Duration::from_secs(600);
    let store = SharedStore::open(cfg).await.unwrap();
    let id = TileId::new_unchecked(0, 0);
    let mut held = Vec::new();
    for (color, user) in [(1, 1), (2, 2), (3, 3)] {
        let (placed, w) = store
            .place_deferring_tile_write(free(4, 4, color, user))
            .await
            .unwrap();
        held.push((placed.seq, w));
    }
    let (w1, w2, w3) = {
        let mut it = held.into_iter().map(|(_, w)| w);
        (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
    };
    // The last first: it waits, and the tile stays unpainted.
    store.finish_tile_write(w3).await;
    let read = store.tile(id).await.unwrap();
    assert_eq!((read.version, read.through), (Seq(0), Seq(0)));
    // The first: applied, and the tile is complete through it.
    store.finish_tile_write(w1).await;
    let read = store.tile(id).await.unwrap();
    assert_eq!((read.version, read.through), (Seq(1), Seq(1)));
    assert_eq!(read.pixels.unwrap().get(4 * 256 + 4).get(), 1);
    // The middle one: applied, then the waiting last one after it.
    store.finish_tile_write(w2).await;
    let read = store.tile(id).await.unwrap();
    assert_eq!((read.version, read.through), (Seq(3), Seq(3)));
    assert_eq!(read.pixels.unwrap().get(4 * 256 + 4).get(), 3);
    store.close().await.unwrap();
}

/// An instance that dies between deciding a placement and writing its tile leaves the
/// tile behind: the next write to it waits, reads say how far the tile is complete, and
/// the repair rebuilds it from the history once the reconciler has saved the orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tile_write_that_never_came_is_repaired_from_the_history() {
    let env = env();
    let store = SharedStore::open(config(&env)).await.unwrap();
    let first = store.place(free(0, 0, 1, 1)).await.unwrap();
    let (orphan, _never) = store
        .place_deferring_tile_write(free(1, 0, 5, 2))
        .await
        .unwrap();
    let last = store.place(free(2, 0, 6, 3)).await.unwrap();
    assert_eq!((first.seq, orphan.seq, last.seq), (Seq(1), Seq(2), Seq(3)));
    let id = TileId::new_unchecked(0, 0);
    // The write after the missing one waits: the tile is complete through seq 1 only.
    let read = store.tile(id).await.unwrap();
    if read.version == Seq(1) {
        assert_eq!(read.through, Seq(1));
        let t = read.pixels.unwrap();
        assert_eq!((t.get(0).get(), t.get(1).get(), t.get(2).get()), (1, 0, 0));
    }
    let read = eventually(Duration::from_secs(15), "the tile repaired", || async {
        let read = store.tile(id).await.unwrap();
        (read.version == Seq(3)).then_some(read)
    })
    .await;
    assert_eq!(read.through, Seq(3));
    let t = read.pixels.unwrap();
    assert_eq!((t.get(0).get(), t.get(1).get(), t.get(2).get()), (1, 5, 6));
    // Placements on the tile go on from there.
    let next = store.place(free(3, 0, 7, 4)).await.unwrap();
    let read = store.tile(id).await.unwrap();
    assert_eq!((read.version, read.through), (next.seq, next.seq));
    assert_eq!(read.pixels.unwrap().get(3).get(), 7);
    store.close().await.unwrap();
}

/// A master that restarts empty loses the tiles it held while the core slot keeps the
/// seq: reading those tiles notices, and the repair rebuilds each from the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_a_master_lost_are_rebuilt_one_by_one() {
    let env = env();
    let store = SharedStore::open(config(&env)).await.unwrap();
    let mut want = HashMap::new();
    for i in 0..48u32 {
        let (x, y) = ((i % 16) * 256 + 5, (i / 16) * 256 + 7);
        store
            .place(free(x, y, (i % 15 + 1) as u8, 1))
            .await
            .unwrap();
        want.insert((x, y), (i % 15 + 1) as u8);
    }
    // Empty a master that holds tiles but not the core slot (the seq stays).
    let seq_node = env
        .cluster
        .nodes()
        .iter()
        .position(|n| n.cli(&["EXISTS", "{test:}seq"]).trim() == "1")
        .expect("a master holds the seq");
    let held = tile_keys_per_master(&env);
    let victim = (0..held.len())
        .find(|&i| i != seq_node && held[i] > 0)
        .expect("another master holds tiles");
    env.cluster.nodes()[victim].cli(&["FLUSHALL"]);
    assert_eq!(tile_keys_per_master(&env)[victim], 0);
    eventually(Duration::from_secs(20), "every tile rebuilt", || async {
        tiles_match(&store, &want).await.then_some(())
    })
    .await;
    assert!(tile_keys_per_master(&env)[victim] > 0);
    store.close().await.unwrap();
}

/// Losing every master is losing Redis: the state is rebuilt from PostgreSQL, tile by
/// tile into their slots, and placing goes on from the same seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_master_rebuilds_from_postgres() {
    let env = env();
    let mut cfg = config(&env);
    cfg.snapshot_every = 20;
    let store = SharedStore::open(cfg).await.unwrap();
    let mut want = HashMap::new();
    for i in 0..50u32 {
        let (x, y) = ((i * 97) % 4096, (i * 331) % 4096);
        store
            .place(free(x, y, (i % 15 + 1) as u8, 1))
            .await
            .unwrap();
        want.insert((x, y), (i % 15 + 1) as u8);
    }
    let before = store.snapshot().await.unwrap();
    env.cluster.flush_all();
    let after = store.snapshot().await.unwrap();
    assert_eq!(after.seq, before.seq);
    assert_eq!(after.board, before.board);
    assert!(tiles_match(&store, &want).await);
    assert_eq!(store.place(free(9, 9, 3, 2)).await.unwrap().seq, Seq(51));
    store.close().await.unwrap();
}
