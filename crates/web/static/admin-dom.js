// Small DOM helpers for the moderators' page: building elements, form rows, toasts.

import { absoluteTime, relativeTime } from './format.js';

/** `h('button', {class: 'x', onclick}, 'text', child)`: an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A labelled form row. */
export function row(label, control, hint) {
  return h('label', { class: 'row' }, h('span', { class: 'label' }, label), control, hint ? h('span', { class: 'hint' }, hint) : null);
}

/** `<time>` showing how long ago, with the absolute time as tooltip. */
export function when(at) {
  if (!Number.isFinite(at)) return h('span', { class: 'muted' }, '–');
  return h('time', { datetime: new Date(at).toISOString(), title: absoluteTime(at) }, relativeTime(at));
}

/** Unix ms of a `datetime-local` input, or undefined when empty. */
export function msOf(input) {
  if (!input.value) return undefined;
  const t = new Date(input.value).getTime();
  return Number.isFinite(t) ? t : undefined;
}

/** `x,y w×h` of a rectangle. */
export function rectText(r) {
  return r ? `${r.x},${r.y} ${r.w}×${r.h}` : 'none';
}

const toasts = () => document.getElementById('toasts');

/** A message that fades away; `kind` 'error' stays longer. */
export function toast(message, kind = 'info') {
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  toasts().append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

/** Runs `fn` with `button` disabled; shows its error as a toast. */
export async function busy(button, fn) {
  button.disabled = true;
  try {
    return await fn();
  } catch (err) {
    toast(err.message || String(err), 'error');
    return undefined;
  } finally {
    button.disabled = false;
  }
}
