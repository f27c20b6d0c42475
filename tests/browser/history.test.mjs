// History mode (crates/web/static/history.js): a link with `&seq=S` opens the canvas at
// that moment, the slider scrubs through the placements, play runs to the newest one,
// and "Live" goes back to the live canvas.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  canvasColorAt, hashParams, launchBrowser, nextPaint, openPage, pixelOnScreen, screenshotPath, startServer, until,
} from './harness.mjs';

const BENCH_TOKEN = 'browser-bench-token-history-0123456789';

async function placeAs(url, x, y, color) {
  const res = await fetch(`${url}/api/pixel`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${BENCH_TOKEN}`, 'X-Rplace-User': '00000000000000cc' },
    body: JSON.stringify({ x, y, color }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

describe('history mode', () => {
  let server, browser, config, seqs;

  before(async () => {
    server = await startServer({ args: ['--bench-token', BENCH_TOKEN, '--cooldown', '0', '--ip-rate', '0', '--history-keyframe-every', '2'] });
    browser = await launchBrowser();
    config = await (await fetch(`${server.url}/api/config`)).json();
    seqs = [];
    for (const color of [3, 7, 12]) seqs.push((await placeAs(server.url, 20, 20, color)).seq);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  /** The color the canvas shows at board pixel (x, y). */
  async function shown(page, x, y) {
    await nextPaint(page);
    const p = await pixelOnScreen(page, x, y);
    return canvasColorAt(page, p.x, p.y);
  }

  const color = (i) => config.palette[i].toUpperCase();

  /** Drags the slider to `value`, as a person would (an input event per move). */
  const scrub = (page, value) => page.evaluate((v) => {
    const s = document.getElementById('history-slider');
    s.value = String(v);
    s.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);

  test('a link to a moment opens the canvas then; the slider and play move through time', async () => {
    const { page, errors } = await openPage(browser, `${server.url}/#x=20&y=20&z=16&seq=${seqs[0]}`);
    await page.locator('#history-panel').waitFor({ state: 'visible', timeout: 5000 });
    await until(async () => (await shown(page, 20, 20)) === color(3), { what: 'the first placement shown', timeout: 5000 });
    assert.equal(await page.inputValue('#history-slider'), String(seqs[0]));
    assert.equal(await page.getAttribute('#history-slider', 'max'), String(seqs[2]));
    // Live, the pixel is the last color: the page shows the past, not the live tile.
    await until(async () => (await page.evaluate(() => window.rplace.pixel(20, 20))) === 12, { what: 'the live tile has the newest color' });

    // Scrub to the second placement.
    await scrub(page, seqs[1]);
    await until(async () => (await shown(page, 20, 20)) === color(7), { what: 'the second placement shown', timeout: 5000 });
    await until(async () => (await hashParams(page)).seq === String(seqs[1]), { what: 'the moment in the URL' });
    await page.screenshot({ path: screenshotPath('history.png') });

    // Before any placement the pixel is blank.
    await scrub(page, 0);
    await until(async () => (await shown(page, 20, 20)) === color(0), { what: 'the blank canvas at seq 0', timeout: 5000 });

    // Play runs to the newest placement and stops there.
    await page.click('#history-play');
    await until(async () => (await page.inputValue('#history-slider')) === String(seqs[2]), { what: 'play reaches the head', timeout: 10_000 });
    await until(async () => (await shown(page, 20, 20)) === color(12), { what: 'the newest placement shown', timeout: 5000 });
    assert.equal(await page.textContent('#history-play'), '▶');

    // Back to live: the panel goes, the moment leaves the URL.
    await page.click('#history-close');
    assert.equal(await page.locator('#history-panel').isVisible(), false);
    await until(async () => (await hashParams(page)).seq === undefined, { what: 'the moment leaves the URL' });
    assert.equal(await shown(page, 20, 20), color(12));
    assert.deepEqual(errors, []);
  });

  test('the History button opens the newest moment; a time link resolves to its seq', async () => {
    const { page, errors } = await openPage(browser, `${server.url}/#x=20&y=20&z=16`);
    assert.equal(await page.locator('#history-panel').isVisible(), false);
    await page.click('#history-open');
    await page.locator('#history-panel').waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await page.inputValue('#history-slider'), String(seqs[2]));
    const before = (await fetch(`${server.url}/api/tiles/0/0?seq=${seqs[0]}`)).headers.get('x-board-seq');
    assert.equal(before, String(seqs[0]));
    // A time before the first placement: the blank canvas, seq 0.
    const { page: p2, errors: e2 } = await openPage(browser, `${server.url}/#x=20&y=20&z=16&at=1000`);
    await p2.locator('#history-panel').waitFor({ state: 'visible', timeout: 5000 });
    await until(async () => (await p2.inputValue('#history-slider')) === '0', { what: 'at resolves to seq 0' });
    await until(async () => (await shown(p2, 20, 20)) === color(0), { what: 'blank at seq 0', timeout: 5000 });
    assert.deepEqual([...errors, ...e2], []);
  });
});
