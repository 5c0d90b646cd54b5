// Recovery logs that ReaR streams to the server while `rear recover` runs (one long PUT of
// `tail -f | curl -T-`). Bytes go to the log store as they arrive (DATA/logs/<id>.log, or with
// --blobs postgres the database: core/store/log-bytes.ts), the index in the metadata store is
// updated at most every second, and readers can follow a log live — on this instance or any
// other: the receiving instance announces growth on the bus (bus.ts) and keeps the index's
// `updated` fresh while the upload runs, so a reader elsewhere knows it may still grow.

import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { RuError } from '../core/errors.ts';
import type { LogBytesStore } from '../core/store/log-bytes.ts';
import type { LogRecord, MetadataStore } from '../core/store/metadata.ts';
import type { Bus } from './bus.ts';

const INDEX_EVERY_MS = 1000;
/** While an upload is quiet, its index is touched (and growth announced) this often... */
const ALIVE_EVERY_MS = 5000;
/** ...so an upload not heard of for this long, on any instance, has stopped (its instance died). */
const QUIET_MS = 15_000;
/** Received bytes are stored in pieces of up to this size, or after FLUSH_MS. */
const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 200;
/** A follower looks at the store at least this often, bus message or not. */
const RECHECK_MS = 1000;
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

export class LogService {
  readonly #meta: MetadataStore;
  readonly #bytes: LogBytesStore;
  readonly #bus: Bus;
  /** Logs whose upload is in progress in this process. */
  readonly #active = new Set<number>();
  /** Logs whose upload another instance announced as ended (bounded; insertion order is age). */
  readonly #endedElsewhere = new Set<number>();

  constructor(meta: MetadataStore, bytes: LogBytesStore, bus: Bus) {
    this.#meta = meta;
    this.#bytes = bytes;
    this.#bus = bus;
    bus.subscribe((m, local) => {
      if (m.kind !== 'log' || local) return;
      // An upload of the same log taken up again elsewhere (ReaR sends it anew) grows once more.
      if (!m.ended) {
        this.#endedElsewhere.delete(m.id);
        return;
      }
      this.#endedElsewhere.add(m.id);
      if (this.#endedElsewhere.size > 10_000) this.#endedElsewhere.delete(this.#endedElsewhere.values().next().value!);
    });
  }

  /** Where the bytes are (the store check and messages). */
  get store(): LogBytesStore {
    return this.#bytes;
  }

  /** The bytes stored for log `id` now. */
  size(id: number): Promise<number> {
    return this.#bytes.size(id);
  }

  /** Bytes [start, end) as stored now. */
  range(id: number, start: number, end?: number): AsyncIterable<Buffer> {
    return this.#bytes.read(id, start, end);
  }

  /**
   * Stores an upload as it arrives; resolves when it ends (complete) or breaks off (incomplete).
   * The index never counts a byte before its write finished, so it never claims more than the
   * store holds, even after kill -9. A full disk ends the upload with NO_SPACE; what was written
   * stays, counted, and the record stays incomplete.
   */
  async receive(rec: LogRecord, body: Readable, maxBytes: number, onBytes: (n: number) => void): Promise<LogRecord> {
    const id = rec.id;
    const redactor = new TokenRedactor();
    // Bytes handed to the store (written) and acknowledged by it (stored).
    let written = rec.bytes;
    let stored = rec.bytes;
    let held: Buffer[] = [];
    let heldBytes = 0;
    let chain: Promise<void> = Promise.resolve();
    let failed: unknown = null;
    let timer: NodeJS.Timeout | undefined;
    const flush = (): Promise<void> => {
      clearTimeout(timer);
      timer = undefined;
      if (heldBytes === 0) return chain;
      const data = held.length === 1 ? held[0]! : Buffer.concat(held);
      held = [];
      heldBytes = 0;
      const at = written;
      written += data.length;
      chain = chain.then(async () => {
        if (failed) return;
        await this.#bytes.append(id, at, data);
        stored += data.length;
        onBytes(data.length);
        this.#bus.publish({ kind: 'log', id, bytes: stored, ended: false });
        // The index follows the stored bytes, at most once a second (the first piece at once).
        if (Date.now() - indexed >= INDEX_EVERY_MS) {
          indexed = Date.now();
          await this.#meta.updateLog(id, stored, false);
        }
      }).catch((e: unknown) => {
        failed ??= e;
      });
      return chain;
    };
    const add = async (b: Buffer): Promise<void> => {
      if (b.length === 0) return;
      held.push(b);
      heldBytes += b.length;
      if (heldBytes >= FLUSH_BYTES) await flush();
      else timer ??= setTimeout(() => void flush(), FLUSH_MS);
      if (failed) throw failed;
    };
    let indexed = 0;
    this.#active.add(id);
    this.#endedElsewhere.delete(id);
    // A quiet upload (rear is busy, nothing logged) still says it is alive, to readers elsewhere.
    // In the chain: no touch may land after the final update (it would undo "complete").
    const alive = setInterval(() => {
      chain = chain.then(async () => {
        if (failed) return;
        await this.#meta.updateLog(id, stored, false);
        this.#bus.publish({ kind: 'log', id, bytes: stored, ended: false });
      }).catch(() => undefined);
    }, ALIVE_EVERY_MS);
    const settle = async (): Promise<void> => {
      clearInterval(alive);
      await flush();
    };
    try {
      for await (const raw of body as AsyncIterable<Buffer>) {
        if (written + heldBytes + raw.length > maxBytes) throw new RuError('UPLOAD_TOO_LARGE', `log ${id} exceeds ${maxBytes} bytes`, { limit: maxBytes });
        await add(redactor.push(raw));
      }
      await add(redactor.end());
      await settle();
      if (failed) throw failed;
      return await this.#finish(id, stored, true);
    } catch (e) {
      // A broken-off upload keeps what arrived; only our own refusals go on to the client.
      if (!failed) {
        held.push(redactor.end());
        heldBytes += held[held.length - 1]!.length;
      }
      await settle();
      const done = await this.#finish(id, stored, false).catch(() => null);
      if (e instanceof RuError) throw e;
      return done ?? { ...rec, bytes: stored, complete: false };
    }
  }

  async #finish(id: number, bytes: number, complete: boolean): Promise<LogRecord> {
    this.#active.delete(id);
    try {
      return await this.#meta.updateLog(id, bytes, complete);
    } finally {
      this.#bus.publish({ kind: 'log', id, bytes, ended: true });
    }
  }

  /** An upload of log `rec` may still be running, here or on another instance. */
  #mayGrow(rec: LogRecord): boolean {
    if (rec.complete) return false;
    if (this.#active.has(rec.id)) return true;
    if (this.#endedElsewhere.has(rec.id)) return false;
    return Date.now() - Date.parse(rec.updated) < QUIET_MS;
  }

  /**
   * The log's bytes from `offset`; with follow, keeps yielding as the upload grows and ends
   * when it completes, breaks off, or goes quiet for good (or `signal` aborts).
   */
  async *read(id: number, offset: number, follow: boolean, signal?: AbortSignal): AsyncGenerator<Buffer> {
    const rec = await this.#meta.getLog(id);
    if (!rec) throw new RuError('LOG_UNKNOWN', `no recovery log ${id}`, { log: id });
    let pos = offset;
    for (;;) {
      // Listening before looking: growth announced while we read is not missed.
      const wait = new AbortController();
      const onAbort = (): void => wait.abort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const off = this.#bus.subscribe((m) => {
        if (m.kind === 'log' && m.id === id) wait.abort();
      });
      try {
        const size = await this.#bytes.size(id);
        if (size > pos) {
          for await (const c of this.#bytes.read(id, pos, size)) {
            pos += c.length;
            yield c;
          }
          continue;
        }
        if (!follow || signal?.aborted) return;
        const now = await this.#meta.getLog(id);
        if (!now || !this.#mayGrow(now)) {
          // Bytes are stored before the record says complete; look once more, then stop.
          if ((await this.#bytes.size(id)) > pos) continue;
          return;
        }
        // Woken by new bytes or the end; at least once a second anyway, in case a message was lost.
        await sleep(RECHECK_MS, undefined, { signal: wait.signal }).catch(() => undefined);
      } finally {
        off();
        signal?.removeEventListener('abort', onAbort);
      }
    }
  }
}
