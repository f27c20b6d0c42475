//! Bans, protected areas and spent one-time proofs survive what the stores survive: a
//! restart of the embedded store (SQLite), and in shared mode a loss of Redis (the
//! rebuild reloads them from PostgreSQL before anything is placed again) and a restart.

mod common;

use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, BanNet, Params};
use rplace_domain::{
    ColorIndex, Cooldown, Coord, Dimensions, Ipv6Prefix, OnceToken, Rect, Seq, UserId,
};
use rplace_store::moderation::{BanTarget, Moderation, NewBan, NewProtected};
use rplace_store::{
    EmbeddedConfig, EmbeddedStore, NewPlacement, PlaceError, SharedConfig, SharedStore, Standing,
    Store, SyncMode,
};
use rplace_testsupport::eventually;
use std::net::IpAddr;
use std::time::Duration;

fn params() -> Params {
    Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT)
}

fn at(x: u32, user: u64, ip: &str, once: Option<OnceToken>) -> NewPlacement {
    NewPlacement {
        coord: Coord::new_unchecked(x, 1),
        color: ColorIndex::new_unchecked(4),
        user: UserId(user),
        ip: ip.parse::<IpAddr>().unwrap(),
        bypass_limits: false,
        idempotency_key: None,
        standing: Standing {
            once,
            ..Standing::default()
        },
    }
}

/// Bans user 7 until the year 2100 and the network 192.0.2.0/24, protects column 5, and
/// spends proof 9 with a placement.
async fn moderate(store: &(impl Store + Moderation)) {
    let by = UserId(1);
    let b = store
        .ban(NewBan {
            target: BanTarget::User {
                user: UserId(7),
                identities: vec![UserId(7), UserId(8)],
            },
            reason: "griefing".into(),
            until_ms: Some(4_102_444_800_000),
            by,
        })
        .await
        .unwrap();
    assert_eq!(b.ban.reason, "griefing");
    let net = BanNet::parse("192.0.2.77/24", Ipv6Prefix::DEFAULT).unwrap();
    store
        .ban(NewBan {
            target: BanTarget::Net(net),
            reason: "bots".into(),
            until_ms: None,
            by,
        })
        .await
        .unwrap();
    store
        .protect(NewProtected {
            rect: Rect::new_unchecked(5, 0, 1, 4),
            reason: None,
            by,
        })
        .await
        .unwrap();
    let token = OnceToken::from_bytes([9; 16]);
    store
        .place(at(0, 2, "203.0.113.1", Some(token)))
        .await
        .unwrap();
    assert!(matches!(
        store.place(at(1, 3, "203.0.113.1", Some(token))).await,
        Err(PlaceError::OnceSpent)
    ));
}

/// What [`moderate`] did still holds, and refusals of it changed nothing.
async fn still_in_force(store: &(impl Store + Moderation)) {
    for user in [7, 8] {
        match store.place(at(0, user, "203.0.113.1", None)).await {
            Err(PlaceError::Banned { reason, until_ms }) => {
                assert_eq!(
                    (reason.as_str(), until_ms),
                    ("griefing", Some(4_102_444_800_000))
                )
            }
            other => panic!("user {user}: {other:?}"),
        }
    }
    match store.place(at(0, 20, "192.0.2.200", None)).await {
        Err(PlaceError::Banned { reason, until_ms }) => {
            assert_eq!((reason.as_str(), until_ms), ("bots", None))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.place(at(5, 21, "203.0.113.1", None)).await,
        Err(PlaceError::Protected)
    ));
    assert!(matches!(
        store
            .place(at(
                1,
                22,
                "203.0.113.1",
                Some(OnceToken::from_bytes([9; 16]))
            ))
            .await,
        Err(PlaceError::OnceSpent)
    ));
    store.place(at(1, 23, "203.0.113.1", None)).await.unwrap();
    let bans = store.bans(false, rplace_store::now_ms(), 10).await.unwrap();
    assert_eq!(bans.len(), 2);
    assert_eq!(store.protected_areas().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_embedded_store_keeps_them_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        dims: Dimensions::parse(8, 4).unwrap(),
        depth: Depth::Four,
        policy: params(),
        idempotency_window: Duration::from_secs(600),
        sync: SyncMode::Normal,
        snapshot_every: 100,
        max_catchup: 1000,
        tile_cache: rplace_store::DEFAULT_TILE_CACHE,
    };
    let store = EmbeddedStore::open(cfg.clone()).unwrap();
    moderate(&store).await;
    still_in_force(&store).await;
    store.close().await.unwrap();
    let store = EmbeddedStore::open(cfg).unwrap();
    still_in_force(&store).await;
    // Lifting answers once it is in force.
    let id = store.bans(false, rplace_store::now_ms(), 10).await.unwrap()[1].id;
    assert!(store.unban(id, UserId(1)).await.unwrap().is_some());
    store.place(at(0, 7, "203.0.113.1", None)).await.unwrap();
    assert!(store.unban(id, UserId(1)).await.unwrap().is_none());
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_shared_store_reloads_them_after_losing_redis() {
    let mut env = common::env();
    let mut cfg = SharedConfig::new(
        env.redis.url(),
        env.pg_url.clone(),
        Dimensions::parse(8, 4).unwrap(),
        Depth::Four,
        params(),
    );
    cfg.key_prefix = "mod:".into();
    cfg.health_interval = Duration::from_millis(100);
    let store = SharedStore::open(cfg.clone()).await.unwrap();
    moderate(&store).await;
    still_in_force(&store).await;
    // Redis loses everything (a restart without persistence). Spent proofs live in Redis
    // only, so that one goes with it; bans and protected areas come back from PostgreSQL
    // before anything is placed.
    env.redis.restart();
    eventually(Duration::from_secs(20), "the state is rebuilt", || async {
        match store.place(at(0, 7, "203.0.113.1", None)).await {
            Err(PlaceError::Banned { .. }) => Some(()),
            Err(PlaceError::Unavailable(_)) => None,
            other => panic!("placed or refused wrongly while rebuilding: {other:?}"),
        }
    })
    .await;
    let token = OnceToken::from_bytes([9; 16]);
    store
        .place(at(2, 30, "203.0.113.1", Some(token)))
        .await
        .unwrap();
    still_in_force(&store).await;
    store.close().await.unwrap();
    // Another instance (a restart) finds them in Redis as they are.
    let store = SharedStore::open(cfg).await.unwrap();
    still_in_force(&store).await;
    assert!(store.snapshot().await.unwrap().seq > Seq(2));
    // The script tries only the network lengths of bans in force: recounted at every
    // change, so those of lifted and of expired bans drop out.
    let lens = || env.redis.cli(&["HKEYS", "mod:ban:lens"]);
    assert_eq!(lens().trim(), "4/24");
    let short = store
        .ban(NewBan {
            target: BanTarget::Net(BanNet::parse("2001:db8::/48", Ipv6Prefix::DEFAULT).unwrap()),
            reason: "brief".into(),
            until_ms: Some(rplace_store::now_ms() + 200),
            by: UserId(1),
        })
        .await
        .unwrap();
    let mut tags: Vec<String> = lens().lines().map(str::to_string).collect();
    tags.sort();
    assert_eq!(tags, ["4/24", "6/48"]);
    let net = store.bans(false, rplace_store::now_ms(), 10).await.unwrap();
    let net = net.iter().find(|b| b.reason == "bots").unwrap().id;
    eventually(Duration::from_secs(10), "the short ban ends", || async {
        (rplace_store::now_ms() > short.ban.until_ms.unwrap()).then_some(())
    })
    .await;
    store.unban(net, UserId(1)).await.unwrap().unwrap();
    assert_eq!(lens().trim(), "");
    store.place(at(0, 40, "192.0.2.1", None)).await.unwrap();
    store.close().await.unwrap();
}

/// Areas spanning several of the shared backend's tiles, two of them in one tile, and the
/// removal of one: the other still holds, on both backends.
async fn areas_across_tiles(store: &(impl Store + Moderation)) {
    let place = |x: u32, y: u32, user: u64| NewPlacement {
        coord: Coord::new_unchecked(x, y),
        ..at(0, user, "203.0.113.1", None)
    };
    let protect = |x, y, w, h| NewProtected {
        rect: Rect::new_unchecked(x, y, w, h),
        reason: Some("art".into()),
        by: UserId(1),
    };
    let a = store.protect(protect(60, 60, 10, 10)).await.unwrap();
    let b = store.protect(protect(0, 0, 70, 1)).await.unwrap();
    for (x, y, protected) in [
        (60, 60, true),
        (63, 63, true),
        (64, 64, true),
        (69, 69, true),
        (70, 69, false),
        (69, 70, false),
        (59, 60, false),
        (0, 0, true),
        (69, 0, true),
        (70, 0, false),
        (65, 1, false),
    ] {
        let got = store.place(place(x, y, 100 + u64::from(x))).await;
        assert_eq!(
            matches!(got, Err(PlaceError::Protected)),
            protected,
            "({x}, {y}): {got:?}"
        );
    }
    assert_eq!(store.unprotect(b.id).await.unwrap().unwrap().rect, b.rect);
    assert!(store.unprotect(b.id).await.unwrap().is_none());
    store.place(place(1, 0, 300)).await.unwrap();
    store.place(place(65, 0, 301)).await.unwrap();
    assert!(matches!(
        store.place(place(65, 65, 302)).await,
        Err(PlaceError::Protected)
    ));
    assert_eq!(store.protected_areas().await.unwrap(), [a]);
}

#[tokio::test]
async fn protected_areas_hold_across_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let dims = Dimensions::parse(200, 200).unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        dims,
        depth: Depth::Four,
        policy: params(),
        idempotency_window: Duration::from_secs(600),
        sync: SyncMode::Normal,
        snapshot_every: 100,
        max_catchup: 1000,
        tile_cache: rplace_store::DEFAULT_TILE_CACHE,
    })
    .unwrap();
    areas_across_tiles(&store).await;
    store.close().await.unwrap();
    let env = common::env();
    let mut cfg = SharedConfig::new(
        env.redis.url(),
        env.pg_url.clone(),
        dims,
        Depth::Four,
        params(),
    );
    cfg.key_prefix = "tiles:".into();
    let store = SharedStore::open(cfg).await.unwrap();
    areas_across_tiles(&store).await;
    store.close().await.unwrap();
}
