// The account corner of the top bar: login buttons (one per provider in
// `config.login.providers`), or the logged-in account's display name with a rename
// and a logout button. A new account is asked for a display name. Hidden with
// `--login off`. See docs/API.md, "Accounts and roles".

async function call(method, path, body, csrf) {
  const headers = { 'X-CSRF-Token': csrf ?? '' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = await res.json(); } catch { /* 204 */ }
  if (!res.ok) throw new Error(json?.message ?? `request failed (HTTP ${res.status})`);
  return json;
}

function el(tag, attrs = {}, text = '') {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text) e.textContent = text;
  return e;
}

/**
 * Shows the account state in `#account`. `toast(message, kind)` reports errors.
 * Returns the account shown (or null).
 */
export async function initAccount(config, toast) {
  const root = document.getElementById('account');
  const login = config.login ?? { mode: 'off', providers: [] };
  // Nothing to show: login off, or no provider configured (and so no account).
  if (!root || login.mode === 'off' || (!login.providers?.length && !config.account)) return null;
  root.hidden = false;

  let me = { account: config.account ?? null, csrf_token: null };
  if (me.account) {
    try { me = await call('GET', '/api/me'); } catch { /* shown from the config */ }
  }

  const dialog = el('dialog', { id: 'name-dialog', 'aria-labelledby': 'name-title' });
  dialog.innerHTML = `
    <form method="dialog" id="name-form">
      <h2 id="name-title" style="margin:0 0 8px;font-size:16px">Pick a display name</h2>
      <p style="margin:0 0 10px;font-size:13px">3 to 24 letters, digits, _ or -. Others see it on your pixels.</p>
      <input id="name-input" name="name" required minlength="3" maxlength="24" pattern="[A-Za-z0-9_\\-]{3,24}" autocomplete="nickname">
      <p id="name-error" role="alert" style="color:#b42318;font-size:13px;min-height:1em;margin:6px 0"></p>
      <div style="display:flex;gap:8px;justify-content:flex-end">
        <button type="button" class="ghost" id="name-cancel">Later</button>
        <button type="submit" class="ghost" id="name-save">Save</button>
      </div>
    </form>`;
  document.body.appendChild(dialog);
  const input = dialog.querySelector('#name-input');
  const error = dialog.querySelector('#name-error');
  dialog.querySelector('#name-cancel').addEventListener('click', () => dialog.close());
  dialog.querySelector('#name-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    try {
      me = await call('PUT', '/api/me/name', { name: input.value.trim() }, me.csrf_token);
      dialog.close();
      render();
    } catch (e) {
      error.textContent = e.message;
    }
  });

  function askName() {
    input.value = me.account?.name ?? '';
    error.textContent = '';
    if (!dialog.open) dialog.showModal();
    input.focus();
  }

  function render() {
    root.replaceChildren();
    const a = me.account;
    if (!a) {
      const returnTo = encodeURIComponent(location.pathname + location.search);
      for (const p of login.providers) {
        const link = el('a', {
          class: 'login',
          href: `${p.login_url}?return_to=${returnTo}`,
          'data-provider': p.id,
        }, `Log in with ${p.name}`);
        root.appendChild(link);
      }
      if (login.mode === 'required') root.title = 'Log in to place pixels';
      return;
    }
    const name = el('button', { type: 'button', class: 'ghost', id: 'account-name', title: 'Change your display name' },
      a.name ?? 'Pick a name');
    name.addEventListener('click', askName);
    root.appendChild(name);
    if (a.role) root.appendChild(el('span', { class: 'role', id: 'account-role' }, a.role));
    const out = el('button', { type: 'button', class: 'ghost', id: 'logout' }, 'Log out');
    out.addEventListener('click', async () => {
      try {
        await call('POST', '/auth/logout', undefined, me.csrf_token);
        location.reload();
      } catch (e) {
        toast(e.message, 'error');
      }
    });
    root.appendChild(out);
  }

  render();
  if (me.account && !me.account.name) askName();
  return me.account;
}
