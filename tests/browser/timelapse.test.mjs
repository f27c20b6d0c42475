// The Timelapse control of the main page: it opens with the region in view filled in,
// renders a job with visible progress, and offers the APNG to download once done; the
// downloaded file is an APNG with the frames asked for.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, startServer, viewSettled } from './harness.mjs';
import { fittingScale, visibleRegion } from '../../crates/web/static/timelapse.js';
import { View } from '../../crates/web/static/view.js';

const BENCH_TOKEN = 'browser-bench-token-0123456789';

async function placeAs(url, user, x, y, color) {
  const res = await fetch(`${url}/api/pixel`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${BENCH_TOKEN}`, 'X-Rplace-User': user },
    body: JSON.stringify({ x, y, color }),
  });
  assert.equal(res.status, 200, await res.text());
}

/** The `num_frames` of an APNG's acTL chunk, or null. */
function apngFrames(buf) {
  let at = 8;
  while (at + 8 <= buf.length) {
    const len = buf.readUInt32BE(at);
    const kind = buf.toString('latin1', at + 4, at + 8);
    if (kind === 'acTL') return buf.readUInt32BE(at + 8);
    if (kind === 'IDAT') return null;
    at += 12 + len;
  }
  return null;
}

describe('the region and scale the dialog proposes', () => {
  test('the region in view, in whole pixels, clamped to the board', () => {
    const view = new View(1000, 500);
    view.resize(200, 100, 0, 0);
    view.centerOn(500, 250, 2); // 100 x 50 board pixels on screen
    assert.deepEqual(visibleRegion(view, 1000, 500), { x: 450, y: 225, w: 100, h: 50 });
    view.centerOn(990.5, 2, 2); // off the right and top edges
    assert.deepEqual(visibleRegion(view, 1000, 500), { x: 940, y: 0, w: 60, h: 27 });
  });

  test('the scale shrinks until a frame fits 2048²', () => {
    assert.equal(fittingScale(100, 100, 8), 8);
    assert.equal(fittingScale(1000, 1000, 4), 2);
    assert.equal(fittingScale(2048, 2048, 3), 1);
    assert.equal(fittingScale(10, 10, 99), 8);
  });
});

describe('the timelapse control', () => {
  let server, browser;

  before(async () => {
    server = await startServer({ args: ['--bench-token', BENCH_TOKEN, '--ip-rate', '0'] });
    for (let i = 0; i < 20; i++) await placeAs(server.url, '00000000000000a1', i, i, (i % 15) + 1);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('renders the region in view with progress and offers the file', async () => {
    const { page, errors } = await openPage(browser, server.url, { acceptDownloads: true });
    await viewSettled(page);
    await page.click('#timelapse-open');
    const dialog = page.locator('#timelapse-dialog');
    await dialog.waitFor({ state: 'visible', timeout: 5000 });
    // The whole 64² board is in view at the fit zoom.
    const value = (id) => page.inputValue(`#timelapse-${id}`).then(Number);
    assert.deepEqual(
      [await value('x'), await value('y'), await value('w'), await value('h')],
      [0, 0, 64, 64],
    );
    await page.fill('#timelapse-frames', '10');
    await page.fill('#timelapse-scale', '2');
    await page.click('#timelapse-start');
    const link = page.locator('#timelapse-download');
    await link.waitFor({ state: 'visible', timeout: 30_000 });
    assert.match(await page.textContent('#timelapse-status'), /Done: 10 frames/);
    assert.equal(await page.evaluate(() => document.getElementById('timelapse-progress').value), 1);
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    assert.match(download.suggestedFilename(), /^timelapse-.*\.png$/);
    const stream = await download.createReadStream();
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const file = Buffer.concat(chunks);
    assert.equal(apngFrames(file), 10);
    assert.equal(file.readUInt32BE(16), 128, 'width: 64 at scale 2');
    await page.click('#timelapse-close');
    await dialog.waitFor({ state: 'hidden', timeout: 5000 });
    assert.deepEqual(errors, []);
  });

  test('a refused request says why in the dialog', async () => {
    const { page, errors } = await openPage(browser, server.url);
    await page.click('#timelapse-open');
    await page.fill('#timelapse-w', '64');
    await page.fill('#timelapse-x', '10');
    await page.click('#timelapse-start');
    await page.waitForFunction(
      () => document.getElementById('timelapse-status').dataset.kind === 'error',
      null,
      { timeout: 5000, polling: 50 },
    );
    assert.match(await page.textContent('#timelapse-status'), /w must be from 1 to 54/);
    assert.deepEqual(errors, []);
  });
});
