//! The past canvas's keyframes on the embedded store: a history written before any
//! keyframe existed is caught up by the keyframer in bounded steps after a restart, and
//! then every seq reads as the replay of the log.

use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, Params};
use rplace_domain::{
    Board, ColorIndex, Cooldown, Coord, Dimensions, Ipv6Prefix, Seq, TileId, UserId,
};
use rplace_store::past::{Past, PastError, run_keyframer};
use rplace_store::{EmbeddedConfig, EmbeddedStore, NewPlacement, Store, SyncMode};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const W: u64 = 600;
const H: u64 = 300;
const EVERY: u64 = 16;

fn config(dir: &std::path::Path) -> EmbeddedConfig {
    EmbeddedConfig {
        data_dir: dir.to_path_buf(),
        dims: Dimensions::parse(W, H).unwrap(),
        depth: Depth::Four,
        policy: Params::new(Cooldown::from_millis(0), AddrRate::OFF, Ipv6Prefix::DEFAULT),
        idempotency_window: Duration::from_secs(600),
        sync: SyncMode::Normal,
        snapshot_every: 1000,
        max_catchup: 1000,
        tile_cache: rplace_store::DEFAULT_TILE_CACHE,
    }
}

fn placement(i: u64) -> NewPlacement {
    let r = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20;
    NewPlacement {
        coord: Coord::new_unchecked((r % W) as u32, ((r >> 12) % H) as u32),
        color: ColorIndex::new_unchecked((r >> 30) as u8 % 16),
        user: UserId(1 + i % 5),
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        bypass_limits: true,
        idempotency_key: None,
        standing: Default::default(),
    }
}

fn replay(log: &[(Seq, NewPlacement)], at: Seq) -> Board {
    let mut b = Board::new(Dimensions::parse(W, H).unwrap(), Depth::Four);
    for (s, p) in log.iter().filter(|(s, _)| *s <= at) {
        b.set(p.coord, p.color);
        let _ = s;
    }
    b
}

#[tokio::test]
async fn keyframes_catch_up_for_a_history_written_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path())).unwrap();
    let mut log = Vec::new();
    for i in 0..500 {
        let p = placement(i);
        log.push((store.place(p).await.unwrap().seq, p));
    }
    let head = log.last().unwrap().0;
    // No keyframer ran: reads far from a mark are refused, saying how far keyframes reach.
    let status = store.past_status().await.unwrap();
    assert_eq!((status.through, status.head), (Seq(0), head));
    match store
        .tile_at(TileId::new_unchecked(0, 0), head, 2 * EVERY)
        .await
    {
        Err(PastError::CatchingUp { through, .. }) => assert_eq!(through, Seq(0)),
        other => panic!("expected CatchingUp, got {other:?}"),
    }
    // Near the start the log alone suffices.
    let early = store.board_at(Seq(10), 2 * EVERY).await.unwrap();
    assert_eq!(early.board.as_bytes(), replay(&log, Seq(10)).as_bytes());
    store.close().await.unwrap();

    let store = Arc::new(EmbeddedStore::open(config(dir.path())).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let s = store.clone();
    let task = tokio::spawn(async move {
        run_keyframer(&*s, EVERY, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let want = Seq(head.0 / EVERY * EVERY);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.past_status().await.unwrap().through < want {
        assert!(Instant::now() < deadline, "keyframes did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Caught up: nothing more to build until the head moves a whole interval on.
    assert_eq!(store.keyframe_step(EVERY).await.unwrap(), None);
    for at in (0..=head.0).step_by(7).chain([EVERY, EVERY + 1, head.0]) {
        let at = Seq(at);
        let want = replay(&log, at);
        let got = store.board_at(at, 2 * EVERY).await.unwrap();
        assert_eq!(got.seq, at);
        assert_eq!(got.board.as_bytes(), want.as_bytes(), "board at {}", at.0);
        for (tx, ty) in [(0, 0), (2, 0), (1, 1)] {
            let id = TileId::new_unchecked(tx, ty);
            let t = store.tile_at(id, at, 2 * EVERY).await.unwrap();
            let version = log
                .iter()
                .filter(|(s, p)| *s <= at && TileId::of(p.coord) == id)
                .map(|(s, _)| *s)
                .max()
                .unwrap_or(Seq(0));
            assert_eq!((t.through, t.version), (at, version));
            let pixels = t
                .pixels
                .map(|p| p.into_bytes())
                .unwrap_or_else(|| rplace_domain::Tile::new(Depth::Four).into_bytes());
            assert_eq!(
                pixels,
                want.tile(id).as_bytes(),
                "tile {tx},{ty} at {}",
                at.0
            );
        }
    }
    let _ = stop_tx.send(());
    task.await.unwrap();
    store.close().await.unwrap();
}
