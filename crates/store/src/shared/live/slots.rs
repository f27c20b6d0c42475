//! On a Redis Cluster, the tiles in their own slots: writing the placements the core
//! slot decided to their tiles (`lua/tile_apply.lua`), reading tiles with how far each is
//! complete, and what the repair (`shared/cluster.rs`) needs.

use super::*;

/// On a Redis Cluster, one placement's write to its tile, in the tile's slot (see
/// `lua/tile_apply.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TileWrite {
    pub tile: TileId,
    /// The seq of the placement before it on the tile (0: none), as the core slot chained
    /// them.
    pub prev: Seq,
    pub seq: Seq,
    pub index: u32,
    pub color: u8,
}

/// Tile writes that one script call may carry, and tiles written at once.
const TILE_WRITES_PER_CALL: usize = 4096;
pub(super) const TILE_CALLS_IN_FLIGHT: usize = 32;
/// Tiles that may wait for a repair check (`shared/cluster.rs`); past it a lagging tile is
/// still found by the next read of it.
pub(crate) const LAGGING_CAP: usize = 65_536;

impl Live {
    /// On a cluster: writes `writes` (in seq order) to their tiles, one script call per
    /// tile, several tiles at once. Tiles whose call fails, or that wait for a write
    /// from elsewhere, are noted in [`Live::lagging`] for the repair task.
    pub async fn write_to_tiles(&self, conn: &mut RedisConn, writes: &[TileWrite]) {
        let mut by_tile: HashMap<TileId, Vec<TileWrite>> = HashMap::new();
        for w in writes {
            by_tile.entry(w.tile).or_default().push(*w);
        }
        let mut calls: Vec<(TileId, Vec<TileWrite>)> = Vec::with_capacity(by_tile.len());
        for (tile, ws) in by_tile {
            for part in ws.chunks(TILE_WRITES_PER_CALL) {
                calls.push((tile, part.to_vec()));
            }
        }
        let results: Vec<(TileId, RedisResult<(u64, u64)>)> = futures_util::stream::iter(calls)
            .map(|(tile, part)| self.write_one_tile(conn.clone(), tile, part))
            .buffer_unordered(TILE_CALLS_IN_FLIGHT)
            .collect()
            .await;
        for (tile, res) in results {
            match res {
                Ok((_, 0)) => {}
                Ok((_, waiting)) => {
                    tracing::debug!(?tile, waiting, "tile writes wait for an earlier one");
                    self.note_lagging(tile);
                }
                Err(e) => {
                    metrics::counter!("rplace_store_tile_write_failures_total").increment(1);
                    tracing::warn!(?tile, error = %e, "a tile write failed; the repair will redo it");
                    self.note_lagging(tile);
                }
            }
        }
    }

    /// One `tile_apply.lua` call: `part`'s writes to `tile`; answers its version and how
    /// many writes wait.
    async fn write_one_tile(
        &self,
        mut conn: RedisConn,
        tile: TileId,
        part: Vec<TileWrite>,
    ) -> (TileId, RedisResult<(u64, u64)>) {
        let k = &self.keys;
        let mut inv = self.tile_apply.prepare_invoke();
        inv.key(k.tile(tile))
            .key(k.tile_version(tile))
            .key(k.tile_pending(tile))
            .arg(self.bitfield_type)
            .arg(0)
            .arg("")
            .arg(0)
            .arg("0");
        for w in &part {
            inv.arg(w.prev.0).arg(w.seq.0).arg(w.index).arg(w.color);
        }
        (tile, inv.invoke_async(&mut conn).await)
    }

    /// Notes `tile` for the repair task, unless [`LAGGING_CAP`] tiles wait already.
    pub fn note_lagging(&self, tile: TileId) {
        let mut set = self.lagging.lock().expect("lagging tiles");
        if set.len() < LAGGING_CAP {
            set.insert(tile);
        }
    }

    /// On a cluster: installs `pixels` as tile `id` at `version` (rebuilt from the
    /// history) unless the tile is there already, and applies the writes that waited for
    /// it. Answers the tile's version after.
    pub async fn repair_tile(&self, id: TileId, version: Seq, pixels: &Tile) -> RedisResult<Seq> {
        let k = &self.keys;
        let (v, _waiting): (u64, u64) = self
            .tile_apply
            .key(k.tile(id))
            .key(k.tile_version(id))
            .key(k.tile_pending(id))
            .arg(self.bitfield_type)
            .arg(version.0)
            .arg(pixels.as_bytes())
            .arg(0)
            .arg("0")
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Seq(v))
    }

    /// Each tile's version (0: none), each read in its slot.
    pub async fn tile_versions(&self, ids: &[TileId]) -> RedisResult<Vec<Seq>> {
        let keys: Vec<String> = ids.iter().map(|&id| self.keys.tile_version(id)).collect();
        let read: Vec<RedisResult<Option<u64>>> = futures_util::stream::iter(keys)
            .map(|key| {
                let mut conn = self.conn.clone();
                async move { conn.get(key).await }
            })
            .buffered(TILE_CALLS_IN_FLIGHT)
            .collect()
            .await;
        read.into_iter()
            .map(|v| v.map(|v| Seq(v.unwrap_or(0))))
            .collect()
    }

    /// On a cluster: the core slot's last seq of each tile of `ids` (0: never painted).
    pub async fn tiles_last(&self, ids: &[TileId]) -> RedisResult<Vec<Seq>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = ids.iter().map(|&id| Keys::tile_field(id)).collect();
        let last: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(&self.keys.tiles_last)
            .arg(fields)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(last.into_iter().map(|v| Seq(v.unwrap_or(0))).collect())
    }

    /// On a cluster, [`Live::tiles`] in two steps: the seq, epoch and the tiles' last seqs
    /// in the core slot (one `MULTI`), then each tile in its slot. A tile may then hold
    /// placements after the seq read (harmless: they are also newer than it), or lag behind
    /// its last seq (a write in flight, or lost): then the head's seq is lowered to the
    /// lagging tile's version, so that whoever replays from it misses nothing, and the tile
    /// is noted for the repair.
    pub(super) async fn tiles_in_slots(&self, ids: &[TileId]) -> RedisResult<Option<TilesRead>> {
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic().get(&k.seq).get(&k.epoch);
        let (seq, epoch, last): (Option<u64>, Option<u64>, Vec<Option<u64>>) = if ids.is_empty() {
            let (seq, epoch) = pipe.query_async(&mut self.conn.clone()).await?;
            (seq, epoch, Vec::new())
        } else {
            pipe.cmd("HMGET").arg(&k.tiles_last).arg(
                ids.iter()
                    .map(|&id| Keys::tile_field(id))
                    .collect::<Vec<_>>(),
            );
            pipe.query_async(&mut self.conn.clone()).await?
        };
        let (Some(seq), Some(epoch)) = (seq, epoch) else {
            return Ok(None);
        };
        let pipes: Vec<redis::Pipeline> = ids
            .iter()
            .map(|&id| {
                let mut pipe = redis::pipe();
                pipe.atomic().get(k.tile(id)).get(k.tile_version(id));
                pipe
            })
            .collect();
        /// A tile's pixels and version.
        type Read = RedisResult<(Option<Vec<u8>>, Option<u64>)>;
        let reads: Vec<Read> = futures_util::stream::iter(pipes)
            .map(|pipe| {
                let mut conn = self.conn.clone();
                async move { pipe.query_async(&mut conn).await }
            })
            .buffered(TILE_CALLS_IN_FLIGHT)
            .collect()
            .await;
        let mut through = seq;
        let mut tiles = Vec::with_capacity(ids.len());
        for ((&id, read), last) in ids.iter().zip(reads).zip(last) {
            let (bytes, version) = read?;
            let version = version.unwrap_or(0);
            if version < last.unwrap_or(0) {
                through = through.min(version);
                self.note_lagging(id);
            }
            let pixels = match bytes {
                Some(b) => Some(tile_from_key(self.depth, b).ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "a tile key longer than a tile",
                        k.tile(id),
                    ))
                })?),
                None => None,
            };
            tiles.push(LiveTile {
                version: Seq(version),
                pixels,
            });
        }
        Ok(Some(TilesRead {
            head: Head {
                epoch,
                seq: Seq(through),
            },
            tiles,
        }))
    }
}
