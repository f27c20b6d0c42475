//! Encoded board versions for `GET /api/board` and `GET /api/board.png`.
//!
//! A version is a copy of the live board taken at most once per TTL (and only when the
//! seq moved). Each encoding of a version (zstd, brotli, gzip, PNG) is computed once, on
//! the first request that asks for it, off the async threads; every other request for the
//! same version gets the same bytes. So at 1,000 placements/s and a 3 s TTL the server
//! compresses at most one board per encoding every 3 s, whatever the request rate.

use crate::hub::Hub;
use bytes::Bytes;
use rplace_domain::board::Depth;
use rplace_domain::{Board, Palette, Seq};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Content encodings the board is offered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Zstd,
    Brotli,
    Gzip,
}

impl Encoding {
    /// Picks the best encoding an `Accept-Encoding` header allows: zstd, then br, then gzip.
    pub fn negotiate(accept: &str) -> Self {
        let offered = |name: &str| {
            accept.split(',').any(|part| {
                let mut it = part.split(';');
                let token = it.next().unwrap_or("").trim();
                let q_zero = it.any(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q == 0.0)
                });
                token.eq_ignore_ascii_case(name) && !q_zero
            })
        };
        if offered("zstd") {
            Encoding::Zstd
        } else if offered("br") {
            Encoding::Brotli
        } else if offered("gzip") {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Zstd => Some("zstd"),
            Encoding::Brotli => Some("br"),
            Encoding::Gzip => Some("gzip"),
        }
    }
}

/// One board version and its encodings.
pub struct Version {
    /// Every placement up to this seq is on it.
    pub seq: Seq,
    /// The packed bytes, as served uncompressed.
    pub raw: Bytes,
    /// When it was taken, to decide when the next one is due.
    taken: Instant,
    /// The zstd body, made by the first request that accepts zstd.
    zstd: OnceCell<Bytes>,
    /// The brotli body, made on first use.
    brotli: OnceCell<Bytes>,
    /// The gzip body, made on first use.
    gzip: OnceCell<Bytes>,
    /// The PNG rendering, made on first use.
    png: OnceCell<Bytes>,
}

/// Encoding failures (these are bugs or resource exhaustion, never user errors).
#[derive(Debug, thiserror::Error)]
#[error("board encoding failed: {0}")]
pub struct EncodeError(String);

async fn blocking<F: FnOnce() -> Result<Vec<u8>, EncodeError> + Send + 'static>(
    f: F,
) -> Result<Bytes, EncodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EncodeError(e.to_string()))?
        .map(Bytes::from)
}

impl Version {
    /// A version of `raw` (a board's or a tile's packed bytes) at `seq`, taken now.
    pub fn new(seq: Seq, raw: Bytes) -> Self {
        Self {
            seq,
            raw,
            taken: Instant::now(),
            zstd: OnceCell::new(),
            brotli: OnceCell::new(),
            gzip: OnceCell::new(),
            png: OnceCell::new(),
        }
    }

    /// How long ago it was taken.
    pub fn age(&self) -> Duration {
        self.taken.elapsed()
    }

    /// The body in `enc`, computing it on first use.
    pub async fn body(&self, enc: Encoding) -> Result<Bytes, EncodeError> {
        let raw = self.raw.clone();
        let cell = match enc {
            Encoding::Identity => return Ok(raw),
            Encoding::Zstd => &self.zstd,
            Encoding::Brotli => &self.brotli,
            Encoding::Gzip => &self.gzip,
        };
        cell.get_or_try_init(|| {
            blocking(move || {
                metrics::counter!("rplace_board_encodings_total").increment(1);
                compress(enc, &raw)
            })
        })
        .await
        .cloned()
    }

    /// The board as an indexed PNG, computed on first use.
    pub async fn png(
        &self,
        dims: rplace_domain::Dimensions,
        palette: &Palette,
    ) -> Result<Bytes, EncodeError> {
        let raw = self.raw.clone();
        let palette = palette.clone();
        self.png
            .get_or_try_init(|| blocking(move || encode_png(dims, &palette, raw.to_vec())))
            .await
            .cloned()
    }
}

fn compress(enc: Encoding, raw: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let err = |e: std::io::Error| EncodeError(e.to_string());
    match enc {
        Encoding::Identity => Ok(raw.to_vec()),
        Encoding::Zstd => zstd::bulk::compress(raw, 3).map_err(err),
        Encoding::Brotli => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 5, 22);
                w.write_all(raw).map_err(err)?;
            }
            Ok(out)
        }
        Encoding::Gzip => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            w.write_all(raw).map_err(err)?;
            w.finish().map_err(err)
        }
    }
}

/// Indexed PNG: 4-bit rows are the packed board's rows when the width is even (PNG packs
/// high nibble first, as the board does); otherwise one byte per pixel.
fn encode_png(
    dims: rplace_domain::Dimensions,
    palette: &Palette,
    raw: Vec<u8>,
) -> Result<Vec<u8>, EncodeError> {
    let err = |e: png::EncodingError| EncodeError(e.to_string());
    let depth = Depth::for_palette_len(palette.len());
    let board = Board::from_bytes(dims, depth, raw).map_err(|e| EncodeError(e.to_string()))?;
    let direct = depth == Depth::Four && dims.width().is_multiple_of(2);
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, dims.width(), dims.height());
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(if direct {
            png::BitDepth::Four
        } else {
            png::BitDepth::Eight
        });
        let mut plte: Vec<u8> = palette.colors().iter().flat_map(|c| c.0).collect();
        if direct {
            plte.resize(16 * 3, 0); // a 4-bit image may index 16 entries
        }
        enc.set_palette(plte);
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().map_err(err)?;
        let data = if direct {
            board.as_bytes().to_vec()
        } else {
            let mut all = Vec::with_capacity(dims.pixels());
            let mut row = Vec::new();
            for y in 0..dims.height() {
                board.unpacked_row(y, &mut row);
                all.extend_from_slice(&row);
            }
            all
        };
        w.write_image_data(&data).map_err(err)?;
        w.finish().map_err(err)?;
    }
    Ok(out)
}

/// The current version, refreshed lazily.
pub struct BoardCache {
    /// The version being served; `None` until the first request.
    current: Mutex<Option<Arc<Version>>>,
    /// Serialises refreshes so concurrent requests take one copy, not one each.
    refresh: tokio::sync::Mutex<()>,
    /// How long a version is served before a newer one is taken.
    ttl: Duration,
}

impl BoardCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            current: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            ttl,
        }
    }

    fn fresh(&self, hub: &Hub) -> Option<Arc<Version>> {
        let cur = self.current.lock().expect("board cache lock").clone()?;
        let same_canvas = cur.raw.len() == hub.depth().bytes_for(hub.dims().pixels());
        (same_canvas && (cur.taken.elapsed() < self.ttl || cur.seq == hub.seq())).then_some(cur)
    }

    /// The version to serve now: composed from the hub's tiles at most once per TTL.
    /// Only for whole canvases (the caller checks).
    pub async fn get(&self, hub: &Hub) -> Result<Arc<Version>, crate::hub::LoadError> {
        if let Some(cur) = self.fresh(hub) {
            return Ok(cur);
        }
        let _guard = self.refresh.lock().await;
        if let Some(cur) = self.fresh(hub) {
            return Ok(cur);
        }
        let (seq, raw) = hub.compose_board().await?;
        let fresh = Arc::new(Version::new(seq, Bytes::from(raw)));
        *self.current.lock().expect("board cache lock") = Some(fresh.clone());
        metrics::counter!("rplace_board_versions_total").increment(1);
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_zstd_then_br_then_gzip() {
        assert_eq!(
            Encoding::negotiate("gzip, deflate, br, zstd"),
            Encoding::Zstd
        );
        assert_eq!(Encoding::negotiate("gzip, br"), Encoding::Brotli);
        assert_eq!(Encoding::negotiate("gzip;q=0.5"), Encoding::Gzip);
        assert_eq!(Encoding::negotiate("br;q=0, gzip"), Encoding::Gzip);
        assert_eq!(Encoding::negotiate(""), Encoding::Identity);
        assert_eq!(Encoding::negotiate("identity"), Encoding::Identity);
    }

    #[test]
    fn compressions_round_trip() {
        use std::io::Read;
        let raw: Vec<u8> = (0..10_000u32).map(|i| (i % 7) as u8).collect();
        let z = compress(Encoding::Zstd, &raw).unwrap();
        assert_eq!(zstd::bulk::decompress(&z, raw.len()).unwrap(), raw);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&compress(Encoding::Gzip, &raw).unwrap()[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, raw);
        let mut out = Vec::new();
        brotli::Decompressor::new(&compress(Encoding::Brotli, &raw).unwrap()[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, raw);
    }

    #[tokio::test]
    async fn each_encoding_is_computed_once_per_version() {
        let v = Version::new(Seq(1), Bytes::from(vec![7u8; 4096]));
        for enc in [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip] {
            let (a, b) = tokio::join!(v.body(enc), v.body(enc));
            let (a, b, c) = (a.unwrap(), b.unwrap(), v.body(enc).await.unwrap());
            // The same allocation every time: compressed once, then shared.
            assert_eq!(a.as_ptr(), b.as_ptr());
            assert_eq!(a.as_ptr(), c.as_ptr());
            assert!(a.len() < 4096);
        }
    }

    #[test]
    fn png_decodes_to_the_board() {
        for width in [4u64, 5] {
            let dims = rplace_domain::Dimensions::parse(width, 3).unwrap();
            let pal = Palette::place_2017();
            let mut b = Board::new(dims, Depth::Four);
            b.set(
                rplace_domain::Coord::new_unchecked(3, 2),
                rplace_domain::ColorIndex::new_unchecked(13),
            );
            let png_bytes = encode_png(dims, &pal, b.as_bytes().to_vec()).unwrap();
            let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
            dec.set_transformations(png::Transformations::EXPAND);
            let mut reader = dec.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert_eq!((info.width, info.height), (width as u32, 3));
            let px = (2 * width as usize + 3) * 3;
            assert_eq!(&buf[px..px + 3], &pal.colors()[13].0);
            assert_eq!(&buf[0..3], &[255, 255, 255]);
        }
    }
}
