// What a rescue system asks for: resolve my facts to a host, give me its bundle. The bundle
// comes sealed for this request (served time in the signed manifest). Its ETag names that
// time, so a download resumed with If-Range gets the very same bytes again; a Range without
// a matching If-Range is answered with the whole bundle (RFC 9110 allows ignoring Range),
// because two sealings differ and must never be spliced.

import type { OutgoingHttpHeaders } from 'node:http';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import parseRange from 'range-parser';
import { authorize, mayFetch } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { normalizeMac } from '../../core/store/facts.ts';
import type { Host, TokenRecord, TokenStore, VersionRecord } from '../../core/store/metadata.ts';
import { resolveHost } from '../../core/store/resolve.ts';
import { SEAL_FORMAT, sealedBytes } from '../../adapters/tar/served-bundle.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { audit, hostOr404, idParam, intParam, listParam } from './common.ts';

/** How long a sealed copy can be asked for again by If-Range. */
const RESUME_WINDOW_S = 24 * 3600;

/**
 * Names everything a sealing depends on besides the stored version: the serving time, the
 * key, the host's class (named in the manifest) and how seal() lays out bytes, so a resumed
 * download gets the same bytes or, if any of them changed, the whole new bundle.
 */
const etagOf = (ctx: ServerContext, host: Host, version: number, served: number): string =>
  `"ru-${SEAL_FORMAT}-${host.id}-${version}-${served}-${ctx.key.publicKey.fingerprint.slice(8, 16)}-${createHash('sha256').update(host.class ?? '').digest('hex').slice(0, 6)}"`;

/** The served time of a previous sealing the client wants to resume, if its If-Range names one. */
function resumedTime(ctx: ServerContext, req: FastifyRequest, host: Host, version: number, now: number): number | null {
  const ir = req.headers['if-range'];
  if (typeof ir !== 'string' || req.headers.range === undefined) return null;
  const m = /-(\d+)-[0-9a-f]{8}-[0-9a-f]{6}"$/.exec(ir.trim());
  if (!m) return null;
  const t = Number(m[1]);
  if (etagOf(ctx, host, version, t) !== ir.trim() || t > now || now - t > RESUME_WINDOW_S) return null;
  return t;
}

export async function sendBundle(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, host: Host, rec: VersionRecord, token: TokenRecord, protocol: 'api' | 'rear'): Promise<FastifyReply> {
  const now = Math.floor(ctx.now().getTime() / 1000);
  const resumed = resumedTime(ctx, req, host, rec.version, now);
  const served = resumed ?? now;
  const sealed = await ctx.bundles.sealed(host, rec, new Date(served * 1000));
  let start = 0;
  let end = sealed.size - 1;
  if (resumed !== null) {
    const r = parseRange(sealed.size, String(req.headers.range), { combine: true });
    if (r === -1) {
      reply.header('content-range', `bytes */${sealed.size}`);
      return reply.code(416).send({ error: { code: 'REQUEST_INVALID', message: 'range not satisfiable', context: {} } });
    }
    if (Array.isArray(r) && r.type === 'bytes' && r.length === 1) {
      start = r[0]!.start;
      end = r[0]!.end;
      reply.code(206).header('content-range', `bytes ${start}-${end}/${sealed.size}`);
    }
  }
  const bytes = end - start + 1;
  // HEAD (which Fastify answers with this handler) sends no body: neither a fetch nor bytes.
  if (req.method !== 'HEAD') recordFetch(ctx, req, reply, token, host, rec, protocol, start, bytes);
  reply
    .header('etag', etagOf(ctx, host, rec.version, served))
    .header('accept-ranges', 'bytes')
    .header('cache-control', 'no-store')
    .header('content-length', bytes)
    .header('x-rear-update-version', rec.version)
    .header('content-disposition', `attachment; filename="${host.id}-${rec.version}.tar.gz"`)
    .type('application/gzip');
  if (sealed.payload.buffer && req.method !== 'HEAD') {
    // A payload kept in memory goes out as it is, without a copy and without a stream per
    // request: written to the connection in one go (Node corks the writes of one tick into a
    // single writev). The per-request stream cost ~8 % of the serving core under load. No
    // onSend hook exists to skip; onResponse hooks still run (Fastify: reply.hijack()).
    const parts = slices([sealed.head, sealed.payload.buffer], start, end);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(reply.statusCode, reply.getHeaders() as OutgoingHttpHeaders);
    for (let i = 0; i < parts.length - 1; i++) res.write(parts[i]);
    res.end(parts[parts.length - 1]);
    return reply;
  }
  // A large payload streams from the blob store.
  return reply.send(Readable.from(sealedBytes(sealed, start, end), { objectMode: false }));
}

/** Bytes [start, end] of the concatenation of `parts`, as slices of them. */
function slices(parts: readonly Buffer[], start: number, end: number): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  for (const p of parts) {
    const from = Math.max(start - pos, 0);
    const to = Math.min(end + 1 - pos, p.length);
    if (from < to) out.push(p.subarray(from, to));
    pos += p.length;
  }
  return out;
}

function recordFetch(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, token: TokenRecord, host: Host, rec: VersionRecord, protocol: 'api' | 'rear', start: number, bytes: number): void {
  reply.raw.once('finish', () => {
    ctx.metrics.bundleBytes.inc({ protocol }, bytes);
    void audit(ctx, req, { kind: 'fetch', token: token.id, host: host.id, version: rec.version, bytes, result: 'ok', detail: `${protocol}${start > 0 ? ` resumed at ${start}` : ''}` });
  });
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) void audit(ctx, req, { kind: 'fetch', token: token.id, host: host.id, version: rec.version, bytes, result: 'ABORTED', detail: `${protocol}: connection closed before the end` });
  });
}

/** Token lookups of the download path, through the short-lived memo (cache.ts). */
const cachedTokens = (ctx: ServerContext): Pick<TokenStore, 'getToken'> => ({
  getToken: (id) => ctx.cache.tokens.get(id, () => ctx.meta.getToken(id)),
});

/** A host and its served version (null: no such host, or nothing published), memoized. */
async function servedOf(ctx: ServerContext, id: string): Promise<{ host: Host; rec: VersionRecord } | null> {
  return ctx.cache.served.get(id, async () => {
    const host = await ctx.meta.getHost(id);
    // servedVersion(id) would read the host once more (three queries): its pin is known here.
    const rec = !host ? null : host.pinned !== null ? await ctx.meta.getVersion(id, host.pinned) : await ctx.meta.latestVersion(id);
    return host && rec ? { host, rec } : null;
  });
}

/** A refusal on a fetch route is audited with its code, then answered as usual. */
async function audited<T>(ctx: ServerContext, req: FastifyRequest, hostId: string | null, token: () => TokenRecord | null, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    const code = e instanceof RuError ? e.code : 'INTERNAL';
    await audit(ctx, req, { kind: 'fetch', token: token()?.id ?? null, host: hostId, result: code });
    throw e;
  }
}

/** `/rear/{host-or-mac}` as ReaR's RECOVERY_UPDATE_URL names it; `.rear_config` is optional. */
const REAR_FILE = /^(.+?)(?:\.rear_config)?\.(?:tar\.gz|tgz)$/;

export function fetchRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get<{ Params: { id: string }; Querystring: { version?: string } }>('/api/v1/hosts/:id/bundle', async (req, reply) => {
    const id = idParam(req.params.id);
    let token: TokenRecord | null = null;
    return audited(ctx, req, id, () => token, async () => {
      token = await authenticate(req, cachedTokens(ctx));
      const version = intParam(req.query.version, 'version');
      const served = version === null ? await servedOf(ctx, id) : null;
      const host = served?.host ?? (await ctx.meta.getHost(id));
      // Scope first: a token for another host learns nothing, not even whether this one exists.
      authorize(token, 'fetch', host, id);
      if (!host) throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(id)}`, { host: id });
      return sendBundle(ctx, req, reply, host, served?.rec ?? (await ctx.bundles.record(host, version)), token, 'api');
    });
  });

  const rearFile = async (req: FastifyRequest<{ Params: { file: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const m = REAR_FILE.exec(req.params.file);
    if (!m) throw new RuError('ROUTE_UNKNOWN', `${req.params.file}: expected /rear/HOST.tar.gz (or .tgz, .rear_config.tar.gz, .rear_config.tgz) or /rear/MAC.tar.gz`);
    const name = m[1]!;
    let token: TokenRecord | null = null;
    return audited(ctx, req, name, () => token, async () => {
      token = await authenticate(req, cachedTokens(ctx));
      const mac = normalizeMac(name);
      let host: Host | null;
      if (mac) {
        const found = await ctx.meta.findHosts('mac', mac);
        if (found.length > 1) throw new RuError('HOST_UNKNOWN', `MAC ${mac} belongs to more than one host`, { mac });
        host = found[0] ?? null;
      } else {
        host = await ctx.meta.getHost(idParam(name));
      }
      authorize(token, 'fetch', host, host?.id ?? name);
      if (!host) throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(name)}`, { host: name });
      return sendBundle(ctx, req, reply, host, await ctx.bundles.record(host, null), token, 'rear');
    });
  };
  app.get<{ Params: { file: string } }>('/rear/:file', rearFile);
  // The same at the top level, so `rear-update apply https://server/e229.tar.gz` works as typed.
  app.get<{ Params: { file: string } }>('/:file', rearFile);

  app.get<{ Querystring: Record<string, string | string[] | undefined> }>('/api/v1/resolve', async (req, reply) => {
    const token = await authenticate(req, ctx.meta);
    authorize(token, 'fetch', null);
    const q = req.query;
    const one = (k: string): string | null => listParam(q[k])[0] ?? null;
    const facts = { macs: listParam(q.mac), uuid: one('uuid'), serial: one('serial'), hostname: one('hostname') };
    const r = await resolveHost(ctx.meta, facts);
    let host: Host | null = r.host;
    // The fact and value that resolved the machine: an admin must see a hostname-only match
    // (the weakest fact; a rescue image carries its template's hostname) for what it is.
    let by: string = r.host ? r.by : '';
    let value: string | null = r.host ? r.value : null;
    let pendingId: number | null = null;
    if (!host) {
      const p = await ctx.meta.recordPending(facts, req.ip);
      pendingId = p.id;
      if (p.assignedHost) {
        host = await hostOr404(ctx, p.assignedHost);
        by = 'assignment';
        value = null;
      } else {
        ctx.metrics.pending.set((await ctx.meta.listPending({ unassigned: true })).length);
        await audit(ctx, req, { kind: 'resolve', token: token.id, result: 'PENDING', detail: `pending ${p.id}${r.host === null && r.ambiguous.length ? `; ambiguous: ${r.ambiguous.join(', ')}` : ''}` });
        return reply.code(202).send({
          status: 'pending',
          pending: p,
          ambiguous: r.host === null ? r.ambiguous : [],
          message: `this machine is not known to the server; it is recorded as pending machine ${p.id}. An admin assigns it with: rear-update admin assign ${p.id} HOST`,
        });
      }
    }
    const detail = by === 'assignment' ? `by assignment of pending machine ${pendingId}` : `by ${by} ${value}`;
    if (!mayFetch(token, host)) {
      await audit(ctx, req, { kind: 'resolve', token: token.id, host: host.id, result: 'FORBIDDEN', detail });
      throw new RuError('FORBIDDEN', `this machine resolves to a host the token ${token.id} may not fetch`, { token: token.id });
    }
    const rec = await ctx.meta.servedVersion(host.id);
    await audit(ctx, req, { kind: 'resolve', token: token.id, host: host.id, version: rec?.version ?? null, result: 'ok', detail });
    return { status: 'resolved', host: host.id, class: host.class, by, value, pending: pendingId, version: rec?.version ?? null };
  });
}
