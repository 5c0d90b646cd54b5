// Commits a plan into the live root, and undoes it. The journal lists every operation before
// the first one runs; each operation is a rename (or mkdir/chmod) whose progress can be read
// back from the file system itself (is the staged file still there? is the backup?), so a run
// killed at any instant is undone exactly by the next one without per-step bookkeeping.
// Files are replaced by rename: a process reading the old file keeps its old inode.

import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, linkSync, lstatSync, mkdirSync, readFileSync, renameSync, rmdirSync, rmSync, statfsSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fromSystemError, RuError } from '../../core/errors.ts';
import { ancestors } from '../../core/paths.ts';
import type { Meta, Op } from '../../core/plan.ts';
import { fsyncDir, type Installed, type StateDir, writeAtomic } from './state.ts';

export type TxnState = 'committing' | 'committed' | 'rolling-back';

export type InstalledSummary = Pick<Installed, 'host' | 'class' | 'version' | 'source'>;

const summary = (i: Installed): InstalledSummary => ({ host: i.host, class: i.class, version: i.version, source: i.source });

export interface Journal {
  readonly format: 1;
  readonly id: string;
  state: TxnState;
  readonly root: string;
  /** Whether owners were set (running as root); undo restores them likewise. */
  readonly owners: boolean;
  readonly ops: readonly Op[];
  /** Who was installed before and who is being installed (the full records sit beside the journal). */
  readonly previous: InstalledSummary | null;
  readonly next: InstalledSummary;
}

export interface CommitHooks {
  /** Called before operation i (0-based), and with i = ops.length before the commit is recorded; tests crash there. */
  readonly beforeOp?: (i: number, op: Op | null) => void;
  readonly owners: boolean;
}

const exists = (p: string): boolean => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

/** File systems that live in memory: nothing survives power loss, so there is nothing to flush. */
const VOLATILE_FS = new Set([0x01021994 /* tmpfs */, 0x858458f6 /* ramfs */]);

/**
 * Flushes the file system holding `dir` (syncfs through coreutils' `sync -f`), so the staged
 * data is durable before the journal says "committing". Skipped on tmpfs/ramfs (a rescue
 * system's root), where it would cost a process spawn and buy nothing; where `sync` is
 * missing the commit still runs, only power-loss safety is weaker.
 */
export function syncFs(dir: string): void {
  if (VOLATILE_FS.has(Number(statfsSync(dir).type))) return;
  spawnSync('sync', ['-f', dir], { stdio: 'ignore' });
}

function setMeta(abs: string, m: Meta, owners: boolean): void {
  if (owners) chownSync(abs, m.uid, m.gid);
  chmodSync(abs, m.mode);
}

/**
 * Rule 2 at commit time: every parent of a target must still be a real directory on the
 * state directory's file system. Checked once per directory per commit, immediately before
 * the first rename into it (a process racing us as root could still win; nothing else can).
 */
class ParentGuard {
  private readonly ok = new Set<string>();
  constructor(private readonly root: string, private readonly dev: number) {}

  check(path: string): void {
    for (const a of ancestors(path)) {
      if (this.ok.has(a)) continue;
      const st = lstatSync(join(this.root, a), { throwIfNoEntry: false });
      if (!st) continue; // created by an earlier mkdir op of this plan, or about to be
      if (st.isSymbolicLink()) throw new RuError('ENTRY_THROUGH_SYMLINK', `${a} became a symbolic link during the commit (rule 2)`, { path, via: a, rule: 2 });
      if (!st.isDirectory()) throw new RuError('ENTRY_PARENT_NOT_DIRECTORY', `${a} is no longer a directory`, { path, via: a });
      if (st.dev !== this.dev) throw new RuError('ROOT_CROSS_DEVICE', `${a} is on another file system than the state directory`, { path: a });
      this.ok.add(a);
    }
  }
}

function doOp(root: string, txn: string, op: Op, owners: boolean): void {
  const target = join(root, op.path);
  switch (op.kind) {
    case 'remove':
      if (exists(target) && !exists(join(txn, op.backup))) renameSync(target, join(txn, op.backup));
      return;
    case 'mkdir':
      if (!exists(target)) mkdirSync(target, { mode: 0o700 });
      setMeta(target, op.meta, owners);
      return;
    case 'chmeta':
      setMeta(target, op.to, owners);
      return;
    case 'put':
      // A commit runs once, forwards; an interrupted one is undone, never resumed, so the
      // staged file is known to be there (no lstat per file: 5,000 of them cost ~40 ms).
      if (op.backup && exists(target)) linkSync(target, join(txn, op.backup));
      renameSync(join(txn, op.staged), target);
  }
}

// Every branch is safe to run again: an undo interrupted half-way is simply run once more.
function undoOp(root: string, txn: string, op: Op, owners: boolean, warnings: string[]): void {
  const target = join(root, op.path);
  switch (op.kind) {
    case 'put': {
      if (exists(join(txn, op.staged))) {
        // Never renamed in: the root still has the old file; a backup is only an extra link.
        if (op.backup && exists(join(txn, op.backup))) unlinkSync(join(txn, op.backup));
        return;
      }
      if (op.backup) {
        // Renamed in; the backup goes back. No backup left means this undo already ran.
        if (exists(join(txn, op.backup))) renameSync(join(txn, op.backup), target);
        return;
      }
      // A created file. A directory here is the old one a later undo step already restored.
      const st = lstatSync(target, { throwIfNoEntry: false });
      if (st && !st.isDirectory()) unlinkSync(target);
      return;
    }
    case 'mkdir': {
      // Not a directory: this mkdir never ran, and what is there is the old entry.
      if (!lstatSync(target, { throwIfNoEntry: false })?.isDirectory()) return;
      try {
        rmdirSync(target);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw e;
        warnings.push(`${op.path}: kept, it holds files that were added after the apply`);
      }
      return;
    }
    case 'chmeta':
      if (exists(target)) setMeta(target, op.from, owners);
      return;
    case 'remove': {
      const backup = join(txn, op.backup);
      if (exists(backup) && !exists(target)) renameSync(backup, target);
      return;
    }
  }
}

/** Files of a transaction directory written before its first operation (see commit). */
const COMMITTED_JOURNAL = 'journal.committed.json';
const NEXT_INSTALLED = 'installed.next.json';
const PREVIOUS_INSTALLED = 'installed.previous.json';

export class Transactions {
  constructor(private readonly state: StateDir) {}

  private journalPath(id: string): string {
    return join(this.state.txnRoot, id, 'journal.json');
  }

  private write(j: Journal): void {
    writeAtomic(this.journalPath(j.id), `${JSON.stringify(j)}\n`);
  }

  hasJournal(id: string): boolean {
    return existsSync(this.journalPath(id));
  }

  read(id: string): Journal | null {
    const p = this.journalPath(id);
    if (!existsSync(p)) return null;
    try {
      const j = JSON.parse(readFileSync(p, 'utf8')) as Journal;
      if (j.format !== 1 || !Array.isArray(j.ops)) throw new Error('unknown journal format');
      return j;
    } catch (e) {
      throw new RuError('JOURNAL_INVALID', `transaction ${id}: ${(e as Error).message}`, { txn: id });
    }
  }

  /**
   * Everything that needs free space is written BEFORE the first operation: the journal, the
   * journal as it will read once committed, and the new and previous installed records. The
   * operations are renames and mkdirs, and finishing is two renames, so a disk that fills up
   * can stop a commit only before it changes anything in the root.
   */
  commit(id: string, ops: readonly Op[], previous: Installed | null, next: Installed, hooks: CommitHooks): void {
    const txn = join(this.state.txnRoot, id);
    const root = this.state.root;
    const guard = new ParentGuard(root, statSync(this.state.dir).dev);
    const j: Journal = { format: 1, id, state: 'committing', root, owners: hooks.owners, ops, previous: previous && summary(previous), next: summary(next) };
    try {
      writeAtomic(join(txn, NEXT_INSTALLED), `${JSON.stringify(next)}\n`);
      if (previous) writeAtomic(join(txn, PREVIOUS_INSTALLED), `${JSON.stringify(previous)}\n`);
      writeAtomic(join(txn, COMMITTED_JOURNAL), `${JSON.stringify({ ...j, state: 'committed' })}\n`);
      syncFs(txn);
      this.write(j); // from here on, a crash is rolled back by the next run
    } catch (e) {
      rmSync(this.journalPath(id), { force: true });
      throw fromSystemError(e, 'preparing the commit');
    }
    try {
      ops.forEach((op, i) => {
        hooks.beforeOp?.(i, op);
        guard.check(op.path);
        doOp(root, txn, op, hooks.owners);
      });
      hooks.beforeOp?.(ops.length, null);
      syncFs(root);
      renameSync(join(txn, NEXT_INSTALLED), join(this.state.dir, 'installed.json'));
      renameSync(join(txn, COMMITTED_JOURNAL), this.journalPath(id));
      fsyncDir(txn);
    } catch (e) {
      const err = fromSystemError(e, `committing ${ops.length} changes`);
      try {
        this.undo(j, []);
      } catch (u) {
        // The journal stays: the next apply, rollback or status finishes the undo.
        throw new RuError(err.code, `${err.message}; undoing it failed too (${(u as Error).message}): the next apply, rollback or status will finish the undo`, err.context);
      }
      throw err;
    }
    // Keep this transaction for `rollback`; older ones are no longer reachable.
    for (const other of this.state.listTxns()) if (other !== id) this.state.removeTxn(other);
    try {
      rmdirSync(join(txn, 's'));
    } catch {
      // nothing staged is left after a full commit; if something is, it goes with the txn later
    }
  }

  /** Reverts every operation of a journal, newest first, then restores the installed record. */
  undo(j: Journal, warnings: string[], hooks?: { beforeUndo?: (i: number) => void }): void {
    const txn = join(this.state.txnRoot, j.id);
    if (j.state !== 'rolling-back') {
      try {
        this.write({ ...j, state: 'rolling-back' });
      } catch {
        // Only the label is lost (a full disk): 'committing' is rolled back on recovery too.
      }
    }
    for (let i = j.ops.length - 1; i >= 0; i--) {
      hooks?.beforeUndo?.(i);
      undoOp(this.state.root, txn, j.ops[i] as Op, j.owners, warnings);
    }
    const installed = join(this.state.dir, 'installed.json');
    if (existsSync(join(txn, PREVIOUS_INSTALLED))) renameSync(join(txn, PREVIOUS_INSTALLED), installed);
    else if (j.previous === null) rmSync(installed, { force: true });
    syncFs(this.state.root);
    this.state.removeTxn(j.id);
    fsyncDir(this.state.txnRoot);
  }

  /**
   * Finishes whatever an earlier run left: an interrupted commit or rollback is rolled back;
   * a staging without journal is discarded. Returns what was done, for the user.
   */
  recover(): string[] {
    const done: string[] = [];
    const ids = this.state.listTxns();
    const committed: string[] = [];
    for (const id of ids) {
      const j = this.read(id);
      if (j === null) {
        this.state.removeTxn(id);
        done.push(`discarded the staging of an apply that never started its commit (${id})`);
      } else if (j.state === 'committed') {
        committed.push(id);
      } else {
        const warnings: string[] = [];
        const what = j.state === 'committing' ? 'apply' : 'rollback';
        this.undo(j, warnings);
        done.push(`rolled back an interrupted ${what} (${id}): the root is as before it`, ...warnings);
      }
    }
    for (const id of committed.slice(0, -1)) this.state.removeTxn(id);
    return done;
  }

  lastCommitted(): Journal | null {
    const ids = this.state.listTxns();
    for (const id of ids.reverse()) {
      const j = this.read(id);
      if (j?.state === 'committed') return j;
    }
    return null;
  }
}
