// Recoveries on the server (docs/recoveries.md): opens them, records their events (reported by
// the rescue system, or the server's own: pending, assigned, resolved, log), tells listeners
// (the console's live streams) about every change, and ranks hosts for a pending machine.
// The JSON routes (routes/recoveries.ts, routes/admin.ts) and the console both act through
// this service, so an assignment made in a browser is audited and announced exactly as one
// made with the CLI. Changes made through another instance of the server arrive on the bus
// (bus.ts) as ids; this service reads them from the store and tells its listeners the same way.

import { EventEmitter } from 'node:events';
import { RuError } from '../core/errors.ts';
import { rankHosts, type MatchCandidate } from '../core/match.ts';
import { bucketOf, INCIDENT_BUCKETS, isEnded, isSilent, type IncidentBucket } from '../core/recovery.ts';
import { canonicalFacts, type CanonicalFacts, type MachineFacts } from '../core/store/facts.ts';
import { checkHardware, type Hardware } from '../core/store/hardware.ts';
import type { Bus, BusMessage } from './bus.ts';
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
  | { readonly type: 'pending'; readonly pending: PendingMachine; readonly change: 'seen' | 'assigned' | 'forgotten' }
  /** Changes made through other instances may have been missed (bus.ts): read everything shown afresh. */
  | { readonly type: 'resync' };

/** Who acts (audit): a token id and the client address. */
export interface Actor {
  readonly token: string | null;
  readonly address: string | null;
}

/** Signs of life (heartbeats, log bytes, linked requests) are written at most this often per recovery. */
export const SIGN_EVERY_MS = 5000;

/** Counts are taken over at most this many of the newest recoveries that match the query. */
export const COUNT_WINDOW = 1000;

export class RecoveryService {
  readonly meta: MetadataStore;
  readonly opts: RecoveryServiceOptions;
  readonly #events = new EventEmitter().setMaxListeners(0);
  /** Recovery id → when a sign of life was last written (insertion order is age order). */
  readonly #signed = new Map<number, number>();
  /** Recovery id → the token that opened it: never changes, so linking a request needs no query twice. */
  readonly #openers = new Map<number, string | null>();

  readonly #bus: Bus;

  constructor(meta: MetadataStore, opts: RecoveryServiceOptions, bus: Bus) {
    this.meta = meta;
    this.opts = opts;
    this.#bus = bus;
    bus.subscribe((m, local) => {
      if (this.#events.listenerCount('change') === 0) return;
      if (m.kind === 'resync') this.#tell({ type: 'resync' });
      else if (!local) void this.#fromElsewhere(m).catch(() => undefined);
    });
  }

  /** Waits for pending machine `id` to be assigned, here or through another instance; false after `ms` or on abort. */
  async waitAssigned(id: number, ms: number, signal?: AbortSignal): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      const p = await this.meta.getPending(id);
      if (!p || p.assignedHost !== null) return p !== null;
      const left = deadline - Date.now();
      if (left <= 0 || signal?.aborted) return false;
      // Woken by the bus; at least once a second anyway, so a lost message costs a second at most.
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          off();
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, 1000));
        const off = this.#bus.subscribe((m) => {
          if (m.kind === 'pending' && m.id === id && m.change !== 'seen') done();
        });
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** A change made through another instance, read back from the store for this one's listeners. */
  async #fromElsewhere(m: BusMessage): Promise<void> {
    if (m.kind === 'recovery') {
      const [r, events] = await Promise.all([this.meta.getRecovery(m.id), this.meta.listRecoveryEvents(m.id, { afterSeq: m.seq - 1 })]);
      const event = events.find((e) => e.seq === m.seq);
      if (r && event) this.#tell({ type: 'recovery', recovery: this.view(r), event });
    } else if (m.kind === 'pending') {
      const p = await this.meta.getPending(m.id);
      if (p) this.#tell({ type: 'pending', pending: p, change: m.change });
    }
  }

  view(r: Recovery): RecoveryView {
    const now = this.opts.now();
    return { ...r, silent: isSilent(r, now, this.opts.silentAfterMs), bucket: bucketOf(r, now, this.opts.silentAfterMs) };
  }

  /** Opens a recovery for a rescue system (POST /api/v1/recoveries). */
  async open(by: Actor, r: { facts?: unknown; hardware?: Hardware | null; host?: string | null }): Promise<RecoveryView> {
    // Checked here, once, whoever calls: the hardware comes from an unauthenticated machine.
    const hardware = r.hardware === undefined || r.hardware === null ? null : checkHardware(r.hardware);
    const facts = r.facts === undefined || r.facts === null ? null : canonicalFacts(r.facts as MachineFacts);
    const rec = await this.meta.openRecovery({ token: by.token, address: by.address, host: r.host ?? null, facts, hardware });
    this.#remember(rec);
    const [first] = await this.meta.listRecoveryEvents(rec.id);
    const view = this.view(rec);
    if (first) this.#emit({ type: 'recovery', recovery: view, event: first });
    return view;
  }

  /** Appends an event, and tells the listeners. */
  async record(id: number, e: NewRecoveryEvent): Promise<{ recovery: RecoveryView; event: RecoveryEvent }> {
    const r = await this.meta.appendRecoveryEvent(id, e);
    this.#remember(r.recovery);
    this.#noteSigned(id, this.opts.now().getTime());
    const out = { recovery: this.view(r.recovery), event: r.event };
    this.#emit({ type: 'recovery', ...out });
    return out;
  }

  /** A sign of life (heartbeat, a request carrying the recovery's header, log bytes). */
  async sign(id: number): Promise<void> {
    const now = this.opts.now().getTime();
    const last = this.#signed.get(id);
    // Log bytes arrive many times a second: the store hears of them every few seconds.
    if (last !== undefined && now - last < SIGN_EVERY_MS && now >= last) return;
    this.#noteSigned(id, now);
    try {
      await this.meta.noteRecoverySign(id);
    } catch (e) {
      this.#signed.delete(id);
      throw e;
    }
  }

  /**
   * The recovery a request's X-Rear-Update-Recovery header names, if the token that presents it
   * opened it; null otherwise (the header is then ignored, as if absent).
   */
  async linked(id: number, token: string): Promise<Recovery | null> {
    if (this.#openers.has(id) && this.#openers.get(id) !== token) return null;
    const r = await this.meta.getRecovery(id);
    if (!r) return null;
    this.#remember(r);
    return r.token === token ? r : null;
  }

  async list(q: RecoveryQuery = {}): Promise<{ recoveries: RecoveryView[]; counts: Record<IncidentBucket, number> }> {
    const rows = await this.meta.listRecoveries(q);
    // The buckets of everything the filter matches (the newest COUNT_WINDOW), not just this page.
    const all = q.beforeId === undefined && rows.length < (q.limit ?? 100) ? rows : await this.meta.listRecoveries({ ...(q.active ? { active: true } : {}), ...(q.host !== undefined ? { host: q.host } : {}), ...(q.pending !== undefined ? { pending: q.pending } : {}), limit: COUNT_WINDOW });
    const counts = Object.fromEntries(INCIDENT_BUCKETS.map((b) => [b, 0])) as Record<IncidentBucket, number>;
    const views = rows.map((r) => this.view(r));
    for (const r of all === rows ? views : all.map((x) => this.view(x))) counts[r.bucket]++;
    return { recoveries: views, counts };
  }

  /** RECOVERY_UNKNOWN. */
  async get(id: number): Promise<{ recovery: RecoveryView; events: RecoveryEvent[] }> {
    const r = await this.meta.getRecovery(id);
    if (!r) throw new RuError('RECOVERY_UNKNOWN', `no recovery ${id}`, { recovery: id });
    return { recovery: this.view(r), events: await this.meta.listRecoveryEvents(id) };
  }

  /** Ranked hosts for a pending machine. PENDING_UNKNOWN. */
  async hints(pending: number): Promise<MatchHint[]> {
    const p = await this.#pendingOr404(pending);
    // Its hardware comes with the recoveries that waited as it (the newest that reported some).
    const [recoveries, hosts, layouts, token] = await Promise.all([
      this.meta.listRecoveries({ pending, limit: 20 }),
      this.meta.listHosts(),
      this.meta.listHostLayouts(),
      p.token === null ? null : this.meta.getToken(p.token),
    ]);
    const hardware = recoveries.find((r) => r.hardware !== null)?.hardware ?? null;
    const scope = token?.scope ?? '';
    const colon = scope.indexOf(':');
    const [kind, value] = colon < 0 ? [scope, ''] : [scope.slice(0, colon), scope.slice(colon + 1)];
    const byHost = new Map(layouts.map((l) => [l.host, l]));
    const candidates: MatchCandidate[] = hosts.map((host) => ({ host, layout: byHost.get(host.id) ?? null }));
    return rankHosts({ facts: mergedFacts(p.facts, recoveries.find((r) => r.facts !== null)?.facts ?? null), hardware, tokenClass: kind === 'fetch-class' ? value : null, tokenHost: kind === 'fetch' || kind === 'publish' ? value : null }, candidates);
  }

  /**
   * Assigns a pending machine to a host: audited (kind assign, the actor's token), an
   * `assigned` event on each of its active recoveries, listeners told. PENDING_UNKNOWN, HOST_UNKNOWN.
   */
  async assign(by: Actor, pending: number, host: string): Promise<PendingMachine> {
    const p = await this.#audited(by, 'assign', host, `pending ${pending}`, () => this.meta.assignPending(pending, host));
    await this.#onActive(pending, { kind: 'assigned', actor: by.token, host, message: `pending machine ${pending} assigned to ${host}`, detail: { host, pending } });
    this.#emit({ type: 'pending', pending: p, change: 'assigned' });
    return p;
  }

  /** Forgets a pending machine: audited (kind pending), listeners told. PENDING_UNKNOWN. */
  async forget(by: Actor, pending: number): Promise<PendingMachine> {
    const p = await this.#audited(by, 'pending', null, `forgot pending ${pending}`, () => this.meta.forgetPending(pending));
    // The timeline says why the machine waits anew (asking again records it under a new id).
    await this.#onActive(pending, { kind: 'note', actor: by.token, message: `pending machine ${pending} was forgotten; asking again records it anew`, detail: { pending, forgotten: true } });
    this.#emit({ type: 'pending', pending: p, change: 'forgotten' });
    return p;
  }

  /** Tells listeners that a pending machine was recorded or asked again (the resolve route calls it). */
  notifyPending(p: PendingMachine): void {
    this.#emit({ type: 'pending', pending: p, change: 'seen' });
  }

  /** Every change from now on, until the returned function is called. */
  subscribe(listener: (c: LiveChange) => void): () => void {
    this.#events.on('change', listener);
    return () => {
      this.#events.off('change', listener);
    };
  }

  #emit(c: LiveChange): void {
    this.#tell(c);
    if (c.type === 'recovery') this.#bus.publish({ kind: 'recovery', id: c.recovery.id, seq: c.event.seq });
    else if (c.type === 'pending') this.#bus.publish({ kind: 'pending', id: c.pending.id, change: c.change });
  }

  #tell(c: LiveChange): void {
    // A listener that throws (a broken console stream) must not fail the request that changed something.
    for (const l of this.#events.listeners('change') as ((c: LiveChange) => void)[]) {
      try {
        l(c);
      } catch {
        // the listener's own business
      }
    }
  }


  async #pendingOr404(id: number): Promise<PendingMachine> {
    const p = await this.meta.getPending(id);
    if (!p) throw new RuError('PENDING_UNKNOWN', `no pending machine ${id}`, { pending: id });
    return p;
  }

  /** Runs a change and audits it: 'ok', or the code it was refused with. */
  async #audited<T>(by: Actor, kind: 'assign' | 'pending', host: string | null, detail: string, run: () => Promise<T>): Promise<T> {
    let result = 'ok';
    try {
      return await run();
    } catch (e) {
      result = e instanceof RuError ? e.code : 'INTERNAL';
      throw e;
    } finally {
      await this.meta.appendAudit({ kind, token: by.token, address: by.address, host, result, detail }).catch(() => undefined);
    }
  }

  /** The same event on every active recovery that waited as the pending machine. */
  async #onActive(pending: number, e: NewRecoveryEvent): Promise<void> {
    const active = await this.meta.listRecoveries({ pending, active: true, limit: 1000 });
    for (const r of active) {
      if (!isEnded(r.phase)) await this.record(r.id, e);
    }
  }

  #remember(r: Recovery): void {
    if (this.#openers.has(r.id)) return;
    this.#openers.set(r.id, r.token);
    if (this.#openers.size > 10_000) this.#openers.delete(this.#openers.keys().next().value!);
  }

  #noteSigned(id: number, at: number): void {
    this.#signed.delete(id);
    this.#signed.set(id, at);
    if (this.#signed.size > 10_000) this.#signed.delete(this.#signed.keys().next().value!);
  }
}

/** The pending record's facts, completed by what the recovery reported (the record keeps what resolve sent). */
function mergedFacts(p: CanonicalFacts, r: CanonicalFacts | null): CanonicalFacts {
  if (r === null) return p;
  return { macs: [...new Set([...p.macs, ...r.macs])].sort(), uuid: p.uuid ?? r.uuid, serial: p.serial ?? r.serial, hostname: p.hostname ?? r.hostname };
}
