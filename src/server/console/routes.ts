// The web console (docs/console.md): server-rendered pages at the top level of the server
// (/, /sign-in, /hosts, ...), their assets, and the live pages (live/routes.ts). All of them
// sit in one Fastify context so that the security headers and the HTML error pages apply to
// every console answer and to nothing else (the JSON API keeps its own error answers).

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerContext } from '../context.ts';
import { sendError, statusOf, toRuError } from '../http-errors.ts';
import { assetRoutes } from './assets.ts';
import { auditPages } from './audit.ts';
import { classPages } from './classes.ts';
import { hostPages } from './hosts.ts';
import { errorPage, securityHeaders } from './layout.ts';
import { livePages } from './live/routes.ts';
import { currentUser } from './session.ts';
import { signInPages } from './sign-in.ts';
import { tokenPages } from './tokens.ts';

/** A browser navigating (a form or a link) gets a page; fetch(), EventSource and scripts get JSON. */
function wantsPage(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? '';
  return accept.includes('text/html') && req.headers['x-csrf-token'] === undefined;
}

async function consoleError(ctx: ServerContext, err: unknown, req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const e = toRuError(err);
  if (!wantsPage(req)) return sendError(err, req, reply);
  if (statusOf(e.code) >= 500) req.log.error({ err }, 'console request failed');
  else req.log.info({ code: e.code, reason: e.message }, 'console request refused');
  const user = await currentUser(ctx, req).catch(() => null);
  return errorPage(reply, user, e);
}

/**
 * The console's forms: small, parsed by node's URLSearchParams into an object of strings (a
 * repeated field becomes a list; __proto__ and the like stay plain own keys). Registered in the
 * console's context only, so the JSON API still reads no form body: a cross-site form cannot
 * post fields to it even where a browser holds Basic credentials for the server.
 */
function parseForm(_req: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void): void {
  const o = Object.create(null) as Record<string, string | string[]>;
  for (const [k, v] of new URLSearchParams(body.toString())) {
    const had = o[k];
    o[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
  }
  done(null, o);
}

export function consoleRoutes(app: FastifyInstance, ctx: ServerContext): void {
  void app.register(async (sub) => {
    sub.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 64 * 1024 }, parseForm);
    sub.addHook('onSend', async (_req, reply, payload) => {
      securityHeaders(reply);
      return payload;
    });
    sub.setErrorHandler((err, req, reply) => consoleError(ctx, err, req, reply));
    assetRoutes(sub);
    signInPages(sub, ctx);
    hostPages(sub, ctx);
    classPages(sub, ctx);
    tokenPages(sub, ctx);
    auditPages(sub, ctx);
    livePages(sub, ctx);
  });
}
