// The moderators' page at /admin: the live canvas (the main page's rendering and sync
// code) with panels for users, bans, rewrites with preview, protected areas, reports
// and the audit log. It works with a moderator's session cookie or a pasted admin token.

import { getConfig } from './api.js';
import { get, getToken, setCsrf, setToken } from './admin-api.js';
import { AdminCanvas } from './admin-canvas.js';
import { h, rectText } from './admin-dom.js';
import { bansPanel, usersPanel } from './admin-people.js';
import { auditPanel, reportsPanel } from './admin-records.js';
import { protectPanel, rewritePanel } from './admin-rewrite.js';

const $ = (id) => document.getElementById(id);

/** Who this page acts as: `GET /api/admin/status` answers only an authenticated moderator. */
async function checkAuth(config) {
  const state = $('auth-state');
  const login = $('auth-login');
  login.replaceChildren();
  try {
    await get('/api/admin/status');
    state.textContent = getToken() ? 'Signed in with the admin token' : 'Signed in as a moderator';
    document.body.dataset.auth = 'ok';
    return true;
  } catch (err) {
    document.body.dataset.auth = 'none';
    if (err.code === 'admin_disabled') {
      state.textContent = 'Admin endpoints are disabled on this server (start it with --admin-token or configure moderators).';
    } else if (err.status === 403) {
      state.textContent = 'Your account is not a moderator.';
    } else {
      state.textContent = err.status === 401 ? 'Not signed in.' : err.message;
    }
    // Providers as `GET /api/config` lists them: names, or {id, name} objects.
    for (const p of config.login?.providers ?? []) {
      const id = typeof p === 'string' ? p : p.id;
      const name = typeof p === 'string' ? p : (p.name ?? p.id);
      const url = (typeof p === 'object' && p.login_url) || `/auth/login/${encodeURIComponent(id)}`;
      login.append(h('a', { class: 'button', href: `${url}?return_to=${encodeURIComponent('/admin')}` }, `Log in with ${name}`));
    }
    return false;
  }
}

async function main() {
  const { config } = await getConfig();
  // A logged-in moderator's CSRF token, if accounts are enabled.
  try { setCsrf((await get('/api/me'))?.csrf_token); } catch { /* no accounts here */ }

  const tokenInput = $('token');
  $('token-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    setToken(tokenInput.value.trim());
    tokenInput.value = '';
    if (await checkAuth(config)) {
      showTab(current ?? 'reports');
      ctx.refreshProtected?.();
    }
  });
  $('token-forget').addEventListener('click', async () => {
    setToken('');
    await checkAuth(config);
  });

  const areaText = $('area-text');
  const selectBtn = $('area-select');
  const canvas = new AdminCanvas($('board'), config, {
    onPixel: (p) => panels.users.onPixel?.(p),
    onRect: (r) => { areaText.textContent = rectText(r); $('area-clear').disabled = !r; },
    onStatus: (s) => { $('live').dataset.state = s; $('live-text').textContent = s; },
  });
  selectBtn.addEventListener('click', () => {
    canvas.selecting = !canvas.selecting;
    selectBtn.setAttribute('aria-pressed', String(canvas.selecting));
    $('board').classList.toggle('selecting', canvas.selecting);
  });
  $('area-clear').addEventListener('click', () => canvas.setRect(null));

  const ctx = { canvas, forms: {}, show: (t) => showTab(t), changed: () => panels.audit.onShow?.() };
  const panels = {
    users: usersPanel(ctx),
    bans: bansPanel(ctx),
    rewrite: rewritePanel(ctx),
    protect: protectPanel(ctx),
    reports: reportsPanel(ctx),
    audit: auditPanel(ctx),
  };
  const tabs = $('tabs');
  const body = $('panel');
  let current = null;
  for (const [name, p] of Object.entries(panels)) {
    p.el.id = `panel-${name}`;
    p.el.hidden = true;
    body.append(p.el);
    tabs.append(h('button', { type: 'button', role: 'tab', id: `tab-${name}`, 'aria-selected': 'false', onclick: () => showTab(name) }, p.title));
  }
  function showTab(name) {
    current = name;
    for (const [n, p] of Object.entries(panels)) {
      p.el.hidden = n !== name;
      $(`tab-${n}`).setAttribute('aria-selected', String(n === name));
    }
    if (document.body.dataset.auth === 'ok') panels[name].onShow?.();
  }

  const ok = await checkAuth(config);
  showTab('reports');
  // Protected areas are drawn whatever panel is open.
  if (ok) ctx.refreshProtected?.();

  // A small handle for the browser tests and the curious.
  window.rplaceAdmin = Object.freeze({
    get seq() { return canvas.world.seq; },
    pixel: (x, y) => canvas.pixel(x, y),
    get preview() { return canvas.preview ? { bbox: canvas.preview.bbox } : null; },
    get marks() { return canvas.marks.length; },
    get rect() { return canvas.rect; },
    get view() { return canvas.view.snapshot(); },
    setRect: (r) => canvas.setRect(r),
    fit: () => { canvas.view.reset(); canvas.world.viewChanged(); },
    get status() { return canvas.world.state; },
  });
}

main().catch((err) => {
  console.error(err);
  const t = document.getElementById('auth-state');
  if (t) t.textContent = `The page failed to start: ${err.message}`;
});
