// Small text formatters shared by the UI. Pure, so they are unit-tested in Node.

/** `00ab12cd34ef5678` -> `00ab…5678`: enough to tell people apart at a glance. */
export function shortId(id) {
  const s = String(id ?? '');
  return s.length > 10 ? `${s.slice(0, 4)}…${s.slice(-4)}` : s;
}

/** Milliseconds left -> `mm:ss`, rounded up so `00:00` only shows when time is up. */
export function formatCountdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

/** `3 min ago`, from unix ms. */
export function relativeTime(at, now = Date.now()) {
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 10) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ago`;
  const d = Math.floor(h / 24);
  if (d < 60) return `${d} day${d === 1 ? '' : 's'} ago`;
  return new Date(at).toLocaleDateString();
}

/** The absolute time for a tooltip. */
export function absoluteTime(at) {
  return new Date(at).toLocaleString();
}
