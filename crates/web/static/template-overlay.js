// Draws the templates over the canvas, after the renderer's own frame (its afterDraw).
// Zoomed out, a template is its image, semi-transparent over whole pixels. Zoomed in (from
// DOT_ZOOM CSS px per board pixel), each template pixel is a small dot of its color at the
// pixel's center, rimmed so it shows on any color, and the canvas stays readable around
// it: the pixel under a dot shows whether it is right.

/** CSS px per board pixel from which templates are drawn as dots. */
export const DOT_ZOOM = 6;
/** A dot's side as a share of the pixel's. */
const DOT_SHARE = 0.34;

/**
 * @param {CanvasRenderingContext2D} ctx  the board canvas, identity transform
 * @param {{s: number, ox: number, oy: number, dpr: number}} tr  the renderer's transform
 * @param {object[]} overlays  [{meta, indices, image, opacity}]
 * @param {string[]} paletteCss  '#RRGGBB' per palette index
 */
export function drawTemplates(ctx, tr, overlays, paletteCss) {
  const { s, ox, oy, dpr } = tr;
  const W = ctx.canvas.width, H = ctx.canvas.height;
  ctx.save();
  ctx.imageSmoothingEnabled = false;
  for (const t of overlays) {
    if (!(t.opacity > 0)) continue;
    const { x, y, width: w, height: h } = t.meta;
    const left = ox + x * s, top = oy + y * s;
    if (left > W || top > H || left + w * s < 0 || top + h * s < 0) continue;
    ctx.globalAlpha = t.opacity;
    if (s / dpr < DOT_ZOOM) {
      ctx.drawImage(t.image, Math.round(left), Math.round(top), Math.round(w * s), Math.round(h * s));
      continue;
    }
    // Only the pixels on screen: at this zoom there are few of them.
    const x0 = Math.max(x, Math.floor(-ox / s)), x1 = Math.min(x + w, Math.ceil((W - ox) / s));
    const y0 = Math.max(y, Math.floor(-oy / s)), y1 = Math.min(y + h, Math.ceil((H - oy) / s));
    const d = Math.max(2 * dpr, Math.round(s * DOT_SHARE));
    const off = (s - d) / 2;
    const byColor = new Map();
    for (let py = y0; py < y1; py++) {
      const row = (py - y) * w - x;
      for (let px = x0; px < x1; px++) {
        const c = t.indices[row + px];
        if (c < 0) continue;
        let list = byColor.get(c);
        if (!list) byColor.set(c, (list = []));
        list.push(px, py);
      }
    }
    for (const [c, list] of byColor) {
      // A dark rim keeps light dots visible on light pixels.
      ctx.fillStyle = 'rgba(0, 0, 0, 0.55)';
      for (let i = 0; i < list.length; i += 2) {
        ctx.fillRect(Math.round(ox + list[i] * s + off) - 1, Math.round(oy + list[i + 1] * s + off) - 1, d + 2, d + 2);
      }
      ctx.fillStyle = paletteCss[c] ?? '#FF00FF';
      for (let i = 0; i < list.length; i += 2) {
        ctx.fillRect(Math.round(ox + list[i] * s + off), Math.round(oy + list[i + 1] * s + off), d, d);
      }
    }
    // Its outline, so a finished template still shows where it is.
    ctx.globalAlpha = Math.min(1, t.opacity + 0.2);
    ctx.strokeStyle = 'rgba(36, 80, 164, 0.8)';
    ctx.lineWidth = Math.max(1, dpr);
    ctx.strokeRect(Math.round(left) + 0.5, Math.round(top) + 0.5, Math.round(w * s) - 1, Math.round(h * s) - 1);
  }
  ctx.restore();
}
