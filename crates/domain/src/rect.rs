//! A rectangle on the board: what moderators protect, fill, restore and roll back.

use crate::board::{Coord, Dimensions};
use thiserror::Error;

/// A non-empty rectangle that lies wholly on the board. Only [`Rect::parse`] makes one
/// from outside input, so holding a `Rect` means every pixel in it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Rect {
    /// Left column.
    x: u32,
    /// Top row.
    y: u32,
    /// Width in pixels, at least 1.
    w: u32,
    /// Height in pixels, at least 1.
    h: u32,
}

/// Why a rectangle is not on the board.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct RectError {
    /// Which of x, y, w, h is wrong.
    pub field: &'static str,
    pub message: String,
}

impl Rect {
    /// `{x, y, w, h}` as a client sent it, checked against the board.
    pub fn parse(dims: Dimensions, x: i64, y: i64, w: i64, h: i64) -> Result<Rect, RectError> {
        let (bw, bh) = (i64::from(dims.width()), i64::from(dims.height()));
        let check = |field: &'static str, v: i64, lo: i64, hi: i64| {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(RectError {
                    field,
                    message: format!("{field} must be {lo}..={hi}, got {v}"),
                })
            }
        };
        let x = check("x", x, 0, bw - 1)?;
        let y = check("y", y, 0, bh - 1)?;
        let w = check("w", w, 1, bw - x)?;
        let h = check("h", h, 1, bh - y)?;
        Ok(Rect {
            x: x as u32,
            y: y as u32,
            w: w as u32,
            h: h as u32,
        })
    }

    /// A rectangle read back from storage, trusted to have been parsed before.
    pub const fn new_unchecked(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    /// The whole board.
    pub fn board(dims: Dimensions) -> Rect {
        Rect::new_unchecked(0, 0, dims.width(), dims.height())
    }

    pub fn x(&self) -> u32 {
        self.x
    }
    pub fn y(&self) -> u32 {
        self.y
    }
    pub fn w(&self) -> u32 {
        self.w
    }
    pub fn h(&self) -> u32 {
        self.h
    }

    /// Pixels it covers.
    pub fn area(&self) -> u64 {
        u64::from(self.w) * u64::from(self.h)
    }

    pub fn contains(&self, c: Coord) -> bool {
        let (x, y) = (c.x(), c.y());
        x >= self.x && x < self.x + self.w && y >= self.y && y < self.y + self.h
    }

    /// Every coordinate in it, row by row.
    pub fn coords(&self) -> impl Iterator<Item = Coord> + '_ {
        (self.y..self.y + self.h)
            .flat_map(move |y| (self.x..self.x + self.w).map(move |x| Coord::new_unchecked(x, y)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_what_lies_on_the_board() {
        let d = Dimensions::parse(10, 5).unwrap();
        let r = Rect::parse(d, 2, 1, 8, 4).unwrap();
        assert_eq!(r.area(), 32);
        assert!(r.contains(Coord::new_unchecked(9, 4)));
        assert!(!r.contains(Coord::new_unchecked(1, 4)));
        assert_eq!(r.coords().count(), 32);
        assert_eq!(Rect::parse(d, 2, 1, 9, 4).unwrap_err().field, "w");
        assert_eq!(Rect::parse(d, 0, 0, 0, 1).unwrap_err().field, "w");
        assert_eq!(Rect::parse(d, 0, 5, 1, 1).unwrap_err().field, "y");
        assert_eq!(Rect::parse(d, -1, 0, 1, 1).unwrap_err().field, "x");
        assert_eq!(Rect::board(d).area(), 50);
    }
}
