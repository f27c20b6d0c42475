// Draws the board. The board lives in an offscreen canvas at one canvas pixel per board
// pixel; a live update repaints just its pixels there, and each animation frame draws
// that canvas scaled onto the screen with smoothing off, so pixels stay crisp squares
// at any zoom and no update costs O(board).

const BG = '#dcdfe4';

export class Renderer {
  constructor(canvas, board, view, paletteCss) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.board = board;
    this.view = view;
    this.paletteCss = paletteCss; // '#RRGGBB' per palette index
    this.off = document.createElement('canvas');
    this.off.width = board.width;
    this.off.height = board.height;
    this.octx = this.off.getContext('2d', { alpha: false });
    // Shares memory with board.rgba: a full upload copies nothing in JavaScript.
    this.image = new ImageData(new Uint8ClampedArray(board.rgba.buffer), board.width, board.height);
    this.dpr = 1;
    this.selected = null; // {x, y}
    this.selectedColor = null; // palette index previewed in the reticle
    this.hover = null; // {x, y} under the mouse
    this.scheduled = false;
    this.afterDraw = null;
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

  /** Copies the pixels that changed since the last frame into the offscreen canvas. */
  upload() {
    const d = this.board.takeDirty();
    if (!d) return;
    if (d.full) {
      this.octx.putImageData(this.image, 0, 0);
      return;
    }
    // Few scattered pixels: a 1x1 fillRect each, grouped by color so fillStyle (a
    // string parse) changes once per color.
    const w = this.board.width, idx = this.board.indices;
    const byColor = new Map();
    for (const i of d.pixels) {
      const c = idx[i];
      let list = byColor.get(c);
      if (!list) byColor.set(c, (list = []));
      list.push(i);
    }
    for (const [c, list] of byColor) {
      this.octx.fillStyle = this.paletteCss[c] ?? '#FF00FF';
      for (const i of list) this.octx.fillRect(i % w, (i / w) | 0, 1, 1);
    }
  }

  draw() {
    this.upload();
    const { ctx, canvas, view: v, dpr } = this;
    const W = canvas.width, H = canvas.height;
    const bw = this.board.width, bh = this.board.height;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = BG;
    ctx.fillRect(0, 0, W, H);

    const s = v.zoom * dpr; // device px per board px
    // Whole device pixels for the origin: at whole zooms every board pixel then covers
    // exactly the same number of device pixels.
    const tx = Math.round(W / 2 - v.x * s);
    const ty = Math.round(H / 2 - v.y * s);

    // A soft shadow lifts the board off the background.
    ctx.save();
    ctx.shadowColor = 'rgba(20, 24, 40, 0.28)';
    ctx.shadowBlur = 18 * dpr;
    ctx.shadowOffsetY = 4 * dpr;
    ctx.fillStyle = '#fff';
    ctx.fillRect(tx, ty, bw * s, bh * s);
    ctx.restore();

    ctx.imageSmoothingEnabled = false;
    ctx.setTransform(s, 0, 0, s, tx, ty);
    ctx.drawImage(this.off, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);

    if (v.zoom >= 14) this.drawGrid(tx, ty, s, W, H, bw, bh);
    if (this.hover && v.zoom >= 4 && !sameXY(this.hover, this.selected)) {
      const { x, y } = this.hover;
      ctx.strokeStyle = 'rgba(0, 0, 0, 0.45)';
      ctx.lineWidth = Math.max(1, dpr);
      ctx.strokeRect(tx + x * s + 0.5, ty + y * s + 0.5, s - 1, s - 1);
    }
    if (this.selected) this.drawReticle(tx, ty, s);
    this.afterDraw?.();
  }

  /** Faint lines between pixels once they are big enough to aim at. */
  drawGrid(tx, ty, s, W, H, bw, bh) {
    const { ctx } = this;
    const x0 = Math.max(0, Math.floor(-tx / s)), x1 = Math.min(bw, Math.ceil((W - tx) / s));
    const y0 = Math.max(0, Math.floor(-ty / s)), y1 = Math.min(bh, Math.ceil((H - ty) / s));
    ctx.beginPath();
    for (let x = x0; x <= x1; x++) {
      const X = Math.round(tx + x * s) + 0.5;
      ctx.moveTo(X, Math.max(0, ty));
      ctx.lineTo(X, Math.min(H, ty + bh * s));
    }
    for (let y = y0; y <= y1; y++) {
      const Y = Math.round(ty + y * s) + 0.5;
      ctx.moveTo(Math.max(0, tx), Y);
      ctx.lineTo(Math.min(W, tx + bw * s), Y);
    }
    // Fades in between zoom 14 and 28 instead of popping.
    const a = Math.min(1, (s / this.dpr - 14) / 14) * 0.09 + 0.03;
    ctx.strokeStyle = `rgba(0, 0, 0, ${a.toFixed(3)})`;
    ctx.lineWidth = 1;
    ctx.stroke();
  }

  /** Corner brackets around the selected pixel, filled with the color to place. */
  drawReticle(tx, ty, s) {
    const { ctx, dpr } = this;
    const { x, y } = this.selected;
    const px = tx + x * s, py = ty + y * s;
    if (this.selectedColor !== null && this.paletteCss[this.selectedColor]) {
      // Preview: the chosen color, inset so the current color still shows at the rim.
      const inset = s >= 12 * dpr ? s * 0.12 : 0;
      ctx.fillStyle = this.paletteCss[this.selectedColor];
      ctx.fillRect(px + inset, py + inset, s - 2 * inset, s - 2 * inset);
    }
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
}

function sameXY(a, b) {
  return a && b && a.x === b.x && a.y === b.y;
}
