// Reads the identity facts a machine can prove about itself: hostname, the MAC addresses of
// its physical network interfaces, and the DMI system UUID and serial; and, for a ReaR rescue
// system, what its image says about the machine it was made on (/etc/rear-release,
// /etc/HOSTNAME, /etc/hostname). publish sends the facts with a host's bundle; a booting
// rescue system resolves its host by them. Loopback and virtual interfaces (bridges, bonds,
// veth, docker...) are not observed: they are not the hardware's. Which observed values are
// sent is decided in core/store/rescue-facts.ts. Beside the facts, observeHardware reads what
// the machine is made of (disks, NICs, memory, CPUs): never used to identify it, it helps an
// admin match a pending machine to a host (core/store/hardware.ts).

import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { basename, join } from 'node:path';
import type { CanonicalFacts } from '../../core/store/facts.ts';
import { normalizeMac } from '../../core/store/facts.ts';
import { checkHardware, HARDWARE_LIMITS, type Hardware, type HardwareDisk, type HardwareNic } from '../../core/store/hardware.ts';
import { factsToSend, type FactReport, type FactSettings, type ObservedInterface, type ObservedMachine } from '../../core/store/rescue-facts.ts';

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null; // absent, or root-only (product_serial) when not root
  }
}

const list = (dir: string): string[] => {
  try {
    return readdirSync(dir).sort();
  } catch {
    return []; // no sysfs (a container without it)
  }
};

/** The entries of a sysfs class directory (links to devices) that are hardware: not below /devices/virtual/. */
function physical(classDir: string): string[] {
  return list(classDir).filter((name) => {
    try {
      return !readlinkSync(join(classDir, name)).includes('/devices/virtual/');
    } catch {
      return false;
    }
  });
}

/** What sysfs, procfs and the image's /etc below `sysRoot` show; `sysRoot` lets tests (and a chroot) point elsewhere. */
export function observeMachine(sysRoot = '/'): ObservedMachine {
  const netDir = join(sysRoot, 'sys/class/net');
  const interfaces: ObservedInterface[] = [];
  for (const name of physical(netDir)) {
    if (name === 'lo') continue;
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

// Printable and short enough for checkHardware; anything else is dropped (null), not sent half-kept.
// eslint-disable-next-line no-control-regex
const printable = (v: string | null): string | null => (v && v.length <= HARDWARE_LIMITS.text && !/[\u0000-\u001f\u007f]/.test(v) ? v : null);

const linkName = (path: string): string | null => {
  try {
    return basename(readlinkSync(path));
  } catch {
    return null;
  }
};

function disksOf(sysRoot: string): HardwareDisk[] {
  const blockDir = join(sysRoot, 'sys/block');
  const disks: HardwareDisk[] = [];
  // Loop, ram, dm-*, md* and zram devices live below /devices/virtual/: not disks a recovery lays out.
  for (const name of physical(blockDir)) {
    if (read(join(blockDir, name, 'removable')) === '1') continue; // CD drives, card readers
    const sectors = Number(read(join(blockDir, name, 'size')));
    if (!Number.isSafeInteger(sectors) || sectors <= 0) continue; // an empty drive
    const size = sectors * 512; // sysfs counts 512-byte sectors whatever the device's own sector size
    if (!printable(name) || !Number.isSafeInteger(size)) continue;
    disks.push({ name, size, model: printable(read(join(blockDir, name, 'device/model'))) });
  }
  return disks.slice(0, HARDWARE_LIMITS.disks);
}

function nicsOf(sysRoot: string): HardwareNic[] {
  const m = observeMachine(sysRoot);
  const netDir = join(sysRoot, 'sys/class/net');
  return m.interfaces
    .filter((i) => printable(i.name))
    .map((i) => {
      // A bond slave's own address, as the facts take it.
      const raw = i.permAddress ?? i.address;
      return { name: i.name, mac: raw ? normalizeMac(raw) : null, driver: printable(linkName(join(netDir, i.name, 'device/driver'))) };
    })
    .slice(0, HARDWARE_LIMITS.nics);
}

function memoryOf(sysRoot: string): number | null {
  const kb = /^MemTotal:\s+(\d+)\s*kB/m.exec(read(join(sysRoot, 'proc/meminfo')) ?? '')?.[1];
  const bytes = kb === undefined ? NaN : Number(kb) * 1024;
  return Number.isSafeInteger(bytes) ? bytes : null;
}

function cpusOf(sysRoot: string): { cpus: number | null; cpuModel: string | null } {
  const info = read(join(sysRoot, 'proc/cpuinfo'));
  if (info === null) return { cpus: null, cpuModel: null };
  const n = (info.match(/^processor\s*:/gm) ?? []).length;
  // x86 says "model name"; arm64 "Model" (some boards), POWER "cpu".
  const model = /^(?:model name|Model|cpu)\s*:\s*(.+)$/m.exec(info)?.[1]?.trim() ?? null;
  return { cpus: n > 0 && n <= 1 << 20 ? n : null, cpuModel: printable(model?.replace(/\s+/g, ' ') ?? null) };
}

const NO_HARDWARE: Hardware = { disks: [], nics: [], memory: null, cpus: null, cpuModel: null };

/**
 * What this machine is made of, below `sysRoot`: physical disks (not removable, not empty),
 * the physical NICs the facts come from, memory and CPUs. Never throws: what cannot be read is
 * left out (an empty list, null), and the result always passes checkHardware.
 */
export function observeHardware(sysRoot = '/'): Hardware {
  try {
    return checkHardware({ disks: disksOf(sysRoot), nics: nicsOf(sysRoot), memory: memoryOf(sysRoot), ...cpusOf(sysRoot) });
  } catch {
    return NO_HARDWARE;
  }
}
