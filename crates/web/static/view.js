// Where the camera is: the board point at the center of the canvas and the zoom, in CSS
// pixels per board pixel. Pure math (no DOM) so it can be unit-tested.
//
// A screen point (sx, sy), in CSS pixels from the canvas's top-left corner, shows the
// board point  x + (sx - width/2) / zoom,  y + (sy - height/2) / zoom;  pixel (px, py)
// covers board points [px, px+1) x [py, py+1), so its center is on screen at
// width/2 + (px + 0.5 - x) * zoom.

/** Most CSS pixels per board pixel. */
export const MAX_ZOOM = 64;

export class View {
  constructor(boardWidth, boardHeight) {
    this.bw = boardWidth;
    this.bh = boardHeight;
    this.width = 1; // canvas size, CSS px
    this.height = 1;
    /** UI floating over the canvas (top bar, bottom dock): the fit zoom keeps the
     * board clear of it on both sides, so the board stays centered on the canvas. */
    this.insetTop = 0;
    this.insetBottom = 0;
    this.x = boardWidth / 2;
    this.y = boardHeight / 2;
    this.zoom = 1;
  }

  /** Zoom at which the whole board is visible, clear of the floating UI. */
  fitZoom() {
    const inset = 2 * Math.max(this.insetTop, this.insetBottom);
    const w = Math.max(32, this.width - 24);
    const h = Math.max(32, this.height - inset - 16);
    return Math.min(w / this.bw, h / this.bh);
  }

  get minZoom() {
    // Half of "fits": the whole board with room around it, never a speck.
    return this.fitZoom() * 0.5;
  }

  get maxZoom() {
    return Math.max(MAX_ZOOM, this.fitZoom() * 2);
  }

  resize(width, height, insetTop = this.insetTop, insetBottom = this.insetBottom) {
    this.width = Math.max(1, width);
    this.height = Math.max(1, height);
    this.insetTop = insetTop;
    this.insetBottom = insetBottom;
    this.clamp();
  }

  /** The board's size changed (it grew): the view stays where it is. */
  setBoard(boardWidth, boardHeight) {
    this.bw = boardWidth;
    this.bh = boardHeight;
    this.clamp();
  }

  /** The default view: the whole board, centered. */
  reset() {
    this.x = this.bw / 2;
    this.y = this.bh / 2;
    this.zoom = this.fitZoom();
    this.clamp();
  }

  clamp() {
    this.zoom = Math.min(this.maxZoom, Math.max(this.minZoom, this.zoom));
    // The center stays on the board, so some of it is always on screen.
    this.x = Math.min(this.bw, Math.max(0, this.x));
    this.y = Math.min(this.bh, Math.max(0, this.y));
  }

  /** Board point under the screen point (sx, sy). */
  toBoard(sx, sy) {
    return {
      x: this.x + (sx - this.width / 2) / this.zoom,
      y: this.y + (sy - this.height / 2) / this.zoom,
    };
  }

  /** Screen point of the board point (bx, by). */
  toScreen(bx, by) {
    return {
      x: this.width / 2 + (bx - this.x) * this.zoom,
      y: this.height / 2 + (by - this.y) * this.zoom,
    };
  }

  /** The pixel under a screen point, or null off the board. */
  pixelAt(sx, sy) {
    const p = this.toBoard(sx, sy);
    const x = Math.floor(p.x), y = Math.floor(p.y);
    return x >= 0 && y >= 0 && x < this.bw && y < this.bh ? { x, y } : null;
  }

  /** Sets the zoom keeping the board point under (sx, sy) where it is on screen. */
  zoomAt(zoom, sx = this.width / 2, sy = this.height / 2) {
    const before = this.toBoard(sx, sy);
    this.zoom = Math.min(this.maxZoom, Math.max(this.minZoom, zoom));
    this.x = before.x - (sx - this.width / 2) / this.zoom;
    this.y = before.y - (sy - this.height / 2) / this.zoom;
    this.clamp();
  }

  /** Moves the board by (dx, dy) screen pixels, as a drag does. */
  panBy(dx, dy) {
    this.x -= dx / this.zoom;
    this.y -= dy / this.zoom;
    this.clamp();
  }

  /** Centers the view on a board point. */
  centerOn(bx, by, zoom = this.zoom) {
    this.x = bx;
    this.y = by;
    this.zoom = zoom;
    this.clamp();
  }

  snapshot() {
    return { x: this.x, y: this.y, zoom: this.zoom };
  }
}

const trim = (n, digits) => String(Number(n.toFixed(digits)));

/** `#x=500&y=500&z=4` for a view; x and y to a tenth of a pixel, zoom to 1/100. */
export function formatHash(view) {
  return `#x=${trim(view.x, 1)}&y=${trim(view.y, 1)}&z=${trim(view.zoom, 2)}`;
}

/** Reads `#x=..&y=..&z=..` (any order, any subset); returns null if there is none. */
export function parseHash(hash) {
  const params = new URLSearchParams(String(hash ?? '').replace(/^#/, ''));
  const num = (k) => {
    const v = params.get(k);
    if (v === null || v.trim() === '') return undefined;
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  };
  const out = { x: num('x'), y: num('y'), zoom: num('z') };
  if (out.x === undefined && out.y === undefined && out.zoom === undefined) return null;
  if (out.zoom !== undefined && out.zoom <= 0) out.zoom = undefined;
  return out;
}
