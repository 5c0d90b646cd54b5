// Recovery logs that ReaR streams to the server while `rear recover` runs (one long PUT of
// `tail -f | curl -T-`). Bytes go to DATA/logs/<id>.log as they arrive, the index in the
// metadata store is updated at most every second, and readers can follow a log live: they
// read what is on disk, then wait for more until the upload completes.

import { EventEmitter } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { fromSystemError, RuError } from '../core/errors.ts';
import type { LogRecord, MetadataStore } from '../core/store/metadata.ts';

const INDEX_EVERY_MS = 1000;

// ReaR logs its DRLM_REST_OPTS, so a client's `-H Authorization:TOKEN` would be stored (and
// shown to every reader of the log). Tokens are cut to their id before anything is written.
const TOKEN = /ru_([0-9a-f]{12})_[A-Za-z0-9_-]{43}/g;
const TOKEN_LEN = 3 + 12 + 1 + 43;
const TOKEN_PREFIX = /^r(?:u(?:_(?:[0-9a-f]{0,11}|[0-9a-f]{12}(?:_[A-Za-z0-9_-]{0,42})?)?)?)?$/;

/** Redacts tokens in a stream of chunks; holds back a tail that could be the start of one. */
export class TokenRedactor {
  #held = '';

  push(chunk: Buffer): Buffer {
    // latin1 maps bytes to characters one to one: nothing else in the log changes.
    const text = this.#held + chunk.toString('latin1');
    // Hold back only a tail that could begin a token, so a live reader sees every finished line.
    let cut = text.length;
    for (let p = Math.max(0, text.length - (TOKEN_LEN - 1)); p < text.length; p++) {
      if (TOKEN_PREFIX.test(text.slice(p))) {
        cut = p;
        break;
      }
    }
    for (const m of text.matchAll(TOKEN)) {
      if (m.index < cut && m.index + m[0].length > cut) cut = m.index + m[0].length;
    }
    this.#held = text.slice(cut);
    return Buffer.from(text.slice(0, cut).replace(TOKEN, 'ru_$1_[redacted]'), 'latin1');
  }

  end(): Buffer {
    const rest = this.#held.replace(TOKEN, 'ru_$1_[redacted]');
    this.#held = '';
    return Buffer.from(rest, 'latin1');
  }
}

/** DATA/logs/<id>.log: where a recovery log's bytes are (the store check reads them too). */
export const logPath = (dir: string, id: number): string => join(dir, `${id}.log`);

export class LogService {
  readonly #meta: MetadataStore;
  readonly #dir: string;
  /** 'grow:<id>' after bytes were written and at the end of an upload. */
  readonly #events = new EventEmitter().setMaxListeners(0);
  /** Logs whose upload is in progress in this process: only those can still grow. */
  readonly #active = new Set<number>();

  constructor(meta: MetadataStore, dir: string) {
    this.#meta = meta;
    this.#dir = dir;
  }

  file = (id: number): string => logPath(this.#dir, id);

  /**
   * Stores an upload as it arrives; resolves when it ends (complete) or breaks off (incomplete).
   * The index never counts a byte before its write finished, so it never claims more than the
   * file holds, even after kill -9. A full disk ends the upload with NO_SPACE; what was written
   * stays, counted, and the record stays incomplete.
   */
  async receive(rec: LogRecord, body: Readable, maxBytes: number, onBytes: (n: number) => void): Promise<LogRecord> {
    const out = createWriteStream(this.file(rec.id), { flags: 'a', mode: 0o600 });
    // Errors reach us through the write callbacks; unhandled, the stream's event would end the process.
    out.on('error', () => undefined);
    const write = (c: Buffer): Promise<void> => new Promise((resolve, reject) => {
      out.write(c, (e) => (e ? reject(fromSystemError(e, `writing recovery log ${rec.id}`)) : resolve()));
    });
    const redactor = new TokenRedactor();
    let bytes = rec.bytes;
    const store = async (c: Buffer): Promise<void> => {
      if (c.length === 0) return;
      await write(c);
      bytes += c.length;
      onBytes(c.length);
      this.#events.emit(`grow:${rec.id}`);
    };
    let last = 0;
    this.#active.add(rec.id);
    try {
      for await (const raw of body as AsyncIterable<Buffer>) {
        if (bytes + raw.length > maxBytes) throw new RuError('UPLOAD_TOO_LARGE', `log ${rec.id} exceeds ${maxBytes} bytes`, { limit: maxBytes });
        await store(redactor.push(raw));
        if (Date.now() - last >= INDEX_EVERY_MS) {
          last = Date.now();
          await this.#meta.updateLog(rec.id, bytes, false);
        }
      }
      await store(redactor.end());
      return await this.#finish(rec.id, out, bytes, true);
    } catch (e) {
      // A broken-off upload keeps what arrived; only our own refusals go on to the client.
      await store(redactor.end()).catch(() => undefined);
      const done = await this.#finish(rec.id, out, bytes, false).catch(() => null);
      if (e instanceof RuError) throw e;
      return done ?? { ...rec, bytes, complete: false };
    }
  }

  async #finish(id: number, out: ReturnType<typeof createWriteStream>, bytes: number, complete: boolean): Promise<LogRecord> {
    out.end();
    await finished(out).catch(() => undefined);
    this.#active.delete(id);
    try {
      return await this.#meta.updateLog(id, bytes, complete);
    } finally {
      this.#events.emit(`grow:${id}`);
    }
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
        // Complete, or broken off (no upload of it is running here): nothing more will come.
        if (now?.complete || !this.#active.has(id)) {
          // Bytes are on disk before the record says complete; look once more, then stop.
          if ((await stat(this.file(id)).then((s) => s.size, () => 0)) > pos) continue;
          return;
        }
        // Woken by new bytes or the end; now and then anyway, in case an event was missed.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([woken, new Promise((r) => (timer = setTimeout(r, 2000)))]);
        clearTimeout(timer);
      } finally {
        this.#events.off(`grow:${id}`, onGrow);
        signal?.removeEventListener('abort', onGrow);
      }
    }
  }
}
