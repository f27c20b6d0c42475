// Draws the canvas from tiles. Each level-0 tile on screen has its own 256² canvas (one
// canvas pixel per board pixel); a live update repaints just its pixels there. Zoomed
// out, overview images (one pixel per 2^z board pixels) are drawn instead. Each
// animation frame draws the tiles on screen with drawImage, smoothing off, so pixels
// stay crisp squares at any zoom and nothing is ever as big as the board: a board may be
// 4,194,304² pixels.
//
// Positions are computed in JavaScript numbers (doubles) per tile and handed to the
// context as on-screen values: a transform holding a translation of 10^8 device pixels
// would lose whole pixels to the context's single-precision math.

import { TILE, TILE_PIXELS, forEachTile, tileRect } from './tiles.js';

/** Around the board: the page's background (style.css's --bg, dark in the dark theme). */
function pageBackground() {
  return getComputedStyle(document.documentElement).getPropertyValue('--bg').trim() || '#dcdfe4';
}
/** Tile canvases kept beyond those on screen (each 256 KiB). */
const SPARE_SURFACES = 24;
/** How many coarser levels are drawn under the wanted one while it loads. */
const FALLBACK_LEVELS = 4;

export class Renderer {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {object} world  {view, width, height, levels, level, tiles, overviews}
   * @param {Uint32Array} paletteRgba  ImageData words per palette index
   * @param {string[]} paletteCss  '#RRGGBB' per palette index
   */
  constructor(canvas, world, paletteRgba, paletteCss) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.world = world;
    this.view = world.view;
    this.paletteRgba = paletteRgba;
    this.paletteCss = paletteCss;
    /** tile key -> {canvas, ctx, entry}: the level-0 tiles' canvases, most recent last. */
    this.surfaces = new Map();
    this.image = new ImageData(TILE, TILE);
    this.imageWords = new Uint32Array(this.image.data.buffer);
    this.dpr = 1;
    this.selected = null; // {x, y}
    this.selectedColor = null; // palette index previewed in the reticle
    this.hover = null; // {x, y} under the mouse
    this.bg = pageBackground();
    matchMedia('(prefers-color-scheme: dark)').addEventListener?.('change', () => {
      this.bg = pageBackground();
      this.request();
    });
    this.scheduled = false;
    /** Draws over the level-0 tiles, inside the board's clip (overlays.js): (ctx, {s,
     * ox, oy, dpr}) => void. Under the grid, the hover box and the reticle. */
    this.overlay = null;
    this.afterDraw = null;
    /** Draws counted per level, for the browser tests. */
    this.stats = { frames: 0, tiles: 0, overview: 0 };
  }

  /** Matches the canvas's backing store to its CSS size and the device pixel ratio. */
  resize(cssWidth, cssHeight, dpr) {
    this.dpr = dpr;
    const w = Math.max(1, Math.round(cssWidth * dpr));
    const h = Math.max(1, Math.round(cssHeight * dpr));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.request();
  }

  /** Asks for a draw on the next animation frame; many calls make one draw. */
  request() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.draw();
    });
  }

  /** Where board point 0 is on the canvas (device px) and device px per board px. */
  transform() {
    const v = this.view, dpr = this.dpr;
    const s = v.zoom * dpr;
    // Whole device pixels for the origin: at whole zooms every board pixel then covers
    // exactly the same number of device pixels.
    return { s, ox: Math.round(this.canvas.width / 2 - v.x * s), oy: Math.round(this.canvas.height / 2 - v.y * s), dpr };
  }

  /** The canvas of a level-0 tile, its pixels brought up to date. */
  surface(e) {
    let sf = this.surfaces.get(e.key);
    if (sf && sf.entry !== e) {
      this.surfaces.delete(e.key); // the tile was evicted and loaded again
      sf = null;
    }
    if (!sf) {
      const c = document.createElement('canvas');
      c.width = TILE;
      c.height = TILE;
      sf = { canvas: c, ctx: c.getContext('2d', { alpha: false }), entry: e, drawn: 0 };
      e.fullDirty = true;
    } else {
      this.surfaces.delete(e.key);
    }
    this.surfaces.set(e.key, sf); // most recently drawn last
    sf.drawn = this.stats.frames;
    if (e.fullDirty) {
      const px = e.pixels, words = this.imageWords, pal = this.paletteRgba;
      for (let i = 0; i < TILE_PIXELS; i++) words[i] = pal[px[i]] ?? 0;
      sf.ctx.putImageData(this.image, 0, 0);
      e.fullDirty = false;
      e.dirty = null;
    } else if (e.dirty) {
      // Few scattered pixels: a 1x1 fillRect each, grouped by color so fillStyle (a
      // string parse) changes once per color.
      const byColor = new Map();
      for (const i of e.dirty) {
        const c = e.pixels[i];
        let list = byColor.get(c);
        if (!list) byColor.set(c, (list = []));
        list.push(i);
      }
      for (const [c, list] of byColor) {
        sf.ctx.fillStyle = this.paletteCss[c] ?? '#FF00FF';
        for (const i of list) sf.ctx.fillRect(i % TILE, (i / TILE) | 0, 1, 1);
      }
      e.dirty = null;
    }
    return sf.canvas;
  }

  draw() {
    const { ctx, canvas, view: v, world } = this;
    const W = canvas.width, H = canvas.height;
    const bw = world.width, bh = world.height;
    const { s, ox, oy, dpr } = this.transform();
    this.stats.frames++;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = this.bg;
    ctx.fillRect(0, 0, W, H);

    // The board's box on screen, clamped a little outside the canvas: far beyond it the
    // numbers get big for nothing.
    const clampX = (x) => Math.min(W + 64, Math.max(-64, x));
    const clampY = (y) => Math.min(H + 64, Math.max(-64, y));
    const bx0 = clampX(ox), by0 = clampY(oy);
    const bx1 = clampX(Math.round(ox + bw * s)), by1 = clampY(Math.round(oy + bh * s));

    // A soft shadow lifts the board off the background.
    ctx.save();
    ctx.shadowColor = 'rgba(20, 24, 40, 0.28)';
    ctx.shadowBlur = 18 * dpr;
    ctx.shadowOffsetY = 4 * dpr;
    ctx.fillStyle = '#fff';
    ctx.fillRect(bx0, by0, bx1 - bx0, by1 - by0);
    ctx.restore();

    ctx.save();
    ctx.beginPath();
    ctx.rect(bx0, by0, bx1 - bx0, by1 - by0);
    ctx.clip(); // the padding of the last row and column of tiles never shows
    ctx.imageSmoothingEnabled = false;
    // History mode (world.past) draws its own level-0 tiles only: overviews are live.
    const z = world.past ? 0 : world.level;
    const top = world.past ? 0 : Math.min(world.levels - 1, z + FALLBACK_LEVELS);
    // Coarser levels first, as a blurry stand-in while the wanted level loads; then the
    // level below (it may still be in memory from before a zoom out); then the level.
    for (let l = top; l > z; l--) this.drawLevel(l, ox, oy, s);
    if (z > 0) this.drawLevel(z - 1, ox, oy, s, false);
    this.drawLevel(z, ox, oy, s);
    this.overlay?.(ctx, { s, ox, oy, dpr });
    ctx.restore();
    this.trimSurfaces();

    if (v.zoom >= 14) this.drawGrid(ox, oy, s, W, H, bw, bh);
    if (this.hover && v.zoom >= 4 && !sameXY(this.hover, this.selected)) {
      const { x, y } = this.hover;
      ctx.strokeStyle = 'rgba(0, 0, 0, 0.45)';
      ctx.lineWidth = Math.max(1, dpr);
      ctx.strokeRect(ox + x * s + 0.5, oy + y * s + 0.5, s - 1, s - 1);
    }
    if (this.selected) this.drawReticle(ox, oy, s);
    this.afterDraw?.();
  }

  /** Draws the loaded tiles of level `z` that are on screen; level-0 tiles without a
   * canvas yet get one only if `create`. */
  drawLevel(z, ox, oy, s, create = true) {
    const { ctx, world } = this;
    const span = TILE * 2 ** z;
    const rect = tileRect(this.view, world.width, world.height, z, 0);
    forEachTile(rect, (tx, ty) => {
      let img;
      if (z === 0) {
        const e = (world.past ?? world.tiles).peek(tx, ty);
        if (!e?.pixels || (!create && this.surfaces.get(e.key)?.entry !== e)) return;
        img = this.surface(e);
        this.stats.tiles++;
      } else {
        img = world.overviews.peek(z, tx, ty)?.img;
        if (!img) return;
        this.stats.overview++;
      }
      // Rounded edges, shared by neighbours: no seam between tiles at any zoom.
      const x0 = Math.round(ox + tx * span * s), x1 = Math.round(ox + (tx + 1) * span * s);
      const y0 = Math.round(oy + ty * span * s), y1 = Math.round(oy + (ty + 1) * span * s);
      ctx.drawImage(img, x0, y0, x1 - x0, y1 - y0);
    });
  }

  /** Drops the canvases of tiles not drawn lately, beyond a few spares: memory follows
   * the screen, not the path the view took. */
  trimSurfaces() {
    for (const [key, sf] of this.surfaces) {
      if (sf.entry.evicted) this.surfaces.delete(key);
    }
    for (const [key, sf] of this.surfaces) {
      if (this.surfaces.size <= SPARE_SURFACES) break;
      if (sf.drawn !== this.stats.frames) this.surfaces.delete(key);
    }
  }

  /** Faint lines between pixels once they are big enough to aim at. */
  drawGrid(ox, oy, s, W, H, bw, bh) {
    const { ctx } = this;
    const x0 = Math.max(0, Math.floor(-ox / s)), x1 = Math.min(bw, Math.ceil((W - ox) / s));
    const y0 = Math.max(0, Math.floor(-oy / s)), y1 = Math.min(bh, Math.ceil((H - oy) / s));
    const top = Math.max(0, oy), bottom = Math.min(H, oy + bh * s);
    const left = Math.max(0, ox), right = Math.min(W, ox + bw * s);
    ctx.beginPath();
    for (let x = x0; x <= x1; x++) {
      const X = Math.round(ox + x * s) + 0.5;
      ctx.moveTo(X, top);
      ctx.lineTo(X, bottom);
    }
    for (let y = y0; y <= y1; y++) {
      const Y = Math.round(oy + y * s) + 0.5;
      ctx.moveTo(left, Y);
      ctx.lineTo(right, Y);
    }
    // Fades in between zoom 14 and 28 instead of popping.
    const a = Math.min(1, (s / this.dpr - 14) / 14) * 0.09 + 0.03;
    ctx.strokeStyle = `rgba(0, 0, 0, ${a.toFixed(3)})`;
    ctx.lineWidth = 1;
    ctx.stroke();
  }

  /** Corner brackets around the selected pixel, filled with the color to place. */
  drawReticle(ox, oy, s) {
    const { ctx, dpr } = this;
    const { x, y } = this.selected;
    const px = ox + x * s, py = oy + y * s;
    if (px < -100 * dpr || py < -100 * dpr || px > this.canvas.width + 100 * dpr || py > this.canvas.height + 100 * dpr) return;
    // No preview of the color the pixel already has (just placed, say): it shows as it is.
    const shown = this.world.past ? undefined : this.world.tiles.get(x, y);
    if (this.selectedColor !== null && this.paletteCss[this.selectedColor] && shown !== this.selectedColor) this.drawPreview(px, py, s);
    const cx = px + s / 2, cy = py + s / 2;
    const half = Math.max(s / 2 + 3 * dpr, 9 * dpr);
    const arm = Math.max(4 * dpr, half * 0.55);
    const path = new Path2D();
    for (const [sx, sy] of [[-1, -1], [1, -1], [1, 1], [-1, 1]]) {
      const X = cx + sx * half, Y = cy + sy * half;
      path.moveTo(X - sx * arm, Y);
      path.lineTo(X, Y);
      path.lineTo(X, Y - sy * arm);
    }
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.strokeStyle = 'rgba(255, 255, 255, 0.95)';
    ctx.lineWidth = 5 * dpr;
    ctx.stroke(path);
    ctx.strokeStyle = '#111';
    ctx.lineWidth = 2.5 * dpr;
    ctx.stroke(path);
  }

  /**
   * The color to place, previewed on the selected pixel so that it never looks placed:
   * big pixels get an inset square checkered with white and outlined, the current color
   * showing around it; small ones (under 12 px, where the brackets dwarf the pixel) a
   * plain fill.
   */
  drawPreview(px, py, s) {
    const { ctx, dpr } = this;
    const color = this.paletteCss[this.selectedColor];
    if (s < 12 * dpr) {
      ctx.fillStyle = color;
      ctx.fillRect(px, py, s, s);
      return;
    }
    const inset = Math.round(s * 0.2);
    const x = px + inset, y = py + inset, w = s - 2 * inset;
    ctx.fillStyle = color;
    ctx.fillRect(x, y, w, w);
    // A 4 x 4 checker of the color and a light veil: "a preview", as image editors show
    // transparency, whatever the color.
    const cell = w / 4;
    ctx.fillStyle = isLight(color) ? 'rgba(0, 0, 0, 0.28)' : 'rgba(255, 255, 255, 0.55)';
    for (let i = 0; i < 4; i++) {
      for (let j = (i % 2); j < 4; j += 2) ctx.fillRect(x + j * cell, y + i * cell, cell, cell);
    }
    ctx.lineWidth = Math.max(1, dpr);
    ctx.strokeStyle = 'rgba(17, 17, 17, 0.85)';
    ctx.setLineDash([2 * dpr, 2 * dpr]);
    ctx.strokeRect(x + 0.5, y + 0.5, w - 1, w - 1);
    ctx.setLineDash([]);
  }
}

/** Whether '#RRGGBB' is light (a dark veil shows on it, a white one would not). */
function isLight(hex) {
  const n = parseInt(hex.slice(1), 16);
  return 0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255) > 160;
}

function sameXY(a, b) {
  return a && b && a.x === b.x && a.y === b.y;
}

