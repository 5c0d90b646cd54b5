// `rear-update admin fsck [--gc]` over HTTP: the store check of `serve --check` (store-check.ts)
// run by the server itself, beside its traffic, and the removal of unreferenced blobs older
// than a grace period. Before an export is all that is left, an admin wants to know that every
// version's bundle data is there and sound. Admin token; a removal is audited.

import type { FastifyInstance } from 'fastify';
import { authorize } from '../../core/access.ts';
import { parseDuration } from '../../core/duration.ts';
import { RuError } from '../../core/errors.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { checkStore, collectGarbage } from '../store-check.ts';
import { audit } from './common.ts';

/** How old an unreferenced blob must be before --gc removes it, unless told otherwise. */
export const DEFAULT_GRACE_S = 3600;

function graceParam(v: unknown): number {
  if (v === undefined || v === '') return DEFAULT_GRACE_S;
  const s = typeof v === 'string' ? parseDuration(v) : null;
  if (s === null) throw new RuError('REQUEST_INVALID', 'grace must be a duration: 90s, 15m, 1h, 0 ...', { param: 'grace' });
  return s;
}

export function fsckRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/api/v1/fsck', async (req) => {
    authorize(await authenticate(req, ctx), 'admin', null);
    return { check: await checkStore({ meta: ctx.meta, blobs: ctx.blobs, data: ctx.data, logs: ctx.logs.store }) };
  });

  app.post<{ Querystring: { grace?: string } }>('/api/v1/fsck/gc', async (req) => {
    const token = await authenticate(req, ctx);
    authorize(token, 'admin', null);
    const grace = graceParam(req.query.grace);
    const gc = await collectGarbage({ meta: ctx.meta, blobs: ctx.blobs }, grace * 1000, ctx.now().getTime());
    if (gc.removed.length > 0) {
      await audit(ctx, req, { kind: 'publish', token: token.id, host: null, result: 'ok', detail: `fsck --gc: removed ${gc.removed.length} unreferenced blob(s), ${gc.removed.reduce((n, b) => n + b.bytes, 0)} bytes, older than ${grace} s` });
    }
    // The check after the removal: what is left.
    return { gc, check: await checkStore({ meta: ctx.meta, blobs: ctx.blobs, data: ctx.data, logs: ctx.logs.store }) };
  });
}
