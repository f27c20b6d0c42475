//! The domain's policy vectors run through the real placement script on a real
//! `redis-server`: for each, the Redis keys are set to the vector's prior state, the
//! script decides one placement, and its reply and the keys it leaves must be what the
//! domain's `decide` says. So the Lua copy of the rules cannot drift from the domain.

use redis::AsyncCommands;
use rplace_domain::board::Depth;
use rplace_domain::policy::vectors::{self, BASE_MS};
use rplace_domain::policy::{Decision, Refusal};
use rplace_domain::{ColorIndex, Coord, Dimensions, UserId};
use rplace_store::{NewPlacement, PlaceError, SharedStore};
use rplace_testsupport::RedisServer;
use std::net::{IpAddr, Ipv4Addr};

const PREFIX: &str = "pv:";

#[tokio::test]
async fn the_script_decides_every_vector_as_the_domain_does() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let dims = Dimensions::parse(4, 2).unwrap();
    let user = UserId(0x1234);
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let cd_key = format!("{PREFIX}cd:{user}");
    let all = vectors::vectors();
    assert!(all.len() >= 10);
    for v in all {
        let params = v.params();
        let ip_key = format!("{PREFIX}ip:{}", params.addr_key(ip));
        let prior = v.prior();
        let now_ms = v.now().millis();
        assert_eq!(v.now().micros(), now_ms * 1000, "vectors use whole ms");
        // A fresh state at seq 10, and the clock floor at the vector's moment (Redis's
        // own clock is earlier, so the script decides at exactly `now`).
        let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
        let () = redis::pipe()
            .set(format!("{PREFIX}board"), vec![0u8; 4])
            .ignore()
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
        if let Some(tat) = prior.addr().tat_us() {
            let () = conn.set(&ip_key, tat).await.unwrap();
        }
        let got = SharedStore::run_place_script(
            &redis.url(),
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
                standing: Default::default(),
            },
        )
        .await;
        let last: Option<i64> = conn.get(&cd_key).await.unwrap();
        let tat: Option<i64> = conn.get(&ip_key).await.unwrap();
        let seq: u64 = conn.get(format!("{PREFIX}seq")).await.unwrap();
        let name = v.name();
        match (v.expect(), got) {
            (Decision::Accept(a), Ok(placed)) => {
                assert_eq!(placed.seq.0, 11, "{name}");
                assert_eq!(placed.at_ms, a.at_ms(), "{name}");
                assert_eq!(placed.next_at_ms, a.next_at_ms(), "{name}");
                assert_eq!(last, a.user().last_ms(), "{name}: user state");
                assert_eq!(tat, a.addr().tat_us(), "{name}: address state");
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
                    (r, e) => panic!("{name}: expected {r:?}, got {e:?}"),
                }
                // A refusal spends nothing: the state is the prior one.
                assert_eq!(last, prior.user().last_ms(), "{name}: user state");
                assert_eq!(tat, prior.addr().tat_us(), "{name}: address state");
                assert_eq!(seq, 10, "{name}");
            }
            (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
        }
        assert!(now_ms >= BASE_MS);
    }
}
