// The JSON endpoints of docs/API.md. Errors become ApiError carrying the server's
// `error`, `message` and, for 429, when the user may place again.

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

async function request(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: body === undefined ? undefined : { 'Content-Type': 'application/json' },
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
  return { config: json, serverDate: Date.parse(res.headers.get('Date') ?? '') };
}

/** `PUT /api/pixel` -> `{seq, at, next_at}`. */
export async function placePixel(x, y, color) {
  return (await request('PUT', '/api/pixel', { x, y, color })).json;
}

/** `GET /api/pixel?x=&y=` -> who placed it, when, and the last placements there. */
export async function getPixel(x, y) {
  return (await request('GET', `/api/pixel?x=${x}&y=${y}`)).json;
}
