//! The charges pools when the live state is lost: the shared store rebuilds Redis from
//! PostgreSQL (each user's last placement's charge stays spent, older ones count as
//! regained, see `Live::restore_cooldowns`), the embedded store recomputes the pools from
//! its log at start.

mod common;

use common::env;
use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, Charges, Params};
use rplace_domain::{ColorIndex, Cooldown, Coord, Dimensions, Ipv6Prefix, UserId};
use rplace_store::{
    EmbeddedConfig, EmbeddedStore, NewPlacement, PlaceError, SharedConfig, SharedStore, Store,
    SyncMode,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;

fn pool() -> Params {
    Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT)
        .with_charges(Charges::new(3, HOUR_MS).unwrap())
}

fn at(x: u32, user: u64) -> NewPlacement {
    NewPlacement {
        coord: Coord::new_unchecked(x, 1),
        color: ColorIndex::new_unchecked(2),
        user: UserId(user),
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        bypass_limits: false,
        idempotency_key: None,
        standing: Default::default(),
    }
}

async fn charges_of(store: &impl Store, user: u64) -> u32 {
    store
        .user_quota(UserId(user))
        .await
        .unwrap()
        .charges()
        .expect("charges model")
        .charges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_redis_keeps_the_last_placements_charge_spent() {
    let env = env();
    let mut cfg = SharedConfig::new(
        env.redis.url(),
        env.pg_url.clone(),
        Dimensions::parse(16, 8).unwrap(),
        Depth::Four,
        pool(),
    );
    cfg.key_prefix = "test:".into();
    cfg.pg_pool_size = 4;
    cfg.health_interval = Duration::from_millis(100);
    let store = SharedStore::open(cfg).await.unwrap();
    for x in 0..3 {
        store.place(at(x, 7)).await.unwrap();
    }
    store.place(at(5, 8)).await.unwrap();
    assert_eq!(charges_of(&store, 7).await, 0);
    assert!(matches!(
        store.place(at(4, 7)).await,
        Err(PlaceError::Cooldown { .. })
    ));

    env.redis.cli(&["FLUSHALL"]);

    // The snapshot waits for the rebuild; the pools are rebuilt before placing resumes.
    store.snapshot().await.unwrap();
    assert_eq!(
        charges_of(&store, 7).await,
        2,
        "the last charge stays spent"
    );
    assert_eq!(charges_of(&store, 8).await, 2);
    assert_eq!(charges_of(&store, 9).await, 3, "who never placed is full");
    let placed = store.place(at(6, 7)).await.unwrap();
    assert_eq!(placed.charges.unwrap().charges, 1);
}

#[tokio::test]
async fn an_embedded_restart_recomputes_the_pools_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        dims: Dimensions::parse(16, 8).unwrap(),
        depth: Depth::Four,
        policy: pool(),
        idempotency_window: Duration::from_secs(600),
        sync: SyncMode::Normal,
        snapshot_every: 1000,
        max_catchup: 1000,
        tile_cache: rplace_store::DEFAULT_TILE_CACHE,
    };
    let store = EmbeddedStore::open(cfg.clone()).unwrap();
    for x in 0..2 {
        let placed = store.place(at(x, 7)).await.unwrap();
        assert_eq!(placed.charges.unwrap().charges, 2 - x);
    }
    store.place(at(3, 8)).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let again = EmbeddedStore::open(cfg.clone()).unwrap();
    assert_eq!(charges_of(&again, 7).await, 1);
    assert_eq!(charges_of(&again, 8).await, 2);
    assert_eq!(charges_of(&again, 9).await, 3);
    again.place(at(4, 7)).await.unwrap();
    assert!(matches!(
        again.place(at(5, 7)).await,
        Err(PlaceError::Cooldown { .. })
    ));
    again.close().await.unwrap();
    drop(again);

    // The fixed model on the same log: no pools at all.
    let fixed = EmbeddedStore::open(EmbeddedConfig {
        policy: Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT),
        ..cfg
    })
    .unwrap();
    assert_eq!(fixed.user_quota(UserId(7)).await.unwrap().charges(), None);
    fixed.close().await.unwrap();
}
