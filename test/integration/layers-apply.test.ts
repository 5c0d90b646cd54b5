// Hardware-class layers applied for real: pack --layer, then apply into small image roots made
// here (kmod and dash with their libraries, merged /usr, a few of Debian's real kernel modules
// for 6.1.0-57-amd64 taken from the cached linux-image .deb), where depmod, modprobe and the
// hooks run through chroot as they would in the image under test. Never this machine's own
// kernel release: every apply names its --kernel, and modprobe only resolves (--dry-run).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { compose } from '../../src/core/compose.ts';
import { decodeManifest, encodeManifest, type Manifest } from '../../src/core/manifest.ts';
import { MANIFEST_MEMBER, SIGNATURE_MEMBER } from '../../src/core/paths.ts';
import { parsePrivateKey, signManifest } from '../../src/core/signature.ts';
import { cleanup, cli, errorCode, makeTree, rawTarGz, resealed, snapshot, tempDir, type NodeSnap, type RawMember } from '../helpers.ts';

const REL = '6.1.0-57-amd64';
const OTHER = '6.1.0-58-amd64';
const DEBS = '/var/cache/rear-update-test/debs';
const NET = `lib/modules/${REL}/kernel/drivers/net`;

/** The cached linux-image-6.1.0-57-amd64 package (scripts/ensure-system-deps.sh downloads it). */
function kernelDeb(): string {
  const name = existsSync(DEBS) ? readdirSync(DEBS).find((n) => n.startsWith(`linux-image-${REL}_`) && n.endsWith('.deb')) : undefined;
  assert.ok(name, `no linux-image-${REL}_*.deb in ${DEBS}: run scripts/ensure-system-deps.sh`);
  return join(DEBS, name);
}

/** macvtap depends on macvlan and tap (modinfo -F depends); dummy depends on nothing. */
function extractModules(dir: string): string {
  const patterns = ['dummy', 'macvlan', 'macvtap', 'tap'].map((m) => `./${NET}/${m}.ko*`);
  patterns.push(`./lib/modules/${REL}/modules.order`, `./lib/modules/${REL}/modules.builtin*`);
  mkdirSync(dir, { recursive: true });
  const script = 'deb=$1 dir=$2; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@"';
  execFileSync('sh', ['-c', script, 'sh', kernelDeb(), dir, ...patterns], { stdio: 'pipe' });
  return join(dir, 'lib/modules', REL);
}

const ko = (mods: string, name: string): string => {
  const f = readdirSync(join(mods, 'kernel/drivers/net')).find((n) => n.startsWith(`${name}.ko`));
  assert.ok(f, `${name}.ko missing from the extracted package`);
  return join(mods, 'kernel/drivers/net', f);
};

/** Copies a program and the shared libraries ldd names into a merged-/usr root. */
function copyProgram(root: string, program: string, as: string): void {
  mkdirSync(join(root, dirname(as)), { recursive: true });
  copyFileSync(program, join(root, as));
  chmodSync(join(root, as), 0o755);
  for (const m of execFileSync('ldd', [program], { encoding: 'utf8' }).matchAll(/(\/\S+) \(0x/g)) {
    const lib = m[1] as string;
    // /lib/x86_64-linux-gnu/libc.so.6 -> usr/lib/..., /lib64/ld-linux-x86-64.so.2 -> usr/lib64/...
    const dest = join(root, /^\/lib(64)?\//.test(lib) ? `usr${lib}` : lib);
    if (existsSync(dest)) continue;
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(lib, dest);
  }
}

describe('layers: pack --layer, apply with activation, status, rollback', () => {
  let dir: string;
  let key: string;
  let pub: string;
  let mods: string;
  let n = 0;

  /**
   * A rescue image's root: merged /usr, kmod (depmod, modprobe), dash as /bin/sh, sleep, and
   * macvlan and tap of 6.1.0-57-amd64 with the kernel's modules.order and modules.builtin*,
   * indexed by the image's own depmod.
   */
  const imageRoot = (): string => {
    const root = join(dir, `root-${++n}`);
    makeTree(root, { var: { lib: {} }, tmp: {}, etc: { hostname: 'rescue\n' } });
    for (const d of ['bin', 'sbin', 'lib', 'lib64']) {
      mkdirSync(join(root, 'usr', d), { recursive: true });
      symlinkSync(`usr/${d}`, join(root, d));
    }
    copyProgram(root, '/usr/bin/kmod', 'usr/bin/kmod');
    for (const t of ['depmod', 'modprobe']) symlinkSync('../bin/kmod', join(root, 'usr/sbin', t));
    copyProgram(root, '/bin/dash', 'usr/bin/dash');
    symlinkSync('dash', join(root, 'usr/bin/sh'));
    copyProgram(root, '/bin/sleep', 'usr/bin/sleep');
    const m = join(root, 'usr/lib/modules', REL);
    mkdirSync(join(m, 'kernel/drivers/net'), { recursive: true });
    for (const f of readdirSync(mods).filter((x) => x.startsWith('modules.'))) copyFileSync(join(mods, f), join(m, f));
    for (const x of ['macvlan', 'tap']) copyFileSync(ko(mods, x), join(m, 'kernel/drivers/net', ko(mods, x).split('/').pop() as string));
    execFileSync('chroot', [root, 'depmod', '-a', REL]);
    return root;
  };

  /** A layer's tree: dummy and macvtap in lib/modules/REL/updates, and hook scripts. */
  const layerTree = (name: string, hooks: Record<string, string> = {}, releases: string[] = [REL]): string => {
    const src = join(dir, `src-${name}`);
    for (const r of releases) {
      mkdirSync(join(src, 'lib/modules', r, 'updates'), { recursive: true });
      for (const x of ['dummy', 'macvtap']) copyFileSync(ko(mods, x), join(src, 'lib/modules', r, 'updates', ko(mods, x).split('/').pop() as string));
    }
    for (const [path, body] of Object.entries(hooks)) {
      mkdirSync(join(src, dirname(path)), { recursive: true });
      writeFileSync(join(src, path), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    }
    return src;
  };

  const pack = (src: string, out: string, args: string[]): string => {
    const r = cli(['pack', '--root', src, '-o', out, ...args]);
    assert.equal(r.status, 0, r.stderr);
    return out;
  };

  /** The tree without rear-update's own state directory (its apply log outlives a refusal and a rollback). */
  const withoutState = (s: Record<string, NodeSnap>): Record<string, NodeSnap> =>
    Object.fromEntries(Object.entries(s).filter(([p]) => !p.startsWith('var/lib/rear-update')));

  /** The manifest a packed bundle carries. */
  const manifestOf = (bundle: string): Manifest => {
    const x = tempDir();
    try {
      execFileSync('tar', ['-xzf', bundle, '-C', x, MANIFEST_MEMBER]);
      return decodeManifest(readFileSync(join(x, MANIFEST_MEMBER)));
    } finally {
      cleanup(x);
    }
  };

  /**
   * What the server serves a host of a class: its layers, then the host's own configuration,
   * one layer's members after the other (each with its layer's time), composed and signed by
   * core/compose.ts's rules. Built here from the packed files, as the server does from stored ones.
   */
  const composedBundle = (layers: { bundle: string; src: string; version: number }[], host: { bundle: string; src: string; version: number }, out: string): string => {
    const stored = layers.map((l) => {
      const m = manifestOf(l.bundle);
      const own = m.layers?.[0];
      assert.ok(own);
      return { class: own.class as string, name: own.name, priority: own.priority, version: l.version, manifest: m };
    });
    const hm = manifestOf(host.bundle);
    const composed = compose(stored, { id: hm.host as string, class: hm.class, version: host.version, manifest: hm });
    const bytes = encodeManifest(composed);
    const members: RawMember[] = [
      { path: MANIFEST_MEMBER, body: bytes, mtime: new Date(composed.created) },
      { path: SIGNATURE_MEMBER, body: signManifest(bytes, parsePrivateKey(readFileSync(key, 'utf8'), key)), mtime: new Date(composed.created) },
    ];
    [...layers, host].forEach((l, i) => {
      const m = i < layers.length ? (stored[i] as { manifest: Manifest }).manifest : hm;
      for (const e of m.entries) {
        const common = { mode: e.mode, uid: e.uid, gid: e.gid, mtime: new Date(m.created) };
        if (e.type === 'dir') members.push({ ...common, path: `${e.path}/`, type: 'Directory' });
        else if (e.type === 'file') members.push({ ...common, path: e.path, type: 'File', body: readFileSync(join(l.src, e.path)) });
        else members.push({ ...common, path: e.path, type: 'SymbolicLink', linkpath: e.target as string });
      }
    });
    writeFileSync(out, resealed(gunzipSync(rawTarGz(members)), key));
    return out;
  };

  before(() => {
    dir = tempDir('ru-layers-');
    assert.equal(cli(['keygen', '--out', join(dir, 'keys')]).status, 0);
    key = join(dir, 'keys', 'rear-update.key');
    pub = join(dir, 'keys', 'rear-update.pub');
    mods = extractModules(join(dir, 'deb'));
  });
  after(() => cleanup(dir));

  test('pack --layer writes a deterministic format-2 layer file; inspect shows its layer, provenance and activation', () => {
    const src = layerTree('rt', { 'usr/local/sbin/nic-post': 'echo post' });
    const args = ['--path', `lib/modules/${REL}/updates`, '--path', 'usr/local/sbin/nic-post', '--layer', 'nic', '--class', 'dl360g10', '--priority', '20',
      '--module', 'dummy', '--module', 'macvtap', '--hook', 'post=/usr/local/sbin/nic-post', '--kernel', REL, '--key', key];
    const b = pack(src, join(dir, 'rt.tgz'), args);
    assert.ok(readFileSync(b).equals(readFileSync(pack(src, join(dir, 'rt2.tgz'), args))), 'packing a layer twice differs');
    const j = JSON.parse(cli(['inspect', b, '--pubkey', pub, '--kernel', REL, '--json']).stdout) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    assert.equal(j.format, 'rear-update bundle v2');
    assert.equal(j.host, null);
    assert.equal(j.class, 'dl360g10');
    assert.deepEqual(j.layers, [{
      name: 'nic', class: 'dl360g10', priority: 20, version: null, owns: [`lib/modules/${REL}/updates`],
      modules: ['dummy', 'macvtap'], pre: [], post: ['usr/local/sbin/nic-post'], kernels: [REL],
    }]);
    assert.ok((j.list as { layer: number }[]).every((e) => e.layer === 0));
    assert.deepEqual((j.activation.steps as { command: string }[]).map((s) => s.command), [
      `depmod -a ${REL}`, `modprobe --dry-run --set-version ${REL} dummy`, `modprobe --dry-run --set-version ${REL} macvtap`, '/usr/local/sbin/nic-post',
    ]);
    const human = cli(['inspect', b, '--kernel', REL]).stdout;
    assert.match(human, /layer nic: class dl360g10, priority 20, version -, kernels 6\.1\.0-57-amd64, modules dummy macvtap, pre hooks -, post hooks usr\/local\/sbin\/nic-post/);
    assert.match(human, /^-\s+0644\s+0:0\s+\d+\s+nic\s+lib\/modules\/6\.1\.0-57-amd64\/updates\/dummy\.ko/m);
    assert.match(human, /depmod +depmod 6\.1\.0-57-amd64: depmod -a 6\.1\.0-57-amd64/);
    assert.match(cli(['pack', '--help']).stdout, /--layer nic-tg3 --class dl360g10 --kernel 6\.1\.0-57-amd64 --module tg3/);
  });

  test('pack refuses layer flags it cannot honour, with a clear USAGE error and no file', () => {
    const src = layerTree('bad', { 'usr/local/sbin/ok': 'true' });
    writeFileSync(join(src, 'usr/local/sbin/noexec'), '#!/bin/sh\n', { mode: 0o644 });
    const out = join(dir, 'bad.tgz');
    const base = ['pack', '--root', src, '--path', `lib/modules/${REL}/updates`, '--path', 'usr/local/sbin', '-o', out];
    const cases: [string[], RegExp][] = [
      [['--module', 'dummy'], /--module describes a layer: give --layer NAME --class CLASS too/],
      [['--hook', 'post=usr/local/sbin/ok', '--kernel', REL], /--hook, --kernel describe a layer/],
      [['--layer', 'nic'], /--layer nic needs --class CLASS/],
      [['--layer', 'bad/name', '--class', 'x'], /--layer bad\/name: a layer name is/],
      [['--layer', 'nic', '--class', '*', '--module', 'no.dots'], /--module no\.dots: not a module name/],
      [['--layer', 'nic', '--class', 'x', '--kernel', '6.1 bad'], /--kernel 6\.1 bad: not a kernel release/],
      [['--layer', 'nic', '--class', 'x', '--hook', 'during=usr/local/sbin/ok'], /expected pre=PATH or post=PATH/],
      [['--layer', 'nic', '--class', 'x', '--hook', 'pre=usr/sbin/missing'], /usr\/sbin\/missing is not packed; add it .* with --path/],
      [['--layer', 'nic', '--class', 'x', '--hook', 'pre=usr/local/sbin/noexec'], /not executable \(chmod \+x it\)/],
      [['--layer', 'nic', '--class', 'x', '--hook', 'post=usr/local/sbin'], /is a directory, not a regular file/],
    ];
    for (const [extra, message] of cases) {
      const r = cli([...base, ...extra]);
      assert.equal(r.status, 2, `${extra.join(' ')}: ${r.stderr}`);
      assert.equal(errorCode(r), 'USAGE');
      assert.match(r.stderr, message);
      assert.ok(!existsSync(out));
    }
    // '*' is a class: a layer for every class.
    const all = pack(src, out, ['--path', `lib/modules/${REL}/updates`, '--layer', 'all', '--class', '*']);
    assert.equal((JSON.parse(cli(['inspect', all, '--json']).stdout) as { layers: { class: string }[] }).layers[0]?.class, '*');
  });

  test('apply into a chroot root: installed below usr/lib (merged /usr), depmod indexes it, modprobe resolves it; status shows each step; rollback restores modules.dep byte for byte', () => {
    const root = imageRoot();
    const depBefore = readFileSync(join(root, 'usr/lib/modules', REL, 'modules.dep'));
    const before = snapshot(root);
    const src = layerTree('real', { 'usr/local/sbin/nic-post': 'echo "post $REAR_UPDATE_PHASE $REAR_UPDATE_LAYER $REAR_UPDATE_KERNEL $REAR_UPDATE_ROOT $(pwd)" > /tmp/post.out' });
    const b = pack(src, join(dir, 'real.tgz'), ['--path', `lib/modules/${REL}/updates`, '--path', 'usr/local/sbin/nic-post', '--layer', 'nic', '--class', 'dl360g10',
      '--module', 'dummy', '--module', 'macvtap', '--hook', 'post=usr/local/sbin/nic-post', '--kernel', REL, '--key', key]);

    const dry = cli(['apply', b, '--root', root, '--pubkey', pub, '--kernel', REL, '--dry-run']);
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /lib is this root's merged-\/usr link to usr\/lib: 3 entries of the bundle below lib\/ go below usr\/lib\//);
    assert.match(dry.stdout, /^ {2}depmod 6\.1\.0-57-amd64: depmod -a 6\.1\.0-57-amd64$/m);
    assert.match(dry.stdout, /^ {2}modprobe macvtap \(layer nic\): modprobe --dry-run --set-version 6\.1\.0-57-amd64 macvtap$/m);
    assert.deepEqual(snapshot(root), before, 'the dry run wrote something');

    const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--kernel', REL, '--step-timeout', '60']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /activation for kernel 6\.1\.0-57-amd64 \(each step through chroot /);
    assert.match(r.stdout, /^ {2}ok +depmod 6\.1\.0-57-amd64: depmod -a 6\.1\.0-57-amd64 \(exit 0/m);
    const updates = join(root, 'usr/lib/modules', REL, 'updates');
    assert.ok(lstatSync(join(root, 'lib')).isSymbolicLink(), 'the merged-/usr link was replaced');
    assert.ok(lstatSync(updates).isDirectory());
    assert.ok(readdirSync(updates).some((f) => f.startsWith('macvtap.ko')));
    const dep = readFileSync(join(root, 'usr/lib/modules', REL, 'modules.dep'), 'utf8');
    assert.match(dep, /^updates\/macvtap\.ko[^:]*: kernel\/drivers\/net\/(macvlan|tap)\.ko/m);
    assert.match(dep, /^updates\/dummy\.ko[^:]*:$/m);
    const show = execFileSync('chroot', [root, 'modprobe', '--dry-run', '--show-depends', '--set-version', REL, 'macvtap'], { encoding: 'utf8' });
    assert.match(show, new RegExp(`insmod /lib/modules/${REL}/updates/macvtap\\.ko`));
    assert.match(show, /kernel\/drivers\/net\/tap\.ko/);
    assert.equal(readFileSync(join(root, 'tmp/post.out'), 'utf8'), `post post nic ${REL} / /\n`, 'the post hook ran chrooted with its environment');
    assert.match(readFileSync(join(root, 'var/lib/rear-update/activation.log'), 'utf8'), /apply: depmod 6\.1\.0-57-amd64: chroot \S+ depmod -a 6\.1\.0-57-amd64/);

    const s = JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { installed: { kernel: string; layers: unknown[]; activation: { complete: boolean; steps: { name: string; status: string; exit: number }[] } }; drift: unknown[] };
    assert.equal(s.installed.kernel, REL);
    assert.deepEqual(s.installed.layers, [{ name: 'nic', class: 'dl360g10', version: null }]);
    assert.ok(s.installed.activation.complete);
    assert.deepEqual(s.installed.activation.steps.map((x) => `${x.status} ${x.exit} ${x.name}`), [
      `ok 0 depmod ${REL}`, 'ok 0 modprobe dummy (layer nic)', 'ok 0 modprobe macvtap (layer nic)', 'ok 0 post hook usr/local/sbin/nic-post (layer nic)',
    ]);
    assert.deepEqual(s.drift, []);
    assert.match(cli(['status', '--root', root]).stdout, /activation: +4 step\(s\), none failed \(kernel 6\.1\.0-57-amd64, through chroot\)/);

    rmSync(join(root, 'tmp/post.out'));
    const rb = cli(['rollback', '--root', root]);
    assert.equal(rb.status, 0, rb.stderr);
    assert.match(rb.stdout, /^ {2}ok +depmod 6\.1\.0-57-amd64/m);
    assert.ok(!existsSync(updates));
    assert.ok(readFileSync(join(root, 'usr/lib/modules', REL, 'modules.dep')).equals(depBefore), 'modules.dep differs after the rollback');
    assert.deepEqual(withoutState(snapshot(root)), withoutState(before), 'rollback is not exact');
  });

  test('a layer carrying two releases installs only the target\'s, says what it skipped, and leaves the other release\'s files alone', () => {
    const root = imageRoot();
    makeTree(join(root, 'usr/lib/modules', OTHER), { updates: { 'old.ko': 'another kernel\'s module\n' } });
    const src = layerTree('two', {}, [REL, OTHER]);
    const b = pack(src, join(dir, 'two.tgz'), ['--path', `lib/modules/${REL}/updates`, '--path', `lib/modules/${OTHER}/updates`, '--layer', 'nic', '--class', 'x', '--key', key]);
    const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--kernel', REL]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^skipped 3 entries for kernel 6\.1\.0-58-amd64 \(target 6\.1\.0-57-amd64, from --kernel\)$/m);
    assert.ok(readdirSync(join(root, 'usr/lib/modules', REL, 'updates')).some((f) => f.startsWith('dummy.ko')));
    assert.deepEqual(readdirSync(join(root, 'usr/lib/modules', OTHER, 'updates')), ['old.ko'], 'another release\'s content was installed or removed');
    assert.deepEqual(readdirSync(join(root, 'var/lib/rear-update/txn', readdirSync(join(root, 'var/lib/rear-update/txn'))[0] as string)).filter((f) => f === 's'), [], 'staged copies of skipped entries are left behind');

    // Owning all of lib/modules: what the root holds of the other release is kept, not removed.
    const wide = tempDir();
    try {
      makeTree(wide, { usr: { lib: { modules: { [REL]: { 'stale.ko': 's\n' }, [OTHER]: { 'kernel.ko': 'k\n', updates: { 'old.ko': 'o\n' } } } } } });
      symlinkSync('usr/lib', join(wide, 'lib'));
      const all = pack(src, join(dir, 'all.tgz'), ['--path', 'lib/modules', '--layer', 'nic', '--class', 'x', '--key', key]);
      const dry = cli(['apply', all, '--root', wide, '--pubkey', pub, '--kernel', REL, '--dry-run', '--json']);
      assert.equal(dry.status, 0, dry.stderr);
      const plan = JSON.parse(dry.stdout) as { items: { path: string; action: string }[]; skipped: unknown[] };
      assert.deepEqual(plan.items.filter((i) => i.action === 'remove').map((i) => i.path), [`usr/lib/modules/${REL}/stale.ko`]);
      assert.ok(!plan.items.some((i) => i.path.includes(OTHER)), 'the other release appears in the plan');
      assert.deepEqual(plan.skipped, [{ kernel: OTHER, entries: 4 }]);
    } finally {
      cleanup(wide);
    }
  });

  test('a composed bundle (a class layer under the host\'s own configuration): inspect shows each entry\'s layer and the shadowed member; apply installs the winner and records both layers', () => {
    const layerSrc = layerTree('composed');
    makeTree(join(layerSrc, 'etc/modprobe.d'), { 'nic.conf': 'options dummy numdummies=1\n' });
    const layer = pack(layerSrc, join(dir, 'composed-layer.tgz'), ['--path', `lib/modules/${REL}/updates`, '--path', 'etc/modprobe.d/nic.conf', '--layer', 'nic', '--class', 'dl360g10', '--module', 'dummy', '--kernel', REL, '--key', key]);
    const hostSrc = join(dir, 'composed-host');
    makeTree(hostSrc, { etc: { rear: { 'local.conf': 'OUTPUT=ISO\n' }, 'modprobe.d': { 'nic.conf': 'options dummy numdummies=2\n' } } });
    const host = pack(hostSrc, join(dir, 'composed-host.tgz'), ['--path', 'etc/rear', '--path', 'etc/modprobe.d/nic.conf', '--host', 'e229', '--class', 'dl360g10', '--version', '3', '--key', key]);
    const b = composedBundle([{ bundle: layer, src: layerSrc, version: 1 }], { bundle: host, src: hostSrc, version: 3 }, join(dir, 'composed.tgz'));

    const j = JSON.parse(cli(['inspect', b, '--pubkey', pub, '--kernel', REL, '--json']).stdout) as { layers: { name: string; class: string | null }[]; shadowed: { path: string; layer: number }[]; list: { path: string; layer: number }[]; signature: { status: string } };
    assert.equal(j.signature.status, 'valid');
    assert.deepEqual(j.layers.map((l) => `${l.name} ${l.class}`), ['nic dl360g10', 'e229 null']);
    assert.deepEqual(j.shadowed.map((e) => `${e.path} ${e.layer}`), ['etc/modprobe.d/nic.conf 0']);
    assert.equal(j.list.find((e) => e.path === 'etc/modprobe.d/nic.conf')?.layer, 1);
    const human = cli(['inspect', b, '--kernel', REL]).stdout;
    assert.match(human, /^1: layer e229: class \(the host's own\), priority \d+, version 3/m);
    assert.match(human, /^shadowed: 1 member\(s\) that a later layer replaces/m);
    assert.match(human, /^ {2}-\s+0644\s+0:0\s+\d+\s+nic\s+etc\/modprobe\.d\/nic\.conf$/m);
    assert.match(human, /^-\s+0644\s+0:0\s+\d+\s+e229\s+etc\/modprobe\.d\/nic\.conf$/m);

    const root = imageRoot();
    const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--kernel', REL]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(root, 'etc/modprobe.d/nic.conf'), 'utf8'), 'options dummy numdummies=2\n', 'the later layer (the host) wins');
    assert.ok(readdirSync(join(root, 'usr/lib/modules', REL, 'updates')).some((f) => f.startsWith('dummy.ko')));
    assert.match(r.stdout, /^ {2}ok +modprobe dummy \(layer nic\): modprobe --dry-run --set-version 6\.1\.0-57-amd64 dummy/m);
    const s = JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { installed: { host: string; version: number; layers: unknown[] }; drift: unknown[] };
    assert.equal(s.installed.host, 'e229');
    assert.deepEqual(s.installed.layers, [{ name: 'nic', class: 'dl360g10', version: 1 }, { name: 'e229', class: null, version: 3 }]);
    assert.deepEqual(s.drift, []);
  });

  test('KERNEL_MISMATCH: a layer made for another release is refused before anything is written', () => {
    const root = imageRoot();
    const before = snapshot(root);
    const b = pack(layerTree('mismatch'), join(dir, 'mismatch.tgz'), ['--path', `lib/modules/${REL}/updates`, '--layer', 'gpu', '--class', 'x', '--kernel', OTHER, '--key', key]);
    for (const extra of [[], ['--dry-run']]) {
      const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--kernel', REL, ...extra]);
      assert.equal(r.status, 10, r.stderr);
      assert.equal(errorCode(r), 'KERNEL_MISMATCH');
      assert.match(r.stderr, /layer gpu is made for kernel 6\.1\.0-58-amd64, not for 6\.1\.0-57-amd64 \(--kernel; running: /);
      assert.deepEqual(snapshot(root), before, 'the root changed');
    }
  });

  test('HOOKS_UNTRUSTED: whoever can swap an unsigned bundle cannot run code as root through its hooks; --allow-hooks is the explicit opt-in', () => {
    const root = imageRoot();
    const before = snapshot(root);
    const src = layerTree('hooks', { 'usr/local/sbin/pre': 'echo pre-ran > /tmp/pre.out' });
    const args = ['--path', `lib/modules/${REL}/updates`, '--path', 'usr/local/sbin/pre', '--layer', 'nic', '--class', 'x', '--hook', 'pre=usr/local/sbin/pre'];
    const unsigned = pack(src, join(dir, 'hooks-unsigned.tgz'), args);
    const other = join(dir, 'other-keys');
    cli(['keygen', '--out', other]);
    const foreign = pack(src, join(dir, 'hooks-foreign.tgz'), [...args, '--key', join(other, 'rear-update.key')]);
    for (const b of [unsigned, foreign]) {
      const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--unsigned', '--kernel', REL]);
      assert.equal(r.status, 10, r.stderr);
      assert.equal(errorCode(r), 'HOOKS_UNTRUSTED');
      assert.match(r.stderr, /declares hooks \(pre usr\/local\/sbin\/pre \(layer nic\)\)/);
      assert.deepEqual(snapshot(root), before, 'the root changed');
    }
    const ok = cli(['apply', unsigned, '--root', root, '--unsigned', '--allow-hooks', '--kernel', REL]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(readFileSync(join(root, 'tmp/pre.out'), 'utf8'), 'pre-ran\n');
    // Signed by a trusted key, the same hooks need no opt-in.
    const signed = pack(src, join(dir, 'hooks-signed.tgz'), [...args, '--key', key]);
    assert.equal(cli(['apply', signed, '--root', imageRoot(), '--pubkey', pub, '--kernel', REL]).status, 0);
  });

  test('HOOK_VETO: a pre hook that fails stops the apply before the commit; the root is unchanged and the log has its words', () => {
    const root = imageRoot();
    const before = snapshot(root);
    const src = layerTree('veto', { 'usr/local/sbin/check': 'echo "checking $REAR_UPDATE_PHASE"\necho "no supported NIC on this machine" >&2\nexit 1' });
    const b = pack(src, join(dir, 'veto.tgz'), ['--path', `lib/modules/${REL}/updates`, '--path', 'usr/local/sbin/check', '--layer', 'nic', '--class', 'x', '--hook', 'pre=usr/local/sbin/check', '--key', key]);
    const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--kernel', REL]);
    assert.equal(r.status, 10, r.stderr);
    assert.equal(errorCode(r), 'HOOK_VETO');
    assert.match(r.stderr, /pre hook usr\/local\/sbin\/check \(layer nic\) exited with status 1: it vetoes the apply; nothing was committed/);
    assert.match(r.stderr, /^ {4}no supported NIC on this machine$/m);
    assert.deepEqual(withoutState(snapshot(root)), withoutState(before), 'a vetoed apply changed the root');
    assert.ok(!existsSync(join(root, 'var/lib/rear-update/installed.json')));
    const txns = join(root, 'var/lib/rear-update/txn');
    assert.deepEqual(existsSync(txns) ? readdirSync(txns) : [], [], 'the staging was left behind');
    assert.match(readFileSync(join(root, 'var/lib/rear-update/activation.log'), 'utf8'), /checking pre\n/);
  });

  test('a post hook that hangs is killed with its process group after --step-timeout: ACTIVATION_FAILED, files stay installed, rollback undoes them', () => {
    const root = imageRoot();
    const before = snapshot(root);
    const src = layerTree('hang', { 'usr/local/sbin/hang': 'echo "waiting for a device"\nsleep 4242' });
    const b = pack(src, join(dir, 'hang.tgz'), ['--path', `lib/modules/${REL}/updates`, '--path', 'usr/local/sbin/hang', '--layer', 'nic', '--class', 'x', '--module', 'dummy', '--hook', 'post=usr/local/sbin/hang', '--key', key]);
    const t0 = Date.now();
    const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--kernel', REL, '--step-timeout', '2']);
    const took = (Date.now() - t0) / 1000;
    assert.equal(r.status, 10, r.stderr);
    assert.equal(errorCode(r), 'ACTIVATION_FAILED');
    assert.match(r.stderr, /activation step post hook usr\/local\/sbin\/hang \(layer nic\) \(\/usr\/local\/sbin\/hang\) did not finish within 2 s; its process group was killed/);
    assert.match(r.stderr, /The files stay installed/);
    assert.match(r.stderr, /^ {4}waiting for a device$/m);
    assert.ok(took < 30, `took ${took} s`);
    const left = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').includes('sleep 4242');
      } catch {
        return false;
      }
    });
    assert.deepEqual(left, [], 'the hook\'s child survived the timeout');
    assert.ok(existsSync(join(root, 'usr/lib/modules', REL, 'updates')), 'the files were not kept installed');
    const s = JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { installed: { activation: { steps: { status: string; name: string }[] } } };
    assert.deepEqual(s.installed.activation.steps.map((x) => x.status), ['ok', 'ok', 'timeout']);
    assert.match(cli(['status', '--root', root]).stdout, /activation: +FAILED at post hook usr\/local\/sbin\/hang/);
    const rb = cli(['rollback', '--root', root]);
    assert.equal(rb.status, 0, rb.stderr);
    assert.deepEqual(withoutState(snapshot(root)), withoutState(before));
  });

  test('depmod failing in the image: ACTIVATION_FAILED names the step, its exit status and output; the steps after it are not run', () => {
    const root = imageRoot();
    rmSync(join(root, 'usr/sbin/depmod'));
    writeFileSync(join(root, 'usr/sbin/depmod'), '#!/bin/sh\necho "depmod: this image is broken" >&2\nexit 3\n', { mode: 0o755 });
    const src = layerTree('depfail', {});
    const b = pack(src, join(dir, 'depfail.tgz'), ['--path', `lib/modules/${REL}/updates`, '--layer', 'nic', '--class', 'x', '--module', 'dummy', '--key', key]);
    const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--kernel', REL]);
    assert.equal(r.status, 10, r.stderr);
    assert.equal(errorCode(r), 'ACTIVATION_FAILED');
    assert.match(r.stderr, /activation step depmod 6\.1\.0-57-amd64 \(depmod -a 6\.1\.0-57-amd64\) exited with status 3; the 1 step\(s\) after it were not run/);
    assert.match(r.stderr, /depmod: this image is broken/);
    const s = JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { installed: { activation: { steps: { status: string; exit: number | null }[] } } };
    assert.deepEqual(s.installed.activation.steps.map((x) => `${x.status} ${x.exit}`), ['failed 3', 'skipped null']);
    assert.ok(existsSync(join(root, 'usr/lib/modules', REL, 'updates')));
    // Rollback undoes the files, then reports the same broken depmod.
    const rb = cli(['rollback', '--root', root]);
    assert.equal(rb.status, 10, rb.stderr);
    assert.equal(errorCode(rb), 'ACTIVATION_FAILED');
    assert.match(rb.stderr, /the files are rolled back, but depmod/);
    assert.ok(!existsSync(join(root, 'usr/lib/modules', REL, 'updates')));
  });

  test('a root link other than the exact merged-/usr one is never written through (ENTRY_THROUGH_SYMLINK): a planted lib link cannot redirect a bundle', () => {
    const src = join(dir, 'fw-src');
    makeTree(src, { lib: { firmware: { acme: { 'nic.bin': 'firmware\n' } } } });
    const b = pack(src, join(dir, 'fw.tgz'), ['--path', 'lib/firmware/acme', '--key', key]);
    const target = tempDir();
    try {
      for (const link of ['/opt/lib', 'usr/lib/../../etc', './usr/lib', target]) {
        const root = tempDir();
        try {
          makeTree(root, { usr: { lib: {} }, etc: {} });
          symlinkSync(link, join(root, 'lib'));
          const before = snapshot(root);
          const r = cli(['apply', b, '--root', root, '--pubkey', pub]);
          assert.equal(errorCode(r), 'ENTRY_THROUGH_SYMLINK', `${link}: ${r.stderr}`);
          assert.deepEqual(snapshot(root), before, link);
          assert.deepEqual(readdirSync(target), []);
        } finally {
          cleanup(root);
        }
      }
    } finally {
      cleanup(target);
    }
    // The exact merged-/usr link: the same bundle lands below usr/lib, the link stays; rollback is exact.
    const root = tempDir();
    try {
      makeTree(root, { usr: { lib: { firmware: { 'other.bin': 'x\n' } } } });
      symlinkSync('/usr/lib', join(root, 'lib'));
      const before = snapshot(root);
      const r = cli(['apply', b, '--root', root, '--pubkey', pub, '--verbose']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /lib is this root's merged-\/usr link to usr\/lib: 2 entries of the bundle below lib\/ go below usr\/lib\//);
      assert.equal(readFileSync(join(root, 'usr/lib/firmware/acme/nic.bin'), 'utf8'), 'firmware\n');
      assert.equal(lstatSync(join(root, 'lib')).isSymbolicLink(), true);
      assert.deepEqual((JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { drift: unknown[] }).drift, []);
      assert.equal(cli(['rollback', '--root', root]).status, 0);
      assert.deepEqual(snapshot(root), before);
    } finally {
      cleanup(root);
    }
  });
});
