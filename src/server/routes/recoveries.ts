// Recoveries over HTTP (docs/recoveries.md): a rescue system opens one and reports its events
// and heartbeats with its fetch token; operators read them (view). The helpers at the end link
// other requests (resolve, bundle, log upload) to a recovery by its X-Rear-Update-Recovery
// header, which counts only when the token that opened the recovery presents it.

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authorize } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { REPORTED_KINDS, type RecoveryEventKind } from '../../core/recovery.ts';
import type { Hardware } from '../../core/store/hardware.ts';
import type { Recovery, RecoveryQuery, TokenRecord } from '../../core/store/metadata.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { idParam, intParam } from './common.ts';

export const RECOVERY_HEADER = 'x-rear-update-recovery';

/** Bounds on what a rescue system may write into a timeline (it is shown to operators). */
const MAX_MESSAGE = 1000;
const MAX_DETAIL_BYTES = 16 * 1024;
const MAX_FACT_MACS = 64;

const invalid = (message: string, param: string): RuError => new RuError('REQUEST_INVALID', message, { param });

function bodyObject(v: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid('the body must be a JSON object (Content-Type: application/json)', 'body');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw invalid(`unknown field ${JSON.stringify(k)} (known: ${allowed.join(', ')})`, k);
  return o;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/;

function textField(v: unknown, param: string, max: number): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || v.length > max || CONTROL.test(v)) throw invalid(`${param} must be text of at most ${max} characters without control characters`, param);
  return v;
}

/** The identity facts a rescue system sends: their shape is checked here, their values canonicalized by the service. */
function factsParam(v: unknown): Record<string, unknown> | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid('facts must be an object {macs, uuid, serial, hostname}', 'facts');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['macs', 'uuid', 'serial', 'hostname'].includes(k)) throw invalid(`unknown fact ${JSON.stringify(k)} (known: macs, uuid, serial, hostname)`, 'facts');
  if (o.macs !== undefined && (!Array.isArray(o.macs) || o.macs.length > MAX_FACT_MACS || !o.macs.every((m) => typeof m === 'string' && m.length <= 64))) throw invalid(`facts.macs must be a list of at most ${MAX_FACT_MACS} strings`, 'facts');
  for (const k of ['uuid', 'serial', 'hostname']) textField(o[k], `facts.${k}`, 256);
  return o;
}

/** A recovery id from a path segment. */
const recoveryId = (v: unknown): number => {
  const n = intParam(v, 'recovery id');
  if (n === null) throw invalid('recovery id must be a positive integer', 'recovery id');
  return n;
};

/**
 * The recovery a token may report to: the one it opened, or any for an operator. Another token
 * learns nothing, not even whether the id exists (only operators are told RECOVERY_UNKNOWN).
 */
async function reportable(ctx: ServerContext, token: TokenRecord, id: number): Promise<Recovery> {
  const r = await ctx.meta.getRecovery(id);
  if (r && r.token === token.id) return r;
  authorize(token, 'operate', null);
  if (!r) throw new RuError('RECOVERY_UNKNOWN', `no recovery ${id}`, { recovery: id });
  return r;
}

export function recoveryRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const viewer = async (req: FastifyRequest): Promise<TokenRecord> => {
    const token = await authenticate(req, ctx);
    authorize(token, 'view', null);
    return token;
  };

  app.post<{ Body: unknown }>('/api/v1/recoveries', async (req, reply) => {
    // A --uses token may have spent its download: its rescue system still reports (as with logs).
    const token = await authenticate(req, ctx, { allowSpent: true });
    const o = bodyObject(req.body, ['facts', 'hardware', 'host']);
    const hostId = o.host === undefined || o.host === null ? null : idParam(o.host);
    if (hostId === null) {
      authorize(token, 'fetch', null);
    } else {
      const host = await ctx.meta.getHost(hostId);
      // Scope first: a token for another host learns nothing, not even whether this one exists.
      authorize(token, 'fetch', host, hostId);
      if (!host) throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(hostId)}`, { host: hostId });
    }
    const facts = factsParam(o.facts);
    // The hardware report is checked (checkHardware) by the service, before any store keeps it.
    const recovery = await ctx.recoveries.open({ token: token.id, address: req.ip }, { facts, hardware: (o.hardware ?? null) as Hardware | null, host: hostId });
    return reply.code(201).send({ recovery });
  });

  app.post<{ Params: { id: string }; Body: unknown }>('/api/v1/recoveries/:id/events', async (req, reply) => {
    const id = recoveryId(req.params.id);
    const token = await authenticate(req, ctx, { allowSpent: true });
    await reportable(ctx, token, id);
    const o = bodyObject(req.body, ['kind', 'message', 'detail', 'exitStatus', 'error']);
    if (typeof o.kind !== 'string' || !REPORTED_KINDS.includes(o.kind as RecoveryEventKind)) throw invalid(`kind must be one of ${REPORTED_KINDS.join(', ')} (the others are the server's to record)`, 'kind');
    const kind = o.kind as RecoveryEventKind;
    const message = textField(o.message, 'message', MAX_MESSAGE) ?? '';
    let detail: Record<string, unknown> = {};
    if (o.detail !== undefined && o.detail !== null) {
      if (typeof o.detail !== 'object' || Array.isArray(o.detail)) throw invalid('detail must be a JSON object', 'detail');
      if (Buffer.byteLength(JSON.stringify(o.detail)) > MAX_DETAIL_BYTES) throw invalid(`detail is larger than ${MAX_DETAIL_BYTES} bytes as JSON`, 'detail');
      detail = o.detail as Record<string, unknown>;
    }
    let exitStatus: number | null = null;
    if (o.exitStatus !== undefined && o.exitStatus !== null) {
      if (typeof o.exitStatus !== 'number' || !Number.isInteger(o.exitStatus) || o.exitStatus < 0 || o.exitStatus > 255) throw invalid('exitStatus must be a whole number 0..255', 'exitStatus');
      exitStatus = o.exitStatus;
    }
    if (kind === 'finished' && exitStatus === null) throw invalid('a finished event needs exitStatus (0: rear recover succeeded)', 'exitStatus');
    let error: string | null = null;
    if (o.error !== undefined && o.error !== null) {
      if (typeof o.error !== 'string' || !/^[A-Z][A-Z0-9_]{0,63}$/.test(o.error)) throw invalid('error must be an error code (A-Z, 0-9, _)', 'error');
      error = o.error;
    }
    const r = await ctx.recoveries.record(id, { kind, actor: token.id, message, detail, ...(exitStatus !== null ? { exitStatus } : {}), ...(error !== null ? { error } : {}) });
    return reply.code(201).send(r);
  });

  app.post<{ Params: { id: string } }>('/api/v1/recoveries/:id/heartbeat', async (req, reply) => {
    const id = recoveryId(req.params.id);
    const token = await authenticate(req, ctx, { allowSpent: true });
    await reportable(ctx, token, id);
    await ctx.recoveries.sign(id);
    return reply.code(204).send();
  });

  app.get<{ Querystring: Record<string, string | undefined> }>('/api/v1/recoveries', async (req) => {
    await viewer(req);
    const q = req.query;
    const set = (v: string | undefined): v is string => v !== undefined && v !== '';
    if (set(q.active) && !['0', '1', 'true', 'false'].includes(q.active)) throw invalid('active must be 1 or 0', 'active');
    const limit = intParam(q.limit, 'limit');
    if (limit !== null && limit > 1000) throw invalid('limit is at most 1000', 'limit');
    const query: RecoveryQuery = {
      ...(q.active === '1' || q.active === 'true' ? { active: true } : {}),
      ...(set(q.host) ? { host: idParam(q.host) } : {}),
      ...(set(q.before) ? { beforeId: intParam(q.before, 'before')! } : {}),
      ...(limit !== null ? { limit } : {}),
    };
    const r = await ctx.recoveries.list(query);
    const full = r.recoveries.length === (limit ?? 100);
    return { ...r, next: full ? (r.recoveries.at(-1)?.id ?? null) : null };
  });

  app.get<{ Params: { id: string } }>('/api/v1/recoveries/:id', async (req) => {
    await viewer(req);
    return ctx.recoveries.get(recoveryId(req.params.id));
  });
}

/** The recovery id a request's header names, or null (absent or malformed: ignored, never refused). */
export function recoveryIdOf(req: FastifyRequest): number | null {
  const v = req.headers[RECOVERY_HEADER];
  return typeof v === 'string' && /^[1-9]\d{0,14}$/.test(v.trim()) ? Number(v.trim()) : null;
}

/**
 * The recovery the request is linked to: the header's, if `token` opened it; else null. A store
 * failure here is logged and taken as no link: reporting never fails the request it rides on.
 */
export async function linkedRecovery(ctx: ServerContext, req: FastifyRequest, token: string): Promise<Recovery | null> {
  const id = recoveryIdOf(req);
  if (id === null) return null;
  try {
    return await ctx.recoveries.linked(id, token);
  } catch (err) {
    req.log.warn({ err, recovery: id }, 'recovery link failed');
    return null;
  }
}

/** Runs a recovery report beside a request; a failure is logged, never the request's. */
export async function quietly(req: FastifyRequest, what: string, run: () => Promise<unknown>): Promise<void> {
  try {
    await run();
  } catch (err) {
    req.log.warn({ err }, `recovery report failed: ${what}`);
  }
}
