// The server's signing keys over HTTP: the statements rescue systems need to follow a key
// rotation (open, like the public key itself: statements are signed, so they prove themselves),
// and the admin's rotate, retire and list (server/key-ring.ts). docs/server.md and docs/keys.md
// are the reference.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authorize } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { encodeStatement, type KeyStatement } from '../../core/key-statements.ts';
import type { TokenRecord } from '../../core/store/metadata.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { audit } from './common.ts';

/** A statement as a JSON value, fields in their signed order. */
const asJson = (s: KeyStatement): unknown => JSON.parse(encodeStatement(s));

const FINGERPRINT = /^ed25519:[0-9a-f]{16}$/;

export function keyRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const admin = async (req: FastifyRequest): Promise<TokenRecord> => {
    const token = await authenticate(req, ctx);
    authorize(token, 'admin', null);
    return token;
  };

  app.get('/api/v1/key-statements', async (_req, reply) => {
    reply.header('cache-control', 'no-store');
    return { key: ctx.keys.current.publicKey.fingerprint, statements: ctx.keys.served.map(asJson) };
  });

  // Reading the key list is for every console role (view, operate); rotating and retiring are the admin's.
  app.get('/api/v1/keys', async (req) => {
    const token = await authenticate(req, ctx);
    authorize(token, 'view', null);
    const l = ctx.keys.list();
    return { current: l.current, keys: l.keys, served: l.served.map(asJson), statements: l.statements.map(asJson) };
  });

  app.post<{ Body: unknown }>('/api/v1/keys/rotate', async (req, reply) => {
    const token = await admin(req);
    if (req.body !== undefined && (typeof req.body !== 'object' || req.body === null || Object.keys(req.body).length > 0)) {
      throw new RuError('REQUEST_INVALID', 'rotate takes no parameters (an empty body or {})', { param: 'body' });
    }
    const r = ctx.keys.rotate(ctx.now());
    await audit(ctx, req, { kind: 'key', token: token.id, host: null, result: 'ok', detail: `rotated ${r.previous} to ${r.current}` });
    return reply.code(201).send({ previous: r.previous, current: r.current, statement: asJson(r.statement) });
  });

  app.post<{ Body: unknown }>('/api/v1/keys/retire', async (req) => {
    const token = await admin(req);
    const o = req.body as Record<string, unknown> | undefined;
    const fp = o && typeof o === 'object' ? o.fingerprint : undefined;
    if (typeof fp !== 'string' || !FINGERPRINT.test(fp) || Object.keys(o as object).length !== 1) {
      throw new RuError('REQUEST_INVALID', 'the body must be {"fingerprint": "ed25519:<16 hex digits>"}', { param: 'fingerprint' });
    }
    try {
      const r = ctx.keys.retire(fp, ctx.now());
      await audit(ctx, req, { kind: 'key', token: token.id, host: null, result: 'ok', detail: `${r.already ? 'already retired' : 'retired'} ${fp}` });
      return { retired: fp, already: r.already, statement: asJson(r.statement) };
    } catch (e) {
      await audit(ctx, req, { kind: 'key', token: token.id, host: null, result: e instanceof RuError ? e.code : 'INTERNAL', detail: `retire ${fp}` });
      throw e;
    }
  });
}
