// The Templates panel: upload a PNG at the selected pixel (or the view's center), add a
// template by id or link, and for each one shown: its opacity, how many of its pixels
// are wrong on the loaded tiles (with the first few listed), "next wrong pixel" (jumps
// there and picks its color) and remove. The templates shown and their opacities live in
// the page's hash (`&t=<id>:<opacity %>,...`), so a link restores them.

import { drawTemplates } from './template-overlay.js';
import {
  DEFAULT_OPACITY, ID_RE, MAX_OVERLAYS, compare, covers, formatTemplatesParam, loadTemplate,
  nextWrong, parseTemplatesParam, uploadTemplate,
} from './templates.js';

const $ = (id) => document.getElementById(id);
/** Counts are redone at most this often while pixels change. */
const COUNT_EVERY_MS = 300;

/**
 * @param {object} o
 * @param {import('./world.js').World} o.world
 * @param {string[]} o.palette  '#RRGGBB' per index
 * @param {() => ({x: number, y: number}|null)} o.target  where an upload goes
 * @param {(x: number, y: number) => void} o.jumpTo  centers on and selects a pixel
 * @param {(color: number) => void} o.pickColor
 * @param {() => void} o.hashChanged  the templates part of the hash changed
 * @param {(message: string, kind?: string) => void} o.toast
 * @returns {{hashPart(): string, pixelChanged(x: number|null, y: number|null): void,
 *   applyHash(hash: string): void, overlays: object[]}}
 */
export function attachTemplates(o) {
  const { world, palette } = o;
  const renderer = world.renderer;
  const panel = $('templates-panel');
  const toggle = $('templates-toggle');
  const list = $('template-list');
  /** The templates shown, in the order added: {id, meta, indices, image, opacity, ...}. */
  const overlays = [];
  /** Ids being loaded (so a hash applied twice loads once). */
  const loading = new Set();
  let countTimer = 0;

  const tileAt = (tx, ty) => world.tiles.peek(tx, ty)?.pixels ?? null;

  renderer.afterDraw = () => {
    if (overlays.length) drawTemplates(renderer.ctx, renderer.transform(), overlays, renderer.paletteCss);
  };

  toggle.addEventListener('click', () => {
    panel.hidden = !panel.hidden;
    toggle.setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) showTarget();
  });
  $('template-close').addEventListener('click', () => { panel.hidden = true; toggle.setAttribute('aria-expanded', 'false'); });

  // The selection moves while the panel is open: the hint follows when it is looked at.
  $('template-upload').addEventListener('pointerenter', () => showTarget());
  $('template-upload').addEventListener('focusin', () => showTarget());

  function showTarget() {
    const t = o.target();
    $('template-where').textContent = t ? `Its top-left corner goes at (${t.x}, ${t.y}): the selected pixel, or the view's center.` : '';
  }

  $('template-upload').addEventListener('submit', async (e) => {
    e.preventDefault();
    const file = $('template-file').files?.[0];
    const name = $('template-name').value.trim() || file?.name?.replace(/\.png$/i, '') || 'template';
    const at = o.target();
    if (!file) { o.toast('Choose a PNG file first', 'error'); return; }
    if (!at) { o.toast('Select a pixel for its top-left corner', 'error'); return; }
    const button = $('template-send');
    button.disabled = true;
    try {
      const t = await uploadTemplate(file, at.x, at.y, name.slice(0, 64));
      o.toast(`Uploaded "${t.name}"; share the page's link to share it`);
      await add(t.id, DEFAULT_OPACITY);
      $('template-file').value = '';
      $('template-name').value = '';
    } catch (err) {
      o.toast(err.message || 'Could not upload the template', 'error');
    } finally {
      button.disabled = false;
    }
  });

  $('template-add').addEventListener('submit', async (e) => {
    e.preventDefault();
    const raw = $('template-id').value.trim();
    // An id, or a link whose hash names templates.
    const ids = ID_RE.test(raw) ? [{ id: raw, opacity: DEFAULT_OPACITY }] : parseTemplatesParam(raw.split('#')[1] ?? '');
    if (!ids.length) { o.toast('Paste a template id (10 letters and digits) or a link with templates', 'error'); return; }
    for (const t of ids) await add(t.id, t.opacity);
    $('template-id').value = '';
  });

  $('template-share').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(location.href);
      o.toast('Link copied: it opens this view with these templates');
    } catch {
      o.toast(`Share this link: ${location.href}`);
    }
  });

  /** Loads and shows template `id` (once). */
  async function add(id, opacity) {
    const have = overlays.find((t) => t.id === id);
    if (have) { have.opacity = opacity; renderList(); renderer.request(); return; }
    if (loading.has(id)) return;
    if (overlays.length + loading.size >= MAX_OVERLAYS) {
      o.toast(`At most ${MAX_OVERLAYS} templates at once: remove one first`, 'error');
      return;
    }
    loading.add(id);
    try {
      const t = await loadTemplate(id, palette);
      t.opacity = opacity;
      t.counts = null;
      t.lastWrong = -1;
      overlays.push(t);
      recount();
      o.hashChanged();
    } catch (err) {
      o.toast(`Template ${id}: ${err.message}`, 'error');
    } finally {
      loading.delete(id);
    }
  }

  function remove(t) {
    overlays.splice(overlays.indexOf(t), 1);
    renderList();
    renderer.request();
    o.hashChanged();
  }

  function recount() {
    clearTimeout(countTimer);
    countTimer = 0;
    for (const t of overlays) t.counts = compare(t, tileAt);
    renderList();
    renderer.request();
  }

  function jumpToWrong(t) {
    const w = nextWrong(t, tileAt, t.lastWrong);
    if (!w) {
      o.toast(t.counts?.unknown ? 'Nothing wrong where the canvas is loaded: look at the rest of it' : 'Every pixel is right');
      return;
    }
    t.lastWrong = w.index;
    o.jumpTo(w.x, w.y);
    o.pickColor(w.color);
  }

  function el(tag, props = {}, ...children) {
    const e = Object.assign(document.createElement(tag), props);
    e.append(...children);
    return e;
  }

  function renderList() {
    list.replaceChildren(...overlays.map((t) => {
      const m = t.meta, c = t.counts;
      const opacity = el('input', { type: 'range', min: '0', max: '100', value: String(Math.round(t.opacity * 100)), className: 'template-opacity' });
      opacity.setAttribute('aria-label', `Opacity of ${m.name}`);
      opacity.addEventListener('input', () => { t.opacity = Number(opacity.value) / 100; renderer.request(); });
      opacity.addEventListener('change', () => o.hashChanged());
      const next = el('button', { type: 'button', className: 'ghost template-next', textContent: 'Next wrong pixel', disabled: !c?.wrong });
      next.addEventListener('click', () => jumpToWrong(t));
      const close = el('button', { type: 'button', className: 'ghost icon template-remove', textContent: '✕', title: 'Stop showing it' });
      close.setAttribute('aria-label', `Stop showing ${m.name}`);
      close.addEventListener('click', () => remove(t));
      const status = !c ? 'counting…'
        : `${c.wrong} wrong, ${c.right} right` + (c.unknown ? `, ${c.unknown} not loaded (look there)` : '');
      const wrongs = el('ol', { className: 'template-wrong' }, ...(c?.list ?? []).map((w) => {
        const b = el('button', { type: 'button', className: 'ghost', title: `Go to (${w.x}, ${w.y}) and pick its color` },
          el('span', { className: 'chip' }), `${w.x}, ${w.y}`);
        b.firstChild.style.background = palette[w.color];
        b.addEventListener('click', () => { o.jumpTo(w.x, w.y); o.pickColor(w.color); });
        return el('li', {}, b);
      }));
      const li = el('li', { className: 'template-item' },
        el('div', { className: 'template-head' },
          el('strong', { textContent: m.name }),
          el('span', { className: 'template-meta', textContent: ` ${m.width}×${m.height} at (${m.x}, ${m.y}) · ${t.id}` }),
          close),
        el('label', { className: 'template-opacity-label' }, 'Opacity ', opacity),
        el('div', { className: 'template-count', textContent: status }),
        wrongs,
        next);
      li.dataset.id = t.id;
      li.dataset.wrong = String(c?.wrong ?? '');
      return li;
    }));
    toggle.textContent = overlays.length ? `Templates (${overlays.length})` : 'Templates';
  }

  return {
    overlays,
    /** `&t=...` for the hash. */
    hashPart: () => formatTemplatesParam(overlays),
    /** Adds the templates a hash names, or updates their opacity. */
    applyHash(hash) {
      for (const t of parseTemplatesParam(hash)) add(t.id, t.opacity);
    },
    /** A pixel changed or a tile loaded (x null): the counts follow, a little later. */
    pixelChanged(x, y) {
      if (!overlays.length || countTimer) return;
      if (x !== null && !overlays.some((t) => covers(t, x, y))) return;
      countTimer = setTimeout(recount, COUNT_EVERY_MS);
    },
    showTarget,
  };
}
