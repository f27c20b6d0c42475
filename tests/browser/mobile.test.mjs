// A 390x844 phone with touch: the palette and the Place button are on screen and
// reachable, nothing overflows, and tap, one-finger pan and pinch work (tapzoom.test.mjs
// has the tap at low zoom).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, nextPaint, openPage, pixelOnScreen, screenshotPath, startServer, viewSettled } from './harness.mjs';

const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true };

describe('phone', () => {
  let server, browser, P, cdp;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    P = await openPage(browser, server.url, PHONE);
    cdp = await P.context.newCDPSession(P.page);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  /** Real multi-touch, which playwright's touchscreen (one finger taps) cannot do. */
  async function touch(frames) {
    const [first, ...rest] = frames;
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: first.map(([x, y], id) => ({ x, y, id })) });
    for (const pts of rest) {
      await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: pts.map(([x, y], id) => ({ x, y, id })) });
    }
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  }

  test('palette and Place button are inside the viewport, nothing overflows', async () => {
    const { page } = P;
    const inside = async (sel) => {
      const b = await page.locator(sel).boundingBox();
      assert.ok(b, `${sel} is visible`);
      assert.ok(b.x >= 0 && b.y >= 0 && b.x + b.width <= 390 && b.y + b.height <= 844, `${sel} at ${JSON.stringify(b)}`);
      return b;
    };
    const pal = await inside('#palette');
    const place = await inside('#place');
    for (const sw of await page.locator('.swatch').all()) {
      const b = await sw.boundingBox();
      assert.ok(b.x >= 0 && b.x + b.width <= 390 && b.y + b.height <= 844, `swatch at ${JSON.stringify(b)}`);
      assert.ok(b.width >= 30 && b.height >= 30, 'big enough for a finger');
    }
    // Within a thumb's reach: the lower part of the screen.
    assert.ok(place.y > 844 * 0.6 && pal.y > 844 * 0.5, JSON.stringify({ pal, place }));
    assert.ok(place.height >= 44);
    const overflow = await page.evaluate(() => ({
      w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight,
      touch: getComputedStyle(document.getElementById('board')).touchAction,
      meta: document.querySelector('meta[name=viewport]')?.content,
    }));
    assert.ok(overflow.w <= 390 && overflow.h <= 844, JSON.stringify(overflow));
    assert.equal(overflow.touch, 'none');
    assert.match(overflow.meta, /width=device-width/);
    // The whole board is visible and not under the dock.
    const br = await pixelOnScreen(page, 63, 63);
    assert.ok(br.y < pal.y && br.x < 390, JSON.stringify(br));
    await page.screenshot({ path: screenshotPath('phone.png') });
  });

  test('a tap selects (after one that zooms in to pixels big enough to aim at); a color and Place place', async () => {
    const { page } = P;
    const near = await pixelOnScreen(page, 30, 40);
    await page.touchscreen.tap(near.x, near.y);
    await viewSettled(page);
    assert.equal(await page.locator('#info-title').textContent(), 'Choose a pixel');
    const at = await pixelOnScreen(page, 30, 40);
    await page.touchscreen.tap(at.x, at.y);
    await page.locator('#info-title').filter({ hasText: '(30, 40)' }).waitFor({ timeout: 1000 });
    await page.locator('.swatch[data-color="13"]').tap();
    const put = page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await page.locator('#place').tap();
    assert.equal((await put).status(), 200);
    await page.waitForFunction(() => window.rplace.pixel(30, 40) === 13, null, { timeout: 1000 });
    await page.locator('#place.cooldown').waitFor({ timeout: 1000 });
    await nextPaint(page);
    await page.screenshot({ path: screenshotPath('phone-placed.png') });
  });

  test('one-finger drag pans without selecting', async () => {
    const { page } = P;
    await page.keyboard.press('Escape');
    const before = await page.evaluate(() => window.rplace.view);
    await touch([[[200, 300]], [[190, 300]], [[170, 290]], [[140, 280]], [[120, 270]]]);
    const after = await page.evaluate(() => window.rplace.view);
    assert.ok(Math.abs(after.x - before.x - 80 / before.zoom) < 0.01, JSON.stringify({ before, after }));
    assert.ok(Math.abs(after.y - before.y - 30 / before.zoom) < 0.01);
    assert.equal(await page.locator('#info-title').textContent(), 'Choose a pixel');
  });

  test('pinch zooms around the fingers', async () => {
    const { page } = P;
    await page.keyboard.press('0'); // the whole board again: the tap zoomed in
    const before = await viewSettled(page);
    const frames = [];
    for (let i = 0; i <= 10; i++) frames.push([[195 - 30 - 6 * i, 300], [195 + 30 + 6 * i, 300]]);
    await touch(frames); // fingers 60 px apart -> 180 px: zoom x3
    const after = await page.evaluate(() => window.rplace.view);
    assert.ok(Math.abs(after.zoom / before.zoom - 3) < 0.05, JSON.stringify({ before, after }));
    assert.equal(await page.locator('#info-title').textContent(), 'Choose a pixel', 'a pinch is no tap');
    await page.screenshot({ path: screenshotPath('phone-zoomed.png') });
  });

  test('no page errors', () => {
    assert.deepEqual(P.errors, []);
  });
});
