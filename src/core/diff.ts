// What changed between two versions of a host's bundle, from their manifests alone: paths
// added, removed, and changed with each field that differs. Pure, so the server's diff route
// and any other caller agree on what "changed" means; reading file bytes for a text diff is
// the caller's business (it knows where payloads live), and isText() says which bytes qualify.

import { formatMode, type EntryType, type Manifest, type ManifestEntry } from './manifest.ts';

export type DiffField = 'type' | 'mode' | 'owner' | 'size' | 'sha256' | 'target';

export interface FieldChange {
  readonly field: DiffField;
  /** As people read them: mode as octal text, owner as uid:gid; null where the field does not apply. */
  readonly from: string | number | null;
  readonly to: string | number | null;
}

export interface EntrySummary {
  readonly path: string;
  readonly type: EntryType;
  readonly mode: string;
  readonly owner: string;
  readonly size: number | null;
  readonly target: string | null;
}

export interface EntryChange {
  readonly path: string;
  /** The type in the newer version. */
  readonly type: EntryType;
  readonly changes: readonly FieldChange[];
}

export interface ManifestDiff {
  readonly added: readonly EntrySummary[];
  readonly removed: readonly EntrySummary[];
  readonly changed: readonly EntryChange[];
  readonly unchanged: number;
  /** Owned paths (apply removes what the bundle lacks below them) that appeared or went away. */
  readonly owns: { readonly added: readonly string[]; readonly removed: readonly string[] };
}

const owner = (e: ManifestEntry): string => `${e.uid}:${e.gid}`;

export function summarize(e: ManifestEntry): EntrySummary {
  return { path: e.path, type: e.type, mode: formatMode(e.mode), owner: owner(e), size: e.type === 'file' ? (e.size ?? 0) : null, target: e.target ?? null };
}

/** The fields of `b` that differ from `a`, in a fixed order. */
export function entryChanges(a: ManifestEntry, b: ManifestEntry): FieldChange[] {
  const out: FieldChange[] = [];
  const push = (field: DiffField, from: string | number | null, to: string | number | null): void => {
    if (from !== to) out.push({ field, from, to });
  };
  push('type', a.type, b.type);
  push('mode', formatMode(a.mode), formatMode(b.mode));
  push('owner', owner(a), owner(b));
  push('size', a.type === 'file' ? (a.size ?? 0) : null, b.type === 'file' ? (b.size ?? 0) : null);
  push('sha256', a.sha256 ?? null, b.sha256 ?? null);
  push('target', a.target ?? null, b.target ?? null);
  return out;
}

const byPath = (x: { path: string }, y: { path: string }): number => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0);

/** From `a` (older) to `b` (newer). Lists are sorted by path. */
export function diffManifests(a: Pick<Manifest, 'entries' | 'owns'>, b: Pick<Manifest, 'entries' | 'owns'>): ManifestDiff {
  const old = new Map(a.entries.map((e) => [e.path, e]));
  const neu = new Map(b.entries.map((e) => [e.path, e]));
  const added: EntrySummary[] = [];
  const removed: EntrySummary[] = [];
  const changed: EntryChange[] = [];
  let unchanged = 0;
  for (const e of b.entries) {
    const o = old.get(e.path);
    if (!o) {
      added.push(summarize(e));
      continue;
    }
    const changes = entryChanges(o, e);
    if (changes.length) changed.push({ path: e.path, type: e.type, changes });
    else unchanged++;
  }
  for (const e of a.entries) if (!neu.has(e.path)) removed.push(summarize(e));
  const ownsA = new Set(a.owns);
  const ownsB = new Set(b.owns);
  return {
    added: added.sort(byPath),
    removed: removed.sort(byPath),
    changed: changed.sort(byPath),
    unchanged,
    owns: { added: [...ownsB].filter((p) => !ownsA.has(p)).sort(), removed: [...ownsA].filter((p) => !ownsB.has(p)).sort() },
  };
}

/** Largest file (in either version) that gets a text diff. */
export const TEXT_DIFF_MAX_BYTES = 256 * 1024;

/** Changed paths whose content a text diff can show: regular files in both versions, content changed, both small enough. */
export function textDiffCandidates(a: Pick<Manifest, 'entries'>, b: Pick<Manifest, 'entries'>, d: ManifestDiff): { path: string; skip: string | null }[] {
  const old = new Map(a.entries.map((e) => [e.path, e]));
  const neu = new Map(b.entries.map((e) => [e.path, e]));
  const out: { path: string; skip: string | null }[] = [];
  for (const c of d.changed) {
    const x = old.get(c.path);
    const y = neu.get(c.path);
    if (!x || !y || x.type !== 'file' || y.type !== 'file' || x.sha256 === y.sha256) continue;
    const big = Math.max(x.size ?? 0, y.size ?? 0);
    out.push({ path: c.path, skip: big > TEXT_DIFF_MAX_BYTES ? `larger than ${TEXT_DIFF_MAX_BYTES / 1024} KiB` : null });
  }
  return out;
}

/** Text a diff may show: valid UTF-8 without NUL bytes. */
export function isText(b: Uint8Array): boolean {
  if (b.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(b);
    return true;
  } catch {
    return false;
  }
}
