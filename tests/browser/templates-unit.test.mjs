// Unit tests of the page's template logic (crates/web/static/templates.js): the hash
// part, mapping pixels to the palette, and comparing with tiles. No browser needed.
// Run: node --test tests/browser/templates-unit.test.mjs

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TILE } from '../../crates/web/static/tiles.js';
import {
  MAX_OVERLAYS, WRONG_LIST, compare, covers, formatTemplatesParam, nextWrong, parseTemplatesParam, rgbaToIndices,
} from '../../crates/web/static/templates.js';

const PALETTE = ['#FFFFFF', '#E4E4E4', '#888888', '#222222', '#FFA7D1', '#E50000'];

/** A template of `w` x `h` at (x, y) with these indices (-1 transparent). */
const tpl = (x, y, w, h, indices) => ({ meta: { x, y, width: w, height: h }, indices: Int16Array.from(indices) });

describe('template links', () => {
  test('parse what format writes, skipping bad or repeated ids', () => {
    const list = [{ id: 'AbCdEfGh12', opacity: 0.6 }, { id: 'zzzzzzzzzz', opacity: 1 }];
    const part = formatTemplatesParam(list);
    assert.equal(part, '&t=AbCdEfGh12:60,zzzzzzzzzz:100');
    assert.deepEqual(parseTemplatesParam(`#x=1&y=2&z=3${part}`), list);
    assert.deepEqual(parseTemplatesParam('#t=short:50,AbCdEfGh12:500,AbCdEfGh12:10,0123456789'), [
      { id: 'AbCdEfGh12', opacity: 1 }, { id: '0123456789', opacity: 0.6 },
    ]);
    assert.deepEqual(parseTemplatesParam('#x=1'), []);
    assert.equal(formatTemplatesParam([]), '');
    const many = Array.from({ length: 20 }, (_, i) => `${String(i).padStart(10, 'a')}:50`).join(',');
    assert.equal(parseTemplatesParam(`#t=${many}`).length, MAX_OVERLAYS);
  });
});

describe('template pixels', () => {
  test('exact palette colors map to their index, others to the nearest, faint ones are transparent', () => {
    const rgba = Uint8ClampedArray.from([
      0xe5, 0, 0, 255, 255, 255, 255, 255, 0x20, 0x20, 0x20, 200, 9, 9, 9, 127,
    ]);
    assert.deepEqual([...rgbaToIndices(rgba, PALETTE)], [5, 0, 3, -1]);
  });

  test('compare counts wrong, right and not loaded pixels across tiles', () => {
    // 3 x 1 across the edge of tiles (0,0) and (1,0): pixels 254, 255 of tile 0, 0 of tile 1.
    const t = tpl(TILE - 2, 0, 3, 1, [5, -1, 3]);
    const tile0 = new Uint8Array(TILE * TILE);
    tile0[TILE - 2] = 5;
    assert.deepEqual(compare(t, (tx) => (tx === 0 ? tile0 : null)), { wrong: 0, right: 1, unknown: 1, list: [] });
    const tile1 = new Uint8Array(TILE * TILE);
    assert.deepEqual(compare(t, (tx) => (tx === 0 ? tile0 : tile1)),
      { wrong: 1, right: 1, unknown: 0, list: [{ x: TILE, y: 0, color: 3 }] });
    tile1[0] = 3;
    assert.equal(compare(t, (tx) => (tx === 0 ? tile0 : tile1)).wrong, 0);
  });

  test('the list stops at WRONG_LIST, the count does not', () => {
    const n = WRONG_LIST + 5;
    const t = tpl(0, 0, n, 1, Array(n).fill(2));
    const c = compare(t, () => new Uint8Array(TILE * TILE));
    assert.equal(c.wrong, n);
    assert.equal(c.list.length, WRONG_LIST);
  });

  test('next wrong goes in reading order and wraps', () => {
    const t = tpl(10, 10, 2, 2, [1, 0, 0, 1]);
    const tile = new Uint8Array(TILE * TILE); // all 0: (10,10) and (11,11) are wrong
    const at = () => tile;
    const a = nextWrong(t, at);
    assert.deepEqual(a, { x: 10, y: 10, color: 1, index: 0 });
    const b = nextWrong(t, at, a.index);
    assert.deepEqual(b, { x: 11, y: 11, color: 1, index: 3 });
    assert.deepEqual(nextWrong(t, at, b.index), a);
    tile[10 * TILE + 10] = 1;
    tile[11 * TILE + 11] = 1;
    assert.equal(nextWrong(t, at), null);
    assert.equal(nextWrong(t, () => null), null, 'nothing loaded: nothing known wrong');
    assert.ok(covers(t, 11, 11) && !covers(t, 12, 11));
  });
});
