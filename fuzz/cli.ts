// npm run fuzz -- [--target bundles|server|all] [--seed N] [--cases N] [--seconds S] [--jobs N]
//                 [--timeout MS] [--cli-every N] [--case N]... [--save DIR] [--json FILE]
// Time-bounded and seedable: prints the cases run, outcomes by code and every finding with the
// seed and case number that reproduce it. Exits 1 when there is a finding.

import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { runBundles } from './bundle-target.ts';
import { formatReport, type RunReport } from './report.ts';
import { runServer } from './server-target.ts';

const { values } = parseArgs({
  options: {
    target: { type: 'string', default: 'all' },
    seed: { type: 'string' },
    cases: { type: 'string' },
    seconds: { type: 'string', default: '60' },
    jobs: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '30000' },
    'cli-every': { type: 'string', default: '500' },
    case: { type: 'string', multiple: true },
    save: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(`npm run fuzz -- [--target bundles|server|all] [--seed N] [--cases N] [--seconds S]
  --target    bundles (mutated bundles into apply), server (malformed requests to every route), or all
  --seed N    run seed (default: random, printed); case N of seed S is always the same input
  --cases N   at most N cases per target (default: unbounded; --seconds bounds the run)
  --seconds S stop starting new cases after S seconds per target (default 60)
  --jobs N    bundle cases in N worker threads (default 1)
  --timeout MS  a case without an outcome after MS is a "hang" finding (default 30000)
  --cli-every N  every Nth bundle case also through the real CLI process (default 500; 0: never)
  --case N    reproduce: run only bundle case N (repeatable), printing its plan
  --save DIR  with --case: write each case's bundle to DIR/case-N.tar.gz
  --json FILE write the reports as JSON
`);
  process.exit(0);
}

const int = (v: string | undefined, name: string, dflt: number): number => {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    process.stderr.write(`fuzz: --${name} must be a whole number\n`);
    process.exit(2);
  }
  return n;
};

const seed = int(values.seed, 'seed', Math.floor(Math.random() * 2 ** 31));
const target = values.target ?? 'all';
if (!['bundles', 'server', 'all'].includes(target)) {
  process.stderr.write('fuzz: --target must be bundles, server or all\n');
  process.exit(2);
}
const cases = int(values.cases, 'cases', Number.MAX_SAFE_INTEGER);
const seconds = int(values.seconds, 'seconds', 60);
const only = values.case?.map((c) => int(c, 'case', 0));
if (values.save) mkdirSync(values.save, { recursive: true });

const reports: RunReport[] = [];
process.stdout.write(`fuzz: seed ${seed}, target ${target}${only ? `, cases ${only.join(' ')}` : `, up to ${cases === Number.MAX_SAFE_INTEGER ? 'unbounded' : cases} cases / ${seconds} s per target`}\n`);
if (target === 'bundles' || target === 'all') {
  let last = Date.now();
  reports.push(await runBundles({
    seed, cases, seconds, jobs: Math.max(1, int(values.jobs, 'jobs', 1)), timeoutMs: int(values.timeout, 'timeout', 30_000),
    cliEvery: int(values['cli-every'], 'cli-every', 500), ...(only ? { only } : {}), ...(values.save ? { save: values.save } : {}),
    onCase: (n) => {
      if (Date.now() - last > 10_000) {
        last = Date.now();
        process.stdout.write(`  bundles: ${n} cases\n`);
      }
    },
  }));
}
if ((target === 'server' || target === 'all') && !only) {
  reports.push(await runServer({ seed, cases, seconds }));
}
for (const r of reports) for (const l of formatReport(r)) process.stdout.write(`${l}\n`);
if (values.json) writeFileSync(values.json, `${JSON.stringify(reports, null, 2)}\n`);
process.exitCode = reports.some((r) => r.findings.length > 0) ? 1 : 0;
