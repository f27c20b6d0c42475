// Unit tests of the page's pure logic (no browser, no server): pixel and tile frame
// decoding, view and tile math, and the per-tile client rule of docs/API.md against a
// fake server.
// Run: node --test tests/browser/unit.test.mjs

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { decodeBoard, paletteToRgba } from '../../crates/web/static/board.js';
import {
  MAX_VIEW_TILES, OverviewStore, TILE, TileStore, backoffDelay, BACKOFF_MAX_MS, BACKOFF_MIN_MS,
  decodeTileFrames, encodeTileFrame, forEachTileEntry, levelCount, levelFor, tileRect,
} from '../../crates/web/static/tiles.js';
import { Live } from '../../crates/web/static/sync.js';
import { View, formatHash, parseHash } from '../../crates/web/static/view.js';
import { parseJump } from '../../crates/web/static/minimap.js';
import { shortId, relativeTime, formatCountdown } from '../../crates/web/static/format.js';
import { newIdempotencyKey, placePixel } from '../../crates/web/static/api.js';
import { solve, workHex } from '../../crates/web/static/pow-worker.js';
import { parseMoment } from '../../crates/web/static/history.js';

describe('board decoding', () => {
  test('4 bits per pixel: even index in the high nibble', () => {
    // 3x1 board, odd count: pixels 0xA, 0x3, 0x7 then a padding nibble.
    const px = decodeBoard(new Uint8Array([0xa3, 0x70]), 3, 1, 4);
    assert.deepEqual([...px], [0xa, 0x3, 0x7]);
  });

  test('4 bits per pixel: row-major i = y*width + x', () => {
    const bytes = new Uint8Array([0x01, 0x23, 0x45, 0x67]); // 4x2
    const px = decodeBoard(bytes, 4, 2, 4);
    assert.deepEqual([...px], [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  test('8 bits per pixel', () => {
    const px = decodeBoard(new Uint8Array([200, 1, 17]), 3, 1, 8);
    assert.deepEqual([...px], [200, 1, 17]);
  });

  test('short body is an error', () => {
    assert.throws(() => decodeBoard(new Uint8Array([0]), 2, 2, 4));
    assert.throws(() => decodeBoard(new Uint8Array(3), 2, 2, 8));
  });

  test('palette to ImageData words (R, G, B, A bytes in memory)', () => {
    const rgba = paletteToRgba(['#FF8000', '00ff7f']);
    const bytes = new Uint8Array(rgba.buffer);
    assert.deepEqual([...bytes], [0xff, 0x80, 0x00, 0xff, 0x00, 0xff, 0x7f, 0xff]);
  });
});

describe('tile frames (0x02)', () => {
  // The bytes of crates/domain/src/wire/tile.rs's doc, worked out by hand (and equal to
  // its round_trip_and_byte_layout test): tile (16383, 2), prev 7, entries
  // (version 300, index 0x0102, color 3) and (302, 0xffff, 15).
  const DOC_BYTES = [
    0x02, // kind
    0xff, 0x3f, 0, 0, // tx = 16383
    2, 0, 0, 0, // ty = 2
    7, 0, 0, 0, 0, 0, 0, 0, // prev = 7
    44, 1, 0, 0, 0, 0, 0, 0, // first = 300
    2, 0, 0, 0, // count = 2
    0, 0, 0, 0, 0x02, 0x01, 3, // delta 0, i 0x0102, color 3
    2, 0, 0, 0, 0xff, 0xff, 15, // delta 2, i 0xffff, color 15
  ];

  test('exact byte layout of the doc', () => {
    const [f] = decodeTileFrames(new Uint8Array(DOC_BYTES).buffer);
    assert.deepEqual([f.tx, f.ty, f.prev, f.first, f.count, f.last], [16383, 2, 7, 300, 2, 302]);
    const seen = [];
    forEachTileEntry(f, (...e) => seen.push(e));
    assert.deepEqual(seen, [[300, 0x0102, 3], [302, 0xffff, 15]]);
    assert.deepEqual([...encodeTileFrame(16383, 2, 7, [[300, 0x0102, 3], [302, 0xffff, 15]])], DOC_BYTES);
  });

  test('several frames back to back, large versions, empty frames', () => {
    const a = encodeTileFrame(1, 1, 0, [[1, 5, 1]]);
    const b = encodeTileFrame(2, 1, 0, [[2 ** 40, 6, 2], [2 ** 40 + 2 ** 31 + 5, 7, 3]]);
    const c = encodeTileFrame(3, 3, 9, []);
    const frames = decodeTileFrames(new Uint8Array([...a, ...b, ...c]));
    assert.equal(frames.length, 3);
    const seen = [];
    forEachTileEntry(frames[1], (...e) => seen.push(e));
    assert.deepEqual(seen, [[2 ** 40, 6, 2], [2 ** 40 + 2 ** 31 + 5, 7, 3]]);
    assert.equal(frames[1].last, 2 ** 40 + 2 ** 31 + 5);
    assert.equal(frames[2].last, 9, 'an empty frame leaves the tile at prev');
  });

  test('malformed frames are rejected', () => {
    assert.throws(() => decodeTileFrames(new Uint8Array([2, 0, 0])));
    assert.throws(() => decodeTileFrames(new Uint8Array(29).fill(1)), /kind/);
    const f = encodeTileFrame(0, 0, 0, [[1, 1, 1]]);
    assert.throws(() => decodeTileFrames(f.subarray(0, f.length - 1)));
    // Versions must increase and follow prev.
    assert.throws(() => decodeTileFrames(encodeTileFrame(0, 0, 5, [[5, 1, 1]])), /version/);
    assert.throws(() => decodeTileFrames(encodeTileFrame(0, 0, 0, [[4, 1, 1], [4, 2, 1]])), /version/);
    assert.deepEqual(decodeTileFrames(new Uint8Array(0)), []);
  });
});

describe('tile math', () => {
  test('levels as crates/domain/src/tile.rs counts them', () => {
    assert.equal(levelCount(64, 64), 1);
    assert.equal(levelCount(256, 256), 1);
    assert.equal(levelCount(257, 10), 2);
    assert.equal(levelCount(65536, 65536), 9);
    assert.equal(levelCount(4194304, 4194304), 15);
  });

  test('the level shown: full resolution from zoom 1/2 up, coarser beyond', () => {
    assert.equal(levelFor(4, 9), 0);
    assert.equal(levelFor(0.51, 9), 0);
    assert.equal(levelFor(0.5, 9), 1);
    assert.equal(levelFor(0.26, 9), 1);
    assert.equal(levelFor(0.25, 9), 2);
    assert.equal(levelFor(1e-6, 9), 8, 'never beyond the top level');
  });

  test('the tiles in view, the margin, and the canvas edges', () => {
    const v = { x: 1000, y: 300, zoom: 2, width: 1280, height: 800 }; // 640x400 px of canvas
    assert.deepEqual(tileRect(v, 65536, 65536, 0, 0), { tx: 2, ty: 0, w: 4, h: 2 });
    assert.deepEqual(tileRect(v, 65536, 65536, 0, 1), { tx: 1, ty: 0, w: 6, h: 3 });
    // The last partial tile is a tile; nothing beyond the canvas.
    assert.deepEqual(tileRect({ ...v, x: 1100 }, 1100, 1100, 0, 1), { tx: 2, ty: 0, w: 3, h: 3 });
    assert.deepEqual(tileRect({ ...v, x: 32, y: 32 }, 64, 64, 0, 1), { tx: 0, ty: 0, w: 1, h: 1 });
    // Level 2 tiles cover 1024 px.
    assert.deepEqual(tileRect(v, 65536, 65536, 2, 0), { tx: 0, ty: 0, w: 2, h: 1 });
  });

  test('a phone showing the whole 2^22 canvas needs a handful of images', () => {
    const side = 4194304;
    const view = new View(side, side);
    view.resize(390, 844, 56, 200);
    for (const zoom of [view.fitZoom(), view.minZoom]) {
      view.centerOn(side / 2, side / 2, zoom);
      const z = levelFor(view.zoom, levelCount(side, side));
      const r = tileRect(view, side, side, z, 0);
      assert.ok(z > 10 && r.w * r.h <= 8, JSON.stringify({ zoom, z, r }));
    }
  });
});

describe('jump box', () => {
  test('reads x, y and an optional zoom; refuses what is off the canvas', () => {
    assert.deepEqual(parseJump('12, 34', 100, 100), { x: 12, y: 34 });
    assert.deepEqual(parseJump('(70000 65000)', 100000, 100000), { x: 70000, y: 65000 });
    assert.deepEqual(parseJump('1,2,8x', 100, 100), { x: 1, y: 2, zoom: 8 });
    assert.equal(parseJump('100, 0', 100, 100), null);
    assert.equal(parseJump('-1, 0', 100, 100), null);
    assert.equal(parseJump('1.5, 2', 100, 100), null);
    assert.equal(parseJump('hello', 100, 100), null);
    assert.equal(parseJump('1 2 3 4', 100, 100), null);
  });
});

describe('view', () => {
  test('zoomAt keeps the board point under the cursor', () => {
    const v = new View(100, 100);
    v.resize(800, 600);
    v.reset();
    const before = v.toBoard(123, 456);
    v.zoomAt(v.zoom * 3, 123, 456);
    const after = v.toBoard(123, 456);
    assert.ok(Math.abs(before.x - after.x) < 1e-9 && Math.abs(before.y - after.y) < 1e-9);
  });

  test('reset fits and centers; zoom is clamped', () => {
    const v = new View(64, 64);
    v.resize(1280, 720, 60, 100);
    v.reset();
    assert.equal(v.x, 32);
    assert.equal(v.y, 32);
    assert.ok(v.zoom * 64 <= 720 - 200, 'board clear of the floating UI');
    v.zoomAt(1e6);
    assert.equal(v.zoom, v.maxZoom);
    assert.ok(v.maxZoom >= 40);
    v.zoomAt(1e-6);
    assert.equal(v.zoom, v.minZoom);
  });

  test('pixelAt and toScreen agree', () => {
    const v = new View(64, 64);
    v.resize(390, 844);
    v.centerOn(10.3, 20.7, 12);
    const s = v.toScreen(5 + 0.5, 7 + 0.5);
    assert.deepEqual(v.pixelAt(s.x, s.y), { x: 5, y: 7 });
    assert.equal(v.pixelAt(-1e4, 0), null);
  });

  test('pan is clamped to the board', () => {
    const v = new View(64, 64);
    v.resize(800, 600);
    v.centerOn(32, 32, 10);
    v.panBy(-1e6, 1e6);
    assert.deepEqual([v.x, v.y], [64, 0]);
  });

  test('hash round trip', () => {
    assert.equal(formatHash({ x: 500, y: 12.345, zoom: 4.0001 }), '#x=500&y=12.3&z=4');
    assert.deepEqual(parseHash('#x=500&y=12.3&z=4'), { x: 500, y: 12.3, zoom: 4 });
    assert.deepEqual(parseHash('#z=2'), { x: undefined, y: undefined, zoom: 2 });
    assert.equal(parseHash(''), null);
    assert.equal(parseHash('#foo=1'), null);
    assert.equal(parseHash('#x=abc&z=-1').zoom, undefined);
  });
});

describe('formatting', () => {
  test('short ids, countdowns, relative times', () => {
    assert.equal(shortId('00ab12cd34ef5678'), '00ab…5678');
    assert.equal(formatCountdown(0), '00:00');
    assert.equal(formatCountdown(1), '00:01');
    assert.equal(formatCountdown(2000), '00:02');
    assert.equal(formatCountdown(61_001), '01:02');
    const now = 1_700_000_000_000;
    assert.equal(relativeTime(now - 2_000, now), 'just now');
    assert.equal(relativeTime(now - 45_000, now), '45 s ago');
    assert.equal(relativeTime(now - 3 * 60_000, now), '3 min ago');
    assert.equal(relativeTime(now - 5 * 3_600_000, now), '5 h ago');
    assert.equal(relativeTime(now - 3 * 86_400_000, now), '3 days ago');
  });
});

describe('backoff', () => {
  test('grows exponentially from 0.5 s to 10 s, with jitter', () => {
    assert.equal(backoffDelay(0, () => 0.999999), BACKOFF_MIN_MS);
    assert.equal(backoffDelay(0, () => 0), BACKOFF_MIN_MS / 2);
    assert.equal(backoffDelay(1, () => 0.999999), 1000);
    assert.equal(backoffDelay(50, () => 0.999999), BACKOFF_MAX_MS);
    for (let a = 0; a < 30; a++) {
      const d = backoffDelay(a);
      assert.ok(d >= BACKOFF_MIN_MS / 2 && d <= BACKOFF_MAX_MS, `attempt ${a}: ${d}`);
    }
  });
});

// ---- the per-tile client rule against a fake server --------------------------------------

const flush = async () => { for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r)); };

const key = (tx, ty) => `${tx},${ty}`;

/** A server keeping tiles (palette indices), each with its version and its log, and
 * websockets each subscribed to a rectangle of tiles. */
class FakeTileServer {
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.seq = 0;
    this.tiles = new Map(); // key -> {pixels, version, log: [{version, index, color}], logStart}
    this.stale = new Map(); // key -> {pixels, version}: served instead (a cache in the way)
    this.requests = [];
    this.sockets = [];
    this.broadcastEnabled = true;
  }

  tile(tx, ty) {
    let t = this.tiles.get(key(tx, ty));
    if (!t) this.tiles.set(key(tx, ty), (t = { pixels: new Uint8Array(TILE * TILE), version: 0, log: [], logStart: 0 }));
    return t;
  }

  /** Places these [x, y, color] in one tick: one frame per tile to its subscribers. */
  tick(...placements) {
    const byTile = new Map();
    for (const [x, y, color] of placements) {
      const tx = Math.floor(x / TILE), ty = Math.floor(y / TILE);
      const t = this.tile(tx, ty);
      if (!byTile.has(key(tx, ty))) byTile.set(key(tx, ty), { tx, ty, prev: t.version, entries: [] });
      const version = ++this.seq;
      const index = (y % TILE) * TILE + (x % TILE);
      t.pixels[index] = color;
      t.version = version;
      t.log.push({ version, index, color });
      byTile.get(key(tx, ty)).entries.push([version, index, color]);
    }
    if (!this.broadcastEnabled) return;
    for (const f of byTile.values()) {
      const bytes = encodeTileFrame(f.tx, f.ty, f.prev, f.entries);
      for (const ws of this.sockets) {
        const r = ws.subscribed;
        if (ws.readyState === 1 && r && f.tx >= r.tx && f.ty >= r.ty && f.tx < r.tx + r.w && f.ty < r.ty + r.h) ws.deliver(bytes.slice().buffer);
      }
    }
  }

  fetch = async (url, init = {}) => {
    this.requests.push(url);
    const u = new URL(url, 'http://x');
    const res = (status, body, headers = {}) => ({
      status,
      ok: status >= 200 && status < 300,
      headers: { get: (k) => headers[k] ?? null },
      arrayBuffer: async () => body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength),
    });
    let m = /^\/api\/tiles\/(\d+)\/(\d+)$/.exec(u.pathname);
    if (m) {
      const t = this.tile(Number(m[1]), Number(m[2]));
      const s = init.cache === 'no-cache' ? null : this.stale.get(key(m[1], m[2]));
      const { pixels, version } = s ?? t;
      const out = new Uint8Array(TILE * TILE / 2);
      for (let i = 0; i < pixels.length; i++) out[i >> 1] |= i & 1 ? pixels[i] : pixels[i] << 4;
      return res(200, out, { 'X-Tile-Version': String(version), ...(s ? { Age: '3' } : {}) });
    }
    m = /^\/api\/tiles\/(\d+)\/(\d+)\/updates$/.exec(u.pathname);
    if (m) {
      const t = this.tile(Number(m[1]), Number(m[2]));
      const since = Number(u.searchParams.get('since'));
      if (since < t.logStart) return res(410, new Uint8Array(0));
      const ups = t.log.filter((e) => e.version > since);
      // Two frames when possible, to exercise back-to-back decoding.
      const half = Math.ceil(ups.length / 2);
      const parts = [];
      for (const chunk of [ups.slice(0, half), ups.slice(half)]) {
        if (!chunk.length) continue;
        // prev: the tile's version before the chunk's first entry.
        const prev = t.log[t.log.indexOf(chunk[0]) - 1]?.version ?? 0;
        parts.push(...encodeTileFrame(Number(m[1]), Number(m[2]), prev, chunk.map((e) => [e.version, e.index, e.color])));
      }
      return res(200, new Uint8Array(parts), { 'X-Tile-Version': String(t.version) });
    }
    return res(404, new Uint8Array(0));
  };

  pixelsOf(tx, ty) {
    return this.tile(tx, ty).pixels;
  }
}

function makeTileSocketClass(server) {
  return class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.subscribed = null;
      this.sent = [];
      server.sockets.push(this);
    }
    accept() {
      this.readyState = 1;
      this.onmessage?.({ data: JSON.stringify({ type: 'hello', seq: server.seq, tick_ms: 50, width: server.width, height: server.height, tile_size: 256, whole: false }) });
    }
    send(text) {
      const msg = JSON.parse(text);
      this.sent.push(msg);
      if (msg.type !== 'view') return;
      if (!(msg.w * msg.h <= MAX_VIEW_TILES)) {
        this.text({ type: 'error', code: 'view', message: 'too many tiles' });
        return;
      }
      if (server.holdViews) { (server.heldViews ??= []).push(() => this.answerView(msg)); return; }
      this.answerView(msg);
    }
    answerView(msg) {
      this.subscribed = { tx: msg.tx, ty: msg.ty, w: msg.w, h: msg.h };
      this.text({ type: 'view', ...this.subscribed });
    }
    deliver(data) { this.onmessage?.({ data }); }
    text(obj) { this.onmessage?.({ data: JSON.stringify(obj) }); }
    serverClose(code) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
    close() { this.readyState = 3; }
  };
}

/** The page's wiring of world.js without the DOM: a TileStore, a Live socket, and the
 * rectangle the view wants (sent as the view message on each hello and each change). */
function makeTileClient(server, { capacity } = {}) {
  const timers = [];
  const errors = [];
  const setTimeout = (fn, ms) => { const t = { fn, ms }; timers.push(t); return t; };
  const clearTimeout = (t) => { const i = timers.indexOf(t); if (i >= 0) timers.splice(i, 1); };
  let rect = null;
  let answered = false;
  const live = new Live({
    wsUrl: 'ws://test/ws',
    WebSocket: makeTileSocketClass(server),
    setTimeout, clearTimeout,
    random: () => 0.5,
    onHello: () => { answered = false; if (rect) live.sendView(rect); },
    onView: (r) => { answered = true; store.subscribed(r); },
    onFrame: (f) => store.onFrame(f),
    onDisconnect: () => { answered = false; store.disconnected(); store.kick(); },
    onError: (e) => errors.push(e),
  });
  const store = new TileStore({
    bitsPerPixel: 4,
    capacity,
    fetch: (url, init) => server.fetch(url, init),
    setTimeout, clearTimeout,
    random: () => 0.5,
    mayFetch: () => !live.ws,
    onError: (e) => errors.push(e),
  });
  const c = {
    live, store, errors, timers,
    get answered() { return answered; },
    ws: () => server.sockets.at(-1),
    /** The view moves: these tiles are wanted, and the server told. */
    show(r) {
      rect = r;
      store.want(r);
      live.sendView(r);
    },
    async runTimers(filter = () => true) {
      const due = timers.filter(filter);
      for (const t of due) { timers.splice(timers.indexOf(t), 1); t.fn(); }
      await flush();
    },
    /** The client's pixels of a tile equal the server's. */
    exact(tx, ty) {
      const e = store.peek(tx, ty);
      assert.ok(e?.pixels, `tile ${tx},${ty} loaded`);
      assert.deepEqual(e.pixels, server.pixelsOf(tx, ty), `tile ${tx},${ty}`);
      assert.equal(e.version, server.tile(tx, ty).version, `tile ${tx},${ty} version`);
    },
  };
  return c;
}

async function connectedTileClient(server, rect, opts) {
  const c = makeTileClient(server, opts);
  c.live.start();
  c.show(rect);
  c.ws().accept();
  await flush();
  return c;
}

const tileRequests = (s, tx, ty) => s.requests.filter((r) => r === `/api/tiles/${tx}/${ty}`).length;

describe('tile sync', () => {
  test('tiles load once subscribed, then follow their frames', async () => {
    const s = new FakeTileServer(65536, 65536);
    s.tick([300, 10, 3]); // tile 1,0
    const c = makeTileClient(s);
    c.live.start();
    c.show({ tx: 1, ty: 0, w: 2, h: 1 });
    await flush();
    assert.deepEqual(s.requests, [], 'nothing fetched before the subscription');
    c.ws().accept();
    await flush();
    assert.deepEqual(c.ws().sent, [{ type: 'view', tx: 1, ty: 0, w: 2, h: 1 }]);
    assert.deepEqual(s.requests.sort(), ['/api/tiles/1/0', '/api/tiles/2/0']);
    assert.ok(c.store.ready);
    assert.equal(c.store.get(300, 10), 3);
    s.tick([301, 11, 4], [600, 5, 7]); // tiles 1,0 and 2,0
    await flush();
    c.exact(1, 0);
    c.exact(2, 0);
    assert.equal(c.store.get(600, 5), 7);
    assert.equal(s.requests.length, 2, 'frames need no requests');
  });

  test('a page far away fetches nothing of a tile and drops frames for it', async () => {
    const s = new FakeTileServer(65536, 65536);
    const near = await connectedTileClient(s, { tx: 0, ty: 0, w: 2, h: 2 });
    const far = await connectedTileClient(s, { tx: 200, ty: 200, w: 2, h: 2 });
    s.tick([10, 10, 5]);
    await flush();
    assert.equal(near.store.get(10, 10), 5);
    assert.equal(far.store.get(10, 10), undefined);
    assert.ok(!s.requests.some((r) => r.includes('/tiles/0/0') && far.store.peek(0, 0)));
    assert.equal(far.store.peek(0, 0), undefined);
    assert.equal(far.live.received.frames, 0, 'the far page got no frame');
    // Even a stray frame for a tile the page does not hold changes nothing.
    far.store.onFrame(decodeTileFrames(encodeTileFrame(0, 0, 0, [[1, 0, 1]]))[0]);
    assert.equal(far.store.peek(0, 0), undefined);
  });

  test('frames buffered while the tile loads are applied, skipping versions in it', async () => {
    const s = new FakeTileServer(1024, 1024);
    const c = makeTileClient(s);
    const realFetch = s.fetch;
    let release;
    s.fetch = async (url, init) => {
      const snap = { pixels: s.tile(0, 0).pixels.slice(), version: s.tile(0, 0).version };
      await new Promise((r) => { release = r; });
      s.stale.set('0,0', snap);
      const r = await realFetch(url, init);
      s.stale.delete('0,0');
      return r;
    };
    c.live.start();
    c.show({ tx: 0, ty: 0, w: 1, h: 1 });
    c.ws().accept();
    await flush();
    s.tick([1, 0, 1]);
    s.tick([2, 0, 2], [3, 0, 3]);
    s.fetch = realFetch;
    release();
    await flush();
    c.exact(0, 0);
  });

  test('a gap before a frame (prev > k) fetches /updates?since=k first', async () => {
    const s = new FakeTileServer(1024, 1024);
    const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 2, h: 1 });
    s.broadcastEnabled = false;
    s.tick([1, 1, 1]);
    s.tick([2, 2, 2], [300, 2, 9]);
    s.broadcastEnabled = true;
    s.tick([3, 3, 3], [1, 1, 5]);
    await flush();
    assert.ok(s.requests.includes('/api/tiles/0/0/updates?since=0'), s.requests.join(' '));
    c.exact(0, 0);
    // Tile 1,0 missed a placement too but has no frame to tell: it stays at 0 until one.
    assert.equal(c.store.peek(1, 0).version, 0);
    s.tick([301, 0, 4]);
    await flush();
    c.exact(1, 0);
  });

  test('410 Gone refetches the tile bypassing the cache', async () => {
    const s = new FakeTileServer(1024, 1024);
    const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 1, h: 1 });
    s.broadcastEnabled = false;
    s.tick([1, 1, 1]);
    s.tick([2, 2, 2]);
    s.tile(0, 0).logStart = 2;
    s.stale.set('0,0', { pixels: new Uint8Array(TILE * TILE), version: 0 }); // a cache would give this
    s.broadcastEnabled = true;
    s.tick([3, 3, 3]);
    await flush();
    assert.ok(s.requests.includes('/api/tiles/0/0/updates?since=0'));
    assert.equal(tileRequests(s, 0, 0), 2);
    c.exact(0, 0);
  });

  test('a stale copy (from a cache) of a watched tile catches up at once', async () => {
    const s = new FakeTileServer(1024, 1024);
    s.tick([5, 5, 5]);
    s.stale.set('0,0', { pixels: new Uint8Array(TILE * TILE), version: 0 });
    s.tick([6, 6, 6]);
    const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 1, h: 1 });
    assert.ok(s.requests.includes('/api/tiles/0/0/updates?since=0'), s.requests.join(' '));
    c.exact(0, 0);
  });

  test('reconnect: the view is sent again and each tile catches up from its version', async () => {
    for (const code of [1001, 4000, 1006]) {
      const s = new FakeTileServer(1024, 1024);
      const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 2, h: 1 });
      s.tick([1, 1, 1], [257, 1, 2]);
      await flush();
      c.ws().serverClose(code);
      await flush();
      assert.equal(c.live.state, 'reconnecting');
      const reconnect = c.timers.find((t) => t.ms >= 250 && t.ms <= 500);
      assert.ok(reconnect, JSON.stringify(c.timers.map((t) => t.ms)));
      s.tick([2, 2, 2]); // missed while away
      s.tick([258, 3, 3]);
      await c.runTimers((t) => t === reconnect);
      c.ws().accept();
      await flush();
      assert.deepEqual(c.ws().sent, [{ type: 'view', tx: 0, ty: 0, w: 2, h: 1 }]);
      assert.equal(tileRequests(s, 0, 0), 1, 'no tile reload');
      assert.equal(tileRequests(s, 1, 0), 1, 'no tile reload');
      assert.ok(s.requests.includes('/api/tiles/0/0/updates?since=1'), s.requests.join(' '));
      assert.ok(s.requests.includes('/api/tiles/1/0/updates?since=2'), s.requests.join(' '));
      c.exact(0, 0);
      c.exact(1, 0);
      assert.ok(c.store.ready);
    }
  });

  test('a tile that comes back into view catches up; one that left gets nothing', async () => {
    const s = new FakeTileServer(4096, 4096);
    const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 1, h: 1 });
    s.tick([1, 1, 1]);
    await flush();
    c.show({ tx: 1, ty: 0, w: 1, h: 1 });
    await flush();
    s.tick([2, 2, 2]); // tile 0,0, no longer watched
    await flush();
    assert.equal(c.store.get(2, 2), 0);
    c.show({ tx: 0, ty: 0, w: 2, h: 1 });
    await flush();
    assert.ok(s.requests.includes('/api/tiles/0/0/updates?since=1'));
    c.exact(0, 0);
    assert.equal(tileRequests(s, 0, 0), 1);
  });

  test('a tile wanted inside the current subscription loads at once and is live', async () => {
    const s = new FakeTileServer(2048, 256);
    const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 4, h: 1 });
    c.store.want({ tx: 0, ty: 0, w: 1, h: 1 }); // the others leave the cache's wanted set
    for (const k of [1, 2, 3]) c.store.evict(c.store.peek(k, 0));
    c.store.want({ tx: 2, ty: 0, w: 1, h: 1 }); // no new view: the server still sends it
    await flush();
    assert.equal(tileRequests(s, 2, 0), 2);
    s.tick([520, 3, 6]);
    await flush();
    c.exact(2, 0);
    assert.ok(c.store.peek(2, 0).live);
  });

  test('the cache stays bounded however far the view travels', async () => {
    const s = new FakeTileServer(4194304, 4194304);
    const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 4, h: 3 }, { capacity: 40 });
    for (let i = 1; i < 200; i++) {
      c.show({ tx: i * 3, ty: i, w: 4, h: 3 });
      await flush();
      assert.ok(c.store.tiles.size <= 40, `${c.store.tiles.size} tiles cached`);
    }
    const last = c.store.peek(199 * 3, 199);
    assert.ok(last?.pixels, 'the tiles in view are there');
    assert.equal(c.store.peek(0, 0), undefined, 'the first ones are gone');
    // A view needing more than the capacity still gets all its tiles.
    c.show({ tx: 5000, ty: 5000, w: 16, h: 16 });
    await flush();
    assert.ok(c.store.ready);
    assert.ok(c.store.tiles.size <= 256 + 16);
  });

  test('a resync refetches every tile, bypassing caches', async () => {
    const s = new FakeTileServer(1024, 1024);
    const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 1, h: 1 });
    s.tile(0, 0).pixels[9] = 7; // the server lost continuity
    c.ws().text({ type: 'resync' });
    c.store.resync();
    await flush();
    assert.equal(tileRequests(s, 0, 0), 2);
    assert.equal(c.store.get(9, 0), 7);
  });

  test('canvas, view errors and unknown messages', async () => {
    const s = new FakeTileServer(1024, 1024);
    const grown = [];
    const c = makeTileClient(s);
    c.live.onCanvas = (d) => grown.push(d);
    c.live.start();
    c.ws().accept();
    c.ws().text({ type: 'canvas', width: 2048, height: 1024 });
    c.ws().text({ type: 'mystery' });
    // A whole-canvas frame (0x01, before the view is answered) is no error, and no tile's.
    c.ws().deliver(new Uint8Array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 3]).buffer);
    assert.equal(c.live.received.frames, 0);
    assert.equal(c.live.sendView({ tx: 0, ty: 0, w: 17, h: 16 }), true);
    await flush();
    assert.deepEqual(grown, [{ width: 2048, height: 1024 }]);
    assert.match(String(c.errors[0]), /view/);
    assert.equal(c.live.state, 'open', 'the connection stays');
  });

  test('backoff grows while the server stays down and resets once connected', async () => {
    const s = new FakeTileServer(256, 256);
    const c = await connectedTileClient(s, { tx: 0, ty: 0, w: 1, h: 1 });
    const delays = [];
    for (let i = 0; i < 7; i++) {
      c.ws().serverClose(1006);
      await flush();
      const t = c.timers.find((x) => x.ms >= 250);
      delays.push(t.ms);
      await c.runTimers((x) => x === t);
    }
    assert.deepEqual(delays, [375, 750, 1500, 3000, 6000, 7500, 7500]);
    c.ws().accept();
    await flush();
    c.ws().serverClose(1001);
    await flush();
    assert.ok(c.timers.some((x) => x.ms === 375));
  });

  test('random interleavings leave every watched tile exact', async () => {
    let rnd = 12345;
    const rand = () => ((rnd = (rnd * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    const side = 1024; // 4x4 tiles
    for (let round = 0; round < 40; round++) {
      const s = new FakeTileServer(side, side);
      const c = makeTileClient(s);
      c.live.start();
      let view = { tx: 0, ty: 0, w: 2, h: 2 };
      c.show(view);
      c.ws().accept();
      for (let step = 0; step < 80; step++) {
        const r = rand();
        if (r < 0.45) {
          const n = 1 + Math.floor(rand() * 4);
          s.broadcastEnabled = rand() > 0.15; // sometimes a frame is lost
          s.tick(...Array.from({ length: n }, () => [Math.floor(rand() * side), Math.floor(rand() * side), Math.floor(rand() * 16)]));
          s.broadcastEnabled = true;
        } else if (r < 0.5) {
          const tx = Math.floor(rand() * 4), ty = Math.floor(rand() * 4);
          const t = s.tile(tx, ty);
          if (rand() < 0.5) s.stale.set(key(tx, ty), { pixels: t.pixels.slice(), version: t.version });
          else s.stale.delete(key(tx, ty));
        } else if (r < 0.55 && c.ws()?.readyState === 1) {
          c.ws().serverClose(rand() < 0.5 ? 1001 : 4000);
        } else if (r < 0.6) {
          await c.runTimers();
          const ws = c.ws();
          if (ws && ws.readyState === 0) ws.accept();
        } else if (r < 0.65) {
          const tx = Math.floor(rand() * 3), ty = Math.floor(rand() * 3);
          view = { tx, ty, w: 1 + Math.floor(rand() * (4 - tx)), h: 1 + Math.floor(rand() * (4 - ty)) };
          c.show(view);
        } else if (r < 0.68) {
          const t = s.tile(Math.floor(rand() * 4), Math.floor(rand() * 4));
          t.logStart = Math.max(t.logStart, t.version - 1);
        } else if (r < 0.85) {
          await flush();
        }
      }
      // Settle: reconnect if needed, then one more placement on every watched tile.
      s.stale.clear();
      await c.runTimers();
      if (c.ws()?.readyState === 0) c.ws().accept();
      await flush();
      await c.runTimers();
      await flush();
      const spots = [];
      for (let ty = view.ty; ty < view.ty + view.h; ty++) for (let tx = view.tx; tx < view.tx + view.w; tx++) spots.push([tx * TILE + 7, ty * TILE + 7, 9]);
      s.tick(...spots);
      await flush();
      await c.runTimers();
      await flush();
      for (let ty = view.ty; ty < view.ty + view.h; ty++) for (let tx = view.tx; tx < view.tx + view.w; tx++) c.exact(tx, ty);
      c.live.stop();
      c.store.stop();
    }
  });
});

describe('overview images', () => {
  test('fetched per level and position, kept bounded, refreshed when old', async () => {
    const requests = [];
    let now = 1000;
    const store = new OverviewStore({
      capacity: 10,
      now: () => now,
      fetch: async (url) => {
        requests.push(url);
        return { ok: true, status: 200, headers: { get: () => '5' }, blob: async () => url };
      },
      decode: async (blob) => ({ src: blob, close() {} }),
    });
    store.want(3, { tx: 0, ty: 0, w: 2, h: 2 });
    await flush();
    assert.deepEqual(requests.sort(), ['/api/tiles/3/0/0.png', '/api/tiles/3/0/1.png', '/api/tiles/3/1/0.png', '/api/tiles/3/1/1.png']);
    assert.equal(store.peek(3, 1, 1).img.src, '/api/tiles/3/1/1.png');
    store.want(3, { tx: 0, ty: 0, w: 2, h: 2 });
    await flush();
    assert.equal(requests.length, 4, 'cached');
    now += 31_000;
    store.want(3, { tx: 0, ty: 0, w: 1, h: 1 });
    await flush();
    assert.equal(requests.length, 5, 'refreshed after a while on screen');
    for (let i = 0; i < 20; i++) store.want(5, { tx: i, ty: 0, w: 1, h: 1 });
    await flush();
    assert.ok(store.images.size <= 10);
  });
});

describe('placing', () => {
  const KEY = /^[A-Za-z0-9_-]{1,64}$/;

  /** Replaces fetch with `answers` (status or 'network'), recording each request. */
  function fakeFetch(answers) {
    const seen = [];
    globalThis.fetch = async (path, init) => {
      seen.push({ path, init });
      const a = answers.shift();
      if (a === 'network') throw new TypeError('network down');
      const body = a === 200 ? { seq: 7, at: 1000, next_at: 6000 } : { error: 'unavailable', message: 'x' };
      return new Response(JSON.stringify(body), { status: a, headers: { 'Content-Type': 'application/json' } });
    };
    return seen;
  }

  test('keys are fresh and valid', () => {
    const a = newIdempotencyKey(), b = newIdempotencyKey();
    assert.match(a, KEY);
    assert.notEqual(a, b);
  });

  test('one intended placement sends one key, reused on its retries', async () => {
    const seen = fakeFetch(['network', 503, 200]);
    const r = await placePixel(1, 2, 3, { sleep: async () => {} });
    assert.equal(r.seq, 7);
    assert.equal(seen.length, 3);
    const keys = seen.map((s) => s.init.headers['Idempotency-Key']);
    assert.match(keys[0], KEY);
    assert.deepEqual(keys, [keys[0], keys[0], keys[0]]);
    assert.equal(seen[0].init.method, 'PUT');
    // The next placement is another intention: another key.
    const again = fakeFetch([200]);
    await placePixel(1, 2, 3, { sleep: async () => {} });
    assert.notEqual(again[0].init.headers['Idempotency-Key'], keys[0]);
  });

  test('refusals are not retried, and retries stop', async () => {
    const seen = fakeFetch([429]);
    await assert.rejects(placePixel(0, 0, 0, { sleep: async () => {} }), (e) => e.status === 429);
    assert.equal(seen.length, 1);
    const more = fakeFetch([503, 503, 503, 503]);
    await assert.rejects(placePixel(0, 0, 0, { sleep: async () => {} }), (e) => e.status === 503);
    assert.equal(more.length, 3);
  });
});

// ---- proof of work: the worker's SHA-256 and search against the Rust side's vectors -----

describe('proof of work', () => {
  const fixtures = JSON.parse(readFileSync(new URL('../../crates/domain/tests/fixtures/pow.json', import.meta.url), 'utf8'));

  test('hashes and smallest solutions match crates/domain/tests/fixtures/pow.json', () => {
    for (const v of fixtures.vectors) {
      for (const h of v.hashes) assert.equal(workHex(v.challenge, h.nonce), h.sha256, `${v.challenge}:${h.nonce}`);
      assert.equal(solve(v.challenge, v.difficulty).nonce, v.smallest_solution);
    }
  });

  test('the midstate SHA-256 equals node:crypto across block boundaries', async () => {
    const { createHash } = await import('node:crypto');
    for (let len = 0; len < 140; len++) {
      const text = 'p'.repeat(len);
      for (const nonce of ['0', '9', '18446744073709551615']) {
        assert.equal(workHex(text, nonce), createHash('sha256').update(`${text}:${nonce}`).digest('hex'), `${len} ${nonce}`);
      }
    }
  });

  test('a 428 pow_required is solved and the placement sent again, once, with the same key', async () => {
    const v = fixtures.vectors[1];
    const seen = [];
    const answers = [
      [428, { error: 'pow_required', message: 'x', challenge: { challenge: v.challenge, difficulty: v.difficulty, algorithm: 'SHA-256', expires: v.expires_ms } }],
      [200, { seq: 9, at: 1, next_at: 2 }],
    ];
    globalThis.fetch = async (path, init) => {
      seen.push({ path, init });
      const [status, body] = answers.shift();
      return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
    };
    const r = await placePixel(1, 2, 3, { sleep: async () => {} });
    assert.equal(r.seq, 9);
    assert.equal(seen.length, 2);
    assert.equal(seen[0].init.headers['X-Rplace-Pow'], undefined);
    assert.equal(seen[1].init.headers['X-Rplace-Pow'], `${v.challenge}.${v.smallest_solution}`);
    assert.equal(seen[1].init.headers['Idempotency-Key'], seen[0].init.headers['Idempotency-Key']);
  });

  test('a placement asked again and again gives up', async () => {
    const v = fixtures.vectors[2];
    const required = { error: 'pow_required', message: 'x', challenge: { challenge: v.challenge, difficulty: v.difficulty } };
    let calls = 0;
    globalThis.fetch = async () => {
      calls++;
      return new Response(JSON.stringify(required), { status: 428, headers: { 'Content-Type': 'application/json' } });
    };
    await assert.rejects(placePixel(0, 0, 0, { sleep: async () => {} }), (e) => e.status === 428 && e.code === 'pow_required');
    assert.equal(calls, 3);
  });
});

describe('history links', () => {
  test('a moment is a seq or a time in the hash, seq first; anything else is none', () => {
    assert.deepEqual(parseMoment('#x=1&y=2&z=3&seq=42'), { seq: 42 });
    assert.deepEqual(parseMoment('#at=1700000000000&x=1'), { at: 1_700_000_000_000 });
    assert.deepEqual(parseMoment('#seq=7&at=5'), { seq: 7 });
    for (const h of ['', '#x=1', '#seq=-1', '#seq=abc', '#at=1.5', null]) assert.equal(parseMoment(h), null, String(h));
  });
});
