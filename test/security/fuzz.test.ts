// The fuzz harness's short run (fuzz/, docs/testing.md), with fixed seeds so a failure here is
// reproducible with `npm run fuzz -- --seed N --case M`: a few hundred mutated bundles through
// the in-process apply pipeline (a few through the CLI), each applied exactly as GNU tar
// extracts it or refused with a documented code and the root untouched; then one pass over
// every server route with malformed requests, each answered 2xx or 4xx with a code, and the
// server still serving. Bounded in time: on a loaded machine it runs fewer cases, not longer.

import assert from 'node:assert/strict';
import { it } from 'node:test';
import { runBundles } from '../../fuzz/bundle-target.ts';
import { formatReport } from '../../fuzz/report.ts';
import { RAW, runServer } from '../../fuzz/server-target.ts';

const SEED = 20261130;

it(`bundles (seed ${SEED}): mutated signed and unsigned bundles are applied exactly as GNU tar extracts them, or refused with a documented code leaving the root byte-identical`, async () => {
  const r = await runBundles({ seed: SEED, cases: 300, seconds: 25, jobs: 1, timeoutMs: 20_000, cliEvery: 150 });
  const report = formatReport(r).join('\n');
  assert.deepEqual(r.findings, [], report);
  assert.ok(r.cases >= 25, `too few cases ran: ${report}`);
  assert.ok((r.outcomes.applied ?? 0) > 0, `no case was applied: ${report}`);
  assert.ok(Object.keys(r.outcomes).filter((k) => k !== 'applied').length >= 5, `too few kinds of refusal: ${report}`);
});

it(`server (seed ${SEED}): one pass over every route with malformed requests, each answered 2xx or 4xx with a code, and the server keeps serving`, async () => {
  const r = await runServer({ seed: SEED, cases: 0, passes: 4, seconds: 10 });
  const report = formatReport(r).join('\n');
  assert.deepEqual(r.findings, [], report);
  assert.ok((r.routes ?? 0) >= 25, `routes found: ${String(r.routes)}`);
  assert.ok(r.cases >= RAW.length + (r.routes ?? 0), `not even one pass over the routes: ${report}`);
});
