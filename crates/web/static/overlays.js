// Overlays over the canvas (one at a time): a heatmap of recent placements, the virgin
// map (pixels never placed) and "my pixels" (those whose color is still this visitor's
// own placement). Their data, per level-0 tile in view and nowhere else:
//
//   GET /api/tiles/{tx}/{ty}/activity  65,536 LE u32, the unix second of each pixel's
//                                       last placement, 0 = never (heatmap, virgin map)
//   GET /api/me/pixels?tx=..&ty=..      {through, pixels: [tile-local index]} (my pixels)
//
// kept in a bounded cache (CACHE tiles beyond those in view), fetched again every
// REFRESH_MS while shown, and kept current in between by the live pixels
// (`pixelChanged`) and our own placements (`placed`). The server counts the log in the
// background, so its answers lag the live board by a few seconds: live changes are laid
// over each answer until it has caught up with them (LIVE_KEEP_S at most).
//
// Each tile is rasterized into a 256² canvas with alpha, drawn over the board's tile
// by the renderer (render.js `overlay`), so it is pixel-exact at any zoom. Zoomed out to
// the overview images, or in history mode, nothing is fetched or drawn: `state.reason`
// says why, and the panel says "zoom in".

import { HttpError, TILE, TILE_PIXELS, backoffDelay, forEachTile, tileKey, tileRect } from './tiles.js';

export const MODES = ['none', 'heat', 'virgin', 'mine'];
/** Tiles of overlay data kept (each about 512 KiB: the data and its canvas). */
export const CACHE = 24;
/** The data in view is fetched again this often while an overlay is shown. */
export const REFRESH_MS = 12_000;
/** The heatmap's window: older placements are not colored. */
export const HEAT_WINDOW_S = 3600;
/** Requests in flight at once. */
const FETCHES = 4;
/** The tiles wanted follow the view at most this often (a fast pan fetches nothing it
 * only passed over). */
const WANT_EVERY_MS = 150;
/** Live changes are laid over fetched data at most this long (it lags a few seconds). */
const LIVE_KEEP_S = 120;
/** Our own recent placements remembered (for "my pixels" before the server counts them). */
const MAX_RECENT = 64;
/** CSS px per board pixel from which my pixels are outlined, and under which each gets
 * a marker of at least MARK_PX so that a lone pixel still shows. */
const OUTLINE_ZOOM = 6;
const MARK_ZOOM = 3;
const MARK_PX = 3;
const MARK_CSS = '#FFD635';

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** An ImageData word (bytes r, g, b, a in memory). */
const word = (r, g, b, a) => (LITTLE_ENDIAN ? ((a << 24) | (b << 16) | (g << 8) | r) : ((r << 24) | (g << 16) | (b << 8) | a)) >>> 0;

/** The board under an overlay: dimmed, so that what is highlighted reads. */
export const DIM = word(0, 0, 0, 153);
/** Virgin map: never placed (bright green) and placed (dark). */
export const VIRGIN = word(0, 230, 118, 224);
export const PLACED = word(0, 0, 0, 184);
/** My pixels: mine in their own colors, the rest dimmed. */
export const MINE = 0;
export const OTHER = word(0, 0, 0, 173);
/** Tiles whose data has not arrived yet. */
const LOADING_CSS = 'rgba(0, 0, 0, 0.6)';

/** The heatmap's ramp over sqrt(age / window): yellow just now, orange, red, purple. */
const HEAT_STOPS = [
  [0, [255, 236, 64, 245]],
  [0.3, [255, 140, 0, 235]],
  [0.6, [230, 30, 30, 220]],
  [1, [110, 20, 140, 200]],
];
const HEAT_LUT = new Uint32Array(256);
for (let k = 0; k < 256; k++) {
  const f = k / 255;
  let j = 0;
  while (j < HEAT_STOPS.length - 2 && f > HEAT_STOPS[j + 1][0]) j++;
  const [f0, c0] = HEAT_STOPS[j], [f1, c1] = HEAT_STOPS[j + 1];
  const u = Math.min(1, Math.max(0, (f - f0) / (f1 - f0)));
  HEAT_LUT[k] = word(...c0.map((v, n) => Math.round(v + (c1[n] - v) * u)));
}

/** The heatmap's word for a pixel last placed at unix second `t` (0: never). */
export function heatWord(t, nowS) {
  if (t === 0) return DIM;
  const age = Math.max(0, nowS - t);
  if (age >= HEAT_WINDOW_S) return DIM;
  return HEAT_LUT[Math.min(255, Math.floor(Math.sqrt(age / HEAT_WINDOW_S) * 256))];
}

/** The word of pixel `i` of a tile's data in `mode`. */
export function pixelWord(mode, data, i, nowS) {
  if (mode === 'mine') return data.has(i) ? MINE : OTHER;
  if (mode === 'virgin') return data[i] === 0 ? VIRGIN : PLACED;
  return heatWord(data[i], nowS);
}

/** Fills `words` (TILE² ImageData words) with a tile's overlay. */
export function rasterize(mode, data, nowS, words) {
  if (mode === 'mine') {
    words.fill(OTHER);
    for (const i of data) words[i] = MINE;
  } else if (mode === 'virgin') {
    for (let i = 0; i < TILE_PIXELS; i++) words[i] = data[i] === 0 ? VIRGIN : PLACED;
  } else {
    for (let i = 0; i < TILE_PIXELS; i++) words[i] = heatWord(data[i], nowS);
  }
}

/** `rgba()` of a word, for single pixels drawn with fillRect. */
function cssOf(w) {
  const b = LITTLE_ENDIAN ? [w & 255, (w >>> 8) & 255, (w >>> 16) & 255, w >>> 24] : [w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255];
  return `rgba(${b[0]}, ${b[1]}, ${b[2]}, ${(b[3] / 255).toFixed(3)})`;
}

/** The kind of data a mode needs. */
const kindOf = (mode) => (mode === 'mine' ? 'mine' : mode === 'none' ? null : 'activity');

class OverlayTile {
  constructor(tx, ty) {
    this.tx = tx;
    this.ty = ty;
    this.key = tileKey(tx, ty);
    /** Activity: Uint32Array of unix seconds; mine: Set of indices; null until fetched. */
    this.data = null;
    /** The seq the server's answer covers (X-Activity-Through, `through`). */
    this.through = 0;
    /** Activity: index -> second a live placement arrived. Mine: index -> second it was
     * lost to someone else's placement. Laid over each answer. */
    this.live = new Map();
    this.canvas = null;
    this.rastered = false;
    /** Indices changed since the canvas was drawn (null: none). */
    this.dirty = null;
    this.due = false;
    this.loading = false;
    this.failures = 0;
    this.retryAt = 0;
    this.evicted = false;
  }
}

export class Overlays {
  /**
   * @param {object} o
   * @param {import('./world.js').World} o.world
   * @param {(state: {mode: string, reason: string}) => void} [o.onState]  what is shown
   *   changed; reason '' (shown), 'zoom', 'history', 'loading' or 'error'
   * @param {(url: string) => Promise<Response>} [o.fetch]
   */
  constructor(o) {
    this.world = o.world;
    this.renderer = o.world.renderer;
    this.onState = o.onState ?? (() => {});
    this.fetch = o.fetch ?? ((url) => globalThis.fetch(url, { credentials: 'same-origin' }));
    this.mode = 'none';
    this.kind = null;
    /** key -> OverlayTile of the current kind, least recently wanted first. */
    this.tiles = new Map();
    this.wanted = new Set();
    /** Bumped when the kind changes: answers for the old one are dropped. */
    this.generation = 0;
    this.inflight = 0;
    this.fetches = 0;
    this.lastError = null;
    /** Our placements not yet counted by the server: {x, y, color, seq, at}. */
    this.recent = [];
    this.state = { mode: 'none', reason: '' };
    this.stateKey = '';
    this.wantTimer = 0;
    this.refreshTimer = 0;
    this.image = new ImageData(TILE, TILE);
    this.words = new Uint32Array(this.image.data.buffer);
    this.cssCache = new Map();
    this.renderer.overlay = (ctx, tr) => this.draw(ctx, tr);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && this.kind) this.refresh();
    });
  }

  /** The server's clock, in whole unix seconds. */
  nowS() {
    return Math.floor((Date.now() + (this.world.skew ?? 0)) / 1000);
  }

  setMode(mode) {
    if (!MODES.includes(mode)) mode = 'none';
    if (mode === this.mode) return;
    this.mode = mode;
    const kind = kindOf(mode);
    if (kind !== this.kind) {
      for (const e of this.tiles.values()) e.evicted = true;
      this.tiles.clear();
      this.wanted = new Set();
      this.generation++;
      this.inflight = 0; // the old kind's answers are dropped as they come
      this.lastError = null;
      this.kind = kind;
    }
    for (const e of this.tiles.values()) e.rastered = false;
    clearInterval(this.refreshTimer);
    this.refreshTimer = kind ? setInterval(() => this.refresh(), REFRESH_MS) : 0;
    this.want();
    this.renderer.request();
  }

  /** The view moved: the tiles wanted follow (throttled). */
  viewChanged() {
    if (!this.kind || this.wantTimer) return;
    this.wantTimer = setTimeout(() => { this.wantTimer = 0; this.want(); }, WANT_EVERY_MS);
  }

  /** The level-0 tiles on screen when the overlay can be shown there, else null. */
  visibleRect() {
    const w = this.world;
    if (!this.kind || w.past || w.level > 0 || !w.rect) return null;
    return tileRect(w.view, w.width, w.height, 0, 0);
  }

  want() {
    const rect = this.visibleRect();
    this.wanted = new Set();
    forEachTile(rect, (tx, ty) => {
      const key = tileKey(tx, ty);
      let e = this.tiles.get(key);
      if (e) this.tiles.delete(key);
      else e = new OverlayTile(tx, ty);
      this.tiles.set(key, e); // most recently wanted last
      this.wanted.add(key);
    });
    const limit = Math.max(CACHE, this.wanted.size + 4);
    for (const [key, e] of this.tiles) {
      if (this.tiles.size <= limit) break;
      if (this.wanted.has(key)) continue;
      e.evicted = true;
      this.tiles.delete(key);
    }
    this.pump();
  }

  /** Every tile in view is fetched again (its HTTP cache revalidates with the ETag), and
   * the heatmap's colors age. */
  refresh() {
    if (!this.kind || document.visibilityState === 'hidden') return;
    for (const key of this.wanted) {
      const e = this.tiles.get(key);
      if (!e) continue;
      e.due = true;
      if (this.mode === 'heat') e.rastered = false;
    }
    this.pump();
    this.renderer.request();
  }

  /** Starts the fetches that are due, FETCHES at a time, in view order. */
  pump() {
    const now = Date.now();
    for (const key of this.wanted) {
      if (this.inflight >= FETCHES) return;
      const e = this.tiles.get(key);
      if (!e || e.loading || (e.data && !e.due) || now < e.retryAt) continue;
      this.load(e);
    }
  }

  async load(e) {
    const gen = this.generation, kind = this.kind;
    e.loading = true;
    e.due = false;
    this.inflight++;
    this.fetches++;
    try {
      const url = kind === 'mine' ? `/api/me/pixels?tx=${e.tx}&ty=${e.ty}` : `/api/tiles/${e.tx}/${e.ty}/activity`;
      const res = await this.fetch(url);
      if (!res.ok) throw new HttpError(`GET ${url}`, res.status);
      if (kind === 'mine') {
        const json = await res.json();
        if (gen !== this.generation || e.evicted) return;
        this.takeMine(e, json);
      } else {
        const buf = await res.arrayBuffer();
        if (gen !== this.generation || e.evicted) return;
        if (buf.byteLength !== TILE_PIXELS * 4) throw new Error(`GET ${url}: ${buf.byteLength} bytes, not ${TILE_PIXELS * 4}`);
        this.takeActivity(e, buf, Number(res.headers.get('X-Activity-Through') ?? 0));
      }
      e.failures = 0;
      e.rastered = false;
      this.lastError = null;
      this.renderer.request();
    } catch (err) {
      if (gen !== this.generation) return;
      // The data shown stays (a failed refresh keeps the last answer); retried later.
      this.lastError = err;
      e.retryAt = Date.now() + backoffDelay(e.failures++);
      setTimeout(() => this.pump(), e.retryAt - Date.now() + 10);
      this.renderer.request();
    } finally {
      e.loading = false;
      if (gen === this.generation) this.inflight--;
      this.pump();
    }
  }

  takeActivity(e, buf, through) {
    let times;
    if (LITTLE_ENDIAN) {
      times = new Uint32Array(buf);
    } else {
      const v = new DataView(buf);
      times = new Uint32Array(TILE_PIXELS);
      for (let i = 0; i < TILE_PIXELS; i++) times[i] = v.getUint32(i * 4, true);
    }
    const nowS = this.nowS();
    for (const [i, t] of e.live) {
      if (times[i] >= t || nowS - t > LIVE_KEEP_S) e.live.delete(i);
      else times[i] = t;
    }
    e.data = times;
    e.through = Number.isSafeInteger(through) ? through : 0;
  }

  takeMine(e, json) {
    const through = Number(json?.through) || 0;
    const set = new Set((Array.isArray(json?.pixels) ? json.pixels : []).filter((i) => Number.isInteger(i) && i >= 0 && i < TILE_PIXELS));
    const nowS = this.nowS();
    for (const [i, at] of e.live) {
      if (nowS - at > LIVE_KEEP_S) e.live.delete(i);
      else set.delete(i); // lost after the answer's moment, or counted: not mine either way
    }
    // Ours that the server has not counted yet, still showing our color.
    this.recent = this.recent.filter((r) => r.seq > through && nowS - r.at <= LIVE_KEEP_S);
    for (const r of this.recent) {
      if (Math.floor(r.x / TILE) !== e.tx || Math.floor(r.y / TILE) !== e.ty) continue;
      if (this.world.pixel(r.x, r.y) === r.color) set.add((r.y % TILE) * TILE + (r.x % TILE));
    }
    e.data = set;
    e.through = through;
  }

  /** We placed (x, y) (the server said so, at `seq`): it is ours now, and hot. */
  placed(x, y, color, seq) {
    this.recent.push({ x, y, color, seq, at: this.nowS() });
    if (this.recent.length > MAX_RECENT) this.recent.shift();
    const e = this.tiles.get(tileKey(Math.floor(x / TILE), Math.floor(y / TILE)));
    if (!e) return;
    const i = (y % TILE) * TILE + (x % TILE);
    if (this.kind === 'mine') {
      e.live.delete(i);
      if (e.data && !e.data.has(i)) { e.data.add(i); this.touch(e, i); }
    } else {
      this.pixelChanged(x, y, color);
    }
  }

  /** A pixel changed live (x null: a whole tile loaded, nothing to do). */
  pixelChanged(x, y, color) {
    if (x === null || !this.kind) return;
    const e = this.tiles.get(tileKey(Math.floor(x / TILE), Math.floor(y / TILE)));
    if (!e) return;
    const i = (y % TILE) * TILE + (x % TILE);
    if (this.kind === 'activity') {
      const t = this.nowS();
      e.live.set(i, t);
      if (e.data && e.data[i] < t) { e.data[i] = t; this.touch(e, i); }
      return;
    }
    // Frames do not say who placed: our own placement's frame (same color as we placed)
    // keeps the pixel ours; any other change there is someone else's, so it is lost. A
    // stranger placing our very color is noticed at the next refresh.
    const r = this.recent.findLast((p) => p.x === x && p.y === y);
    if (r && r.color === color) return;
    if (r) this.recent = this.recent.filter((p) => p !== r);
    e.live.set(i, this.nowS());
    if (e.data?.delete(i)) this.touch(e, i);
  }

  touch(e, i) {
    if (e.rastered) (e.dirty ??= new Set()).add(i);
    this.renderer.request();
  }

  /** The tile's canvas, drawn again if its data changed. */
  surface(e, nowS) {
    if (!e.canvas) {
      e.canvas = document.createElement('canvas');
      e.canvas.width = TILE;
      e.canvas.height = TILE;
      e.rastered = false;
    }
    const ctx = e.canvas.getContext('2d');
    if (!e.rastered) {
      rasterize(this.mode, e.data, nowS, this.words);
      ctx.putImageData(this.image, 0, 0);
      e.rastered = true;
      e.dirty = null;
    } else if (e.dirty) {
      for (const i of e.dirty) {
        const x = i % TILE, y = (i / TILE) | 0;
        const w = pixelWord(this.mode, e.data, i, nowS);
        ctx.clearRect(x, y, 1, 1);
        if (w !== 0) {
          let css = this.cssCache.get(w);
          if (!css) this.cssCache.set(w, (css = cssOf(w)));
          ctx.fillStyle = css;
          ctx.fillRect(x, y, 1, 1);
        }
      }
      e.dirty = null;
    }
    return e.canvas;
  }

  /** Draws the overlay (the renderer's hook, inside the board's clip). */
  draw(ctx, tr) {
    const rect = this.visibleRect();
    let reason = '';
    if (!this.kind) reason = '';
    else if (this.world.past) reason = 'history';
    else if (!rect) reason = 'zoom';
    if (!rect) { this.setState(reason); return; }
    const { s, ox, oy } = tr;
    const nowS = this.nowS();
    let missing = 0;
    const shown = [];
    forEachTile(rect, (tx, ty) => {
      const x0 = Math.round(ox + tx * TILE * s), x1 = Math.round(ox + (tx + 1) * TILE * s);
      const y0 = Math.round(oy + ty * TILE * s), y1 = Math.round(oy + (ty + 1) * TILE * s);
      const e = this.tiles.get(tileKey(tx, ty));
      if (!e?.data) {
        missing++;
        // Dimmed while it loads; the board as it is if it cannot (the note says so).
        if (!this.lastError) {
          ctx.fillStyle = LOADING_CSS;
          ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
        }
        return;
      }
      ctx.drawImage(this.surface(e, nowS), x0, y0, x1 - x0, y1 - y0);
      shown.push(e);
    });
    if (this.kind === 'mine') this.drawMarks(ctx, tr, shown);
    this.setState(missing ? (this.lastError ? 'error' : 'loading') : '');
    // Shown again (after a zoom out or history mode): the tiles in view are wanted.
    if (!this.wanted.size) this.viewChanged();
  }

  /** My pixels zoomed in: outlined; zoomed out: a marker at least MARK_PX wide each. */
  drawMarks(ctx, tr, shown) {
    const { s, ox, oy, dpr } = tr;
    const css = s / dpr;
    if (css < OUTLINE_ZOOM && css >= MARK_ZOOM) return;
    const W = ctx.canvas.width, H = ctx.canvas.height;
    ctx.save();
    if (css >= OUTLINE_ZOOM) {
      const lw = Math.max(1, Math.round(1.5 * dpr));
      ctx.lineWidth = lw;
      ctx.strokeStyle = MARK_CSS;
    } else {
      ctx.fillStyle = MARK_CSS;
    }
    const m = Math.max(s, MARK_PX * dpr);
    for (const e of shown) {
      for (const i of e.data) {
        const px = ox + (e.tx * TILE + (i % TILE)) * s, py = oy + (e.ty * TILE + ((i / TILE) | 0)) * s;
        if (px > W || py > H || px + m < 0 || py + m < 0) continue;
        if (css >= OUTLINE_ZOOM) {
          const lw = ctx.lineWidth, x = Math.round(px), y = Math.round(py), side = Math.round(px + s) - x;
          ctx.strokeRect(x + lw / 2, y + lw / 2, side - lw, side - lw);
        } else {
          ctx.fillRect(Math.round(px + s / 2 - m / 2), Math.round(py + s / 2 - m / 2), Math.ceil(m), Math.ceil(m));
        }
      }
    }
    ctx.restore();
  }

  setState(reason) {
    const key = `${this.mode}/${reason}`;
    if (key === this.stateKey) return;
    this.stateKey = key;
    this.state = { mode: this.mode, reason };
    this.onState(this.state);
  }

  /** What is shown, for the browser tests. */
  snapshot() {
    return {
      mode: this.mode,
      reason: this.state.reason,
      cached: this.tiles.size,
      fetches: this.fetches,
      loaded: [...this.tiles.values()].filter((e) => e.data).map((e) => [e.tx, e.ty, e.through]),
    };
  }
}
