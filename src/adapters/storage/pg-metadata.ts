// The metadata store on PostgreSQL (Kysely's PostgresDialect over a `pg` Pool), for servers that
// must not depend on one machine's disk: several `serve` processes may share the database. So
// nothing here relies on a process-local lock: every read-modify-write is one transaction
// that first locks what it changes (SELECT ... FOR NO KEY UPDATE on the host, layer, token or
// recovery row, or a transaction-scoped advisory lock where no row exists yet), and PostgreSQL
// orders the writers, in this process or another. Times are ISO text as in SQLite; the schema
// and its migrations are pg-schema.ts; errors are translated by pg-errors.ts.

import pg from 'pg';
import { Kysely, Migrator, PostgresDialect, sql, type Selectable } from 'kysely';
import { usedUp } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { canonicalFacts, checkId, factsKey, normalizeMac, NORMALIZE, type CanonicalFacts, type FactKind, type MachineFacts } from '../../core/store/facts.ts';
import type { Hardware } from '../../core/store/hardware.ts';
import type {
  AuditEvent, AuditKind, AuditQuery, Host, HostFields, HostLayout, Iso, Layer, LayerPublishResult, LayerVersionRecord, LayerVersionSummary, LogRecord,
  MetadataOptions, MetadataStore, NewAuditEvent, NewHost, NewLayerVersion, NewRecovery, NewRecoveryEvent, NewToken, NewVersion, PendingLimits,
  PendingMachine, PublishResult, Recovery, RecoveryEvent, RecoveryQuery, ServedLayer, Session, StoreProblem, TokenRecord, TokenScope, VersionRecord,
  VersionSummary,
} from '../../core/store/metadata.ts';
import type { RecoveryEventKind, RecoveryPhase } from '../../core/recovery.ts';
import { versionProblems, type VersionFacts } from '../../core/store/check.ts';
import {
  auditLimit, checkAuditEvent, checkCount, checkDownloadName, checkHostFields, checkHostLayout, checkIso, checkLogName, checkNewLayerVersion,
  checkNewRecovery, checkNewSession, checkNewToken, checkNewVersion, checkPendingLimits, checkRecoveryEvent, checkRecoveryQuery, pendingLimitHit,
  type CheckedHostFields,
} from '../../core/store/validate.ts';
import { bootedDetail, movedRecovery } from './recovery-moves.ts';
import { isJsonText, layerProblems, layerRef, type LayerVersionFacts } from './layer-problems.ts';
import { fromPgError, isUnreachable, redactUrl } from './pg-errors.ts';
import { FOREIGN_KEYS, ID_TABLES, MIGRATION_LOCK_TABLE, MIGRATION_TABLE, pgMigrationProvider, type Schema } from './pg-schema.ts';

type Db = Kysely<Schema>;

export interface PgMetadataOptions extends MetadataOptions {
  /** How long a statement waits for another session's lock before STORE_BUSY (PostgreSQL's lock_timeout). */
  readonly busyTimeoutMs?: number;
  /** How long to wait for a connection (a PostgreSQL that does not answer) before STORE_BUSY. */
  readonly connectTimeoutMs?: number;
  /** Connections this process keeps at most. */
  readonly poolSize?: number;
}

/**
 * Advisory locks (two int4 keys: this program's, then the resource's), scoped to the
 * transaction, so they go with its commit or rollback and with a lost connection.
 */
const LOCK_SPACE = 0x52_55_50_44; // "RUPD"
const LOCK = {
  /** releaseBlobs takes it exclusively; publishes take it shared, so they still run side by side. */
  blobs: 1,
  /** New pending records: the limits are counted and the record inserted under it. */
  pending: 2,
  /** Host facts: a MAC belongs to at most one host. */
  facts: 3,
} as const;

/** Brings the schema up to date in one transaction; running it again is a no-op. STORE_SCHEMA when it cannot. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the Migrator works on any schema
export async function migratePg(db: Kysely<any>): Promise<void> {
  const migrator = new Migrator({ db, provider: pgMigrationProvider, migrationTableName: MIGRATION_TABLE, migrationLockTableName: MIGRATION_LOCK_TABLE });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    if (isUnreachable(error)) throw error;
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    const msg = error instanceof Error ? error.message : String(error);
    throw new RuError('STORE_SCHEMA', `metadata schema migration failed${failed ? ` at ${failed}` : ''}: ${msg}`, { migration: failed ?? null });
  }
}

/** int8 (sizes, counts, sums) as numbers, not strings: every value the store keeps is a safe integer. */
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
};

export interface PgConnectOptions {
  readonly poolSize?: number;
  readonly connectTimeoutMs?: number;
  readonly busyTimeoutMs?: number;
}

/**
 * A pool on `url` (postgres://USER:PASSWORD@HOST:PORT/DB), checked and migrated: what the
 * metadata and the blob store both open. A database that cannot be reached, or refuses the
 * connection, is STORE_UNREACHABLE naming the URL without its password (`what`: "metadata",
 * "blob"). Once open, the pool reconnects by itself: while PostgreSQL is away the calls fail
 * with STORE_BUSY, and work again when it is back.
 */
export async function connectPg<S>(url: string, what: 'metadata' | 'blob', opts: PgConnectOptions, applicationName: string): Promise<{ pool: pg.Pool; db: Kysely<S> }> {
  const shown = redactUrl(url);
  let pool: pg.Pool;
  try {
    pool = new pg.Pool({
      connectionString: url,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      lock_timeout: opts.busyTimeoutMs ?? 10_000,
      application_name: applicationName,
      types,
    });
  } catch (e) {
    throw new RuError('CONFIG_INVALID', `${what} database ${shown}: ${(e as Error).message}`, { db: shown });
  }
  // A connection lost while idle in the pool (PostgreSQL restarted) is reported here and
  // dropped by the pool; one lost while checked out fails its query. Neither may crash the server.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const db = new Kysely<S>({ dialect: new PostgresDialect({ pool }) });
  try {
    await sql`select 1`.execute(db);
  } catch (e) {
    await db.destroy().catch(() => undefined);
    const why = fromPgError(e, 'connecting');
    throw new RuError('STORE_UNREACHABLE', `${what} database ${shown} is unreachable: ${(e as Error).message || why.message}`, { db: shown, postgres: why.context.postgres ?? null });
  }
  try {
    await migratePg(db);
  } catch (e) {
    await db.destroy().catch(() => undefined);
    throw what === 'blob' ? fromPgError(e, `migrating ${shown}`, 'blob') : fromPgError(e, `migrating ${shown}`);
  }
  return { pool, db };
}

/** Connects to `url` and migrates the database (connectPg), then the store. */
export async function openPgMetadata(url: string, opts: PgMetadataOptions = {}): Promise<PgMetadataStore> {
  const { db } = await connectPg<Schema>(url, 'metadata', opts, 'rear-update');
  return new PgMetadataStore(db, opts);
}

type HostRow = Selectable<Schema['hosts']>;
type VersionRow = Selectable<Schema['versions']>;
type PendingRow = Selectable<Schema['pending']>;
type LogRow = Selectable<Schema['logs']>;
type LayerRow = Selectable<Schema['layers']>;
type LayerVersionRow = Selectable<Schema['layer_versions']>;
type RecoveryRow = Selectable<Schema['recoveries']>;

const toVersion = (r: VersionRow): VersionRecord => ({
  host: r.host_id, version: r.version, blob: r.blob, digest: r.digest, size: r.size, created: r.created, publisher: r.publisher, manifest: r.manifest,
});
const toPending = (r: PendingRow): PendingMachine => ({
  id: r.id, facts: JSON.parse(r.facts) as CanonicalFacts, address: r.address, firstSeen: r.first_seen, lastSeen: r.last_seen,
  assignedHost: r.assigned_host, assigned: r.assigned, token: r.token_id,
});
const toLog = (r: LogRow): LogRecord => ({
  id: r.id, host: r.host_id, workflow: r.workflow, stamp: r.stamp, address: r.address, started: r.started, updated: r.updated,
  bytes: r.bytes, complete: r.complete === 1,
});
const toLayer = (r: LayerRow): Layer => ({ class: r.class, name: r.name, priority: r.priority, pinned: r.pinned, created: r.created });
const toLayerVersion = (r: LayerVersionRow): LayerVersionRecord => ({
  class: r.class, name: r.name, version: r.version, blob: r.blob, digest: r.digest, size: r.size, created: r.created, publisher: r.publisher, manifest: r.manifest,
});
const unknownLayer = (cls: string, name: string): RuError => new RuError('LAYER_UNKNOWN', `no layer ${layerRef(cls, name)}`, { class: cls, layer: name });
const toRecovery = (r: RecoveryRow): Recovery => ({
  id: r.id, token: r.token_id, address: r.address, host: r.host_id, pending: r.pending_id, log: r.log_id,
  facts: r.facts === null ? null : JSON.parse(r.facts) as CanonicalFacts, hardware: r.hardware === null ? null : JSON.parse(r.hardware) as Hardware,
  phase: r.phase as RecoveryPhase, started: r.started, updated: r.updated, lastSign: r.last_sign, ended: r.ended, exitStatus: r.exit_status, error: r.error,
});
const unknownRecovery = (id: number): RuError => new RuError('RECOVERY_UNKNOWN', `no recovery ${id}`, { recovery: id });
const unknownHost = (id: string): RuError => new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(id)}`, { host: id });

export class PgMetadataStore implements MetadataStore {
  readonly #db: Db;
  readonly #now: () => Date;

  constructor(db: Db, opts: MetadataOptions = {}) {
    this.#db = db;
    this.#now = opts.now ?? (() => new Date());
  }

  #time(): string {
    return this.#now().toISOString();
  }

  /** Reads, translated. */
  async #read<T>(what: string, fn: (db: Db) => Promise<T>): Promise<T> {
    try {
      return await fn(this.#db);
    } catch (e) {
      throw fromPgError(e, what);
    }
  }

  /**
   * A transaction (READ COMMITTED: each statement sees what committed before it, so a row lock
   * taken first makes the reads after it current). A deadlock or serialization failure rolls
   * everything back, so the step is tried again, a few times, before it is STORE_BUSY; `once`
   * for a step with effects outside the database (releaseBlobs).
   */
  async #write<T>(what: string, fn: (db: Db) => Promise<T>, opts: { once?: boolean } = {}): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#db.transaction().execute(fn);
      } catch (e) {
        const code = (e as { code?: unknown })?.code;
        if (opts.once || attempt >= 4 || (code !== '40P01' && code !== '40001')) throw fromPgError(e, what);
      }
    }
  }

  /** Takes an advisory lock until the transaction ends (shared: other shared holders pass). */
  async #lock(db: Db, key: number, shared = false): Promise<void> {
    if (shared) await sql`select pg_advisory_xact_lock_shared(${LOCK_SPACE}::int4, ${key}::int4)`.execute(db);
    else await sql`select pg_advisory_xact_lock(${LOCK_SPACE}::int4, ${key}::int4)`.execute(db);
  }

  /** The host, its row locked until the transaction ends: the writers of one host take turns. */
  async #lockedHost(db: Db, id: string): Promise<HostRow> {
    const row = await db.selectFrom('hosts').selectAll().where('id', '=', id).forNoKeyUpdate().executeTakeFirst();
    if (!row) throw unknownHost(id);
    return row;
  }

  async #hosts(db: Db, rows: HostRow[]): Promise<Host[]> {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id);
    // Many hosts (a fleet listing): read the fact tables whole rather than bind thousands of ids.
    const some = ids.length <= 500;
    let mq = db.selectFrom('host_macs').select(['host_id', 'mac']).orderBy('mac');
    let nq = db.selectFrom('host_names').select(['host_id', 'hostname']).orderBy('hostname');
    if (some) {
      mq = mq.where('host_id', 'in', ids);
      nq = nq.where('host_id', 'in', ids);
    }
    const group = (pairs: { host_id: string; v: string }[]): Map<string, string[]> => {
      const m = new Map<string, string[]>();
      for (const p of pairs) {
        const list = m.get(p.host_id);
        if (list) list.push(p.v);
        else m.set(p.host_id, [p.v]);
      }
      return m;
    };
    const macs = group((await mq.execute()).map((r) => ({ host_id: r.host_id, v: r.mac })));
    const names = group((await nq.execute()).map((r) => ({ host_id: r.host_id, v: r.hostname })));
    return rows.map((r) => ({
      id: r.id, hostnames: names.get(r.id) ?? [], macs: macs.get(r.id) ?? [],
      uuid: r.uuid, serial: r.serial, class: r.class, pinned: r.pinned, created: r.created,
    }));
  }

  async #host(db: Db, id: string): Promise<Host> {
    const row = await db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw unknownHost(id);
    return (await this.#hosts(db, [row]))[0]!;
  }

  async #saveFacts(db: Db, id: string, f: CheckedHostFields): Promise<void> {
    if (f.macs) {
      const taken = f.macs.length
        ? await db.selectFrom('host_macs').selectAll().where('mac', 'in', f.macs).where('host_id', '!=', id).executeTakeFirst()
        : undefined;
      if (taken) throw new RuError('STORE_CONFLICT', `MAC address ${taken.mac} belongs to host ${taken.host_id}`, { what: 'mac', value: taken.mac, host: taken.host_id });
      await db.deleteFrom('host_macs').where('host_id', '=', id).execute();
      if (f.macs.length) await db.insertInto('host_macs').values(f.macs.map((mac) => ({ mac, host_id: id }))).execute();
    }
    if (f.hostnames) {
      await db.deleteFrom('host_names').where('host_id', '=', id).execute();
      if (f.hostnames.length) await db.insertInto('host_names').values(f.hostnames.map((hostname) => ({ hostname, host_id: id }))).execute();
    }
    const cols = { uuid: f.uuid, serial: f.serial, class: f.class };
    const set = Object.fromEntries(Object.entries(cols).filter(([, v]) => v !== undefined));
    if (Object.keys(set).length) await db.updateTable('hosts').set(set).where('id', '=', id).execute();
  }

  async addHost(n: NewHost): Promise<Host> {
    checkId(n.id, 'host');
    const f = checkHostFields(n);
    return this.#write('adding a host', async (db) => {
      await this.#lock(db, LOCK.facts);
      const added = await db.insertInto('hosts').values({ id: n.id, class: null, uuid: null, serial: null, pinned: null, created: this.#time() })
        .onConflict((oc) => oc.column('id').doNothing()).returning('id').executeTakeFirst();
      if (!added) throw new RuError('STORE_CONFLICT', `host ${n.id} exists already`, { what: 'host', value: n.id });
      await this.#saveFacts(db, n.id, f);
      return this.#host(db, n.id);
    });
  }

  async updateHost(id: string, patch: HostFields): Promise<Host> {
    const f = checkHostFields(patch);
    return this.#write('updating a host', async (db) => {
      await this.#lock(db, LOCK.facts);
      await this.#lockedHost(db, id);
      await this.#saveFacts(db, id, f);
      return this.#host(db, id);
    });
  }

  async getHost(id: string): Promise<Host | null> {
    return this.#read('reading a host', async (db) => {
      const row = await db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirst();
      return row ? (await this.#hosts(db, [row]))[0]! : null;
    });
  }

  async listHosts(filter: { class?: string } = {}): Promise<Host[]> {
    return this.#read('listing hosts', async (db) => {
      let q = db.selectFrom('hosts').selectAll().orderBy('id');
      if (filter.class !== undefined) q = q.where('class', '=', filter.class);
      return this.#hosts(db, await q.execute());
    });
  }

  async findHosts(kind: FactKind, value: string): Promise<Host[]> {
    const v = typeof value === 'string' ? NORMALIZE[kind](value) : null;
    if (v === null) return [];
    return this.#read(`finding hosts by ${kind}`, async (db) => {
      let q = db.selectFrom('hosts').selectAll('hosts').orderBy('hosts.id');
      if (kind === 'mac') q = q.innerJoin('host_macs', 'host_macs.host_id', 'hosts.id').where('host_macs.mac', '=', v);
      else if (kind === 'hostname') q = q.innerJoin('host_names', 'host_names.host_id', 'hosts.id').where('host_names.hostname', '=', v);
      else q = q.where(kind, '=', v);
      return this.#hosts(db, await q.execute());
    });
  }

  async publishVersion(n: NewVersion, opts: { ifChanged?: boolean } = {}): Promise<PublishResult> {
    checkNewVersion(n);
    return this.#write('publishing a version', async (db) => {
      // Shared: publishes run side by side, but not while releaseBlobs decides what is unreferenced.
      await this.#lock(db, LOCK.blobs, true);
      await this.#lockedHost(db, n.host);
      const latest = await db.selectFrom('versions').selectAll().where('host_id', '=', n.host).orderBy('version', 'desc').limit(1).executeTakeFirst();
      if (opts.ifChanged && latest && latest.digest === n.digest) return { version: toVersion(latest), created: false };
      const row: VersionRow = {
        host_id: n.host, version: (latest?.version ?? 0) + 1, blob: n.blob, digest: n.digest, size: n.size,
        manifest: n.manifest, created: this.#time(), publisher: n.publisher ?? null,
      };
      await db.insertInto('versions').values(row).execute();
      return { version: toVersion(row), created: true };
    });
  }

  async getVersion(host: string, version: number): Promise<VersionRecord | null> {
    return this.#read('reading a version', async (db) => {
      const r = await db.selectFrom('versions').selectAll().where('host_id', '=', host).where('version', '=', version).executeTakeFirst();
      return r ? toVersion(r) : null;
    });
  }

  async latestVersion(host: string): Promise<VersionRecord | null> {
    return this.#read('reading the latest version', async (db) => {
      const r = await db.selectFrom('versions').selectAll().where('host_id', '=', host).orderBy('version', 'desc').limit(1).executeTakeFirst();
      return r ? toVersion(r) : null;
    });
  }

  async servedVersion(host: string): Promise<VersionRecord | null> {
    const h = await this.#read('reading a host', (db) => this.#host(db, host));
    return h.pinned !== null ? this.getVersion(host, h.pinned) : this.latestVersion(host);
  }

  async listVersions(host: string): Promise<VersionSummary[]> {
    return this.#read('listing versions', async (db) => {
      await this.#host(db, host);
      const rows = await db.selectFrom('versions')
        .select(['host_id', 'version', 'blob', 'digest', 'size', 'created', 'publisher'])
        .where('host_id', '=', host).orderBy('version').execute();
      return rows.map((r) => ({ host: r.host_id, version: r.version, blob: r.blob, digest: r.digest, size: r.size, created: r.created, publisher: r.publisher }));
    });
  }

  async pin(host: string, version: number): Promise<Host> {
    return this.#write('pinning a version', async (db) => {
      await this.#lockedHost(db, host);
      const v = await db.selectFrom('versions').select('version').where('host_id', '=', host).where('version', '=', version).executeTakeFirst();
      if (!v) throw new RuError('VERSION_UNKNOWN', `host ${host} has no version ${version}`, { host, version });
      await db.updateTable('hosts').set({ pinned: version }).where('id', '=', host).execute();
      return this.#host(db, host);
    });
  }

  async unpin(host: string): Promise<Host> {
    return this.#write('unpinning', async (db) => {
      await this.#lockedHost(db, host);
      await db.updateTable('hosts').set({ pinned: null }).where('id', '=', host).execute();
      return this.#host(db, host);
    });
  }

  /** The layer, its row locked until the transaction ends. */
  async #layer(db: Db, cls: string, name: string): Promise<Layer> {
    const row = await db.selectFrom('layers').selectAll().where('class', '=', cls).where('name', '=', name).forNoKeyUpdate().executeTakeFirst();
    if (!row) throw unknownLayer(cls, name);
    return toLayer(row);
  }

  async publishLayerVersion(n: NewLayerVersion, opts: { ifChanged?: boolean } = {}): Promise<LayerPublishResult> {
    checkNewLayerVersion(n);
    // In one transaction as publishVersion: numbering, ifChanged and the priority are one step.
    // The layer may not exist yet: an insert that does nothing on conflict waits for a racing
    // first publish to commit, and then the row is there to lock.
    return this.#write('publishing a layer version', async (db) => {
      await this.#lock(db, LOCK.blobs, true);
      const created: LayerRow = { class: n.class, name: n.name, priority: n.priority, pinned: null, created: this.#time() };
      const inserted = await db.insertInto('layers').values(created)
        .onConflict((oc) => oc.columns(['class', 'name']).doNothing()).returning('class').executeTakeFirst();
      let layer: Layer;
      if (inserted) layer = toLayer(created);
      else {
        const old = await this.#layer(db, n.class, n.name);
        if (old.priority !== n.priority) await db.updateTable('layers').set({ priority: n.priority }).where('class', '=', n.class).where('name', '=', n.name).execute();
        layer = { ...old, priority: n.priority };
      }
      const latest = await db.selectFrom('layer_versions').selectAll()
        .where('class', '=', n.class).where('name', '=', n.name).orderBy('version', 'desc').limit(1).executeTakeFirst();
      if (opts.ifChanged && latest && latest.digest === n.digest) return { layer, version: toLayerVersion(latest), created: false };
      const row: LayerVersionRow = {
        class: n.class, name: n.name, version: (latest?.version ?? 0) + 1, blob: n.blob, digest: n.digest, size: n.size,
        manifest: n.manifest, created: this.#time(), publisher: n.publisher ?? null,
      };
      await db.insertInto('layer_versions').values(row).execute();
      return { layer, version: toLayerVersion(row), created: true };
    });
  }

  async getLayer(cls: string, name: string): Promise<Layer | null> {
    return this.#read('reading a layer', async (db) => {
      const r = await db.selectFrom('layers').selectAll().where('class', '=', cls).where('name', '=', name).executeTakeFirst();
      return r ? toLayer(r) : null;
    });
  }

  async listLayers(filter: { class?: string } = {}): Promise<Layer[]> {
    return this.#read('listing layers', async (db) => {
      let q = db.selectFrom('layers').selectAll().orderBy('class').orderBy('priority').orderBy('name');
      if (filter.class !== undefined) q = q.where('class', '=', filter.class);
      return (await q.execute()).map(toLayer);
    });
  }

  async getLayerVersion(cls: string, name: string, version: number): Promise<LayerVersionRecord | null> {
    return this.#read('reading a layer version', async (db) => {
      const r = await db.selectFrom('layer_versions').selectAll()
        .where('class', '=', cls).where('name', '=', name).where('version', '=', version).executeTakeFirst();
      return r ? toLayerVersion(r) : null;
    });
  }

  async latestLayerVersion(cls: string, name: string): Promise<LayerVersionRecord | null> {
    return this.#read('reading the latest layer version', async (db) => {
      const r = await db.selectFrom('layer_versions').selectAll()
        .where('class', '=', cls).where('name', '=', name).orderBy('version', 'desc').limit(1).executeTakeFirst();
      return r ? toLayerVersion(r) : null;
    });
  }

  async listLayerVersions(cls: string, name: string): Promise<LayerVersionSummary[]> {
    return this.#read('listing layer versions', async (db) => {
      await this.#layer(db, cls, name);
      const rows = await db.selectFrom('layer_versions')
        .select(['class', 'name', 'version', 'blob', 'digest', 'size', 'created', 'publisher'])
        .where('class', '=', cls).where('name', '=', name).orderBy('version').execute();
      return rows.map((r) => ({ class: r.class, name: r.name, version: r.version, blob: r.blob, digest: r.digest, size: r.size, created: r.created, publisher: r.publisher }));
    });
  }

  async pinLayer(cls: string, name: string, version: number): Promise<Layer> {
    return this.#write('pinning a layer version', async (db) => {
      const layer = await this.#layer(db, cls, name);
      const v = await db.selectFrom('layer_versions').select('version')
        .where('class', '=', cls).where('name', '=', name).where('version', '=', version).executeTakeFirst();
      if (!v) throw new RuError('VERSION_UNKNOWN', `layer ${layerRef(cls, name)} has no version ${version}`, { class: cls, layer: name, version });
      await db.updateTable('layers').set({ pinned: version }).where('class', '=', cls).where('name', '=', name).execute();
      return { ...layer, pinned: version };
    });
  }

  async unpinLayer(cls: string, name: string): Promise<Layer> {
    return this.#write('unpinning a layer', async (db) => {
      const layer = await this.#layer(db, cls, name);
      await db.updateTable('layers').set({ pinned: null }).where('class', '=', cls).where('name', '=', name).execute();
      return { ...layer, pinned: null };
    });
  }

  async servedLayers(cls: string | null): Promise<ServedLayer[]> {
    // Every bundle fetch asks this: one query, each layer joined with its served version (the
    // pin, else the largest number), both lookups in layer_versions_pk. A layer without a
    // served version drops out.
    return this.#read('reading the served layers', async (db) => {
      const rows = await db.selectFrom('layers as l')
        .crossJoin('layer_versions as v')
        .whereRef('v.class', '=', 'l.class')
        .whereRef('v.name', '=', 'l.name')
        .where(sql<boolean>`v.version = coalesce(l.pinned, (select m.version from layer_versions m where m.class = l.class and m.name = l.name order by m.version desc limit 1))`)
        .select([
          'l.class', 'l.name', 'l.priority', 'l.pinned', 'l.created as layer_created',
          'v.version', 'v.blob', 'v.digest', 'v.size', 'v.manifest', 'v.created', 'v.publisher',
        ])
        .where('l.class', 'in', cls === null ? ['*'] : ['*', cls])
        .orderBy('l.priority')
        .orderBy(sql`case when l.class = '*' then 0 else 1 end`)
        .orderBy('l.name')
        .execute();
      return rows.map((r) => ({
        layer: toLayer({ class: r.class, name: r.name, priority: r.priority, pinned: r.pinned, created: r.layer_created }),
        version: toLayerVersion(r),
      }));
    });
  }

  async createToken(t: NewToken): Promise<TokenRecord> {
    checkNewToken(t);
    return this.#write('creating a token', async (db) => {
      if (await db.selectFrom('tokens').select('id').where('id', '=', t.id).executeTakeFirst()) {
        throw new RuError('STORE_CONFLICT', `token ${t.id} exists already`, { what: 'token', value: t.id });
      }
      const rec: TokenRecord = {
        id: t.id, secretHash: t.secretHash, scope: t.scope, label: t.label ?? null, created: this.#time(), revoked: null,
        expires: t.expires ?? null, uses: t.uses ?? null, used: 0, lastUsed: null, lastAddress: null,
      };
      await db.insertInto('tokens').values({
        id: rec.id, secret_hash: rec.secretHash, scope: rec.scope, label: rec.label, created: rec.created, revoked: null,
        expires: rec.expires, uses: rec.uses, used: 0, last_used: null, last_address: null,
      }).execute();
      return rec;
    });
  }

  #token(r: Selectable<Schema['tokens']>): TokenRecord {
    return {
      id: r.id, secretHash: r.secret_hash, scope: r.scope as TokenScope, label: r.label, created: r.created, revoked: r.revoked,
      expires: r.expires, uses: r.uses, used: r.used, lastUsed: r.last_used, lastAddress: r.last_address,
    };
  }

  async getToken(id: string): Promise<TokenRecord | null> {
    return this.#read('reading a token', async (db) => {
      const r = await db.selectFrom('tokens').selectAll().where('id', '=', id).executeTakeFirst();
      return r ? this.#token(r) : null;
    });
  }

  async listTokens(): Promise<TokenRecord[]> {
    return this.#read('listing tokens', async (db) =>
      (await db.selectFrom('tokens').selectAll().orderBy('created').orderBy('id').execute()).map((r) => this.#token(r)));
  }

  async revokeToken(id: string): Promise<TokenRecord> {
    return this.#write('revoking a token', async (db) => {
      await db.updateTable('tokens').set({ revoked: this.#time() }).where('id', '=', id).where('revoked', 'is', null).execute();
      const r = await db.selectFrom('tokens').selectAll().where('id', '=', id).executeTakeFirst();
      if (!r) throw new RuError('TOKEN_UNKNOWN', `no token ${JSON.stringify(id)}`, { token: id });
      return this.#token(r);
    });
  }

  async noteTokenUse(id: string, address: string | null): Promise<void> {
    // One UPDATE is atomic on its own; the server calls this at most about once a minute per token.
    const r = await this.#read('recording a token use', (db) =>
      db.updateTable('tokens').set({ last_used: this.#time(), last_address: address }).where('id', '=', id).executeTakeFirst());
    if (r.numUpdatedRows === 0n) throw new RuError('TOKEN_UNKNOWN', `no token ${JSON.stringify(id)}`, { token: id });
  }

  async spendTokenUse(id: string, download: string, opts: { resume?: boolean } = {}): Promise<TokenRecord> {
    checkDownloadName(download);
    // The token's row locked first: the check of what is left and the spending are one step, also across processes.
    return this.#write('spending a token use', async (db) => {
      const r = await db.selectFrom('tokens').selectAll().where('id', '=', id).forNoKeyUpdate().executeTakeFirst();
      if (!r) throw new RuError('TOKEN_UNKNOWN', `no token ${JSON.stringify(id)}`, { token: id });
      const rec = this.#token(r);
      if (rec.uses === null) return rec;
      if (opts.resume && await db.selectFrom('token_uses').select('token_id').where('token_id', '=', id).where('download', '=', download).executeTakeFirst()) return rec;
      if (rec.used >= rec.uses) throw usedUp(rec);
      const time = this.#time();
      await db.insertInto('token_uses').values({ token_id: id, download, time })
        .onConflict((oc) => oc.columns(['token_id', 'download']).doUpdateSet({ time })).execute();
      await db.updateTable('tokens').set({ used: rec.used + 1 }).where('id', '=', id).execute();
      return { ...rec, used: rec.used + 1 };
    });
  }

  async recordPending(facts: MachineFacts, address: string | null, opts: { token?: string | null; limits?: PendingLimits } = {}): Promise<PendingMachine> {
    const limits = opts.limits ? checkPendingLimits(opts.limits) : null;
    const token = opts.token ?? null;
    const c = canonicalFacts(facts);
    if (!c.macs.length && !c.uuid && !c.serial && !c.hostname) {
      throw new RuError('STORE_INVALID', 'a pending machine needs at least one usable fact (MAC, UUID, serial or hostname)');
    }
    const key = factsKey(c);
    return this.#write('recording a pending machine', async (db) => {
      const now = this.#time();
      // A machine asking again (the common case: every few seconds while it waits) is one
      // UPDATE of its newest record, without the lock that new records take.
      const refresh = async (): Promise<PendingMachine | null> => {
        const row = await db.updateTable('pending').set((eb) => ({ last_seen: now, address: address ?? eb.ref('address') }))
          .where('id', '=', (eb) => eb.selectFrom('pending').select('id').where('facts_key', '=', key).orderBy('id', 'desc').limit(1))
          .returningAll().executeTakeFirst();
        return row ? toPending(row) : null;
      };
      const known = await refresh();
      if (known) return known;
      // New records one at a time, in every process: a racing first ask of the same machine
      // finds the record made meanwhile, and the limits count every record already made.
      await this.#lock(db, LOCK.pending);
      const meanwhile = await refresh();
      if (meanwhile) return meanwhile;
      if (limits) {
        // One pass over the records seen within the window (index pending_seen), under the
        // lock and in the same transaction as the insert: concurrent floods cannot all slip under a limit.
        const since = new Date(Date.parse(now) - limits.windowMs).toISOString();
        const open = await db.selectFrom('pending')
          .select((eb) => [
            eb.fn.countAll<number>().as('total'),
            eb.fn.sum<number>(eb.case().when('token_id', '=', token ?? '').then(1).else(0).end()).as('byToken'),
            eb.fn.sum<number>(eb.case().when('origin', '=', address ?? '').then(1).else(0).end()).as('byAddress'),
          ])
          .where('assigned_host', 'is', null).where('last_seen', '>=', since)
          .executeTakeFirstOrThrow();
        const hit = pendingLimitHit(limits, { total: Number(open.total), byToken: Number(open.byToken ?? 0), byAddress: Number(open.byAddress ?? 0) }, { token, address });
        if (hit) throw hit;
      }
      const { id } = await db.insertInto('pending')
        .values({ facts_key: key, facts: JSON.stringify(c), address, first_seen: now, last_seen: now, assigned_host: null, assigned: null, token_id: token, origin: address })
        .returning('id').executeTakeFirstOrThrow();
      if (c.macs.length) await db.insertInto('pending_macs').values(c.macs.map((mac) => ({ pending_id: id, mac }))).execute();
      return { id, facts: c, address, firstSeen: now, lastSeen: now, assignedHost: null, assigned: null, token };
    });
  }

  async getPending(id: number): Promise<PendingMachine | null> {
    return this.#read('reading a pending machine', async (db) => {
      const r = await db.selectFrom('pending').selectAll().where('id', '=', id).executeTakeFirst();
      return r ? toPending(r) : null;
    });
  }

  async listPending(filter: { mac?: string; unassigned?: boolean } = {}): Promise<PendingMachine[]> {
    const mac = filter.mac === undefined ? undefined : normalizeMac(filter.mac);
    if (mac === null) return [];
    return this.#read('listing pending machines', async (db) => {
      let q = db.selectFrom('pending').selectAll('pending').orderBy('pending.id', 'desc');
      if (mac !== undefined) q = q.innerJoin('pending_macs', 'pending_macs.pending_id', 'pending.id').where('pending_macs.mac', '=', mac);
      if (filter.unassigned) q = q.where('pending.assigned_host', 'is', null);
      return (await q.execute()).map(toPending);
    });
  }

  async assignPending(id: number, host: string): Promise<PendingMachine> {
    return this.#write('assigning a pending machine', async (db) => {
      const r = await db.selectFrom('pending').selectAll().where('id', '=', id).forNoKeyUpdate().executeTakeFirst();
      if (!r) throw new RuError('PENDING_UNKNOWN', `no pending machine ${id}`, { pending: id });
      await this.#host(db, host);
      const assigned = this.#time();
      await db.updateTable('pending').set({ assigned_host: host, assigned }).where('id', '=', id).execute();
      return toPending({ ...r, assigned_host: host, assigned });
    });
  }

  async forgetPending(id: number): Promise<PendingMachine> {
    // pending_macs go with it (ON DELETE CASCADE); recoveries keep the id as history, and the
    // identity sequence never gives it to the machine's next record.
    return this.#write('forgetting a pending machine', async (db) => {
      const r = await db.deleteFrom('pending').where('id', '=', id).returningAll().executeTakeFirst();
      if (!r) throw new RuError('PENDING_UNKNOWN', `no pending machine ${id}`, { pending: id });
      return toPending(r);
    });
  }

  async appendAudit(e: NewAuditEvent): Promise<AuditEvent> {
    checkAuditEvent(e);
    const rec = {
      time: this.#time(), kind: e.kind, token: e.token ?? null, address: e.address ?? null, host: e.host ?? null,
      version: e.version ?? null, bytes: e.bytes ?? null, result: e.result, detail: e.detail ?? null,
    };
    // One INSERT is atomic on its own: no explicit transaction needed.
    return this.#read('recording an audit event', async (db) => {
      const { id } = await db.insertInto('audit').values({
        time: rec.time, kind: rec.kind, token_id: rec.token, address: rec.address, host_id: rec.host,
        version: rec.version, bytes: rec.bytes, result: rec.result, detail: rec.detail,
      }).returning('id').executeTakeFirstOrThrow();
      return { id, ...rec };
    });
  }

  async appendAudits(es: readonly NewAuditEvent[]): Promise<void> {
    for (const e of es) checkAuditEvent(e);
    if (es.length === 0) return;
    const time = this.#time();
    // One multi-row INSERT: one statement, all or nothing.
    await this.#read('recording audit events', async (db) => {
      await db.insertInto('audit').values(es.map((e) => ({
        time, kind: e.kind, token_id: e.token ?? null, address: e.address ?? null, host_id: e.host ?? null,
        version: e.version ?? null, bytes: e.bytes ?? null, result: e.result, detail: e.detail ?? null,
      }))).execute();
    });
  }

  async queryAudit(q: AuditQuery = {}): Promise<AuditEvent[]> {
    const limit = auditLimit(q);
    return this.#read('querying the audit log', async (db) => {
      let s = db.selectFrom('audit').selectAll().orderBy('id', 'desc').limit(limit);
      if (q.kind !== undefined) s = s.where('kind', '=', q.kind);
      if (q.host !== undefined) s = s.where('host_id', '=', q.host);
      if (q.token !== undefined) s = s.where('token_id', '=', q.token);
      if (q.result !== undefined) s = s.where('result', '=', q.result);
      if (q.since !== undefined) s = s.where('time', '>=', q.since);
      if (q.until !== undefined) s = s.where('time', '<', q.until);
      if (q.beforeId !== undefined) s = s.where('id', '<', q.beforeId);
      return (await s.execute()).map((r) => ({
        id: r.id, time: r.time, kind: r.kind as AuditKind, token: r.token_id, address: r.address, host: r.host_id,
        version: r.version, bytes: r.bytes, result: r.result, detail: r.detail,
      }));
    });
  }

  async openLog(l: { host: string; workflow: string; stamp: string; address?: string | null }): Promise<LogRecord> {
    checkLogName(l.workflow, 'workflow');
    checkLogName(l.stamp, 'stamp');
    return this.#write('opening a recovery log', async (db) => {
      await this.#host(db, l.host);
      const now = this.#time();
      const row = await db.insertInto('logs').values({
        host_id: l.host, workflow: l.workflow, stamp: l.stamp, address: l.address ?? null, started: now, updated: now, bytes: 0, complete: 0,
      }).returningAll().executeTakeFirstOrThrow();
      return toLog(row);
    });
  }

  async updateLog(id: number, bytes: number, complete: boolean): Promise<LogRecord> {
    checkCount(bytes, 'bytes');
    return this.#write('updating a recovery log', async (db) => {
      const row = await db.updateTable('logs').set({ bytes, complete: complete ? 1 : 0, updated: this.#time() })
        .where('id', '=', id).returningAll().executeTakeFirst();
      if (!row) throw new RuError('LOG_UNKNOWN', `no log ${id}`, { log: id });
      return toLog(row);
    });
  }

  async getLog(id: number): Promise<LogRecord | null> {
    return this.#read('reading a recovery log', async (db) => {
      const r = await db.selectFrom('logs').selectAll().where('id', '=', id).executeTakeFirst();
      return r ? toLog(r) : null;
    });
  }

  async listLogs(host: string): Promise<LogRecord[]> {
    return this.#read('listing recovery logs', async (db) =>
      (await db.selectFrom('logs').selectAll().where('host_id', '=', host).orderBy('id', 'desc').execute()).map(toLog));
  }

  async openRecovery(r: NewRecovery): Promise<Recovery> {
    const c = checkNewRecovery(r);
    return this.#write('opening a recovery', async (db) => {
      const now = this.#time();
      const row = await db.insertInto('recoveries').values({
        token_id: c.token, address: c.address, host_id: c.host, pending_id: null, log_id: null,
        facts: c.facts === null ? null : JSON.stringify(c.facts), hardware: c.hardware === null ? null : JSON.stringify(c.hardware),
        phase: 'resolving', started: now, updated: now, last_sign: now, ended: null, exit_status: null, error: null,
      }).returningAll().executeTakeFirstOrThrow();
      await db.insertInto('recovery_events').values({
        recovery_id: row.id, seq: 1, time: now, kind: 'booted', actor: c.token, message: '', detail: JSON.stringify(bootedDetail(c.address)),
      }).execute();
      return toRecovery(row);
    });
  }

  async getRecovery(id: number): Promise<Recovery | null> {
    return this.#read('reading a recovery', async (db) => {
      const r = await db.selectFrom('recoveries').selectAll().where('id', '=', id).executeTakeFirst();
      return r ? toRecovery(r) : null;
    });
  }

  async listRecoveries(q: RecoveryQuery = {}): Promise<Recovery[]> {
    const { limit } = checkRecoveryQuery(q);
    return this.#read('listing recoveries', async (db) => {
      let s = db.selectFrom('recoveries').selectAll().orderBy('id', 'desc').limit(limit);
      // ended is null exactly while the phase is active (the store keeps them together): index recoveries_active.
      if (q.active) s = s.where('ended', 'is', null);
      if (q.host !== undefined) s = s.where('host_id', '=', q.host);
      if (q.pending !== undefined) s = s.where('pending_id', '=', q.pending);
      if (q.beforeId !== undefined) s = s.where('id', '<', q.beforeId);
      return (await s.execute()).map(toRecovery);
    });
  }

  async appendRecoveryEvent(id: number, e: NewRecoveryEvent): Promise<{ recovery: Recovery; event: RecoveryEvent }> {
    const c = checkRecoveryEvent(e);
    // The recovery's row locked first: the next seq and the phase are read and written as one step, across processes too.
    return this.#write('recording a recovery event', async (db) => {
      const old = await db.selectFrom('recoveries').selectAll().where('id', '=', id).forNoKeyUpdate().executeTakeFirst();
      if (!old) throw unknownRecovery(id);
      const last = await db.selectFrom('recovery_events').select('seq').where('recovery_id', '=', id).orderBy('seq', 'desc').limit(1).executeTakeFirst();
      const now = this.#time();
      const event: RecoveryEvent = { recovery: id, seq: (last?.seq ?? 0) + 1, time: now, kind: c.kind, actor: c.actor, message: c.message, detail: c.detail };
      await db.insertInto('recovery_events').values({
        recovery_id: id, seq: event.seq, time: now, kind: c.kind, actor: c.actor, message: c.message, detail: JSON.stringify(c.detail),
      }).execute();
      const next = movedRecovery(toRecovery(old), c, now);
      await db.updateTable('recoveries').set({
        host_id: next.host, pending_id: next.pending, log_id: next.log, phase: next.phase, updated: next.updated, last_sign: next.lastSign,
        ended: next.ended, exit_status: next.exitStatus, error: next.error,
      }).where('id', '=', id).execute();
      return { recovery: next, event };
    });
  }

  async listRecoveryEvents(id: number, opts: { afterSeq?: number } = {}): Promise<RecoveryEvent[]> {
    if (opts.afterSeq !== undefined) checkCount(opts.afterSeq, 'afterSeq');
    return this.#read('listing recovery events', async (db) => {
      if (!await db.selectFrom('recoveries').select('id').where('id', '=', id).executeTakeFirst()) throw unknownRecovery(id);
      let s = db.selectFrom('recovery_events').selectAll().where('recovery_id', '=', id).orderBy('seq');
      if (opts.afterSeq !== undefined) s = s.where('seq', '>', opts.afterSeq);
      return (await s.execute()).map((r) => ({
        recovery: r.recovery_id, seq: r.seq, time: r.time, kind: r.kind as RecoveryEventKind, actor: r.actor, message: r.message,
        detail: JSON.parse(r.detail) as Record<string, unknown>,
      }));
    });
  }

  async noteRecoverySign(id: number): Promise<void> {
    // One UPDATE is atomic on its own; heartbeats and log bytes call this often.
    const r = await this.#read('recording a sign of life', (db) =>
      db.updateTable('recoveries').set({ last_sign: this.#time() }).where('id', '=', id).executeTakeFirst());
    if (r.numUpdatedRows === 0n) throw unknownRecovery(id);
  }

  async setHostLayout(l: HostLayout): Promise<void> {
    const c = checkHostLayout(l);
    await this.#write('storing a host layout', async (db) => {
      await this.#host(db, c.host);
      const disks = JSON.stringify(c.disks);
      await db.insertInto('host_layouts').values({ host_id: c.host, version: c.version, disks })
        .onConflict((oc) => oc.column('host_id').doUpdateSet({ version: c.version, disks })).execute();
    });
  }

  async listHostLayouts(): Promise<HostLayout[]> {
    return this.#read('listing host layouts', async (db) =>
      (await db.selectFrom('host_layouts').selectAll().orderBy('host_id').execute())
        .map((r) => ({ host: r.host_id, version: r.version, disks: JSON.parse(r.disks) as HostLayout['disks'] })));
  }

  async createSession(s: Omit<Session, 'lastSeen' | 'created'>): Promise<Session> {
    const c = checkNewSession(s);
    return this.#write('opening a session', async (db) => {
      if (!await db.selectFrom('tokens').select('id').where('id', '=', c.token).executeTakeFirst()) {
        throw new RuError('TOKEN_UNKNOWN', `no token ${JSON.stringify(c.token)}`, { token: c.token });
      }
      // The id is a secret's hash: the conflict names no value.
      if (await db.selectFrom('sessions').select('id').where('id', '=', c.id).executeTakeFirst()) throw new RuError('STORE_CONFLICT', 'the session exists already', { what: 'session' });
      const now = this.#time();
      const rec: Session = { ...c, created: now, lastSeen: now };
      await db.insertInto('sessions').values({
        id: rec.id, token_id: rec.token, csrf: rec.csrf, created: now, last_seen: now, expires: rec.expires, address: rec.address,
      }).execute();
      return rec;
    });
  }

  async getSession(id: string): Promise<Session | null> {
    return this.#read('reading a session', async (db) => {
      const r = await db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();
      return r ? { id: r.id, token: r.token_id, csrf: r.csrf, created: r.created, lastSeen: r.last_seen, expires: r.expires, address: r.address } : null;
    });
  }

  async touchSession(id: string): Promise<boolean> {
    const r = await this.#read('touching a session', (db) =>
      db.updateTable('sessions').set({ last_seen: this.#time() }).where('id', '=', id).executeTakeFirst());
    return r.numUpdatedRows > 0n;
  }

  async deleteSession(id: string): Promise<boolean> {
    const r = await this.#read('deleting a session', (db) => db.deleteFrom('sessions').where('id', '=', id).executeTakeFirst());
    return r.numDeletedRows > 0n;
  }

  async deleteStaleSessions(idleBefore: Iso): Promise<number> {
    checkIso(idleBefore, 'idleBefore');
    const now = this.#time();
    const r = await this.#read('deleting stale sessions', (db) =>
      db.deleteFrom('sessions').where((eb) => eb.or([eb('expires', '<=', now), eb('last_seen', '<', idleBefore)])).executeTakeFirst());
    return Number(r.numDeletedRows);
  }

  /**
   * What PostgreSQL can tell without extensions: rows whose foreign-key parent is missing (the
   * keys are enforced, but a session with session_replication_role = replica skips them) and
   * invalid indexes (a failed concurrent build) as `damaged`; then, as on SQLite, the versions of
   * every host and layer, identity sequences behind their largest id, and malformed log sizes.
   * PostgreSQL's page checksums and amcheck are the database administrator's, not this check's.
   */
  async check(): Promise<StoreProblem[]> {
    const out: StoreProblem[] = [];
    await this.#read('checking the metadata database', async (db) => {
      for (const fk of FOREIGN_KEYS) {
        const present = sql.join(fk.cols.map((c) => sql`c.${sql.ref(c)} is not null`), sql` and `);
        const joined = sql.join(fk.cols.map((c, i) => sql`p.${sql.ref(fk.refs[i]!)} = c.${sql.ref(c)}`), sql` and `);
        const { rows } = await sql<{ n: number }>`select count(*) as n from ${sql.table(fk.child)} c
          where ${present} and not exists (select 1 from ${sql.table(fk.parent)} p where ${joined})`.execute(db);
        const n = Number(rows[0]?.n ?? 0);
        if (n > 0) out.push({ kind: 'damaged', message: `PostgreSQL foreign key check: ${fk.child} has ${n} row${n === 1 ? '' : 's'} that refer${n === 1 ? 's' : ''} to a missing ${fk.parent} row` });
      }
      const invalid = await sql<{ name: string }>`select c.relname as name from pg_index i join pg_class c on c.oid = i.indexrelid
        join pg_namespace s on s.oid = c.relnamespace where s.nspname = current_schema() and not i.indisvalid order by 1`.execute(db);
      for (const r of invalid.rows) out.push({ kind: 'damaged', message: `PostgreSQL index ${r.name} is invalid (a failed build): REINDEX it` });

      const byHost = new Map<string, VersionFacts[]>();
      for (const v of await db.selectFrom('versions').select(['host_id', 'version', 'blob', 'size']).execute()) {
        const list = byHost.get(v.host_id) ?? [];
        list.push({ version: v.version, blob: v.blob, size: v.size });
        byHost.set(v.host_id, list);
      }
      for (const h of await db.selectFrom('hosts').select(['id', 'pinned']).orderBy('id').execute()) {
        out.push(...versionProblems(h.id, byHost.get(h.id) ?? [], h.pinned));
      }
      // PostgreSQL 15 has no json_valid that does not throw: the manifests are judged here.
      const byLayer = new Map<string, LayerVersionFacts[]>();
      for (const v of await db.selectFrom('layer_versions').select(['class', 'name', 'version', 'blob', 'size', 'manifest']).execute()) {
        const key = layerRef(v.class, v.name);
        const list = byLayer.get(key) ?? [];
        list.push({ version: v.version, blob: v.blob, size: v.size, manifestValid: isJsonText(v.manifest) });
        byLayer.set(key, list);
      }
      for (const l of await db.selectFrom('layers').select(['class', 'name', 'pinned']).orderBy('class').orderBy('name').execute()) {
        const key = layerRef(l.class, l.name);
        out.push(...layerProblems(key, byLayer.get(key) ?? [], l.pinned));
      }

      for (const table of ID_TABLES) {
        const { rows } = await sql<{ seq: number | null; max: number | null }>`select
          pg_sequence_last_value(pg_get_serial_sequence(${table}, 'id')::regclass)::int8 as seq,
          (select max(id) from ${sql.table(table)})::int8 as max`.execute(db);
        const { seq, max } = rows[0] ?? { seq: null, max: null };
        if (max !== null && (seq ?? 0) < max) {
          out.push({ kind: 'id-reused', message: `${table}: the id sequence (${seq ?? 'none'}) is behind the largest id ${max}: ids could be given twice` });
        }
      }
      for (const l of await db.selectFrom('logs').select(['id', 'host_id', 'bytes']).where('bytes', '<', 0).execute()) {
        out.push({ kind: 'log-invalid', host: l.host_id, message: `log ${l.id}: size ${l.bytes} is malformed` });
      }
    });
    return out;
  }

  async releaseBlobs(blobs: readonly string[], remove: (sha256: string) => Promise<unknown>): Promise<string[]> {
    // Exclusive: every publish (of a host or layer version) takes this lock shared before it
    // names a blob, in any process, so none names one between the question and the removal.
    return this.#write('releasing unreferenced blobs', async (db) => {
      await this.#lock(db, LOCK.blobs);
      const removed: string[] = [];
      for (const b of blobs) {
        const used = await db.selectFrom('versions').select('version').where('blob', '=', b).limit(1).executeTakeFirst()
          ?? await db.selectFrom('layer_versions').select('version').where('blob', '=', b).limit(1).executeTakeFirst();
        if (used) continue;
        await remove(b);
        removed.push(b);
      }
      return removed;
    }, { once: true });
  }

  async close(): Promise<void> {
    await this.#db.destroy();
  }
}
