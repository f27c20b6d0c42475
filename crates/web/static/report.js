// Reporting a pixel to the moderators from the main page: a Report button shown while a
// pixel is selected, and a small dialog for the reason (`POST /api/reports`).

import { ApiError } from './api.js';

/** Longest reason the server takes, in characters. */
export const REASON_MAX = 500;

/** `POST /api/reports` -> `{id}`. */
export async function fileReport(x, y, reason) {
  let res;
  try {
    res = await fetch('/api/reports', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ x, y, reason }),
    });
  } catch {
    throw new ApiError(0, { error: 'network', message: 'Network error: is the server reachable?' });
  }
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) throw new ApiError(res.status, json, res.headers.get('Retry-After'));
  return json;
}

/**
 * Wires #report-open and #report-dialog. `toast(message, kind)` shows the outcome.
 * Returns `{setPixel(pixel|null)}`: the button shows only while a pixel is selected.
 */
export function attachReport(toast) {
  const open = document.getElementById('report-open');
  const dialog = document.getElementById('report-dialog');
  const form = document.getElementById('report-form');
  const reason = document.getElementById('report-reason');
  const where = document.getElementById('report-where');
  const send = document.getElementById('report-send');
  if (!open || !dialog) return { setPixel() {} };
  let pixel = null;

  open.addEventListener('click', () => {
    if (!pixel) return;
    where.textContent = `(${pixel.x}, ${pixel.y})`;
    reason.value = '';
    dialog.dataset.x = String(pixel.x);
    dialog.dataset.y = String(pixel.y);
    dialog.showModal();
    reason.focus();
  });
  document.getElementById('report-cancel').addEventListener('click', () => dialog.close());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = reason.value.trim();
    if (!text) { reason.focus(); return; }
    send.disabled = true;
    try {
      await fileReport(Number(dialog.dataset.x), Number(dialog.dataset.y), text.slice(0, REASON_MAX));
      dialog.close();
      toast('Reported. Thank you: a moderator will look at it.');
    } catch (err) {
      toast(err.message || 'Could not send the report', 'error');
    } finally {
      send.disabled = false;
    }
  });

  return {
    setPixel(p) {
      pixel = p;
      open.hidden = !p;
    },
  };
}
