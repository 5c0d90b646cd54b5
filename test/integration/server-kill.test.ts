// kill -9 under mixed load (issue 11): the real server (the built CLI, `rear-update serve`) in a
// child process takes publishes of four hosts, bundle downloads and streamed recovery-log
// uploads at once, and is killed with SIGKILL at a random moment, twenty times. After each kill
// the store passes its own consistency check (`serve --check`: blobs present with their size
// and sha256, versions 1..n, id sequences, log files; leftovers of interrupted uploads allowed);
// after each restart every publish that was acknowledged (the client got 2xx) is there with the
// digest and blob it was acknowledged with, each new one is fetched and read as apply would,
// and the start has removed the leftovers. Seeded: RU_KILL_SEED=N repeats a run's kill moments.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readBundle } from '../../src/adapters/tar/bundle-reader.ts';
import { pack } from '../../src/cli/commands/pack.ts';
import { DEFAULT_LIMITS } from '../../src/core/policy.ts';
import { parsePublicKey } from '../../src/core/signature.ts';
import { cleanup, CLI, makeTree, tempDir } from '../helpers.ts';

const CYCLES = 20;
const HOSTS = ['k1', 'k2', 'k3', 'k4'];
const SEED = Number(process.env.RU_KILL_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: small, seedable, good enough to pick kill moments. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const work = tempDir('ru-kill-');
const data = join(work, 'data');
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
  cleanup(work);
});

interface Answer {
  readonly status: number;
  readonly body: Buffer;
}

/** One request on a fresh connection; rejects on any connection error (the server may be gone). */
function request(base: string, method: string, path: string, token: string, body?: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const r = http.request(new URL(path, base), {
      method, agent: false, timeout: 10_000,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-length': String(body.length) } : {}) },
    }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('aborted')));
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    r.end(body);
  });
}

/** A recovery log as ReaR streams it: lines every 10 ms for `ms`, then the end; the answer's status, or 'cut'. */
function logUpload(base: string, token: string, host: string, stamp: string, ms: number): Promise<number | 'cut'> {
  return new Promise((resolve) => {
    const r = http.request(new URL(`/clients/${host}/log/recover/${stamp}`, base), { method: 'PUT', agent: false, headers: { authorization: token, 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve('cut'));
    });
    r.on('error', () => resolve('cut'));
    const t0 = Date.now();
    let i = 0;
    const tick = (): void => {
      if (r.destroyed) return;
      if (Date.now() - t0 >= ms) {
        r.end();
        return;
      }
      r.write(`${new Date().toISOString()} ${stamp} line ${i++}: Running 'layout/recreate' stage ======================\n`);
      setTimeout(tick, 10);
    };
    tick();
  });
}

/** Runs the built CLI to its end. */
function run(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (status) => {
      children.delete(p);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Starts `rear-update serve` on a free loopback port; resolves once it says where it serves. */
function serve(): Promise<{ child: ChildProcess; url: string; exited: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'serve', '--data', data, '--listen', '127.0.0.1:0', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    const exited = new Promise<void>((r) => child.once('exit', () => {
      children.delete(child);
      r();
    }));
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /serving (http:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) resolve({ child, url: m[1]!, exited });
    });
    void exited.then(() => reject(new Error(`serve exited before serving:\n${err}`)));
  });
}

interface CheckJson {
  ok: boolean;
  counts: { hosts: number; versions: number; blobs: number; logs: number };
  errors: { kind: string; message: string }[];
  leftovers: { kind: string; message: string }[];
}

async function check(): Promise<CheckJson> {
  const r = await run(['serve', '--check', '--json', '--data', data]);
  assert.ok(r.stdout.trim().startsWith('{'), `serve --check printed no report (status ${r.status}):\n${r.stderr}`);
  const report = JSON.parse(r.stdout) as CheckJson;
  assert.deepEqual(report.errors, [], `serve --check found errors (seed ${SEED})`);
  assert.equal(r.status, 0, r.stderr);
  return report;
}

/** path → sha256 of the files a bundle carries. */
async function filesOf(bundle: Buffer, trusted: string | null): Promise<{ version: number | null; files: Record<string, string> }> {
  const r = await readBundle(Readable.from([bundle]), {
    trusted: trusted ? [parsePublicKey(trusted, 'server.pub')] : [], allowUnsigned: trusted === null, enforceTrust: trusted !== null, limits: DEFAULT_LIMITS,
  });
  const files: Record<string, string> = {};
  for (const e of r.manifest!.entries) if (e.type === 'file') files[e.path] = e.sha256!;
  return { version: r.manifest!.version ?? null, files };
}

interface Ack {
  readonly host: string;
  readonly version: number;
  readonly digest: string;
  readonly blob: string;
  /** What was sent. */
  readonly bundle: Buffer;
  contentChecked: boolean;
}

test(`kill -9 under mixed load, ${CYCLES} times: the store stays consistent and every acknowledged publish survives`, { timeout: 240_000 }, async (t) => {
  assert.ok(existsSync(CLI), `${CLI} is missing: run node scripts/build.mjs`);
  const rnd = prng(SEED);
  t.diagnostic(`seed ${SEED} (RU_KILL_SEED=${SEED} repeats the kill moments)`);

  // Every publish carries new content (so most get a blob of their own, and a kill between
  // storing the blob and recording the version leaves one that no version names).
  let packed = 0;
  const makeBundle = async (host: string): Promise<Buffer> => {
    const n = ++packed;
    const root = join(work, `tree-${n}`);
    makeTree(root, {
      etc: { rear: { 'local.conf': `# ${host} publish ${n}\nOUTPUT=ISO\n`, 'site.conf': `# ${randomBytes(1000 + Math.floor(rnd() * 3000)).toString('base64')}\n` } },
      var: { lib: { rear: { layout: { 'disklayout.conf': `disk /dev/sda ${n} gpt\n` } } } },
    });
    const out = join(work, `bundle-${n}.tar.gz`);
    await pack({ root, host, created: '2026-01-01T00:00:00Z', output: out });
    const b = readFileSync(out);
    rmSync(root, { recursive: true, force: true });
    rmSync(out);
    return b;
  };

  const acks: Ack[] = [];
  const figures = { publishes: 0, unchanged: 0, fetches: 0, logsComplete: 0, logsCut: 0, leftovers: {} as Record<string, number>, killAfterMs: [] as number[] };
  let srv = await serve();
  const admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  const pub = readFileSync(join(data, 'server.pub'), 'utf8');
  const started = Date.now();

  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    let killed = false;
    const base = srv.url;
    const publisher = async (host: string): Promise<void> => {
      while (!killed) {
        const bundle = await makeBundle(host);
        if (killed) return;
        const r = await request(base, 'POST', `/api/v1/hosts/${host}/versions`, admin, bundle).catch(() => null);
        if (!r) return;
        assert.ok(r.status === 200 || r.status === 201, `publish ${host}: HTTP ${r.status} ${r.body.toString()}`);
        const v = JSON.parse(r.body.toString()).version as { version: number; digest: string; blob: string };
        acks.push({ host, version: v.version, digest: v.digest, blob: v.blob, bundle, contentChecked: false });
        if (r.status === 201) figures.publishes++;
        else figures.unchanged++;
      }
    };
    const fetcher = async (): Promise<void> => {
      while (!killed) {
        const host = HOSTS[Math.floor(rnd() * HOSTS.length)]!;
        const r = await request(base, 'GET', `/api/v1/hosts/${host}/bundle`, admin).catch(() => null);
        if (!r) return;
        if (r.status === 200) figures.fetches++;
        else assert.equal(r.status, 404, `fetch ${host}: HTTP ${r.status} ${r.body.toString()}`);
      }
    };
    const logger = async (n: number): Promise<void> => {
      for (let k = 0; !killed; k++) {
        const res = await logUpload(base, admin, HOSTS[n % HOSTS.length]!, `c${cycle}-${n}-${k}`, 100 + Math.floor(rnd() * 400));
        if (res === 201) figures.logsComplete++;
        else if (res === 'cut') figures.logsCut++;
        else {
          // The host is not there before its first publish.
          assert.equal(res, 404, `log upload: HTTP ${res}`);
          await sleep(20);
        }
      }
    };
    const load = Promise.all([...HOSTS.map(publisher), fetcher(), fetcher(), logger(0), logger(1)]);
    const killAfter = 400 + Math.floor(rnd() * 1100);
    figures.killAfterMs.push(killAfter);
    await sleep(killAfter);
    killed = true;
    srv.child.kill('SIGKILL');
    await srv.exited;
    await load;

    // The store as the kill left it: consistent; what interrupted uploads left is listed.
    const afterKill = await check();
    for (const l of afterKill.leftovers) figures.leftovers[l.kind] = (figures.leftovers[l.kind] ?? 0) + 1;

    srv = await serve();
    for (const host of HOSTS) {
      const r = await request(srv.url, 'GET', `/api/v1/hosts/${host}/versions`, admin);
      if (r.status === 404) {
        assert.ok(!acks.some((a) => a.host === host), `host ${host} is gone after cycle ${cycle} (seed ${SEED})`);
        continue;
      }
      const stored = new Map((JSON.parse(r.body.toString()).versions as { version: number; digest: string; blob: string }[]).map((v) => [v.version, v]));
      for (const a of acks.filter((x) => x.host === host)) {
        const v = stored.get(a.version);
        assert.ok(v, `acknowledged ${host} version ${a.version} is missing after cycle ${cycle} (seed ${SEED})`);
        assert.deepEqual([v.digest, v.blob], [a.digest, a.blob], `${host} version ${a.version} changed after cycle ${cycle} (seed ${SEED})`);
        if (a.contentChecked) continue;
        const got = await request(srv.url, 'GET', `/api/v1/hosts/${host}/bundle?version=${a.version}`, admin);
        assert.equal(got.status, 200);
        const served = await filesOf(got.body, pub);
        assert.equal(served.version, a.version);
        assert.deepEqual(served.files, (await filesOf(a.bundle, null)).files, `${host} version ${a.version} holds other content (seed ${SEED})`);
        a.contentChecked = true;
      }
    }
    // The start removed the partial and unreferenced blobs the kill left.
    const afterStart = await check();
    assert.deepEqual(afterStart.leftovers.filter((l) => l.kind === 'partial-blob' || l.kind === 'unreferenced-blob' || l.kind === 'spool'), [], `leftovers after the start of cycle ${cycle + 1}`);
  }

  srv.child.kill('SIGTERM');
  await srv.exited;
  const final = await check();
  assert.deepEqual(final.leftovers, []);
  assert.ok(figures.publishes >= CYCLES / 2, `only ${figures.publishes} publishes were acknowledged: the load did too little to prove much`);
  const distinct = new Set(acks.map((a) => `${a.host}/${a.version}`)).size;
  t.diagnostic(`${CYCLES} kill cycles in ${Math.round((Date.now() - started) / 1000)} s, killed after ${Math.min(...figures.killAfterMs)}–${Math.max(...figures.killAfterMs)} ms of load`);
  t.diagnostic(`${figures.publishes} publishes acknowledged as new (${figures.unchanged} as unchanged): ${distinct} versions, each verified after every later restart and read back once; final store ${final.counts.versions} versions, ${final.counts.blobs} blobs, ${final.counts.logs} logs`);
  t.diagnostic(`${figures.fetches} bundle downloads, ${figures.logsComplete} log uploads completed and ${figures.logsCut} cut by a kill`);
  t.diagnostic(`leftovers found right after the kills (removed by the next start): ${JSON.stringify(figures.leftovers)}`);
});
