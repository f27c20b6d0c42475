//! The live state in Redis: the tiles, the canvas's size, the seq, the epoch, the recent-updates stream, the
//! cooldowns, the per-address limits and the idempotency records, and the scripts that
//! change them. The placement script executes the domain's policy with the parameters of
//! [`Params`], passed as arguments.
//!
//! Everything that changes more than one key is one Lua script, so it is atomic with
//! respect to every other instance; everything that reads more than one key is one
//! `MULTI`, so it sees one moment. On a Redis Cluster that holds within a slot: the core
//! slot's script decides, then each tile is written in its own slot, and a read of tiles is
//! the core slot's moment followed by each tile's (see `shared/mod.rs`, "Redis Cluster").

use super::conn::{RedisConn, Target};
use super::keys::Keys;
use crate::{BackendError, NewPlacement, PlaceError, Placed, Service, StoreError};
use futures_util::{Stream, StreamExt};
use redis::{AsyncCommands, Msg, RedisResult, Script};
use rplace_domain::board::Depth;
use rplace_domain::policy::{self, ChargeStatus, Params, Quota, UserState};
use rplace_domain::{
    ColorIndex, Coord, Dimensions, IdempotencyKey, Placement, Seq, Tile, TileId, UserId,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod slots;
use slots::TILE_CALLS_IN_FLIGHT;
pub(crate) use slots::{LAGGING_CAP, TileWrite};

/// What the placement script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaceOutcome {
    /// On the board, in the stream and published; not yet in PostgreSQL.
    Accepted {
        seq: Seq,
        at_ms: i64,
        next_at_ms: i64,
        /// The state generation it was made in; the history write is fenced by it.
        epoch: u64,
        /// The pool left, in the charges model.
        charges: Option<ChargeStatus>,
    },
    Cooldown {
        next_at_ms: i64,
    },
    RateLimited {
        retry_after_ms: i64,
    },
    /// A repeat of an idempotency key: the first accepted attempt's outcome. Nothing was
    /// placed now; the first attempt may not be in PostgreSQL yet.
    Replayed {
        seq: Seq,
        at_ms: i64,
        next_at_ms: i64,
    },
    /// A ban applies; its reason is in the reasons hash.
    Banned {
        id: u64,
        until_ms: Option<i64>,
    },
    /// The pixel is protected and the placer is no moderator.
    Protected,
    /// The one-time proof was spent already.
    OnceSpent,
    /// The seq or epoch key is missing: the state must be rebuilt first.
    Missing,
}

impl PlaceOutcome {
    /// What the outcome answers by itself: the placement (`Accepted`, or `Replayed` for a
    /// repeated key), or the refusal. `Missing` means the state is being rebuilt.
    pub(crate) fn into_answer(self) -> Result<Placed, PlaceError> {
        match self {
            PlaceOutcome::Accepted {
                seq,
                at_ms,
                next_at_ms,
                charges,
                ..
            } => Ok(Placed {
                seq,
                at_ms,
                next_at_ms,
                charges,
                replayed: false,
            }),
            PlaceOutcome::Replayed {
                seq,
                at_ms,
                next_at_ms,
            } => Ok(Placed {
                seq,
                at_ms,
                next_at_ms,
                charges: None,
                replayed: true,
            }),
            PlaceOutcome::Cooldown { next_at_ms } => Err(PlaceError::Cooldown { next_at_ms }),
            PlaceOutcome::RateLimited { retry_after_ms } => {
                Err(PlaceError::RateLimited { retry_after_ms })
            }
            // The reason is looked up by the caller (`SharedStore::ban_reason`).
            PlaceOutcome::Banned { until_ms, .. } => Err(PlaceError::Banned {
                reason: String::new(),
                until_ms,
            }),
            PlaceOutcome::Protected => Err(PlaceError::Protected),
            PlaceOutcome::OnceSpent => Err(PlaceError::OnceSpent),
            PlaceOutcome::Missing => Err(BackendError::Rebuilding.into()),
        }
    }
}

/// The seq and its generation, read at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub epoch: u64,
    pub seq: Seq,
}

/// One tile as Redis holds it.
#[derive(Debug, Clone)]
pub(crate) struct LiveTile {
    /// The seq of the last placement on it; 0 if never painted.
    pub version: Seq,
    /// Its pixels, padded to a whole tile; `None` if it has no key.
    pub pixels: Option<Tile>,
}

/// Some tiles and the head they are consistent with, read at one moment.
#[derive(Debug, Clone)]
pub(crate) struct TilesRead {
    pub head: Head,
    /// In the order asked for.
    pub tiles: Vec<LiveTile>,
}

/// `"<width> <height>"` as Redis keeps the canvas's size.
pub(crate) fn parse_dims(s: &str) -> Option<Dimensions> {
    let (w, h) = s.split_once(' ')?;
    Dimensions::parse(w.parse().ok()?, h.parse().ok()?).ok()
}

/// A tile key's bytes as a whole tile: `BITFIELD` leaves a key only as long as its
/// highest write, so the rest is color 0. `None` if longer than a tile (not ours).
pub(crate) fn tile_from_key(depth: Depth, mut bytes: Vec<u8>) -> Option<Tile> {
    let len = Tile::len(depth);
    if bytes.len() > len {
        return None;
    }
    bytes.resize(len, 0);
    Tile::from_bytes(depth, bytes).ok()
}

/// A page of the stream, read together with the state it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct StreamPage {
    /// `None` when the state is missing (then the other fields mean nothing).
    pub epoch: Option<u64>,
    /// The newest seq at the moment of the read.
    pub seq: Seq,
    /// The canvas's size at the moment of the read, if Redis holds it.
    pub dims: Option<Dimensions>,
    /// Entries after the requested seq, oldest first.
    pub entries: Vec<Placement>,
    /// Redis's clock at the moment of the read, unix ms.
    pub now_ms: i64,
}

/// Which of the state keys exist, and whether a rebuild holds the lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    /// The seq, epoch and size keys all exist.
    pub complete: bool,
    pub rebuild_locked: bool,
    /// The canvas's size in Redis, if it is there.
    pub dims: Option<Dimensions>,
}

/// A handle to the live state. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Live {
    /// Multiplexed connection for commands and scripts; reconnects by itself (a cluster
    /// connection also follows the slots).
    pub(crate) conn: RedisConn,
    /// Where Redis is: opens the dedicated Pub/Sub connections of the feed and the
    /// rewrites' connections.
    target: Target,
    /// On a cluster: tiles whose writes failed or wait for a write that may never come,
    /// for the repair task to check (bounded by [`LAGGING_CAP`]).
    pub(crate) lagging: Arc<Mutex<HashSet<TileId>>>,
    /// Longest one command, or one connection attempt, may take: a stalled Redis must
    /// not hold a placement (or the health probe) for longer.
    timeout: Duration,
    /// Key names.
    pub keys: Keys,
    /// `u4` or `u8`, the BITFIELD type of one pixel.
    bitfield_type: &'static str,
    /// Bits per pixel, to read tiles back.
    depth: Depth,
    /// The policy's parameters, passed to the placement script.
    policy: Params,
    /// How long an idempotency key's outcome is kept, ms.
    idempotency_window_ms: u64,
    /// The placement script (EVALSHA, loaded again after a Redis restart).
    place: Script,
    /// The rebuild's install script.
    install: Script,
    /// Extends or releases the rebuild lock.
    lock: Script,
    /// Grows the canvas's size and announces it.
    grow: Script,
    /// On a cluster, writes placements to a tile in its slot.
    tile_apply: Script,
    /// Removes the seq and epoch (so nothing places) while the rebuild holds the lock.
    unset: Script,
}

pub(crate) fn parse_record(seq: Seq, rec: &str) -> Option<Placement> {
    let mut it = rec.split(' ');
    let x = it.next()?.parse().ok()?;
    let y = it.next()?.parse().ok()?;
    let color = it.next()?.parse().ok()?;
    let user: i64 = it.next()?.parse().ok()?;
    let at_ms = it.next()?.parse().ok()?;
    Some(Placement {
        seq,
        coord: Coord::new_unchecked(x, y),
        color: ColorIndex::new_unchecked(color),
        user: UserId(user as u64),
        at_ms,
    })
}

/// The placement script's reply for a batch of `n`; `None` if it is malformed. `policy`
/// turns an accepted placement's pool arrival time into the pool left.
/// On a cluster (`chained`) the outcomes are followed by each accepted placement's
/// predecessor on its tile, returned second.
fn parse_place_reply(
    reply: &[i64],
    n: usize,
    policy: &Params,
    chained: bool,
) -> Option<(Vec<PlaceOutcome>, Vec<Seq>)> {
    if reply == [3] {
        return Some((vec![PlaceOutcome::Missing; n], Vec::new()));
    }
    let [epoch, _now, rest @ ..] = reply else {
        return None;
    };
    if rest.len() < 5 * n {
        return None;
    }
    let (outcomes, prevs) = rest.split_at(5 * n);
    let accepted = outcomes.chunks_exact(5).filter(|o| o[0] == 0).count();
    if prevs.len() != if chained { accepted } else { 0 } {
        return None;
    }
    let prevs = prevs.iter().map(|&p| Seq(p as u64)).collect();
    let outcomes: Option<Vec<_>> = outcomes
        .chunks_exact(5)
        .map(|o| match *o {
            [0, seq, at_ms, next_at_ms, tat] => Some(PlaceOutcome::Accepted {
                seq: Seq(seq as u64),
                at_ms,
                next_at_ms,
                epoch: *epoch as u64,
                charges: policy
                    .quota(
                        UserState::default().with_tat((tat > 0).then_some(tat)),
                        at_ms,
                    )
                    .charges(),
            }),
            [1, next_at_ms, _, _, _] => Some(PlaceOutcome::Cooldown { next_at_ms }),
            [2, retry_after_ms, _, _, _] => Some(PlaceOutcome::RateLimited { retry_after_ms }),
            [4, seq, at_ms, next_at_ms, _] => Some(PlaceOutcome::Replayed {
                seq: Seq(seq as u64),
                at_ms,
                next_at_ms,
            }),
            [5, id, until, _, _] => Some(PlaceOutcome::Banned {
                id: id as u64,
                until_ms: (until >= 0).then_some(until),
            }),
            [6, _, _, _, _] => Some(PlaceOutcome::Protected),
            [7, _, _, _, _] => Some(PlaceOutcome::OnceSpent),
            _ => None,
        })
        .collect();
    Some((outcomes?, prevs))
}

/// `"<seq>-<n>"` to the seq.
fn parse_id(id: &str) -> Option<Seq> {
    id.split('-').next()?.parse().ok().map(Seq)
}

/// `script` with `lua/tile.lua` before it: the one place that says how a script paints
/// a tile (and creates its key).
pub(crate) fn with_tile_prelude(script: &str) -> String {
    format!("{}\n{script}", include_str!("lua/tile.lua"))
}

impl Live {
    /// Connects and checks that Redis answers; the error names the URL. Every command
    /// and connection attempt is bounded by `timeout`.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        url: &str,
        timeout: Duration,
        cluster: bool,
        prefix: &str,
        depth: Depth,
        policy: Params,
        idempotency_window: Duration,
    ) -> Result<Self, StoreError> {
        let shown = super::redact(url);
        let target = Target::parse(url, cluster)
            .map_err(|e| StoreError::Config(format!("invalid Redis URL {shown}: {e}")))?;
        let unreachable = |source| StoreError::Connect {
            service: Service::Redis,
            url: shown.clone(),
            source,
        };
        let mut conn = tokio::time::timeout(timeout * 2, target.connect(timeout, timeout, 2))
            .await
            .map_err(|_| unreachable(BackendError::Timeout(Service::Redis)))?
            .map_err(|e| unreachable(BackendError::redis(e)))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(BackendError::redis(e)))?;
        Ok(Self {
            conn,
            target,
            lagging: Arc::default(),
            timeout,
            keys: Keys::new(prefix, cluster),
            bitfield_type: match depth {
                Depth::Four => "u4",
                Depth::Eight => "u8",
            },
            depth,
            policy,
            idempotency_window_ms: (idempotency_window.as_millis() as u64).max(1),
            place: Script::new(&with_tile_prelude(include_str!("lua/place.lua"))),
            install: Script::new(include_str!("lua/install.lua")),
            lock: Script::new(include_str!("lua/lock.lua")),
            grow: Script::new(include_str!("lua/grow.lua")),
            tile_apply: Script::new(&with_tile_prelude(include_str!("lua/tile_apply.lua"))),
            unset: Script::new(
                "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
                 redis.call('DEL', KEYS[2], KEYS[3]) return 1",
            ),
        })
    }

    /// The multiplexed connection, for the commands of the other modules.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Whether Redis is a cluster (the tiles in slots of their own).
    pub fn clustered(&self) -> bool {
        self.conn.is_cluster()
    }

    /// A connection of its own for one rewrite, whose chunk scripts of thousands of pixels
    /// may take longer than the shared connection's per-command bound on a busy Redis;
    /// `bound` replaces that bound for this connection only.
    pub async fn long_conn(&self, bound: Duration) -> Result<RedisConn, StoreError> {
        self.target
            .dedicated(self.timeout, bound)
            .await
            .map_err(|e| BackendError::redis(e).into())
    }

    /// The per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs the placement script for one placement.
    pub async fn place(&self, p: &NewPlacement) -> RedisResult<PlaceOutcome> {
        let mut out = self.place_batch(std::slice::from_ref(p)).await?;
        Ok(out.pop().expect("one outcome per placement"))
    }

    /// Runs the placement script once for `batch`, deciding its placements in order as if
    /// they came one by one; one outcome per placement, in the same order.
    pub async fn place_batch(&self, batch: &[NewPlacement]) -> RedisResult<Vec<PlaceOutcome>> {
        let (outcomes, writes) = self.decide_batch(batch).await?;
        // On a cluster the placements are decided and in the stream: a tile write that
        // fails leaves its tile behind, for the repair, and does not undo them.
        if !writes.is_empty() {
            self.write_to_tiles(&mut self.conn.clone(), &writes).await;
        }
        Ok(outcomes)
    }

    /// The placement script alone: the outcomes, and on a cluster the tile writes still
    /// to be made (empty on one redis-server, where the script wrote the tiles).
    pub async fn decide_batch(
        &self,
        batch: &[NewPlacement],
    ) -> RedisResult<(Vec<PlaceOutcome>, Vec<TileWrite>)> {
        let k = &self.keys;
        let mut inv = self.place.prepare_invoke();
        inv.key(&k.dims)
            .key(&k.seq)
            .key(&k.epoch)
            .key(&k.clock)
            .key(&k.stream)
            .key(&k.ban_lens)
            .key(&k.protected_tiles)
            .arg(self.bitfield_type)
            .arg(self.policy.cooldown().as_millis())
            .arg(self.policy.addr_rate().period_us())
            .arg(self.policy.addr_rate().tolerance_us())
            .arg(if self.clustered() { "1" } else { "0" })
            .arg(&k.channel)
            .arg(self.idempotency_window_ms)
            .arg(self.policy.account_rate().period_us())
            .arg(self.policy.account_rate().tolerance_us())
            .arg(policy::ONCE_TTL_MS)
            .arg(&k.ban_net_prefix)
            .arg(super::moderation::TILE)
            .arg(self.policy.charges().map_or(0, |c| c.every_ms()))
            .arg(self.policy.charges().map_or(0, |c| c.tolerance_ms()));
        let flag = |b: bool| if b { "1" } else { "0" };
        for p in batch {
            let tile = TileId::of(p.coord);
            inv.key(self.user_key(p.user))
                .key(k.ip(self.policy.addr_key(p.ip)))
                .key(k.idempotency(p.user, p.idempotency_key.as_ref()))
                .key(k.once(p.standing.once.as_ref()))
                .key(k.user_ban(p.user));
            if self.clustered() {
                inv.key(&k.tiles_last).key(&k.tiles_last);
            } else {
                inv.key(k.tile(tile)).key(k.tile_version(tile));
            }
            inv.arg(tile.local_index(p.coord))
                .arg(p.color.get())
                .arg(p.coord.x())
                .arg(p.coord.y())
                .arg(p.user.0 as i64)
                .arg(flag(p.bypass_limits))
                .arg(flag(p.idempotency_key.is_some()))
                .arg(flag(p.standing.once.is_some()))
                .arg(flag(p.standing.moderator))
                .arg(flag(p.standing.account))
                .arg(policy::hex_addr(p.ip));
        }
        let reply: Vec<i64> = inv.invoke_async(&mut self.conn.clone()).await?;
        let (outcomes, prevs) =
            parse_place_reply(&reply, batch.len(), &self.policy, self.clustered()).ok_or_else(
                || {
                    redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "placement script reply",
                        format!("{reply:?}"),
                    ))
                },
            )?;
        let mut writes = Vec::new();
        if self.clustered() {
            let accepted = batch.iter().zip(&outcomes).filter_map(|(p, o)| match o {
                PlaceOutcome::Accepted { seq, .. } => Some((p, *seq)),
                _ => None,
            });
            writes = accepted
                .zip(prevs)
                .map(|((p, seq), prev)| {
                    let tile = TileId::of(p.coord);
                    TileWrite {
                        tile,
                        prev,
                        seq,
                        index: tile.local_index(p.coord) as u32,
                        color: p.color.get(),
                    }
                })
                .collect();
        }
        Ok((outcomes, writes))
    }

    /// The reason of ban `id`, if Redis holds the ban.
    pub async fn ban_reason(&self, id: u64) -> RedisResult<Option<String>> {
        self.conn.clone().hget(&self.keys.ban_reasons, id).await
    }

    /// Seq and epoch at one moment; `None` if either is missing. Reads nothing of the
    /// canvas, however large.
    pub async fn head(&self) -> RedisResult<Option<Head>> {
        let k = &self.keys;
        let (seq, epoch): (Option<u64>, Option<u64>) = redis::pipe()
            .atomic()
            .get(&k.seq)
            .get(&k.epoch)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(match (seq, epoch) {
            (Some(seq), Some(epoch)) => Some(Head {
                epoch,
                seq: Seq(seq),
            }),
            _ => None,
        })
    }

    /// The tiles `ids` (pixels and versions) with the seq and epoch, at one moment (one
    /// `MULTI` with two `MGET`s); `None` if the state is missing.
    pub async fn tiles(&self, ids: &[TileId]) -> RedisResult<Option<TilesRead>> {
        if self.clustered() {
            return self.tiles_in_slots(ids).await;
        }
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic().get(&k.seq).get(&k.epoch);
        if !ids.is_empty() {
            pipe.cmd("MGET")
                .arg(ids.iter().map(|&id| k.tile(id)).collect::<Vec<_>>());
            pipe.cmd("MGET")
                .arg(ids.iter().map(|&id| k.tile_version(id)).collect::<Vec<_>>());
        }
        let mut conn = self.conn.clone();
        type Reply = (
            Option<u64>,
            Option<u64>,
            Vec<Option<Vec<u8>>>,
            Vec<Option<u64>>,
        );
        let (seq, epoch, pixels, versions): Reply = if ids.is_empty() {
            let (seq, epoch) = pipe.query_async(&mut conn).await?;
            (seq, epoch, Vec::new(), Vec::new())
        } else {
            pipe.query_async(&mut conn).await?
        };
        let (Some(seq), Some(epoch)) = (seq, epoch) else {
            return Ok(None);
        };
        let mut tiles = Vec::with_capacity(ids.len());
        for (i, (bytes, version)) in pixels.into_iter().zip(versions).enumerate() {
            let pixels = match bytes {
                Some(b) => Some(tile_from_key(self.depth, b).ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "a tile key longer than a tile",
                        k.tile(ids[i]),
                    ))
                })?),
                None => None,
            };
            tiles.push(LiveTile {
                version: Seq(version.unwrap_or(0)),
                pixels,
            });
        }
        Ok(Some(TilesRead {
            head: Head {
                epoch,
                seq: Seq(seq),
            },
            tiles,
        }))
    }

    /// Writes rebuilt tiles (whole pixels and version), one pipeline; on a cluster one
    /// `MULTI` per tile in its slot, and the tiles' last seqs in the core slot.
    pub async fn write_tiles(&self, tiles: &[(TileId, Seq, Tile)]) -> RedisResult<()> {
        if tiles.is_empty() {
            return Ok(());
        }
        if self.clustered() {
            let k = &self.keys;
            let pipes: Vec<redis::Pipeline> = tiles
                .iter()
                .map(|(id, version, tile)| {
                    let mut pipe = redis::pipe();
                    pipe.atomic()
                        .set(k.tile(*id), tile.as_bytes())
                        .ignore()
                        .set(k.tile_version(*id), version.0)
                        .ignore()
                        .del(k.tile_pending(*id))
                        .ignore();
                    pipe
                })
                .collect();
            let written: Vec<RedisResult<()>> = futures_util::stream::iter(pipes)
                .map(|pipe| {
                    let mut conn = self.conn.clone();
                    async move { pipe.query_async(&mut conn).await }
                })
                .buffer_unordered(TILE_CALLS_IN_FLIGHT)
                .collect()
                .await;
            written.into_iter().collect::<RedisResult<Vec<()>>>()?;
            let fields: Vec<(String, u64)> = tiles
                .iter()
                .map(|(id, v, _)| (Keys::tile_field(*id), v.0))
                .collect();
            return redis::cmd("HSET")
                .arg(&k.tiles_last)
                .arg(fields)
                .query_async(&mut self.conn.clone())
                .await;
        }
        let mut pipe = redis::pipe();
        for (id, version, tile) in tiles {
            pipe.set(self.keys.tile(*id), tile.as_bytes())
                .ignore()
                .set(self.keys.tile_version(*id), version.0)
                .ignore();
        }
        pipe.query_async(&mut self.conn.clone()).await
    }

    /// Deletes every tile key of this prefix (`SCAN` + `UNLINK`): before a rebuild writes
    /// the history's tiles, so that none of a replaced state is left. Also the whole-board
    /// key of the layout before tiles (`<prefix>board`), so that an upgraded Redis does not
    /// keep it. Returns how many tile keys it deleted.
    pub async fn clear_tiles(&self) -> RedisResult<u64> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("UNLINK")
            .arg(&self.keys.legacy_board)
            .query_async(&mut conn)
            .await?;
        let keys = conn.scan_keys(&self.keys.tile_pattern()).await?;
        let n = keys.len() as u64;
        if self.clustered() {
            // A multi-key UNLINK may only name keys of one slot.
            let _: i64 = conn.del(&self.keys.tiles_last).await?;
            let gone: Vec<RedisResult<i64>> = futures_util::stream::iter(keys)
                .map(|key| {
                    let mut conn = conn.clone();
                    async move { redis::cmd("UNLINK").arg(key).query_async(&mut conn).await }
                })
                .buffer_unordered(TILE_CALLS_IN_FLIGHT)
                .collect()
                .await;
            gone.into_iter().collect::<RedisResult<Vec<i64>>>()?;
        } else {
            for page in keys.chunks(1000) {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(page)
                    .query_async(&mut conn)
                    .await?;
            }
        }
        Ok(n)
    }

    /// Removes the seq and epoch if `token` holds the rebuild lock, so that no placement
    /// is decided on the state being rebuilt.
    pub async fn unset_state(&self, token: &str) -> RedisResult<bool> {
        let k = &self.keys;
        let done: i64 = self
            .unset
            .key(&k.rebuild_lock)
            .key(&k.seq)
            .key(&k.epoch)
            .arg(token)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(done == 1)
    }

    /// Grows the size Redis holds to at least `to` on each axis and announces a change on
    /// the channel; answers the size in force.
    pub async fn grow(&self, to: Dimensions) -> RedisResult<Dimensions> {
        let k = &self.keys;
        let (w, h): (u64, u64) = self
            .grow
            .key(&k.dims)
            .key(&k.epoch)
            .arg(to.width())
            .arg(to.height())
            .arg(&k.channel)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Dimensions::parse(w, h).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the canvas size in Redis",
                e.to_string(),
            ))
        })
    }

    /// Up to `count` stream entries after `after`, with the epoch, seq and clock of the
    /// same moment.
    pub async fn read_after(&self, after: Seq, count: usize) -> RedisResult<StreamPage> {
        let k = &self.keys;
        type Entry = (String, Vec<String>);
        #[allow(clippy::type_complexity)]
        let (epoch, seq, dims, entries, time): (
            Option<u64>,
            Option<u64>,
            Option<String>,
            Vec<Entry>,
            (u64, u64),
        ) = redis::pipe()
            .atomic()
            .get(&k.epoch)
            .get(&k.seq)
            .get(&k.dims)
            .cmd("XRANGE")
            .arg(&k.stream)
            .arg(format!("{}-0", after.0 + 1))
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1))
            .cmd("TIME")
            .query_async(&mut self.conn.clone())
            .await?;
        let mut out = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let rec = fields
                .chunks(2)
                .find(|kv| kv[0] == "p")
                .and_then(|kv| kv.get(1));
            let p = parse_id(&id).and_then(|seq| rec.and_then(|r| parse_record(seq, r)));
            match p {
                Some(p) => out.push(p),
                None => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "malformed stream entry",
                        format!("{id} {fields:?}"),
                    )));
                }
            }
        }
        Ok(StreamPage {
            epoch: if seq.is_some() { epoch } else { None },
            seq: Seq(seq.unwrap_or(0)),
            dims: dims.as_deref().and_then(parse_dims),
            entries: out,
            now_ms: (time.0 * 1000 + time.1 / 1000) as i64,
        })
    }

    /// Which state keys exist; one round trip, also the health probe.
    pub async fn status(&self) -> RedisResult<Status> {
        let k = &self.keys;
        let (present, locked, dims): (usize, bool, Option<String>) = redis::pipe()
            .exists(&[&k.seq, &k.epoch, &k.dims])
            .exists(&k.rebuild_lock)
            .get(&k.dims)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Status {
            complete: present == 3,
            rebuild_locked: locked,
            dims: dims.as_deref().and_then(parse_dims),
        })
    }

    /// The newest seq, if the state exists.
    pub async fn seq(&self) -> RedisResult<Option<Seq>> {
        let seq: Option<u64> = self.conn.clone().get(&self.keys.seq).await?;
        Ok(seq.map(Seq))
    }

    /// The key of `user`'s state for the user rule in force: the last placement's time
    /// in the fixed model, the pool's arrival time in the charges model (both expire when
    /// they stop mattering).
    pub fn user_key(&self, user: UserId) -> String {
        match self.policy.charges() {
            Some(_) => self.keys.charges(user),
            None => self.keys.cooldown(user),
        }
    }

    /// What `user` may do now, by the policy, from their key while it is alive, at
    /// Redis's clock (the one the script decides by).
    pub async fn user_quota(&self, user: UserId) -> RedisResult<Quota> {
        let key = self.user_key(user);
        let (value, pttl, (secs, micros)): (Option<i64>, i64, (i64, i64)) = redis::pipe()
            .get(&key)
            .pttl(&key)
            .cmd("TIME")
            .query_async(&mut self.conn.clone())
            .await?;
        let now = secs * 1000 + micros / 1000;
        let value = value.filter(|_| pttl > 0);
        let state = match self.policy.charges() {
            Some(_) => UserState::default().with_tat(value),
            None => UserState::new(value),
        };
        Ok(self.policy.quota(state, now))
    }

    /// Takes the rebuild lock for `ttl` if nobody holds it.
    pub async fn try_lock(&self, token: &str, ttl: Duration) -> RedisResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(&self.keys.rebuild_lock)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// Extends the rebuild lock by `ttl` (or releases it with `None`) if `token` holds it.
    pub async fn renew_lock(&self, token: &str, ttl: Option<Duration>) -> RedisResult<bool> {
        let held: i64 = self
            .lock
            .key(&self.keys.rebuild_lock)
            .arg(token)
            .arg(ttl.map(|t| t.as_millis() as u64).unwrap_or(0))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(held == 1)
    }

    /// Completes a rebuild whose tiles are written, if `token` still holds the lock: the
    /// seq, epoch, clock and size (never below what Redis holds); releases the lock and
    /// announces the new epoch on the channel.
    pub async fn install(
        &self,
        token: &str,
        epoch: u64,
        seq: Seq,
        dims: Dimensions,
        clock_ms: i64,
    ) -> RedisResult<bool> {
        let k = &self.keys;
        let done: i64 = self
            .install
            .key(&k.rebuild_lock)
            .key(&k.seq)
            .key(&k.epoch)
            .key(&k.clock)
            .key(&k.stream)
            .key(&k.dims)
            .arg(token)
            .arg(seq.0)
            .arg(epoch)
            .arg(clock_ms)
            .arg(&k.channel)
            .arg(dims.width())
            .arg(dims.height())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(done == 1)
    }

    /// How far back [`Live::restore_cooldowns`] needs users' last placements: the cooldown,
    /// or in the charges model one charge's regain time.
    pub fn restore_window_ms(&self) -> i64 {
        match self.policy.charges() {
            Some(c) => c.every_ms(),
            None => self.policy.cooldown().as_millis(),
        }
    }

    /// Sets the user keys of users who placed at the given times, unless they exist; those
    /// whose state is over by Redis's clock are skipped. Returns how many it set. In the
    /// charges model only the last placement is known: its charge is spent
    /// (`Charges::recorded`), earlier ones count as regained, so a rebuilt pool is at most
    /// as full as it was, plus the charges spent before the last placement.
    pub async fn restore_cooldowns(&self, last: &[(UserId, i64)]) -> RedisResult<usize> {
        let cooldown_ms = self.policy.cooldown().as_millis();
        let charges = self.policy.charges();
        if (cooldown_ms <= 0 && charges.is_none()) || last.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now = secs * 1000 + micros / 1000;
        let mut set = 0;
        for chunk in last.chunks(10_000) {
            let mut pipe = redis::pipe();
            for &(user, at) in chunk {
                // The value and when it stops mattering.
                let (value, until) = match charges {
                    Some(c) => {
                        let tat = c.recorded(None, at);
                        (tat, tat)
                    }
                    None => (at, at + cooldown_ms),
                };
                let left = until - now;
                if left > 0 {
                    pipe.cmd("SET")
                        .arg(self.user_key(user))
                        .arg(value)
                        .arg("PX")
                        .arg(left)
                        .arg("NX")
                        .ignore();
                    set += 1;
                }
            }
            let () = pipe.query_async(&mut conn).await?;
        }
        Ok(set)
    }

    /// Deletes `user`'s record of `key`, so that a repeat is decided afresh: for a first
    /// attempt that turned out not to be kept.
    pub async fn forget_idempotency(&self, user: UserId, key: &IdempotencyKey) -> RedisResult<()> {
        self.conn
            .clone()
            .del(self.keys.idempotency(user, Some(key)))
            .await
    }

    /// A new Pub/Sub connection subscribed to the placement channel.
    pub async fn subscribe(&self) -> RedisResult<impl Stream<Item = Msg> + Unpin + Send + use<>> {
        // On a cluster any node hears every PUBLISH: the first that answers.
        let connect = async {
            let mut last = None;
            for client in self.target.pubsub_clients() {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        pubsub.subscribe(&self.keys.channel).await?;
                        return Ok(pubsub.into_on_message());
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no Redis node"))
            }))
        };
        tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "Pub/Sub connect timed out",
                ))
            })?
    }
}

#[cfg(test)]
mod tests;
