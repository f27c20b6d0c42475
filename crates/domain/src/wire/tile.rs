//! The tile frame: one tile's placements of one tick, for clients that named the tiles
//! they show (the websocket's `view` message) and the body of
//! `GET /api/tiles/{tx}/{ty}/updates`.
//!
//! ```text
//! offset  size  field
//! 0       1     kind = 0x02 (tile updates)
//! 1       4     tx, u32 little-endian
//! 5       4     ty, u32 little-endian
//! 9       8     prev, u64 LE: the tile's version before this frame (0: never painted)
//! 17      8     first, u64 LE: the version of the first entry
//! 25      4     count, u32 LE
//! 29      7*n   n entries: delta u32 LE (the entry's version is first + delta,
//!               increasing), i u16 LE (tile-local y * 256 + x), color u8
//! ```
//!
//! A tile's version is the seq of the last placement on it, so versions only grow. A
//! client that knows version `k` of a tile applies a frame whose `prev <= k` (its entries
//! newer than `k`); a frame with `prev > k` means it missed placements on the tile, which
//! it fetches first (`/updates?since=k`). The same bytes go to every subscriber of the
//! tile.

use super::FrameError;
use crate::palette::ColorIndex;
use crate::placement::Seq;
use crate::tile::TileId;

/// First byte of a tile frame.
pub const KIND_TILE: u8 = 0x02;
/// Bytes before the first entry.
pub const TILE_HEADER_LEN: usize = 29;
/// Bytes per entry.
pub const TILE_ENTRY_LEN: usize = 7;

/// One placement as a tile frame carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileUpdate {
    /// The placement's seq: the tile's version once it is applied.
    pub version: Seq,
    /// Tile-local pixel index.
    pub index: u16,
    pub color: ColorIndex,
}

/// A decoded tile frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileFrame {
    pub tile: TileId,
    /// The tile's version before the first entry.
    pub prev: Seq,
    /// In increasing version order.
    pub updates: Vec<TileUpdate>,
}

impl TileFrame {
    /// The tile's version after this frame.
    pub fn last(&self) -> Seq {
        self.updates.last().map_or(self.prev, |u| u.version)
    }
}

/// Encodes one tile's updates (increasing versions, at most 2^32 apart from the first)
/// that follow version `prev`.
pub fn encode_tile_frame(tile: TileId, prev: Seq, updates: &[TileUpdate]) -> Vec<u8> {
    let first = updates.first().map_or(prev.0, |u| u.version.0);
    let mut out = Vec::with_capacity(TILE_HEADER_LEN + TILE_ENTRY_LEN * updates.len());
    out.push(KIND_TILE);
    out.extend_from_slice(&tile.tx().to_le_bytes());
    out.extend_from_slice(&tile.ty().to_le_bytes());
    out.extend_from_slice(&prev.0.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(updates.len() as u32).to_le_bytes());
    for u in updates {
        debug_assert!(u.version.0 >= first && u.version.0 - first <= u64::from(u32::MAX));
        out.extend_from_slice(&((u.version.0 - first) as u32).to_le_bytes());
        out.extend_from_slice(&u.index.to_le_bytes());
        out.push(u.color.get());
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The length of the tile frame at the start of `body`, checking its header.
fn frame_len(body: &[u8]) -> Result<usize, FrameError> {
    if body.len() < TILE_HEADER_LEN {
        return Err(FrameError::Short(body.len()));
    }
    if body[0] != KIND_TILE {
        return Err(FrameError::Kind(body[0]));
    }
    let count = u32_at(body, 25);
    let len = TILE_HEADER_LEN + count as usize * TILE_ENTRY_LEN;
    if body.len() < len {
        return Err(FrameError::Length {
            count,
            len: body.len(),
        });
    }
    Ok(len)
}

/// Decodes one tile frame, checking that versions increase and follow `prev`.
pub fn decode_tile_frame(frame: &[u8]) -> Result<TileFrame, FrameError> {
    let len = frame_len(frame)?;
    let count = u32_at(frame, 25);
    if len != frame.len() {
        return Err(FrameError::Length {
            count,
            len: frame.len(),
        });
    }
    let prev = Seq(u64_at(frame, 9));
    let first = u64_at(frame, 17);
    let mut last = prev.0;
    let mut updates = Vec::with_capacity(count as usize);
    for e in frame[TILE_HEADER_LEN..].chunks_exact(TILE_ENTRY_LEN) {
        let version = first + u64::from(u32_at(e, 0));
        if version <= last {
            return Err(FrameError::Order {
                version,
                after: last,
            });
        }
        last = version;
        updates.push(TileUpdate {
            version: Seq(version),
            index: u16::from_le_bytes([e[4], e[5]]),
            color: ColorIndex::new_unchecked(e[6]),
        });
    }
    Ok(TileFrame {
        tile: TileId::new_unchecked(u32_at(frame, 1), u32_at(frame, 5)),
        prev,
        updates,
    })
}

/// Splits a body of back-to-back tile frames into decoded frames.
pub fn split_tile_frames(mut body: &[u8]) -> Result<Vec<TileFrame>, FrameError> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        let len = frame_len(body)?;
        let (frame, rest) = body.split_at(len);
        frames.push(decode_tile_frame(frame)?);
        body = rest;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(v: u64, i: u16, c: u8) -> TileUpdate {
        TileUpdate {
            version: Seq(v),
            index: i,
            color: ColorIndex::new_unchecked(c),
        }
    }

    #[test]
    fn round_trip_and_byte_layout() {
        let t = TileId::new_unchecked(16_383, 2);
        let ups = [up(300, 0x0102, 3), up(302, 0xffff, 15)];
        let f = encode_tile_frame(t, Seq(7), &ups);
        assert_eq!(
            f,
            vec![
                2, 0xff, 0x3f, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 44, 1, 0, 0, 0, 0, 0, 0,
                2, 0, 0, 0, 0, 0, 0, 0, 2, 1, 3, 2, 0, 0, 0, 0xff, 0xff, 15
            ]
        );
        let back = decode_tile_frame(&f).unwrap();
        assert_eq!(back.tile, t);
        assert_eq!(back.prev, Seq(7));
        assert_eq!(back.updates, ups);
        assert_eq!(back.last(), Seq(302));
    }

    #[test]
    fn bodies_split_and_bad_frames_are_refused() {
        let a = encode_tile_frame(TileId::new_unchecked(1, 1), Seq(0), &[up(1, 5, 1)]);
        let b = encode_tile_frame(
            TileId::new_unchecked(2, 1),
            Seq(0),
            &[up(2, 6, 2), up(9, 7, 3)],
        );
        let body = [a.clone(), b].concat();
        let frames = split_tile_frames(&body).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].last(), Seq(9));
        assert!(split_tile_frames(&body[..body.len() - 1]).is_err());
        assert_eq!(decode_tile_frame(&a[..4]), Err(FrameError::Short(4)));
        let mut wrong = a.clone();
        wrong[0] = 1;
        assert_eq!(decode_tile_frame(&wrong), Err(FrameError::Kind(1)));
        // An entry not newer than prev.
        let stale = encode_tile_frame(TileId::new_unchecked(1, 1), Seq(5), &[up(5, 0, 1)]);
        assert!(matches!(
            decode_tile_frame(&stale),
            Err(FrameError::Order { .. })
        ));
    }

    #[test]
    fn entries_cost_seven_bytes() {
        let ups: Vec<_> = (1..=100).map(|v| up(v, v as u16, 1)).collect();
        let f = encode_tile_frame(TileId::new_unchecked(0, 0), Seq(0), &ups);
        assert_eq!(f.len(), TILE_HEADER_LEN + 700);
    }
}
