// Templates as the page holds them: each one's metadata and palette-mapped pixels (from
// the server's own PNG, docs/API.md "Templates"), its opacity, and how it compares with
// the tiles the page has loaded. No DOM beyond decoding the image, so the comparisons are
// testable; template-overlay.js draws them and template-panel.js is their UI.

import { TILE } from './tiles.js';

/** Most templates shown at once: each costs its size in memory twice. */
export const MAX_OVERLAYS = 8;
/** Wrong pixels listed per template (the count covers all). */
export const WRONG_LIST = 8;
/** Opacity of a template added without one. */
export const DEFAULT_OPACITY = 0.6;
/** The shape of a template id (docs/API.md). */
export const ID_RE = /^[0-9A-Za-z]{10}$/;

/** `t=<id>:<opacity %>,...` of a hash or query string: [{id, opacity}] (valid ones only,
 * at most MAX_OVERLAYS, no repeats). */
export function parseTemplatesParam(hash) {
  const raw = new URLSearchParams(String(hash ?? '').replace(/^[#?]/, '')).get('t');
  if (!raw) return [];
  const out = [];
  for (const part of raw.split(',')) {
    const [id, op] = part.split(':');
    if (!ID_RE.test(id ?? '') || out.some((t) => t.id === id)) continue;
    const n = Number(op);
    const opacity = op !== undefined && op !== '' && Number.isFinite(n) ? Math.min(100, Math.max(0, n)) / 100 : DEFAULT_OPACITY;
    out.push({ id, opacity });
    if (out.length === MAX_OVERLAYS) break;
  }
  return out;
}

/** The `&t=...` part of the hash for these templates ('' for none). */
export function formatTemplatesParam(list) {
  if (!list.length) return '';
  return `&t=${list.map((t) => `${t.id}:${Math.round(t.opacity * 100)}`).join(',')}`;
}

/** Palette indices of RGBA pixels: exact palette colors (what the server sends), else the
 * nearest; alpha under 128 is -1, transparent. */
export function rgbaToIndices(rgba, palette) {
  const rgb = palette.map((hex) => parseInt(hex.slice(1), 16));
  const exact = new Map(rgb.map((c, i) => [c, i]));
  const out = new Int16Array(rgba.length / 4);
  for (let i = 0; i < out.length; i++) {
    const o = i * 4;
    if (rgba[o + 3] < 128) { out[i] = -1; continue; }
    const c = (rgba[o] << 16) | (rgba[o + 1] << 8) | rgba[o + 2];
    let idx = exact.get(c);
    if (idx === undefined) {
      let best = Infinity;
      rgb.forEach((p, j) => {
        const d = ((p >> 16) - rgba[o]) ** 2 + (((p >> 8) & 255) - rgba[o + 1]) ** 2 + ((p & 255) - rgba[o + 2]) ** 2;
        if (d < best) { best = d; idx = j; }
      });
      exact.set(c, idx);
    }
    out[i] = idx;
  }
  return out;
}

/**
 * Compares a template with the tiles: `tileAt(tx, ty)` gives a tile's pixels (a
 * Uint8Array of TILE² indices) or null if not loaded. Returns {wrong, right, unknown,
 * list} where list holds the first WRONG_LIST wrong pixels {x, y, color}.
 */
export function compare(t, tileAt) {
  let wrong = 0, right = 0, unknown = 0;
  const list = [];
  const { x: X, y: Y, width: w, height: h } = t.meta;
  const idx = t.indices;
  for (let ty = Math.floor(Y / TILE); ty <= Math.floor((Y + h - 1) / TILE); ty++) {
    for (let tx = Math.floor(X / TILE); tx <= Math.floor((X + w - 1) / TILE); tx++) {
      const px = tileAt(tx, ty);
      const x0 = Math.max(X, tx * TILE), x1 = Math.min(X + w, (tx + 1) * TILE);
      const y0 = Math.max(Y, ty * TILE), y1 = Math.min(Y + h, (ty + 1) * TILE);
      for (let y = y0; y < y1; y++) {
        const rowT = (y - Y) * w - X;
        const rowB = (y - ty * TILE) * TILE - tx * TILE;
        for (let x = x0; x < x1; x++) {
          const c = idx[rowT + x];
          if (c < 0) continue;
          if (!px) unknown++;
          else if (px[rowB + x] === c) right++;
          else {
            wrong++;
            if (list.length < WRONG_LIST) list.push({ x, y, color: c });
          }
        }
      }
    }
  }
  return { wrong, right, unknown, list };
}

/** The first wrong pixel of `t` after pixel index `after` of the template (row-major,
 * wrapping around), among loaded tiles: {x, y, color, index} or null. */
export function nextWrong(t, tileAt, after = -1) {
  const { x: X, y: Y, width: w, height: h } = t.meta;
  const n = w * h, idx = t.indices;
  let key = null, px = null;
  for (let k = 1; k <= n; k++) {
    const i = (after + k + n) % n;
    const c = idx[i];
    if (c < 0) continue;
    const x = X + (i % w), y = Y + Math.floor(i / w);
    const tx = Math.floor(x / TILE), ty = Math.floor(y / TILE);
    if (key !== ty * 65536 + tx) { key = ty * 65536 + tx; px = tileAt(tx, ty); }
    if (px && px[(y - ty * TILE) * TILE + (x - tx * TILE)] !== c) return { x, y, color: c, index: i };
  }
  return null;
}

/** Whether board pixel (x, y) is inside the template's rectangle. */
export function covers(t, x, y) {
  const m = t.meta;
  return x >= m.x && y >= m.y && x < m.x + m.width && y < m.y + m.height;
}

async function fetchJson(path) {
  const res = await fetch(path, { credentials: 'same-origin' });
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new Error(json?.message || `HTTP ${res.status}`);
  return json;
}

/** Loads template `id`: {id, meta, indices, image (a canvas of its colors)}. */
export async function loadTemplate(id, palette) {
  const meta = await fetchJson(`/api/templates/${id}`);
  const res = await fetch(`/api/templates/${id}.png`, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`template image: HTTP ${res.status}`);
  const bitmap = await createImageBitmap(await res.blob(), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const image = document.createElement('canvas');
  image.width = bitmap.width;
  image.height = bitmap.height;
  const ctx = image.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close?.();
  const rgba = ctx.getImageData(0, 0, image.width, image.height).data;
  return { id, meta, indices: rgbaToIndices(rgba, palette), image };
}

/** `POST /api/templates?x&y&name` with a PNG file -> the template's JSON. */
export async function uploadTemplate(file, x, y, name) {
  const q = new URLSearchParams({ x: String(x), y: String(y), name });
  const res = await fetch(`/api/templates?${q}`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'image/png' },
    body: file,
  });
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new Error(json?.message || `upload failed (HTTP ${res.status})`);
  return json;
}
