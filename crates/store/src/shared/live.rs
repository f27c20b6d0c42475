//! The live state in Redis: the tiles, the canvas's size, the seq, the epoch, the recent-updates stream, the
//! cooldowns, the per-address limits and the idempotency records, and the scripts that
//! change them. The placement script executes the domain's policy with the parameters of
//! [`Params`], passed as arguments.
//!
//! Everything that changes more than one key is one Lua script, so it is atomic with
//! respect to every other instance; everything that reads more than one key is one
//! `MULTI`, so it sees one moment.

use super::keys::Keys;
use crate::{BackendError, NewPlacement, PlaceError, Placed, Service, StoreError};
use futures_util::Stream;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Client, Msg, RedisResult, Script};
use rplace_domain::board::Depth;
use rplace_domain::policy::{self, ChargeStatus, Params, Quota, UserState};
use rplace_domain::{
    ColorIndex, Coord, Dimensions, IdempotencyKey, Placement, Seq, Tile, TileId, UserId,
};
use std::time::Duration;

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
    /// Multiplexed connection for commands and scripts; reconnects by itself.
    pub(crate) conn: ConnectionManager,
    /// Opens the dedicated Pub/Sub connections of the feed.
    client: Client,
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
    /// Stream cap given to `XADD MAXLEN ~`.
    stream_capacity: u64,
    /// The placement script (EVALSHA, loaded again after a Redis restart).
    place: Script,
    /// The rebuild's install script.
    install: Script,
    /// Extends or releases the rebuild lock.
    lock: Script,
    /// Grows the canvas's size and announces it.
    grow: Script,
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
fn parse_place_reply(reply: &[i64], n: usize, policy: &Params) -> Option<Vec<PlaceOutcome>> {
    if reply == [3] {
        return Some(vec![PlaceOutcome::Missing; n]);
    }
    let [epoch, _now, outcomes @ ..] = reply else {
        return None;
    };
    if outcomes.len() != 5 * n {
        return None;
    }
    outcomes
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
        .collect()
}

/// `"<seq>-<n>"` to the seq.
fn parse_id(id: &str) -> Option<Seq> {
    id.split('-').next()?.parse().ok().map(Seq)
}

/// `script` with `lua/tile.lua` before it: the one place that says how a script that
/// paints creates a tile's key.
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
        prefix: &str,
        depth: Depth,
        policy: Params,
        idempotency_window: Duration,
        stream_capacity: u64,
    ) -> Result<Self, StoreError> {
        let shown = super::redact(url);
        let client = Client::open(url)
            .map_err(|e| StoreError::Config(format!("invalid Redis URL {shown}: {e}")))?;
        let unreachable = |source| StoreError::Connect {
            service: Service::Redis,
            url: shown.clone(),
            source,
        };
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2);
        let mut conn = tokio::time::timeout(
            timeout * 2,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| unreachable(BackendError::Timeout(Service::Redis)))?
        .map_err(|e| unreachable(BackendError::redis(e)))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(BackendError::redis(e)))?;
        Ok(Self {
            conn,
            client,
            timeout,
            keys: Keys::new(prefix),
            bitfield_type: match depth {
                Depth::Four => "u4",
                Depth::Eight => "u8",
            },
            depth,
            policy,
            idempotency_window_ms: (idempotency_window.as_millis() as u64).max(1),
            stream_capacity: stream_capacity.max(1),
            place: Script::new(&with_tile_prelude(include_str!("lua/place.lua"))),
            install: Script::new(include_str!("lua/install.lua")),
            lock: Script::new(include_str!("lua/lock.lua")),
            grow: Script::new(include_str!("lua/grow.lua")),
            unset: Script::new(
                "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end \
                 redis.call('DEL', KEYS[2], KEYS[3]) return 1",
            ),
        })
    }

    /// The multiplexed connection, for the commands of the other modules.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A connection of its own for one rewrite, whose chunk scripts of thousands of pixels
    /// may take longer than the shared connection's per-command bound on a busy Redis;
    /// `bound` replaces that bound for this connection only.
    pub async fn long_conn(
        &self,
        bound: Duration,
    ) -> Result<redis::aio::MultiplexedConnection, StoreError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(bound));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
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
            .arg(self.stream_capacity)
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
                .key(k.user_ban(p.user))
                .key(k.tile(tile))
                .key(k.tile_version(tile))
                .arg(tile.local_index(p.coord))
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
        parse_place_reply(&reply, batch.len(), &self.policy).ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "placement script reply",
                format!("{reply:?}"),
            ))
        })
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

    /// Writes rebuilt tiles (whole pixels and version), one pipeline.
    pub async fn write_tiles(&self, tiles: &[(TileId, Seq, Tile)]) -> RedisResult<()> {
        if tiles.is_empty() {
            return Ok(());
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
        let pattern = self.keys.tile_pattern();
        let mut cursor: u64 = 0;
        let mut n = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                n += keys.len() as u64;
                let () = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await?;
            }
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
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
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&self.keys.channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
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
mod tests {
    use super::*;

    #[test]
    fn batch_replies_parse() {
        let fixed = Params::new(
            rplace_domain::Cooldown::from_secs(1),
            rplace_domain::policy::AddrRate::OFF,
            rplace_domain::Ipv6Prefix::DEFAULT,
        );
        let out = parse_place_reply(
            &[
                7, 1000, 0, 41, 1000, 1300, 0, 1, 1500, 0, 0, 0, 2, 30, 0, 0, 0, 0, 42, 1000, 1300,
                0, 4, 9, 500, 800, 0,
            ],
            5,
            &fixed,
        )
        .unwrap();
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
            parse_place_reply(&[3], 2, &fixed).unwrap(),
            [PlaceOutcome::Missing, PlaceOutcome::Missing]
        );
        assert!(parse_place_reply(&[7, 1000, 0, 41, 1000, 1300, 0], 2, &fixed).is_none());
        assert!(parse_place_reply(&[7, 1000, 9, 41, 0, 0, 0], 1, &fixed).is_none());
        // In the charges model an accepted placement's pool comes from its arrival time.
        let pool = fixed.with_charges(rplace_domain::policy::Charges::new(3, 100).unwrap());
        let out = parse_place_reply(&[7, 1000, 0, 41, 1000, 1000, 1200], 1, &pool).unwrap();
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
            "t:",
            Depth::Four,
            Params::new(
                rplace_domain::Cooldown::from_secs(60),
                rplace_domain::policy::AddrRate::per_minute(1, 2),
                rplace_domain::Ipv6Prefix::DEFAULT,
            ),
            Duration::from_secs(600),
            100,
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
}
