// POST /api/v1/hosts/{id}/versions: a bundle made by pack/publish as the raw request body
// (streamed to disk, never buffered whole), the machine's facts in the query. A publish token
// reaches its own host; an admin token may publish for a host that does not exist yet, which
// creates it. Facts the publisher reports replace the host's (hostnames, MACs, UUID, serial).
// A new version's var/lib/rear/layout/disklayout.conf becomes the host's layout (match hints).

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { authorize } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { parseDiskLayout } from '../../core/disklayout.ts';
import { NORMALIZE } from '../../core/store/facts.ts';
import type { Host, HostFields, VersionRecord } from '../../core/store/metadata.ts';
import { extractFile } from '../../adapters/tar/extract-file.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { audit, idParam, listParam } from './common.ts';

function reportedFacts(q: Record<string, unknown>): HostFields {
  const f: { -readonly [K in keyof HostFields]: HostFields[K] } = {};
  // Facts the machine cannot report well (virtual NICs' MACs, placeholder serials) are
  // dropped here rather than refusing the publish; what is kept is normalized.
  const keep = (kind: 'mac' | 'hostname' | 'uuid' | 'serial', vs: string[]): string[] =>
    vs.map((v) => NORMALIZE[kind](v)).filter((v): v is string => v !== null);
  if (q.mac !== undefined) f.macs = [...new Set(keep('mac', listParam(q.mac)))];
  if (q.hostname !== undefined) f.hostnames = keep('hostname', listParam(q.hostname)).slice(0, 1);
  if (q.uuid !== undefined) f.uuid = keep('uuid', listParam(q.uuid))[0] ?? null;
  if (q.serial !== undefined) f.serial = keep('serial', listParam(q.serial))[0] ?? null;
  return f;
}

export const DISKLAYOUT = 'var/lib/rear/layout/disklayout.conf';
/** Larger than any real disklayout.conf (a few KiB): a bigger file is not read. */
const DISKLAYOUT_MAX = 1 << 20;

/**
 * Keeps the host's disks as its new version describes them, for match hints (core/match.ts) that
 * must not read bundles. The host's own bundle only (layers carry no host layout); a bundle
 * without the file gives no disks. Advice only: a failure is logged, the publish stands.
 */
async function keepLayout(ctx: ServerContext, req: FastifyRequest, rec: Pick<VersionRecord, 'host' | 'version' | 'blob' | 'size'>): Promise<void> {
  try {
    const text = await extractFile((await ctx.bundles.payload(rec.blob, rec.size)).chunks(), DISKLAYOUT, DISKLAYOUT_MAX);
    const layout = text === null ? { disks: [], skipped: [] } : parseDiskLayout(text.toString('utf8'));
    if (layout.skipped.length > 0) req.log.warn({ host: rec.host, version: rec.version, lines: layout.skipped }, `${DISKLAYOUT}: malformed disk lines skipped`);
    await ctx.meta.setHostLayout({ host: rec.host, version: rec.version, disks: layout.disks.map((d) => ({ device: d.device, size: d.size })) });
  } catch (err) {
    req.log.warn({ err, host: rec.host, version: rec.version }, `${DISKLAYOUT}: not kept`);
  }
}

export function publishRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post<{ Params: { id: string }; Querystring: Record<string, unknown> }>('/api/v1/hosts/:id/versions', async (req, reply) => {
    const id = idParam(req.params.id);
    let tokenId: string | null = null;
    try {
      const token = await authenticate(req, ctx);
      tokenId = token.id;
      const host = await ctx.meta.getHost(id);
      authorize(token, 'publish', host, id);
      const facts = reportedFacts(req.query);
      const announced = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
      if (!host && token.scope !== 'admin') throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(id)}`, { host: id });
      const create = async (): Promise<Host> => {
        // Two first publishes at once: the second finds the host the first created.
        const h = await ctx.meta.addHost({ id }).catch(async (e: unknown) => {
          const existing = e instanceof RuError && e.code === 'STORE_CONFLICT' ? await ctx.meta.getHost(id) : null;
          if (!existing) throw e;
          return existing;
        });
        await audit(ctx, req, { kind: 'host', token: token.id, host: id, result: 'ok', detail: 'created by publish' });
        return h;
      };
      const r = await ctx.bundles.publish(host ?? { id, class: null, create }, req.raw as Readable, { announced, publisher: token.id });
      ctx.cache.served.delete(id);
      if (r.created) await keepLayout(ctx, req, r.version);
      // The version stands; facts that clash with another host's are reported, not forced.
      const warnings: string[] = [];
      if (Object.keys(facts).length > 0) {
        await ctx.meta.updateHost(id, facts).catch(async (e: unknown) => {
          if (!(e instanceof RuError) || (e.code !== 'STORE_CONFLICT' && e.code !== 'STORE_INVALID')) throw e;
          warnings.push(`the machine's facts were not recorded: ${e.message}`);
          await audit(ctx, req, { kind: 'host', token: token.id, host: id, result: e.code, detail: e.message.slice(0, 500) });
        });
      }
      ctx.metrics.publishes.inc({ result: r.created ? 'created' : 'unchanged' });
      await audit(ctx, req, { kind: 'publish', token: token.id, host: id, version: r.version.version, bytes: r.version.size, result: 'ok', detail: r.created ? 'new version' : 'unchanged' });
      const { manifest: _m, ...summary } = r.version;
      return reply.code(r.created ? 201 : 200).send({ created: r.created, version: summary, warnings });
    } catch (e) {
      const code = e instanceof RuError ? e.code : 'INTERNAL';
      ctx.metrics.publishes.inc({ result: code });
      await audit(ctx, req, { kind: 'publish', token: tokenId, host: id, result: code, detail: e instanceof Error ? e.message.slice(0, 500) : null });
      // The rest of a refused upload is not read: close the connection instead of draining it.
      if (!req.raw.complete) reply.header('connection', 'close');
      throw e;
    }
  });
}
