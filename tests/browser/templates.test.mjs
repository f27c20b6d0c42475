// Templates on the real server: one uploaded through the API, opened by a link, drawn
// over the canvas as dots at high zoom, its wrong pixels counted; "next wrong pixel"
// selects one and picks its color, placing it lowers the count, and the page's own link
// restores the template with its opacity.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import {
  launchBrowser, nextPaint, openPage, sampleCanvas, screenshotPath, startServer, until,
} from './harness.mjs';

/** A PNG chunk: length, type, data, CRC. */
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body) >>> 0);
  return Buffer.concat([len, body, crc]);
}

/** An 8-bit RGBA PNG of `rows` ([[r, g, b, a], ...] per row). */
function rgbaPng(rows) {
  const w = rows[0].length, h = rows.length;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  const raw = Buffer.concat(rows.map((row) => Buffer.from([0, ...row.flat()])));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

const RED = [0xe5, 0, 0, 255], BLUE = [0, 0, 0xea, 255], WHITE = [255, 255, 255, 255];
const BLACK = [0x22, 0x22, 0x22, 255], CLEAR = [0, 0, 0, 0];
/** At (20, 20) on a blank canvas: 7 wrong (red, red, blue, 4 black), 4 right (white). */
const ROWS = [
  [RED, RED, CLEAR, BLUE],
  [WHITE, WHITE, WHITE, WHITE],
  [BLACK, BLACK, BLACK, BLACK],
];
const AT = { x: 20, y: 20 };

describe('templates', () => {
  let server, browser, A, id;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    // Any visitor with an identity uploads: the cookie from /api/config.
    const config = await fetch(`${server.url}/api/config`);
    const cookie = config.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const res = await fetch(`${server.url}/api/templates?x=${AT.x}&y=${AT.y}&name=flag`, {
      method: 'POST', headers: { 'content-type': 'image/png', cookie }, body: rgbaPng(ROWS),
    });
    const body = await res.json();
    assert.equal(res.status, 201, JSON.stringify(body));
    id = body.id;
    assert.match(id, /^[0-9A-Za-z]{10}$/);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  const counts = (page) => page.evaluate(() => window.rplace.templates[0] ?? null);

  test('a link shows the template over the canvas and counts its wrong pixels', async () => {
    A = await openPage(browser, `${server.url}/#x=22&y=21.5&z=24&t=${id}:100`);
    const c = await until(async () => {
      const t = await counts(A.page);
      // Counted once every tile under it has loaded (before that, pixels are unknown).
      return t?.wrong !== undefined && t.unknown === 0 && t;
    }, { what: 'the template loads and is counted' });
    assert.deepEqual({ wrong: c.wrong, right: c.right, unknown: c.unknown, opacity: c.opacity }, { wrong: 7, right: 4, unknown: 0, opacity: 1 });
    await A.page.locator('#templates-toggle').click();
    await A.page.locator('.template-count').filter({ hasText: '7 wrong, 4 right' }).waitFor();
    assert.equal(await A.page.locator('.template-opacity').inputValue(), '100');

    // Dots at the pixels' centers in the template's colors; the rest of each pixel (and
    // the transparent one) shows the canvas, white.
    await nextPaint(A.page);
    const px = [[20, 20], [23, 20], [22, 20], [21, 22]];
    const centers = await sampleCanvas(A.page, px, [[0.5, 0.5]]);
    assert.deepEqual(centers.map((s) => s.color), ['#E50000', '#0000EA', '#FFFFFF', '#222222']);
    const edges = await sampleCanvas(A.page, px, [[0.12, 0.5]]);
    assert.deepEqual(edges.map((s) => s.color), ['#FFFFFF', '#FFFFFF', '#FFFFFF', '#FFFFFF']);
    await A.page.screenshot({ path: screenshotPath('templates.png') });
    assert.deepEqual(A.errors, []);
  });

  test('next wrong pixel selects it with its color, and placing it lowers the count', async () => {
    await A.page.locator('.template-next').click();
    const sel = await until(() => A.page.evaluate(() => window.rplace.selected), { what: 'a pixel is selected' });
    assert.deepEqual(sel, { x: 20, y: 20 });
    assert.equal(await A.page.evaluate(() => window.rplace.color), 5);
    assert.equal(await A.page.locator('.swatch[data-color="5"]').getAttribute('aria-checked'), 'true');

    const put = A.page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await A.page.locator('#place').click();
    assert.equal((await put).status(), 200);
    await until(async () => (await counts(A.page))?.wrong === 6, { what: 'the count drops to 6' });
    assert.equal((await counts(A.page)).right, 5);
    await A.page.locator('.template-count').filter({ hasText: '6 wrong, 5 right' }).waitFor();

    // The next one is the next in reading order: (21, 20).
    await A.page.locator('.template-next').click();
    await until(async () => JSON.stringify(await A.page.evaluate(() => window.rplace.selected)) === '{"x":21,"y":20}',
      { what: 'the next wrong pixel is selected' });
    await A.page.screenshot({ path: screenshotPath('templates-next.png') });
  });

  test("the page's link restores the template and its opacity", async () => {
    // A slider cannot be typed into: set it as a drag would, input then change.
    await A.page.locator('.template-opacity').evaluate((el) => {
      el.value = '40';
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    });
    const hash = await until(async () => {
      const h = await A.page.evaluate(() => location.hash);
      return h.includes(`t=${id}:40`) && h;
    }, { what: 'the hash names the template at 40%' });
    const B = await openPage(browser, `${server.url}/${hash}`);
    const t = await until(async () => {
      const c = await counts(B.page);
      return c?.wrong !== undefined && c.unknown === 0 && c;
    }, { what: 'the template is restored' });
    assert.equal(t.id, id);
    assert.equal(t.opacity, 0.4);
    assert.equal(t.wrong, 6);
    assert.deepEqual(B.errors, []);
    await B.context.close();
  });
});
