// `rear-update rollback`: puts the root back exactly as it was before the last apply.

import type { Command } from 'commander';
import { StateDir } from '../../adapters/fs/state.ts';
import { Transactions } from '../../adapters/fs/transaction.ts';
import { RuError } from '../../core/errors.ts';
import { note, out } from '../output.ts';
import { testHooks } from '../test-hooks.ts';
import { resolveRoot } from './apply.ts';

export function registerRollback(program: Command): void {
  program
    .command('rollback')
    .description('undo the last apply: restore every replaced and removed file, remove what it created')
    .option('--root <dir>', 'the root the bundle was applied to', '/')
    .addHelpText('after', `
One level of undo: the state before the most recent successful apply. An apply that was
interrupted is rolled back automatically by the next apply, rollback or status.
Files added by hand after the apply inside directories it created are kept (and reported).`)
    .action((o: { root: string }) => {
      const root = resolveRoot(o.root);
      const state = new StateDir(root);
      state.open();
      try {
        const txns = new Transactions(state);
        const recovered = txns.recover();
        for (const line of recovered) note(line);
        const j = txns.lastCommitted();
        if (!j) {
          if (recovered.length > 0) return;
          throw new RuError('NOTHING_TO_ROLL_BACK', `no completed apply to roll back in ${root}`, { root });
        }
        const warnings: string[] = [];
        const hook = testHooks().beforeUndo;
        txns.undo(j, warnings, hook ? { beforeUndo: hook } : undefined);
        for (const w of warnings) note(w);
        out(`rolled back host ${j.next.host ?? '-'} version ${j.next.version ?? '-'} (${j.ops.length} changes undone)`);
        out(j.previous ? `installed now: host ${j.previous.host ?? '-'} version ${j.previous.version ?? '-'} from ${j.previous.source}` : 'installed now: nothing (the root is as before the first apply)');
      } finally {
        state.close();
      }
    });
}
