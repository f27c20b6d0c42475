// Page details a new visitor meets: a dark theme that follows the system, a Place button
// whose text meets WCAG AA contrast, and a Place button that is off while the server
// cannot be reached (instead of failing on a click); swatches named for screen readers; the
// color preview on the selected pixel does not look like a placed pixel.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { canvasColorAt, launchBrowser, nextPaint, openPage, pixelOnScreen, sampleCanvas, screenshotPath, startServer } from './harness.mjs';

/** WCAG contrast ratio of two `rgb(r, g, b)` strings. */
function contrast(a, b) {
  const lum = (rgb) => {
    const [r, g, bl] = rgb.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

describe('page polish', () => {
  let server, browser;

  before(async () => {
    server = await startServer({ args: ['--cooldown', '0', '--ip-rate', '0'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  async function ready(page) {
    const at = await pixelOnScreen(page, 2, 2);
    await page.mouse.click(at.x, at.y);
    await page.locator('#info-title').filter({ hasText: '(2, 2)' }).waitFor();
    await page.locator('.swatch[data-color="3"]').click();
    await page.locator('#place:not([disabled])').waitFor({ timeout: 2000 });
  }

  test('the Place button text has at least 4.5:1 contrast', async () => {
    const A = await openPage(browser, server.url);
    await ready(A.page);
    const { bg, fg } = await A.page.locator('#place').evaluate((b) => {
      const s = getComputedStyle(b);
      return { bg: s.backgroundColor, fg: s.color };
    });
    assert.ok(contrast(bg, fg) >= 4.5, `Place: ${fg} on ${bg} is ${contrast(bg, fg).toFixed(2)}:1`);
    // Swatches are announced by name, not by hex code (r/place 2017's palette).
    const labels = await A.page.locator('.swatch').evaluateAll((bs) => bs.map((b) => b.getAttribute('aria-label')));
    assert.equal(labels[0], 'white (color 1)');
    assert.equal(labels[5], 'red (color 6)');
    assert.ok(labels.every((l) => !l.includes('#')), labels.join(' | '));
    await A.context.close();
  });

  test('a dark system theme gives a dark page', async () => {
    const light = await openPage(browser, server.url, { colorScheme: 'light' });
    const dark = await openPage(browser, server.url, { colorScheme: 'dark' });
    const colors = (page) => page.evaluate(() => ({
      body: getComputedStyle(document.body).backgroundColor,
      ink: getComputedStyle(document.querySelector('.coords')).color,
      card: getComputedStyle(document.querySelector('.dock')).backgroundColor,
    }));
    const l = await colors(light.page);
    const d = await colors(dark.page);
    const lum = (rgb) => rgb.match(/\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b, 0) / 3;
    assert.ok(lum(l.body) > 180, `light body ${l.body}`);
    assert.ok(lum(d.body) < 60, `dark body ${d.body}`);
    assert.ok(lum(d.ink) > 180, `dark text ${d.ink}`);
    assert.ok(contrast(d.ink, d.card.replace(/rgba\((\d+), (\d+), (\d+).*/, 'rgb($1, $2, $3)')) >= 4.5, `dark text on cards: ${d.ink} on ${d.card}`);
    // The canvas around the board is the page's background too, not the light one.
    const left = await pixelOnScreen(dark.page, 0, 32);
    await nextPaint(dark.page);
    const around = await canvasColorAt(dark.page, left.x - 60, left.y);
    assert.ok(lum(`rgb(${[1, 3, 5].map((i) => parseInt(around.slice(i, i + 2), 16)).join(', ')})`) < 60, `around the board: ${around}`);
    await dark.page.screenshot({ path: screenshotPath('dark-theme.png') });
    assert.deepEqual(dark.errors, []);
    await light.context.close();
    await dark.context.close();
  });

  test('Place is off while the server cannot be reached, and back after', async () => {
    const A = await openPage(browser, server.url);
    await ready(A.page);
    await A.context.setOffline(true);
    await A.page.locator('#place[disabled]').waitFor({ timeout: 3000 });
    assert.equal(await A.page.locator('#place-text').textContent(), 'Offline');
    await A.context.setOffline(false);
    await A.page.locator('#place:not([disabled])').waitFor({ timeout: 10_000 });
    assert.equal(await A.page.locator('#place-text').textContent(), 'Place');
    await A.context.close();
  });

  test('the keyboard alone selects and places, with a focus ring and a cursor', async () => {
    const A = await openPage(browser, server.url);
    await A.page.keyboard.press('Tab');
    // Tab reaches the canvas first; its ring shows for keyboard focus.
    assert.equal(await A.page.evaluate(() => document.activeElement?.id), 'board');
    const ring = await A.page.locator('#board').evaluate((c) => getComputedStyle(c).outlineStyle);
    assert.equal(ring, 'solid');
    for (let i = 0; i < 3; i++) await A.page.keyboard.press('ArrowRight');
    await A.page.locator('#key-cursor:not([hidden])').waitFor({ timeout: 2000 });
    const v = await A.page.evaluate(() => window.rplace.view);
    const [x, y] = [Math.floor(v.x), Math.floor(v.y)];
    await A.page.keyboard.press('Enter');
    await A.page.locator('#info-title').filter({ hasText: `(${x}, ${y})` }).waitFor({ timeout: 2000 });
    // A color by keyboard: Tab into the palette would leave the canvas; use the saved
    // pick instead, made by keyboard on a swatch (Enter places from there too).
    await A.page.locator('.swatch[data-color="9"]').focus();
    await A.page.keyboard.press('Space');
    await A.page.locator('#board').focus();
    const put = A.page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await A.page.keyboard.press('Enter');
    const res = await put;
    assert.equal(res.status(), 200);
    const sent = res.request().postDataJSON();
    assert.deepEqual([sent.x, sent.y, sent.color], [x, y, 9]);
    await A.page.screenshot({ path: screenshotPath('keyboard-cursor.png') });
    assert.deepEqual(A.errors, []);
    await A.context.close();
  });

  test('the preview of the chosen color on the selected pixel is no solid fill; placed, the pixel is', async () => {
    const A = await openPage(browser, `${server.url}/#x=10.5&y=10.5&z=40`);
    const { page } = A;
    const config = await page.evaluate(() => fetch('/api/config').then((r) => r.json()));
    const at = await pixelOnScreen(page, 10, 10);
    await page.mouse.click(at.x, at.y);
    await page.locator('#info-title').filter({ hasText: '(10, 10)' }).waitFor();
    // Focused by the click (so the keys work next), but the focus ring is the keyboard's.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'board');
    assert.equal(await page.locator('#board').evaluate((c) => getComputedStyle(c).outlineStyle), 'none');
    const color = 13;
    await page.locator(`.swatch[data-color="${color}"]`).click();
    await nextPaint(page);
    const grid = [];
    for (let i = 0; i < 10; i++) for (let j = 0; j < 10; j++) grid.push([(i + 0.5) / 10, (j + 0.5) / 10]);
    const chosen = config.palette[color].toUpperCase();
    const before = (await sampleCanvas(page, [[10, 10]], grid)).map((s) => s.color);
    const share = before.filter((c) => c === chosen).length / before.length;
    // The color shows (a preview), but neither over the whole pixel nor alone.
    assert.ok(share > 0.1 && share < 0.6, `${Math.round(share * 100)}% of the pixel is ${chosen}: ${[...new Set(before)].join(' ')}`);
    assert.ok(new Set(before).size >= 3, [...new Set(before)].join(' '));
    await page.screenshot({ path: screenshotPath('preview.png') });
    const put = page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await page.locator('#place').click();
    assert.equal((await put).status(), 200);
    await page.waitForFunction((c) => window.rplace.pixel(10, 10) === c, color, { timeout: 2000 });
    await nextPaint(page);
    // Placed: the pixel itself has the color, edge to edge (the grid line aside).
    const placed = (await sampleCanvas(page, [[10, 10]], grid.filter(([fx, fy]) => fx > 0.1 && fy > 0.1))).map((s) => s.color);
    assert.deepEqual([...new Set(placed)], [chosen]);
    assert.deepEqual(A.errors, []);
    await A.context.close();
  });
});

describe('the address limit, as a visitor reads it', () => {
  let server, browser;

  before(async () => {
    server = await startServer({ args: ['--cooldown', '0', '--ip-rate', '1', '--ip-burst', '1'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('a rate_limited refusal says what it means and when to try again, not the server\'s text', async () => {
    const A = await openPage(browser, server.url);
    const { page } = A;
    const at = await pixelOnScreen(page, 6, 6);
    await page.mouse.click(at.x, at.y);
    await page.locator('.swatch[data-color="4"]').click();
    const codes = [];
    for (let i = 0; i < 2; i++) {
      const put = page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
      await page.locator('#place:not([disabled])').click();
      const res = await put;
      codes.push(res.status() === 429 ? (await res.json()).error : res.status());
    }
    assert.deepEqual(codes, [200, 'rate_limited']);
    const toast = page.locator('.toast.error');
    await toast.waitFor({ timeout: 2000 });
    assert.match(await toast.textContent(), /^Many people place from your network right now; try again in \d+ s$/);
    await page.screenshot({ path: screenshotPath('rate-limited.png') });
    assert.deepEqual(A.errors, []);
    await A.context.close();
  });
});
