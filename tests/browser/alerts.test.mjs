// The end of a cooldown, when asked for (notify.js): nothing happens until the bell's menu
// turns it on; turning notifications on asks the browser's permission then and only then;
// the choice is kept; and when a cooldown ends in a background tab a notification is shown
// and a short WebAudio chime plays.
//
// Observed, not faked: an init script wraps the Notification constructor and
// requestPermission, and AudioContext.createOscillator, to count what the page does with
// them. Headless Chromium's tabs are always "visible", so the same script lets the test
// say the tab went to the background (document.visibilityState and its event).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, pixelOnScreen, screenshotPath, startServer, waitLive } from './harness.mjs';

function watch() {
  window.__notes = [];
  window.__asked = 0;
  window.__tones = 0;
  const N = window.Notification;
  class Watched extends N {
    constructor(title, options) {
      window.__notes.push({ title, body: options?.body, tag: options?.tag, state: document.visibilityState });
      super(title, options);
    }
  }
  Object.defineProperty(Watched, 'permission', { get: () => N.permission });
  Watched.requestPermission = (...a) => { window.__asked++; return N.requestPermission(...a); };
  window.Notification = Watched;
  const osc = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function createOscillator() { window.__tones++; return osc.call(this); };
  let hidden = false;
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
  window.__setHidden = (h) => { hidden = h; document.dispatchEvent(new Event('visibilitychange')); };
}

describe('cooldown alerts', () => {
  let server, browser, context, page;
  const errors = [];

  before(async () => {
    server = await startServer({ args: ['--cooldown', '2', '--ip-rate', '0'] });
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, permissions: ['notifications'] });
    await context.addInitScript(watch);
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.stack ?? e}`));
    await page.goto(server.url);
    await waitLive(page);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  const counts = () => page.evaluate(() => ({ notes: window.__notes, asked: window.__asked, tones: window.__tones }));

  /** Places at (x, y), then sends the tab to the background until the cooldown is over. */
  async function placeAndWaitInBackground(x, y) {
    await page.evaluate(() => window.__setHidden(false));
    const at = await pixelOnScreen(page, x, y);
    await page.mouse.click(at.x, at.y);
    await page.locator('#info-title').filter({ hasText: `(${x}, ${y})` }).waitFor();
    await page.locator('.swatch[data-color="5"]').click();
    const put = page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await page.locator('#place').click();
    assert.equal((await put).status(), 200);
    await page.locator('#place.cooldown').waitFor({ timeout: 2000 });
    await page.evaluate(() => window.__setHidden(true));
    await page.waitForFunction(() => document.title.startsWith('Ready to place'), null, { timeout: 6000, polling: 50 });
  }

  test('off by default: a cooldown ends in the background without a sound or a notification, and nothing is asked', async () => {
    assert.equal(await page.locator('#alerts-toggle').getAttribute('data-on'), 'false');
    await placeAndWaitInBackground(3, 3);
    assert.deepEqual(await counts(), { notes: [], asked: 0, tones: 0 });
  });

  test('turned on in the bell menu: permission asked once, kept, then a notification and a chime in the background', async () => {
    await page.evaluate(() => window.__setHidden(false));
    await page.locator('#alerts-toggle').click();
    await page.locator('#alerts:not([hidden])').waitFor();
    await page.locator('#alerts-notify').check();
    await page.waitForFunction(() => window.__asked === 1, null, { timeout: 2000 });
    await page.locator('#alerts-sound').check();
    // Turning the sound on lets it be heard once: two tones.
    await page.waitForFunction(() => window.__tones === 2, null, { timeout: 2000 });
    assert.equal(await page.locator('#alerts-toggle').getAttribute('data-on'), 'true');
    assert.deepEqual(JSON.parse(await page.evaluate(() => localStorage.getItem('rplace.alerts'))), { notify: true, sound: true });
    await page.screenshot({ path: screenshotPath('alerts-menu.png') });
    await page.keyboard.press('Escape');
    await page.locator('#alerts').waitFor({ state: 'hidden' });

    await placeAndWaitInBackground(4, 4);
    await page.waitForFunction(() => window.__notes.length === 1 && window.__tones === 4, null, { timeout: 2000 });
    const { notes, asked } = await counts();
    assert.equal(asked, 1, 'asked once, when turned on');
    assert.deepEqual(notes, [{ title: 'You can place a pixel again', body: 'Your cooldown on rplace is over.', tag: 'rplace-ready', state: 'hidden' }]);
  });

  test('a cooldown that ends while the tab is looked at chimes but shows no notification', async () => {
    const at = await pixelOnScreen(page, 5, 5);
    await page.evaluate(() => window.__setHidden(false));
    await page.mouse.click(at.x, at.y);
    await page.locator('#info-title').filter({ hasText: '(5, 5)' }).waitFor();
    await page.locator('#place:not([disabled])').click();
    await page.locator('#place.cooldown').waitFor({ timeout: 2000 });
    await page.locator('#place:not(.cooldown)').waitFor({ timeout: 6000 });
    await page.waitForFunction(() => window.__tones === 6, null, { timeout: 2000 });
    assert.equal((await counts()).notes.length, 1);
  });

  test('the choice is remembered after a reload, without asking again', async () => {
    await page.reload();
    await waitLive(page);
    assert.equal(await page.locator('#alerts-toggle').getAttribute('data-on'), 'true');
    await page.locator('#alerts-toggle').click();
    assert.equal(await page.locator('#alerts-notify').isChecked(), true);
    assert.equal(await page.locator('#alerts-sound').isChecked(), true);
    // Turned off: stays off, and the next cooldown is silent again.
    await page.locator('#alerts-notify').uncheck();
    await page.locator('#alerts-sound').uncheck();
    assert.equal(await page.locator('#alerts-toggle').getAttribute('data-on'), 'false');
    assert.deepEqual(await counts(), { notes: [], asked: 0, tones: 0 });
    assert.deepEqual(errors, []);
  });
});

describe('cooldown alerts in the charges model', () => {
  let server, browser;

  before(async () => {
    server = await startServer({ args: ['--cooldown-model', 'charges', '--charges-max', '1', '--charge-every', '2', '--ip-rate', '0'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('the charge that ends an empty pool is told, in the background', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, permissions: ['notifications'] });
    await context.addInitScript(watch);
    await context.addInitScript(() => localStorage.setItem('rplace.alerts', JSON.stringify({ notify: true, sound: false })));
    const page = await context.newPage();
    await page.goto(server.url);
    await waitLive(page);
    assert.equal(await page.locator('#alerts-toggle').getAttribute('data-on'), 'true', 'kept from before');
    const at = await pixelOnScreen(page, 7, 7);
    await page.mouse.click(at.x, at.y);
    await page.locator('.swatch[data-color="6"]').click();
    const put = page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await page.locator('#place').click();
    const body = await (await put).json();
    assert.equal(body.charges, 0, 'the only charge spent');
    await page.locator('#place.cooldown').waitFor({ timeout: 2000 });
    await page.evaluate(() => window.__setHidden(true));
    await page.waitForFunction(() => window.__notes.length === 1, null, { timeout: 6000 });
    const { notes, asked } = await page.evaluate(() => ({ notes: window.__notes, asked: window.__asked }));
    assert.equal(notes[0].state, 'hidden');
    assert.equal(asked, 0, 'granted already and not turned on here: not asked');
    await context.close();
  });
});
