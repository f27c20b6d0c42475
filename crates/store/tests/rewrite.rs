//! Applying a moderation plan on both backends: ordinary placements by the moderator, in
//! chunks, and never over a pixel someone placed on after the plan (the compare-and-set).

mod common;

use common::{Env, env};
use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, Params};
use rplace_domain::{ColorIndex, Cooldown, Coord, Dimensions, Ipv6Prefix, Rect, Seq, UserId};
use rplace_store::rewrite::{CHUNK, Rewrite};
use rplace_store::{
    EmbeddedConfig, EmbeddedStore, NewPlacement, SharedConfig, SharedStore, Store, SyncMode,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const W: u64 = 128;
const H: u64 = 96;
const MODERATOR: UserId = UserId(0);

fn policy() -> Params {
    // A cooldown that a moderator's placements must not run into.
    Params::new(Cooldown::from_secs(60), AddrRate::OFF, Ipv6Prefix::DEFAULT)
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

/// A fill of the whole board planned, then two pixels placed on by others, then applied:
/// those two keep the newer placement and are reported skipped; every other pixel is
/// the moderator's, in more than one chunk, with consecutive seqs.
async fn placements_after_the_plan_are_kept<S: Store + Rewrite>(store: &S) {
    let dims = Dimensions::parse(W, H).unwrap();
    let color = ColorIndex::new_unchecked(6);
    let paint: Vec<_> = Rect::board(dims).coords().map(|c| (c, color)).collect();
    let plan = store.plan_paint(paint).await.unwrap();
    assert_eq!(plan.changes.len(), (W * H) as usize);
    assert!(plan.changes.len() > CHUNK, "the test spans chunks");
    // After the plan, others paint: one pixel in the first chunk, one in a later one.
    let late = [(3u32, 0u32), (100, 90)];
    let mut placed = Vec::new();
    for (i, &(x, y)) in late.iter().enumerate() {
        placed.push(store.place(at(x, y, 2, 10 + i as u64)).await.unwrap().seq);
    }
    let applied = store.apply(&plan, MODERATOR).await.unwrap();
    let skipped: Vec<Coord> = applied
        .skipped
        .iter()
        .map(|&i| plan.changes[i].coord)
        .collect();
    assert_eq!(
        skipped,
        late.iter()
            .map(|&(x, y)| Coord::new_unchecked(x, y))
            .collect::<Vec<_>>()
    );
    let (first, last) = (applied.first_seq.unwrap(), applied.last_seq.unwrap());
    assert_eq!(first, placed[1].next());
    assert_eq!(last.0 - first.0 + 1, W * H - 2);
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.seq, last);
    for c in Rect::board(dims).coords() {
        let want = if skipped.contains(&c) { 2 } else { 6 };
        assert_eq!(snap.board.get(c).get(), want, "{c:?}");
    }
    // The moderator's placements are in the history like any other, attributed to them.
    let h = store
        .pixel_history(Coord::new_unchecked(0, 0), 5)
        .await
        .unwrap();
    assert_eq!(h[0].user, MODERATOR);
    assert!(h[0].seq >= first && h[0].seq <= last);
    // A plan is consistent with the seq it names.
    let again = store
        .plan_paint(vec![(Coord::new_unchecked(0, 0), color)])
        .await
        .unwrap();
    assert!(again.changes.is_empty());
    assert_eq!(again.at, last);
    // And the moderator has no cooldown from it: another chunk is placed at once.
    let one = store
        .plan_paint(vec![(
            Coord::new_unchecked(0, 0),
            ColorIndex::new_unchecked(1),
        )])
        .await
        .unwrap();
    let applied = store.apply(&one, MODERATOR).await.unwrap();
    assert_eq!(applied.first_seq, Some(Seq(last.0 + 1)));
}

#[tokio::test]
async fn embedded_keeps_placements_after_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        dims: Dimensions::parse(W, H).unwrap(),
        depth: Depth::Four,
        policy: policy(),
        idempotency_window: Duration::from_secs(600),
        sync: SyncMode::Normal,
        snapshot_every: 1000,
        max_catchup: 100_000,
        tile_cache: rplace_store::DEFAULT_TILE_CACHE,
    })
    .unwrap();
    placements_after_the_plan_are_kept(&store).await;
    store.close().await.unwrap();
}

fn shared_config(env: &Env) -> SharedConfig {
    let mut c = SharedConfig::new(
        env.redis.url(),
        env.pg_url.clone(),
        Dimensions::parse(W, H).unwrap(),
        Depth::Four,
        policy(),
    );
    c.key_prefix = "rw:".into();
    c.pg_pool_size = 4;
    c
}

#[tokio::test]
async fn shared_keeps_placements_after_the_plan() {
    let env = env();
    let store = SharedStore::open(shared_config(&env)).await.unwrap();
    placements_after_the_plan_are_kept(&store).await;
    store.close().await.unwrap();
}
