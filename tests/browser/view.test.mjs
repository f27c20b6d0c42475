// Zoom and pan: wheel, drag and keys change window.rplace.view and the URL hash (the area
// shown, link.js); a drag never selects (so never places); a link with a hash opens the
// same view.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hashParams, launchBrowser, openPage, pixelOnScreen, startServer, viewSettled, waitLive } from './harness.mjs';

const view = (page) => page.evaluate(() => window.rplace.view);

/** Waits for the throttled history.replaceState to catch up with the view: the URL says
 * the area shown (link.js), so `z` here is the zoom that area means on this canvas. */
async function settledHash(page) {
  await page.waitForFunction(() => {
    const h = new URLSearchParams(location.hash.slice(1));
    const v = window.rplace.view;
    const w = document.getElementById('board').getBoundingClientRect().width;
    return Math.abs(w / Number(h.get('w')) - v.zoom) < 0.01 * v.zoom
      && Math.abs(Number(h.get('x')) - v.x) < 0.06 && Math.abs(Number(h.get('y')) - v.y) < 0.06;
  }, null, { timeout: 2000, polling: 50 });
  const h = await hashParams(page);
  const w = await page.evaluate(() => document.getElementById('board').getBoundingClientRect().width);
  return { ...h, z: String(w / Number(h.w)) };
}

describe('view', () => {
  let server, browser, P;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    P = await openPage(browser, server.url);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('default view: the whole board, centered', async () => {
    const v = await view(P.page);
    assert.deepEqual([v.x, v.y], [32, 32]);
    const tl = await pixelOnScreen(P.page, 0, 0);
    const br = await pixelOnScreen(P.page, 63, 63);
    assert.ok(tl.x > 0 && tl.y > 0 && br.x < 1280 && br.y < 800, JSON.stringify({ tl, br }));
  });

  test('the mouse wheel zooms toward the cursor', async () => {
    const { page } = P;
    const before = await view(page);
    const target = await pixelOnScreen(page, 16, 16);
    await page.mouse.move(target.x, target.y);
    await page.mouse.wheel(0, -400);
    await page.waitForFunction((z) => window.rplace.view.zoom > z * 1.5, before.zoom, { timeout: 2000 });
    const after = await viewSettled(page); // the zoom eases in
    // The pixel under the cursor stayed under the cursor.
    const again = await pixelOnScreen(page, 16, 16);
    assert.ok(Math.abs(again.x - target.x) < after.zoom && Math.abs(again.y - target.y) < after.zoom,
      JSON.stringify({ target, again, after }));
    const h = await settledHash(page);
    assert.ok(Number(h.z) > before.zoom * 1.5, JSON.stringify(h));

    // Zooming out is clamped: the board never shrinks to nothing.
    for (let i = 0; i < 10; i++) await page.mouse.wheel(0, 2000);
    const out = await viewSettled(page);
    assert.ok(out.zoom * 64 > 100, `board only ${out.zoom * 64}px wide`);
    // And zooming in stops at a sane maximum with 40+ screen px per pixel.
    for (let i = 0; i < 20; i++) await page.mouse.wheel(0, -2000);
    const max = await viewSettled(page);
    assert.ok(max.zoom >= 40 && max.zoom <= 200, `max zoom ${max.zoom}`);
  });

  test('dragging pans and does not select a pixel', async () => {
    const { page } = P;
    await page.keyboard.press('0'); // whole board
    const before = await viewSettled(page);
    await page.mouse.move(640, 400);
    await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(640 - 12 * i, 400 - 6 * i);
    await page.mouse.up();
    const after = await view(page);
    assert.ok(Math.abs(after.x - before.x - 120 / before.zoom) < 0.01, JSON.stringify({ before, after }));
    assert.ok(Math.abs(after.y - before.y - 60 / before.zoom) < 0.01);
    assert.equal(await page.locator('#info-title').textContent(), 'Choose a pixel');
    assert.equal(await page.locator('#place').isDisabled(), true);
    const h = await settledHash(page);
    assert.ok(Math.abs(Number(h.x) - after.x) < 0.06);
  });

  test('a click (tiny movement) selects the pixel under it', async () => {
    const { page } = P;
    const at = await pixelOnScreen(page, 40, 30);
    await page.mouse.move(at.x, at.y);
    await page.mouse.down();
    await page.mouse.move(at.x + 1, at.y + 1);
    await page.mouse.up();
    await page.locator('#info-title').filter({ hasText: '(40, 30)' }).waitFor({ timeout: 1000 });
    assert.equal(await page.locator('#coords-xy').textContent(), '(40, 30)');
    await page.keyboard.press('Escape');
    await page.locator('#info-title').filter({ hasText: 'Choose a pixel' }).waitFor({ timeout: 1000 });
  });

  test('arrow keys and WASD pan, +/- zoom', async () => {
    const { page } = P;
    const v0 = await view(page);
    await page.keyboard.press('ArrowRight');
    const v1 = await view(page);
    assert.ok(v1.x > v0.x, JSON.stringify({ v0, v1 }));
    await page.keyboard.press('s');
    const v2 = await view(page);
    assert.ok(v2.y > v1.y);
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('w');
    const v3 = await view(page);
    assert.ok(Math.abs(v3.x - v0.x) < 1e-9 && Math.abs(v3.y - v0.y) < 1e-9);
    await page.keyboard.press('+');
    await page.waitForFunction((z) => window.rplace.view.zoom > z * 1.3, v3.zoom, { timeout: 2000 });
    await page.keyboard.press('-');
    await page.waitForFunction((z) => Math.abs(window.rplace.view.zoom - z) < 0.05, v3.zoom, { timeout: 2000 });
    const h = await settledHash(page);
    assert.ok(Math.abs(Number(h.x) - v3.x) < 0.06);
  });

  test('a link with #x=&y=&z= opens that view', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${server.url}/#x=10.5&y=20&z=16`);
    await waitLive(page);
    assert.deepEqual(await view(page), { x: 10.5, y: 20, zoom: 16 });
    // Board point (10.5, 20) is at the center of the screen: pixel (10, 20)'s center is
    // half a pixel (8 px at zoom 16) below it.
    const c = await pixelOnScreen(page, 10, 20);
    assert.ok(Math.abs(c.x - 640) < 0.01 && Math.abs(c.y - 408) < 0.01, JSON.stringify(c));
    await context.close();
  });

  test('no page errors', () => {
    assert.deepEqual(P.errors, []);
  });
});
