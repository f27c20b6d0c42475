//! How a client keeps one tile exact (docs/API.md, Tiles, "the client rule"), as a state
//! machine without sockets or clocks: it is fed the tile frames (0x02) of its websocket
//! view, the body of `GET /api/tiles/{tx}/{ty}` with its `X-Tile-Version`, and the bodies
//! of `GET /api/tiles/{tx}/{ty}/updates?since=k`, and says what to fetch next.
//!
//! - Know version `k` of the tile (from `X-Tile-Version`); until the tile is there, frames
//!   are buffered.
//! - A frame with `prev <= k`: apply its entries with version > k.
//! - A frame with `prev > k`: placements were missed; fetch `/updates?since=k` first, then
//!   the frame.
//! - After a reconnect: send the view again and catch up from `k`.

use crate::board::Depth;
use crate::placement::Seq;
use crate::tile::{Tile, TileId, TileLengthError};
use crate::wire::{FrameError, TileFrame, decode_tile_frame, split_tile_frames};

/// What to fetch next for the tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileFetch {
    /// `GET /api/tiles/{tx}/{ty}` (then [`TileSync::on_tile`]).
    Tile,
    /// `GET /api/tiles/{tx}/{ty}/updates?since={since}` (then [`TileSync::on_updates`]).
    Updates { since: Seq },
}

/// A body or frame that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TileSyncError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Length(#[from] TileLengthError),
    #[error("a frame of tile ({0}, {1}) reached the state of another tile")]
    OtherTile(u32, u32),
}

/// One tile kept exact.
#[derive(Debug, Clone)]
pub struct TileSync {
    /// Which tile.
    id: TileId,
    /// Its pixels and version once fetched.
    have: Option<(Seq, Tile)>,
    /// Frames waiting for the tile or for a catch-up, in arrival order.
    waiting: Vec<TileFrame>,
}

impl TileSync {
    pub fn new(id: TileId) -> Self {
        Self {
            id,
            have: None,
            waiting: Vec::new(),
        }
    }

    pub fn id(&self) -> TileId {
        self.id
    }

    /// The version applied, once the tile is there.
    pub fn version(&self) -> Option<Seq> {
        self.have.as_ref().map(|(v, _)| *v)
    }

    /// The tile, once fetched.
    pub fn tile(&self) -> Option<&Tile> {
        self.have.as_ref().map(|(_, t)| t)
    }

    /// A websocket frame of this tile arrived.
    pub fn on_frame(&mut self, frame: &[u8]) -> Result<Option<TileFetch>, TileSyncError> {
        let f = decode_tile_frame(frame)?;
        if f.tile != self.id {
            return Err(TileSyncError::OtherTile(f.tile.tx(), f.tile.ty()));
        }
        self.waiting.push(f);
        Ok(self.drain())
    }

    /// The body of `GET /api/tiles/{tx}/{ty}` and its `X-Tile-Version`.
    pub fn on_tile(
        &mut self,
        depth: Depth,
        body: &[u8],
        version: Seq,
    ) -> Result<Option<TileFetch>, TileSyncError> {
        let tile = Tile::from_bytes(depth, body.to_vec())?;
        self.have = Some((version, tile));
        Ok(self.drain())
    }

    /// The body of `GET .../updates?since=k` (k the version when it was asked for).
    pub fn on_updates(&mut self, body: &[u8]) -> Result<Option<TileFetch>, TileSyncError> {
        for f in split_tile_frames(body)? {
            if f.tile != self.id {
                return Err(TileSyncError::OtherTile(f.tile.tx(), f.tile.ty()));
            }
            self.apply(&f);
        }
        // Frames still ahead of the catch-up wait for the next one.
        Ok(self.drain())
    }

    /// What to fetch now, if anything: the tile, or a catch-up.
    pub fn next_fetch(&self) -> Option<TileFetch> {
        match &self.have {
            None => Some(TileFetch::Tile),
            Some((k, _)) => self
                .waiting
                .first()
                .filter(|f| f.prev > *k)
                .map(|_| TileFetch::Updates { since: *k }),
        }
    }

    /// Applies waiting frames in order until one starts after a gap.
    fn drain(&mut self) -> Option<TileFetch> {
        // Without the tile, frames wait and the tile is what to fetch.
        let Some((k, _)) = self.have.as_ref() else {
            return self.next_fetch();
        };
        let mut k = *k;
        let mut waiting = std::mem::take(&mut self.waiting).into_iter();
        for f in waiting.by_ref() {
            if f.prev > k {
                self.waiting.push(f);
                break;
            }
            self.apply(&f);
            k = self.version().unwrap_or(k);
        }
        self.waiting.extend(waiting);
        self.next_fetch()
    }

    /// Applies the entries of `f` newer than the version held.
    fn apply(&mut self, f: &TileFrame) {
        let Some((k, tile)) = &mut self.have else {
            return;
        };
        for u in &f.updates {
            if u.version > *k {
                tile.set(u.index, u.color);
                *k = u.version;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::palette::ColorIndex;
    use crate::wire::{TileUpdate, encode_tile_frame};

    fn up(v: u64, i: u16, c: u8) -> TileUpdate {
        TileUpdate {
            version: Seq(v),
            index: i,
            color: ColorIndex::new_unchecked(c),
        }
    }

    #[test]
    fn buffered_frames_apply_after_the_tile_and_gaps_ask_for_updates() {
        let id = TileId::new_unchecked(3, 4);
        let mut s = TileSync::new(id);
        assert_eq!(s.next_fetch(), Some(TileFetch::Tile));
        // A frame before the tile: buffered.
        let f1 = encode_tile_frame(id, Seq(5), &[up(8, 1, 2)]);
        assert_eq!(s.on_frame(&f1).unwrap(), Some(TileFetch::Tile));
        // The tile at version 5: the frame follows it.
        let blank = Tile::new(Depth::Four).into_bytes();
        assert_eq!(s.on_tile(Depth::Four, &blank, Seq(5)).unwrap(), None);
        assert_eq!(s.version(), Some(Seq(8)));
        assert_eq!(s.tile().unwrap().get(1).get(), 2);
        // A frame after a gap: catch up from 8 first.
        let f3 = encode_tile_frame(id, Seq(12), &[up(15, 2, 3)]);
        assert_eq!(
            s.on_frame(&f3).unwrap(),
            Some(TileFetch::Updates { since: Seq(8) })
        );
        let body = encode_tile_frame(id, Seq(8), &[up(12, 1, 9)]);
        assert_eq!(s.on_updates(&body).unwrap(), None);
        assert_eq!(s.version(), Some(Seq(15)));
        assert_eq!(s.tile().unwrap().get(1).get(), 9);
        assert_eq!(s.tile().unwrap().get(2).get(), 3);
        // An old frame (a TTL-stale tile's overlap) changes nothing.
        assert_eq!(s.on_frame(&f1).unwrap(), None);
        assert_eq!(s.tile().unwrap().get(1).get(), 9);
    }
}
