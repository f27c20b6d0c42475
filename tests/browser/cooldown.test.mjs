// The cooldown beyond the Place button (cooldown-share.js): the tab's title counts it
// down, a second tab of the same browser learns of a placement in the first at once
// (BroadcastChannel) instead of by a refusal, and the unit behaviour of the title
// ("Ready to place" once a cooldown ended in a tab nobody looked at).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CooldownShare, cooldownTitle } from '../../crates/web/static/cooldown-share.js';
import { launchBrowser, pixelOnScreen, screenshotPath, startServer, waitLive } from './harness.mjs';

describe('cooldown title and tabs (unit)', () => {
  test('the title counts down, then says ready only if the tab was not looked at', () => {
    assert.equal(cooldownTitle('rplace', 61_500, false), '(01:02) rplace');
    assert.equal(cooldownTitle('rplace', 0, false), 'rplace');
    assert.equal(cooldownTitle('rplace', 0, true), 'Ready to place · rplace');
    const listeners = {};
    const doc = { title: 'rplace', visibilityState: 'hidden', addEventListener: (k, f) => { listeners[k] = f; } };
    const s = new CooldownShare({ doc, Channel: null, onRemote: () => {} });
    s.update(3000);
    assert.equal(doc.title, '(00:03) rplace');
    s.update(0);
    assert.equal(doc.title, 'Ready to place · rplace');
    doc.visibilityState = 'visible';
    listeners.visibilitychange();
    assert.equal(doc.title, 'rplace');
    // Seen while it ended: no "ready".
    s.update(1000);
    s.update(0);
    assert.equal(doc.title, 'rplace');
  });

  test('a placement is told to the other tabs as time left, and odd messages are ignored', () => {
    const sent = [];
    class Channel { constructor() { Channel.last = this; } postMessage(m) { sent.push(m); } }
    const remote = [];
    const doc = { title: 't', visibilityState: 'visible' };
    const s = new CooldownShare({ doc, Channel, onRemote: (end) => remote.push(end) });
    s.placed(5000);
    s.placed(0);
    assert.deepEqual(sent, [{ leftMs: 5000 }]);
    const before = Date.now();
    Channel.last.onmessage({ data: { leftMs: 4000 } });
    Channel.last.onmessage({ data: { leftMs: 'soon' } });
    Channel.last.onmessage({ data: null });
    assert.equal(remote.length, 1);
    assert.ok(remote[0] >= before + 4000 && remote[0] <= Date.now() + 4000);
  });
});

describe('cooldown across tabs (browser)', () => {
  let server, browser, context, A, B;

  before(async () => {
    server = await startServer({ args: ['--cooldown', '30', '--ip-rate', '0'] });
    browser = await launchBrowser();
    // One context: one browser profile, so one identity and one BroadcastChannel.
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    A = await context.newPage();
    B = await context.newPage();
    for (const p of [A, B]) {
      await p.goto(server.url);
      await waitLive(p);
    }
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('placing in one tab starts the countdown in the title of both', async () => {
    const at = await pixelOnScreen(A, 4, 4);
    await A.mouse.click(at.x, at.y);
    await A.locator('#info-title').filter({ hasText: '(4, 4)' }).waitFor();
    await A.locator('.swatch[data-color="3"]').click();
    const put = A.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await A.locator('#place').click();
    assert.equal((await put).status(), 200);
    await A.waitForFunction(() => /^\(00:(29|30)\) /.test(document.title), null, { timeout: 3000 });
    // B placed nothing and asked nothing: it was told.
    await B.waitForFunction(() => /^\(00:(2\d|30)\) /.test(document.title), null, { timeout: 3000 });
    await B.waitForFunction(() => document.getElementById('place').classList.contains('cooldown'), null, { timeout: 3000 });
    await B.screenshot({ path: screenshotPath('cooldown-second-tab.png') });
  });
});
