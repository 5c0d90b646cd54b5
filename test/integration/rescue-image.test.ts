// Acceptance of issue 5's first point, against Debian's real ReaR 2.7 in a throw-away copy of
// this machine (test/support/mkrescue-sandbox.ts): `install-rear`, then `rear mkrescue`
// (OUTPUT=ISO) builds an image whose initrd carries the one-file executable, the trusted key,
// the settings and the boot hook; the test unpacks the ISO's initrd and checks each of them,
// runs the image's executable in the unpacked tree, and checks that no private key went in.
// Then: install-rear run again changes nothing, --uninstall gives back local.conf byte for byte
// and removes every file it installed, and nothing of it reached the real system.
//
// The signing key pair is made where `rear-update --help` tells an admin to keep it
// (/etc/rear-update/signing), on the same machine the image is made from: the realistic case
// for "no private key in the image".

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BOOT_HOOK, HOOK_NAME } from '../../src/adapters/rear/boot-hook.ts';
import { CLI, EXE, REPO } from '../helpers.ts';
import {
  ISO_DIR, mkrescueLocalConf, openMkrescueSandbox, prepareRescueKernel, runMkrescue, unpackRescueInitrd,
  type MkrescueSandbox, type UnpackedInitrd,
} from '../support/mkrescue-sandbox.ts';

/** Where the test puts its copies of dist/rear-update and dist/rear-update.cjs in the sandbox. */
const STAGE = '/root/rear-update-under-test';
const SIGNING = '/etc/rear-update/signing';
const UNPACKED = '/root/initrd-root';
const SERVER = 'http://127.0.0.1:9';
const HOOK = `/usr/share/rear/skel/default/etc/scripts/system-setup.d/${HOOK_NAME}`;
/** Everything install-rear may touch; snapshots of these prove idempotence and a clean uninstall. */
const TOUCHED = ['/etc/rear/local.conf', '/etc/rear-update', '/usr/local/sbin', '/usr/share/rear/skel'];
const VERSION = (JSON.parse(readFileSync(`${REPO}/package.json`, 'utf8')) as { version: string }).version;

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** path -> "type mode sha256|target", as the sandbox sees it (mtimes left out). */
async function snapshot(sb: MkrescueSandbox, roots: readonly string[]): Promise<Record<string, string>> {
  const script = `
for r in "$@"; do
  [ -e "$r" ] || [ -L "$r" ] || continue
  find "$r" -printf '%y %m %l\\t%p\\n'
  find "$r" -type f -exec sha256sum {} +
done`;
  const r = await sb.run(['bash', '-c', script, 'snapshot', ...roots]);
  const out: Record<string, string> = {};
  for (const line of r.text.split('\n').filter(Boolean)) {
    const h = /^([0-9a-f]{64}) {2}(.*)$/.exec(line);
    if (h) out[h[2]!] += ` ${h[1]}`;
    else {
      const [meta, p] = line.split('\t');
      out[p!] = meta!.trim();
    }
  }
  return out;
}

/** The paths of the "installed /..." lines install-rear prints. */
const installedPaths = (stdout: string): string[] => stdout.split('\n').flatMap((l) => /^installed (\/\S+)$/.exec(l)?.[1] ?? []);

describe('install-rear with real ReaR 2.7: rear mkrescue carries rear-update into the image', { timeout: 30 * 60_000 }, () => {
  let sb: MkrescueSandbox;
  const exe = readFileSync(EXE);
  const token = `ru_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url')}`;
  let pub = '';
  let priv = '';
  let localConf = '';
  let kernelFile = '';
  let before0: Record<string, string> = {};
  let afterInstall: Record<string, string> = {};
  let installOut = '';
  let unpacked: UnpackedInitrd | null = null;
  let iso = '';
  const hostBefore: Record<string, string | null> = {};
  const hostWatch = ['/etc/rear/local.conf', '/usr/local/sbin/rear-update', '/etc/rear-update', HOOK, ISO_DIR, '/var/lib/rear/layout/disklayout.conf'];
  const hostState = (p: string): string | null => {
    if (!existsSync(p)) return null;
    try {
      return sha256(readFileSync(p));
    } catch {
      return 'not a file';
    }
  };

  const installArgs = (): string[] => [
    'node', `${STAGE}/rear-update.cjs`, 'install-rear', '--server', SERVER, '--token', token,
    '--pubkey', `${SIGNING}/rear-update.pub`, '--class', 'typeA', '--exe', `${STAGE}/rear-update`,
  ];

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the mkrescue sandbox needs root (mount namespaces, overlayfs)');
    const version = execFileSync('rear', ['-V'], { encoding: 'utf8' });
    assert.match(version, /^Relax-and-Recover 2\.7 /, `rear 2.7 must be installed (scripts/ensure-system-deps.sh): ${version}`);
    for (const p of ['xorriso', 'cpio']) execFileSync('sh', ['-c', `command -v ${p}`], { stdio: 'pipe' });
    for (const p of hostWatch) hostBefore[p] = hostState(p);

    sb = await openMkrescueSandbox();
    // Copies of the build as read once here: a rebuild of dist/ while the test runs cannot mix versions.
    await sb.writeFile(`${STAGE}/rear-update`, exe, 0o755);
    await sb.writeFile(`${STAGE}/rear-update.cjs`, readFileSync(CLI), 0o644);
    await sb.run(['node', `${STAGE}/rear-update.cjs`, 'keygen', '--out', SIGNING]);
    pub = await sb.readText(`${SIGNING}/rear-update.pub`);
    priv = await sb.readText(`${SIGNING}/rear-update.key`);
    assert.match(priv, /PRIVATE KEY/);

    const kernel = await prepareRescueKernel(sb);
    kernelFile = kernel.path;
    localConf = mkrescueLocalConf(kernel.path, "# the host's own last line: install-rear's block goes after it");
    await sb.writeFile('/etc/rear/local.conf', localConf, 0o644);
    before0 = await snapshot(sb, TOUCHED);

    const r = await sb.run(installArgs(), { cwd: '/root' });
    installOut = r.text;
    afterInstall = await snapshot(sb, TOUCHED);
  }, { timeout: 300_000 });

  after(async () => {
    await sb?.close();
  });

  test('rear mkrescue builds the ISO; its initrd holds the executable, the key, the settings, the hook and the local.conf block', async (t) => {
    assert.deepEqual(installedPaths(installOut).sort(), [
      '/etc/rear-update/install-rear.json', '/etc/rear-update/keys/server.pub', '/etc/rear-update/settings.conf', HOOK, '/usr/local/sbin/rear-update',
    ].sort(), installOut);

    const mk = await runMkrescue(sb);
    t.diagnostic(`rear -v mkrescue: exit ${mk.status} in ${(mk.durationMs / 1000).toFixed(1)} s`);
    assert.equal(mk.status, 0, `rear mkrescue failed (exit ${mk.status}):\n${mk.text}\n${mk.stderr}\n--- log (end)\n${mk.log.slice(-15_000)}`);
    assert.ok(mk.iso, `no ISO in ${ISO_DIR}:\n${mk.text}`);
    iso = mk.iso;
    assert.match(mk.text, /Wrote ISO image: /);
    // ReaR took the absolute REQUIRED_PROGS entry and copied the executable with its libraries.
    assert.match(mk.log, /Found binary \/usr\/local\/sbin\/rear-update/);
    assert.doesNotMatch(mk.log, /rear-update.*(not found|requires additional libraries)/);

    unpacked = await unpackRescueInitrd(sb, iso, UNPACKED);
    t.diagnostic(`initrd ${unpacked.inIso} (${unpacked.compression}); ISO files: ${unpacked.isoFiles.join(' ')}`);
    // The boot loader loads that very initrd, with the kernel given as KERNEL_FILE.
    await sb.run(['xorriso', '-osirrox', 'on', '-indev', iso, '-extract', '/isolinux/isolinux.cfg', '/root/isolinux.cfg']);
    assert.match(await sb.readText('/root/isolinux.cfg'), new RegExp(`initrd=${posix.basename(unpacked.inIso).replace(/\./g, '\\.')}\\b`));
    await sb.run(['xorriso', '-osirrox', 'on', '-indev', iso, '-extract', '/isolinux/kernel', '/root/iso-kernel']);
    assert.deepEqual(await sb.readFile('/root/iso-kernel'), await sb.readFile(kernelFile));

    const at = (p: string): string => `${UNPACKED}/${p}`;
    // The one-file executable: same bytes, executable, found by name on the rescue system's PATH.
    const bin = await sb.stat(at('bin/rear-update'));
    assert.equal(bin?.type, 'regular file');
    assert.ok(((bin?.mode ?? 0) & 0o111) !== 0, `bin/rear-update is not executable: mode ${bin?.mode.toString(8)}`);
    assert.equal(bin?.size, exe.length);
    assert.equal((await sb.run(['sha256sum', at('bin/rear-update')])).text.split(' ')[0], sha256(exe), 'bin/rear-update differs from dist/rear-update');
    assert.equal((await sb.run(['chroot', UNPACKED, '/bin/bash', '-c', 'PATH=/bin:/sbin:/usr/bin:/usr/sbin; command -v rear-update'])).text.trim(), '/bin/rear-update');
    // It runs from the image alone: ReaR copied every library it needs.
    const v = await sb.exec(['chroot', UNPACKED, '/bin/rear-update', '--version']);
    assert.equal(v.status, 0, `chroot ${UNPACKED} /bin/rear-update --version: ${v.stderr}`);
    assert.equal(v.text.trim(), VERSION);

    // The trusted key, and only it.
    assert.deepEqual((await sb.run(['ls', '-A', at('etc/rear-update/keys')])).text.split('\n').filter(Boolean), ['server.pub']);
    assert.equal(await sb.readText(at('etc/rear-update/keys/server.pub')), pub);

    // The settings, private to root as install-rear wrote them.
    const settings = await sb.readText(at('etc/rear-update/settings.conf'));
    assert.equal(settings, await sb.readText('/etc/rear-update/settings.conf'));
    assert.match(settings, /^REAR_UPDATE_SERVER='http:\/\/127\.0\.0\.1:9'$/m);
    assert.ok(settings.split('\n').includes(`REAR_UPDATE_TOKEN='${token}'`), settings);
    assert.match(settings, /^REAR_UPDATE_CLASS='typeA'$/m);
    assert.equal((await sb.stat(at('etc/rear-update/settings.conf')))?.mode, 0o600);

    // The boot hook, from ReaR's skeleton into the directory the rescue system's setup sources,
    // after networking (58-start-dhclient.sh).
    assert.equal(await sb.readText(at(`etc/scripts/system-setup.d/${HOOK_NAME}`)), BOOT_HOOK);
    assert.match(await sb.readText(at('etc/scripts/system-setup')), /for system_setup_script in \/etc\/scripts\/system-setup\.d\/\*\.sh/);
    const setup = (await sb.run(['sh', '-c', 'cd "$1" && ls *.sh', 'ls', at('etc/scripts/system-setup.d')])).text.split('\n').filter(Boolean);
    assert.ok(setup.indexOf('58-start-dhclient.sh') >= 0 && setup.indexOf('58-start-dhclient.sh') < setup.indexOf(HOOK_NAME), setup.join(' '));

    // ReaR's own configuration in the image: local.conf as install-rear left it, block included.
    const imageConf = await sb.readText(at('etc/rear/local.conf'));
    assert.equal(imageConf, await sb.readText('/etc/rear/local.conf'));
    assert.ok(imageConf.startsWith(localConf), imageConf);
    assert.match(imageConf, /^# BEGIN rear-update install-rear .*\nREQUIRED_PROGS\+=\( \/usr\/local\/sbin\/rear-update \)\nCOPY_AS_IS\+=\( \/etc\/rear-update\/keys \/etc\/rear-update\/settings.conf \)\n# END rear-update install-rear\n$/m);
  });

  test('private key leak: no private key reaches the image, not even the signing key kept in /etc/rear-update/signing as `rear-update --help` suggests', async () => {
    assert.ok(unpacked, 'the image was not unpacked (see the previous test)');
    const pem = await sb.exec(['grep', '-rlF', 'PRIVATE KEY', `${UNPACKED}/etc/rear-update`]);
    assert.equal(pem.status, 1, `files with a private key under etc/rear-update in the image:\n${pem.text}${pem.stderr}`);
    // Anywhere in the image: the key's own base64 body.
    const body = priv.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    const anywhere = await sb.exec(['grep', '-rlF', body, UNPACKED]);
    assert.equal(anywhere.status, 1, `the signing key's private part is in the image:\n${anywhere.text}${anywhere.stderr}`);
  });

  test('install-rear again changes nothing; --uninstall restores local.conf byte for byte and removes every installed file', async () => {
    // Second run (after mkrescue): the same files, modes and contents.
    const again = await sb.run(installArgs(), { cwd: '/root' });
    assert.deepEqual(installedPaths(again.text).sort(), installedPaths(installOut).sort());
    assert.deepEqual(await snapshot(sb, TOUCHED), afterInstall);

    const un = await sb.run(['node', `${STAGE}/rear-update.cjs`, 'install-rear', '--uninstall']);
    assert.match(un.text, /^removed: /, un.text);
    assert.equal(await sb.readText('/etc/rear/local.conf'), localConf);
    for (const p of installedPaths(installOut)) assert.equal(await sb.exists(p), false, `${p} is still there after --uninstall`);
    assert.equal(await sb.exists('/etc/rear-update/keys'), false, 'the keys directory install-rear created is still there');
    // What was there before stays: the admin's own signing key pair in /etc/rear-update/signing.
    assert.equal(await sb.readText(`${SIGNING}/rear-update.key`), priv);
    assert.deepEqual(await snapshot(sb, TOUCHED), before0);

    // Uninstalling twice is harmless; install, install, uninstall gives the same states again.
    const un2 = await sb.run(['node', `${STAGE}/rear-update.cjs`, 'install-rear', '--uninstall']);
    assert.match(un2.text, /nothing of install-rear was installed/);
    assert.deepEqual(await snapshot(sb, TOUCHED), before0);
    await sb.run(installArgs());
    await sb.run(installArgs());
    assert.deepEqual(await snapshot(sb, TOUCHED), afterInstall);
    await sb.run(['node', `${STAGE}/rear-update.cjs`, 'install-rear', '--uninstall']);
    assert.deepEqual(await snapshot(sb, TOUCHED), before0);
  });

  test('a private key in /etc/rear-update/keys makes install-rear refuse before it writes anything', async () => {
    await sb.writeFile('/etc/rear-update/keys/signing.key', priv, 0o600);
    const r = await sb.exec(installArgs());
    assert.equal(r.status, 3, `${r.text}${r.stderr}`);
    assert.match(r.stderr, /KEY_INVALID/);
    assert.match(r.stderr, /private key/);
    await sb.run(['rm', '-r', '/etc/rear-update/keys']);
    assert.deepEqual(await snapshot(sb, TOUCHED), before0);
  });

  test('nothing reached the real system', () => {
    for (const p of hostWatch) assert.equal(hostState(p), hostBefore[p], `${p} changed on the host`);
  });
});
