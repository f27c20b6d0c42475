// Pixels and colors: the packed layout of docs/API.md (the whole board of
// `GET /api/board` and, restricted to one tile, `GET /api/tiles/{tx}/{ty}`) and palette
// colors as ImageData words. The frames are in tiles.js.
//
// Pure data code: no DOM, so Node's test runner can import it (tests/browser/unit.test.mjs).

/**
 * Parses `#RRGGBB` colors into 32-bit RGBA words laid out the way ImageData stores them
 * (bytes R, G, B, A in memory, i.e. a little-endian Uint32 of 0xAABBGGRR), so a pixel is
 * painted with a single store instead of four.
 */
export function paletteToRgba(hexColors) {
  const out = new Uint32Array(hexColors.length);
  hexColors.forEach((hex, i) => {
    const m = /^#?([0-9a-f]{6})$/i.exec(String(hex).trim());
    const v = m ? parseInt(m[1], 16) : 0xff00ff; // magenta shows a bad color, not a crash
    const r = (v >> 16) & 0xff, g = (v >> 8) & 0xff, b = v & 0xff;
    out[i] = ((0xff << 24) | (b << 16) | (g << 8) | r) >>> 0;
  });
  return out;
}

/**
 * Unpacks packed pixels (a tile's body, 256x256; or a whole board's) into one palette
 * index per pixel (`i = y*width + x`).
 * 4 bits per pixel: byte i>>1, even i in the high nibble (Redis `BITFIELD u4` order);
 * 8 bits per pixel: byte i.
 * `out` may be given (e.g. the tile's own array) to save a copy.
 */
export function decodeBoard(bytes, width, height, bitsPerPixel, out = new Uint8Array(width * height)) {
  const n = width * height;
  const src = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (bitsPerPixel === 8) {
    if (src.length < n) throw new Error(`board is ${src.length} bytes, expected ${n}`);
    out.set(src.subarray(0, n));
  } else if (bitsPerPixel === 4) {
    const need = (n + 1) >> 1;
    if (src.length < need) throw new Error(`board is ${src.length} bytes, expected ${need}`);
    const pairs = n >> 1;
    for (let b = 0; b < pairs; b++) {
      const v = src[b];
      out[2 * b] = v >> 4;
      out[2 * b + 1] = v & 0x0f;
    }
    if (n & 1) out[n - 1] = src[pairs] >> 4;
  } else {
    throw new Error(`unsupported bits_per_pixel ${bitsPerPixel}`);
  }
  return out;
}
