// Bundle bytes, stored once per content: the name of a blob is the sha256 of its bytes, so
// hosts and versions with equal bundles share one blob, and a blob is either complete under
// its name or absent. A small interface so a local directory, memory, or later an object store
// are interchangeable; all pass test/contract/blobs.contract.ts.

import type { Readable } from 'node:stream';
import { isRuError, RuError } from '../errors.ts';
import { SHA256_PATTERN } from './validate.ts';

export interface BlobInfo {
  readonly sha256: string;
  readonly size: number;
  /** From put: true when this put stored new bytes, false when the content was there already. */
  readonly created?: boolean;
}

/** An upload in progress, or what a killed one left (the directory store's tmp/*.part). */
export interface PartialBlob {
  readonly name: string;
  readonly size: number;
  /** Milliseconds since the last write. */
  readonly age: number;
}

export interface BlobPutOptions {
  /** Refuse (BLOB_DIGEST_MISMATCH) unless the bytes hash to this; nothing is stored then. */
  readonly sha256?: string;
  /** Refuse (BLOB_DIGEST_MISMATCH) unless exactly this many bytes arrive. */
  readonly size?: number;
}

export interface BlobStore {
  /**
   * Stores the bytes and names them by their sha256, hashing while writing. A source that fails
   * or is destroyed mid-way stores nothing (BLOB_INPUT_FAILED). Storing present content again
   * keeps the one copy.
   */
  put(source: AsyncIterable<Uint8Array>, opts?: BlobPutOptions): Promise<BlobInfo>;
  /** null when absent; STORE_INVALID for a malformed name. */
  get(sha256: string): Promise<{ readonly size: number; readonly stream: Readable } | null>;
  has(sha256: string): Promise<boolean>;
  /** Every complete blob, in no particular order (the store check's inventory). */
  list(): AsyncIterable<BlobInfo>;
  /**
   * Removes a blob; false if it was absent. The store does not know who refers to a blob: the
   * server removes only what no version names (MetadataStore.releaseBlobs).
   */
  delete(sha256: string): Promise<boolean>;
  /** Partial uploads it holds (none for a store that buffers in memory). */
  partials(): Promise<PartialBlob[]>;
  /** Removes partial uploads untouched for at least `olderThanMs` (0: all); returns how many. */
  sweepPartials(olderThanMs: number): Promise<number>;
  close(): Promise<void>;
}

/** The announced sha256/size, if any, must match what arrived; checked before a blob gets its name. */
export function checkAnnounced(actual: BlobInfo, opts: BlobPutOptions = {}): void {
  if (opts.sha256 !== undefined && opts.sha256 !== actual.sha256) {
    throw new RuError('BLOB_DIGEST_MISMATCH', `data hashes to ${actual.sha256}, not the announced ${opts.sha256}`, { expected: opts.sha256, actual: actual.sha256 });
  }
  if (opts.size !== undefined && opts.size !== actual.size) {
    throw new RuError('BLOB_DIGEST_MISMATCH', `${actual.size} bytes arrived, not the announced ${opts.size}`, { expected: opts.size, actual: actual.size });
  }
}

/** The source failed (cut-off upload): a RuError it raised passes through, anything else is BLOB_INPUT_FAILED. */
export function inputFailed(e: unknown): RuError {
  if (isRuError(e)) return e;
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' ? err.code : null;
  const message = typeof err?.message === 'string' ? err.message : String(e);
  return new RuError('BLOB_INPUT_FAILED', `the data being stored ended with an error: ${message}`, { cause: code });
}

export function checkBlobName(sha256: string): string {
  if (typeof sha256 !== 'string' || !SHA256_PATTERN.test(sha256)) {
    throw new RuError('STORE_INVALID', `blob name ${JSON.stringify(String(sha256))} is not a lower-case hex sha256`, { value: String(sha256) });
  }
  return sha256;
}
