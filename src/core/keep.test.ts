import assert from 'node:assert/strict';
import { test } from 'node:test';
import { keepMatcher, keptBy, splitKeep } from './keep.ts';

test('keptBy names the glob that keeps a path, dot files included', () => {
  const globs = ['etc/rear/rescue.conf', 'etc/rear/local.d/**'];
  assert.equal(keptBy(globs, 'etc/rear/rescue.conf'), 'etc/rear/rescue.conf');
  assert.equal(keptBy(globs, 'etc/rear/local.d/.hidden'), 'etc/rear/local.d/**');
  assert.equal(keptBy(globs, 'etc/rear/local.conf'), null);
});

test('keepMatcher is undefined without globs, so a plan keeps nothing', () => {
  assert.equal(keepMatcher([]), undefined);
  assert.equal(keepMatcher(['etc/rear/*.conf'])?.('etc/rear/rescue.conf'), true);
});

test('splitKeep reads REAR_UPDATE_KEEP as white-space separated globs', () => {
  assert.deepEqual(splitKeep(' etc/rear/rescue.conf  etc/rear/x\n'), ['etc/rear/rescue.conf', 'etc/rear/x']);
  assert.deepEqual(splitKeep(undefined), []);
});
