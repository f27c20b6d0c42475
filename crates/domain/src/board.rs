//! The board: its size, positions on it, and the packed pixel buffer.

use crate::palette::ColorIndex;
use thiserror::Error;

/// The largest side a canvas may have: 2^22, so 4,194,304² pixels (17.6 trillion). Such a
/// canvas is only ever held in tiles ([`crate::tile`]): what is unpainted costs nothing.
pub const MAX_SIDE: u32 = 1 << 22;

/// The largest side of a canvas that is also served and held whole ([`Board`],
/// `GET /api/board`, frames for clients that name no tiles): 8192² at 4 bits is 32 MiB.
pub const MAX_BOARD_SIDE: u32 = 8192;

/// A canvas size that has been checked against [`MAX_SIDE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimensions {
    /// Pixels per row.
    width: u32,
    /// Number of rows.
    height: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DimensionsError {
    #[error("{name} must be between 1 and {MAX_SIDE}, got {value}")]
    OutOfRange { name: &'static str, value: u64 },
}

impl Dimensions {
    pub fn parse(width: u64, height: u64) -> Result<Self, DimensionsError> {
        let check = |name, value: u64| {
            if (1..=MAX_SIDE as u64).contains(&value) {
                Ok(value as u32)
            } else {
                Err(DimensionsError::OutOfRange { name, value })
            }
        };
        Ok(Self {
            width: check("width", width)?,
            height: check("height", height)?,
        })
    }

    pub fn width(self) -> u32 {
        self.width
    }

    pub fn height(self) -> u32 {
        self.height
    }

    /// Number of pixels on the board.
    pub fn pixels(self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Whether the canvas is small enough to be held and served whole (a [`Board`],
    /// `GET /api/board`, whole-canvas frames): both sides at most [`MAX_BOARD_SIDE`].
    pub fn whole(self) -> bool {
        self.width <= MAX_BOARD_SIDE && self.height <= MAX_BOARD_SIDE
    }

    /// Whether `other` is at least as large on both axes: a canvas may only grow.
    pub fn covers(self, other: Dimensions) -> bool {
        self.width >= other.width && self.height >= other.height
    }

    /// Whether a position read back from a store (a record that did not go through
    /// [`Dimensions::coord`]) lies on this board.
    pub fn contains(self, c: Coord) -> bool {
        c.x < self.width && c.y < self.height
    }

    /// Parses a position, saying which axis is off the board and what is allowed.
    pub fn coord(self, x: i64, y: i64) -> Result<Coord, CoordError> {
        if !(0..self.width as i64).contains(&x) {
            return Err(CoordError {
                axis: "x",
                value: x,
                max: self.width - 1,
            });
        }
        if !(0..self.height as i64).contains(&y) {
            return Err(CoordError {
                axis: "y",
                value: y,
                max: self.height - 1,
            });
        }
        Ok(Coord {
            x: x as u32,
            y: y as u32,
        })
    }
}

/// A position on a board. Parsing ([`Dimensions::coord`]) is the way in for anything a
/// client sends; [`Coord::new_unchecked`] is for records a store or a frame hands back,
/// whose reader checks them with [`Dimensions::contains`] where they could be off its
/// board. The fields are private so that no other way exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Coord {
    /// Column, from 0 (below [`MAX_SIDE`]).
    x: u32,
    /// Row, from 0 (below [`MAX_SIDE`]).
    y: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{axis} must be an integer from 0 to {max}, got {value}")]
pub struct CoordError {
    pub axis: &'static str,
    pub value: i64,
    pub max: u32,
}

impl Coord {
    /// A position read back from storage or the wire, not checked against any board.
    pub const fn new_unchecked(x: u32, y: u32) -> Self {
        Self { x, y }
    }

    /// Column, from 0.
    pub const fn x(self) -> u32 {
        self.x
    }

    /// Row, from 0.
    pub const fn y(self) -> u32 {
        self.y
    }

    /// Pixel index in the board layout: `y * width + x` (Reddit 2017, `BITFIELD u4 #i`).
    pub fn index(self, dims: Dimensions) -> usize {
        self.y as usize * dims.width as usize + self.x as usize
    }
}

/// How many bits a pixel takes in the packed layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Palettes of up to 16 colors: two pixels per byte, even index in the high nibble.
    Four,
    /// Palettes of up to 256 colors: one byte per pixel.
    Eight,
}

impl Depth {
    pub fn for_palette_len(len: usize) -> Self {
        if len <= 16 { Depth::Four } else { Depth::Eight }
    }

    pub fn bits(self) -> u32 {
        match self {
            Depth::Four => 4,
            Depth::Eight => 8,
        }
    }

    /// Whether a color index read back from a store fits in a pixel of this depth.
    pub fn holds(self, color: ColorIndex) -> bool {
        u32::from(color.get()) < (1 << self.bits())
    }

    /// Bytes needed for `pixels` pixels.
    pub fn bytes_for(self, pixels: usize) -> usize {
        match self {
            Depth::Four => pixels.div_ceil(2),
            Depth::Eight => pixels,
        }
    }
}

/// The packed pixel buffer of a whole canvas (one that is [`Dimensions::whole`]). Its
/// bytes are exactly what `GET /api/board` returns, so it is never re-encoded; a tile
/// ([`crate::tile::Tile`]) has the same layout restricted to the tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// Size of the canvas, needed to turn a coordinate into an index.
    dims: Dimensions,
    /// Bits per pixel, fixed by the palette size.
    depth: Depth,
    /// The packed pixels; color 0 everywhere on a new board.
    bytes: Vec<u8>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("board buffer has {got} bytes, expected {expected}")]
pub struct BoardLengthError {
    pub got: usize,
    pub expected: usize,
}

impl Board {
    pub fn new(dims: Dimensions, depth: Depth) -> Self {
        Self {
            dims,
            depth,
            bytes: vec![0; depth.bytes_for(dims.pixels())],
        }
    }

    /// Wraps bytes read back from a store, checking their length.
    pub fn from_bytes(
        dims: Dimensions,
        depth: Depth,
        bytes: Vec<u8>,
    ) -> Result<Self, BoardLengthError> {
        let expected = depth.bytes_for(dims.pixels());
        if bytes.len() != expected {
            return Err(BoardLengthError {
                got: bytes.len(),
                expected,
            });
        }
        Ok(Self { dims, depth, bytes })
    }

    pub fn dims(&self) -> Dimensions {
        self.dims
    }

    pub fn depth(&self) -> Depth {
        self.depth
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn get(&self, c: Coord) -> ColorIndex {
        ColorIndex::new_unchecked(get_packed(&self.bytes, self.depth, c.index(self.dims)))
    }

    /// Whether `set(c, color)` would write exactly that pixel: the position is on the
    /// board and the color fits its depth. A record from outside (a store, a channel) is
    /// checked with this before it is applied, since `set` panics off the board.
    pub fn fits(&self, c: Coord, color: ColorIndex) -> bool {
        self.dims.contains(c) && self.depth.holds(color)
    }

    pub fn set(&mut self, c: Coord, color: ColorIndex) {
        set_packed(&mut self.bytes, self.depth, c.index(self.dims), color.get());
    }

    /// One palette index per pixel, row by row: the input a PNG encoder wants.
    pub fn unpacked_row(&self, y: u32, out: &mut Vec<u8>) {
        out.clear();
        let w = self.dims.width() as usize;
        let start = y as usize * w;
        out.extend((start..start + w).map(|i| get_packed(&self.bytes, self.depth, i)));
    }
}

/// Reads pixel `i` from a packed buffer.
pub fn get_packed(bytes: &[u8], depth: Depth, i: usize) -> u8 {
    match depth {
        Depth::Eight => bytes[i],
        Depth::Four => {
            let b = bytes[i / 2];
            if i.is_multiple_of(2) {
                b >> 4
            } else {
                b & 0x0f
            }
        }
    }
}

/// Writes pixel `i` into a packed buffer.
pub fn set_packed(bytes: &mut [u8], depth: Depth, i: usize, v: u8) {
    match depth {
        Depth::Eight => bytes[i] = v,
        Depth::Four => {
            let b = &mut bytes[i / 2];
            *b = if i.is_multiple_of(2) {
                (*b & 0x0f) | (v << 4)
            } else {
                (*b & 0xf0) | (v & 0x0f)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_bounds() {
        assert!(Dimensions::parse(1, 1).is_ok());
        assert!(Dimensions::parse(4096, 4096).is_ok());
        assert_eq!(
            Dimensions::parse(0, 5),
            Err(DimensionsError::OutOfRange {
                name: "width",
                value: 0
            })
        );
        assert!(Dimensions::parse(5, MAX_SIDE as u64 + 1).is_err());
        let world = Dimensions::parse(MAX_SIDE as u64, MAX_SIDE as u64).unwrap();
        assert!(!world.whole());
        assert!(Dimensions::parse(8192, 8192).unwrap().whole());
        assert_eq!(world.pixels(), 1 << 44);
        let c = world
            .coord(MAX_SIDE as i64 - 1, MAX_SIDE as i64 - 1)
            .unwrap();
        assert_eq!(c.index(world), (1 << 44) - 1);
        assert_eq!(
            world.coord(MAX_SIDE as i64, 0).unwrap_err().max,
            MAX_SIDE - 1
        );
    }

    #[test]
    fn coords_are_parsed_against_the_board() {
        let d = Dimensions::parse(10, 20).unwrap();
        assert_eq!(d.coord(9, 19).unwrap(), Coord::new_unchecked(9, 19));
        let e = d.coord(10, 0).unwrap_err();
        assert_eq!((e.axis, e.max), ("x", 9));
        assert_eq!(d.coord(0, -1).unwrap_err().axis, "y");
        assert_eq!(Coord::new_unchecked(3, 2).index(d), 23);
    }

    #[test]
    fn four_bit_layout_matches_redis_bitfield_u4() {
        // BITFIELD key SET u4 #i v writes bits [4i, 4i+4), most significant first, so
        // even pixels land in the high nibble.
        let d = Dimensions::parse(3, 1).unwrap();
        let mut b = Board::new(d, Depth::Four);
        b.set(Coord::new_unchecked(0, 0), ColorIndex::new_unchecked(0xa));
        b.set(Coord::new_unchecked(1, 0), ColorIndex::new_unchecked(0x5));
        b.set(Coord::new_unchecked(2, 0), ColorIndex::new_unchecked(0xf));
        assert_eq!(b.as_bytes(), &[0xa5, 0xf0]);
        assert_eq!(b.get(Coord::new_unchecked(1, 0)).get(), 5);
        b.set(Coord::new_unchecked(0, 0), ColorIndex::new_unchecked(1));
        assert_eq!(b.as_bytes(), &[0x15, 0xf0]);
    }

    #[test]
    fn eight_bit_layout_is_one_byte_per_pixel() {
        let d = Dimensions::parse(2, 2).unwrap();
        let mut b = Board::new(d, Depth::Eight);
        b.set(Coord::new_unchecked(1, 1), ColorIndex::new_unchecked(200));
        assert_eq!(b.as_bytes(), &[0, 0, 0, 200]);
        let mut row = Vec::new();
        b.unpacked_row(1, &mut row);
        assert_eq!(row, vec![0, 200]);
    }

    #[test]
    fn from_bytes_checks_length() {
        let d = Dimensions::parse(3, 3).unwrap();
        assert!(Board::from_bytes(d, Depth::Four, vec![0; 5]).is_ok());
        assert_eq!(
            Board::from_bytes(d, Depth::Four, vec![0; 4]),
            Err(BoardLengthError {
                got: 4,
                expected: 5
            })
        );
    }
}
