// Recoveries on the server (docs/recoveries.md): opens them, records their events (reported by
// the rescue system, or the server's own: pending, assigned, resolved, log), tells listeners
// (the console's live streams) about every change, and ranks hosts for a pending machine.
// The JSON routes (routes/recoveries.ts, routes/admin.ts) and the console both act through
// this service, so an assignment made in a browser is audited and announced exactly as one
// made with the CLI.
// STUB: the API below is the contract; the bodies are filled in by the recoveries work.

import type { IncidentBucket } from '../core/recovery.ts';
import type { Hardware } from '../core/store/hardware.ts';
import type { MetadataStore, NewRecoveryEvent, PendingMachine, Recovery, RecoveryEvent, RecoveryQuery } from '../core/store/metadata.ts';

export interface RecoveryServiceOptions {
  readonly now: () => Date;
  readonly silentAfterMs: number;
}

/** A recovery as shown: the stored record, read against the clock. */
export interface RecoveryView extends Recovery {
  readonly silent: boolean;
  readonly bucket: IncidentBucket;
}

/** One host a pending machine may be, with the reasons, best first (core/match.ts). */
export interface MatchHint {
  readonly host: string;
  /** 0..100. */
  readonly score: number;
  readonly reasons: readonly string[];
}

/** What the console's live streams hear about. */
export type LiveChange =
  | { readonly type: 'recovery'; readonly recovery: RecoveryView; readonly event: RecoveryEvent }
  | { readonly type: 'pending'; readonly pending: PendingMachine; readonly change: 'seen' | 'assigned' | 'forgotten' };

/** Who acts (audit): a token id and the client address. */
export interface Actor {
  readonly token: string | null;
  readonly address: string | null;
}

export class RecoveryService {
  readonly meta: MetadataStore;
  readonly opts: RecoveryServiceOptions;

  constructor(meta: MetadataStore, opts: RecoveryServiceOptions) {
    this.meta = meta;
    this.opts = opts;
  }

  view(_r: Recovery): RecoveryView {
    throw new Error('stub');
  }

  /** Opens a recovery for a rescue system (POST /api/v1/recoveries). */
  async open(_by: Actor, _r: { facts?: unknown; hardware?: Hardware | null; host?: string | null }): Promise<RecoveryView> {
    throw new Error('stub');
  }

  /** Appends an event, and tells the listeners. */
  async record(_id: number, _e: NewRecoveryEvent): Promise<{ recovery: RecoveryView; event: RecoveryEvent }> {
    throw new Error('stub');
  }

  /** A sign of life (heartbeat, a request carrying the recovery's header, log bytes). */
  async sign(_id: number): Promise<void> {
    throw new Error('stub');
  }

  async list(_q?: RecoveryQuery): Promise<{ recoveries: RecoveryView[]; counts: Record<IncidentBucket, number> }> {
    throw new Error('stub');
  }

  /** RECOVERY_UNKNOWN. */
  async get(_id: number): Promise<{ recovery: RecoveryView; events: RecoveryEvent[] }> {
    throw new Error('stub');
  }

  /** Ranked hosts for a pending machine. PENDING_UNKNOWN. */
  async hints(_pending: number): Promise<MatchHint[]> {
    throw new Error('stub');
  }

  /**
   * Assigns a pending machine to a host: audited (kind assign, the actor's token), an
   * `assigned` event on each of its active recoveries, listeners told. PENDING_UNKNOWN, HOST_UNKNOWN.
   */
  async assign(_by: Actor, _pending: number, _host: string): Promise<PendingMachine> {
    throw new Error('stub');
  }

  /** Forgets a pending machine: audited (kind pending), listeners told. PENDING_UNKNOWN. */
  async forget(_by: Actor, _pending: number): Promise<PendingMachine> {
    throw new Error('stub');
  }

  /** Tells listeners that a pending machine was recorded or asked again (the resolve route calls it). */
  notifyPending(_p: PendingMachine): void {
    throw new Error('stub');
  }

  /** Every change from now on, until the returned function is called. */
  subscribe(_listener: (c: LiveChange) => void): () => void {
    throw new Error('stub');
  }
}
