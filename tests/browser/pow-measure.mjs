// What a proof of work costs a browser: solves `--solves` challenges of `GET /api/pow` in
// the page's Web Worker (pow.js → pow-worker.js) in Chromium, with the CPU throttled by
// CDP `Emulation.setCPUThrottlingRate` (4 to 6 ≈ a phone), and prints the solve times
// (median, p90) and the hash rate; also the hash rate of SubtleCrypto's digest for
// comparison. Not a test (no pass/fail): the figures are in BENCHMARKS.md.
//
//   node tests/browser/pow-measure.mjs [--difficulty 18] [--solves 20] [--rates 1,4,6] [--thread worker|main]
//
// Chromium's CPU throttling slows the page's main thread only, not its workers (measured:
// the worker's hash rate is the same at 1x and 6x). So `--thread main` runs the same
// solver (pow-worker.js's `solve`) on the throttled main thread: what the worker would
// take on a CPU that much slower.

import { launchBrowser, openPage, startServer } from './harness.mjs';

const opt = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const difficulty = Number(opt('difficulty', '18'));
const solves = Number(opt('solves', '20'));
const rates = opt('rates', '1,4,6').split(',').map(Number);
const thread = opt('thread', 'worker');

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

const server = await startServer({ args: ['--pow', 'first', '--pow-difficulty', String(difficulty)] });
const browser = await launchBrowser();
try {
  console.log(`chromium ${browser.version()}, difficulty ${difficulty} bits, ${solves} solves per rate, on the ${thread} thread`);
  console.log('| CPU throttling | median solve | p90 solve | max | JS hash rate | SubtleCrypto hash rate |');
  console.log('|---|---|---|---|---|---|');
  for (const rate of rates) {
    const { context, page } = await openPage(browser, server.url);
    const cdp = await context.newCDPSession(page);
    await cdp.send('Emulation.setCPUThrottlingRate', { rate });
    const r = await page.evaluate(async ([n, bits, where]) => {
      const pow = await import('/pow.js');
      const { solve } = await import('/pow-worker.js');
      const times = [];
      let hashes = 0, ms = 0;
      for (let i = 0; i < n; i++) {
        const ch = await (await fetch('/api/pow')).json();
        const t0 = performance.now();
        if (where === 'main') {
          hashes += solve(ch.challenge, ch.difficulty).hashes;
          ms += performance.now() - t0;
        } else {
          await pow.solveChallenge(ch, false);
          hashes += window.rplacePow.lastHashes;
          ms += window.rplacePow.lastMs;
        }
        times.push(performance.now() - t0);
      }
      // SubtleCrypto in a worker, on a smaller problem (it is much slower).
      const src = `import { solveSubtle } from '${location.origin}/pow-worker.js';
        onmessage = async (e) => { const t0 = performance.now(); const r = await solveSubtle(e.data.c, e.data.d);
          postMessage({ hashes: r.hashes, ms: performance.now() - t0 }); };`;
      const w = new Worker(URL.createObjectURL(new Blob([src], { type: 'text/javascript' })), { type: 'module' });
      const ch = await (await fetch('/api/pow')).json();
      const subtle = await new Promise((resolve) => { w.onmessage = (e) => resolve(e.data); w.postMessage({ c: ch.challenge, d: Math.min(bits, 14) }); });
      w.terminate();
      return { times, hashRate: hashes / (ms / 1000), subtleRate: subtle.hashes / (subtle.ms / 1000) };
    }, [solves, difficulty, thread]);
    const f = (ms) => `${(ms / 1000).toFixed(2)} s`;
    console.log(`| ${rate}× | ${f(quantile(r.times, 0.5))} | ${f(quantile(r.times, 0.9))} | ${f(Math.max(...r.times))} | ${(r.hashRate / 1e6).toFixed(2)} MH/s | ${(r.subtleRate / 1e6).toFixed(3)} MH/s |`);
    await context.close();
  }
} finally {
  await browser.close();
  await server.dispose();
}
