// npm run bench: wall time of `rear-update apply` (signed, verified, staged, journaled commit)
// next to GNU `tar -xzf` of the same bundle, on the same machine in the same run, as ratios.
// (a) a typical config bundle (~200 files, ~1 MB), with the one-file executable, start-up
// included; (b) a large driver/script layer (~5,000 files, ~200 MB). Each is measured on a
// tmpfs (what a rescue system's root is) and on the disk holding the temp directory; on disk
// also against tar followed by a flush, since apply flushes and tar does not.
// (c) a composed bundle as the server serves it (a ~100 MiB driver layer of ~2,000 files plus a
// host's ~1 MiB configuration), fetched once from `rear-update serve`.
// Prints medians of several runs; asserts nothing (these machines are shared and noisy).
// BENCH_ONLY=layers runs only what issue 12 added: (c) and composed serving against nginx.
// BENCH_ONLY=resolve runs only bench/resolve.ts (issue 14): resolving by MAC among 100,000 hosts.
// BENCH_ONLY=multi runs only bench/multi.ts (issue 14): 256 clients through HAProxy to one and to
// three `rear-update serve` instances on one PostgreSQL database, beside nginx.

import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

if (process.env.BENCH_ONLY === 'resolve') {
  // Needs neither the executable nor a tmpfs.
  const { runResolveBench } = await import('./resolve.ts');
  await runResolveBench();
  process.exit(0);
}

if (process.env.BENCH_ONLY === 'multi') {
  // Needs the server (dist/rear-update.cjs), not the executable nor a tmpfs.
  const { runMultiBench } = await import('./multi.ts');
  await runMultiBench();
  process.exit(0);
}

const REPO = resolve(import.meta.dirname, '..');
const EXE = join(REPO, 'dist', 'rear-update');
const RUNS = Number(process.env.BENCH_RUNS ?? 5);

if (!existsSync(EXE)) throw new Error('dist/rear-update missing: npm run build:exe');

const TEXT = Buffer.from('SOME_SETTING="a value"  # configuration text as ReaR and drivers ship it\n');

/** Content like a layer's: a third compresses like text, the rest like modules and firmware. */
function content(size: number, binary: boolean): Buffer {
  if (binary) return randomBytes(size);
  const out = Buffer.alloc(size);
  for (let off = 0; off < size; off += TEXT.length) TEXT.copy(out, off);
  return out;
}

function makeTree(root: string, files: number, totalBytes: number, top: string): void {
  const per = Math.floor(totalBytes / files);
  for (let i = 0; i < files; i++) {
    const d = join(root, top, `d${i % 40}`, `s${i % 7}`);
    mkdirSync(d, { recursive: true });
    // Sizes vary around the mean.
    const size = Math.max(1, Math.floor(per * (0.25 + ((i * 7919) % 150) / 100)));
    writeFileSync(join(d, `f${i}.conf`), content(size, i % 3 !== 0));
  }
}

function time(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/**
 * On disk, apply flushes the file system before and after its commit (power-loss safety); tar
 * does not, so there `tar -xzf` is also measured followed by `sync -f` of the same file
 * system, the like-for-like figure. On tmpfs a flush costs nothing and neither does one.
 */
function measure(where: string, bundle: string, pub: string, durable: boolean): { tar: number; tarSync: number | null; apply: number } {
  const tar: number[] = [];
  const tarSync: number[] = [];
  const apply: number[] = [];
  const runTar = (a: string): void => {
    const t = time('tar', ['-xzf', bundle, '-C', a]);
    tar.push(t);
    if (durable) tarSync.push(t + time('sync', ['-f', a]));
  };
  for (let i = 0; i < RUNS; i++) {
    const a = join(where, `tar-${i}`);
    const b = join(where, `apply-${i}`);
    mkdirSync(a);
    mkdirSync(b);
    if (durable) time('sync', ['-f', where]); // start each pair with nothing dirty
    // Alternate the order so neither always runs with a warmer cache.
    if (i % 2 === 0) {
      runTar(a);
      apply.push(time(EXE, ['apply', bundle, '--root', b, '--pubkey', pub, '--quiet']));
    } else {
      apply.push(time(EXE, ['apply', bundle, '--root', b, '--pubkey', pub, '--quiet']));
      runTar(a);
    }
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
  }
  return { tar: median(tar), tarSync: durable ? median(tarSync) : null, apply: median(apply) };
}

const work = mkdtempSync(join(tmpdir(), 'ru-bench-'));
const ram = join(work, 'tmpfs');
mkdirSync(ram);
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3g', 'tmpfs', ram]);
  mounted = true;
} catch {
  console.log('note: could not mount a tmpfs (not root?); measuring on disk only');
}
try {
  execFileSync(EXE, ['keygen', '--out', join(work, 'keys')]);
  const key = join(work, 'keys', 'rear-update.key');
  const pub = join(work, 'keys', 'rear-update.pub');
  const only = process.env.BENCH_ONLY;
  const cases = only === 'layers' ? [] : [
    { name: '(a) config bundle', files: 200, bytes: 1 << 20, top: 'etc/rear', target: '< 500 ms wall' },
    { name: '(b) large layer', files: 5000, bytes: 200 << 20, top: 'usr/share/rear', target: '<= 1.5x tar' },
  ];
  const rows: string[][] = [['case', 'where', 'tar -xzf ms', 'apply ms', 'ratio', 'target', 'tar -xzf + sync -f ms', 'ratio to that']];
  for (const c of cases) {
    const src = join(work, `src-${c.files}`);
    makeTree(src, c.files, c.bytes, c.top);
    const bundle = join(work, `b-${c.files}.tgz`);
    execFileSync(EXE, ['pack', '--root', src, '--path', c.top, '--key', key, '--host', 'bench', '-o', bundle]);
    rmSync(src, { recursive: true, force: true });
    for (const [label, where] of [['tmpfs', ram], ['disk', work]] as const) {
      if (label === 'tmpfs' && !mounted) continue;
      const m = measure(where, bundle, pub, label === 'disk');
      rows.push([
        c.name, label, m.tar.toFixed(0), m.apply.toFixed(0), `${(m.apply / m.tar).toFixed(2)}x`, c.target,
        m.tarSync === null ? '-' : m.tarSync.toFixed(0), m.tarSync === null ? '-' : `${(m.apply / m.tarSync).toFixed(2)}x`,
      ]);
    }
  }
  {
    // (c) the composed bundle, as served.
    const composed = await composedBundle(work);
    for (const [label, where] of [['tmpfs', ram], ['disk', work]] as const) {
      if (label === 'tmpfs' && !mounted) continue;
      const m = measure(where, composed.bundle, composed.pub, label === 'disk');
      rows.push([
        '(c) composed: 100 MiB layer + 1 MiB host', label, m.tar.toFixed(0), m.apply.toFixed(0), `${(m.apply / m.tar).toFixed(2)}x`, '<= 1.5x tar',
        m.tarSync === null ? '-' : m.tarSync.toFixed(0), m.tarSync === null ? '-' : `${(m.apply / m.tarSync).toFixed(2)}x`,
      ]);
    }
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  console.log(`rear-update apply vs GNU tar -xzf, median of ${RUNS} runs, one-file executable (${EXE})`);
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i] as number)).join('  '));
} finally {
  if (mounted) execFileSync('umount', [ram]);
  rmSync(work, { recursive: true, force: true });
}

/**
 * A composed bundle as `rear-update serve` answers a host of a class with a layer: a ~100 MiB
 * layer of ~2,000 files (modules- and firmware-like, a third text) and the host's ~1 MiB.
 */
async function composedBundle(dir: string): Promise<{ bundle: string; pub: string }> {
  const { spawn } = await import('node:child_process');
  const { freePort, stopProcess } = await import('./serve.ts');
  const { readFileSync, statSync } = await import('node:fs');
  const data = join(dir, 'composed-data');
  const port = await freePort();
  // The server is the npm package's (the one-file executable is the rescue client only).
  const child = spawn(process.execPath, [join(REPO, 'dist', 'rear-update.cjs'), 'serve', '--data', data, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  try {
    for (let i = 0; i < 200 && !(await fetch(`${base}/healthz`).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 50));
    const token = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    const auth = { authorization: `Bearer ${token}` };
    const post = async (path: string, file: string): Promise<void> => {
      const r = await fetch(`${base}${path}`, { method: 'POST', headers: { ...auth, 'content-type': 'application/gzip', 'content-length': String(statSync(file).size) }, body: readFileSync(file) });
      if (r.status !== 201) throw new Error(`POST ${path}: HTTP ${r.status} ${await r.text()}`);
    };
    const layerSrc = join(dir, 'layer-src');
    makeTree(layerSrc, 2000, 100 << 20, 'usr/lib/firmware/bench'); // firmware-like: no depmod in the bench's roots
    execFileSync(EXE, ['pack', '--root', layerSrc, '--path', 'usr/lib/firmware/bench', '--layer', 'drivers', '--class', 'bench', '-o', join(dir, 'layer.tgz')]);
    rmSync(layerSrc, { recursive: true, force: true });
    await post('/api/v1/layers/bench/drivers/versions?priority=10', join(dir, 'layer.tgz'));
    const hostSrc = join(dir, 'host-src');
    makeTree(hostSrc, 200, 1 << 20, 'etc/rear');
    execFileSync(EXE, ['pack', '--root', hostSrc, '--path', 'etc/rear', '--host', 'bench', '-o', join(dir, 'host.tgz')]);
    rmSync(hostSrc, { recursive: true, force: true });
    const add = await fetch(`${base}/api/v1/hosts`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'bench', class: 'bench' }) });
    if (add.status !== 201) throw new Error(`adding the host: HTTP ${add.status}`);
    await post('/api/v1/hosts/bench/versions', join(dir, 'host.tgz'));
    const got = await fetch(`${base}/api/v1/hosts/bench/bundle`, { headers: auth });
    if (got.status !== 200) throw new Error(`fetching the composed bundle: HTTP ${got.status}`);
    const bundle = join(dir, 'composed.tgz');
    writeFileSync(bundle, Buffer.from(await got.arrayBuffer()));
    return { bundle, pub: join(data, 'server.pub') };
  } finally {
    await stopProcess(child);
  }
}

// ---- the server (issue 4): rear-update serve vs nginx serving the same files from disk ----
if (process.env.BENCH_ONLY !== 'layers') {
  const { runServeBench } = await import('./serve.ts');
  const { productTarget } = await import('./product-server.ts');
  const report = await runServeBench({ targets: [productTarget()] });
  const ours = report.rows.filter((r) => r.target === 'rear-update serve');
  for (const r of ours) {
    console.log(`rear-update serve, ${r.clients} clients: ${r.ratioToNginx.toFixed(2)}x nginx's throughput (target >= 0.80x: ${r.ratioToNginx >= 0.8 ? 'met' : 'NOT met'}), p99 ${r.p99Ms.toFixed(0)} ms, peak RSS ${r.peakRssMiB?.toFixed(0) ?? '?'} MiB`);
  }
}

// ---- composed bundles (issue 12): a shared 100 MiB layer + each host's 1 MiB, sealed per
// request, against nginx serving one prebuilt file of the same size per client ----
{
  const { runServeBench } = await import('./serve.ts');
  const { layeredProductTarget } = await import('./product-server.ts');
  // Each answer is 101 MiB: with 64 clients at once the first ones end only after seconds, so a longer warm-up and run.
  const report = await runServeBench({ targets: [layeredProductTarget()], concurrency: [64], fileBytes: 101 << 20, durationS: 60, warmupS: 15 });
  for (const r of report.rows.filter((x) => x.target !== 'nginx')) {
    console.log(`rear-update serve, composed bundles (100 MiB layer + 1 MiB host), ${r.clients} clients: ${r.ratioToNginx.toFixed(2)}x nginx's throughput (one prebuilt 101 MiB file per client), p99 ${r.p99Ms.toFixed(0)} ms, peak RSS ${r.peakRssMiB?.toFixed(0) ?? '?'} MiB`);
  }
}

// ---- resolving a booting machine among 100,000 hosts (issue 14), SQLite and PostgreSQL ----
if (process.env.BENCH_ONLY === undefined) {
  const { runResolveBench } = await import('./resolve.ts');
  await runResolveBench();
}

// ---- several instances behind HAProxy (issue 14): one and three on one PostgreSQL, beside nginx ----
if (process.env.BENCH_ONLY === undefined) {
  const { runMultiBench } = await import('./multi.ts');
  await runMultiBench();
}
