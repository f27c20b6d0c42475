// Presence and stats: the "N online" pill in the top bar (kept live by the websocket's
// `hello` and `online` messages) and, on a click, a dialog with the canvas's counts
// (`GET /api/stats`), the visitor's own (`GET /api/stats/me`), the leaderboard
// (`GET /api/leaderboard`) and, for a logged-in account with a display name, the opt-in
// (`PUT /api/me/leaderboard`). See docs/API.md, "Presence and stats".

const fmt = new Intl.NumberFormat();

async function getJson(path) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) throw new Error(`could not load ${path} (HTTP ${res.status})`);
  return res.json();
}

/**
 * Wires the pill and the dialog. `toast(message, kind)` reports errors.
 * Returns `{ setOnline(n) }`.
 */
export function initStats(config, toast) {
  const pill = document.getElementById('online');
  const count = document.getElementById('online-n');
  const dialog = document.getElementById('stats-dialog');
  const $ = (id) => document.getElementById(id);
  let online = null;

  function setOnline(n) {
    online = n;
    if (!pill) return;
    pill.hidden = false;
    count.textContent = fmt.format(n);
    pill.setAttribute('aria-label', `${fmt.format(n)} online; open the stats`);
    if (dialog?.open) $('stats-online').textContent = fmt.format(n);
  }

  function colorRows(colors) {
    const list = $('stats-colors');
    list.replaceChildren();
    const max = Math.max(1, ...colors.map((c) => c.placements));
    for (const c of [...colors].sort((a, b) => b.placements - a.placements)) {
      const li = document.createElement('li');
      const chip = document.createElement('span');
      chip.className = 'chip';
      chip.style.background = c.hex;
      const bar = document.createElement('span');
      bar.className = 'stats-bar';
      bar.style.width = `${Math.round((c.placements / max) * 100)}%`;
      const n = document.createElement('span');
      n.className = 'stats-n';
      n.textContent = fmt.format(c.placements);
      li.setAttribute('aria-label', `color ${c.hex}: ${fmt.format(c.placements)} pixel${c.placements === 1 ? '' : 's'}`);
      li.append(chip, bar, n);
      list.append(li);
    }
  }

  function boardRows(entries) {
    const list = $('stats-board');
    list.replaceChildren();
    for (const e of entries) {
      const li = document.createElement('li');
      li.textContent = `${e.name}: ${fmt.format(e.placements)}`;
      list.append(li);
    }
    $('stats-board-empty').hidden = entries.length > 0;
  }

  async function optIn(me) {
    const label = $('stats-optin');
    const box = $('stats-optin-box');
    // Only a logged-in account with a display name can be listed.
    if (!config.account) { label.hidden = true; return; }
    let account;
    try { account = await getJson('/api/me'); } catch { label.hidden = true; return; }
    if (!account?.account?.name) { label.hidden = true; return; }
    label.hidden = false;
    box.checked = !!me.leaderboard;
    box.onchange = async () => {
      box.disabled = true;
      try {
        const res = await fetch('/api/me/leaderboard', {
          method: 'PUT',
          credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': account.csrf_token ?? '' },
          body: JSON.stringify({ show: box.checked }),
        });
        const body = await res.json().catch(() => ({}));
        if (!res.ok) throw new Error(body.message ?? `HTTP ${res.status}`);
        refresh();
      } catch (err) {
        box.checked = !box.checked;
        toast(`Could not change the leaderboard setting: ${err.message}`, 'error');
      } finally {
        box.disabled = false;
      }
    };
  }

  async function refresh() {
    try {
      const [s, me, board] = await Promise.all([
        getJson('/api/stats'), getJson('/api/stats/me'), getJson('/api/leaderboard?limit=20'),
      ]);
      setOnline(s.online);
      $('stats-online').textContent = fmt.format(s.online);
      $('stats-placements').textContent = fmt.format(s.placements);
      $('stats-placers').textContent = fmt.format(s.placers);
      $('stats-mine').textContent = fmt.format(me.placements);
      colorRows(s.colors);
      boardRows(board.entries);
      await optIn(me);
    } catch (err) {
      toast(`The stats are not available now: ${err.message}`, 'error');
    }
  }

  pill?.addEventListener('click', () => {
    if (!dialog) return;
    dialog.showModal();
    if (online !== null) $('stats-online').textContent = fmt.format(online);
    refresh();
  });

  return { setOnline };
}
