// The Overlays control: a pill in the top bar opens a menu of the overlays (none,
// heatmap, virgin map, my pixels: radio buttons, one at a time) with the legend of the
// one chosen; while one is shown a small note over the minimap keeps its key in view,
// says "zoom in" where it cannot be drawn, and turns it off. The choice is view state,
// kept in localStorage (not in share links). The data and drawing are overlays.js's.

import { MODES, Overlays } from './overlays.js';

const KEY = 'rplace.overlay';
const $ = (id) => document.getElementById(id);

const NAMES = { none: 'Overlays', heat: 'Heatmap', virgin: 'Virgin map', mine: 'My pixels' };
const LEGENDS = {
  none: 'Nothing is drawn over the canvas.',
  heat: 'Pixels placed in the last hour glow: yellow just now, red about 20 minutes ago, purple an hour ago. Older and never placed pixels are dimmed.',
  virgin: 'Bright green: never placed since the canvas began. Dark: placed at least once.',
  mine: 'Your pixels that still stand show in their colors (outlined up close, marked when zoomed out); everything else is dimmed.',
};
const KEYS = { heat: 'now → 1 h', virgin: 'never placed', mine: 'your pixels' };
const WHAT = { heat: 'the heatmap', virgin: 'the virgin map', mine: 'your pixels' };

/**
 * @param {object} o
 * @param {import('./world.js').World} o.world
 * @returns {Overlays}  viewChanged(), pixelChanged(x, y, color), placed(x, y, color, seq),
 *   snapshot()
 */
export function attachOverlays(o) {
  const button = $('overlays-toggle');
  const label = $('overlays-label');
  const menu = $('overlays-menu');
  const legend = $('overlays-legend');
  const note = $('overlay-note');
  const noteText = $('overlay-note-text');
  const radios = [...menu.querySelectorAll('input[name="overlay"]')];

  const overlays = new Overlays({ world: o.world, onState: (s) => render(s) });

  function open(on) {
    menu.hidden = !on;
    if (on) {
      // Under its button, wherever the top bar's layout put it, and on screen.
      const r = button.getBoundingClientRect();
      const w = menu.offsetWidth;
      menu.style.left = `${Math.round(Math.max(10, Math.min(window.innerWidth - w - 10, r.left + r.width / 2 - w / 2)))}px`;
      // Into the menu (it comes later in the page's order): the arrows then choose.
      (radios.find((x) => x.checked) ?? radios[0]).focus({ preventScroll: true });
    }
    button.setAttribute('aria-expanded', String(on));
  }

  function choose(mode) {
    if (!MODES.includes(mode)) mode = 'none';
    try { localStorage.setItem(KEY, mode); } catch { /* storage blocked: this visit only */ }
    overlays.setMode(mode);
    render(overlays.state);
  }

  function render(state) {
    const mode = overlays.mode;
    for (const r of radios) r.checked = r.value === mode;
    button.dataset.on = String(mode !== 'none');
    label.textContent = NAMES[mode];
    legend.textContent = LEGENDS[mode];
    note.hidden = mode === 'none';
    note.dataset.mode = mode;
    const reason = state?.reason ?? '';
    note.dataset.reason = reason;
    noteText.textContent = reason === 'zoom' ? `Zoom in to see ${WHAT[mode]}`
      : reason === 'history' ? `Back to Live to see ${WHAT[mode]}`
      : reason === 'error' ? `Can't load ${WHAT[mode]}; retrying`
      : reason === 'loading' ? `${NAMES[mode]}: loading…`
      : `${NAMES[mode]}: ${KEYS[mode] ?? ''}`;
    note.title = LEGENDS[mode];
  }

  button.addEventListener('click', () => open(menu.hidden));
  for (const r of radios) r.addEventListener('change', () => { if (r.checked) choose(r.value); });
  $('overlay-off').addEventListener('click', () => choose('none'));
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !menu.hidden) { open(false); button.focus(); }
  });
  document.addEventListener('pointerdown', (e) => {
    if (!menu.hidden && !menu.contains(e.target) && !button.contains(e.target)) open(false);
  });

  let saved = null;
  try { saved = localStorage.getItem(KEY); } catch { /* storage blocked */ }
  overlays.setMode(MODES.includes(saved) ? saved : 'none');
  render(overlays.state);
  return overlays;
}
