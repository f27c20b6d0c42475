// The page: loads the config, then wires the tiles (world.js), the view, the minimap
// and the UI.

import { initAccount } from './account.js';
import { History, parseMoment } from './history.js';
import { ApiError, getConfig, getPixel, placePixel } from './api.js';
import { Charges } from './charges.js';
import { CooldownShare } from './cooldown-share.js';
import { attachInput } from './input.js';
import { formatArea, joinHash, openingView, parseLink, shareHash, viewPart } from './link.js';
import { Minimap, parseJump } from './minimap.js';
import { attachReport } from './report.js';
import { attachTemplates } from './template-panel.js';
import { Alerts } from './notify.js';
import { attachOverlays } from './overlay-panel.js';
import { attachShare } from './share.js';
import { initStats } from './stats.js';
import { attachTimelapse, visibleRegion } from './timelapse.js';
import { backoffDelay } from './tiles.js';
import { UI } from './ui.js';
import { View } from './view.js';
import { World } from './world.js';

const HASH_THROTTLE_MS = 250;
const COLOR_KEY = 'rplace.color';

/** Config, retried until the server answers: nothing can be shown without it. */
async function loadConfig(onRetry) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await getConfig();
    } catch (err) {
      const delay = backoffDelay(attempt);
      onRetry(err, delay);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** localStorage, which throws when the browser blocks storage: then nothing is kept. */
function storage(op, key, value) {
  try {
    return op === 'get' ? localStorage.getItem(key) : localStorage.setItem(key, value);
  } catch {
    return null;
  }
}

/** Server clock minus ours, from the Date header (whole seconds). Under 2 s of apparent
 * skew is more likely the header's rounding than a wrong clock, so it counts as none. */
function clockSkew(serverDate) {
  if (!Number.isFinite(serverDate)) return 0;
  const skew = serverDate + 500 - Date.now();
  return Math.abs(skew) < 2000 ? 0 : skew;
}

async function main() {
  const canvas = document.getElementById('board');
  const statusText = document.getElementById('status-text');
  const { config, serverDate } = await loadConfig((err, delay) => {
    document.getElementById('status').dataset.state = 'offline';
    statusText.textContent = `can't reach the server, retrying in ${Math.ceil(delay / 1000)}s`;
  });
  const { palette } = config;
  // A logged-in account places as its own identity (docs/API.md, Accounts and roles).
  const myId = config.account?.user ?? config.user?.id ?? null;
  const skew = clockSkew(serverDate);

  const view = new View(config.width, config.height);

  // The last color used is remembered: most people keep placing the same one.
  const savedText = storage('get', COLOR_KEY);
  const saved = savedText === null ? NaN : Number(savedText);
  const state = {
    selected: null, // {x, y}
    color: Number.isInteger(saved) && saved >= 0 && saved < palette.length ? saved : null,
    hover: null,
    cooldownEnd: config.user?.next_at ? config.user.next_at - skew : 0,
    busy: false,
    /** The websocket is reconnecting or the device is offline: Place is disabled. */
    unreachable: false,
    infoToken: 0,
  };

  // The title counts the cooldown down and other tabs learn of ours (cooldown-share.js).
  const cooldownShare = new CooldownShare({
    onRemote: (end) => {
      if (end <= state.cooldownEnd) return;
      state.cooldownEnd = end;
      renderPlace();
    },
  });

  // The bell: a notification and a chime when the cooldown ends, if asked for (notify.js).
  const el = (id) => document.getElementById(id);
  const alerts = new Alerts({
    button: el('alerts-toggle'), menu: el('alerts'), notifyBox: el('alerts-notify'), soundBox: el('alerts-sound'),
    toast: (message, kind) => ui.toast(message, kind),
  });

  // Who is online (live from the websocket), the counts and the leaderboard (stats.js).
  const stats = initStats(config, (message, kind) => ui.toast(message, kind));
  /** History mode (history.js), made once the live world runs. */
  let past = null;

  const world = new World({
    canvas, config, view, skew,
    onStatus: (s) => {
      ui.setStatus(s);
      const unreachable = s.state === 'reconnecting' || s.state === 'offline';
      if (unreachable !== state.unreachable) { state.unreachable = unreachable; renderPlace(); }
    },
    onPixel: (x, y, color, tile) => { pixelChanged(x, y, color, tile); templates?.pixelChanged(x, y); overlays?.pixelChanged(x, y, color); },
    onResize: () => { minimap.refresh(); viewChanged(false); },
    onOnline: (n) => stats.setOnline(n),
  });
  const renderer = world.renderer;
  // The charges model's pool next to the Place button (nothing in the fixed model).
  const charges = new Charges(config, skew, document.getElementById('place'));
  function pickColor(i) {
    state.color = i;
    storage('set', COLOR_KEY, String(i));
    ui.setColor(i);
    renderer.selectedColor = i;
    renderer.request();
    renderPlace();
  }
  const ui = new UI(palette, {
    onPickColor: (i) => pickColor(i),
    onPlace: () => place(),
    onDeselect: () => select(null),
    onZoomIn: () => input.zoomBy(1.6),
    onZoomOut: () => input.zoomBy(1 / 1.6),
    onZoomFit: () => { view.reset(); viewChanged(); },
    onLayout: () => layout(),
  });
  ui.setColor(state.color);
  renderer.selectedColor = state.color;
  const report = attachReport((message, kind) => ui.toast(message, kind));
  // Template overlays (template-panel.js); their part of the hash is theirs.
  const templates = attachTemplates({
    world, palette,
    target: () => state.selected ?? view.pixelAt(view.width / 2, view.height / 2),
    jumpTo: (x, y) => jumpTo(x, y),
    pickColor: (i) => pickColor(i),
    hashChanged: () => viewChanged(false, true),
    toast: (message, kind) => ui.toast(message, kind),
  });
  // Heatmap, virgin map, my pixels over the tiles in view (overlay-panel.js, overlays.js).
  const overlays = attachOverlays({ world });
  // Share: this area and the selected pixel, with the templates and moment shown (share.js).
  attachShare(document.getElementById('share'),
    () => location.origin + location.pathname + location.search
      + shareHash(view, state.selected, templates.hashPart() + (past?.hashSuffix() ?? '')),
    (message, kind, ms) => ui.toast(message, kind, ms));
  attachTimelapse(() => visibleRegion(view, world.width, world.height), (message, kind) => ui.toast(message, kind));
  // Login buttons or the account (account.js); the page works without it.
  initAccount(config, (message, kind) => ui.toast(message, kind)).catch(() => {});

  // ---- layout and view -----------------------------------------------------------

  const dock = document.getElementById('dock');
  const topbar = document.querySelector('.topbar');
  function layout() {
    // --dock-space: room the dock takes at the bottom. On phones the canvas stops above
    // the dock (style.css), so the board centers in the space that is really free; on
    // wider screens the dock floats over the canvas and the fit zoom keeps clear of it.
    const dockTop = dock.getBoundingClientRect().top;
    document.documentElement.style.setProperty('--dock-space', `${Math.round(window.innerHeight - dockTop)}px`);
    // --top-space: where panels under the top bar start (it wraps on a phone).
    document.documentElement.style.setProperty('--top-space', `${Math.round(topbar.getBoundingClientRect().bottom + 10)}px`);
    const rect = canvas.getBoundingClientRect();
    const insetBottom = Math.max(0, rect.bottom - dockTop) + 8;
    view.resize(rect.width, rect.height, 56, insetBottom);
    renderer.resize(rect.width, rect.height, window.devicePixelRatio || 1);
    if (!moved) openView();
    minimap?.layout();
  }

  // Until the user moves, the view is the one the link opens (link.js), fitted again when
  // the canvas changes size, and the URL's view part stays as it came.
  let link = parseLink(location.hash, world.width, world.height);
  let moved = false;
  function openView() {
    const o = openingView(link, {
      width: world.width, height: world.height, viewW: view.width, viewH: view.height,
      fitZoom: view.fitZoom(), pixelZoom: Math.min(16, view.maxZoom),
    });
    view.centerOn(o.x, o.y, o.zoom);
  }
  let minimap = null;
  layout();
  const resized = new ResizeObserver(() => { layout(); viewChanged(false); });
  resized.observe(dock);
  resized.observe(topbar);
  window.addEventListener('resize', () => { layout(); viewChanged(false); });

  templates.applyHash(location.hash);
  window.addEventListener('hashchange', () => {
    templates.applyHash(location.hash);
    const l = parseLink(location.hash, world.width, world.height);
    if (!l) return;
    link = l;
    moved = false;
    openView();
    if (l.pixel) select(l.pixel);
    viewChanged(false);
  });

  let hashTimer = 0;
  /** The view moved (`writeHash`: by the user, so the URL now says where), or only the
   * others' parts of the hash changed (`onlyHash`). */
  function viewChanged(writeHash = true, onlyHash = false) {
    if (writeHash && !onlyHash) moved = true;
    if (!onlyHash) {
      world.viewChanged();
      past?.viewChanged();
      overlays.viewChanged();
      minimap?.draw();
      showCoords();
    }
    if (writeHash || onlyHash) writeHashSoon();
  }

  function writeHashSoon() {
    if (hashTimer) return;
    // replaceState: moving around should not fill the back button's history.
    hashTimer = setTimeout(() => {
      hashTimer = 0;
      const hash = joinHash(moved ? formatArea(view) : viewPart(location.hash), templates.hashPart() + (past?.hashSuffix() ?? ''));
      history.replaceState(history.state, '', hash || location.pathname + location.search);
    }, HASH_THROTTLE_MS);
  }

  function showCoords() {
    const center = view.pixelAt(view.width / 2, view.height / 2)
      ?? { x: Math.min(world.width - 1, Math.floor(view.x)), y: Math.min(world.height - 1, Math.floor(view.y)) };
    ui.setCoords(state.hover ?? state.selected ?? center, view.zoom);
  }

  // ---- selection, pixel info, placing ---------------------------------------------

  let infoTimer = 0;
  function select(pixel) {
    state.selected = pixel;
    renderer.selected = pixel;
    ui.showSelection(pixel, pixel ? world.pixel(pixel.x, pixel.y) : undefined);
    report.setPixel(pixel);
    renderer.request();
    showCoords();
    renderPlace();
    if (pixel) refreshInfo(0);
  }

  /** Loads who placed the selected pixel; stale answers (selection moved on) are dropped. */
  function refreshInfo(delay) {
    clearTimeout(infoTimer);
    infoTimer = setTimeout(async () => {
      const p = state.selected;
      if (!p) return;
      const token = ++state.infoToken;
      try {
        const info = await getPixel(p.x, p.y);
        if (token === state.infoToken && state.selected === p) ui.showPixelInfo(info, myId);
      } catch (err) {
        if (token === state.infoToken) ui.showPixelInfoError(err.message);
      }
    }, delay);
  }

  function cooldownLeft() {
    return Math.max(0, state.cooldownEnd - Date.now());
  }

  function renderPlace() {
    cooldownShare.update(cooldownLeft());
    alerts.update(cooldownLeft());
    ui.renderPlace({
      selected: state.selected,
      color: state.color,
      cooldownLeftMs: cooldownLeft(),
      busy: state.busy,
      unreachable: state.unreachable,
    });
  }

  async function place() {
    const p = state.selected, color = state.color;
    if (state.busy) return;
    if (!p) { ui.toast('Select a pixel first: click or tap the canvas'); return; }
    if (color === null) { ui.toast('Pick a color first'); return; }
    if (cooldownLeft() > 0) return;
    state.busy = true;
    renderPlace();
    try {
      const r = await placePixel(p.x, p.y, color);
      // next_at - at is the cooldown as the server measures it: immune to clock skew.
      state.cooldownEnd = Date.now() + Math.max(0, r.next_at - r.at);
      cooldownShare.placed(cooldownLeft());
      charges.placed(r);
      overlays.placed(p.x, p.y, color, r.seq);
      // Show it now if the live feed has not brought it yet; the tile applies versions
      // in order, so anything placed there after ours still wins.
      world.tiles.placedLocally(p.x, p.y, color, r.seq);
      renderer.request();
      refreshInfo(0);
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) {
        if (err.retryAfterMs !== undefined) state.cooldownEnd = Date.now() + err.retryAfterMs;
        else if (err.nextAt !== undefined) state.cooldownEnd = err.nextAt - skew;
        cooldownShare.placed(cooldownLeft());
        charges.refused(err.body);
        // The server's text names the address limit's internals; say what it means here.
        const wait = Math.max(1, Math.ceil((err.retryAfterMs ?? 1000) / 1000));
        ui.toast(err.code === 'cooldown' ? 'Not yet: wait for the timer'
          : err.code === 'rate_limited' ? `Many people place from your network right now; try again in ${wait} s`
          : err.message, 'error');
      } else {
        ui.toast(err.message || 'Could not place the pixel', 'error');
      }
    } finally {
      state.busy = false;
      renderPlace();
    }
  }

  // ---- input ----------------------------------------------------------------------

  /** The keyboard cursor's mark at the canvas's center (input.js decides when). */
  const keyMark = document.getElementById('key-cursor');
  function showKeyCursor(on) {
    if (!keyMark) return;
    const r = canvas.getBoundingClientRect();
    keyMark.style.left = `${r.left + r.width / 2}px`;
    keyMark.style.top = `${r.top + r.height / 2}px`;
    keyMark.hidden = !on;
  }

  const input = attachInput(canvas, view, {
    onViewChange: () => viewChanged(),
    onTap: (pixel) => select(pixel),
    onHover: (pixel) => {
      if (pixel?.x === state.hover?.x && pixel?.y === state.hover?.y) return;
      state.hover = pixel;
      renderer.hover = pixel;
      renderer.request();
      showCoords();
    },
    onPlace: () => place(),
    onKeyCursor: (on) => showKeyCursor(on),
    onKeySelect: () => {
      const c = view.pixelAt(view.width / 2, view.height / 2);
      if (!c || (state.selected?.x === c.x && state.selected?.y === c.y)) return false;
      select(c);
      return true;
    },
    onEscape: () => select(null),
    onReset: () => { view.reset(); viewChanged(); },
  });

  // ---- live tiles, minimap, jumping ---------------------------------------------

  /** A pixel changed live (or a whole tile loaded: x null): the info card follows. */
  function pixelChanged(x, y, color, tile) {
    const p = state.selected;
    if (!p) return;
    if (x === null) {
      if (Math.floor(p.x / 256) === tile.tx && Math.floor(p.y / 256) === tile.ty) ui.showSelection(p, world.pixel(p.x, p.y));
      return;
    }
    if (p.x === x && p.y === y) {
      ui.showSelection(p, color);
      refreshInfo(250); // several in a burst make one request
    }
  }

  /** Centers on a pixel close enough to see it, and selects it. */
  function jumpTo(x, y, zoom) {
    view.centerOn(x + 0.5, y + 0.5, zoom ?? Math.max(view.zoom, Math.min(16, view.maxZoom)));
    viewChanged();
    select({ x, y });
  }

  minimap = new Minimap(document.getElementById('minimap'), world, view, () => viewChanged());
  minimap.layout();
  const jumpForm = document.getElementById('jump');
  const jumpInput = document.getElementById('jump-input');
  jumpForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const j = parseJump(jumpInput.value, world.width, world.height);
    if (!j) {
      ui.toast(`Type x, y: whole numbers from 0 to ${world.width - 1} and ${world.height - 1}`, 'error');
      return;
    }
    jumpTo(j.x, j.y, j.zoom);
    jumpInput.blur();
    canvas.focus({ preventScroll: true });
  });

  window.addEventListener('online', () => {
    ui.setStatus({ state: world.state, retryAt: world.retryAt });
    // The socket may never have noticed: what it says now is what counts.
    state.unreachable = world.state === 'reconnecting' || world.state === 'offline';
    renderPlace();
    world.kick();
  });
  window.addEventListener('offline', () => {
    ui.setStatus({ state: 'offline' });
    state.unreachable = true;
    renderPlace();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') world.kick();
  });
  world.start();

  // History mode (history.js): the canvas at a past moment, restored from the URL.
  past = new History({ world, toast: (message, kind) => ui.toast(message, kind), onMomentChange: writeHashSoon });
  const moment = parseMoment(location.hash);
  if (moment) past.open(moment);
  if (link?.pixel) select(link.pixel);

  // ---- clocks ---------------------------------------------------------------------

  let lastCooling = cooldownLeft() > 0;
  setInterval(() => {
    const cooling = cooldownLeft() > 0;
    if (cooling || lastCooling) renderPlace();
    lastCooling = cooling;
    charges.tick();
    ui.tickTimes();
  }, 250);

  renderPlace();
  ui.setStatus({ state: world.state });
  viewChanged(false);

  // A small read-only handle for the browser tests and the curious.
  window.rplace = Object.freeze({
    /** The highest tile version the page has seen. */
    get seq() { return world.seq; },
    pixel: (x, y) => world.pixel(x, y),
    get view() { return view.snapshot(); },
    /** The zoom that shows the whole board here. */
    get fitZoom() { return view.fitZoom(); },
    get status() { return world.state; },
    get size() { return { width: world.width, height: world.height }; },
    /** What the page holds and watches: the level shown, the level-0 tiles wanted,
     * cached and subscribed, and what the socket brought. */
    get tiles() {
      const t = world.tiles;
      return {
        level: world.level,
        levels: world.levels,
        wanted: world.rect,
        subscribed: t.subscription,
        cached: t.tiles.size,
        loaded: [...t.tiles.values()].filter((e) => e.pixels).map((e) => [e.tx, e.ty, e.version]),
        overviews: [...world.overviews.images.values()].filter((e) => e.img).map((e) => [e.z, e.tx, e.ty]),
        surfaces: renderer.surfaces.size,
        frames: world.live.received.frames,
        framesFrom: [...world.live.received.tiles],
      };
    },
    tileVersion: (tx, ty) => world.tiles.peek(tx, ty)?.version ?? null,
    /** The templates shown: id, opacity and the counts on the loaded tiles. */
    get templates() {
      return templates.overlays.map((t) => ({ id: t.id, opacity: t.opacity, ...t.counts, list: undefined }));
    },
    /** The overlay shown, why not (reason), and the tiles of its data loaded. */
    get overlay() { return overlays.snapshot(); },
    get color() { return state.color; },
    get selected() { return state.selected; },
  });
}

main().catch((err) => {
  console.error(err);
  const t = document.getElementById('status-text');
  if (t) t.textContent = 'failed to start';
});
