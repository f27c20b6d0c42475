//! The images of the rewrite endpoints: the PNG of a change that the admin page draws as
//! its preview, and the stamped PNG mapped to the palette.

use crate::error::ApiError;
use rplace_domain::{ColorIndex, Coord, Palette, Rect};
use rplace_store::rewrite::Change;

/// A decoded stamp: its size and, per pixel (row by row), the palette color it maps to
/// or `None` where it is fully transparent.
pub struct Stamp {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major, `width * height` entries.
    pub pixels: Vec<Option<ColorIndex>>,
}

fn invalid_png(message: String) -> ApiError {
    ApiError::InvalidField {
        field: "body",
        message,
        allowed: "a PNG image (any color type, 8 or 16 bits)".into(),
    }
}

/// Decodes `body` and maps every pixel to the nearest palette color. The size is checked
/// against `max` (width, height) from the header, before any pixel is decoded.
pub fn decode_stamp(body: &[u8], palette: &Palette, max: (u32, u32)) -> Result<Stamp, ApiError> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(body));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| invalid_png(format!("the body is not a readable PNG: {e}")))?;
    let (width, height) = {
        let info = reader.info();
        (info.width, info.height)
    };
    if width > max.0 || height > max.1 {
        return Err(ApiError::InvalidField {
            field: "body",
            message: format!(
                "the image is {width}x{height}, larger than the {}x{} board",
                max.0, max.1
            ),
            allowed: format!("an image of at most {}x{} pixels", max.0, max.1),
        });
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| invalid_png("the PNG is too large to decode".into()))?;
    let mut buf = vec![0; size];
    let frame = reader
        .next_frame(&mut buf)
        .map_err(|e| invalid_png(format!("the PNG's pixels cannot be decoded: {e}")))?;
    let channels = frame.color_type.samples();
    let colors = palette.colors();
    let mut pixels = Vec::with_capacity(width as usize * height as usize);
    for row in buf[..frame.buffer_size()].chunks_exact(frame.line_size) {
        for px in row[..width as usize * channels].chunks_exact(channels) {
            let (rgb, alpha) = match *px {
                [g] => ([g, g, g], 255),
                [g, a] => ([g, g, g], a),
                [r, g, b] => ([r, g, b], 255),
                [r, g, b, a] => ([r, g, b], a),
                _ => return Err(invalid_png("unsupported PNG pixel layout".into())),
            };
            if alpha == 0 {
                pixels.push(None);
                continue;
            }
            pixels.push(Some(nearest(colors, rgb)));
        }
    }
    Ok(Stamp {
        width,
        height,
        pixels,
    })
}

/// The palette index nearest to `rgb` (squared distance in RGB; the first on a tie).
fn nearest(colors: &[rplace_domain::palette::Rgb], rgb: [u8; 3]) -> ColorIndex {
    let dist = |c: [u8; 3]| -> u32 {
        c.iter()
            .zip(rgb)
            .map(|(&a, b)| (i32::from(a) - i32::from(b)).pow(2) as u32)
            .sum()
    };
    let best = colors
        .iter()
        .enumerate()
        .min_by_key(|(_, c)| dist(c.0))
        .map_or(0, |(i, _)| i);
    ColorIndex::new_unchecked(best as u8)
}

/// The smallest rectangle around `coords`, if any.
pub fn bbox(coords: impl Iterator<Item = Coord>) -> Option<Rect> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for c in coords {
        let (x, y) = (c.x(), c.y());
        b = Some(match b {
            None => (x, y, x, y),
            Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
        });
    }
    b.map(|(x0, y0, x1, y1)| Rect::new_unchecked(x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

/// A PNG of `bbox`'s size: each change in its new color, everything else transparent.
pub fn diff_png<'a>(
    bbox: Rect,
    changes: impl Iterator<Item = &'a Change>,
    palette: &Palette,
) -> Result<Vec<u8>, png::EncodingError> {
    let (w, h) = (bbox.w() as usize, bbox.h() as usize);
    let mut rgba = vec![0u8; w * h * 4];
    for c in changes {
        let i = ((c.coord.y() - bbox.y()) as usize * w + (c.coord.x() - bbox.x()) as usize) * 4;
        let rgb = palette
            .colors()
            .get(usize::from(c.color.get()))
            .map_or([0, 0, 0], |c| c.0);
        rgba[i..i + 3].copy_from_slice(&rgb);
        rgba[i + 3] = 255;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&rgba)?;
        writer.finish()?;
    }
    Ok(out)
}
