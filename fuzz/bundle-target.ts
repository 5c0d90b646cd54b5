// Runs bundle cases in worker threads, time-bounded and case-bounded: hands out case numbers,
// stops a case that exceeds its timeout (terminating its worker and starting a fresh one), and
// counts outcomes. The work directory lives on tmpfs (/dev/shm) when there is one: a rescue
// system's root is a tmpfs too, and the commit's flushes cost nothing there.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { CaseReply, CaseRequest, WorkerInit } from './bundle-worker.ts';
import { count, newReport, type RunReport } from './report.ts';

export interface BundleRunOptions {
  readonly seed: number;
  readonly cases: number;
  readonly seconds: number;
  readonly jobs: number;
  readonly timeoutMs: number;
  /** Every Nth case (and case 0) also runs through the CLI as a process (0: never). */
  readonly cliEvery: number;
  /** Run exactly these case numbers (reproduction) instead of 0, 1, 2, ... */
  readonly only?: readonly number[];
  /** With `only`: write each case's bytes to DIR/case-N.tar.gz. */
  readonly save?: string;
  readonly onCase?: (done: number) => void;
}

export const scratchBase = (): string => (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());

interface Slot {
  worker: Worker;
  dir: string;
}

export async function runBundles(o: BundleRunOptions): Promise<RunReport> {
  process.umask(0o022); // what GNU tar's implicit directories get, in this process and its workers
  const report = newReport('bundles', o.seed);
  const base = mkdtempSync(join(scratchBase(), 'ru-fuzz-'));
  // Interrupted (Ctrl-C, kill): leave no scratch directory behind on the tmpfs.
  const onSignal = (sig: NodeJS.Signals): void => {
    rmSync(base, { recursive: true, force: true });
    process.kill(process.pid, sig);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const start = Date.now();
  const deadline = start + o.seconds * 1000;
  const queue = o.only ? [...o.only] : null;
  let next = 0;
  const take = (): number | null => {
    if (queue) return queue.shift() ?? null;
    if (next >= o.cases || Date.now() >= deadline) return null;
    return next++;
  };
  let spawned = 0;
  const spawnWorker = async (): Promise<Slot> => {
    const dir = join(base, `w${spawned++}`);
    const init: WorkerInit = { work: dir, seed: o.seed, timeoutMs: o.timeoutMs };
    const worker = new Worker(new URL('./worker-entry.mjs', import.meta.url), { workerData: init, stdout: true, stderr: true });
    await new Promise<void>((resolve, reject) => {
      worker.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error(`worker said ${String(m)}`))));
      worker.once('error', reject);
    });
    return { worker, dir };
  };
  const runOne = (slot: Slot, req: CaseRequest): Promise<CaseReply | 'timeout' | Error> => new Promise((resolve) => {
    const timer = setTimeout(() => {
      cleanup();
      resolve('timeout');
    }, o.timeoutMs);
    const onMessage = (m: CaseReply): void => {
      cleanup();
      resolve(m);
    };
    const onError = (e: Error): void => {
      cleanup();
      resolve(e);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      slot.worker.off('message', onMessage);
      slot.worker.off('error', onError);
    };
    slot.worker.on('message', onMessage);
    slot.worker.on('error', onError);
    slot.worker.postMessage(req);
  });
  const reproduce = (i: number): string => `npm run fuzz -- --target bundles --seed ${o.seed} --case ${i}`;

  const lane = async (): Promise<void> => {
    let slot = await spawnWorker();
    for (let i = take(); i !== null; i = take()) {
      const cli = o.cliEvery > 0 && i % o.cliEvery === 0;
      const r = await runOne(slot, { index: i, cli, ...(o.save ? { save: join(o.save, `case-${i}.tar.gz`) } : {}) });
      if (r === 'timeout' || r instanceof Error) {
        const kind = r === 'timeout' ? 'hang' : 'crash';
        const detail = r === 'timeout' ? `no outcome within ${o.timeoutMs} ms` : `the worker died: ${r.message}`;
        report.findings.push({ target: 'bundles', seed: o.seed, case: i, kind, detail, input: '(see reproduce)', reproduce: reproduce(i) });
        count(report, kind);
        await slot.worker.terminate();
        rmSync(slot.dir, { recursive: true, force: true });
        slot = await spawnWorker();
      } else {
        count(report, r.outcome);
        if (r.finding) report.findings.push({ target: 'bundles', seed: o.seed, case: i, kind: r.finding.kind, detail: r.finding.detail, input: `seed bundle ${r.seedName}; plan ${r.plan}`, reproduce: reproduce(i) });
        if (o.only) process.stdout.write(`case ${i}: ${r.outcome}${r.finding ? ` (${r.finding.kind}: ${r.finding.detail})` : ''}\n  seed bundle ${r.seedName}\n  plan ${r.plan}\n`);
      }
      o.onCase?.(report.cases);
    }
    await slot.worker.terminate();
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, o.jobs) }, () => lane()));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmSync(base, { recursive: true, force: true });
  }
  report.seconds = (Date.now() - start) / 1000;
  return report;
}
