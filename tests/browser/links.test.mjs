// Links (link.js, share.js): opening the page leaves its URL alone until the user moves; a
// link with a point but no zoom fits the board, one with a zoom keeps it; the share button
// copies a link to the selected pixel and the area in view, which opens that pixel and
// that area on a phone too (fitted, not a crop at the desktop's zoom).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  launchBrowser, openPage, pixelOnScreen, screenshotPath, startServer, until, viewSettled,
} from './harness.mjs';

const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true };

/** The board area the canvas shows: [x0, y0, x1, y1] in board px. */
function shownArea(page) {
  return page.evaluate(() => {
    const r = document.getElementById('board').getBoundingClientRect();
    const v = window.rplace.view;
    return [v.x - r.width / 2 / v.zoom, v.y - r.height / 2 / v.zoom, v.x + r.width / 2 / v.zoom, v.y + r.height / 2 / v.zoom];
  });
}

/** The zoom at which the whole board fits, as view.js computes it for this page. */
function fitZoom(page) {
  return page.evaluate(() => window.rplace.fitZoom);
}

describe('links', () => {
  let server, browser;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('the bare page leaves the URL alone until the user pans, then writes the area', async () => {
    const P = await openPage(browser, server.url);
    const { page } = P;
    await viewSettled(page);
    // The page's hash writer is throttled (250 ms): wait out a few of its periods.
    const seen = [];
    await until(async () => { seen.push(await page.evaluate(() => location.href)); return seen.length >= 12; }, { every: 50 });
    assert.deepEqual([...new Set(seen)], [`${server.url}/`]);
    // A resize is no move either: the board is fitted again and the URL stays.
    await page.setViewportSize({ width: 900, height: 700 });
    const refit = await viewSettled(page);
    assert.ok(Math.abs(refit.zoom - await fitZoom(page)) < 1e-9, JSON.stringify(refit));
    assert.equal(await page.evaluate(() => location.hash), '');
    // A drag moves: now the URL says where, as an area (no zoom to pin).
    await page.mouse.move(450, 350);
    await page.mouse.down();
    for (let i = 1; i <= 5; i++) await page.mouse.move(450 - 10 * i, 350);
    await page.mouse.up();
    const h = await until(async () => {
      const p = await page.evaluate(() => Object.fromEntries(new URLSearchParams(location.hash.slice(1))));
      return p.x && p;
    }, { what: 'the hash after a pan' });
    assert.equal(h.z, undefined, JSON.stringify(h));
    const v = await page.evaluate(() => window.rplace.view);
    const r = await page.locator('#board').boundingBox();
    assert.ok(Math.abs(Number(h.x) - v.x) < 0.06 && Math.abs(Number(h.w) - r.width / v.zoom) < 0.06, JSON.stringify({ h, v, r }));
    assert.deepEqual(P.errors, []);
    await P.context.close();
  });

  test('a link with x and y but no zoom fits the board; a link with a zoom keeps it', async () => {
    const A = await openPage(browser, `${server.url}/#x=20&y=30`);
    const a = await viewSettled(A.page);
    assert.deepEqual([a.x, a.y], [20, 30]);
    assert.ok(Math.abs(a.zoom - await fitZoom(A.page)) < 1e-9, JSON.stringify(a));
    assert.equal(await A.page.evaluate(() => location.hash), '#x=20&y=30', 'not rewritten');
    await A.context.close();

    const B = await openPage(browser, `${server.url}/#x=20&y=30&z=24`, PHONE);
    assert.deepEqual(await viewSettled(B.page), { x: 20, y: 30, zoom: 24 });
    assert.equal(await B.page.evaluate(() => location.hash), '#x=20&y=30&z=24');
    assert.deepEqual([...A.errors, ...B.errors], []);
    await B.context.close();
  });

  test('Share copies a link to the pixel and the area; it opens them, fitted, on a phone', async () => {
    const A = await openPage(browser, server.url, { permissions: ['clipboard-read', 'clipboard-write'] });
    const { page } = A;
    // Zoom in on the top-left part, then select a pixel there.
    await page.evaluate(() => { location.hash = '#x=16&y=14&z=20'; });
    await until(async () => (await page.evaluate(() => window.rplace.view.zoom)) === 20, { what: 'the zoom of the hash' });
    const at = await pixelOnScreen(page, 11, 9);
    await page.mouse.click(at.x, at.y);
    await page.locator('#info-title').filter({ hasText: '(11, 9)' }).waitFor({ timeout: 2000 });
    const area = await shownArea(page);
    await page.locator('#share').click();
    await page.locator('.toast', { hasText: 'Link copied' }).waitFor({ timeout: 2000 });
    const link = await page.evaluate(() => navigator.clipboard.readText());
    const r = await page.locator('#board').boundingBox();
    const fmt = (n) => String(Number(n.toFixed(n < 100 ? 2 : 1)));
    assert.equal(link, `${server.url}/#x=16&y=14&w=${fmt(r.width / 20)}&h=${fmt(r.height / 20)}&p=11,9`);
    await page.screenshot({ path: screenshotPath('share-desktop.png') });

    const B = await openPage(browser, link, PHONE);
    await B.page.locator('#info-title').filter({ hasText: '(11, 9)' }).waitFor({ timeout: 2000 });
    assert.deepEqual(await B.page.evaluate(() => window.rplace.selected), { x: 11, y: 9 });
    // The same area, all of it: the phone's narrow canvas decides the zoom.
    const b = await viewSettled(B.page);
    const shown = await shownArea(B.page);
    assert.deepEqual([b.x, b.y], [16, 14]);
    assert.ok(shown[0] <= area[0] + 0.06 && shown[2] >= area[2] - 0.06 && shown[1] <= area[1] + 0.06 && shown[3] >= area[3] - 0.06,
      JSON.stringify({ area, shown }));
    assert.ok(Math.abs((shown[2] - shown[0]) - (area[2] - area[0])) < 0.1, 'no wider than needed');
    assert.equal(await B.page.evaluate(() => location.href), link, 'the link stays as it came');
    await B.page.screenshot({ path: screenshotPath('share-phone.png') });
    assert.deepEqual([...A.errors, ...B.errors], []);
    await A.context.close();
    await B.context.close();
  });
});
