// The server's composition root: settings → data directory (first start creates the key and
// the admin token) → stores → app → listen. Returns a handle so tests and the CLI can stop it.
// The stores are chosen here and nowhere else: the metadata in PostgreSQL with --db, else SQLite
// in --data; bundles in --data's blob directory, or with --blobs postgres in the --db database.

import { readFileSync } from 'node:fs';
import { RuError } from '../core/errors.ts';
import { openDirBlobs } from '../adapters/storage/dir-blobs.ts';
import { openPgBlobs } from '../adapters/storage/pg-blobs.ts';
import { openPgMetadata } from '../adapters/storage/pg-metadata.ts';
import { openSqliteMetadata } from '../adapters/storage/sqlite-metadata.ts';
import { buildApp } from './app.ts';
import { BundleService } from './bundles.ts';
import type { ServerConfig } from './config.ts';
import { ensureAdminToken, layout, prepareDataDir, type DataLayout } from './data-dir.ts';
import { KeyRing } from './key-ring.ts';
import { RecoveryService } from './recoveries.ts';
import { LogService } from './logs.ts';
import { LocalBus, type Bus } from './bus.ts';
import { openPgBus } from '../adapters/storage/pg-bus.ts';
import { DirLogStore } from '../adapters/storage/dir-logs.ts';
import { openPgLogs } from '../adapters/storage/pg-logs.ts';
import type { LogBytesStore } from '../core/store/log-bytes.ts';
import { TtlCache } from './cache.ts';
import { downloadSources } from './routes/download.ts';
import { AuditQueue } from './audit-queue.ts';
import type { BlobStore } from '../core/store/blobs.ts';
import type { Host, MetadataStore, TokenRecord, VersionRecord } from '../core/store/metadata.ts';
import { createMetrics } from './metrics.ts';
import { sweepLeftovers } from './store-check.ts';
import { TokenUseRecorder } from './token-use.ts';
import type { FastifyInstance } from 'fastify';

export interface Running {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly fingerprint: string;
  /** The admin token, only when this start created it. */
  readonly adminToken: string | null;
  close(): Promise<void>;
}

/** The metadata store the settings name: PostgreSQL with --db, else SQLite in the data directory. */
export async function openMetadata(cfg: Pick<ServerConfig, 'db'>, data: DataLayout, opts: { now?: () => Date } = {}): Promise<MetadataStore> {
  return cfg.db !== null ? openPgMetadata(cfg.db, opts) : openSqliteMetadata(data.database, opts);
}

/**
 * The blob store the settings name: the data directory's blobs/ (opening it clears day-old
 * partial uploads), or with --blobs postgres the --db database (config.ts refuses it without).
 */
export async function openBlobs(cfg: Pick<ServerConfig, 'db' | 'blobs'>, data: DataLayout): Promise<BlobStore> {
  if (cfg.blobs === 'postgres') {
    if (cfg.db === null) throw new RuError('CONFIG_INVALID', '--blobs postgres needs --db', { from: 'flags' });
    return openPgBlobs(cfg.db);
  }
  return openDirBlobs(data.blobs);
}

/**
 * Where recovery logs' bytes are: with --blobs postgres in the database (every instance reads
 * what any receives), else the data directory's logs/.
 */
export async function openLogBytes(cfg: Pick<ServerConfig, 'db' | 'blobs'>, data: DataLayout): Promise<LogBytesStore> {
  return cfg.blobs === 'postgres' && cfg.db !== null ? openPgLogs(cfg.db) : new DirLogStore(data.logs);
}

/** How instances tell each other what changed: PostgreSQL's LISTEN/NOTIFY with --db, else within this process. */
export async function openBus(cfg: Pick<ServerConfig, 'db'>): Promise<Bus> {
  return cfg.db !== null ? openPgBus(cfg.db) : new LocalBus();
}

/** With --db other instances may be publishing: the start-up sweep leaves what is younger than this. */
export const SHARED_SWEEP_GRACE_MS = 3_600_000;

function readPem(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new RuError('CONFIG_INVALID', `${what} ${path}: ${(e as Error).message}`, { path });
  }
}

export async function startServer(cfg: ServerConfig, opts: { now?: () => Date; log?: boolean } = {}): Promise<Running> {
  const now = opts.now ?? (() => new Date());
  const data = layout(cfg.data);
  prepareDataDir(data);
  // The signing key over time (key-ring.ts): a rotation switches it for every route at once.
  const keys = KeyRing.open(data);
  const meta = await openMetadata(cfg, data, { now });
  const blobs = await openBlobs(cfg, data).catch(async (e: unknown) => {
    await meta.close();
    throw e;
  });
  const opened: { close(): Promise<void> }[] = [];
  try {
    const logBytes = await openLogBytes(cfg, data);
    opened.push(logBytes);
    const bus = await openBus(cfg);
    opened.push(bus);
    const adminToken = await ensureAdminToken(data, meta, now());
    // What a killed publish left (partial blobs, blobs no version names) goes before serving;
    // on a shared database only what is an hour old: another instance may be publishing now.
    const swept = await sweepLeftovers({ meta, blobs }, cfg.db !== null ? SHARED_SWEEP_GRACE_MS : 0);
    const https = cfg.tlsCert && cfg.tlsKey ? { cert: readPem(cfg.tlsCert, 'TLS certificate'), key: readPem(cfg.tlsKey, 'TLS key') } : null;
    const ctx = {
      meta, blobs, keys, data, now, maxUpload: cfg.maxUpload,
      downloads: { clientExe: cfg.clientExe ?? downloadSources().clientExe, packages: cfg.packages },
      get key() {
        return keys.current;
      },
      get publicPem() {
        return keys.publicPem;
      },
      pendingLimits: { perToken: cfg.pendingPerToken, perAddress: cfg.pendingPerAddress, total: cfg.pendingMax, windowMs: cfg.pendingWindow },
      tokenUse: new TokenUseRecorder(meta),
      metrics: createMetrics(),
      bundles: new BundleService({ meta, blobs, get key() { return keys.current; }, tmpDir: data.tmp, maxUpload: cfg.maxUpload, cacheBytes: cfg.payloadCache, now }),
      logs: new LogService(meta, logBytes, bus),
      recoveries: new RecoveryService(meta, { now, silentAfterMs: cfg.silentAfter }, bus),
      console: { sessionIdleMs: cfg.sessionIdle, sessionMaxMs: cfg.sessionMax, secure: https !== null },
      auditQueue: new AuditQueue(meta),
      cache: { tokens: new TtlCache<string, TokenRecord | null>(), served: new TtlCache<string, { host: Host; rec: VersionRecord } | null>() },
    };
    ctx.metrics.pending.set((await meta.listPending({ unassigned: true })).length);
    const app = buildApp(ctx, { logger: opts.log === false ? false : { level: cfg.logLevel }, https, limits: cfg });
    if (swept.partials + swept.blobs > 0) app.log.info({ partialBlobs: swept.partials, unreferencedBlobs: swept.blobs }, 'start: removed what interrupted publishes left');
    try {
      await app.listen({ host: cfg.listen.host, port: cfg.listen.port });
    } catch (e) {
      throw new RuError('CONFIG_INVALID', `cannot listen on ${cfg.listen.host}:${cfg.listen.port}: ${(e as Error).message}`, { from: 'listen' });
    }
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : cfg.listen.port;
    const host = cfg.listen.host.includes(':') ? `[${cfg.listen.host}]` : cfg.listen.host;
    return {
      app, adminToken, fingerprint: keys.current.publicKey.fingerprint,
      url: `${https ? 'https' : 'http'}://${host}:${port}`,
      close: async () => {
        await app.close();
        await ctx.auditQueue.flush();
        for (const o of opened.reverse()) await o.close();
        await meta.close();
        await blobs.close();
      },
    };
  } catch (e) {
    for (const o of opened.reverse()) await o.close().catch(() => undefined);
    await meta.close();
    await blobs.close();
    throw e;
  }
}
