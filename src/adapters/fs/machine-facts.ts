// Reads the identity facts a machine can prove about itself: hostname, the MAC addresses of
// its physical network interfaces, and the DMI system UUID and serial; and, for a ReaR rescue
// system, what its image says about the machine it was made on (/etc/rear-release,
// /etc/HOSTNAME, /etc/hostname). publish sends the facts with a host's bundle; a booting
// rescue system resolves its host by them. Loopback and virtual interfaces (bridges, bonds,
// veth, docker...) are not observed: they are not the hardware's. Which observed values are
// sent is decided in core/store/rescue-facts.ts.

import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { CanonicalFacts } from '../../core/store/facts.ts';
import { factsToSend, type FactReport, type FactSettings, type ObservedInterface, type ObservedMachine } from '../../core/store/rescue-facts.ts';

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null; // absent, or root-only (product_serial) when not root
  }
}

/** What sysfs, procfs and the image's /etc below `sysRoot` show; `sysRoot` lets tests (and a chroot) point elsewhere. */
export function observeMachine(sysRoot = '/'): ObservedMachine {
  const netDir = join(sysRoot, 'sys/class/net');
  const interfaces: ObservedInterface[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(netDir);
  } catch {
    // no sysfs (a container without it): no MACs
  }
  for (const name of names.sort()) {
    if (name === 'lo') continue;
    let target = '';
    try {
      target = readlinkSync(join(netDir, name));
    } catch {
      continue;
    }
    if (target.includes('/devices/virtual/')) continue;
    const assign = read(join(netDir, name, 'addr_assign_type'));
    interfaces.push({
      name,
      address: read(join(netDir, name, 'address')),
      permAddress: read(join(netDir, name, 'bonding_slave/perm_hwaddr')),
      assignType: assign !== null && /^\d+$/.test(assign) ? Number(assign) : null,
    });
  }
  const rescue = existsSync(join(sysRoot, 'etc/rear-release'));
  const imageHostnameFiles: { path: string; value: string }[] = [];
  if (rescue) {
    for (const path of ['etc/HOSTNAME', 'etc/hostname']) {
      const value = read(join(sysRoot, path));
      if (value) imageHostnameFiles.push({ path: `/${path}`, value });
    }
  }
  return {
    interfaces,
    uuid: read(join(sysRoot, 'sys/class/dmi/id/product_uuid')),
    serial: read(join(sysRoot, 'sys/class/dmi/id/product_serial')),
    hostname: read(join(sysRoot, 'proc/sys/kernel/hostname')) ?? (sysRoot === '/' ? osHostname() : null),
    rearRelease: rescue ? (read(join(sysRoot, 'etc/rear-release')) ?? '') : null,
    imageHostnameFiles,
  };
}

/** The facts this machine sends, and those it leaves out with the reason. */
export const reportMachineFacts = (sysRoot = '/', settings: FactSettings = {}): FactReport =>
  factsToSend(observeMachine(sysRoot), settings);

/** Just the facts sent (publish, install-rear). */
export const readMachineFacts = (sysRoot = '/', settings: FactSettings = {}): CanonicalFacts =>
  reportMachineFacts(sysRoot, settings).facts;
