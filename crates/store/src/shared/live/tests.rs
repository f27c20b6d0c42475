//! The live state's reply parsing and one batch against a real redis-server.

use super::*;

#[test]
fn batch_replies_parse() {
    let fixed = Params::new(
        rplace_domain::Cooldown::from_secs(1),
        rplace_domain::policy::AddrRate::OFF,
        rplace_domain::Ipv6Prefix::DEFAULT,
    );
    let reply = [
        7, 1000, 0, 41, 1000, 1300, 0, 1, 1500, 0, 0, 0, 2, 30, 0, 0, 0, 0, 42, 1000, 1300, 0, 4,
        9, 500, 800, 0,
    ];
    let (out, prevs) = parse_place_reply(&reply, 5, &fixed, false).unwrap();
    assert!(prevs.is_empty());
    // On a cluster each accepted placement's predecessor on its tile follows.
    let chained: Vec<i64> = reply.iter().copied().chain([0, 41]).collect();
    let (same, prevs) = parse_place_reply(&chained, 5, &fixed, true).unwrap();
    assert_eq!((&same, prevs), (&out, vec![Seq(0), Seq(41)]));
    assert!(parse_place_reply(&reply, 5, &fixed, true).is_none());
    assert!(parse_place_reply(&chained, 5, &fixed, false).is_none());
    assert_eq!(
        out,
        [
            PlaceOutcome::Accepted {
                seq: Seq(41),
                at_ms: 1000,
                next_at_ms: 1300,
                epoch: 7,
                charges: None,
            },
            PlaceOutcome::Cooldown { next_at_ms: 1500 },
            PlaceOutcome::RateLimited { retry_after_ms: 30 },
            PlaceOutcome::Accepted {
                seq: Seq(42),
                at_ms: 1000,
                next_at_ms: 1300,
                epoch: 7,
                charges: None,
            },
            PlaceOutcome::Replayed {
                seq: Seq(9),
                at_ms: 500,
                next_at_ms: 800
            },
        ]
    );
    assert_eq!(
        parse_place_reply(&[3], 2, &fixed, true).unwrap().0,
        [PlaceOutcome::Missing, PlaceOutcome::Missing]
    );
    assert!(parse_place_reply(&[7, 1000, 0, 41, 1000, 1300, 0], 2, &fixed, false).is_none());
    assert!(parse_place_reply(&[7, 1000, 9, 41, 0, 0, 0], 1, &fixed, false).is_none());
    // In the charges model an accepted placement's pool comes from its arrival time.
    let pool = fixed.with_charges(rplace_domain::policy::Charges::new(3, 100).unwrap());
    let (out, _) = parse_place_reply(&[7, 1000, 0, 41, 1000, 1000, 1200], 1, &pool, false).unwrap();
    let PlaceOutcome::Accepted { charges, .. } = out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        charges,
        Some(ChargeStatus {
            charges: 1,
            next_charge_at_ms: Some(1100)
        })
    );
}

/// One script call decides a batch in order (a user's second placement meets the
/// cooldown of the first, the address limit counts within the batch), writes only the
/// accepted ones, and publishes them as one message.
#[tokio::test]
async fn a_batch_is_decided_in_order_and_published_once() {
    use futures_util::StreamExt;
    use std::net::{IpAddr, Ipv4Addr};
    let redis = rplace_testsupport::RedisServer::start();
    let live = Live::connect(
        &redis.url(),
        Duration::from_secs(5),
        false,
        "t:",
        Depth::Four,
        Params::new(
            rplace_domain::Cooldown::from_secs(60),
            rplace_domain::policy::AddrRate::per_minute(1, 2),
            rplace_domain::Ipv6Prefix::DEFAULT,
        ),
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    let p = |x, user, ip: u8, bypass| NewPlacement {
        coord: Coord::new_unchecked(x, 1),
        color: ColorIndex::new_unchecked(x as u8 + 1),
        user: UserId(user),
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, ip)),
        bypass_limits: bypass,
        idempotency_key: None,
        standing: Default::default(),
    };
    let batch = [
        p(0, 1, 1, false), // accepted
        p(1, 1, 2, false), // same user: cooldown
        p(2, 2, 1, false), // second from address 1: within the burst of 2
        p(3, 3, 1, false), // third: rate limited
        p(3, 1, 1, true),  // the bench path passes both
    ];
    assert!(
        live.place_batch(&batch)
            .await
            .unwrap()
            .iter()
            .all(|o| *o == PlaceOutcome::Missing)
    );
    let () = redis::pipe()
        .set("t:seq", 10)
        .ignore()
        .set("t:epoch", 4)
        .ignore()
        .query_async(&mut live.conn.clone())
        .await
        .unwrap();
    let mut messages = live.subscribe().await.unwrap();
    let out = live.place_batch(&batch).await.unwrap();
    let PlaceOutcome::Accepted {
        at_ms,
        next_at_ms,
        epoch,
        ..
    } = out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!((epoch, next_at_ms - at_ms), (4, 60_000));
    let seqs: Vec<_> = out
        .iter()
        .map(|o| match o {
            PlaceOutcome::Accepted { seq, .. } => Some(seq.0),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [Some(11), None, Some(12), None, Some(13)]);
    assert!(matches!(out[1], PlaceOutcome::Cooldown { next_at_ms: n } if n == next_at_ms));
    assert!(matches!(out[3], PlaceOutcome::RateLimited { retry_after_ms: r } if r > 50_000));
    assert_eq!(live.seq().await.unwrap(), Some(Seq(13)));
    let page = live.read_after(Seq(10), 10).await.unwrap();
    assert_eq!(
        page.entries
            .iter()
            .map(|e| (e.seq.0, e.coord.x()))
            .collect::<Vec<_>>(),
        [(11, 0), (12, 2), (13, 3)]
    );
    // Row 1 of tile (0, 0) starts at tile-local pixel 256, byte 128 at u4: pixels 0..3
    // = colors 1, 0, 3, 4. The tile's key is created whole (32 KiB, the rest color 0),
    // and its version is the seq of its last placement.
    let raw: Vec<u8> = live.conn.clone().get("t:tile:{0,0}").await.unwrap();
    assert_eq!(raw.len(), Tile::len(Depth::Four));
    assert_eq!(raw[128..130], [0x10, 0x34]);
    assert!(raw[..128].iter().chain(&raw[130..]).all(|b| *b == 0));
    let read = live
        .tiles(&[TileId::new_unchecked(0, 0)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.head.seq, Seq(13));
    assert_eq!(read.tiles[0].version, Seq(13));
    let tile = read.tiles[0].pixels.as_ref().unwrap();
    assert_eq!(tile.as_bytes().len(), Tile::len(Depth::Four));
    assert_eq!(tile.get(258).get(), 3);
    let msg = messages.next().await.unwrap();
    let payload = String::from_utf8(msg.get_payload_bytes().to_vec()).unwrap();
    assert_eq!(
        payload,
        format!("P 4 11 0 1 1 1 {at_ms};2 1 3 2 {at_ms};3 1 4 1 {at_ms}")
    );
}

#[test]
fn records_round_trip() {
    let p = parse_record(Seq(9), "3 4 15 -2 1764300000123").unwrap();
    assert_eq!(p.coord, Coord::new_unchecked(3, 4));
    assert_eq!(p.color.get(), 15);
    assert_eq!(p.user, UserId(u64::MAX - 1));
    assert_eq!(p.at_ms, 1_764_300_000_123);
    assert_eq!(parse_id("42-0"), Some(Seq(42)));
    assert!(parse_record(Seq(1), "3 4").is_none());
}
