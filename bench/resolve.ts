// Resolving a booting machine among a large fleet (issue 14): how long resolveHost takes to find
// a host by MAC among 100,000 hosts, on SQLite and on PostgreSQL, from one client and from 16 at
// once, through the metadata store interface (the figure that decides whether the server's
// lookups scale), and then end to end through the real server (GET /api/v1/resolve).
//
// Seeding: 100,000 hosts through addHost takes ~1 ms a host on SQLite and ~4.5 ms on PostgreSQL
// here (its addHost serializes on an advisory lock: a MAC belongs to one host), i.e. ~2 and ~8
// minutes. So only the first SEED_VIA_STORE hosts go through addHost (its time per host is
// printed); the rest are written by bulkSeed below: the same rows addHost writes (hosts,
// host_macs, host_names, canonical values), in large multi-row inserts, after the store's own
// migrations created the schema. Every seeded host is then read back through getHost for a
// sample and compared with what addHost would have stored (checkSeed), so the shortcut cannot
// drift from the interface unnoticed. PostgreSQL gets an ANALYZE afterwards, as autovacuum
// would give a table that grew by 100,000 rows within a minute.
//
// Prints p50/p99 latency and throughput per store and client count, with PostgreSQL/SQLite
// ratios; asserts nothing. BENCH_ONLY=resolve npm run bench runs only this, as does
// `node --import tsx bench/resolve.ts`. RESOLVE_HOSTS, RESOLVE_N (store-level resolves per
// measurement), RESOLVE_HTTP_N (HTTP resolves per measurement), RESOLVE_HTTP=0 (skip HTTP)
// shorten or lengthen a run. The PostgreSQL cluster is test/support/postgres.ts's: a private
// one on a unix socket, fsync off (this measures reads; the HTTP route's audit write is the
// only write and would pay a flush on a real cluster).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { generateToken } from '../src/core/access.ts';
import { resolveHost } from '../src/core/store/resolve.ts';
import type { Host, MetadataStore, NewHost } from '../src/core/store/metadata.ts';
import { openPgMetadata } from '../src/adapters/storage/pg-metadata.ts';
import { openSqliteMetadata } from '../src/adapters/storage/sqlite-metadata.ts';
import { loadConfig } from '../src/server/config.ts';
import { layout, prepareDataDir } from '../src/server/data-dir.ts';
import { startServer } from '../src/server/serve.ts';
import { startPgCluster } from '../test/support/postgres.ts';

const HOSTS = Number(process.env.RESOLVE_HOSTS ?? 100_000);
const N = Number(process.env.RESOLVE_N ?? 20_000);
const HTTP_N = Number(process.env.RESOLVE_HTTP_N ?? 5_000);
const HTTP = process.env.RESOLVE_HTTP !== '0';
const SEED_VIA_STORE = Math.min(HOSTS, 1_000);
const CLIENTS = [1, 16];
/** Share of lookups for machines no host has (they fall through every fact kind). */
const MISS_SHARE = 0.2;
const WARMUP = 1_000;
const CLASS = 'fleet';
/** Misses over HTTP are recorded as pending machines, at most 20 new ones per token (a 429 after): a few waiting machines asking again and again. */
const HTTP_WAITING = 10;

// ---- the fleet: host i, deterministic, canonical values (what addHost would store) ----

const hex2 = (n: number): string => (n & 255).toString(16).padStart(2, '0');
/** Locally administered, unicast; k = 1, 2 for the hosts' NICs, 0xee for machines nobody knows. */
const mac = (i: number, k: number): string => `02:${hex2(k)}:${hex2(i >>> 16)}:${hex2(i >>> 8)}:${hex2(i)}:00`;
const uuid = (i: number, k = 0): string => `${(0x10000000 + i).toString(16)}-0000-4000-8${k}00-${i.toString(16).padStart(12, '0')}`;
const serial = (i: number, k = 'SN'): string => `${k}${i.toString().padStart(8, '0')}`;
const hostname = (i: number): string => `node${i}.dc1.example.org`;

/** Every host has two MACs and a hostname; half a DMI UUID, a third a serial: some firmware reports none. */
function hostSpec(i: number): NewHost {
  return {
    id: `h${i.toString().padStart(6, '0')}`, macs: [mac(i, 1), mac(i, 2)], hostnames: [hostname(i)],
    uuid: i % 2 === 0 ? uuid(i) : null, serial: i % 3 === 0 ? serial(i) : null, class: CLASS,
  };
}

/** What a booting machine reports: host i's NICs and DMI facts, or (i < 0) a machine no host has. */
function machine(i: number, miss: number): { macs: string[]; uuid: string | null; serial: string | null; hostname: string | null } {
  if (i >= 0) {
    const s = hostSpec(i);
    return { macs: [...s.macs!], uuid: s.uuid ?? null, serial: s.serial ?? null, hostname: s.hostnames![0]! };
  }
  // Unknown: every fact kind is looked up (and finds nothing), the slowest answer there is.
  return { macs: [mac(miss, 0xee), mac(miss, 0xef)], uuid: uuid(miss, 9), serial: serial(miss, 'UNK'), hostname: `new${miss}.dc1.example.org` };
}

/** mulberry32: the same machines in the same order on every store. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A fixed sequence of lookups: index of a host, or -1 for an unknown machine. */
function workload(n: number, seed: number): Int32Array {
  const r = rng(seed);
  const out = new Int32Array(n);
  for (let k = 0; k < n; k++) out[k] = r() < MISS_SHARE ? -1 : Math.floor(r() * HOSTS);
  return out;
}

// ---- seeding ----

type Kind = 'sqlite' | 'pg';
const LABEL: Record<Kind, string> = { sqlite: 'SQLite', pg: 'PostgreSQL' };

interface Row { id: string; class: string | null; uuid: string | null; serial: string | null; created: string }

/** Hosts [from, to) as the rows addHost writes: hosts, host_macs (mac, host_id), host_names (hostname, host_id). */
function rowsOf(from: number, to: number, created: string): { hosts: Row[]; macs: [string, string][]; names: [string, string][] } {
  const hosts: Row[] = [];
  const macs: [string, string][] = [];
  const names: [string, string][] = [];
  for (let i = from; i < to; i++) {
    const s = hostSpec(i);
    hosts.push({ id: s.id, class: s.class ?? null, uuid: s.uuid ?? null, serial: s.serial ?? null, created });
    for (const m of s.macs!) macs.push([m, s.id]);
    for (const h of s.hostnames!) names.push([h, s.id]);
  }
  return { hosts, macs, names };
}

const BATCH = 5_000;

/** The shortcut for hosts [from, to): the rows of rowsOf, in one transaction, statements of BATCH hosts. */
async function bulkSeed(kind: Kind, where: string, from: number, to: number): Promise<void> {
  const created = new Date().toISOString();
  if (kind === 'sqlite') {
    const db = new Database(where);
    try {
      db.pragma('busy_timeout = 5000');
      const h = db.prepare('insert into hosts (id, class, uuid, serial, pinned, created) values (?, ?, ?, ?, null, ?)');
      const m = db.prepare('insert into host_macs (mac, host_id) values (?, ?)');
      const n = db.prepare('insert into host_names (hostname, host_id) values (?, ?)');
      // One prepared statement run per row is SQLite's fast path (no parsing; no round trips to save).
      db.transaction(() => {
        for (let i = from; i < to; i += BATCH) {
          const r = rowsOf(i, Math.min(to, i + BATCH), created);
          for (const x of r.hosts) h.run(x.id, x.class, x.uuid, x.serial, x.created);
          for (const x of r.macs) m.run(x[0], x[1]);
          for (const x of r.names) n.run(x[0], x[1]);
        }
      })();
    } finally {
      db.close();
    }
    return;
  }
  const c = new pg.Client({ connectionString: where });
  await c.connect();
  try {
    await c.query('begin');
    for (let i = from; i < to; i += BATCH) {
      const r = rowsOf(i, Math.min(to, i + BATCH), created);
      const col = <T>(xs: T[], f: (x: T) => string | null): (string | null)[] => xs.map(f);
      await c.query('insert into hosts (id, class, uuid, serial, pinned, created) select a, b, c, d, null, e from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) as t(a, b, c, d, e)',
        [col(r.hosts, (x) => x.id), col(r.hosts, (x) => x.class), col(r.hosts, (x) => x.uuid), col(r.hosts, (x) => x.serial), col(r.hosts, (x) => x.created)]);
      await c.query('insert into host_macs (mac, host_id) select * from unnest($1::text[], $2::text[])', [r.macs.map((x) => x[0]), r.macs.map((x) => x[1])]);
      await c.query('insert into host_names (hostname, host_id) select * from unnest($1::text[], $2::text[])', [r.names.map((x) => x[0]), r.names.map((x) => x[1])]);
    }
    await c.query('commit');
    await c.query('analyze hosts, host_macs, host_names');
  } finally {
    await c.end();
  }
}

/** Reads a sample of hosts (interface-seeded and bulk-seeded) back through the store: each must be what addHost stores. */
async function checkSeed(store: MetadataStore): Promise<void> {
  const r = rng(7);
  const sample = [0, SEED_VIA_STORE - 1, SEED_VIA_STORE, HOSTS - 1, ...Array.from({ length: 200 }, () => Math.floor(r() * HOSTS))];
  for (const i of sample) {
    const s = hostSpec(i);
    const h = await store.getHost(s.id);
    const want = { id: s.id, hostnames: s.hostnames, macs: s.macs, uuid: s.uuid, serial: s.serial, class: s.class, pinned: null };
    const got = h && { id: h.id, hostnames: h.hostnames, macs: h.macs, uuid: h.uuid, serial: h.serial, class: h.class, pinned: h.pinned };
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`seeded host ${s.id} reads back as ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
  const all = (await store.findHosts('mac', mac(HOSTS - 1, 2))).map((h: Host) => h.id);
  if (all.length !== 1 || all[0] !== hostSpec(HOSTS - 1).id) throw new Error(`MAC lookup of the last host found ${JSON.stringify(all)}`);
}

interface Seeded { viaStoreMsPerHost: number; bulkS: number; totalS: number }

async function seed(kind: Kind, store: MetadataStore, where: string): Promise<Seeded> {
  const t0 = performance.now();
  let next = 0;
  // Eight writers at once, as a publishing pipeline would add hosts.
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let i = next++; i < SEED_VIA_STORE; i = next++) await store.addHost(hostSpec(i));
  }));
  const t1 = performance.now();
  await bulkSeed(kind, where, SEED_VIA_STORE, HOSTS);
  const t2 = performance.now();
  await checkSeed(store);
  return { viaStoreMsPerHost: (t1 - t0) / SEED_VIA_STORE, bulkS: (t2 - t1) / 1000, totalS: (t2 - t0) / 1000 };
}

// ---- measuring ----

interface Measured { clients: number; count: number; hits: number; p50: number; p99: number; perS: number }

const pct = (sorted: Float64Array, p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

/**
 * `count` lookups (the workload's, in order), shared by `clients` loops that each wait for their
 * answer before asking again: latency is from asking to answer, queueing included.
 */
async function measure(clients: number, work: Int32Array, one: (i: number, k: number) => Promise<boolean>): Promise<Measured> {
  const lat = new Float64Array(work.length);
  let next = 0;
  let hits = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let k = next++; k < work.length; k = next++) {
      const s = performance.now();
      if (await one(work[k]!, k)) hits++;
      lat[k] = performance.now() - s;
    }
  }));
  const wall = performance.now() - t0;
  lat.sort();
  return { clients, count: work.length, hits, p50: pct(lat, 0.5), p99: pct(lat, 0.99), perS: work.length / (wall / 1000) };
}

/** Store level: resolveHost over the interface, exactly as the server's routes call it. */
async function storeRuns(store: MetadataStore): Promise<Measured[]> {
  const ask = async (i: number, k: number): Promise<boolean> => {
    const r = await resolveHost(store, machine(i, k));
    if (i >= 0 && (r.host === null || r.host.id !== hostSpec(i).id || r.by !== 'mac')) throw new Error(`host ${i} resolved to ${JSON.stringify(r)}`);
    if (i < 0 && r.host) throw new Error(`an unknown machine resolved to ${r.host.id}`);
    return r.host !== null;
  };
  await measure(4, workload(WARMUP, 99), ask);
  const out: Measured[] = [];
  for (const c of CLIENTS) out.push(await measure(c, workload(N, c), ask));
  return out;
}

/** End to end: GET /api/v1/resolve on the real server (a child process), a fetch-class token, keep-alive connections. */
async function httpRuns(url: string, token: string): Promise<Measured[]> {
  const headers = { authorization: `Bearer ${token}` };
  const ask = async (i: number, k: number): Promise<boolean> => {
    const m = machine(i, k % HTTP_WAITING);
    const q = new URLSearchParams();
    for (const x of m.macs) q.append('mac', x);
    if (m.uuid) q.set('uuid', m.uuid);
    if (m.serial) q.set('serial', m.serial);
    if (m.hostname) q.set('hostname', m.hostname);
    const res = await fetch(`${url}/api/v1/resolve?${q}`, { headers });
    const body = await res.json() as { status?: string; host?: string };
    if (i >= 0 ? res.status !== 200 || body.host !== hostSpec(i).id : res.status !== 202) throw new Error(`resolve of ${i}: HTTP ${res.status} ${JSON.stringify(body)}`);
    return res.status === 200;
  };
  await measure(4, workload(WARMUP, 98), ask);
  const out: Measured[] = [];
  for (const c of CLIENTS) out.push(await measure(c, workload(HTTP_N, 100 + c), ask));
  return out;
}

/** The server in a process of its own (startServer, as `rear-update serve` runs it), so the clients do not share its event loop. */
async function startChildServer(data: string, db: string | null): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, '--serve-child', JSON.stringify({ data, db })], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((res, rej) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^listening (\S+)$/m.exec(out);
      if (m) res(m[1]!);
    });
    child.once('exit', (code) => rej(new Error(`the server exited (${code}) before listening: ${out}`)));
  });
  return { url, child };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

// ---- the whole run ----

interface StoreResult { kind: Kind; seeded: Seeded; store: Measured[]; http: Measured[] }

async function runOne(kind: Kind, work: string, pgUrl: string | null): Promise<StoreResult> {
  const data = layout(join(work, `data-${kind}`));
  prepareDataDir(data);
  const where = kind === 'sqlite' ? data.database : pgUrl!;
  const store = kind === 'sqlite' ? await openSqliteMetadata(where) : await openPgMetadata(where);
  let seeded: Seeded;
  let measured: Measured[];
  const t = generateToken();
  try {
    seeded = await seed(kind, store, where);
    console.log(`${LABEL[kind]}: seeded ${HOSTS} hosts in ${seeded.totalS.toFixed(1)} s (${SEED_VIA_STORE} through addHost at ${seeded.viaStoreMsPerHost.toFixed(2)} ms a host, 8 at once; the rest bulk in ${seeded.bulkS.toFixed(1)} s)`);
    measured = await storeRuns(store);
    await store.createToken({ id: t.id, secretHash: t.secretHash, scope: `fetch-class:${CLASS}`, label: 'bench' });
  } finally {
    await store.close();
  }
  let http: Measured[] = [];
  if (HTTP) {
    const srv = await startChildServer(data.root, kind === 'pg' ? pgUrl : null);
    try {
      http = await httpRuns(srv.url, t.token);
    } finally {
      await stopChild(srv.child);
    }
  }
  return { kind, seeded, store: measured, http };
}

function table(rows: string[][]): void {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i] as number)).join('  '));
}

export async function runResolveBench(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'ru-bench-resolve-'));
  const cluster = startPgCluster();
  try {
    const results: StoreResult[] = [];
    results.push(await runOne('sqlite', work, null));
    results.push(await runOne('pg', work, await cluster.createDatabase('resolve')));
    const ms = (x: number): string => x.toFixed(3);
    const rows: string[][] = [['path', 'store', 'clients', 'resolves', 'hits', 'p50 ms', 'p99 ms', 'resolves/s']];
    for (const [path, pick] of [['store', (r: StoreResult) => r.store], ['HTTP', (r: StoreResult) => r.http]] as const) {
      for (const r of results) for (const m of pick(r)) rows.push([path, LABEL[r.kind], String(m.clients), String(m.count), String(m.hits), ms(m.p50), ms(m.p99), m.perS.toFixed(0)]);
      const [s, p] = [pick(results[0]!), pick(results[1]!)];
      for (let k = 0; k < Math.min(s.length, p.length); k++) {
        rows.push([path, 'PostgreSQL/SQLite', String(s[k]!.clients), '', '', `${(p[k]!.p50 / s[k]!.p50).toFixed(2)}x`, `${(p[k]!.p99 / s[k]!.p99).toFixed(2)}x`, `${(p[k]!.perS / s[k]!.perS).toFixed(2)}x`]);
      }
    }
    console.log(`resolve by MAC among ${HOSTS} hosts (2 MACs each; ${Math.round(MISS_SHARE * 100)} % unknown machines), store level: resolveHost over the store interface, ${N} resolves per row${HTTP ? `; HTTP: GET /api/v1/resolve, ${HTTP_N} per row` : ''}`);
    table(rows);
  } finally {
    cluster.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

// The child server of startChildServer.
if (process.argv[2] === '--serve-child') {
  const { data, db } = JSON.parse(process.argv[3]!) as { data: string; db: string | null };
  const cfg = loadConfig({ data, listen: '127.0.0.1:0', logLevel: 'warn', ...(db ? { db } : {}) }, {});
  const srv = await startServer(cfg, { log: false });
  process.stdout.write(`listening ${srv.url}\n`);
  process.once('SIGTERM', () => void srv.close().then(() => process.exit(0)));
} else if (import.meta.filename === process.argv[1]) {
  await runResolveBench();
}
