// Walks the tree `pack` reads (a live system's /etc/rear and friends) into a sorted list of
// entries with lstat metadata and content hashes. Symlinks are recorded, never followed;
// anything apply would refuse is collected and reported together, so one run names them all.

import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { minimatch } from 'minimatch';
import { RuError } from '../../core/errors.ts';
import type { EntryType } from '../../core/manifest.ts';
import { comparePaths, normalizeMemberName } from '../../core/paths.ts';
import { checkTypeAndMode, DEFAULT_LIMITS } from '../../core/policy.ts';

export interface SourceEntry {
  readonly path: string;
  readonly abs: string;
  readonly type: EntryType;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly target?: string;
  sha256?: string;
}

export interface ScanResult {
  readonly entries: SourceEntry[];
  /** Requested paths that do not exist under the root. */
  readonly missing: string[];
  /** Requested paths that exist and are directories: what the bundle owns. */
  readonly dirs: string[];
}

function tarTypeOf(st: Stats): string {
  if (st.isFile()) return 'File';
  if (st.isDirectory()) return 'Directory';
  if (st.isSymbolicLink()) return 'SymbolicLink';
  if (st.isCharacterDevice()) return 'CharacterDevice';
  if (st.isBlockDevice()) return 'BlockDevice';
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'Socket';
  return 'Unknown';
}

export async function hashFile(abs: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(abs, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

export async function scanTree(root: string, paths: readonly string[], excludes: readonly string[]): Promise<ScanResult> {
  const entries: SourceEntry[] = [];
  const missing: string[] = [];
  const dirs: string[] = [];
  const refused: string[] = [];
  const excluded = (p: string): boolean => excludes.some((g) => minimatch(p, g, { dot: true }) || minimatch(p, `${g}/**`, { dot: true }));

  const visit = async (path: string): Promise<void> => {
    if (excluded(path)) return;
    const abs = join(root, path);
    const st = await lstat(abs);
    let type: EntryType;
    try {
      type = checkTypeAndMode(path, tarTypeOf(st), st.mode & 0o7777);
    } catch (e) {
      refused.push(`${path} (${(e as Error).message.replace(/^[^:]*: /, '')})`);
      return;
    }
    if (type === 'hardlink') throw new Error('unreachable: lstat never reports a hard link');
    const base = { path, abs, type, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    if (type === 'symlink') {
      entries.push({ ...base, size: 0, target: await readlink(abs) });
    } else if (type === 'file') {
      entries.push({ ...base, size: st.size });
    } else {
      entries.push({ ...base, size: 0 });
      const names = await readdir(abs);
      for (const n of names) await visit(`${path}/${n}`);
    }
  };

  const seen = new Set<string>();
  for (const raw of paths) {
    const path = normalizeMemberName(raw.replace(/^\/+/, ''), DEFAULT_LIMITS);
    if (path === '' || seen.has(path)) continue;
    seen.add(path);
    let st: Stats;
    try {
      st = await lstat(join(root, path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        missing.push(path);
        continue;
      }
      throw e;
    }
    if (st.isDirectory()) dirs.push(path);
    await visit(path);
  }
  if (refused.length > 0) {
    throw new RuError('PACK_ENTRY_REFUSED', `these entries would be refused on apply:\n  ${refused.join('\n  ')}\nfix their modes or leave them out with --exclude`, { paths: refused });
  }
  // Overlapping --path arguments (etc/rear and etc/rear/local.conf) must not yield duplicates.
  const unique = new Map<string, SourceEntry>();
  for (const e of entries) unique.set(e.path, e);
  const sorted = [...unique.values()].sort((a, b) => comparePaths(a.path, b.path));
  for (const e of sorted) if (e.type === 'file') e.sha256 = await hashFile(e.abs);
  return { entries: sorted, missing, dirs };
}
