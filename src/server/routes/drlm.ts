// DRLM's API as ReaR 2.7's lib/drlm-functions.sh calls it (rear recover with DRLM_MANAGED=y):
// the host's current etc/rear/local.conf (or etc/rear/CFG.conf for `-C CFG`) as a shell
// config ReaR sources, and the live recovery log it streams with `tail -f | curl -T-`. The
// token comes in the raw Authorization header, as DRLM's own server expects (Bearer works too).
// A log upload belongs to a recovery (docs/recoveries.md): the one its X-Rear-Update-Recovery
// header names, else the host's newest active one, else a new one; its bytes are signs of life.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { authorize } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import type { TokenRecord } from '../../core/store/metadata.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { logStream } from '../limits.ts';
import { audit, hostOr404, idParam } from './common.ts';
import { linkedRecovery, quietly } from './recoveries.ts';

const CFG = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

async function config(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, id: string, cfg: string): Promise<FastifyReply> {
  let token: TokenRecord | null = null;
  try {
    token = await authenticate(req, ctx);
    const host = await ctx.meta.getHost(id);
    authorize(token, 'fetch', host, id);
    const h = host ?? (await hostOr404(ctx, id));
    const rec = await ctx.bundles.record(h, null);
    const path = `etc/rear/${cfg}.conf`;
    // The composed view: a class layer may carry a config file the host's own bundle lacks.
    const body = await ctx.bundles.composedFile(h, rec, path, 4 << 20);
    if (body === null) throw new RuError('NO_BUNDLE', `host ${id}'s bundle (version ${rec.version}) has no ${path}`, { host: id, path });
    await audit(ctx, req, { kind: 'fetch', token: token.id, host: id, version: rec.version, bytes: body.length, result: 'ok', detail: `drlm ${path}` });
    return reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store').send(body);
  } catch (e) {
    await audit(ctx, req, { kind: 'fetch', token: token?.id ?? null, host: id, result: e instanceof RuError ? e.code : 'INTERNAL', detail: `drlm ${cfg}` });
    throw e;
  }
}

/**
 * The recovery a log upload belongs to, with its `log` event recorded: the header's (if this
 * token opened it), else the host's newest active recovery, else a new one for the host (an
 * unmodified ReaR sends no header). Null only when the store failed: the upload goes on.
 */
async function logRecovery(ctx: ServerContext, req: FastifyRequest, token: string, host: string, log: number): Promise<number | null> {
  let id: number | null = null;
  await quietly(req, 'log', async () => {
    const linked = await linkedRecovery(ctx, req, token);
    const [newest] = linked ? [linked] : await ctx.meta.listRecoveries({ host, active: true, limit: 1 });
    id = (newest ?? (await ctx.recoveries.open({ token, address: req.ip }, { host }))).id;
    await ctx.recoveries.record(id, { kind: 'log', actor: token, host, log, message: `recovery log ${log} started`, detail: { log } });
  });
  return id;
}

export function drlmRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get<{ Params: { id: string } }>('/clients/:id/config', async (req, reply) => config(ctx, req, reply, idParam(req.params.id), 'local'));

  app.get<{ Params: { id: string; cfg: string } }>('/clients/:id/config/:cfg', async (req, reply) => {
    if (!CFG.test(req.params.cfg)) throw new RuError('REQUEST_INVALID', `config name ${JSON.stringify(req.params.cfg)} is not valid`, { param: 'cfg' });
    return config(ctx, req, reply, idParam(req.params.id), req.params.cfg);
  });

  app.put<{ Params: { id: string; workflow: string; stamp: string } }>('/clients/:id/log/:workflow/:stamp', async (req, reply) => {
    const id = idParam(req.params.id);
    const { workflow, stamp } = req.params;
    if (!SEGMENT.test(workflow) || !SEGMENT.test(stamp)) throw new RuError('REQUEST_INVALID', 'workflow and timestamp must be letters, digits, . _ -', { param: 'log' });
    let tokenId: string | null = null;
    let rec;
    try {
      // A used-up --uses token may still send the log of the recovery it fetched for.
      const token = await authenticate(req, ctx, { allowSpent: true });
      tokenId = token.id;
      const host = await ctx.meta.getHost(id);
      authorize(token, 'fetch', host, id);
      await hostOr404(ctx, id);
      rec = await ctx.meta.openLog({ host: id, workflow, stamp, address: req.ip });
    } catch (e) {
      await audit(ctx, req, { kind: 'log', token: tokenId, host: id, result: e instanceof RuError ? e.code : 'INTERNAL', detail: `log upload ${workflow} ${stamp} refused` });
      // The body of a refused upload is not read: close the connection instead of draining it.
      reply.header('connection', 'close');
      throw e;
    }
    const token = { id: tokenId as string };
    // Lives as long as ReaR sends (no body deadline); ends once it stalls (--log-idle-timeout).
    logStream(req);
    await audit(ctx, req, { kind: 'log', token: token.id, host: id, result: 'ok', detail: `log ${rec.id} started: ${workflow} ${stamp}` });
    const recovery = await logRecovery(ctx, req, token.id, id, rec.id);
    // Bytes arriving are signs of life; the service writes one every few seconds at most.
    const sign = recovery === null ? () => undefined : () => void quietly(req, 'log bytes', () => ctx.recoveries.sign(recovery));
    let done;
    try {
      done = await ctx.logs.receive(rec, req.raw as Readable, ctx.maxUpload, (n) => {
        ctx.metrics.logBytes.inc(n);
        sign();
      });
    } catch (e) {
      // Refused mid-way (too large, a full disk, stalled): what arrived is kept, the rest is not read.
      await audit(ctx, req, { kind: 'log', token: token.id, host: id, result: e instanceof RuError ? e.code : 'INTERNAL', detail: `log ${rec.id} ended: ${e instanceof Error ? e.message.slice(0, 400) : ''}` });
      reply.header('connection', 'close');
      throw e;
    }
    await audit(ctx, req, { kind: 'log', token: token.id, host: id, bytes: done.bytes, result: done.complete ? 'ok' : 'INCOMPLETE', detail: `log ${rec.id} ended` });
    return reply.code(201).send({ log: done });
  });
}
