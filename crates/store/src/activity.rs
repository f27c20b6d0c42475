//! The overlays' data (`GET /api/tiles/{tx}/{ty}/activity`, `GET /api/me/pixels`): for
//! every pixel of a painted tile, when it was last placed and by whom.
//!
//! # Design: a raster per painted tile, counted from the log
//! The placing path writes nothing for this. A background task on every instance
//! ([`catch_up`]) reads the log after a watermark in bounded steps, as the statistics are
//! counted: a step takes at most [`STEP_ROWS`] rows and cuts them before the
//! [`STEP_TILES`] + 1st tile they touch, reads those tiles' rasters, applies the rows in
//! seq order and writes the rasters back with the new watermark in one transaction that
//! first checks the watermark is still where the step started. So a step is applied once
//! however many instances run it (the loser discards its work and starts from the
//! winner's watermark), and a crash between steps loses nothing.
//!
//! A tile's raster ([`ActivityTile`]) holds per pixel the unix second of its last
//! placement (0: never placed, the virgin map) and the last placer as an index into the
//! tile's own list of users (compacted to the pixels' owners when it reaches twice the
//! pixels, so a step's cost stays amortized constant). Like the tiles themselves, an
//! unpainted tile has no row; a painted one is a zstd blob of its placed pixels only. Rewrites are placements in the
//! log, so a rollback's pixels count as placed by the moderator who ran it.
//!
//! The user ids never leave the server: `activity` serves only the times, and
//! `me/pixels` only the caller's own pixels.
//!
//! Backends: `embedded/activity.rs` and `shared/activity.rs` (the same two tables in
//! SQLite and PostgreSQL).

use crate::export::Export;
use crate::stats::CaughtUp;
use crate::{BackendError, StoreError};
use rplace_domain::tile::TILE_SIZE;
use rplace_domain::{Placement, Seq, TileId, UserId};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;

/// Most log rows one step reads.
pub const STEP_ROWS: usize = 4096;
/// Most tiles one step reads and writes: bounds its memory (64 × ~1 MiB decoded) and
/// its transaction, however the placements are spread.
pub const STEP_TILES: usize = 64;
/// Pixels of a tile.
const PIXELS: usize = (TILE_SIZE * TILE_SIZE) as usize;
/// Users a raster lists before it is compacted to its pixels' owners.
const MOST_USERS: usize = 2 * PIXELS;
/// zstd level of the stored rasters: fast.
const LEVEL: i32 = 3;

/// One tile's activity raster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityTile {
    /// Seq of the last placement applied: the raster's version (0: never painted).
    version: u64,
    /// The placed pixels by tile-local index: the unix second of the last placement
    /// (never 0) and the last placer as an index into `users`. A map, not two dense
    /// arrays: most painted tiles hold few placed pixels, and zeroing 512 KiB for each
    /// tile a step touched was most of the counting's cost (BENCHMARKS.md).
    placed: BTreeMap<u16, (u32, u32)>,
    /// The users `placed` points at; compacted at [`MOST_USERS`], so at most twice the
    /// pixels.
    users: Vec<UserId>,
}

thread_local! {
    /// One zstd context per thread, reused: making one per raster cost more than
    /// compressing a sparse raster.
    static ZSTD: std::cell::RefCell<Option<(zstd::bulk::Compressor<'static>, zstd::bulk::Decompressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's zstd contexts.
fn with_zstd<R>(
    f: impl FnOnce(
        &mut zstd::bulk::Compressor<'static>,
        &mut zstd::bulk::Decompressor<'static>,
    ) -> std::io::Result<R>,
) -> std::io::Result<R> {
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some((
                zstd::bulk::Compressor::new(LEVEL)?,
                zstd::bulk::Decompressor::new()?,
            ));
        }
        let (c, d) = slot.as_mut().expect("just made");
        f(c, d)
    })
}

impl ActivityTile {
    /// Seq of the last placement on this tile that was counted.
    pub fn version(&self) -> Seq {
        Seq(self.version)
    }

    /// Applies one row of the log that lies on tile `id` (rows in seq order).
    pub fn apply(&mut self, id: TileId, p: &Placement, index: &mut HashMap<UserId, u32>) {
        let owner = self.owner_index(p.user, index);
        // Second 0 would read as "never placed"; no real placement is that old.
        let at = (p.at_ms / 1000).clamp(1, i64::from(u32::MAX)) as u32;
        self.placed.insert(id.local_index(p.coord), (at, owner));
        self.version = self.version.max(p.seq.0);
    }

    /// The index of `user`, adding it (and compacting a full list first). `index` is
    /// the caller's map of `users`, built here on first use.
    fn owner_index(&mut self, user: UserId, index: &mut HashMap<UserId, u32>) -> u32 {
        if index.is_empty() && !self.users.is_empty() {
            index.extend(self.users.iter().enumerate().map(|(n, u)| (*u, n as u32)));
        }
        if let Some(&n) = index.get(&user) {
            return n;
        }
        if self.users.len() >= MOST_USERS {
            self.compact();
            index.clear();
            index.extend(self.users.iter().enumerate().map(|(n, u)| (*u, n as u32)));
        }
        let n = self.users.len() as u32;
        self.users.push(user);
        index.insert(user, n);
        n
    }

    /// Drops the users who own no pixel any more.
    fn compact(&mut self) {
        let mut map: HashMap<u32, u32> = HashMap::new();
        let mut users = Vec::new();
        for (_, o) in self.placed.values_mut() {
            let next = users.len() as u32;
            let n = *map.entry(*o).or_insert_with(|| {
                users.push(self.users[*o as usize]);
                next
            });
            *o = n;
        }
        self.users = users;
    }

    /// The times as the wire has them: [`PIXELS`] little-endian `u32`, 0 where never
    /// placed.
    pub fn times_le(&self) -> Vec<u8> {
        let mut out = vec![0u8; 4 * PIXELS];
        for (i, (t, _)) in &self.placed {
            let at = 4 * usize::from(*i);
            out[at..at + 4].copy_from_slice(&t.to_le_bytes());
        }
        out
    }

    /// Tile-local indices of the pixels whose last placement is `user`'s, in order.
    pub fn owned_by(&self, user: UserId) -> Vec<u16> {
        let Some(n) = self.users.iter().position(|u| *u == user) else {
            return Vec::new();
        };
        self.placed
            .iter()
            .filter(|(_, (_, o))| *o as usize == n)
            .map(|(i, _)| *i)
            .collect()
    }

    /// The stored form, zstd-compressed: version, users, then the placed pixels (`u16`
    /// index, `u32` time, `u32` owner each).
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut raw = Vec::with_capacity(16 + 8 * self.users.len() + 10 * self.placed.len());
        raw.extend_from_slice(&self.version.to_le_bytes());
        raw.extend_from_slice(&(self.users.len() as u32).to_le_bytes());
        raw.extend(self.users.iter().flat_map(|u| u.0.to_le_bytes()));
        raw.extend_from_slice(&(self.placed.len() as u32).to_le_bytes());
        for (i, (t, o)) in &self.placed {
            raw.extend_from_slice(&i.to_le_bytes());
            raw.extend_from_slice(&t.to_le_bytes());
            raw.extend_from_slice(&o.to_le_bytes());
        }
        with_zstd(|c, _| c.compress(&raw)).map_err(StoreError::from)
    }

    /// The inverse of [`ActivityTile::encode`].
    pub fn decode(blob: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |what: &str| -> StoreError {
            BackendError::Corrupt(format!("activity raster: {what}")).into()
        };
        let most = 16 + 8 * MOST_USERS + 10 * PIXELS;
        let raw = with_zstd(|_, d| d.decompress(blob, most)).map_err(|_| corrupt("not zstd"))?;
        let word = |at: usize, n: usize| raw.get(at..at + n).ok_or_else(|| corrupt("short"));
        let version = u64::from_le_bytes(word(0, 8)?.try_into().expect("8"));
        let n = u32::from_le_bytes(word(8, 4)?.try_into().expect("4")) as usize;
        if n > MOST_USERS {
            return Err(corrupt("too many users"));
        }
        let users = word(12, 8 * n)?
            .chunks_exact(8)
            .map(|c| UserId(u64::from_le_bytes(c.try_into().expect("8"))))
            .collect();
        let at = 12 + 8 * n;
        let count = u32::from_le_bytes(word(at, 4)?.try_into().expect("4")) as usize;
        if count > PIXELS || raw.len() != at + 4 + 10 * count {
            return Err(corrupt("wrong length"));
        }
        let mut placed = BTreeMap::new();
        for e in raw[at + 4..].chunks_exact(10) {
            let i = u16::from_le_bytes([e[0], e[1]]);
            let t = u32::from_le_bytes(e[2..6].try_into().expect("4"));
            let o = u32::from_le_bytes(e[6..10].try_into().expect("4"));
            if t == 0 || o as usize >= n {
                return Err(corrupt("entry out of range"));
            }
            placed.insert(i, (t, o));
        }
        Ok(Self {
            version,
            placed,
            users,
        })
    }
}

/// Everything the activity rasters need from storage.
pub trait Activity: Send + Sync {
    /// The watermark: every placement up to it is in the rasters.
    fn activity_through(&self) -> impl Future<Output = Result<Seq, StoreError>> + Send;

    /// The stored rasters of the tiles among `keys` ([`TileId::key`]) that have one.
    fn activity_tiles(
        &self,
        keys: Vec<u64>,
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, StoreError>> + Send;

    /// Keys of the tiles in the rectangle of tiles `area` (`[tx0, tx1] × [ty0, ty1]`,
    /// inclusive) that have a raster, i.e. were painted by a placement up to the
    /// watermark; at most `limit`, in key order. The overview pyramid asks this instead of
    /// visiting every tile below a zoomed-out tile (`server::overview`).
    fn painted_in(
        &self,
        area: [u32; 4],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send;

    /// Writes `tiles` and moves the watermark from `after` to `through`, in one
    /// transaction, if the watermark is still `after`; `false` (nothing written) if
    /// another instance moved it first.
    fn activity_apply(
        &self,
        after: Seq,
        through: Seq,
        tiles: Vec<(u64, Vec<u8>)>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// One tile's raster, blank if the tile was never painted.
pub async fn read_tile<S: Activity>(store: &S, id: TileId) -> Result<ActivityTile, StoreError> {
    match store.activity_tiles(vec![id.key()]).await?.pop() {
        Some((_, blob)) => ActivityTile::decode(&blob),
        None => Ok(ActivityTile::default()),
    }
}

/// Runs at most `steps` steps of the log after the watermark (see the module docs).
pub async fn catch_up<S: Activity + Export>(
    store: &S,
    steps: usize,
) -> Result<CaughtUp, StoreError> {
    let head = store.export_head().await?;
    let mut through = store.activity_through().await?;
    let mut counted = 0;
    // One page read serves as many steps as it holds (placements spread wide make a step
    // of a few rows: reading a page per step read each row dozens of times).
    let mut page: Vec<Placement> = Vec::new();
    let mut full = false;
    let mut pos = 0;
    for _ in 0..steps {
        if through >= head {
            break;
        }
        if pos >= page.len() {
            page = store.export_page(through, head, STEP_ROWS).await?;
            full = page.len() == STEP_ROWS;
            pos = 0;
        }
        let rest = &page[pos..];
        let (rows, keys) = step_of(rest);
        let to = match rows.last() {
            Some(last) if rows.len() < rest.len() || full => last.seq,
            // The whole rest of the log up to the head (or none of it: seqs the log does
            // not hold).
            _ => head,
        };
        let mut tiles: HashMap<u64, ActivityTile> = HashMap::new();
        for (key, blob) in store.activity_tiles(keys.clone()).await? {
            tiles.insert(key, ActivityTile::decode(&blob)?);
        }
        let mut indices: HashMap<u64, HashMap<UserId, u32>> = HashMap::new();
        for p in rows {
            let id = TileId::of(p.coord);
            let t = tiles.entry(id.key()).or_default();
            t.apply(id, p, indices.entry(id.key()).or_default());
        }
        let mut out = Vec::with_capacity(tiles.len());
        for (key, t) in &tiles {
            out.push((*key, t.encode()?));
        }
        if !store.activity_apply(through, to, out).await? {
            through = store.activity_through().await?;
            page.clear();
            continue;
        }
        counted += rows.len() as u64;
        pos += rows.len();
        through = to;
    }
    Ok(CaughtUp {
        through,
        counted,
        more: through < head,
    })
}

/// The key range and column range of a rectangle of tiles `[tx0, ty0, tx1, ty1]`: keys
/// are `ty << 32 | tx`, so the rows are one key range and each row's columns a filter.
pub(crate) fn key_bounds([tx0, ty0, tx1, ty1]: [u32; 4]) -> [i64; 4] {
    let key = |tx: u32, ty: u32| TileId::new_unchecked(tx, ty).key() as i64;
    [key(tx0, ty0), key(tx1, ty1), i64::from(tx0), i64::from(tx1)]
}

/// The longest prefix of `page` that touches at most [`STEP_TILES`] tiles, and those
/// tiles' keys.
fn step_of(page: &[Placement]) -> (&[Placement], Vec<u64>) {
    let mut keys: Vec<u64> = Vec::new();
    for (n, p) in page.iter().enumerate() {
        let k = TileId::of(p.coord).key();
        if !keys.contains(&k) {
            if keys.len() == STEP_TILES {
                return (&page[..n], keys);
            }
            keys.push(k);
        }
    }
    (page, keys)
}

impl Activity for crate::Backend {
    async fn activity_through(&self) -> Result<Seq, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.activity_through().await,
            crate::Backend::Shared(s) => s.activity_through().await,
        }
    }
    async fn activity_tiles(&self, keys: Vec<u64>) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.activity_tiles(keys).await,
            crate::Backend::Shared(s) => s.activity_tiles(keys).await,
        }
    }
    async fn painted_in(&self, area: [u32; 4], limit: usize) -> Result<Vec<u64>, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.painted_in(area, limit).await,
            crate::Backend::Shared(s) => s.painted_in(area, limit).await,
        }
    }
    async fn activity_apply(
        &self,
        after: Seq,
        through: Seq,
        tiles: Vec<(u64, Vec<u8>)>,
    ) -> Result<bool, StoreError> {
        match self {
            crate::Backend::Embedded(s) => s.activity_apply(after, through, tiles).await,
            crate::Backend::Shared(s) => s.activity_apply(after, through, tiles).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rplace_domain::{ColorIndex, Coord};

    fn row(seq: u64, x: u32, y: u32, user: u64, at_ms: i64) -> Placement {
        Placement {
            seq: Seq(seq),
            coord: Coord::new_unchecked(x, y),
            color: ColorIndex::new_unchecked(1),
            user: UserId(user),
            at_ms,
        }
    }

    #[test]
    fn the_last_placement_owns_a_pixel_and_survives_encoding() {
        let id = TileId::new_unchecked(1, 0);
        let mut t = ActivityTile::default();
        let mut ix = HashMap::new();
        t.apply(id, &row(1, 256, 0, 7, 5_000), &mut ix);
        t.apply(id, &row(2, 257, 0, 8, 6_500), &mut ix);
        t.apply(id, &row(3, 256, 0, 8, 9_000), &mut ix);
        let back = ActivityTile::decode(&t.encode().unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.version(), Seq(3));
        assert_eq!(back.owned_by(UserId(8)), vec![0, 1]);
        assert!(back.owned_by(UserId(7)).is_empty());
        let times = back.times_le();
        assert_eq!(times.len(), 4 * PIXELS);
        assert_eq!(&times[0..8], &[9, 0, 0, 0, 6, 0, 0, 0]);
        assert!(times[8..].iter().all(|b| *b == 0), "the rest is virgin");
    }

    #[test]
    fn a_full_user_list_is_compacted_to_the_pixels_owners() {
        let id = TileId::new_unchecked(0, 0);
        let mut t = ActivityTile::default();
        let mut ix = HashMap::new();
        // Every pixel by its own user, three times over: the list passes its bound and
        // is compacted to the pixels' owners.
        for round in 0..3u64 {
            for i in 0..PIXELS as u64 {
                let seq = round * PIXELS as u64 + i + 1;
                let p = row(seq, (i % 256) as u32, (i / 256) as u32, seq, 1_000);
                t.apply(id, &p, &mut ix);
            }
        }
        assert_eq!(t.users.len(), 2 * PIXELS, "compacted once, at 2 x 65,536");
        assert_eq!(t.owned_by(UserId(3 * PIXELS as u64)), vec![u16::MAX]);
        assert_eq!(t.owned_by(UserId(2 * PIXELS as u64 + 1)), vec![0]);
        assert!(t.owned_by(UserId(PIXELS as u64 + 1)).is_empty());
        assert!(t.owned_by(UserId(1)).is_empty());
        assert_eq!(ActivityTile::decode(&t.encode().unwrap()).unwrap(), t);
    }

    #[test]
    fn a_step_stops_before_the_tile_past_its_bound() {
        let page: Vec<Placement> = (0..200u64)
            .map(|i| row(i + 1, (i as u32 % 100) * 256, 0, 1, 1_000))
            .collect();
        let (rows, keys) = step_of(&page);
        assert_eq!((rows.len(), keys.len()), (STEP_TILES, STEP_TILES));
        let (rows, keys) = step_of(&page[..50]);
        assert_eq!((rows.len(), keys.len()), (50, 50));
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        assert!(ActivityTile::decode(b"nope").is_err());
        let short = zstd::bulk::compress(&[0u8; 40], 1).unwrap();
        assert!(ActivityTile::decode(&short).is_err());
    }
}
