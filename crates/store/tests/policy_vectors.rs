//! The domain's policy vectors run through the real placement script on a real
//! `redis-server`: for each, the Redis keys are set to the vector's prior state, the
//! script decides one placement, and its reply and the keys it leaves must be what the
//! domain's `decide` says. So the Lua copy of the rules cannot drift from the domain.
//!
//! Both run on one redis-server and on a three-master Redis Cluster, where the script
//! decides in the core slot and the tile is written in its own.

use redis::AsyncCommands;
use rplace_domain::board::Depth;
use rplace_domain::policy::vectors::{self, BASE_MS};
use rplace_domain::policy::{Decision, Refusal};
use rplace_domain::{ColorIndex, Coord, Dimensions, OnceToken, UserId};
use rplace_store::{NewPlacement, PlaceError, SharedStore, Standing};
use rplace_testsupport::{RedisCluster, RedisServer};
use std::net::{IpAddr, Ipv4Addr};

/// In braces already, so the keys have these names on one server and on a cluster alike
/// (where the store puts every key but the tiles' under the prefix's hash tag).
const PREFIX: &str = "{pv:}";

/// Where the script runs: the Redis (stopped on drop), its URL, whether it is a cluster,
/// and a plain connection to the node holding the prefix's keys.
struct On {
    redis: Redis,
    url: String,
    cluster: bool,
    conn: redis::aio::MultiplexedConnection,
}

enum Redis {
    One(RedisServer),
    Cluster(RedisCluster),
}

impl On {
    async fn one_server() -> On {
        let redis = RedisServer::start();
        let client = redis::Client::open(redis.url()).unwrap();
        On {
            url: redis.url(),
            cluster: false,
            conn: client.get_multiplexed_async_connection().await.unwrap(),
            redis: Redis::One(redis),
        }
    }

    async fn cluster() -> On {
        let c = RedisCluster::start();
        // The master that owns the prefix's slot takes a write to it; the others redirect.
        let mut owner = None;
        for url in c.urls() {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let r: redis::RedisResult<()> = conn.set(format!("{PREFIX}probe"), 1).await;
            if r.is_ok() {
                owner = Some(conn);
            }
        }
        On {
            url: c.urls().join(","),
            cluster: true,
            conn: owner.expect("one master owns the slot"),
            redis: Redis::Cluster(c),
        }
    }

    /// Deletes every key (on every master).
    fn flush(&self) {
        match &self.redis {
            Redis::One(r) => {
                r.cli(&["FLUSHALL"]);
            }
            Redis::Cluster(c) => c.flush_all(),
        }
    }
}

#[tokio::test]
async fn the_script_decides_every_vector_as_the_domain_does() {
    decides_every_vector(On::one_server().await).await;
}

#[tokio::test]
async fn the_script_decides_every_vector_as_the_domain_does_on_a_cluster() {
    decides_every_vector(On::cluster().await).await;
}

#[tokio::test]
async fn the_script_finds_network_bans_by_the_domains_names() {
    finds_network_bans(On::one_server().await).await;
}

#[tokio::test]
async fn the_script_finds_network_bans_by_the_domains_names_on_a_cluster() {
    finds_network_bans(On::cluster().await).await;
}

async fn decides_every_vector(on: On) {
    let mut conn = on.conn.clone();
    let dims = Dimensions::parse(4, 2).unwrap();
    let user = UserId(0x1234);
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let cd_key = format!("{PREFIX}cd:{user}");
    let pool_key = format!("{PREFIX}ch:{user}");
    let ban_key = format!("{PREFIX}ban:u:{user}");
    let token = OnceToken::from_bytes([7; 16]);
    let once_key = format!("{PREFIX}once:{}", token.to_hex());
    let all = vectors::vectors();
    assert!(all.len() >= 10);
    for v in all {
        let params = v.params();
        let ip_key = format!("{PREFIX}ip:{}", params.addr_key(ip));
        let prior = v.prior();
        let now_ms = v.now().millis();
        assert_eq!(v.now().micros(), now_ms * 1000, "vectors use whole ms");
        // A fresh state at seq 10 (no tile painted yet), and the clock floor at the vector's moment (Redis's
        // own clock is earlier, so the script decides at exactly `now`).
        on.flush();
        let () = redis::pipe()
            .set(format!("{PREFIX}seq"), 10)
            .ignore()
            .set(format!("{PREFIX}epoch"), 1)
            .ignore()
            .set(format!("{PREFIX}clock"), now_ms)
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
        if let Some(last) = prior.user().last_ms() {
            let () = conn.set(&cd_key, last).await.unwrap();
        }
        if let Some(tat) = prior.user().tat_ms() {
            let () = conn.set(&pool_key, tat).await.unwrap();
        }
        if let Some(tat) = prior.addr().tat_us() {
            let () = conn.set(&ip_key, tat).await.unwrap();
        }
        if let Some(ban) = prior.ban() {
            let until = ban.until_ms().unwrap_or(0);
            let () = conn.hset(&ban_key, ban.id(), until).await.unwrap();
            let () = conn
                .hset(
                    format!("{PREFIX}ban:reasons"),
                    ban.id(),
                    format!("reason {}", ban.id()),
                )
                .await
                .unwrap();
        }
        if prior.protected() {
            // Around the placement's pixel (1, 1), and one elsewhere, both in tile (0, 0)
            // (`id x y w h` each).
            let () = conn
                .hset(
                    format!("{PREFIX}protected:tiles"),
                    "0 0",
                    "1 0 1 2 1;2 3 0 1 1",
                )
                .await
                .unwrap();
        }
        if let Some(until) = prior.once().and_then(|o| o.spent_until_ms()) {
            let () = conn.set(&once_key, until).await.unwrap();
        }
        let got = SharedStore::run_place_script(
            &on.url,
            on.cluster,
            PREFIX,
            dims,
            Depth::Four,
            params,
            NewPlacement {
                coord: Coord::new_unchecked(1, 1),
                color: ColorIndex::new_unchecked(3),
                user,
                ip,
                bypass_limits: prior.exempt(),
                idempotency_key: None,
                standing: Standing {
                    moderator: prior.moderator(),
                    account: prior.account(),
                    once: prior.once().map(|_| token),
                },
            },
        )
        .await;
        let once: Option<i64> = conn.get(&once_key).await.unwrap();
        let last: Option<i64> = conn.get(&cd_key).await.unwrap();
        let pool: Option<i64> = conn.get(&pool_key).await.unwrap();
        let pool_ttl: i64 = conn.pttl(&pool_key).await.unwrap();
        let tat: Option<i64> = conn.get(&ip_key).await.unwrap();
        let seq: u64 = conn.get(format!("{PREFIX}seq")).await.unwrap();
        let name = v.name();
        match (v.expect(), got) {
            (Decision::Accept(a), Ok(placed)) => {
                assert_eq!(placed.seq.0, 11, "{name}");
                assert_eq!(placed.at_ms, a.at_ms(), "{name}");
                assert_eq!(placed.next_at_ms, a.next_at_ms(), "{name}");
                assert_eq!(last, a.user().last_ms(), "{name}: user state");
                assert_eq!(pool, a.user().tat_ms(), "{name}: pool state");
                if pool != prior.user().tat_ms() {
                    // A spent pool expires exactly when it is full again.
                    let left = a.user().tat_ms().unwrap() - now_ms;
                    assert!(
                        pool_ttl > 0 && pool_ttl <= left,
                        "{name}: pool ttl {pool_ttl}"
                    );
                }
                assert_eq!(
                    placed.charges,
                    params.quota(a.user(), now_ms).charges(),
                    "{name}: pool answered"
                );
                assert_eq!(tat, a.addr().tat_us(), "{name}: address state");
                let spent = a
                    .once_until_ms()
                    .or(prior.once().and_then(|o| o.spent_until_ms()));
                assert_eq!(once, spent, "{name}: proof state");
                assert_eq!(seq, 11, "{name}");
            }
            (Decision::Refuse(r), Err(e)) => {
                match (r, e) {
                    (
                        Refusal::Cooldown { next_at_ms: want },
                        PlaceError::Cooldown { next_at_ms: got },
                    ) => assert_eq!(got, want, "{name}"),
                    (
                        Refusal::RateLimited {
                            retry_after_ms: want,
                        },
                        PlaceError::RateLimited {
                            retry_after_ms: got,
                        },
                    ) => assert_eq!(got, want, "{name}"),
                    (Refusal::Banned { ban }, PlaceError::Banned { reason, until_ms }) => {
                        assert_eq!(until_ms, ban.until_ms(), "{name}");
                        assert_eq!(reason, format!("reason {}", ban.id()), "{name}");
                    }
                    (Refusal::Protected, PlaceError::Protected) => {}
                    (Refusal::OnceSpent, PlaceError::OnceSpent) => {}
                    (r, e) => panic!("{name}: expected {r:?}, got {e:?}"),
                }
                assert_eq!(
                    once,
                    prior.once().and_then(|o| o.spent_until_ms()),
                    "{name}: proof state"
                );
                // A refusal spends nothing: the state is the prior one.
                assert_eq!(last, prior.user().last_ms(), "{name}: user state");
                assert_eq!(pool, prior.user().tat_ms(), "{name}: pool state");
                assert_eq!(tat, prior.addr().tat_us(), "{name}: address state");
                assert_eq!(seq, 10, "{name}");
            }
            (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
        assert!(now_ms >= BASE_MS);
    }
}

/// Network bans: for every name vector, a ban of that network refuses an address inside
/// it, and an address one bit outside the prefix is accepted: the script's masking
/// builds the names the domain's `net_key` builds.
async fn finds_network_bans(on: On) {
    let mut conn = on.conn.clone();
    let dims = Dimensions::parse(4, 2).unwrap();
    let params = rplace_domain::policy::Params::new(
        rplace_domain::Cooldown::from_secs(0),
        rplace_domain::policy::AddrRate::OFF,
        rplace_domain::Ipv6Prefix::DEFAULT,
    );
    for (ip, bits, key) in vectors::net_vectors() {
        let ip: IpAddr = ip.parse().unwrap();
        on.flush();
        let family = if ip.to_canonical().is_ipv4() { 4 } else { 6 };
        let () = redis::pipe()
            .set(format!("{PREFIX}seq"), 10)
            .ignore()
            .set(format!("{PREFIX}epoch"), 1)
            .ignore()
            .hset(format!("{PREFIX}ban:lens"), format!("{family}/{bits}"), 1)
            .ignore()
            .hset(format!("{PREFIX}ban:n:{key}"), 77, 0)
            .ignore()
            .hset(format!("{PREFIX}ban:reasons"), 77, "net")
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
        // The last bit of the prefix flipped: the neighbouring network.
        let outside = match ip.to_canonical() {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) ^ (1 << (32 - u32::from(bits)))).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) ^ (1 << (128 - u32::from(bits)))).into()),
        };
        for (addr, banned) in [(ip, true), (outside, false)] {
            let got = SharedStore::run_place_script(
                &on.url,
                on.cluster,
                PREFIX,
                dims,
                Depth::Four,
                params,
                NewPlacement {
                    coord: Coord::new_unchecked(1, 1),
                    color: ColorIndex::new_unchecked(3),
                    user: UserId(5),
                    ip: addr,
                    bypass_limits: false,
                    idempotency_key: None,
                    standing: Default::default(),
                },
            )
            .await;
            match (banned, got) {
                (true, Err(PlaceError::Banned { reason, until_ms })) => {
                    assert_eq!((reason.as_str(), until_ms), ("net", None), "{addr}/{bits}")
                }
                (false, Ok(_)) => {}
                (b, got) => panic!("{addr}/{bits} (key {key}): banned {b}, got {got:?}"),
            }
        }
    }
}
