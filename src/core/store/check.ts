// The invariants of a host's versions that every metadata backend checks the same way in its
// check(): numbered 1..n without a gap (a number is never given twice, and versions are never
// deleted), a pin that names one of them, and well-formed blob names and sizes. Pure.

import type { StoreProblem } from './metadata.ts';
import { SHA256_PATTERN } from './validate.ts';

export interface VersionFacts {
  readonly version: number;
  readonly blob: string;
  readonly size: number;
}

/** Problems of one host's versions (any order) and pin. */
export function versionProblems(host: string, versions: readonly VersionFacts[], pinned: number | null): StoreProblem[] {
  const out: StoreProblem[] = [];
  const numbers = versions.map((v) => v.version).sort((a, b) => a - b);
  const firstGap = numbers.findIndex((n, i) => n !== i + 1);
  if (firstGap >= 0) {
    out.push({ kind: 'version-gap', host, version: firstGap + 1, message: `host ${host}: versions are not numbered 1..${numbers.length} (version ${firstGap + 1} is missing or repeated; found ${numbers.slice(0, 10).join(', ')}${numbers.length > 10 ? ', …' : ''})` });
  }
  if (pinned !== null && !numbers.includes(pinned)) {
    out.push({ kind: 'pin-missing', host, version: pinned, message: `host ${host} is pinned to version ${pinned}, which does not exist` });
  }
  for (const v of versions) {
    if (!SHA256_PATTERN.test(v.blob) || !Number.isSafeInteger(v.size) || v.size < 0) {
      out.push({ kind: 'version-invalid', host, version: v.version, message: `host ${host} version ${v.version}: blob ${JSON.stringify(v.blob)} or size ${v.size} is malformed` });
    }
  }
  return out;
}
