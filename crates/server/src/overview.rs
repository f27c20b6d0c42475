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

use crate::board_cache::Version;
use crate::hub::{Hub, LoadError};
use bytes::Bytes;
use rplace_domain::board::Depth;
use rplace_domain::tile::{OverviewId, downsample, levels};
use rplace_domain::{Dimensions, Tile, TileId};
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
}

/// The rendered tiles and when stale ones were last dropped.
struct State {
    map: HashMap<OverviewId, Entry>,
    /// When the hub's changed tiles were last taken.
    refreshed: Option<Instant>,
    /// The canvas the entries were rendered for (a grown canvas renders again).
    dims: Option<Dimensions>,
    clock: u64,
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
                clock: 0,
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
                    for key in dirty {
                        let t = TileId::from_key(key);
                        for z in 1..top {
                            st.map.remove(&OverviewId::containing(t, z));
                        }
                    }
                }
            }
        }
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

/// Renders `id` (and whatever below it is missing) into `st`; returns its pixels.
fn render<'a>(st: &'a mut State, hub: &'a Hub, store: &'a Backend, id: OverviewId) -> Render<'a> {
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
            *slot = match child.as_tile() {
                Some(t) => level0(hub, store, t).await?,
                None => render(st, hub, store, child).await?,
            };
        }
        let tile = downsample(depth, [0, 1, 2, 3].map(|k| children[k].as_ref()));
        metrics::counter!("rplace_overview_renders_total").increment(1);
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
