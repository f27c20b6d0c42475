// Tap to zoom (input.js): on a phone, a tap at a zoom where pixels are too small to aim at
// (under TAP_SELECT_ZOOM.touch CSS px) glides in toward the tapped point and selects
// nothing; once pixels are big enough, a tap selects exactly the pixel under the finger.
// A mouse click on a canvas too big to aim at zooms in the same way.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TAP_SELECT_ZOOM } from '../../crates/web/static/input.js';
import { launchBrowser, openPage, pixelOnScreen, screenshotPath, startServer, viewSettled } from './harness.mjs';

const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true };

/** The board point under a screen point (page coordinates). */
function boardAt(page, sx, sy) {
  return page.evaluate(([x, y]) => {
    const r = document.getElementById('board').getBoundingClientRect();
    const v = window.rplace.view;
    return { x: v.x + (x - r.left - r.width / 2) / v.zoom, y: v.y + (y - r.top - r.height / 2) / v.zoom };
  }, [sx, sy]);
}

describe('tap to zoom', () => {
  let server, browser;

  before(async () => {
    server = await startServer({ args: ['--width', '1024', '--height', '1024'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('on a phone, a tap far out zooms toward the finger; a tap close in selects that pixel', async () => {
    const P = await openPage(browser, server.url, PHONE);
    const { page } = P;
    const start = await viewSettled(page);
    assert.ok(start.zoom < 1, `a 1024² board on a phone opens with pixels under 1 px: ${start.zoom}`);
    const finger = { x: 120, y: 300 };
    const aimed = await boardAt(page, finger.x, finger.y);
    await page.touchscreen.tap(finger.x, finger.y);
    const zoomed = await viewSettled(page);
    assert.ok(zoomed.zoom >= TAP_SELECT_ZOOM.touch, `zoomed in to ${zoomed.zoom}`);
    assert.equal(await page.evaluate(() => window.rplace.selected), null, 'the first tap selects nothing');
    assert.equal(await page.locator('#info-title').textContent(), 'Choose a pixel');
    // Toward the finger: the board point tapped is still under it.
    const under = await boardAt(page, finger.x, finger.y);
    assert.ok(Math.abs(under.x - aimed.x) < 0.05 && Math.abs(under.y - aimed.y) < 0.05, JSON.stringify({ aimed, under }));
    await page.screenshot({ path: screenshotPath('tapzoom-zoomed.png') });

    // Now pixels are big: a tap selects the one under the finger, and zooms no further.
    const px = { x: Math.floor(aimed.x) + 2, y: Math.floor(aimed.y) - 1 };
    const at = await pixelOnScreen(page, px.x, px.y);
    await page.touchscreen.tap(at.x, at.y);
    await page.locator('#info-title').filter({ hasText: `(${px.x}, ${px.y})` }).waitFor({ timeout: 2000 });
    assert.deepEqual(await page.evaluate(() => window.rplace.selected), px);
    assert.equal((await viewSettled(page)).zoom, zoomed.zoom);
    // Near a pixel's edge still hits it: a quarter pixel in from its left edge.
    const edge = { x: at.x - zoomed.zoom / 4, y: at.y };
    await page.touchscreen.tap(edge.x, edge.y);
    await page.waitForFunction((p) => window.rplace.selected?.x === p.x && window.rplace.selected?.y === p.y, px, { timeout: 2000 });
    await page.screenshot({ path: screenshotPath('tapzoom-selected.png') });
    assert.deepEqual(P.errors, []);
    await P.context.close();
  });

  test('a mouse click where pixels are under 4 px zooms in too, then selects', async () => {
    const P = await openPage(browser, server.url, { viewport: { width: 1280, height: 800 } });
    const { page } = P;
    const start = await viewSettled(page);
    assert.ok(start.zoom < 1, `fit zoom ${start.zoom}`);
    await page.mouse.click(700, 350);
    const zoomed = await viewSettled(page);
    assert.ok(zoomed.zoom >= 4, `zoomed to ${zoomed.zoom}`);
    assert.equal(await page.evaluate(() => window.rplace.selected), null);
    const b = await boardAt(page, 700, 350);
    await page.mouse.click(700, 350);
    await page.waitForFunction((p) => window.rplace.selected?.x === p.x && window.rplace.selected?.y === p.y,
      { x: Math.floor(b.x), y: Math.floor(b.y) }, { timeout: 2000 });
    assert.deepEqual(P.errors, []);
    await P.context.close();
  });
});
