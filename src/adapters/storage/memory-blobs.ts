// Blobs in a Map: the reference implementation for the blob contract suite and a fast store for
// server tests. Bytes are buffered until the source ends, so a failed source stores nothing.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { checkAnnounced, checkBlobName, inputFailed, type BlobInfo, type BlobPutOptions, type BlobStore } from '../../core/store/blobs.ts';

export class MemoryBlobStore implements BlobStore {
  readonly #blobs = new Map<string, Buffer>();

  async put(source: AsyncIterable<Uint8Array>, opts: BlobPutOptions = {}): Promise<BlobInfo> {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of source) {
        hash.update(chunk);
        chunks.push(Buffer.from(chunk));
      }
    } catch (e) {
      throw inputFailed(e);
    }
    const data = Buffer.concat(chunks);
    const info = { sha256: hash.digest('hex'), size: data.length };
    checkAnnounced(info, opts);
    if (!this.#blobs.has(info.sha256)) this.#blobs.set(info.sha256, data);
    return info;
  }

  async get(sha256: string): Promise<{ size: number; stream: Readable } | null> {
    const data = this.#blobs.get(checkBlobName(sha256));
    return data ? { size: data.length, stream: Readable.from([data]) } : null;
  }

  async has(sha256: string): Promise<boolean> {
    return this.#blobs.has(checkBlobName(sha256));
  }

  /** How many distinct blobs are held (tests). */
  get count(): number {
    return this.#blobs.size;
  }

  async close(): Promise<void> {}
}
