// Hardware-class layers under /api/v1/layers (docs/layers.md, docs/server.md): publish a layer
// file (an admin token, or a publish-class:C token for layers of class C only), list layers,
// their versions, one version's manifest, a version as a bundle of its own (inspection) — the
// reads for view, operate and admin tokens — and pin and unpin (admin). Every change is audited ('publish' and 'pin', host column "CLASS/NAME").

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { authorize, authorizeLayerPublish } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { decodeManifest, isLayerClass, LAYER_NAME, MAX_PRIORITY } from '../../core/manifest.ts';
import type { Layer, LayerVersionRecord, TokenRecord } from '../../core/store/metadata.ts';
import { TEXT_DIFF_MAX_BYTES } from '../../core/diff.ts';
import { extractFile } from '../../adapters/tar/extract-file.ts';
import { sealedBytes } from '../../adapters/tar/served-bundle.ts';
import { diffAnswer } from './admin.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';
import { audit, intParam } from './common.ts';
import { Readable as ReadableStream } from 'node:stream';

/** The default priority of a layer published without one. */
export const DEFAULT_PRIORITY = 100;

const invalid = (message: string, param: string): RuError => new RuError('REQUEST_INVALID', message, { param });

function classParam(v: unknown): string {
  if (!isLayerClass(v)) throw invalid(`class ${JSON.stringify(v)} must be a class name (letters, digits, '.', '_', '-') or '*' (every class)`, 'class');
  return v;
}

function nameParam(v: unknown): string {
  if (typeof v !== 'string' || !LAYER_NAME.test(v)) throw invalid(`layer name ${JSON.stringify(v)} must be letters, digits, '.', '_', '-' (at most 64)`, 'name');
  return v;
}

function priorityParam(v: unknown): number {
  if (v === undefined) return DEFAULT_PRIORITY;
  if (typeof v !== 'string' || !/^\d{1,7}$/.test(v) || Number(v) > MAX_PRIORITY) throw invalid(`priority must be an integer 0..${MAX_PRIORITY}`, 'priority');
  return Number(v);
}

const label = (cls: string, name: string): string => `${cls}/${name}`;

export function layerRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const admin = async (req: FastifyRequest): Promise<TokenRecord> => {
    const token = await authenticate(req, ctx);
    authorize(token, 'admin', null);
    return token;
  };
  /** The read routes: admin, view and operate tokens. */
  const viewer = async (req: FastifyRequest): Promise<TokenRecord> => {
    const token = await authenticate(req, ctx);
    authorize(token, 'view', null);
    return token;
  };

  const layerOr404 = async (cls: string, name: string): Promise<Layer> => {
    const l = await ctx.meta.getLayer(cls, name);
    if (!l) throw new RuError('LAYER_UNKNOWN', `no layer ${label(cls, name)}`, { layer: label(cls, name) });
    return l;
  };

  const versionOf = async (l: Layer, v: string): Promise<LayerVersionRecord> => {
    let rec: LayerVersionRecord | null;
    if (v === 'latest' || v === 'served') {
      rec = v === 'served' && l.pinned !== null ? await ctx.meta.getLayerVersion(l.class, l.name, l.pinned) : await ctx.meta.latestLayerVersion(l.class, l.name);
    } else {
      const n = intParam(v, 'version');
      if (n === null || n < 1) throw invalid('version must be a positive integer, latest or served', 'version');
      rec = await ctx.meta.getLayerVersion(l.class, l.name, n);
    }
    if (!rec) throw new RuError('VERSION_UNKNOWN', `layer ${label(l.class, l.name)} has no version ${v}`, { layer: label(l.class, l.name), version: v });
    return rec;
  };

  app.post<{ Params: { cls: string; name: string }; Querystring: Record<string, unknown> }>('/api/v1/layers/:cls/:name/versions', async (req, reply) => {
    const cls = classParam(req.params.cls);
    const name = nameParam(req.params.name);
    const priority = priorityParam(req.query.priority);
    let tokenId: string | null = null;
    try {
      const token = await authenticate(req, ctx);
      tokenId = token.id;
      authorizeLayerPublish(token, cls);
      const announced = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
      const r = await ctx.bundles.publishLayer({ class: cls, name, priority }, req.raw as Readable, { announced, publisher: token.id });
      ctx.metrics.publishes.inc({ result: r.created ? 'created' : 'unchanged' });
      await audit(ctx, req, { kind: 'publish', token: token.id, host: label(cls, name), version: r.version.version, bytes: r.version.size, result: 'ok', detail: `layer, priority ${priority}, ${r.created ? 'new version' : 'unchanged'}` });
      const { manifest: _m, ...summary } = r.version;
      return reply.code(r.created ? 201 : 200).send({ created: r.created, layer: r.layer, version: summary });
    } catch (e) {
      const code = e instanceof RuError ? e.code : 'INTERNAL';
      ctx.metrics.publishes.inc({ result: code });
      await audit(ctx, req, { kind: 'publish', token: tokenId, host: label(cls, name), result: code, detail: e instanceof Error ? `layer: ${e.message.slice(0, 480)}` : 'layer' });
      if (!req.raw.complete) reply.header('connection', 'close');
      throw e;
    }
  });

  app.get<{ Querystring: { class?: string } }>('/api/v1/layers', async (req) => {
    await viewer(req);
    const layers = await ctx.meta.listLayers(req.query.class !== undefined ? { class: classParam(req.query.class) } : {});
    const withServed = await Promise.all(layers.map(async (l) => {
      const v = l.pinned !== null ? l.pinned : (await ctx.meta.latestLayerVersion(l.class, l.name))?.version ?? null;
      return { ...l, served: v };
    }));
    return { layers: withServed };
  });

  app.get<{ Params: { cls: string; name: string } }>('/api/v1/layers/:cls/:name/versions', async (req) => {
    await viewer(req);
    const l = await layerOr404(classParam(req.params.cls), nameParam(req.params.name));
    const versions = await ctx.meta.listLayerVersions(l.class, l.name);
    const served = l.pinned ?? versions.at(-1)?.version ?? null;
    return { layer: l, served, versions };
  });

  app.get<{ Params: { cls: string; name: string; v: string } }>('/api/v1/layers/:cls/:name/versions/:v', async (req) => {
    await viewer(req);
    const l = await layerOr404(classParam(req.params.cls), nameParam(req.params.name));
    const rec = await versionOf(l, req.params.v);
    return { layer: l, version: { ...rec, manifest: decodeManifest(Buffer.from(rec.manifest)) } };
  });

  app.get<{ Params: { cls: string; name: string; v: string } }>('/api/v1/layers/:cls/:name/versions/:v/bundle', async (req, reply) => {
    await viewer(req);
    const l = await layerOr404(classParam(req.params.cls), nameParam(req.params.name));
    const rec = await versionOf(l, req.params.v);
    const sealed = await ctx.bundles.sealedLayer(rec, ctx.now());
    reply
      .header('content-length', sealed.size)
      .header('cache-control', 'no-store')
      .header('content-disposition', `attachment; filename="layer-${l.class === '*' ? 'all' : l.class}-${l.name}-${rec.version}.tar.gz"`)
      .type('application/gzip');
    return reply.send(ReadableStream.from(sealedBytes(sealed), { objectMode: false }));
  });

  app.get<{ Params: { cls: string; name: string }; Querystring: { from?: string; to?: string } }>('/api/v1/layers/:cls/:name/diff', async (req) => {
    await viewer(req);
    const l = await layerOr404(classParam(req.params.cls), nameParam(req.params.name));
    if (req.query.from === undefined || req.query.to === undefined) throw invalid('give both ?from=A&to=B (version numbers, or latest / served)', req.query.from === undefined ? 'from' : 'to');
    const [ra, rb] = await Promise.all([versionOf(l, req.query.from), versionOf(l, req.query.to)]);
    const fileOf = async (rec: LayerVersionRecord, path: string): Promise<Buffer | null> => extractFile((await ctx.bundles.payload(rec.blob, rec.size)).chunks(), path, TEXT_DIFF_MAX_BYTES);
    const d = await diffAnswer(decodeManifest(Buffer.from(ra.manifest)), decodeManifest(Buffer.from(rb.manifest)), ra.version, rb.version, (p) => fileOf(ra, p), (p) => fileOf(rb, p));
    return { layer: label(l.class, l.name), from: ra.version, to: rb.version, ...d };
  });

  const pinChange = async (req: FastifyRequest<{ Params: { cls: string; name: string } }>, version: number | null): Promise<{ layer: Layer }> => {
    const token = await admin(req);
    const cls = classParam(req.params.cls);
    const name = nameParam(req.params.name);
    try {
      const layer = version === null ? await ctx.meta.unpinLayer(cls, name) : await ctx.meta.pinLayer(cls, name, version);
      ctx.bundles.layersChanged();
      await audit(ctx, req, { kind: 'pin', token: token.id, host: label(cls, name), version, result: 'ok', detail: version === null ? 'layer unpinned' : `layer pinned to ${version}` });
      return { layer };
    } catch (e) {
      await audit(ctx, req, { kind: 'pin', token: token.id, host: label(cls, name), version, result: e instanceof RuError ? e.code : 'INTERNAL', detail: 'layer pin' });
      throw e;
    }
  };

  app.put<{ Params: { cls: string; name: string }; Body: unknown }>('/api/v1/layers/:cls/:name/pin', async (req) => {
    const b = req.body as { version?: unknown } | null;
    const n = typeof b?.version === 'number' ? b.version : intParam(b?.version, 'version');
    if (n === null || !Number.isSafeInteger(n) || n < 1) throw invalid('the body must be {"version": N} with N a positive integer', 'version');
    return pinChange(req, n);
  });

  app.delete<{ Params: { cls: string; name: string } }>('/api/v1/layers/:cls/:name/pin', async (req) => pinChange(req, null));
}
