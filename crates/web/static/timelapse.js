// Timelapse export from the main page: a Timelapse button opens a dialog with the region
// in view (editable), the frames, frame rate and scale; Render posts the job
// (`POST /api/timelapse`), the dialog shows its progress (polling
// `GET /api/timelapse/{id}`) and offers the file when it is done. See docs/API.md.

import { ApiError } from './api.js';

/** How often a job's state is asked for, in ms. */
export const POLL_MS = 500;
/** The server's limits (docs/API.md), so the form refuses what it would. */
export const LIMITS = { frames: [1, 3600], fps: [1, 60], scale: [1, 8], framePixels: 2048 * 2048 };

async function call(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { error: 'network', message: 'Network error: is the server reachable?' });
  }
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new ApiError(res.status, json, res.headers.get('Retry-After'));
  return json;
}

/** `POST /api/timelapse` -> the job's first status (`{id, state, ...}`). */
export const startTimelapse = (req) => call('POST', '/api/timelapse', req);
/** `GET /api/timelapse/{id}`. */
export const timelapseStatus = (id) => call('GET', `/api/timelapse/${encodeURIComponent(id)}`);

/**
 * The board region on screen: whole pixels, clamped to the board, at least 1×1.
 * `view` has `toBoard(sx, sy)`, `width` and `height` (view.js).
 */
export function visibleRegion(view, boardWidth, boardHeight) {
  const a = view.toBoard(0, 0);
  const b = view.toBoard(view.width, view.height);
  const clampX = (v) => Math.min(boardWidth, Math.max(0, v));
  const clampY = (v) => Math.min(boardHeight, Math.max(0, v));
  const x0 = Math.floor(clampX(a.x)), y0 = Math.floor(clampY(a.y));
  const x1 = Math.ceil(clampX(b.x)), y1 = Math.ceil(clampY(b.y));
  const x = Math.min(x0, boardWidth - 1), y = Math.min(y0, boardHeight - 1);
  return { x, y, w: Math.max(1, x1 - x), h: Math.max(1, y1 - y) };
}

/** The largest scale (1..8) that keeps a w×h frame within the server's pixel cap. */
export function fittingScale(w, h, wanted) {
  let s = Math.max(LIMITS.scale[0], Math.min(LIMITS.scale[1], wanted));
  while (s > 1 && w * h * s * s > LIMITS.framePixels) s -= 1;
  return s;
}

/**
 * Wires #timelapse-open and #timelapse-dialog. `region()` gives the region in view;
 * `toast(message, kind)` shows failures that are not the dialog's.
 */
export function attachTimelapse(region, toast) {
  const open = document.getElementById('timelapse-open');
  const dialog = document.getElementById('timelapse-dialog');
  if (!open || !dialog) return;
  const $ = (id) => document.getElementById(id);
  const form = $('timelapse-form');
  const fields = ['x', 'y', 'w', 'h', 'frames', 'fps', 'scale'].map((k) => [k, $(`timelapse-${k}`)]);
  const start = $('timelapse-start');
  const progress = $('timelapse-progress');
  const status = $('timelapse-status');
  const link = $('timelapse-download');
  let polling = null;

  const setStatus = (text, kind = '') => {
    status.textContent = text;
    status.dataset.kind = kind;
  };

  open.addEventListener('click', () => {
    if (!polling) {
      const r = region();
      for (const [k, input] of fields) if (k in r) input.value = String(r[k]);
      const scale = $('timelapse-scale');
      scale.value = String(fittingScale(r.w, r.h, Number(scale.value) || 1));
    }
    dialog.showModal();
  });
  $('timelapse-close').addEventListener('click', () => dialog.close());

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (polling) return;
    const req = { format: 'apng' };
    for (const [k, input] of fields) req[k] = Math.round(Number(input.value));
    link.hidden = true;
    link.removeAttribute('href');
    progress.value = 0;
    progress.hidden = false;
    start.disabled = true;
    setStatus('Queued…');
    try {
      const job = await startTimelapse(req);
      await follow(job.id);
    } catch (err) {
      progress.hidden = true;
      setStatus(err.message || 'The timelapse could not be started', 'error');
      if (!dialog.open) toast(err.message || 'The timelapse failed', 'error');
    } finally {
      start.disabled = false;
      polling = null;
    }
  });

  /** Polls job `id` until it is done or failed, showing its progress. */
  async function follow(id) {
    polling = id;
    for (;;) {
      const s = await timelapseStatus(id);
      progress.value = s.progress;
      if (s.state === 'done') {
        progress.value = 1;
        setStatus(`Done: ${s.frames} frames, ${(s.bytes / 1048576).toFixed(1)} MiB`, 'done');
        link.href = `/api/timelapse/${encodeURIComponent(id)}/file`;
        link.hidden = false;
        if (!dialog.open) toast('Your timelapse is ready: open Timelapse to download it.');
        return;
      }
      if (s.state === 'failed') {
        throw new Error(s.error || 'The timelapse failed');
      }
      setStatus(s.state === 'queued'
        ? 'Queued: waiting for a renderer…'
        : `Rendering: ${s.frames_done} of ${s.frames} frames`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
}
