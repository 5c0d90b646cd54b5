// Who may do what on the server. A token is `ru_<id>_<secret>`: the id finds the record, the
// secret is stored only as its sha256 and compared in constant time. Scopes are deliberately
// few — admin; publish for one host; publish the layers of one hardware class; fetch for one
// host or one hardware class — and every route asks one question here, so "a token for host A
// never reaches host B" is decided in one place (and tested over every route).

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { RuError } from './errors.ts';
import type { Host, TokenRecord, TokenScope } from './store/metadata.ts';

const TOKEN_RE = /^ru_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export interface NewTokenSecret {
  readonly id: string;
  readonly token: string;
  readonly secretHash: string;
}

export const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('hex');

export function generateToken(): NewTokenSecret {
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, token: `ru_${id}_${secret}`, secretHash: hashSecret(secret) };
}

/** Splits a presented token; AUTH_INVALID when it does not have the form of one. */
export function parseToken(token: string): { id: string; secret: string } {
  const m = TOKEN_RE.exec(token.trim());
  if (!m) throw new RuError('AUTH_INVALID', 'the token is not of the form ru_<id>_<secret>');
  return { id: m[1]!, secret: m[2]! };
}

/** Downloads a token may still start: null for a token without a use limit. */
export const usesLeft = (rec: Pick<TokenRecord, 'uses' | 'used'>): number | null => (rec.uses === null ? null : Math.max(rec.uses - rec.used, 0));

/**
 * The record the token names, if its secret matches, it is not revoked, not expired at `now`
 * and, unless `allowSpent`, has uses left. Only a caller that knows the secret learns why a
 * token is refused (expired, used up): the secret is compared first.
 */
export function checkToken(rec: TokenRecord | null, secret: string, opts: { now: Date; allowSpent?: boolean }): TokenRecord {
  const a = Buffer.from(rec?.secretHash ?? '0'.repeat(64), 'hex');
  const b = Buffer.from(hashSecret(secret), 'hex');
  // Compare even for an unknown id, so timing does not tell which ids exist.
  const same = a.length === b.length && timingSafeEqual(a, b);
  if (!rec || !same) throw new RuError('AUTH_INVALID', 'unknown token');
  if (rec.revoked) throw new RuError('AUTH_INVALID', `token ${rec.id} was revoked at ${rec.revoked}`, { token: rec.id });
  if (rec.expires !== null && opts.now.toISOString() >= rec.expires) {
    throw new RuError('AUTH_EXPIRED', `token ${rec.id} expired at ${rec.expires}`, { token: rec.id, expired: rec.expires });
  }
  if (!opts.allowSpent && usesLeft(rec) === 0) throw usedUp(rec);
  return rec;
}

export const usedUp = (rec: Pick<TokenRecord, 'id' | 'uses'>): RuError =>
  new RuError('AUTH_USED_UP', `token ${rec.id} has started all of its ${rec.uses} bundle download${rec.uses === 1 ? '' : 's'}: it is used up`, { token: rec.id, uses: rec.uses });

/**
 * admin: change anything. operate: assign and forget pending machines. view: read what an admin
 * reads (hosts, versions, diffs, tokens, audit, recoveries, logs). publish, fetch: one host's.
 */
export type Action = 'admin' | 'operate' | 'view' | 'publish' | 'fetch';

const forbidden = (rec: TokenRecord, what: string): RuError =>
  new RuError('FORBIDDEN', `token ${rec.id} (${rec.scope}) may not ${what}`, { token: rec.id, scope: rec.scope });

/**
 * Throws FORBIDDEN unless the token may do `action` on `host` (null: an action on no one host,
 * such as resolving facts, which any fetch token may ask). Fetch-class tokens reach the hosts
 * whose class is theirs; a publish token may also fetch what it published. A publish-class
 * token reaches no host at all (authorizeLayerPublish is its only question).
 */
export function authorize(rec: TokenRecord, action: Action, host: Pick<Host, 'id' | 'class'> | null, hostId?: string): void {
  const scope: TokenScope = rec.scope;
  if (scope === 'admin') return;
  const id = host?.id ?? hostId ?? null;
  const label = id === null ? action : `${action} host ${id}`;
  if (action === 'admin') throw forbidden(rec, 'use admin routes');
  // The console roles reach no host's bundle and publish nothing: they read, and operate pending machines.
  if (action === 'view') {
    if (scope === 'view' || scope === 'operate') return;
    throw forbidden(rec, 'read the admin views');
  }
  if (action === 'operate') {
    if (scope === 'operate') return;
    throw forbidden(rec, 'assign or forget pending machines');
  }
  if (scope === 'view' || scope === 'operate') throw forbidden(rec, label);
  const [kind, value] = [scope.slice(0, scope.indexOf(':')), scope.slice(scope.indexOf(':') + 1)];
  // Said outright rather than left to the comparisons below: a layer token reaches no host.
  if (kind === 'publish-class') throw forbidden(rec, label);
  if (action === 'publish') {
    if (kind === 'publish' && id === value) return;
    throw forbidden(rec, label);
  }
  // fetch
  if (id === null) {
    if (kind === 'fetch' || kind === 'fetch-class') return;
    throw forbidden(rec, label);
  }
  if ((kind === 'fetch' || kind === 'publish') && id === value) return;
  if (kind === 'fetch-class' && host !== null && host.class === value) return;
  throw forbidden(rec, label);
}

/**
 * Throws FORBIDDEN unless the token may publish a layer of class `cls` ('*': the every-class
 * layers): admin, or publish-class of exactly that class. publish-class:* is a token for the
 * '*' layers only, not for every class; host tokens never publish layers, which every host of
 * a class would receive.
 */
export function authorizeLayerPublish(rec: TokenRecord, cls: string): void {
  const scope: TokenScope = rec.scope;
  if (scope === 'admin') return;
  if (scope === `publish-class:${cls}`) return;
  throw forbidden(rec, `publish layers of class ${cls}`);
}

/** The hosts a fetch token may see among `hosts` (resolution must not leak other hosts' ids). */
export function mayFetch(rec: TokenRecord, host: Pick<Host, 'id' | 'class'>): boolean {
  try {
    authorize(rec, 'fetch', host);
    return true;
  } catch {
    return false;
  }
}
