// `rear-update rollback`: puts the root back exactly as it was before the last apply. When that
// apply was a layered one that changed kernel modules, depmod runs again afterwards, so that
// the module index matches the modules that are there once more.

import type { Command } from 'commander';
import { resultLine, runSteps } from '../../adapters/fs/activation-runner.ts';
import { StateDir } from '../../adapters/fs/state.ts';
import { Transactions } from '../../adapters/fs/transaction.ts';
import { depmodReleases, depmodStep } from '../../core/activation.ts';
import { RuError } from '../../core/errors.ts';
import { positiveInt } from '../options.ts';
import { note, out } from '../output.ts';
import { testHooks } from '../test-hooks.ts';
import { DEFAULT_STEP_TIMEOUT, failureOf, lastLines, resolveRoot, runnerFor } from './apply.ts';

interface RollbackFlags {
  root: string;
  stepTimeout?: number;
  quiet?: boolean;
}

export function registerRollback(program: Command): void {
  program
    .command('rollback')
    .description('undo the last apply: restore every replaced and removed file, remove what it created')
    .option('--root <dir>', 'the root the bundle was applied to', '/')
    .option('--step-timeout <seconds>', `how long depmod may run afterwards (default ${DEFAULT_STEP_TIMEOUT})`, positiveInt)
    .option('-q, --quiet', 'do not show depmod\'s output (it still goes to the apply log)')
    .addHelpText('after', `
One level of undo: the state before the most recent successful apply. An apply that was
interrupted is rolled back automatically by the next apply, rollback or status.
Files added by hand after the apply inside directories it created are kept (and reported).

When the undone apply was of a layered bundle and changed kernel modules, depmod -a REL runs
again for each such release (through chroot ROOT when --root is not /), so that modules.dep
lists what is installed once more; its output goes to var/lib/rear-update/activation.log. A
depmod that fails is ACTIVATION_FAILED (exit 10): the files are rolled back all the same.
Nothing else is undone: a module apply loaded stays loaded until reboot or rmmod.`)
    .action(async (o: RollbackFlags) => {
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
        // Read before the undo puts the previous record back: did this apply activate anything?
        const undone = state.readInstalled();
        const warnings: string[] = [];
        const hook = testHooks().beforeUndo;
        txns.undo(j, warnings, hook ? { beforeUndo: hook } : undefined);
        for (const w of warnings) note(w);
        out(`rolled back host ${j.next.host ?? '-'} version ${j.next.version ?? '-'} (${j.ops.length} changes undone)`);
        out(j.previous ? `installed now: host ${j.previous.host ?? '-'} version ${j.previous.version ?? '-'} from ${j.previous.source}` : 'installed now: nothing (the root is as before the first apply)');
        const releases = undone?.activation ? depmodReleases(j.ops.filter((op) => op.kind !== 'chmeta').map((op) => op.path)) : [];
        if (releases.length === 0) return;
        out(`module index${root === '/' ? '' : ` (each step through chroot ${root})`}:`);
        const run = await runSteps(releases.map(depmodStep), runnerFor(root, state, o, 'rollback'), (r) => out(`  ${resultLine(r)}`));
        const f = run.failed;
        if (f) {
          throw new RuError('ACTIVATION_FAILED', `the files are rolled back, but ${f.name} (${f.command}) ${failureOf(f)}: the module index may still list the removed modules; run it by hand${lastLines(f)}`, {
            step: f.name, command: f.command, status: f.status, exit: f.exit, lines: [...f.tail],
          });
        }
      } finally {
        state.close();
      }
    });
}
