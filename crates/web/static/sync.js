// Keeps the local board exactly equal to the server's: the algorithm of docs/API.md,
// "How a client stays exact".
//
//   1. open /ws and buffer its frames;
//   2. GET /api/board: the board at seq S (header X-Board-Seq);
//   3. apply buffered and new frames in order, skipping entries with seq <= current;
//      if a frame starts after current + 1, GET /api/updates?since=current first
//      (410: back to 2);
//   4. after a reconnect, do 3 from the last seq applied.
//
// Every seq is applied exactly once and in order because there is one place that
// applies them (`applyFrame`), it only ever takes the entry `current + 1`, and all the
// work runs in one serialized loop (`pump`). The network and timers are injected so
// tests/browser/unit.test.mjs can drive this with fakes: no DOM here.

import { decodeFrames, forEachEntry } from './board.js';

/** Reconnect delays: exponential from BACKOFF_MIN_MS to BACKOFF_MAX_MS, with jitter. */
export const BACKOFF_MIN_MS = 500;
export const BACKOFF_MAX_MS = 10_000;
/** How long the first board fetch waits for the socket's hello before going ahead. */
const HELLO_WAIT_MS = 2_000;
/** A frame still ahead of the log after this many catch-ups triggers a board refetch. */
const MAX_GAP_RETRIES = 3;

/** Delay before reconnect attempt `attempt` (0-based): 0.5 s, 1 s, 2 s ... 10 s, each
 * scaled by a random factor in [0.5, 1) so that clients a restart dropped together
 * do not all come back in the same instant. */
export function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(attempt, 16));
  return Math.max(BACKOFF_MIN_MS / 2, Math.round(base * (0.5 + 0.5 * random())));
}

class HttpError extends Error {
  constructor(what, status) {
    super(`${what}: HTTP ${status}`);
    this.status = status;
  }
}

export class Sync {
  /**
   * @param {object} o
   * @param {string} o.httpBase   prefix for API URLs ('' on the page: same origin)
   * @param {string} o.wsUrl      the websocket URL (ws:// or wss://, same host)
   * @param {(bytes: Uint8Array, seq: number) => void} o.onBoard   a whole new board
   * @param {(seq: number, x: number, y: number, color: number) => void} o.onUpdate
   * @param {(status: {state: string, retryAt?: number}) => void} [o.onStatus]
   * @param {(err: Error) => void} [o.onError]
   */
  constructor(o) {
    this.httpBase = o.httpBase ?? '';
    this.wsUrl = o.wsUrl;
    this.onBoard = o.onBoard;
    this.onUpdate = o.onUpdate;
    this.onStatus = o.onStatus ?? (() => {});
    this.onError = o.onError ?? (() => {});
    this.fetch = o.fetch ?? ((...a) => globalThis.fetch(...a));
    this.WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this.setTimeout = o.setTimeout ?? ((f, ms) => globalThis.setTimeout(f, ms));
    this.clearTimeout = o.clearTimeout ?? ((t) => globalThis.clearTimeout(t));
    this.random = o.random ?? Math.random;
    this.now = o.now ?? (() => Date.now());
    this.isOnline = o.isOnline ?? (() => true);

    /** Newest seq applied to the local board; null until the first board arrives. */
    this.seq = null;
    /** Newest seq the server told us exists (hello); we catch up to it without waiting
     * for the next frame, which on a quiet board could be a long time coming. */
    this.knownSeq = 0;
    /** Decoded frames waiting to be applied, in arrival order. */
    this.queue = [];
    this.needBoard = true;
    /** Refetch bypassing the HTTP cache (after resync or 410, the cached one is too old). */
    this.freshBoard = false;
    /** The first board fetch waits for the socket's hello (or for it to fail). */
    this.gateOpen = false;
    this.busy = false;
    this.gapRetries = 0;
    /** 410s in a row, each answered with a new board. */
    this.goneStreak = 0;
    this.ws = null;
    this.connected = false; // hello received on the current socket
    this.attempt = 0;
    this.reconnectTimer = null;
    this.pumpTimer = null;
    this.pumpFailures = 0;
    this.stopped = false;
    this.state = 'connecting';
    this.retryAt = undefined;
  }

  start() {
    this.connect();
    this.setTimeout(() => this.openGate(), HELLO_WAIT_MS);
  }

  stop() {
    this.stopped = true;
    this.clearTimeout(this.reconnectTimer);
    this.clearTimeout(this.pumpTimer);
    this.pumpTimer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
  }

  /** Reconnects now if waiting to (the browser came back online, the tab came back). */
  kick() {
    if (this.stopped) return;
    if (this.pumpTimer) {
      this.clearTimeout(this.pumpTimer);
      this.pumpTimer = null;
      this.pump();
    }
    if (this.ws) return;
    this.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.connect();
  }

  // ---- websocket ---------------------------------------------------------------

  connect() {
    if (this.stopped) return;
    this.connected = false;
    this.setState(this.seq === null ? 'connecting' : 'reconnecting');
    let ws;
    try {
      ws = new this.WebSocket(this.wsUrl);
    } catch (err) {
      this.onError(err);
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onclose = () => this.onClose(ws);
    // An error is always followed by close, which does the work.
    ws.onerror = () => {};
  }

  onMessage(data) {
    if (this.stopped) return;
    if (typeof data === 'string') {
      let msg;
      try { msg = JSON.parse(data); } catch { return; }
      if (msg?.type === 'hello') {
        this.connected = true;
        this.attempt = 0;
        if (Number.isFinite(msg.seq)) this.knownSeq = Math.max(this.knownSeq, msg.seq);
        this.openGate();
        this.updateState();
      } else if (msg?.type === 'resync') {
        this.needBoard = true;
        this.freshBoard = true;
        this.updateState();
      }
      this.pump();
      return;
    }
    try {
      for (const f of decodeFrames(data)) this.queue.push(f);
    } catch (err) {
      // A broken frame means we can no longer trust our position: start over.
      this.onError(err);
      this.queue.length = 0;
      this.needBoard = true;
      this.freshBoard = true;
    }
    this.pump();
  }

  onClose(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.connected = false;
    if (this.stopped) return;
    // Whatever the code (1001 going away, 4000 too slow, 1006 network): come back and
    // catch up from this.seq. Frames already buffered stay valid.
    this.openGate();
    this.scheduleReconnect();
    this.pump();
  }

  scheduleReconnect() {
    if (this.stopped) return;
    if (!this.isOnline()) {
      // No point retrying while the browser says it is offline; kick() on 'online'.
      this.setState('offline');
      return;
    }
    const delay = backoffDelay(this.attempt++, this.random);
    this.retryAt = this.now() + delay;
    this.setState('reconnecting', this.retryAt);
    this.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = this.setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  // ---- applying --------------------------------------------------------------------

  openGate() {
    if (this.gateOpen) return;
    this.gateOpen = true;
    this.pump();
  }

  /** The one loop that changes the board. Reentrant calls return at once: the running
   * loop looks at the queue again before it exits, with no await in between. */
  async pump() {
    // While a failed fetch waits for its retry timer, frames just queue up.
    if (this.busy || this.stopped || this.pumpTimer) return;
    this.busy = true;
    try {
      while (!this.stopped) {
        if (this.needBoard) {
          if (!this.gateOpen) break;
          await this.fetchBoard();
          continue;
        }
        const f = this.queue[0];
        if (f) {
          if (f.firstSeq + f.count - 1 <= this.seq) {
            this.queue.shift(); // all of it is on the board already
            continue;
          }
          if (f.firstSeq > this.seq + 1) {
            // Placements between our board and this frame: get them from the log.
            const before = this.seq;
            await this.catchUp();
            if (!this.needBoard && this.seq === before && this.queue[0] === f) {
              if (++this.gapRetries > MAX_GAP_RETRIES) {
                this.gapRetries = 0;
                this.needBoard = true;
                this.freshBoard = true;
              } else {
                await this.sleep(100 * this.gapRetries);
              }
            }
            continue;
          }
          this.queue.shift();
          this.gapRetries = 0;
          this.applyFrame(f);
          continue;
        }
        if (this.knownSeq > this.seq) {
          await this.catchUp();
          // Never loop on a hello the log cannot satisfy; frames will show any gap.
          if (this.knownSeq > this.seq && !this.needBoard) this.knownSeq = this.seq;
          continue;
        }
        break;
      }
      this.pumpFailures = 0;
    } catch (err) {
      this.onError(err);
      // The board or the log could not be fetched: try again later, same state.
      const delay = backoffDelay(this.pumpFailures++, this.random);
      this.clearTimeout(this.pumpTimer);
      this.pumpTimer = this.setTimeout(() => {
        this.pumpTimer = null;
        this.pump();
      }, delay);
    } finally {
      this.busy = false;
      this.updateState();
    }
  }

  /** Applies the entries of a frame that are newer than the board; the caller made sure
   * the frame starts at or before seq + 1, so nothing is skipped. */
  applyFrame(f) {
    forEachEntry(f, (s, x, y, color) => {
      if (s <= this.seq) return;
      if (s !== this.seq + 1) throw new Error(`internal: applying seq ${s} after ${this.seq}`);
      this.onUpdate(s, x, y, color);
      this.seq = s;
    });
    if (this.seq > this.knownSeq) this.knownSeq = this.seq;
  }

  async fetchBoard() {
    // A board older than the log (a cache in the way) would bring 410 again at once:
    // wait a little more each time rather than spin.
    if (this.goneStreak > 1) await this.sleep(backoffDelay(this.goneStreak - 2, this.random));
    if (this.stopped) return;
    const res = await this.fetch(`${this.httpBase}/api/board`, {
      credentials: 'same-origin',
      cache: this.freshBoard ? 'no-cache' : 'default',
    });
    if (!res.ok) throw new HttpError('GET /api/board', res.status);
    const seq = Number(res.headers.get('X-Board-Seq'));
    if (!Number.isSafeInteger(seq) || seq < 0) throw new Error('GET /api/board: no X-Board-Seq header');
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (this.stopped) return;
    this.onBoard(bytes, seq);
    this.seq = seq;
    this.needBoard = false;
    this.freshBoard = false;
    if (seq > this.knownSeq) this.knownSeq = seq;
  }

  /** Applies every placement after this.seq from `/api/updates`, page by page. */
  async catchUp() {
    for (;;) {
      const since = this.seq;
      const res = await this.fetch(`${this.httpBase}/api/updates?since=${since}`, {
        credentials: 'same-origin',
        cache: 'no-store',
      });
      if (res.status === 410) {
        // The log no longer reaches back to our board: start from a new board.
        this.goneStreak++;
        this.needBoard = true;
        this.freshBoard = true;
        return;
      }
      if (!res.ok) throw new HttpError('GET /api/updates', res.status);
      this.goneStreak = 0;
      const more = (res.headers.get('X-Updates-More') ?? '').toLowerCase() === 'true';
      const frames = decodeFrames(await res.arrayBuffer());
      if (this.stopped) return;
      for (const f of frames) {
        if (f.firstSeq > this.seq + 1) {
          // The log itself has a hole: only a new board can be trusted.
          this.onError(new Error(`/api/updates skipped from ${this.seq} to ${f.firstSeq}`));
          this.needBoard = true;
          this.freshBoard = true;
          return;
        }
        this.applyFrame(f);
      }
      if (!more || this.seq === since) return;
    }
  }

  sleep(ms) {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  // ---- status ----------------------------------------------------------------------

  updateState() {
    if (this.stopped) return;
    if (this.ws && this.connected) {
      this.setState(this.seq === null || this.needBoard ? 'connecting' : 'live');
    } else if (this.ws) {
      this.setState(this.seq === null ? 'connecting' : 'reconnecting');
    }
    // Without a socket the state was set by scheduleReconnect (reconnecting/offline).
  }

  setState(state, retryAt) {
    if (state !== 'reconnecting') retryAt = undefined;
    if (state === this.state && retryAt === this.retryAt) return;
    this.state = state;
    this.retryAt = retryAt;
    this.onStatus({ state, retryAt });
  }
}
