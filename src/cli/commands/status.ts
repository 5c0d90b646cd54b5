// `rear-update status`: what is installed in a root, whether an interrupted transaction was
// found (and rolled back), and drift: installed files that no longer match their manifest.

import type { Command } from 'commander';
import { existsSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { hashFile } from '../../adapters/fs/source-tree.ts';
import { StateDir, type Installed } from '../../adapters/fs/state.ts';
import { Transactions, type InstalledSummary } from '../../adapters/fs/transaction.ts';
import { formatMode } from '../../core/manifest.ts';
import { out, printJson, table } from '../output.ts';
import { resolveRoot } from './apply.ts';

export interface Drift {
  readonly path: string;
  readonly problem: 'missing' | 'type' | 'mode' | 'owner' | 'content' | 'target' | 'extra';
  readonly detail: string;
}

export async function findDrift(root: string, rec: Installed, owners: boolean): Promise<Drift[]> {
  const drift: Drift[] = [];
  const known = new Set(rec.entries.map((e) => e.path));
  const byPath = new Map(rec.entries.map((e) => [e.path, e]));
  for (const e of rec.entries) {
    const abs = join(root, e.path);
    const st = lstatSync(abs, { throwIfNoEntry: false });
    if (!st) {
      drift.push({ path: e.path, problem: 'missing', detail: `${e.type} is gone` });
      continue;
    }
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
    const want = e.type === 'hardlink' ? 'file' : e.type;
    if (type !== want) {
      drift.push({ path: e.path, problem: 'type', detail: `is a ${type}, installed as a ${e.type}` });
      continue;
    }
    if (type === 'symlink') {
      const t = readlinkSync(abs);
      if (t !== e.target) drift.push({ path: e.path, problem: 'target', detail: `points to ${t}, installed pointing to ${e.target}` });
      continue;
    }
    if ((st.mode & 0o7777) !== e.mode) drift.push({ path: e.path, problem: 'mode', detail: `mode ${formatMode(st.mode & 0o7777)}, installed ${formatMode(e.mode)}` });
    if (owners && (st.uid !== e.uid || st.gid !== e.gid)) drift.push({ path: e.path, problem: 'owner', detail: `owner ${st.uid}:${st.gid}, installed ${e.uid}:${e.gid}` });
    if (type === 'file') {
      const f = e.type === 'hardlink' ? byPath.get(e.target as string) : e;
      if (f && (st.size !== f.size || (await hashFile(abs)) !== f.sha256)) drift.push({ path: e.path, problem: 'content', detail: 'content changed since it was installed' });
    }
  }
  for (const o of rec.owns) {
    const walk = (rel: string): void => {
      const abs = join(root, rel);
      if (!lstatSync(abs, { throwIfNoEntry: false })?.isDirectory()) return;
      for (const n of readdirSync(abs)) {
        const p = `${rel}/${n}`;
        if (!known.has(p)) drift.push({ path: p, problem: 'extra', detail: `not in the bundle, below owned ${o}` });
        else walk(p);
      }
    };
    walk(o);
  }
  return drift;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show the installed bundle, any interrupted transaction, and drift from what was installed')
    .option('--root <dir>', 'the root to look at', '/')
    .option('--json', 'machine-readable output')
    .action(async (o: { root: string; json?: boolean }) => {
      const root = resolveRoot(o.root);
      const state = new StateDir(root);
      let recovered: string[] = [];
      let rec: Installed | null = null;
      let rollback: { id: string; previous: InstalledSummary | null } | null = null;
      if (existsSync(state.dir)) {
        // Finishing an interrupted transaction needs the lock, like apply and rollback.
        state.open();
        try {
          const txns = new Transactions(state);
          recovered = txns.recover();
          rec = state.readInstalled();
          const j = txns.lastCommitted();
          if (j) rollback = { id: j.id, previous: j.previous };
        } finally {
          state.close();
        }
      }
      const owners = process.getuid?.() === 0;
      const drift = rec ? await findDrift(root, rec, owners) : [];
      if (o.json) {
        const { entries: _e, ...summary } = rec ?? { entries: [] };
        printJson({ root, installed: rec ? summary : null, entries: rec?.entries.length ?? 0, recovered, rollback, drift });
        return;
      }
      for (const line of recovered) out(`recovered: ${line}`);
      if (!rec) {
        out(`nothing installed in ${root}`);
        return;
      }
      for (const l of table([
        ['root:', root],
        ['host:', rec.host ?? '-'],
        ['class:', rec.class ?? '-'],
        ['version:', String(rec.version ?? '-')],
        ['created:', rec.created ?? '-'],
        ['key:', rec.key ?? 'none (applied --unsigned)'],
        ['applied:', `${rec.appliedAt} from ${rec.source}`],
        ['entries:', String(rec.entries.length)],
        ['rollback:', rollback ? `available: back to ${rollback.previous ? `host ${rollback.previous.host ?? '-'} version ${rollback.previous.version ?? '-'}` : 'the state before the first apply'}` : 'not available'],
        ['drift:', drift.length === 0 ? 'none: every installed entry matches' : `${drift.length} difference(s)`],
      ])) out(l);
      for (const l of table(drift.map((d) => [`  ${d.problem}`, d.path, d.detail]))) out(l);
    });
}
