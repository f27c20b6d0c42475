// Telling the user the cooldown is over, when they asked for it: a notification while the
// tab is in the background, and a short chime (made with WebAudio, no sound file). Both
// are off until turned on in the bell's menu; the notification permission is asked only
// when its box is ticked, and the choices are kept in localStorage.
//
// "Over" is the moment placing becomes possible again: the fixed cooldown's end, or in the
// charges model the next charge after an empty pool (the page's cooldown end is that
// moment in both models, docs/API.md "Cooldown models"). The chime plays in a visible tab
// too (someone may be looking elsewhere in the room); the notification only in a hidden
// one, where the title alone is easy to miss.

const KEY = 'rplace.alerts';
/** One tag: a second tab's notification replaces the first's instead of stacking. */
const TAG = 'rplace-ready';

/** The stored choices: `{notify, sound}`, both off unless stored as on. */
export function loadChoices(storage) {
  try {
    const v = JSON.parse(storage?.getItem(KEY) ?? 'null');
    return { notify: v?.notify === true, sound: v?.sound === true };
  } catch {
    return { notify: false, sound: false };
  }
}

function saveChoices(storage, choices) {
  try {
    storage?.setItem(KEY, JSON.stringify(choices));
  } catch { /* storage blocked: the choice lasts this visit */ }
}

/** Two short rising tones, quiet: noticeable without startling. */
export function chime(ctx) {
  const t0 = ctx.currentTime + 0.01;
  for (const [i, freq] of [[0, 880], [1, 1318.5]]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = 'sine';
    osc.frequency.value = freq;
    const t = t0 + i * 0.13;
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.18, t + 0.015);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.22);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t);
    osc.stop(t + 0.24);
  }
}

export class Alerts {
  /**
   * @param {object} o
   * @param {HTMLButtonElement} o.button  the bell: opens the menu
   * @param {HTMLElement} o.menu  holds the two checkboxes
   * @param {HTMLInputElement} o.notifyBox
   * @param {HTMLInputElement} o.soundBox
   * @param {(message: string, kind?: string) => void} o.toast
   */
  constructor(o) {
    this.o = o;
    this.storage = globalThis.localStorage;
    this.choices = loadChoices(this.storage);
    // A permission taken back in the browser's settings turns the choice off.
    if (this.choices.notify && globalThis.Notification?.permission !== 'granted') this.choices.notify = false;
    /** Made on a click (browsers start audio only after a gesture), then kept. */
    this.audio = null;
    this.wasCooling = false;
    o.notifyBox.checked = this.choices.notify;
    o.soundBox.checked = this.choices.sound;
    this.render();

    o.button.addEventListener('click', () => this.open(o.menu.hidden));
    o.notifyBox.addEventListener('change', () => this.setNotify(o.notifyBox.checked));
    o.soundBox.addEventListener('change', () => this.setSound(o.soundBox.checked));
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !o.menu.hidden) { this.open(false); o.button.focus(); }
    });
    document.addEventListener('pointerdown', (e) => {
      if (!o.menu.hidden && !o.menu.contains(e.target) && !o.button.contains(e.target)) this.open(false);
    });
    // Sound was on from an earlier visit: the audio starts with the first gesture here.
    document.addEventListener('pointerdown', () => { if (this.choices.sound) this.ensureAudio(); }, { capture: true });
  }

  open(on) {
    this.o.menu.hidden = !on;
    if (on) {
      // Under the bell, wherever the top bar's layout put it, and on screen.
      const r = this.o.button.getBoundingClientRect();
      const w = this.o.menu.offsetWidth;
      this.o.menu.style.left = `${Math.round(Math.max(10, Math.min(window.innerWidth - w - 10, r.left + r.width / 2 - w / 2)))}px`;
    }
    this.o.button.setAttribute('aria-expanded', String(on));
  }

  render() {
    const on = this.choices.notify || this.choices.sound;
    this.o.button.dataset.on = String(on);
    this.o.button.title = on ? 'You will be told when you can place again' : 'Be told when you can place again';
  }

  async setNotify(on) {
    const N = globalThis.Notification;
    if (on) {
      if (!N) {
        this.o.toast('This browser cannot show notifications', 'error');
        on = false;
      } else {
        // Asked even when granted already: it answers at once then, without a prompt.
        const answer = await N.requestPermission();
        if (answer !== 'granted') {
          this.o.toast('Notifications are blocked for this site: allow them in the browser to use this', 'error');
          on = false;
        }
      }
    }
    this.o.notifyBox.checked = on;
    this.choices.notify = on;
    saveChoices(this.storage, this.choices);
    this.render();
  }

  setSound(on) {
    this.choices.sound = on;
    saveChoices(this.storage, this.choices);
    this.render();
    if (on && this.ensureAudio()) chime(this.audio); // how it will sound
  }

  /** The audio context, made or resumed (inside a gesture); null without WebAudio. */
  ensureAudio() {
    const Ctx = globalThis.AudioContext ?? globalThis.webkitAudioContext;
    if (!Ctx) return null;
    this.audio ??= new Ctx();
    if (this.audio.state === 'suspended') this.audio.resume().catch(() => {});
    return this.audio;
  }

  /** Called with the cooldown left whenever the Place button is drawn. */
  update(leftMs) {
    const cooling = leftMs > 0;
    const ended = this.wasCooling && !cooling;
    this.wasCooling = cooling;
    if (ended) this.ready();
  }

  ready() {
    if (this.choices.sound && this.audio) chime(this.audio);
    const N = globalThis.Notification;
    if (!this.choices.notify || !N || N.permission !== 'granted' || document.visibilityState === 'visible') return;
    try {
      const n = new N('You can place a pixel again', { body: 'Your cooldown on rplace is over.', tag: TAG, icon: 'favicon.svg' });
      n.onclick = () => { window.focus(); n.close(); };
    } catch { /* Android Chrome wants notifications from a service worker: the title still says it */ }
  }
}
