// The apply planner: from the verified bundle entries and a read-only view of the live root,
// compute every operation a commit will perform, in order. Pure: `apply --dry-run` prints
// this plan and a real apply executes exactly it (changesets' plan-then-apply).

import { RuError } from './errors.ts';
import type { EntryType, ManifestEntry } from './manifest.ts';
import { ancestors, comparePaths, isReserved, STATE_DIR } from './paths.ts';

/** A bundle entry after staging: files, symlinks and hard links point at their staged copy. */
export interface StagedEntry extends ManifestEntry {
  readonly staged?: string;
}

/** What lstat found at a path in the live root (never following a symlink). */
export type RootNode =
  | { readonly type: 'dir'; readonly mode: number; readonly uid: number; readonly gid: number }
  | { readonly type: 'file'; readonly mode: number; readonly uid: number; readonly gid: number; readonly size: number; readonly sha256?: string }
  | { readonly type: 'symlink'; readonly uid: number; readonly gid: number; readonly target: string }
  | { readonly type: 'other'; readonly kind: string };

export interface RootView {
  /** lstat of a path; null if absent or unreachable (below something that is not a directory). */
  readonly nodes: ReadonlyMap<string, RootNode | null>;
  /** For each owned path that is a real directory: everything below it, sorted, not following links. */
  readonly owned: ReadonlyMap<string, readonly { readonly path: string; readonly node: RootNode }[]>;
}

export interface Meta {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

export type Op =
  | { readonly kind: 'remove'; readonly path: string; readonly backup: string }
  | { readonly kind: 'mkdir'; readonly path: string; readonly meta: Meta }
  | { readonly kind: 'chmeta'; readonly path: string; readonly from: Meta; readonly to: Meta }
  | { readonly kind: 'put'; readonly path: string; readonly staged: string; readonly backup: string | null };

export type Action = 'create' | 'replace' | 'update' | 'remove' | 'unchanged';

export interface PlanItem {
  readonly path: string;
  readonly action: Action;
  readonly type: EntryType | RootNode['type'];
  readonly bytes: number;
}

export interface Plan {
  readonly ops: readonly Op[];
  readonly items: readonly PlanItem[];
  readonly totals: Readonly<Record<Action, number>> & { readonly bytesIn: number; readonly bytesOut: number };
}

export interface PlanOptions {
  /** Compare and set owners (only meaningful when running as root). */
  readonly owners: boolean;
  /**
   * Paths below owned directories that stay although the bundle lacks them (apply --keep):
   * e.g. etc/rear/rescue.conf, which mkrescue writes into the rescue image only.
   */
  readonly keep?: (path: string) => boolean;
}

export const IMPLICIT_DIR: Meta = { mode: 0o755, uid: 0, gid: 0 };

/**
 * rear-update's own state directory and the directories leading to it are never stale content
 * of an owned path: a bundle owning `var` or `var/lib` would otherwise remove the journal and
 * staging of the very transaction that commits it (found by the fuzz harness).
 */
const holdsState = (path: string): boolean => isReserved(path) || STATE_DIR.startsWith(`${path}/`);

function sameMeta(a: Meta, b: Meta, owners: boolean): boolean {
  return a.mode === b.mode && (!owners || (a.uid === b.uid && a.gid === b.gid));
}

function fileLike(e: StagedEntry, byPath: ReadonlyMap<string, StagedEntry>): StagedEntry {
  return e.type === 'hardlink' ? (byPath.get(e.target as string) as StagedEntry) : e;
}

function unchanged(e: StagedEntry, node: RootNode, byPath: ReadonlyMap<string, StagedEntry>, owners: boolean): boolean {
  if (e.type === 'symlink') {
    return node.type === 'symlink' && node.target === e.target && (!owners || (node.uid === e.uid && node.gid === e.gid));
  }
  const f = fileLike(e, byPath);
  return node.type === 'file' && node.size === f.size && node.sha256 === f.sha256 && sameMeta(node, e, owners);
}

/** Structural rules inside the bundle itself: no entry below a link or a file of the same bundle. */
export function checkBundleStructure(entries: readonly StagedEntry[]): Map<string, StagedEntry> {
  const byPath = new Map<string, StagedEntry>();
  for (const e of entries) byPath.set(e.path, e);
  for (const e of entries) {
    for (const a of ancestors(e.path)) {
      const parent = byPath.get(a);
      if (!parent || parent.type === 'dir') continue;
      if (parent.type === 'symlink') {
        throw new RuError('ENTRY_THROUGH_SYMLINK', `${e.path}: its parent ${a} is a symbolic link in the same archive (rule 2)`, { path: e.path, via: a, rule: 2 });
      }
      throw new RuError('ENTRY_PARENT_NOT_DIRECTORY', `${e.path}: its parent ${a} is not a directory in the archive`, { path: e.path, via: a });
    }
    if (e.type === 'hardlink') {
      const t = byPath.get(e.target as string);
      if (!t || t.type !== 'file') {
        throw new RuError('ENTRY_HARDLINK_REFUSED', `${e.path}: hard link target ${e.target} is not a regular file of this archive (rule 3)`, { path: e.path, target: e.target ?? '', rule: 3 });
      }
    }
  }
  return byPath;
}

export function planApply(entriesIn: readonly StagedEntry[], owns: readonly string[], view: RootView, opts: PlanOptions): Plan {
  const entries = [...entriesIn].sort((a, b) => comparePaths(a.path, b.path));
  const byPath = checkBundleStructure(entries);
  const node = (p: string): RootNode | null => {
    if (!view.nodes.has(p)) throw new Error(`planner: no root view for ${p}`);
    return view.nodes.get(p) ?? null;
  };

  const removes: Op[] = [];
  const writes: Op[] = [];
  const items: PlanItem[] = [];
  const removed = new Set<string>();
  let backups = 0;
  const nextBackup = (): string => `b/${++backups}`;
  /** `shown` is false when the same path gets a 'replace' item instead. */
  const remove = (path: string, n: RootNode, shown: boolean): void => {
    removes.push({ kind: 'remove', path, backup: nextBackup() });
    removed.add(path);
    if (shown) items.push({ path, action: 'remove', type: n.type, bytes: n.type === 'file' ? n.size : 0 });
  };

  // Parents that the bundle does not carry but needs: they must be real directories, or absent.
  const implicit = new Set<string>();
  for (const e of entries) for (const a of ancestors(e.path)) if (!byPath.has(a)) implicit.add(a);
  for (const a of [...implicit].sort(comparePaths)) {
    const n = node(a);
    if (n === null) {
      writes.push({ kind: 'mkdir', path: a, meta: IMPLICIT_DIR });
      items.push({ path: a, action: 'create', type: 'dir', bytes: 0 });
    } else if (n.type !== 'dir') {
      const member = entries.find((e) => e.path.startsWith(`${a}/`))?.path ?? a;
      if (n.type === 'symlink') {
        throw new RuError('ENTRY_THROUGH_SYMLINK', `${member}: its parent ${a} is a symbolic link in the root (-> ${n.target}); the bundle would write through it (rule 2)`, { path: member, via: a, target: n.target, rule: 2 });
      }
      throw new RuError('ENTRY_PARENT_NOT_DIRECTORY', `${member}: its parent ${a} is not a directory in the root`, { path: member, via: a });
    }
  }

  for (const e of entries) {
    const n = node(e.path);
    const f = fileLike(e, byPath);
    const bytes = e.type === 'dir' || e.type === 'symlink' ? 0 : (f.size ?? 0);
    if (e.type === 'dir') {
      if (n?.type === 'dir') {
        if (sameMeta(n, e, opts.owners)) {
          items.push({ path: e.path, action: 'unchanged', type: 'dir', bytes: 0 });
        } else {
          writes.push({ kind: 'chmeta', path: e.path, from: { mode: n.mode, uid: n.uid, gid: n.gid }, to: { mode: e.mode, uid: e.uid, gid: e.gid } });
          items.push({ path: e.path, action: 'update', type: 'dir', bytes: 0 });
        }
        continue;
      }
      if (n) remove(e.path, n, false);
      writes.push({ kind: 'mkdir', path: e.path, meta: { mode: e.mode, uid: e.uid, gid: e.gid } });
      items.push({ path: e.path, action: n ? 'replace' : 'create', type: 'dir', bytes: 0 });
      continue;
    }
    if (n && n.type !== 'dir' && unchanged(e, n, byPath, opts.owners)) {
      items.push({ path: e.path, action: 'unchanged', type: e.type, bytes });
      continue;
    }
    let backup: string | null = null;
    if (n?.type === 'dir') remove(e.path, n, false);
    else if (n) backup = nextBackup();
    writes.push({ kind: 'put', path: e.path, staged: e.staged as string, backup });
    items.push({ path: e.path, action: n ? 'replace' : 'create', type: e.type, bytes });
  }

  // Stale content below owned paths: whatever the bundle does not carry goes (and comes back on
  // rollback), except kept paths and the directories that lead to them.
  const kept = new Set<string>();
  for (const o of owns) {
    for (const { path } of view.owned.get(o) ?? []) {
      if (opts.keep?.(path)) for (const p of [path, ...ancestors(path)]) kept.add(p);
    }
  }
  for (const o of owns) {
    for (const { path, node: n } of view.owned.get(o) ?? []) {
      if (byPath.has(path) || implicit.has(path) || kept.has(path) || holdsState(path)) continue;
      if (ancestors(path).some((a) => removed.has(a))) {
        // Goes with an ancestor's removal: shown, but no operation of its own.
        items.push({ path, action: 'remove', type: n.type, bytes: n.type === 'file' ? n.size : 0 });
        continue;
      }
      remove(path, n, true);
    }
  }

  items.sort((a, b) => comparePaths(a.path, b.path) || (a.action === 'remove' ? -1 : 1));
  const totals = { create: 0, replace: 0, update: 0, remove: 0, unchanged: 0, bytesIn: 0, bytesOut: 0 };
  for (const it of items) {
    totals[it.action] += 1;
    if (it.action === 'create' || it.action === 'replace') totals.bytesIn += it.bytes;
    if (it.action === 'remove') totals.bytesOut += it.bytes;
  }
  return { ops: [...removes, ...writes.sort((a, b) => comparePaths(a.path, b.path))], items, totals };
}

/** The top-level directories that a merged-/usr system replaces by links into usr/. */
export const MERGED_USR = ['bin', 'lib', 'lib64', 'sbin'] as const;

/**
 * Which of those are, in this root, exactly the merged-/usr link (`lib -> usr/lib` or
 * `-> /usr/lib`). `links` maps each name to its link target, or null when it is no link.
 * Only these exact links are aliases; any other link keeps rule 2's refusal.
 */
export function mergedUsrAliases(links: ReadonlyMap<string, string | null>): string[] {
  return MERGED_USR.filter((d) => {
    const t = links.get(d);
    return t === `usr/${d}` || t === `/usr/${d}`;
  });
}

export interface Aliased<E extends ManifestEntry> {
  readonly entries: E[];
  readonly owns: string[];
  /** Per alias used: how many entries moved (`lib` -> `usr/lib`). */
  readonly moved: readonly { readonly from: string; readonly to: string; readonly entries: number }[];
  /** The root path of a bundle path. */
  readonly rootPath: (bundlePath: string) => string;
}

/**
 * On a merged-/usr root, what a bundle carries below `lib/` is installed below `usr/lib/`
 * (likewise bin, sbin, lib64): the place `tar -xzf` would reach through the link, without
 * ever writing through a link. A directory entry `lib` itself becomes `usr/lib`; a link or
 * file entry `lib` stays what it is (the bundle replaces the link, and then nothing may lie
 * below it). Two entries that meet at one path are refused, unless they are the same
 * directory.
 */
export function aliasMergedUsr<E extends ManifestEntry>(entries: readonly E[], owns: readonly string[], aliases: readonly string[]): Aliased<E> {
  const counts = new Map<string, number>();
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const mapPath = (p: string, isDir: boolean): string => {
    for (const a of aliases) {
      if (p.startsWith(`${a}/`) || (p === a && isDir)) return `usr/${p}`;
    }
    return p;
  };
  const rootPath = (p: string): string => mapPath(p, byPath.get(p)?.type === 'dir');
  if (aliases.length === 0) return { entries: [...entries], owns: [...owns], moved: [], rootPath: (p) => p };
  const out = new Map<string, E>();
  for (const e of entries) {
    const to = rootPath(e.path);
    const moved = to === e.path ? e : ({ ...e, path: to, ...(e.type === 'hardlink' ? { target: rootPath(e.target as string) } : {}) } as E);
    if (to !== e.path) {
      const a = e.path.split('/')[0] as string;
      counts.set(a, (counts.get(a) ?? 0) + 1);
    }
    const other = out.get(to);
    if (other) {
      const sameDir = other.type === 'dir' && moved.type === 'dir' && other.mode === moved.mode && other.uid === moved.uid && other.gid === moved.gid;
      if (!sameDir) {
        const a = to.split('/')[1] as string;
        throw new RuError('BUNDLE_MEMBER_DUPLICATE', `${to} is in the bundle twice: as ${to} and as ${to.slice(4)}, which this root's merged-/usr link ${a} -> usr/${a} makes the same path`, { path: to });
      }
      continue;
    }
    out.set(to, moved);
  }
  const moved = [...counts].map(([a, n]) => ({ from: a, to: `usr/${a}`, entries: n }));
  return { entries: [...out.values()].sort((x, y) => comparePaths(x.path, y.path)), owns: [...new Set(owns.map((o) => mapPath(o, true)))], moved, rootPath };
}

/** Paths whose lstat the planner needs: every entry, every ancestor of one. */
export function pathsToInspect(entries: readonly ManifestEntry[]): string[] {
  const s = new Set<string>();
  for (const e of entries) {
    s.add(e.path);
    for (const a of ancestors(e.path)) s.add(a);
  }
  return [...s].sort(comparePaths);
}
