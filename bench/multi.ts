// Several `rear-update serve` instances behind Debian's HAProxy (issue 14): 256 clients, each
// downloading its own host's ~1 MiB bundle (`GET /rear/h<i>.tar.gz`, ReaR's own URL) again and
// again, through HAProxy to ONE instance and to THREE instances sharing one PostgreSQL database
// (metadata and blobs: `--db … --blobs postgres`), beside nginx serving the same 256 files from
// disk through the same HAProxy, and directly, in the same run. Reported per run: MiB/s and
// requests/s, p50/p99/max latency, fairness (the slowest client's bytes and requests as a share
// of an equal share), and where the CPU went (haproxy, nginx, each instance, postgres, the load
// generator, everything else on the machine).
//
// The load generator is Node (this file, `--load`), not wrk: fairness needs per-client counts,
// and wrk cannot give them (its request() and response() hooks are not told the connection,
// and a response() hook makes it copy every body into Lua). Here a client is one kept-alive
// TCP connection that only ever asks for its own path; responses are counted with a
// hand-rolled HTTP/1.1 reader on a reused read buffer (net's `onread`), so the generator's
// cost per byte is the kernel's copy and little else. It runs as MULTI_LOAD_PROCS processes
// (default 2, one a core), each with a slice of the clients, and its CPU is measured like every
// other process's. Latency is closed-loop (from writing a request to its last byte; a client
// asks again at once): no correction for coordinated omission as wrk's p99 has.
//
// CPU: one snapshot of every /proc/PID/stat at the start and at the end of the measured window;
// a process group's CPU is utime+stime+cutime+cstime summed over its root and live descendants
// (so a PostgreSQL backend that exits meanwhile stays counted, in the postmaster's cutime).
// "other" is the machine's busy time (/proc/stat, irq and softirq included, as the processes'
// stime includes the softirq work done in their context) minus every group: the neighbours.
//
// Standalone: `node --import tsx bench/multi.ts`; `BENCH_ONLY=multi npm run bench`. Knobs:
// MULTI_CLIENTS (256), MULTI_WARMUP_S (5), MULTI_DURATION_S (15), MULTI_LOAD_PROCS (2),
// MULTI_BALANCE (leastconn; any HAProxy `balance` algorithm), MULTI_PATH (rear | api: the
// /api/v1/hosts/h<i>/bundle route instead).

import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPgCluster } from '../test/support/postgres.ts';
import { HAPROXY, startHaproxy, type Haproxy } from '../test/support/haproxy.ts';
import { type Instance, Instances } from '../test/support/instances.ts';
import { nginxTarget, pidOf, track, type RunningTarget } from './serve.ts';
import { seed } from './product-server.ts';

const MIB = 1 << 20;

export interface MultiOptions {
  clients?: number;
  warmupS?: number;
  durationS?: number;
  /** Load generator processes; default one per core. */
  loadProcs?: number;
  /** HAProxy's `balance` algorithm. */
  balance?: string;
  path?: 'rear' | 'api';
  log?: (line: string) => void;
}

/** One measured window, as the load generator saw it. */
interface LoadResult {
  seconds: number;
  bytes: number[];
  requests: number[];
  /** Closed-loop latencies of the requests completed in the window, ms. */
  latencies: number[];
  errors: number;
  /** The first few errors, as text. */
  errorSamples: string[];
}

export interface MultiRow {
  name: string;
  mibPerS: number;
  requestsPerS: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  errorSamples: string[];
  /** The slowest client's bytes / (all bytes / clients). */
  minByteShare: number;
  /** The slowest client's completed requests / the mean. */
  minRequestShare: number;
  maxByteShare: number;
  /** Clients that completed no request in the window. */
  starved: number;
  /** CPU seconds per process group in the window, and "other". */
  cpuS: Record<string, number>;
  /** The machine's busy time in the window, seconds. */
  machineS: number;
  seconds: number;
  /** Bytes each HAProxy server sent in the window (stats socket), by server name. */
  perServerBytes: Record<string, number>;
  loadAvg: string;
}

// ---- the load generator (a child process: `multi.ts --load SPEC`) ----

interface LoadSpec {
  port: number;
  paths: string[];
  /** Extra request header lines, each ending in \r\n. */
  headerLines: string;
  /** Date.now() times: connect, start counting, stop. */
  startAt: number;
  measureAt: number;
  endAt: number;
}

const HEAD_MAX = 16 * 1024;

/** Every client in `spec`, one connection each, its own path again and again until endAt. */
function generateLoad(spec: LoadSpec): Promise<LoadResult> {
  const n = spec.paths.length;
  const bytes = new Array<number>(n).fill(0);
  const requests = new Array<number>(n).fill(0);
  const latencies: number[] = [];
  let errors = 0;
  const errorSamples: string[] = [];
  const error = (why: string): void => {
    if (++errors <= 5) errorSamples.push(why);
  };
  const sockets = new Set<Socket>();
  // One read buffer for every connection: reads are handled synchronously, nothing keeps it.
  const readBuf = Buffer.allocUnsafe(256 * 1024);
  let stopping = false;
  const inWindow = (t: number): boolean => t >= spec.measureAt && t < spec.endAt;

  const client = (i: number): void => {
    const request = Buffer.from(`GET ${spec.paths[i]} HTTP/1.1\r\nHost: 127.0.0.1\r\n${spec.headerLines}\r\n`, 'latin1');
    let head = '';
    let remaining = -1; // body bytes still due; -1 while reading the head
    let status = 0;
    let statusHead = ''; // a non-200's content-type and server, to tell the balancer's answer from the instance's
    let sentAt = 0;
    const fail = (why: string): void => {
      if (stopping) return;
      if (inWindow(Date.now())) error(`client ${i}: ${why}`);
      sock.destroy();
      sockets.delete(sock);
      setImmediate(() => client(i)); // a fresh connection, as a real client would retry
    };
    const send = (): void => {
      if (stopping) return;
      remaining = -1;
      head = '';
      sentAt = performance.now();
      sock.write(request);
    };
    const complete = (): void => {
      const now = Date.now();
      if (inWindow(now)) {
        requests[i]!++;
        latencies.push(performance.now() - sentAt);
        if (status !== 200) error(`client ${i}: HTTP ${status} (${statusHead})`);
      }
      send();
    };
    const onRead = (nread: number, buf: Buffer): void => {
      if (inWindow(Date.now())) bytes[i]! += nread;
      let off = 0;
      while (off < nread) {
        if (remaining < 0) {
          const take = Math.min(nread - off, HEAD_MAX);
          const s = head + buf.toString('latin1', off, off + take);
          const end = s.indexOf('\r\n\r\n');
          if (end < 0) {
            if (s.length >= HEAD_MAX) return fail('response head too long');
            head = s;
            off += take;
            continue;
          }
          off += end + 4 - head.length;
          status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(s)?.[1] ?? 0);
          const len = /\r\ncontent-length:[ \t]*(\d+)/i.exec(s.slice(0, end));
          if (!len) return fail(`no Content-Length (status ${status}): this reader does not do chunked bodies`);
          remaining = Number(len[1]);
          if (status !== 200) statusHead = (s.slice(0, end).match(/^(content-type|server|retry-after):.*$/gim) ?? []).join(', ');
          head = '';
          if (remaining === 0) complete();
        } else {
          const take = Math.min(remaining, nread - off);
          remaining -= take;
          off += take;
          if (remaining === 0) {
            if (off < nread) return fail('bytes after the response (nothing was pipelined)');
            complete();
          }
        }
      }
    };
    const sock = connect({ host: '127.0.0.1', port: spec.port, noDelay: true, onread: { buffer: readBuf, callback: (nread: number, buf: Uint8Array) => {
      onRead(nread, buf as Buffer);
      return true;
    } } });
    sockets.add(sock);
    sock.on('connect', send);
    sock.on('error', (e) => fail(e.message));
    sock.on('end', () => fail('closed by the server'));
  };

  return new Promise((done) => {
    setTimeout(() => {
      for (let i = 0; i < n; i++) client(i);
    }, Math.max(0, spec.startAt - Date.now()));
    setTimeout(() => {
      stopping = true;
      for (const s of sockets) s.destroy();
      done({ seconds: (spec.endAt - spec.measureAt) / 1000, bytes, requests, latencies, errors, errorSamples });
    }, spec.endAt - Date.now());
  });
}

/**
 * Starts `procs` generator processes (client i in process i % procs) and waits until each is
 * ready (tsx start-up takes seconds on a busy machine); then go() gives them the timeline.
 */
async function startLoad(paths: string[], procs: number): Promise<{ pids: number[]; go: (spec: Omit<LoadSpec, 'paths'>) => Promise<LoadResult> }> {
  const children: { child: ChildProcess; idx: number[] }[] = [];
  for (let k = 0; k < procs; k++) {
    const child = track(fork(import.meta.filename, ['--load'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    children.push({ child, idx: paths.map((_, i) => i).filter((i) => i % procs === k) });
  }
  await Promise.all(children.map(({ child }) => new Promise<void>((done, fail) => {
    child.once('message', () => done());
    child.once('exit', (code) => fail(new Error(`load generator exited (${code}) before it was ready`)));
  })));
  const go = async (spec: Omit<LoadSpec, 'paths'>): Promise<LoadResult> => {
    const all = await Promise.all(children.map(({ child, idx }) => new Promise<{ idx: number[]; r: LoadResult }>((done, fail) => {
      child.once('message', (r) => done({ idx, r: r as LoadResult }));
      child.once('exit', (code) => fail(new Error(`load generator exited (${code}) without a result`)));
      child.send({ ...spec, paths: idx.map((i) => paths[i]) });
    })));
    const out: LoadResult = { seconds: all[0]!.r.seconds, bytes: [], requests: [], latencies: [], errors: 0, errorSamples: [] };
    for (const { idx, r } of all) {
      idx.forEach((i, j) => {
        out.bytes[i] = r.bytes[j]!;
        out.requests[i] = r.requests[j]!;
      });
      out.latencies.push(...r.latencies);
      out.errors += r.errors;
      out.errorSamples.push(...r.errorSamples);
    }
    return out;
  };
  return { pids: children.map(({ child }) => pidOf(child)), go };
}

// ---- CPU: every process at once ----

interface ProcSnap { ppid: number; ticks: number }
interface Snapshot { procs: Map<number, ProcSnap>; machineTicks: number }

function snapshot(): Snapshot {
  const procs = new Map<number, ProcSnap>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // exited
    }
    // After "pid (comm) ": state, ppid, ..., utime (11), stime, cutime, cstime (14).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    procs.set(Number(name), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
  }
  // user nice system idle iowait irq softirq steal: everything but idle and iowait.
  const cpu = readFileSync('/proc/stat', 'latin1').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const machineTicks = cpu.reduce((a, b) => a + b, 0) - (cpu[3] ?? 0) - (cpu[4] ?? 0);
  return { procs, machineTicks };
}

/** Ticks of the roots and all their descendants alive in `s`. */
function groupTicks(s: Snapshot, roots: number[]): number {
  const members = new Set(roots.filter((p) => s.procs.has(p)));
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, p] of s.procs) {
      if (!members.has(pid) && members.has(p.ppid)) {
        members.add(pid);
        grew = true;
      }
    }
  }
  let t = 0;
  for (const pid of members) t += s.procs.get(pid)!.ticks;
  return t;
}

let clkTck = 0;
const tickS = (): number => 1 / (clkTck ||= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()));

// ---- HAProxy's stats: bytes each instance sent ----

/** Bytes each server of the balancer's backend has sent so far (`show stat`, column bout). */
async function serverBytes(h: Haproxy): Promise<Record<string, number>> {
  const lines = (await h.command('show stat')).split('\n');
  const cols = (lines[0] ?? '').replace(/^# /, '').split(',');
  const [sv, bout] = ['svname', 'bout'].map((c) => cols.indexOf(c));
  const r: Record<string, number> = {};
  for (const f of lines.slice(1).map((l) => l.split(','))) {
    if (f[0] === 'instances' && f[sv!] !== undefined && f[sv!] !== 'BACKEND') r[f[sv!]!] = Number(f[bout!]);
  }
  return r;
}

// ---- seeding ----

// ---- one measured run ----

interface Groups { [name: string]: number[] }

async function measure(
  name: string, port: number, paths: string[], headerLines: string, groups: Groups, o: Required<Omit<MultiOptions, 'log'>>, balancer: Haproxy | null,
): Promise<MultiRow> {
  const load = await startLoad(paths, o.loadProcs);
  const startAt = Date.now() + 200;
  const measureAt = startAt + o.warmupS * 1000;
  const endAt = measureAt + o.durationS * 1000;
  const result = load.go({ port, headerLines, startAt, measureAt, endAt });
  const all: Groups = { 'load generator': load.pids, ...groups };
  await sleep(measureAt - Date.now());
  const s0 = snapshot();
  const b0 = balancer === null ? {} : await serverBytes(balancer);
  await sleep(endAt - Date.now());
  const s1 = snapshot();
  const b1 = balancer === null ? {} : await serverBytes(balancer);
  const loadAvg = readFileSync('/proc/loadavg', 'latin1').split(' ').slice(0, 3).join(' ');
  const r = await result;

  const cpuS: Record<string, number> = {};
  let accounted = 0;
  for (const [g, roots] of Object.entries(all)) {
    cpuS[g] = (groupTicks(s1, roots) - groupTicks(s0, roots)) * tickS();
    accounted += cpuS[g];
  }
  const machineS = (s1.machineTicks - s0.machineTicks) * tickS();
  cpuS.other = Math.max(0, machineS - accounted);

  const total = r.bytes.reduce((a, b) => a + b, 0);
  const reqs = r.requests.reduce((a, b) => a + b, 0);
  const lat = Float64Array.from(r.latencies).sort();
  const pct = (p: number): number => (lat.length === 0 ? NaN : lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]!);
  const fair = total / paths.length;
  return {
    name, seconds: r.seconds, loadAvg,
    mibPerS: total / MIB / r.seconds,
    requestsPerS: reqs / r.seconds,
    p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: lat.length === 0 ? NaN : lat[lat.length - 1]!,
    errors: r.errors,
    errorSamples: r.errorSamples,
    minByteShare: Math.min(...r.bytes) / fair,
    maxByteShare: Math.max(...r.bytes) / fair,
    minRequestShare: Math.min(...r.requests) / (reqs / paths.length),
    starved: r.requests.filter((x) => x === 0).length,
    cpuS, machineS,
    perServerBytes: Object.fromEntries(Object.entries(b1).map(([k, v]) => [k, v - (b0[k] ?? 0)])),
  };
}

// ---- the whole run ----

export async function runMultiBench(options: MultiOptions = {}): Promise<MultiRow[]> {
  const o = {
    clients: options.clients ?? Number(process.env.MULTI_CLIENTS ?? 256),
    warmupS: options.warmupS ?? Number(process.env.MULTI_WARMUP_S ?? 5),
    durationS: options.durationS ?? Number(process.env.MULTI_DURATION_S ?? 15),
    loadProcs: options.loadProcs ?? Number(process.env.MULTI_LOAD_PROCS ?? availableParallelism()),
    balance: options.balance ?? process.env.MULTI_BALANCE ?? 'leastconn',
    path: options.path ?? (process.env.MULTI_PATH === 'api' ? 'api' : 'rear'),
  };
  const log = options.log ?? ((line: string) => console.log(line));
  const haproxyVersion = execFileSync(HAPROXY, ['-v'], { encoding: 'utf8' }).split('\n')[0]!.replace(/ - https.*/, '');
  tickS();
  const work = mkdtempSync(join(tmpdir(), 'ru-bench-multi-'));
  chmodSync(work, 0o755); // nginx's workers run as nobody
  const cluster = startPgCluster();
  let instances: Instances | null = null;
  let nginx: RunningTarget | null = null;
  const rows: MultiRow[] = [];
  try {
    const postmaster = Number(readFileSync(join(cluster.dir, 'data', 'postmaster.pid'), 'latin1').split('\n')[0]);
    const db = await cluster.createDatabase('multi');
    const wwwDir = join(work, 'www');
    mkdirSync(join(wwwDir, 'files'), { recursive: true, mode: 0o755 });
    for (let i = 0; i < o.clients; i++) writeFileSync(join(wwwDir, 'files', `c${i}.tar.gz`), randomBytes(MIB), { mode: 0o644 });

    // i1 creates the schema, the signing key and the admin token; i2 and i3 start later from copies of its --data.
    instances = await Instances.start({ db, work, names: ['i1'], args: ['--max-connections-per-address', '0'] });
    const token = instances.adminToken;
    const t0 = performance.now();
    // Host h<i> with its own ~1 MiB of random bytes (files/c<i>.tar.gz, which nginx serves), as the serving bench seeds them.
    await seed({ workDir: work, wwwDir, clients: o.clients, fileBytes: MIB }, instances.get('i1').url, token);
    log(`multi: seeded ${o.clients} hosts (1 MiB of random bytes each) through i1 into PostgreSQL in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    nginx = await nginxTarget().start({ workDir: mkdirIn(work, 'nginx'), wwwDir, clients: o.clients, fileBytes: MIB });
    const nginxGroup = { nginx: [nginx.target.pid!] };
    const nginxPaths = Array.from({ length: o.clients }, (_, i) => `/files/c${i}.tar.gz`);
    const ruPaths = Array.from({ length: o.clients }, (_, i) => (o.path === 'rear' ? `/rear/h${i}.tar.gz` : `/api/v1/hosts/h${i}/bundle`));
    const auth = `Authorization: Bearer ${token}\r\n`;
    const banner = (what: string): void => log(`multi: ${what}: ${o.warmupS} s warm-up, ${o.durationS} s measured`);

    banner('nginx, direct');
    rows.push(await measure('nginx, direct', Number(new URL(nginx.target.baseUrl).port), nginxPaths, '', nginxGroup, o, null));

    const viaHaproxy = async (name: string, backends: Instance[] | RunningTarget, paths: string[], headerLines: string): Promise<void> => {
      const toNginx = !Array.isArray(backends);
      const h = await startHaproxy(toNginx ? [{ name: 'nginx', url: backends.target.baseUrl }] : backends.map((b) => ({ name: b.name, url: b.url })),
        // nginx has no /healthz: its 404 is alive.
        { dir: mkdirIn(work, `haproxy-${rows.length}`), balance: o.balance, ...(toNginx ? { aliveStatus: '404' } : {}) });
      try {
        const pid = Number(execFileSync('pgrep', ['-P', String(process.pid), '-x', 'haproxy'], { encoding: 'utf8' }).trim());
        const groups: Groups = toNginx ? nginxGroup : { ...Object.fromEntries(backends.map((b) => [b.name, [b.pid!]])), postgres: [postmaster] };
        banner(name);
        const row = await measure(name, h.port, paths, headerLines, { haproxy: [pid], ...groups }, o, h);
        // HAProxy's own log says who answered an error (<NOSRV>: no instance was up) and why (termination state).
        if (row.errors > 0) row.errorSamples.push(...h.log().split('\n').filter((l) => / 50\d /.test(l)).slice(-3).map((l) => `haproxy: ${l.trim()}`));
        rows.push(row);
      } finally {
        await h.stop();
      }
    };
    await viaHaproxy('HAProxy -> nginx', nginx, nginxPaths, '');
    await viaHaproxy('HAProxy -> 1 instance', [instances.get('i1')], ruPaths, auth);
    await instances.add('i2');
    await instances.add('i3');
    await viaHaproxy('HAProxy -> 3 instances', [...instances.list], ruPaths, auth);
  } finally {
    await nginx?.stop();
    await instances?.close();
    cluster.destroy();
    rmSync(work, { recursive: true, force: true });
  }
  log(formatMulti(rows, o, haproxyVersion));
  return rows;
}

function mkdirIn(parent: string, name: string): string {
  const dir = join(parent, name);
  mkdirSync(dir, { mode: 0o755 });
  return dir;
}

function formatMulti(rows: MultiRow[], o: Required<Omit<MultiOptions, 'log'>>, haproxyVersion: string): string {
  const ref = rows.find((r) => r.name === 'HAProxy -> nginx');
  const head = ['run', 'MiB/s', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'slowest client (bytes)', 'slowest (requests)', 'fastest (bytes)', 'starved', 'x HAProxy->nginx'];
  const body = rows.map((r) => [
    r.name, r.mibPerS.toFixed(0), r.requestsPerS.toFixed(0), r.p50Ms.toFixed(0), r.p99Ms.toFixed(0), r.maxMs.toFixed(0), String(r.errors),
    `${r.minByteShare.toFixed(2)} of fair`, `${r.minRequestShare.toFixed(2)} of fair`, `${r.maxByteShare.toFixed(2)} of fair`, String(r.starved),
    ref ? `${(r.mibPerS / ref.mibPerS).toFixed(2)}x` : '-',
  ]);
  const groups = [...new Set(rows.flatMap((r) => Object.keys(r.cpuS)))];
  const cpuHead = ['CPU % of one core', ...groups, 'machine', 'load avg at end'];
  const cpuBody = rows.map((r) => [r.name, ...groups.map((g) => (g in r.cpuS ? (100 * r.cpuS[g]! / r.seconds).toFixed(0) : '-')), (100 * r.machineS / r.seconds).toFixed(0), r.loadAvg]);
  const split = rows.filter((r) => Object.keys(r.perServerBytes).length > 1).map((r) => {
    const t = Object.values(r.perServerBytes).reduce((a, b) => a + b, 0);
    return `${r.name}: bytes sent per server ${Object.entries(r.perServerBytes).map(([k, v]) => `${k} ${(100 * v / t).toFixed(0)} %`).join(', ')}`;
  });
  return [
    `Several instances behind HAProxy: ${o.clients} clients, each its own ~1 MiB bundle (${o.path === 'rear' ? '/rear/h<i>.tar.gz' : '/api/v1/hosts/h<i>/bundle'}; nginx: the same bytes as files), ` +
      `${o.durationS} s after ${o.warmupS} s warm-up, ${availableParallelism()} cores, ${haproxyVersion} (balance ${o.balance}), PostgreSQL 15 (metadata and blobs), ` +
      `load generator: ${o.loadProcs} Node processes, closed-loop latency; fair share = 1.00`,
    ...alignRows([head, ...body]),
    ...alignRows([cpuHead, ...cpuBody]),
    ...split,
    ...rows.filter((r) => r.errors > 0).map((r) => `${r.name}: ${r.errors} errors, e.g.:\n  ${r.errorSamples.join('\n  ')}`),
  ].join('\n');
}

function alignRows(rows: string[][]): string[] {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd());
}

// ---- entry points ----

if (process.argv[2] === '--load') {
  process.once('message', (spec) => void generateLoad(spec as LoadSpec).then((r) => process.send!(r, undefined, {}, () => process.exit(0))));
  process.send!('ready');
} else if (import.meta.filename === process.argv[1]) {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130)); // 'exit' stops the children
  await runMultiBench();
}
