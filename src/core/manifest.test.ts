import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contentDigest, decodeManifest, encodeManifest, MAX_PRIORITY, type LayerInfo, type Manifest, type ManifestEntry } from './manifest.ts';

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
  assert.throws(() => decodeManifest(bad({ format: 3 })), { code: 'BUNDLE_FORMAT_UNSUPPORTED' });
  assert.throws(() => decodeManifest(bad({ format: 2 })), { code: 'BUNDLE_MANIFEST_INVALID' }, 'format 2 without layers');
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

const layer = (name: string, cls: string | null, priority: number, extra: Partial<LayerInfo> = {}): LayerInfo => ({
  name, class: cls, priority, version: null, owns: [], modules: [], pre: [], post: [], kernels: [], ...extra,
});

const composed: Manifest = {
  format: 2, kind: 'rear-update-bundle', host: 'e229', class: 'typeC', version: 4, created: '2026-11-26T06:00:00Z', served: null,
  layers: [
    layer('nic-driver', 'typeC', 10, { version: 2, owns: ['usr/lib/modules/6.1.0-57-amd64/updates'], modules: ['e1000e'], post: ['usr/lib/rear-update/hooks/post.sh'], kernels: ['6.1.0-57-amd64'] }),
    layer('e229', null, MAX_PRIORITY, { version: 4, owns: ['etc/rear'] }),
  ],
  owns: ['etc/rear', 'usr/lib/modules/6.1.0-57-amd64/updates'],
  entries: [
    { path: 'etc/rear', type: 'dir', mode: 0o755, uid: 0, gid: 0, layer: 1 },
    { path: 'etc/rear/local.conf', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, sha256: 'a'.repeat(64), layer: 1 },
    { path: 'usr/lib/modules/6.1.0-57-amd64/updates', type: 'dir', mode: 0o755, uid: 0, gid: 0, layer: 0 },
    { path: 'usr/lib/modules/6.1.0-57-amd64/updates/e1000e.ko', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 9, sha256: 'b'.repeat(64), layer: 0 },
    { path: 'usr/lib/rear-update/hooks/post.sh', type: 'file', mode: 0o755, uid: 0, gid: 0, size: 9, sha256: 'c'.repeat(64), layer: 0 },
  ],
  shadowed: [{ path: 'etc/rear/local.conf', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 5, sha256: 'd'.repeat(64), layer: 0 }],
};

test('format 2: layers, each entry\'s layer and shadowed members round-trip', () => {
  const b = encodeManifest(composed);
  assert.deepEqual(decodeManifest(b), composed);
  assert.match(b.toString(), /^\{"format":2,.*"served":null,"layers":\[\{"name":"nic-driver"/);
  // A format 1 manifest is encoded exactly as before layers existed.
  assert.doesNotMatch(encodeManifest(m).toString(), /layer|shadowed/);
});

test('format 2: what a layer declares must hold in the bundle itself', () => {
  const bad = (patch: Partial<Manifest>): Buffer => encodeManifest({ ...composed, ...patch });
  const [l0, l1] = composed.layers as [LayerInfo, LayerInfo];
  const e = composed.entries;
  // an entry without its layer, or naming one that does not exist
  assert.throws(() => decodeManifest(bad({ entries: e.map(({ layer: _l, ...x }) => x) })), { code: 'BUNDLE_MANIFEST_INVALID' });
  assert.throws(() => decodeManifest(bad({ entries: e.map((x) => ({ ...x, layer: 2 })) })), { code: 'BUNDLE_MANIFEST_INVALID' });
  // a hook that is not an executable file of its own layer
  assert.throws(() => decodeManifest(bad({ layers: [{ ...l0, post: ['etc/rear/local.conf'] }, l1] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  assert.throws(() => decodeManifest(bad({ entries: e.map((x) => (x.path.endsWith('post.sh') ? { ...x, mode: 0o644 } : x)) })), { code: 'BUNDLE_MANIFEST_INVALID' });
  // owning what the bundle does not own; bad module and kernel names
  assert.throws(() => decodeManifest(bad({ layers: [{ ...l0, owns: ['usr/lib/firmware'] }, l1] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  assert.throws(() => decodeManifest(bad({ layers: [{ ...l0, modules: ['e1000e; reboot'] }, l1] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  assert.throws(() => decodeManifest(bad({ layers: [{ ...l0, kernels: ['../6.1'] }, l1] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  // a shadowed member must be replaced by a LATER layer, never turn a directory into a file
  assert.throws(() => decodeManifest(bad({ shadowed: [{ ...(composed.shadowed?.[0] as ManifestEntry), layer: 1 }] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  assert.throws(() => decodeManifest(bad({ shadowed: [{ path: 'etc/rear/local.conf', type: 'dir', mode: 0o755, uid: 0, gid: 0, layer: 0 }] })), { code: 'BUNDLE_MANIFEST_INVALID' });
  // format 1 cannot carry layer fields
  const f1 = JSON.parse(encodeManifest(m).toString()) as Record<string, unknown>;
  assert.throws(() => decodeManifest(Buffer.from(`${JSON.stringify({ ...f1, shadowed: [] })}\n`)), { code: 'BUNDLE_MANIFEST_INVALID' });
});

test('the content digest of a layer ignores the version the server gives it', () => {
  const file: Manifest = { ...composed, host: null, version: null, layers: [{ ...(composed.layers?.[0] as LayerInfo), version: null }] };
  assert.equal(contentDigest({ ...file, layers: [{ ...(file.layers?.[0] as LayerInfo), version: 7 }] }), contentDigest(file));
  assert.notEqual(contentDigest({ ...file, layers: [{ ...(file.layers?.[0] as LayerInfo), modules: ['igb'] }] }), contentDigest(file));
});
