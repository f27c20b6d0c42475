// The cooldown beyond the Place button: the tab's title counts it down and says when it
// is over ("Ready" until the tab is looked at again, so a background tab tells), and every
// tab of the same browser learns of a placement made in another (BroadcastChannel: a
// second tab no longer finds out by being refused).
//
// No DOM beyond document.title and visibility; the channel and the document are
// injected so the page's unit tests can drive it.

import { formatCountdown } from './format.js';

const CHANNEL = 'rplace-cooldown';

/** The title for `leftMs` of cooldown left, `ready` once one ended unseen. */
export function cooldownTitle(base, leftMs, ready) {
  if (leftMs > 0) return `(${formatCountdown(leftMs)}) ${base}`;
  return ready ? `Ready to place · ${base}` : base;
}

export class CooldownShare {
  /**
   * @param {object} o
   * @param {(endMs: number) => void} o.onRemote  another tab placed: its cooldown ends at endMs (this tab's clock)
   * @param {Document} [o.doc]
   * @param {typeof BroadcastChannel | null} [o.Channel]
   */
  constructor(o) {
    this.doc = o.doc ?? globalThis.document;
    this.base = this.doc.title;
    this.wasCooling = false;
    this.ready = false;
    // `Channel: null` turns the sharing off (tests); absent, the browser's.
    const Channel = 'Channel' in o ? o.Channel : globalThis.BroadcastChannel;
    this.channel = Channel ? new Channel(CHANNEL) : null;
    if (this.channel) {
      this.channel.onmessage = (ev) => {
        // The sender says how long is left, not when: the tabs' clocks are the same
        // machine's, but a remaining time needs no agreement at all.
        const left = Number(ev.data?.leftMs);
        if (Number.isFinite(left) && left > 0 && left < 86_400_000) o.onRemote(Date.now() + left);
      };
    }
    this.doc.addEventListener?.('visibilitychange', () => {
      if (this.doc.visibilityState === 'visible' && this.ready) {
        this.ready = false;
        this.doc.title = cooldownTitle(this.base, 0, false);
      }
    });
  }

  /** This tab placed (or was told by a refusal) and must wait `leftMs`. */
  placed(leftMs) {
    if (leftMs > 0) this.channel?.postMessage({ leftMs });
  }

  /** Called every tick with the cooldown left: keeps the title in step. */
  update(leftMs) {
    const cooling = leftMs > 0;
    if (this.wasCooling && !cooling) this.ready = this.doc.visibilityState !== 'visible';
    if (cooling) this.ready = false;
    this.wasCooling = cooling;
    const title = cooldownTitle(this.base, leftMs, this.ready);
    if (this.doc.title !== title) this.doc.title = title;
  }
}
