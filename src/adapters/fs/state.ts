// rear-update's own state under a root (var/lib/rear-update): the lock, the record of what is
// installed, and one directory per transaction. Directories this creates for a run that ends
// up changing nothing are removed again, so a refused apply leaves the root byte-for-byte.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmdirSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { RuError } from '../../core/errors.ts';
import type { StepResult } from '../../core/activation.ts';
import type { ManifestEntry } from '../../core/manifest.ts';
import { STATE_DIR } from '../../core/paths.ts';

/** What is installed: enough to report status and to detect drift. */
export interface Installed {
  readonly host: string | null;
  readonly class: string | null;
  readonly version: number | null;
  readonly created: string | null;
  readonly appliedAt: string;
  readonly source: string;
  /** Fingerprint of the key whose valid signature was checked, or null when applied --unsigned. */
  readonly key: string | null;
  readonly owns: readonly string[];
  /**
   * The --keep globs of that apply: paths below owned directories it left in place although
   * the bundle lacks them, which status therefore reports as kept, not as drift. Absent in
   * records written before keep was recorded.
   */
  readonly keep?: readonly string[];
  /** How `key` was trusted: pinned, or through key statements (absent in older records). */
  readonly trust?: InstalledTrust;
  /**
   * A layered bundle (format 2): the kernel release its kernel-bound content was installed for
   * (other releases' content was left out, and is neither installed nor drift), its layers,
   * and what became of the activation steps. Absent for other bundles and in older records.
   */
  readonly kernel?: string;
  readonly layers?: readonly InstalledLayer[];
  readonly activation?: InstalledActivation;
  readonly entries: readonly ManifestEntry[];
}

export interface InstalledLayer {
  readonly name: string;
  readonly class: string | null;
  readonly version: number | null;
}

export interface InstalledActivation {
  readonly kernel: string;
  /** The steps ran through `chroot ROOT` (the root is not /). */
  readonly chroot: boolean;
  /** False until the last step is done: a crash during activation leaves it false. */
  readonly complete: boolean;
  readonly steps: readonly StepResult[];
}

export interface InstalledTrust {
  readonly via: 'pinned' | 'statement';
  /** Fingerprints from a pinned key to the signer (just the signer when pinned). */
  readonly chain: readonly string[];
}

/** Writes a small file so that a reader sees either the old or the new content, never a mix. */
export function writeAtomic(path: string, data: string | Buffer): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(join(path, '..'));
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

export class StateDir {
  readonly dir: string;
  readonly txnRoot: string;
  private locked = false;

  constructor(readonly root: string) {
    this.dir = join(root, STATE_DIR);
    this.txnRoot = join(this.dir, 'txn');
  }

  /** Where activation steps (and rollback's depmod) append their output. */
  get activationLog(): string {
    return join(this.dir, 'activation.log');
  }

  /**
   * Ancestors of the state directory that do not exist yet (relative to the root). `open`
   * creates them; a dry run assumes them, so that it plans exactly what a real run will.
   */
  missingParents(): string[] {
    const parts = STATE_DIR.split('/');
    const out: string[] = [];
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (!existsSync(join(this.root, rel))) out.push(rel);
    }
    return out;
  }

  /**
   * Creates the state directory and takes the lock. Parents it had to create are recorded
   * (parents.json), so that once nothing is installed any more the root is left exactly as
   * it was before rear-update first touched it.
   */
  open(): void {
    const parents = this.missingParents();
    const fresh = !existsSync(this.dir);
    for (const rel of parents) mkdirSync(join(this.root, rel), { mode: 0o755 });
    if (fresh) {
      mkdirSync(this.dir, { mode: 0o700 });
      writeFileSync(join(this.dir, 'parents.json'), `${JSON.stringify(parents)}\n`, { mode: 0o600 });
    }
    if (!existsSync(this.txnRoot)) mkdirSync(this.txnRoot, { mode: 0o700 });
    this.lock();
  }

  private lock(): void {
    const path = join(this.dir, 'lock');
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        this.locked = true;
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
        throw new RuError('LOCKED', `another rear-update (pid ${pid}) is working on ${this.root}`, { pid, root: this.root });
      }
      // The holder died (kill -9, power loss): its journal is recovered next; take the lock over.
      rmSync(path, { force: true });
    }
    throw new RuError('LOCKED', `could not take the lock ${path}`, { root: this.root });
  }

  /** Releases the lock; with nothing installed and no transaction left, removes all trace. */
  close(): void {
    if (this.locked) {
      rmSync(join(this.dir, 'lock'), { force: true });
      this.locked = false;
    }
    if (!existsSync(this.dir) || existsSync(join(this.dir, 'installed.json')) || this.listTxns().length > 0) return;
    let parents: string[] = [];
    try {
      parents = JSON.parse(readFileSync(join(this.dir, 'parents.json'), 'utf8')) as string[];
    } catch {
      // no record: rear-update did not create any parent
    }
    try {
      rmdirSync(this.txnRoot);
      // Something else lives there (the apply log of a vetoed apply): leave it all, the record
      // of created parents included, so that a later close can still remove them.
      if (readdirSync(this.dir).some((n) => n !== 'parents.json')) return;
      rmSync(join(this.dir, 'parents.json'), { force: true });
      rmdirSync(this.dir);
    } catch {
      return; // something else lives there: leave it all
    }
    for (const rel of [...parents].reverse()) {
      try {
        rmdirSync(join(this.root, rel));
      } catch {
        break; // not empty: this and its parents stay
      }
    }
  }

  readInstalled(): Installed | null {
    try {
      return JSON.parse(readFileSync(join(this.dir, 'installed.json'), 'utf8')) as Installed;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new RuError('JOURNAL_INVALID', `${join(this.dir, 'installed.json')} is unreadable: ${(e as Error).message}`);
    }
  }

  writeInstalled(rec: Installed | null): void {
    const path = join(this.dir, 'installed.json');
    if (rec === null) {
      if (existsSync(path)) unlinkSync(path);
      return;
    }
    writeAtomic(path, `${JSON.stringify(rec)}\n`);
  }

  /** Transaction directories, oldest first (ids sort by time). */
  listTxns(): string[] {
    if (!existsSync(this.txnRoot)) return [];
    return readdirSync(this.txnRoot).filter((n) => !n.startsWith('.')).sort();
  }

  newTxnDir(): { id: string; dir: string } {
    const id = `${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const dir = join(this.txnRoot, id);
    mkdirSync(dir, { mode: 0o700 });
    return { id, dir };
  }

  removeTxn(id: string): void {
    rmSync(join(this.txnRoot, id), { recursive: true, force: true });
  }

}
