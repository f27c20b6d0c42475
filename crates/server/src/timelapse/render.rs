//! Replaying placements into a region and encoding its frames as an APNG.
//!
//! The [`Renderer`] keeps the region's pixels (one palette index per byte) and the pixels
//! of the frame it wrote last. Placements are applied in seq order; frame `i` is cut
//! before the first placement later than its time `from + i × (to − from) / (frames − 1)`,
//! so it shows every placement up to that time. Frames after the first are the changed
//! sub-rectangle only (APNG's `fcTL` offsets), unchanged pixels in it written as a
//! transparent palette entry and blended over the previous frame: a frame of a busy
//! canvas costs what changed in it, not the whole region. A palette of 256 colors leaves
//! no index for transparency, so there the sub-rectangle is written opaque.

use rplace_domain::{Palette, Placement};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What to render, already validated (see `super::spec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frames {
    /// Left column of the region on the canvas.
    pub x: u32,
    /// Top row of the region on the canvas.
    pub y: u32,
    /// Width of the region, in canvas pixels.
    pub w: u32,
    /// Height of the region, in canvas pixels.
    pub h: u32,
    /// Time of the first frame, unix ms.
    pub from_ms: i64,
    /// Time of the last frame, unix ms (at least `from_ms`).
    pub to_ms: i64,
    /// Frames in the animation, at least 1.
    pub frames: u32,
    /// Frames per second when played.
    pub fps: u32,
    /// Output pixels per canvas pixel on each axis (nearest neighbour).
    pub scale: u32,
}

impl Frames {
    /// The time frame `i` shows the canvas at.
    pub fn time_of(&self, i: u32) -> i64 {
        if self.frames <= 1 {
            return self.to_ms;
        }
        let span = (self.to_ms - self.from_ms) as i128;
        self.from_ms + (span * i as i128 / (self.frames - 1) as i128) as i64
    }
}

/// Why rendering stopped.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The file would pass the size cap; the writer refused the byte that passed it.
    #[error("the animation would be larger than {max_bytes} bytes")]
    TooLarge { max_bytes: u64 },
    #[error("encoding: {0}")]
    Encode(#[from] png::EncodingError),
}

/// A writer that refuses to grow past a cap, so a render fails early instead of filling
/// the disk.
pub struct Capped<W> {
    /// Where the bytes go.
    inner: W,
    /// Bytes written so far, shared with the renderer (the PNG writer owns this).
    written: Arc<AtomicU64>,
    /// Most bytes allowed.
    cap: u64,
}

impl<W: Write> Capped<W> {
    pub fn new(inner: W, cap: u64) -> Self {
        Self {
            inner,
            written: Arc::new(AtomicU64::new(0)),
            cap,
        }
    }
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.written.load(Ordering::Relaxed);
        if written + buf.len() as u64 > self.cap {
            return Err(std::io::Error::from(std::io::ErrorKind::FileTooLarge));
        }
        let n = self.inner.write(buf)?;
        self.written.store(written + n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The replay and the encoder of one timelapse.
pub struct Renderer<W: Write> {
    /// The request.
    spec: Frames,
    /// The region now, row-major palette indices.
    cur: Vec<u8>,
    /// The region as the last frame written shows it.
    shown: Vec<u8>,
    /// Region-local bounding box (x0, y0, x1, y1 inclusive) of pixels placed on since the
    /// last frame; `None`: none.
    dirty: Option<(u32, u32, u32, u32)>,
    /// The next frame to cut.
    next: u32,
    /// Time of the next frame (cached [`Frames::time_of`]).
    next_ms: i64,
    /// The palette index that means "unchanged" (transparent), if the palette leaves one.
    clear: Option<u8>,
    /// One frame's scaled pixels, reused.
    scratch: Vec<u8>,
    /// The APNG being written.
    png: png::Writer<Capped<W>>,
    /// The file's cap, for the error.
    cap: u64,
    /// Bytes written so far (the [`Capped`] writer's count).
    written: Arc<AtomicU64>,
}

impl<W: Write> Renderer<W> {
    /// Starts the file: header, palette (plus the transparent entry), animation control.
    pub fn new(out: W, cap: u64, spec: Frames, palette: &Palette) -> Result<Self, RenderError> {
        let out = Capped::new(out, cap);
        let written = out.written.clone();
        let mut enc = png::Encoder::new(out, spec.w * spec.scale, spec.h * spec.scale);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        let mut plte: Vec<u8> = palette.colors().iter().flat_map(|c| c.0).collect();
        let clear = (palette.len() < 256).then_some(palette.len() as u8);
        if clear.is_some() {
            plte.extend_from_slice(&[0, 0, 0]);
            let mut trns = vec![255u8; palette.len()];
            trns.push(0);
            enc.set_trns(trns);
        }
        enc.set_palette(plte);
        // zlib level 1: real LZ77 matches over the long runs of "unchanged", several times
        // smaller than fdeflate's `Fast` on sparse frames (which is tuned for filtered
        // photos) and still a few ms per megapixel.
        enc.set_deflate_compression(png::DeflateCompression::Level(1));
        // Palette indices are not magnitudes: prediction filters only add entropy.
        enc.set_filter(png::Filter::NoFilter);
        enc.set_animated(spec.frames, 0)?;
        enc.set_frame_delay(1, spec.fps as u16)?;
        let png = enc.write_header().map_err(|e| map_cap(e, cap))?;
        let pixels = spec.w as usize * spec.h as usize;
        Ok(Self {
            spec,
            cur: vec![0; pixels],
            shown: vec![0; pixels],
            dirty: None,
            next: 0,
            next_ms: spec.time_of(0),
            clear,
            scratch: Vec::new(),
            png,
            cap,
            written,
        })
    }

    /// Frames written so far.
    pub fn frames_done(&self) -> u32 {
        self.next
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Applies `rows` (in seq order, continuing the previous page), cutting the frames
    /// whose time passes. Returns `true` once every frame is cut: the rest of the log
    /// cannot change the file.
    pub fn page(&mut self, rows: &[Placement]) -> Result<bool, RenderError> {
        let Frames { x, y, w, h, .. } = self.spec;
        for p in rows {
            while p.at_ms > self.next_ms {
                self.frame()?;
                if self.next == self.spec.frames {
                    return Ok(true);
                }
            }
            // Unsigned wrap-around makes one comparison per axis of "inside the region".
            let (lx, ly) = (p.coord.x().wrapping_sub(x), p.coord.y().wrapping_sub(y));
            if lx >= w || ly >= h {
                continue;
            }
            self.cur[ly as usize * w as usize + lx as usize] = p.color.get();
            self.dirty = Some(match self.dirty {
                None => (lx, ly, lx, ly),
                Some((x0, y0, x1, y1)) => (x0.min(lx), y0.min(ly), x1.max(lx), y1.max(ly)),
            });
        }
        Ok(false)
    }

    /// Cuts the frames left (the log ended before their times) and ends the file.
    pub fn finish(mut self) -> Result<(), RenderError> {
        while self.next < self.spec.frames {
            self.frame()?;
        }
        let cap = self.cap;
        self.png.finish().map_err(|e| map_cap(e, cap))
    }

    /// Writes the next frame: the whole region first, then what changed since.
    fn frame(&mut self) -> Result<(), RenderError> {
        let w = self.spec.w;
        let first = self.next == 0;
        let rect = if first {
            Some((0, 0, w - 1, self.spec.h - 1))
        } else {
            self.dirty.and_then(|d| self.changed_within(d))
        };
        // A frame must hold at least one pixel: an unchanged one, at the corner.
        let (x0, y0, x1, y1) = rect.unwrap_or((0, 0, 0, 0));
        let over = !first && self.clear.is_some();
        let s = self.spec.scale as usize;
        self.scratch.clear();
        let clear = self.clear.filter(|_| over);
        for ly in y0..=y1 {
            let start = self.scratch.len();
            let span =
                ly as usize * w as usize + x0 as usize..=ly as usize * w as usize + x1 as usize;
            let (cur, shown) = (&self.cur[span.clone()], &mut self.shown[span]);
            match clear {
                Some(clear) => {
                    for (&c, &was) in cur.iter().zip(shown.iter()) {
                        let v = if c == was { clear } else { c };
                        self.scratch.extend(std::iter::repeat_n(v, s));
                    }
                }
                None if s == 1 => self.scratch.extend_from_slice(cur),
                None => {
                    for &c in cur {
                        self.scratch.extend(std::iter::repeat_n(c, s));
                    }
                }
            }
            // The row's other scaled copies repeat the first.
            for _ in 1..s {
                self.scratch
                    .extend_from_within(start..start + cur.len() * s);
            }
            shown.copy_from_slice(cur);
        }
        let s = self.spec.scale;
        let cap = self.cap;
        let png = &mut self.png;
        let res = (|| {
            png.reset_frame_position()?;
            png.set_frame_dimension((x1 - x0 + 1) * s, (y1 - y0 + 1) * s)?;
            png.set_frame_position(x0 * s, y0 * s)?;
            png.set_blend_op(if over {
                png::BlendOp::Over
            } else {
                png::BlendOp::Source
            })?;
            png.write_image_data(&self.scratch)
        })();
        res.map_err(|e| map_cap(e, cap))?;
        self.dirty = None;
        self.next += 1;
        self.next_ms = self.spec.time_of(self.next);
        Ok(())
    }

    /// The bounding box of the pixels inside `d` that differ from the last frame.
    fn changed_within(
        &self,
        (x0, y0, x1, y1): (u32, u32, u32, u32),
    ) -> Option<(u32, u32, u32, u32)> {
        let w = self.spec.w as usize;
        let mut out: Option<(u32, u32, u32, u32)> = None;
        for ly in y0..=y1 {
            let row = ly as usize * w;
            let (a, b) = (
                &self.cur[row + x0 as usize..=row + x1 as usize],
                &self.shown[row + x0 as usize..=row + x1 as usize],
            );
            let Some(first) = a.iter().zip(b).position(|(p, q)| p != q) else {
                continue;
            };
            let last = a.iter().zip(b).rposition(|(p, q)| p != q).unwrap_or(first);
            let (fx, lx) = (x0 + first as u32, x0 + last as u32);
            out = Some(match out {
                None => (fx, ly, lx, ly),
                Some((ox0, oy0, ox1, _)) => (ox0.min(fx), oy0, ox1.max(lx), ly),
            });
        }
        out
    }
}

/// The cap's refusal as [`RenderError::TooLarge`], anything else as it is.
fn map_cap(e: png::EncodingError, max_bytes: u64) -> RenderError {
    match e {
        png::EncodingError::IoError(io) if io.kind() == std::io::ErrorKind::FileTooLarge => {
            RenderError::TooLarge { max_bytes }
        }
        e => RenderError::Encode(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rplace_domain::{ColorIndex, Coord, Seq, UserId};

    fn p(seq: u64, x: u32, y: u32, color: u8, at_ms: i64) -> Placement {
        Placement {
            seq: Seq(seq),
            coord: Coord::new_unchecked(x, y),
            color: ColorIndex::new_unchecked(color),
            user: UserId(1),
            at_ms,
        }
    }

    fn render(spec: Frames, rows: &[Placement], palette: &Palette) -> Vec<u8> {
        let mut out = Vec::new();
        let mut r = Renderer::new(&mut out, 1 << 20, spec, palette).unwrap();
        for chunk in rows.chunks(2) {
            if r.page(chunk).unwrap() {
                break;
            }
        }
        r.finish().unwrap();
        out
    }

    const SPEC: Frames = Frames {
        x: 10,
        y: 20,
        w: 4,
        h: 3,
        from_ms: 1000,
        to_ms: 3000,
        frames: 3,
        fps: 10,
        scale: 1,
    };

    #[test]
    fn frames_show_the_region_at_their_times() {
        let rows = [
            p(1, 10, 20, 5, 900),  // before frame 0: in it
            p(2, 0, 0, 7, 950),    // outside the region
            p(3, 13, 22, 2, 1500), // frame 1
            p(4, 14, 22, 3, 1600), // outside (x = region's right edge + 1)
            p(5, 11, 21, 4, 2000), // exactly at frame 1's time: in it
            p(6, 10, 20, 1, 2500), // frame 2
            p(7, 12, 20, 9, 3500), // after `to`: never shown
        ];
        for palette in [Palette::place_2017(), big_palette()] {
            let (w, h, frames) = rplace_testsupport::apng_frames(&render(SPEC, &rows, &palette));
            assert_eq!((w, h), (4, 3));
            assert_eq!(frames.len(), 3);
            let mut want = vec![0u8; 12];
            want[0] = 5;
            assert_eq!(frames[0], want);
            want[2 * 4 + 3] = 2;
            want[4 + 1] = 4;
            assert_eq!(frames[1], want);
            want[0] = 1;
            assert_eq!(frames[2], want);
        }
    }

    fn big_palette() -> Palette {
        let colors: Vec<String> = (0..256)
            .map(|i| format!("#{i:02x}{i:02x}{i:02x}"))
            .collect();
        Palette::parse(&colors).unwrap()
    }

    #[test]
    fn scale_repeats_pixels_and_idle_frames_are_tiny() {
        let spec = Frames {
            scale: 3,
            frames: 5,
            ..SPEC
        };
        let rows = [p(1, 11, 20, 6, 1000), p(2, 11, 20, 6, 1200)];
        let (w, h, frames) =
            rplace_testsupport::apng_frames(&render(spec, &rows, &Palette::place_2017()));
        assert_eq!((w, h), (12, 9));
        assert_eq!(frames.len(), 5);
        for f in &frames {
            for yy in 0..9 {
                for xx in 0..12 {
                    let want = if (3..6).contains(&xx) && yy < 3 { 6 } else { 0 };
                    assert_eq!(f[yy * 12 + xx], want, "({xx}, {yy})");
                }
            }
        }
    }

    #[test]
    fn one_frame_is_the_end_and_the_cap_holds() {
        let spec = Frames { frames: 1, ..SPEC };
        let rows = [p(1, 10, 20, 5, 900), p(2, 10, 20, 6, 2900)];
        let (_, _, frames) =
            rplace_testsupport::apng_frames(&render(spec, &rows, &Palette::place_2017()));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0][0], 6);
        let mut out = Vec::new();
        let err = Renderer::new(&mut out, 40, SPEC, &Palette::place_2017())
            .err()
            .expect("a header does not fit in 40 bytes");
        assert!(
            matches!(err, RenderError::TooLarge { max_bytes: 40 }),
            "{err}"
        );
    }

    #[test]
    fn frame_times_span_from_to() {
        assert_eq!(SPEC.time_of(0), 1000);
        assert_eq!(SPEC.time_of(1), 2000);
        assert_eq!(SPEC.time_of(2), 3000);
    }
}
