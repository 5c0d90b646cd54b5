// Stands in for src/server/main.ts in the rescue executable (scripts/build.mjs): the server
// needs a native SQLite module that a one-file executable cannot carry, and a rescue system
// never runs it. `serve` there says so instead of failing obscurely.

import { RuError } from '../core/errors.ts';

export function runServe(): Promise<void> {
  return Promise.reject(new RuError('USAGE', 'this is the rescue executable, which has no server; run `rear-update serve` from the npm package (npm start) on the server machine'));
}

export function runCheck(): Promise<void> {
  return runServe();
}
