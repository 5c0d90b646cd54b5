// Routes without a token: liveness, metrics, and the public key rescue images trust.

import type { FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';

export function publicRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/healthz', async () => {
    // A cheap round trip through the store proves more than "the process is up".
    await ctx.meta.getHost('healthz-probe');
    return { status: 'ok', key: ctx.key.publicKey.fingerprint };
  });
  app.get('/metrics', async (_req, reply) => {
    reply.type(ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });
  app.get('/api/v1/server-key', async (_req, reply) => {
    reply.header('x-rear-update-fingerprint', ctx.key.publicKey.fingerprint).type('application/x-pem-file');
    return ctx.publicPem;
  });
}
