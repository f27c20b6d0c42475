//! The server's bounded cache of tiles, held by the hub under its lock.
//!
//! Every cached tile is exact at the hub's seq: it is loaded from the store
//! (`Store::tile`), brought to the hub's seq with the hub's recent log (the read says
//! which seq it is consistent with, `TileRead::through`), and from then on every placement
//! the hub applies lands on it too. A tile not in the cache costs nothing; a miss is read
//! from the store again.
//!
//! The cache holds at most `cap` tiles that nobody subscribed to (a websocket's `view`),
//! and all subscribed ones (at most 256 a connection): a subscribed tile must stay, since
//! its frames need its version. When it is full, the least recently used eighth of the
//! unsubscribed tiles goes at once, and the next look for victims waits until another
//! eighth of the bound was inserted, so eviction costs O(1) per insert on average even
//! when nearly every cached tile is subscribed (15k viewers on a world canvas pin tens of
//! thousands; a scan per insert made loading them quadratic).
//!
//! Each tile keeps the body it last served ([`Version`], with its encodings made once),
//! reused while the tile has not changed or is younger than the board TTL: so a hot tile
//! is compressed at most once per TTL, however many ask for it.

use crate::board_cache::Version;
use rplace_domain::board::Depth;
use rplace_domain::wire::TileUpdate;
use rplace_domain::{ColorIndex, Seq, Tile, TileId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Tiles the server keeps in memory by default (`--tile-cache`): at most 128 MiB of
/// 4-bit pixels.
pub const DEFAULT_TILE_CACHE: usize = rplace_store::DEFAULT_TILE_CACHE;

/// One cached tile.
pub struct Cached {
    /// The seq of the last placement on it (0: never painted).
    pub version: Seq,
    /// Its pixels; `None` while never painted.
    pub pixels: Option<Tile>,
    /// Logical time of the last use, for eviction.
    used: u64,
    /// The body last served, reused while fresh enough.
    served: Option<Arc<Version>>,
    /// This tick's updates, kept only while someone subscribed to the tile.
    pub pending: Vec<TileUpdate>,
    /// The version before the first of `pending`.
    pub pending_prev: Seq,
}

/// The tiles, their bound and the shared body of every unpainted tile.
pub struct TileCache {
    /// Cached tiles by [`TileId::key`].
    map: HashMap<u64, Cached>,
    /// Unsubscribed tiles kept at most (more while a whole canvas has more tiles).
    cap: usize,
    /// Bits per pixel.
    depth: Depth,
    /// Logical clock for `used`.
    clock: u64,
    /// The one body every unpainted tile answers with.
    blank: Arc<Version>,
    /// The size the map must reach before eviction scans it again: a scan that found few
    /// unsubscribed tiles is not repeated on the very next insert.
    rescan_at: usize,
}

impl TileCache {
    pub fn new(cap: usize, depth: Depth) -> Self {
        Self {
            map: HashMap::new(),
            cap: cap.max(1),
            depth,
            clock: 0,
            rescan_at: 0,
            blank: Arc::new(Version::new(
                Seq(0),
                bytes::Bytes::from(Tile::new(depth).into_bytes()),
            )),
        }
    }

    pub fn depth(&self) -> Depth {
        self.depth
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, id: TileId) -> bool {
        self.map.contains_key(&id.key())
    }

    /// The shared body of unpainted tiles.
    pub fn blank(&self) -> Arc<Version> {
        self.blank.clone()
    }

    pub fn get(&self, id: TileId) -> Option<&Cached> {
        self.map.get(&id.key())
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut Cached> {
        self.map.get_mut(&key)
    }

    /// Drops every tile (the store reset: any of them may have changed).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// The body to serve for a cached tile, marking it used. A served body is reused while
    /// the tile is unchanged or the body is younger than `ttl`.
    pub fn body(&mut self, id: TileId, ttl: Duration) -> Option<Arc<Version>> {
        self.clock += 1;
        let clock = self.clock;
        let blank = &self.blank;
        let c = self.map.get_mut(&id.key())?;
        c.used = clock;
        let Some(pixels) = &c.pixels else {
            return Some(blank.clone());
        };
        if let Some(s) = &c.served
            && (s.seq == c.version || s.age() < ttl)
        {
            return Some(s.clone());
        }
        let v = Arc::new(Version::new(
            c.version,
            bytes::Bytes::copy_from_slice(pixels.as_bytes()),
        ));
        c.served = Some(v.clone());
        Some(v)
    }

    /// The color of tile-local pixel `i` of a cached tile.
    pub fn pixel(&mut self, id: TileId, i: u16) -> Option<ColorIndex> {
        self.clock += 1;
        let clock = self.clock;
        let c = self.map.get_mut(&id.key())?;
        c.used = clock;
        Some(
            c.pixels
                .as_ref()
                .map_or(ColorIndex::new_unchecked(0), |p| p.get(i)),
        )
    }

    /// Inserts a tile read from the store and already brought to the hub's seq, unless it
    /// is cached already (another request loaded it first: that one is as exact). Then
    /// evicts down to the bound, sparing the tiles `pinned` says are subscribed and every
    /// tile when `floor` (the tiles of a whole canvas) is more than the bound.
    pub fn insert(
        &mut self,
        id: TileId,
        version: Seq,
        pixels: Option<Tile>,
        floor: usize,
        pinned: impl Fn(u64) -> bool,
    ) {
        self.clock += 1;
        let clock = self.clock;
        self.map.entry(id.key()).or_insert(Cached {
            version,
            pixels,
            used: clock,
            served: None,
            pending: Vec::new(),
            pending_prev: version,
        });
        let cap = self.cap.max(floor);
        if self.map.len() <= cap || self.map.len() < self.rescan_at {
            return;
        }
        // Evict the least recently used eighth of the unpinned (at least down to the cap).
        let mut candidates: Vec<(u64, u64)> = self
            .map
            .iter()
            .filter(|(k, _)| **k != id.key() && !pinned(**k))
            .map(|(k, c)| (c.used, *k))
            .collect();
        let n = (self.map.len() - cap).max(cap / 8).min(candidates.len());
        if n > 0 {
            candidates.select_nth_unstable(n - 1);
            for (_, k) in &candidates[..n] {
                self.map.remove(k);
            }
        }
        self.rescan_at = self.map.len() + (cap / 8).max(1);
        if n == 0 {
            return;
        }
        metrics::counter!("rplace_tile_evictions_total").increment(n as u64);
    }

    /// Applies one placement to its tile if cached; returns whether the tile is cached.
    /// `subscribed`: keep the update for this tick's frame.
    pub fn apply(&mut self, id: TileId, up: TileUpdate, subscribed: bool) -> Option<bool> {
        let depth = self.depth;
        let c = self.map.get_mut(&id.key())?;
        if up.version <= c.version {
            return Some(false); // already on it
        }
        let mut first = false;
        if subscribed {
            if c.pending.is_empty() {
                c.pending_prev = c.version;
                first = true;
            }
            c.pending.push(up);
        }
        c.pixels
            .get_or_insert_with(|| Tile::new(depth))
            .set(up.index, up.color);
        c.version = up.version;
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(v: u64, i: u16, c: u8) -> TileUpdate {
        TileUpdate {
            version: Seq(v),
            index: i,
            color: ColorIndex::new_unchecked(c),
        }
    }

    #[test]
    fn eviction_spares_pinned_tiles_and_keeps_the_bound() {
        let mut c = TileCache::new(16, Depth::Four);
        for k in 0..100u32 {
            c.insert(TileId::new_unchecked(k, 0), Seq(0), None, 0, |key| key == 0);
            assert!(c.len() <= 17, "{} tiles", c.len());
        }
        assert!(c.contains(TileId::new_unchecked(0, 0)), "pinned tile kept");
        assert!(c.contains(TileId::new_unchecked(99, 0)), "newest kept");
        // A whole canvas's tiles all stay.
        let mut c = TileCache::new(2, Depth::Four);
        for k in 0..10u32 {
            c.insert(TileId::new_unchecked(k, 0), Seq(0), None, 10, |_| false);
        }
        assert_eq!(c.len(), 10);
    }

    #[test]
    fn a_cache_of_subscribed_tiles_is_not_scanned_on_every_insert() {
        // 64 tiles allowed, 20,000 loaded and all subscribed (viewers of a world canvas):
        // each insert must not look at every cached tile again.
        let mut c = TileCache::new(64, Depth::Four);
        let looks = std::cell::Cell::new(0u64);
        let n = 20_000u32;
        for k in 0..n {
            c.insert(TileId::new_unchecked(k, 0), Seq(0), None, 0, |_| {
                looks.set(looks.get() + 1);
                true
            });
        }
        assert_eq!(c.len(), n as usize, "subscribed tiles all stay");
        // A scan every 8 inserts over at most n tiles: n²/8 = 5e7 looks; per insert it
        // would be n²/2 = 2e8.
        assert!(
            looks.get() <= u64::from(n) * u64::from(n) / 8 + u64::from(n),
            "{} looks",
            looks.get()
        );
        // Once the pins go, the next inserts bring the unsubscribed tiles back to the bound.
        for k in n..n + 64 {
            c.insert(TileId::new_unchecked(k, 0), Seq(0), None, 0, |_| false);
        }
        assert!(c.len() <= 64 + 8, "{} tiles", c.len());
    }

    #[test]
    fn unpainted_tiles_share_one_body_and_bodies_follow_versions() {
        let mut c = TileCache::new(16, Depth::Four);
        let (a, b) = (TileId::new_unchecked(1, 0), TileId::new_unchecked(2, 0));
        c.insert(a, Seq(0), None, 0, |_| false);
        c.insert(b, Seq(0), None, 0, |_| false);
        let (ba, bb) = (
            c.body(a, Duration::ZERO).unwrap(),
            c.body(b, Duration::ZERO).unwrap(),
        );
        assert!(Arc::ptr_eq(&ba, &bb));
        assert_eq!(c.apply(a, up(5, 3, 7), true), Some(true));
        assert_eq!(c.apply(a, up(5, 3, 7), true), Some(false), "applied once");
        let v = c.body(a, Duration::ZERO).unwrap();
        assert_eq!(v.seq, Seq(5));
        assert!(Arc::ptr_eq(&v, &c.body(a, Duration::ZERO).unwrap()));
        assert_eq!(c.pixel(a, 3).unwrap().get(), 7);
        assert_eq!(c.get(a).unwrap().pending.len(), 1);
        assert_eq!(c.get(a).unwrap().pending_prev, Seq(0));
    }
}
