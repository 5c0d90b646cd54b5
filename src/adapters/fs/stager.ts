// Staging for apply: verified member data is written to flat, numbered files (s/1, s/2, ...)
// inside the transaction directory, which sits on the root's file system. No staged name is
// ever derived from a member name, so nothing in an archive can steer where staging writes.

import { closeSync, fchmodSync, fchownSync, futimesSync, linkSync, lchownSync, lutimesSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { StagedFile, Stager, StageMeta } from '../tar/bundle-reader.ts';

export class DirStager implements Stager {
  private n = 0;
  private readonly open = new Set<number>();
  /** A new file belongs to us and gets mode & ~umask: owner and mode calls are skipped when they would change nothing. */
  private readonly uid = process.getuid?.() ?? -1;
  private readonly gid = process.getgid?.() ?? -1;
  private readonly umask = process.umask();

  constructor(private readonly txnDir: string, private readonly owners: boolean) {
    mkdirSync(join(txnDir, 's'), { recursive: true, mode: 0o700 });
    mkdirSync(join(txnDir, 'b'), { recursive: true, mode: 0o700 });
  }

  private next(): string {
    this.n += 1;
    return `s/${this.n}`;
  }

  file(meta: StageMeta): StagedFile {
    const name = this.next();
    // Created with its final mode: the chmod below is then only needed where umask interferes.
    // (Writing on the thread pool instead was measured slower: on two cores it competes with zlib.)
    const fd = openSync(join(this.txnDir, name), 'wx', meta.mode);
    this.open.add(fd);
    return {
      name,
      write: (chunk: Buffer): void => {
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      },
      close: (): void => {
        if (this.owners && (meta.uid !== this.uid || meta.gid !== this.gid)) fchownSync(fd, meta.uid, meta.gid);
        if ((meta.mode & ~this.umask) !== meta.mode) fchmodSync(fd, meta.mode);
        futimesSync(fd, meta.mtime, meta.mtime);
        this.open.delete(fd);
        closeSync(fd);
      },
    };
  }

  symlink(target: string, meta: StageMeta): string {
    const name = this.next();
    const abs = join(this.txnDir, name);
    symlinkSync(target, abs);
    if (this.owners) lchownSync(abs, meta.uid, meta.gid);
    lutimesSync(abs, meta.mtime, meta.mtime);
    return name;
  }

  hardlink(stagedTarget: string): string {
    const name = this.next();
    linkSync(join(this.txnDir, stagedTarget), join(this.txnDir, name));
    return name;
  }

  /** Closes every staged file still open (after a refusal); the staging is removed anyway. */
  abort(): void {
    for (const fd of this.open) closeSync(fd);
    this.open.clear();
  }
}
