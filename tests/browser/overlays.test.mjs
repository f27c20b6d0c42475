// Overlays (crates/web/static/overlays.js, overlay-panel.js) on the real server: the
// virgin map shows a placed pixel dark and a never placed one green; the heatmap shows a
// pixel placed just now hot and a blank one dimmed, and a live placement hot at once
// without a refetch; "my pixels" shows this page's pixels in their colors and another
// user's dimmed, adds our placement at once and drops one someone else paints over. The
// choice survives a reload; on a phone the menu works by keyboard; in history mode and
// zoomed out to the overviews nothing is fetched and the note says why.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, nextPaint, openPage, pixelOnScreen, recordTraffic, sampleCanvas, screenshotPath, startServer,
  until, waitLive,
} from './harness.mjs';

const BENCH_TOKEN = 'browser-bench-token-overlays-0123456789';
const OTHER = '00000000000000bb';
const TILE = 256;
const BLUE = 13; // #0000EA in r/place 2017's palette
const RED = 5; // #E50000
/** Placed by someone else before the page opens; never placed. */
const P = [10, 10], U = [40, 40];

async function placeAs(url, user, x, y, color) {
  const res = await fetch(`${url}/api/pixel`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${BENCH_TOKEN}`, 'X-Rplace-User': user },
    body: JSON.stringify({ x, y, color }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

/** The server's activity raster of tile (0, 0): 65,536 unix seconds. */
async function activity(url) {
  const res = await fetch(`${url}/api/tiles/0/0/activity`);
  assert.equal(res.status, 200);
  const buf = new Uint8Array(await res.arrayBuffer());
  assert.equal(buf.length, TILE * TILE * 4);
  return new Uint32Array(buf.buffer, buf.byteOffset, TILE * TILE);
}

const rgb = (hex) => [1, 3, 5].map((o) => parseInt(hex.slice(o, o + 2), 16));
/** The canvas color at the center of each board pixel, as [r, g, b]. */
async function shown(page, ...pixels) {
  await nextPaint(page);
  return (await sampleCanvas(page, pixels)).map((s) => rgb(s.color));
}
const isHot = ([r, g, b]) => r > 200 && g > 120 && b < 150;
const isGrey = ([r, g, b], below) => r === g && g === b && r < below;
const isGreen = ([r, g, b]) => g > 180 && r < 100 && g - b > 60;
const isDark = (c) => Math.max(...c) < 100;

const overlay = (page) => page.evaluate(() => window.rplace.overlay);
/** Until the overlay `mode` has tile (0, 0) and draws it (nothing loading). */
async function overlayReady(page, mode) {
  return until(async () => {
    const o = await overlay(page);
    return o.mode === mode && o.reason === '' && o.loaded.some(([tx, ty]) => tx === 0 && ty === 0) && o;
  }, { what: `the ${mode} overlay loads`, timeout: 10_000 });
}

async function choose(page, mode) {
  if (!(await page.locator('#overlays-menu').isVisible())) await page.locator('#overlays-toggle').click();
  await page.locator(`#overlays-menu input[value="${mode}"]`).check();
}

describe('overlays', () => {
  let server, browser, A, me;

  before(async () => {
    server = await startServer({ args: ['--bench-token', BENCH_TOKEN, '--cooldown', '0', '--ip-rate', '0'] });
    browser = await launchBrowser();
    await placeAs(server.url, OTHER, ...P, BLUE);
    // The server counts the log in the background: poll until it has.
    const times = await until(async () => {
      const t = await activity(server.url);
      return t[P[1] * TILE + P[0]] > 0 && t;
    }, { what: 'the activity counts the placement', timeout: 15_000 });
    assert.equal(times[U[1] * TILE + U[0]], 0, 'never placed is 0');
    assert.ok(Math.abs(times[P[1] * TILE + P[0]] - Date.now() / 1000) < 60, 'unix seconds');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('virgin map: a placed pixel dark, a never placed one bright green', async () => {
    A = await openPage(browser, `${server.url}/#x=32&y=32&z=10`);
    const [p0, u0] = await shown(A.page, P, U);
    assert.deepEqual([p0, u0], [rgb('#0000EA'), rgb('#FFFFFF')], 'no overlay at first');
    assert.equal((await overlay(A.page)).mode, 'none');
    await A.page.locator('#overlays-toggle').click();
    assert.equal(await A.page.locator('#overlays-toggle').getAttribute('aria-expanded'), 'true');
    await choose(A.page, 'virgin');
    await overlayReady(A.page, 'virgin');
    const [p, u] = await shown(A.page, P, U);
    assert.ok(isDark(p), `placed: ${p}`);
    assert.ok(isGreen(u), `never placed: ${u}`);
    await A.page.locator('#overlays-legend').filter({ hasText: 'never placed' }).waitFor();
    await A.page.locator('#overlay-note').filter({ hasText: 'Virgin map' }).waitFor();
    assert.equal(await A.page.locator('#overlays-label').textContent(), 'Virgin map');
    await A.page.screenshot({ path: screenshotPath('overlays-virgin.png') });
  });

  test('heatmap: just placed is hot, never placed dimmed; a live placement heats up without a refetch', async () => {
    await choose(A.page, 'heat');
    await overlayReady(A.page, 'heat');
    const [p, u] = await shown(A.page, P, U);
    assert.ok(isHot(p), `just placed: ${p}`);
    assert.ok(isGrey(u, 130), `never placed: ${u}`);
    await A.page.locator('#overlays-legend').filter({ hasText: 'last hour' }).waitFor();

    // From now on the activity cannot be fetched: what heats up comes from the socket.
    await A.page.route('**/api/tiles/*/*/activity', (r) => r.abort());
    try {
      const L = [12, 10];
      const [l0] = await shown(A.page, L);
      assert.ok(isGrey(l0, 130), `before: ${l0}`);
      await placeAs(server.url, OTHER, ...L, BLUE);
      await until(async () => isHot((await shown(A.page, L))[0]), { what: 'the live pixel turns hot', timeout: 5000 });
      const [beside] = await shown(A.page, [13, 10]);
      assert.ok(isGrey(beside, 130), `its neighbour: ${beside}`);
      await A.page.screenshot({ path: screenshotPath('overlays-heat.png') });
    } finally {
      await A.page.unroute('**/api/tiles/*/*/activity');
    }
  });

  test("my pixels: mine in their colors, another user's dimmed; placing adds, someone else's removes", async () => {
    me = await A.page.evaluate(async () => (await (await fetch('/api/config')).json()).user.id);
    assert.match(me, /^[0-9a-f]{16}$/);
    const M = [20, 20];
    await placeAs(server.url, me, ...M, BLUE);
    const mine = (tx, ty) => A.page.evaluate(async ([x, y]) => (await (await fetch(`/api/me/pixels?tx=${x}&ty=${y}`)).json()), [tx, ty]);
    await until(async () => (await mine(0, 0)).pixels.includes(M[1] * TILE + M[0]), { what: '/api/me/pixels counts ours', timeout: 15_000 });
    assert.ok(!(await mine(0, 0)).pixels.includes(P[1] * TILE + P[0]), "another user's pixel is not mine");

    await choose(A.page, 'mine');
    await overlayReady(A.page, 'mine');
    await until(async () => {
      const [m, p, u] = await shown(A.page, M, P, U);
      return m.join() === rgb('#0000EA').join() && p[2] < 100 && isGrey(u, 100);
    }, { what: 'mine in its color, the others dimmed', timeout: 5000 });

    // No more answers from the server: what changes now is the page's own doing.
    await A.page.route('**/api/me/pixels*', (r) => r.abort());
    try {
      const N = [30, 20];
      const at = await pixelOnScreen(A.page, ...N);
      await A.page.mouse.click(at.x, at.y);
      await A.page.locator('#info-title').filter({ hasText: '(30, 20)' }).waitFor();
      await A.page.locator(`.swatch[data-color="${BLUE}"]`).click();
      const put = A.page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
      await A.page.locator('#place').click();
      assert.equal((await put).status(), 200);
      await until(async () => (await shown(A.page, N))[0].join() === rgb('#0000EA').join(), { what: 'our placement shows as ours at once', timeout: 3000 });

      // Someone else paints over one of ours: it is no longer ours.
      await placeAs(server.url, OTHER, ...M, RED);
      await until(async () => {
        const [m] = await shown(A.page, M);
        return m[0] < 120 && m[0] > m[2];
      }, { what: 'the pixel painted over is dimmed', timeout: 5000 });
      const [n] = await shown(A.page, N);
      assert.deepEqual(n, rgb('#0000EA'), 'ours still stands');
      await A.page.screenshot({ path: screenshotPath('overlays-mine.png') });
    } finally {
      await A.page.unroute('**/api/me/pixels*');
    }
    assert.deepEqual(A.errors, []);
  });

  test('the choice survives a reload; the note turns the overlay off', async () => {
    await A.page.reload();
    await waitLive(A.page);
    await overlayReady(A.page, 'mine');
    assert.equal(await A.page.locator('#overlays-menu input[value="mine"]').isChecked(), true);
    await A.page.locator('#overlay-off').click();
    assert.equal((await overlay(A.page)).mode, 'none');
    assert.equal(await A.page.locator('#overlay-note').isVisible(), false);
    const [u] = await shown(A.page, U);
    assert.deepEqual(u, rgb('#FFFFFF'));
    assert.equal(await A.page.evaluate(() => localStorage.getItem('rplace.overlay')), 'none');
    await A.context.close();
  });

  test('on a dark phone: the menu fits and works by keyboard; history mode hides the overlay', async () => {
    const B = await openPage(browser, `${server.url}/#x=32&y=32&z=6`, {
      viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true, colorScheme: 'dark',
    });
    const { page } = B;
    const toggle = page.locator('#overlays-toggle');
    const box = await toggle.boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390 && box.height >= 30, JSON.stringify(box));
    await toggle.focus();
    await page.keyboard.press('Enter');
    await page.locator('#overlays-menu').waitFor({ state: 'visible' });
    const menu = await page.locator('#overlays-menu').boundingBox();
    assert.ok(menu.x >= 0 && menu.x + menu.width <= 390 && menu.y + menu.height <= 844, JSON.stringify(menu));
    // Focus goes to the checked choice (None); an arrow picks the next: Heatmap.
    assert.equal(await page.evaluate(() => document.activeElement?.value), 'none');
    await page.keyboard.press('ArrowDown');
    await overlayReady(page, 'heat');
    await page.screenshot({ path: screenshotPath('overlays-phone.png') });
    await page.keyboard.press('Escape');
    assert.equal(await page.locator('#overlays-menu').isVisible(), false);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'overlays-toggle');

    const note = page.locator('#overlay-note');
    const n = await note.boundingBox();
    assert.ok(n && n.x >= 0 && n.x + n.width <= 390, JSON.stringify(n));
    await page.locator('#history-open').click();
    await note.filter({ hasText: 'Back to Live' }).waitFor({ timeout: 5000 });
    await page.locator('#history-close').click();
    await note.filter({ hasText: 'Heatmap' }).waitFor({ timeout: 5000 });
    assert.deepEqual(B.errors, []);
    await B.context.close();
  });

  test('zoomed out to the overviews nothing is fetched; zoomed in, only the tiles in view', async () => {
    const big = await startServer({ args: ['--width', '4096', '--height', '4096'] });
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await context.addInitScript(() => localStorage.setItem('rplace.overlay', 'virgin'));
      const page = await context.newPage();
      const traffic = recordTraffic(page);
      await page.goto(big.url);
      await waitLive(page);
      await until(async () => (await overlay(page)).reason === 'zoom', { what: 'the overlay waits for a zoom in' });
      await page.locator('#overlay-note').filter({ hasText: 'Zoom in to see the virgin map' }).waitFor();
      assert.equal((await page.evaluate(() => window.rplace.tiles)).level > 0, true);
      const fetched = () => traffic.requests.filter((r) => r.endsWith('/activity'));
      assert.deepEqual(fetched(), []);

      await page.evaluate(() => { location.hash = '#x=1000&y=700&z=8'; });
      const o = await until(async () => {
        const s = await overlay(page);
        return s.reason === '' && s.loaded.length > 0 && s;
      }, { what: 'the virgin map loads zoomed in', timeout: 10_000 });
      // 1280 x 800 CSS px at 8 px a pixel: x 920..1080, y 650..750, tiles (3, 2) and (4, 2).
      const inView = new Set(['3/2', '4/2']);
      for (const r of fetched()) {
        const [, tx, ty] = r.match(/\/api\/tiles\/(\d+)\/(\d+)\/activity/);
        assert.ok(inView.has(`${tx}/${ty}`), `${r} is in view`);
      }
      assert.ok(o.loaded.every(([tx, ty]) => inView.has(`${tx}/${ty}`)), JSON.stringify(o.loaded));
      const [u] = (await sampleCanvas(page, [[1000, 700]])).map((s) => rgb(s.color));
      assert.ok(isGreen(u), `a blank canvas is all virgin: ${u}`);
      await page.screenshot({ path: screenshotPath('overlays-zoomed-in.png') });
      await context.close();
    } finally {
      await big.dispose();
    }
  });
});
