// What the page's URL says about the view, and what it writes there. Pure (no DOM), so the
// rules are unit-tested in Node.
//
// The view part of the hash is one of:
//   #x=..&y=..&w=..&h=..  the area the sender saw (board px across and down): the page
//                         fits it to its own screen, so a link made on a desktop shows the
//                         same area on a phone instead of a crop of it;
//   #x=..&y=..&z=..       a zoom chosen on purpose (hand-made links, older links): kept;
//   #x=..&y=..            a point: centered, the whole board's zoom;
// and `&p=X,Y` selects a pixel (share links). The page writes the area form, and only
// once the user moved: opening a link leaves the URL as it was.

import { parseHash } from './view.js';

/** Hash parameters that other parts of the page own (templates, the history moment):
 * they write their own, so the view part keeps everything but these. */
const FOREIGN = ['t', 'seq', 'at'];

const trim = (n, digits) => String(Number(n.toFixed(digits)));
const params = (hash) => new URLSearchParams(String(hash ?? '').replace(/^#/, ''));

/** `p=X,Y` of a hash: the pixel a link selects, or null. */
export function parsePixel(hash, width, height) {
  const m = /^(\d+),(\d+)$/.exec(params(hash).get('p') ?? '');
  if (!m) return null;
  const x = Number(m[1]), y = Number(m[2]);
  return x < width && y < height ? { x, y } : null;
}

/**
 * What a hash asks of the view: `{x, y, zoom?, w?, h?, pixel, pixelOnly}`, or null when it names no
 * view and no pixel. Areas and zooms that make no sense are dropped.
 */
export function parseLink(hash, width, height) {
  const v = parseHash(hash);
  const pixel = parsePixel(hash, width, height);
  const p = params(hash);
  const num = (k) => {
    const n = Number(p.get(k) ?? NaN);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  };
  const w = num('w'), h = num('h');
  if (!v && !pixel) return null;
  return {
    x: v?.x ?? (pixel ? pixel.x + 0.5 : undefined),
    y: v?.y ?? (pixel ? pixel.y + 0.5 : undefined),
    zoom: v?.zoom,
    w: w && h ? w : undefined,
    h: w && h ? h : undefined,
    pixel,
    /** Only a pixel, no view: it is zoomed to, not fitted. */
    pixelOnly: !v,
  };
}

/**
 * The view a link opens on a `viewW` x `viewH` canvas: the area fitted, else the chosen
 * zoom, else `fitZoom` (the whole board's). A link to a pixel alone zooms in far enough
 * to see it (`pixelZoom`). No link: the whole board, centered.
 */
export function openingView(link, { width, height, viewW, viewH, fitZoom, pixelZoom }) {
  if (!link) return { x: width / 2, y: height / 2, zoom: fitZoom };
  let zoom = fitZoom;
  if (link.zoom !== undefined) zoom = link.zoom;
  else if (link.w !== undefined) zoom = Math.min(viewW / link.w, viewH / link.h);
  else if (link.pixelOnly) zoom = Math.max(fitZoom, pixelZoom);
  return { x: link.x ?? width / 2, y: link.y ?? height / 2, zoom };
}

/** `x=..&y=..&w=..&h=..` for a view: its center and the area it shows, in board px. */
export function formatArea(view) {
  const w = view.width / view.zoom, h = view.height / view.zoom;
  // Two significant decimals for small areas (a phone at the top zoom sees 6 px across).
  const digits = (n) => (n < 100 ? 2 : 1);
  return `x=${trim(view.x, 1)}&y=${trim(view.y, 1)}&w=${trim(w, digits(w))}&h=${trim(h, digits(h))}`;
}

/** The part of a hash that is the view's (everything but FOREIGN), as `a=1&b=2`. */
export function viewPart(hash) {
  const p = params(hash);
  for (const k of FOREIGN) p.delete(k);
  // URLSearchParams would escape the `,` of p=X,Y; nothing here needs escaping.
  return [...p].map(([k, v]) => (v === '' ? k : `${k}=${v}`)).join('&');
}

/** Joins a view part (`x=..`, may be empty) and the others' parts (`&t=..&seq=..`) into a
 * hash: '' when there is nothing to say. */
export function joinHash(view, rest) {
  const s = `${view}${rest}`.replace(/^&+/, '');
  return s ? `#${s}` : '';
}

/** The hash of a share link: this area, and the selected pixel if there is one. */
export function shareHash(view, selected, rest = '') {
  return joinHash(formatArea(view) + (selected ? `&p=${selected.x},${selected.y}` : ''), rest);
}
