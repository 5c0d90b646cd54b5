// Small pieces every route file uses: typed parameter checks that refuse with
// REQUEST_INVALID, the host lookup that refuses with HOST_UNKNOWN, and the audit call.

import type { FastifyRequest } from 'fastify';
import { RuError } from '../../core/errors.ts';
import { isValidId } from '../../core/store/facts.ts';
import type { Host, NewAuditEvent } from '../../core/store/metadata.ts';
import type { ServerContext } from '../context.ts';

export function idParam(v: unknown, what = 'host id'): string {
  if (typeof v !== 'string' || !isValidId(v)) {
    throw new RuError('REQUEST_INVALID', `${what} ${JSON.stringify(String(v))} is not valid (letters, digits, . _ -, at most 128)`, { param: what });
  }
  return v;
}

export function intParam(v: unknown, what: string): number | null {
  if (v === undefined || v === '') return null;
  if (typeof v !== 'string' || !/^[1-9]\d{0,9}$/.test(v)) throw new RuError('REQUEST_INVALID', `${what} must be a positive integer`, { param: what });
  return Number(v);
}

/** A query value that may be repeated (?mac=a&mac=b) or comma-separated. */
export function listParam(v: unknown): string[] {
  const all = Array.isArray(v) ? v : v === undefined ? [] : [v];
  return all.flatMap((x) => String(x).split(',')).map((s) => s.trim()).filter((s) => s !== '');
}

export async function hostOr404(ctx: ServerContext, id: string): Promise<Host> {
  const h = await ctx.meta.getHost(id);
  if (!h) throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(id)}`, { host: id });
  return h;
}

/** Audit never fails a request: a store error is logged instead. */
export async function audit(ctx: ServerContext, req: FastifyRequest, e: Omit<NewAuditEvent, 'address'>): Promise<void> {
  // Completed downloads are the bulk: batched (audit-queue.ts). Everything else at once.
  if (e.kind === 'fetch' && e.result === 'ok') {
    ctx.auditQueue.add({ ...e, address: req.ip });
    return;
  }
  try {
    await ctx.meta.appendAudit({ ...e, address: req.ip });
  } catch (err) {
    req.log.error({ err }, 'audit record failed');
  }
}
