// The charges cooldown model on the page: the pool shows next to the Place button
// ("3/3 charges"), a placement spends one and starts the countdown to the next charge, an
// empty pool disables Place until a charge is back, and the charge comes back by itself.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, pixelOnScreen, screenshotPath, startServer } from './harness.mjs';

describe('charges', () => {
  let server, browser, A;

  before(async () => {
    server = await startServer({
      args: ['--cooldown-model', 'charges', '--charges-max', '3', '--charge-every', '6', '--ip-rate', '0'],
    });
    browser = await launchBrowser();
    A = await openPage(browser, server.url);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  async function placeAt(x, y, color) {
    const at = await pixelOnScreen(A.page, x, y);
    await A.page.mouse.click(at.x, at.y);
    await A.page.locator('#info-title').filter({ hasText: `(${x}, ${y})` }).waitFor();
    await A.page.locator(`.swatch[data-color="${color}"]`).click();
    const put = A.page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await A.page.locator('#place').click();
    const res = await put;
    assert.equal(res.status(), 200, await res.text());
    return res.json();
  }

  test('a new visitor sees a full pool next to the Place button', async () => {
    const charges = A.page.locator('#charges');
    assert.equal(await charges.textContent(), '3/3 charges');
    // Right after the button, in the controls.
    assert.equal(await A.page.evaluate(() => document.getElementById('place').nextElementSibling?.id), 'charges');
  });

  test('a placement spends a charge and the next one counts down', async () => {
    const body = await placeAt(5, 5, 3);
    assert.equal(body.charges, 2);
    const charges = A.page.locator('#charges');
    await A.page.waitForFunction(() => /^2\/3 charges, next in 0:0[56]$/.test(document.getElementById('charges').textContent), null, { timeout: 2000 });
    // Counts down by itself.
    await A.page.waitForFunction(() => /^2\/3 charges, next in 0:0[34]$/.test(document.getElementById('charges').textContent), null, { timeout: 4000 });
    // A charge is left: Place is not cooling down.
    assert.equal(await A.page.locator('#place').evaluate((b) => b.classList.contains('cooldown')), false);
    assert.match(await charges.textContent(), /next in/);
  });

  test('an empty pool disables Place until a charge is back', async () => {
    await placeAt(6, 5, 4);
    const last = await placeAt(7, 5, 5);
    assert.equal(last.charges, 0);
    await A.page.waitForFunction(() => document.getElementById('charges').textContent.startsWith('0/3 charges, next in'), null, { timeout: 2000 });
    assert.equal(await A.page.locator('#place').isDisabled(), true);
    await A.page.screenshot({ path: screenshotPath('charges-empty.png') });
    // The first charge spent comes back within its 6 s; Place is enabled again.
    await A.page.waitForFunction(() => /^[1-3]\/3 charges/.test(document.getElementById('charges').textContent), null, { timeout: 8000 });
    await A.page.waitForFunction(() => !document.getElementById('place').disabled, null, { timeout: 2000 });
    // The server agrees after a reload.
    await A.page.reload();
    await A.page.waitForFunction(() => window.rplace?.status === 'live', null, { timeout: 10_000 });
    assert.match(await A.page.locator('#charges').textContent(), /^[1-3]\/3 charges/);
  });
});
