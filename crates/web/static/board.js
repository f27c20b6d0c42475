// The board in memory and the two binary formats of docs/API.md: the whole board
// (`GET /api/board`) and update frames (websocket and `GET /api/updates`).
//
// Pure data code: no DOM, so Node's test runner can import it (tests/browser/unit.test.mjs).

/** First byte of an update frame. */
export const KIND_UPDATES = 0x01;
/** Bytes before the first entry of a frame. */
export const FRAME_HEADER_LEN = 13;
/** Bytes per placement in a frame: x u16 LE, y u16 LE, color u8. */
export const ENTRY_LEN = 5;

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
 * Unpacks the `GET /api/board` body into one palette index per pixel (`i = y*width + x`).
 * 4 bits per pixel: byte i>>1, even i in the high nibble (Redis `BITFIELD u4` order);
 * 8 bits per pixel: byte i.
 * `out` may be given (e.g. the board's own array) to save a 16 MB copy on big boards.
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

/**
 * Splits a buffer of one or more update frames laid back to back (the body of
 * `/api/updates`; a websocket message holds exactly one) into
 * `{firstSeq, count, entries}` where `entries` is a view of the entry bytes.
 * Throws on a malformed buffer: applying half of a broken frame would desync the board.
 */
export function decodeFrames(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames = [];
  let off = 0;
  while (off < bytes.length) {
    if (bytes.length - off < FRAME_HEADER_LEN) {
      throw new Error(`truncated frame header at byte ${off}`);
    }
    if (bytes[off] !== KIND_UPDATES) {
      throw new Error(`unknown frame kind ${bytes[off]} at byte ${off}`);
    }
    // Seqs fit in 2^53 for any real deployment; Number keeps the arithmetic simple.
    const firstSeq = Number(view.getBigUint64(off + 1, true));
    const count = view.getUint32(off + 9, true);
    const start = off + FRAME_HEADER_LEN;
    const end = start + count * ENTRY_LEN;
    if (end > bytes.length) throw new Error(`frame at byte ${off} says ${count} entries but is cut short`);
    frames.push({ firstSeq, count, entries: bytes.subarray(start, end) });
    off = end;
  }
  return frames;
}

/** Calls `fn(seq, x, y, color)` for each entry of a decoded frame. */
export function forEachEntry(frame, fn) {
  const e = frame.entries;
  for (let i = 0, o = 0; i < frame.count; i++, o += ENTRY_LEN) {
    fn(frame.firstSeq + i, e[o] | (e[o + 1] << 8), e[o + 2] | (e[o + 3] << 8), e[o + 4]);
  }
}

/** Builds an update frame: used by tests, and handy for debugging from the console. */
export function encodeFrame(firstSeq, entries) {
  const out = new Uint8Array(FRAME_HEADER_LEN + ENTRY_LEN * entries.length);
  const view = new DataView(out.buffer);
  out[0] = KIND_UPDATES;
  view.setBigUint64(1, BigInt(firstSeq), true);
  view.setUint32(9, entries.length, true);
  entries.forEach(([x, y, color], i) => {
    const o = FRAME_HEADER_LEN + i * ENTRY_LEN;
    view.setUint16(o, x, true);
    view.setUint16(o + 2, y, true);
    out[o + 4] = color;
  });
  return out;
}

/**
 * The board: a palette index per pixel plus the RGBA words an ImageData shows.
 * Changed pixels are remembered so the renderer repaints only them, never the whole
 * board per update (a board may be 4096x4096 = 16M pixels).
 */
export class Board {
  constructor(width, height, palette) {
    this.width = width;
    this.height = height;
    this.palette = palette; // Uint32Array from paletteToRgba
    this.indices = new Uint8Array(width * height);
    this.rgba = new Uint32Array(width * height);
    this.rgba.fill(palette[0] ?? 0xffffffff);
    /** Pixel offsets changed since the renderer last took them (a Set, or null for none). */
    this.dirty = null;
    /** True when the renderer must upload the whole board (first paint, reload, bulk). */
    this.fullDirty = true;
  }

  /** Replaces every pixel from the indices `decodeBoard` returned. */
  load(indices) {
    if (indices !== this.indices) this.indices.set(indices);
    const pal = this.palette, rgba = this.rgba, n = indices.length;
    for (let i = 0; i < n; i++) rgba[i] = pal[indices[i]] ?? 0;
    this.dirty = null;
    this.fullDirty = true;
  }

  get(x, y) {
    if (!this.inside(x, y)) return undefined;
    return this.indices[y * this.width + x];
  }

  inside(x, y) {
    return Number.isInteger(x) && Number.isInteger(y) && x >= 0 && y >= 0 && x < this.width && y < this.height;
  }

  /** Sets one pixel; returns false (and changes nothing) if it is off the board. */
  set(x, y, color) {
    if (x >= this.width || y >= this.height) return false;
    const i = y * this.width + x;
    this.indices[i] = color;
    this.rgba[i] = this.palette[color] ?? 0;
    if (!this.fullDirty) {
      (this.dirty ??= new Set()).add(i);
      // Past this many scattered pixels one bulk upload is cheaper than many small ones.
      if (this.dirty.size > 4096) { this.dirty = null; this.fullDirty = true; }
    }
    return true;
  }

  /** Hands the renderer what changed: `{full: true}` or `{pixels: Set<offset>}`; resets. */
  takeDirty() {
    if (this.fullDirty) {
      this.fullDirty = false;
      this.dirty = null;
      return { full: true };
    }
    const pixels = this.dirty;
    this.dirty = null;
    return pixels ? { pixels } : null;
  }
}
