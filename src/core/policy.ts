// The safe-extraction rules (docs/safe-extraction.md) that depend only on a member's header,
// and the limits with their defaults. Signed and unsigned bundles go through the same rules.

import { RuError } from './errors.ts';
import type { EntryType } from './manifest.ts';
import type { NameLimits } from './paths.ts';

export interface Limits extends NameLimits {
  /** Total bytes of file content. */
  readonly maxBytes: number;
  readonly maxEntries: number;
  /** Decompressed/compressed ratio, enforced once more than ratioGraceBytes were decompressed. */
  readonly maxRatio: number;
  readonly ratioGraceBytes: number;
}

const MiB = 1024 * 1024;

/**
 * Sized for a rescue system that lives in RAM: a whole ReaR configuration is a few MB, a
 * driver/script layer a few hundred; 1 GiB stops a bomb long before the machine runs out.
 */
export const DEFAULT_LIMITS: Limits = {
  maxBytes: 1024 * MiB,
  maxEntries: 100_000,
  maxNameBytes: 4096,
  maxComponentBytes: 255,
  maxDepth: 128,
  maxRatio: 200,
  ratioGraceBytes: 16 * MiB,
};

/** tar type names (as node-tar reports them) mapped to what we install, or null: refused. */
export function entryTypeOf(tarType: string): EntryType | null {
  switch (tarType) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      return 'file';
    case 'Directory':
      return 'dir';
    case 'SymbolicLink':
      return 'symlink';
    case 'Link':
      return 'hardlink';
    default:
      return null;
  }
}

const SETID = 0o6000;
const GROUP_OTHER_WRITE = 0o022;

/** Rules 4 and 5: no special files, no setuid/setgid, nothing group/world-writable. */
export function checkTypeAndMode(path: string, tarType: string, mode: number): EntryType {
  const type = entryTypeOf(tarType);
  if (type === null) {
    throw new RuError('ENTRY_TYPE_REFUSED', `${path || '.'}: ${tarType} members are never installed (rule 4)`, { path, type: tarType, rule: 4 });
  }
  if (type === 'symlink' || type === 'hardlink') return type; // a link's own mode means nothing
  if (mode & SETID) {
    throw new RuError('ENTRY_MODE_REFUSED', `${path || '.'}: mode ${mode.toString(8)} is setuid/setgid (rule 5)`, { path, mode: mode.toString(8), rule: 5 });
  }
  if (mode & GROUP_OTHER_WRITE) {
    throw new RuError('ENTRY_MODE_REFUSED', `${path || '.'}: mode ${mode.toString(8)} is group/world-writable (rule 5)`, { path, mode: mode.toString(8), rule: 5 });
  }
  return type;
}

/** Running totals checked as the archive streams in. */
export class LimitCounter {
  entries = 0;
  bytes = 0;

  constructor(private readonly limits: Limits) {}

  addEntry(path: string): void {
    this.entries += 1;
    if (this.entries > this.limits.maxEntries) {
      throw new RuError('LIMIT_ENTRIES', `more than ${this.limits.maxEntries} members (at ${path})`, { path, limit: this.limits.maxEntries });
    }
  }

  addBytes(path: string, n: number): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxBytes) {
      throw new RuError('LIMIT_BYTES', `unpacked size exceeds ${this.limits.maxBytes} bytes (at ${path})`, { path, limit: this.limits.maxBytes });
    }
  }

  checkRatio(compressed: number, decompressed: number): void {
    if (decompressed <= this.limits.ratioGraceBytes) return;
    if (decompressed > compressed * this.limits.maxRatio) {
      throw new RuError('LIMIT_RATIO', `data expands more than ${this.limits.maxRatio}:1 (${decompressed} bytes from ${compressed})`, { limit: this.limits.maxRatio });
    }
  }
}
