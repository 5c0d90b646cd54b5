// PostgreSQL's errors, translated into the documented codes (as sqlite-errors.ts does for
// SQLite): callers of the store see STORE_BUSY (HTTP 503) while the database is away or a lock
// is contended, STORE_CONFLICT for a broken uniqueness rule, never a pg DatabaseError or a
// socket error with a stack trace. A URL shown to people never carries its password.

import { isRuError, RuError } from '../../core/errors.ts';

/** What a client should wait before asking again while PostgreSQL is away (Retry-After). */
const RETRY_AFTER_S = 5;

/** Socket errors of a connection that could not be made or was lost. */
const NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);

/** pg's own errors about a lost or unobtainable connection carry no code, only these messages. */
const LOST = /Connection terminated|connection error and is not queryable|timeout exceeded when trying to connect|Connection ended|connection has been discarded|Client was closed/i;

/**
 * The URL as people may see it: a password in the user part or in a `password` parameter
 * replaced by "***". Text, not WHATWG URL parsing: a socket URL (postgres://user@/db?host=/run)
 * has no host, which URL refuses.
 */
export function redactUrl(url: string): string {
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*):[^@/?#]*@/i, '$1:***@')
    .replace(/([?&]password=)[^&#]*/gi, '$1***');
}

/** Whether `e` says the database cannot be reached (rather than that it refused a statement). */
export function isUnreachable(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' ? err.code : '';
  if (NETWORK.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') return true;
  return !code && typeof err?.message === 'string' && LOST.test(err.message);
}

/** `store` names what the database holds for this caller, in messages: the metadata, or the bundles (pg-blobs.ts). */
export function fromPgError(e: unknown, what: string, store: 'metadata' | 'blob' = 'metadata'): RuError {
  if (isRuError(e)) return e;
  if (e instanceof AggregateError && e.errors.length > 0) return fromPgError(e.errors[0], what, store);
  const err = e as { code?: unknown; message?: string; constraint?: string };
  const code = typeof err?.code === 'string' ? err.code : '';
  const message = err?.message ?? String(e);
  if (isUnreachable(e)) {
    return new RuError('STORE_BUSY', `${what}: the PostgreSQL ${store} database is unavailable (${message}); retry later`, { postgres: code || null, retryAfter: RETRY_AFTER_S });
  }
  const ctx = { postgres: code };
  // SQLSTATE: two characters of class, three of condition (PostgreSQL's Appendix A).
  const cls = code.slice(0, 2);
  if (/^[0-9A-Z]{5}$/.test(code)) {
    if (code === '53100') return new RuError('NO_SPACE', `no space left on the PostgreSQL server while ${what}`, ctx);
    if (code === '40001' || code === '40P01' || code === '55P03' || code === '57014' || cls === '53') {
      const why = code === '40P01' ? 'a deadlock' : code === '40001' ? 'a serialization conflict' : code === '55P03' || code === '57014' ? 'a lock held too long by another session' : 'the server is short of resources';
      return new RuError('STORE_BUSY', `${what}: the PostgreSQL ${store} database is busy (${why}); retry`, { ...ctx, retryAfter: 1 });
    }
    if (cls === '23') return new RuError('STORE_CONFLICT', `${what}: ${message}`, { ...ctx, constraint: err.constraint ?? null });
    if (code === 'XX001' || code === 'XX002') return new RuError('STORE_CORRUPT', `${what}: ${message}`, ctx);
    // A table or column missing: the database is not (or no longer) this program's schema.
    if (code === '42P01' || code === '42703') return new RuError('STORE_SCHEMA', `${what}: ${message}`, ctx);
    if (cls === '28' || code === '3D000') return new RuError('STORE_UNREACHABLE', `${what}: PostgreSQL refused: ${message}`, ctx);
    return new RuError('INTERNAL', `${what}: ${message}`, ctx);
  }
  return new RuError('INTERNAL', `${what}: ${message}`);
}
