import assert from 'node:assert/strict';
import { test } from 'node:test';
import { aliasMergedUsr, mergedUsrAliases, planApply, type RootNode, type RootView, type StagedEntry } from './plan.ts';

const dir = (path: string): StagedEntry => ({ path, type: 'dir', mode: 0o755, uid: 0, gid: 0 });
const file = (path: string, sha = 'a'.repeat(64), staged = `s/${path}`): StagedEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, sha256: sha, staged });
const rdir: RootNode = { type: 'dir', mode: 0o755, uid: 0, gid: 0 };
const rfile = (sha: string): RootNode => ({ type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, sha256: sha });

function view(nodes: Record<string, RootNode | null>, owned: Record<string, { path: string; node: RootNode }[]> = {}): RootView {
  return { nodes: new Map(Object.entries(nodes)), owned: new Map(Object.entries(owned)) };
}

test('creates missing parents, replaces changed files, keeps identical ones', () => {
  const entries = [dir('etc/rear'), file('etc/rear/a'), file('etc/rear/b', 'b'.repeat(64))];
  const v = view({ etc: null, 'etc/rear': null, 'etc/rear/a': null, 'etc/rear/b': null });
  const p = planApply(entries, [], v, { owners: true });
  assert.deepEqual(p.ops.map((o) => `${o.kind} ${o.path}`), ['mkdir etc', 'mkdir etc/rear', 'put etc/rear/a', 'put etc/rear/b']);

  const v2 = view({ etc: rdir, 'etc/rear': rdir, 'etc/rear/a': rfile('a'.repeat(64)), 'etc/rear/b': rfile('c'.repeat(64)) });
  const p2 = planApply(entries, [], v2, { owners: true });
  assert.deepEqual(p2.ops.map((o) => `${o.kind} ${o.path}`), ['put etc/rear/b']);
  assert.equal(p2.totals.unchanged, 2);
  assert.equal(p2.totals.replace, 1);
  const put = p2.ops[0];
  assert.ok(put?.kind === 'put' && put.backup !== null, 'a replaced file is backed up');
});

test('owned paths lose stale files; an unowned bundle (overlay) never removes', () => {
  const entries = [dir('etc/rear'), file('etc/rear/a')];
  const nodes = { etc: rdir, 'etc/rear': rdir, 'etc/rear/a': rfile('a'.repeat(64)) };
  const owned = { 'etc/rear': [{ path: 'etc/rear/a', node: rfile('a'.repeat(64)) }, { path: 'etc/rear/old', node: rdir }, { path: 'etc/rear/old/x', node: rfile('x') }] };
  const p = planApply(entries, ['etc/rear'], view(nodes, owned), { owners: true });
  assert.deepEqual(p.ops.map((o) => `${o.kind} ${o.path}`), ['remove etc/rear/old']);
  assert.deepEqual(p.items.filter((i) => i.action === 'remove').map((i) => i.path), ['etc/rear/old', 'etc/rear/old/x']);
  const overlay = planApply(entries, [], view(nodes, owned), { owners: true });
  assert.equal(overlay.ops.length, 0);
});

test('a symlink in the root where the bundle needs a directory is refused (rule 2)', () => {
  const entries = [file('etc/rear/a')];
  assert.throws(() => planApply(entries, [], view({ etc: rdir, 'etc/rear': { type: 'symlink', uid: 0, gid: 0, target: '/tmp' }, 'etc/rear/a': null }), { owners: true }), { code: 'ENTRY_THROUGH_SYMLINK' });
});

test('a bundle directory entry replaces a symlink in the root instead of writing through it', () => {
  const entries = [dir('etc/rear'), file('etc/rear/a')];
  const p = planApply(entries, [], view({ etc: rdir, 'etc/rear': { type: 'symlink', uid: 0, gid: 0, target: '/tmp' }, 'etc/rear/a': null }), { owners: true });
  assert.deepEqual(p.ops.map((o) => `${o.kind} ${o.path}`), ['remove etc/rear', 'mkdir etc/rear', 'put etc/rear/a']);
});

test('entries below a symlink or file of the same bundle are refused', () => {
  const link: StagedEntry = { path: 'x', type: 'symlink', mode: 0o777, uid: 0, gid: 0, target: '/etc', staged: 's/1' };
  assert.throws(() => planApply([link, file('x/passwd')], [], view({ x: null, 'x/passwd': null }), { owners: true }), { code: 'ENTRY_THROUGH_SYMLINK' });
  assert.throws(() => planApply([file('x'), file('x/y')], [], view({ x: null, 'x/y': null }), { owners: true }), { code: 'ENTRY_PARENT_NOT_DIRECTORY' });
});

test('kept paths below an owned directory survive, and so do the directories leading to them', () => {
  const entries = [dir('etc/rear'), file('etc/rear/local.conf')];
  const nodes = { etc: rdir, 'etc/rear': rdir, 'etc/rear/local.conf': null };
  const owned = { 'etc/rear': [
    { path: 'etc/rear/mappings', node: rdir },
    { path: 'etc/rear/mappings/ip', node: rfile('i') },
    { path: 'etc/rear/mappings/old', node: rfile('o') },
    { path: 'etc/rear/rescue.conf', node: rfile('r') },
    { path: 'etc/rear/site.conf', node: rfile('s') },
  ] };
  const keep = (p: string): boolean => p === 'etc/rear/rescue.conf' || p === 'etc/rear/mappings/ip';
  const p = planApply(entries, ['etc/rear'], view(nodes, owned), { owners: true, keep });
  assert.deepEqual(p.ops.map((o) => `${o.kind} ${o.path}`), ['remove etc/rear/mappings/old', 'remove etc/rear/site.conf', 'put etc/rear/local.conf']);
  const without = planApply(entries, ['etc/rear'], view(nodes, owned), { owners: true });
  assert.ok(without.ops.some((o) => o.kind === 'remove' && o.path === 'etc/rear/rescue.conf'));
});

test('merged /usr: only the exact links lib -> usr/lib (or /usr/lib), bin, sbin, lib64 are aliases', () => {
  const links = new Map<string, string | null>([['lib', 'usr/lib'], ['bin', '/usr/bin'], ['sbin', 'usr/sbin/'], ['lib64', null]]);
  assert.deepEqual(mergedUsrAliases(links), ['bin', 'lib']);
  for (const t of ['./usr/lib', 'usr/lib/../../etc', '/opt/lib', 'usr/lib64', '../usr/lib']) {
    assert.deepEqual(mergedUsrAliases(new Map([['lib', t]])), [], t);
  }
});

test('merged /usr: entries below lib/ (and a directory entry lib) move below usr/lib/, owned paths and hard link targets with them', () => {
  const link: StagedEntry = { path: 'lib/firmware/b.bin', type: 'hardlink', mode: 0o777, uid: 0, gid: 0, target: 'lib/firmware/a.bin', staged: 's/9' };
  const entries = [dir('lib'), dir('lib/firmware'), file('lib/firmware/a.bin'), link, file('etc/x')];
  const a = aliasMergedUsr(entries, ['lib/firmware'], ['lib']);
  assert.deepEqual(a.entries.map((e) => e.path), ['etc/x', 'usr/lib', 'usr/lib/firmware', 'usr/lib/firmware/a.bin', 'usr/lib/firmware/b.bin']);
  assert.equal(a.entries.find((e) => e.type === 'hardlink')?.target, 'usr/lib/firmware/a.bin');
  assert.deepEqual(a.owns, ['usr/lib/firmware']);
  assert.deepEqual(a.moved, [{ from: 'lib', to: 'usr/lib', entries: 4 }]);
  assert.equal(a.rootPath('lib/firmware/a.bin'), 'usr/lib/firmware/a.bin');
  assert.equal(a.rootPath('etc/x'), 'etc/x');
  // The planner then sees only real directories: nothing is written through the link.
  const p = planApply(a.entries, a.owns, view({ etc: rdir, 'etc/x': null, usr: rdir, 'usr/lib': rdir, 'usr/lib/firmware': null, 'usr/lib/firmware/a.bin': null, 'usr/lib/firmware/b.bin': null }), { owners: true });
  assert.deepEqual(p.ops.map((o) => `${o.kind} ${o.path}`), ['put etc/x', 'mkdir usr/lib/firmware', 'put usr/lib/firmware/a.bin', 'put usr/lib/firmware/b.bin']);
});

test('merged /usr: a link entry lib is not moved; the same path twice (lib/x and usr/lib/x) is refused unless it is the same directory', () => {
  const l: StagedEntry = { path: 'lib', type: 'symlink', mode: 0o777, uid: 0, gid: 0, target: 'usr/lib', staged: 's/1' };
  assert.deepEqual(aliasMergedUsr([l], [], ['lib']).entries.map((e) => e.path), ['lib']);
  assert.deepEqual(aliasMergedUsr([dir('lib/udev'), dir('usr/lib/udev')], [], ['lib']).entries.map((e) => e.path), ['usr/lib/udev']);
  assert.throws(() => aliasMergedUsr([file('lib/udev/x'), file('usr/lib/udev/x')], [], ['lib']), { code: 'BUNDLE_MEMBER_DUPLICATE' });
  assert.throws(() => aliasMergedUsr([dir('lib/udev'), { ...dir('usr/lib/udev'), mode: 0o700 }], [], ['lib']), { code: 'BUNDLE_MEMBER_DUPLICATE' });
});

test('without an alias, a lib link in the root still refuses what the bundle carries below it (rule 2)', () => {
  const a = aliasMergedUsr([file('lib/firmware/a.bin')], [], mergedUsrAliases(new Map([['lib', '/opt/lib']])));
  assert.throws(() => planApply(a.entries, [], view({ lib: { type: 'symlink', uid: 0, gid: 0, target: '/opt/lib' }, 'lib/firmware': null, 'lib/firmware/a.bin': null }), { owners: true }), { code: 'ENTRY_THROUGH_SYMLINK' });
});
