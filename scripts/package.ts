// npm run package (issue 15): the Debian package and the RPM of rear-update, built with
// Debian's own tools (dpkg-deb, dpkg-shlibdeps, rpmbuild from Debian's `rpm`), from what
// `npm run build:exe` made. `npm run package` builds first, then runs this.
//
// What goes in (docs/packaging.md):
//   /usr/bin/rear-update                      dist/rear-update, the one-file executable (Node 24
//                                             SEA; what install-rear copies into rescue images)
//   /usr/lib/rear-update/rear-update-server   the server: dist/rear-update has no server (its
//                                             SQLite driver is a native addon, which a one-file
//                                             executable cannot hold), so this is a second SEA of
//                                             the whole CLI, made here with the Node that runs
//                                             this script, the Node node_modules' better-sqlite3
//                                             was built for (same ABI)
//   /usr/lib/rear-update/better_sqlite3.node  that addon, loaded by the server with process.dlopen
//                                             (packaging/server/bindings-shim.cjs)
//   /usr/lib/rear-update/console-assets/      the web console's static files
//   man8/rear-update*.8                       from the commands' own help (scripts/man.ts)
//   bash-completion/completions/rear-update   from the same commands (scripts/completion.ts)
//   systemd units, /etc/rear-update/{publish.conf,server.json}   packaging/
//
// Usage: node --import tsx scripts/package.ts [--out DIR] [--fast]
//   --out DIR  where the packages go (default dist/)
//   --fast     gzip -1 payloads instead of xz (tests: the same files, built in a fraction of the time)

import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { freePort } from '../test/support/free-port.ts';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { bashCompletion } from './completion.ts';
import { loadProgram, manPages } from './man.ts';

const ROOT = resolve(import.meta.dirname, '..');
const PKG = join(ROOT, 'packaging');
const EXE = join(ROOT, 'dist/rear-update');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const ADDON = join(ROOT, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node');
const MAINTAINER = process.env.REAR_UPDATE_MAINTAINER ?? 'rear-update authors <rear-update@example.org>';

export interface Built {
  readonly deb: string;
  readonly rpm: string;
  readonly version: string;
}

function fail(message: string): never {
  console.error(`package: ${message}`);
  process.exit(1);
}

function run(cmd: string, args: readonly string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${String(r.stdout)}${String(r.stderr)}`);
  return String(r.stdout);
}

/** The release time: SOURCE_DATE_EPOCH, else the last commit's, so that rebuilds are alike. */
function releaseEpoch(): number {
  const env = Number(process.env.SOURCE_DATE_EPOCH);
  if (Number.isInteger(env) && env > 0) return env;
  const r = spawnSync('git', ['log', '-1', '--format=%ct'], { cwd: ROOT, encoding: 'utf8' });
  const t = Number(r.stdout?.trim());
  return r.status === 0 && Number.isInteger(t) && t > 0 ? t : Math.floor(Date.now() / 1000);
}

// ---------------------------------------------------------------------------------------------
// The server executable


/** Starts `serve` from `exe` on a scratch store and waits for /healthz: the addon loads, SQLite works. */
async function checkServer(exe: string, work: string): Promise<void> {
  const port = await freePort();
  const data = join(work, 'check-data');
  const p = spawn(exe, ['serve', '--data', data, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    for (let i = 0; i < 100; i++) {
      if (p.exitCode !== null) break;
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    fail(`${exe} serve did not answer /healthz:\n${stderr}`);
  } finally {
    p.kill('SIGTERM');
  }
}

/** The whole CLI (server included) as a SEA of this Node, with the addon loaded from beside it. */
async function buildServer(work: string, version: string): Promise<string> {
  const { build } = await import('esbuild');
  const bundle = join(work, 'rear-update-server.cjs');
  await build({
    entryPoints: [join(ROOT, 'src/cli/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile: bundle,
    legalComments: 'none',
    logLevel: 'warning',
    external: ['pg-native'],
    alias: { bindings: join(PKG, 'server/bindings-shim.cjs') },
    // As scripts/build.mjs: in a SEA, __dirname is the executable's directory, where
    // console-assets/ is installed.
    define: { __REAR_UPDATE_VERSION__: JSON.stringify(version), 'import.meta.dirname': '__dirname' },
  });
  const blob = join(work, 'server.blob');
  const config = join(work, 'sea-config.json');
  writeFileSync(config, JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, useSnapshot: false }));
  run(process.execPath, ['--experimental-sea-config', config], { cwd: work });
  const exe = join(work, 'server-bin/rear-update-server');
  mkdirSync(dirname(exe));
  copyFileSync(process.execPath, exe);
  chmodSync(exe, 0o755);
  // Strip before injecting (scripts/build-exe.mjs explains why not after).
  run('strip', [exe]);
  run(process.execPath, [join(ROOT, 'node_modules/postject/dist/cli.js'), exe, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE]);
  const addon = join(dirname(exe), 'better_sqlite3.node');
  copyFileSync(ADDON, addon);
  run('strip', ['--strip-unneeded', addon]);
  chmodSync(addon, 0o644);
  const v = run(exe, ['--version']).trim();
  if (v !== version) fail(`${exe} --version says ${JSON.stringify(v)}, not ${version}`);
  await checkServer(exe, work);
  return exe;
}

// ---------------------------------------------------------------------------------------------
// The file tree both packages share

interface Inputs {
  readonly version: string;
  readonly epoch: number;
  readonly server: string;
  readonly man: readonly { file: string; roff: string }[];
  readonly completion: string;
}

function put(root: string, path: string, content: string | Buffer, mode = 0o644): void {
  const file = join(root, path);
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  writeFileSync(file, content);
  chmodSync(file, mode);
}

function copy(root: string, path: string, from: string, mode = 0o644): void {
  put(root, path, readFileSync(from), mode);
}

/** gzip -9n: no name, no time, so that the output depends on the input only. */
const gz = (s: string | Buffer): Buffer => gzipSync(s, { level: 9 });

function stageCommon(root: string, i: Inputs, unitDir: string): void {
  copy(root, 'usr/bin/rear-update', EXE, 0o755);
  copy(root, 'usr/lib/rear-update/rear-update-server', i.server, 0o755);
  copy(root, 'usr/lib/rear-update/better_sqlite3.node', join(dirname(i.server), 'better_sqlite3.node'), 0o644);
  for (const f of readdirSync(join(ROOT, 'dist/console-assets'))) copy(root, `usr/lib/rear-update/console-assets/${f}`, join(ROOT, 'dist/console-assets', f));
  for (const p of i.man) put(root, `usr/share/man/man8/${p.file}.gz`, gz(p.roff));
  put(root, 'usr/share/bash-completion/completions/rear-update', i.completion);
  for (const u of ['rear-update-server.service', 'rear-update-publish.service', 'rear-update-publish.timer']) copy(root, `${unitDir}/${u}`, join(PKG, 'systemd', u));
  copy(root, 'etc/rear-update/publish.conf', join(PKG, 'etc/publish.conf'));
  copy(root, 'etc/rear-update/server.json', join(PKG, 'etc/server.json'));
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? [p, ...walk(p)] : [p];
  });
}

/** Every file and directory 0644/0755 as staged, owned by root (dpkg-deb --root-owner-group), dated the release. */
function normalize(root: string, epoch: number): void {
  for (const p of walk(root)) {
    if (lstatSync(p).isDirectory()) chmodSync(p, 0o755);
    utimesSync(p, epoch, epoch);
  }
}

// ---------------------------------------------------------------------------------------------
// Debian

/** Depends from the ELF files, by dpkg-shlibdeps (which wants a debian/control to read). */
function shlibDepends(stage: string, work: string): string {
  const dir = join(work, 'shlibdeps');
  mkdirSync(join(dir, 'debian'), { recursive: true });
  writeFileSync(join(dir, 'debian/control'), 'Source: rear-update\n\nPackage: rear-update\nArchitecture: amd64\n');
  const elf = ['usr/bin/rear-update', 'usr/lib/rear-update/rear-update-server', 'usr/lib/rear-update/better_sqlite3.node'].map((f) => join(stage, f));
  const out = run('dpkg-shlibdeps', ['-O', ...elf.map((f) => `-e${f}`)], { cwd: dir });
  const m = /^shlibs:Depends=(.*)$/m.exec(out);
  if (!m) fail(`dpkg-shlibdeps printed no Depends:\n${out}`);
  return m[1]!;
}

function installedSizeKiB(stage: string): number {
  return walk(stage).filter((p) => !relative(stage, p).startsWith('DEBIAN')).reduce((n, p) => n + (lstatSync(p).isFile() ? Math.ceil(statSync(p).size / 1024) : 1), 0);
}

function buildDeb(i: Inputs, work: string, outDir: string, fast: boolean): string {
  const stage = join(work, 'deb');
  stageCommon(stage, i, 'lib/systemd/system');
  const date = new Date(i.epoch * 1000).toUTCString().replace('GMT', '+0000');
  put(stage, 'usr/share/doc/rear-update/copyright', readFileSync(join(PKG, 'deb/copyright')));
  put(stage, 'usr/share/doc/rear-update/changelog.gz', gz(`rear-update (${i.version}) unstable; urgency=medium\n\n  * Release ${i.version}.\n\n -- ${MAINTAINER}  ${date}\n`));
  put(stage, 'usr/share/lintian/overrides/rear-update', readFileSync(join(PKG, 'deb/lintian-overrides')));
  const depends = `${shlibDepends(stage, work)}, adduser`;
  const control = [
    'Package: rear-update',
    `Version: ${i.version}`,
    'Architecture: amd64',
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${installedSizeKiB(stage)}`,
    `Depends: ${depends}`,
    'Suggests: rear',
    'Section: admin',
    'Priority: optional',
    'Homepage: https://relax-and-recover.org',
    'Description: one ReaR rescue image for a whole fleet',
    ' rear-update packs a host\'s ReaR (Relax-and-Recover) configuration into a',
    ' signed, deterministic bundle, keeps every version on a server, and installs',
    ' a host\'s bundle into a running ReaR rescue system, verified and',
    ' all-or-nothing, so that one rescue image per hardware type can recover any',
    ' host of that type.',
    ' .',
    ' This package holds the rear-update executable, the server',
    ' (rear-update-server.service), the daily publish timer for original systems',
    ' (rear-update-publish.timer), man pages and bash completion. No unit is',
    ' enabled by the package.',
    '',
  ].join('\n');
  put(stage, 'DEBIAN/control', control);
  put(stage, 'DEBIAN/conffiles', '/etc/rear-update/publish.conf\n/etc/rear-update/server.json\n');
  for (const s of ['postinst', 'prerm', 'postrm']) copy(stage, `DEBIAN/${s}`, join(PKG, 'deb', s), 0o755);
  const sums = walk(stage)
    .filter((p) => lstatSync(p).isFile() && !relative(stage, p).startsWith('DEBIAN') && !relative(stage, p).startsWith('etc/'))
    .map((p) => `${createHash('md5').update(readFileSync(p)).digest('hex')}  ${relative(stage, p)}`)
    .sort()
    .join('\n');
  put(stage, 'DEBIAN/md5sums', `${sums}\n`);
  normalize(stage, i.epoch);
  const deb = join(outDir, `rear-update_${i.version}_amd64.deb`);
  run('dpkg-deb', ['--root-owner-group', fast ? '-Zgzip' : '-Zxz', fast ? '-z1' : '-z6', '--build', stage, deb], { env: { ...process.env, SOURCE_DATE_EPOCH: String(i.epoch) } });
  return deb;
}

// ---------------------------------------------------------------------------------------------
// RPM

function buildRpm(i: Inputs, work: string, outDir: string, fast: boolean): string {
  const stage = join(work, 'rpm-stage');
  stageCommon(stage, i, 'usr/lib/systemd/system');
  put(stage, 'usr/share/licenses/rear-update/copyright', readFileSync(join(PKG, 'deb/copyright')));
  normalize(stage, i.epoch);
  const d = new Date(i.epoch * 1000);
  const changelogDate = `${d.toUTCString().slice(0, 3)} ${d.toUTCString().slice(8, 11)} ${String(d.getUTCDate()).padStart(2, '0')} ${d.getUTCFullYear()}`;
  const spec = readFileSync(join(PKG, 'rpm/rear-update.spec.in'), 'utf8')
    .replaceAll('@VERSION@', i.version)
    .replaceAll('@STAGE@', stage)
    .replaceAll('@CHANGELOG_DATE@', changelogDate)
    .replaceAll('@MAINTAINER@', MAINTAINER);
  const top = join(work, 'rpmbuild');
  mkdirSync(top);
  const specFile = join(top, 'rear-update.spec');
  writeFileSync(specFile, spec);
  run('rpmbuild', [
    '-bb',
    '--define', `_topdir ${top}`,
    '--define', `_rpmdir ${join(top, 'RPMS')}`,
    '--define', '_unitdir /usr/lib/systemd/system',
    '--define', `_binary_payload ${fast ? 'w1.gzdio' : 'w6.xzdio'}`,
    '--define', `source_date_epoch_from_changelog 0`,
    '--define', `use_source_date_epoch_as_buildtime 1`,
    '--define', `clamp_mtime_to_source_date_epoch 1`,
    '--target', 'x86_64-linux',
    specFile,
  ], { env: { ...process.env, SOURCE_DATE_EPOCH: String(i.epoch) } });
  const built = join(top, 'RPMS/x86_64', `rear-update-${i.version}-1.x86_64.rpm`);
  if (!existsSync(built)) fail(`rpmbuild made no ${built}`);
  const rpm = join(outDir, `rear-update-${i.version}.x86_64.rpm`);
  copyFileSync(built, rpm);
  return rpm;
}

// ---------------------------------------------------------------------------------------------

export async function buildPackages(opts: { outDir: string; fast?: boolean }): Promise<Built> {
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  if (!existsSync(EXE)) fail(`missing ${EXE}: run npm run build:exe first (npm run package does)`);
  const exeVersion = run(EXE, ['--version']).trim();
  if (exeVersion !== version) fail(`${EXE} is version ${exeVersion}, package.json says ${version}: rebuild it`);
  if (!existsSync(ADDON)) fail(`missing ${ADDON}: run npm ci`);
  for (const tool of ['dpkg-deb', 'dpkg-shlibdeps', 'rpmbuild', 'strip']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) fail(`${tool} not found (scripts/ensure-system-deps.sh installs it)`);
  }
  const work = mkdtempSync(join(tmpdir(), 'rear-update-package-'));
  try {
    const epoch = releaseEpoch();
    const server = await buildServer(work, version);
    const program = await loadProgram();
    const inputs: Inputs = {
      version,
      epoch,
      server,
      man: manPages(program, { version, date: new Date(epoch * 1000).toISOString().slice(0, 10) }),
      completion: bashCompletion(program),
    };
    mkdirSync(opts.outDir, { recursive: true });
    const deb = buildDeb(inputs, work, opts.outDir, opts.fast === true);
    const rpm = buildRpm(inputs, work, opts.outDir, opts.fast === true);
    return { deb, rpm, version };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--out');
  const outDir = resolve(at >= 0 && args[at + 1] ? args[at + 1]! : join(ROOT, 'dist'));
  const t0 = Date.now();
  const built = await buildPackages({ outDir, fast: args.includes('--fast') });
  for (const f of [built.deb, built.rpm]) console.log(`package: ${f} (${(statSync(f).size / (1 << 20)).toFixed(1)} MiB)`);
  console.log(`package: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
