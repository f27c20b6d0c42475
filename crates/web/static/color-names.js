// A human name for any palette color, so a screen reader says "dark red" rather than
// "#BE0039": the nearest of a small list of everyday names (r/place's own palette names
// among them), by the same "redmean" distance the server maps template pixels with.

const NAMES = [
  ['white', 0xffffff], ['light gray', 0xd4d7d9], ['gray', 0x898d90], ['dark gray', 0x515252],
  ['black', 0x000000], ['pink', 0xff99aa], ['light pink', 0xffc0cb], ['red', 0xff4500],
  ['dark red', 0xbe0039], ['burgundy', 0x6d001a], ['orange', 0xffa800], ['brown', 0x9c6926],
  ['dark brown', 0x6d482f], ['beige', 0xffb470], ['yellow', 0xffd635], ['pale yellow', 0xfff8b8],
  ['light green', 0x7eed56], ['green', 0x00a368], ['dark green', 0x00756f], ['teal', 0x009eaa],
  ['cyan', 0x00ccc0], ['light blue', 0x51e9f4], ['blue', 0x3690ea], ['dark blue', 0x2450a4],
  ['indigo', 0x493ac1], ['periwinkle', 0x6a5cff], ['lavender', 0x94b3ff], ['purple', 0x811e9f],
  ['light purple', 0xb44ac0], ['magenta', 0xde107f], ['hot pink', 0xff3881],
  // Pure and r/place 2017 tones, so the common ones get the plain name.
  ['red', 0xff0000], ['red', 0xe50000], ['blue', 0x0000ff], ['blue', 0x0000ea],
  ['blue', 0x0083c7], ['dark gray', 0x222222], ['green', 0x00ff00], ['magenta', 0xff00ff],
];

function rgb(hex) {
  const n = typeof hex === 'number' ? hex : parseInt(String(hex).replace('#', ''), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** Redmean distance (squared), as `rplace_domain::template` uses. */
function distance(a, b) {
  const rm = (a[0] + b[0]) / 2;
  const [dr, dg, db] = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
  return (2 + rm / 256) * dr * dr + 4 * dg * dg + (2 + (255 - rm) / 256) * db * db;
}

/** The nearest everyday name of `hex` ('#RRGGBB'). */
export function colorName(hex) {
  const c = rgb(hex);
  let best = NAMES[0][0], bestD = Infinity;
  for (const [name, v] of NAMES) {
    const d = distance(c, rgb(v));
    if (d < bestD) { best = name; bestD = d; }
  }
  return best;
}
