// Two people (two browser contexts, two identities) on the real server: a pixel one
// places shows up live for the other, survives a reload, and starts a cooldown.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  canvasColorAt, launchBrowser, nextPaint, openPage, pixelOnScreen, screenshotPath, startServer, waitLive,
} from './harness.mjs';

describe('placing a pixel', () => {
  let server, browser, A, B, config;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    A = await openPage(browser, server.url);
    B = await openPage(browser, server.url);
    config = await (await fetch(`${server.url}/api/config`)).json();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('both pages load the board and go live', async () => {
    for (const { page } of [A, B]) {
      assert.equal(await page.evaluate(() => window.rplace.status), 'live');
      assert.equal(typeof (await page.evaluate(() => window.rplace.seq)), 'number');
      assert.equal(await page.evaluate(() => window.rplace.pixel(0, 0)), 0);
      assert.equal(await page.locator('#status-text').textContent(), 'live');
    }
    assert.equal(await A.page.title(), 'rplace · a shared pixel canvas');
  });

  test('a pixel placed in A appears in B within 1 s, and after a reload of B', async () => {
    const [x, y, color] = [10, 12, 5];
    assert.equal(await B.page.evaluate(([px, py]) => window.rplace.pixel(px, py), [x, y]), 0);

    // Select the pixel by clicking where it is on screen.
    const at = await pixelOnScreen(A.page, x, y);
    await A.page.mouse.click(at.x, at.y);
    await A.page.locator('#info-title').filter({ hasText: `(${x}, ${y})` }).waitFor();
    await A.page.locator(`.swatch[data-color="${color}"]`).click();
    assert.equal(await A.page.locator(`.swatch[data-color="${color}"]`).getAttribute('aria-checked'), 'true');

    const place = A.page.locator('#place');
    assert.equal(await place.isEnabled(), true);
    const put = A.page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await place.click();
    const res = await put;
    assert.equal(res.status(), 200, await res.text());
    const body = await res.json();
    assert.deepEqual(JSON.parse(res.request().postData()), { x, y, color });
    assert.equal(res.request().headers()['content-type'], 'application/json');

    const t0 = Date.now();
    await B.page.waitForFunction(
      ([px, py, c]) => window.rplace.pixel(px, py) === c,
      [x, y, color], { timeout: 1000, polling: 20 },
    );
    const took = Date.now() - t0;
    assert.ok(took <= 1000, `took ${took} ms`);
    assert.ok(await B.page.evaluate(() => window.rplace.seq) >= body.seq);
    assert.equal(await A.page.evaluate(([px, py]) => window.rplace.pixel(px, py), [x, y]), color);

    // B's canvas really shows it, in the palette's color.
    await nextPaint(B.page);
    const onB = await pixelOnScreen(B.page, x, y);
    assert.equal(await canvasColorAt(B.page, onB.x, onB.y), config.palette[color].toUpperCase());

    // A sees itself as the author; B sees someone else.
    await A.page.locator('#info-sub').filter({ hasText: '(you)' }).waitFor({ timeout: 3000 });
    const onBsel = await pixelOnScreen(B.page, x, y);
    await B.page.mouse.click(onBsel.x, onBsel.y);
    await B.page.locator('#info-sub').filter({ hasText: 'Placed by' }).waitFor({ timeout: 3000 });
    assert.ok(!(await B.page.locator('#info-sub').textContent()).includes('(you)'));

    await A.page.screenshot({ path: screenshotPath('desktop.png') });

    await B.page.reload();
    await waitLive(B.page);
    assert.equal(await B.page.evaluate(([px, py]) => window.rplace.pixel(px, py), [x, y]), color);
  });

  test('after placing, A shows the cooldown and Place is disabled until it ends', async () => {
    const place = A.page.locator('#place');
    const text = A.page.locator('#place-text');
    assert.match(await text.textContent(), /^00:0[12]$/);
    assert.equal(await place.isDisabled(), true);
    await A.page.screenshot({ path: screenshotPath('desktop-cooldown.png') });

    // The server agrees: placing now is refused with 429 and no change.
    const early = await A.page.evaluate(async () => {
      const r = await fetch('/api/pixel', { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ x: 1, y: 1, color: 2 }) });
      return { status: r.status, body: await r.json() };
    });
    assert.equal(early.status, 429);
    assert.equal(early.body.error, 'cooldown');

    // --cooldown 2: the button comes back by itself.
    await A.page.waitForFunction(() => !document.getElementById('place').disabled, null, { timeout: 4000 });
    assert.equal(await text.textContent(), 'Place');
  });

  test('a reload during the cooldown shows it from /api/config', async () => {
    const at = await pixelOnScreen(B.page, 20, 20);
    await B.page.mouse.click(at.x, at.y);
    await B.page.locator('.swatch[data-color="12"]').click();
    const put = B.page.waitForResponse((r) => r.url().endsWith('/api/pixel'));
    await B.page.keyboard.press('Enter');
    assert.equal((await put).status(), 200);
    await B.page.reload();
    await waitLive(B.page);
    assert.match(await B.page.locator('#place-text').textContent(), /^00:0[12]$/);
    assert.equal(await B.page.locator('#place').isDisabled(), true);
    assert.equal(await B.page.evaluate(() => window.rplace.pixel(20, 20)), 12);
  });

  test('server errors show in a toast', async () => {
    // Wait out A's cooldown, then make the server refuse: color out of the palette.
    await A.page.waitForFunction(() => !document.getElementById('place').disabled, null, { timeout: 4000 });
    const msg = await A.page.evaluate(async () => {
      const r = await fetch('/api/pixel', { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{"x":1,"y":1,"color":99}' });
      return (await r.json()).message;
    });
    assert.ok(msg);
    // Through the UI: intercept the PUT so the page gets a server error to show. A 503
    // may or may not have been applied, so the page retries it, with the same key.
    const keys = [];
    await A.page.route('**/api/pixel', (route) => {
      if (route.request().method() !== 'PUT') return route.continue();
      keys.push(route.request().headers()['idempotency-key']);
      return route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: 'unavailable', message: 'The store is having a moment' }) });
    });
    await A.page.locator('#place').click();
    await A.page.locator('.toast').filter({ hasText: 'The store is having a moment' }).waitFor({ timeout: 4000 });
    await A.page.unroute('**/api/pixel');
    assert.equal(keys.length, 3, 'one attempt and two retries');
    assert.match(keys[0], /^[A-Za-z0-9_-]{1,64}$/);
    assert.deepEqual(keys, [keys[0], keys[0], keys[0]], 'the retries reuse the key');
    assert.equal(await A.page.locator('#place').isEnabled(), true, 'no cooldown after a failed placement');
  });

  test('no page errors', () => {
    assert.deepEqual([...A.errors, ...B.errors], []);
  });
});
