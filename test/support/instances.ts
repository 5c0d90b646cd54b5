// Several `rear-update serve` instances on one PostgreSQL database, each a process of its own
// (the built dist/rear-update.cjs, as an operator runs it), for the tests of issue 14's "several
// instances, one fleet". The first instance's start creates the signing key and the admin token
// in its --data; every further instance gets a copy of that directory, which is how instances
// share the key (it never goes into the database). Each instance keeps one fixed loopback port
// for its life, so that a restart comes back where a load balancer (test/support/haproxy.ts)
// expects it. kill9() is the crash, stop() the orderly SIGTERM, restart() starts it again on the
// same port and --data. Every process is killed when the test process exits, whatever happened.

import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI } from '../helpers.ts';
import { freePort } from './free-port.ts';

export { freePort };


export interface InstanceOptions {
  /** The shared database (`serve --db`). */
  readonly db: string;
  /** Where the instances' --data directories go (WORK/data-NAME). */
  readonly work: string;
  /** Instance names, in start order; the first creates the key. Default A, B, C. */
  readonly names?: readonly string[];
  /** `--blobs` (default postgres: no instance keeps bundle bytes of its own). */
  readonly blobs?: 'postgres' | 'dir';
  /** `--log-level` (default warn: request logs cost CPU on a loaded machine). */
  readonly logLevel?: string;
  /** More `serve` flags for every instance. */
  readonly args?: readonly string[];
  /** More environment for every instance. */
  readonly env?: Readonly<Record<string, string>>;
  /** How long a start may take before it counts as failed. */
  readonly startTimeoutMs?: number;
}

export interface Instance {
  readonly name: string;
  readonly port: number;
  /** http://127.0.0.1:PORT, the instance directly (not through a balancer). */
  readonly url: string;
  /** Its --data directory. */
  readonly data: string;
  /** The process id while it runs, else null. */
  readonly pid: number | null;
  readonly running: boolean;
  /** How many times it was started. */
  readonly starts: number;
}

const TAIL_BYTES = 64 * 1024;

class Proc implements Instance {
  child: ChildProcess | null = null;
  exited: Promise<void> = Promise.resolve();
  output = '';
  starts = 0;
  constructor(readonly name: string, public port: number, readonly data: string) {}
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  get pid(): number | null {
    return this.child?.pid ?? null;
  }
  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }
  note(s: string): void {
    this.output += s;
    if (this.output.length > TAIL_BYTES) this.output = this.output.slice(-TAIL_BYTES);
  }
}

/**
 * Every child of every Instances in this process, killed when the process exits (a failed test
 * skips its after()) or is told to stop (the test runner's SIGTERM on a timeout, ^C).
 */
const everyChild = new Set<ChildProcess>();
let exitHook = false;
function track(c: ChildProcess): void {
  everyChild.add(c);
  c.once('exit', () => everyChild.delete(c));
  if (exitHook) return;
  exitHook = true;
  const killAll = (): void => {
    for (const p of everyChild) p.kill('SIGKILL');
  };
  process.once('exit', killAll);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      killAll();
      // Then the signal's own effect, this process ending, through process.exit so that every
      // 'exit' hook runs too (test/support/postgres.ts stops its cluster there).
      process.exit(sig === 'SIGTERM' ? 143 : 130);
    });
  }
}

export class Instances {
  readonly #o: InstanceOptions;
  readonly #procs: Proc[] = [];
  #first: Proc | null = null;

  private constructor(o: InstanceOptions) {
    this.#o = o;
  }

  /** Starts the first instance alone (it creates the key, the admin token and the schema), then the others at once from copies of its --data. */
  static async start(o: InstanceOptions): Promise<Instances> {
    const set = new Instances(o);
    const names = o.names ?? ['A', 'B', 'C'];
    try {
      await set.add(names[0]!);
      await Promise.all(names.slice(1).map((n) => set.add(n)));
    } catch (e) {
      await set.close();
      throw e;
    }
    return set;
  }

  get list(): readonly Instance[] {
    return this.#procs;
  }

  get(name: string): Instance {
    return this.#proc(name);
  }

  /** The admin token the first start wrote. */
  get adminToken(): string {
    return readFileSync(join(this.#first!.data, 'admin.token'), 'utf8').trim();
  }

  /** The first instance's server.pub (every instance's is a copy). */
  get serverPub(): string {
    return join(this.#first!.data, 'server.pub');
  }

  /** The last output (stdout and stderr) of an instance, for an assertion message. */
  output(name: string): string {
    return this.#proc(name).output;
  }

  /**
   * Starts one more instance from a copy of the first one's --data (the first call makes the
   * first instance, which creates the key). Resolves once it says where it serves.
   */
  async add(name: string): Promise<Instance> {
    if (this.#procs.some((p) => p.name === name)) throw new Error(`instance ${name} exists`);
    const data = join(this.#o.work, `data-${name}`);
    if (this.#first) {
      if (!existsSync(data)) cpSync(this.#first.data, data, { recursive: true });
    }
    // A port taken between freePort() and the instance's listen: try another one.
    for (let attempt = 1; ; attempt++) {
      const p = new Proc(name, await freePort(), data);
      try {
        await this.#spawn(p);
        this.#procs.push(p);
        this.#first ??= p;
        return p;
      } catch (e) {
        if (attempt < 4 && /EADDRINUSE/.test(p.output)) continue;
        throw e;
      }
    }
  }

  async #spawn(p: Proc): Promise<void> {
    const o = this.#o;
    const args = [
      CLI, 'serve', '--db', o.db, '--blobs', o.blobs ?? 'postgres', '--data', p.data,
      '--listen', `127.0.0.1:${p.port}`, '--log-level', o.logLevel ?? 'warn', ...(o.args ?? []),
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } });
    track(child);
    p.child = child;
    p.starts++;
    p.note(`--- start ${p.starts} of ${p.name} (pid ${child.pid}) on port ${p.port}\n`);
    p.exited = new Promise<void>((r) => child.once('exit', (code, sig) => {
      p.note(`--- ${p.name} (pid ${child.pid}) exited: ${sig ?? code}\n`);
      r();
    }));
    child.stdout!.on('data', (d: Buffer) => p.note(d.toString()));
    let err: string | null = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`instance ${p.name} did not serve within ${o.startTimeoutMs ?? 90_000} ms:\n${p.output}`));
      }, o.startTimeoutMs ?? 90_000);
      child.stderr!.on('data', (d: Buffer) => {
        const s = d.toString();
        p.note(s);
        if (err === null) return;
        err += s;
        if (/serving http:\/\/\S+/.test(err)) {
          err = null;
          clearTimeout(timer);
          resolve();
        }
      });
      void p.exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`instance ${p.name} exited before serving:\n${p.output}`));
      });
    });
  }

  #proc(name: string): Proc {
    const p = this.#procs.find((x) => x.name === name);
    if (!p) throw new Error(`no instance ${name}`);
    return p;
  }

  /** kill -9: no close, no goodbye; resolves once the process is gone. */
  async kill9(name: string): Promise<void> {
    const p = this.#proc(name);
    if (!p.running) return;
    p.child!.kill('SIGKILL');
    await p.exited;
  }

  /** SIGTERM (the orderly stop), then SIGKILL if it has not ended within `graceMs`. */
  async stop(name: string, graceMs = 10_000): Promise<void> {
    const p = this.#proc(name);
    if (!p.running) return;
    p.child!.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([p.exited, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (p.running) {
      p.note(`--- ${p.name} did not stop within ${graceMs} ms of SIGTERM: SIGKILL\n`);
      p.child!.kill('SIGKILL');
      await p.exited;
    }
  }

  /** Starts a stopped or killed instance again: same port, same --data. */
  async restart(name: string): Promise<Instance> {
    const p = this.#proc(name);
    if (p.running) throw new Error(`instance ${name} is running`);
    await this.#spawn(p);
    return p;
  }

  /** Stops every instance (SIGTERM, SIGKILL after a few seconds). */
  async close(): Promise<void> {
    await Promise.all(this.#procs.map((p) => this.stop(p.name, 5000)));
  }
}
