//! The shared backend against a real `redis-server` (one per test) and a real PostgreSQL
//! (one cluster per test binary, one database per test).

mod common;

use common::{Env, env};
use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, Params};
use rplace_domain::{
    ColorIndex, Cooldown, Coord, Dimensions, Ipv6Prefix, Placement, Seq, TileId, UserId,
};
use rplace_store::{
    FeedEvent, NewPlacement, PlaceError, Placed, SharedConfig, SharedStore, Store, StoreError,
};
use rplace_testsupport::eventually;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

const W: u64 = 16;
const H: u64 = 8;

fn config(env: &Env) -> SharedConfig {
    let mut c = SharedConfig::new(
        env.redis.url(),
        env.pg_url.clone(),
        Dimensions::parse(W, H).unwrap(),
        Depth::Four,
        Params::new(Cooldown::from_secs(60), AddrRate::OFF, Ipv6Prefix::DEFAULT),
    );
    c.key_prefix = "test:".into();
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

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

async fn redis_conn(env: &Env) -> redis::aio::MultiplexedConnection {
    redis::Client::open(env.redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Receives feed events until one reaches `seq` (placements or reset), or panics after
/// `within`.
async fn feed_until(feed: &mut Receiver<FeedEvent>, seq: u64, within: Duration) -> Vec<FeedEvent> {
    let mut out = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, feed.recv())
            .await
            .unwrap_or_else(|_| panic!("feed did not reach seq {seq}; got {out:?}"))
            .expect("feed ended");
        let reached = match &ev {
            FeedEvent::Placements(p) => p.last().unwrap().seq.0 >= seq,
            FeedEvent::Reset(s) => s.0 >= seq,
            FeedEvent::Grown(_) => false,
        };
        out.push(ev);
        if reached {
            return out;
        }
    }
}

fn placements(events: &[FeedEvent]) -> Vec<Placement> {
    events
        .iter()
        .flat_map(|e| match e {
            FeedEvent::Placements(p) => p.clone(),
            FeedEvent::Reset(_) => panic!("unexpected reset in {events:?}"),
            FeedEvent::Grown(_) => Vec::new(),
        })
        .collect()
}

#[tokio::test]
async fn placement_round_trip() {
    let env = env();
    let store = SharedStore::open(config(&env)).await.unwrap();
    assert!(store.is_ready());
    let empty = store.snapshot().await.unwrap();
    assert_eq!(empty.seq, Seq(0));
    assert!(empty.board.as_bytes().iter().all(|&b| b == 0));
    let mut feed = store.take_feed().unwrap();
    assert!(store.take_feed().is_none());

    let placed = store.place(at(3, 2, 7, 1)).await.unwrap();
    assert_eq!(placed.seq, Seq(1));
    assert_eq!(placed.next_at_ms, placed.at_ms + 60_000);
    let second = store.place(at(4, 2, 9, 2)).await.unwrap();
    assert_eq!(second.seq, Seq(2));
    assert!(second.at_ms >= placed.at_ms);

    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.seq, Seq(2));
    assert_eq!(snap.board.get(Coord::new_unchecked(3, 2)).get(), 7);
    assert_eq!(snap.board.get(Coord::new_unchecked(4, 2)).get(), 9);

    // The tile's Redis key is the tile's bytes, readable with BITFIELD u4 at the
    // tile-local y*256+x, and its version is the seq of its last placement.
    let mut r = redis_conn(&env).await;
    let raw: Vec<u8> = redis::cmd("GET")
        .arg("test:tile:{0,0}")
        .query_async(&mut r)
        .await
        .unwrap();
    let tile = snap.board.tile(TileId::new_unchecked(0, 0));
    assert_eq!(raw[..], tile.as_bytes()[..raw.len()]);
    assert!(tile.as_bytes()[raw.len()..].iter().all(|&b| b == 0));
    let px: Vec<u8> = redis::cmd("BITFIELD")
        .arg("test:tile:{0,0}")
        .arg("GET")
        .arg("u4")
        .arg(format!("#{}", 2 * 256 + 3))
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(px, vec![7]);
    let version: u64 = redis::cmd("GET")
        .arg("test:tile:{0,0}:v")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(version, 2);

    let got = placements(&feed_until(&mut feed, 2, Duration::from_secs(5)).await);
    assert_eq!(got.iter().map(|p| p.seq.0).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(got[0].coord, Coord::new_unchecked(3, 2));
    assert_eq!(got[0].user, UserId(1));
    assert_eq!(got[0].at_ms, placed.at_ms);

    // The cooldown holds and changes nothing.
    match store.place(at(5, 5, 1, 1)).await {
        Err(PlaceError::Cooldown { next_at_ms }) => assert_eq!(next_at_ms, placed.next_at_ms),
        other => panic!("expected a cooldown, got {other:?}"),
    }
    assert_eq!(store.snapshot().await.unwrap().seq, Seq(2));
    assert_eq!(
        store.next_allowed(UserId(1)).await.unwrap(),
        Some(placed.next_at_ms)
    );
    assert_eq!(store.next_allowed(UserId(99)).await.unwrap(), None);

    // The admin path skips the cooldown.
    let mut bypass = at(5, 5, 1, 1);
    bypass.bypass_limits = true;
    assert_eq!(store.place(bypass).await.unwrap().seq, Seq(3));

    store.close().await.unwrap();
    assert!(!store.is_ready());
    assert!(matches!(
        store.place(at(0, 0, 1, 50)).await,
        Err(PlaceError::ShuttingDown)
    ));
}

#[tokio::test]
async fn acknowledged_placements_are_in_postgres() {
    let env = env();
    let store = SharedStore::open(config(&env)).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..20u32 {
        let p = at(i % W as u32, i / W as u32, (i % 16) as u8, 1000 + i as u64);
        acked.push((p, store.place(p).await.unwrap()));
    }
    // No waiting: Ok means committed.
    let db = pg(&env.pg_url).await;
    for (p, placed) in &acked {
        let row = db
            .query_one(
                "SELECT x, y, color, user_id, (extract(epoch FROM ts) * 1000)::bigint
                 FROM placements WHERE seq = $1",
                &[&(placed.seq.0 as i64)],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0) as u32, p.coord.x());
        assert_eq!(row.get::<_, i32>(1) as u32, p.coord.y());
        assert_eq!(row.get::<_, i16>(2) as u8, p.color.get());
        assert_eq!(row.get::<_, i64>(3) as u64, p.user.0);
        assert_eq!(row.get::<_, i64>(4), placed.at_ms);
    }
    let versions: i64 = db
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert!(versions >= 1);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooldown_race_across_two_instances_accepts_exactly_one() {
    let env = env();
    let a = Arc::new(SharedStore::open(config(&env)).await.unwrap());
    let b = Arc::new(SharedStore::open(config(&env)).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.place(at(i % W as u32, 0, 3, 77)).await
        }));
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
    assert_eq!(a.snapshot().await.unwrap().seq, Seq(1));
    let rows: i64 = pg(&env.pg_url)
        .await
        .query_one("SELECT count(*) FROM placements", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn ip_limit_holds_across_two_instances() {
    let env = env();
    let mut cfg = config(&env);
    cfg.policy = Params::new(
        Cooldown::from_secs(0),
        AddrRate::per_minute(1, 3),
        Ipv6Prefix::DEFAULT,
    );
    let a = SharedStore::open(cfg.clone()).await.unwrap();
    let b = SharedStore::open(cfg).await.unwrap();
    // Three at once from one address, alternating instances and users.
    for (i, store) in [&a, &b, &a].into_iter().enumerate() {
        store.place(at(i as u32, 0, 1, i as u64)).await.unwrap();
    }
    match b.place(at(5, 0, 1, 10)).await {
        Err(PlaceError::RateLimited { retry_after_ms }) => {
            assert!(
                retry_after_ms > 50_000 && retry_after_ms <= 60_000,
                "{retry_after_ms}"
            );
        }
        other => panic!("expected the rate limit, got {other:?}"),
    }
    assert!(matches!(
        a.place(at(6, 0, 1, 11)).await,
        Err(PlaceError::RateLimited { .. })
    ));
    // The rejections changed nothing, another address is not limited, and the admin path
    // is not limited either.
    assert_eq!(a.snapshot().await.unwrap().seq, Seq(3));
    let mut other = at(7, 0, 1, 12);
    other.ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(b.place(other).await.unwrap().seq, Seq(4));
    let mut admin = at(8, 0, 1, 13);
    admin.bypass_limits = true;
    assert_eq!(a.place(admin).await.unwrap().seq, Seq(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feeds_of_two_instances_deliver_every_placement_once_in_order() {
    let env = env();
    let mut cfg = config(&env);
    cfg.policy = Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT);
    let a = Arc::new(SharedStore::open(cfg.clone()).await.unwrap());
    let b = Arc::new(SharedStore::open(cfg).await.unwrap());
    a.snapshot().await.unwrap();
    b.snapshot().await.unwrap();
    let mut feed_a = a.take_feed().unwrap();
    let mut feed_b = b.take_feed().unwrap();
    const N: u64 = 400;
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let store = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in 0..N / 8 {
                let n = w * (N / 8) + i;
                let p = at((n % W) as u32, ((n / W) % H) as u32, (n % 16) as u8, n);
                let placed: Placed = store.place(p).await.unwrap();
                done.push((placed.seq, p));
            }
            done
        }));
    }
    let mut expected: HashMap<Seq, NewPlacement> = HashMap::new();
    for t in tasks {
        expected.extend(t.await.unwrap());
    }
    assert_eq!(expected.len() as u64, N);
    for feed in [&mut feed_a, &mut feed_b] {
        let got = placements(&feed_until(feed, N, Duration::from_secs(10)).await);
        assert_eq!(
            got.iter().map(|p| p.seq.0).collect::<Vec<_>>(),
            (1..=N).collect::<Vec<_>>()
        );
        for p in got {
            let want = expected[&p.seq];
            assert_eq!(
                (p.coord, p.color, p.user),
                (want.coord, want.color, want.user)
            );
        }
    }
    // Both boards agree with the stored one.
    let snap = a.snapshot().await.unwrap();
    assert_eq!(snap.seq, Seq(N));
    assert_eq!(snap.board, b.snapshot().await.unwrap().board);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_fills_the_gap_after_its_subscription_is_killed() {
    let env = env();
    let mut cfg = config(&env);
    cfg.policy = Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT);
    // Long enough that only the reconnect (not the periodic check) can deliver in time.
    cfg.feed_check_interval = Duration::from_secs(3600);
    let a = SharedStore::open(cfg.clone()).await.unwrap();
    let b = SharedStore::open(cfg).await.unwrap();
    a.snapshot().await.unwrap();
    let mut feed = a.take_feed().unwrap();
    b.place(at(0, 0, 1, 1)).await.unwrap();
    feed_until(&mut feed, 1, Duration::from_secs(5)).await;
    // This connection stays authenticated while new ones are refused below.
    let mut admin = redis_conn(&env).await;
    for round in 0..3u64 {
        // Drop the feed's subscription and keep it from coming back while `b` places, so
        // that these placements can only reach the feed through the stream.
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "default", "off"])
            .query_async(&mut admin)
            .await
            .unwrap();
        let killed: u32 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "pubsub"])
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(killed >= 1, "killed {killed}");
        for i in 0..10u64 {
            b.place(at(i as u32, 1, 2, 10 + i)).await.unwrap();
        }
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "default", "on"])
            .query_async(&mut admin)
            .await
            .unwrap();
        let last = 1 + (round + 1) * 10;
        let got = placements(&feed_until(&mut feed, last, Duration::from_secs(10)).await);
        assert_eq!(
            got.iter().map(|p| p.seq.0).collect::<Vec<_>>(),
            (last - 9..=last).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn feed_resets_when_its_gap_has_left_the_stream() {
    let env = env();
    let mut cfg = config(&env);
    cfg.policy = Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT);
    let a = SharedStore::open(cfg.clone()).await.unwrap();
    let b = SharedStore::open(cfg).await.unwrap();
    b.place(at(1, 1, 4, 1)).await.unwrap();
    let start = a.snapshot().await.unwrap();
    assert_eq!(start.seq, Seq(1));
    for i in 0..5 {
        b.place(at(i, 3, 6, 2)).await.unwrap();
    }
    // Placements 2..=6 leave the stream before the feed could read them.
    env.redis.cli(&["XTRIM", "test:updates", "MAXLEN", "0"]);
    let mut feed = a.take_feed().unwrap();
    let events = feed_until(&mut feed, 6, Duration::from_secs(5)).await;
    match events.as_slice() {
        [FeedEvent::Reset(s)] => {
            assert_eq!(*s, Seq(6));
            let board = a.snapshot().await.unwrap().board;
            assert_eq!(board.get(Coord::new_unchecked(4, 3)).get(), 6);
            assert_eq!(board.get(Coord::new_unchecked(1, 1)).get(), 4);
        }
        other => panic!("expected one reset, got {other:?}"),
    }
    // And it goes on from there.
    b.place(at(9, 7, 9, 3)).await.unwrap();
    let next = placements(&feed_until(&mut feed, 7, Duration::from_secs(5)).await);
    assert_eq!(next.iter().map(|p| p.seq.0).collect::<Vec<_>>(), vec![7]);
}

#[tokio::test]
async fn feed_starts_after_the_snapshot_the_server_loaded() {
    let env = env();
    let mut cfg = config(&env);
    cfg.policy = Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT);
    let a = SharedStore::open(cfg.clone()).await.unwrap();
    let b = SharedStore::open(cfg).await.unwrap();
    for i in 0..3 {
        b.place(at(i, 0, 1, 1)).await.unwrap();
    }
    let snap = a.snapshot().await.unwrap();
    assert_eq!(snap.seq, Seq(3));
    // Placed between the snapshot and the feed: must not be missed.
    b.place(at(5, 0, 2, 1)).await.unwrap();
    b.place(at(6, 0, 2, 1)).await.unwrap();
    let mut feed = a.take_feed().unwrap();
    let got = placements(&feed_until(&mut feed, 5, Duration::from_secs(5)).await);
    assert_eq!(got.iter().map(|p| p.seq.0).collect::<Vec<_>>(), vec![4, 5]);
}

#[tokio::test]
async fn updates_since_reads_the_stream_and_says_gone_past_it() {
    let env = env();
    let mut cfg = config(&env);
    cfg.policy = Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT);
    cfg.stream_capacity = 10;
    let store = SharedStore::open(cfg).await.unwrap();
    for i in 0..300u64 {
        store
            .place(at((i % W) as u32, ((i / W) % H) as u32, (i % 16) as u8, i))
            .await
            .unwrap();
    }
    let ups = store.updates_since(Seq(295), 100).await.unwrap();
    assert_eq!(
        ups.iter().map(|p| p.seq.0).collect::<Vec<_>>(),
        vec![296, 297, 298, 299, 300]
    );
    assert_eq!(
        ups[0].coord,
        Coord::new_unchecked((295 % W) as u32, ((295 / W) % H) as u32)
    );
    assert_eq!(ups[0].user, UserId(295));
    assert_eq!(store.updates_since(Seq(290), 3).await.unwrap().len(), 3);
    assert!(store.updates_since(Seq(300), 10).await.unwrap().is_empty());
    // The reconciler trims whole nodes once the placements are in the history (never
    // before): then the first placements are gone for sure.
    let gone = eventually(Duration::from_secs(10), "the stream trimmed", || async {
        let r = store.updates_since(Seq(0), 10).await;
        matches!(r, Err(StoreError::Gone { .. })).then_some(r)
    })
    .await;
    match gone {
        Err(StoreError::Gone { since, oldest }) => {
            assert_eq!(since, Seq(0));
            assert!(oldest.0 > 0 && oldest.0 < 295, "{oldest:?}");
            // Exactly from `oldest` on, it is served.
            let from = store.updates_since(oldest, 2).await.unwrap();
            assert_eq!(from[0].seq, oldest.next());
        }
        other => panic!("expected Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn pixel_history_is_newest_first() {
    let env = env();
    let store = SharedStore::open(config(&env)).await.unwrap();
    for (color, user) in [(1u8, 10u64), (2, 11), (3, 12)] {
        store.place(at(2, 2, color, user)).await.unwrap();
    }
    store.place(at(3, 2, 5, 13)).await.unwrap();
    let hist = store
        .pixel_history(Coord::new_unchecked(2, 2), 10)
        .await
        .unwrap();
    assert_eq!(
        hist.iter()
            .map(|p| (p.seq.0, p.color.get(), p.user.0))
            .collect::<Vec<_>>(),
        vec![(3, 3, 12), (2, 2, 11), (1, 1, 10)]
    );
    assert_eq!(
        store
            .pixel_history(Coord::new_unchecked(2, 2), 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .pixel_history(Coord::new_unchecked(0, 7), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Places `n` placements (with overwrites, bypassing limits) and returns the snapshot after.
async fn fill(store: &SharedStore, n: u64) -> rplace_store::Snapshot {
    for i in 0..n {
        let mut p = at((i * 7 % W) as u32, (i % H) as u32, (i * 5 % 16) as u8, i);
        p.bypass_limits = true;
        store.place(p).await.unwrap();
    }
    store.snapshot().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_rebuilds_board_and_seq_from_postgres() {
    let env = env();
    let mut cfg = config(&env);
    cfg.snapshot_every = 20;
    let a = SharedStore::open(cfg.clone()).await.unwrap();
    let b = SharedStore::open(cfg).await.unwrap();
    let before = fill(&a, 50).await;
    assert_eq!(before.seq, Seq(50));
    // Let the maintenance task write tile snapshots, so the rebuild uses them + the tail.
    let db = pg(&env.pg_url).await;
    eventually(Duration::from_secs(10), "tile snapshots", || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM tile_snapshots", &[])
            .await
            .unwrap()
            .get(0);
        (n > 0).then_some(())
    })
    .await;
    // More placements after the snapshot, so the replay has work to do.
    for i in 0..7u32 {
        let mut p = at(i, 7, 15, 500);
        p.bypass_limits = true;
        a.place(p).await.unwrap();
    }
    let cooling = a.place(at(8, 7, 2, 777)).await.unwrap();
    let before = a.snapshot().await.unwrap();
    assert_eq!(before.seq, Seq(58));
    b.snapshot().await.unwrap();
    let mut feed = b.take_feed().unwrap();

    env.redis.cli(&["FLUSHALL"]);

    // Reads rebuild (or wait for the rebuild) and come back identical.
    let after = b.snapshot().await.unwrap();
    assert_eq!(after.seq, before.seq);
    assert_eq!(after.board, before.board);
    // The feed tells the server to resync.
    match feed_until(&mut feed, 58, Duration::from_secs(10))
        .await
        .as_slice()
    {
        [.., FeedEvent::Reset(s)] => assert_eq!(*s, before.seq),
        other => panic!("expected a reset, got {other:?}"),
    }
    // Cooldowns still running were restored from the history.
    match b.place(at(0, 1, 1, 777)).await {
        Err(PlaceError::Cooldown { next_at_ms }) => assert_eq!(next_at_ms, cooling.next_at_ms),
        other => panic!("expected a cooldown, got {other:?}"),
    }
    // Placements continue from the same seq, on both instances.
    assert_eq!(a.place(at(0, 0, 3, 9001)).await.unwrap().seq, Seq(59));
    assert_eq!(b.place(at(1, 0, 3, 9002)).await.unwrap().seq, Seq(60));
    let ev = placements(&feed_until(&mut feed, 60, Duration::from_secs(5)).await);
    assert_eq!(ev.iter().map(|p| p.seq.0).collect::<Vec<_>>(), vec![59, 60]);
    let rows: i64 = db
        .query_one("SELECT count(*) FROM placements", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_rebuilds_and_placements_continue() {
    let mut env = env();
    let store = SharedStore::open(config(&env)).await.unwrap();
    let before = fill(&store, 30).await;
    store.take_feed().unwrap();

    env.redis.kill();
    eventually(
        Duration::from_secs(5),
        "not ready while Redis is down",
        || async { (!store.is_ready()).then_some(()) },
    )
    .await;
    assert!(matches!(
        store.place(at(0, 0, 1, 1)).await,
        Err(PlaceError::Unavailable(_))
    ));
    env.redis.restart();

    // The connection comes back, the state is rebuilt, and placing works again.
    let placed = eventually(
        Duration::from_secs(20),
        "a placement after the restart",
        || async { store.place(at(9, 1, 2, 4242)).await.ok() },
    )
    .await;
    assert_eq!(placed.seq, Seq(31));
    let after = store.snapshot().await.unwrap();
    let mut expected = before.board.clone();
    expected.set(Coord::new_unchecked(9, 1), ColorIndex::new_unchecked(2));
    assert_eq!(after.seq, Seq(31));
    assert_eq!(after.board, expected);
    eventually(Duration::from_secs(5), "ready again", || async {
        store.is_ready().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_behind_postgres_is_rebuilt() {
    let env = env();
    let store = SharedStore::open(config(&env)).await.unwrap();
    let before = fill(&store, 12).await;
    // As if Redis came back from an old copy: its seq is behind the history.
    env.redis.cli(&["SET", "test:seq", "4"]);
    // Until the check repairs it, placing on it fails (the stream is ahead) and changes nothing.
    let repaired = eventually(Duration::from_secs(10), "the rebuild", || async {
        let s = store.snapshot().await.unwrap();
        (s.seq == before.seq).then_some(s)
    })
    .await;
    assert_eq!(repaired.board, before.board);
    let mut p = at(0, 0, 1, 1);
    p.bypass_limits = true;
    assert_eq!(store.place(p).await.unwrap().seq, Seq(13));
}

#[tokio::test]
async fn reconciler_saves_what_a_dead_instance_left_in_redis() {
    let env = env();
    let mut cfg = config(&env);
    cfg.reconcile_grace = Duration::from_millis(0);
    let dead = SharedStore::open(cfg.clone()).await.unwrap();
    let acked = dead.place(at(1, 1, 1, 1)).await.unwrap();
    // The script ran, but the instance "died" before its history commit.
    let orphan = dead.place_without_history(at(2, 2, 2, 2)).await.unwrap();
    assert_eq!((acked.seq, orphan.seq), (Seq(1), Seq(2)));
    drop(dead);
    let db = pg(&env.pg_url).await;
    let count = || async {
        db.query_one("SELECT count(*) FROM placements", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(count().await, 1);
    // Another instance starts, and its reconciler copies it from the stream.
    let alive = SharedStore::open(cfg).await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the orphan in PostgreSQL",
        || async { (count().await == 2).then_some(()) },
    )
    .await;
    let row = db
        .query_one(
            "SELECT x, y, color, user_id FROM placements WHERE seq = 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, i16>(2),
            row.get::<_, i64>(3)
        ),
        (2, 2, 2, 2)
    );
    // And the watermark covers it, so the history is known complete up to there.
    let durable: i64 = db
        .query_one("SELECT durable_seq FROM rplace_state", &[])
        .await
        .unwrap()
        .get(0);
    assert!(durable >= 2);
    alive.close().await.unwrap();
}

#[tokio::test]
async fn unreachable_services_are_named_at_start() {
    let env = env();
    let closed_port = rplace_testsupport::free_port();
    let mut cfg = config(&env);
    cfg.redis_url = format!("redis://127.0.0.1:{closed_port}/");
    let err = SharedStore::open(cfg).await.err().unwrap().to_string();
    assert!(
        err.contains("Redis") && err.contains(&closed_port.to_string()),
        "{err}"
    );

    let mut cfg = config(&env);
    cfg.postgres_url = format!("postgres://postgres:secret@127.0.0.1:{closed_port}/nope");
    let err = SharedStore::open(cfg).await.err().unwrap().to_string();
    assert!(
        err.contains("PostgreSQL") && err.contains(&closed_port.to_string()),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

#[tokio::test]
async fn refuses_another_depth_and_only_grows_the_size() {
    let env = env();
    SharedStore::open(config(&env))
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    let mut other = config(&env);
    other.depth = Depth::Eight;
    let err = SharedStore::open(other).await.err().unwrap();
    assert!(matches!(err, StoreError::Config(_)), "{err}");
    assert!(err.to_string().contains("bits_per_pixel = 4"), "{err}");
    // A larger size grows the canvas; a smaller one keeps the stored (larger) size.
    let mut larger = config(&env);
    larger.dims = Dimensions::parse(W + 1, H).unwrap();
    let store = SharedStore::open(larger.clone()).await.unwrap();
    assert_eq!(store.dims(), larger.dims);
    store.close().await.unwrap();
    let store = SharedStore::open(config(&env)).await.unwrap();
    assert_eq!(store.dims(), larger.dims);
    assert_eq!(store.snapshot().await.unwrap().board.dims(), larger.dims);
    assert!(matches!(
        store.grow(Dimensions::parse(W, H).unwrap()).await,
        Err(StoreError::Config(_))
    ));
    let mut r = redis_conn(&env).await;
    let dims: String = redis::cmd("GET")
        .arg("test:dims")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(dims, format!("{} {H}", W + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_share_one_schema_and_one_state() {
    let env = env();
    let cfg = config(&env);
    let opens = (0..4).map(|_| SharedStore::open(cfg.clone()));
    let stores: Vec<SharedStore> = futures_util::future::join_all(opens)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let db = pg(&env.pg_url).await;
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Each migration once (the history's, then the areas'), whoever applied it.
    assert_eq!(versions[0], 1, "{versions:?}");
    assert!(versions.contains(&200), "{versions:?}");
    // One rebuild created the state: the epoch moved once.
    let epoch: i64 = db
        .query_one("SELECT epoch FROM rplace_state", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(epoch, 1);
    for (i, s) in stores.iter().enumerate() {
        assert_eq!(
            s.place(at(i as u32, 0, 1, i as u64)).await.unwrap().seq.0,
            i as u64 + 1
        );
    }
}

/// How long a rebuild takes for a large history with no board snapshot (the worst case).
/// `RPLACE_REBUILD_ROWS` rows (default 1,000,000) on a 1000x1000 board:
/// `cargo test -p rplace-store --release --test shared -- --ignored --nocapture rebuild_speed`
#[tokio::test]
#[ignore = "slow: measures the rebuild of a large history"]
async fn rebuild_speed() {
    let rows: i64 = std::env::var("RPLACE_REBUILD_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let env = env();
    let mut cfg = config(&env);
    cfg.dims = Dimensions::parse(1000, 1000).unwrap();
    cfg.snapshot_every = u64::MAX / 2;
    cfg.rebuild_wait = Duration::from_secs(600);
    let store = SharedStore::open(cfg).await.unwrap();
    let db = pg(&env.pg_url).await;
    let t = Instant::now();
    db.execute(
        "INSERT INTO placements (seq, x, y, color, user_id, ts)
         SELECT g, (g * 7919) % 1000, (g * 104729 / 1000) % 1000, g % 16, g % 50000,
                now() - make_interval(secs => ($1::bigint - g) / 1000.0)
         FROM generate_series(1, $1::bigint) g",
        &[&rows],
    )
    .await
    .unwrap();
    db.execute("ANALYZE placements", &[]).await.unwrap();
    println!("inserted {rows} rows in {:?}", t.elapsed());
    env.redis.cli(&["FLUSHALL"]);
    let t = Instant::now();
    let snap = store.snapshot().await.unwrap();
    let took = t.elapsed();
    println!("rebuilt {rows} rows in {took:?}");
    assert_eq!(snap.seq, Seq(rows as u64));
    // Pixel (x, y) was last set by the largest g with that position.
    // (Never set: color 0.)
    let last: i64 = db
        .query_opt(
            "SELECT color FROM placements WHERE x = 0 AND y = 0 ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .map(|r| r.get::<_, i16>(0) as i64)
        .unwrap_or(0);
    assert_eq!(
        snap.board.get(Coord::new_unchecked(0, 0)).get() as i64,
        last
    );
}

/// Placements per second through one instance with many concurrent callers.
/// `cargo test -p rplace-store --release --test shared -- --ignored --nocapture throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: measures throughput"]
async fn throughput() {
    let env = env();
    let store = Arc::new(SharedStore::open(config(&env)).await.unwrap());
    let (tasks, each) = (64u64, 500u64);
    let t = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let mut p = at((i % W) as u32, (w % H) as u32, (i % 16) as u8, w);
                    p.bypass_limits = true;
                    store.place(p).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let n = tasks * each;
    println!(
        "{n} placements in {:?}: {:.0}/s",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64()
    );
}
