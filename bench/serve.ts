// HTTP serving benchmark: how fast a server hands each host its ~1 MB bundle when a fleet asks
// at once, next to nginx (sendfile) serving files of the same size on the same machine in the
// same run. The product server's target is >= 0.8x nginx's throughput.
//
// Each target is started on 127.0.0.1, probed (every client's path must answer 2xx), then
// loaded by wrk (C, its own process; never a Node client in a server's process) with 64 and
// 256 concurrent clients, each downloading its own file repeatedly: a warm-up, then a
// measured run. Reported per target and client count: requests/s, MB/s (10^6 bytes),
// p99 and max latency, errors (any error or non-2xx fails the run loudly), the server's peak
// RSS and CPU, wrk's CPU, and the throughput ratio to nginx. What "its own file" means
// exactly is documented in bench/wrk-paths.lua.
//
// Reading the figures: on two cores wrk itself needs more CPU than nginx (it copies every
// byte out of the socket 8 KiB at a time), so nginx's figures are close to what the load
// generator can take, and a ratio near 1 means "as good as the client can tell". p99 is
// wrk's, which corrects for coordinated omission (it adds the samples a client waiting for a
// slow response would have sent); max is uncorrected. A download still unanswered when a run
// ends is counted nowhere by wrk: a max close to the run's length is the sign of starvation.
//
// Targets are pluggable (TargetFactory); nginx is always the reference and runs first.
// Built in: nginxTarget() and plainNodeTarget() (bench/static-node-server.mjs, the
// "plain node:http" baseline). Targets run one after another, never at the same time: the
// machine has two cores and the load generator needs a good part of them.
//
//   node --import tsx bench/serve.ts     nginx vs plain node:http
//   SERVE_CLIENTS=64 SERVE_DURATION_S=5 SERVE_WARMUP_S=1 to shorten a run.

import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from '../test/support/free-port.ts';

export { freePort };
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const REPO = resolve(import.meta.dirname, '..');
const WRK_SCRIPT = join(import.meta.dirname, 'wrk-paths.lua');
const NODE_SERVER = join(import.meta.dirname, 'static-node-server.mjs');
const MIB = 1 << 20;
/** otherCpuPct above which the table flags a run as disturbed. */
const DISTURBED_PCT = 25;
const CORES = availableParallelism();

// ---- public API ----

/** Something that serves client i's file at baseUrl + pathFor(i). */
export interface ServeTarget {
  name: string;
  /** http://127.0.0.1:<port>; anything but 127.0.0.1 is refused. */
  baseUrl: string;
  /** Path client i (0-based) downloads, e.g. `/api/v1/hosts/h${i}/bundle`. */
  pathFor(i: number): string;
  /** Sent with every request, e.g. { Authorization: 'Bearer <token>' }. */
  headers?: Record<string, string>;
  /** Server process; it and its descendants are sampled for RSS and CPU. */
  pid?: number;
}

/** What a target is started with: the benchmark's files, one per client. */
export interface ServeContext {
  /** A private temporary directory the target may use. */
  workDir: string;
  /** Holds files/c<i>.tar.gz, i = 0 .. clients - 1, each fileBytes of random data. */
  wwwDir: string;
  clients: number;
  fileBytes: number;
}

export interface RunningTarget {
  target: ServeTarget;
  stop(): Promise<void>;
}

export interface TargetFactory {
  name: string;
  start(ctx: ServeContext): Promise<RunningTarget>;
}

export interface ServeOptions {
  /** Targets measured after nginx (the reference), in order. */
  targets?: TargetFactory[];
  /** Concurrent clients per measurement; default [64, 256]. */
  concurrency?: number[];
  warmupS?: number;
  durationS?: number;
  /** Size of each client's file; default 1 MiB. */
  fileBytes?: number;
  log?: (line: string) => void;
}

export interface ServeRow {
  target: string;
  clients: number;
  requestsPerS: number;
  /** 10^6 bytes per second, response headers included. */
  mbPerS: number;
  p50Ms: number;
  /** wrk's p99, corrected for coordinated omission. */
  p99Ms: number;
  maxMs: number;
  /** Always 0 in a returned report (a run with errors throws). */
  errors: number;
  /** Peak RSS of the server's processes during the measured run; null without a pid. */
  peakRssMiB: number | null;
  /** Server CPU during the measured run, % of one core (100 x cores = all of them). */
  serverCpuPct: number | null;
  /** wrk's CPU during the measured run, % of one core. */
  loadGenCpuPct: number;
  /**
   * CPU other processes used meanwhile (the server too when it has no pid; not interrupts),
   * plus steal, % of one core: a high figure means the run was disturbed.
   */
  otherCpuPct: number;
  /** mbPerS / nginx's mbPerS at the same client count. */
  ratioToNginx: number;
}

export interface ServeReport {
  config: {
    concurrency: number[];
    warmupS: number;
    durationS: number;
    fileBytes: number;
    cores: number;
    wrkThreads: Record<number, number>;
    nginx: string;
    wrk: string;
  };
  rows: ServeRow[];
  wallS: number;
}

/** Runs nginx, then each of options.targets, at each client count; prints and returns the figures. */
export async function runServeBench(options: ServeOptions = {}): Promise<ServeReport> {
  const t0 = performance.now();
  const concurrency = options.concurrency ?? [64, 256];
  const warmupS = options.warmupS ?? 2;
  const durationS = options.durationS ?? 10;
  const fileBytes = options.fileBytes ?? MIB;
  const log = options.log ?? ((line: string) => console.log(line));
  const tools = ensureTools();
  ticksPerSecond(); // getconf now, not while a measurement counts children's CPU
  const clients = Math.max(...concurrency);
  const workDir = mkdtempSync(join(tmpdir(), 'ru-serve-'));
  const removeWorkDir = (): void => rmSync(workDir, { recursive: true, force: true });
  const cancelAtExit = untilDone(removeWorkDir);
  const rows: ServeRow[] = [];
  try {
    chmodSync(workDir, 0o755); // nginx's workers run as nobody
    const wwwDir = join(workDir, 'www');
    makeFiles(wwwDir, clients, fileBytes);
    for (const [i, factory] of [nginxTarget(), ...(options.targets ?? [])].entries()) {
      const ctx: ServeContext = { workDir: mkdirIn(workDir, `target-${i}`), wwwDir, clients, fileBytes };
      rows.push(...(await measureTarget(factory, ctx, concurrency, warmupS, durationS, log)));
    }
  } finally {
    removeWorkDir();
    cancelAtExit();
  }
  setRatios(rows);
  const report: ServeReport = {
    config: {
      concurrency, warmupS, durationS, fileBytes, cores: CORES,
      wrkThreads: Object.fromEntries(concurrency.map((c) => [c, wrkThreads(c)])),
      nginx: tools.nginxVersion, wrk: tools.wrkVersion,
    },
    rows,
    wallS: (performance.now() - t0) / 1000,
  };
  log(formatServeTable(report));
  return report;
}

/** The table runServeBench prints. */
export function formatServeTable(report: ServeReport): string {
  const c = report.config;
  const head = ['target', 'clients', 'req/s', 'MB/s', 'p99 ms', 'max ms', 'errors', 'peak RSS MiB', 'server CPU', 'wrk CPU', 'other CPU', 'x nginx'];
  const body = report.rows.map((r) => [
    r.target, String(r.clients), r.requestsPerS.toFixed(0), r.mbPerS.toFixed(0), r.p99Ms.toFixed(0), r.maxMs.toFixed(0), String(r.errors),
    r.peakRssMiB === null ? '-' : r.peakRssMiB.toFixed(1), r.serverCpuPct === null ? '-' : `${r.serverCpuPct.toFixed(0)} %`,
    `${r.loadGenCpuPct.toFixed(0)} %`, `${r.otherCpuPct.toFixed(0)} %`, `${r.ratioToNginx.toFixed(2)}x`,
  ]);
  const disturbed = report.rows.filter((r) => r.otherCpuPct > DISTURBED_PCT).map((r) => `${r.target}/${r.clients}`);
  const title = `HTTP serving, ${c.fileBytes / MIB} MiB per client, ${c.durationS} s after a ${c.warmupS} s warm-up, ` +
    `${c.cores} cores (${c.nginx}, ${c.wrk}); CPU in % of one core; product target >= 0.8x nginx`;
  const note = disturbed.length === 0 ? [] :
    [`note: other processes took over ${DISTURBED_PCT} % of a core during ${disturbed.join(', ')}; those figures may be low`];
  return [title, ...alignColumns([head, ...body]), ...note].join('\n');
}

// ---- built-in targets ----

/** Debian's nginx: sendfile, one worker per core, access log off. The reference. */
export function nginxTarget(): TargetFactory {
  return { name: 'nginx', start: startNginx };
}

/** A minimal node:http server (bench/static-node-server.mjs) in its own process: the baseline. */
export function plainNodeTarget(): TargetFactory {
  return { name: 'plain node:http', start: startPlainNode };
}

const filePath = (i: number): string => `/files/c${i}.tar.gz`;

async function startNginx(ctx: ServeContext): Promise<RunningTarget> {
  const port = await freePort();
  const conf = join(ctx.workDir, 'nginx.conf');
  const errorLog = join(ctx.workDir, 'error.log');
  writeFileSync(conf, nginxConf(ctx, port, errorLog));
  const child = track(spawn(NGINX, ['-p', ctx.workDir, '-c', conf, '-e', errorLog], { stdio: ['ignore', 'ignore', 'pipe'] }));
  const target: ServeTarget = { name: 'nginx', baseUrl: `http://127.0.0.1:${port}`, pathFor: filePath, pid: pidOf(child) };
  await waitUntilServing(target, child, () => readIfExists(errorLog));
  return { target, stop: () => stopProcess(child) };
}

function nginxConf(ctx: ServeContext, port: number, errorLog: string): string {
  const tmp = ctx.workDir;
  return `daemon off;
master_process on;
worker_processes ${CORES};
pid ${join(tmp, 'nginx.pid')};
error_log ${errorLog} warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { application/gzip gz; }
  default_type application/octet-stream;
  client_body_temp_path ${tmp}/client_body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  server {
    listen 127.0.0.1:${port};
    location /files/ { root ${ctx.wwwDir}; }
  }
}
`;
}

async function startPlainNode(ctx: ServeContext): Promise<RunningTarget> {
  const child = track(spawn(process.execPath, [NODE_SERVER, ctx.wwwDir], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const { port } = JSON.parse(await firstLine(child)) as { port: number };
  const target: ServeTarget = { name: 'plain node:http', baseUrl: `http://127.0.0.1:${port}`, pathFor: filePath, pid: pidOf(child) };
  await waitUntilServing(target, child, () => stderr);
  return { target, stop: () => stopProcess(child) };
}

// ---- measuring ----

interface WrkResult {
  durationUs: number;
  requests: number;
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latencyUs: { p50: number; p90: number; p99: number; max: number; mean: number };
  threads: number;
  distinctPaths: number;
  issuedPerPath: { min: number; max: number };
}

async function measureTarget(
  factory: TargetFactory, ctx: ServeContext, concurrency: number[], warmupS: number, durationS: number,
  log: (line: string) => void,
): Promise<ServeRow[]> {
  log(`${factory.name}: starting`);
  const running = await factory.start(ctx);
  try {
    const { target } = running;
    assertLoopback(target.baseUrl);
    const minBody = await probe(target, ctx.clients);
    const rows: ServeRow[] = [];
    for (const clients of concurrency) {
      log(`${target.name}, ${clients} clients: ${warmupS} s warm-up, ${durationS} s measured`);
      const pathsFile = writePaths(ctx.workDir, target, clients);
      if (warmupS > 0) validate(target, clients, minBody, await runWrk(target, clients, warmupS, pathsFile));
      rows.push(await measuredRun(target, clients, durationS, pathsFile, minBody));
    }
    return rows;
  } finally {
    await running.stop();
  }
}

async function measuredRun(target: ServeTarget, clients: number, durationS: number, pathsFile: string, minBody: number): Promise<ServeRow> {
  const sampler = target.pid === undefined ? null : startSampler(target.pid);
  const childCpu0 = childrenCpuS();
  const busy0 = machineBusyS();
  const r = await runWrk(target, clients, durationS, pathsFile);
  const busyS = machineBusyS() - busy0;
  const loadGenCpuS = childrenCpuS() - childCpu0;
  const server = sampler?.stop() ?? null;
  validate(target, clients, minBody, r);
  const seconds = r.durationUs / 1e6;
  const otherCpuS = Math.max(0, busyS - loadGenCpuS - (server?.cpuS ?? 0));
  return {
    target: target.name, clients,
    requestsPerS: r.requests / seconds,
    mbPerS: r.bytes / 1e6 / seconds,
    p50Ms: r.latencyUs.p50 / 1000, p99Ms: r.latencyUs.p99 / 1000, maxMs: r.latencyUs.max / 1000,
    errors: totalErrors(r),
    peakRssMiB: server === null ? null : server.peakRssKiB / 1024,
    serverCpuPct: server === null ? null : (100 * server.cpuS) / seconds,
    loadGenCpuPct: (100 * loadGenCpuS) / seconds,
    otherCpuPct: (100 * otherCpuS) / seconds,
    ratioToNginx: NaN,
  };
}

function setRatios(rows: ServeRow[]): void {
  for (const r of rows) {
    const ref = rows.find((x) => x.target === 'nginx' && x.clients === r.clients);
    r.ratioToNginx = ref ? r.mbPerS / ref.mbPerS : NaN;
  }
}

/** One GET per client path: each must answer 2xx with a body; returns the smallest body size. */
async function probe(target: ServeTarget, clients: number): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < clients; i++) {
    const url = target.baseUrl + target.pathFor(i);
    const res = await fetch(url, { headers: target.headers ?? {} });
    const body = await res.arrayBuffer();
    if (!res.ok || body.byteLength === 0) throw new Error(`${target.name}: GET ${url} -> ${res.status}, ${body.byteLength} bytes`);
    min = Math.min(min, body.byteLength);
  }
  return min;
}

/** A run is valid only without any error, with every client's path in use and whole bodies. */
function validate(target: ServeTarget, clients: number, minBody: number, r: WrkResult): void {
  const problems: string[] = [];
  if (totalErrors(r) > 0) problems.push(`errors ${JSON.stringify(r.errors)} (status = non-2xx/3xx responses)`);
  if (r.requests === 0) problems.push('no request completed');
  if (r.threads !== wrkThreads(clients)) problems.push(`${r.threads} wrk threads set up, expected ${wrkThreads(clients)}`);
  if (r.distinctPaths !== clients || r.issuedPerPath.min < 1) problems.push(`${r.distinctPaths} paths in use, expected ${clients}`);
  // wrk counts 4xx/5xx only; a 3xx or short answer shows up as too few bytes per request.
  if (r.bytes < r.requests * minBody) problems.push(`${r.bytes} bytes for ${r.requests} requests of >= ${minBody} bytes`);
  if (problems.length > 0) {
    throw new Error(`INVALID RUN: ${target.name} with ${clients} clients: ${problems.join('; ')}`);
  }
}

const totalErrors = (r: WrkResult): number => Object.values(r.errors).reduce((a, b) => a + b, 0);

// ---- wrk ----

/** wrk threads: one per core (one per connection measured 30 % slower, p99 25x, on 2 cores). */
function wrkThreads(clients: number): number {
  let t = Math.min(CORES, clients);
  while (clients % t !== 0) t--; // wrk drops connections that do not divide evenly
  return t;
}

function writePaths(dir: string, target: ServeTarget, clients: number): string {
  const file = join(dir, `paths-${clients}.txt`);
  const paths = Array.from({ length: clients }, (_, i) => target.pathFor(i));
  if (paths.some((p) => !p.startsWith('/') || /\s/.test(p))) throw new Error(`${target.name}: paths must start with / and have no spaces`);
  writeFileSync(file, `${paths.join('\n')}\n`);
  return file;
}

async function runWrk(target: ServeTarget, clients: number, seconds: number, pathsFile: string): Promise<WrkResult> {
  const threads = wrkThreads(clients);
  const headers = Object.entries(target.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  // wrk counts a response slower than --timeout as an error and keeps no latency for it; past
  // the run's length, every response that completes is measured (a slow one shows in p99/max).
  const timeout = `${seconds + 1}s`;
  const args = ['-t', String(threads), '-c', String(clients), '-d', `${seconds}s`, '--timeout', timeout, '-s', WRK_SCRIPT, ...headers, target.baseUrl];
  const env = { ...process.env, WRK_PATHS_FILE: pathsFile, WRK_THREADS: String(threads) };
  const { code, stdout, stderr } = await run('wrk', args, env);
  const line = stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (code !== 0 || line === undefined) throw new Error(`wrk failed (exit ${code}): ${stderr}${stdout}`);
  return JSON.parse(line.slice('WRK_JSON '.length)) as WrkResult;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = track(spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

// ---- /proc sampling ----

interface Sampler {
  stop(): { peakRssKiB: number; cpuS: number };
}

let clkTck = 0;
const ticksPerSecond = (): number => (clkTck ||= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()));

/**
 * Samples a process and its descendants: the sum of their VmHWM, reset (clear_refs) at the
 * start, or where that is not permitted the largest sum of VmRSS seen every 100 ms; and their
 * CPU time.
 */
function startSampler(pid: number): Sampler {
  const hwmReset = procTree(pid).every(resetHwm);
  const cpu0 = treeCpuTicks(pid);
  let sampled = 0;
  const sample = (): void => {
    sampled = Math.max(sampled, sumStatus(procTree(pid), 'VmRSS'));
  };
  sample();
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      const hwm = hwmReset ? sumStatus(procTree(pid), 'VmHWM') : 0;
      return { peakRssKiB: Math.max(hwm, sampled), cpuS: (treeCpuTicks(pid) - cpu0) / ticksPerSecond() };
    },
  };
}

/** pid and all its descendants that are alive. */
function procTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i] as number;
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // exited
    }
    for (const t of tasks) {
      const children = readIfExists(`/proc/${p}/task/${t}/children`).trim();
      if (children) out.push(...children.split(/\s+/).map(Number));
    }
  }
  return out;
}

function resetHwm(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

function sumStatus(pids: number[], field: 'VmRSS' | 'VmHWM'): number {
  let kib = 0;
  for (const p of pids) {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readIfExists(`/proc/${p}/status`));
    if (m) kib += Number(m[1]);
  }
  return kib;
}

/** utime + stime of the live tree, in clock ticks. */
function treeCpuTicks(pid: number): number {
  return procTree(pid).reduce((sum, p) => sum + statTicks(`/proc/${p}/stat`, 11, 12), 0);
}

/** CPU of this process's waited-for children (here: the wrk runs that have ended), in seconds. */
function childrenCpuS(): number {
  return statTicks('/proc/self/stat', 13, 14) / ticksPerSecond();
}

/** CPU time all processes of the machine used since boot, plus steal, in seconds (no interrupts). */
function machineBusyS(): number {
  const cpu = readIfExists('/proc/stat').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  const [user = 0, nice = 0, system = 0, , , , , steal = 0] = cpu; // guest time is part of user
  return (user + nice + system + steal) / ticksPerSecond();
}

/** Two fields of a /proc stat file, counted from the one after the command name, summed. */
function statTicks(file: string, a: number, b: number): number {
  const stat = readIfExists(file);
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[a] ?? 0) + Number(fields[b] ?? 0);
}

// ---- processes, files, tools ----

const NGINX = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
/** Clean-ups still due if this process exits (or calls process.exit()) before they ran. */
const atExit = new Set<() => void>();
let atExitHooked = false;

function untilDone(cleanup: () => void): () => void {
  if (!atExitHooked) {
    process.on('exit', () => atExit.forEach((f) => f()));
    atExitHooked = true;
  }
  atExit.add(cleanup);
  return () => atExit.delete(cleanup);
}

/** A child that is stopped when this process exits (nginx stops its workers on SIGTERM). */
export function track(child: ChildProcess): ChildProcess {
  const done = untilDone(() => child.kill('SIGTERM'));
  child.on('exit', done);
  return child;
}

export function pidOf(child: ChildProcess): number {
  if (child.pid === undefined) throw new Error(`could not start ${child.spawnfile}`);
  return child.pid;
}

/** SIGTERM (nginx: fast shutdown), then SIGKILL the whole tree after 5 s. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const tree = procTree(pidOf(child));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  if (await Promise.race([exited.then(() => true), sleep(5000, false, { ref: false })])) return;
  for (const p of tree) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await exited;
}

export async function waitUntilServing(target: ServeTarget, child: ChildProcess, diagnostics: () => string): Promise<void> {
  const url = target.baseUrl + target.pathFor(0);
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    try {
      const res = await fetch(url, { headers: target.headers ?? {} });
      await res.arrayBuffer();
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`${target.name} did not start serving ${url}: ${diagnostics()}`);
}

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((done, fail) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) done(buf.slice(0, nl));
    });
    child.once('exit', (code) => fail(new Error(`${child.spawnfile} exited (${code}) before it printed a line`)));
  });
}


function assertLoopback(baseUrl: string): void {
  const u = new URL(baseUrl);
  if (u.protocol !== 'http:' || u.hostname !== '127.0.0.1' || u.pathname !== '/') {
    throw new Error(`target baseUrl must be http://127.0.0.1:<port>, got ${baseUrl}`);
  }
}

function makeFiles(wwwDir: string, count: number, bytes: number): void {
  const dir = join(wwwDir, 'files');
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (let i = 0; i < count; i++) writeFileSync(join(dir, `c${i}.tar.gz`), randomBytes(bytes), { mode: 0o644 });
}

function mkdirIn(parent: string, name: string): string {
  const dir = join(parent, name);
  mkdirSync(dir, { mode: 0o755 });
  return dir;
}

function readIfExists(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** nginx and wrk from Debian; installs what is missing with scripts/ensure-system-deps.sh. */
function ensureTools(): { nginxVersion: string; wrkVersion: string } {
  const version = (): { nginxVersion: string; wrkVersion: string } | null => {
    const n = spawnSync(NGINX, ['-v'], { encoding: 'utf8' }); // prints to stderr
    const w = spawnSync('wrk', ['-v'], { encoding: 'utf8' }); // exits 1
    if (n.error || w.error) return null;
    return { nginxVersion: n.stderr.replace('nginx version: ', '').trim(), wrkVersion: w.stdout.split(' [')[0] ?? 'wrk' };
  };
  const found = version();
  if (found) return found;
  execFileSync('bash', [join(REPO, 'scripts', 'ensure-system-deps.sh')], { stdio: 'inherit' });
  const installed = version();
  if (!installed) throw new Error('nginx and wrk are needed: apt-get install nginx wrk');
  return installed;
}

function alignColumns(rows: string[][]): string[] {
  const w = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] as string).length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i] as number)).join('  ').trimEnd());
}

// ---- standalone: nginx vs plain node:http ----

if (process.argv[1] !== undefined && resolve(process.argv[1]) === import.meta.filename) {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130)); // 'exit' stops servers
  const envList = process.env.SERVE_CLIENTS?.split(',').map(Number);
  const report = await runServeBench({
    targets: [plainNodeTarget()],
    ...(envList ? { concurrency: envList } : {}),
    ...(process.env.SERVE_WARMUP_S ? { warmupS: Number(process.env.SERVE_WARMUP_S) } : {}),
    ...(process.env.SERVE_DURATION_S ? { durationS: Number(process.env.SERVE_DURATION_S) } : {}),
  });
  console.log(`whole run: ${report.wallS.toFixed(0)} s`);
}
