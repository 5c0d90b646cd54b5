// Acceptance tests of `npm run package` (issue 15): the .deb and the .rpm are built once, with
// scripts/package.ts --fast (the same files, gzip instead of xz), then checked with the
// distributions' own tools: dpkg-deb, lintian, rpm, rpmlint, man, bash, systemd-analyze. The
// .deb is installed into an overlay copy of this system (overlayfs over /, in a private mount
// namespace, entered with chroot), so that dpkg runs its real maintainer scripts, adduser
// creates the real user, and nothing changes on the machine itself: the overlay's upper layer
// is a tmpfs that disappears with the namespace. `dpkg --root` was not used because the
// maintainer scripts (adduser, getent) must run against the same root dpkg writes to, which a
// chroot gives and --root does not.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from '../support/free-port.ts';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { REPO, tempDir } from '../helpers.ts';

const isRoot = process.getuid?.() === 0;
const work = tempDir('ru-package-');
const out = join(work, 'out');
let deb = '';
let rpm = '';
let version = '';
/** The .deb unpacked (dpkg-deb -x), for the man pages, completion and --help of the packaged executable. */
const unpacked = join(work, 'unpacked');

function sh(cmd: string, args: readonly string[], opts: { input?: string; env?: Record<string, string> } = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, input: opts.input ?? '', env: { ...process.env, ...opts.env }, timeout: 600_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? `${r.error}` };
}

function ok(cmd: string, args: readonly string[], opts: { input?: string; env?: Record<string, string> } = {}): string {
  const r = sh(cmd, args, opts);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Every command path (['admin', 'host', 'add'], ...) from the packaged executable's own --help. */
function commandPaths(exe: string, path: readonly string[] = []): string[][] {
  const help = ok(exe, [...path, '--help']);
  const section = /\nCommands:\n([\s\S]*?)(\n\n|$)/.exec(help)?.[1] ?? '';
  const subs = [...section.matchAll(/^ {2}([a-z][\w-]*)/gm)].map((m) => m[1]!).filter((s) => s !== 'help');
  return [[...path], ...subs.flatMap((s) => commandPaths(exe, [...path, s]))];
}

/** The long options (or short ones without a long form) that `--help` lists. */
function helpOptions(exe: string, path: readonly string[]): string[] {
  const help = ok(exe, [...path, '--help']);
  const section = /\nOptions:\n([\s\S]*?)(\n\n|$)/.exec(help)?.[1] ?? '';
  return [...section.matchAll(/^ {2}(-\w)?(?:, )?(--[\w-]+)?/gm)].map((m) => m[2] ?? m[1]!).filter(Boolean);
}

before(() => {
  const r = sh(process.execPath, ['--import', 'tsx', join(REPO, 'scripts/package.ts'), '--out', out, '--fast']);
  assert.equal(r.status, 0, `scripts/package.ts failed:\n${r.stdout}\n${r.stderr}`);
  const files = readdirSync(out);
  deb = join(out, files.find((f) => f.endsWith('_amd64.deb'))!);
  rpm = join(out, files.find((f) => f.endsWith('.x86_64.rpm'))!);
  version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
  ok('dpkg-deb', ['-x', deb, unpacked]);
});

after(() => rmSync(work, { recursive: true, force: true }));

describe('the Debian package', () => {
  test('is named for the version and holds the executables, units, man pages, completion and conffiles', () => {
    assert.equal(deb, join(out, `rear-update_${version}_amd64.deb`));
    const list = ok('dpkg-deb', ['-c', deb]);
    for (const f of [
      './usr/bin/rear-update',
      './usr/lib/rear-update/rear-update-server',
      './usr/lib/rear-update/better_sqlite3.node',
      './usr/lib/rear-update/console-assets/console.css',
      './usr/share/man/man8/rear-update.8.gz',
      './usr/share/man/man8/rear-update-apply.8.gz',
      './usr/share/man/man8/rear-update-admin.8.gz',
      './usr/share/bash-completion/completions/rear-update',
      './lib/systemd/system/rear-update-server.service',
      './lib/systemd/system/rear-update-publish.service',
      './lib/systemd/system/rear-update-publish.timer',
      './etc/rear-update/publish.conf',
      './etc/rear-update/server.json',
      './usr/share/doc/rear-update/copyright',
    ]) {
      assert.match(list, new RegExp(` ${f.replace(/[.]/g, '\\.')}$`, 'm'), `${f} missing from the .deb`);
    }
    assert.match(list, /^-rwxr-xr-x root\/root .* \.\/usr\/bin\/rear-update$/m);
    // The packaged executable is the one-file executable that npm run build:exe made.
    assert.deepEqual(readFileSync(join(unpacked, 'usr/bin/rear-update')), readFileSync(join(REPO, 'dist/rear-update')));
    const info = ok('dpkg-deb', ['-I', deb]);
    assert.match(info, /^ Package: rear-update$/m);
    assert.match(info, new RegExp(`^ Version: ${version.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(info, /^ Depends: .*libc6 .*adduser/m);
    assert.equal(ok('dpkg-deb', ['-f', deb, 'Architecture']).trim(), 'amd64');
    assert.equal(ok('sh', ['-c', 'dpkg-deb --ctrl-tarfile "$1" | tar -xOf - ./conffiles', 'sh', deb]), '/etc/rear-update/publish.conf\n/etc/rear-update/server.json\n');
  });

  test('the packaged server executable answers --version (the full CLI, server included)', () => {
    assert.equal(ok(join(unpacked, 'usr/lib/rear-update/rear-update-server'), ['--version']).trim(), version);
    assert.equal(ok(join(unpacked, 'usr/bin/rear-update'), ['--version']).trim(), version);
  });

  test('lintian finds no errors (and no warnings; unavoidable tags are overridden with a reason)', { timeout: 900_000 }, () => {
    const r = sh('lintian', ['--fail-on', 'none', deb]);
    const lines = `${r.stdout}${r.stderr}`.split('\n').filter((l) => /^[EW]: /.test(l));
    assert.deepEqual(lines, [], `lintian:\n${r.stdout}${r.stderr}`);
  });

  test('each man page renders without warnings and names every option of its commands\' --help', () => {
    const exe = join(unpacked, 'usr/bin/rear-update');
    const manDir = join(unpacked, 'usr/share/man/man8');
    const rendered = new Map<string, string>();
    for (const f of readdirSync(manDir)) {
      const r = sh('man', ['-l', '--warnings', join(manDir, f)], { env: { MANWIDTH: '80', MAN_KEEP_FORMATTING: '' } });
      assert.equal(r.status, 0, `man -l ${f}: ${r.stderr}`);
      assert.equal(r.stderr, '', `man -l --warnings ${f} warned:\n${r.stderr}`);
      // man's output un-hyphenated and joined, so that an option broken across lines still matches.
      rendered.set(f.replace(/\.8\.gz$/, ''), r.stdout.replace(/[\u2010\u2212]/g, '-').replace(/[ \t]+/g, ' '));
    }
    const paths = commandPaths(exe);
    assert.ok(paths.length > 20, `few commands found: ${paths.length}`);
    for (const path of paths) {
      const page = path.length === 0 ? 'rear-update' : `rear-update-${path[0]}`;
      const text = rendered.get(page);
      assert.ok(text, `no man page ${page}(8) for "${path.join(' ')}"`);
      for (const option of helpOptions(exe, path)) {
        assert.ok(text.includes(option), `${page}(8) lacks ${option} of "rear-update ${path.join(' ')}"`);
      }
      if (path.length > 1) assert.ok(text.includes(path.slice(1).join(' ').toUpperCase()), `${page}(8) has no section for "${path.join(' ')}"`);
    }
    // The text after the options (examples, exit status) is there too.
    assert.match(rendered.get('rear-update')!, /Exit status: 0 success/);
    assert.match(rendered.get('rear-update-serve')!, /rear-update serve --check --data \/srv\/rear-update/);
  });

  test('bash completion completes commands, subcommands, options and option values', () => {
    const script = join(unpacked, 'usr/share/bash-completion/completions/rear-update');
    const files = join(work, 'completion-files');
    mkdirSync(files, { recursive: true });
    writeFileSync(join(files, 'e229.tar.gz'), '');
    const complete = (...words: string[]): string[] => {
      const r = ok('bash', ['-c', `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _rear_update; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', script, 'rear-update', ...words], { env: {} });
      return r.split('\n').filter(Boolean).sort();
    };
    assert.deepEqual(complete('ap'), ['apply']);
    assert.ok(complete('').includes('publish') && complete('').includes('admin'));
    assert.deepEqual(complete('admin', 'ho'), ['host']);
    assert.deepEqual(complete('admin', 'host', 'a'), ['add', 'assign'].filter((w) => complete('admin', 'host', 'a').includes(w)));
    assert.ok(complete('admin', 'host', 'a').includes('add'));
    assert.deepEqual(complete('apply', '--pub'), ['--pubkey']);
    assert.ok(complete('apply', '--').includes('--dry-run'));
    // Options of a nested subcommand, after an option with a value that must be skipped.
    assert.ok(complete('admin', '--token', 'x', 'host', 'add', '--').includes('--mac') || complete('admin', 'host', 'add', '--').includes('--mac'));
    // An option's value: a file name (cwd-relative compgen -f).
    const r = ok('bash', ['-c', `cd "$2"; source "$1"; COMP_WORDS=(rear-update apply --pubkey e2); COMP_CWORD=3; _rear_update; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', script, files]);
    assert.equal(r.trim(), 'e229.tar.gz');
  });
});

describe('the RPM', () => {
  test('is named for the version and lists the same files, configuration noreplace', () => {
    assert.equal(rpm, join(out, `rear-update-${version}.x86_64.rpm`));
    const list = ok('rpm', ['-qlp', rpm]).split('\n');
    for (const f of [
      '/usr/bin/rear-update',
      '/usr/lib/rear-update/rear-update-server',
      '/usr/lib/rear-update/better_sqlite3.node',
      '/usr/lib/systemd/system/rear-update-server.service',
      '/usr/lib/systemd/system/rear-update-publish.service',
      '/usr/lib/systemd/system/rear-update-publish.timer',
      '/usr/share/man/man8/rear-update-apply.8.gz',
      '/usr/share/bash-completion/completions/rear-update',
      '/etc/rear-update/publish.conf',
      '/etc/rear-update/server.json',
    ]) {
      assert.ok(list.includes(f), `${f} missing from the RPM`);
    }
    assert.deepEqual(ok('rpm', ['-qcp', rpm]).split('\n').filter(Boolean).sort(), ['/etc/rear-update/publish.conf', '/etc/rear-update/server.json']);
    // %config(noreplace): file flags 1 (config) | 16 (noreplace).
    const flags = ok('rpm', ['-qp', '--qf', '[%{FILENAMES} %{FILEFLAGS}\\n]', rpm]);
    assert.match(flags, /^\/etc\/rear-update\/publish\.conf 17$/m);
    assert.match(flags, /^\/etc\/rear-update\/server\.json 17$/m);
    assert.equal(ok('rpm', ['-qp', '--qf', '%{VERSION}', rpm]), version);
  });

  test('scripts create the system user, stop units on erase and restart the server on upgrade', () => {
    const scripts = ok('rpm', ['-qp', '--scripts', rpm]);
    assert.match(scripts, /preinstall scriptlet[\s\S]*useradd -r -g rear-update/);
    assert.match(scripts, /preuninstall scriptlet[\s\S]*systemctl stop rear-update-server\.service/);
    assert.match(scripts, /postuninstall scriptlet[\s\S]*try-restart rear-update-server\.service/);
  });

  test('rpmlint finds no errors', { timeout: 600_000 }, () => {
    const r = sh('rpmlint', ['-r', join(REPO, 'packaging/rpm/rpmlintrc'), rpm]);
    const errors = `${r.stdout}`.split('\n').filter((l) => / E: /.test(l));
    assert.deepEqual(errors, [], `rpmlint:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, / 0 errors/);
  });
});

// ---------------------------------------------------------------------------------------------
// Installed


describe('installed in an overlay copy of this system', { skip: isRoot ? false : 'needs root (mount namespace, overlayfs, chroot)' }, () => {
  const base = join(work, 'overlay');
  const root = join(base, 'merged');
  let holder: ChildProcess | null = null;
  let server: ChildProcess | null = null;
  let port = 0;
  /** Runs a command in the namespace, chrooted into the overlay. */
  const inRoot = (args: readonly string[], input = ''): { status: number | null; stdout: string; stderr: string } =>
    sh('nsenter', ['-t', String(holder!.pid), '-m', '--', 'chroot', root, ...args], { input });
  const inRootOk = (args: readonly string[], input = ''): string => {
    const r = inRoot(args, input);
    assert.equal(r.status, 0, `${args.join(' ')} (in the overlay) exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
  };
  const exists = (path: string): boolean => inRoot(['test', '-e', path]).status === 0;

  before(async () => {
    mkdirSync(base, { recursive: true });
    // The namespace lives as long as this process: overlay upper layer on a tmpfs, / as the lower.
    holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `
      set -e
      mount -t tmpfs tmpfs "$1"
      cd "$1"
      mkdir upper work merged
      mount -t overlay overlay -o lowerdir=/,upperdir=upper,workdir=work merged
      mount --rbind /dev merged/dev
      mount -t proc proc merged/proc
      mount --rbind /sys merged/sys
      mount -t tmpfs tmpfs merged/run
      mount -t tmpfs tmpfs merged/tmp
      echo ready
      exec sleep 3600`, 'sh', base], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((res, rej) => {
      holder!.stdout!.once('data', (d: Buffer) => (d.toString().includes('ready') ? res() : rej(new Error(d.toString()))));
      holder!.once('exit', (c) => rej(new Error(`namespace holder exited ${c}`)));
    });
    assert.equal(sh('nsenter', ['-t', String(holder.pid), '-m', '--', 'cp', deb, join(root, 'tmp/rear-update.deb')]).status, 0);
    port = await freePort();
  });

  after(() => {
    if (server?.pid) spawnSync('kill', ['--', `-${server.pid}`]);
    holder?.kill('SIGKILL');
  });

  test('dpkg -i installs it: the user, the files, the conffiles', () => {
    assert.ok(!exists('/usr/bin/rear-update'), 'the overlay already has rear-update: is it installed on this machine?');
    inRootOk(['dpkg', '-i', '/tmp/rear-update.deb']);
    assert.match(inRootOk(['dpkg-query', '-W', '-f', '${Status} ${Version}', 'rear-update']), new RegExp(`^install ok installed ${version.replace(/\./g, '\\.')}$`));
    assert.match(inRootOk(['getent', 'passwd', 'rear-update']).trim(), /^rear-update:x:\d+:\d+:rear-update server[^:]*:\/nonexistent:\/usr\/sbin\/nologin$/);
    assert.equal(inRootOk(['/usr/bin/rear-update', '--version']).trim(), version);
    // The machine itself is untouched.
    assert.notEqual(sh('getent', ['passwd', 'rear-update']).status, 0);
    assert.equal(sh('dpkg-query', ['-W', 'rear-update']).status === 0 && /\S+\t\S/.test(sh('dpkg-query', ['-W', 'rear-update']).stdout), false);
  });

  test('systemd-analyze verify accepts the installed units; the server\'s exposure is low', () => {
    const units = ['rear-update-server.service', 'rear-update-publish.service', 'rear-update-publish.timer'].map((u) => `/lib/systemd/system/${u}`);
    const r = inRoot(['systemd-analyze', 'verify', '--man=no', ...units]);
    assert.equal(r.status, 0, `systemd-analyze verify:\n${r.stdout}${r.stderr}`);
    assert.equal(r.stderr.split('\n').filter((l) => l.includes('rear-update')).join('\n'), '', `systemd-analyze verify complained:\n${r.stderr}`);
    const s = inRootOk(['systemd-analyze', 'security', '--offline=true', '--no-pager', '/lib/systemd/system/rear-update-server.service']);
    const exposure = Number(/Overall exposure level for rear-update-server\.service: ([\d.]+)/.exec(s)?.[1]);
    console.log(`# systemd-analyze security rear-update-server.service: ${exposure}`);
    assert.ok(exposure <= 2.0, `exposure ${exposure}:\n${s}`);
  });

  test('serve runs as rear-update with the unit\'s command line in an emulated sandbox and answers /healthz', async () => {
    const unit = inRootOk(['cat', '/lib/systemd/system/rear-update-server.service']);
    const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!;
    const stateDir = `/var/lib/${/^StateDirectory=(.*)$/m.exec(unit)![1]!}`;
    assert.match(execStart, new RegExp(`--config /etc/rear-update/server\\.json --data ${stateDir}$`));
    // The admin's one change: a free port instead of 8080 (other suites may use it).
    inRootOk(['sh', '-c', `sed -i 's/127.0.0.1:8080/127.0.0.1:${port}/' /etc/rear-update/server.json`]);
    // What systemd does for StateDirectory= and the sandbox, as far as it can be done without
    // systemd as PID 1: state directory 0700 of the user, / read-only but the state directory
    // (ProtectSystem=strict), a private /tmp, /proc with other processes hidden (ProtectProc=
    // invisible, ProcSubset=pid), no new privileges, no capability but CAP_NET_BIND_SERVICE.
    inRootOk(['install', '-d', '-o', 'rear-update', '-g', 'rear-update', '-m', '0700', stateDir]);
    server = spawn('nsenter', ['-t', String(holder!.pid), '-m', '--', 'unshare', '-m', '--pid', '--fork', '--kill-child', 'sh', '-c', `
      set -e
      R="$1"; shift
      mount --bind "$R" "$R"
      mount --bind "$R${stateDir}" "$R${stateDir}"
      mount -o remount,bind,ro "$R"
      mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
      mount -t proc -o hidepid=invisible,subset=pid proc "$R/proc"
      umask ${/^UMask=(\d+)$/m.exec(unit)![1]!}
      exec chroot "$R" setpriv --reuid rear-update --regid rear-update --init-groups --no-new-privs \
        --inh-caps=-all --bounding-set=-all,+net_bind_service -- "$@"`, 'sh', root, ...execStart.split(' ')], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let log = '';
    server.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    server.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    let health: unknown = null;
    for (let i = 0; i < 100 && server.exitCode === null; i++) {
      health = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.json(), () => null);
      if (health) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal((health as { status?: string } | null)?.status, 'ok', `serve did not answer /healthz:\n${log}`);
    const owner = inRootOk(['stat', '-c', '%U %a', `${stateDir}/admin.token`, `${stateDir}/metadata.sqlite`]);
    assert.equal(owner, 'rear-update 600\nrear-update 600\n');
    // The console's assets come from /usr/lib/rear-update/console-assets.
    assert.equal((await fetch(`http://127.0.0.1:${port}/assets/console.css`)).status, 200);
  });

  test('publish with the sample publish.conf filled in reaches that server', async () => {
    const stateDir = '/var/lib/rear-update/server';
    const adminToken = inRootOk(['cat', `${stateDir}/admin.token`]).trim();
    inRootOk(['sh', '-c', 'umask 077; cat > /etc/rear-update/token'], `${adminToken}\n`);
    // The sample, as an admin fills it in: uncomment and set the keys.
    inRootOk(['sed', '-i', '-e', `s|^#REAR_UPDATE_SERVER=.*|REAR_UPDATE_SERVER=http://127.0.0.1:${port}|`, '-e', 's|^#REAR_UPDATE_TOKEN_FILE=|REAR_UPDATE_TOKEN_FILE=|', '-e', 's|^#REAR_UPDATE_HOST=.*|REAR_UPDATE_HOST=pkgtest|', '/etc/rear-update/publish.conf']);
    // A ReaR configuration to publish (the overlay's own; this machine's stays as it is).
    inRootOk(['sh', '-c', 'mkdir -p /etc/rear && echo "OUTPUT=ISO # package test" >> /etc/rear/local.conf']);
    // The publish unit's command line, with nothing from the test's environment.
    const unit = inRootOk(['cat', '/lib/systemd/system/rear-update-publish.service']);
    const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!;
    const r = inRoot(['env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...execStart.split(' ')]);
    assert.equal(r.status, 0, `${execStart}:\n${r.stdout}${r.stderr}`);
    // publish records its attempt where doctor reads it (src/cli/publish-state.ts).
    const state = JSON.parse(inRootOk(['cat', '/var/lib/rear-update/publish-state.json'])) as { ok: boolean; host: string; version: number };
    assert.equal(state.ok, true);
    assert.equal(state.host, 'pkgtest');
    assert.equal(state.version, 1);
    const hosts = await fetch(`http://127.0.0.1:${port}/api/v1/hosts/pkgtest`, { headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(hosts.status, 200, await hosts.text());
  });

  test('dpkg -r leaves only configuration; dpkg -P removes the conffiles but not the admin\'s files or the server\'s store', () => {
    if (server?.pid) spawnSync('kill', ['--', `-${server.pid}`]);
    inRootOk(['dpkg', '-r', 'rear-update']);
    assert.match(inRootOk(['dpkg-query', '-W', '-f', '${Status}', 'rear-update']), /^deinstall ok config-files$/);
    for (const gone of ['/usr/bin/rear-update', '/usr/lib/rear-update', '/lib/systemd/system/rear-update-server.service', '/usr/share/man/man8/rear-update.8.gz', '/usr/share/bash-completion/completions/rear-update']) {
      assert.ok(!exists(gone), `${gone} is left after dpkg -r`);
    }
    for (const kept of ['/etc/rear-update/publish.conf', '/etc/rear-update/server.json']) assert.ok(exists(kept), `${kept} is gone after dpkg -r`);
    inRootOk(['dpkg', '-P', 'rear-update']);
    assert.notEqual(inRoot(['dpkg-query', '-W', 'rear-update']).status === 0 && /^install|^deinstall/.test(inRoot(['dpkg-query', '-W', '-f', '${Status}', 'rear-update']).stdout), true);
    assert.ok(!exists('/etc/rear-update/publish.conf') && !exists('/etc/rear-update/server.json'), 'conffiles left after dpkg -P');
    assert.deepEqual(inRootOk(['ls', '-A', '/etc/rear-update']).split('\n').filter(Boolean), ['token'], 'the admin\'s token stays');
    assert.ok(exists('/var/lib/rear-update/server/metadata.sqlite'), 'the server\'s store stays');
    assert.ok(!exists('/var/lib/rear-update/publish-state.json'), 'publish\'s own state goes');
    // Debian's practice: the system user stays (files it owned may remain).
    assert.equal(inRoot(['getent', 'passwd', 'rear-update']).status, 0);
  });
});
