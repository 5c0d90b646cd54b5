import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from './duration.ts';

test('parseDuration: seconds, minutes, hours, days, weeks, combined, plain seconds', () => {
  assert.equal(parseDuration('90s'), 90);
  assert.equal(parseDuration('15m'), 900);
  assert.equal(parseDuration('12h'), 43_200);
  assert.equal(parseDuration('30d'), 2_592_000);
  assert.equal(parseDuration('1w'), 604_800);
  assert.equal(parseDuration('2h30m'), 9000);
  assert.equal(parseDuration('1w2d'), 777_600);
  assert.equal(parseDuration(' 45 '), 45);
  assert.equal(parseDuration('0'), 0);
});

test('parseDuration: anything else is null', () => {
  for (const bad of ['', 'h', '1y', '30m2h', '1.5h', '-5s', '12 h', '2026-01-01T00:00:00Z', '9'.repeat(13), '1d1d']) {
    assert.equal(parseDuration(bad), null, bad);
  }
});
