// The canvas as the page holds it: the tiles in view (tiles.js), the overview images
// when zoomed out, the websocket that keeps the tiles in view live (sync.js) and the
// renderer (render.js). Used by the main page and the moderators' page alike.
//
// As the view moves, `viewChanged()` picks the level to show (levelFor: level 0, the
// tiles themselves, while their pixels are at least about a CSS pixel; overviews
// beyond), asks for the tiles on screen plus a margin of one tile, and (debounced)
// tells the server which level-0 tiles to send updates for. Zoomed out so far that more
// than MAX_VIEW_TILES tiles would be on screen, the page shows overviews, without live
// updates, and subscribes to the one tile at the center.

import { paletteToRgba } from './board.js';
import { Renderer } from './render.js';
import { Live } from './sync.js';
import {
  MAX_VIEW_TILES, OverviewStore, TILE, TileStore, levelCount, levelFor, sameRect, tileRect,
} from './tiles.js';

/** The view message waits this long after the last move (a drag sends one, not 60/s). */
const VIEW_DEBOUNCE_MS = 120;
/** How long tiles wait for a socket being opened before being fetched anyway. */
const HELLO_WAIT_MS = 2000;
/** How long tiles wait for the server's `view` answer before being fetched anyway. */
const VIEW_ANSWER_WAIT_MS = 1500;

export class World {
  /**
   * @param {object} o
   * @param {HTMLCanvasElement} o.canvas
   * @param {object} o.config        `GET /api/config`
   * @param {import('./view.js').View} o.view
   * @param {number} [o.skew]        server clock minus ours, ms
   * @param {(status: {state: string, retryAt?: number}) => void} [o.onStatus]
   * @param {(x: number|null, y: number|null, color: number|null, tile: object) => void} [o.onPixel]
   *   a pixel changed live (x null: the whole tile loaded or caught up)
   * @param {(width: number, height: number) => void} [o.onResize]  the canvas grew
   */
  constructor(o) {
    const { config, view } = o;
    this.view = view;
    this.width = config.width;
    this.height = config.height;
    this.levels = levelCount(this.width, this.height);
    this.level = 0;
    this.bpp = config.bits_per_pixel ?? (config.palette.length <= 16 ? 4 : 8);
    this.skew = o.skew ?? 0;
    this.onStatus = o.onStatus ?? (() => {});
    this.onPixel = o.onPixel ?? (() => {});
    this.onResize = o.onResize ?? (() => {});
    this.onError = o.onError ?? ((err) => console.warn('rplace:', err));
    this.state = 'connecting';
    this.retryAt = undefined;
    /** The level-0 tiles wanted (null in overview). */
    this.rect = null;
    /** History mode's tiles of a past moment (history.js), drawn instead of the live
     * ones while set. */
    this.past = null;
    /** The rectangle to subscribe, the one last sent, and when. */
    this.viewWanted = null;
    this.viewSent = null;
    this.viewSentAt = 0;
    this.viewTimer = 0;
    this.answerTimer = 0;
    /** Set once the server answered a view on the current socket. */
    this.answered = false;
    /** The last view sent is not answered yet. */
    this.viewPending = false;
    this.helloTimer = 0;
    this.started = false;

    this.tiles = new TileStore({
      bitsPerPixel: this.bpp,
      mayFetch: () => this.mayFetch(),
      isStale: (res) => this.isStale(res),
      onChange: (e, i, color) => this.tileChanged(e, i, color),
      onError: (err) => this.onError(err),
    });
    this.overviews = new OverviewStore({
      decode: (blob) => createImageBitmap(blob),
      onLoad: () => this.renderer.request(),
      onError: (err) => this.onError(err),
    });
    this.renderer = new Renderer(o.canvas, this, paletteToRgba(config.palette), config.palette.map((c) => c.toUpperCase()));
    this.live = new Live({
      wsUrl: `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`,
      isOnline: () => navigator.onLine !== false,
      onHello: (msg) => this.hello(msg),
      onView: (rect) => this.subscribed(rect),
      onFrame: (f) => this.tiles.onFrame(f),
      onCanvas: ({ width, height }) => this.grow(width, height),
      onOnline: (n) => o.onOnline?.(n),
      onResync: () => { this.tiles.resync(); this.overviews.clear(); this.viewChanged(); },
      onDisconnect: () => {
        this.answered = false;
        this.viewPending = false;
        this.viewSent = null;
        this.tiles.disconnected();
        // Cached tiles are shown meanwhile; any that are wanted and missing load now.
        this.tiles.poke();
      },
      onSocket: ({ state }) => {
        if (state === 'connecting' || state === 'reconnecting') {
          clearTimeout(this.helloTimer);
          this.helloTimer = setTimeout(() => this.tiles.poke(), HELLO_WAIT_MS + 10);
        }
        this.updateState();
      },
      onError: (err) => this.onError(err),
    });
  }

  start() {
    this.started = true;
    this.helloTimer = setTimeout(() => this.tiles.poke(), HELLO_WAIT_MS + 10);
    this.live.start();
    this.viewChanged();
  }

  kick() {
    this.live.kick();
    this.tiles.kick();
  }

  /** The highest tile version the page has seen. */
  get seq() {
    return this.tiles.seq;
  }

  pixel(x, y) {
    return this.tiles.get(x, y);
  }

  /** Recomputes the level and the tiles to load after any change of the view. */
  viewChanged() {
    const v = this.view;
    let z = levelFor(v.zoom, this.levels);
    let rect = null;
    if (z === 0) {
      rect = tileRect(v, this.width, this.height, 0, 1);
      if (rect.w * rect.h > MAX_VIEW_TILES) rect = tileRect(v, this.width, this.height, 0, 0);
      if (rect.w * rect.h > MAX_VIEW_TILES) {
        rect = null;
        z = Math.min(1, this.levels - 1);
      }
    }
    this.level = z;
    this.rect = rect;
    this.tiles.want(rect);
    this.overviews.want(z, z > 0 ? tileRect(v, this.width, this.height, z, 1) : null);
    // Zoomed out: no live updates, but a socket with no view on a whole canvas would get
    // every placement (0x01 frames): watch the one tile at the center instead.
    const sub = rect ?? {
      tx: Math.min(Math.floor(v.x / TILE), Math.ceil(this.width / TILE) - 1),
      ty: Math.min(Math.floor(v.y / TILE), Math.ceil(this.height / TILE) - 1),
      w: 1,
      h: 1,
    };
    if (!sameRect(sub, this.viewWanted)) {
      this.viewWanted = sub;
      if (!this.viewTimer) {
        // The first view of a socket goes at once; later ones after the moves settle.
        const delay = this.viewSent ? VIEW_DEBOUNCE_MS : 0;
        this.viewTimer = setTimeout(() => {
          this.viewTimer = 0;
          this.sendView();
          this.tiles.poke(); // those that waited for a view that needed no sending
        }, delay);
      }
    }
    this.renderer.request();
    this.updateState();
  }

  sendView() {
    const r = this.viewWanted;
    if (!r || sameRect(r, this.viewSent) || !this.live.sendView(r)) return;
    this.viewSent = r;
    this.viewSentAt = Date.now();
    this.viewPending = true;
    clearTimeout(this.answerTimer);
    // If no answer comes (an old server), tiles load anyway and follow the frames.
    this.answerTimer = setTimeout(() => this.tiles.poke(), VIEW_ANSWER_WAIT_MS + 10);
  }

  /** Tiles not subscribed may be fetched while there is no socket, or when the server
   * does not answer the view. */
  mayFetch() {
    if (!this.started) return false;
    // A socket being opened is given a moment: tiles fetched before their subscription
    // would each need a catch-up request after it.
    if (!this.live.connected) return !this.live.ws || Date.now() - this.live.connectStartedAt > HELLO_WAIT_MS;
    // Connected: a tile not watched waits for the view that names it (about to go, or
    // sent and not answered yet, for a while). With none coming (the server answered a
    // smaller rectangle than asked) it loads anyway, and follows no frames.
    if (this.viewTimer || !this.viewSent) return false;
    return !this.viewPending || Date.now() - this.viewSentAt > VIEW_ANSWER_WAIT_MS;
  }

  /** A tile answer older than a couple of seconds came from a cache. */
  isStale(res) {
    if (Number(res.headers.get('Age') ?? 0) > 0) return true;
    const date = Date.parse(res.headers.get('Date') ?? '');
    return Number.isFinite(date) && Date.now() + this.skew - date > 2500;
  }

  hello(msg) {
    this.answered = false;
    this.viewPending = false;
    this.viewSent = null;
    if (Number.isInteger(msg.width) && Number.isInteger(msg.height)) this.grow(msg.width, msg.height);
    clearTimeout(this.viewTimer);
    this.viewTimer = 0;
    this.sendView();
    this.updateState();
  }

  /** The server's answer to a view (maybe an older one: the next answer follows). */
  subscribed(rect) {
    this.answered = true;
    if (sameRect(rect, this.viewSent)) {
      this.viewPending = false;
      clearTimeout(this.answerTimer);
    }
    this.tiles.subscribed(rect);
    this.tiles.poke(); // wanted tiles the answer left out load unwatched
    this.updateState();
  }

  /** The canvas grew (a `canvas` message, or a hello after a reconnect). */
  grow(width, height) {
    if (width <= this.width && height <= this.height) return;
    this.width = Math.max(this.width, width);
    this.height = Math.max(this.height, height);
    this.levels = levelCount(this.width, this.height);
    this.view.setBoard(this.width, this.height);
    // Edge tiles of the overview now cover more canvas: draw them again.
    this.overviews.clear();
    this.onResize(this.width, this.height);
    this.viewChanged();
  }

  tileChanged(e, i, color) {
    if (i === null) {
      this.renderer.request();
      this.onPixel(null, null, null, e);
      this.updateState();
      return;
    }
    this.renderer.request();
    this.onPixel(e.tx * TILE + (i % TILE), e.ty * TILE + Math.floor(i / TILE), color, e);
  }

  updateState() {
    const s = this.live.state;
    let state;
    if (s === 'open') {
      // Live once the server watches our tiles for us and they are all here; it stays
      // live while new tiles load as the view moves.
      if (this.state === 'live') state = 'live';
      else state = this.answered && this.tiles.ready ? 'live' : this.state === 'reconnecting' ? 'reconnecting' : 'connecting';
    } else {
      state = s;
    }
    const retryAt = state === 'reconnecting' ? this.live.retryAt : undefined;
    if (state === this.state && retryAt === this.retryAt) return;
    this.state = state;
    this.retryAt = retryAt;
    this.onStatus({ state, retryAt });
  }
}
