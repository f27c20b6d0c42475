//! Templates in both stores: every limit of an upload (per identity, per hour, per
//! canvas, a taken id), deletion keeping the row (the hourly limit still counts it), and
//! what survives a restart.

mod common;

use rplace_domain::board::Depth;
use rplace_domain::policy::{AddrRate, Params};
use rplace_domain::{Cooldown, Dimensions, Ipv6Prefix, UserId};
use rplace_store::templates::{
    Added, NewTemplate, RATE_WINDOW_MS, TemplateLimits, TemplateMeta, Templates,
};
use rplace_store::{EmbeddedConfig, EmbeddedStore, SharedConfig, SharedStore, Store, SyncMode};
use std::time::Duration;

const LIMITS: TemplateLimits = TemplateLimits {
    per_user: 3,
    per_hour: 4,
    total: 5,
};

fn new(id: &str, owner: u64, created_ms: i64) -> NewTemplate {
    NewTemplate {
        meta: TemplateMeta {
            id: id.into(),
            name: format!("t {id}"),
            x: 1,
            y: 2,
            width: 3,
            height: 4,
            owner: UserId(owner),
            created_ms,
        },
        png: id.as_bytes().to_vec(),
    }
}

/// Runs the limits through `store`; returns the ids it kept.
async fn limits(store: &(impl Store + Templates)) -> Vec<String> {
    let now = 100 * RATE_WINDOW_MS;
    let add = |id: &str, owner: u64, at: i64| store.add_template(new(id, owner, at), LIMITS);
    assert_eq!(add("a000000001", 1, now).await.unwrap(), Added::Added);
    assert_eq!(add("a000000001", 2, now).await.unwrap(), Added::IdTaken);
    assert_eq!(add("a000000002", 1, now + 1).await.unwrap(), Added::Added);
    assert_eq!(add("a000000003", 1, now + 2).await.unwrap(), Added::Added);
    // A fourth at once is past per_user.
    assert_eq!(
        add("a000000004", 1, now + 3).await.unwrap(),
        Added::TooManyOfUser
    );
    // Deleting one makes room, but the hour still counts it: one more, then the rate.
    assert!(store.delete_template("a000000001", now + 4).await.unwrap());
    assert!(!store.delete_template("a000000001", now + 5).await.unwrap());
    assert_eq!(store.template("a000000001").await.unwrap(), None);
    assert_eq!(store.template_png("a000000001").await.unwrap(), None);
    assert_eq!(add("a000000004", 1, now + 6).await.unwrap(), Added::Added);
    assert!(store.delete_template("a000000004", now + 7).await.unwrap());
    assert_eq!(
        add("a000000005", 1, now + 8).await.unwrap(),
        Added::RateLimited {
            retry_after_ms: RATE_WINDOW_MS - 8
        }
    );
    // A deleted id is never given again.
    assert_eq!(add("a000000001", 3, now + 9).await.unwrap(), Added::IdTaken);
    // The canvas holds 5: 2 of user 1 and 3 of others; the sixth is refused.
    for (i, owner) in [(6, 2), (7, 2), (8, 3)] {
        let id = format!("a00000000{i}");
        assert_eq!(add(&id, owner, now + 10).await.unwrap(), Added::Added);
    }
    assert_eq!(add("a000000009", 4, now + 11).await.unwrap(), Added::Full);

    let t = store.template("a000000002").await.unwrap().unwrap();
    assert_eq!(t, new("a000000002", 1, now + 1).meta);
    assert_eq!(
        store.template_png("a000000002").await.unwrap().unwrap(),
        b"a000000002"
    );
    let mine: Vec<String> = store
        .templates_of(UserId(1))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        mine,
        ["a000000003", "a000000002"],
        "newest first, live only"
    );
    assert!(store.templates_of(UserId(9)).await.unwrap().is_empty());
    vec![
        "a000000002".into(),
        "a000000003".into(),
        "a000000006".into(),
    ]
}

async fn kept(store: &impl Templates, ids: &[String]) {
    for id in ids {
        assert!(store.template(id).await.unwrap().is_some(), "{id}");
        assert!(store.template_png(id).await.unwrap().is_some(), "{id}");
    }
    assert_eq!(store.template("a000000001").await.unwrap(), None);
}

fn params() -> Params {
    Params::new(Cooldown::from_secs(0), AddrRate::OFF, Ipv6Prefix::DEFAULT)
}

#[tokio::test]
async fn the_embedded_store_keeps_templates_within_their_limits() {
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
    let ids = limits(&store).await;
    store.close().await.unwrap();
    let store = EmbeddedStore::open(cfg).unwrap();
    kept(&store, &ids).await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_shared_store_keeps_templates_within_their_limits() {
    let env = common::env();
    let mut cfg = SharedConfig::new(
        env.redis.url(),
        env.pg_url.clone(),
        Dimensions::parse(8, 4).unwrap(),
        Depth::Four,
        params(),
    );
    cfg.key_prefix = "tpl:".into();
    let store = SharedStore::open(cfg.clone()).await.unwrap();
    let ids = limits(&store).await;
    store.close().await.unwrap();
    let store = SharedStore::open(cfg).await.unwrap();
    kept(&store, &ids).await;
    store.close().await.unwrap();
}
