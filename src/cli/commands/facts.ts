// `rear-update facts`: what this machine says about itself, the facts publish sends and the
// server resolves a booting machine by. Handy in a rescue shell before registering a host.

import type { Command } from 'commander';
import { readMachineFacts } from '../../adapters/fs/machine-facts.ts';
import { out, printJson, table } from '../output.ts';

export function registerFacts(program: Command): void {
  program
    .command('facts')
    .description('print this machine\'s identity facts: hostname, MACs of physical interfaces, DMI system UUID and serial')
    .option('--sys-root <dir>', 'read sys/ and proc/ below this directory instead of /', '/')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Loopback and virtual interfaces (bridges, bonds, veth, docker) are left out; a bonded
interface reports its permanent address. Placeholder values that firmware ships ("To be
filled by O.E.M.", all-zero UUIDs) are dropped. The DMI serial is readable by root only.`)
    .action((o: { sysRoot: string; json?: boolean }) => {
      const f = readMachineFacts(o.sysRoot);
      if (o.json) {
        printJson(f);
        return;
      }
      for (const l of table([
        ['hostname:', f.hostname ?? '-'],
        ['macs:', f.macs.join(' ') || '-'],
        ['uuid:', f.uuid ?? '-'],
        ['serial:', f.serial ?? '-'],
      ])) out(l);
    });
}
