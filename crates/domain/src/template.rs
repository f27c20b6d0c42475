//! Templates: an image a community means to draw, placed at a position on the canvas, its
//! pixels mapped to the palette. Pure: the server decodes the uploaded PNG into RGBA and
//! encodes the mapped image; everything about what the pixels become is here.
//!
//! # Mapping
//! A pixel with alpha below [`OPAQUE_MIN`] is transparent ("don't care": the template says
//! nothing about that canvas pixel). Any other pixel becomes the palette color nearest to
//! its red, green and blue (alpha ignored) by the "redmean" distance, a weighted Euclidean
//! distance in sRGB whose weights follow the mean red of the two colors
//! (`(2 + r̄/256)·ΔR² + 4·ΔG² + (2 + (255 − r̄)/256)·ΔB²`): as cheap as plain Euclidean,
//! and much closer to how far apart people see the colors. Ties go to the lower index, so
//! a color that is in the palette always maps to itself (distance 0).

use crate::board::Dimensions;
use crate::palette::{ColorIndex, Palette, Rgb};
use thiserror::Error;

/// Lowest alpha of a pixel that the template sets; below it the pixel is transparent.
pub const OPAQUE_MIN: u8 = 128;
/// Longest side of a template, in pixels.
pub const MAX_SIDE: u32 = 2048;
/// Longest template name, in characters.
pub const NAME_MAX: usize = 64;
/// Length of a template id.
pub const ID_LEN: usize = 10;
/// The characters of an id (base62): URL-safe, no escaping anywhere.
pub const ID_ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A template's pixels as palette indices, row by row; `None` is transparent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateImage {
    /// Width in pixels, 1 to [`MAX_SIDE`].
    width: u32,
    /// Height in pixels, 1 to [`MAX_SIDE`].
    height: u32,
    /// `width * height` pixels, row-major.
    pixels: Vec<Option<ColorIndex>>,
}

/// Why an image cannot be a template.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("a template must be 1 to {MAX_SIDE} pixels on each side, got {width}x{height}")]
    BadSize { width: u32, height: u32 },
    #[error("expected {expected} bytes of RGBA pixels, got {got}")]
    BadLength { expected: usize, got: usize },
    #[error(
        "a {width}x{height} template at ({x}, {y}) does not fit on the {canvas_w}x{canvas_h} canvas"
    )]
    OffCanvas {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        canvas_w: u32,
        canvas_h: u32,
    },
    #[error("the name must be 1 to {NAME_MAX} characters without control characters")]
    BadName,
}

/// Whether a `width` x `height` image may be a template (checked on the PNG header, before
/// anything is decoded, so a small file that inflates to a huge image costs nothing).
pub fn check_size(width: u32, height: u32) -> Result<(), TemplateError> {
    if (1..=MAX_SIDE).contains(&width) && (1..=MAX_SIDE).contains(&height) {
        Ok(())
    } else {
        Err(TemplateError::BadSize { width, height })
    }
}

/// Whether a `width` x `height` template at `(x, y)` lies wholly on a canvas of `dims`.
pub fn check_fits(
    dims: Dimensions,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
) -> Result<(), TemplateError> {
    let fits = u64::from(x) + u64::from(width) <= u64::from(dims.width())
        && u64::from(y) + u64::from(height) <= u64::from(dims.height());
    if fits {
        Ok(())
    } else {
        Err(TemplateError::OffCanvas {
            x,
            y,
            width,
            height,
            canvas_w: dims.width(),
            canvas_h: dims.height(),
        })
    }
}

/// A template name: trimmed, 1 to [`NAME_MAX`] characters, no control characters (it is
/// shown in lists and links).
pub fn parse_name(raw: &str) -> Result<String, TemplateError> {
    let name = raw.trim();
    let n = name.chars().count();
    if n == 0 || n > NAME_MAX || name.chars().any(char::is_control) {
        return Err(TemplateError::BadName);
    }
    Ok(name.to_string())
}

/// Whether `s` has the shape of a template id.
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| ID_ALPHABET.contains(&b))
}

/// A template id from [`ID_LEN`] random bytes (each taken modulo 62, whose bias of under
/// 2% per character does not matter for 59 bits of unguessability).
pub fn id_from(random: [u8; ID_LEN]) -> String {
    random
        .iter()
        .map(|b| ID_ALPHABET[usize::from(*b) % ID_ALPHABET.len()] as char)
        .collect()
}

/// The redmean distance between two colors (see the module docs), scaled by 256.
pub fn distance(a: Rgb, b: Rgb) -> u32 {
    let [ar, ag, ab] = a.0.map(i32::from);
    let [br, bg, bb] = b.0.map(i32::from);
    let rmean = (ar + br) / 2;
    let (dr, dg, db) = (ar - br, ag - bg, ab - bb);
    (((512 + rmean) * dr * dr) + 1024 * dg * dg + ((767 - rmean) * db * db)) as u32
}

/// The palette color nearest to `c` (ties to the lower index).
pub fn nearest(palette: &Palette, c: Rgb) -> ColorIndex {
    let (i, _) = palette
        .colors()
        .iter()
        .enumerate()
        .min_by_key(|(i, p)| (distance(c, **p), *i))
        .expect("a palette has at least 2 colors");
    ColorIndex::new_unchecked(i as u8)
}

impl TemplateImage {
    /// Maps `width * height` RGBA pixels (8 bits per channel, row-major) to the palette.
    pub fn from_rgba(
        palette: &Palette,
        width: u32,
        height: u32,
        rgba: &[u8],
    ) -> Result<Self, TemplateError> {
        check_size(width, height)?;
        let expected = width as usize * height as usize * 4;
        if rgba.len() != expected {
            return Err(TemplateError::BadLength {
                expected,
                got: rgba.len(),
            });
        }
        // Images have few distinct colors: remember the last mapping.
        let mut last: Option<([u8; 3], ColorIndex)> = None;
        let pixels = rgba
            .chunks_exact(4)
            .map(|p| {
                if p[3] < OPAQUE_MIN {
                    return None;
                }
                let rgb = [p[0], p[1], p[2]];
                Some(match last {
                    Some((c, i)) if c == rgb => i,
                    _ => {
                        let i = nearest(palette, Rgb(rgb));
                        last = Some((rgb, i));
                        i
                    }
                })
            })
            .collect();
        Ok(TemplateImage {
            width,
            height,
            pixels,
        })
    }

    /// An image of already mapped pixels (read back from a store), checked for shape.
    pub fn from_pixels(
        width: u32,
        height: u32,
        pixels: Vec<Option<ColorIndex>>,
    ) -> Result<Self, TemplateError> {
        check_size(width, height)?;
        let expected = width as usize * height as usize;
        if pixels.len() != expected {
            return Err(TemplateError::BadLength {
                expected,
                got: pixels.len(),
            });
        }
        Ok(TemplateImage {
            width,
            height,
            pixels,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels, row-major; `None` is transparent.
    pub fn pixels(&self) -> &[Option<ColorIndex>] {
        &self.pixels
    }

    /// How many pixels the template sets (not transparent).
    pub fn opaque(&self) -> usize {
        self.pixels.iter().filter(|p| p.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pal() -> Palette {
        Palette::place_2017()
    }

    #[test]
    fn palette_colors_map_to_themselves() {
        let p = pal();
        for (i, c) in p.colors().iter().enumerate() {
            assert_eq!(nearest(&p, *c).get() as usize, i, "{}", c.to_hex());
        }
    }

    #[test]
    fn nearest_color_by_redmean() {
        let p = pal();
        // Almost white, almost black (#222222 is index 3), a dark red, a pure blue.
        assert_eq!(nearest(&p, Rgb([250, 250, 250])).get(), 0);
        assert_eq!(nearest(&p, Rgb([0, 0, 0])).get(), 3);
        assert_eq!(nearest(&p, Rgb([200, 10, 10])).get(), 5);
        assert_eq!(nearest(&p, Rgb([0, 0, 255])).get(), 13);
        // Orange-ish goes to the palette's orange, not its red or yellow.
        assert_eq!(nearest(&p, Rgb([230, 140, 10])).get(), 6);
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let p = Palette::parse(&["#000000", "#000000", "#FFFFFF"]).unwrap();
        assert_eq!(nearest(&p, Rgb([10, 10, 10])).get(), 0);
    }

    #[test]
    fn distance_is_zero_only_for_equal_colors() {
        assert_eq!(distance(Rgb([1, 2, 3]), Rgb([1, 2, 3])), 0);
        assert!(distance(Rgb([1, 2, 3]), Rgb([1, 2, 4])) > 0);
        // Green differences weigh most, as the eye sees them.
        let g = distance(Rgb([0, 0, 0]), Rgb([0, 10, 0]));
        let b = distance(Rgb([0, 0, 0]), Rgb([0, 0, 10]));
        assert!(g > b);
    }

    #[test]
    fn alpha_below_half_is_transparent() {
        let p = pal();
        #[rustfmt::skip]
        let rgba = [
            255, 0, 0, 127,   255, 0, 0, 128,
            0, 0, 0, 0,       0, 0, 0, 255,
        ];
        let t = TemplateImage::from_rgba(&p, 2, 2, &rgba).unwrap();
        let got: Vec<Option<u8>> = t.pixels().iter().map(|c| c.map(|c| c.get())).collect();
        assert_eq!(got, vec![None, Some(5), None, Some(3)]);
        assert_eq!(t.opaque(), 2);
    }

    #[test]
    fn sizes_and_lengths_are_checked() {
        let p = pal();
        assert_eq!(
            TemplateImage::from_rgba(&p, 0, 1, &[]),
            Err(TemplateError::BadSize {
                width: 0,
                height: 1
            })
        );
        assert!(check_size(MAX_SIDE, MAX_SIDE).is_ok());
        assert!(check_size(MAX_SIDE + 1, 1).is_err());
        assert!(matches!(
            TemplateImage::from_rgba(&p, 1, 1, &[0, 0, 0]),
            Err(TemplateError::BadLength { expected: 4, .. })
        ));
        assert!(TemplateImage::from_pixels(2, 1, vec![None]).is_err());
    }

    #[test]
    fn templates_must_fit_on_the_canvas() {
        let d = Dimensions::parse(100, 50).unwrap();
        assert!(check_fits(d, 0, 0, 100, 50).is_ok());
        assert!(check_fits(d, 90, 40, 10, 10).is_ok());
        assert!(check_fits(d, 91, 0, 10, 10).is_err());
        assert!(check_fits(d, 0, 41, 10, 10).is_err());
        assert!(check_fits(d, u32::MAX, 0, 1, 1).is_err());
    }

    #[test]
    fn names_and_ids() {
        assert_eq!(parse_name("  Our flag ").unwrap(), "Our flag");
        assert!(parse_name("   ").is_err());
        assert!(parse_name("a\nb").is_err());
        assert!(parse_name(&"x".repeat(NAME_MAX + 1)).is_err());
        assert!(parse_name(&"é".repeat(NAME_MAX)).is_ok());
        let id = id_from([0, 61, 62, 255, 1, 2, 3, 4, 5, 6]);
        assert_eq!(id, "0z07123456");
        assert!(is_id(&id));
        assert!(!is_id("short"));
        assert!(!is_id("abcdefghi-"));
    }
}
