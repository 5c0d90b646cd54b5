// Runs the activation steps that core/activation.ts decided on: one process each, in the root
// (through `chroot ROOT` when the root is not /, so that depmod, udevadm, modprobe and the
// hooks are the image's own), with a clean environment, a timeout that kills the step's whole
// process group, and its output on the screen and appended to the apply log. The first step
// that fails stops the rest: activation never goes on from a state nobody checked.

import { spawn } from 'node:child_process';
import { closeSync, lstatSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { commandLine, UDEV_CONTROL, type Step, type StepResult } from '../../core/activation.ts';

export interface RunnerOptions {
  /** The root, resolved; anything but / is entered with chroot. */
  readonly root: string;
  readonly timeoutSeconds: number;
  /** The apply log (appended). */
  readonly log: string;
  /** Copy each step's output to stderr. */
  readonly echo: boolean;
  /** What runs the steps, for the log: "apply", "rollback". */
  readonly label: string;
}

export interface StepOutcome extends StepResult {
  /** The last lines of its output, for the error message. */
  readonly tail: readonly string[];
}

/** Steps do not inherit apply's environment (a token, a proxy): a fixed PATH and their own variables. */
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const TAIL_LINES = 12;
/** After SIGTERM to a timed-out step's group, this long until SIGKILL. */
const KILL_GRACE_MS = 2000;
/** A step that exited but left a child holding its output open is done after this long. */
const OUTPUT_GRACE_MS = 1000;

/** udev runs in the root when its control socket is there. */
export function udevRunning(root: string): boolean {
  return lstatSync(join(root, UDEV_CONTROL), { throwIfNoEntry: false })?.isSocket() === true;
}

const stamp = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

class Log {
  private readonly fd: number;
  constructor(path: string) {
    this.fd = openSync(path, 'a', 0o600);
  }
  write(text: string): void {
    const b = Buffer.from(text);
    for (let off = 0; off < b.length; ) off += writeSync(this.fd, b, off);
  }
  close(): void {
    closeSync(this.fd);
  }
}

function detail(r: StepResult): string {
  if (r.status === 'skipped') return r.note ?? '';
  return [r.exit === null ? null : `exit ${r.exit}`, `${r.seconds.toFixed(2)} s`, r.note].filter((x) => x).join(', ');
}

/** One line per result, for the screen and status. */
export const resultLine = (r: StepResult): string =>
  `${r.status.padEnd(8)}${r.name}${r.status === 'skipped' ? '' : `: ${r.command}`} (${detail(r)})`;

function execute(step: Step, o: RunnerOptions, log: Log): Promise<StepOutcome> {
  const command = commandLine(step.argv);
  const argv = o.root === '/' ? [...step.argv] : ['chroot', o.root, ...step.argv];
  log.write(`[${stamp()}] ${o.label}: ${step.name}: ${commandLine(argv)}\n`);
  const started = performance.now();
  return new Promise((resolve) => {
    const tail: string[] = [];
    const partial = { out: '', err: '' };
    const line = (l: string): void => {
      tail.push(l);
      if (tail.length > TAIL_LINES) tail.shift();
      if (o.echo) process.stderr.write(`    ${l}\n`);
    };
    const take = (which: 'out' | 'err', chunk: Buffer): void => {
      log.write(chunk.toString('utf8'));
      const lines = (partial[which] + chunk.toString('utf8')).split('\n');
      partial[which] = lines.pop() ?? '';
      for (const l of lines) line(l);
    };
    let timedOut = false;
    let exit: number | null = null;
    let note: string | undefined;
    let finished = false;
    const timers: NodeJS.Timeout[] = [];
    const child = spawn(argv[0] as string, argv.slice(1), {
      cwd: o.root, env: { PATH, ...step.env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const killGroup = (signal: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // the group is gone already
      }
    };
    const finish = (): void => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearTimeout(t);
      const unterminated = partial.out !== '' || partial.err !== '';
      for (const w of ['out', 'err'] as const) if (partial[w] !== '') line(partial[w]);
      const seconds = Math.round((performance.now() - started) / 10) / 100;
      const status = timedOut ? 'timeout' : exit === 0 ? 'ok' : 'failed';
      const r: StepOutcome = { name: step.name, command, status, exit, seconds, ...(note ? { note } : {}), tail };
      log.write(`${unterminated ? '\n' : ''}[${stamp()}] ${step.name}: ${status} (${detail(r)})\n`);
      resolve(r);
    };
    child.stdout.on('data', (c: Buffer) => take('out', c));
    child.stderr.on('data', (c: Buffer) => take('err', c));
    timers.push(setTimeout(() => {
      timedOut = true;
      note = `did not finish within ${o.timeoutSeconds} s; its process group was killed`;
      killGroup('SIGTERM');
      timers.push(setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS));
    }, o.timeoutSeconds * 1000));
    child.on('error', (e) => {
      note = `could not be started: ${e.message}`;
      finish();
    });
    child.on('exit', (code, signal) => {
      exit = code;
      if (signal && !timedOut) note = `killed by ${signal}`;
      // A child it left behind may hold the output open: do not wait for it (a daemon a hook started).
      timers.push(setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish();
      }, OUTPUT_GRACE_MS));
    });
    child.on('close', () => finish());
  });
}

export interface RunResult {
  readonly results: StepResult[];
  /** The step that failed or timed out (the ones after it are recorded as skipped). */
  readonly failed: StepOutcome | null;
}

/**
 * Runs the steps in order. `onResult` sees each result as it is known (apply records it in the
 * installed record, so a status after a crash still shows how far activation got).
 */
export async function runSteps(steps: readonly Step[], o: RunnerOptions, onResult: (r: StepResult, all: readonly StepResult[]) => void = () => {}): Promise<RunResult> {
  const results: StepResult[] = [];
  let failed: StepOutcome | null = null;
  const log = new Log(o.log);
  try {
    for (const step of steps) {
      let r: StepResult;
      if (failed || step.skip) {
        const why = failed ? `not run: ${failed.name} failed` : (step.skip as string);
        r = { name: step.name, command: commandLine(step.argv), status: 'skipped', exit: null, seconds: 0, note: why };
        log.write(`[${stamp()}] ${o.label}: ${step.name}: skipped (${why})\n`);
      } else {
        const outcome = await execute(step, o, log);
        const { tail: _t, ...plain } = outcome;
        r = plain;
        if (outcome.status !== 'ok') failed = outcome;
      }
      results.push(r);
      onResult(r, results);
    }
  } finally {
    log.close();
  }
  return { results, failed };
}
