// Staging for apply: verified member data is written to flat, numbered files (s/1, s/2, ...)
// inside the transaction directory, which sits on the root's file system. No staged name is
// ever derived from a member name, so nothing in an archive can steer where staging writes.

import { closeSync, createWriteStream, fchmodSync, fchownSync, futimesSync, linkSync, lchownSync, lutimesSync, mkdirSync, openSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Stager, StageMeta } from '../tar/bundle-reader.ts';

export class DirStager implements Stager {
  private n = 0;
  private readonly open = new Set<Writable>();

  constructor(private readonly txnDir: string, private readonly owners: boolean) {
    mkdirSync(join(txnDir, 's'), { recursive: true, mode: 0o700 });
    mkdirSync(join(txnDir, 'b'), { recursive: true, mode: 0o700 });
  }

  private next(): string {
    this.n += 1;
    return `s/${this.n}`;
  }

  file(meta: StageMeta): { name: string; sink: Writable; done: Promise<void> } {
    const name = this.next();
    const fd = openSync(join(this.txnDir, name), 'wx', 0o600);
    const sink = createWriteStream('', { fd, autoClose: false, highWaterMark: 1 << 20 });
    this.open.add(sink);
    const done = new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        this.open.delete(sink);
        try {
          if (!err) {
            if (this.owners) fchownSync(fd, meta.uid, meta.gid);
            fchmodSync(fd, meta.mode);
            futimesSync(fd, meta.mtime, meta.mtime);
          }
        } catch (e) {
          err = e;
        }
        closeSync(fd);
        if (err) reject(err);
        else resolve();
      };
      sink.on('finish', () => finish());
      sink.on('error', (e) => finish(e));
      // Destroyed because the read was aborted: close the descriptor, the staging goes anyway.
      sink.on('close', () => finish(settled ? undefined : new Error('staging aborted')));
    });
    return { name, sink, done };
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

  /** Stops every write still in flight (after a refusal). */
  abort(): void {
    for (const s of this.open) s.destroy();
  }
}
