// Reads the token a request presents — `Authorization: Bearer T`, the raw token as DRLM's
// clients send it, or the password (else the user name) of HTTP Basic credentials as in
// ReaR's RECOVERY_UPDATE_URL — and checks it against the store (core/access.ts: secret,
// revocation, expiry, uses left). Routes then call authorize() with what they act on.

import type { FastifyRequest } from 'fastify';
import { checkToken, parseToken } from '../core/access.ts';
import { RuError } from '../core/errors.ts';
import type { TokenRecord } from '../core/store/metadata.ts';
import type { ServerContext } from './context.ts';

export function presentedToken(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (!h) return null;
  const v = h.trim();
  const bearer = /^Bearer\s+(\S+)$/i.exec(v);
  if (bearer) return bearer[1]!;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(v);
  if (basic) {
    const text = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const i = text.indexOf(':');
    const user = i < 0 ? text : text.slice(0, i);
    const pass = i < 0 ? '' : text.slice(i + 1);
    return pass || user;
  }
  return v;
}

export interface AuthOptions {
  /**
   * Read the token through the download path's one-second memo (cache.ts). Expiry is still
   * checked against the clock each time; a use limit is enforced by the store when spent.
   */
  readonly cached?: boolean;
  /**
   * Accept a token whose uses are all spent: the bundle routes (which spend uses, and let a
   * download that spent one resume) and recovery-log uploads (the recovery it fetched for).
   */
  readonly allowSpent?: boolean;
}

export async function authenticate(req: FastifyRequest, ctx: Pick<ServerContext, 'meta' | 'cache' | 'now' | 'tokenUse'>, opts: AuthOptions = {}): Promise<TokenRecord> {
  const t = presentedToken(req);
  if (t === null) throw new RuError('AUTH_REQUIRED', 'this route needs a token (Authorization: Bearer T)');
  const { id, secret } = parseToken(t);
  const rec = opts.cached ? await ctx.cache.tokens.get(id, () => ctx.meta.getToken(id)) : await ctx.meta.getToken(id);
  const ok = checkToken(rec, secret, { now: ctx.now(), ...(opts.allowSpent ? { allowSpent: true } : {}) });
  ctx.tokenUse.note(ok.id, req.ip);
  return ok;
}
