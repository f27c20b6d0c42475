// The login round trip in Chromium against a real OpenID Connect provider
// (tests/oidc/provider.mjs, the npm oidc-provider package): click the login button,
// log in and consent at the provider, pick a display name, and place a pixel as the
// account on a canvas that requires login.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {
  ROOT, freePort, launchBrowser, openPage, pixelOnScreen, screenshotPath, startServer, until, waitLive,
} from './harness.mjs';

const OIDC_DIR = path.join(ROOT, 'tests', 'oidc');

/** Starts the provider on `port` with one client redirecting to `redirect`. */
async function startProvider(port, redirect) {
  if (!fs.existsSync(path.join(OIDC_DIR, 'node_modules', 'oidc-provider'))) {
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: OIDC_DIR, stdio: 'inherit' });
  }
  const proc = spawn(process.execPath, [path.join(OIDC_DIR, 'provider.mjs'), String(port), 'rplace-browser', 'browser-secret', redirect], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const killOnExit = () => proc.kill('SIGKILL');
  process.once('exit', killOnExit);
  await until(() => out.includes('listening http://'), { timeout: 15_000, what: `the provider listens:\n${out}` });
  return {
    log: () => out,
    stop() {
      process.removeListener('exit', killOnExit);
      proc.kill('SIGTERM');
    },
  };
}

describe('logging in', () => {
  let server, provider, browser, A;

  before(async () => {
    const [appPort, idpPort] = [await freePort(), await freePort()];
    const issuer = `http://127.0.0.1:${idpPort}`;
    provider = await startProvider(idpPort, `http://127.0.0.1:${appPort}/auth/callback/local`);
    server = await startServer({
      port: appPort,
      args: [
        '--login', 'required',
        '--oidc-provider', `id=local;name=Local;issuer=${issuer};client_id=rplace-browser;client_secret=browser-secret`,
      ],
    });
    browser = await launchBrowser();
    A = await openPage(browser, server.url);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
    provider?.stop();
  });

  test('login at the provider, a display name, and a pixel placed as the account', async () => {
    const { page, errors } = A;
    const button = page.locator('#account a.login');
    assert.equal(await button.textContent(), 'Log in with Local');

    // Anonymous placing is refused on this canvas.
    const anon = await page.evaluate(async () => (await fetch('/api/pixel', {
      method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ x: 1, y: 1, color: 1 }),
    })).json());
    assert.equal(anon.error, 'login_required');

    await button.click();
    // The provider's development login form: any username, any password.
    await page.locator('input[name="login"]').waitFor({ timeout: 10_000 });
    await page.locator('input[name="login"]').fill('painter');
    await page.locator('input[name="password"]').fill('anything');
    await page.locator('button[type="submit"]').click();
    // Its consent form.
    await page.locator('button', { hasText: 'Continue' }).click();

    // Back on the canvas, logged in, asked for a display name.
    await page.waitForURL(`${server.url}/`, { timeout: 10_000 });
    await waitLive(page);
    const dialog = page.locator('#name-dialog');
    await dialog.waitFor({ state: 'visible' });
    await page.locator('#name-input').fill('ad');
    await page.locator('#name-save').click();
    // Too short: the browser's own check or the server's message keeps the dialog open.
    assert.equal(await dialog.isVisible(), true);
    await page.locator('#name-input').fill('Painter_1');
    await page.locator('#name-save').click();
    await dialog.waitFor({ state: 'hidden' });
    await page.locator('#account-name').filter({ hasText: 'Painter_1' }).waitFor();

    const me = await page.evaluate(async () => (await fetch('/api/me')).json());
    assert.equal(me.account.name, 'Painter_1');
    assert.equal(me.account.provider, 'local');

    // Place a pixel as the account.
    const [x, y, color] = [20, 20, 3];
    const at = await pixelOnScreen(page, x, y);
    await page.mouse.click(at.x, at.y);
    await page.locator('#info-title').filter({ hasText: `(${x}, ${y})` }).waitFor();
    await page.locator(`.swatch[data-color="${color}"]`).click();
    const put = page.waitForResponse((r) => r.url().endsWith('/api/pixel') && r.request().method() === 'PUT');
    await page.locator('#place').click();
    const res = await put;
    assert.equal(res.status(), 200, await res.text());
    const info = await until(async () => {
      const i = await page.evaluate(async ([px, py]) => (await fetch(`/api/pixel?x=${px}&y=${py}`)).json(), [x, y]);
      return i.seq !== null && i;
    }, { what: 'the pixel has its placement' });
    assert.equal(info.user, me.account.user);
    assert.equal(info.color, color);

    await page.screenshot({ path: screenshotPath('login.png') });
    assert.deepEqual(errors, []);
  });
});
