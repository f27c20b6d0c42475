// The proof of work through the page (docs/API.md, "Anti-bot"): with `--pow first` the
// page solves a challenge in its Web Worker ahead of time and its first placement carries
// the solution; with `--pow auto` an address that places fast gets 428, the page solves the
// challenge from the answer and places. Both at the default difficulty, for real.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, pixelOnScreen, screenshotPath, startServer } from './harness.mjs';

/** Records, from now on, whether "Verifying…" was ever shown. */
function watchVerifying() {
  window.__verifyingShown = false;
  new MutationObserver(() => {
    const el = document.getElementById('verifying');
    if (el && !el.hidden) window.__verifyingShown = true;
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['hidden'] });
}

/** Selects (x, y), picks `color`, presses Place; every PUT /api/pixel answer, in order,
 *  once the page shows the pixel. */
async function placeThroughPage(page, x, y, color) {
  const puts = [];
  const onResponse = (r) => {
    if (r.url().endsWith('/api/pixel') && r.request().method() === 'PUT') puts.push(r);
  };
  page.on('response', onResponse);
  const at = await pixelOnScreen(page, x, y);
  await page.mouse.click(at.x, at.y);
  await page.locator('#info-title').filter({ hasText: `(${x}, ${y})` }).waitFor();
  await page.locator(`.swatch[data-color="${color}"]`).click();
  await page.locator('#place').click();
  await page.waitForFunction(([px, py, c]) => window.rplace.pixel(px, py) === c, [x, y, color], { timeout: 30_000, polling: 50 });
  // Playwright may tell of a response after the page has used it (it waits for the
  // request's extra info), so the accepting PUT is awaited too, not assumed.
  const deadline = Date.now() + 10_000;
  while (!puts.some((r) => r.status() === 200) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  page.off('response', onResponse);
  return puts;
}

describe('proof of work in the page', () => {
  let browser;

  before(async () => {
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
  });

  test('--pow first: the first placement carries a solution found by the worker', async () => {
    const server = await startServer({ args: ['--pow', 'first'] });
    try {
      const { context, page, errors } = await openPage(browser, server.url);
      const config = await page.evaluate(() => fetch('/api/config').then((r) => r.json()));
      assert.equal(config.pow.mode, 'first');
      const puts = await placeThroughPage(page, 20, 21, 3);
      const last = puts.at(-1);
      assert.equal(last.status(), 200, await last.text());
      const proof = last.request().headers()['x-rplace-pow'];
      assert.match(proof, /^p1-[0-9a-f]{32}-[0-9a-f]{16}-\d+-\d+-\d+-[0-9a-f]{64}\.\d+$/);
      assert.ok(puts.every((r) => r.status() === 200 || r.status() === 428), puts.map((r) => r.status()).join());
      // Solved in the worker at the canvas's difficulty.
      const solved = await page.evaluate(() => window.rplacePow);
      assert.ok(solved.solved >= 1 && solved.lastHashes >= 1, JSON.stringify(solved));
      const info = await page.evaluate(() => fetch('/api/pixel?x=20&y=21').then((r) => r.json()));
      assert.equal(info.color, 3);
      await page.screenshot({ path: screenshotPath('pow-first.png') });
      assert.deepEqual(errors, []);
      await context.close();
    } finally {
      await server.dispose();
    }
  });

  test('--pow auto: a 428 is answered with a solution and the page shows "Verifying…"', async () => {
    const server = await startServer({ args: ['--pow', 'auto', '--pow-auto-per-minute', '1', '--cooldown', '0'] });
    try {
      const { context: ctx, page, errors } = await openPage(browser, server.url);
      await page.evaluate(watchVerifying);
      // A phone-class CPU, so the solution takes long enough to be seen.
      const cdp = await ctx.newCDPSession(page);
      await cdp.send('Emulation.setCPUThrottlingRate', { rate: 4 });
      const first = await placeThroughPage(page, 5, 6, 2);
      assert.deepEqual(first.map((r) => r.status()), [200]);
      const second = await placeThroughPage(page, 7, 6, 4);
      assert.deepEqual(second.map((r) => r.status()), [428, 200]);
      assert.equal((await second[0].json()).error, 'pow_required');
      assert.ok(second[1].request().headers()['x-rplace-pow']);
      assert.equal(await page.evaluate(() => window.__verifyingShown), true);
      assert.equal(await page.locator('#verifying').isHidden(), true);
      await page.screenshot({ path: screenshotPath('pow-auto.png') });
      assert.deepEqual(errors, []);
      await ctx.close();
    } finally {
      await server.dispose();
    }
  });
});
