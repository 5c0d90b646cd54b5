// How the instances of one server tell each other what changed (docs/storage.md, "Several
// instances"): a recovery's new event, a pending machine seen, assigned or forgotten, a recovery
// log that grew or ended. Messages carry ids only; a listener re-reads the store for the rest,
// so a message is small (PostgreSQL's NOTIFY takes 8000 bytes) and never stale.
//
// One process on SQLite uses LocalBus. Several on PostgreSQL use the database's LISTEN/NOTIFY
// (adapters/storage/pg-bus.ts): a message reaches this process's listeners at once and every
// other instance's within milliseconds. A message can be lost (a dropped LISTEN connection):
// whoever waits on one re-reads the store at least once a second too, so a lost message costs
// at most that second, never a wrong answer; and whoever shows live state (the console's streams)
// reads it afresh on `resync`, delivered when the LISTEN connection is back after a loss.

import { EventEmitter } from 'node:events';

export type BusMessage =
  /** Recovery `id` has a new event, number `seq`. */
  | { readonly kind: 'recovery'; readonly id: number; readonly seq: number }
  /** Pending machine `id` was recorded or asked again (seen), assigned, or forgotten. */
  | { readonly kind: 'pending'; readonly id: number; readonly change: 'seen' | 'assigned' | 'forgotten' }
  /** Recovery log `id` holds `bytes` now; `ended`: its upload stopped (complete or broken off), or (ended false) it is still running though quiet. */
  | { readonly kind: 'log'; readonly id: number; readonly bytes: number; readonly ended: boolean }
  /**
   * Local only, never sent: this instance was deaf to the others for a while (its LISTEN
   * connection was lost and is back). Whoever shows live state reads it afresh.
   */
  | { readonly kind: 'resync' };

/** `local`: the message was published by this process. */
export type BusListener = (m: BusMessage, local: boolean) => void;

export interface Bus {
  /** Delivers to this process's listeners at once, and to every other instance's. Never throws. */
  publish(m: BusMessage): void;
  subscribe(listener: BusListener): () => void;
  close(): Promise<void>;
}

/** The bus of a single process. */
export class LocalBus implements Bus {
  readonly #events = new EventEmitter().setMaxListeners(0);

  publish(m: BusMessage): void {
    deliver(this.#events, m, true);
  }

  subscribe(listener: BusListener): () => void {
    this.#events.on('m', listener);
    return () => {
      this.#events.off('m', listener);
    };
  }

  async close(): Promise<void> {
    this.#events.removeAllListeners();
  }
}

/** Calls every listener; one that throws (a broken console stream) does not stop the others. */
export function deliver(events: EventEmitter, m: BusMessage, local: boolean): void {
  for (const l of events.listeners('m') as BusListener[]) {
    try {
      l(m, local);
    } catch {
      // the listener's own business
    }
  }
}

/** A bus message from its wire form, or null when it is not one (the channel is shared with nothing else, but a payload is still input). */
export function parseBusMessage(v: unknown): BusMessage | null {
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const id = o.id;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) return null;
  switch (o.kind) {
    case 'recovery':
      return typeof o.seq === 'number' && Number.isSafeInteger(o.seq) ? { kind: 'recovery', id, seq: o.seq } : null;
    case 'pending':
      return o.change === 'seen' || o.change === 'assigned' || o.change === 'forgotten' ? { kind: 'pending', id, change: o.change } : null;
    case 'log':
      return typeof o.bytes === 'number' && Number.isSafeInteger(o.bytes) && o.bytes >= 0 && typeof o.ended === 'boolean' ? { kind: 'log', id, bytes: o.bytes, ended: o.ended } : null;
    default:
      return null;
  }
}
