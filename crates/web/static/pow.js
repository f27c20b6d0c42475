// The page's side of anti-bot (docs/API.md, "Anti-bot"): proofs of work solved in a Web
// Worker (pow-worker.js), fetched ahead of time when the canvas's mode (GET /api/config
// `pow`) will ask for one, and the optional captcha widget (Turnstile or hCaptcha).
// api.js calls `configureAntibot` with the config, `proofHeaders` before a placement,
// `answerPrecondition` on a 428 and `placed` after an accepted placement.

import { solve } from './pow-worker.js';

let pow = { mode: 'off', difficulty: 0 };
let captcha = null;
/** Accepted placements since the last one that carried a proof (as this page knows). */
let sinceProof = Infinity;
/** A proof being solved or solved ahead of time: Promise<{proof, expires} | null>. */
let ahead = null;
let worker = null;
let nextJob = 0;
const jobs = new Map();
/** Solutions in progress, for the "verifying…" state. */
let busy = 0;

/** Settings from `GET /api/config` (`pow`, `captcha`). */
export function configureAntibot(powConfig, captchaConfig) {
  pow = powConfig ?? { mode: 'off', difficulty: 0 };
  captcha = captchaConfig ?? null;
  if (needsProofNext()) solveAhead();
}

/** Whether the mode will ask this page's next placement for a proof: `first` and
 *  `every:N` by counting; `auto` is the server's call (it answers 428). */
function needsProofNext() {
  if (pow.mode === 'first') return sinceProof === Infinity;
  const every = /^every:(\d+)$/.exec(pow.mode ?? '');
  return every !== null && sinceProof + 1 >= Number(every[1]);
}

function solveAhead() {
  if (ahead) return;
  ahead = (async () => {
    const res = await fetch('/api/pow', { credentials: 'same-origin', cache: 'no-store' });
    if (!res.ok) return null;
    const challenge = await res.json();
    return { proof: await solveChallenge(challenge, false), expires: challenge.expires };
  })().catch(() => null);
}

/** Headers for the next placement: a proof solved ahead of time, if the mode needs one
 *  now (waiting for it if it is still being solved). */
export async function proofHeaders() {
  if (!ahead || !needsProofNext()) return {};
  setVerifying(+1);
  let r;
  try { r = await ahead; } finally { setVerifying(-1); }
  ahead = null;
  // Keep a margin: the placement must reach the server before it expires.
  return r && r.expires - Date.now() > 10_000 ? { 'X-Rplace-Pow': r.proof } : {};
}

/** The headers that answer a 428 (`body`: its JSON), or null if this page cannot. */
export async function answerPrecondition(body) {
  if (body?.error === 'pow_required' && body.challenge) {
    return { 'X-Rplace-Pow': await solveChallenge(body.challenge, true) };
  }
  if (body?.error === 'captcha_required' && body.captcha) {
    return { 'X-Rplace-Captcha': await captchaToken(body.captcha) };
  }
  return null;
}

/** An accepted placement, sent with `headers`. */
export function placed(headers) {
  sinceProof = headers['X-Rplace-Pow'] ? 0 : sinceProof + 1;
  if (needsProofNext()) solveAhead();
}

/** Solves in the worker; `{nonce, hashes, ms}`. Where module workers are missing (or fail
 *  to start), on this thread instead: slower for the page, but it still places. */
function solveInWorker(challenge) {
  if (typeof Worker === 'undefined' || worker === false) {
    const t0 = performance.now();
    const r = solve(challenge.challenge, challenge.difficulty);
    return Promise.resolve({ ...r, ms: performance.now() - t0 });
  }
  if (!worker) {
    worker = new Worker(new URL('./pow-worker.js', import.meta.url), { type: 'module' });
    worker.onmessage = (e) => {
      const job = jobs.get(e.data.id);
      jobs.delete(e.data.id);
      if (!job) return;
      if (e.data.error || e.data.nonce === null) job.reject(new Error(e.data.error ?? 'no solution found'));
      else job.resolve(e.data);
    };
    worker.onerror = () => {
      // No module workers here: solve the waiting jobs on this thread.
      worker = false;
      for (const job of jobs.values()) solveInWorker(job.challenge).then(job.resolve, job.reject);
      jobs.clear();
    };
  }
  const id = nextJob++;
  return new Promise((resolve, reject) => {
    jobs.set(id, { resolve, reject, challenge });
    worker.postMessage({ id, challenge: challenge.challenge, difficulty: challenge.difficulty });
  });
}

/** `<challenge>.<nonce>` for a challenge of `GET /api/pow`. `visible`: the user waits for
 *  it (shows "Verifying…"). */
export async function solveChallenge(challenge, visible = true) {
  if (visible) setVerifying(+1);
  try {
    const r = await solveInWorker(challenge);
    // For the browser test and the measurement in BENCHMARKS.md.
    globalThis.rplacePow = { lastMs: r.ms, lastHashes: r.hashes, solved: (globalThis.rplacePow?.solved ?? 0) + 1 };
    return `${challenge.challenge}.${r.nonce}`;
  } finally {
    if (visible) setVerifying(-1);
  }
}

/** Shows "Verifying…" while a proof the user waits for is being solved. */
function setVerifying(delta) {
  busy += delta;
  if (typeof document === 'undefined') return;
  let el = document.getElementById('verifying');
  if (!el) {
    el = document.createElement('div');
    el.id = 'verifying';
    el.className = 'pill';
    el.setAttribute('role', 'status');
    el.textContent = 'Verifying…';
    el.style.cssText = 'position:fixed;left:50%;top:4.5rem;transform:translateX(-50%);z-index:20;padding:.4rem .9rem;pointer-events:none';
    document.body.append(el);
  }
  el.hidden = busy <= 0;
  // `.pill` sets a display, which beats the hidden attribute's.
  el.style.display = el.hidden ? 'none' : '';
}

// ---- captcha ---------------------------------------------------------------------------
// The provider's widget script, loaded only when the server asks for a token. It cannot be
// tested here (the providers cannot be reached); the server side is tested against a local
// siteverify stand-in.

const WIDGETS = {
  turnstile: { src: 'https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit', global: 'turnstile' },
  hcaptcha: { src: 'https://js.hcaptcha.com/1/api.js?render=explicit', global: 'hcaptcha' },
};
let widgetScript = null;

function loadWidget(provider) {
  const w = WIDGETS[provider];
  if (!w) return Promise.reject(new Error(`unknown captcha provider ${provider}`));
  widgetScript ??= new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = w.src;
    s.async = true;
    s.onload = () => resolve(globalThis[w.global]);
    s.onerror = () => reject(new Error('the captcha could not be loaded'));
    document.head.append(s);
  });
  return widgetScript;
}

/** Shows the provider's widget in a small dialog and resolves with its token. */
async function captchaToken({ provider, site_key: sitekey }) {
  const api = await loadWidget(provider);
  const dialog = document.createElement('dialog');
  dialog.className = 'captcha';
  const box = document.createElement('div');
  dialog.append(box);
  document.body.append(dialog);
  dialog.showModal();
  try {
    return await new Promise((resolve, reject) => {
      dialog.addEventListener('cancel', () => reject(new Error('captcha cancelled')), { once: true });
      api.render(box, {
        sitekey,
        callback: resolve,
        'error-callback': () => reject(new Error('the captcha failed; try again')),
      });
    });
  } finally {
    dialog.close();
    dialog.remove();
  }
}
