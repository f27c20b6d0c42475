// The canvas shows the board exactly: every pixel in its palette color, crisp (no
// smoothing between neighbours) at small, odd and large zooms, including a burst of
// live updates. A drawing is made through the load generator's path (--bench-token),
// which places without cooldown.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, nextPaint, openPage, screenshotPath, startServer } from './harness.mjs';

const TOKEN = 'browser-test-token';

/** A little picture: palette stripes on top, a heart below. [x, y, color] */
function drawing() {
  const px = [];
  for (let c = 0; c < 16; c++) for (let x = c * 4; x < c * 4 + 4; x++) for (let y = 0; y < 6; y++) px.push([x, y, c]);
  const heart = [
    '..XXX...XXX..',
    '.XXXXX.XXXXX.',
    'XXXXXXXXXXXXX',
    'XXXXXXXXXXXXX',
    '.XXXXXXXXXXX.',
    '..XXXXXXXXX..',
    '...XXXXXXX...',
    '....XXXXX....',
    '.....XXX.....',
    '......X......',
  ];
  heart.forEach((row, dy) => [...row].forEach((ch, dx) => {
    if (ch === 'X') px.push([26 + dx, 24 + dy, 5]);
  }));
  return px;
}

async function bench(url, x, y, color, user = '00000000000000b1') {
  const res = await fetch(`${url}/api/pixel`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${TOKEN}`, 'X-Rplace-User': user },
    body: JSON.stringify({ x, y, color }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

/** For each board pixel in `pixels`, the canvas color at a few points inside it. */
function sampleCanvas(page, pixels, fractions) {
  return page.evaluate(([pixels, fractions]) => {
    const c = document.getElementById('board');
    const r = c.getBoundingClientRect();
    const k = c.width / r.width;
    const ctx = c.getContext('2d');
    const v = window.rplace.view;
    const out = [];
    for (const [x, y] of pixels) {
      for (const [fx, fy] of fractions) {
        const sx = r.width / 2 + (x + fx - v.x) * v.zoom;
        const sy = r.height / 2 + (y + fy - v.y) * v.zoom;
        if (sx < 0 || sy < 0 || sx >= r.width || sy >= r.height) continue;
        const d = ctx.getImageData(Math.floor(sx * k), Math.floor(sy * k), 1, 1).data;
        out.push({ x, y, fx, fy, color: '#' + [d[0], d[1], d[2]].map((n) => n.toString(16).padStart(2, '0')).join('').toUpperCase() });
      }
    }
    return out;
  }, [pixels, fractions]);
}

describe('rendering', () => {
  let server, browser, P, palette;
  const art = drawing();

  before(async () => {
    server = await startServer({ args: ['--bench-token', TOKEN, '--sync', 'normal'] });
    for (const [x, y, c] of art) await bench(server.url, x, y, c);
    palette = (await (await fetch(`${server.url}/api/config`)).json()).palette.map((c) => c.toUpperCase());
    browser = await launchBrowser();
    P = await openPage(browser, server.url);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  const expected = (x, y) => {
    let c = 0;
    for (const [ax, ay, ac] of art) if (ax === x && ay === y) c = ac;
    return c;
  };

  // Pixels of every color, the heart's edges (color next to white) and plain white.
  const probes = [];
  for (let c = 0; c < 16; c++) probes.push([c * 4, 2], [c * 4 + 3, 5]);
  probes.push([26, 26], [38, 26], [32, 33], [31, 33], [33, 33], [27, 24], [30, 24], [40, 40], [63, 63], [0, 63]);

  for (const zoom of [5, 7.3, 13, 48]) {
    test(`every probed pixel shows its exact color at zoom ${zoom}`, async () => {
      const { page } = P;
      // Look at the heart, at this zoom, through the URL like a shared link.
      await page.evaluate((z) => { location.hash = `#x=32&y=20&z=${z}`; }, zoom);
      await page.waitForFunction((z) => window.rplace.view.zoom === z, zoom);
      await nextPaint(page);
      for (const [x, y] of probes) assert.equal(await page.evaluate(([a, b]) => window.rplace.pixel(a, b), [x, y]), expected(x, y));
      // Points well inside each pixel: smoothing would blend neighbours there.
      const inset = Math.min(0.45, 1.5 / zoom);
      const fr = [[0.5, 0.5], [inset, inset], [1 - inset, 1 - inset], [inset, 1 - inset]];
      const samples = await sampleCanvas(page, probes, fr);
      assert.ok(samples.length >= 12, `only ${samples.length} samples on screen`);
      const wrong = samples.filter((s) => s.color !== palette[expected(s.x, s.y)]);
      assert.deepEqual(wrong, []);
      if (zoom === 13) await page.screenshot({ path: screenshotPath('desktop-art.png') });
    });
  }

  test('a burst of live updates lands on the canvas', async () => {
    const { page } = P;
    await page.evaluate(() => { location.hash = '#x=32&y=32&z=9'; });
    await page.waitForFunction(() => window.rplace.view.zoom === 9);
    const burst = [];
    for (let i = 0; i < 40; i++) burst.push([8 + (i % 10), 44 + Math.floor(i / 10), (i % 15) + 1]);
    await Promise.all(burst.map(([x, y, c], i) => bench(server.url, x, y, c, `00000000000001${(i + 16).toString(16).padStart(2, '0')}`)));
    await page.waitForFunction((b) => b.every(([x, y, c]) => window.rplace.pixel(x, y) === c), burst, { timeout: 2000 });
    await nextPaint(page);
    const samples = await sampleCanvas(page, burst.map(([x, y]) => [x, y]), [[0.5, 0.5], [0.2, 0.8]]);
    const want = new Map(burst.map(([x, y, c]) => [`${x},${y}`, palette[c]]));
    assert.deepEqual(samples.filter((s) => s.color !== want.get(`${s.x},${s.y}`)), []);
  });

  test('no page errors', () => {
    assert.deepEqual(P.errors, []);
  });
});

describe('a 20-color palette (8 bits per pixel)', () => {
  let server, browser, P;
  const palette = [
    '#FFFFFF', '#000000', '#FF0000', '#00FF00', '#0000FF', '#FFFF00', '#FF00FF', '#00FFFF',
    '#808080', '#800000', '#008000', '#000080', '#808000', '#800080', '#008080', '#C0C0C0',
    '#FFA500', '#A52A2A', '#123456', '#ABCDEF',
  ];

  before(async () => {
    server = await startServer({ args: ['--palette', palette.join(','), '--bench-token', TOKEN] });
    for (let c = 0; c < 20; c++) await bench(server.url, c * 3, 10, c);
    browser = await launchBrowser();
    P = await openPage(browser, server.url);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('decodes the 8-bit board and shows every color, live too', async () => {
    const { page } = P;
    const cfg = await (await fetch(`${server.url}/api/config`)).json();
    assert.equal(cfg.bits_per_pixel, 8);
    assert.equal(await page.locator('.swatch').count(), 20);
    const board = await page.evaluate(() => Array.from({ length: 20 }, (_, c) => window.rplace.pixel(c * 3, 10)));
    assert.deepEqual(board, Array.from({ length: 20 }, (_, c) => c));
    const samples = await sampleCanvas(page, Array.from({ length: 20 }, (_, c) => [c * 3, 10]), [[0.5, 0.5]]);
    assert.deepEqual(samples.map((s) => s.color), palette);
    await bench(server.url, 5, 5, 19);
    await page.waitForFunction(() => window.rplace.pixel(5, 5) === 19, null, { timeout: 1000 });
    await nextPaint(page);
    const [s] = await sampleCanvas(page, [[5, 5]], [[0.5, 0.5]]);
    assert.equal(s.color, '#ABCDEF');
    await page.screenshot({ path: screenshotPath('desktop-palette20.png') });
  });

  test('no page errors', () => {
    assert.deepEqual(P.errors, []);
  });
});
