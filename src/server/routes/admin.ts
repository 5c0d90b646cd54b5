// The admin JSON API under /api/v1: hosts, tokens, pending machines and their assignment,
// versions (list, show, diff, pin), the audit log, and recovery logs. Reading needs 'view'
// (admin, view and operate tokens); assigning and forgetting pending machines 'operate' (they
// go through the RecoveryService, as the console's do); every other change 'admin'. A log may
// also be read by a token that may fetch its host. Every change is audited, refused ones with
// their code. docs/server.md is the reference.

import { Readable } from 'node:stream';
import { createTwoFilesPatch } from 'diff';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authorize, generateToken, usesLeft } from '../../core/access.ts';
import { diffManifests, isText, textDiffCandidates, TEXT_DIFF_MAX_BYTES } from '../../core/diff.ts';
import { DURATION_EXAMPLES, parseDuration } from '../../core/duration.ts';
import { RuError } from '../../core/errors.ts';
import { isLayerClass, type Manifest } from '../../core/manifest.ts';
import { isValidId, NORMALIZE, normalizeMac, type FactKind } from '../../core/store/facts.ts';
import { MAX_TOKEN_USES } from '../../core/store/validate.ts';
import { AUDIT_KINDS, type AuditKind, type AuditQuery, type Host, type HostFields, type TokenRecord, type TokenScope, type VersionRecord } from '../../core/store/metadata.ts';
import { extractFile } from '../../adapters/tar/extract-file.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { logStream } from '../limits.ts';
import { audit, hostOr404, idParam, intParam } from './common.ts';

/** At most this many text diffs per answer; further changed files are listed as skipped. */
const MAX_TEXT_DIFFS = 50;
/** A text diff that takes longer (pathological input) is skipped rather than hanging the request. */
const TEXT_DIFF_TIMEOUT_MS = 2000;

const invalid = (message: string, param: string): RuError => new RuError('REQUEST_INVALID', message, { param });

/**
 * What changed between two manifests, with unified diffs of changed text files: the answer of
 * a host's diff and of a layer's. `fileA`/`fileB` read one file of each side (null: absent).
 */
/**
 * A host's two versions compared, as the JSON API and the console show it: composed, each under
 * the class's current layers, so that a path a layer provides is not reported as added or
 * removed; with `own`, the host's own bundles alone.
 */
export async function hostDiff(ctx: Pick<ServerContext, 'bundles'>, host: Host, ra: VersionRecord, rb: VersionRecord, own: boolean): ReturnType<typeof diffAnswer> {
  const c = own ? { layers: [], key: '' } : await ctx.bundles.composition(host);
  const [ma, mb] = await Promise.all([ctx.bundles.composedManifest(host, ra, c), ctx.bundles.composedManifest(host, rb, c)]);
  const fileOf = async (rec: VersionRecord, path: string): Promise<Buffer | null> =>
    own ? extractFile((await ctx.bundles.payload(rec.blob, rec.size)).chunks(), path, TEXT_DIFF_MAX_BYTES) : ctx.bundles.composedFile(host, rec, path, TEXT_DIFF_MAX_BYTES);
  return diffAnswer(ma, mb, ra.version, rb.version, (p) => fileOf(ra, p), (p) => fileOf(rb, p));
}

export async function diffAnswer(ma: Manifest, mb: Manifest, va: number, vb: number, fileA: (path: string) => Promise<Buffer | null>, fileB: (path: string) => Promise<Buffer | null>): Promise<ReturnType<typeof diffManifests> & { texts: { path: string; patch: string }[]; skipped: { path: string; reason: string }[] }> {
  const d = diffManifests(ma, mb);
  const texts: { path: string; patch: string }[] = [];
  const skipped: { path: string; reason: string }[] = [];
  const tooBig = (e: unknown): null => {
    if (e instanceof RuError && e.code === 'LIMIT_BYTES') return null;
    throw e;
  };
  for (const c of textDiffCandidates(ma, mb, d)) {
    if (c.skip !== null) skipped.push({ path: c.path, reason: c.skip });
    else if (texts.length >= MAX_TEXT_DIFFS) skipped.push({ path: c.path, reason: `more than ${MAX_TEXT_DIFFS} text diffs` });
    else {
      const [a, b] = await Promise.all([fileA(c.path).catch(tooBig), fileB(c.path).catch(tooBig)]);
      if (a === null || b === null) skipped.push({ path: c.path, reason: 'not found in the stored bundle' });
      else if (!isText(a) || !isText(b)) skipped.push({ path: c.path, reason: 'not text (NUL bytes or not UTF-8)' });
      else {
        const patch = createTwoFilesPatch(`a/${c.path}`, `b/${c.path}`, a.toString('utf8'), b.toString('utf8'), `version ${va}`, `version ${vb}`, { context: 3, timeout: TEXT_DIFF_TIMEOUT_MS });
        if (patch === undefined) skipped.push({ path: c.path, reason: 'too different to diff quickly' });
        else texts.push({ path: c.path, patch });
      }
    }
  }
  return { ...d, texts, skipped };
}

/** A JSON body that is an object with only the keys named. */
function bodyObject(v: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid('the body must be a JSON object (Content-Type: application/json)', 'body');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw invalid(`unknown field ${JSON.stringify(k)} (known: ${allowed.join(', ')})`, k);
  }
  return o;
}

/** A fact an admin gives: refused (not dropped) when malformed or a firmware placeholder. */
function fact(kind: FactKind, v: unknown, param: string): string {
  const n = typeof v === 'string' ? NORMALIZE[kind](v) : null;
  if (n === null) throw invalid(`${param} ${JSON.stringify(v)} is not a valid ${kind} (or is a firmware placeholder)`, param);
  return n;
}

function factList(kind: FactKind, v: unknown, param: string): string[] {
  const xs = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(xs)) throw invalid(`${param} must be a list of strings`, param);
  return [...new Set(xs.map((x) => fact(kind, x, param)))].sort();
}

/** The host fields present in a body; null clears class, uuid and serial. */
function hostFields(o: Record<string, unknown>): HostFields {
  const f: { -readonly [K in keyof HostFields]: HostFields[K] } = {};
  if (o.class !== undefined) f.class = o.class === null ? null : idParam(o.class, 'class');
  if (o.hostnames !== undefined) f.hostnames = factList('hostname', o.hostnames, 'hostnames');
  if (o.macs !== undefined) f.macs = factList('mac', o.macs, 'macs');
  if (o.uuid !== undefined) f.uuid = o.uuid === null ? null : fact('uuid', o.uuid, 'uuid');
  if (o.serial !== undefined) f.serial = o.serial === null ? null : fact('serial', o.serial, 'serial');
  return f;
}

const HOST_FIELDS = ['class', 'hostnames', 'macs', 'uuid', 'serial'] as const;

/** A positive version number from JSON (number or digits) or a path segment. */
function versionValue(v: unknown, param = 'version'): number {
  const n = typeof v === 'number' ? (Number.isSafeInteger(v) && v > 0 ? v : null) : intParam(v, param);
  if (n === null) throw invalid(`${param} must be a positive integer`, param);
  return n;
}

function flagParam(v: unknown, param: string): boolean {
  if (v === undefined || v === '' || v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true') return true;
  throw invalid(`${param} must be 1 or 0`, param);
}

function offsetParam(v: unknown): number {
  if (v === undefined || v === '') return 0;
  if (typeof v !== 'string' || !/^\d{1,15}$/.test(v)) throw invalid('offset must be a whole number of bytes', 'offset');
  return Number(v);
}

/** ISO 8601 times, normalized to the store's form (UTC with milliseconds) so they compare as text. */
function timeParam(v: unknown, param: string): string | undefined {
  if (v === undefined || v === '') return undefined;
  const t = typeof v === 'string' && /^\d{4}-\d\d-\d\d([T ][\d:.]+(Z|[+-]\d\d:?\d\d)?)?$/.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(t)) throw invalid(`${param} must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z`, param);
  return new Date(t).toISOString();
}

export function labelParam(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  // eslint-disable-next-line no-control-regex
  if (typeof v !== 'string' || v.length === 0 || v.length > 200 || /[\u0000-\u001f\u007f]/.test(v)) throw invalid('label must be text of 1 to 200 characters without control characters', 'label');
  return v;
}

export function scopeParam(v: unknown): TokenScope {
  if (v === 'admin' || v === 'view' || v === 'operate') return v;
  const m = typeof v === 'string' ? /^(publish|publish-class|fetch|fetch-class):(.*)$/.exec(v) : null;
  if (!m || !(m[1] === 'publish-class' ? isLayerClass(m[2]) : isValidId(m[2]!))) throw invalid(`scope ${JSON.stringify(v)} is not admin, view, operate, publish:HOST, publish-class:CLASS, fetch:HOST or fetch-class:CLASS`, 'scope');
  return v as TokenScope;
}

/** The longest expiry a token may be given: ten years. */
export const MAX_EXPIRY_S = 10 * 365 * 86_400;

/**
 * When a new token expires: `expires` (an ISO time) or `expiresIn` (seconds, or a duration
 * such as "30d"), counted from the server's clock, so an admin machine's clock does not matter.
 */
export function expiryParam(o: Record<string, unknown>, now: Date): string | null {
  if (o.expires !== undefined && o.expiresIn !== undefined) throw invalid('give expires (a time) or expiresIn (a duration), not both', 'expires');
  let at: number;
  if (o.expiresIn !== undefined) {
    const s = typeof o.expiresIn === 'number' ? (Number.isSafeInteger(o.expiresIn) ? o.expiresIn : null) : typeof o.expiresIn === 'string' ? parseDuration(o.expiresIn) : null;
    if (s === null || s < 1 || s > MAX_EXPIRY_S) throw invalid(`expiresIn must be a duration from 1 s to 10 years: seconds, or ${DURATION_EXAMPLES}`, 'expiresIn');
    at = now.getTime() + s * 1000;
  } else if (o.expires !== undefined && o.expires !== null) {
    at = Date.parse(timeParam(o.expires, 'expires') ?? '');
    if (Number.isNaN(at) || at <= now.getTime() || at > now.getTime() + MAX_EXPIRY_S * 1000) throw invalid('expires must be a time in the future, at most 10 years ahead', 'expires');
  } else {
    return null;
  }
  return new Date(at).toISOString();
}

export function usesParam(v: unknown, scope: TokenScope): number | null {
  if (v === undefined || v === null) return null;
  if (!scope.startsWith('fetch')) throw invalid('uses limits bundle downloads: only fetch:HOST and fetch-class:CLASS tokens take it', 'uses');
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > MAX_TOKEN_USES) throw invalid(`uses must be a whole number from 1 to ${MAX_TOKEN_USES}`, 'uses');
  return v;
}

/** What a token list shows: never the secret's hash; whether it expired (by the server's clock), the downloads left. */
export const publicToken = (t: TokenRecord, now: Date): Omit<TokenRecord, 'secretHash'> & { expired: boolean; usesLeft: number | null } => {
  const { secretHash: _h, ...rest } = t;
  return { ...rest, expired: t.expires !== null && now.toISOString() >= t.expires, usesLeft: usesLeft(t) };
};

/** Scopes that read everything an admin reads. */
const VIEWERS: ReadonlySet<string> = new Set(['admin', 'view', 'operate']);

const summary = (r: VersionRecord | null): Omit<VersionRecord, 'manifest'> | null => {
  if (!r) return null;
  const { manifest: _m, ...rest } = r;
  return rest;
};

export function adminRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const admin = async (req: FastifyRequest): Promise<TokenRecord> => {
    const token = await authenticate(req, ctx);
    authorize(token, 'admin', null);
    return token;
  };
  /** Reading what an admin reads: admin, view and operate tokens. */
  const viewer = async (req: FastifyRequest): Promise<TokenRecord> => {
    const token = await authenticate(req, ctx);
    authorize(token, 'view', null);
    return token;
  };
  const operator = async (req: FastifyRequest): Promise<TokenRecord> => {
    const token = await authenticate(req, ctx);
    authorize(token, 'operate', null);
    return token;
  };

  /** Runs a change and audits it: 'ok', or the code it was refused with. */
  const change = async <T>(req: FastifyRequest, token: TokenRecord, kind: AuditKind, host: string | null, detail: string, run: () => Promise<T>, version?: number): Promise<T> => {
    try {
      const r = await run();
      await audit(ctx, req, { kind, token: token.id, host, version: version ?? null, result: 'ok', detail });
      return r;
    } catch (e) {
      await audit(ctx, req, { kind, token: token.id, host, version: version ?? null, result: e instanceof RuError ? e.code : 'INTERNAL', detail });
      throw e;
    }
  };

  const updatePendingGauge = async (): Promise<void> => {
    ctx.metrics.pending.set((await ctx.meta.listPending({ unassigned: true })).length);
  };

  // ---- hosts ----

  app.post<{ Body: unknown }>('/api/v1/hosts', async (req, reply) => {
    const token = await admin(req);
    const o = bodyObject(req.body, ['id', ...HOST_FIELDS]);
    const id = idParam(o.id);
    const fields = hostFields(o);
    const host = await change(req, token, 'host', id, 'created', () => ctx.meta.addHost({ id, ...fields }));
    return reply.code(201).send({ host });
  });

  app.get<{ Querystring: { class?: string } }>('/api/v1/hosts', async (req) => {
    await viewer(req);
    const cls = req.query.class === undefined || req.query.class === '' ? undefined : idParam(req.query.class, 'class');
    return { hosts: await ctx.meta.listHosts(cls === undefined ? {} : { class: cls }) };
  });

  app.get<{ Params: { id: string } }>('/api/v1/hosts/:id', async (req) => {
    await viewer(req);
    const host = await hostOr404(ctx, idParam(req.params.id));
    const [versions, served, logs] = await Promise.all([ctx.meta.listVersions(host.id), ctx.meta.servedVersion(host.id), ctx.meta.listLogs(host.id)]);
    return {
      host,
      served: summary(served),
      latest: versions.at(-1) ?? null,
      versionCount: versions.length,
      recentVersions: versions.slice(-10).reverse(),
      recentLogs: logs.slice(0, 5),
    };
  });

  app.patch<{ Params: { id: string }; Body: unknown }>('/api/v1/hosts/:id', async (req) => {
    const token = await admin(req);
    const id = idParam(req.params.id);
    const fields = hostFields(bodyObject(req.body, HOST_FIELDS));
    if (Object.keys(fields).length === 0) throw invalid(`nothing to change: give one of ${HOST_FIELDS.join(', ')}`, 'body');
    const host = await change(req, token, 'host', id, `updated ${Object.keys(fields).join(', ')}`, () => ctx.meta.updateHost(id, fields));
    ctx.cache.served.delete(id);
    return { host };
  });

  // ---- tokens ----

  app.post<{ Body: unknown }>('/api/v1/tokens', async (req, reply) => {
    const token = await admin(req);
    const o = bodyObject(req.body, ['scope', 'label', 'expires', 'expiresIn', 'uses']);
    const scope = scopeParam(o.scope);
    const label = labelParam(o.label);
    const expires = expiryParam(o, ctx.now());
    const uses = usesParam(o.uses, scope);
    const limits = `${expires ? `, expires ${expires}` : ''}${uses !== null ? `, ${uses} use${uses === 1 ? '' : 's'}` : ''}`;
    const [kind, value] = scope === 'admin' ? ['admin', ''] : [scope.slice(0, scope.indexOf(':')), scope.slice(scope.indexOf(':') + 1)];
    const t = generateToken();
    const rec = await change(req, token, 'token', kind === 'publish' || kind === 'fetch' ? value : null, `created ${t.id} (${scope}${limits})`, async () => {
      // A class is only a label hosts carry, so a class token may come before its hosts; a host token may not.
      if (kind === 'publish' || kind === 'fetch') await hostOr404(ctx, value);
      return ctx.meta.createToken({ id: t.id, secretHash: t.secretHash, scope, label, expires, uses });
    });
    return reply.code(201).send({ ...publicToken(rec, ctx.now()), token: t.token });
  });

  app.get('/api/v1/tokens', async (req) => {
    await viewer(req);
    const now = ctx.now();
    return { tokens: (await ctx.meta.listTokens()).map((t) => publicToken(t, now)) };
  });

  app.delete<{ Params: { id: string } }>('/api/v1/tokens/:id', async (req) => {
    const token = await admin(req);
    const id = idParam(req.params.id, 'token id');
    const rec = await change(req, token, 'token', null, `revoked ${id}`, () => ctx.meta.revokeToken(id));
    ctx.cache.tokens.delete(id);
    return { token: publicToken(rec, ctx.now()) };
  });

  // ---- pending machines ----

  app.get<{ Querystring: { all?: string } }>('/api/v1/pending', async (req) => {
    await viewer(req);
    const all = flagParam(req.query.all, 'all');
    const pending = await ctx.meta.listPending(all ? {} : { unassigned: true });
    if (!all) ctx.metrics.pending.set(pending.length);
    return { pending };
  });

  app.post<{ Body: unknown }>('/api/v1/assign', async (req) => {
    const token = await operator(req);
    const o = bodyObject(req.body, ['pending', 'host']);
    const host = idParam(o.host);
    const p = o.pending;
    const byId = typeof p === 'number' || (typeof p === 'string' && /^\d+$/.test(p));
    const mac = !byId && typeof p === 'string' ? normalizeMac(p) : null;
    if (!byId && mac === null) throw invalid(`pending ${JSON.stringify(p)} is neither a pending machine id nor a MAC address`, 'pending');
    let id: number;
    if (byId) {
      id = versionValue(typeof p === 'number' ? p : String(p), 'pending');
    } else {
      // The newest machine still waiting with that MAC: the one booting now.
      const found = await ctx.meta.listPending({ mac: mac!, unassigned: true });
      if (!found[0]) {
        await audit(ctx, req, { kind: 'assign', token: token.id, host, result: 'PENDING_UNKNOWN', detail: `pending ${mac}` });
        throw new RuError('PENDING_UNKNOWN', `no unassigned pending machine has MAC ${mac}`, { mac });
      }
      id = found[0].id;
    }
    // The service audits, records `assigned` on the machine's recoveries and tells the console.
    const assigned = await ctx.recoveries.assign({ token: token.id, address: req.ip }, id, host);
    await updatePendingGauge();
    return { pending: assigned };
  });

  app.get<{ Params: { id: string } }>('/api/v1/pending/:id/hints', async (req) => {
    await viewer(req);
    const id = versionValue(req.params.id, 'pending id');
    const hints = await ctx.recoveries.hints(id);
    return { pending: await ctx.meta.getPending(id), hints };
  });

  app.delete<{ Params: { id: string } }>('/api/v1/pending/:id', async (req) => {
    const token = await operator(req);
    const id = versionValue(req.params.id, 'pending id');
    const pending = await ctx.recoveries.forget({ token: token.id, address: req.ip }, id);
    await updatePendingGauge();
    return { pending };
  });

  // ---- versions ----

  const versionOf = async (host: Host, v: string): Promise<VersionRecord> => {
    if (v === 'served' || v === 'latest') {
      const rec = v === 'served' ? await ctx.meta.servedVersion(host.id) : await ctx.meta.latestVersion(host.id);
      if (!rec) throw new RuError('NO_BUNDLE', `host ${host.id} has no published bundle yet`, { host: host.id });
      return rec;
    }
    return ctx.bundles.record(host, versionValue(v));
  };

  app.get<{ Params: { id: string } }>('/api/v1/hosts/:id/versions', async (req) => {
    await viewer(req);
    const host = await hostOr404(ctx, idParam(req.params.id));
    const [versions, served] = await Promise.all([ctx.meta.listVersions(host.id), ctx.meta.servedVersion(host.id)]);
    return { host: host.id, pinned: host.pinned, served: served?.version ?? null, versions };
  });

  app.get<{ Params: { id: string; v: string } }>('/api/v1/hosts/:id/versions/:v', async (req) => {
    await viewer(req);
    const host = await hostOr404(ctx, idParam(req.params.id));
    const rec = await versionOf(host, req.params.v);
    // What the host is served: this version under its class's layers as they are now (docs/layers.md).
    const c = await ctx.bundles.composition(host);
    const composed = c.layers.length > 0 ? await ctx.bundles.composedManifest(host, rec, c) : null;
    return { version: { ...rec, manifest: JSON.parse(rec.manifest) as unknown }, composed };
  });

  app.get<{ Params: { id: string }; Querystring: { from?: string; to?: string; own?: string } }>('/api/v1/hosts/:id/diff', async (req) => {
    await viewer(req);
    const host = await hostOr404(ctx, idParam(req.params.id));
    if (req.query.from === undefined || req.query.to === undefined) throw invalid('give both ?from=A&to=B (version numbers, or latest / served)', req.query.from === undefined ? 'from' : 'to');
    const [ra, rb] = await Promise.all([versionOf(host, req.query.from), versionOf(host, req.query.to)]);
    const d = await hostDiff(ctx, host, ra, rb, flagParam(req.query.own, 'own'));
    return { host: host.id, from: ra.version, to: rb.version, ...d };
  });

  app.put<{ Params: { id: string }; Body: unknown }>('/api/v1/hosts/:id/pin', async (req) => {
    const token = await admin(req);
    const id = idParam(req.params.id);
    const version = versionValue(bodyObject(req.body, ['version']).version);
    const host = await change(req, token, 'pin', id, `pinned ${version}`, () => ctx.meta.pin(id, version), version);
    ctx.cache.served.delete(id);
    return { host };
  });

  app.delete<{ Params: { id: string } }>('/api/v1/hosts/:id/pin', async (req) => {
    const token = await admin(req);
    const id = idParam(req.params.id);
    const host = await change(req, token, 'pin', id, 'unpinned', () => ctx.meta.unpin(id));
    ctx.cache.served.delete(id);
    return { host };
  });

  // ---- audit ----

  app.get<{ Querystring: Record<string, string | undefined> }>('/api/v1/audit', async (req) => {
    await viewer(req);
    const q = req.query;
    const set = (v: string | undefined): v is string => v !== undefined && v !== '';
    if (set(q.kind) && !AUDIT_KINDS.includes(q.kind as AuditKind)) throw invalid(`kind must be one of ${AUDIT_KINDS.join(', ')}`, 'kind');
    if (set(q.result) && !/^[A-Za-z0-9_]{1,64}$/.test(q.result)) throw invalid('result must be ok or an error code', 'result');
    const limit = intParam(q.limit, 'limit');
    if (limit !== null && limit > 1000) throw invalid('limit is at most 1000', 'limit');
    const query: AuditQuery = {
      ...(set(q.kind) ? { kind: q.kind as AuditKind } : {}),
      ...(set(q.host) ? { host: idParam(q.host) } : {}),
      ...(set(q.token) ? { token: idParam(q.token, 'token id') } : {}),
      ...(set(q.result) ? { result: q.result } : {}),
      ...(set(q.since) ? { since: timeParam(q.since, 'since') } : {}),
      ...(set(q.until) ? { until: timeParam(q.until, 'until') } : {}),
      ...(set(q.before) ? { beforeId: intParam(q.before, 'before')! } : {}),
      ...(limit !== null ? { limit } : {}),
    };
    await ctx.auditQueue.flush(); // downloads of the last moments are in the answer too
    const events = await ctx.meta.queryAudit(query);
    const full = events.length === (limit ?? 100);
    return { events, next: full ? (events.at(-1)?.id ?? null) : null };
  });

  // ---- recovery logs (admin, or a token that may fetch the host) ----

  const mayReadLogsOf = async (token: TokenRecord, id: string): Promise<Host> => {
    const host = await ctx.meta.getHost(id);
    // Scope first: a token for another host learns nothing, not even whether this one exists.
    if (!VIEWERS.has(token.scope)) authorize(token, 'fetch', host, id);
    return host ?? hostOr404(ctx, id);
  };

  app.get<{ Params: { id: string } }>('/api/v1/hosts/:id/logs', async (req) => {
    const id = idParam(req.params.id);
    const host = await mayReadLogsOf(await authenticate(req, ctx), id);
    return { host: host.id, logs: await ctx.meta.listLogs(host.id) };
  });

  app.get<{ Params: { id: string }; Querystring: { offset?: string; follow?: string } }>('/api/v1/logs/:id', async (req, reply) => {
    const id = versionValue(req.params.id, 'log id');
    const offset = offsetParam(req.query.offset);
    const follow = flagParam(req.query.follow, 'follow');
    const token = await authenticate(req, ctx);
    const rec = await ctx.meta.getLog(id);
    if (!rec) {
      // Log ids are sequential and say nothing; still, only those who read everything learn which exist.
      authorize(token, 'view', null);
      throw new RuError('LOG_UNKNOWN', `no recovery log ${id}`, { log: id });
    }
    await mayReadLogsOf(token, rec.host);
    // A follower waits as long as the upload it follows may be quiet (--log-idle-timeout).
    if (follow) logStream(req);
    const stop = new AbortController();
    req.raw.once('close', () => stop.abort());
    reply.raw.once('close', () => stop.abort());
    return reply
      .type('text/plain; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-content-type-options', 'nosniff')
      .header('x-rear-update-log-host', rec.host)
      .header('x-rear-update-log-complete', String(rec.complete))
      .send(Readable.from(ctx.logs.read(id, offset, follow, stop.signal), { objectMode: false }));
  });
}
