// Stands in for src/server/main.ts in the rescue executable (scripts/build.mjs): the server
// needs a native SQLite module that a one-file executable cannot carry, and a rescue system
// never runs it. `serve` there says so instead of failing obscurely.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { RuError } from '../core/errors.ts';

/** Where the packages put the server (docs/packaging.md): `rear-update serve` typed on a packaged server runs it. */
const PACKAGED_SERVER = '/usr/lib/rear-update/rear-update-server';

export function runServe(): Promise<void> {
  if (existsSync(PACKAGED_SERVER)) {
    const r = spawnSync(PACKAGED_SERVER, process.argv.slice(2), { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
  return Promise.reject(new RuError('USAGE', 'this is the rescue executable, which has no server; run `rear-update serve` from the npm package (npm start) on the server machine'));
}

export function runCheck(): Promise<void> {
  return runServe();
}

/** doctor --role server in the rescue executable: the same answer as serve. */
export const openMetadata = runServe;
export const openBlobs = runServe;
export const openLogBytes = runServe;
export const checkStore = runServe;
