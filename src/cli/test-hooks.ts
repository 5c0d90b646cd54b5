// Documented test hooks (docs/testing.md): crash or pause a commit or rollback at step N, so
// tests can prove that an interrupted transaction is always finished or undone. They only
// read the environment; someone who can set it can kill the process anyway.

import type { Op } from '../core/plan.ts';

function stepHook(crashVar: string, pauseVar: string): ((i: number) => void) | undefined {
  const crash = process.env[crashVar];
  const pause = process.env[pauseVar];
  if (crash === undefined && pause === undefined) return undefined;
  return (i: number) => {
    if (pause !== undefined && String(i) === pause) {
      process.stderr.write(`rear-update: test hook: paused before step ${i}\n`);
      // Block this thread (no event loop turns) so the test can kill -9 us mid-commit.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120_000);
    }
    if (crash !== undefined && String(i) === crash) process.kill(process.pid, 'SIGKILL');
  };
}

export function testHooks(): { beforeOp?: (i: number, op: Op | null) => void; beforeUndo?: (i: number) => void } {
  const beforeOp = stepHook('REAR_UPDATE_TEST_CRASH_AT', 'REAR_UPDATE_TEST_PAUSE_AT');
  const beforeUndo = stepHook('REAR_UPDATE_TEST_CRASH_UNDO_AT', 'REAR_UPDATE_TEST_PAUSE_UNDO_AT');
  return { ...(beforeOp ? { beforeOp } : {}), ...(beforeUndo ? { beforeUndo } : {}) };
}
