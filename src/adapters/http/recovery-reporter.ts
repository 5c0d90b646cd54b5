// The rescue system's side of a recovery (docs/recoveries.md): opens it on the server, reports
// its events and heartbeats, and keeps its id in /run/rear-update/recovery.json, so that every
// rear-update run of one boot (the boot hook's apply attempts, log-stream, `report` from ReaR's
// init script) adds to the same recovery. /run, not the root apply installs into: a recovery is
// one boot's (/run is emptied at boot), and a refused apply leaves the root exactly as it was. A report is a courtesy to the
// admin, never a condition of the recovery: every call has a short timeout, never throws, and
// a failure costs one warning on stderr at most; a server without the routes (404) is asked
// nothing more.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isRuError } from '../../core/errors.ts';
import type { RecoveryEventKind } from '../../core/recovery.ts';
import type { CanonicalFacts } from '../../core/store/facts.ts';
import type { Hardware } from '../../core/store/hardware.ts';
import { ApiClient } from './api-client.ts';

/** Links a request to a recovery (only with the token that opened it). */
export const RECOVERY_HEADER = 'x-rear-update-recovery';
/** Where this boot's recovery id is kept (REAR_UPDATE_RUN_DIR overrides it). */
export const RUN_DIR = '/run/rear-update';

/**
 * This boot's recovery.json for the root apply works on: RUN_DIR/recovery.json for `/` (a
 * rescue system), RUN_DIR/recovery-HASH.json for any other root (a chroot, a test's tree), so
 * two roots on one machine keep two recoveries.
 */
export function recoveryFile(root: string, env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.REAR_UPDATE_RUN_DIR || RUN_DIR;
  const abs = resolve(root);
  return join(dir, abs === '/' ? 'recovery.json' : `recovery-${createHash('sha256').update(abs).digest('hex').slice(0, 16)}.json`);
}
export const DEFAULT_REPORT_TIMEOUT_MS = 5000;

/** What recovery.json holds: which server this boot's recovery lives on, and its id. */
export interface RecoveryRecord {
  readonly server: string;
  readonly id: number;
  readonly opened: string;
}

export interface ReporterOptions {
  readonly server: string;
  readonly token: string | null;
  readonly cacert?: string | null;
  /** The root whose state directory keeps recovery.json. */
  readonly root: string;
  readonly timeoutMs?: number;
  /** Where the one warning goes (default: stderr). */
  readonly warn?: (line: string) => void;
}

export interface EventFields {
  readonly message?: string;
  readonly detail?: Readonly<Record<string, unknown>>;
  readonly exitStatus?: number | null;
  /** An error code (failed). */
  readonly error?: string | null;
}

/** The server URL as recovery.json compares it: one spelling per server. */
const serverKey = (api: ApiClient): string => api.base.href.replace(/\/+$/, '');

export function readRecoveryRecord(root: string): RecoveryRecord | null {
  try {
    const r = JSON.parse(readFileSync(recoveryFile(root), 'utf8')) as Partial<RecoveryRecord>;
    return typeof r.server === 'string' && Number.isSafeInteger(r.id) && (r.id as number) > 0 ? { server: r.server, id: r.id as number, opened: String(r.opened ?? '') } : null;
  } catch {
    return null;
  }
}

/** Writes recovery.json whole (a temporary file, then rename): a reader never sees half of one. */
function writeRecoveryRecord(root: string, rec: RecoveryRecord): void {
  const file = recoveryFile(root);
  mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
  writeFileSync(`${file}.tmp`, `${JSON.stringify(rec)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/** The server keeps at most 1000 characters of a message, without control characters (newlines are fine). */
// eslint-disable-next-line no-control-regex
const bounded = (m: string): string => (m.length > 1000 ? `${m.slice(0, 999)}…` : m).replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, ' ');

type Failure = { quiet: boolean; why: string };

/** Why a report failed, and whether asking again in this process is pointless. */
function failure(e: unknown): Failure {
  if (isRuError(e)) {
    const status = typeof e.context.status === 'number' ? e.context.status : null;
    // An older server without the routes (its 404 is ROUTE_UNKNOWN, or no code at all from
    // something else), or one that does not answer: ask it nothing more.
    const noRoute = status === 404 && (e.context.server === 'ROUTE_UNKNOWN' || e.context.server === null || e.context.server === undefined);
    if (noRoute || status === 405 || status === 501) return { quiet: true, why: `the server does not take recovery reports (HTTP ${status}: an older server?)` };
    return { quiet: e.context.cause === 'ETIMEDOUT', why: e.message };
  }
  return { quiet: false, why: (e as Error)?.message ?? String(e) };
}

export class RecoveryReporter {
  readonly #api: ApiClient;
  readonly #root: string;
  readonly #warn: (line: string) => void;
  #id: number | null = null;
  /** The id came from recovery.json, unconfirmed by the server yet. */
  #resumed = false;
  /** What open() was given, to open anew when the recorded recovery is not this token's. */
  #opening: { facts: CanonicalFacts | null; hardware: Hardware | null; host: string | null } | null = null;
  #quiet = false;
  #warned = false;
  /** Events go out one after another, in the order they were reported. */
  #chain: Promise<void> = Promise.resolve();

  constructor(o: ReporterOptions) {
    this.#api = new ApiClient({ server: o.server, token: o.token, cacert: o.cacert ?? null, retries: 0, timeoutMs: o.timeoutMs ?? DEFAULT_REPORT_TIMEOUT_MS });
    this.#root = o.root;
    this.#warn = o.warn ?? ((l) => process.stderr.write(`rear-update: ${l}\n`));
  }

  get id(): number | null {
    return this.#id;
  }

  get server(): string {
    return serverKey(this.#api);
  }

  /** The header that links a request to this recovery; none before one is open. */
  headers(): Record<string, string> {
    return this.#id === null ? {} : { [RECOVERY_HEADER]: String(this.#id) };
  }

  /** The recovery this boot already opened on this server (recovery.json), without asking the server. */
  resume(): number | null {
    const rec = readRecoveryRecord(this.#root);
    if (rec && rec.server === this.server) {
      this.#id = rec.id;
      this.#resumed = true;
    }
    return this.#id;
  }

  /** This boot's recovery: the one recovery.json names for this server, else a new one (null when that fails). */
  async open(facts: CanonicalFacts | null, hardware: Hardware | null, host?: string | null): Promise<number | null> {
    this.#opening = { facts, hardware, host: host ?? null };
    if (this.resume() !== null) return this.#id;
    await this.#attempt('opening a recovery', () => this.#create());
    return this.#id;
  }

  async #create(): Promise<void> {
    const { facts, hardware, host } = this.#opening ?? { facts: null, hardware: null, host: null };
    const post = (withHost: boolean): ReturnType<ApiClient['request']> => this.#api.request('POST', '/api/v1/recoveries', {
      body: { ...(facts ? { facts } : {}), ...(hardware ? { hardware } : {}), ...(withHost && host ? { host } : {}) },
    });
    let r;
    try {
      r = await post(true);
    } catch (e) {
      // A host id the server does not know (or this token may not fetch): the recovery is
      // still worth opening, to record how the apply fails.
      if (!host || !isRuError(e) || (e.code !== 'HOST_UNKNOWN' && e.code !== 'FORBIDDEN')) throw e;
      r = await post(false);
    }
    const id = (r.body as { recovery?: { id?: unknown } } | null)?.recovery?.id;
    if (typeof id !== 'number' || !Number.isSafeInteger(id)) throw new Error(`the server's answer names no recovery (HTTP ${r.status})`);
    this.#id = id;
    this.#resumed = false;
    try {
      writeRecoveryRecord(this.#root, { server: this.server, id, opened: new Date().toISOString() });
    } catch (e) {
      this.#once(`could not keep recovery ${id} in ${recoveryFile(this.#root)} (${(e as Error).message}); later runs open another`);
    }
  }

  /** Reports one event; resolves when it was sent or dropped, never rejects. */
  event(kind: RecoveryEventKind, f: EventFields = {}): Promise<void> {
    return this.#queue(`reporting ${kind}`, async (id) => {
      await this.#api.request('POST', `/api/v1/recoveries/${id}/events`, {
        body: {
          kind,
          ...(f.message !== undefined ? { message: bounded(f.message) } : {}),
          ...(f.detail !== undefined ? { detail: f.detail } : {}),
          ...(f.exitStatus !== undefined && f.exitStatus !== null ? { exitStatus: f.exitStatus } : {}),
          ...(f.error !== undefined && f.error !== null ? { error: f.error } : {}),
        },
      });
    });
  }

  /** A sign of life while nothing else happens (waiting as a pending machine, a long `rear recover`). */
  heartbeat(): Promise<void> {
    return this.#queue('a heartbeat', async (id) => {
      await this.#api.request('POST', `/api/v1/recoveries/${id}/heartbeat`);
    });
  }

  /** Waits for every report made so far. */
  flush(): Promise<void> {
    return this.#chain;
  }

  #queue(what: string, send: (id: number) => Promise<void>): Promise<void> {
    this.#chain = this.#chain.then(() => {
      const id = this.#id;
      return id === null ? undefined : this.#attempt(what, async () => {
        try {
          await send(id);
          this.#resumed = false; // the server took it: this token's recovery
        } catch (e) {
          // recovery.json names a recovery this token cannot report to (opened with another
          // token, or gone from the server): open this boot's recovery anew, once.
          if (!this.#resumed || !this.#opening || !isRuError(e) || (e.code !== 'FORBIDDEN' && e.context.server !== 'RECOVERY_UNKNOWN')) throw e;
          await this.#create();
          await send(this.#id as number);
        }
      });
    });
    return this.#chain;
  }

  async #attempt(what: string, fn: () => Promise<void>): Promise<void> {
    if (this.#quiet) return;
    try {
      await fn();
    } catch (e) {
      const f = failure(e);
      if (f.quiet) this.#quiet = true;
      this.#once(`${what} failed: ${f.why}; recovery reports are dropped, the recovery goes on`);
    }
  }

  #once(line: string): void {
    if (this.#warned) return;
    this.#warned = true;
    this.#warn(`warning: ${line}`);
  }
}
