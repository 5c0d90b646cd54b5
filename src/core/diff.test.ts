import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diffManifests, entryChanges, isText, textDiffCandidates, TEXT_DIFF_MAX_BYTES } from './diff.ts';
import type { ManifestEntry } from './manifest.ts';

const dir = (path: string, mode = 0o755): ManifestEntry => ({ path, type: 'dir', mode, uid: 0, gid: 0 });
const file = (path: string, sha: string, size = 10, extra: Partial<ManifestEntry> = {}): ManifestEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size, sha256: sha.repeat(64).slice(0, 64), ...extra });
const link = (path: string, target: string): ManifestEntry => ({ path, type: 'symlink', mode: 0o777, uid: 0, gid: 0, target });

test('added, removed and changed paths, each change naming its fields; sorted by path', () => {
  const a = { owns: ['etc/rear'], entries: [dir('etc/rear'), file('etc/rear/z.conf', 'a'), file('etc/rear/local.conf', 'a'), file('etc/rear/gone', 'c'), link('etc/rear/l', 'x')] };
  const b = {
    owns: ['etc/rear', 'var/lib/rear/layout'],
    entries: [dir('etc/rear', 0o700), file('etc/rear/z.conf', 'a'), file('etc/rear/local.conf', 'b', 12), file('etc/rear/new', 'd'), file('etc/rear/a-new', 'e'), link('etc/rear/l', 'y')],
  };
  const d = diffManifests(a, b);
  assert.deepEqual(d.added.map((e) => e.path), ['etc/rear/a-new', 'etc/rear/new']);
  assert.deepEqual(d.removed, [{ path: 'etc/rear/gone', type: 'file', mode: '0644', owner: '0:0', size: 10, target: null }]);
  assert.deepEqual(d.changed.map((c) => [c.path, c.changes.map((x) => x.field)]), [
    ['etc/rear', ['mode']],
    ['etc/rear/l', ['target']],
    ['etc/rear/local.conf', ['size', 'sha256']],
  ]);
  assert.deepEqual(d.changed[0]?.changes[0], { field: 'mode', from: '0755', to: '0700' });
  assert.equal(d.unchanged, 1);
  assert.deepEqual(d.owns, { added: ['var/lib/rear/layout'], removed: [] });
});

test('identical manifests: nothing changed', () => {
  const m = { owns: ['etc/rear'], entries: [dir('etc/rear'), file('etc/rear/a', 'a')] };
  const d = diffManifests(m, m);
  assert.deepEqual([d.added, d.removed, d.changed], [[], [], []]);
  assert.equal(d.unchanged, 2);
});

test('a type change reports type and the fields that differ with it; owner is uid:gid', () => {
  assert.deepEqual(entryChanges(file('p', 'a', 5), link('p', 't')).map((c) => c.field), ['type', 'mode', 'size', 'sha256', 'target']);
  assert.deepEqual(entryChanges(file('p', 'a', 5), file('p', 'a', 5, { uid: 1000, gid: 100 })), [{ field: 'owner', from: '0:0', to: '1000:100' }]);
  assert.deepEqual(entryChanges(file('p', 'a', 5), file('p', 'a', 5, { mode: 0o600 })), [{ field: 'mode', from: '0644', to: '0600' }]);
});

test('text diff candidates: files changed in content, both files; too big ones are named with why', () => {
  const a = { owns: [], entries: [file('small', 'a'), file('big', 'a'), file('mode-only', 'a'), file('became-link', 'a'), file('same', 'a')] };
  const b = {
    owns: [],
    entries: [file('small', 'b'), file('big', 'b', TEXT_DIFF_MAX_BYTES + 1), file('mode-only', 'a', 10, { mode: 0o600 }), link('became-link', 'x'), file('same', 'a')],
  };
  assert.deepEqual(textDiffCandidates(a, b, diffManifests(a, b)), [
    { path: 'big', skip: 'larger than 256 KiB' },
    { path: 'small', skip: null },
  ]);
});

test('text is valid UTF-8 without NUL', () => {
  assert.equal(isText(Buffer.from('KEY=wert äöü\n')), true);
  assert.equal(isText(Buffer.from('')), true);
  assert.equal(isText(Buffer.from([0x61, 0x00, 0x62])), false);
  assert.equal(isText(Buffer.from([0xff, 0xfe, 0x41])), false);
  assert.equal(isText(Buffer.from([0xc3])), false, 'a truncated sequence is not text');
});
