// The admin endpoints of docs/API.md for the moderators' page. A request carries the
// moderator's session cookie (same origin) and, if the operator pasted one, the admin
// token as `Authorization: Bearer` (kept in sessionStorage: gone when the tab closes).
// Errors are api.js's ApiError, with the server's `error` and `message`.

import { ApiError } from './api.js';

const TOKEN_KEY = 'rplace.adminToken';

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage blocked: the token lasts as long as this page */ }
  memoryToken = token || '';
}

let memoryToken = getToken();
/** The session's CSRF token (`GET /api/me`), sent on requests that change something. The
 * server also accepts this page's own Origin, so this is belt and braces. */
let csrfToken = '';

export function setCsrf(token) {
  csrfToken = token || '';
}

/**
 * One request. `body`: a plain object (sent as JSON), a Blob/ArrayBuffer (sent as is with
 * `contentType`), or undefined. Answers the parsed JSON (null for an empty answer).
 */
export async function adminRequest(method, path, body, contentType) {
  const headers = {};
  const token = memoryToken || getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (csrfToken && method !== 'GET') headers['X-CSRF-Token'] = csrfToken;
  let payload;
  if (body instanceof Blob || body instanceof ArrayBuffer) {
    payload = body;
    headers['Content-Type'] = contentType ?? 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, { error: 'network', message: 'Network error: is the server reachable?' });
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) throw new ApiError(res.status, json, res.headers.get('Retry-After'));
  return json;
}

export const get = (path) => adminRequest('GET', path);
export const post = (path, body, type) => adminRequest('POST', path, body, type);
export const del = (path) => adminRequest('DELETE', path);

/** A list answer as an array, whatever its wrapper key (`{"bans": [...]}`, a bare array). */
export function listOf(json, ...keys) {
  if (Array.isArray(json)) return json;
  for (const k of keys) if (Array.isArray(json?.[k])) return json[k];
  return [];
}

/** Query string of the defined entries of `o`. */
export function query(o) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : '';
}
