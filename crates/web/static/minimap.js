// The minimap: the whole canvas from one overview image (the top level, one tile), the
// viewport as a rectangle on it; a click or a drag there moves the view. And the parser
// of the jump-to-coordinates box.

import { TILE } from './tiles.js';

/** Longest side of the minimap, CSS px (phones get less, style.css). */
const MAX_SIDE = 168;
/** The overview image is fetched again this often while the page is open. */
const REFRESH_MS = 30_000;

/**
 * Reads what someone typed in the jump box: "x, y", "x y", "(x, y)", optionally a zoom
 * ("x, y, 8" or "x,y,8x"). Null unless both are whole numbers on the canvas.
 */
export function parseJump(text, width, height) {
  const nums = String(text ?? '').match(/-?\d+(\.\d+)?/g);
  if (!nums || nums.length < 2 || nums.length > 3) return null;
  const [x, y, zoom] = nums.map(Number);
  if (!Number.isInteger(x) || !Number.isInteger(y) || x < 0 || y < 0 || x >= width || y >= height) return null;
  return zoom !== undefined && zoom > 0 ? { x, y, zoom } : { x, y };
}

export class Minimap {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {import('./world.js').World} world
   * @param {import('./view.js').View} view
   * @param {() => void} onMove  the view was moved from here
   */
  constructor(canvas, world, view, onMove) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.world = world;
    this.view = view;
    this.onMove = onMove;
    this.img = null;
    this.loading = false;
    this.cssW = 1;
    this.cssH = 1;
    this.dpr = 1;
    this.refresh();
    setInterval(() => { if (document.visibilityState === 'visible') this.refresh(); }, REFRESH_MS);

    let dragging = null;
    const move = (e) => {
      const r = canvas.getBoundingClientRect();
      const k = Math.max(this.world.width, this.world.height) / Math.max(1, Math.max(r.width, r.height));
      const x = Math.min(this.world.width, Math.max(0, (e.clientX - r.left) * k));
      const y = Math.min(this.world.height, Math.max(0, (e.clientY - r.top) * k));
      this.view.centerOn(x, y);
      this.onMove();
    };
    canvas.addEventListener('pointerdown', (e) => {
      e.preventDefault();
      e.stopPropagation();
      dragging = e.pointerId;
      try { canvas.setPointerCapture(e.pointerId); } catch { /* synthetic events */ }
      move(e);
    });
    canvas.addEventListener('pointermove', (e) => { if (dragging === e.pointerId) move(e); });
    const end = (e) => { if (dragging === e.pointerId) dragging = null; };
    canvas.addEventListener('pointerup', end);
    canvas.addEventListener('pointercancel', end);
  }

  /** Sizes the minimap to the canvas's aspect ratio. */
  layout() {
    const { width, height } = this.world;
    const side = Math.min(MAX_SIDE, Number.parseFloat(getComputedStyle(this.canvas).getPropertyValue('--side')) || MAX_SIDE);
    const k = side / Math.max(width, height);
    this.cssW = Math.max(24, Math.round(width * k));
    this.cssH = Math.max(24, Math.round(height * k));
    this.dpr = window.devicePixelRatio || 1;
    this.canvas.style.width = `${this.cssW}px`;
    this.canvas.style.height = `${this.cssH}px`;
    this.canvas.width = Math.round(this.cssW * this.dpr);
    this.canvas.height = Math.round(this.cssH * this.dpr);
    this.draw();
  }

  /** Fetches the top overview level's one tile again (the canvas changed or grew). */
  async refresh() {
    if (this.loading) return;
    this.loading = true;
    const z = this.world.levels - 1;
    try {
      const res = await fetch(`/api/tiles/${z}/0/0.png`, { credentials: 'same-origin' });
      if (!res.ok) throw new Error(`GET /api/tiles/${z}/0/0.png: HTTP ${res.status}`);
      const img = await createImageBitmap(await res.blob());
      this.img?.close?.();
      this.img = img;
      this.z = z;
      this.layout();
    } catch (err) {
      console.warn('rplace minimap:', err);
    } finally {
      this.loading = false;
    }
  }

  draw() {
    const { ctx, canvas, world, view: v } = this;
    const W = canvas.width, H = canvas.height;
    const k = W / world.width; // device px per canvas pixel
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, W, H);
    if (this.img) {
      // The tile covers 256 * 2^z canvas pixels a side from the top-left corner.
      const span = TILE * 2 ** this.z * k;
      ctx.imageSmoothingEnabled = span < W; // shrinking: smooth; growing: crisp pixels
      ctx.drawImage(this.img, 0, 0, span, span);
    }
    // The viewport, at least a few pixels big so it shows at any zoom.
    const hw = v.width / 2 / v.zoom, hh = v.height / 2 / v.zoom;
    let x0 = (v.x - hw) * k, y0 = (v.y - hh) * k, x1 = (v.x + hw) * k, y1 = (v.y + hh) * k;
    const min = 5 * this.dpr;
    if (x1 - x0 < min) { const c = (x0 + x1) / 2; x0 = c - min / 2; x1 = c + min / 2; }
    if (y1 - y0 < min) { const c = (y0 + y1) / 2; y0 = c - min / 2; y1 = c + min / 2; }
    x0 = Math.max(-2, x0); y0 = Math.max(-2, y0); x1 = Math.min(W + 2, x1); y1 = Math.min(H + 2, y1);
    // Tinted only while it is a part: a tint over all of it would just wash it out.
    if ((x1 - x0) * (y1 - y0) < 0.5 * W * H) {
      ctx.fillStyle = 'rgba(255, 69, 0, 0.12)';
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    }
    ctx.strokeStyle = '#ff4500';
    ctx.lineWidth = 2 * this.dpr;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
}
