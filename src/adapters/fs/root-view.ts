// Reads the live root for the planner: lstat of every path the bundle touches and of their
// parents (never following a link, never looking below something that is not a directory),
// content hashes where a file might be unchanged, and the existing trees under owned paths.

import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { comparePaths, parentOf, ROOT_PATH } from '../../core/paths.ts';
import { MERGED_USR, pathsToInspect, type RootNode, type RootView, type StagedEntry } from '../../core/plan.ts';
import { hashFile } from './source-tree.ts';

function nodeOf(abs: string, st: Stats): RootNode {
  const meta = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  if (st.isDirectory()) return { type: 'dir', ...meta };
  if (st.isFile()) return { type: 'file', ...meta, size: st.size };
  if (st.isSymbolicLink()) return { type: 'symlink', uid: st.uid, gid: st.gid, target: readlinkSync(abs) };
  return { type: 'other', kind: st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'device' };
}

/** The link target of each of a merged-/usr system's top-level links (bin, lib, ...), or null. */
export function topLevelLinks(root: string): Map<string, string | null> {
  const links = new Map<string, string | null>();
  for (const d of MERGED_USR) {
    const abs = join(root, d);
    links.set(d, lstatSync(abs, { throwIfNoEntry: false })?.isSymbolicLink() ? readlinkSync(abs) : null);
  }
  return links;
}

export interface RootScan extends RootView {
  /** Device number of every existing directory looked at (for the cross-device check). */
  readonly devs: ReadonlyMap<string, number>;
}

/** `assumeDirs`: paths to treat as existing plain directories (what a real run creates first). */
export async function scanRoot(root: string, entries: readonly StagedEntry[], owns: readonly string[], assumeDirs: readonly string[] = []): Promise<RootScan> {
  const nodes = new Map<string, RootNode | null>();
  const devs = new Map<string, number>();
  const rootSt = lstatSync(root);
  devs.set(ROOT_PATH, rootSt.dev);
  const byPath = new Map(entries.map((e) => [e.path, e]));
  for (const p of pathsToInspect(entries)) {
    const parent = parentOf(p);
    if (parent !== ROOT_PATH && nodes.get(parent)?.type !== 'dir') {
      nodes.set(p, null); // below nothing, or below a link/file: lstat would follow or fail
      continue;
    }
    const abs = join(root, p);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (!st && assumeDirs.includes(p)) {
      nodes.set(p, { type: 'dir', mode: 0o755, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 });
      devs.set(p, rootSt.dev);
      continue;
    }
    if (!st) {
      nodes.set(p, null);
      continue;
    }
    let n = nodeOf(abs, st);
    if (st.isDirectory()) devs.set(p, st.dev);
    const e = byPath.get(p);
    const want = e?.type === 'hardlink' ? byPath.get(e.target as string) : e;
    if (n.type === 'file' && want?.type === 'file' && n.size === want.size) n = { ...n, sha256: await hashFile(abs) };
    nodes.set(p, n);
  }
  const owned = new Map<string, { path: string; node: RootNode }[]>();
  for (const o of owns) {
    // Owned paths are directory entries of the bundle, so their parents were checked above; a
    // link or file where the directory should be is a type change, never walked through.
    if (nodes.get(o)?.type !== 'dir') continue;
    const list: { path: string; node: RootNode }[] = [];
    const walk = (rel: string): void => {
      for (const name of readdirSync(join(root, rel))) {
        const p = `${rel}/${name}`;
        const abs = join(root, p);
        const st = lstatSync(abs);
        list.push({ path: p, node: nodeOf(abs, st) });
        if (st.isDirectory()) walk(p);
      }
    };
    walk(o);
    list.sort((a, b) => comparePaths(a.path, b.path));
    owned.set(o, list);
  }
  return { nodes, owned, devs };
}
