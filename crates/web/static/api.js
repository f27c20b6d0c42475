// The JSON endpoints of docs/API.md. Errors become ApiError carrying the server's
// `error`, `message` and, for 429, when the user may place again.

import { answerPrecondition, configureAntibot, placed, proofHeaders } from './pow.js';

export class ApiError extends Error {
  constructor(status, body, retryAfterHeader) {
    super(body?.message || `request failed (HTTP ${status})`);
    this.status = status;
    this.code = body?.error ?? 'http_error';
    this.body = body ?? {};
    // 429: the body's retry_after_ms, else the Retry-After header (seconds).
    const header = Number(retryAfterHeader);
    this.retryAfterMs = Number.isFinite(this.body.retry_after_ms)
      ? this.body.retry_after_ms
      : Number.isFinite(header) && retryAfterHeader !== null ? header * 1000 : undefined;
    this.nextAt = Number.isFinite(this.body.next_at) ? this.body.next_at : undefined;
  }
}

async function request(method, path, body, extraHeaders = {}) {
  let res;
  try {
    const headers = body === undefined ? { ...extraHeaders } : { 'Content-Type': 'application/json', ...extraHeaders };
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { error: 'network', message: 'Network error: is the server reachable?' });
  }
  let json = null;
  try { json = await res.json(); } catch { /* not JSON (e.g. a proxy error page) */ }
  if (!res.ok) throw new ApiError(res.status, json, res.headers.get('Retry-After'));
  return { json, res };
}

/** `GET /api/config`; also gives this visitor its identity cookie. */
export async function getConfig() {
  const { json, res } = await request('GET', '/api/config');
  configureAntibot(json?.pow, json?.captcha);
  return { config: json, serverDate: Date.parse(res.headers.get('Date') ?? '') };
}

/** A fresh `Idempotency-Key`: 32 hex digits of randomness (docs/API.md allows 1 to 64 of
 *  A-Z a-z 0-9 _ -). */
export function newIdempotencyKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID().replaceAll('-', '');
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Waits before each retry of a placement, in ms; its length is the number of retries. */
export const PLACE_RETRY_DELAYS_MS = [250, 750];

/** Whether a failed placement may be retried: the answer was lost (network) or the server
 *  said it could not tell (503, 502/504 from a proxy). A retry with the same key either
 *  gets the first attempt's answer or is decided afresh: it never places twice. */
function retriable(err) {
  return err instanceof ApiError && (err.status === 0 || err.status === 502 || err.status === 503 || err.status === 504);
}

/** Answers to `428` (a proof of work, a captcha) one placement may give: each at most once. */
const PRECONDITION_ROUNDS = 2;

/** `PUT /api/pixel` -> `{seq, at, next_at}`. One intended placement: one idempotency key,
 *  sent again on each of this function's own retries. A `428` (pow.js: proof of work or
 *  captcha required) is answered and the placement sent again. `o.sleep` is for tests. */
export async function placePixel(x, y, color, o = {}) {
  const key = o.key ?? newIdempotencyKey();
  const delays = o.retryDelaysMs ?? PLACE_RETRY_DELAYS_MS;
  const sleep = o.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  let proofs = await proofHeaders();
  let rounds = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      const { json } = await request('PUT', '/api/pixel', { x, y, color }, { 'Idempotency-Key': key, ...proofs });
      placed(proofs);
      return json;
    } catch (err) {
      if (err instanceof ApiError && err.status === 428 && rounds < PRECONDITION_ROUNDS) {
        const more = await answerPrecondition(err.body);
        if (!more) throw err;
        rounds++;
        proofs = { ...proofs, ...more };
        attempt--;
        continue;
      }
      // A proof solved ahead of time that the server no longer takes (expired, spent on
      // another tab): send without it, and answer the 428 that follows.
      if (err instanceof ApiError && err.status === 403 && proofs['X-Rplace-Pow']
          && (err.code === 'pow_invalid' || err.code === 'pow_replayed') && rounds < PRECONDITION_ROUNDS) {
        const { 'X-Rplace-Pow': _spent, ...rest } = proofs;
        proofs = rest;
        rounds++;
        attempt--;
        continue;
      }
      if (attempt >= delays.length || !retriable(err)) throw err;
      await sleep(delays[attempt]);
    }
  }
}

/** `GET /api/pixel?x=&y=` -> who placed it, when, and the last placements there. */
export async function getPixel(x, y) {
  return (await request('GET', `/api/pixel?x=${x}&y=${y}`)).json;
}
