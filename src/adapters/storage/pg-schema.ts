// The PostgreSQL schema of the metadata store: the same tables, columns and keys as SQLite's
// (sqlite-schema.ts, whose Kysely table types this store shares), under the same migration
// names, so a database made by a version migrates identically on either backend. Written fresh
// for PostgreSQL rather than shared, because what SQLite needs (AUTOINCREMENT, steps that check
// what a crash half-way left) PostgreSQL does otherwise: ids are identity columns, and every
// migration runs in one transaction with Kysely's Migrator holding an advisory lock, so a crash
// leaves nothing half-done and two servers starting at once migrate once. Append new
// migrations; never edit one that has shipped.

import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

export type { Schema } from './sqlite-schema.ts';
export { MIGRATION_LOCK_TABLE, MIGRATION_TABLE } from './sqlite-schema.ts';

// Migrations see the database as it was when they were written, hence Kysely<any>.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

/**
 * Text compares and sorts byte by byte (collation "C"), as in SQLite and the in-memory store,
 * whatever locale the database was created with: ids list in the same order on every backend,
 * and ISO times compare as times.
 */
const TEXT = sql`text collate "C"`;

// Times are ISO 8601 text (Date#toISOString, always UTC with milliseconds) as in SQLite: they
// sort as text, and the interface hands them out as such. Sizes and ids are bigint (64 bits as
// SQLite's integers; read as numbers: pg-metadata.ts parses int8), ids identity columns whose
// sequences never give an id twice.

const m0001: Migration = {
  async up(db: AnyDb) {
    await db.schema.createTable('hosts')
      .addColumn('id', TEXT, (c) => c.primaryKey())
      .addColumn('class', TEXT)
      .addColumn('uuid', TEXT)
      .addColumn('serial', TEXT)
      .addColumn('pinned', 'integer')
      .addColumn('created', TEXT, (c) => c.notNull())
      .execute();
    await db.schema.createIndex('hosts_uuid').on('hosts').column('uuid').execute();
    await db.schema.createIndex('hosts_serial').on('hosts').column('serial').execute();
    await db.schema.createIndex('hosts_class').on('hosts').column('class').execute();

    await db.schema.createTable('host_macs')
      .addColumn('mac', TEXT, (c) => c.primaryKey())
      .addColumn('host_id', TEXT, (c) => c.notNull().references('hosts.id').onDelete('cascade'))
      .execute();
    await db.schema.createIndex('host_macs_host').on('host_macs').column('host_id').execute();

    await db.schema.createTable('host_names')
      .addColumn('hostname', TEXT, (c) => c.notNull())
      .addColumn('host_id', TEXT, (c) => c.notNull().references('hosts.id').onDelete('cascade'))
      .addPrimaryKeyConstraint('host_names_pk', ['hostname', 'host_id'])
      .execute();
    await db.schema.createIndex('host_names_host').on('host_names').column('host_id').execute();

    await db.schema.createTable('versions')
      .addColumn('host_id', TEXT, (c) => c.notNull().references('hosts.id'))
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('blob', TEXT, (c) => c.notNull())
      .addColumn('digest', TEXT, (c) => c.notNull())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('manifest', TEXT, (c) => c.notNull())
      .addColumn('created', TEXT, (c) => c.notNull())
      .addColumn('publisher', TEXT)
      // The safety net under the store's atomic numbering: a number is never given twice.
      .addPrimaryKeyConstraint('versions_pk', ['host_id', 'version'])
      .execute();
    await db.schema.createIndex('versions_blob').on('versions').column('blob').execute();

    await db.schema.createTable('tokens')
      .addColumn('id', TEXT, (c) => c.primaryKey())
      .addColumn('secret_hash', TEXT, (c) => c.notNull())
      .addColumn('scope', TEXT, (c) => c.notNull())
      .addColumn('label', TEXT)
      .addColumn('created', TEXT, (c) => c.notNull())
      .addColumn('revoked', TEXT)
      .execute();

    await db.schema.createTable('pending')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedByDefaultAsIdentity())
      .addColumn('facts_key', TEXT, (c) => c.notNull())
      .addColumn('facts', TEXT, (c) => c.notNull())
      .addColumn('address', TEXT)
      .addColumn('first_seen', TEXT, (c) => c.notNull())
      .addColumn('last_seen', TEXT, (c) => c.notNull())
      .addColumn('assigned_host', TEXT, (c) => c.references('hosts.id'))
      .addColumn('assigned', TEXT)
      .execute();
    await db.schema.createIndex('pending_key').on('pending').column('facts_key').execute();
    await db.schema.createTable('pending_macs')
      .addColumn('pending_id', 'bigint', (c) => c.notNull().references('pending.id').onDelete('cascade'))
      .addColumn('mac', TEXT, (c) => c.notNull())
      .addPrimaryKeyConstraint('pending_macs_pk', ['mac', 'pending_id'])
      .execute();

    await db.schema.createTable('audit')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedByDefaultAsIdentity())
      .addColumn('time', TEXT, (c) => c.notNull())
      .addColumn('kind', TEXT, (c) => c.notNull())
      .addColumn('token_id', TEXT)
      .addColumn('address', TEXT)
      .addColumn('host_id', TEXT)
      .addColumn('version', 'integer')
      .addColumn('bytes', 'bigint')
      .addColumn('result', TEXT, (c) => c.notNull())
      .addColumn('detail', TEXT)
      .execute();
    await db.schema.createIndex('audit_time').on('audit').column('time').execute();
    await db.schema.createIndex('audit_host').on('audit').columns(['host_id', 'id']).execute();
    await db.schema.createIndex('audit_kind').on('audit').columns(['kind', 'id']).execute();
    await db.schema.createIndex('audit_token').on('audit').columns(['token_id', 'id']).execute();

    await db.schema.createTable('logs')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedByDefaultAsIdentity())
      .addColumn('host_id', TEXT, (c) => c.notNull().references('hosts.id'))
      .addColumn('workflow', TEXT, (c) => c.notNull())
      .addColumn('stamp', TEXT, (c) => c.notNull())
      .addColumn('address', TEXT)
      .addColumn('started', TEXT, (c) => c.notNull())
      .addColumn('updated', TEXT, (c) => c.notNull())
      .addColumn('bytes', 'bigint', (c) => c.notNull())
      .addColumn('complete', 'integer', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('logs_host').on('logs').columns(['host_id', 'id']).execute();
  },
};

/** Token expiry, use limits and last use; the pending limits' bookkeeping (as SQLite's 0002). */
const m0002: Migration = {
  async up(db: AnyDb) {
    await db.schema.alterTable('tokens')
      .addColumn('expires', TEXT)
      .addColumn('uses', 'integer')
      .addColumn('used', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('last_used', TEXT)
      .addColumn('last_address', TEXT)
      .execute();
    await db.schema.createTable('token_uses')
      .addColumn('token_id', TEXT, (c) => c.notNull().references('tokens.id').onDelete('cascade'))
      .addColumn('download', TEXT, (c) => c.notNull())
      .addColumn('time', TEXT, (c) => c.notNull())
      .addPrimaryKeyConstraint('token_uses_pk', ['token_id', 'download'])
      .execute();
    await db.schema.alterTable('pending').addColumn('token_id', TEXT).addColumn('origin', TEXT).execute();
    await db.updateTable('pending').set((eb) => ({ origin: eb.ref('address') })).where('origin', 'is', null).execute();
    await db.schema.createIndex('pending_seen').on('pending').column('last_seen').execute();
  },
};

/** Hardware-class layers and their versions (as SQLite's 0003). */
const m0003: Migration = {
  async up(db: AnyDb) {
    await db.schema.createTable('layers')
      .addColumn('class', TEXT, (c) => c.notNull())
      .addColumn('name', TEXT, (c) => c.notNull())
      .addColumn('priority', 'integer', (c) => c.notNull())
      .addColumn('pinned', 'integer')
      .addColumn('created', TEXT, (c) => c.notNull())
      .addPrimaryKeyConstraint('layers_pk', ['class', 'name'])
      .execute();
    await db.schema.createTable('layer_versions')
      .addColumn('class', TEXT, (c) => c.notNull())
      .addColumn('name', TEXT, (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('blob', TEXT, (c) => c.notNull())
      .addColumn('digest', TEXT, (c) => c.notNull())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('manifest', TEXT, (c) => c.notNull())
      .addColumn('created', TEXT, (c) => c.notNull())
      .addColumn('publisher', TEXT)
      .addPrimaryKeyConstraint('layer_versions_pk', ['class', 'name', 'version'])
      .addForeignKeyConstraint('layer_versions_layer_fk', ['class', 'name'], 'layers', ['class', 'name'])
      .execute();
    await db.schema.createIndex('layer_versions_blob').on('layer_versions').column('blob').execute();
  },
};

/** Recoveries and their events, host layouts and console sessions (as SQLite's 0004). */
const m0004: Migration = {
  async up(db: AnyDb) {
    await db.schema.createTable('recoveries')
      .addColumn('id', 'bigint', (c) => c.primaryKey().generatedByDefaultAsIdentity())
      .addColumn('token_id', TEXT)
      .addColumn('address', TEXT)
      .addColumn('host_id', TEXT)
      .addColumn('pending_id', 'bigint')
      .addColumn('log_id', 'bigint')
      .addColumn('facts', TEXT)
      .addColumn('hardware', TEXT)
      .addColumn('phase', TEXT, (c) => c.notNull())
      .addColumn('started', TEXT, (c) => c.notNull())
      .addColumn('updated', TEXT, (c) => c.notNull())
      .addColumn('last_sign', TEXT, (c) => c.notNull())
      .addColumn('ended', TEXT)
      .addColumn('exit_status', 'integer')
      .addColumn('error', TEXT)
      .execute();
    await db.schema.createIndex('recoveries_host').on('recoveries').columns(['host_id', 'id']).execute();
    await db.schema.createIndex('recoveries_pending').on('recoveries').columns(['pending_id', 'id']).execute();
    await db.schema.createIndex('recoveries_active').on('recoveries').column('id').where(sql.ref('ended'), 'is', null).execute();

    await db.schema.createTable('recovery_events')
      .addColumn('recovery_id', 'bigint', (c) => c.notNull().references('recoveries.id'))
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('time', TEXT, (c) => c.notNull())
      .addColumn('kind', TEXT, (c) => c.notNull())
      .addColumn('actor', TEXT)
      .addColumn('message', TEXT, (c) => c.notNull())
      .addColumn('detail', TEXT, (c) => c.notNull())
      .addPrimaryKeyConstraint('recovery_events_pk', ['recovery_id', 'seq'])
      .execute();

    await db.schema.createTable('host_layouts')
      .addColumn('host_id', TEXT, (c) => c.primaryKey().references('hosts.id'))
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('disks', TEXT, (c) => c.notNull())
      .execute();

    await db.schema.createTable('sessions')
      .addColumn('id', TEXT, (c) => c.primaryKey())
      .addColumn('token_id', TEXT, (c) => c.notNull().references('tokens.id').onDelete('cascade'))
      .addColumn('csrf', TEXT, (c) => c.notNull())
      .addColumn('created', TEXT, (c) => c.notNull())
      .addColumn('last_seen', TEXT, (c) => c.notNull())
      .addColumn('expires', TEXT, (c) => c.notNull())
      .addColumn('address', TEXT)
      .execute();
    await db.schema.createIndex('sessions_expires').on('sessions').column('expires').execute();
    await db.schema.createIndex('sessions_seen').on('sessions').column('last_seen').execute();
  },
};

/**
 * Bundle bytes in PostgreSQL (`--blobs postgres`, pg-blobs.ts); PostgreSQL only: SQLite's blobs
 * stay in the data directory. A blob is its chunks (1 MiB each, in order from n = 0) plus its
 * `blobs` row, all committed in one transaction, so a blob is visible whole or not at all. The
 * chunks are tar.gz bytes already: stored out of line without another compression attempt
 * (storage external). `created` is the database's clock, shared by every server instance, so
 * blob ages (the grace period of `admin fsck --gc`) do not depend on one machine's clock.
 */
const m0005: Migration = {
  async up(db: AnyDb) {
    await db.schema.createTable('blobs')
      .addColumn('sha256', TEXT, (c) => c.primaryKey())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('created', 'timestamptz', (c) => c.notNull().defaultTo(sql`clock_timestamp()`))
      .execute();
    await db.schema.createTable('blob_chunks')
      .addColumn('sha256', TEXT, (c) => c.notNull())
      .addColumn('n', 'integer', (c) => c.notNull())
      .addColumn('data', 'bytea', (c) => c.notNull())
      .addPrimaryKeyConstraint('blob_chunks_pk', ['sha256', 'n'])
      .execute();
    await sql`alter table blob_chunks alter column data set storage external`.execute(db);
  },
};

/**
 * Recovery log bytes in PostgreSQL (with `--blobs postgres`, pg-logs.ts), so that a log one
 * instance receives is read and followed on every other. PostgreSQL only, like 0005: SQLite's
 * logs stay in the data directory. A log is its chunks, keyed by the byte offset each starts at;
 * the logs row (0001) stays the index. No foreign key: a chunk is written before the index row
 * counts it, and the store check compares the two.
 */
const m0005LogChunks: Migration = {
  async up(db: AnyDb) {
    await db.schema.createTable('log_chunks')
      .addColumn('log_id', 'bigint', (c) => c.notNull())
      .addColumn('offset', 'bigint', (c) => c.notNull())
      .addColumn('data', 'bytea', (c) => c.notNull())
      .addPrimaryKeyConstraint('log_chunks_pk', ['log_id', 'offset'])
      .execute();
  },
};

/**
 * Every migration, by name: the same names as SQLite's (sqlite-schema.ts MIGRATIONS), plus
 * those of PG_ONLY_MIGRATIONS. A migration shared with SQLite that comes later must sort after
 * every PostgreSQL-only one (Kysely refuses a new migration that sorts before an applied one):
 * the next shared one is 0006.
 */
export const PG_MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_initial': m0001,
  '0002_token_limits': m0002,
  '0003_layers': m0003,
  '0004_recoveries': m0004,
  '0005_blobs': m0005,
  '0005_log_chunks': m0005LogChunks,
};

/** Migrations SQLite has no counterpart of: its blobs and logs live in the data directory. */
export const PG_ONLY_MIGRATIONS: ReadonlySet<string> = new Set(['0005_blobs', '0005_log_chunks']);

export const pgMigrationProvider: MigrationProvider = {
  getMigrations: async () => ({ ...PG_MIGRATIONS }),
};

/** The tables whose ids come from an identity sequence (check(): id-reused). */
export const ID_TABLES = ['audit', 'pending', 'logs', 'recoveries'] as const;

/**
 * Every foreign key, as (child table, column(s), parent table, column(s)). PostgreSQL enforces
 * them, but a session with session_replication_role = replica (a restore, a replication tool)
 * skips the checks: check() looks for rows whose parent is missing, as SQLite's
 * foreign_key_check does.
 */
export const FOREIGN_KEYS: readonly { child: string; cols: readonly string[]; parent: string; refs: readonly string[] }[] = [
  { child: 'host_macs', cols: ['host_id'], parent: 'hosts', refs: ['id'] },
  { child: 'host_names', cols: ['host_id'], parent: 'hosts', refs: ['id'] },
  { child: 'versions', cols: ['host_id'], parent: 'hosts', refs: ['id'] },
  { child: 'pending', cols: ['assigned_host'], parent: 'hosts', refs: ['id'] },
  { child: 'pending_macs', cols: ['pending_id'], parent: 'pending', refs: ['id'] },
  { child: 'logs', cols: ['host_id'], parent: 'hosts', refs: ['id'] },
  { child: 'token_uses', cols: ['token_id'], parent: 'tokens', refs: ['id'] },
  { child: 'layer_versions', cols: ['class', 'name'], parent: 'layers', refs: ['class', 'name'] },
  { child: 'recovery_events', cols: ['recovery_id'], parent: 'recoveries', refs: ['id'] },
  { child: 'host_layouts', cols: ['host_id'], parent: 'hosts', refs: ['id'] },
  { child: 'sessions', cols: ['token_id'], parent: 'tokens', refs: ['id'] },
];
