// Unit tests of the page's pure logic (no browser, no server): board and frame decoding,
// view math and the sync algorithm of docs/API.md against a fake server.
// Run: node --test tests/browser/unit.test.mjs

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  Board, decodeBoard, decodeFrames, encodeFrame, forEachEntry, paletteToRgba,
} from '../../crates/web/static/board.js';
import { Sync, backoffDelay, BACKOFF_MAX_MS, BACKOFF_MIN_MS } from '../../crates/web/static/sync.js';
import { View, formatHash, parseHash } from '../../crates/web/static/view.js';
import { shortId, relativeTime, formatCountdown } from '../../crates/web/static/format.js';
import { newIdempotencyKey, placePixel } from '../../crates/web/static/api.js';
import { solve, workHex } from '../../crates/web/static/pow-worker.js';

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
    const b = new Board(4, 2, paletteToRgba(Array(16).fill('#000000')));
    b.load(px);
    assert.equal(b.get(1, 1), 5);
    assert.equal(b.get(3, 0), 3);
    assert.equal(b.get(4, 0), undefined);
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

  test('set tracks dirty pixels, load marks everything dirty', () => {
    const b = new Board(8, 8, paletteToRgba(['#FFFFFF', '#000000']));
    assert.deepEqual(b.takeDirty(), { full: true });
    assert.equal(b.takeDirty(), null);
    b.set(2, 3, 1);
    const d = b.takeDirty();
    assert.deepEqual([...d.pixels], [3 * 8 + 2]);
    assert.equal(b.rgba[26], paletteToRgba(['#000000'])[0]);
    assert.equal(b.set(8, 0, 1), false);
  });
});

describe('update frames', () => {
  test('exact byte layout of docs/API.md', () => {
    const f = encodeFrame(258, [[1, 2, 3], [0x0304, 7, 15]]);
    assert.deepEqual([...f], [
      0x01, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
      1, 0, 2, 0, 3,
      4, 3, 7, 0, 15,
    ]);
  });

  test('several frames back to back', () => {
    const a = encodeFrame(10, [[1, 1, 1], [2, 2, 2]]);
    const b = encodeFrame(12, [[3, 3, 3]]);
    const body = new Uint8Array([...a, ...b]);
    const frames = decodeFrames(body.buffer);
    assert.equal(frames.length, 2);
    const seen = [];
    for (const f of frames) forEachEntry(f, (...e) => seen.push(e));
    assert.deepEqual(seen, [[10, 1, 1, 1], [11, 2, 2, 2], [12, 3, 3, 3]]);
  });

  test('large seqs and coordinates', () => {
    const [f] = decodeFrames(encodeFrame(2 ** 40 + 5, [[4095, 65535, 255]]));
    forEachEntry(f, (s, x, y, c) => assert.deepEqual([s, x, y, c], [2 ** 40 + 5, 4095, 65535, 255]));
  });

  test('malformed frames are rejected', () => {
    assert.throws(() => decodeFrames(new Uint8Array([1, 0, 0])));
    assert.throws(() => decodeFrames(new Uint8Array(13).fill(0)));
    const f = encodeFrame(1, [[1, 1, 1]]);
    assert.throws(() => decodeFrames(f.subarray(0, f.length - 1)));
    assert.deepEqual(decodeFrames(new Uint8Array(0)), []);
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

// ---- the sync algorithm against a fake server ------------------------------------------

/** A server keeping a board, a log of placements and one websocket per client. */
class FakeServer {
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.board = new Uint8Array(width * height);
    this.seq = 0;
    this.log = []; // {seq, x, y, color}
    this.logStart = 0; // the smallest `since` answered; older gets 410
    this.pageLimit = 1000;
    this.staleBoard = null; // {seq, indices}: served instead of the current board
    this.requests = [];
    this.sockets = [];
    this.broadcastEnabled = true;
  }

  place(x, y, color) {
    this.seq++;
    this.board[y * this.width + x] = color;
    const u = { seq: this.seq, x, y, color };
    this.log.push(u);
    return u;
  }

  /** Places and sends one frame of these placements to every open socket. */
  tick(...placements) {
    const ups = placements.map(([x, y, c]) => this.place(x, y, c));
    const frame = encodeFrame(ups[0].seq, ups.map((u) => [u.x, u.y, u.color]));
    if (this.broadcastEnabled) for (const ws of this.sockets) if (ws.readyState === 1) ws.deliver(frame.slice().buffer);
    return ups;
  }

  snapshot() {
    return { seq: this.seq, indices: this.board.slice() };
  }

  encodeBoard(indices) {
    const out = new Uint8Array((indices.length + 1) >> 1);
    for (let i = 0; i < indices.length; i++) out[i >> 1] |= i & 1 ? indices[i] : indices[i] << 4;
    return out;
  }

  fetch = async (url) => {
    this.requests.push(url);
    const u = new URL(url, 'http://x');
    const res = (status, body, headers = {}) => ({
      status,
      ok: status >= 200 && status < 300,
      headers: { get: (k) => headers[k] ?? headers[k.toLowerCase()] ?? null },
      arrayBuffer: async () => body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength),
    });
    if (u.pathname === '/api/board') {
      const b = this.staleBoard ?? this.snapshot();
      return res(200, this.encodeBoard(b.indices), { 'X-Board-Seq': String(b.seq) });
    }
    if (u.pathname === '/api/updates') {
      const since = Number(u.searchParams.get('since'));
      if (since < this.logStart) return res(410, new Uint8Array(0));
      const ups = this.log.filter((e) => e.seq > since).slice(0, this.pageLimit);
      const parts = [];
      // Two frames per page when possible, to exercise back-to-back decoding.
      const half = Math.ceil(ups.length / 2);
      for (const chunk of [ups.slice(0, half), ups.slice(half)]) {
        if (chunk.length) parts.push(...encodeFrame(chunk[0].seq, chunk.map((e) => [e.x, e.y, e.color])));
      }
      const last = ups.length ? ups[ups.length - 1].seq : since;
      return res(200, new Uint8Array(parts), {
        'X-Board-Seq': String(this.seq),
        ...(last < this.seq ? { 'X-Updates-More': 'true' } : {}),
      });
    }
    return res(404, new Uint8Array(0));
  };
}

function makeWebSocketClass(server) {
  return class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      server.sockets.push(this);
    }
    /** The server accepts: subscribes, then says hello with the newest seq sent. */
    accept(helloSeq = server.seq) {
      this.readyState = 1;
      this.onopen?.({});
      this.onmessage?.({ data: JSON.stringify({ type: 'hello', seq: helloSeq, tick_ms: 50 }) });
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

const flush = async () => { for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r)); };

function makeClient(server, opts = {}) {
  const timers = [];
  const local = new Uint8Array(server.width * server.height);
  const applied = [];
  const states = [];
  const errors = [];
  const sync = new Sync({
    httpBase: '',
    wsUrl: 'ws://test/ws',
    fetch: (url, init) => server.fetch(url, init),
    WebSocket: makeWebSocketClass(server),
    setTimeout: (fn, ms) => { const t = { fn, ms }; timers.push(t); return t; },
    clearTimeout: (t) => { const i = timers.indexOf(t); if (i >= 0) timers.splice(i, 1); },
    random: () => 0.5,
    onBoard: (bytes, seq) => { local.set(decodeBoard(bytes, server.width, server.height, 4)); applied.push(['board', seq]); },
    onUpdate: (seq, x, y, color) => { local[y * server.width + x] = color; applied.push(seq); },
    onStatus: (s) => states.push(s.state),
    onError: (e) => errors.push(e),
    ...opts,
  });
  /** Runs the pending timers (not ones they schedule), e.g. a reconnect. */
  const runTimers = async (filter = () => true) => {
    const due = timers.filter(filter);
    for (const t of due) { timers.splice(timers.indexOf(t), 1); t.fn(); }
    await flush();
  };
  return { sync, local, applied, states, errors, timers, runTimers, ws: () => server.sockets.at(-1) };
}

/** A client that has started and whose first socket the server accepted. */
async function connectedClient(server, opts) {
  const c = makeClient(server, opts);
  c.sync.start();
  c.ws().accept();
  await flush();
  return c;
}

/** Checks updates were applied each exactly once, in order, after each board. */
function assertContiguous(applied) {
  let cur = null;
  for (const a of applied) {
    if (Array.isArray(a)) { cur = a[1]; continue; }
    assert.notEqual(cur, null, 'update before any board');
    assert.equal(a, cur + 1, `applied ${a} after ${cur}: ${JSON.stringify(applied)}`);
    cur = a;
  }
}

describe('sync', () => {
  test('opens the socket before fetching the board, then goes live', async () => {
    const s = new FakeServer(8, 8);
    s.place(1, 1, 3);
    const c = makeClient(s);
    c.sync.start();
    await flush();
    assert.equal(s.sockets.length, 1);
    assert.equal(s.requests.length, 0, 'board waits for the socket');
    c.ws().accept();
    await flush();
    assert.deepEqual(s.requests, ['/api/board']);
    assert.equal(c.sync.seq, 1);
    assert.equal(c.sync.state, 'live');
    assert.deepEqual(c.local, s.board);
  });

  test('frames buffered during the board fetch are applied, skipping seqs on the board', async () => {
    const s = new FakeServer(8, 8);
    const c = makeClient(s);
    // The board fetch answers only after more frames arrived.
    const realFetch = s.fetch;
    let release;
    s.fetch = async (url) => {
      const snap = s.snapshot();
      await new Promise((r) => { release = r; });
      s.staleBoard = snap;
      const r = await realFetch(url);
      s.staleBoard = null;
      return r;
    };
    c.sync.start();
    c.ws().accept();
    await flush();
    s.tick([1, 0, 1]);
    s.tick([2, 0, 2], [3, 0, 3]);
    s.fetch = realFetch;
    release();
    await flush();
    assert.equal(c.sync.seq, 3);
    assert.deepEqual(c.local, s.board);
    assertContiguous(c.applied);
    assert.deepEqual(c.applied, [['board', 0], 1, 2, 3]);
  });

  test('a stale board (cached) is caught up with /api/updates', async () => {
    const s = new FakeServer(8, 8);
    s.tick([0, 0, 1]);
    s.staleBoard = s.snapshot(); // seq 1
    s.tick([1, 0, 2]);
    s.tick([2, 0, 3]); // seq 3
    const c = makeClient(s);
    c.sync.start();
    c.ws().accept(); // hello seq 3
    await flush();
    assert.equal(c.sync.seq, 3, 'hello says 3 exist: caught up without waiting for a frame');
    assert.ok(s.requests.includes('/api/updates?since=1'));
    s.staleBoard = null;
    s.tick([3, 0, 4]);
    await flush();
    assert.equal(c.sync.seq, 4);
    assert.deepEqual(c.local, s.board);
    assertContiguous(c.applied);
  });

  test('a gap before a frame fetches the missing updates first', async () => {
    const s = new FakeServer(8, 8);
    const c = await connectedClient(s);
    s.broadcastEnabled = false;
    s.tick([1, 1, 1]);
    s.tick([2, 2, 2]);
    s.broadcastEnabled = true;
    s.tick([3, 3, 3], [1, 1, 5]);
    await flush();
    assert.ok(s.requests.includes('/api/updates?since=0'));
    assert.equal(c.sync.seq, 4);
    assert.deepEqual(c.local, s.board);
    assertContiguous(c.applied);
  });

  test('catch-up pages while X-Updates-More is true', async () => {
    const s = new FakeServer(16, 16);
    s.pageLimit = 7;
    const c = await connectedClient(s);
    s.broadcastEnabled = false;
    for (let i = 0; i < 30; i++) s.tick([i % 16, i >> 4, (i % 15) + 1]);
    s.broadcastEnabled = true;
    s.tick([5, 5, 5]);
    await flush();
    assert.equal(c.sync.seq, 31);
    assert.equal(s.requests.filter((r) => r.startsWith('/api/updates')).length, 5);
    assert.deepEqual(c.local, s.board);
    assertContiguous(c.applied);
  });

  test('410 Gone refetches the whole board', async () => {
    const s = new FakeServer(8, 8);
    const c = await connectedClient(s);
    s.broadcastEnabled = false;
    s.tick([1, 1, 1]);
    s.tick([2, 2, 2]);
    s.logStart = 2; // since=0 and 1 are gone
    s.broadcastEnabled = true;
    s.tick([3, 3, 3]);
    await flush();
    assert.ok(s.requests.includes('/api/updates?since=0'));
    assert.equal(s.requests.filter((r) => r === '/api/board').length, 2);
    assert.equal(c.sync.seq, 3);
    assert.deepEqual(c.local, s.board);
    assertContiguous(c.applied);
  });

  test('resync refetches the board', async () => {
    const s = new FakeServer(8, 8);
    const c = await connectedClient(s);
    s.board[9] = 7; // the server lost continuity: its board changed behind our back
    c.ws().text({ type: 'resync' });
    await flush();
    assert.equal(s.requests.filter((r) => r === '/api/board').length, 2);
    assert.deepEqual(c.local, s.board);
  });

  test('reconnect after 1001/4000 catches up from the last seq, without a board', async () => {
    for (const code of [1001, 4000, 1006]) {
      const s = new FakeServer(8, 8);
      const c = await connectedClient(s);
      s.tick([1, 1, 1]);
      await flush();
      c.ws().serverClose(code);
      await flush();
      assert.equal(c.sync.state, 'reconnecting');
      const reconnect = c.timers.find((t) => t.ms >= 250 && t.ms <= 500);
      assert.ok(reconnect, `a backoff timer of 0.25..0.5 s: ${JSON.stringify(c.timers.map((t) => t.ms))}`);
      s.tick([2, 2, 2]); // missed while away
      s.tick([3, 3, 3]);
      await c.runTimers((t) => t === reconnect);
      assert.equal(s.sockets.length, 2);
      c.ws().accept(); // hello seq 3
      await flush();
      assert.equal(c.sync.state, 'live');
      assert.equal(c.sync.seq, 3);
      assert.deepEqual(s.requests.filter((r) => r === '/api/board').length, 1, 'no board reload');
      assert.ok(s.requests.includes('/api/updates?since=1'));
      assert.deepEqual(c.local, s.board);
      assertContiguous(c.applied);
    }
  });

  test('backoff grows while the server stays down and resets once connected', async () => {
    const s = new FakeServer(8, 8);
    const c = await connectedClient(s);
    const delays = [];
    for (let i = 0; i < 7; i++) {
      c.ws().serverClose(1006);
      await flush();
      const t = c.timers.find((x) => x.ms >= 250 && x.ms !== 2000);
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

  test('random interleavings never apply an update twice or skip one', async () => {
    let rnd = 12345;
    const rand = () => ((rnd = (rnd * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    for (let round = 0; round < 40; round++) {
      const s = new FakeServer(8, 8);
      s.pageLimit = 1 + Math.floor(rand() * 5);
      const c = makeClient(s);
      c.sync.start();
      c.ws().accept();
      for (let step = 0; step < 60; step++) {
        const r = rand();
        if (r < 0.5) {
          const n = 1 + Math.floor(rand() * 3);
          s.broadcastEnabled = rand() > 0.2; // sometimes a frame is lost
          s.tick(...Array.from({ length: n }, () => [Math.floor(rand() * 8), Math.floor(rand() * 8), Math.floor(rand() * 16)]));
          s.broadcastEnabled = true;
        } else if (r < 0.55) {
          s.staleBoard = rand() < 0.5 ? s.snapshot() : null;
        } else if (r < 0.6 && c.ws()?.readyState === 1) {
          c.ws().serverClose(rand() < 0.5 ? 1001 : 4000);
        } else if (r < 0.65) {
          await c.runTimers();
          const ws = c.ws();
          if (ws && ws.readyState === 0) ws.accept();
        } else if (r < 0.67) {
          c.ws()?.text({ type: 'resync' });
        } else if (r < 0.7) {
          s.logStart = Math.max(s.logStart, s.seq - 3);
        } else if (r < 0.85) {
          await flush();
        }
      }
      // Settle: reconnect if needed and let one more frame arrive.
      s.staleBoard = null;
      await c.runTimers();
      if (c.ws()?.readyState === 0) c.ws().accept();
      await flush();
      s.tick([0, 0, 9]);
      await flush();
      await c.runTimers();
      await flush();
      assert.equal(c.sync.seq, s.seq, `round ${round}`);
      assert.deepEqual(c.local, s.board, `round ${round}`);
      assertContiguous(c.applied);
      c.sync.stop();
    }
  });
});

// ---- golden fixtures shared with the Rust sync (crates/domain/tests/golden.rs) -----------

describe('golden fixtures', () => {
  const dir = new URL('../../crates/domain/tests/fixtures/', import.meta.url);
  const read = (name) => new Uint8Array(readFileSync(new URL(name, dir)));
  const manifest = JSON.parse(readFileSync(new URL('manifest.json', dir), 'utf8'));
  const { width, height } = manifest;

  test('every frame decodes to the entries the Rust encoder put in it', () => {
    for (const [name, entries] of Object.entries(manifest.frames)) {
      const bytes = read(name);
      const frames = decodeFrames(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      assert.equal(frames.length, 1, name);
      const seen = [];
      forEachEntry(frames[0], (...e) => seen.push(e));
      assert.deepEqual(seen, entries, name);
      // And the page's encoder makes the same bytes.
      assert.deepEqual([...encodeFrame(entries[0][0], entries.map((e) => e.slice(1)))], [...bytes], name);
    }
  });

  for (const sc of manifest.scenarios) {
    test(`scenario ${sc.name} ends on the expected board`, async () => {
      const board = read(sc.board);
      const log = read(manifest.log);
      const res = (body, headers) => ({
        status: 200,
        ok: true,
        headers: { get: (k) => headers[k.toLowerCase()] ?? null },
        arrayBuffer: async () => body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength),
      });
      // The whole log answers any `since`, as in the Rust test: applied entries are skipped.
      const fetch = async (url) => (url.startsWith('/api/board')
        ? res(board, { 'x-board-seq': String(sc.board_seq) })
        : res(log, {}));
      const sockets = [];
      class FakeWebSocket {
        constructor() { sockets.push(this); }
        close() {}
      }
      const local = new Uint8Array(width * height);
      const errors = [];
      const sync = new Sync({
        httpBase: '',
        wsUrl: 'ws://test/ws',
        fetch,
        WebSocket: FakeWebSocket,
        setTimeout: () => null,
        clearTimeout: () => {},
        random: () => 0.5,
        onBoard: (bytes) => local.set(decodeBoard(bytes, width, height, 4)),
        onUpdate: (seq, x, y, color) => { local[y * width + x] = color; },
        onError: (e) => errors.push(e),
      });
      sync.start();
      const ws = sockets[0];
      const deliver = (name) => { const b = read(name); ws.onmessage({ data: b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) }); };
      ws.onmessage({ data: JSON.stringify({ type: 'hello', seq: sc.hello, tick_ms: 50 }) });
      // Frames before `board_after` arrive while the board fetch is in flight.
      sc.frames.slice(0, sc.board_after).forEach(deliver);
      await flush();
      for (const name of sc.frames.slice(sc.board_after)) {
        deliver(name);
        await flush();
      }
      assert.deepEqual(errors, []);
      assert.equal(sync.seq, sc.expect_seq);
      assert.deepEqual(local, decodeBoard(read(sc.expect), width, height, 4));
      sync.stop();
    });
  }
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
