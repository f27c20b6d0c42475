//! Idempotent placing on both backends: a repeat of an idempotency key answers the first
//! accepted attempt (same seq, same times) and places nothing; two concurrent attempts
//! with one key place once; the record survives a restart (embedded) and holds across
//! instances (shared, real Redis and PostgreSQL); refusals are not remembered.

mod common;

use common::{Env, env};
use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, Params};
use rplace_domain::{
    ColorIndex, Cooldown, Coord, Dimensions, IdempotencyKey, Ipv6Prefix, Seq, UserId,
};
use rplace_store::{
    EmbeddedConfig, EmbeddedStore, NewPlacement, PlaceError, SharedConfig, SharedStore, Store,
    SyncMode,
};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const W: u64 = 16;
const H: u64 = 8;

fn policy(cooldown: Cooldown) -> Params {
    Params::new(cooldown, AddrRate::OFF, Ipv6Prefix::DEFAULT)
}

fn key(k: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey::parse(k).unwrap())
}

fn at(x: u32, color: u8, user: u64, k: &str) -> NewPlacement {
    NewPlacement {
        coord: Coord::new_unchecked(x, 0),
        color: ColorIndex::new_unchecked(color),
        user: UserId(user),
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        bypass_limits: false,
        idempotency_key: key(k),
        standing: Default::default(),
    }
}

fn embedded_config(dir: &std::path::Path, cooldown: Cooldown) -> EmbeddedConfig {
    EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        dims: Dimensions::parse(W, H).unwrap(),
        depth: Depth::Four,
        policy: policy(cooldown),
        idempotency_window: Duration::from_secs(600),
        sync: SyncMode::Normal,
        snapshot_every: 1000,
        max_catchup: 1000,
        tile_cache: rplace_store::DEFAULT_TILE_CACHE,
    }
}

/// The checks every backend must pass, on a store with a 60 s cooldown.
async fn repeat_answers_the_first_attempt(store: &impl Store) {
    let first = store.place(at(1, 3, 1, "k-1")).await.unwrap();
    assert!(!first.replayed);
    let board = store.snapshot().await.unwrap();
    // The same placement again, and even a different body under the same key: the first
    // answer, nothing placed (and no cooldown refusal, which a new attempt would get).
    for p in [at(1, 3, 1, "k-1"), at(2, 5, 1, "k-1")] {
        let again = store.place(p).await.unwrap();
        assert_eq!(
            (again.seq, again.at_ms, again.next_at_ms),
            (first.seq, first.at_ms, first.next_at_ms)
        );
        assert!(again.replayed);
    }
    let after = store.snapshot().await.unwrap();
    assert_eq!(after.seq, board.seq);
    assert_eq!(after.board, board.board);
    let history = store
        .pixel_history(Coord::new_unchecked(1, 0), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        store
            .pixel_history(Coord::new_unchecked(2, 0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A new key of the same user is a new attempt: refused by the cooldown.
    assert!(matches!(
        store.place(at(1, 3, 1, "k-2")).await,
        Err(PlaceError::Cooldown { .. })
    ));
    // Keys are per user: another user's "k-1" is their own.
    let other = store.place(at(3, 4, 2, "k-1")).await.unwrap();
    assert_eq!(other.seq, first.seq.next());
    assert!(!other.replayed);
}

/// Two attempts with one key at the same moment place once.
async fn concurrent_attempts_place_once<S: Store>(a: Arc<S>, b: Arc<S>) {
    let before = a.snapshot().await.unwrap().seq;
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.place(at(5 + i, 2, 7, "same")).await.unwrap()
        }));
    }
    let mut seqs = Vec::new();
    let mut fresh = 0;
    for t in tasks {
        let placed = t.await.unwrap();
        seqs.push(placed.seq);
        fresh += usize::from(!placed.replayed);
    }
    assert_eq!(fresh, 1, "exactly one attempt placed");
    assert!(seqs.iter().all(|s| *s == before.next()), "{seqs:?}");
    assert_eq!(a.snapshot().await.unwrap().seq, before.next());
}

#[tokio::test]
async fn embedded_repeats_answer_the_first_attempt_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(embedded_config(dir.path(), Cooldown::from_secs(60))).unwrap();
    repeat_answers_the_first_attempt(&store).await;
    let first = store.place(at(9, 1, 3, "before-crash")).await.unwrap();
    // Dropped without close, as a kill -9 would leave it: the record was committed with
    // the placement.
    drop(store);
    let store = EmbeddedStore::open(embedded_config(dir.path(), Cooldown::from_secs(60))).unwrap();
    let again = store.place(at(9, 1, 3, "before-crash")).await.unwrap();
    assert_eq!((again.seq, again.at_ms), (first.seq, first.at_ms));
    assert!(again.replayed);
    store.close().await.unwrap();
}

#[tokio::test]
async fn embedded_concurrent_attempts_with_one_key_place_once() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(EmbeddedStore::open(embedded_config(dir.path(), Cooldown::from_secs(0))).unwrap());
    concurrent_attempts_place_once(store.clone(), store.clone()).await;
    assert_eq!(store.updates_since(Seq(0), 100).await.unwrap().len(), 1);
}

/// A refused attempt is not remembered: once the cooldown is over, a retry with the same
/// key is decided afresh and placed.
#[tokio::test]
async fn embedded_refusals_are_not_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(embedded_config(dir.path(), Cooldown::from_millis(300))).unwrap();
    store.place(at(0, 1, 4, "a")).await.unwrap();
    let Err(PlaceError::Cooldown { next_at_ms }) = store.place(at(1, 1, 4, "b")).await else {
        panic!("expected the cooldown")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let placed = loop {
        match store.place(at(1, 1, 4, "b")).await {
            Ok(p) => break p,
            Err(PlaceError::Cooldown { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("{other:?}"),
        }
    };
    assert!(!placed.replayed);
    assert!(placed.at_ms >= next_at_ms);
    store.close().await.unwrap();
}

fn shared_config(env: &Env, cooldown: Cooldown) -> SharedConfig {
    let mut c = SharedConfig::new(
        env.redis.url(),
        env.pg_url.clone(),
        Dimensions::parse(W, H).unwrap(),
        Depth::Four,
        policy(cooldown),
    );
    c.key_prefix = "idem:".into();
    c.pg_pool_size = 4;
    c.health_interval = Duration::from_millis(100);
    c.reconcile_interval = Duration::from_millis(200);
    c.reconcile_grace = Duration::from_secs(1);
    c
}

#[tokio::test]
async fn shared_repeats_answer_the_first_attempt_on_every_instance() {
    let env = env();
    let a = SharedStore::open(shared_config(&env, Cooldown::from_secs(60)))
        .await
        .unwrap();
    repeat_answers_the_first_attempt(&a).await;
    // The repeat on another instance gets the same answer.
    let b = SharedStore::open(shared_config(&env, Cooldown::from_secs(60)))
        .await
        .unwrap();
    let first = a.place(at(8, 2, 5, "cross")).await.unwrap();
    let again = b.place(at(8, 2, 5, "cross")).await.unwrap();
    assert_eq!(
        (again.seq, again.at_ms, again.next_at_ms, again.replayed),
        (first.seq, first.at_ms, first.next_at_ms, true)
    );
    assert_eq!(b.snapshot().await.unwrap().seq, first.seq);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_concurrent_attempts_on_two_instances_place_once() {
    let env = env();
    let cfg = shared_config(&env, Cooldown::from_secs(0));
    let a = Arc::new(SharedStore::open(cfg.clone()).await.unwrap());
    let b = Arc::new(SharedStore::open(cfg).await.unwrap());
    concurrent_attempts_place_once(a.clone(), b.clone()).await;
    let mut rows = 0;
    for x in 5..13 {
        rows += b
            .pixel_history(Coord::new_unchecked(x, 0), 10)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(rows, 1, "one placement in the history");
}

/// A repeat of a key whose first attempt reached Redis but not yet PostgreSQL (its
/// instance died right after the script) is not answered 200 until the placement is
/// durable: within the ack timeout it gets Unavailable, and once the reconciler has
/// copied the placement into the history, the first answer.
#[tokio::test]
async fn shared_repeat_waits_until_the_first_attempt_is_durable() {
    let env = env();
    let mut cfg = shared_config(&env, Cooldown::from_secs(0));
    cfg.ack_timeout = Duration::from_millis(300);
    // No reconciling for now: the first attempt stays in Redis only.
    cfg.reconcile_grace = Duration::from_secs(3600);
    let store = SharedStore::open(cfg.clone()).await.unwrap();
    let first = store
        .place_without_history(at(4, 6, 9, "lost-ack"))
        .await
        .unwrap();
    match store.place(at(4, 6, 9, "lost-ack")).await {
        Err(PlaceError::Unavailable(_)) => {}
        other => panic!("a repeat before the first attempt is durable: {other:?}"),
    }
    // Nothing was placed by the repeat either.
    assert_eq!(store.snapshot().await.unwrap().seq, first.seq);
    store.reconcile_now().await.unwrap();
    let again = store.place(at(4, 6, 9, "lost-ack")).await.unwrap();
    assert_eq!(
        (again.seq, again.at_ms, again.replayed),
        (first.seq, first.at_ms, true)
    );
    store.close().await.unwrap();
}
