// Solves the server's proof-of-work challenges (docs/API.md, "Anti-bot"): finds the
// smallest nonce from `from` such that SHA-256(challenge ":" nonce) starts with
// `difficulty` zero bits. Runs as a module Web Worker (pow.js starts it), so the page
// stays responsive; the pure functions are exported for the unit tests, which check
// them against crates/domain/tests/fixtures/pow.json like the Rust side.
//
// SHA-256 is done here in plain JavaScript with the challenge's full blocks hashed once
// (a midstate): each nonce then costs one or two compressions. SubtleCrypto's digest is
// asynchronous per call, which makes it several times slower for millions of short
// hashes (BENCHMARKS.md, "Issue 9: anti-bot"); engine 'subtle' is kept to measure that.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** One compression of the 64 bytes of `bytes` at `off` into `h` (8 words, in place). */
function compress(h, w, bytes, off) {
  for (let i = 0; i < 16; i++) {
    const j = off + i * 4;
    w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = w[i - 15], b = w[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (k + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
  h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
}

/** The challenge's hashing state: its full blocks done, the rest kept for each nonce. */
export class Prefix {
  constructor(text) {
    const bytes = new TextEncoder().encode(text);
    this.length = bytes.length;
    this.mid = new Int32Array(H0);
    this.w = new Int32Array(64);
    const full = bytes.length - (bytes.length % 64);
    for (let off = 0; off < full; off += 64) compress(this.mid, this.w, bytes, off);
    this.rest = bytes.subarray(full);
    // The last block(s): the rest, the nonce, 0x80, zeros, the bit length.
    this.tail = new Uint8Array(128);
    this.tail.set(this.rest);
    this.h = new Int32Array(8);
  }

  /** SHA-256 of prefix + `suffix` (ASCII), into this.h (8 words, big-endian values). */
  hash(suffix) {
    const tail = this.tail;
    let n = this.rest.length;
    for (let i = 0; i < suffix.length; i++) tail[n++] = suffix.charCodeAt(i);
    const total = this.length + suffix.length;
    tail[n++] = 0x80;
    const blocks = n + 8 <= 64 ? 1 : 2;
    const end = blocks * 64;
    tail.fill(0, n, end - 8);
    // Bit length as 64 bits; messages here are far below 2^32 bits.
    const bits = total * 8;
    tail[end - 8] = 0; tail[end - 7] = 0; tail[end - 6] = 0; tail[end - 5] = 0;
    tail[end - 4] = bits >>> 24; tail[end - 3] = (bits >>> 16) & 0xff;
    tail[end - 2] = (bits >>> 8) & 0xff; tail[end - 1] = bits & 0xff;
    const h = this.h;
    h.set(this.mid);
    compress(h, this.w, tail, 0);
    if (blocks === 2) compress(h, this.w, tail, 64);
    return h;
  }
}

/** Leading zero bits of a hash given as 8 words. */
export function leadingZeroBitsOfWords(h) {
  let n = 0;
  for (let i = 0; i < 8; i++) {
    if (h[i] === 0) { n += 32; continue; }
    return n + Math.clz32(h[i]);
  }
  return n;
}

/** Hex of a hash given as 8 words. */
export function wordsToHex(h) {
  return Array.from(h, (v) => (v >>> 0).toString(16).padStart(8, '0')).join('');
}

/** SHA-256(`challenge` ":" `nonce`) in hex. */
export function workHex(challenge, nonce) {
  return wordsToHex(new Prefix(`${challenge}:`).hash(String(nonce)));
}

/**
 * The smallest nonce from `from` (counting by `step`) that solves the challenge, trying at
 * most `limit`; `{ nonce, hashes }`, nonce null if none was found within the limit.
 */
export function solve(challenge, difficulty, { from = 0, step = 1, limit = 2 ** 40 } = {}) {
  const p = new Prefix(`${challenge}:`);
  let hashes = 0;
  for (let n = from; hashes < limit; n += step) {
    hashes++;
    if (leadingZeroBitsOfWords(p.hash(String(n))) >= difficulty) return { nonce: n, hashes };
  }
  return { nonce: null, hashes };
}

/** The same search with SubtleCrypto (for the measurement only), `batch` digests at once. */
export async function solveSubtle(challenge, difficulty, { from = 0, batch = 64 } = {}) {
  const enc = new TextEncoder();
  for (let n = from; ; n += batch) {
    const nonces = Array.from({ length: batch }, (_, i) => n + i);
    const digests = await Promise.all(nonces.map((m) => crypto.subtle.digest('SHA-256', enc.encode(`${challenge}:${m}`))));
    for (let i = 0; i < batch; i++) {
      const v = new DataView(digests[i]);
      const words = [0, 1, 2, 3, 4, 5, 6, 7].map((j) => v.getInt32(j * 4));
      if (leadingZeroBitsOfWords(words) >= difficulty) return { nonce: nonces[i], hashes: n - from + i + 1 };
    }
  }
}

// As a worker: {challenge, difficulty, engine?} in, {nonce, hashes, ms} (or {error}) out.
if (typeof WorkerGlobalScope !== 'undefined' && globalThis instanceof WorkerGlobalScope) {
  globalThis.onmessage = async (e) => {
    const { id, challenge, difficulty, engine = 'js' } = e.data;
    const t0 = performance.now();
    try {
      const r = engine === 'subtle' ? await solveSubtle(challenge, difficulty) : solve(challenge, difficulty);
      globalThis.postMessage({ id, nonce: r.nonce, hashes: r.hashes, ms: performance.now() - t0 });
    } catch (err) {
      globalThis.postMessage({ id, error: String(err) });
    }
  };
}
