// GET /api/v1/token: what the presented token is — id, scope, label, expiry, uses — never its
// secret, so that `rear-update doctor` on an original system can say "the token works and its
// scope is right for this host" without trying a publish. With ?host=ID it also says whether
// the token may publish that host and, when it may, the host's newest version (number, content
// digest, time): a publish token cannot read the admin views, yet doctor must compare that
// digest with a fresh pack (docs/doctor.md). A token that does not work gets the same 401 as
// anywhere else (AUTH_INVALID, AUTH_EXPIRED), which is the answer doctor wants.

import type { FastifyInstance } from 'fastify';
import { authorize, usesLeft } from '../../core/access.ts';
import { isRuError } from '../../core/errors.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { idParam } from './common.ts';

export interface TokenSelf {
  readonly token: {
    readonly id: string;
    readonly scope: string;
    readonly label: string | null;
    readonly created: string;
    readonly expires: string | null;
    readonly uses: number | null;
    readonly usesLeft: number | null;
  };
  /** Only with ?host=ID. `latest` only when `publish` is true (another host's versions are not this token's to see). */
  readonly host?: {
    readonly id: string;
    readonly publish: boolean;
    readonly known: boolean | null;
    readonly latest: { readonly version: number; readonly digest: string; readonly created: string } | null;
  };
}

export function selfRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get<{ Querystring: { host?: unknown } }>('/api/v1/token', async (req, reply): Promise<TokenSelf> => {
    reply.header('cache-control', 'no-store');
    // A used-up fetch token still is what it is: say so (usesLeft 0) rather than refuse.
    const t = await authenticate(req, ctx, { allowSpent: true });
    const token = { id: t.id, scope: t.scope, label: t.label, created: t.created, expires: t.expires, uses: t.uses, usesLeft: usesLeft(t) };
    if (req.query.host === undefined) return { token };
    const id = idParam(req.query.host);
    const host = await ctx.meta.getHost(id);
    try {
      authorize(t, 'publish', host, id);
    } catch (e) {
      if (isRuError(e) && e.code === 'FORBIDDEN') return { token, host: { id, publish: false, known: null, latest: null } };
      throw e;
    }
    const latest = host ? await ctx.meta.latestVersion(id) : null;
    return {
      token,
      host: { id, publish: true, known: host !== null, latest: latest && { version: latest.version, digest: latest.digest, created: latest.created } },
    };
  });
}
