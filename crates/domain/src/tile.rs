//! Tiles: how a canvas of up to 2^22 × 2^22 pixels is cut, stored, served and watched.
//!
//! A canvas is a grid of [`TILE_SIZE`]² tiles. A tile's bytes ([`Tile`]) have the same
//! packed layout as the whole board ([`crate::Board`]) restricted to the tile: pixel
//! `i = y * TILE_SIZE + x` in tile-local coordinates, 4 or 8 bits per pixel. The tiles of
//! the last row and column are still `TILE_SIZE` wide, padded with color 0.
//!
//! Why 256: a 4-bit tile is 32 KiB raw and a few KiB compressed, so a phone's screen needs
//! a dozen of them and one placement dirties little; a tile-local index fits 16 bits
//! (frames spend 2 bytes on a position); 2^22 / 256 = 16,384 tiles a side, and
//! 15 overview levels ([`levels`]) bring the whole world down to one tile. pixelplanet
//! uses the same size for its chunks.
//!
//! Zoomed out, a client reads overview tiles ([`OverviewId`]): level `z` tile `(tx, ty)`
//! covers `TILE_SIZE · 2^z` canvas pixels a side, at half the resolution of level `z - 1`
//! ([`downsample`]); level 0 is the tiles themselves.

use crate::board::{Board, Coord, Depth, Dimensions, get_packed, set_packed};
use crate::palette::ColorIndex;
use thiserror::Error;

/// Pixels on a tile's side.
pub const TILE_SIZE: u32 = 256;
/// Pixels in a tile.
pub const TILE_PIXELS: usize = (TILE_SIZE * TILE_SIZE) as usize;

/// Tiles across and down a canvas, the last ones partial.
pub fn tiles_across(dims: Dimensions) -> (u32, u32) {
    (
        dims.width().div_ceil(TILE_SIZE),
        dims.height().div_ceil(TILE_SIZE),
    )
}

/// One tile of a canvas. Only [`TileId::parse`] makes one from client input, so holding
/// a `TileId` from there means the tile lies (at least partly) on the canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile column, from 0.
    tx: u32,
    /// Tile row, from 0.
    ty: u32,
}

/// Why a tile or an overview tile is not on the canvas.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} must be an integer from 0 to {max}, got {value}")]
pub struct TileError {
    /// Which of z, tx, ty is wrong.
    pub field: &'static str,
    pub value: i64,
    pub max: u32,
}

fn check(field: &'static str, value: i64, count: u32) -> Result<u32, TileError> {
    if (0..i64::from(count)).contains(&value) {
        Ok(value as u32)
    } else {
        Err(TileError {
            field,
            value,
            max: count.saturating_sub(1),
        })
    }
}

impl TileId {
    /// A tile position as a client sent it, checked against the canvas.
    pub fn parse(dims: Dimensions, tx: i64, ty: i64) -> Result<Self, TileError> {
        let (across, down) = tiles_across(dims);
        Ok(Self {
            tx: check("tx", tx, across)?,
            ty: check("ty", ty, down)?,
        })
    }

    /// A tile read back from storage or the wire, not checked against any canvas.
    pub const fn new_unchecked(tx: u32, ty: u32) -> Self {
        Self { tx, ty }
    }

    /// The tile a pixel lies on.
    pub const fn of(c: Coord) -> Self {
        Self {
            tx: c.x() / TILE_SIZE,
            ty: c.y() / TILE_SIZE,
        }
    }

    pub const fn tx(self) -> u32 {
        self.tx
    }

    pub const fn ty(self) -> u32 {
        self.ty
    }

    /// Whether this tile lies (at least partly) on the canvas.
    pub fn on(self, dims: Dimensions) -> bool {
        let (across, down) = tiles_across(dims);
        self.tx < across && self.ty < down
    }

    /// The canvas position of the tile's top-left pixel.
    pub const fn origin(self) -> Coord {
        Coord::new_unchecked(self.tx * TILE_SIZE, self.ty * TILE_SIZE)
    }

    /// Where a pixel of this tile sits in the tile's bytes: `y * TILE_SIZE + x`, tile-local.
    /// `c` must lie on this tile.
    pub fn local_index(self, c: Coord) -> u16 {
        debug_assert_eq!(Self::of(c), self);
        ((c.y() % TILE_SIZE) * TILE_SIZE + c.x() % TILE_SIZE) as u16
    }

    /// The canvas position of tile-local pixel `i`.
    pub const fn coord_at(self, i: u16) -> Coord {
        let i = i as u32;
        Coord::new_unchecked(
            self.tx * TILE_SIZE + i % TILE_SIZE,
            self.ty * TILE_SIZE + i / TILE_SIZE,
        )
    }

    /// One integer per tile, for maps and storage keys: `ty << 32 | tx`.
    pub const fn key(self) -> u64 {
        (self.ty as u64) << 32 | self.tx as u64
    }

    /// The inverse of [`TileId::key`].
    pub const fn from_key(key: u64) -> Self {
        Self {
            tx: key as u32,
            ty: (key >> 32) as u32,
        }
    }
}

/// The packed pixels of one tile, in the board's layout restricted to the tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// Bits per pixel, the board's.
    depth: Depth,
    /// `depth.bytes_for(TILE_PIXELS)` bytes; color 0 everywhere on a new tile.
    bytes: Vec<u8>,
}

/// A tile buffer of the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a tile holds {expected} bytes at this depth, got {got}")]
pub struct TileLengthError {
    pub got: usize,
    pub expected: usize,
}

impl Tile {
    /// A tile never painted: color 0 everywhere.
    pub fn new(depth: Depth) -> Self {
        Self {
            depth,
            bytes: vec![0; Self::len(depth)],
        }
    }

    /// Bytes of one tile at `depth`.
    pub fn len(depth: Depth) -> usize {
        depth.bytes_for(TILE_PIXELS)
    }

    /// Wraps bytes read back from a store, checking their length.
    pub fn from_bytes(depth: Depth, bytes: Vec<u8>) -> Result<Self, TileLengthError> {
        let expected = Self::len(depth);
        if bytes.len() != expected {
            return Err(TileLengthError {
                got: bytes.len(),
                expected,
            });
        }
        Ok(Self { depth, bytes })
    }

    pub fn depth(&self) -> Depth {
        self.depth
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The color of tile-local pixel `i`.
    pub fn get(&self, i: u16) -> ColorIndex {
        ColorIndex::new_unchecked(get_packed(&self.bytes, self.depth, usize::from(i)))
    }

    /// Sets tile-local pixel `i`; the color must fit the depth ([`Depth::holds`]).
    pub fn set(&mut self, i: u16, color: ColorIndex) {
        set_packed(&mut self.bytes, self.depth, usize::from(i), color.get());
    }

    /// One palette index per pixel of row `y`: the input a PNG encoder wants.
    pub fn unpacked_row(&self, y: u32, out: &mut Vec<u8>) {
        out.clear();
        let start = (y * TILE_SIZE) as usize;
        out.extend(
            (start..start + TILE_SIZE as usize).map(|i| get_packed(&self.bytes, self.depth, i)),
        );
    }
}

impl Board {
    /// The tile `id` of this board, padded with color 0 beyond its edges.
    pub fn tile(&self, id: TileId) -> Tile {
        let mut t = Tile::new(self.depth());
        let dims = self.dims();
        let o = id.origin();
        for y in o.y()..(o.y() + TILE_SIZE).min(dims.height()) {
            for x in o.x()..(o.x() + TILE_SIZE).min(dims.width()) {
                let c = Coord::new_unchecked(x, y);
                t.set(id.local_index(c), self.get(c));
            }
        }
        t
    }

    /// Copies a tile's pixels that lie on this board into it.
    pub fn put_tile(&mut self, id: TileId, tile: &Tile) {
        let dims = self.dims();
        let o = id.origin();
        for y in o.y()..(o.y() + TILE_SIZE).min(dims.height()) {
            for x in o.x()..(o.x() + TILE_SIZE).min(dims.width()) {
                let c = Coord::new_unchecked(x, y);
                self.set(c, tile.get(id.local_index(c)));
            }
        }
    }
}

/// Overview levels of a canvas: level `levels - 1` is the first whose single tile covers
/// the whole canvas (so a 256² canvas has one level, 2^22² has 15).
pub fn levels(dims: Dimensions) -> u8 {
    let side = dims.width().max(dims.height());
    let mut z = 0u8;
    while (TILE_SIZE << z) < side {
        z += 1;
    }
    z + 1
}

/// One overview tile: level `z`, position `(tx, ty)` among that level's tiles. It covers
/// canvas pixels `[tx · 256 · 2^z, (tx + 1) · 256 · 2^z)` across and likewise down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OverviewId {
    /// Level, 0 = full resolution.
    z: u8,
    /// Tile column at this level.
    tx: u32,
    /// Tile row at this level.
    ty: u32,
}

impl OverviewId {
    /// An overview tile position as a client sent it, checked against the canvas.
    pub fn parse(dims: Dimensions, z: i64, tx: i64, ty: i64) -> Result<Self, TileError> {
        let z = check("z", z, u32::from(levels(dims)))? as u8;
        let (across, down) = Self::across(dims, z);
        Ok(Self {
            z,
            tx: check("tx", tx, across)?,
            ty: check("ty", ty, down)?,
        })
    }

    pub const fn new_unchecked(z: u8, tx: u32, ty: u32) -> Self {
        Self { z, tx, ty }
    }

    /// Tiles across and down level `z`.
    pub fn across(dims: Dimensions, z: u8) -> (u32, u32) {
        let side = TILE_SIZE << z;
        (dims.width().div_ceil(side), dims.height().div_ceil(side))
    }

    pub const fn z(self) -> u8 {
        self.z
    }

    pub const fn tx(self) -> u32 {
        self.tx
    }

    pub const fn ty(self) -> u32 {
        self.ty
    }

    /// The level-0 tile itself, when this is one.
    pub const fn as_tile(self) -> Option<TileId> {
        if self.z == 0 {
            Some(TileId::new_unchecked(self.tx, self.ty))
        } else {
            None
        }
    }

    /// The overview tile one level up that contains this one.
    pub const fn parent(self) -> Self {
        Self {
            z: self.z + 1,
            tx: self.tx / 2,
            ty: self.ty / 2,
        }
    }

    /// The four tiles one level down, in reading order: top-left, top-right, bottom-left,
    /// bottom-right. `z` must be at least 1. Some may lie off the canvas.
    pub const fn children(self) -> [Self; 4] {
        let (z, x, y) = (self.z - 1, self.tx * 2, self.ty * 2);
        [
            Self { z, tx: x, ty: y },
            Self {
                z,
                tx: x + 1,
                ty: y,
            },
            Self {
                z,
                tx: x,
                ty: y + 1,
            },
            Self {
                z,
                tx: x + 1,
                ty: y + 1,
            },
        ]
    }

    /// The overview tile at level `z` that contains a level-0 tile.
    pub const fn containing(tile: TileId, z: u8) -> Self {
        Self {
            z,
            tx: tile.tx >> z,
            ty: tile.ty >> z,
        }
    }
}

/// One overview tile from the four one level down (reading order, `None` = unpainted, as
/// [`OverviewId::children`]): each output pixel is the most common color of the 2×2 block
/// it stands for, a tie going to the block's first pixel in reading order. So a lone pixel
/// on a blank area vanishes when zoomed out, as on r/place's own overview, while any
/// picture of two or more pixels wide stays.
pub fn downsample(depth: Depth, children: [Option<&Tile>; 4]) -> Option<Tile> {
    if children.iter().all(Option::is_none) {
        return None;
    }
    let mut out = Tile::new(depth);
    let half = TILE_SIZE / 2;
    for (k, child) in children.iter().enumerate() {
        let Some(child) = child else { continue };
        let (ox, oy) = ((k as u32 % 2) * half, (k as u32 / 2) * half);
        for y in 0..half {
            for x in 0..half {
                let at =
                    |dx: u32, dy: u32| child.get(((2 * y + dy) * TILE_SIZE + 2 * x + dx) as u16);
                let block = [at(0, 0), at(1, 0), at(0, 1), at(1, 1)];
                let mut best = block[0];
                let mut best_n = 0;
                for c in block {
                    let n = block.iter().filter(|&&d| d == c).count();
                    if n > best_n {
                        best = c;
                        best_n = n;
                    }
                }
                out.set(((oy + y) * TILE_SIZE + ox + x) as u16, best);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::MAX_SIDE;

    fn dims(w: u64, h: u64) -> Dimensions {
        Dimensions::parse(w, h).unwrap()
    }

    #[test]
    fn tiles_across_count_the_last_partial_tile() {
        assert_eq!(tiles_across(dims(256, 256)), (1, 1));
        assert_eq!(tiles_across(dims(257, 1)), (2, 1));
        assert_eq!(tiles_across(dims(1000, 1000)), (4, 4));
        let world = dims(MAX_SIDE as u64, MAX_SIDE as u64);
        assert_eq!(tiles_across(world), (16_384, 16_384));
    }

    #[test]
    fn tile_ids_are_parsed_against_the_canvas() {
        let d = dims(1000, 300);
        assert_eq!(TileId::parse(d, 3, 1).unwrap(), TileId::new_unchecked(3, 1));
        let e = TileId::parse(d, 4, 0).unwrap_err();
        assert_eq!((e.field, e.max), ("tx", 3));
        assert_eq!(TileId::parse(d, 0, 2).unwrap_err().field, "ty");
        assert_eq!(TileId::parse(d, -1, 0).unwrap_err().field, "tx");
        let world = dims(MAX_SIDE as u64, MAX_SIDE as u64);
        assert!(TileId::parse(world, 16_383, 16_383).is_ok());
        assert!(TileId::parse(world, 16_384, 0).is_err());
    }

    #[test]
    fn local_indexes_round_trip_at_the_edges() {
        let far = Coord::new_unchecked(MAX_SIDE - 1, MAX_SIDE - 1);
        let t = TileId::of(far);
        assert_eq!((t.tx(), t.ty()), (16_383, 16_383));
        assert_eq!(t.local_index(far), u16::MAX);
        assert_eq!(t.coord_at(u16::MAX), far);
        let c = Coord::new_unchecked(256 * 5 + 3, 256 * 2 + 255);
        let t = TileId::of(c);
        assert_eq!((t.tx(), t.ty()), (5, 2));
        assert_eq!(t.local_index(c), 255 * 256 + 3);
        assert_eq!(t.coord_at(t.local_index(c)), c);
        assert_eq!(t.origin(), Coord::new_unchecked(1280, 512));
        assert_eq!(TileId::from_key(t.key()), t);
    }

    #[test]
    fn board_tiles_are_the_board_restricted_and_padded() {
        let d = dims(300, 2);
        let mut b = Board::new(d, Depth::Four);
        b.set(Coord::new_unchecked(0, 0), ColorIndex::new_unchecked(3));
        b.set(Coord::new_unchecked(299, 1), ColorIndex::new_unchecked(7));
        let t0 = b.tile(TileId::new_unchecked(0, 0));
        assert_eq!(t0.as_bytes().len(), 32_768);
        assert_eq!(t0.get(0).get(), 3);
        let t1 = b.tile(TileId::new_unchecked(1, 0));
        // x = 299 is tile-local 43 of row 1; everything past x = 299 is padding.
        assert_eq!(t1.get(256 + 43).get(), 7);
        assert!(
            (0..=u16::MAX)
                .filter(|&i| i != 256 + 43)
                .all(|i| t1.get(i).get() == 0)
        );
        let mut back = Board::new(d, Depth::Four);
        back.put_tile(TileId::new_unchecked(0, 0), &t0);
        back.put_tile(TileId::new_unchecked(1, 0), &t1);
        assert_eq!(back, b);
    }

    #[test]
    fn levels_reach_one_tile_for_the_whole_canvas() {
        assert_eq!(levels(dims(1, 1)), 1);
        assert_eq!(levels(dims(256, 256)), 1);
        assert_eq!(levels(dims(257, 10)), 2);
        assert_eq!(levels(dims(1000, 1000)), 3);
        assert_eq!(levels(dims(65_536, 65_536)), 9);
        let world = dims(MAX_SIDE as u64, MAX_SIDE as u64);
        assert_eq!(levels(world), 15);
        assert_eq!(OverviewId::across(world, 14), (1, 1));
        assert_eq!(OverviewId::across(world, 0), (16_384, 16_384));
        assert!(OverviewId::parse(world, 14, 0, 0).is_ok());
        assert_eq!(OverviewId::parse(world, 15, 0, 0).unwrap_err().field, "z");
        assert_eq!(OverviewId::parse(world, 13, 2, 0).unwrap_err().field, "tx");
    }

    #[test]
    fn overview_ids_nest() {
        let o = OverviewId::new_unchecked(2, 3, 5);
        assert_eq!(o.parent(), OverviewId::new_unchecked(3, 1, 2));
        for c in o.children() {
            assert_eq!(c.parent(), o);
        }
        let t = TileId::new_unchecked(13, 21);
        assert_eq!(
            OverviewId::containing(t, 2),
            OverviewId::new_unchecked(2, 3, 5)
        );
        assert_eq!(OverviewId::containing(t, 0).as_tile(), Some(t));
    }

    #[test]
    fn downsampling_keeps_the_most_common_color_of_each_block() {
        let c = ColorIndex::new_unchecked;
        let mut tl = Tile::new(Depth::Four);
        // Block (0, 0): three 5s and a 0.
        tl.set(0, c(5));
        tl.set(1, c(5));
        tl.set(256, c(5));
        // Block (1, 0): a 2–2 tie between 9 and 0; the first pixel (9) wins.
        tl.set(2, c(9));
        tl.set(259, c(9));
        // Block (2, 0): a lone pixel vanishes.
        tl.set(5, c(4));
        let mut br = Tile::new(Depth::Four);
        br.set(u16::MAX, c(6));
        br.set(u16::MAX - 1, c(6));
        br.set(u16::MAX - 256, c(6));
        let out = downsample(Depth::Four, [Some(&tl), None, None, Some(&br)]).unwrap();
        assert_eq!(out.get(0).get(), 5);
        assert_eq!(out.get(1).get(), 9);
        assert_eq!(out.get(2).get(), 0);
        // The bottom-right child's last block lands on the output's last pixel.
        assert_eq!(out.get(u16::MAX).get(), 6);
        assert!(downsample(Depth::Four, [None, None, None, None]).is_none());
    }
}
