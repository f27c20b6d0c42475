// Panels that change many pixels at once — rollback by user, restore an area to a
// moment, fill, stamp — each previewed on the canvas before it is applied; and protected
// areas, drawn on the canvas. The area is the one selected on the canvas.

import { get, post, del, listOf, query } from './admin-api.js';
import { asRect } from './admin-canvas.js';
import { busy, h, msOf, rectText, row, toast, when } from './admin-dom.js';

/**
 * Preview then apply. `request(preview)` builds `{path, body, type}`; the preview's PNG is
 * drawn at its bbox; Apply sends what was previewed, without `preview`.
 */
function previewed(ctx, name, request) {
  const previewBtn = h('button', { type: 'button', id: `${name}-preview` }, 'Preview');
  const applyBtn = h('button', { type: 'button', class: 'primary', id: `${name}-apply`, disabled: true }, 'Apply');
  const result = h('div', { class: 'result', id: `${name}-result` });
  let pending = null;
  /** The panel's reason, for the audit log: in the JSON body, or the stamp's query. */
  const withReason = (req) => {
    const reason = ctx.reason?.();
    if (!req || !reason) return req;
    if (req.type === 'image/png') return { ...req, path: `${req.path}${req.path.includes('?') ? '&' : '?'}reason=${encodeURIComponent(reason)}` };
    return { ...req, body: { ...req.body, reason } };
  };

  previewBtn.addEventListener('click', () => busy(previewBtn, async () => {
    const req = withReason(await request(true));
    if (!req) return;
    const r = await post(req.path, req.body, req.type);
    const bbox = asRect(r?.bbox);
    await ctx.canvas.setPreview(r?.png, bbox);
    pending = withReason(await request(false));
    applyBtn.disabled = false;
    result.replaceChildren(h('strong', { dataset: { pixels: r?.pixels ?? 0 } }, `${r?.pixels ?? 0} pixels would change`),
      bbox ? h('span', { class: 'muted' }, ` in ${rectText(bbox)}`) : null,
      h('div', { class: 'hint' }, 'The preview is drawn on the canvas (outlined in orange). Nothing has changed yet.'));
  }));
  applyBtn.addEventListener('click', () => busy(applyBtn, async () => {
    if (!pending) return;
    const r = await post(pending.path, pending.body, pending.type);
    pending = null;
    applyBtn.disabled = true;
    ctx.canvas.clearPreview();
    const seqs = r?.first_seq ? ` (seq ${r.first_seq}–${r.last_seq})` : '';
    result.replaceChildren(h('strong', { class: 'ok', dataset: { applied: r?.pixels ?? 0 } }, `Applied: ${r?.pixels ?? 0} pixels changed${seqs}`));
    toast(`${name}: ${r?.pixels ?? 0} pixels changed`);
    ctx.changed?.();
  }));
  /** Forget a preview whose inputs changed. */
  const reset = () => { pending = null; applyBtn.disabled = true; ctx.canvas.clearPreview(); };
  return { actions: h('div', { class: 'actions' }, previewBtn, applyBtn), result, reset };
}

function needRect(ctx) {
  const r = ctx.canvas.rect;
  if (!r) toast('Select an area first: drag on the canvas with "Select area" on (or hold Shift)', 'error');
  return r;
}

function rollbackForm(ctx) {
  const user = h('input', { type: 'text', id: 'rollback-user', placeholder: '16 hex digits', spellcheck: 'false', autocomplete: 'off', maxlength: 16 });
  const since = h('input', { type: 'datetime-local', id: 'rollback-since' });
  const until = h('input', { type: 'datetime-local', id: 'rollback-until' });
  const inRect = h('input', { type: 'checkbox', id: 'rollback-in-rect' });
  const flow = previewed(ctx, 'rollback', (preview) => {
    const body = { user: user.value.trim() };
    if (msOf(since) !== undefined) body.since = msOf(since);
    if (msOf(until) !== undefined) body.until = msOf(until);
    if (inRect.checked) {
      const r = needRect(ctx);
      if (!r) return null;
      body.rect = r;
    }
    if (preview) body.preview = true;
    return { path: '/api/admin/rollback', body };
  });
  for (const i of [user, since, until, inRect]) i.addEventListener('input', flow.reset);
  ctx.forms.rollback = { setUser(u) { user.value = u; flow.reset(); } };
  return h('section', { class: 'card' },
    h('h3', {}, 'Roll back a user'),
    h('p', { class: 'hint' }, 'Undoes their placements: each pixel they hold returns to its color before them. Pixels others painted over later stay.'),
    row('User', user), row('Since', since), row('Until', until),
    h('label', { class: 'check' }, inRect, ' Only inside the selected area'),
    flow.actions, flow.result);
}

function restoreForm(ctx) {
  const at = h('input', { type: 'datetime-local', id: 'restore-at', step: 1 });
  const seq = h('input', { type: 'number', id: 'restore-seq', min: 0, placeholder: 'or a seq' });
  const flow = previewed(ctx, 'restore', (preview) => {
    const rect = needRect(ctx);
    if (!rect) return null;
    const body = { rect };
    if (seq.value !== '') body.seq = Number(seq.value);
    else if (msOf(at) !== undefined) body.at = msOf(at);
    else { toast('Give a moment (date and time) or a seq', 'error'); return null; }
    if (preview) body.preview = true;
    return { path: '/api/admin/restore', body };
  });
  for (const i of [at, seq]) i.addEventListener('input', flow.reset);
  return h('section', { class: 'card' },
    h('h3', {}, 'Restore the area to a moment'),
    h('p', { class: 'hint' }, 'The selected area becomes exactly what it was then.'),
    row('At', at), row('Seq', seq), flow.actions, flow.result);
}

function fillForm(ctx) {
  let color = 0;
  const swatches = h('div', { class: 'swatches', id: 'fill-colors', role: 'radiogroup' });
  ctx.canvas.palette.forEach((hex, i) => {
    const b = h('button', { type: 'button', class: 'swatch', style: `background:${hex}`, title: hex, 'aria-label': `Color ${i}`, 'aria-checked': String(i === 0), role: 'radio', dataset: { color: i } });
    b.addEventListener('click', () => {
      color = i;
      for (const s of swatches.children) s.setAttribute('aria-checked', String(s === b));
      flow.reset();
    });
    swatches.append(b);
  });
  const flow = previewed(ctx, 'fill', (preview) => {
    const rect = needRect(ctx);
    if (!rect) return null;
    return { path: '/api/admin/fill', body: preview ? { rect, color, preview: true } : { rect, color } };
  });
  return h('section', { class: 'card' }, h('h3', {}, 'Fill the area'), swatches, flow.actions, flow.result);
}

function stampForm(ctx) {
  const file = h('input', { type: 'file', id: 'stamp-file', accept: 'image/png' });
  const x = h('input', { type: 'number', id: 'stamp-x', min: 0, value: 0 });
  const y = h('input', { type: 'number', id: 'stamp-y', min: 0, value: 0 });
  const flow = previewed(ctx, 'stamp', (preview) => {
    const png = file.files?.[0];
    if (!png) { toast('Choose a PNG image first', 'error'); return null; }
    return {
      path: `/api/admin/stamp${query({ x: x.value, y: y.value, preview: preview ? 'true' : undefined })}`,
      body: png,
      type: 'image/png',
    };
  });
  for (const i of [file, x, y]) i.addEventListener('input', flow.reset);
  ctx.forms.stamp = { setAt(p) { x.value = p.x; y.value = p.y; flow.reset(); } };
  return h('section', { class: 'card' },
    h('h3', {}, 'Stamp an image'),
    h('p', { class: 'hint' }, 'A PNG, mapped to the nearest palette colors, with its top-left corner at x, y (click a pixel to set it).'),
    row('Image', file), h('div', { class: 'inline' }, row('x', x), row('y', y)), flow.actions, flow.result);
}

export function rewritePanel(ctx) {
  const reason = h('input', { type: 'text', id: 'rewrite-reason', placeholder: 'e.g. raid at 20:15 (kept in the audit log)', maxlength: 500 });
  ctx.reason = () => reason.value.trim();
  return {
    title: 'Rewrite',
    el: h('div', {}, row('Reason', reason), rollbackForm(ctx), restoreForm(ctx), fillForm(ctx), stampForm(ctx)),
  };
}

export function protectPanel(ctx) {
  const reason = h('input', { type: 'text', id: 'protect-reason', placeholder: 'e.g. the event logo', maxlength: 500 });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'protect-submit' }, 'Protect the selected area');
  const list = h('ul', { class: 'list', id: 'protect-list' });
  const form = h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); protect(); } },
    h('p', { class: 'hint' }, 'Only moderators may place inside a protected area. Protected areas are drawn in blue.'),
    row('Reason', reason), h('div', { class: 'actions' }, submit));

  async function protect() {
    const rect = needRect(ctx);
    if (!rect) return;
    await busy(submit, async () => {
      const body = { rect };
      if (reason.value.trim()) body.reason = reason.value.trim();
      const r = await post('/api/admin/protect', body);
      toast(`Protected ${rectText(rect)} (area ${r?.id ?? ''})`);
      reason.value = '';
      await refresh();
    });
  }

  async function refresh() {
    try {
      const areas = listOf(await get('/api/admin/protect'), 'areas', 'protected', 'entries');
      ctx.canvas.setProtected(areas.map((a) => asRect(a.rect ?? a)).filter(Boolean));
      list.replaceChildren(...(areas.length ? areas.map(item) : [h('li', { class: 'muted' }, 'No protected areas.')]));
    } catch (err) {
      list.replaceChildren(h('li', { class: 'error' }, err.message));
    }
  }

  function item(a) {
    const r = asRect(a.rect ?? a);
    const remove = h('button', { type: 'button', class: 'small danger' }, 'Unprotect');
    remove.addEventListener('click', () => busy(remove, async () => {
      await del(`/api/admin/protect/${encodeURIComponent(a.id)}`);
      toast(`Unprotected area ${a.id}`);
      await refresh();
    }));
    return h('li', {},
      h('div', { class: 'item-main' },
        h('button', { type: 'button', class: 'link', onclick: () => r && ctx.canvas.jumpTo(r.x, r.y) }, rectText(r)),
        a.reason ? h('span', { class: 'muted' }, a.reason) : null),
      a.at ? h('div', { class: 'item-sub' }, when(a.at)) : null,
      remove);
  }

  ctx.refreshProtected = refresh;
  return { title: 'Protect', el: h('div', {}, form, h('h3', {}, 'Protected areas'), list), onShow: refresh };
}
