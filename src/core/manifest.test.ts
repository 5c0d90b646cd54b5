import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contentDigest, decodeManifest, encodeManifest, type Manifest } from './manifest.ts';

const m: Manifest = {
  format: 1, kind: 'rear-update-bundle', host: 'e229', class: 'typeA', version: 3, created: '2026-11-26T06:00:00Z', served: null,
  owns: ['etc/rear'],
  entries: [
    { path: 'etc/rear', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
    { path: 'etc/rear/local.conf', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, sha256: 'a'.repeat(64) },
    { path: 'etc/rear/l', type: 'symlink', mode: 0o777, uid: 0, gid: 0, target: '/usr/share/zoneinfo/UTC' },
  ],
};

test('the canonical encoding round-trips', () => {
  const b = encodeManifest(m);
  assert.deepEqual(decodeManifest(b), m);
  assert.ok(b.toString().endsWith('}\n'));
});

test('any other encoding of the same data is refused (what is signed is what is used)', () => {
  const pretty = Buffer.from(JSON.stringify(JSON.parse(encodeManifest(m).toString()), null, 2));
  assert.throws(() => decodeManifest(pretty), { code: 'BUNDLE_MANIFEST_INVALID' });
});

test('structural problems are BUNDLE_MANIFEST_INVALID; a newer format is BUNDLE_FORMAT_UNSUPPORTED', () => {
  const bad = (patch: Record<string, unknown>): Buffer => Buffer.from(`${JSON.stringify({ ...JSON.parse(encodeManifest(m).toString()), ...patch })}\n`);
  assert.throws(() => decodeManifest(bad({ format: 2 })), { code: 'BUNDLE_FORMAT_UNSUPPORTED' });
  assert.throws(() => decodeManifest(bad({ owns: ['var/lib/rear'] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  assert.throws(() => decodeManifest(bad({ entries: [{ path: '../x', type: 'dir', mode: '0755', uid: 0, gid: 0 }] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  assert.throws(() => decodeManifest(bad({ entries: [{ path: 'var/lib/rear-update/x', type: 'dir', mode: '0755', uid: 0, gid: 0 }], owns: [] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  assert.throws(() => decodeManifest(Buffer.from('not json')), { code: 'BUNDLE_MANIFEST_INVALID' });
});

test('a served manifest may carry the request\'s nonce, after served; without one the encoding is unchanged', () => {
  const nonce = 'AAECAwQFBgcICQoLDA0ODw';
  const withNonce: Manifest = { ...m, served: '2026-11-27T08:00:00Z', nonce };
  const b = encodeManifest(withNonce);
  assert.match(b.toString(), /"served":"2026-11-27T08:00:00Z","nonce":"AAECAwQFBgcICQoLDA0ODw","owns":/);
  assert.deepEqual(decodeManifest(b), withNonce);
  // Absent, not null: a pack bundle (and a server answer without a nonce) is byte-identical to before.
  assert.doesNotMatch(encodeManifest(m).toString(), /nonce/);
  assert.equal('nonce' in decodeManifest(encodeManifest(m)), false);
  const bad = (nonceValue: unknown): Buffer => {
    const o = JSON.parse(encodeManifest(m).toString()) as Record<string, unknown>;
    const { owns, entries, ...head } = o;
    return Buffer.from(`${JSON.stringify({ ...head, nonce: nonceValue, owns, entries })}\n`);
  };
  for (const v of [null, '', 'short', 'x'.repeat(65), 'has space in it!!', 1234567890123456, ['AAECAwQFBgcICQoLDA0ODw']]) {
    assert.throws(() => decodeManifest(bad(v)), { code: 'BUNDLE_MANIFEST_INVALID' }, String(v));
  }
  assert.deepEqual(decodeManifest(bad(nonce)), { ...m, nonce });
  // Out of place (after owns) is not the canonical encoding.
  const misplaced = Buffer.from(`${JSON.stringify({ ...JSON.parse(encodeManifest(m).toString()), nonce })}\n`);
  assert.throws(() => decodeManifest(misplaced), { code: 'BUNDLE_MANIFEST_INVALID' });
});

test('a nonce does not change what a publish compares: contentDigest ignores it', () => {
  assert.equal(contentDigest({ ...m, nonce: 'AAECAwQFBgcICQoLDA0ODw' }), contentDigest(m));
});
