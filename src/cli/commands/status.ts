// `rear-update status`: what is installed in a root, whether an interrupted transaction was
// found (and rolled back), and drift: installed files that no longer match their manifest.
// Paths the apply kept on purpose (--keep, recorded with what was installed) are listed as
// kept, never as drift: the boot hook keeps, and then edits, the image's etc/rear/rescue.conf.

import type { Command } from 'commander';
import { existsSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { resultLine } from '../../adapters/fs/activation-runner.ts';
import { hashFile } from '../../adapters/fs/source-tree.ts';
import { StateDir, type Installed } from '../../adapters/fs/state.ts';
import { Transactions, type InstalledSummary } from '../../adapters/fs/transaction.ts';
import { otherKernel } from '../../core/activation.ts';
import { keptBy } from '../../core/keep.ts';
import { formatMode } from '../../core/manifest.ts';
import { out, printJson, table } from '../output.ts';
import { resolveRoot } from './apply.ts';
import { describeTrust } from '../key-trust.ts';

export interface Drift {
  readonly path: string;
  readonly problem: 'missing' | 'type' | 'mode' | 'owner' | 'content' | 'target' | 'extra';
  readonly detail: string;
}

/** A path below an owned directory that the apply left in place on purpose (apply --keep). */
export interface Kept {
  readonly path: string;
  readonly glob: string;
}

export interface RootCheck {
  readonly drift: Drift[];
  readonly kept: Kept[];
}

/**
 * Installed entries that changed, and what lies below owned paths without being installed:
 * kept by the apply's --keep globs (with the directories leading to them, as the plan keeps
 * them), or else drift.
 */
export async function checkRoot(root: string, rec: Installed, owners: boolean): Promise<RootCheck> {
  const drift: Drift[] = [];
  const kept: Kept[] = [];
  const keep = rec.keep ?? [];
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
  const isDir = (rel: string): boolean => lstatSync(join(root, rel), { throwIfNoEntry: false })?.isDirectory() === true;
  // A path the bundle lacks: kept when a glob matches it; a directory is also kept (not listed)
  // when something below it is, and then what else lies below it is drift on its own.
  const notInstalled = (p: string, owner: string): RootCheck => {
    const glob = keptBy(keep, p);
    const below: RootCheck = { drift: [], kept: [] };
    if (keep.length && isDir(p)) {
      for (const n of readdirSync(join(root, p))) {
        const r = notInstalled(`${p}/${n}`, owner);
        below.drift.push(...r.drift);
        below.kept.push(...r.kept);
      }
    }
    if (glob !== null) return { drift: below.drift, kept: [{ path: p, glob }, ...below.kept] };
    if (below.kept.length) return below;
    return { drift: [{ path: p, problem: 'extra', detail: `not in the bundle, below owned ${owner}` }], kept: [] };
  };
  for (const o of rec.owns) {
    const walk = (rel: string): void => {
      if (!isDir(rel)) return;
      for (const n of readdirSync(join(root, rel))) {
        const p = `${rel}/${n}`;
        if (known.has(p)) {
          walk(p);
          continue;
        }
        // Another kernel release's modules: a layered apply neither installs nor removes them.
        if (rec.kernel !== undefined && otherKernel(p, rec.kernel)) continue;
        const r = notInstalled(p, o);
        drift.push(...r.drift);
        kept.push(...r.kept);
      }
    };
    walk(o);
  }
  return { drift, kept };
}

function activationSummary(a: NonNullable<Installed['activation']>): string {
  const bad = a.steps.filter((r) => r.status === 'failed' || r.status === 'timeout');
  const where = `kernel ${a.kernel}${a.chroot ? ', through chroot' : ''}`;
  if (!a.complete) return `INTERRUPTED after ${a.steps.length} step(s) (${where}): the process ended while it ran`;
  if (bad.length) return `FAILED at ${(bad[0] as { name: string }).name} (${where}); the files are installed, rollback undoes them`;
  return a.steps.length ? `${a.steps.length} step(s), none failed (${where})` : `nothing to do (${where})`;
}

/** Where an apply --from took the bundle (recorded by apply beside the installed record's own fields). */
const exportOf = (rec: Installed): { exported: string; dir: string } | null => (rec as Installed & { export?: { exported: string; dir: string } }).export ?? null;

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show the installed bundle, any interrupted transaction, and drift from what was installed')
    .option('--root <dir>', 'the root to look at', '/')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Activation: for a layered bundle, each step apply ran after the commit (depmod, udev,
modprobe, hooks) with its result (ok, failed, skipped, timeout), exit status and time; the
output is in var/lib/rear-update/activation.log.

Drift: installed entries whose content, mode, owner, type or link target changed, and paths
below owned directories that the bundle lacks. Paths the apply kept on purpose (--keep or
REAR_UPDATE_KEEP, recorded with what was installed; the boot hook keeps etc/rear/rescue.conf
and then lifts its guard in it) are listed as kept, not as drift, changed or not.

Offline export: a bundle applied with apply --from DIR shows "installed from export of DATE",
the time the server made the export (docs/export.md); --json has it as installed.export.`)
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
      const { drift, kept } = rec ? await checkRoot(root, rec, owners) : { drift: [], kept: [] };
      if (o.json) {
        const { entries: _e, ...summary } = rec ?? { entries: [] };
        printJson({ root, installed: rec ? summary : null, entries: rec?.entries.length ?? 0, recovered, rollback, drift, kept });
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
        ['key:', rec.key ? `${rec.key}${rec.trust?.via === 'statement' ? `, ${describeTrust(rec.trust)}` : ''}` : 'none (applied --unsigned)'],
        ['applied:', `${rec.appliedAt} from ${rec.source}`],
        ...(exportOf(rec) ? [['export:', `installed from export of ${exportOf(rec)!.exported} (${exportOf(rec)!.dir}): the server was not asked; it may have newer versions`]] : []),
        ['entries:', String(rec.entries.length)],
        ...(rec.kernel !== undefined ? [['kernel:', `${rec.kernel} (kernel-bound content was installed for this release)`]] : []),
        ...(rec.layers ?? []).map((l, i) => [i === 0 ? 'layers:' : '', `${l.name} (class ${l.class ?? 'none: the host\'s own'}, version ${l.version ?? '-'})`]),
        ...(rec.activation ? [['activation:', activationSummary(rec.activation)]] : []),
        ['rollback:', rollback ? `available: back to ${rollback.previous ? `host ${rollback.previous.host ?? '-'} version ${rollback.previous.version ?? '-'}` : 'the state before the first apply'}` : 'not available'],
        ['drift:', drift.length === 0 ? 'none: every installed entry matches' : `${drift.length} difference(s)`],
        ...(rec.keep?.length ? [['kept:', `${kept.length} path(s) not in the bundle, kept by --keep ${rec.keep.join(' ')} (not drift)`]] : []),
      ])) out(l);
      for (const r of rec.activation?.steps ?? []) out(`  ${resultLine(r)}`);
      for (const l of table([
        ...drift.map((d) => [`  ${d.problem}`, d.path, d.detail]),
        ...kept.map((k) => ['  kept', k.path, `matches --keep ${k.glob}`]),
      ])) out(l);
    });
}
