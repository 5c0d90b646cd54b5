// Buffer reuse for the read path of apply. Why: every chunk a Node stream hands on is a fresh
// ArrayBuffer, freed only at the next garbage collection, so a 200 MB bundle walks the process
// through ~100 MB of never-touched memory, and on virtual machines each first touch of a page
// is a costly fault (measured: ~27,000 faults, 0.3 s of a 0.7 s gunzip; a rescue system lives
// in such machines). Recycling a handful of buffers brings that to ~6,000 faults.
//
// Both pools hand a buffer out again only when provably nothing refers to it any more:
//  - InputPool: a file read into pool buffers; a buffer comes back once gunzip reports the
//    chunk consumed (its write callback), after which zlib no longer reads it.
//  - OutputPool: gunzip's output buffers. Node's zlib stream fills `_outBuffer` completely,
//    handing on slices of it, before it assigns a new one (lib/zlib.js processCallback, the
//    same in Node 20 and 24). The pool serves that assignment from buffers whose every byte
//    the consumer has reported done with; when none is free, a new buffer as before. It is
//    only installed on the Node versions whose zlib code was read for it, and only when the
//    stream's fields look as expected; otherwise zlib runs untouched.
// A signed bundle would in any case refuse corrupted data (every member's sha256 is checked).

import { read, type PathLike, open, close } from 'node:fs';
import { Readable } from 'node:stream';
import type { Gunzip } from 'node:zlib';

/** A file as a stream of chunks from a small set of reused buffers. */
export class PooledFileStream extends Readable {
  readonly #free: Buffer[] = [];
  readonly #mine = new Set<ArrayBufferLike>();
  #fd: number | null = null;
  #waiting = false;
  /** A read is on the thread pool. */
  #reading = false;
  #closeAfterRead: (() => void) | null = null;

  constructor(private readonly path: PathLike, private readonly chunk = 256 << 10, count = 8) {
    // highWaterMark 0: read only when the consumer asks, so at most `count` chunks are out.
    super({ highWaterMark: 0 });
    for (let i = 0; i < count; i++) {
      const b = Buffer.allocUnsafeSlow(chunk);
      this.#free.push(b);
      this.#mine.add(b.buffer);
    }
  }

  override _construct(cb: (e?: Error | null) => void): void {
    open(this.path, 'r', (e, fd) => {
      this.#fd = fd;
      cb(e);
    });
  }

  override _read(): void {
    // Never after destroy: the descriptor is closed then, and its number may already belong
    // to another file of this process, whose position a read would move (found by fuzzing:
    // the fuzzer's own scan of the next case read an empty README and an empty parents.json).
    if (this.destroyed || this.#fd === null || this.#reading) return;
    const b = this.#free.pop();
    if (!b) {
      this.#waiting = true; // resumed by recycle()
      return;
    }
    this.#reading = true;
    read(this.#fd, b, 0, this.chunk, null, (e, n) => {
      this.#reading = false;
      if (this.#closeAfterRead) {
        // Destroyed while this read was on the thread pool: close only now (see _destroy).
        this.#closeAfterRead();
        return;
      }
      if (e) this.destroy(e);
      else if (n === 0) {
        this.#free.push(b);
        this.push(null);
      } else this.push(b.subarray(0, n));
    });
  }

  /** The consumer is done with a chunk this stream produced. */
  recycle(chunk: Buffer): void {
    if (!this.#mine.has(chunk.buffer) || chunk.byteOffset !== 0) return;
    this.#free.push(Buffer.from(chunk.buffer, 0, this.chunk));
    if (this.#waiting && !this.destroyed) {
      this.#waiting = false;
      this._read();
    }
  }

  override _destroy(e: Error | null, cb: (e?: Error | null) => void): void {
    const fd = this.#fd;
    if (fd === null) {
      cb(e);
      return;
    }
    const closeNow = (): void => close(fd, () => cb(e));
    // A read still on the thread pool uses the descriptor: closing it first would let that read
    // land on whatever file reuses the number.
    if (this.#reading) this.#closeAfterRead = closeNow;
    else closeNow();
  }
}

export function isRecycling(s: Readable): s is PooledFileStream {
  return s instanceof PooledFileStream;
}

/** Serves gunzip's output buffers from a small pool; see the top of this file. */
export class OutputPool {
  /** How many output buffers came from the pool (the rest were zlib's own fresh ones). */
  served = 0;
  readonly #free: Buffer[] = [];
  readonly #consumed = new Map<ArrayBufferLike, number>();
  readonly #size: number;

  constructor(gunzip: Gunzip, size: number, count: number) {
    this.#size = size;
    const z = gunzip as unknown as { _outBuffer?: unknown; _outOffset?: unknown; _chunkSize?: unknown };
    // Only the zlib stream whose processCallback was read for this (Node 20 to 24).
    const major = Number(process.versions.node.split('.')[0]);
    if (major < 20 || major > 24 || !Buffer.isBuffer(z._outBuffer) || z._outOffset !== 0 || z._chunkSize !== size) return;
    for (let i = 0; i < count; i++) {
      const b = Buffer.allocUnsafeSlow(size);
      this.#free.push(b);
      this.#consumed.set(b.buffer, 0);
    }
    // processCallback, when a buffer is full: `handle.availOutBefore = self._chunkSize;
    // self._outOffset = 0; self._outBuffer = Buffer.allocUnsafe(self._chunkSize);`. The one
    // read of _chunkSize between resetting the offset and assigning the buffer is answered
    // with 0, so zlib's own allocation costs nothing (213 of them per 200 MiB: ~0.1 s of
    // garbage collection); the assignment then gets a pooled buffer or a real new one.
    let current: Buffer = z._outBuffer;
    let offset = 0;
    let allocating = false;
    Object.defineProperties(gunzip, {
      _outOffset: {
        configurable: true,
        get: () => offset,
        set: (v: number) => {
          offset = v;
          if (v === 0) allocating = true;
        },
      },
      _chunkSize: {
        configurable: true,
        get: () => {
          if (!allocating) return size;
          allocating = false;
          return 0;
        },
      },
      _outBuffer: {
        configurable: true,
        get: () => current,
        set: (fresh: Buffer) => {
          allocating = false;
          const pooled = this.#free.pop();
          if (pooled) this.served += 1;
          current = pooled ?? (fresh.length === size ? fresh : Buffer.allocUnsafe(size));
        },
      },
    });
  }

  /** `n` bytes of `chunk` (a slice zlib handed on, or part of one) are no longer referenced. */
  done(chunk: Buffer, n = chunk.length): void {
    const ab = chunk.buffer;
    const c = this.#consumed.get(ab);
    if (c === undefined) return;
    const now = c + n;
    if (now < this.#size) {
      this.#consumed.set(ab, now);
      return;
    }
    this.#consumed.set(ab, 0);
    this.#free.push(Buffer.from(ab, 0, this.#size));
  }

  /** Something may still hold a reference into this buffer: never hand it out again. */
  retire(chunk: Buffer): void {
    this.#consumed.delete(chunk.buffer);
  }
}
