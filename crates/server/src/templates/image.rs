//! A template's PNG both ways: decoding an upload into RGBA, after its header says its
//! size is allowed, and encoding the palette-mapped image that the server stores and
//! serves.

use rplace_domain::Palette;
use rplace_domain::template::{self, TemplateImage};
use std::io::Cursor;

/// The eight bytes every PNG starts with.
const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Why an upload is not a usable image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the body is not a PNG image")]
    NotPng,
    #[error("the PNG image could not be decoded: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Size(template::TemplateError),
}

/// The PNG's size and its pixels as 8-bit RGBA. The size in the header is checked against
/// [`template::check_size`] before anything is inflated, so a small file that claims a
/// huge image (a decompression bomb) is refused at the cost of reading its first chunk;
/// the decoder's own allocation limit then holds it to what that size needs.
pub fn decode(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), ImageError> {
    if !bytes.starts_with(SIGNATURE) {
        return Err(ImageError::NotPng);
    }
    let corrupt = |e: png::DecodingError| ImageError::Corrupt(e.to_string());
    let side = template::MAX_SIDE as usize;
    // RGBA at 16 bits per channel of the largest allowed image, and the decoder's buffers.
    let limits = png::Limits {
        bytes: side * side * 8 + (1 << 20),
    };
    let mut dec = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    let (w, h) = {
        let info = dec.read_header_info().map_err(corrupt)?;
        (info.width, info.height)
    };
    template::check_size(w, h).map_err(ImageError::Size)?;
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(corrupt)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ImageError::Corrupt("the image is too large to decode".into()))?;
    let mut buf = vec![0; size];
    let out = reader.next_frame(&mut buf).map_err(corrupt)?;
    let channels = match out.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        // Expanded by `normalize_to_color8`.
        png::ColorType::Indexed => {
            return Err(ImageError::Corrupt(
                "an indexed image was not expanded".into(),
            ));
        }
    };
    let (w, h) = (out.width as usize, out.height as usize);
    let mut rgba = Vec::with_capacity(w * h * 4);
    for row in buf.chunks_exact(out.line_size).take(h) {
        for p in row[..w * channels].chunks_exact(channels) {
            rgba.extend_from_slice(&match channels {
                1 => [p[0], p[0], p[0], 255],
                2 => [p[0], p[0], p[0], p[1]],
                3 => [p[0], p[1], p[2], 255],
                _ => [p[0], p[1], p[2], p[3]],
            });
        }
    }
    Ok((out.width, out.height, rgba))
}

/// The mapped image as a PNG: indexed (8 bits) with the palette and one more entry for
/// transparency, made transparent by `tRNS`; for a palette of 256 colors, which leaves no
/// index free, 8-bit RGBA.
pub fn encode(palette: &Palette, img: &TemplateImage) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let colors = palette.colors();
    let mut enc = png::Encoder::new(&mut out, img.width(), img.height());
    enc.set_compression(png::Compression::Balanced);
    let data: Vec<u8> = if colors.len() < 256 {
        let clear = colors.len() as u8;
        let mut plte: Vec<u8> = colors.iter().flat_map(|c| c.0).collect();
        plte.extend_from_slice(&[0, 0, 0]);
        let mut trns = vec![255u8; colors.len()];
        trns.push(0);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(plte);
        enc.set_trns(trns);
        img.pixels()
            .iter()
            .map(|p| p.map_or(clear, |c| c.get()))
            .collect()
    } else {
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        img.pixels()
            .iter()
            .flat_map(|p| match p {
                Some(c) => {
                    let [r, g, b] = colors[usize::from(c.get())].0;
                    [r, g, b, 255]
                }
                None => [0, 0, 0, 0],
            })
            .collect()
    };
    let mut w = enc.write_header()?;
    w.write_image_data(&data)?;
    w.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(w: u32, h: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(data).unwrap();
        wr.finish().unwrap();
        out
    }

    #[test]
    fn decodes_every_color_type_to_rgba() {
        let (w, h, px) = decode(&png_of(2, 1, png::ColorType::Rgb, &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!((w, h), (2, 1));
        assert_eq!(px, vec![1, 2, 3, 255, 4, 5, 6, 255]);
        let (_, _, px) = decode(&png_of(1, 1, png::ColorType::GrayscaleAlpha, &[9, 7])).unwrap();
        assert_eq!(px, vec![9, 9, 9, 7]);
    }

    #[test]
    fn refuses_what_is_not_a_small_png() {
        assert_eq!(decode(b"GIF89a"), Err(ImageError::NotPng));
        let mut truncated = png_of(1, 1, png::ColorType::Rgb, &[0, 0, 0]);
        truncated.truncate(30);
        assert!(matches!(decode(&truncated), Err(ImageError::Corrupt(_))));
    }

    #[test]
    fn round_trips_mapped_pixels_with_transparency() {
        let pal = Palette::place_2017();
        let rgba = [255, 255, 255, 255, 0, 0, 0, 0, 229, 0, 0, 255];
        let img = TemplateImage::from_rgba(&pal, 3, 1, &rgba).unwrap();
        let (_, _, back) = decode(&encode(&pal, &img).unwrap()).unwrap();
        assert_eq!(back, vec![255, 255, 255, 255, 0, 0, 0, 0, 229, 0, 0, 255]);
        let big: Vec<String> = (0..256).map(|i| format!("#{i:02X}0000")).collect();
        let big = Palette::parse(&big).unwrap();
        let img = TemplateImage::from_rgba(&big, 3, 1, &rgba).unwrap();
        let (_, _, back) = decode(&encode(&big, &img).unwrap()).unwrap();
        assert_eq!(&back[4..8], &[0, 0, 0, 0]);
        assert_eq!(&back[8..12], &[229, 0, 0, 255]);
    }
}
