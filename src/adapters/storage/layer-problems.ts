// The invariants of a layer's versions, which every metadata backend checks the same way in its
// check(), as versionProblems (src/core/store/check.ts) does for a host's: numbered 1..n without
// a gap, a pin that names one of them, well-formed blob names, sizes and manifests. Pure; it
// lives beside the backends only because they are its only callers.

import type { StoreProblem } from '../../core/store/metadata.ts';
import { SHA256_PATTERN } from '../../core/store/validate.ts';

export interface LayerVersionFacts {
  readonly version: number;
  readonly blob: string;
  readonly size: number;
  /** Whether the manifest is JSON text (SQLite asks json_valid rather than reading every manifest). */
  readonly manifestValid: boolean;
}

export const isJsonText = (s: string): boolean => {
  if (typeof s !== 'string' || s.length === 0) return false;
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
};

/** Problems of one layer's versions (any order) and pin; `layer` is "CLASS/NAME". */
export function layerProblems(layer: string, versions: readonly LayerVersionFacts[], pinned: number | null): StoreProblem[] {
  const out: StoreProblem[] = [];
  const numbers = versions.map((v) => v.version).sort((a, b) => a - b);
  const firstGap = numbers.findIndex((n, i) => n !== i + 1);
  if (firstGap >= 0) {
    out.push({ kind: 'version-gap', layer, version: firstGap + 1, message: `layer ${layer}: versions are not numbered 1..${numbers.length} (version ${firstGap + 1} is missing or repeated; found ${numbers.slice(0, 10).join(', ')}${numbers.length > 10 ? ', …' : ''})` });
  }
  if (pinned !== null && !numbers.includes(pinned)) {
    out.push({ kind: 'pin-missing', layer, version: pinned, message: `layer ${layer} is pinned to version ${pinned}, which does not exist` });
  }
  for (const v of versions) {
    if (!SHA256_PATTERN.test(v.blob) || !Number.isSafeInteger(v.size) || v.size < 0) {
      out.push({ kind: 'version-invalid', layer, version: v.version, message: `layer ${layer} version ${v.version}: blob ${JSON.stringify(v.blob)} or size ${v.size} is malformed` });
    } else if (!v.manifestValid) {
      out.push({ kind: 'version-invalid', layer, version: v.version, message: `layer ${layer} version ${v.version}: the manifest is not JSON text` });
    }
  }
  return out;
}

/** How problems, messages and findings name a layer. */
export const layerRef = (cls: string, name: string): string => `${cls}/${name}`;
