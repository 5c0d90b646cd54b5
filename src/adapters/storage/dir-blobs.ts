// The embedded default blob store: one file per content under ROOT/ab/cd/<sha256>. A put writes
// ROOT/tmp/<random>.part while hashing, fsyncs it, then renames it to its sha256 name and fsyncs
// the directory: a crash or a cut-off upload never leaves a partial file under a real name, and
// a name, once visible, always holds exactly the bytes it names. Shared by all hosts and
// versions: equal bundles are stored once.

import { createHash, randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fromSystemError } from '../../core/errors.ts';
import { checkAnnounced, checkBlobName, inputFailed, type BlobInfo, type BlobPutOptions, type BlobStore, type PartialBlob } from '../../core/store/blobs.ts';
import { SHA256_PATTERN } from '../../core/store/validate.ts';

/** Bundles can hold secrets (ReaR configs carry passwords): owner-only by default. */
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;
const TMP = 'tmp';
/** Temp files older than this at open are leftovers of a crash. */
const STALE_MS = 24 * 3600 * 1000;
const READ_CHUNK = 1 << 20;

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(e, `reading ${path}`);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeAll(fh: FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
}

/** Opens (creating) the directory and clears stale temp files of earlier crashes. */
export async function openDirBlobs(root: string): Promise<DirBlobStore> {
  try {
    await mkdir(join(root, TMP), { recursive: true, mode: DIR_MODE });
  } catch (e) {
    throw fromSystemError(e, `opening the blob directory ${root}`);
  }
  const store = new DirBlobStore(root);
  await store.sweepPartials(STALE_MS);
  return store;
}

const FAN_OUT = /^[0-9a-f]{2}$/;

/** Names in a directory, [] if it does not exist. */
async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromSystemError(e, `listing ${dir}`);
  }
}

export class DirBlobStore implements BlobStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  /** ROOT/ab/cd/<sha256>: a path whether or not the blob exists. */
  pathOf(sha256: string): string {
    checkBlobName(sha256);
    return join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  async put(source: AsyncIterable<Uint8Array>, opts: BlobPutOptions = {}): Promise<BlobInfo> {
    const tmp = join(this.root, TMP, `${randomBytes(12).toString('hex')}.part`);
    const it = source[Symbol.asyncIterator]();
    let fh: FileHandle | undefined;
    let named = false;
    try {
      fh = await open(tmp, 'wx', FILE_MODE).catch((e) => { throw fromSystemError(e, 'creating a blob temp file'); });
      const hash = createHash('sha256');
      let size = 0;
      for (;;) {
        let r: IteratorResult<Uint8Array>;
        try {
          r = await it.next();
        } catch (e) {
          throw inputFailed(e);
        }
        if (r.done) break;
        hash.update(r.value);
        size += r.value.length;
        await writeAll(fh, r.value).catch((e) => { throw fromSystemError(e, 'writing a blob'); });
      }
      const info = { sha256: hash.digest('hex'), size };
      checkAnnounced(info, opts);
      await fh.sync();
      await fh.close();
      fh = undefined;
      const final = this.pathOf(info.sha256);
      if (!(await statOrNull(final))) {
        const dir = join(final, '..');
        await mkdir(dir, { recursive: true, mode: DIR_MODE });
        await rename(tmp, final);
        named = true;
        await fsyncDir(dir);
      }
      return { ...info, created: named };
    } catch (e) {
      await it.return?.().catch(() => undefined);
      throw fromSystemError(e, 'storing a blob');
    } finally {
      await fh?.close().catch(() => undefined);
      if (!named) await unlink(tmp).catch(() => undefined);
    }
  }

  async get(sha256: string): Promise<{ size: number; stream: Readable } | null> {
    const path = this.pathOf(sha256);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw fromSystemError(e, `opening blob ${sha256}`);
    }
    try {
      const { size } = await fh.stat();
      // The stream owns the handle from here and closes it when done or destroyed.
      return { size, stream: fh.createReadStream({ highWaterMark: READ_CHUNK }) };
    } catch (e) {
      await fh.close();
      throw fromSystemError(e, `reading blob ${sha256}`);
    }
  }

  async has(sha256: string): Promise<boolean> {
    return (await statOrNull(this.pathOf(sha256))) !== null;
  }

  /** Files under ab/cd/ whose name is a sha256 beginning with ab and cd; anything else is not a blob. */
  async *list(): AsyncGenerator<BlobInfo> {
    for (const a of (await names(this.root)).filter((n) => FAN_OUT.test(n)).sort()) {
      for (const b of (await names(join(this.root, a))).filter((n) => FAN_OUT.test(n)).sort()) {
        for (const name of (await names(join(this.root, a, b))).sort()) {
          if (!SHA256_PATTERN.test(name) || !name.startsWith(a + b)) continue;
          const st = await statOrNull(join(this.root, a, b, name));
          if (st?.isFile()) yield { sha256: name, size: st.size };
        }
      }
    }
  }

  async delete(sha256: string): Promise<boolean> {
    const path = this.pathOf(sha256);
    try {
      await unlink(path);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fromSystemError(e, `removing blob ${sha256}`);
    }
  }

  async partials(): Promise<PartialBlob[]> {
    const out: PartialBlob[] = [];
    const now = Date.now();
    for (const name of (await names(join(this.root, TMP))).sort()) {
      const st = await statOrNull(join(this.root, TMP, name));
      if (st) out.push({ name: `${TMP}/${name}`, size: st.size, age: Math.max(0, now - st.mtimeMs) });
    }
    return out;
  }

  async sweepPartials(olderThanMs: number): Promise<number> {
    let n = 0;
    for (const p of await this.partials()) {
      if (p.age < olderThanMs) continue;
      await unlink(join(this.root, p.name)).then(() => n++, () => undefined);
    }
    return n;
  }

  async close(): Promise<void> {}
}
