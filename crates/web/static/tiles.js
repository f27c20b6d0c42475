// Tiles: the canvas as a grid of 256² tiles, fetched as they come into view, kept in a
// bounded cache, and kept exact one by one with the client rule of docs/API.md:
//
//   know the tile's version k (X-Tile-Version of GET /api/tiles/{tx}/{ty});
//   buffer its frames (kind 0x02) until the tile is there;
//   a frame with prev <= k: apply its entries with version > k;
//   a frame with prev > k: GET /api/tiles/{tx}/{ty}/updates?since=k first
//     (410: refetch the tile with Cache-Control: no-cache);
//   after a reconnect (or whenever a tile starts being watched again), the view is sent
//   again and each tile catches up from its k.
//
// Every tile has its own serialized loop (`pump`), the only place its pixels change, so
// a tile's versions are applied once each and in order. Pure data code: the network and
// timers are injected and nothing here touches the DOM, so tests/browser/unit.test.mjs
// drives it against a fake server. The overview levels (PNG images, no live updates)
// are cached by `OverviewStore`.

import { decodeBoard } from './board.js';

/** Pixels on a tile's side (`tile_size` of `GET /api/config`). */
export const TILE = 256;
/** Pixels in a tile. */
export const TILE_PIXELS = TILE * TILE;
/** First byte of a tile frame. */
export const KIND_TILE = 0x02;
/** Bytes before the first entry of a tile frame. */
export const TILE_HEADER_LEN = 29;
/** Bytes per entry: delta u32 LE, tile-local index u16 LE, color u8. */
export const TILE_ENTRY_LEN = 7;
/** Most tiles one `view` message may name. */
export const MAX_VIEW_TILES = 256;
/** Tiles kept in memory at least (each 64 KiB of palette indices, plus a 256 KiB canvas
 * while it is drawn); the cache grows past this only to hold what is on screen. */
export const TILE_CACHE = 160;
/** Overview images kept (decoded, 256 KiB each). */
export const OVERVIEW_CACHE = 96;
/** A frame still ahead of the tile after this many catch-ups refetches the tile. */
const MAX_GAP_RETRIES = 3;
/** Frames buffered for one tile past this are dropped and the tile refetched. */
const MAX_QUEUE = 512;

/** Reconnect and retry delays: exponential from 0.5 s to 10 s, with jitter. */
export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 10_000;

/** Delay before retry `attempt` (0-based): 0.5 s, 1 s, 2 s ... 10 s, each scaled by a
 * random factor in [0.5, 1) so that clients a restart dropped together do not all come
 * back in the same instant. */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16));
  return Math.max(BACKOFF_MIN_MS / 2, Math.round(base * (0.5 + 0.5 * random())));
}

export class HttpError extends Error {
  constructor(what, status) {
    super(`${what}: HTTP ${status}`);
    this.status = status;
  }
}

// ---- tile frames (kind 0x02, crates/domain/src/wire/tile.rs) ---------------------------

/**
 * Splits a buffer of tile frames laid back to back (the body of `/updates`; a websocket
 * message holds one or more) into `{tx, ty, prev, first, count, last, entries}`, where
 * `entries` is a view of the entry bytes and `last` the tile's version after the frame.
 * Throws on a malformed buffer: applying half of a broken frame would desync the tile.
 */
export function decodeTileFrames(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames = [];
  let off = 0;
  while (off < bytes.length) {
    if (bytes.length - off < TILE_HEADER_LEN) throw new Error(`truncated tile frame header at byte ${off}`);
    if (bytes[off] !== KIND_TILE) throw new Error(`unknown frame kind ${bytes[off]} at byte ${off}`);
    const tx = view.getUint32(off + 1, true);
    const ty = view.getUint32(off + 5, true);
    // Versions are seqs: they fit in 2^53 for any real deployment.
    const prev = Number(view.getBigUint64(off + 9, true));
    const first = Number(view.getBigUint64(off + 17, true));
    const count = view.getUint32(off + 25, true);
    const start = off + TILE_HEADER_LEN;
    const end = start + count * TILE_ENTRY_LEN;
    if (end > bytes.length) throw new Error(`tile frame at byte ${off} says ${count} entries but is cut short`);
    let last = prev;
    for (let o = start; o < end; o += TILE_ENTRY_LEN) {
      const v = first + view.getUint32(o, true);
      if (v <= last) throw new Error(`tile frame at byte ${off}: version ${v} after ${last}`);
      if (view.getUint16(o + 4, true) >= TILE_PIXELS) throw new Error(`tile frame at byte ${off}: bad index`);
      last = v;
    }
    frames.push({ tx, ty, prev, first, count, last, entries: bytes.subarray(start, end) });
    off = end;
  }
  return frames;
}

/** Calls `fn(version, index, color)` for each entry of a decoded tile frame. */
export function forEachTileEntry(frame, fn) {
  const e = frame.entries;
  for (let i = 0, o = 0; i < frame.count; i++, o += TILE_ENTRY_LEN) {
    const delta = (e[o] | (e[o + 1] << 8) | (e[o + 2] << 16)) + e[o + 3] * 0x1000000;
    fn(frame.first + delta, e[o + 4] | (e[o + 5] << 8), e[o + 6]);
  }
}

/** Builds a tile frame from `[version, index, color]` entries (increasing versions). */
export function encodeTileFrame(tx, ty, prev, entries) {
  const out = new Uint8Array(TILE_HEADER_LEN + TILE_ENTRY_LEN * entries.length);
  const view = new DataView(out.buffer);
  const first = entries.length ? entries[0][0] : prev;
  out[0] = KIND_TILE;
  view.setUint32(1, tx, true);
  view.setUint32(5, ty, true);
  view.setBigUint64(9, BigInt(prev), true);
  view.setBigUint64(17, BigInt(first), true);
  view.setUint32(25, entries.length, true);
  entries.forEach(([version, index, color], i) => {
    const o = TILE_HEADER_LEN + i * TILE_ENTRY_LEN;
    view.setUint32(o, version - first, true);
    view.setUint16(o + 4, index, true);
    out[o + 6] = color;
  });
  return out;
}

// ---- tile math ---------------------------------------------------------------------------

/** One integer per tile (tx, ty < 2^14 on a 2^22 canvas). */
export const tileKey = (tx, ty) => ty * 65536 + tx;

/** Overview levels of a canvas: as in crates/domain/src/tile.rs `levels`, the number of
 * halvings until one tile covers the longer side, plus one (level 0). */
export function levelCount(width, height) {
  const side = Math.max(width, height);
  let z = 0;
  while (TILE * 2 ** z < side) z++;
  return z + 1;
}

/** The overview level to show at `zoom` CSS px per canvas pixel: the coarsest one whose
 * pixels are still at most one CSS pixel wide, so an image is never magnified while
 * zoomed out and a screen needs a handful of tiles at any zoom. */
export function levelFor(zoom, levels) {
  let z = 0;
  while (z < levels - 1 && zoom * 2 ** (z + 1) <= 1) z++;
  return z;
}

/**
 * The rectangle of level-`z` tiles that a view shows, grown by `margin` tiles on each
 * side and clamped to the canvas: `{tx, ty, w, h}`. `view` has x, y (canvas point at the
 * screen's center), zoom, width, height (CSS px).
 */
export function tileRect(view, width, height, z = 0, margin = 0) {
  const span = TILE * 2 ** z;
  const across = Math.ceil(width / span), down = Math.ceil(height / span);
  const halfW = view.width / 2 / view.zoom, halfH = view.height / 2 / view.zoom;
  const x0 = Math.max(0, Math.floor((view.x - halfW) / span) - margin);
  const y0 = Math.max(0, Math.floor((view.y - halfH) / span) - margin);
  const x1 = Math.min(across - 1, Math.floor((view.x + halfW) / span) + margin);
  const y1 = Math.min(down - 1, Math.floor((view.y + halfH) / span) + margin);
  return { tx: x0, ty: y0, w: Math.max(0, x1 - x0 + 1), h: Math.max(0, y1 - y0 + 1) };
}

export const sameRect = (a, b) => !!a && !!b && a.tx === b.tx && a.ty === b.ty && a.w === b.w && a.h === b.h;

export const inRect = (r, tx, ty) => !!r && tx >= r.tx && ty >= r.ty && tx < r.tx + r.w && ty < r.ty + r.h;

/** Calls `fn(tx, ty)` for each tile of a rectangle, row by row. */
export function forEachTile(r, fn) {
  if (!r) return;
  for (let ty = r.ty; ty < r.ty + r.h; ty++) for (let tx = r.tx; tx < r.tx + r.w; tx++) fn(tx, ty);
}

// ---- the level-0 tiles --------------------------------------------------------------------

/**
 * One tile in the cache. The renderer reads `pixels` and the dirty marks; only the
 * store's pump writes them.
 */
class TileEntry {
  constructor(tx, ty) {
    this.tx = tx;
    this.ty = ty;
    this.key = tileKey(tx, ty);
    /** The tile's version k: the seq of the last placement applied; null until loaded. */
    this.version = null;
    /** One palette index per pixel, tile-local `i = y*256 + x`; null until loaded. */
    this.pixels = null;
    /** Decoded frames waiting to be applied, in arrival order. */
    this.queue = [];
    /** Subscribed: the server's last `view` answer covers this tile on the current socket. */
    this.live = false;
    this.needFetch = true;
    /** The next fetch bypasses the HTTP cache (after a 410 or a resync). */
    this.fresh = false;
    /** Placements may have happened since k without a frame to say so: ask the log. */
    this.needCatchUp = false;
    this.busy = false;
    this.timer = null;
    this.failures = 0;
    this.gapRetries = 0;
    this.evicted = false;
    /** Pixel indices changed since the renderer last took them (null: none). */
    this.dirty = null;
    /** The renderer must upload the whole tile (first load, refetch, bulk). */
    this.fullDirty = false;
  }

  get ready() {
    return this.version !== null && !this.needFetch && !this.needCatchUp && !this.busy;
  }
}

export class TileStore {
  /**
   * @param {object} o
   * @param {number} o.bitsPerPixel       4 or 8
   * @param {string} [o.httpBase]         prefix for API URLs ('' on the page)
   * @param {(tile: TileEntry) => boolean} [o.mayFetch]  whether a tile not subscribed
   *   may be fetched now (the page waits for the subscription while connected, so that
   *   no placement falls between the tile's bytes and its first frame)
   * @param {(res) => boolean} [o.isStale]  whether a tile answer may be older than now
   *   (from a cache): then the tile catches up from its version at once
   * @param {(tile: TileEntry, index: number|null, color: number|null) => void} [o.onChange]
   *   a tile loaded (index null) or one of its pixels changed
   */
  constructor(o) {
    this.httpBase = o.httpBase ?? '';
    this.bpp = o.bitsPerPixel;
    this.capacity = o.capacity ?? TILE_CACHE;
    this.fetch = o.fetch ?? ((...a) => globalThis.fetch(...a));
    this.setTimeout = o.setTimeout ?? ((f, ms) => globalThis.setTimeout(f, ms));
    this.clearTimeout = o.clearTimeout ?? ((t) => globalThis.clearTimeout(t));
    this.random = o.random ?? Math.random;
    this.mayFetch = o.mayFetch ?? (() => true);
    this.isStale = o.isStale ?? ((res) => Number(res.headers.get('Age') ?? 0) > 0);
    this.onChange = o.onChange ?? (() => {});
    this.onError = o.onError ?? (() => {});
    /** key -> TileEntry, least recently wanted first (Map keeps insertion order). */
    this.tiles = new Map();
    /** Keys of the tiles the view needs now. */
    this.wanted = new Set();
    /** The rectangle the server said it subscribed (null: none, e.g. disconnected). */
    this.subscription = null;
    /** Highest version seen on any tile: a rough "how far the page has got". */
    this.seq = 0;
    this.stopped = false;
  }

  /** The tile entry if cached, without touching its place in the LRU order. */
  peek(tx, ty) {
    return this.tiles.get(tileKey(tx, ty));
  }

  /** The palette index of canvas pixel (x, y), or undefined if its tile is not loaded. */
  get(x, y) {
    if (!Number.isInteger(x) || !Number.isInteger(y) || x < 0 || y < 0) return undefined;
    const e = this.tiles.get(tileKey(Math.floor(x / TILE), Math.floor(y / TILE)));
    if (!e?.pixels) return undefined;
    return e.pixels[(y % TILE) * TILE + (x % TILE)];
  }

  /** Whether every wanted tile is loaded and caught up. */
  get ready() {
    for (const k of this.wanted) if (!this.tiles.get(k)?.ready) return false;
    return true;
  }

  /**
   * The tiles the view needs now (a rectangle, or null for none). They are fetched (or
   * kept); tiles beyond the cache's capacity that are not wanted are dropped, least
   * recently wanted first, so memory stays bounded however far the view travels.
   */
  want(rect) {
    this.wanted = new Set();
    forEachTile(rect, (tx, ty) => {
      const key = tileKey(tx, ty);
      let e = this.tiles.get(key);
      if (e) {
        this.tiles.delete(key);
      } else {
        e = new TileEntry(tx, ty);
        // Inside the subscription its frames already come: it is live from the start,
        // and any frame before it was dropped is older than the copy it fetches now.
        e.live = inRect(this.subscription, tx, ty);
      }
      this.tiles.set(key, e); // most recently wanted last
      this.wanted.add(key);
      this.pump(e);
    });
    const limit = Math.max(this.capacity, this.wanted.size + 16);
    for (const [key, e] of this.tiles) {
      if (this.tiles.size <= limit) break;
      if (this.wanted.has(key)) continue;
      this.evict(e);
    }
  }

  evict(e) {
    e.evicted = true;
    this.clearTimeout(e.timer);
    e.timer = null;
    e.queue.length = 0;
    this.tiles.delete(e.key);
  }

  /**
   * The server's `view` answer: from now on it sends frames for exactly these tiles. A
   * tile that starts being watched and already has (or is fetching) a version may have
   * missed placements meanwhile: it catches up from its version.
   */
  subscribed(rect) {
    this.subscription = rect;
    for (const e of this.tiles.values()) {
      const inside = inRect(rect, e.tx, e.ty);
      if (inside && !e.live) {
        e.live = true;
        if (e.version !== null || e.busy) e.needCatchUp = true;
      } else if (!inside) {
        e.live = false;
      }
      if (inside) this.pump(e);
    }
  }

  /** The socket closed: nothing is watched until the next `view` answer. */
  disconnected() {
    this.subscription = null;
    for (const e of this.tiles.values()) e.live = false;
  }

  /** Retries the wanted tiles that wait for something (a subscription, a timer). */
  kick() {
    for (const k of this.wanted) {
      const e = this.tiles.get(k);
      if (!e) continue;
      if (e.timer) {
        this.clearTimeout(e.timer);
        e.timer = null;
      }
      this.pump(e);
    }
  }

  /** Runs the wanted tiles that wait for permission to fetch (not those waiting out a
   * retry delay). */
  poke() {
    for (const k of this.wanted) {
      const e = this.tiles.get(k);
      if (e) this.pump(e);
    }
  }

  /** A decoded tile frame from the websocket. Frames for tiles not in the cache are
   * dropped: such a tile is fetched fresh when it is wanted again. */
  onFrame(f) {
    const e = this.tiles.get(tileKey(f.tx, f.ty));
    if (!e) return;
    if (e.queue.length >= MAX_QUEUE) {
      e.queue.length = 0;
      e.needFetch = true;
    }
    e.queue.push(f);
    this.pump(e);
  }

  /** The server lost continuity (`resync`): every tile is refetched, bypassing caches. */
  resync() {
    for (const e of this.tiles.values()) {
      e.queue.length = 0;
      e.needFetch = true;
      e.fresh = true;
      e.needCatchUp = false;
      this.pump(e);
    }
  }

  /** Shows our own placement before its frame arrives (if the tile is older than it);
   * the frame with that version applies the same color, and later ones still win. */
  placedLocally(x, y, color, seq) {
    const e = this.tiles.get(tileKey(Math.floor(x / TILE), Math.floor(y / TILE)));
    if (!e?.pixels || e.version >= seq) return;
    this.setPixel(e, (y % TILE) * TILE + (x % TILE), color);
  }

  stop() {
    this.stopped = true;
    for (const e of this.tiles.values()) this.clearTimeout(e.timer);
  }

  /** The one loop that changes a tile. Reentrant calls return at once: the running loop
   * looks at the tile again before it exits, with no await in between. */
  async pump(e) {
    if (e.busy || e.timer || e.evicted || this.stopped) return;
    e.busy = true;
    let worked = false;
    try {
      for (;; worked = true) {
        if (e.evicted || this.stopped) break;
        if (e.needFetch) {
          // Only tiles on screen (or near it) are downloaded, and while connected only
          // once subscribed; frames meanwhile stay queued.
          if (!this.wanted.has(e.key) || (!e.live && !this.mayFetch(e))) break;
          await this.fetchTile(e);
          continue;
        }
        if (e.needCatchUp) {
          await this.catchUp(e);
          continue;
        }
        const f = e.queue[0];
        if (!f) break;
        if (f.last <= e.version) {
          e.queue.shift(); // all of it is on the tile already
          continue;
        }
        if (f.prev > e.version) {
          // Placements between our version and this frame: get them from the log.
          if (++e.gapRetries > MAX_GAP_RETRIES) {
            e.gapRetries = 0;
            e.needFetch = true;
            e.fresh = true;
          } else {
            if (e.gapRetries > 1) await this.sleep(100 * e.gapRetries);
            e.needCatchUp = true;
          }
          continue;
        }
        e.queue.shift();
        e.gapRetries = 0;
        this.applyFrame(e, f);
      }
      e.failures = 0;
    } catch (err) {
      this.onError(err);
      // The tile or its log could not be fetched: try again later, same state.
      const delay = backoffDelay(e.failures++, this.random);
      e.timer = this.setTimeout(() => {
        e.timer = null;
        this.pump(e);
      }, delay);
    } finally {
      e.busy = false;
    }
    // Done for now: whoever waits for the tile to be ready hears of it.
    if (worked && !e.evicted && !e.timer && !this.stopped) this.onChange(e, null, null);
  }

  /** Applies the entries of a frame newer than the tile; the caller made sure the frame
   * follows the tile's version (prev <= version), so nothing is skipped. */
  applyFrame(e, f) {
    forEachTileEntry(f, (v, i, color) => {
      if (v <= e.version) return;
      this.setPixel(e, i, color);
      e.version = v;
    });
    if (e.version > this.seq) this.seq = e.version;
  }

  setPixel(e, i, color) {
    e.pixels[i] = color;
    if (!e.fullDirty) {
      (e.dirty ??= new Set()).add(i);
      // Past this many scattered pixels one upload of the tile is cheaper.
      if (e.dirty.size > 2048) { e.dirty = null; e.fullDirty = true; }
    }
    this.onChange(e, i, color);
  }

  async fetchTile(e) {
    const fresh = e.fresh;
    e.needFetch = false;
    e.fresh = false;
    let res;
    try {
      res = await this.fetch(`${this.httpBase}/api/tiles/${e.tx}/${e.ty}`, {
        credentials: 'same-origin',
        cache: fresh ? 'no-cache' : 'default',
      });
      if (!res.ok) throw new HttpError(`GET /api/tiles/${e.tx}/${e.ty}`, res.status);
    } catch (err) {
      e.needFetch = true;
      e.fresh = fresh;
      throw err;
    }
    const version = Number(res.headers.get('X-Tile-Version'));
    if (!Number.isSafeInteger(version) || version < 0) {
      e.needFetch = true;
      throw new Error(`GET /api/tiles/${e.tx}/${e.ty}: no X-Tile-Version header`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (e.evicted) return;
    e.pixels = decodeBoard(bytes, TILE, TILE, this.bpp, e.pixels ?? new Uint8Array(TILE_PIXELS));
    e.version = version;
    e.dirty = null;
    e.fullDirty = true;
    if (version > this.seq) this.seq = version;
    // A copy from a cache may be behind: a watched tile catches up at once rather than
    // wait for its next frame, which on a quiet tile could be a long time coming.
    if (e.live && !fresh && this.isStale(res)) e.needCatchUp = true;
    this.onChange(e, null, null);
  }

  /** Applies every placement on the tile after its version from `/updates?since=k`. */
  async catchUp(e) {
    // Cleared before the request: a subscription that starts while it is in flight
    // asks again.
    e.needCatchUp = false;
    const since = e.version;
    let res;
    try {
      res = await this.fetch(`${this.httpBase}/api/tiles/${e.tx}/${e.ty}/updates?since=${since}`, {
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (err) {
      e.needCatchUp = true;
      throw err;
    }
    if (res.status === 410) {
      // The log no longer reaches back to our version: the whole tile, not a cached one.
      e.needFetch = true;
      e.fresh = true;
      return;
    }
    if (!res.ok) {
      e.needCatchUp = true;
      throw new HttpError(`GET /api/tiles/${e.tx}/${e.ty}/updates`, res.status);
    }
    const frames = decodeTileFrames(await res.arrayBuffer());
    if (e.evicted || e.version !== since) return;
    for (const f of frames) {
      if (f.last <= e.version) continue;
      if (f.prev > e.version) {
        // The log itself has a hole: only a new copy of the tile can be trusted.
        this.onError(new Error(`/api/tiles/${e.tx}/${e.ty}/updates skipped from ${e.version} to ${f.prev}`));
        e.needFetch = true;
        e.fresh = true;
        return;
      }
      this.applyFrame(e, f);
    }
  }

  sleep(ms) {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }
}

// ---- overview images ---------------------------------------------------------------------

/** Overview tiles are fetched again after this long on screen (they are re-rendered at
 * most once per board TTL on the server, and carry no live updates). */
export const OVERVIEW_REFRESH_MS = 30_000;

/**
 * Overview tiles (`GET /api/tiles/{z}/{tx}/{ty}.png`) as decoded images, in a bounded
 * cache. `decode(blob)` makes the image (createImageBitmap on the page).
 */
export class OverviewStore {
  constructor(o) {
    this.httpBase = o.httpBase ?? '';
    this.capacity = o.capacity ?? OVERVIEW_CACHE;
    this.fetch = o.fetch ?? ((...a) => globalThis.fetch(...a));
    this.decode = o.decode;
    this.now = o.now ?? (() => Date.now());
    this.onLoad = o.onLoad ?? (() => {});
    this.onError = o.onError ?? (() => {});
    /** "z/tx/ty" -> {z, tx, ty, img, version, fetchedAt, loading, failures, retryAt} */
    this.images = new Map();
    this.wanted = new Set();
  }

  static key(z, tx, ty) {
    return `${z}/${tx}/${ty}`;
  }

  peek(z, tx, ty) {
    return this.images.get(OverviewStore.key(z, tx, ty));
  }

  /** The level-`z` tiles the view needs now (rect, or null). */
  want(z, rect) {
    this.wanted = new Set();
    const now = this.now();
    forEachTile(rect, (tx, ty) => {
      const key = OverviewStore.key(z, tx, ty);
      let e = this.images.get(key);
      if (e) this.images.delete(key);
      else e = { z, tx, ty, img: null, version: null, fetchedAt: 0, loading: false, failures: 0, retryAt: 0 };
      this.images.set(key, e);
      this.wanted.add(key);
      const due = !e.img || now - e.fetchedAt > OVERVIEW_REFRESH_MS;
      if (due && !e.loading && now >= e.retryAt) this.load(e);
    });
    const limit = Math.max(this.capacity, this.wanted.size + 8);
    for (const [key, e] of this.images) {
      if (this.images.size <= limit) break;
      if (this.wanted.has(key)) continue;
      e.img?.close?.();
      this.images.delete(key);
    }
  }

  /** Forgets every image (the canvas grew: edge tiles change). */
  clear() {
    for (const e of this.images.values()) e.img?.close?.();
    this.images.clear();
  }

  async load(e) {
    e.loading = true;
    try {
      const res = await this.fetch(`${this.httpBase}/api/tiles/${e.z}/${e.tx}/${e.ty}.png`, { credentials: 'same-origin' });
      if (!res.ok) throw new HttpError(`GET /api/tiles/${e.z}/${e.tx}/${e.ty}.png`, res.status);
      const img = await this.decode(await res.blob());
      const key = OverviewStore.key(e.z, e.tx, e.ty);
      if (this.images.get(key) !== e) { img?.close?.(); return; }
      e.img?.close?.();
      e.img = img;
      e.version = Number(res.headers.get('X-Tile-Version') ?? 0);
      e.fetchedAt = this.now();
      e.failures = 0;
      this.onLoad(e);
    } catch (err) {
      this.onError(err);
      e.retryAt = this.now() + backoffDelay(e.failures++);
    } finally {
      e.loading = false;
    }
  }
}
