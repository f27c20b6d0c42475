// The live feed survives the server going away: the page shows that it is reconnecting,
// comes back by itself, sends its view again and catches up each tile from its version
// with /api/tiles/{tx}/{ty}/updates (no second tile download), so placements made while
// it was away appear exactly once.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, startServer, waitLive } from './harness.mjs';

/** Places as a brand-new identity (a fresh cookie from /api/config), from Node. */
async function placeAsSomeone(url, x, y, color) {
  const cfg = await fetch(`${url}/api/config`);
  const cookie = cfg.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  assert.ok(cookie.includes('rplace_id='), 'the server hands out an identity cookie');
  const res = await fetch(`${url}/api/pixel`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', Cookie: cookie },
    body: JSON.stringify({ x, y, color }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

describe('reconnecting', () => {
  let server, browser, context, page;
  let blockSocket = false;
  const requests = [];
  const errors = [];

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1024, height: 700 } });
    page = await context.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => requests.push(new URL(r.url()).pathname + new URL(r.url()).search));
    // Passes the websocket through to the server, or refuses it while blockSocket is set.
    await page.routeWebSocket(/\/ws$/, (ws) => {
      if (blockSocket) ws.close({ code: 1011, reason: 'blocked by the test' });
      else ws.connectToServer();
    });
    await page.goto(server.url);
    await waitLive(page);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('live placements from someone else arrive', async () => {
    const r = await placeAsSomeone(server.url, 1, 1, 3);
    await page.waitForFunction(() => window.rplace.pixel(1, 1) === 3, null, { timeout: 1000 });
    assert.equal(await page.evaluate(() => window.rplace.seq), r.seq);
  });

  test('a server restart: reconnecting, then caught up without a tile reload', async () => {
    const seqBefore = await page.evaluate(() => window.rplace.seq);
    blockSocket = true;
    await server.stop(); // SIGTERM: the server closes websockets with 1001
    await page.waitForFunction(() => window.rplace.status === 'reconnecting', null, { timeout: 5000 });
    await page.locator('#status-text').filter({ hasText: /^reconnecting/ }).waitFor({ timeout: 2000 });
    await page.screenshot({ path: new URL('./artifacts/desktop-reconnecting.png', import.meta.url).pathname });

    server = await startServer({ port: server.port, dataDir: server.dataDir });
    // Made while the page cannot hear about them.
    const a = await placeAsSomeone(server.url, 2, 2, 4);
    const b = await placeAsSomeone(server.url, 3, 3, 6);
    assert.ok(a.seq > seqBefore && b.seq === a.seq + 1, JSON.stringify({ seqBefore, a, b }));
    // Deliberately lets time pass: nothing may reach the page while its socket is blocked
    // (a check that something does not happen has no event to wait for).
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate(() => window.rplace.pixel(2, 2)), 0);

    blockSocket = false;
    await page.waitForFunction(
      () => window.rplace.status === 'live' && window.rplace.pixel(2, 2) === 4 && window.rplace.pixel(3, 3) === 6,
      null, { timeout: 15_000, polling: 50 },
    );
    assert.equal(await page.evaluate(() => window.rplace.seq), b.seq);
    assert.equal(await page.evaluate(() => window.rplace.pixel(1, 1)), 3, 'the board from before the restart');
    // The 64² canvas is one tile: fetched once, caught up from its version.
    assert.equal(requests.filter((r) => r === '/api/tiles/0/0').length, 1, `requests: ${requests.join(' ')}`);
    assert.ok(requests.includes(`/api/tiles/0/0/updates?since=${seqBefore}`), `requests: ${requests.join(' ')}`);
    assert.equal(requests.filter((r) => r === '/api/board').length, 0);
    assert.equal(await page.locator('#status-text').textContent(), 'live');

    // And the feed is live again.
    await placeAsSomeone(server.url, 4, 4, 9);
    await page.waitForFunction(() => window.rplace.pixel(4, 4) === 9, null, { timeout: 1000 });
    assert.equal(await page.evaluate(() => window.rplace.seq), b.seq + 1);
  });

  test('offline shows as offline', async () => {
    await context.setOffline(true);
    await page.locator('#status-text').filter({ hasText: 'offline' }).waitFor({ timeout: 2000 });
    await context.setOffline(false);
    await page.waitForFunction(() => document.getElementById('status-text').textContent !== 'offline', null, { timeout: 5000 });
  });

  test('no page errors', () => {
    assert.deepEqual(errors, []);
  });
});
