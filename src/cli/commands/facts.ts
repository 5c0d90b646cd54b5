// `rear-update facts`: what this machine says about itself, the facts publish sends and the
// server resolves a booting machine by, and the facts it leaves out with the reason (in a
// rescue system: the image's own hostname, the template's DMI UUID and serial). Handy in a
// rescue shell before registering a host; the boot hook asks it for the hostname to use as id.
// It also shows the hardware apply reports with a recovery (never used to identify a machine).

import type { Command } from 'commander';
import { observeHardware, reportMachineFacts } from '../../adapters/fs/machine-facts.ts';
import { RuError } from '../../core/errors.ts';
import { formatBytes, out, printJson, table } from '../output.ts';
import { factSettings } from '../settings.ts';

const VALUES = ['hostname', 'macs', 'uuid', 'serial'] as const;

interface FactsFlags {
  sysRoot: string;
  hostname?: string;
  value?: string;
  json?: boolean;
}

export function registerFacts(program: Command): void {
  program
    .command('facts')
    .description('print this machine\'s identity facts (hostname, MACs of physical interfaces, DMI system UUID and serial) as apply sends them, and those it leaves out, with the reason')
    .option('--sys-root <dir>', 'read sys/, proc/ and etc/ (rear-release, HOSTNAME) below this directory instead of /', '/')
    .option('--hostname <name>', 'this machine\'s hostname, stated explicitly (env REAR_UPDATE_HOSTNAME)')
    .option('--value <fact>', 'print only this fact as it is sent (hostname, macs, uuid or serial); an empty line when it is left out')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Left out everywhere: loopback and virtual interfaces (bridges, bonds, veth, docker); the
bond's address on a bond slave (its permanent address is sent); random MACs (sysfs
addr_assign_type 1); placeholders firmware ships ("To be filled by O.E.M.", "Default string",
all-zero UUIDs); malformed values.

In a ReaR rescue system (etc/rear-release exists), also what the image carries over from the
machine it was made on (the template): the hostname of etc/HOSTNAME, etc/hostname or
REAR_UPDATE_IMAGE_HOSTNAME, and the DMI UUID and serial recorded as REAR_UPDATE_IMAGE_UUID and
REAR_UPDATE_IMAGE_SERIAL by install-rear. A hostname is sent only when it differs from the
image's (e.g. from DHCP) or is given (--hostname, REAR_UPDATE_HOSTNAME, kernel option
rear_update=hostname=NAME). Rules and reasons: docs/resolution.md.

The DMI serial is readable by root only.

Hardware (not a fact, never used to identify a machine; apply reports it when it opens a
recovery, and the server ranks hosts for a pending machine by it): physical disks of
sys/block (not virtual, removable or empty; size = sectors x 512, model), the physical NICs
(MAC, driver), memory (proc/meminfo MemTotal) and CPUs (proc/cpuinfo).

Examples:
  rear-update facts
  rear-update facts --json
  rear-update facts --value hostname`)
    .action((o: FactsFlags) => {
      if (o.value !== undefined && !(VALUES as readonly string[]).includes(o.value)) {
        throw new RuError('USAGE', `--value must be one of ${VALUES.join(', ')}, not ${o.value}`);
      }
      const r = reportMachineFacts(o.sysRoot, factSettings({ ...(o.hostname !== undefined ? { hostname: o.hostname } : {}) }));
      const f = r.facts;
      if (o.value !== undefined) {
        out(o.value === 'macs' ? f.macs.join(' ') : (f[o.value as 'hostname' | 'uuid' | 'serial'] ?? ''));
        return;
      }
      const hw = observeHardware(o.sysRoot);
      if (o.json) {
        printJson({ ...f, hostnameFrom: r.hostnameFrom, rescue: r.rescue, leftOut: r.leftOut, hardware: hw });
        return;
      }
      for (const l of table([
        ['hostname:', f.hostname ? `${f.hostname}${r.hostnameFrom === 'explicit' ? ' (given explicitly)' : ''}` : '-'],
        ['macs:', f.macs.join(' ') || '-'],
        ['uuid:', f.uuid ?? '-'],
        ['serial:', f.serial ?? '-'],
        ['rescue system:', r.rescue ? 'yes (etc/rear-release): the image\'s own facts are left out' : 'no'],
      ])) out(l);
      if (r.leftOut.length) {
        out('left out:');
        for (const l of r.leftOut) out(`  ${l.kind} ${l.value === '' ? '(empty)' : l.value}: ${l.reason}`);
      }
      out('hardware (reported with a recovery, a hint for admins; never identifies the machine):');
      for (const l of table([
        ...hw.disks.map((d) => ['  disk', d.name, formatBytes(d.size), d.model ?? '']),
        ...hw.nics.map((n) => ['  nic', n.name, n.mac ?? '-', n.driver ?? '']),
        ['  memory', hw.memory === null ? '-' : formatBytes(hw.memory)],
        ['  cpus', hw.cpus === null ? '-' : String(hw.cpus), hw.cpuModel ?? ''],
      ])) out(l);
    });
}
