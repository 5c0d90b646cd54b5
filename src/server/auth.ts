// Reads the token a request presents — `Authorization: Bearer T`, the raw token as DRLM's
// clients send it, or the password (else the user name) of HTTP Basic credentials as in
// ReaR's RECOVERY_UPDATE_URL — and checks it against the store. Routes then call
// core/access.ts authorize() with what they act on.

import type { FastifyRequest } from 'fastify';
import { checkToken, parseToken } from '../core/access.ts';
import { RuError } from '../core/errors.ts';
import type { TokenRecord, TokenStore } from '../core/store/metadata.ts';

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

export async function authenticate(req: FastifyRequest, tokens: Pick<TokenStore, 'getToken'>): Promise<TokenRecord> {
  const t = presentedToken(req);
  if (t === null) throw new RuError('AUTH_REQUIRED', 'this route needs a token (Authorization: Bearer T)');
  const { id, secret } = parseToken(t);
  return checkToken(await tokens.getToken(id), secret);
}
