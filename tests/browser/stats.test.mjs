// Presence and stats on the page: the "N online" pill counts open pages live (from the
// websocket's hello and online messages), and its dialog shows the canvas's counts and
// the visitor's own, equal to what was placed.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, pixelOnScreen, screenshotPath, startServer } from './harness.mjs';

describe('presence and stats', () => {
  let server, browser, A;

  before(async () => {
    server = await startServer({ args: ['--cooldown', '0', '--ip-rate', '0'] });
    browser = await launchBrowser();
    A = await openPage(browser, server.url);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  const onlineIs = (page, n, timeout) =>
    page.waitForFunction((n) => document.getElementById('online-n')?.textContent === String(n), n, { timeout, polling: 100 });

  test('the online pill counts pages and follows a second one live', async () => {
    await onlineIs(A.page, 1, 5000);
    assert.equal(await A.page.locator('#online').isVisible(), true);
    const B = await openPage(browser, server.url);
    // B knows at once (its hello); A at the next presence round (every 5 s).
    await onlineIs(B.page, 2, 5000);
    await onlineIs(A.page, 2, 15_000);
    await B.context.close();
    await onlineIs(A.page, 1, 15_000);
  });

  test('the stats dialog shows what was placed', async () => {
    for (const [x, y, color] of [[3, 3, 5], [4, 3, 5], [5, 3, 7]]) {
      const at = await pixelOnScreen(A.page, x, y);
      await A.page.mouse.click(at.x, at.y);
      await A.page.locator('#info-title').filter({ hasText: `(${x}, ${y})` }).waitFor();
      await A.page.locator(`.swatch[data-color="${color}"]`).click();
      const put = A.page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
      await A.page.locator('#place').click();
      assert.equal((await put).status(), 200);
    }
    // The counts follow the log within a couple of seconds: reopen until they do.
    const deadline = Date.now() + 15_000;
    for (;;) {
      await A.page.locator('#online').click();
      const dialog = A.page.locator('#stats-dialog');
      await dialog.waitFor({ state: 'visible' });
      await A.page.waitForFunction(() => document.getElementById('stats-placements').textContent !== '–', null, { timeout: 5000 });
      const placed = await A.page.locator('#stats-placements').textContent();
      const mine = await A.page.locator('#stats-mine').textContent();
      if ((placed === '3' && mine === '3') || Date.now() > deadline) {
        assert.equal(placed, '3');
        assert.equal(mine, '3');
        break;
      }
      await A.page.locator('#stats-close').click();
      await A.page.waitForTimeout(500);
    }
    assert.equal(await A.page.locator('#stats-placers').textContent(), '1');
    // Colors sorted by count: color 5 (two pixels) first, then 7.
    const rows = await A.page.locator('#stats-colors li').evaluateAll((ls) => ls.map((l) => l.getAttribute('aria-label')));
    assert.equal(rows.length, 16);
    assert.match(rows[0], /: 2 pixels$/);
    assert.match(rows[1], /: 1 pixel$/);
    await A.page.screenshot({ path: screenshotPath('stats.png') });
    assert.deepEqual(A.errors, []);
  });
});
