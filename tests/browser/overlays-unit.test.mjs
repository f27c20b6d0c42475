// Unit tests of the overlays' data (crates/web/static/overlays.js): the heatmap's ramp,
// the rasters, and how live changes and our own placements are laid over the server's
// lagging answers. A fake world and fetch; no browser needed.
// Run: node --test tests/browser/overlays-unit.test.mjs

import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';

// The little of the DOM the module's class touches.
globalThis.ImageData ??= class { constructor(w, h) { this.data = new Uint8ClampedArray(w * h * 4); } };
globalThis.document ??= { addEventListener() {}, visibilityState: 'visible' };

const { DIM, HEAT_WINDOW_S, MINE, OTHER, Overlays, PLACED, VIRGIN, heatWord, rasterize } = await import('../../crates/web/static/overlays.js');

const TILE = 256;
const nowS = () => Math.floor(Date.now() / 1000);

/** A 64 x 64 board at zoom 10, one tile in view; `colors` holds the live pixels. */
function fakeWorld(colors = new Map()) {
  return {
    renderer: { request() {} }, skew: 0, past: null, level: 0, rect: { tx: 0, ty: 0, w: 1, h: 1 },
    view: { x: 32, y: 32, zoom: 10, width: 640, height: 640 }, width: 64, height: 64,
    pixel: (x, y) => colors.get(`${x},${y}`) ?? 0,
  };
}

/** A fetch that answers from `answers[kind]()` and records the URLs. */
function fakeFetch(answers, urls) {
  return async (url) => {
    urls.push(url);
    if (url.includes('/activity')) {
      const t = answers.activity();
      return { ok: true, status: 200, headers: new Map([['X-Activity-Through', '7']]), arrayBuffer: async () => t.buffer };
    }
    const json = answers.mine();
    return { ok: true, status: 200, headers: new Map(), json: async () => json };
  };
}

const settle = () => new Promise((r) => setTimeout(r, 0));
let made = [];
afterEach(() => { for (const o of made) o.setMode('none'); made = []; });

describe('overlay rasters', () => {
  test('the heatmap: hot now, cooler with age, dimmed past the window and when never placed', () => {
    const now = 1_800_000_000;
    assert.equal(heatWord(0, now), DIM);
    assert.equal(heatWord(now - HEAT_WINDOW_S, now), DIM);
    const [r0, g0, b0] = new Uint8Array(Uint32Array.of(heatWord(now, now)).buffer);
    assert.ok(r0 > 240 && g0 > 200 && b0 < 100, 'yellow now');
    const [r1, g1] = new Uint8Array(Uint32Array.of(heatWord(now - 1800, now)).buffer);
    assert.ok(r1 > 150 && g1 < 80, 'red half an hour ago');
    assert.notEqual(heatWord(now - 10, now), heatWord(now - 3000, now));
  });

  test('virgin map and my pixels', () => {
    const words = new Uint32Array(TILE * TILE);
    const times = new Uint32Array(TILE * TILE);
    times[5] = 1;
    rasterize('virgin', times, 10, words);
    assert.deepEqual([words[5], words[6]], [PLACED, VIRGIN]);
    rasterize('mine', new Set([6]), 10, words);
    assert.deepEqual([words[5], words[6]], [OTHER, MINE]);
  });
});

describe('overlay data', () => {
  test('a live pixel stays hot over an answer that has not counted it yet', async () => {
    const urls = [];
    const server = new Uint32Array(TILE * TILE); // lagging: knows nothing
    const o = new Overlays({ world: fakeWorld(), fetch: fakeFetch({ activity: () => server.slice() }, urls) });
    made.push(o);
    o.setMode('heat');
    await settle();
    assert.deepEqual(urls, ['/api/tiles/0/0/activity']);
    const e = o.tiles.get(0);
    assert.equal(e.data[10], 0);
    o.pixelChanged(10, 0, 3);
    assert.ok(e.data[10] >= nowS() - 1);
    o.refresh();
    await settle();
    assert.equal(urls.length, 2);
    assert.ok(o.tiles.get(0).data[10] >= nowS() - 1, 'still hot after the refetch');
    // Once the server has it, the live mark is dropped.
    server[10] = nowS() + 1;
    o.refresh();
    await settle();
    assert.equal(o.tiles.get(0).live.size, 0);
  });

  test('my pixels: ours is added at once and kept over a lagging answer; a stranger takes one away', async () => {
    const urls = [];
    const colors = new Map();
    let answer = { tx: 0, ty: 0, through: 7, pixels: [1] };
    const o = new Overlays({ world: fakeWorld(colors), fetch: fakeFetch({ mine: () => answer }, urls) });
    made.push(o);
    o.setMode('mine');
    await settle();
    assert.deepEqual(urls, ['/api/me/pixels?tx=0&ty=0']);
    assert.deepEqual([...o.tiles.get(0).data], [1]);
    // We place (2, 0) at seq 9: ours now; its own frame (same color) keeps it ours.
    colors.set('2,0', 4);
    o.placed(2, 0, 4, 9);
    o.pixelChanged(2, 0, 4);
    assert.deepEqual([...o.tiles.get(0).data].sort(), [1, 2]);
    // The server's answer through seq 7 does not have it yet: it stays.
    o.refresh();
    await settle();
    assert.deepEqual([...o.tiles.get(0).data].sort(), [1, 2]);
    // Someone paints over (1, 0): not ours any more, also over the next lagging answer.
    o.pixelChanged(1, 0, 5);
    assert.deepEqual([...o.tiles.get(0).data], [2]);
    o.refresh();
    await settle();
    assert.deepEqual([...o.tiles.get(0).data], [2]);
    // Counted (through 9): the server's word stands.
    answer = { tx: 0, ty: 0, through: 9, pixels: [2] };
    o.refresh();
    await settle();
    assert.deepEqual([...o.tiles.get(0).data], [2]);
    assert.equal(o.recent.length, 0);
  });

  test('nothing is fetched zoomed out or in history mode, and the cache is bounded', async () => {
    const urls = [];
    const world = fakeWorld();
    world.level = 2;
    world.rect = null;
    const o = new Overlays({ world, fetch: fakeFetch({ activity: () => new Uint32Array(TILE * TILE) }, urls) });
    made.push(o);
    o.setMode('virgin');
    await settle();
    assert.deepEqual(urls, []);
    assert.equal(o.visibleRect(), null);
    // A big board zoomed in, panned over 40 tiles one by one: at most CACHE stay.
    Object.assign(world, { level: 0, rect: {}, width: 256 * 64, height: 256, view: { x: 128, y: 128, zoom: 4, width: 200, height: 200 } });
    for (let tx = 0; tx < 40; tx++) {
      world.view.x = tx * 256 + 128;
      o.want();
      await settle();
    }
    assert.equal(urls.length, 40);
    assert.ok(o.tiles.size <= 24, `${o.tiles.size} cached`);
    world.past = {};
    assert.equal(o.visibleRect(), null);
  });
});
