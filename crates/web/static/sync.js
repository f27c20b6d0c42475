// The websocket (`/ws`): connects, reconnects with backoff, says which tiles the page
// shows (the `view` message) and hands on what the server sends: tile frames (0x02),
// the `view` answer (what it subscribed), `canvas` (the canvas grew), `resync` and
// `online` (how many people are online).
// Keeping each tile exact is tiles.js's job; this only moves messages.
//
// The network and timers are injected so tests/browser/unit.test.mjs can drive it with
// fakes: no DOM here.

import { backoffDelay, decodeTileFrames } from './tiles.js';

export { backoffDelay, BACKOFF_MAX_MS, BACKOFF_MIN_MS } from './tiles.js';

export class Live {
  /**
   * @param {object} o
   * @param {string} o.wsUrl   the websocket URL (ws:// or wss://, same host)
   * @param {(msg: object) => void} [o.onHello]      a socket is open (msg: its hello)
   * @param {(rect: {tx,ty,w,h}) => void} [o.onView] the server subscribed these tiles
   * @param {(frame: object) => void} [o.onFrame]    a decoded tile frame
   * @param {(dims: {width, height}) => void} [o.onCanvas] the canvas grew
   * @param {() => void} [o.onResync]                the server lost continuity
   * @param {(n: number) => void} [o.onOnline]       how many people are online now
   * @param {() => void} [o.onDisconnect]            the socket closed
   * @param {(status: {state: string, retryAt?: number}) => void} [o.onSocket]
   */
  constructor(o) {
    this.wsUrl = o.wsUrl;
    const nop = () => {};
    this.onHello = o.onHello ?? nop;
    this.onView = o.onView ?? nop;
    this.onFrame = o.onFrame ?? nop;
    this.onCanvas = o.onCanvas ?? nop;
    this.onResync = o.onResync ?? nop;
    this.onOnline = o.onOnline ?? nop;
    this.onDisconnect = o.onDisconnect ?? nop;
    this.onSocket = o.onSocket ?? nop;
    this.onError = o.onError ?? nop;
    this.WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this.setTimeout = o.setTimeout ?? ((f, ms) => globalThis.setTimeout(f, ms));
    this.clearTimeout = o.clearTimeout ?? ((t) => globalThis.clearTimeout(t));
    this.random = o.random ?? Math.random;
    this.now = o.now ?? (() => Date.now());
    this.isOnline = o.isOnline ?? (() => true);

    this.ws = null;
    /** Hello received on the current socket. */
    this.connected = false;
    this.attempt = 0;
    this.reconnectTimer = null;
    this.stopped = false;
    /** 'connecting' (never connected yet), 'open', 'reconnecting', 'offline'. */
    this.state = 'connecting';
    this.retryAt = undefined;
    this.everConnected = false;
    this.connectStartedAt = 0;
    /** Frames and messages counted, for the browser tests (what reached this page). */
    this.received = { frames: 0, tiles: new Set() };
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.clearTimeout(this.reconnectTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
  }

  /** Reconnects now if waiting to (the browser came back online, the tab came back). */
  kick() {
    if (this.stopped || this.ws) return;
    this.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.connect();
  }

  /** Sends `{"type":"view",tx,ty,w,h}`; false if there is no open socket to send it on
   * (the page sends it again on the next hello). */
  sendView(rect) {
    if (!this.ws || !this.connected) return false;
    try {
      this.ws.send(JSON.stringify({ type: 'view', tx: rect.tx, ty: rect.ty, w: rect.w, h: rect.h }));
      return true;
    } catch (err) {
      this.onError(err);
      return false;
    }
  }

  connect() {
    if (this.stopped) return;
    this.connected = false;
    this.connectStartedAt = this.now();
    this.setState(this.everConnected ? 'reconnecting' : 'connecting');
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
      switch (msg?.type) {
        case 'hello':
          this.connected = true;
          this.everConnected = true;
          this.attempt = 0;
          this.setState('open');
          this.onHello(msg);
          if (Number.isInteger(msg.online)) this.onOnline(msg.online);
          break;
        case 'online':
          if (Number.isInteger(msg.n)) this.onOnline(msg.n);
          break;
        case 'view':
          if ([msg.tx, msg.ty, msg.w, msg.h].every(Number.isInteger)) {
            this.onView({ tx: msg.tx, ty: msg.ty, w: msg.w, h: msg.h });
          }
          break;
        case 'canvas':
          if (Number.isInteger(msg.width) && Number.isInteger(msg.height)) this.onCanvas({ width: msg.width, height: msg.height });
          break;
        case 'resync':
          this.onResync();
          break;
        case 'error':
          this.onError(new Error(`server: ${msg.code}: ${msg.message}`));
          break;
        default:
          break;
      }
      return;
    }
    // Whole-canvas frames (0x01) reach a socket that has not named its tiles yet (on a
    // canvas small enough for them): the tiles do not need them.
    if (data.byteLength > 0 && new Uint8Array(data, 0, 1)[0] === 0x01) return;
    let frames;
    try {
      frames = decodeTileFrames(data);
    } catch (err) {
      // A broken frame: nothing a tile can trust. The tiles' own rule notices any
      // placement this hides (the next frame's prev).
      this.onError(err);
      return;
    }
    for (const f of frames) {
      this.received.frames++;
      if (this.received.tiles.size < 4096) this.received.tiles.add(`${f.tx},${f.ty}`);
      this.onFrame(f);
    }
  }

  onClose(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.connected = false;
    if (this.stopped) return;
    // Whatever the code (1001 going away, 4000 too slow, 1006 network): come back, send
    // the view again, and every tile catches up from its version.
    this.onDisconnect();
    this.scheduleReconnect();
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

  setState(state, retryAt) {
    if (state !== 'reconnecting') retryAt = undefined;
    if (state === this.state && retryAt === this.retryAt) return;
    this.state = state;
    this.retryAt = retryAt;
    this.onSocket({ state, retryAt });
  }
}
