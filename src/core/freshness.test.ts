import assert from 'node:assert/strict';
import { test } from 'node:test';
import { freshnessCheck, isNonce } from './freshness.ts';

const sent = 'Zm9vYmFyYmF6cXV4cXV1eA';

test('a bundle carrying the nonce that was sent passes; nothing is enforced when none was sent', () => {
  freshnessCheck({ nonce: sent }, sent);
  freshnessCheck({}, undefined);
  freshnessCheck({ nonce: sent }, undefined);
  freshnessCheck(null, undefined);
});

test('replay: no nonce, another nonce, or a plain archive is BUNDLE_STALE naming what it carried', () => {
  assert.throws(() => freshnessCheck({}, sent), (e: { code: string; message: string; context: Record<string, unknown> }) => {
    assert.equal(e.code, 'BUNDLE_STALE');
    assert.match(e.message, /carries no nonce/);
    assert.match(e.message, /replayed or cached/);
    assert.deepEqual(e.context, { sent, got: null });
    return true;
  });
  assert.throws(() => freshnessCheck({ nonce: 'b'.repeat(22) }, sent), { code: 'BUNDLE_STALE', message: /another request's nonce/ });
  assert.throws(() => freshnessCheck(null, sent), { code: 'BUNDLE_STALE', message: /plain archive/ });
});

test('a nonce is 16 to 64 base64url characters', () => {
  assert.ok(isNonce(sent));
  assert.ok(isNonce('a'.repeat(16)) && isNonce('-_'.repeat(32)));
  for (const v of ['a'.repeat(15), 'a'.repeat(65), `${'a'.repeat(20)}=`, `${'a'.repeat(20)}, ${'b'.repeat(20)}`, '', null, undefined, 1, ['a'.repeat(22)]]) {
    assert.equal(isNonce(v), false, String(v));
  }
});
