// Reads the identity facts a machine can prove about itself: hostname, the MAC addresses of
// its physical network interfaces, and the DMI system UUID and serial. publish sends them with
// a host's bundle; a booting rescue system resolves its host by them. Loopback and virtual
// interfaces (bridges, bonds, veth, docker...) are left out: they are not the hardware's.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { canonicalFacts, type CanonicalFacts } from '../../core/store/facts.ts';

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null; // absent, or root-only (product_serial) when not root
  }
}

/** `sysRoot` lets tests (and a chroot) point at another /sys and /proc. */
export function readMachineFacts(sysRoot = '/'): CanonicalFacts {
  const netDir = join(sysRoot, 'sys/class/net');
  const macs: string[] = [];
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
    // A bonded interface reports the bond's address; the permanent one is the hardware's.
    const mac = read(join(netDir, name, 'bonding_slave/perm_hwaddr')) ?? read(join(netDir, name, 'address'));
    if (mac) macs.push(mac);
  }
  const hostname = read(join(sysRoot, 'proc/sys/kernel/hostname')) ?? (sysRoot === '/' ? osHostname() : null);
  return canonicalFacts({
    macs,
    uuid: read(join(sysRoot, 'sys/class/dmi/id/product_uuid')),
    serial: read(join(sysRoot, 'sys/class/dmi/id/product_serial')),
    hostname,
  });
}
