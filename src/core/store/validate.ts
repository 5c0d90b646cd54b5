// Input checks every metadata backend applies before it touches its storage, written once so
// that all backends refuse the same values with the same codes (the contract suite checks it).

import { RuError } from '../errors.ts';
import { isLayerClass, LAYER_NAME, MAX_PRIORITY } from '../manifest.ts';
import { RECOVERY_EVENT_KINDS, type RecoveryEventKind } from '../recovery.ts';
import { canonicalFacts, checkId, strictFact, strictFactList, type CanonicalFacts } from './facts.ts';
import { checkHardware, type Hardware } from './hardware.ts';
import type {
  AuditQuery, HostFields, HostLayout, NewAuditEvent, NewLayerVersion, NewRecovery, NewRecoveryEvent, NewToken, NewVersion, PendingLimits, RecoveryQuery,
  Session, TokenScope,
} from './metadata.ts';
import { AUDIT_KINDS } from './metadata.ts';

const invalid = (message: string, context: Record<string, string | number> = {}): never => {
  throw new RuError('STORE_INVALID', message, context);
};

export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

export function checkSha256(s: string, what: string): string {
  if (typeof s !== 'string' || !SHA256_PATTERN.test(s)) invalid(`${what} is not a lower-case hex sha256`, { what, value: String(s) });
  return s;
}

export function checkCount(n: number, what: string, min = 0): number {
  if (!Number.isSafeInteger(n) || n < min) invalid(`${what} must be an integer >= ${min}`, { what, value: String(n) });
  return n;
}

/** Host fields in stored form: lists sorted and normalized, absent fields left absent. */
export interface CheckedHostFields {
  hostnames?: string[];
  macs?: string[];
  uuid?: string | null;
  serial?: string | null;
  class?: string | null;
}

export function checkHostFields(f: HostFields): CheckedHostFields {
  const out: CheckedHostFields = {};
  if (f.hostnames !== undefined) out.hostnames = strictFactList('hostname', f.hostnames);
  if (f.macs !== undefined) out.macs = strictFactList('mac', f.macs);
  if (f.uuid !== undefined) out.uuid = f.uuid === null ? null : strictFact('uuid', f.uuid);
  if (f.serial !== undefined) out.serial = f.serial === null ? null : strictFact('serial', f.serial);
  if (f.class !== undefined) out.class = f.class === null ? null : checkId(f.class, 'class');
  return out;
}

export function checkNewVersion(v: NewVersion): NewVersion {
  checkId(v.host, 'host');
  checkSha256(v.blob, 'blob');
  checkSha256(v.digest, 'digest');
  checkCount(v.size, 'size');
  try {
    JSON.parse(v.manifest);
  } catch {
    invalid('manifest is not JSON text', { host: v.host });
  }
  if (v.publisher != null) checkId(v.publisher, 'publisher');
  return v;
}

/** A layer's class: a class name, or '*' (every class). */
export function checkLayerClass(s: string): string {
  if (!isLayerClass(s)) invalid(`layer class ${JSON.stringify(String(s))} is not '*' or a name (letters, digits, . _ -, at most 64)`, { what: 'class', value: String(s) });
  return s;
}

export function checkLayerName(s: string): string {
  if (typeof s !== 'string' || !LAYER_NAME.test(s)) invalid(`layer name ${JSON.stringify(String(s))} is not a name (letters, digits, . _ -, at most 64)`, { what: 'name', value: String(s) });
  return s;
}

export function checkNewLayerVersion(v: NewLayerVersion): NewLayerVersion {
  checkLayerClass(v.class);
  checkLayerName(v.name);
  if (!Number.isSafeInteger(v.priority) || v.priority < 0 || v.priority > MAX_PRIORITY) {
    invalid(`layer priority must be an integer 0..${MAX_PRIORITY}`, { what: 'priority', value: String(v.priority) });
  }
  checkSha256(v.blob, 'blob');
  checkSha256(v.digest, 'digest');
  checkCount(v.size, 'size');
  const layer = `${v.class}/${v.name}`;
  if (typeof v.manifest !== 'string' || v.manifest.length === 0) invalid('manifest is empty', { layer });
  try {
    JSON.parse(v.manifest);
  } catch {
    invalid('manifest is not JSON text', { layer });
  }
  if (v.publisher != null) checkId(v.publisher, 'publisher');
  return v;
}

export function checkScope(s: string): TokenScope {
  if (s === 'admin' || s === 'view' || s === 'operate') return s;
  const m = /^(publish|publish-class|fetch|fetch-class):(.*)$/.exec(String(s));
  if (!m) return invalid(`token scope ${JSON.stringify(s)} is not admin, view, operate, publish:HOST, publish-class:CLASS, fetch:HOST or fetch-class:CLASS`, { value: String(s) });
  // publish-class takes a layer's class, '*' included (a token for the every-class layers).
  if (m[1] === 'publish-class') checkLayerClass(m[2] as string);
  else checkId(m[2] as string, m[1] === 'fetch-class' ? 'class' : 'host');
  return s as TokenScope;
}

/** A time in the stores' form: ISO 8601 UTC with milliseconds, as Date#toISOString gives it. */
export function checkIso(s: string, what: string): string {
  if (typeof s !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(s) || Number.isNaN(Date.parse(s))) {
    invalid(`${what} ${JSON.stringify(String(s))} is not an ISO 8601 UTC time with milliseconds`, { what, value: String(s) });
  }
  return s;
}

/** The most downloads one token may be limited to (a limit, not a counter that wraps). */
export const MAX_TOKEN_USES = 1_000_000;

export function checkNewToken(t: NewToken): NewToken {
  checkId(t.id, 'token id');
  checkScope(t.scope);
  if (typeof t.secretHash !== 'string' || t.secretHash.length === 0) invalid('token secretHash is empty');
  if (t.expires != null) checkIso(t.expires, 'token expiry');
  if (t.uses != null && checkCount(t.uses, 'token uses', 1) > MAX_TOKEN_USES) invalid(`token uses is at most ${MAX_TOKEN_USES}`, { value: t.uses });
  return t;
}

/** What a token use is spent on: an opaque, non-empty name of at most 512 characters. */
export function checkDownloadName(s: string): string {
  if (typeof s !== 'string' || s.length === 0 || s.length > 512) invalid('the download a token use is spent on needs a name of 1 to 512 characters');
  return s;
}

/** How long a client refused by a pending limit is asked to wait (HTTP Retry-After). */
export const PENDING_RETRY_AFTER_S = 30;

export function checkPendingLimits(l: PendingLimits): PendingLimits {
  checkCount(l.perToken, 'pending limit per token', 1);
  checkCount(l.perAddress, 'pending limit per address', 1);
  checkCount(l.total, 'pending limit in all', 1);
  checkCount(l.windowMs, 'pending window', 1);
  return l;
}

/**
 * The first limit a new pending record would exceed, given the open records counted so far
 * (null: none). Backends count in their own way, inside the step that inserts; this decides.
 */
export function pendingLimitHit(l: PendingLimits, open: { byToken: number; byAddress: number; total: number }, who: { token: string | null; address: string | null }): RuError | null {
  const refuse = (limit: 'token' | 'address' | 'total', max: number, whom: string): RuError => new RuError(
    'PENDING_LIMIT',
    `too many pending machines ${whom}: at most ${max} may wait unassigned at a time; ask again in ${PENDING_RETRY_AFTER_S} s, or have an admin assign the waiting ones (rear-update admin pending)`,
    { limit, max, retryAfter: PENDING_RETRY_AFTER_S, ...(limit === 'token' ? { token: who.token } : limit === 'address' ? { address: who.address } : {}) },
  );
  if (who.token !== null && open.byToken >= l.perToken) return refuse('token', l.perToken, `reported with token ${who.token}`);
  if (who.address !== null && open.byAddress >= l.perAddress) return refuse('address', l.perAddress, `reported from ${who.address}`);
  if (open.total >= l.total) return refuse('total', l.total, 'on this server');
  return null;
}

export function checkAuditEvent(e: NewAuditEvent): NewAuditEvent {
  if (!AUDIT_KINDS.includes(e.kind)) invalid(`audit kind ${JSON.stringify(e.kind)} is unknown`, { value: String(e.kind) });
  if (typeof e.result !== 'string' || e.result.length === 0) invalid('audit result is empty');
  if (e.version != null) checkCount(e.version, 'version', 1);
  if (e.bytes != null) checkCount(e.bytes, 'bytes');
  return e;
}

export const AUDIT_DEFAULT_LIMIT = 100;
export const AUDIT_MAX_LIMIT = 1000;

export function auditLimit(q: AuditQuery): number {
  if (q.limit === undefined) return AUDIT_DEFAULT_LIMIT;
  return Math.min(checkCount(q.limit, 'limit', 1), AUDIT_MAX_LIMIT);
}

export function checkLogName(s: string, what: string): string {
  // ReaR sends a workflow name and a date stamp; keep them path- and URL-safe.
  if (typeof s !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$/.test(s)) invalid(`log ${what} ${JSON.stringify(s)} is malformed`, { what, value: String(s) });
  return s;
}

// --- Recoveries, host layouts and sessions ---------------------------------------------------
// Much of what a recovery holds comes from an unauthenticated rescue system through the server:
// every text is bounded and printable, every JSON value bounded, so a hostile report can
// neither fill the store nor smuggle control characters into what an admin reads.

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Bounded, printable text (no control characters), or STORE_INVALID. */
export function checkText(s: string, what: string, max: number, opts: { empty?: boolean } = {}): string {
  if (typeof s !== 'string' || s.length > max || CONTROL.test(s) || (!opts.empty && s.length === 0)) {
    invalid(`${what} must be ${opts.empty ? '' : 'non-empty '}printable text of at most ${max} characters`, { what, value: String(s).slice(0, 64) });
  }
  return s;
}

export const RECOVERY_LIMITS = {
  /** A timeline line for people. */
  message: 2000,
  /** An event's detail, serialized. */
  detail: 16 * 1024,
  address: 128,
  error: 128,
} as const;

/** A client address as the server saw it (IPv4, IPv6 with a zone): printable and short. */
export const checkAddress = (s: string, what = 'address'): string => checkText(s, what, RECOVERY_LIMITS.address);

/**
 * A JSON object, bounded when serialized: the copy the store keeps (what survives JSON, as both
 * backends then hold and return the same value), or STORE_INVALID.
 */
export function checkDetail(d: unknown, what = 'detail', max: number = RECOVERY_LIMITS.detail): Record<string, unknown> {
  if (typeof d !== 'object' || d === null || Array.isArray(d)) return invalid(`${what} must be a JSON object`, { what });
  const proto = Object.getPrototypeOf(d) as unknown;
  if (proto !== Object.prototype && proto !== null) return invalid(`${what} must be a plain JSON object`, { what });
  let text: string;
  try {
    text = JSON.stringify(d);
  } catch {
    return invalid(`${what} is not JSON-safe (a cycle or a BigInt)`, { what });
  }
  if (text.length > max) invalid(`${what} is larger than ${max} characters as JSON`, { what, max });
  return JSON.parse(text) as Record<string, unknown>;
}

/** An id another table gave (pending, log): a positive integer. */
const checkRef = (n: number, what: string): number => checkCount(n, what, 1);

/** What a recovery is opened with, in stored form: facts canonical, hardware checked. */
export interface CheckedNewRecovery {
  token: string | null;
  address: string | null;
  host: string | null;
  facts: CanonicalFacts | null;
  hardware: Hardware | null;
}

export function checkNewRecovery(r: NewRecovery): CheckedNewRecovery {
  if (typeof r !== 'object' || r === null) return invalid('a recovery must be an object');
  return {
    token: r.token == null ? null : checkId(r.token, 'token'),
    address: r.address == null ? null : checkAddress(r.address),
    host: r.host == null ? null : checkId(r.host, 'host'),
    // As recordPending keeps them: junk and malformed values dropped, lists sorted.
    facts: r.facts == null ? null : canonicalFacts(r.facts),
    hardware: r.hardware == null ? null : checkHardware(r.hardware),
  };
}

/** An event in stored form; the link fields stay undefined/null when the event sets none. */
export interface CheckedRecoveryEvent {
  kind: RecoveryEventKind;
  actor: string | null;
  message: string;
  detail: Record<string, unknown>;
  host: string | null;
  pending: number | null;
  log: number | null;
  exitStatus: number | null;
  error: string | null;
}

export function checkRecoveryEvent(e: NewRecoveryEvent): CheckedRecoveryEvent {
  if (typeof e !== 'object' || e === null) return invalid('a recovery event must be an object');
  if (!RECOVERY_EVENT_KINDS.includes(e.kind)) invalid(`recovery event kind ${JSON.stringify(String(e.kind))} is unknown`, { what: 'kind', value: String(e.kind) });
  const exitStatus = e.exitStatus ?? null;
  // A process exit status: what a shell reports for `rear recover`, signals included (128+n).
  if (exitStatus !== null && (!Number.isSafeInteger(exitStatus) || exitStatus < 0 || exitStatus > 255)) {
    invalid('exit status must be an integer 0..255', { what: 'exitStatus', value: String(exitStatus) });
  }
  return {
    kind: e.kind,
    actor: e.actor == null ? null : checkId(e.actor, 'actor'),
    message: e.message === undefined ? '' : checkText(e.message, 'message', RECOVERY_LIMITS.message, { empty: true }),
    detail: e.detail === undefined ? {} : checkDetail(e.detail),
    host: e.host == null ? null : checkId(e.host, 'host'),
    pending: e.pending == null ? null : checkRef(e.pending, 'pending'),
    log: e.log == null ? null : checkRef(e.log, 'log'),
    exitStatus,
    error: e.error == null ? null : checkText(e.error, 'error', RECOVERY_LIMITS.error),
  };
}

export const RECOVERY_DEFAULT_LIMIT = 100;
export const RECOVERY_MAX_LIMIT = 1000;

export function checkRecoveryQuery(q: RecoveryQuery): { limit: number } {
  if (q.host !== undefined) checkId(q.host, 'host');
  if (q.pending !== undefined) checkRef(q.pending, 'pending');
  if (q.beforeId !== undefined) checkRef(q.beforeId, 'beforeId');
  return { limit: q.limit === undefined ? RECOVERY_DEFAULT_LIMIT : Math.min(checkCount(q.limit, 'limit', 1), RECOVERY_MAX_LIMIT) };
}

export const HOST_LAYOUT_LIMITS = { disks: 1024, device: 256 } as const;

/** A host layout in stored form (only the fields the interface names). */
export function checkHostLayout(l: HostLayout): HostLayout {
  if (typeof l !== 'object' || l === null) return invalid('a host layout must be an object');
  checkId(l.host, 'host');
  checkCount(l.version, 'layout version', 1);
  if (!Array.isArray(l.disks) || l.disks.length > HOST_LAYOUT_LIMITS.disks) invalid(`layout disks must be a list of at most ${HOST_LAYOUT_LIMITS.disks}`, { host: l.host });
  const disks = l.disks.map((d, i) => {
    if (typeof d !== 'object' || d === null) return invalid(`layout disk ${i} is not an object`, { host: l.host });
    return { device: checkText(d.device, `layout disk ${i} device`, HOST_LAYOUT_LIMITS.device), size: checkCount(d.size, `layout disk ${i} size`) };
  });
  return { host: l.host, version: l.version, disks };
}

export const SESSION_LIMITS = { csrf: 256 } as const;

export function checkNewSession(s: Omit<Session, 'lastSeen' | 'created'>): Omit<Session, 'lastSeen' | 'created'> {
  if (typeof s !== 'object' || s === null) return invalid('a session must be an object');
  checkSha256(s.id, 'session id');
  checkId(s.token, 'token');
  checkText(s.csrf, 'csrf token', SESSION_LIMITS.csrf);
  checkIso(s.expires, 'session expiry');
  return { id: s.id, token: s.token, csrf: s.csrf, expires: s.expires, address: s.address == null ? null : checkAddress(s.address) };
}
