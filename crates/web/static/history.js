// History mode: the canvas at a past moment (docs/API.md, "The canvas at a past moment").
// A slider over the placements (seq 0 .. the newest), play/pause and a speed; the tiles in
// view are fetched at the chosen seq (`GET /api/tiles/{tx}/{ty}?seq=S`) and drawn instead
// of the live ones (the renderer reads `world.past` while it is set). The moment goes in
// the URL as `#...&seq=S`; `#...&at=T` (unix ms) works too and is resolved on open.
//
// Bounded: at most MAX_TILES level-0 tiles are fetched per moment (zoom in for more),
// FETCHES at once, and while playing the next moment is asked for only once the current
// one has arrived, so a slow server slows the playback instead of piling up requests.

import { decodeBoard } from './board.js';
import { TILE, TILE_PIXELS, forEachTile, tileKey, tileRect } from './tiles.js';

/** Most tiles of one moment (each 64 KiB decoded). */
export const MAX_TILES = 48;
/** Tile requests in flight at once (the server serves a few past reads at a time). */
const FETCHES = 4;
/** Playback at 1×: the whole history in this long. */
const PLAY_WHOLE_MS = 60_000;
const TICK_MS = 100;
export const SPEEDS = [0.25, 1, 4, 16];

/** `seq`/`at` from a `#x=..&seq=..` hash: {seq} or {at} or null. */
export function parseMoment(hash) {
  const p = new URLSearchParams(String(hash ?? '').replace(/^#/, ''));
  const int = (k) => {
    const v = p.get(k);
    return v !== null && /^\d+$/.test(v.trim()) ? Number(v) : undefined;
  };
  const seq = int('seq'), at = int('at');
  if (seq !== undefined) return { seq };
  if (at !== undefined) return { at };
  return null;
}

/** The past tiles of one moment, in the shape the renderer draws (`peek`). */
class PastTiles {
  constructor() {
    /** key -> entry {tx, ty, key, pixels, version, seq, dirty, fullDirty, evicted}. */
    this.entries = new Map();
  }

  peek(tx, ty) {
    return this.entries.get(tileKey(tx, ty));
  }

  put(tx, ty, seq, version, pixels) {
    const key = tileKey(tx, ty);
    const old = this.entries.get(key);
    if (old) old.evicted = true;
    this.entries.set(key, { tx, ty, key, pixels, version, seq, dirty: null, fullDirty: true, evicted: false });
  }

  /** Keeps only the tiles of `rect`. */
  retain(rect) {
    for (const [key, e] of this.entries) {
      if (!rect || e.tx < rect.tx || e.ty < rect.ty || e.tx >= rect.tx + rect.w || e.ty >= rect.ty + rect.h) {
        e.evicted = true;
        this.entries.delete(key);
      }
    }
  }
}

export class History {
  /**
   * @param {object} o
   * @param {import('./world.js').World} o.world
   * @param {(message: string, kind?: string) => void} o.toast
   * @param {() => void} o.onMomentChange  the URL should be written again
   * @param {(url: string) => Promise<Response>} [o.fetch]
   */
  constructor(o) {
    this.world = o.world;
    this.toast = o.toast ?? (() => {});
    this.onMomentChange = o.onMomentChange ?? (() => {});
    this.fetch = o.fetch ?? ((url) => globalThis.fetch(url, { credentials: 'same-origin' }));
    this.store = null; // set while active
    this.head = 0;
    this.seq = 0; // the moment asked for
    this.shown = null; // the moment every tile in view has arrived for
    this.playing = false;
    this.speed = 1;
    this.loading = 0;
    this.generation = 0;
    this.timer = 0;
    this.build();
  }

  /** The controls: a button in the top bar, a panel at the top while active. */
  build() {
    this.button = el('button', { type: 'button', class: 'pill history-open', id: 'history-open', title: 'Travel back in time' }, 'History');
    this.button.addEventListener('click', () => (this.store ? this.close() : this.open()));
    (document.querySelector('.topbar') ?? document.body).append(this.button);

    this.slider = el('input', { type: 'range', id: 'history-slider', min: '0', max: '0', step: '1', value: '0', 'aria-label': 'Moment: placements from the first to the newest' });
    this.slider.addEventListener('input', () => { this.pause(); this.go(Number(this.slider.value)); });
    this.play = el('button', { type: 'button', id: 'history-play', title: 'Play / pause' }, '▶');
    this.play.addEventListener('click', () => (this.playing ? this.pause() : this.start()));
    this.speedSelect = el('select', { id: 'history-speed', 'aria-label': 'Playback speed' },
      ...SPEEDS.map((s) => el('option', { value: String(s) }, `${s}×`)));
    this.speedSelect.value = '1';
    this.speedSelect.addEventListener('change', () => { this.speed = Number(this.speedSelect.value); });
    this.label = el('span', { id: 'history-label', class: 'history-label', role: 'status' }, '');
    const live = el('button', { type: 'button', id: 'history-close', title: 'Back to the live canvas' }, 'Live');
    live.addEventListener('click', () => this.close());
    this.panel = el('div', { class: 'history-panel', id: 'history-panel', hidden: '' },
      this.play, this.slider, this.speedSelect, this.label, live);
    document.body.append(this.panel);
  }

  /** Enters history mode at `moment` ({seq} or {at}; default: the newest). */
  async open(moment = null) {
    let head;
    try {
      head = await this.headNow();
    } catch (err) {
      this.toast(`History is not available: ${err.message}`, 'error');
      return;
    }
    this.head = head;
    this.store = new PastTiles();
    this.world.past = this.store;
    document.body.classList.add('history-mode');
    this.panel.hidden = false;
    this.button.setAttribute('aria-pressed', 'true');
    this.slider.max = String(head);
    let seq = head;
    if (moment?.seq !== undefined) seq = Math.min(moment.seq, head);
    if (moment?.at !== undefined) {
      try {
        seq = await this.seqAt(moment.at);
      } catch (err) {
        this.toast(err.message, 'error');
      }
    }
    this.go(seq);
  }

  close() {
    this.pause();
    this.generation++;
    this.store = null;
    this.world.past = null;
    this.shown = null;
    document.body.classList.remove('history-mode');
    this.panel.hidden = true;
    this.button.setAttribute('aria-pressed', 'false');
    this.world.renderer.request();
    this.onMomentChange();
  }

  get active() {
    return this.store !== null;
  }

  /** `&seq=S` for the URL while active, '' otherwise. */
  hashSuffix() {
    return this.store ? `&seq=${this.seq}` : '';
  }

  /** The newest seq the history answers: the moment of now. */
  async headNow() {
    return this.seqAt(Date.now() + 60_000);
  }

  /** The seq a time resolves to (`X-Board-Seq` of a tile at that time). */
  async seqAt(ms) {
    const res = await this.fetch(`/api/tiles/0/0?at=${Math.max(0, Math.round(ms))}`);
    if (!res.ok) throw new Error(await errorText(res));
    return Number(res.headers.get('x-board-seq'));
  }

  /** Shows moment `seq`: the tiles in view at it. */
  go(seq) {
    if (!this.store) return;
    this.seq = Math.max(0, Math.min(this.head, Math.round(seq)));
    this.slider.value = String(this.seq);
    this.onMomentChange();
    this.viewChanged();
  }

  /** The view moved (or the moment changed): fetches what is missing. */
  viewChanged() {
    if (!this.store) return;
    const w = this.world;
    const rect = tileRect(w.view, w.width, w.height, 0, 0);
    const gen = ++this.generation;
    const want = [];
    if (rect.w * rect.h > MAX_TILES) {
      this.label.textContent = `Zoom in to see the past (placement ${this.seq} of ${this.head})`;
      this.store.retain(null);
      w.renderer.request();
      return;
    }
    this.store.retain(rect);
    forEachTile(rect, (tx, ty) => {
      if (this.store.peek(tx, ty)?.seq !== this.seq) want.push([tx, ty]);
    });
    this.label.textContent = `placement ${this.seq} of ${this.head}${want.length ? ' …' : ''}`;
    if (!want.length) {
      this.shown = this.seq;
      return;
    }
    const seq = this.seq;
    this.loading = want.length;
    const next = async () => {
      while (want.length && gen === this.generation) {
        const [tx, ty] = want.shift();
        try {
          await this.load(tx, ty, seq, gen);
        } catch (err) {
          if (gen === this.generation) this.toast(err.message, 'error');
        }
      }
    };
    Promise.all(Array.from({ length: FETCHES }, next)).then(() => {
      if (gen !== this.generation) return;
      this.shown = seq;
      this.label.textContent = `placement ${seq} of ${this.head}`;
    });
  }

  async load(tx, ty, seq, gen) {
    for (let attempt = 0; attempt < 5; attempt++) {
      const res = await this.fetch(`/api/tiles/${tx}/${ty}?seq=${seq}`);
      if (gen !== this.generation || !this.store) return;
      if (res.status === 503) {
        // Busy or still indexing: the server says when to come back.
        const after = Number(res.headers.get('retry-after') ?? '1');
        await new Promise((r) => setTimeout(r, Math.min(5, Math.max(0.2, after)) * 1000));
        continue;
      }
      if (!res.ok) throw new Error(await errorText(res));
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (gen !== this.generation || !this.store) return;
      const pixels = decodeBoard(bytes, TILE, TILE, this.world.bpp, new Uint8Array(TILE_PIXELS));
      this.store.put(tx, ty, seq, Number(res.headers.get('x-tile-version')), pixels);
      this.world.renderer.request();
      return;
    }
    throw new Error('the server is busy; try again in a moment');
  }

  start() {
    if (!this.store) return;
    if (this.seq >= this.head) this.go(0);
    this.playing = true;
    this.play.textContent = '⏸';
    let last = performance.now();
    const tick = () => {
      if (!this.playing) return;
      const now = performance.now();
      // The next moment only once this one is on screen: a slow server slows playback.
      if (this.shown === this.seq) {
        const step = Math.max(1, Math.round((this.head * this.speed * (now - last)) / PLAY_WHOLE_MS));
        last = now;
        this.go(this.seq + step);
        if (this.seq >= this.head) { this.pause(); return; }
      }
      this.timer = setTimeout(tick, TICK_MS);
    };
    this.timer = setTimeout(tick, TICK_MS);
  }

  pause() {
    this.playing = false;
    clearTimeout(this.timer);
    this.play.textContent = '▶';
  }
}

async function errorText(res) {
  try {
    const j = await res.json();
    return j.message ?? `HTTP ${res.status}`;
  } catch {
    return `HTTP ${res.status}`;
  }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) e.setAttribute(k, v);
  e.append(...children);
  return e;
}
