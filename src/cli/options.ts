// Option parsers shared by several commands, so a flag means the same thing everywhere.

import { InvalidArgumentError } from 'commander';
import { DEFAULT_LIMITS, type Limits } from '../core/policy.ts';

export const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

export function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number');
  return n;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Byte counts accept K/M/G/T suffixes (powers of 1024): 512M, 2G. */
export function byteSize(v: string): number {
  const m = /^(\d+)([kmgt]?)(i?b)?$/i.exec(v.trim());
  if (!m) throw new InvalidArgumentError('expected a size such as 1048576, 512M or 2G');
  return Number(m[1]) * (SIZE_UNITS[(m[2] ?? '').toLowerCase()] ?? 1);
}

export interface LimitFlags {
  maxBytes?: number;
  maxEntries?: number;
  maxRatio?: number;
}

export const limitsFrom = (o: LimitFlags): Limits => ({
  ...DEFAULT_LIMITS,
  ...(o.maxBytes !== undefined ? { maxBytes: o.maxBytes } : {}),
  ...(o.maxEntries !== undefined ? { maxEntries: o.maxEntries } : {}),
  ...(o.maxRatio !== undefined ? { maxRatio: o.maxRatio } : {}),
});
