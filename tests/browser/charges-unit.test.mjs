// Unit tests of the charges model's page logic (crates/web/static/charges.js): no
// browser, no server. Run: node --test tests/browser/charges-unit.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chargesText, formatShort, poolAt } from '../../crates/web/static/charges.js';

test('the text says the pool and when the next charge comes', () => {
  assert.equal(chargesText(3, 30, 21_000), '3/30 charges, next in 0:21');
  assert.equal(chargesText(30, 30, null), '30/30 charges');
  assert.equal(chargesText(0, 1, 61_500), '0/1 charge, next in 1:02');
  assert.equal(formatShort(0), '0:00');
  assert.equal(formatShort(1), '0:01');
});

test('charges come back one per period and stop at the max', () => {
  const every = 30_000;
  const empty = { charges: 0, nextAt: 100_000 };
  assert.deepEqual(poolAt(empty, 3, every, 99_999), empty);
  assert.deepEqual(poolAt(empty, 3, every, 100_000), { charges: 1, nextAt: 130_000 });
  assert.deepEqual(poolAt(empty, 3, every, 159_999), { charges: 2, nextAt: 160_000 });
  assert.deepEqual(poolAt(empty, 3, every, 160_000), { charges: 3, nextAt: null });
  assert.deepEqual(poolAt(empty, 3, every, 10_000_000), { charges: 3, nextAt: null });
  const full = { charges: 3, nextAt: null };
  assert.deepEqual(poolAt(full, 3, every, 5), full);
});
