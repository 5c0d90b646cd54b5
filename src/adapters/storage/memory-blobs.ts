// Blobs in a Map: the reference implementation for the blob contract suite and a fast store for
// server tests. Bytes are buffered until the source ends, so a failed source stores nothing.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { checkAnnounced, checkBlobName, inputFailed, type BlobInfo, type BlobPutOptions, type BlobStore, type PartialBlob } from '../../core/store/blobs.ts';

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
    const created = !this.#blobs.has(info.sha256);
    if (created) this.#blobs.set(info.sha256, data);
    return { ...info, created };
  }

  async get(sha256: string): Promise<{ size: number; stream: Readable } | null> {
    const data = this.#blobs.get(checkBlobName(sha256));
    return data ? { size: data.length, stream: Readable.from([data]) } : null;
  }

  async has(sha256: string): Promise<boolean> {
    return this.#blobs.has(checkBlobName(sha256));
  }

  async *list(): AsyncGenerator<BlobInfo> {
    for (const [sha256, data] of [...this.#blobs]) yield { sha256, size: data.length };
  }

  async delete(sha256: string): Promise<boolean> {
    return this.#blobs.delete(checkBlobName(sha256));
  }

  /** Nothing is partial here: bytes are kept only once the source ended. */
  async partials(): Promise<PartialBlob[]> {
    return [];
  }

  async sweepPartials(): Promise<number> {
    return 0;
  }

  /** How many distinct blobs are held (tests). */
  get count(): number {
    return this.#blobs.size;
  }

  async close(): Promise<void> {}
}
