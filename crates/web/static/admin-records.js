// The reports queue (list, inspect with a jump to the pixel, resolve) and the audit log.

import { get, post, query } from './admin-api.js';
import { busy, h, rectText, row, toast, when } from './admin-dom.js';

export function reportsPanel(ctx) {
  const status = h('select', { id: 'reports-status' },
    h('option', { value: 'open' }, 'Open'), h('option', { value: 'resolved' }, 'Resolved'), h('option', { value: 'all' }, 'All'));
  const list = h('ul', { class: 'list', id: 'reports-list' });
  const more = h('button', { type: 'button', class: 'small', hidden: true }, 'Older');
  const detail = h('div', { class: 'result', id: 'report-detail' });
  let next = null;

  async function load(append = false) {
    try {
      const r = await get(`/api/admin/reports${query({ status: status.value, before: append ? next : undefined })}`);
      const items = r.reports.map(item);
      if (append) list.append(...items);
      else list.replaceChildren(...(items.length ? items : [h('li', { class: 'muted' }, 'No reports.')]));
      next = r.next_before;
      more.hidden = next === null || next === undefined;
    } catch (err) {
      list.replaceChildren(h('li', { class: 'error' }, err.message));
    }
  }
  status.addEventListener('change', () => load());
  more.addEventListener('click', () => load(true));

  function item(rep) {
    return h('li', { class: 'report', dataset: { id: rep.id, status: rep.status } },
      h('button', { type: 'button', class: 'item-main link', onclick: () => inspect(rep.id) },
        h('span', { class: 'chip', style: `background:${ctx.canvas.palette[rep.color] ?? '#fff'}` }),
        h('span', {}, `#${rep.id} (${rep.x}, ${rep.y})`),
        h('span', { class: `badge ${rep.status}` }, rep.status)),
      h('div', { class: 'item-sub' }, rep.reason),
      h('div', { class: 'item-sub muted' }, when(rep.at), rep.rect ? ` · area ${rectText(rep.rect)}` : ''));
  }

  async function inspect(id) {
    try {
      const v = await get(`/api/admin/reports/${id}`);
      const rep = v.report;
      ctx.canvas.jumpTo(rep.x, rep.y);
      if (rep.rect) ctx.canvas.setRect(rep.rect);
      detail.replaceChildren(
        h('h3', {}, `Report #${rep.id}`),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Pixel'), h('dd', {}, `(${rep.x}, ${rep.y})`),
          h('dt', {}, 'Reason'), h('dd', {}, rep.reason),
          h('dt', {}, 'Filed'), h('dd', {}, when(rep.at), ' by ', h('span', { class: 'mono' }, rep.reporter)),
          h('dt', {}, 'Reported'), h('dd', {}, chip(rep.color), rep.last_user
            ? ['placed by ', userLink(rep.last_user), ` (seq ${rep.last_seq})`] : 'never placed'),
          h('dt', {}, 'Now'), h('dd', {}, chip(v.color))),
        h('h4', {}, 'Latest placements here'),
        h('ol', { class: 'history' }, ...(v.history ?? []).map((p) =>
          h('li', {}, chip(p.color), userLink(p.user), ' ', when(p.at), h('span', { class: 'muted' }, ` seq ${p.seq}`)))),
        rep.resolved ? resolvedText(rep.resolved) : resolveForm(rep));
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  const chip = (c) => h('span', { class: 'chip', style: `background:${ctx.canvas.palette[c] ?? '#fff'}` });
  const userLink = (u) => h('button', { type: 'button', class: 'link mono', onclick: () => { ctx.forms.lookup?.lookup(u); ctx.show('users'); } }, u);
  const resolvedText = (s) => h('p', { class: 'ok' }, `Resolved “${s.resolution}” by ${s.by_name} `, when(s.at), s.note ? ` — ${s.note}` : '');

  function resolveForm(rep) {
    const resolution = h('input', { type: 'text', id: 'resolve-resolution', placeholder: 'e.g. rolled back, no action', maxlength: 200 });
    const note = h('textarea', { id: 'resolve-note', rows: 2, maxlength: 2000, placeholder: 'Note (optional)' });
    const submit = h('button', { type: 'submit', class: 'primary', id: 'resolve-submit' }, 'Resolve');
    return h('form', { class: 'stack', onsubmit: (e) => {
      e.preventDefault();
      busy(submit, async () => {
        const body = { resolution: resolution.value.trim() };
        if (note.value.trim()) body.note = note.value.trim();
        await post(`/api/admin/reports/${rep.id}/resolve`, body);
        toast(`Report #${rep.id} resolved`);
        await Promise.all([inspect(rep.id), load()]);
        ctx.changed?.();
      });
    } }, row('Resolution', resolution), row('Note', note), h('div', { class: 'actions' }, submit));
  }

  return {
    title: 'Reports',
    el: h('div', {}, row('Show', status), list, more, detail),
    onShow: () => load(),
  };
}

export function auditPanel() {
  const kind = h('select', { id: 'audit-kind' }, h('option', { value: '' }, 'All actions'),
    ...['ban', 'unban', 'rollback', 'restore', 'protect', 'unprotect', 'fill', 'stamp', 'resolve_report', 'grant_moderator', 'revoke_moderator']
      .map((k) => h('option', { value: k }, k)));
  const actor = h('input', { type: 'text', id: 'audit-actor', placeholder: 'actor id (optional)', spellcheck: 'false', maxlength: 16 });
  const list = h('ol', { class: 'list audit', id: 'audit-list' });
  const more = h('button', { type: 'button', class: 'small', hidden: true }, 'Older');
  let next = null;

  async function load(append = false) {
    try {
      const r = await get(`/api/admin/audit${query({ kind: kind.value, actor: actor.value.trim(), before: append ? next : undefined })}`);
      const items = r.entries.map(item);
      if (append) list.append(...items);
      else list.replaceChildren(...(items.length ? items : [h('li', { class: 'muted' }, 'Nothing recorded yet.')]));
      next = r.next_before;
      more.hidden = next === null || next === undefined;
    } catch (err) {
      list.replaceChildren(h('li', { class: 'error' }, err.message));
    }
  }
  kind.addEventListener('change', () => load());
  actor.addEventListener('change', () => load());
  more.addEventListener('click', () => load(true));

  function item(e) {
    return h('li', { dataset: { kind: e.kind } },
      h('div', { class: 'item-main' },
        h('span', { class: 'badge' }, e.kind),
        h('span', {}, e.actor_name || e.actor),
        e.pixels ? h('span', { class: 'muted' }, `${e.pixels} px`) : null,
        when(e.at)),
      e.reason ? h('div', { class: 'item-sub' }, e.reason) : null,
      h('details', {}, h('summary', {}, 'detail'), h('pre', {}, JSON.stringify(e.detail, null, 1))));
  }

  return {
    title: 'Audit',
    el: h('div', {}, h('div', { class: 'inline' }, kind, actor), list, more),
    onShow: () => load(),
  };
}
