// Input checks every metadata backend applies before it touches its storage, written once so
// that all backends refuse the same values with the same codes (the contract suite checks it).

import { RuError } from '../errors.ts';
import { checkId, strictFact, strictFactList } from './facts.ts';
import type { AuditQuery, HostFields, NewAuditEvent, NewToken, NewVersion, TokenScope } from './metadata.ts';
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

export function checkScope(s: string): TokenScope {
  if (s === 'admin') return s;
  const m = /^(publish|fetch|fetch-class):(.*)$/.exec(String(s));
  if (!m) return invalid(`token scope ${JSON.stringify(s)} is not admin, publish:HOST, fetch:HOST or fetch-class:CLASS`, { value: String(s) });
  checkId(m[2] as string, m[1] === 'fetch-class' ? 'class' : 'host');
  return s as TokenScope;
}

export function checkNewToken(t: NewToken): NewToken {
  checkId(t.id, 'token id');
  checkScope(t.scope);
  if (typeof t.secretHash !== 'string' || t.secretHash.length === 0) invalid('token secretHash is empty');
  return t;
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
