// The HTTP app as a value (hono's idea): buildApp(context) returns a Fastify instance that
// tests drive in-process with inject() or on a real loopback port, and serve.ts listens with.
// One error handler (http-errors.ts); uploads arrive as raw streams, never buffered by Fastify.

import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { RuError } from '../core/errors.ts';
import type { ServerContext } from './context.ts';
import { sendClientError, sendError, sendRawError } from './http-errors.ts';
import { applyLimits, DEFAULT_LIMITS, fastifyTimeouts, httpServerOptions, type ServerLimits } from './limits.ts';
import { adminRoutes } from './routes/admin.ts';
import { drlmRoutes } from './routes/drlm.ts';
import { fetchRoutes } from './routes/fetch.ts';
import { publicRoutes } from './routes/public.ts';
import { publishRoutes } from './routes/publish.ts';
import { keyRoutes } from './routes/keys.ts';
import { layerRoutes } from './routes/layers.ts';
import { recoveryRoutes } from './routes/recoveries.ts';
import { consoleRoutes } from './console/routes.ts';
import { exportRoutes } from './routes/export.ts';
import { fsckRoutes } from './routes/fsck.ts';
import { downloadRoutes } from './routes/download.ts';
import { selfRoutes } from './routes/self.ts';

export type RouteRegistrar = (app: FastifyInstance, ctx: ServerContext) => void;

/** Route sets registered beside the built-in ones (admin.ts adds itself through this list). */
export const ROUTES: RouteRegistrar[] = [publicRoutes, fetchRoutes, publishRoutes, drlmRoutes, adminRoutes, keyRoutes, layerRoutes, recoveryRoutes, exportRoutes, fsckRoutes, downloadRoutes, selfRoutes, consoleRoutes];

export interface AppOptions {
  readonly logger?: FastifyServerOptions['logger'];
  readonly https?: { cert: Buffer; key: Buffer } | null;
  /** Timeouts and connection caps (limits.ts); the defaults of config.ts when not given. */
  readonly limits?: ServerLimits;
}

export function buildApp(ctx: ServerContext, opts: AppOptions = {}): FastifyInstance {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const app = Fastify({
    logger: opts.logger ?? false,
    // Node's own server options (the header deadline) go where node's http or https takes them.
    ...(opts.https ? { https: { ...opts.https, ...httpServerOptions(limits) } } : { http: httpServerOptions(limits) }),
    // JSON bodies are small; bundle and log uploads bypass the body parser entirely.
    bodyLimit: 1 << 20,
    // Slow clients: idle and keep-alive timeouts here, the rest in limits.ts.
    ...fastifyTimeouts(limits),
    return503OnClosing: true,
    // One log line per request, written by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    // Refusals before any route runs (bad URL encoding, over-long parameters, malformed HTTP)
    // answer with a code like every other refusal.
    frameworkErrors: (err, req, reply) => sendError(err, req, reply),
    clientErrorHandler: sendClientError,
  }) as unknown as FastifyInstance;
  // Node answers an HTTP/1.1 request without Host itself, with an empty 400: refuse it here instead.
  (app.server as { requireHostHeader?: boolean }).requireHostHeader = false;
  app.addHook('onRequest', async (req) => {
    if (req.raw.httpVersion === '1.1' && req.headers.host === undefined) throw new RuError('REQUEST_INVALID', 'an HTTP/1.1 request needs a Host header', { param: 'host' });
  });
  app.server.on('connect', (req: { method?: string; url?: string }, socket: import('node:stream').Duplex) => sendRawError(socket, 404, new RuError('ROUTE_UNKNOWN', `no route ${req.method ?? 'CONNECT'} ${String(req.url).slice(0, 200)}`)));

  // Anything that is not JSON (a gzip'd bundle, a log stream, or no content type at all as
  // curl -T- sends) is left unread for the route to stream.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, body === '' ? {} : JSON.parse(body as string));
    } catch (e) {
      done(new RuError('REQUEST_INVALID', `the body is not valid JSON: ${(e as Error).message}`), undefined);
    }
  });
  app.addContentTypeParser('*', (_req, _payload, done) => done(null, undefined));

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    ctx.metrics.requests.inc({ route, method: req.method, status: String(reply.statusCode) });
    ctx.metrics.duration.observe({ route }, reply.elapsedTime / 1000);
    req.log.info({ method: req.method, route, url: req.url.replace(/([?&](?:token)=)[^&]*/g, '$1***'), status: reply.statusCode, ms: Math.round(reply.elapsedTime), ip: req.ip }, 'request');
  });
  applyLimits(app, limits);
  app.setErrorHandler((err, req, reply) => sendError(err, req, reply));
  app.setNotFoundHandler((req, reply) => sendError(new RuError('ROUTE_UNKNOWN', `no route ${req.method} ${req.url.split('?')[0]}`), req, reply));
  for (const r of ROUTES) r(app, ctx);
  return app;
}
