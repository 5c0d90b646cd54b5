// Debian's HAProxy (/usr/sbin/haproxy) in front of server instances, for the tests of issue 14's
// "load balancing with a real balancer". Runs in the foreground (-db) as a child of the test
// process, with its configuration, its admin socket and its log in a directory of the test's;
// the frontend listens on a free loopback port. The configuration follows the README's worked
// example ("Running more than one server") where it matters to clients, with test timings:
//
// - health checks on GET /healthz every 300 ms, down after 2 failures, up after 1 success. A
//   503 counts as alive (http-check expect rstatus ^(200|503)$): an instance answers 503
//   STORE_BUSY while PostgreSQL is away, and taking every instance out then would only turn the
//   server's documented answer (503 with a code and Retry-After) into HAProxy's own 503 page; a
//   dead process (refused connection) is what is down. (`aliveStatus: '200'` is the README's
//   `http-check expect status 200`.)
// - `retries 3` with `option redispatch 1`: a request whose connection to an instance fails goes
//   to another one. Only connection failures are retried (HAProxy's default retry-on): a publish
//   must not be sent twice.
// - `timeout server` 90 s: longer than a held resolve (`wait` up to 25 s) and than a followed
//   log's quiet spells in the tests (the README gives log routes a backend of their own).
// - every answer carries `X-Served-By: NAME`, the instance HAProxy chose, so a test can tell
//   which instance serves a download (and kill that one).
// The process is killed when the test process exits, whatever happened.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './instances.ts';

export const HAPROXY = process.env.REAR_UPDATE_HAPROXY ?? '/usr/sbin/haproxy';

/** The response header that names the instance HAProxy sent a request to. */
export const SERVED_BY = 'x-served-by';

export interface Backend {
  /** A name of letters and digits: the server name in HAProxy's configuration and in X-Served-By. */
  readonly name: string;
  /** http://HOST:PORT of the instance. */
  readonly url: string;
}

export interface HaproxyOptions {
  /** Where the configuration, the admin socket and HAProxy's log go (created if missing). */
  readonly dir: string;
  /** `balance` algorithm (default roundrobin). */
  readonly balance?: string;
  /** Health-check interval in ms (default 300). */
  readonly interMs?: number;
  /** HTTP statuses of GET /healthz that count as alive, as HAProxy's rstatus regex (default 200 or 503). */
  readonly aliveStatus?: string;
  /** `timeout server` in seconds (default 90). */
  readonly serverTimeoutS?: number;
}

/** An instance's state as HAProxy's `show stat` says it: UP, DOWN, "UP 1/2" (going down), "DOWN 1/1" (going up), MAINT, ... */
export type ServerState = string;

export function haproxyConfig(port: number, socket: string, backends: readonly Backend[], o: Omit<HaproxyOptions, 'dir'> = {}): string {
  const inter = o.interMs ?? 300;
  return `# written by test/support/haproxy.ts
global
    maxconn 4096
    stats socket ${socket} mode 600 level admin
    log stdout format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlognull
    option redispatch 1
    retries 3
    timeout connect 2s
    timeout client 120s
    timeout server ${o.serverTimeoutS ?? 90}s
    timeout http-request 20s
    timeout http-keep-alive 2s
    timeout queue 10s
    timeout check 2s
    default-server inter ${inter}ms fastinter ${inter}ms downinter ${inter}ms fall 2 rise 1

frontend rear_update
    bind 127.0.0.1:${port}
    default_backend instances

backend instances
    balance ${o.balance ?? 'roundrobin'}
    option httpchk GET /healthz
    http-check expect rstatus ^(${o.aliveStatus ?? '200|503'})$
    http-response set-header X-Served-By %[srv_name]
${backends.map((b) => {
  const u = new URL(b.url);
  if (!/^[A-Za-z0-9]+$/.test(b.name)) throw new Error(`backend name ${JSON.stringify(b.name)}: letters and digits only`);
  return `    server ${b.name} ${u.hostname}:${u.port} check`;
}).join('\n')}
`;
}

/** Every HAProxy child of this process, killed at exit or on SIGTERM / SIGINT. */
const everyChild = new Set<ChildProcess>();
let exitHook = false;

export class Haproxy {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #socket: string;
  #log = '';

  constructor(readonly port: number, readonly dir: string, readonly config: string, socket: string, child: ChildProcess) {
    this.#socket = socket;
    this.#child = child;
    this.#exited = new Promise<void>((r) => child.once('exit', () => r()));
    const keep = (d: Buffer): void => {
      this.#log += d.toString();
      if (this.#log.length > 256 * 1024) this.#log = this.#log.slice(-256 * 1024);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  /** http://127.0.0.1:PORT: the balancer's frontend. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** HAProxy's output (its request log and warnings), the last 256 KiB. */
  log(): string {
    return this.#log;
  }

  /** One command on the admin socket, its whole answer. */
  command(cmd: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const c = net.createConnection(this.#socket);
      let out = '';
      c.setTimeout(5000, () => c.destroy(new Error(`haproxy admin socket: no answer to ${cmd}`)));
      c.on('connect', () => c.end(`${cmd}\n`));
      c.on('data', (d: Buffer) => (out += d.toString()));
      c.on('end', () => resolve(out));
      c.on('error', reject);
    });
  }

  /** Each instance's state, by name (`show stat`). */
  async states(): Promise<Record<string, ServerState>> {
    const csv = await this.command('show stat');
    const lines = csv.split('\n').filter((l) => l.trim() !== '');
    const header = (lines[0] ?? '').replace(/^# /, '').split(',');
    const [px, sv, st] = ['pxname', 'svname', 'status'].map((k) => header.indexOf(k));
    const out: Record<string, ServerState> = {};
    for (const l of lines.slice(1)) {
      const f = l.split(',');
      if (f[px!] === 'instances' && f[sv!] !== 'BACKEND' && f[sv!] !== 'FRONTEND') out[f[sv!]!] = f[st!]!;
    }
    return out;
  }

  /** Waits until the named instances are in exactly these states ('UP', 'DOWN'); returns how long that took (ms). */
  async waitStates(want: Readonly<Record<string, 'UP' | 'DOWN'>>, timeoutMs = 20_000): Promise<number> {
    const t0 = Date.now();
    let now: Record<string, ServerState> = {};
    while (Date.now() - t0 < timeoutMs) {
      now = await this.states();
      if (Object.entries(want).every(([n, s]) => now[n] === s)) return Date.now() - t0;
      await sleep(50);
    }
    throw new Error(`HAProxy: instances not ${JSON.stringify(want)} within ${timeoutMs} ms: ${JSON.stringify(now)}\n${this.#log.slice(-4000)}`);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.#child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#exited, new Promise<void>((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
    if (this.running) {
      this.#child.kill('SIGKILL');
      await this.#exited;
    }
  }
}

/**
 * Starts HAProxy in front of `backends` and waits until every one of them is UP (the first
 * health checks passed), so that a test's first request has every instance to go to.
 */
export async function startHaproxy(backends: readonly Backend[], o: HaproxyOptions): Promise<Haproxy> {
  mkdirSync(o.dir, { recursive: true });
  const socket = join(o.dir, 'admin.sock');
  const cfgFile = join(o.dir, 'haproxy.cfg');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = haproxyConfig(port, socket, backends, o);
    writeFileSync(cfgFile, config);
    const check = spawnSync(HAPROXY, ['-c', '-q', '-f', cfgFile], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`haproxy -c refused ${cfgFile} (${check.status ?? check.error?.message}):\n${check.stderr}${check.stdout}\n${config}`);
    const child = spawn(HAPROXY, ['-db', '-f', cfgFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    everyChild.add(child);
    child.once('exit', () => everyChild.delete(child));
    if (!exitHook) {
      exitHook = true;
      const killAll = (): void => {
        for (const c of everyChild) c.kill('SIGKILL');
      };
      process.once('exit', killAll);
      for (const sig of ['SIGTERM', 'SIGINT'] as const) {
        process.once(sig, () => {
          killAll();
          process.exit(sig === 'SIGTERM' ? 143 : 130);
        });
      }
    }
    const h = new Haproxy(port, o.dir, config, socket, child);
    // Listening once the admin socket answers; a port taken meanwhile ends the process.
    const t0 = Date.now();
    let up = false;
    while (h.running && Date.now() - t0 < 20_000) {
      if (await h.states().then(() => true, () => false)) {
        up = true;
        break;
      }
      await sleep(50);
    }
    if (!up) {
      await h.stop();
      if (attempt < 4 && /cannot bind|Address already in use/i.test(h.log())) continue;
      throw new Error(`haproxy did not start:\n${h.log()}`);
    }
    try {
      await h.waitStates(Object.fromEntries(backends.map((b) => [b.name, 'UP'])));
    } catch (e) {
      await h.stop();
      throw e;
    }
    return h;
  }
}
