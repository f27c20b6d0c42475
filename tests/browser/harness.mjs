// Shared by the browser tests: starts the real rplace binary on a free port with a fresh
// data dir, and Debian's Chromium through playwright-core.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const ARTIFACTS = path.join(HERE, 'artifacts');
fs.mkdirSync(ARTIFACTS, { recursive: true });

/** RPLACE_BIN, else $CARGO_TARGET_DIR/release/rplace, else target/release/rplace. */
export function binaryPath() {
  if (process.env.RPLACE_BIN) return path.resolve(ROOT, process.env.RPLACE_BIN);
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
  return path.join(target, 'release', 'rplace');
}

/** A port nobody listens on right now: bind port 0, read it, close. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `every` ms until it returns something truthy, which it returns;
 * throws naming `what` after `timeout` ms. Tests wait with this, not with fixed sleeps. */
export async function until(check, { timeout = 5000, what = 'a condition', every = 25 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`not within ${timeout} ms: ${what}`);
    await sleep(every);
  }
}

/** Resolves once the page has painted a frame after this call: the renderer draws on the
 * animation frame after a change, so two frames later the change is on the canvas. */
export async function nextPaint(page) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

/** Waits until the view stops moving (a zoom easing in, a glide): the same across two
 * polls with painted frames in between. Returns the settled view. */
export async function viewSettled(page, timeout = 5000) {
  let last = null;
  return until(async () => {
    await nextPaint(page);
    const v = await page.evaluate(() => window.rplace.view);
    const same = last !== null && JSON.stringify(v) === JSON.stringify(last);
    last = v;
    return same && v;
  }, { timeout, what: 'the view settles' });
}

/**
 * Starts `rplace --listen 127.0.0.1:PORT --data-dir DIR --width 64 --height 64
 * --cooldown 2 --board-ttl 0` and waits for `GET /readyz` to answer 200.
 * `port` and `dataDir` may be given to restart a stopped server in place.
 */
export async function startServer({ port, dataDir, args = [] } = {}) {
  const bin = binaryPath();
  if (!fs.existsSync(bin)) {
    throw new Error(`rplace binary not found at ${bin}: build it (cargo build --release -p rplace) or set RPLACE_BIN`);
  }
  port ??= await freePort();
  dataDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'rplace-browser-'));
  const argv = [
    '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--width', '64', '--height', '64', '--cooldown', '2', '--board-ttl', '0', ...args,
  ];
  const logs = [];
  const proc = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info' } });
  const keep = (d) => { logs.push(String(d)); if (logs.length > 400) logs.shift(); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) => proc.on('exit', (code, signal) => { exited = { code, signal }; resolve(exited); }));
  // A test run that fails or crashes before `stop()` leaves no server behind.
  const killOnExit = () => { if (!exited) proc.kill('SIGKILL'); };
  process.once('exit', killOnExit);
  exit.then(() => process.removeListener('exit', killOnExit));
  const url = `http://127.0.0.1:${port}`;

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`rplace exited (${JSON.stringify(exited)}) before ready:\n${logs.join('')}`);
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`rplace not ready after 30 s:\n${logs.join('')}`);
    }
    await sleep(100);
  }

  return {
    url, port, dataDir, proc, logs,
    /** SIGTERM (graceful: websockets get 1001), SIGKILL after 10 s. Keeps the data dir. */
    async stop() {
      if (exited) return exited;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const r = await exit;
      clearTimeout(t);
      return r;
    },
    /** Stops and removes the data dir. */
    async dispose() {
      await this.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * A page in its own browser context (its own cookies, so its own identity), loaded and
 * live. Page errors and console errors are collected in `errors`.
 */
export async function openPage(browser, url, contextOptions = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...contextOptions });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.stack ?? e}`));
  // Chromium logs every 4xx answer as "Failed to load resource": the tests cause some
  // on purpose (429), and the page handles them, so only the page's own errors count.
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  await waitLive(page);
  return { context, page, errors };
}

export async function waitLive(page, timeout = 10_000) {
  await page.waitForFunction(() => window.rplace?.status === 'live', null, { timeout, polling: 50 });
}

/**
 * Where pixel (x, y)'s center is on screen, from window.rplace.view and the canvas's box:
 * canvas center + (x + 0.5 - view.x) * zoom.
 */
export async function pixelOnScreen(page, x, y) {
  return page.evaluate(([px, py]) => {
    const r = document.getElementById('board').getBoundingClientRect();
    const v = window.rplace.view;
    return {
      x: r.left + r.width / 2 + (px + 0.5 - v.x) * v.zoom,
      y: r.top + r.height / 2 + (py + 0.5 - v.y) * v.zoom,
    };
  }, [x, y]);
}

/** The color the canvas shows at a screen point, as '#RRGGBB'. */
export async function canvasColorAt(page, sx, sy) {
  return page.evaluate(([x, y]) => {
    const c = document.getElementById('board');
    const r = c.getBoundingClientRect();
    const k = c.width / r.width;
    const d = c.getContext('2d').getImageData(Math.floor((x - r.left) * k), Math.floor((y - r.top) * k), 1, 1).data;
    return '#' + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, '0')).join('').toUpperCase();
  }, [sx, sy]);
}

export function hashParams(page) {
  return page.evaluate(() => Object.fromEntries(new URLSearchParams(location.hash.slice(1))));
}

export function screenshotPath(name) {
  return path.join(ARTIFACTS, name);
}

/** For each board pixel [x, y], the canvas color ('#RRGGBB') at the given fractions of
 * it ([fx, fy] in 0..1); points off the canvas are left out. */
export function sampleCanvas(page, pixels, fractions = [[0.5, 0.5]]) {
  return page.evaluate(([pixels, fractions]) => {
    const c = document.getElementById('board');
    const r = c.getBoundingClientRect();
    const k = c.width / r.width;
    const ctx = c.getContext('2d');
    const v = window.rplace.view;
    const out = [];
    for (const [x, y] of pixels) {
      for (const [fx, fy] of fractions) {
        const sx = r.width / 2 + (x + fx - v.x) * v.zoom;
        const sy = r.height / 2 + (y + fy - v.y) * v.zoom;
        if (sx < 0 || sy < 0 || sx >= r.width || sy >= r.height) continue;
        const d = ctx.getImageData(Math.floor(sx * k), Math.floor(sy * k), 1, 1).data;
        out.push({ x, y, fx, fy, color: '#' + [d[0], d[1], d[2]].map((n) => n.toString(16).padStart(2, '0')).join('').toUpperCase() });
      }
    }
    return out;
  }, [pixels, fractions]);
}

/** Records what a page fetches (paths with query) and the tile frames (0x02) its
 * websockets receive, as "tx,ty" strings. Call before `page.goto`. */
export function recordTraffic(page) {
  const t = { requests: [], frames: [], sent: [] };
  page.on('request', (r) => { const u = new URL(r.url()); t.requests.push(u.pathname + u.search); });
  page.on('websocket', (ws) => {
    ws.on('framereceived', ({ payload }) => {
      if (typeof payload === 'string') return;
      const b = Buffer.from(payload);
      for (let off = 0; off + 29 <= b.length;) {
        if (b[off] !== 2) { t.frames.push(`kind ${b[off]}`); break; }
        t.frames.push(`${b.readUInt32LE(off + 1)},${b.readUInt32LE(off + 5)}`);
        off += 29 + 7 * b.readUInt32LE(off + 25);
      }
    });
    ws.on('framesent', ({ payload }) => { if (typeof payload === 'string') t.sent.push(JSON.parse(payload)); });
  });
  return t;
}
