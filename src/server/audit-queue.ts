// Download records, batched: every successful fetch is audited, and on the download path one
// INSERT per request was the largest cost after copying the bytes. Records wait at most
// 50 ms (or until 500 are queued) and go to the store in one statement; reading the audit
// log flushes first, and so does closing the server. A crash loses at most those 50 ms of
// fetch records; refusals, publishes and admin changes are written at once.

import type { FastifyBaseLogger } from 'fastify';
import type { AuditStore, NewAuditEvent } from '../core/store/metadata.ts';

export class AuditQueue {
  readonly #store: Pick<AuditStore, 'appendAudits'>;
  readonly #log: Pick<FastifyBaseLogger, 'error'> | null;
  readonly #delayMs: number;
  readonly #max: number;
  #queue: NewAuditEvent[] = [];
  #timer: NodeJS.Timeout | null = null;
  #writing: Promise<void> = Promise.resolve();

  constructor(store: Pick<AuditStore, 'appendAudits'>, log: Pick<FastifyBaseLogger, 'error'> | null = null, delayMs = 50, max = 500) {
    this.#store = store;
    this.#log = log;
    this.#delayMs = delayMs;
    this.#max = max;
  }

  add(e: NewAuditEvent): void {
    this.#queue.push(e);
    if (this.#queue.length >= this.#max) void this.flush();
    else this.#timer ??= setTimeout(() => void this.flush(), this.#delayMs);
  }

  /** Writes what is queued; resolves once everything queued before the call is stored. */
  flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const batch = this.#queue;
    this.#queue = [];
    this.#writing = this.#writing.then(async () => {
      if (batch.length === 0) return;
      try {
        await this.#store.appendAudits(batch);
      } catch (err) {
        this.#log?.error({ err, events: batch.length }, 'audit records lost');
      }
    });
    return this.#writing;
  }
}
