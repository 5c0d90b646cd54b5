import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  activationSteps, checkHookTrust, checkKernels, commandLine, depmodReleases, kernelReleaseOf, otherKernel, preHookSteps, selectForKernel,
  type ActivationInput,
} from './activation.ts';
import type { LayerInfo, ManifestEntry } from './manifest.ts';
import { planApply, type RootNode, type RootView } from './plan.ts';

const REL = '6.1.0-57-amd64';
const OTHER = '6.1.0-58-amd64';

const layer = (over: Partial<LayerInfo> = {}): LayerInfo => ({
  name: 'nic', class: 'dl360', priority: 100, version: null, owns: [], modules: [], pre: [], post: [], kernels: [], ...over,
});
const dir = (path: string): ManifestEntry => ({ path, type: 'dir', mode: 0o755, uid: 0, gid: 0, layer: 0 });
const file = (path: string): ManifestEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, sha256: 'a'.repeat(64), layer: 0 });

const input = (over: Partial<ActivationInput> = {}): ActivationInput => ({
  layers: [layer()], changed: [], kernel: REL, running: REL, chroot: false, udevRunning: true, installedAt: (p) => `/${p}`, ...over,
});
const names = (i: ActivationInput): string[] => activationSteps(i).map((s) => (s.skip ? `skip ${s.name}` : commandLine(s.argv)));

test('kernel-bound paths: the release directory itself and everything below it, in lib/modules and usr/lib/modules', () => {
  assert.equal(kernelReleaseOf(`lib/modules/${REL}`), REL);
  assert.equal(kernelReleaseOf(`usr/lib/modules/${REL}/updates/x.ko`), REL);
  assert.equal(kernelReleaseOf('lib/modules'), null);
  assert.equal(kernelReleaseOf('lib/modules-load.d/x.conf'), null);
  assert.equal(kernelReleaseOf('usr/local/lib/modules/x/y'), null);
  assert.ok(otherKernel(`lib/modules/${OTHER}/x`, REL));
  assert.ok(!otherKernel(`lib/modules/${REL}/x`, REL));
  assert.ok(!otherKernel('etc/rear/local.conf', REL));
});

test('selectForKernel keeps the target release and everything else, counts what it leaves out per release', () => {
  const entries = [dir(`lib/modules/${OTHER}`), file(`lib/modules/${OTHER}/a.ko`), dir(`lib/modules/${REL}`), file(`lib/modules/${REL}/a.ko`), file('etc/modprobe.d/x.conf')];
  const s = selectForKernel(entries, REL);
  assert.deepEqual(s.install.map((e) => e.path), [`lib/modules/${REL}`, `lib/modules/${REL}/a.ko`, 'etc/modprobe.d/x.conf']);
  assert.deepEqual(s.skipped, [{ kernel: OTHER, entries: 2 }]);
  assert.deepEqual(s.left.map((e) => e.path), [`lib/modules/${OTHER}`, `lib/modules/${OTHER}/a.ko`]);
});

test('a kept hard link whose target is left out becomes the file it links to', () => {
  const target = { ...file(`lib/modules/${OTHER}/a.ko`), size: 7, sha256: 'b'.repeat(64), mode: 0o600 };
  const link: ManifestEntry = { path: `lib/modules/${REL}/a.ko`, type: 'hardlink', mode: 0o777, uid: 0, gid: 0, target: target.path };
  const [kept] = selectForKernel([target, link], REL).install;
  assert.deepEqual(kept, { path: link.path, type: 'file', mode: 0o600, uid: 0, gid: 0, size: 7, sha256: 'b'.repeat(64) });
});

test('KERNEL_MISMATCH names the layer, its releases and the target; layers without releases fit any kernel', () => {
  checkKernels([layer(), layer({ kernels: [OTHER, REL] })], REL, REL);
  assert.throws(() => checkKernels([layer({ name: 'gpu', kernels: [OTHER] })], REL, '6.18.1'), (e: Error & { code: string }) => {
    assert.equal(e.code, 'KERNEL_MISMATCH');
    assert.match(e.message, new RegExp(`layer gpu is made for kernel ${OTHER}, not for ${REL} \\(--kernel; running: 6\\.18\\.1\\)`));
    return true;
  });
});

test('hooks need a trusted signature or --allow-hooks; a bundle without hooks needs neither', () => {
  const hooked = [layer({ pre: ['usr/sbin/check'] })];
  checkHookTrust([layer({ modules: ['dummy'] })], false, false, 'unsigned');
  checkHookTrust(hooked, true, false, 'signed by a trusted key');
  checkHookTrust(hooked, false, true, 'unsigned');
  assert.throws(() => checkHookTrust(hooked, false, false, 'unsigned'), { code: 'HOOKS_UNTRUSTED' });
});

test('activation order: depmod, udev, modprobe in layer order, then post hooks in layer order', () => {
  const layers = [layer({ name: 'a', modules: ['m1', 'm2'], post: ['usr/sbin/a-post'] }), layer({ name: 'b', modules: ['m3'], post: ['usr/sbin/b-post'] })];
  assert.deepEqual(names(input({ layers, changed: [`usr/lib/modules/${REL}/updates/x.ko`, 'etc/udev/rules.d/70-x.rules'] })), [
    `depmod -a ${REL}`, 'udevadm control --reload', 'udevadm trigger --action=add', 'udevadm settle',
    'modprobe m1', 'modprobe m2', 'modprobe m3', '/usr/sbin/a-post', '/usr/sbin/b-post',
  ]);
});

test('depmod only for changes below the target release; udev only for rules, firmware and the running kernel\'s modules', () => {
  assert.deepEqual(names(input({ changed: ['etc/rear/local.conf'] })), []);
  assert.deepEqual(names(input({ changed: ['lib/firmware/acme.bin'] })), ['udevadm control --reload', 'udevadm trigger --action=add', 'udevadm settle']);
  // A new driver for the running kernel: udev replays the add events so that it binds.
  assert.deepEqual(names(input({ changed: [`lib/modules/${REL}/updates/x.ko`] })), [`depmod -a ${REL}`, 'udevadm control --reload', 'udevadm trigger --action=add', 'udevadm settle']);
  // For another kernel, or in a chroot, replaying events would not load it: depmod only.
  assert.deepEqual(names(input({ changed: [`lib/modules/${REL}/updates/x.ko`], running: '6.18.1' })), [`depmod -a ${REL}`]);
  assert.deepEqual(names(input({ changed: [`lib/modules/${REL}/updates/x.ko`], chroot: true })), [`depmod -a ${REL}`]);
  assert.deepEqual(names(input({ changed: ['usr/lib/udev/rules.d/x.rules'], udevRunning: false })), ['skip udev']);
});

test('modprobe never loads a module into a kernel it was not built for, nor in a root that is not this system', () => {
  const layers = [layer({ modules: ['dummy'] })];
  assert.deepEqual(names(input({ layers })), ['modprobe dummy']);
  assert.deepEqual(names(input({ layers, running: '6.18.1' })), [`modprobe --dry-run --set-version ${REL} dummy`]);
  assert.deepEqual(names(input({ layers, chroot: true })), [`modprobe --dry-run --set-version ${REL} dummy`]);
});

test('hooks get the documented environment; a hook that is another release\'s content is skipped', () => {
  const layers = [layer({ name: 'x', pre: ['usr/sbin/pre'], post: [`lib/modules/${OTHER}/post`] })];
  const [pre] = preHookSteps(layers, REL, () => '/var/lib/rear-update/txn/T/s/3');
  assert.deepEqual(pre?.argv, ['/var/lib/rear-update/txn/T/s/3']);
  assert.deepEqual(pre?.env, { REAR_UPDATE_ROOT: '/', REAR_UPDATE_LAYER: 'x', REAR_UPDATE_KERNEL: REL, REAR_UPDATE_PHASE: 'pre' });
  const [post] = activationSteps(input({ layers, installedAt: () => null }));
  assert.equal(post?.kind, 'post');
  assert.match(post?.skip ?? '', /another kernel release/);
  assert.equal(post?.env.REAR_UPDATE_PHASE, 'post');
});

test('depmodReleases: every release with a change, once, sorted', () => {
  assert.deepEqual(depmodReleases([`lib/modules/${OTHER}/a`, `usr/lib/modules/${REL}`, `lib/modules/${OTHER}/b`, 'etc/x']), [REL, OTHER]);
});

test('an owned modules directory keeps what the root holds of other releases (the keep apply gives the planner)', () => {
  const rdir: RootNode = { type: 'dir', mode: 0o755, uid: 0, gid: 0 };
  const rfile: RootNode = { type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, sha256: 'c'.repeat(64) };
  const entries = [dir('lib/modules'), dir(`lib/modules/${REL}`), file(`lib/modules/${REL}/new.ko`)];
  const view: RootView = {
    nodes: new Map<string, RootNode | null>([['lib', rdir], ['lib/modules', rdir], [`lib/modules/${REL}`, rdir], [`lib/modules/${REL}/new.ko`, null]]),
    owned: new Map([['lib/modules', [
      { path: `lib/modules/${OTHER}`, node: rdir }, { path: `lib/modules/${OTHER}/old.ko`, node: rfile },
      { path: `lib/modules/${REL}`, node: rdir }, { path: `lib/modules/${REL}/stale.ko`, node: rfile },
    ]]]),
  };
  const p = planApply(entries, ['lib/modules'], view, { owners: false, keep: (path) => otherKernel(path, REL) });
  assert.deepEqual(p.items.filter((i) => i.action === 'remove').map((i) => i.path), [`lib/modules/${REL}/stale.ko`]);
});
