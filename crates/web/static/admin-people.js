// Panels about people: look a user up (their placements drawn on the canvas) and bans.

import { get, post, del, listOf } from './admin-api.js';
import { busy, h, msOf, row, toast, when } from './admin-dom.js';

/**
 * `ctx`: {canvas: AdminCanvas, show(tab), forms: {}} shared by the panels; each panel
 * registers what other panels may prefill in `ctx.forms`.
 */
export function usersPanel(ctx) {
  const id = h('input', { type: 'text', id: 'lookup-user', placeholder: '16 hex digits', spellcheck: 'false', autocomplete: 'off', maxlength: 16 });
  const pixel = h('div', { class: 'pixel-info', id: 'pixel-info' }, h('span', { class: 'muted' }, 'Click a pixel on the canvas to see who placed it.'));
  const out = h('div', { class: 'result', id: 'lookup-result' });
  const show = h('input', { type: 'checkbox', id: 'lookup-show', checked: true });
  let current = null;

  const go = h('button', { type: 'submit', class: 'primary', id: 'lookup-go' }, 'Look up');
  const form = h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); lookup(id.value.trim()); } },
    row('User', h('div', { class: 'inline' }, id, go)));

  async function lookup(user) {
    if (!/^[0-9a-f]{16}$/i.test(user)) { toast('A user id is 16 hex digits', 'error'); return; }
    id.value = user;
    await busy(go, async () => {
      const u = await get(`/api/admin/users/${encodeURIComponent(user.toLowerCase())}`);
      current = u;
      render(u);
      ctx.canvas.setMarks(show.checked ? u.pixels : []);
    });
  }

  function render(u) {
    const pixels = u.pixels ?? [];
    out.replaceChildren(
      h('dl', { class: 'facts' },
        h('dt', {}, 'User'), h('dd', { class: 'mono' }, u.user),
        h('dt', {}, 'Identities'), h('dd', { class: 'mono' }, (u.identities ?? [u.user]).join(', ')),
        h('dt', {}, 'Placements'), h('dd', { id: 'lookup-count' }, String(u.placements ?? pixels.length)),
        h('dt', {}, 'First seen'), h('dd', {}, when(u.first_at)),
        h('dt', {}, 'Last seen'), h('dd', {}, when(u.last_at)),
        h('dt', {}, 'Drawn'), h('dd', {}, `${pixels.length} newest placement${pixels.length === 1 ? '' : 's'}${u.truncated ? ' (more not shown)' : ''}`)),
      h('label', { class: 'check' }, show, ' Show their pixels on the canvas'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', onclick: () => { ctx.forms.ban?.setUser(u.user); ctx.show('bans'); } }, 'Ban…'),
        h('button', { type: 'button', onclick: () => { ctx.forms.rollback?.setUser(u.user); ctx.show('rewrite'); } }, 'Roll back…'),
        pixels.length ? h('button', { type: 'button', onclick: () => ctx.canvas.jumpTo(pixels[0][0], pixels[0][1]) }, 'Jump to one') : null),
    );
  }
  show.addEventListener('change', () => ctx.canvas.setMarks(show.checked && current ? current.pixels : []));

  /** A click on the canvas: who placed that pixel. */
  async function onPixel(p) {
    try {
      const info = await get(`/api/pixel?x=${p.x}&y=${p.y}`);
      const swatch = h('span', { class: 'chip', style: `background:${ctx.canvas.palette[info.color] ?? '#fff'}` });
      pixel.replaceChildren(
        swatch,
        h('span', {}, `(${p.x}, ${p.y}) `),
        info.user
          ? h('span', {}, 'by ', h('button', { type: 'button', class: 'link mono', id: 'pixel-user', onclick: () => lookup(info.user) }, info.user), ' ', when(info.at))
          : h('span', { class: 'muted' }, 'never placed'));
      ctx.forms.stamp?.setAt(p);
    } catch (err) {
      pixel.replaceChildren(h('span', { class: 'error' }, err.message));
    }
  }

  ctx.forms.lookup = { lookup };
  return { title: 'Users', el: h('div', {}, pixel, form, out), onPixel };
}

export function bansPanel(ctx) {
  const kind = h('select', { id: 'ban-kind' }, h('option', { value: 'user' }, 'User id'), h('option', { value: 'ip' }, 'IP or CIDR'));
  const target = h('input', { type: 'text', id: 'ban-target', placeholder: '00ab… or 203.0.113.0/24', spellcheck: 'false', autocomplete: 'off' });
  const reason = h('input', { type: 'text', id: 'ban-reason', placeholder: 'Why (shown to them)', maxlength: 500 });
  const until = h('input', { type: 'datetime-local', id: 'ban-until' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'ban-submit' }, 'Ban');
  const list = h('ul', { class: 'list', id: 'ban-list' });

  const form = h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); ban(); } },
    row('Who', h('div', { class: 'inline' }, kind, target)),
    row('Reason', reason),
    row('Until', until, 'empty: until lifted'),
    h('div', { class: 'actions' }, submit));

  async function ban() {
    const body = { [kind.value]: target.value.trim(), reason: reason.value.trim() };
    const end = msOf(until);
    if (end !== undefined) body.until = end;
    await busy(submit, async () => {
      const r = await post('/api/admin/bans', body);
      toast(`Banned ${body[kind.value]} (ban ${r?.id ?? ''})`);
      target.value = '';
      reason.value = '';
      until.value = '';
      await refresh();
    });
  }

  async function refresh() {
    try {
      const bans = listOf(await get('/api/admin/bans'), 'bans', 'entries');
      list.replaceChildren(...(bans.length ? bans.map(item) : [h('li', { class: 'muted' }, 'No bans.')]));
    } catch (err) {
      list.replaceChildren(h('li', { class: 'error' }, err.message));
    }
  }

  function item(b) {
    const lift = h('button', { type: 'button', class: 'small danger' }, 'Lift');
    lift.addEventListener('click', () => busy(lift, async () => {
      await del(`/api/admin/bans/${encodeURIComponent(b.id)}`);
      toast(`Lifted ban ${b.id}`);
      await refresh();
    }));
    return h('li', {},
      h('div', { class: 'item-main' },
        h('span', { class: 'mono' }, b.user ?? b.ip ?? b.target ?? '?'),
        h('span', { class: 'muted' }, b.until ? ['until ', new Date(b.until).toLocaleString()] : 'permanent')),
      h('div', { class: 'item-sub' }, b.reason ?? '', b.at ? [' · ', when(b.at)] : null),
      lift);
  }

  ctx.forms.ban = {
    setUser(user) { kind.value = 'user'; target.value = user; reason.focus(); },
  };
  return { title: 'Bans', el: h('div', {}, form, h('h3', {}, 'Active bans'), list), onShow: refresh };
}
