// One real rescue image, built once and used twice (issues 5 and 10). Debian's real, unmodified
// ReaR 2.7 in a throw-away copy of this machine (test/support/mkrescue-sandbox.ts) posing as the
// template host e229 of hardware type A (its own hostname, a real Debian kernel, udev, systemd
// and a DHCP client installed in the sandbox): `install-rear`, then `rear mkrescue` (OUTPUT=ISO).
//
// 1. The image as files: the test unpacks the ISO's initrd and checks the one-file executable,
//    the trusted key, the settings (with the template's recorded facts), the boot hook and
//    the local.conf block; no private key went in; install-rear again changes nothing,
//    --uninstall gives back local.conf byte for byte; nothing reached the real system.
// 2. The image booted: its kernel and initrd in QEMU (test/support/qemu-vm.ts: TCG, one vCPU,
//    serial console, user-mode network that reaches only the test's server on loopback),
//    against a real rear-update server holding e229 and e230:
//      - a replacement machine (a MAC nobody knows) goes PENDING, although the rescue system
//        runs with the template's hostname e229; assigned to e230, the hook installs e230's
//        bundle, and status shows no drift for the kept rescue.conf;
//      - rear_update=id=e229 on the kernel command line installs e229's bundle;
//      - the server down: bounded retries, then ReaR's unattended `rear recover` is refused by
//        the guard, and the console says what to do;
//      - e230's own MAC with ReaR's `unattended` option: the hook resolves and installs e230,
//        then `rear recover` starts and reads e230's configuration; a stop script in the
//        image ends it in its init stage (the VM has no disk anyway).
//    Each scenario is bounded and fails with the console's last lines.
//
// The signing key pair is made where `rear-update --help` tells an admin to keep it
// (/etc/rear-update/signing), on the machine the image is made from: the realistic case for
// "no private key in the image"; the test's server signs with that same key.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, posix } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { BOOT_HOOK, HOOK_NAME, INIT_SCRIPT, INIT_SCRIPT_NAME, MEDIA_HOOK, MEDIA_HOOK_NAME } from '../../src/adapters/rear/boot-hook.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, CLI, cliAsync, EXE, jsonRequest, makeTree, REPO, tempDir } from '../helpers.ts';
import {
  bootableLocalConf, ISO_DIR, openMkrescueSandbox, prepareBootableSystem, runMkrescue, unpackRescueInitrd,
  type BootableKernel, type MkrescueSandbox, type UnpackedInitrd,
} from '../support/mkrescue-sandbox.ts';
import { GUEST_SERVER_URL, startVm, type Vm } from '../support/qemu-vm.ts';

/** Where the test puts its copies of dist/rear-update and dist/rear-update.cjs in the sandbox. */
const STAGE = '/root/rear-update-under-test';
const SIGNING = '/etc/rear-update/signing';
const UNPACKED = '/root/initrd-root';
const HOOK = `/usr/share/rear/skel/default/etc/scripts/system-setup.d/${HOOK_NAME}`;
const MEDIA = `/usr/share/rear/skel/default/etc/scripts/system-setup.d/${MEDIA_HOOK_NAME}`;
const INIT = `/usr/share/rear/init/default/${INIT_SCRIPT_NAME}`;
/** Everything install-rear may touch; snapshots of these prove idempotence and a clean uninstall. */
const TOUCHED = ['/etc/rear/local.conf', '/etc/rear-update', '/usr/local/sbin', '/usr/share/rear/skel', '/usr/share/rear/init'];
const VERSION = (JSON.parse(readFileSync(`${REPO}/package.json`, 'utf8')) as { version: string }).version;

// The fleet. None of these is this machine's: the sandbox gets its own hostname, the VMs their
// own MACs, and the template's MAC on the server is made up (the sandbox itself shares this
// machine's network interfaces, which is why e229 is not registered with those).
const TEMPLATE = 'e229';
const TEMPLATE_MAC = '52:54:00:22:90:01';
const E230_MAC = '52:54:00:23:00:01';
/** A replacement machine: nobody knows its MAC. */
const NEW_MAC = '52:54:00:99:00:07';
const HOST_CONF = (host: string): string => `# ${host}'s own ReaR configuration\nOUTPUT=ISO\nBACKUP=REQUESTRESTORE\nHOST_ONLY_VAR=${host}-configuration\n`;

// In the image only (ReaR copies /usr/share/rear into it): `rear recover` prints the variable
// that only a host's own local.conf sets, then stops in its init stage, before anything could
// touch a disk (the VM has none). Every other workflow, mkrescue included, passes through.
const STOP_SCRIPT = '/usr/share/rear/init/default/031_rear_update_test_stop.sh';
const STOP_SCRIPT_TEXT = `# rear-update's QEMU test: stop rear recover in its init stage
test "$WORKFLOW" = recover || return 0
LogPrint "rear-update-test: rear recover runs with HOST_ONLY_VAR=\${HOST_ONLY_VAR:-unset}"
EXIT_FAIL_MESSAGE=0
exit 42
`;

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

const work = tempDir('ru-rescue-image-');
let srv: Running;
let admin = '';
let fetchClass = '';

const api = (method: string, path: string, body?: unknown): ReturnType<typeof jsonRequest> => jsonRequest(srv.url, admin, method, path, body);

/** The server the image talks to, signing with the key pair made in the sandbox; e229 and e230 published. */
async function startFleetServer(keyPair: { pub: string; priv: string }): Promise<void> {
  const data = join(work, 'data');
  mkdirSync(join(data, 'signing'), { recursive: true, mode: 0o700 });
  writeFileSync(join(data, 'signing', 'rear-update.key'), keyPair.priv, { mode: 0o600 });
  writeFileSync(join(data, 'signing', 'rear-update.pub'), keyPair.pub);
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  assert.equal(readFileSync(join(data, 'server.pub'), 'utf8'), keyPair.pub, 'the server signs with the sandbox\'s key');
  for (const [id, mac] of [[TEMPLATE, TEMPLATE_MAC], ['e230', E230_MAC]] as const) {
    const h = await api('POST', '/api/v1/hosts', { id, class: 'typeA', macs: [mac], hostnames: [id] });
    assert.equal(h.status, 201, JSON.stringify(h.json));
    const tree = join(work, `tree-${id}`);
    makeTree(tree, { etc: { rear: { 'local.conf': HOST_CONF(id) } }, var: { lib: { rear: { layout: { 'disklayout.conf': `# ${id}\ndisk /dev/vda 10737418240 gpt\n` } } } } });
    const pub = await cliAsync(['publish', '--server', srv.url, '--token', admin, '--root', tree, '--host', id, '--sys-root', join(work, 'nosys')]);
    assert.equal(pub.status, 0, pub.stderr);
  }
  const t = await api('POST', '/api/v1/tokens', { scope: 'fetch-class:typeA', label: 'typeA image' });
  assert.equal(t.status, 201);
  fetchClass = t.json.token as string;
}

let sb: MkrescueSandbox;
let kernel: BootableKernel;
/** The network driver the image lacks, as the chroot layer test picked it (the media boot loads it). */
let lackingDriver: { mod: string; layerRoot: string } | null = null;
/** On this machine: the image's kernel and initrd, and its boot loader's kernel command line. */
let boot: { kernel: string; initrd: string; append: string } | null = null;

before(async () => {
  assert.equal(process.getuid?.(), 0, 'the mkrescue sandbox needs root (mount namespaces, overlayfs)');
  const version = execFileSync('rear', ['-V'], { encoding: 'utf8' });
  assert.match(version, /^Relax-and-Recover 2\.7 /, `rear 2.7 must be installed (scripts/ensure-system-deps.sh): ${version}`);
  for (const p of ['xorriso', 'cpio', 'qemu-system-x86_64', 'socat']) execFileSync('sh', ['-c', `command -v ${p}`], { stdio: 'pipe' });
}, { timeout: 30_000 });

after(async () => {
  await sb?.close();
  await srv?.close();
  cleanup(work);
});

describe('install-rear with real ReaR 2.7: rear mkrescue carries rear-update into the image', { timeout: 30 * 60_000 }, () => {
  const exe = readFileSync(EXE);
  let pub = '';
  let priv = '';
  let localConf = '';
  let before0: Record<string, string> = {};
  let afterInstall: Record<string, string> = {};
  let installOut = '';
  let unpacked: UnpackedInitrd | null = null;
  let iso = '';
  const hostBefore: Record<string, string | null> = {};
  const hostWatch = ['/etc/rear/local.conf', '/usr/local/sbin/rear-update', '/etc/rear-update', HOOK, ISO_DIR, '/var/lib/rear/layout/disklayout.conf', STOP_SCRIPT, '/boot', '/usr/lib/modules'];
  const hostState = (p: string): string | null => {
    if (!existsSync(p)) return null;
    try {
      if (statSync(p).isDirectory()) return readdirSync(p).sort().join(' ');
      return sha256(readFileSync(p));
    } catch {
      return 'not a file';
    }
  };

  const installArgs = (): string[] => [
    'node', `${STAGE}/rear-update.cjs`, 'install-rear', '--server', GUEST_SERVER_URL, '--token', fetchClass,
    '--pubkey', `${SIGNING}/rear-update.pub`, '--class', 'typeA', '--exe', `${STAGE}/rear-update`, '--wait', '10m',
  ];

  before(async () => {
    for (const p of hostWatch) hostBefore[p] = hostState(p);

    sb = await openMkrescueSandbox({ hostname: TEMPLATE, pretendSystemd: true });
    // Copies of the build as read once here: a rebuild of dist/ while the test runs cannot mix versions.
    await sb.writeFile(`${STAGE}/rear-update`, exe, 0o755);
    await sb.writeFile(`${STAGE}/rear-update.cjs`, readFileSync(CLI), 0o644);
    await sb.run(['node', `${STAGE}/rear-update.cjs`, 'keygen', '--out', SIGNING]);
    pub = await sb.readText(`${SIGNING}/rear-update.pub`);
    priv = await sb.readText(`${SIGNING}/rear-update.key`);
    assert.match(priv, /PRIVATE KEY/);
    await startFleetServer({ pub, priv });

    kernel = await prepareBootableSystem(sb);
    await sb.writeFile(STOP_SCRIPT, STOP_SCRIPT_TEXT, 0o644);
    localConf = bootableLocalConf(kernel, "# the host's own last line: install-rear's block goes after it");
    await sb.writeFile('/etc/rear/local.conf', localConf, 0o644);
    before0 = await snapshot(sb, TOUCHED);

    const r = await sb.run(installArgs(), { cwd: '/root' });
    installOut = r.text;
    afterInstall = await snapshot(sb, TOUCHED);
  }, { timeout: 600_000 });

  test('rear mkrescue builds the ISO; its initrd holds the executable, the key, the settings, the hook and the local.conf block', async (t) => {
    // USE_DHCLIENT=yes in local.conf: install-rear --class sees no static-address hazard.
    assert.doesNotMatch(installOut, /WARNING: the typeA image/, installOut);
    assert.deepEqual(installedPaths(installOut).sort(), [
      '/etc/rear-update/install-rear.json', '/etc/rear-update/keys/server.pub', '/etc/rear-update/settings.conf', HOOK, MEDIA, INIT, '/usr/local/sbin/rear-update',
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
    assert.deepEqual(await sb.readFile('/root/iso-kernel'), await sb.readFile(kernel.path));
    // For QEMU: the kernel, the initrd and the command line of the boot loader's `label rear`
    // entry (what an operator gets by pressing Enter), without its initrd= (QEMU loads it).
    const cfg = await sb.readText('/root/isolinux.cfg');
    const entry = /^label rear\n(?:.*\n)*?append (.*)$/m.exec(cfg);
    assert.ok(entry, `no 'label rear' entry with an append line in isolinux.cfg:\n${cfg}`);
    assert.match(entry[1]!, /console=ttyS0,115200/, 'USE_SERIAL_CONSOLE=yes gives the kernel a serial console');
    await sb.run(['xorriso', '-osirrox', 'on', '-indev', iso, '-extract', unpacked.inIso, '/root/iso-initrd']);
    mkdirSync(join(work, 'boot'), { recursive: true });
    writeFileSync(join(work, 'boot', 'kernel'), await sb.readFile('/root/iso-kernel'));
    writeFileSync(join(work, 'boot', 'initrd'), await sb.readFile('/root/iso-initrd'));
    boot = {
      kernel: join(work, 'boot', 'kernel'),
      initrd: join(work, 'boot', 'initrd'),
      append: entry[1]!.split(/\s+/).filter((w) => w && !w.startsWith('initrd=')).join(' '),
    };
    t.diagnostic(`boot: ${boot.append} (initrd ${(readFileSync(boot.initrd).length / 1e6).toFixed(0)} MB)`);

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
    assert.ok(settings.split('\n').includes(`REAR_UPDATE_SERVER='${GUEST_SERVER_URL}'`), settings);
    assert.ok(settings.split('\n').includes(`REAR_UPDATE_TOKEN='${fetchClass}'`), settings);
    // The template's hostname, recorded so that no machine booting the image sends it as its own.
    assert.match(settings, new RegExp(`^REAR_UPDATE_IMAGE_HOSTNAME='${TEMPLATE}'$`, 'm'));
    assert.equal((await sb.readText(at('etc/HOSTNAME'))).trim(), TEMPLATE, 'ReaR writes the template\'s hostname into the image');
    assert.match(settings, /^REAR_UPDATE_CLASS='typeA'$/m);
    assert.equal((await sb.stat(at('etc/rear-update/settings.conf')))?.mode, 0o600);

    // The boot hook, from ReaR's skeleton into the directory the rescue system's setup sources,
    // after networking (58-start-dhclient.sh).
    assert.equal(await sb.readText(at(`etc/scripts/system-setup.d/${HOOK_NAME}`)), BOOT_HOOK);
    assert.match(await sb.readText(at('etc/scripts/system-setup')), /for system_setup_script in \/etc\/scripts\/system-setup\.d\/\*\.sh/);
    const setup = (await sb.run(['sh', '-c', 'cd "$1" && ls *.sh', 'ls', at('etc/scripts/system-setup.d')])).text.split('\n').filter(Boolean);
    assert.ok(setup.indexOf('58-start-dhclient.sh') >= 0 && setup.indexOf('58-start-dhclient.sh') < setup.indexOf(HOOK_NAME), setup.join(' '));
    // The local-media hook: after udev (40) and SCSI (42), before networking (55, 58).
    assert.equal(await sb.readText(at(`etc/scripts/system-setup.d/${MEDIA_HOOK_NAME}`)), MEDIA_HOOK);
    assert.ok(setup.indexOf('42-engage-scsi.sh') < setup.indexOf(MEDIA_HOOK_NAME) && setup.indexOf(MEDIA_HOOK_NAME) < setup.indexOf('55-migrate-network-devices.sh'), setup.join(' '));
    // rear recover ID=HOST: ReaR's share directory, init scripts included, is in the image.
    assert.equal(await sb.readText(at(`usr/share/rear/init/default/${INIT_SCRIPT_NAME}`)), INIT_SCRIPT);

    // ReaR's own configuration in the image: local.conf as install-rear left it, block included.
    const imageConf = await sb.readText(at('etc/rear/local.conf'));
    assert.equal(imageConf, await sb.readText('/etc/rear/local.conf'));
    assert.ok(imageConf.startsWith(localConf), imageConf);
    assert.match(imageConf, /^# BEGIN rear-update install-rear .*\nREQUIRED_PROGS\+=\( \/usr\/local\/sbin\/rear-update \)\nPROGS\+=\( depmod \)\nCOPY_AS_IS\+=\( \/etc\/rear-update\/keys \/etc\/rear-update\/settings.conf \)\n# END rear-update install-rear\n$/m);
  });

  test('a driver the image lacks, from a class layer: the boot hook installs it in the unpacked initrd (chroot), the image\'s own depmod runs, modprobe resolves it; rollback removes it and modules.dep is as before', async (t) => {
    assert.ok(unpacked, 'the image was not unpacked (see the mkrescue test)');
    const REL = kernel.version;
    // Where the image keeps its modules (merged /usr: lib -> usr/lib, which apply follows as an alias).
    const libLink = (await sb.exec(['readlink', `${UNPACKED}/lib`])).text.trim();
    const modRoot = `${UNPACKED}/${libLink === 'usr/lib' || libLink === '/usr/lib' ? 'usr/lib' : 'lib'}/modules/${REL}`;
    t.diagnostic(`image lib -> ${libLink || '(a directory)'}; modules in ${modRoot}`);
    // The chosen module: ReaR puts every network, storage, virtio and crypto driver of the kernel
    // (and whatever the building machine has loaded) into the image, so a module of the
    // template's kernel that the image lacks, has no dependencies and loads without any hardware
    // (the media boot below loads it for real) stands in for a vendor's newer driver: the first
    // of a few rare file-system drivers (minix, qnx4, ...).
    const pick = await sb.run(['sh', '-c', `for f in $(for m in minix qnx4 romfs efs befs sysv ufs cramfs; do find /lib/modules/${REL}/kernel -name "$m.ko*"; done); do n=\${f##*/}; [ -z "$(find "$1" -name "$n")" ] && [ -z "$(modinfo -F depends "$f")" ] && { echo "$f"; break; }; done; true`, 'pick', modRoot]);
    const ko = pick.text.trim();
    assert.ok(ko, 'a driver of the template\'s kernel that the image lacks');
    const name = posix.basename(ko);
    const mod = name.replace(/\.ko(\.[a-z]+)?$/, '');
    t.diagnostic(`the driver the image lacks: ${mod} (${ko})`);
    lackingDriver = { mod, layerRoot: '/root/layer-drv' };
    await sb.run(['sh', '-c', `mkdir -p /root/layer-drv/lib/modules/${REL}/updates && cp "$1" /root/layer-drv/lib/modules/${REL}/updates/`, 'cp', ko]);
    // A host of another class (typeC), so the boots below (typeA) are not composed with it.
    assert.equal((await api('POST', '/api/v1/hosts', { id: 'e232', class: 'typeC' })).status, 201);
    const tree = join(work, 'tree-e232');
    makeTree(tree, { etc: { rear: { 'local.conf': HOST_CONF('e232') } } });
    const hostPub = await cliAsync(['publish', '--server', srv.url, '--token', admin, '--root', tree, '--host', 'e232', '--sys-root', join(work, 'nosys')]);
    assert.equal(hostPub.status, 0, hostPub.stderr);
    // The class layer, published from the template as a driver build would be.
    await sb.run(['node', `${STAGE}/rear-update.cjs`, 'publish', '--server', srv.url, '--token', admin, '--layer', 'nic-driver', '--class', 'typeC', '--priority', '10',
      '--root', '/root/layer-drv', '--path', `lib/modules/${REL}/updates`, '--module', mod, '--kernel', REL]);

    const depBefore = await sb.readFile(`${modRoot}/modules.dep`);
    const chrootBash = (script: string): Promise<{ status: number | null; text: string; stderr: string }> =>
      sb.exec(['chroot', UNPACKED, '/bin/bash', '-c', `export PATH=/bin:/sbin:/usr/bin:/usr/sbin REAR_UPDATE_KERNEL=${REL}\n${script}`]);
    // The boot hook as ReaR's system setup sources it; this machine runs another kernel, so the
    // image's own release is named (REAR_UPDATE_KERNEL); the server is the test's, on loopback.
    const hook = await chrootBash(`export REAR_UPDATE_CMDLINE='rear_update=id=e232,server=${srv.url},token=${admin} unattended'\nsource /etc/scripts/system-setup.d/${HOOK_NAME}`);
    await sb.exec(['pkill', '-f', 'rear-update log-stream']);
    t.diagnostic(hook.text);
    assert.match(hook.text, /rear-update: done; 'rear recover' will use this host's configuration/, `${hook.text}\n${hook.stderr}`);
    assert.match(hook.text + hook.stderr, /depmod/);
    const installedKo = `${modRoot}/updates/${name}`;
    assert.equal((await sb.stat(installedKo))?.type, 'regular file');
    const dep = (await sb.readText(`${modRoot}/modules.dep`));
    assert.match(dep, new RegExp(`^updates/${name.replace(/\./g, '\\.')}:`, 'm'), 'the image\'s depmod indexed the new module');
    const show = await chrootBash(`modprobe --dry-run --show-depends --set-version ${REL} ${mod}`);
    assert.equal(show.status, 0, show.stderr);
    assert.match(show.text, new RegExp(`insmod /(usr/)?lib/modules/${REL.replace(/\./g, '\\.')}/updates/${name.replace(/\./g, '\\.')}`));
    const status = await chrootBash('rear-update status');
    assert.match(status.text, /nic-driver/);

    const rb = await chrootBash('rear-update rollback');
    assert.equal(rb.status, 0, `${rb.text}\n${rb.stderr}`);
    assert.equal(await sb.stat(installedKo), null, 'rollback removed the module');
    assert.ok((await sb.readFile(`${modRoot}/modules.dep`)).equals(depBefore), 'modules.dep is as before (depmod ran again)');
    // The image stays as mkrescue made it for the boots below.
    await chrootBash(`rear-update guard --on /etc/rear/rescue.conf >/dev/null 2>&1 || true`);
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

// Two VMs at a time: each is one TCG vCPU, and this machine has two cores.
describe('the real rescue image booted in QEMU: one image, the right host for each machine', { timeout: 40 * 60_000, concurrency: 2 }, () => {
  /**
   * Boots the image with a MAC and extra kernel options; its GUEST_SERVER_URL reaches `port` on
   * loopback. The VM is killed when the test ends, passed or not.
   */
  const bootVm = (t: TestContext, name: string, mac: string, extra: string, port = Number(new URL(srv.url).port), drives: readonly string[] = []): Vm => {
    assert.ok(boot, 'the image was not built or not copied out (see the install-rear suite above)');
    const vm = startVm({ name, kernel: boot.kernel, initrd: boot.initrd, append: `${boot.append} ${extra}`.trim(), mac, serverPort: port, drives });
    t.after(() => vm.close());
    return vm;
  };
  /** Up to ReaR's system setup sourcing the rear-update hook (after udev, networking and DHCP). */
  const reachHook = async (vm: Vm, t: TestContext): Promise<number> => {
    const m = await vm.waitFor(/Running 90-rear-update\.sh\.\.\.\n/, 8 * 60_000, 'ReaR\'s system setup running the rear-update hook');
    t.diagnostic(`${vm.name}: the hook started ${vm.elapsed().toFixed(0)} s after power-on`);
    return m.index;
  };
  const DONE = /rear-update: done; 'rear recover' will use this host's configuration/;
  const applied = (host: string): RegExp => new RegExp(`applied host ${host} from ${GUEST_SERVER_URL.replace(/[.]/g, '\\.')} to /: host ${host}, version 1, signed by ed25519:[0-9a-f]{16}`);
  const auditOf = async (q: string): Promise<{ kind: string; host: string | null; result: string; detail: string | null }[]> =>
    (await api('GET', `/api/v1/audit?${q}`)).json.events;

  test('template hostname: a replacement machine booting e229\'s image goes PENDING instead of being resolved to e229 by hostname; assigned to e230, the hook installs e230\'s bundle', async (t) => {
    const vm = bootVm(t, 'replacement', NEW_MAC, '');
    const from = await reachHook(vm, t);
    // The DHCP way for a class image (USE_DHCLIENT=yes): the rescue system asked QEMU's DHCP
    // server for its address instead of bringing up the template's.
    assert.match(vm.console().slice(0, from), /Running 58-start-dhclient\.sh\.\.\.\nAttempting to start the DHCP client daemon/);
    const m = await vm.waitFor(/PENDING as machine (\d+)\n/, 3 * 60_000, 'the machine going pending', from);
    const hookOut = (): string => vm.console().slice(from);
    // The rescue system runs with the template's hostname, and says why it does not send it.
    assert.match(hookOut(), new RegExp(`hostname ${TEMPLATE} left out: it is the rescue image's own \\(the template's\\), not this machine's`));
    assert.doesNotMatch(hookOut(), /resolved this machine to host/);
    const pending = ((await api('GET', '/api/v1/pending')).json.pending as { id: number; facts: { macs: string[]; hostname: string | null } }[]).find((p) => p.id === Number(m[1]));
    assert.ok(pending, `pending machine ${m[1]} is not on the server`);
    assert.deepEqual(pending.facts.macs, [NEW_MAC]);
    assert.equal(pending.facts.hostname, null, 'the template\'s hostname reached the server');
    assert.ok((await auditOf('kind=resolve&result=PENDING')).some((e) => e.detail?.includes(`pending ${m[1]}`)), 'the pending resolve is audited');

    const a = await cliAsync(['admin', 'assign', m[1]!, 'e230'], { env: { REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: admin } });
    assert.equal(a.status, 0, a.stderr);
    await vm.waitFor(DONE, 3 * 60_000, 'the hook installing the assigned host', from);
    t.diagnostic(`${vm.name}: installed ${vm.elapsed().toFixed(0)} s after power-on`);
    assert.match(hookOut(), applied('e230'));
    assert.match(hookOut(), /host {2,}e230\b|host: e230|host e230/);
    // status right after the boot: the kept rescue.conf (the guard was written into it and
    // lifted again) is listed as kept, not as drift.
    assert.match(hookOut(), /drift: +none: every installed entry matches/);
    assert.match(hookOut(), /kept: +1 path\(s\) not in the bundle, kept by --keep etc\/rear\/rescue\.conf/);
    // A serial console gets plain progress lines, no cursor escape codes.
    assert.ok(!hookOut().includes('\x1b[?25l') && !hookOut().includes('\x1b[2K'), 'progress bar escape codes on the serial console');
    assert.ok((await auditOf('host=e230&kind=fetch')).some((e) => e.result === 'ok'), 'e230\'s download is audited');
  });

  test('local media first: a signed driver layer on a disk labelled REAR-UPDATE is installed after udev and before networking, and its modprobe loads the driver', async (t) => {
    assert.ok(lackingDriver, 'the chroot layer test picked the driver the image lacks');
    const REL = kernel.version;
    // Signed with the server's key (the one the image trusts), as an admin would put it on a stick.
    await sb.run(['node', `${STAGE}/rear-update.cjs`, 'pack', '--root', lackingDriver.layerRoot, '--path', `lib/modules/${REL}/updates`, '--layer', 'nic-media', '--class', 'typeA',
      '--module', lackingDriver.mod, '--kernel', REL, '--key', `${SIGNING}/rear-update.key`, '-o', '/root/media-layer.tar.gz']);
    const media = join(work, 'media');
    mkdirSync(join(media, 'rear-update'), { recursive: true });
    writeFileSync(join(media, 'rear-update', 'nic.tar.gz'), await sb.readFile('/root/media-layer.tar.gz'));
    const img = join(work, 'media.img');
    execFileSync('mke2fs', ['-q', '-F', '-t', 'ext2', '-L', 'REAR-UPDATE', '-d', media, img, '16M']);
    const vm = bootVm(t, 'media', '52:54:00:22:90:09', 'rear_update=id=e229', Number(new URL(srv.url).port), [img]);
    const m = await vm.waitFor(/rear-update: installing REAR-UPDATE:\/rear-update\/nic\.tar\.gz from local media \(signed bundles only\)\n/, 8 * 60_000, 'the media hook finding the layer');
    t.diagnostic(`${vm.name}: the media hook ran ${vm.elapsed().toFixed(0)} s after power-on`);
    assert.doesNotMatch(vm.console().slice(0, m.index), /Running 58-start-dhclient\.sh/, 'before networking');
    await vm.waitFor(new RegExp(`ok +modprobe ${lackingDriver.mod} \\(layer nic-media\\)`), 3 * 60_000, 'the layer\'s modprobe step', m.index);
    // (waitFor's index counts from where it started looking)
    const dh = await vm.waitFor(/Running 58-start-dhclient\.sh\.\.\.\n/, 3 * 60_000, 'networking after the media hook', m.index);
    const hookOut = vm.console().slice(m.index, m.index + dh.index);
    assert.doesNotMatch(hookOut, /was NOT installed/, hookOut);
    assert.match(hookOut, /applied \S*nic\.tar\.gz to \//, hookOut);
  });

  test('rear_update=id=e229 on the kernel command line installs e229\'s bundle', async (t) => {
    const vm = bootVm(t, 'by-id', NEW_MAC.replace(/07$/, '08'), `rear_update=id=${TEMPLATE}`);
    const from = await reachHook(vm, t);
    await vm.waitFor(DONE, 3 * 60_000, 'the hook installing e229', from);
    const out = vm.console().slice(from);
    assert.match(out, new RegExp(`fetching the configuration of ${TEMPLATE} from ${GUEST_SERVER_URL.replace(/[.]/g, '\\.')}`));
    assert.match(out, applied(TEMPLATE));
    assert.doesNotMatch(out, /PENDING/);
  });

  test('the server down at boot: bounded retries, then the guard keeps the unattended rear recover from using the template\'s configuration, and the console says what to do', async (t) => {
    // A port on loopback where nothing listens: the guest's connections are accepted by QEMU and closed at once.
    const closed = net.createServer();
    await new Promise<void>((res) => closed.listen(0, '127.0.0.1', res));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((res) => closed.close(() => res()));
    const vm = bootVm(t, 'server-down', NEW_MAC.replace(/07$/, '09'), 'rear_update=retry=25 unattended', port);
    const from = await reachHook(vm, t);
    await vm.waitFor(/retrying in 10 seconds/, 3 * 60_000, 'a retry', from);
    await vm.waitFor(/rear-update: FAILED \(exit 7\)/, 4 * 60_000, 'the hook giving up after its retries', from);
    t.diagnostic(`${vm.name}: the hook gave up ${vm.elapsed().toFixed(0)} s after power-on`);
    await vm.waitFor(/unattended boot: not asking[^]*run 'rear-update apply HOST'[^]*remove the rear-update guard/, 60_000, 'the hook saying what to do instead of waiting for an answer', from);
    const out = (): string => vm.console().slice(from);
    // Nothing answered: the guest's connections were closed at once, never served.
    assert.match(out(), /error SERVER_UNREACHABLE: http:\/\/10\.0\.2\.100:8080/);
    // ReaR's unattended recovery starts, and the guard in rescue.conf stops it at once.
    await vm.waitFor(/rear-update has not installed this host's configuration/, 3 * 60_000, 'rear recover refused by the guard', from);
    assert.match(out(), /Launching 'rear recover' automatically in unattended mode/);
    assert.doesNotMatch(out(), /rear-update-test: rear recover runs with/, 'rear recover went on with the template\'s configuration');
  });

  test('ReaR\'s unattended boot: the hook resolves e230 by its MAC and installs it, then rear recover reads e230\'s configuration', async (t) => {
    const vm = bootVm(t, 'unattended', E230_MAC, 'unattended');
    const from = await reachHook(vm, t);
    await vm.waitFor(DONE, 3 * 60_000, 'the hook installing e230', from);
    assert.match(vm.console().slice(from), new RegExp(`resolved this machine to host e230 \\(by mac ${E230_MAC}\\)`));
    assert.match(vm.console().slice(from), applied('e230'));
    const m = await vm.waitFor(/rear-update-test: rear recover runs with HOST_ONLY_VAR=(\S*)\n/, 3 * 60_000, 'rear recover reading its configuration', from);
    t.diagnostic(`${vm.name}: rear recover read its configuration ${vm.elapsed().toFixed(0)} s after power-on`);
    assert.equal(m[1], 'e230-configuration', 'rear recover did not run with e230\'s configuration');
  });
});
