// The DOM around the canvas: palette, Place button with its cooldown, pixel info,
// connection status, coordinates and toasts. It only shows state; app.js owns it.

import { colorName } from './color-names.js';
import { absoluteTime, formatCountdown, relativeTime, shortId } from './format.js';

const $ = (id) => document.getElementById(id);
const HINT = () => `${matchMedia('(pointer: coarse)').matches ? 'Tap' : 'Click'} the canvas, then pick a color`;

const CLOCK_SVG =
  '<svg class="clock" viewBox="0 0 16 16" aria-hidden="true"><circle cx="8" cy="8" r="6.2" fill="none" stroke="currentColor" stroke-width="1.6"/><path d="M8 4.6V8l2.2 1.6" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round"/></svg>';

const HISTORY_SVG =
  '<svg viewBox="0 0 16 16" aria-hidden="true"><path d="M2.5 8a5.5 5.5 0 1 0 1.6-3.9M2.5 2.5v2.6h2.6" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" stroke-linejoin="round"/><path d="M8 5.2V8l2 1.3" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round"/></svg>';

export class UI {
  /**
   * @param {string[]} palette  '#RRGGBB' per color index
   * @param {object} cb  onPickColor(i), onPlace(), onDeselect(), onZoomIn(), onZoomOut(), onZoomFit()
   */
  constructor(palette, cb) {
    this.palette = palette;
    this.cb = cb;
    this.el = {
      palette: $('palette'), place: $('place'), placeText: $('place-text'), placeChip: $('place-chip'),
      info: $('info'), infoColor: $('info-color'), infoTitle: $('info-title'), infoSub: $('info-sub'),
      history: $('history'), historyToggle: $('history-toggle'), deselect: $('deselect'),
      status: $('status'), statusText: $('status-text'), coordsXY: $('coords-xy'), coordsZoom: $('coords-zoom'),
      toasts: $('toasts'), dock: $('dock'),
    };
    this.swatches = [];
    this.status = { state: 'connecting' };
    this.buildPalette();
    this.el.infoSub.textContent = HINT();
    this.el.place.addEventListener('click', () => cb.onPlace());
    this.el.deselect.addEventListener('click', () => cb.onDeselect());
    this.el.historyToggle.addEventListener('click', () => {
      const open = this.el.history.hidden;
      this.el.history.hidden = !open;
      this.el.historyToggle.setAttribute('aria-expanded', String(open));
      cb.onLayout?.();
    });
    $('zoom-in').addEventListener('click', () => cb.onZoomIn());
    $('zoom-out').addEventListener('click', () => cb.onZoomOut());
    $('zoom-fit').addEventListener('click', () => cb.onZoomFit());
  }

  buildPalette() {
    const frag = document.createDocumentFragment();
    this.palette.forEach((hex, i) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'swatch';
      b.style.background = hex;
      b.setAttribute('role', 'radio');
      b.setAttribute('aria-checked', 'false');
      const name = colorName(hex);
      b.setAttribute('aria-label', `${name} (color ${i + 1})`);
      b.title = `${name}, ${hex}`;
      b.dataset.color = String(i);
      b.tabIndex = i === 0 ? 0 : -1;
      b.addEventListener('click', () => this.cb.onPickColor(i));
      // A mouse click should not move keyboard focus here: the arrow keys would then
      // change the color instead of panning the canvas.
      b.addEventListener('mousedown', (e) => e.preventDefault());
      // Arrow keys move within the palette like a radio group, without panning; Enter
      // places, as Enter submits a form from a radio button.
      b.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') {
          e.preventDefault();
          if (!e.repeat) this.cb.onPlace();
          return;
        }
        const d = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
        if (!d) return;
        e.preventDefault();
        e.stopPropagation();
        const j = (i + d + this.palette.length) % this.palette.length;
        this.swatches[j].focus();
        this.cb.onPickColor(j);
      });
      this.swatches.push(b);
      frag.appendChild(b);
    });
    this.el.palette.appendChild(frag);
    // One row up to 16 colors; bigger palettes wrap into rows of 16 (and scroll).
    this.el.palette.style.setProperty('--cols', String(Math.min(16, this.palette.length)));
    this.el.palette.classList.toggle('many', this.palette.length > 32);
  }

  setColor(i) {
    this.swatches.forEach((b, j) => {
      b.setAttribute('aria-checked', String(i === j));
      b.tabIndex = i === j || (i === null && j === 0) ? 0 : -1;
    });
  }

  /**
   * The Place button: a countdown while cooling down, otherwise "Place", enabled once
   * a pixel and a color are chosen.
   */
  renderPlace({ selected, color, cooldownLeftMs, busy, unreachable = false }) {
    const { place, placeText, placeChip } = this.el;
    const cooling = cooldownLeftMs > 0;
    place.classList.toggle('cooldown', cooling);
    if (cooling) {
      const text = formatCountdown(cooldownLeftMs);
      if (placeText.textContent !== text) {
        placeText.textContent = text;
        place.setAttribute('aria-label', `Next pixel in ${text}`);
        place.title = 'You can place again when the timer ends';
      }
      if (!place.querySelector('.clock')) placeText.insertAdjacentHTML('beforebegin', CLOCK_SVG);
    } else {
      place.querySelector('.clock')?.remove();
      // Says what is missing once a pixel is chosen; before that the info card does.
      const text = busy ? 'Placing…' : unreachable ? 'Offline' : selected && color === null ? 'Pick a color' : 'Place';
      if (placeText.textContent !== text) placeText.textContent = text;
      place.removeAttribute('aria-label');
      place.title = unreachable ? 'The server cannot be reached; Place comes back once it is'
        : !selected ? 'Select a pixel first' : color === null ? 'Pick a color first' : 'Place (Enter)';
    }
    // Unreachable: a click could only fail (the socket's state says so before a request).
    place.disabled = cooling || busy || unreachable || !selected || color === null;
    if (color !== null && !cooling) placeChip.style.background = this.palette[color];
    else placeChip.removeAttribute('style');
  }

  /** The info card: a hint, the selected pixel's coordinates, then who placed it. */
  showSelection(pixel, currentColor) {
    const { infoTitle, infoSub, infoColor, deselect, historyToggle, history } = this.el;
    if (!pixel) {
      infoTitle.textContent = 'Choose a pixel';
      infoSub.textContent = HINT();
      infoColor.removeAttribute('style');
      deselect.hidden = true;
      historyToggle.hidden = true;
      history.hidden = true;
      historyToggle.setAttribute('aria-expanded', 'false');
      this.info = null;
      return;
    }
    infoTitle.textContent = `(${pixel.x}, ${pixel.y})`;
    if (currentColor !== undefined) infoColor.style.background = this.palette[currentColor];
    deselect.hidden = false;
    if (!this.info || this.info.x !== pixel.x || this.info.y !== pixel.y) {
      infoSub.textContent = 'Loading…';
      historyToggle.hidden = true;
      history.hidden = true;
      historyToggle.setAttribute('aria-expanded', 'false');
      this.info = null;
    }
  }

  /** Fills the card from `GET /api/pixel`. */
  showPixelInfo(info, myId) {
    this.info = info;
    this.myId = myId;
    const { infoSub, infoColor, history, historyToggle } = this.el;
    if (this.palette[info.color]) infoColor.style.background = this.palette[info.color];
    infoSub.replaceChildren();
    if (info.user === null || info.user === undefined) {
      infoSub.textContent = 'Nobody has placed here yet';
    } else {
      infoSub.append('Placed by ', userNode(info.user, myId), ' · ', timeNode(info.at));
    }
    history.replaceChildren();
    for (const h of info.history ?? []) {
      const li = document.createElement('li');
      const chip = document.createElement('span');
      chip.className = 'chip';
      chip.style.background = this.palette[h.color] ?? '#f0f';
      li.append(chip, userNode(h.user, myId), timeNode(h.at));
      history.appendChild(li);
    }
    historyToggle.hidden = !(info.history?.length > 0);
    const n = info.history?.length ?? 0;
    historyToggle.innerHTML = `${HISTORY_SVG}<span>${n}</span>`;
    historyToggle.setAttribute('aria-label', `History: the last ${n} placement${n === 1 ? '' : 's'} here`);
  }

  showPixelInfoError(message) {
    this.el.infoSub.textContent = message;
  }

  /** Refreshes the "3 min ago" texts. */
  tickTimes(now = Date.now()) {
    for (const t of document.querySelectorAll('time[data-at]')) {
      const text = relativeTime(Number(t.dataset.at), now);
      if (t.textContent !== text) t.textContent = text;
    }
    if (this.status.state === 'reconnecting') this.renderStatus();
  }

  setStatus(status) {
    this.status = status;
    this.renderStatus();
  }

  renderStatus() {
    const { state, retryAt } = this.status;
    let text = state;
    if (state === 'connecting') text = 'connecting…';
    if (state === 'reconnecting') {
      const s = retryAt ? Math.ceil((retryAt - Date.now()) / 1000) : 0;
      text = s > 0 ? `reconnecting in ${s}s` : 'reconnecting…';
    }
    this.el.status.dataset.state = state;
    if (this.el.statusText.textContent !== text) this.el.statusText.textContent = text;
    this.el.status.title = {
      live: 'Connected: changes appear as they happen',
      connecting: 'Connecting to the canvas',
      reconnecting: 'Connection lost, trying again',
      offline: 'Your device is offline',
    }[state] ?? '';
  }

  setCoords(pixel, zoom) {
    const xy = pixel ? `(${pixel.x}, ${pixel.y})` : '(–, –)';
    if (this.el.coordsXY.textContent !== xy) this.el.coordsXY.textContent = xy;
    // Zoomed far out (a 2^22 canvas on a phone is at 1/20000×) two significant digits.
    const z = `${zoom >= 10 ? Math.round(zoom) : zoom >= 1 ? zoom.toFixed(1).replace(/\.0$/, '') : Number(zoom.toPrecision(2))}×`;
    if (this.el.coordsZoom.textContent !== z) this.el.coordsZoom.textContent = z;
  }

  toast(message, kind = 'info', ms = 4000) {
    const t = document.createElement('div');
    t.className = `toast ${kind}`;
    t.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    t.textContent = message;
    // At most three at once: the oldest goes.
    while (this.el.toasts.children.length >= 3) this.el.toasts.firstElementChild.remove();
    this.el.toasts.appendChild(t);
    setTimeout(() => {
      t.classList.add('leaving');
      setTimeout(() => t.remove(), 220);
    }, ms);
  }
}

function userNode(user, myId) {
  const span = document.createElement('span');
  const code = document.createElement('span');
  code.className = 'user-id';
  code.textContent = shortId(user);
  code.title = user;
  span.append(code);
  if (myId && user === myId) {
    const you = document.createElement('span');
    you.className = 'you';
    you.textContent = ' (you)';
    span.append(you);
  }
  return span;
}

function timeNode(at) {
  const t = document.createElement('time');
  if (Number.isFinite(at)) {
    t.dateTime = new Date(at).toISOString();
    t.dataset.at = String(at);
    t.title = absoluteTime(at);
    t.textContent = relativeTime(at);
  }
  return t;
}
