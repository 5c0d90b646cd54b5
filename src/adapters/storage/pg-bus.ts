// The bus between server instances on one PostgreSQL database (server/bus.ts): NOTIFY on one
// channel, LISTEN on a connection of its own. A message reaches this process's listeners at once
// (not through the database) and every other instance's when PostgreSQL delivers it. The
// listening connection comes back by itself after PostgreSQL restarts; what was sent meanwhile
// is lost, which the bus's readers allow for (they re-read the store at least once a second).

import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { deliver, parseBusMessage, type Bus, type BusListener, type BusMessage } from '../../server/bus.ts';

export const CHANNEL = 'rear_update_changes';

/** Waits between reconnection attempts: from the first to the longest (a second: a restarted PostgreSQL is heard again soon). */
const RETRY_MS = [100, 250, 500, 1000] as const;
/** Messages kept while the connection is away, sent once it is back (the oldest are dropped beyond this). */
const HELD_MAX = 1000;

export class PgBus implements Bus {
  /** This process, so that it skips its own messages when PostgreSQL hands them back. */
  readonly origin = randomBytes(8).toString('hex');
  readonly #url: string;
  readonly #events = new EventEmitter().setMaxListeners(0);
  #client: pg.Client | null = null;
  #closed = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Published while disconnected: sent after reconnecting, so the others hear of it late rather than never. */
  #held: string[] = [];
  /** The connection was lost since the last LISTEN: the next one is a resync. */
  #lostOnce = false;
  /** Resolves once the first LISTEN is in place (or failed: start-up does not wait for ever). */
  readonly ready: Promise<void>;

  constructor(url: string) {
    this.#url = url;
    this.ready = this.#connect();
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const client = new pg.Client({ connectionString: this.#url, application_name: 'rear-update bus' });
    client.on('error', () => this.#lost(client));
    client.on('end', () => this.#lost(client));
    client.on('notification', (n) => {
      if (n.channel !== CHANNEL || n.payload === undefined) return;
      let v: unknown;
      try {
        v = JSON.parse(n.payload);
      } catch {
        return;
      }
      if ((v as { o?: unknown } | null)?.o === this.origin) return;
      const m = parseBusMessage(v);
      if (m) deliver(this.#events, m, false);
    });
    try {
      await client.connect();
      await client.query(`listen ${CHANNEL}`);
      if (this.#closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.#client = client;
      this.#attempt = 0;
      for (const payload of this.#held.splice(0)) this.#send(client, payload);
      if (this.#lostOnce) {
        this.#lostOnce = false;
        deliver(this.#events, { kind: 'resync' }, true);
      }
    } catch {
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
      this.#retry();
    }
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = null;
    this.#lostOnce = true;
    void client.end().catch(() => undefined);
    this.#retry();
  }

  #retry(): void {
    if (this.#closed || this.#timer) return;
    const wait = RETRY_MS[Math.min(this.#attempt++, RETRY_MS.length - 1)];
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#connect();
    }, wait);
    this.#timer.unref();
  }

  publish(m: BusMessage): void {
    deliver(this.#events, m, true);
    if (m.kind === 'resync') return;
    const payload = JSON.stringify({ o: this.origin, ...m });
    const c = this.#client;
    if (c) this.#send(c, payload);
    else this.#hold(payload);
  }

  #send(c: pg.Client, payload: string): void {
    c.query('select pg_notify($1, $2)', [CHANNEL, payload]).catch(() => {
      // Lost with the connection: kept for the next one.
      if (this.#client !== c) this.#hold(payload);
    });
  }

  #hold(payload: string): void {
    this.#held.push(payload);
    if (this.#held.length > HELD_MAX) this.#held.shift();
  }

  subscribe(listener: BusListener): () => void {
    this.#events.on('m', listener);
    return () => {
      this.#events.off('m', listener);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    const c = this.#client;
    this.#client = null;
    this.#events.removeAllListeners();
    if (c) await c.end().catch(() => undefined);
  }
}

/** A bus on `url`, its LISTEN in place or, if PostgreSQL does not answer yet, being retried. */
export async function openPgBus(url: string): Promise<PgBus> {
  const bus = new PgBus(url);
  await bus.ready;
  return bus;
}
