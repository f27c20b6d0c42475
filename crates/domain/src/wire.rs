//! The binary update frames: the whole-canvas frame below (kind 0x01) and the tile frame
//! (kind 0x02, `tile`).
//!
//! One frame carries a run of placements with contiguous sequence numbers, so the seq
//! of each is `first_seq + i` and is never repeated on the wire:
//!
//! ```text
//! offset  size  field
//! 0       1     kind = 0x01 (updates)
//! 1       8     first_seq, u64 little-endian
//! 9       4     count, u32 little-endian
//! 13      5*n   n entries: x u16 LE, y u16 LE, color u8
//! ```
//!
//! A frame of n placements is `13 + 5n` bytes: 5.01 bytes per placement at n = 1000.
//! The same bytes go to every websocket client and make the body of `GET /api/updates`.

mod tile;

pub use tile::{
    KIND_TILE, TILE_ENTRY_LEN, TILE_HEADER_LEN, TileFrame, TileUpdate, decode_tile_frame,
    encode_tile_frame, split_tile_frames,
};

use crate::board::Coord;
use crate::palette::ColorIndex;
use crate::placement::Seq;
use thiserror::Error;

/// First byte of an update frame.
pub const KIND_UPDATES: u8 = 0x01;
/// Bytes before the first entry.
pub const HEADER_LEN: usize = 13;
/// Bytes per placement.
pub const ENTRY_LEN: usize = 5;

/// What a frame says about one placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    pub seq: Seq,
    pub coord: Coord,
    pub color: ColorIndex,
}

/// Encodes `updates` as frames, starting a new frame wherever seqs are not contiguous.
/// `updates` must be in increasing seq order.
pub fn encode_frames(updates: &[Update]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut start = 0;
    for i in 1..=updates.len() {
        if i == updates.len() || updates[i].seq.0 != updates[i - 1].seq.0 + 1 {
            frames.push(encode_run(&updates[start..i]));
            start = i;
        }
    }
    frames
}

/// Encodes a run whose seqs are contiguous.
fn encode_run(run: &[Update]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + ENTRY_LEN * run.len());
    out.push(KIND_UPDATES);
    out.extend_from_slice(&run.first().map_or(0, |u| u.seq.0).to_le_bytes());
    out.extend_from_slice(&(run.len() as u32).to_le_bytes());
    for u in run {
        // Whole-canvas frames exist only on canvases of at most MAX_BOARD_SIDE, so both
        // coordinates fit 16 bits.
        debug_assert!(u.coord.x() <= u32::from(u16::MAX) && u.coord.y() <= u32::from(u16::MAX));
        out.extend_from_slice(&(u.coord.x() as u16).to_le_bytes());
        out.extend_from_slice(&(u.coord.y() as u16).to_le_bytes());
        out.push(u.color.get());
    }
    out
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("unknown frame kind {0:#04x}")]
    Kind(u8),
    #[error("frame says {count} entries but holds {len} bytes")]
    Length { count: u32, len: usize },
    #[error("tile frame entry version {version} does not follow {after}")]
    Order { version: u64, after: u64 },
}

/// The run one frame carries, checked but not decoded: its first seq and its count. For
/// clients that track seqs without looking at pixels (the load generator).
pub fn frame_run(frame: &[u8]) -> Result<(Seq, u32), FrameError> {
    if frame.len() < HEADER_LEN {
        return Err(FrameError::Short(frame.len()));
    }
    if frame[0] != KIND_UPDATES {
        return Err(FrameError::Kind(frame[0]));
    }
    let first = u64::from_le_bytes(frame[1..9].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(frame[9..13].try_into().expect("4 bytes"));
    if frame.len() - HEADER_LEN != count as usize * ENTRY_LEN {
        return Err(FrameError::Length {
            count,
            len: frame.len(),
        });
    }
    Ok((Seq(first), count))
}

/// Decodes one update frame.
pub fn decode_frame(frame: &[u8]) -> Result<Vec<Update>, FrameError> {
    let (first, _) = frame_run(frame)?;
    Ok(frame[HEADER_LEN..]
        .chunks_exact(ENTRY_LEN)
        .enumerate()
        .map(|(i, e)| Update {
            seq: Seq(first.0 + i as u64),
            coord: Coord::new_unchecked(
                u32::from(u16::from_le_bytes([e[0], e[1]])),
                u32::from(u16::from_le_bytes([e[2], e[3]])),
            ),
            color: ColorIndex::new_unchecked(e[4]),
        })
        .collect())
}

/// Splits a body of back-to-back frames (`GET /api/updates`) into its frames, checking
/// that it ends on a frame boundary.
pub fn split_frames(mut body: &[u8]) -> Result<Vec<&[u8]>, FrameError> {
    let mut frames = Vec::new();
    while !body.is_empty() {
        if body.len() < HEADER_LEN {
            return Err(FrameError::Short(body.len()));
        }
        let count = u32::from_le_bytes(body[9..13].try_into().expect("4 bytes"));
        let len = HEADER_LEN + count as usize * ENTRY_LEN;
        if body.len() < len {
            return Err(FrameError::Length {
                count,
                len: body.len(),
            });
        }
        let (frame, rest) = body.split_at(len);
        frame_run(frame)?;
        frames.push(frame);
        body = rest;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(seq: u64, x: u32, y: u32, c: u8) -> Update {
        Update {
            seq: Seq(seq),
            coord: Coord::new_unchecked(x, y),
            color: ColorIndex::new_unchecked(c),
        }
    }

    #[test]
    fn round_trip_and_byte_layout() {
        let ups = vec![up(258, 1, 2, 3), up(259, 0x0304, 7, 15)];
        let frames = encode_frames(&ups);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            frames[0],
            vec![
                1, 2, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0, 3, 4, 3, 7, 0, 15
            ]
        );
        assert_eq!(decode_frame(&frames[0]).unwrap(), ups);
    }

    #[test]
    fn gaps_start_a_new_frame() {
        let ups = vec![up(1, 0, 0, 1), up(2, 0, 0, 2), up(5, 1, 1, 1)];
        let frames = encode_frames(&ups);
        assert_eq!(frames.len(), 2);
        let back: Vec<Update> = frames
            .iter()
            .flat_map(|f| decode_frame(f).unwrap())
            .collect();
        assert_eq!(back, ups);
        assert!(encode_frames(&[]).is_empty());
    }

    #[test]
    fn large_frames_cost_about_five_bytes_a_placement() {
        let ups: Vec<Update> = (1..=1000).map(|i| up(i, i as u32, 0, 1)).collect();
        let f = &encode_frames(&ups)[0];
        assert!(f.len() as f64 / 1000.0 < 5.1);
    }

    #[test]
    fn bodies_of_frames_split_on_frame_boundaries() {
        let ups = vec![up(1, 0, 0, 1), up(2, 0, 0, 2), up(5, 1, 1, 1)];
        let body = encode_frames(&ups).concat();
        let frames = split_frames(&body).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frame_run(frames[1]).unwrap(), (Seq(5), 1));
        assert!(split_frames(&[]).unwrap().is_empty());
        assert!(matches!(
            split_frames(&body[..body.len() - 1]),
            Err(FrameError::Length { .. })
        ));
        assert_eq!(split_frames(&body[..5]), Err(FrameError::Short(5)));
    }

    #[test]
    fn rejects_malformed_frames() {
        assert_eq!(decode_frame(&[1, 2]), Err(FrameError::Short(2)));
        let mut f = encode_frames(&[up(1, 0, 0, 1)]).remove(0);
        f[0] = 9;
        assert_eq!(decode_frame(&f), Err(FrameError::Kind(9)));
        let mut f = encode_frames(&[up(1, 0, 0, 1)]).remove(0);
        f.pop();
        assert!(matches!(decode_frame(&f), Err(FrameError::Length { .. })));
    }
}
