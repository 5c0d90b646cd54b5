// Recovery logs that ReaR streams to the server while `rear recover` runs (one long PUT of
// `tail -f | curl -T-`). Bytes go to DATA/logs/<id>.log as they arrive, the index in the
// metadata store is updated at most every second, and readers can follow a log live: they
// read what is on disk, then wait for more until the upload completes.

import { EventEmitter } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { RuError } from '../core/errors.ts';
import type { LogRecord, MetadataStore } from '../core/store/metadata.ts';

const INDEX_EVERY_MS = 1000;

export class LogService {
  readonly #meta: MetadataStore;
  readonly #dir: string;
  /** 'grow:<id>' after bytes were written, 'done:<id>' at the end of an upload. */
  readonly #events = new EventEmitter().setMaxListeners(0);

  constructor(meta: MetadataStore, dir: string) {
    this.#meta = meta;
    this.#dir = dir;
  }

  file = (id: number): string => join(this.#dir, `${id}.log`);

  /** Stores an upload as it arrives; resolves when it ends (complete) or breaks off (incomplete). */
  async receive(rec: LogRecord, body: Readable, maxBytes: number, onBytes: (n: number) => void): Promise<LogRecord> {
    const out = createWriteStream(this.file(rec.id), { flags: 'a', mode: 0o600 });
    let bytes = rec.bytes;
    let last = 0;
    let complete = false;
    try {
      for await (const c of body as AsyncIterable<Buffer>) {
        if (bytes + c.length > maxBytes) throw new RuError('UPLOAD_TOO_LARGE', `log ${rec.id} exceeds ${maxBytes} bytes`, { limit: maxBytes });
        if (!out.write(c)) await new Promise<void>((r) => out.once('drain', () => r()));
        bytes += c.length;
        onBytes(c.length);
        this.#events.emit(`grow:${rec.id}`);
        if (Date.now() - last >= INDEX_EVERY_MS) {
          last = Date.now();
          await this.#meta.updateLog(rec.id, bytes, false);
        }
      }
      complete = true;
    } catch (e) {
      // A broken-off upload keeps what arrived; only our own refusals go on to the client.
      if (e instanceof RuError) {
        await this.#finish(rec.id, out, bytes, false);
        throw e;
      }
    }
    return this.#finish(rec.id, out, bytes, complete);
  }

  async #finish(id: number, out: ReturnType<typeof createWriteStream>, bytes: number, complete: boolean): Promise<LogRecord> {
    await new Promise<void>((r) => out.end(() => r()));
    const done = await this.#meta.updateLog(id, bytes, complete);
    this.#events.emit(`grow:${id}`);
    this.#events.emit(`done:${id}`);
    return done;
  }

  /**
   * The log's bytes from `offset`; with follow, keeps yielding as the upload grows and ends
   * when it completes (or `signal` aborts).
   */
  async *read(id: number, offset: number, follow: boolean, signal?: AbortSignal): AsyncGenerator<Buffer> {
    const rec = await this.#meta.getLog(id);
    if (!rec) throw new RuError('LOG_UNKNOWN', `no recovery log ${id}`, { log: id });
    let pos = offset;
    for (;;) {
      let wake: (() => void) | null = null;
      const woken = new Promise<void>((r) => (wake = r));
      const onGrow = (): void => wake?.();
      this.#events.on(`grow:${id}`, onGrow);
      signal?.addEventListener('abort', onGrow, { once: true });
      try {
        const size = await stat(this.file(id)).then((s) => s.size, () => 0);
        if (size > pos) {
          for await (const c of createReadStream(this.file(id), { start: pos, end: size - 1 })) {
            pos += (c as Buffer).length;
            yield c as Buffer;
          }
          continue;
        }
        const now = await this.#meta.getLog(id);
        if (!follow || signal?.aborted) return;
        if (now?.complete) {
          // Bytes are on disk before the record says complete; look once more, then stop.
          if ((await stat(this.file(id)).then((s) => s.size, () => 0)) > pos) continue;
          return;
        }
        // A log whose uploader died without an end stays incomplete; wake up now and then anyway.
        await Promise.race([woken, new Promise((r) => setTimeout(r, 2000))]);
      } finally {
        this.#events.off(`grow:${id}`, onGrow);
        signal?.removeEventListener('abort', onGrow);
      }
    }
  }
}
