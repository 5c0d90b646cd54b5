// What a rescue system asks for: resolve my facts to a host, give me its bundle. The bundle
// comes sealed for this request (served time in the signed manifest). Its ETag names that
// time, so a download resumed with If-Range gets the very same bytes again; a Range without
// a matching If-Range is answered with the whole bundle (RFC 9110 allows ignoring Range),
// because two sealings differ and must never be spliced. A request that sends a nonce
// (X-Rear-Update-Nonce, or ?nonce=) gets it signed into the manifest, and the ETag names it
// too: a resume with the same nonce gets the same bytes, another nonce a whole fresh bundle.
// A request carrying X-Rear-Update-Recovery (routes/recoveries.ts) is also a report on that
// recovery: resolve records pending and resolved, a bundle download a sign of life.

import type { OutgoingHttpHeaders } from 'node:http';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import parseRange from 'range-parser';
import { authorize, mayFetch } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { isNonce, NONCE_HEADER, NONCE_QUERY } from '../../core/freshness.ts';
import { STATEMENTS_HEADER } from '../../core/key-statements.ts';
import { normalizeMac } from '../../core/store/facts.ts';
import type { Host, TokenRecord, VersionRecord } from '../../core/store/metadata.ts';
import { resolveHost } from '../../core/store/resolve.ts';
import { SEAL_FORMAT, sealedBytes } from '../../adapters/tar/served-bundle.ts';
import type { Composition } from '../bundles.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { spendDownload } from '../token-use.ts';
import { audit, hostOr404, idParam, intParam, listParam } from './common.ts';
import { linkedRecovery, quietly, recoveryIdOf } from './recoveries.ts';

/** How long a sealed copy can be asked for again by If-Range. */
const RESUME_WINDOW_S = 24 * 3600;

/**
 * Names everything a sealing depends on besides the stored version: the serving time, the
 * key, the host's class (named in the manifest), the request's nonce (a digest of it, `-n…`,
 * only when one was sent) and how seal() lays out bytes, so a resumed download gets the same
 * bytes or, if any of them changed, the whole new bundle.
 */
const etagOf = (ctx: ServerContext, host: Host, version: number, served: number, nonce: string | null, comp: Composition): string =>
  `"ru-${SEAL_FORMAT}-${host.id}-${version}-${served}-${ctx.key.publicKey.fingerprint.slice(8, 16)}-${createHash('sha256').update(host.class ?? '').digest('hex').slice(0, 6)}${comp.key === '' ? '' : `-c${comp.key}`}${nonce === null ? '' : `-n${createHash('sha256').update(nonce).digest('hex').slice(0, 16)}`}"`;

/** The served time of a previous sealing the client wants to resume, if its If-Range names one. */
function resumedTime(ctx: ServerContext, req: FastifyRequest, host: Host, version: number, now: number, nonce: string | null, comp: Composition): number | null {
  const ir = req.headers['if-range'];
  if (typeof ir !== 'string' || req.headers.range === undefined) return null;
  const m = /-(\d+)-[0-9a-f]{8}-[0-9a-f]{6}(?:-c[0-9a-f]{12})?(?:-n[0-9a-f]{16})?"$/.exec(ir.trim());
  if (!m) return null;
  const t = Number(m[1]);
  if (etagOf(ctx, host, version, t, nonce, comp) !== ir.trim() || t > now || now - t > RESUME_WINDOW_S) return null;
  return t;
}

/** The nonce the request sent (header or `?nonce=`; both only if equal), or null. */
function nonceOf(req: FastifyRequest): string | null {
  const given = [req.headers[NONCE_HEADER], (req.query as Record<string, unknown> | undefined)?.[NONCE_QUERY]].filter((v) => v !== undefined);
  if (given.length === 0) return null;
  if (!given.every(isNonce)) throw new RuError('REQUEST_INVALID', 'the nonce must be given once, as 16 to 64 base64url characters (A-Z a-z 0-9 _ -)', { param: 'nonce' });
  if (given.length > 1 && given[0] !== given[1]) throw new RuError('REQUEST_INVALID', `the ${NONCE_HEADER} header and ?${NONCE_QUERY}= differ`, { param: 'nonce' });
  return given[0] as string;
}

export async function sendBundle(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, host: Host, rec: VersionRecord, token: TokenRecord, protocol: 'api' | 'rear'): Promise<FastifyReply> {
  const now = Math.floor(ctx.now().getTime() / 1000);
  const nonce = nonceOf(req);
  // The class's layers as they are now: a new layer version is a new composition, new bytes, a new ETag.
  const comp = await ctx.bundles.composition(host);
  const resumed = resumedTime(ctx, req, host, rec.version, now, nonce, comp);
  const served = resumed ?? now;
  const sealed = await ctx.bundles.sealed(host, rec, new Date(served * 1000), nonce, comp);
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
  // A --uses token spends one use per download, before any byte goes out; a resume is free.
  // Other tokens cost nothing here (the download path is the server's hot path).
  if (token.uses !== null) await spendDownload(ctx, req, token, etagOf(ctx, host, rec.version, served, nonce, comp), resumed !== null);
  // HEAD (which Fastify answers with this handler) sends no body: neither a fetch nor bytes.
  if (req.method !== 'HEAD') recordFetch(ctx, req, reply, token, host, rec, protocol, start, bytes);
  reply
    .header('etag', etagOf(ctx, host, rec.version, served, nonce, comp))
    .header('accept-ranges', 'bytes')
    .header('cache-control', 'no-store')
    .header('content-length', bytes)
    .header('x-rear-update-version', rec.version)
    .header('content-disposition', `attachment; filename="${host.id}-${rec.version}.tar.gz"`)
    .type('application/gzip');
  // The key statements (key-ring.ts) travel with the bundle: a client that trusts an older key follows the rotation.
  if (ctx.keys.header !== null) reply.header(STATEMENTS_HEADER, ctx.keys.header);
  if (sealed.payload.buffers && req.method !== 'HEAD') {
    // A payload kept in memory goes out as it is, without a copy and without a stream per
    // request: written to the connection in one go (Node corks the writes of one tick into a
    // single writev). The per-request stream cost ~8 % of the serving core under load. No
    // onSend hook exists to skip; onResponse hooks still run (Fastify: reply.hijack()).
    const parts = slices([sealed.head, ...sealed.payload.buffers], start, end);
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
    // A refused token whose secret matched (revoked, expired, used up) is named: someone holds it.
    const named = e instanceof RuError && typeof e.context.token === 'string' ? e.context.token : null;
    await audit(ctx, req, { kind: 'fetch', token: token()?.id ?? named, host: hostId, result: code });
    throw e;
  }
}

/** Phases in which a named host is news for the timeline (after them it is a sign of life). */
/** The longest a resolve request is held for a pending machine (?wait): below the usual proxies' 30 s timeouts. */
export const MAX_RESOLVE_WAIT_S = 25;

const BEFORE_FETCH = new Set(['resolving', 'pending', 'assigned']);

/**
 * A bundle download linked to a recovery: `resolved` (by id) when it names a host the recovery
 * did not have yet (apply with an explicit id asks no resolve), else a sign of life.
 */
async function bundleReport(ctx: ServerContext, req: FastifyRequest, token: string, host: string): Promise<void> {
  await quietly(req, 'bundle', async () => {
    const r = await linkedRecovery(ctx, req, token);
    if (!r) return;
    if (r.host !== host && (r.host === null || BEFORE_FETCH.has(r.phase))) {
      await ctx.recoveries.record(r.id, { kind: 'resolved', actor: token, host, message: `resolved to ${host} by id (bundle request)`, detail: { host, by: 'id' } });
    } else {
      await ctx.recoveries.sign(r.id);
    }
  });
}

/** `/rear/{host-or-mac}` as ReaR's RECOVERY_UPDATE_URL names it; `.rear_config` is optional. */
const REAR_FILE = /^(.+?)(?:\.rear_config)?\.(?:tar\.gz|tgz)$/;

export function fetchRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get<{ Params: { id: string }; Querystring: { version?: string } }>('/api/v1/hosts/:id/bundle', async (req, reply) => {
    const id = idParam(req.params.id);
    let token: TokenRecord | null = null;
    return audited(ctx, req, id, () => token, async () => {
      token = await authenticate(req, ctx, { cached: true, allowSpent: true });
      const version = intParam(req.query.version, 'version');
      const served = version === null ? await servedOf(ctx, id) : null;
      const host = served?.host ?? (await ctx.meta.getHost(id));
      // Scope first: a token for another host learns nothing, not even whether this one exists.
      authorize(token, 'fetch', host, id);
      if (!host) throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(id)}`, { host: id });
      // Beside the download, never in its way: not awaited, and nothing at all without the header.
      if (recoveryIdOf(req) !== null) void bundleReport(ctx, req, token.id, host.id);
      return sendBundle(ctx, req, reply, host, served?.rec ?? (await ctx.bundles.record(host, version)), token, 'api');
    });
  });

  const rearFile = async (req: FastifyRequest<{ Params: { file: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
    const m = REAR_FILE.exec(req.params.file);
    if (!m) throw new RuError('ROUTE_UNKNOWN', `${req.params.file}: expected /rear/HOST.tar.gz (or .tgz, .rear_config.tar.gz, .rear_config.tgz) or /rear/MAC.tar.gz`);
    const name = m[1]!;
    let token: TokenRecord | null = null;
    return audited(ctx, req, name, () => token, async () => {
      token = await authenticate(req, ctx, { cached: true, allowSpent: true });
      const mac = normalizeMac(name);
      let host: Host | null;
      // By host id: the same one-second memo as the JSON route (ReaR's URL is the fleet's hot path too).
      let served: { host: Host; rec: VersionRecord } | null = null;
      if (mac) {
        const found = await ctx.meta.findHosts('mac', mac);
        if (found.length > 1) throw new RuError('HOST_UNKNOWN', `MAC ${mac} belongs to more than one host`, { mac });
        host = found[0] ?? null;
      } else {
        served = await servedOf(ctx, idParam(name));
        host = served?.host ?? (await ctx.meta.getHost(idParam(name)));
      }
      authorize(token, 'fetch', host, host?.id ?? name);
      if (!host) throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(name)}`, { host: name });
      return sendBundle(ctx, req, reply, host, served?.rec ?? (await ctx.bundles.record(host, null)), token, 'rear');
    });
  };
  app.get<{ Params: { file: string } }>('/rear/:file', rearFile);
  // The same at the top level, so `rear-update apply https://server/e229.tar.gz` works as typed.
  app.get<{ Params: { file: string } }>('/:file', rearFile);

  app.get<{ Querystring: Record<string, string | string[] | undefined> }>('/api/v1/resolve', async (req, reply) => {
    const token = await authenticate(req, ctx);
    authorize(token, 'fetch', null);
    // ?wait=N: a pending machine's request is held until an admin assigns it (through any
    // instance) or N seconds pass, so it hears of the assignment at once instead of at its next poll.
    const waitS = intParam(req.query.wait === '0' ? undefined : req.query.wait, 'wait') ?? 0;
    if (waitS > MAX_RESOLVE_WAIT_S) throw new RuError('REQUEST_INVALID', `wait must be at most ${MAX_RESOLVE_WAIT_S} seconds`, { param: 'wait' });
    const linked = await linkedRecovery(ctx, req, token.id);
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
      // Bounded per token, per address and in all (429 PENDING_LIMIT); a known machine is never refused.
      let p = await ctx.meta.recordPending(facts, req.ip, { token: token.id, limits: ctx.pendingLimits });
      pendingId = p.id;
      let waited = 0;
      if (!p.assignedHost) {
        ctx.metrics.pending.set((await ctx.meta.listPending({ unassigned: true })).length);
        await audit(ctx, req, { kind: 'resolve', token: token.id, result: 'PENDING', detail: `pending ${p.id}${r.host === null && r.ambiguous.length ? `; ambiguous: ${r.ambiguous.join(', ')}` : ''}` });
        ctx.recoveries.notifyPending(p);
        // A waiting machine asks again and again: its timeline says "pending" once per pending id.
        const waiting = p.id;
        if (linked) {
          await quietly(req, 'pending', () => (linked.pending === waiting
            ? ctx.recoveries.sign(linked.id)
            : ctx.recoveries.record(linked.id, { kind: 'pending', actor: token.id, pending: waiting, message: `waiting as pending machine ${waiting}`, detail: { pending: waiting } })));
        }
        if (waitS > 0) {
          const gone = new AbortController();
          const onClose = (): void => gone.abort();
          reply.raw.once('close', onClose);
          const started = Date.now();
          try {
            if (await ctx.recoveries.waitAssigned(p.id, waitS * 1000, gone.signal)) p = (await ctx.meta.getPending(p.id)) ?? p;
          } finally {
            reply.raw.off('close', onClose);
          }
          waited = Math.round((Date.now() - started) / 1000);
        }
      }
      if (p.assignedHost) {
        host = await hostOr404(ctx, p.assignedHost);
        by = 'assignment';
        value = null;
      } else {
        return reply.code(202).send({
          status: 'pending',
          pending: p,
          // How long this request was held (?wait): the client asks again at once, without a pause of its own.
          waited,
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
    if (linked) {
      const h = host;
      await quietly(req, 'resolved', () => (linked.host === h.id && !BEFORE_FETCH.has(linked.phase)
        ? ctx.recoveries.sign(linked.id)
        : ctx.recoveries.record(linked.id, { kind: 'resolved', actor: token.id, host: h.id, message: `resolved to ${h.id} ${detail}`, detail: { host: h.id, by, ...(value !== null ? { value } : {}), ...(pendingId !== null ? { pending: pendingId } : {}) } })));
    }
    return { status: 'resolved', host: host.id, class: host.class, by, value, pending: pendingId, version: rec?.version ?? null };
  });
}
