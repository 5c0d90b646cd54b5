// `rear-update guard --on|--off [FILE]`: the boot hook's switch for the guard block in
// /etc/rear/rescue.conf that keeps `rear recover` from running with the image's own
// configuration while no host bundle is installed (see src/adapters/rear/boot-hook.ts).

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { RuError } from '../../core/errors.ts';
import { withBlock, withoutBlock } from '../../core/marked-block.ts';
import { GUARD_BLOCK, GUARD_LINES } from '../../adapters/rear/boot-hook.ts';

export function setGuard(file: string, on: boolean): void {
  const before = existsSync(file) ? readFileSync(file, 'utf8') : null;
  if (before === null && !on) return;
  const after = on
    ? withBlock(before ?? '', GUARD_BLOCK, 'written by the rear-update boot hook; removed once a bundle is installed', GUARD_LINES)
    : withoutBlock(before ?? '', GUARD_BLOCK);
  if (after === before) return;
  const tmp = `${file}.rear-update-tmp`;
  writeFileSync(tmp, after, { mode: 0o644 });
  renameSync(tmp, file);
}

export function registerGuard(program: Command): void {
  program
    .command('guard')
    .argument('[file]', 'the ReaR config file to guard', '/etc/rear/rescue.conf')
    .description('(used by the boot hook) make `rear recover` refuse to run while no host bundle is installed, or lift that')
    .option('--on', 'add the guard block')
    .option('--off', 'remove the guard block')
    .action((file: string, o: { on?: boolean; off?: boolean }) => {
      if (o.on === o.off) throw new RuError('USAGE', 'give exactly one of --on and --off');
      setGuard(file, o.on === true);
    });
}
