// The moderators' page at /admin, with the admin token: it shows the live canvas; a
// report filed from the main page reaches its queue, is resolved and audited; and a
// rollback is previewed (drawn on the admin canvas, nothing changes for anyone), then
// applied, and a second, ordinary page sees the pixels revert live. Screenshots of each
// panel go to artifacts/ (docs/MODERATION.md shows copies from docs/img/).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openPage, pixelOnScreen, screenshotPath, startServer, until, viewSettled } from './harness.mjs';

const ADMIN_TOKEN = 'browser-admin-token-0123456789abcdef';
const BENCH_TOKEN = 'browser-bench-token-0123456789';
const GRIEFER = '00000000000000aa';
const OTHER = '00000000000000bb';

/** Places as `user` through the load generator's path, from Node. */
async function placeAs(url, user, x, y, color) {
  const res = await fetch(`${url}/api/pixel`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${BENCH_TOKEN}`, 'X-Rplace-User': user },
    body: JSON.stringify({ x, y, color }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text);
}

async function adminJson(url, path) {
  const res = await fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(res.status, 200, `${path}: ${res.status}`);
  return res.json();
}

/** The admin page's own read-only handle. */
const adminPixel = (page, x, y) => page.evaluate(([a, b]) => window.rplaceAdmin.pixel(a, b), [x, y]);

describe('the admin page', () => {
  let server, browser, admin, adminErrors;

  before(async () => {
    server = await startServer({
      args: ['--admin-token', ADMIN_TOKEN, '--bench-token', BENCH_TOKEN, '--cooldown', '0', '--ip-rate', '0'],
    });
    browser = await launchBrowser();
    const context = await browser.newContext({ viewport: { width: 1360, height: 820 } });
    admin = await context.newPage();
    adminErrors = [];
    admin.on('pageerror', (e) => adminErrors.push(`pageerror: ${e.stack ?? e}`));
    await admin.goto(`${server.url}/admin`);
    await admin.waitForFunction(() => window.rplaceAdmin?.status === 'live', null, { timeout: 10_000, polling: 50 });
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('without credentials it says so; with the admin token it shows the live canvas', async () => {
    await admin.locator('body[data-auth="none"]').waitFor({ timeout: 5000 });
    assert.match(await admin.locator('#auth-state').textContent(), /Not signed in/);
    await admin.fill('#token', ADMIN_TOKEN);
    await admin.click('#token-form button[type="submit"]');
    await admin.locator('body[data-auth="ok"]').waitFor({ timeout: 5000 });
    // The token stays for this tab only, and the field is cleared.
    assert.equal(await admin.evaluate(() => sessionStorage.getItem('rplace.adminToken')), ADMIN_TOKEN);
    assert.equal(await admin.inputValue('#token'), '');
    const box = await admin.locator('#board').boundingBox();
    assert.ok(box.width > 400 && box.height > 300, JSON.stringify(box));
    // Live: a placement shows up on the admin canvas by itself.
    await placeAs(server.url, OTHER, 1, 1, 6);
    await until(async () => (await adminPixel(admin, 1, 1)) === 6, { what: 'the admin canvas is live' });
  });

  test('a report from the main page reaches the queue, is resolved and audited', async () => {
    await placeAs(server.url, GRIEFER, 10, 10, 3);
    const { page: main, errors } = await openPage(browser, server.url);
    await main.waitForFunction(() => window.rplace.pixel(10, 10) === 3, null, { timeout: 5000 });
    await viewSettled(main);
    const p = await pixelOnScreen(main, 10, 10);
    await main.mouse.click(p.x, p.y);
    await main.locator('#report-open').waitFor({ state: 'visible', timeout: 5000 });
    await main.click('#report-open');
    await main.fill('#report-reason', 'an offensive drawing');
    await main.screenshot({ path: screenshotPath('report-dialog.png') });
    await main.click('#report-send');
    await main.locator('#report-dialog').waitFor({ state: 'hidden', timeout: 5000 });
    assert.deepEqual(errors, []);
    await main.context().close();

    await admin.click('#tab-reports');
    const item = admin.locator('#reports-list li.report', { hasText: 'an offensive drawing' });
    await until(async () => {
      if (await item.count()) return true;
      await admin.click('#tab-reports'); // reloads the queue
      return false;
    }, { what: 'the report in the queue', every: 200 });
    await item.locator('button.item-main').click();
    const detail = admin.locator('#report-detail');
    await detail.locator('h3').waitFor({ timeout: 5000 });
    assert.match(await detail.textContent(), new RegExp(`placed by ${GRIEFER}`));
    await admin.waitForTimeout(50); // let the jump's redraw land before the screenshot
    await admin.screenshot({ path: screenshotPath('admin-reports.png') });

    await admin.fill('#resolve-resolution', 'removed the drawing');
    await admin.click('#resolve-submit');
    await detail.locator('p.ok', { hasText: 'Resolved' }).waitFor({ timeout: 5000 });
    const { reports } = await adminJson(server.url, '/api/admin/reports?status=resolved');
    assert.equal(reports[0].resolved.resolution, 'removed the drawing');

    await admin.click('#tab-audit');
    const entry = admin.locator('#audit-list li[data-kind="resolve_report"]');
    await entry.waitFor({ timeout: 5000 });
    assert.match(await entry.textContent(), /removed the drawing/);
    await admin.screenshot({ path: screenshotPath('admin-audit.png') });
  });

  test('a rollback is previewed on the admin canvas, then applied and seen live by a second page', async () => {
    // Someone drew first; the griefer paints a line over it and next to it; someone else
    // paints over the griefer's last pixel afterwards, which the rollback must keep. With
    // the griefer's pixel at (10, 10) from the report, 10 pixels revert.
    await placeAs(server.url, OTHER, 20, 20, 2);
    const line = [];
    for (let x = 20; x < 30; x++) line.push(await placeAs(server.url, GRIEFER, x, 20, 5));
    await placeAs(server.url, OTHER, 29, 20, 7);
    const { page: second, errors } = await openPage(browser, server.url);
    const expectAfter = (x) => (x === 20 ? 2 : x === 29 ? 7 : 0);
    await second.waitForFunction(() => window.rplace.pixel(25, 20) === 5 && window.rplace.pixel(29, 20) === 7, null, { timeout: 5000 });

    await admin.evaluate(() => window.rplaceAdmin.fit());
    await admin.click('#tab-users');
    await admin.fill('#lookup-user', GRIEFER);
    await admin.click('#lookup-go');
    await until(async () => (await admin.evaluate(() => window.rplaceAdmin.marks)) >= 10, { what: "the user's pixels drawn" });
    assert.equal(await admin.locator('#lookup-count').textContent(), String(line.length + 1));
    await admin.screenshot({ path: screenshotPath('admin-users.png') });

    await admin.click('#lookup-result button:has-text("Roll back")');
    assert.equal(await admin.inputValue('#rollback-user'), GRIEFER);
    await admin.fill('#rewrite-reason', 'griefing line');
    await admin.click('#rollback-preview');
    await admin.locator('#rollback-result strong[data-pixels="10"]').waitFor({ timeout: 5000 });
    const preview = await admin.evaluate(() => window.rplaceAdmin.preview);
    assert.deepEqual(preview.bbox, { x: 10, y: 10, w: 19, h: 11 });
    await admin.screenshot({ path: screenshotPath('admin-rollback-preview.png') });
    // A preview changes nothing, for anyone.
    for (let x = 20; x < 29; x++) {
      assert.equal(await second.evaluate((a) => window.rplace.pixel(a, 20), x), 5, `second page at ${x} during the preview`);
      assert.equal(await adminPixel(admin, x, 20), 5, `admin canvas at ${x} during the preview`);
    }
    assert.equal(await second.evaluate(() => window.rplace.pixel(10, 10)), 3);

    await admin.click('#rollback-apply');
    await admin.locator('#rollback-result strong[data-applied="10"]').waitFor({ timeout: 10_000 });
    await second.waitForFunction(
      () => [20, 21, 22, 23, 24, 25, 26, 27, 28, 29].every((x) => window.rplace.pixel(x, 20) === (x === 20 ? 2 : x === 29 ? 7 : 0)),
      null, { timeout: 10_000, polling: 50 },
    );
    for (let x = 20; x < 30; x++) assert.equal(await adminPixel(admin, x, 20), expectAfter(x), `admin canvas at ${x}`);
    await second.waitForFunction(() => window.rplace.pixel(10, 10) === 0, null, { timeout: 5000 });
    assert.equal(await admin.evaluate(() => window.rplaceAdmin.preview), null);
    await second.screenshot({ path: screenshotPath('admin-rollback-second-page.png') });
    await admin.screenshot({ path: screenshotPath('admin-rollback-applied.png') });
    assert.deepEqual(errors, []);
    await second.context().close();

    const audit = await adminJson(server.url, '/api/admin/audit?kind=rollback');
    assert.equal(audit.entries[0].pixels, 10);
    assert.equal(audit.entries[0].reason, 'griefing line');
  });

  test('an area selected by dragging, filled with a preview', async () => {
    // Select an area by dragging on the canvas with "Select area" on, the whole board in view.
    await admin.evaluate(() => window.rplaceAdmin.fit());
    await admin.click('#area-select');
    const from = await areaPoint(admin, 40, 40);
    const to = await areaPoint(admin, 49, 47);
    await admin.mouse.move(from.x, from.y);
    await admin.mouse.down();
    await admin.mouse.move(to.x, to.y, { steps: 5 });
    await admin.mouse.up();
    assert.deepEqual(await admin.evaluate(() => window.rplaceAdmin.rect), { x: 40, y: 40, w: 10, h: 8 });
    assert.equal(await admin.locator('#area-text').textContent(), '40,40 10×8');
    await admin.click('#area-select');

    await admin.click('#tab-rewrite');
    await admin.click('#fill-colors button[data-color="12"]');
    await admin.click('#fill-preview');
    await admin.locator('#fill-result strong[data-pixels="80"]').waitFor({ timeout: 5000 })
      .catch(async (e) => { throw new Error(`${e.message}; the page says: ${await admin.locator('#toasts').textContent()}`); });
    assert.deepEqual((await admin.evaluate(() => window.rplaceAdmin.preview)).bbox, { x: 40, y: 40, w: 10, h: 8 });
    assert.equal(await adminPixel(admin, 45, 45), 0, 'a preview changes nothing');
    await admin.locator('#fill-preview').scrollIntoViewIfNeeded();
    await admin.screenshot({ path: screenshotPath('admin-fill-preview.png') });
    await admin.click('#fill-apply');
    await admin.locator('#fill-result strong[data-applied="80"]').waitFor({ timeout: 10_000 });
    await until(async () => (await adminPixel(admin, 49, 47)) === 12, { what: 'the fill reaches the admin canvas' });
    assert.deepEqual(adminErrors, []);
  });

  test('bans and protected areas', async () => {
    // A visitor with a real identity cookie (the load generator's path is exempt from
    // every rule, bans included).
    const first = await fetch(`${server.url}/api/config`);
    const cookie = first.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const visitor = (await first.json()).user.id;
    await admin.click('#tab-bans');
    await admin.fill('#ban-target', visitor);
    await admin.fill('#ban-reason', 'griefing');
    await admin.click('#ban-submit');
    await admin.locator('#ban-list li', { hasText: visitor }).waitFor({ timeout: 5000 });
    await admin.screenshot({ path: screenshotPath('admin-bans.png') });
    const banned = await fetch(`${server.url}/api/pixel`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json', Cookie: cookie },
      body: JSON.stringify({ x: 0, y: 0, color: 1 }),
    });
    assert.equal(banned.status, 403);
    const refusal = await banned.json();
    assert.equal(refusal.error, 'banned');
    assert.equal(refusal.reason, 'griefing');

    await admin.evaluate(() => window.rplaceAdmin.setRect({ x: 2, y: 40, w: 12, h: 10 }));
    await admin.click('#tab-protect');
    await admin.fill('#protect-reason', 'the event logo');
    await admin.click('#protect-submit');
    await admin.locator('#protect-list li', { hasText: 'the event logo' }).waitFor({ timeout: 5000 });
    await admin.screenshot({ path: screenshotPath('admin-protect.png') });
    const { areas } = await adminJson(server.url, '/api/admin/protect');
    assert.deepEqual(areas.map((a) => a.rect), [{ x: 2, y: 40, w: 12, h: 10 }]);
    assert.deepEqual(adminErrors, []);
  });
});

/** Where pixel (x, y)'s center is on the admin page's screen. */
function areaPoint(page, x, y) {
  return page.evaluate(([px, py]) => {
    const c = document.getElementById('board');
    const r = c.getBoundingClientRect();
    const v = window.rplaceAdmin.view;
    return { x: r.left + r.width / 2 + (px + 0.5 - v.x) * v.zoom, y: r.top + r.height / 2 + (py + 0.5 - v.y) * v.zoom };
  }, [x, y]);
}
