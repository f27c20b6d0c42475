//! The colors a pixel may take.

use crate::board::Depth;
use thiserror::Error;

/// The 16 colors of r/place 2017, in Reddit's order. Index 0 (white) is the blank canvas.
pub const PLACE_2017: [&str; 16] = [
    "#FFFFFF", "#E4E4E4", "#888888", "#222222", "#FFA7D1", "#E50000", "#E59500", "#A06A42",
    "#E5D900", "#94E044", "#02BE01", "#00D3DD", "#0083C7", "#0000EA", "#CF6EE4", "#820080",
];

/// One color as red, green, blue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    /// Parses `#RRGGBB` or `RRGGBB`.
    pub fn parse(s: &str) -> Result<Self, PaletteError> {
        let hexpart = s.trim().trim_start_matches('#');
        let mut out = [0u8; 3];
        if hexpart.len() != 6 || hex::decode_to_slice(hexpart, &mut out).is_err() {
            return Err(PaletteError::BadColor(s.to_string()));
        }
        Ok(Rgb(out))
    }

    pub fn to_hex(self) -> String {
        format!("#{}", hex::encode_upper(self.0))
    }
}

/// An ordered list of 2 to 256 colors. A pixel stores its index in this list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette {
    /// The colors, indexed by [`ColorIndex`].
    colors: Vec<Rgb>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PaletteError {
    #[error("palette color {0:?} is not a #RRGGBB hex color")]
    BadColor(String),
    #[error("palette must have between 2 and 256 colors, got {0}")]
    BadLength(usize),
}

impl Palette {
    pub fn parse<S: AsRef<str>>(colors: &[S]) -> Result<Self, PaletteError> {
        if !(2..=256).contains(&colors.len()) {
            return Err(PaletteError::BadLength(colors.len()));
        }
        let colors = colors
            .iter()
            .map(|c| Rgb::parse(c.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { colors })
    }

    /// Parses a comma-separated list such as `#FFFFFF,#000000`.
    pub fn parse_list(s: &str) -> Result<Self, PaletteError> {
        let parts: Vec<&str> = s.split(',').filter(|p| !p.trim().is_empty()).collect();
        Self::parse(&parts)
    }

    pub fn place_2017() -> Self {
        Self::parse(&PLACE_2017).expect("the 2017 palette is valid")
    }

    pub fn len(&self) -> usize {
        self.colors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.colors.is_empty()
    }

    pub fn colors(&self) -> &[Rgb] {
        &self.colors
    }

    /// Bits per pixel in the packed board layout.
    pub fn depth(&self) -> Depth {
        Depth::for_palette_len(self.colors.len())
    }

    /// Parses a color index sent by a client.
    pub fn color(&self, index: i64) -> Result<ColorIndex, ColorError> {
        if (0..self.colors.len() as i64).contains(&index) {
            Ok(ColorIndex(index as u8))
        } else {
            Err(ColorError {
                value: index,
                max: self.colors.len() - 1,
            })
        }
    }
}

/// An index into a [`Palette`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ColorIndex(u8);

#[derive(Debug, Error, PartialEq, Eq)]
#[error("color must be a palette index from 0 to {max}, got {value}")]
pub struct ColorError {
    pub value: i64,
    pub max: usize,
}

impl ColorIndex {
    /// For values read back from a store that only ever held parsed indices.
    pub fn new_unchecked(v: u8) -> Self {
        Self(v)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_palette_is_reddits_2017() {
        let p = Palette::place_2017();
        assert_eq!(p.len(), 16);
        assert_eq!(p.depth(), Depth::Four);
        assert_eq!(p.colors()[0], Rgb([255, 255, 255]));
        assert_eq!(p.colors()[15].to_hex(), "#820080");
    }

    #[test]
    fn parses_lists_and_rejects_bad_colors() {
        let p = Palette::parse_list("#000000, ffffff ,#123abc").unwrap();
        assert_eq!(p.colors()[2], Rgb([0x12, 0x3a, 0xbc]));
        assert_eq!(
            Palette::parse_list("#000000,#GGGGGG"),
            Err(PaletteError::BadColor("#GGGGGG".into()))
        );
        assert_eq!(
            Palette::parse_list("#000000"),
            Err(PaletteError::BadLength(1))
        );
        let many: Vec<String> = (0..257).map(|i| format!("#0000{:02x}", i % 256)).collect();
        assert_eq!(Palette::parse(&many), Err(PaletteError::BadLength(257)));
        let big: Vec<String> = (0..17).map(|i| format!("#0000{i:02x}")).collect();
        assert_eq!(Palette::parse(&big).unwrap().depth(), Depth::Eight);
    }

    #[test]
    fn colors_are_parsed_against_the_palette() {
        let p = Palette::place_2017();
        assert_eq!(p.color(15).unwrap().get(), 15);
        assert_eq!(p.color(16), Err(ColorError { value: 16, max: 15 }));
        assert!(p.color(-1).is_err());
    }
}
