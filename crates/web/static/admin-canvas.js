// The moderators' canvas: the main page's tiles, renderer, view, input and live updates
// (world.js, imported, not copied), plus what moderators see on top of it: a user's placements,
// protected areas, a rewrite's preview, and the area selected by dragging.

import { attachInput } from './input.js';
import { View } from './view.js';
import { World } from './world.js';

/** Most of a user's placements drawn (the server already bounds the list). */
const MAX_MARKS = 100_000;

export class AdminCanvas {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {object} config  `GET /api/config`
   * @param {object} cb  onPixel({x,y}), onRect({x,y,w,h}|null), onStatus(state)
   */
  constructor(canvas, config, cb) {
    const { width, height, palette } = config;
    this.canvas = canvas;
    this.cb = cb;
    this.palette = palette.map((c) => c.toUpperCase());
    this.view = new View(width, height);
    this.world = new World({
      canvas, config, view: this.view,
      onStatus: (s) => cb.onStatus?.(s.state),
      onError: (err) => console.warn('rplace admin:', err),
    });
    this.renderer = this.world.renderer;
    this.renderer.afterDraw = () => this.drawOverlay();
    /** What is drawn over the board. */
    this.marks = []; // [[x, y], ...] of the looked-up user
    this.protected = []; // [{x, y, w, h}]
    this.preview = null; // {img, bbox}
    this.rect = null; // the selected area
    this.selecting = false; // drag selects an area instead of panning
    this.drag = null;

    this.attachSelection();
    this.input = attachInput(canvas, this.view, {
      onViewChange: () => this.world.viewChanged(),
      onTap: (p) => { this.select(p); if (p) cb.onPixel(p); },
      onHover: (p) => { this.renderer.hover = p; this.renderer.request(); },
      onPlace: () => {},
      onEscape: () => { this.select(null); this.setRect(null); },
      onReset: () => { this.view.reset(); this.world.viewChanged(); },
    });
    new ResizeObserver(() => this.layout()).observe(canvas);
    this.layout();
    this.view.reset();
    this.world.start();
  }

  get width() {
    return this.world.width;
  }

  get height() {
    return this.world.height;
  }

  pixel(x, y) {
    return this.world.pixel(x, y);
  }

  layout() {
    const r = this.canvas.getBoundingClientRect();
    this.view.resize(r.width, r.height, 8, 8);
    this.renderer.resize(r.width, r.height, window.devicePixelRatio || 1);
    this.world.viewChanged();
  }

  select(p) {
    this.renderer.selected = p;
    this.renderer.request();
  }

  /** Centers on a pixel, close enough to see it, and selects it. */
  jumpTo(x, y) {
    this.view.centerOn(x + 0.5, y + 0.5, Math.max(this.view.zoom, Math.min(24, this.view.maxZoom)));
    this.world.viewChanged();
    this.select({ x, y });
  }

  setRect(rect) {
    this.rect = rect;
    this.renderer.request();
    this.cb.onRect?.(rect);
  }

  setMarks(pixels) {
    this.marks = (pixels ?? []).slice(0, MAX_MARKS);
    this.renderer.request();
  }

  setProtected(rects) {
    this.protected = rects ?? [];
    this.renderer.request();
  }

  /** Shows a rewrite's preview: `png` (base64, bbox-sized, unchanged pixels transparent) at `bbox`. */
  async setPreview(png, bbox) {
    if (!png || !bbox) { this.preview = null; this.renderer.request(); return; }
    const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
    const img = await createImageBitmap(new Blob([bytes], { type: 'image/png' }));
    this.preview = { img, bbox };
    this.renderer.request();
  }

  clearPreview() {
    this.preview = null;
    this.renderer.request();
  }

  /** Drag selects an area while `selecting` (the Select area button) or with Shift held.
   * Registered before `attachInput` and in the capture phase, so such a drag never pans. */
  attachSelection() {
    const c = this.canvas;
    const pixelOf = (e) => {
      const r = c.getBoundingClientRect();
      const b = this.view.toBoard(e.clientX - r.left, e.clientY - r.top);
      return {
        x: Math.min(this.width - 1, Math.max(0, Math.floor(b.x))),
        y: Math.min(this.height - 1, Math.max(0, Math.floor(b.y))),
      };
    };
    const rectOf = (a, b) => ({
      x: Math.min(a.x, b.x), y: Math.min(a.y, b.y),
      w: Math.abs(a.x - b.x) + 1, h: Math.abs(a.y - b.y) + 1,
    });
    c.addEventListener('pointerdown', (e) => {
      if (!(this.selecting || e.shiftKey) || e.button !== 0) return;
      e.stopImmediatePropagation();
      e.preventDefault();
      try { c.setPointerCapture(e.pointerId); } catch { /* synthetic events */ }
      this.drag = { id: e.pointerId, from: pixelOf(e) };
      this.rect = rectOf(this.drag.from, this.drag.from);
      this.renderer.request();
    }, { capture: true });
    c.addEventListener('pointermove', (e) => {
      if (!this.drag || e.pointerId !== this.drag.id) return;
      e.stopImmediatePropagation();
      this.rect = rectOf(this.drag.from, pixelOf(e));
      this.renderer.request();
    }, { capture: true });
    const end = (e) => {
      if (!this.drag || e.pointerId !== this.drag.id) return;
      e.stopImmediatePropagation();
      this.drag = null;
      this.setRect(this.rect);
    };
    c.addEventListener('pointerup', end, { capture: true });
    c.addEventListener('pointercancel', end, { capture: true });
  }

  /** Board-to-device transform of the renderer's draw. */
  transform() {
    const { s, ox, oy, dpr } = this.renderer.transform();
    return { s, tx: ox, ty: oy, dpr };
  }

  drawOverlay() {
    const ctx = this.renderer.ctx;
    const { s, tx, ty, dpr } = this.transform();
    const box = (r) => [tx + r.x * s, ty + r.y * s, r.w * s, r.h * s];
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    for (const r of this.protected) {
      ctx.fillStyle = 'rgba(36, 80, 164, 0.12)';
      ctx.fillRect(...box(r));
      ctx.setLineDash([6 * dpr, 4 * dpr]);
      ctx.strokeStyle = '#2450a4';
      ctx.lineWidth = 2 * dpr;
      ctx.strokeRect(...box(r));
    }
    ctx.setLineDash([]);
    if (this.marks.length) {
      // At least a device pixel and a half each, so single placements show at any zoom.
      const m = Math.max(1.5 * dpr, s);
      const off = (s - m) / 2;
      ctx.fillStyle = 'rgba(255, 0, 200, 0.55)';
      for (const [x, y] of this.marks) ctx.fillRect(tx + x * s + off, ty + y * s + off, m, m);
      if (s >= 6 * dpr) {
        ctx.strokeStyle = '#c0008f';
        ctx.lineWidth = Math.max(1, dpr);
        for (const [x, y] of this.marks) ctx.strokeRect(tx + x * s + 0.5, ty + y * s + 0.5, s - 1, s - 1);
      }
    }
    if (this.preview) {
      const { img, bbox } = this.preview;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(img, ...box(bbox));
      ctx.setLineDash([4 * dpr, 3 * dpr]);
      ctx.strokeStyle = '#e35d00';
      ctx.lineWidth = 2 * dpr;
      ctx.strokeRect(...box(bbox));
      ctx.setLineDash([]);
    }
    if (this.rect) {
      ctx.fillStyle = 'rgba(255, 214, 53, 0.18)';
      ctx.fillRect(...box(this.rect));
      ctx.strokeStyle = '#111';
      ctx.lineWidth = 2 * dpr;
      ctx.strokeRect(...box(this.rect));
      ctx.strokeStyle = '#ffd635';
      ctx.lineWidth = 1 * dpr;
      ctx.strokeRect(...box(this.rect));
    }
    ctx.restore();
  }
}

/** A rectangle from an answer: `{x,y,w,h}` or `[x, y, w, h]`. */
export function asRect(r) {
  if (!r) return null;
  if (Array.isArray(r)) return r.length >= 4 ? { x: r[0], y: r[1], w: r[2], h: r[3] } : null;
  return Number.isFinite(r.x) && Number.isFinite(r.w) ? { x: r.x, y: r.y, w: r.w, h: r.h } : null;
}
