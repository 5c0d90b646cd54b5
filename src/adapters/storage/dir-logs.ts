// Recovery log bytes as files in the data directory: DATA/logs/<id>.log, the default
// (core/store/log-bytes.ts). Appends go to the end of the file; a reader reads up to the size
// it saw, so it never sees a byte before its write finished.

import { createReadStream } from 'node:fs';
import { appendFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError } from '../../core/errors.ts';
import type { LogBytesStore } from '../../core/store/log-bytes.ts';

/** DATA/logs/<id>.log: where a recovery log's bytes are. */
export const logPath = (dir: string, id: number): string => join(dir, `${id}.log`);

const LOG_FILE = /^([1-9][0-9]{0,15})\.log$/;

export class DirLogStore implements LogBytesStore {
  readonly where: string;

  constructor(dir: string) {
    this.where = dir;
  }

  file = (id: number): string => logPath(this.where, id);

  async append(id: number, offset: number, data: Buffer): Promise<void> {
    if (data.length === 0) return;
    void offset;
    try {
      await appendFile(this.file(id), data, { mode: 0o600 });
    } catch (e) {
      throw fromSystemError(e as NodeJS.ErrnoException, `writing recovery log ${id}`);
    }
  }

  async size(id: number): Promise<number> {
    return stat(this.file(id)).then((s) => s.size, () => 0);
  }

  async *read(id: number, start: number, end?: number): AsyncIterable<Buffer> {
    const stop = end ?? (await this.size(id));
    if (stop <= start) return;
    for await (const c of createReadStream(this.file(id), { start, end: stop - 1 })) yield c as Buffer;
  }

  async *list(): AsyncIterable<{ id: number; bytes: number }> {
    const names = await readdir(this.where).catch(() => [] as string[]);
    for (const name of names.sort()) {
      const m = LOG_FILE.exec(name);
      if (m) yield { id: Number(m[1]), bytes: await this.size(Number(m[1])) };
    }
  }

  async close(): Promise<void> {}
}
