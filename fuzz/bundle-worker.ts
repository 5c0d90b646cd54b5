// A worker thread that runs bundle cases for the coordinator (bundle-target.ts). Cases run in a
// thread of their own so that a case that hangs, even in a synchronous loop, can be stopped
// (Worker.terminate) and reported instead of stopping the run.

import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { buildCase, planText } from './bundle-mutations.ts';
import { runCase, type CaseEnv } from './bundle-case.ts';
import { makeSeeds } from './bundle-seeds.ts';
import { planFor } from './bundle-plan.ts';

export interface WorkerInit {
  readonly work: string;
  readonly seed: number;
  readonly timeoutMs: number;
}

export interface CaseRequest {
  readonly index: number;
  readonly cli: boolean;
  /** Write the case's bytes here (reproduction). */
  readonly save?: string;
}

export interface CaseReply {
  readonly index: number;
  readonly outcome: string;
  readonly finding: { kind: string; detail: string } | null;
  readonly plan: string;
  readonly seedName: string;
}

const init = workerData as WorkerInit;
// apply prints its result; the coordinator reports instead.
process.stdout.write = (() => true) as typeof process.stdout.write;
process.stderr.write = (() => true) as typeof process.stderr.write;

rmSync(init.work, { recursive: true, force: true });
mkdirSync(join(init.work, 'keys'), { recursive: true });
const seeds = await makeSeeds(join(init.work, 'seeds'));
const env: CaseEnv = { work: init.work, trustedPub: seeds.trustedPub, keysDir: join(init.work, 'keys') };
const signed = seeds.seeds.map((s) => s.manifest !== null);

/** The case this worker ran before (a finding that depends on order names it). */
let previous: number | null = null;

parentPort?.on('message', (req: CaseRequest) => {
  void (async () => {
    const plan = planFor(init.seed, req.index, signed);
    const seedName = seeds.seeds[plan.seed]?.name ?? '?';
    try {
      const bytes = await buildCase(plan, seeds.seeds, seeds.keys, join(init.work, 'p', 'outside'));
      if (req.save) {
        const { writeFileSync } = await import('node:fs');
        writeFileSync(req.save, bytes);
      }
      const r0 = await runCase(env, bytes, plan.unsigned, { cli: req.cli, timeoutMs: init.timeoutMs });
      const r = r0.finding ? { ...r0, finding: { ...r0.finding, detail: `${r0.finding.detail} (previous case in this worker: ${String(previous)})` } } : r0;
      previous = req.index;
      parentPort?.postMessage({ index: req.index, outcome: r.outcome, finding: r.finding, plan: r.finding || req.save ? planText(plan) : '', seedName } satisfies CaseReply);
    } catch (e) {
      // The harness itself failed on this case: reported as a finding of its own kind.
      const detail = e instanceof Error ? (e.stack ?? e.message).split('\n').slice(0, 5).join(' | ') : String(e);
      parentPort?.postMessage({ index: req.index, outcome: 'harness-error', finding: { kind: 'harness-error', detail }, plan: planText(plan), seedName } satisfies CaseReply);
    }
  })();
});
parentPort?.postMessage('ready');
