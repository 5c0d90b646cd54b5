// What a rescue system reports about its hardware beside its identity facts: disks (sizes,
// models), network interfaces, memory and CPUs. None of it identifies a machine (resolution
// never uses it); it feeds the match hints an admin reads before assigning a pending machine
// (core/match.ts). It comes from an unauthenticated machine, so it is bounded and checked here,
// once, before any store keeps it: a malformed report is STORE_INVALID, never half-kept.

import { RuError } from '../errors.ts';
import { normalizeMac } from './facts.ts';

export interface HardwareDisk {
  /** Kernel name: sda, nvme0n1, vda. */
  readonly name: string;
  /** Bytes. */
  readonly size: number;
  readonly model: string | null;
}

export interface HardwareNic {
  readonly name: string;
  /** Canonical aa:bb:cc:dd:ee:ff, or null when it had none readable. */
  readonly mac: string | null;
  /** The kernel driver bound to it (e1000e, virtio_net), when known. */
  readonly driver: string | null;
}

export interface Hardware {
  readonly disks: readonly HardwareDisk[];
  readonly nics: readonly HardwareNic[];
  /** Bytes of RAM (MemTotal), or null. */
  readonly memory: number | null;
  /** Logical CPUs, or null. */
  readonly cpus: number | null;
  readonly cpuModel: string | null;
}

export const HARDWARE_LIMITS = { disks: 64, nics: 64, text: 128 } as const;

const invalid = (message: string): RuError => new RuError('STORE_INVALID', `hardware report: ${message}`, { what: 'hardware' });

// Printable text only (no control characters), bounded: shown to admins, escaped on output.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function text(v: unknown, what: string, nullable: true): string | null;
function text(v: unknown, what: string, nullable: false): string;
function text(v: unknown, what: string, nullable: boolean): string | null {
  if (v === null || v === undefined) {
    if (nullable) return null;
    throw invalid(`${what} is missing`);
  }
  if (typeof v !== 'string') throw invalid(`${what} is not text`);
  const t = v.trim();
  if (t.length > HARDWARE_LIMITS.text || CONTROL.test(t)) throw invalid(`${what} is longer than ${HARDWARE_LIMITS.text} characters or holds control characters`);
  if (t === '') {
    if (nullable) return null;
    throw invalid(`${what} is empty`);
  }
  return t;
}

function count(v: unknown, what: string, max: number): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw invalid(`${what} is not a whole number between 0 and ${max}`);
  return v;
}

const obj = (v: unknown, what: string): Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${what} is not an object`);
  return v as Record<string, unknown>;
};

const list = (v: unknown, what: string, max: number): unknown[] => {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid(`${what} is not a list`);
  if (v.length > max) throw invalid(`${what} lists more than ${max}`);
  return v;
};

/** A checked, canonical copy of a hardware report (unknown keys dropped), or STORE_INVALID. */
export function checkHardware(v: unknown): Hardware {
  const o = obj(v, 'the report');
  const disks = list(o.disks, 'disks', HARDWARE_LIMITS.disks).map((d, i) => {
    const x = obj(d, `disk ${i}`);
    return { name: text(x.name, `disk ${i} name`, false), size: count(x.size, `disk ${i} size`, Number.MAX_SAFE_INTEGER) ?? 0, model: text(x.model, `disk ${i} model`, true) };
  });
  const nics = list(o.nics, 'nics', HARDWARE_LIMITS.nics).map((n, i) => {
    const x = obj(n, `nic ${i}`);
    const raw = text(x.mac, `nic ${i} mac`, true);
    const mac = raw === null ? null : normalizeMac(raw);
    if (raw !== null && mac === null) throw invalid(`nic ${i} mac ${JSON.stringify(raw)} is not a MAC address`);
    return { name: text(x.name, `nic ${i} name`, false), mac, driver: text(x.driver, `nic ${i} driver`, true) };
  });
  return {
    disks,
    nics,
    memory: count(o.memory, 'memory', Number.MAX_SAFE_INTEGER),
    cpus: count(o.cpus, 'cpus', 1 << 20),
    cpuModel: text(o.cpuModel, 'cpuModel', true),
  };
}
