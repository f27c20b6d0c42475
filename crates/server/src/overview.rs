//! The overview pyramid: `GET /api/tiles/{z}/{tx}/{ty}.png` for `z >= 1`, each tile the
//! 2×2-mode downsampling ([`rplace_domain::tile::downsample`]) of the four below it, so a
//! client zoomed out over the whole canvas fetches a handful of images.
//!
//! Rendered lazily and incrementally: a rendered overview tile is kept (bounded, least
//! recently used out first) until a tile below it changes. The hub records which level-0
//! tiles changed; at most once per board TTL the changed tiles' ancestors are dropped, and
//! the next request renders each of them again from its children (kept ones reused). So
//! an overview tile is rendered at most once per TTL, never per request, and is at most
//! about a TTL stale. Level-1 tiles read their children from the hub's tile cache or, if
//! not cached, straight from the store (without filling the cache with tiles nobody
//! views).
//!
//! Cost grows with what is painted, not with the canvas: a tile at level `z` covers `4^z`
//! level-0 tiles (268 million at the top of a 2^22² canvas), so from [`PRUNE_FROM`] up a
//! render first asks the store which tiles below it were ever painted (the activity
//! rasters' index, `rplace_store::activity::Activity::painted_in`) and descends only
//! into quarters that hold one. That index trails the log by a counting round: a render
//! made while it did not yet reach the hub's seq is kept only until it does, then
//! rendered again (`Entry::provisional`); placements after the render mark it dirty as
//! any do. The tiles the hub saw change since the index's watermark (`State::recent`)
//! count as painted too, so a tile painted while the index lags (a world canvas under
//! load spread wide) is in the overview anyway.

use crate::board_cache::Version;
use crate::hub::{Hub, LoadError};
use bytes::Bytes;
use rplace_domain::Seq;
use rplace_domain::board::Depth;
use rplace_domain::tile::{OverviewId, downsample, levels};
use rplace_domain::{Dimensions, Tile, TileId};
use rplace_store::activity::Activity;
use rplace_store::{Backend, Store};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One rendered overview tile.
struct Entry {
    /// Its pixels; `None` when nothing below it is painted.
    tile: Option<Tile>,
    /// Its body, whose `seq` is the hub's seq when it was rendered.
    body: Arc<Version>,
    /// Logical time of the last use.
    used: u64,
    /// Rendered from a painted-tiles index that had not yet counted up to this seq (the
    /// hub's at the render): dropped, with its ancestors, once the index has.
    provisional: Option<Seq>,
}

/// Lowest level whose renders prune by the painted-tiles index; below it, visiting all
/// `4^z` tiles (at most 16) is as cheap as asking.
pub const PRUNE_FROM: u8 = 3;
/// Most painted tiles one render lists; a tile with more below it is rendered by visiting
/// every tile (so densely painted, that is the work anyway).
const PAINTED_MOST: usize = 1 << 20;
/// Most tiles kept in `State::recent` (8 MiB or so); past it, a tile painted while the
/// index lags shows in the overview once the index counts it.
const RECENT_MOST: usize = 1 << 19;

/// What a render knows of the painted tiles below the tile it renders.
#[derive(Clone, Copy)]
enum Painted<'a> {
    /// Nothing: visit every tile (below [`PRUNE_FROM`], or too many painted).
    Unknown,
    /// The keys of the painted tiles below, in key order, as of the index's watermark,
    /// and whether that watermark is behind the hub's seq.
    Listed(&'a [u64], bool),
}

/// The rendered tiles and when stale ones were last dropped.
struct State {
    map: HashMap<OverviewId, Entry>,
    /// When the hub's changed tiles were last taken.
    refreshed: Option<Instant>,
    /// The canvas the entries were rendered for (a grown canvas renders again).
    dims: Option<Dimensions>,
    /// Level-0 tiles the hub saw change, with its seq then, until the painted-tiles index
    /// has counted that far: at most [`RECENT_MOST`].
    recent: HashMap<u64, Seq>,
    clock: u64,
    /// Rendered tiles kept at most ([`Overviews::cap`]): a render past it keeps only the
    /// tile asked for, so rendering the top of a wide painted canvas holds one chain of
    /// children at a time, not every tile below it.
    cap: usize,
    /// The tile the render under way was asked for (always kept).
    wanted: Option<OverviewId>,
}

/// The pyramid, shared by all requests.
pub struct Overviews {
    /// Held across a render, which serialises renders: each tile is rendered once.
    state: tokio::sync::Mutex<State>,
    /// Rendered tiles kept at most.
    cap: usize,
    /// At most how often stale tiles are dropped.
    ttl: Duration,
}

type Render<'a> = Pin<Box<dyn Future<Output = Result<Option<Tile>, LoadError>> + Send + 'a>>;

impl Overviews {
    pub fn new(cap: usize, ttl: Duration) -> Self {
        Self {
            state: tokio::sync::Mutex::new(State {
                map: HashMap::new(),
                refreshed: None,
                dims: None,
                recent: HashMap::new(),
                clock: 0,
                cap: cap.max(16),
                wanted: None,
            }),
            cap: cap.max(16),
            ttl,
        }
    }

    /// The body of overview tile `id` (`z >= 1`, on the canvas).
    pub async fn get(
        &self,
        hub: &Hub,
        store: &Backend,
        id: OverviewId,
    ) -> Result<Arc<Version>, LoadError> {
        let mut st = self.state.lock().await;
        let dims = hub.dims();
        if st.dims != Some(dims) {
            st.map.clear();
            st.dims = Some(dims);
        }
        if st.refreshed.is_none_or(|t| t.elapsed() >= self.ttl) {
            st.refreshed = Some(Instant::now());
            match hub.take_dirty() {
                None => st.map.clear(),
                Some(dirty) => {
                    let top = levels(dims);
                    let seq = hub.seq();
                    for key in dirty {
                        if st.recent.len() < RECENT_MOST {
                            st.recent.insert(key, seq);
                        }
                        let t = TileId::from_key(key);
                        for z in 1..top {
                            st.map.remove(&OverviewId::containing(t, z));
                        }
                    }
                }
            }
            drop_caught_up(&mut st, store, levels(dims)).await?;
        }
        st.wanted = Some(id);
        render(&mut st, hub, store, id).await?;
        st.clock += 1;
        let clock = st.clock;
        let body = {
            let e = st.map.get_mut(&id).expect("just rendered");
            e.used = clock;
            e.body.clone()
        };
        if st.map.len() > self.cap {
            let mut by_age: Vec<(u64, OverviewId)> = st
                .map
                .iter()
                .filter(|(k, _)| **k != id)
                .map(|(k, e)| (e.used, *k))
                .collect();
            let n = (st.map.len() - self.cap)
                .max(self.cap / 8)
                .min(by_age.len());
            if n > 0 {
                by_age.select_nth_unstable(n - 1);
                for (_, k) in &by_age[..n] {
                    st.map.remove(k);
                }
            }
        }
        Ok(body)
    }
}

/// Drops the provisional entries (and their ancestors) whose render the painted-tiles
/// index has since counted past, and the recent tiles it has counted.
async fn drop_caught_up(st: &mut State, store: &Backend, top: u8) -> Result<(), LoadError> {
    if st.recent.is_empty() && st.map.values().all(|e| e.provisional.is_none()) {
        return Ok(());
    }
    let through = store.activity_through().await?;
    st.recent.retain(|_, seen| *seen > through);
    let stale: Vec<OverviewId> = st
        .map
        .iter()
        .filter(|(_, e)| e.provisional.is_some_and(|s| s <= through))
        .map(|(k, _)| *k)
        .collect();
    for mut id in stale {
        while id.z() < top {
            st.map.remove(&id);
            id = id.parent();
        }
    }
    Ok(())
}

/// The level-0 tiles `id` covers, as `[tx0, ty0, tx1, ty1]` (inclusive).
fn area(id: OverviewId) -> [u32; 4] {
    let z = u32::from(id.z());
    let (x, y) = (id.tx() << z, id.ty() << z);
    let last = (1u32 << z) - 1;
    [x, y, x + last, y + last]
}

/// Whether a painted tile (by key) lies in `a`.
fn within(a: [u32; 4], key: u64) -> bool {
    let t = TileId::from_key(key);
    (a[0]..=a[2]).contains(&t.tx()) && (a[1]..=a[3]).contains(&t.ty())
}

/// Renders `id` (and whatever below it is missing) into `st`; returns its pixels.
fn render<'a>(st: &'a mut State, hub: &'a Hub, store: &'a Backend, id: OverviewId) -> Render<'a> {
    Box::pin(async move {
        // Cached: no need to ask the index (render_from would find it too, after).
        if let Some(e) = st.map.get(&id) {
            return Ok(e.tile.clone());
        }
        if id.z() < PRUNE_FROM {
            return render_from(st, hub, store, id, Painted::Unknown).await;
        }
        let seq = hub.seq();
        let through = store.activity_through().await?;
        let a = area(id);
        let mut listed = store.painted_in(a, PAINTED_MOST).await?;
        listed.extend(st.recent.keys().filter(|k| within(a, **k)));
        listed.sort_unstable();
        listed.dedup();
        let painted = if listed.len() < PAINTED_MOST {
            Painted::Listed(&listed, through < seq)
        } else {
            Painted::Unknown
        };
        render_from(st, hub, store, id, painted).await
    })
}

/// [`render`] knowing what below `id` is painted.
fn render_from<'a>(
    st: &'a mut State,
    hub: &'a Hub,
    store: &'a Backend,
    id: OverviewId,
    painted: Painted<'a>,
) -> Render<'a> {
    Box::pin(async move {
        if let Some(e) = st.map.get(&id) {
            return Ok(e.tile.clone());
        }
        let seq = hub.seq();
        let dims = hub.dims();
        let depth = hub.depth();
        let mut children: [Option<Tile>; 4] = [None, None, None, None];
        for (slot, child) in children.iter_mut().zip(id.children()) {
            let (across, down) = OverviewId::across(dims, child.z());
            if child.tx() >= across || child.ty() >= down {
                continue;
            }
            let below = match painted {
                Painted::Unknown => Painted::Unknown,
                Painted::Listed(keys, behind) => {
                    let a = area(child);
                    // Keys are `ty << 32 | tx`: the child's rows are one range of them.
                    let lo = keys.partition_point(|k| *k < TileId::new_unchecked(a[0], a[1]).key());
                    let hi =
                        keys.partition_point(|k| *k <= TileId::new_unchecked(a[2], a[3]).key());
                    if !keys[lo..hi].iter().any(|k| within(a, *k)) {
                        // Nothing ever painted below: a blank quarter, not rendered.
                        continue;
                    }
                    Painted::Listed(&keys[lo..hi], behind)
                }
            };
            *slot = match child.as_tile() {
                Some(t) => level0(hub, store, t).await?,
                None => render_from(st, hub, store, child, below).await?,
            };
        }
        let tile = downsample(depth, [0, 1, 2, 3].map(|k| children[k].as_ref()));
        metrics::counter!("rplace_overview_renders_total").increment(1);
        if st.map.len() >= st.cap && st.wanted != Some(id) {
            return Ok(tile);
        }
        let raw = match &tile {
            Some(t) => Bytes::copy_from_slice(t.as_bytes()),
            None => blank(depth),
        };
        st.map.insert(
            id,
            Entry {
                tile: tile.clone(),
                body: Arc::new(Version::new(seq, raw)),
                used: 0,
                provisional: match painted {
                    Painted::Listed(_, true) => Some(seq),
                    _ => None,
                },
            },
        );
        Ok(tile)
    })
}

/// A level-0 tile's pixels: from the hub's cache when there, else read from the store
/// (an overview may be a moment stale; the change marks it for the next refresh).
async fn level0(hub: &Hub, store: &Backend, id: TileId) -> Result<Option<Tile>, LoadError> {
    if let Some(p) = hub.cached_pixels(id) {
        return Ok(p);
    }
    Ok(store.tile(id).await?.pixels)
}

/// The bytes of an unpainted tile, shared.
fn blank(depth: Depth) -> Bytes {
    static FOUR: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    static EIGHT: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    let cell = match depth {
        Depth::Four => &FOUR,
        Depth::Eight => &EIGHT,
    };
    cell.get_or_init(|| Bytes::from(Tile::new(depth).into_bytes()))
        .clone()
}
