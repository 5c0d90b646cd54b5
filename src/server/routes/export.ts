// The signed offline export over HTTP (docs/export.md): what `rear-update admin export` reads to
// write a directory that rescue systems can apply from when the server is gone. The server
// seals every selected host's current composed bundle for one export time (the manifest's
// `served`, no nonce: there is no request to answer, and the index's signed time says how old
// the export is) and signs an index of them with its key; the bundle route seals the same
// bytes again (sealing is deterministic), so the client checks each file against the index
// while it writes it. Admin token; audited.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authorize } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { bundleFileOf, encodeEnvelope, signIndex, type ExportEntry, type ExportIndex } from '../../core/export-index.ts';
import { encodeStatement } from '../../core/key-statements.ts';
import { isoSeconds } from '../../core/manifest.ts';
import type { Host, TokenRecord } from '../../core/store/metadata.ts';
import { sealedBytes, type Sealed } from '../../adapters/tar/served-bundle.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { audit, hostOr404, idParam, intParam, listParam } from './common.ts';

/** A requested export time may lie this far ahead of the server's clock (two hosts' clocks), no further. */
const CLOCK_SLACK_S = 5;

async function admin(ctx: ServerContext, req: FastifyRequest): Promise<TokenRecord> {
  const token = await authenticate(req, ctx);
  authorize(token, 'admin', null);
  return token;
}

/** `exported=2026-11-30T10:00:00Z`: a time in whole seconds, not in the future. */
function exportedParam(v: unknown, now: Date): Date {
  if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(v) || Number.isNaN(Date.parse(v))) {
    throw new RuError('REQUEST_INVALID', 'exported must be an ISO 8601 UTC time in whole seconds, as the export index names it', { param: 'exported' });
  }
  const t = new Date(Date.parse(v));
  if (t.getTime() > now.getTime() + CLOCK_SLACK_S * 1000) throw new RuError('REQUEST_INVALID', `exported ${v} lies in the future`, { param: 'exported' });
  return t;
}

async function digestOf(s: Sealed): Promise<string> {
  const h = createHash('sha256');
  for await (const c of sealedBytes(s)) h.update(c);
  return h.digest('hex');
}

/** The hosts an export covers: every host, or those of the classes and ids given (their union). */
async function selected(ctx: ServerContext, classes: string[], ids: string[]): Promise<Host[]> {
  const all = await ctx.meta.listHosts();
  for (const id of ids) await hostOr404(ctx, id);
  if (classes.length === 0 && ids.length === 0) return all;
  return all.filter((h) => ids.includes(h.id) || (h.class !== null && classes.includes(h.class)));
}

/** The routes of a server that survives the disaster (issue 14): the export, and the store check (fsck.ts) an admin runs before relying on it. */
export function exportRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get<{ Querystring: { class?: string | string[]; host?: string | string[] } }>('/api/v1/export', async (req) => {
    const token = await admin(ctx, req);
    const classes = listParam(req.query.class).map((c) => idParam(c, 'class'));
    const ids = listParam(req.query.host).map((h) => idParam(h));
    const exported = new Date(Math.floor(ctx.now().getTime() / 1000) * 1000);
    const at = isoSeconds(exported.getTime() / 1000);
    const key = ctx.key;
    const hosts: ExportEntry[] = [];
    const skipped: { host: string; reason: string }[] = [];
    for (const host of await selected(ctx, classes, ids)) {
      const rec = await ctx.meta.servedVersion(host.id);
      if (!rec) {
        skipped.push({ host: host.id, reason: 'no published bundle' });
        continue;
      }
      const sealed = await ctx.bundles.sealed(host, rec, exported, null, await ctx.bundles.composition(host));
      hosts.push({
        id: host.id, class: host.class, macs: host.macs, uuid: host.uuid, serial: host.serial, hostnames: host.hostnames,
        version: rec.version, file: bundleFileOf(host.id), sha256: await digestOf(sealed), size: sealed.size,
      });
    }
    const index: ExportIndex = { exported: at, key: key.publicKey.fingerprint, hosts };
    const text = encodeEnvelope({ index, signature: signIndex(index, key), statements: ctx.keys.served.map((s) => JSON.parse(encodeStatement(s)) as unknown) });
    await audit(ctx, req, { kind: 'fetch', token: token.id, host: null, result: 'ok', detail: `export index of ${hosts.length} host(s) at ${at}${skipped.length ? `; skipped ${skipped.map((s) => s.host).join(', ')}` : ''}` });
    return { exported: at, index: text, skipped };
  });

  app.get<{ Params: { id: string }; Querystring: { version?: string; exported?: string } }>('/api/v1/export/hosts/:id/bundle', async (req, reply) => {
    const token = await admin(ctx, req);
    const host = await hostOr404(ctx, idParam(req.params.id));
    const version = intParam(req.query.version, 'version');
    if (version === null) throw new RuError('REQUEST_INVALID', 'version is required: the version the export index names', { param: 'version' });
    const exported = exportedParam(req.query.exported, ctx.now());
    const rec = await ctx.bundles.record(host, version);
    const sealed = await ctx.bundles.sealed(host, rec, exported, null, await ctx.bundles.composition(host));
    await audit(ctx, req, { kind: 'fetch', token: token.id, host: host.id, version: rec.version, bytes: sealed.size, result: 'ok', detail: `export of ${isoSeconds(exported.getTime() / 1000)}` });
    reply
      .header('content-length', sealed.size)
      .header('cache-control', 'no-store')
      .header('content-disposition', `attachment; filename="${bundleFileOf(host.id)}"`)
      .type('application/gzip');
    return reply.send(Readable.from(sealedBytes(sealed), { objectMode: false }));
  });
}
