// Unit tests of the page's links (link.js), the tap-to-zoom threshold (input.js) and the
// stored alert choices (notify.js): pure logic, no browser.
// Run: node --test tests/browser/link-unit.test.mjs

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatArea, joinHash, openingView, parseLink, parsePixel, shareHash, viewPart,
} from '../../crates/web/static/link.js';
import { TAP_SELECT_ZOOM, tapZoomTarget } from '../../crates/web/static/input.js';
import { loadChoices } from '../../crates/web/static/notify.js';

const SCREEN = { width: 1000, height: 500, viewW: 400, viewH: 800, fitZoom: 0.39, pixelZoom: 16 };

describe('links', () => {
  test('a link with an area fits it to this screen, whatever zoom the sender had', () => {
    const l = parseLink('#x=100&y=50.5&w=80&h=40', 1000, 500);
    assert.deepEqual(openingView(l, SCREEN), { x: 100, y: 50.5, zoom: 5 }); // 400 px / 80
    // A tall area on a wide screen: its height decides.
    assert.equal(openingView(parseLink('#x=1&y=1&w=10&h=400', 1000, 500), SCREEN).zoom, 2);
  });

  test('a chosen zoom is kept; a point alone gets the whole board\'s zoom', () => {
    assert.deepEqual(openingView(parseLink('#x=10&y=20&z=16', 1000, 500), SCREEN), { x: 10, y: 20, zoom: 16 });
    assert.deepEqual(openingView(parseLink('#x=10&y=20', 1000, 500), SCREEN), { x: 10, y: 20, zoom: 0.39 });
    assert.deepEqual(openingView(null, SCREEN), { x: 500, y: 250, zoom: 0.39 });
    // Half an area is no area.
    assert.equal(parseLink('#x=1&y=2&w=10', 1000, 500).w, undefined);
    assert.equal(parseLink('#x=1&y=2&w=-3&h=4', 1000, 500).w, undefined);
  });

  test('a pixel: selected; alone it is zoomed to, with a view the view wins', () => {
    assert.deepEqual(parsePixel('#p=12,34', 1000, 500), { x: 12, y: 34 });
    assert.equal(parsePixel('#p=1000,3', 1000, 500), null);
    assert.equal(parsePixel('#p=1.5,3', 1000, 500), null);
    assert.equal(parsePixel('#p=-1,3', 1000, 500), null);
    const only = parseLink('#p=12,34', 1000, 500);
    assert.deepEqual(openingView(only, SCREEN), { x: 12.5, y: 34.5, zoom: 16 });
    const both = parseLink('#x=100&y=60&w=40&h=20&p=12,34', 1000, 500);
    assert.deepEqual(both.pixel, { x: 12, y: 34 });
    assert.deepEqual(openingView(both, SCREEN), { x: 100, y: 60, zoom: 10 });
    assert.equal(parseLink('#t=abcdefghij:50', 1000, 500), null);
  });

  test('the page writes the area it shows, and keeps the others\' parts', () => {
    const view = { x: 10.04, y: 20.55, zoom: 8, width: 1280, height: 800 };
    assert.equal(formatArea(view), 'x=10&y=20.6&w=160&h=100');
    assert.equal(formatArea({ ...view, zoom: 64, width: 390 }), 'x=10&y=20.6&w=6.09&h=12.5');
    // Written and read back, it opens the same view on the same screen.
    const back = openingView(parseLink(`#${formatArea(view)}`, 1000, 500), { ...SCREEN, viewW: 1280, viewH: 800 });
    assert.equal(back.zoom, 8);
    assert.equal(viewPart('#x=1&y=2&z=3&t=abcdefghij:40&seq=9&p=4,5'), 'x=1&y=2&z=3&p=4,5');
    assert.equal(viewPart('#t=abcdefghij:40'), '');
    assert.equal(joinHash('', '&t=abcdefghij:40&seq=3'), '#t=abcdefghij:40&seq=3');
    assert.equal(joinHash('x=1', '&seq=3'), '#x=1&seq=3');
    assert.equal(joinHash('', ''), '');
    assert.equal(shareHash(view, { x: 3, y: 4 }, '&seq=7'), '#x=10&y=20.6&w=160&h=100&p=3,4&seq=7');
    assert.equal(shareHash(view, null), '#x=10&y=20.6&w=160&h=100');
  });
});

describe('tap to zoom', () => {
  test('below the threshold a tap zooms in, at or above it it selects', () => {
    assert.equal(tapZoomTarget(0.33, 'touch', 64), 24);
    assert.equal(tapZoomTarget(TAP_SELECT_ZOOM.touch - 0.01, 'touch', 64), 24);
    assert.equal(tapZoomTarget(TAP_SELECT_ZOOM.touch, 'touch', 64), null);
    assert.equal(tapZoomTarget(5, 'mouse', 64), null);
    assert.equal(tapZoomTarget(0.5, 'mouse', 64), 12);
    assert.equal(tapZoomTarget(0.5, 'touch', 20), 20, 'never past the top zoom');
    assert.equal(tapZoomTarget(2, 'something new', 64), 24, 'unknown pointers count as fingers');
  });
});

describe('alert choices', () => {
  const store = (v) => ({ getItem: () => v });
  test('off unless stored as on; junk is off', () => {
    assert.deepEqual(loadChoices(store(null)), { notify: false, sound: false });
    assert.deepEqual(loadChoices(store('{"notify":true,"sound":false}')), { notify: true, sound: false });
    assert.deepEqual(loadChoices(store('{"notify":"yes","sound":1}')), { notify: false, sound: false });
    assert.deepEqual(loadChoices(store('not json')), { notify: false, sound: false });
    assert.deepEqual(loadChoices({ getItem: () => { throw new Error('blocked'); } }), { notify: false, sound: false });
  });
});
