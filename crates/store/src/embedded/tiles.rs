//! The canvas in tiles: the writer's bounded tile cache over the `tiles` table.
//!
//! Why tiles: a canvas may be 2^22² pixels, so neither the board nor a seq per pixel can
//! be held whole; what is painted is held per [`TILE_SIZE`]² tile, and an unpainted tile
//! has no row and costs nothing. A row holds the tile's pixels (the domain's [`Tile`]
//! layout, zstd), its version (the seq of its last placement), the last seq of each of
//! its pixels (where that pixel's `prev` chain starts, zstd) and `through`: the row is
//! exactly the tile with every placement up to `through` applied, and none after.
//!
//! The cache is the writer's working set: the tiles placed on lately, with their pixels
//! and pixel seqs, at most `capacity` of them. A placement changes only memory (the log
//! row is its durability); a cached tile is then *dirty*, and its row is written later,
//! in batches: every dirty tile at a checkpoint (the snapshot cadence, then the
//! checkpoint's seq becomes the watermark in `meta`), and a dirty tile that is evicted
//! in one transaction with the other evicted ones before it leaves memory. So:
//! - a cached tile is authoritative in memory; a tile that is not cached has a current row
//!   (or none: never painted), and that row changes only while the tile is cached again;
//! - a restart replays the log after the watermark onto the rows, skipping on each tile
//!   what its row's `through` already holds.
//!
//! Readers (`tile`, `snapshot`, history and moderation plans) do not fill the cache (the
//! server has its own in front of it): they take what is cached under the state lock and
//! read the other rows on a read connection, then check that no row they read is newer
//! than the head they noted (see `EmbeddedStore::read_tiles`).
//!
//! Why rows are written in batches and not per placement: a placement's durability is its
//! log row, appended to the log's last page; rewriting a 32 KiB tile per placement would
//! cost each commit one random multi-page write per touched tile. Batching makes a
//! checkpoint cost what is dirty (at most the cache), not what is painted, and a restart
//! cost the log since the last checkpoint, not the canvas: opening reads no tile at all.
//! Measured on this 2-core machine (`write_path_*`, ignored tests in `tests.rs`, release,
//! `--sync full`, 1,024 tasks placing): a whole 8192² canvas takes 100-125k placements/s
//! (the whole-board version before this took 21-31k/s, as its snapshot every 100,000
//! placements wrote 512 MiB of pixel seqs), its close 0.3 s (1.3-1.9 s), its start 0 s
//! (0.6-1.5 s) and `snapshot()` from the rows 0.17 s; a 2^22² canvas with placements
//! scattered over 10,000 tiles, six in ten missing the default cache, takes 8-10k/s with
//! an RSS of 160 MiB (the cache: 129 MiB) and an 8 MiB file for 200,000 placements.
//!
//! Pixel seqs in memory ([`PixelSeqs`]) are sparse while a tile has few painted pixels
//! (10 bytes each) and dense once it has many (4 bytes a pixel, relative to a base; 8 if
//! the tile's seqs span more than 2^32), so a cached tile costs its 32 or 64 KiB of
//! pixels plus at most 256 KiB (512 KiB in that rare case), and a world canvas painted
//! thinly costs little more than its pixels.

use super::backend;
use crate::{BackendError, StoreError};
use rplace_domain::board::Depth;
use rplace_domain::tile::TILE_PIXELS;
use rplace_domain::{ColorIndex, Coord, Tile, TileId};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;

/// Tiles the embedded store keeps in memory unless configured otherwise: 4096 tiles are at
/// most 128 MiB of 4-bit pixels (plus their pixel seqs, see the module docs).
pub const DEFAULT_TILE_CACHE: usize = 4096;

/// A tile's pixels with this many painted pixels or fewer keep their seqs sparse.
const SPARSE_MAX: usize = 4096;

/// zstd level of tile rows: fast, since the writer waits for it.
const LEVEL: i32 = 1;

/// The last seq of each pixel of one tile (0: never painted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PixelSeqs {
    /// Few painted pixels: their local indexes, ascending, and their seqs.
    Sparse { idx: Vec<u16>, seq: Vec<u64> },
    /// Many: `base + rel[i]` for painted pixels, `rel[i] == 0` for the others.
    Dense { base: u64, rel: Box<[u32]> },
    /// Many, spanning more seqs than `u32` holds.
    Wide(Box<[u64]>),
}

impl Default for PixelSeqs {
    fn default() -> Self {
        Self::Sparse {
            idx: Vec::new(),
            seq: Vec::new(),
        }
    }
}

impl PixelSeqs {
    /// The last seq of tile-local pixel `i` (0: never painted).
    pub(super) fn get(&self, i: u16) -> u64 {
        match self {
            Self::Sparse { idx, seq } => idx.binary_search(&i).map_or(0, |k| seq[k]),
            Self::Dense { base, rel } => match rel[usize::from(i)] {
                0 => 0,
                r => base + u64::from(r),
            },
            Self::Wide(s) => s[usize::from(i)],
        }
    }

    /// Records `s` (not 0) as the last seq of tile-local pixel `i`.
    pub(super) fn set(&mut self, i: u16, s: u64) {
        debug_assert_ne!(s, 0);
        match self {
            Self::Sparse { idx, seq } => match idx.binary_search(&i) {
                Ok(k) => seq[k] = s,
                Err(k) if idx.len() < SPARSE_MAX => {
                    idx.insert(k, i);
                    seq.insert(k, s);
                }
                Err(_) => {
                    let mut all = self.to_wide();
                    all[usize::from(i)] = s;
                    *self = Self::dense(all);
                }
            },
            Self::Dense { base, rel } => {
                match s.checked_sub(*base).and_then(|r| u32::try_from(r).ok()) {
                    Some(r) if r != 0 => rel[usize::from(i)] = r,
                    _ => {
                        let mut all = self.to_wide();
                        all[usize::from(i)] = s;
                        *self = Self::Wide(all);
                    }
                }
            }
            Self::Wide(all) => all[usize::from(i)] = s,
        }
    }

    /// Every pixel's seq.
    fn to_wide(&self) -> Box<[u64]> {
        let mut all = vec![0u64; TILE_PIXELS].into_boxed_slice();
        match self {
            Self::Sparse { idx, seq } => {
                for (&i, &s) in idx.iter().zip(seq) {
                    all[usize::from(i)] = s;
                }
            }
            Self::Dense { .. } => {
                for (i, a) in all.iter_mut().enumerate() {
                    *a = self.get(i as u16);
                }
            }
            Self::Wide(s) => all.copy_from_slice(s),
        }
        all
    }

    /// The smallest form that holds `all`.
    fn compact(all: Box<[u64]>) -> Self {
        let painted = all.iter().filter(|&&s| s != 0).count();
        if painted <= SPARSE_MAX {
            let (idx, seq) = all
                .iter()
                .enumerate()
                .filter(|&(_, &s)| s != 0)
                .map(|(i, &s)| (i as u16, s))
                .unzip();
            return Self::Sparse { idx, seq };
        }
        Self::dense(all)
    }

    /// The dense form of `all`, or the wide one if its seqs span more than `u32` holds.
    fn dense(all: Box<[u64]>) -> Self {
        let lo = all.iter().copied().filter(|&s| s != 0).min().unwrap_or(1);
        let hi = all.iter().copied().max().unwrap_or(0);
        let base = lo - 1;
        if hi - base > u64::from(u32::MAX) {
            return Self::Wide(all);
        }
        let rel = all
            .iter()
            .map(|&s| if s == 0 { 0 } else { (s - base) as u32 })
            .collect();
        Self::Dense { base, rel }
    }

    /// Bytes this takes in memory, for the cache's gauge.
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            Self::Sparse { idx, seq } => idx.capacity() * 2 + seq.capacity() * 8,
            Self::Dense { rel, .. } => rel.len() * 4,
            Self::Wide(s) => s.len() * 8,
        }
    }

    /// The row's form (before zstd): tag 0, a count, the indexes and the seqs (sparse);
    /// tag 1, the base and a `u32` per pixel (dense); tag 2, a `u64` per pixel (wide).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Sparse { idx, seq } => {
                out.reserve(5 + idx.len() * 10);
                out.push(0);
                out.extend((idx.len() as u32).to_le_bytes());
                out.extend(idx.iter().flat_map(|i| i.to_le_bytes()));
                out.extend(seq.iter().flat_map(|s| s.to_le_bytes()));
            }
            Self::Dense { base, rel } => {
                out.reserve(9 + rel.len() * 4);
                out.push(1);
                out.extend(base.to_le_bytes());
                out.extend(rel.iter().flat_map(|r| r.to_le_bytes()));
            }
            Self::Wide(s) => {
                out.reserve(1 + s.len() * 8);
                out.push(2);
                out.extend(s.iter().flat_map(|s| s.to_le_bytes()));
            }
        }
        out
    }

    fn decode(raw: &[u8]) -> Result<Self, String> {
        let (&tag, rest) = raw.split_first().ok_or("empty pixel seqs")?;
        let u64s = |b: &[u8]| -> Vec<u64> {
            b.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        };
        match tag {
            0 => {
                let n = rest
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                    .ok_or("short sparse pixel seqs")?;
                if n > TILE_PIXELS || rest.len() != 4 + n * 10 {
                    return Err(format!("sparse pixel seqs of {} bytes for {n}", raw.len()));
                }
                let idx: Vec<u16> = rest[4..4 + 2 * n]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                let seq = u64s(&rest[4 + 2 * n..]);
                if idx.windows(2).any(|w| w[0] >= w[1]) || seq.contains(&0) {
                    return Err("sparse pixel seqs out of order".into());
                }
                let mut s = Self::Sparse { idx, seq };
                if n > SPARSE_MAX {
                    s = Self::compact(s.to_wide());
                }
                Ok(s)
            }
            1 if rest.len() == 8 + TILE_PIXELS * 4 => {
                let base = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                let rel = rest[8..]
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                Ok(Self::Dense { base, rel })
            }
            2 if rest.len() == TILE_PIXELS * 8 => Ok(Self::Wide(u64s(rest).into_boxed_slice())),
            _ => Err(format!("pixel seqs of tag {tag} and {} bytes", raw.len())),
        }
    }
}

/// One tile as held in memory.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    /// The pixels with every committed placement applied.
    pub(super) pixels: Tile,
    /// Seq of the tile's last placement.
    pub(super) version: u64,
    /// Each pixel's last seq.
    pub(super) seqs: PixelSeqs,
    /// What the tile's row holds through (0: no row yet); see the module docs.
    pub(super) through: u64,
    /// Changed since its row was written.
    pub(super) dirty: bool,
    /// When it was last used, by the cache's clock: the least recent is evicted first.
    used: u64,
}

impl Cached {
    /// A tile never painted.
    pub(super) fn blank(depth: Depth) -> Self {
        Self {
            pixels: Tile::new(depth),
            version: 0,
            seqs: PixelSeqs::default(),
            through: 0,
            dirty: false,
            used: 0,
        }
    }

    /// Applies one placement on this tile.
    pub(super) fn apply(&mut self, i: u16, color: ColorIndex, seq: u64) {
        self.pixels.set(i, color);
        self.seqs.set(i, seq);
        self.version = self.version.max(seq);
        self.dirty = true;
    }
}

/// The bounded cache of tiles, keyed by [`TileId::key`].
#[derive(Debug)]
pub(super) struct TileCache {
    map: HashMap<u64, Cached>,
    /// Most tiles held at once.
    capacity: usize,
    /// Advanced by every use, to order evictions.
    clock: u64,
}

impl TileCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&self, key: u64) -> Option<&Cached> {
        self.map.get(&key)
    }

    /// The cached tile `key`, marked as just used. Only for tiles the caller made sure of.
    pub(super) fn get_mut(&mut self, key: u64) -> &mut Cached {
        self.clock += 1;
        let t = self.map.get_mut(&key).expect("a prepared tile is cached");
        t.used = self.clock;
        t
    }

    pub(super) fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &Cached)> {
        self.map.iter()
    }

    /// The last seq of the pixel at `c`, whose tile is cached.
    pub(super) fn seq_of(&self, c: Coord) -> u64 {
        let id = TileId::of(c);
        self.map
            .get(&id.key())
            .expect("a prepared tile is cached")
            .seqs
            .get(id.local_index(c))
    }

    /// Applies a committed placement; its tile is cached.
    pub(super) fn apply(&mut self, c: Coord, color: ColorIndex, seq: u64) {
        let id = TileId::of(c);
        self.get_mut(id.key()).apply(id.local_index(c), color, seq);
    }

    pub(super) fn insert(&mut self, key: u64, mut t: Cached) {
        self.clock += 1;
        t.used = self.clock;
        self.map.insert(key, t);
    }

    pub(super) fn remove(&mut self, key: u64) -> Option<Cached> {
        self.map.remove(&key)
    }

    /// The least recently used tiles outside `keep` to evict so that `incoming` more fit.
    pub(super) fn victims(&self, incoming: usize, keep: &dyn Fn(u64) -> bool) -> Vec<u64> {
        let over = (self.map.len() + incoming).saturating_sub(self.capacity);
        if over == 0 {
            return Vec::new();
        }
        let mut candidates: Vec<(u64, u64)> = self
            .map
            .iter()
            .filter(|(k, _)| !keep(**k))
            .map(|(&k, t)| (t.used, k))
            .collect();
        let over = over.min(candidates.len());
        if over < candidates.len() {
            candidates.select_nth_unstable(over);
        }
        candidates.truncate(over);
        candidates.into_iter().map(|(_, k)| k).collect()
    }

    /// Records that tile `key`'s row now holds it through `through`.
    pub(super) fn mark_clean(&mut self, key: u64, through: u64) {
        if let Some(t) = self.map.get_mut(&key) {
            t.dirty = false;
            t.through = through;
        }
    }

    /// Keys of the dirty tiles.
    pub(super) fn dirty(&self) -> Vec<u64> {
        self.map
            .iter()
            .filter(|(_, t)| t.dirty)
            .map(|(&k, _)| k)
            .collect()
    }

    /// Bytes the cached tiles take, roughly.
    pub(super) fn heap_bytes(&self) -> usize {
        self.map
            .values()
            .map(|t| t.pixels.as_bytes().len() + t.seqs.heap_bytes())
            .sum()
    }
}

/// A tile's row, encoded, ready to be written.
pub(super) struct Row {
    pub(super) key: u64,
    pub(super) version: u64,
    pub(super) through: u64,
    pub(super) pixels: Vec<u8>,
    pub(super) seqs: Vec<u8>,
}

fn compress(raw: &[u8]) -> Result<Vec<u8>, StoreError> {
    zstd::bulk::compress(raw, LEVEL).map_err(StoreError::from)
}

fn corrupt(key: u64, what: impl std::fmt::Display) -> StoreError {
    let id = TileId::from_key(key);
    BackendError::Corrupt(format!("tile ({}, {}): {what}", id.tx(), id.ty())).into()
}

/// Encodes a cached tile's row as of `head` (every committed placement applied).
pub(super) fn encode(key: u64, t: &Cached, head: u64) -> Result<Row, StoreError> {
    Ok(Row {
        key,
        version: t.version,
        through: t.through.max(head),
        pixels: compress(t.pixels.as_bytes())?,
        seqs: compress(&t.seqs.encode())?,
    })
}

/// Writes rows (in the caller's transaction).
pub(super) fn write_rows(conn: &Connection, rows: &[Row]) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO tiles (key, version, through, pixels, seqs) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (key) DO UPDATE SET version = excluded.version, \
             through = excluded.through, pixels = excluded.pixels, seqs = excluded.seqs",
        )
        .map_err(backend)?;
    for r in rows {
        stmt.execute(params![
            r.key as i64,
            r.version as i64,
            r.through as i64,
            r.pixels,
            r.seqs
        ])
        .map_err(backend)?;
    }
    Ok(())
}

/// A row as read back, still compressed.
pub(super) struct RawRow {
    pub(super) key: u64,
    pub(super) version: u64,
    pub(super) through: u64,
    pub(super) pixels: Vec<u8>,
    pub(super) seqs: Option<Vec<u8>>,
}

impl RawRow {
    fn from_sql(r: &rusqlite::Row<'_>, with_seqs: bool) -> rusqlite::Result<Self> {
        Ok(Self {
            key: r.get::<_, i64>(0)? as u64,
            version: r.get::<_, i64>(1)? as u64,
            through: r.get::<_, i64>(2)? as u64,
            pixels: r.get(3)?,
            seqs: if with_seqs { Some(r.get(4)?) } else { None },
        })
    }

    /// The tile's pixels.
    pub(super) fn pixels(&self, depth: Depth) -> Result<Tile, StoreError> {
        let raw = zstd::bulk::decompress(&self.pixels, Tile::len(depth))
            .map_err(|e| corrupt(self.key, format!("pixels: {e}")))?;
        Tile::from_bytes(depth, raw).map_err(|e| corrupt(self.key, e))
    }

    /// The tile's pixel seqs; the row must have been read with them.
    pub(super) fn seqs(&self) -> Result<PixelSeqs, StoreError> {
        let blob = self.seqs.as_deref().expect("read with seqs");
        let raw = zstd::bulk::decompress(blob, 1 + 8 * TILE_PIXELS)
            .map_err(|e| corrupt(self.key, format!("pixel seqs: {e}")))?;
        PixelSeqs::decode(&raw).map_err(|e| corrupt(self.key, e))
    }

    /// The whole tile for the cache.
    pub(super) fn cached(&self, depth: Depth) -> Result<Cached, StoreError> {
        Ok(Cached {
            pixels: self.pixels(depth)?,
            version: self.version,
            seqs: self.seqs()?,
            through: self.through,
            dirty: false,
            used: 0,
        })
    }
}

fn columns(with_seqs: bool) -> &'static str {
    if with_seqs {
        "key, version, through, pixels, seqs"
    } else {
        "key, version, through, pixels, NULL"
    }
}

/// The row of tile `key`, if it was ever painted.
pub(super) fn read_row(
    conn: &Connection,
    key: u64,
    with_seqs: bool,
) -> Result<Option<RawRow>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {} FROM tiles WHERE key = ?1",
        columns(with_seqs)
    ))
    .map_err(backend)?
    .query_row([key as i64], |r| RawRow::from_sql(r, with_seqs))
    .optional()
    .map_err(backend)
}

/// Every row: only for canvases small enough to be held whole.
pub(super) fn read_all_rows(conn: &Connection, with_seqs: bool) -> Result<Vec<RawRow>, StoreError> {
    let mut stmt = conn
        .prepare(&format!("SELECT {} FROM tiles", columns(with_seqs)))
        .map_err(backend)?;
    stmt.query_map([], |r| RawRow::from_sql(r, with_seqs))
        .and_then(|rows| rows.collect())
        .map_err(backend)
}

/// Tile `key` for the cache: its row, or a blank tile if it has none.
pub(super) fn load(conn: &Connection, key: u64, depth: Depth) -> Result<Cached, StoreError> {
    match read_row(conn, key, true)? {
        Some(r) => r.cached(depth),
        None => Ok(Cached::blank(depth)),
    }
}

/// The whole board from its painted tiles. Rows are copied as bytes where the layouts
/// line up (8 bits, or 4 bits on an even width: a tile's first pixel then starts a byte
/// in both), which is what makes this fast enough for an 8192² canvas; pixel by pixel
/// otherwise.
pub(super) fn compose(
    dims: rplace_domain::Dimensions,
    depth: Depth,
    tiles: impl IntoIterator<Item = (TileId, Tile)>,
) -> rplace_domain::Board {
    use rplace_domain::board::set_packed;
    use rplace_domain::tile::TILE_SIZE;
    let width = dims.width() as usize;
    let aligned = depth == Depth::Eight || width.is_multiple_of(2);
    let mut bytes = vec![0u8; depth.bytes_for(dims.pixels())];
    let mut slow = Vec::new();
    for (id, t) in tiles {
        if !aligned {
            slow.push((id, t));
            continue;
        }
        let o = id.origin();
        let w = (TILE_SIZE.min(dims.width() - o.x())) as usize;
        for y in o.y()..(o.y() + TILE_SIZE).min(dims.height()) {
            let dst = y as usize * width + o.x() as usize;
            let src = (y - o.y()) as usize * TILE_SIZE as usize;
            match depth {
                Depth::Eight => {
                    bytes[dst..dst + w].copy_from_slice(&t.as_bytes()[src..src + w]);
                }
                Depth::Four => {
                    let n = w / 2;
                    bytes[dst / 2..dst / 2 + n]
                        .copy_from_slice(&t.as_bytes()[src / 2..src / 2 + n]);
                    if w % 2 == 1 {
                        let last = t.get((src + w - 1) as u16).get();
                        set_packed(&mut bytes, depth, dst + w - 1, last);
                    }
                }
            }
        }
    }
    let mut board = rplace_domain::Board::from_bytes(dims, depth, bytes).expect("sized for dims");
    for (id, t) in slow {
        board.put_tile(id, &t);
    }
    board
}

/// What a reader sees of one tile: cached or read back, or never painted (`None`).
pub(super) struct TileView<'a> {
    pub(super) version: u64,
    pub(super) pixels: &'a Tile,
    /// Only when the reader asked for them.
    pub(super) seqs: Option<&'a PixelSeqs>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &PixelSeqs, want: &HashMap<u16, u64>) {
        for i in 0..TILE_PIXELS {
            assert_eq!(s.get(i as u16), want.get(&(i as u16)).copied().unwrap_or(0));
        }
        let back = PixelSeqs::decode(&s.encode()).unwrap();
        for i in (0..TILE_PIXELS).step_by(97) {
            assert_eq!(back.get(i as u16), s.get(i as u16));
        }
    }

    #[test]
    fn pixel_seqs_go_from_sparse_to_dense_to_wide_and_round_trip() {
        let mut s = PixelSeqs::default();
        let mut want = HashMap::new();
        let mut seq = 10u64;
        for k in 0..(SPARSE_MAX + 10) {
            let i = ((k * 7919) % TILE_PIXELS) as u16;
            seq += 1;
            s.set(i, seq);
            want.insert(i, seq);
        }
        assert!(
            matches!(s, PixelSeqs::Dense { .. }),
            "dense past the sparse limit"
        );
        check(&s, &want);
        // A seq more than 2^32 past the tile's oldest one widens it.
        let far = seq + u64::from(u32::MAX) + 5;
        s.set(3, far);
        want.insert(3, far);
        assert!(matches!(s, PixelSeqs::Wide(_)));
        check(&s, &want);
        // Overwrites stay exact in every form.
        let mut sparse = PixelSeqs::default();
        sparse.set(5, 1);
        sparse.set(5, 9);
        sparse.set(2, 10);
        check(&sparse, &HashMap::from([(5, 9), (2, 10)]));
        assert!(PixelSeqs::decode(&[0, 1, 0, 0, 0]).is_err());
        assert!(PixelSeqs::decode(&[7]).is_err());
    }

    #[test]
    fn a_board_composed_from_tiles_is_the_board_put_tile_by_tile() {
        for (w, h, depth) in [
            (600, 300, Depth::Four),
            (601, 257, Depth::Four),
            (513, 300, Depth::Eight),
            (700, 1, Depth::Four),
        ] {
            let dims = rplace_domain::Dimensions::parse(w, h).unwrap();
            let (across, down) = rplace_domain::tile::tiles_across(dims);
            let mut tiles = Vec::new();
            for ty in 0..down {
                for tx in 0..across {
                    let mut t = Tile::new(depth);
                    for i in (0..TILE_PIXELS).step_by(7) {
                        t.set(
                            i as u16,
                            ColorIndex::new_unchecked((i % 13 + tx as usize) as u8 % 16),
                        );
                    }
                    tiles.push((TileId::new_unchecked(tx, ty), t));
                }
            }
            let mut want = rplace_domain::Board::new(dims, depth);
            for (id, t) in &tiles {
                want.put_tile(*id, t);
            }
            assert_eq!(compose(dims, depth, tiles), want, "{w}x{h}");
        }
    }

    #[test]
    fn victims_are_the_least_recently_used_outside_the_kept_ones() {
        let mut c = TileCache::new(3);
        for k in 1..=3 {
            c.insert(k, Cached::blank(Depth::Four));
        }
        c.get_mut(1);
        assert_eq!(c.victims(1, &|k| k == 3), vec![2]);
        let mut two = c.victims(2, &|_| false);
        two.sort();
        assert_eq!(two, vec![2, 3]);
        assert!(c.victims(0, &|_| false).is_empty());
    }
}
