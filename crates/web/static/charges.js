// The charges cooldown model on the page (docs/API.md, Cooldown models): how many
// placements the user has stored and when the next one arrives, shown next to the Place
// button and counted down. In the fixed model it shows nothing: the Place button's own
// countdown says it all.
//
// The server's numbers are in its clock; they are kept as times on this page's clock by
// the offset of the answer they came with (`at` of a placement, the Date header of the
// config), so a wrong clock on the device does not shift the countdown.

/** `ms` -> `m:ss`, rounded up (a charge is not there until the countdown shows 0:00). */
export function formatShort(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, '0')}`;
}

/** `3/30 charges, next in 0:21` (no "next" part when the pool is full). */
export function chargesText(charges, max, nextInMs) {
  const pool = `${charges}/${max} charge${max === 1 ? '' : 's'}`;
  return charges >= max || nextInMs === null ? pool : `${pool}, next in ${formatShort(nextInMs)}`;
}

/**
 * The pool at `now` from the last known one: every `everyMs` after `nextAt` one more
 * charge, up to `max`. Pure, for the unit tests. Returns `{charges, nextAt}` (`nextAt`
 * null when full).
 */
export function poolAt({ charges, nextAt }, max, everyMs, now) {
  if (nextAt === null || charges >= max) return { charges: Math.min(charges, max), nextAt: null };
  if (now < nextAt) return { charges, nextAt };
  const gained = 1 + Math.floor((now - nextAt) / everyMs);
  const after = Math.min(max, charges + gained);
  return after >= max
    ? { charges: max, nextAt: null }
    : { charges: after, nextAt: nextAt + gained * everyMs };
}

export class Charges {
  /**
   * `config` is `GET /api/config`'s answer; `skew` the server's clock minus this page's
   * (app.js's clockSkew); the element is made and placed after `anchor` (the Place
   * button), only in the charges model.
   */
  constructor(config, skew, anchor) {
    this.on = config.cooldown_model === 'charges' && Number.isInteger(config.charges_max);
    if (!this.on) return;
    this.max = config.charges_max;
    this.everyMs = config.charge_every_ms;
    this.pool = { charges: this.max, nextAt: null };
    this.el = document.createElement('span');
    this.el.id = 'charges';
    this.el.className = 'charges';
    this.el.setAttribute('role', 'status');
    this.el.title = `You can store up to ${this.max} placements; one comes back every ${formatShort(this.everyMs)}`;
    anchor.insertAdjacentElement('afterend', this.el);
    this.set(config.user?.charges, config.user?.next_charge_at, skew);
  }

  /** Takes a pool the server reported: `next` is in the server's clock, `skew` its
   *  offset from this page's. */
  set(charges, next, skew) {
    if (!this.on || !Number.isInteger(charges)) return;
    this.pool = {
      charges,
      nextAt: Number.isFinite(next) ? next - skew : null,
    };
    this.render();
  }

  /** After an accepted placement: its answer's `charges` and `next_charge_at`, timed by
   *  its `at`. */
  placed(r) {
    this.set(r.charges, r.next_charge_at, r.at - Date.now());
  }

  /** After a refusal: a cooldown refusal in this model means an empty pool. */
  refused(body) {
    if (body?.error !== 'cooldown' || !Number.isFinite(body.next_charge_at)) return;
    const left = Number.isFinite(body.retry_after_ms) ? body.retry_after_ms : 0;
    this.set(body.charges ?? 0, Date.now() + left, 0);
  }

  /** Called by the page's clock: counts down and adds the charges that arrived. */
  tick() {
    if (this.on) this.render();
  }

  render() {
    const now = Date.now();
    this.pool = poolAt(this.pool, this.max, this.everyMs, now);
    const { charges, nextAt } = this.pool;
    const text = chargesText(charges, this.max, nextAt === null ? null : nextAt - now);
    if (this.el.textContent !== text) this.el.textContent = text;
    this.el.dataset.charges = String(charges);
    this.el.classList.toggle('empty', charges === 0);
  }
}
