// Mouse, touch and keyboard: pan, zoom, and telling a tap (select a pixel) from a drag
// (pan). Pointer Events cover mouse, pen and touch with one code path.

/** How far a pointer may wander, in CSS px, and still count as a tap. */
const TAP_SLOP = { mouse: 4, pen: 6, touch: 10 };
/**
 * CSS px per board pixel below which a tap zooms in (toward the tapped point) instead of
 * selecting: a fingertip lands within a few px of where it aims, so a pixel must be about
 * 10 px wide to be hit on purpose (the opening zoom of a big canvas on a phone is a
 * fraction of a px); a mouse hits 4 px reliably, a pen about 6.
 */
export const TAP_SELECT_ZOOM = { mouse: 4, pen: 6, touch: 10 };
/** The zoom such a tap goes to: pixels comfortably bigger than the threshold. */
export const TAP_ZOOM_TO = { mouse: 12, pen: 16, touch: 24 };

/** What a tap at `zoom` does: `null` selects, a number is the zoom to go to first. */
export function tapZoomTarget(zoom, pointerType, maxZoom) {
  const min = TAP_SELECT_ZOOM[pointerType] ?? TAP_SELECT_ZOOM.touch;
  if (zoom >= min) return null;
  return Math.min(maxZoom, TAP_ZOOM_TO[pointerType] ?? TAP_ZOOM_TO.touch);
}

/** Screen px per arrow-key press; Shift moves four times as far. */
const KEY_PAN_PX = 64;
/** Zoom factor of one +/- press or zoom button. */
const KEY_ZOOM = 1.6;

/**
 * @param {HTMLCanvasElement} canvas
 * @param {import('./view.js').View} view
 * @param {object} cb
 * @param {() => void} cb.onViewChange  the view moved: redraw, update the URL
 * @param {(pixel: {x:number,y:number}|null) => void} cb.onTap  a tap where pixels are big enough to aim at
 * @param {(pixel: {x:number,y:number}|null) => void} cb.onHover
 * @param {() => void} cb.onPlace       Enter/Space
 * @param {() => void} cb.onEscape
 * @param {() => void} cb.onReset       0 / Home: whole board
 */
export function attachInput(canvas, view, cb) {
  const zoomer = new SmoothZoom(view, cb.onViewChange);
  const pointers = new Map(); // pointerId -> {x, y} in canvas CSS px
  let down = null; // first pointer of a gesture: {x, y, type}
  let dragging = false; // moved past the tap slop
  let multi = false; // a second finger joined: never a tap
  let pinch = null; // {dist, mid} of the last two-finger move

  const local = (e) => {
    const r = canvas.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  };
  const twoFinger = () => {
    const [a, b] = [...pointers.values()];
    return {
      dist: Math.max(1, Math.hypot(a.x - b.x, a.y - b.y)),
      mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 },
    };
  };

  // The keyboard cursor: the pixel at the view's center, shown (and used by Enter) once
  // the arrow keys moved the view, until the pointer is used again.
  let keyCursor = false;
  const setKeyCursor = (on) => {
    if (keyCursor === on) return;
    keyCursor = on;
    cb.onKeyCursor?.(on);
  };

  canvas.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse' && e.button !== 0 && e.button !== 1) return;
    setKeyCursor(false);
    e.preventDefault();
    // Focused so the keys work next, but the ring is for keyboard focus: Chromium shows
    // it for this script focus too, so the class says the pointer did it (style.css).
    canvas.classList.add('pointer-focus');
    canvas.focus({ preventScroll: true });
    try { canvas.setPointerCapture(e.pointerId); } catch { /* synthetic events */ }
    zoomer.stop();
    const p = local(e);
    pointers.set(e.pointerId, p);
    if (pointers.size === 1) {
      down = { ...p, type: e.pointerType };
      dragging = false;
      multi = false;
    } else {
      multi = true;
      if (pointers.size === 2) pinch = twoFinger();
    }
  });

  canvas.addEventListener('pointermove', (e) => {
    const p = local(e);
    if (e.pointerType === 'mouse') cb.onHover(view.pixelAt(p.x, p.y));
    const prev = pointers.get(e.pointerId);
    if (!prev) return;
    pointers.set(e.pointerId, p);
    if (pointers.size === 1) {
      if (!dragging) {
        if (Math.hypot(p.x - down.x, p.y - down.y) <= (TAP_SLOP[down.type] ?? 6)) return;
        dragging = true;
        canvas.classList.add('dragging');
        // Apply the movement inside the slop too, so the board does not lag the pointer.
        view.panBy(p.x - down.x, p.y - down.y);
      } else {
        view.panBy(p.x - prev.x, p.y - prev.y);
      }
      cb.onViewChange();
    } else if (pointers.size === 2 && pinch) {
      const now = twoFinger();
      view.zoomAt(view.zoom * (now.dist / pinch.dist), now.mid.x, now.mid.y);
      view.panBy(now.mid.x - pinch.mid.x, now.mid.y - pinch.mid.y);
      pinch = now;
      cb.onViewChange();
    }
  });

  const end = (e) => {
    if (!pointers.has(e.pointerId)) return;
    const p = local(e);
    const tap = e.type === 'pointerup' && pointers.size === 1 && !dragging && !multi;
    pointers.delete(e.pointerId);
    if (tap) {
      // Too far out to aim at one pixel: glide in, keeping the tapped point under the
      // finger, so the next tap there hits what was aimed at.
      const zoomTo = tapZoomTarget(view.zoom, down.type, view.maxZoom);
      if (zoomTo === null || !view.pixelAt(p.x, p.y)) cb.onTap(view.pixelAt(p.x, p.y));
      else zoomer.zoomTo(zoomTo, p);
    }
    if (pointers.size === 2) pinch = twoFinger();
    // Lifting one finger of a pinch leaves a pan, never a tap.
    if (pointers.size === 1) dragging = true;
    if (pointers.size === 0) canvas.classList.remove('dragging');
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  canvas.addEventListener('pointerleave', (e) => {
    if (e.pointerType === 'mouse' && !pointers.size) cb.onHover(null);
  });

  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const dy = e.deltaY * unit;
    // Trackpad pinches arrive as ctrl+wheel with small deltas: make them as lively.
    const factor = Math.exp(-dy * (e.ctrlKey ? 0.01 : 0.0018));
    zoomer.zoomBy(factor, local(e));
  }, { passive: false });

  window.addEventListener('keydown', (e) => {
    if (e.key === 'Tab' || e.key.startsWith('Arrow')) canvas.classList.remove('pointer-focus');
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    const onButton = t instanceof HTMLElement && (t.tagName === 'BUTTON' || t.tagName === 'A');
    const step = KEY_PAN_PX * (e.shiftKey ? 4 : 1);
    const center = { x: view.width / 2, y: view.height / 2 };
    switch (e.key) {
      case 'ArrowLeft': case 'a': case 'A': view.panBy(step, 0); break;
      case 'ArrowRight': case 'd': case 'D': view.panBy(-step, 0); break;
      case 'ArrowUp': case 'w': case 'W': view.panBy(0, step); break;
      case 'ArrowDown': case 's': case 'S': view.panBy(0, -step); break;
      case '+': case '=': zoomer.zoomBy(KEY_ZOOM, center); e.preventDefault(); return;
      case '-': case '_': zoomer.zoomBy(1 / KEY_ZOOM, center); e.preventDefault(); return;
      case '0': case 'Home': zoomer.stop(); cb.onReset(); e.preventDefault(); return;
      case 'Escape': cb.onEscape(); return;
      case 'Enter': case ' ':
        if (onButton) return; // the focused button does its own thing
        e.preventDefault();
        if (e.repeat) return;
        // With the keyboard cursor: the first Enter selects the pixel under it, the next
        // one places there.
        if (keyCursor && cb.onKeySelect?.()) return;
        cb.onPlace();
        return;
      default: return;
    }
    e.preventDefault();
    if (e.key.startsWith('Arrow') || /^[wasdWASD]$/.test(e.key)) setKeyCursor(true);
    cb.onViewChange();
  });

  return { zoomBy: (f) => zoomer.zoomBy(f, { x: view.width / 2, y: view.height / 2 }) };
}

/** Eases the zoom toward a target over a few frames, anchored at the cursor, so wheel
 * notches glide instead of jumping. Further notches retarget the running animation. */
class SmoothZoom {
  constructor(view, onChange) {
    this.view = view;
    this.onChange = onChange;
    this.target = null;
    this.anchor = null;
    this.raf = 0;
    this.last = 0;
  }

  zoomBy(factor, anchor) {
    const v = this.view;
    const base = this.target ?? v.zoom;
    this.target = Math.min(v.maxZoom, Math.max(v.minZoom, base * factor));
    this.anchor = anchor;
    if (!this.raf) {
      this.last = performance.now();
      this.raf = requestAnimationFrame((t) => this.step(t));
    }
  }

  zoomTo(zoom, anchor) {
    this.zoomBy(zoom / (this.target ?? this.view.zoom), anchor);
  }

  stop() {
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
    this.target = null;
  }

  step(t) {
    const v = this.view;
    const dt = Math.min(64, Math.max(1, t - this.last));
    this.last = t;
    // Exponential approach, ~70 ms time constant, in log space (zoom is multiplicative).
    const k = 1 - Math.exp(-dt / 70);
    let z = v.zoom * Math.pow(this.target / v.zoom, k);
    const done = Math.abs(Math.log(this.target / z)) < 0.003;
    if (done) z = this.target;
    v.zoomAt(z, this.anchor.x, this.anchor.y);
    this.onChange();
    if (done) {
      this.raf = 0;
      this.target = null;
    } else {
      this.raf = requestAnimationFrame((tt) => this.step(tt));
    }
  }
}
