// The SQL schema of the metadata store, as Kysely table types plus the migrations that build
// it. Migrations live in code (a MigrationProvider object, not files on disk) so they travel
// inside a bundled server. Append new migrations; never edit one that has shipped.
// The DDL is Kysely's schema builder, kept to what SQLite and PostgreSQL both accept.

import { sql, type Generated, type Kysely, type Migration, type MigrationProvider } from 'kysely';

export interface HostsTable {
  id: string;
  class: string | null;
  uuid: string | null;
  serial: string | null;
  pinned: number | null;
  created: string;
}

export interface HostMacsTable {
  mac: string;
  host_id: string;
}

export interface HostNamesTable {
  hostname: string;
  host_id: string;
}

export interface VersionsTable {
  host_id: string;
  version: number;
  blob: string;
  digest: string;
  size: number;
  manifest: string;
  created: string;
  publisher: string | null;
}

export interface TokensTable {
  id: string;
  secret_hash: string;
  scope: string;
  label: string | null;
  created: string;
  revoked: string | null;
  // Since 0002_token_limits:
  expires: string | null;
  uses: number | null;
  used: number;
  last_used: string | null;
  last_address: string | null;
}

/** The downloads a limited token's uses were spent on (0002_token_limits). */
export interface TokenUsesTable {
  token_id: string;
  /** The server's opaque name of one download: a resume of it costs no second use. */
  download: string;
  time: string;
}

export interface PendingTable {
  id: Generated<number>;
  facts_key: string;
  /** CanonicalFacts as JSON. */
  facts: string;
  address: string | null;
  first_seen: string;
  last_seen: string;
  assigned_host: string | null;
  assigned: string | null;
  // Since 0002_token_limits: who first reported the machine, for the pending limits.
  token_id: string | null;
  /** The address it was first reported from (address is the latest one). */
  origin: string | null;
}

export interface PendingMacsTable {
  pending_id: number;
  mac: string;
}

export interface AuditTable {
  id: Generated<number>;
  time: string;
  kind: string;
  token_id: string | null;
  address: string | null;
  /** No foreign key: refusals for unknown hosts are audited too. */
  host_id: string | null;
  version: number | null;
  bytes: number | null;
  result: string;
  detail: string | null;
}

export interface LogsTable {
  id: Generated<number>;
  host_id: string;
  workflow: string;
  stamp: string;
  address: string | null;
  started: string;
  updated: string;
  bytes: number;
  complete: number;
}

/** A hardware-class layer (0003_layers); class '*' is every class. */
export interface LayersTable {
  class: string;
  name: string;
  priority: number;
  pinned: number | null;
  created: string;
}

/** A layer's versions (0003_layers), numbered as a host's. */
export interface LayerVersionsTable {
  class: string;
  name: string;
  version: number;
  blob: string;
  digest: string;
  size: number;
  manifest: string;
  created: string;
  publisher: string | null;
}

/** One rescue boot talking to the server (0004_recoveries); core/recovery.ts moves its phase. */
export interface RecoveriesTable {
  id: Generated<number>;
  /** No foreign keys to tokens, hosts, pending or logs: a recovery is history and outlives a forgotten pending record. */
  token_id: string | null;
  address: string | null;
  host_id: string | null;
  pending_id: number | null;
  log_id: number | null;
  /** CanonicalFacts as JSON. */
  facts: string | null;
  /** Hardware as JSON. */
  hardware: string | null;
  phase: string;
  started: string;
  updated: string;
  last_sign: string;
  /** Set exactly while the phase is done or failed: "active" is ended is null (index recoveries_active). */
  ended: string | null;
  exit_status: number | null;
  error: string | null;
}

export interface RecoveryEventsTable {
  recovery_id: number;
  seq: number;
  time: string;
  kind: string;
  actor: string | null;
  message: string;
  /** A JSON object. */
  detail: string;
}

/** The disks of a host's newest disklayout.conf (0004_recoveries), for match hints. */
export interface HostLayoutsTable {
  host_id: string;
  version: number;
  /** [{device, size}] as JSON. */
  disks: string;
}

/** A signed-in console browser (0004_recoveries); id is the sha256 of the cookie's secret. */
export interface SessionsTable {
  id: string;
  token_id: string;
  csrf: string;
  created: string;
  last_seen: string;
  expires: string;
  address: string | null;
}

export interface Schema {
  hosts: HostsTable;
  host_macs: HostMacsTable;
  host_names: HostNamesTable;
  versions: VersionsTable;
  tokens: TokensTable;
  token_uses: TokenUsesTable;
  pending: PendingTable;
  pending_macs: PendingMacsTable;
  audit: AuditTable;
  logs: LogsTable;
  layers: LayersTable;
  layer_versions: LayerVersionsTable;
  recoveries: RecoveriesTable;
  recovery_events: RecoveryEventsTable;
  host_layouts: HostLayoutsTable;
  sessions: SessionsTable;
}

// Migrations see the database as it was when they were written, hence Kysely<any>.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDb = Kysely<any>;

const m0001: Migration = {
  async up(db: AnyDb) {
    await db.schema.createTable('hosts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('class', 'text')
      .addColumn('uuid', 'text')
      .addColumn('serial', 'text')
      .addColumn('pinned', 'integer')
      .addColumn('created', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('hosts_uuid').on('hosts').column('uuid').execute();
    await db.schema.createIndex('hosts_serial').on('hosts').column('serial').execute();
    await db.schema.createIndex('hosts_class').on('hosts').column('class').execute();

    await db.schema.createTable('host_macs')
      .addColumn('mac', 'text', (c) => c.primaryKey())
      .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id').onDelete('cascade'))
      .execute();
    await db.schema.createIndex('host_macs_host').on('host_macs').column('host_id').execute();

    await db.schema.createTable('host_names')
      .addColumn('hostname', 'text', (c) => c.notNull())
      .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id').onDelete('cascade'))
      .addPrimaryKeyConstraint('host_names_pk', ['hostname', 'host_id'])
      .execute();
    await db.schema.createIndex('host_names_host').on('host_names').column('host_id').execute();

    await db.schema.createTable('versions')
      .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id'))
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('blob', 'text', (c) => c.notNull())
      .addColumn('digest', 'text', (c) => c.notNull())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('manifest', 'text', (c) => c.notNull())
      .addColumn('created', 'text', (c) => c.notNull())
      .addColumn('publisher', 'text')
      // The safety net under the store's atomic numbering: a number is never given twice.
      .addPrimaryKeyConstraint('versions_pk', ['host_id', 'version'])
      .execute();
    await db.schema.createIndex('versions_blob').on('versions').column('blob').execute();

    await db.schema.createTable('tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('secret_hash', 'text', (c) => c.notNull())
      .addColumn('scope', 'text', (c) => c.notNull())
      .addColumn('label', 'text')
      .addColumn('created', 'text', (c) => c.notNull())
      .addColumn('revoked', 'text')
      .execute();

    await db.schema.createTable('pending')
      .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('facts_key', 'text', (c) => c.notNull())
      .addColumn('facts', 'text', (c) => c.notNull())
      .addColumn('address', 'text')
      .addColumn('first_seen', 'text', (c) => c.notNull())
      .addColumn('last_seen', 'text', (c) => c.notNull())
      .addColumn('assigned_host', 'text', (c) => c.references('hosts.id'))
      .addColumn('assigned', 'text')
      .execute();
    await db.schema.createIndex('pending_key').on('pending').column('facts_key').execute();
    await db.schema.createTable('pending_macs')
      .addColumn('pending_id', 'integer', (c) => c.notNull().references('pending.id').onDelete('cascade'))
      .addColumn('mac', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('pending_macs_pk', ['mac', 'pending_id'])
      .execute();

    await db.schema.createTable('audit')
      .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('time', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('token_id', 'text')
      .addColumn('address', 'text')
      .addColumn('host_id', 'text')
      .addColumn('version', 'integer')
      .addColumn('bytes', 'bigint')
      .addColumn('result', 'text', (c) => c.notNull())
      .addColumn('detail', 'text')
      .execute();
    await db.schema.createIndex('audit_time').on('audit').column('time').execute();
    await db.schema.createIndex('audit_host').on('audit').columns(['host_id', 'id']).execute();
    await db.schema.createIndex('audit_kind').on('audit').columns(['kind', 'id']).execute();
    await db.schema.createIndex('audit_token').on('audit').columns(['token_id', 'id']).execute();

    await db.schema.createTable('logs')
      .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id'))
      .addColumn('workflow', 'text', (c) => c.notNull())
      .addColumn('stamp', 'text', (c) => c.notNull())
      .addColumn('address', 'text')
      .addColumn('started', 'text', (c) => c.notNull())
      .addColumn('updated', 'text', (c) => c.notNull())
      .addColumn('bytes', 'bigint', (c) => c.notNull())
      .addColumn('complete', 'integer', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('logs_host').on('logs').columns(['host_id', 'id']).execute();
  },
};

/**
 * Token expiry, use limits and last use; the pending limits' bookkeeping. Existing tokens keep
 * working unchanged (no expiry, no limit); existing pending records count as first reported
 * from their last address. Written to be run again after a crash half-way (SQLite runs DDL
 * outside a transaction here): each step checks whether it is done.
 */
const m0002: Migration = {
  async up(db: AnyDb) {
    const tables = await db.introspection.getTables();
    const has = (table: string, column: string): boolean =>
      tables.some((t) => t.name === table && t.columns.some((c) => c.name === column));
    const add = async (table: string, column: string, type: 'text' | 'integer', notNullDefault?: number): Promise<void> => {
      if (has(table, column)) return;
      await db.schema.alterTable(table)
        .addColumn(column, type, (c) => (notNullDefault === undefined ? c : c.notNull().defaultTo(notNullDefault)))
        .execute();
    };
    await add('tokens', 'expires', 'text');
    await add('tokens', 'uses', 'integer');
    await add('tokens', 'used', 'integer', 0);
    await add('tokens', 'last_used', 'text');
    await add('tokens', 'last_address', 'text');
    await db.schema.createTable('token_uses').ifNotExists()
      .addColumn('token_id', 'text', (c) => c.notNull().references('tokens.id').onDelete('cascade'))
      .addColumn('download', 'text', (c) => c.notNull())
      .addColumn('time', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('token_uses_pk', ['token_id', 'download'])
      .execute();
    await add('pending', 'token_id', 'text');
    await add('pending', 'origin', 'text');
    await db.updateTable('pending').set((eb) => ({ origin: eb.ref('address') })).where('origin', 'is', null).execute();
    // The limits count open records seen lately: a range of last_seen.
    await db.schema.createIndex('pending_seen').ifNotExists().on('pending').column('last_seen').execute();
  },
};

/**
 * Hardware-class layers and their versions. Only new tables and indexes, each created if it
 * is not there, so it can run again after a crash half-way through it as 0002 can.
 */
const m0003: Migration = {
  async up(db: AnyDb) {
    await db.schema.createTable('layers').ifNotExists()
      .addColumn('class', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('priority', 'integer', (c) => c.notNull())
      .addColumn('pinned', 'integer')
      .addColumn('created', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('layers_pk', ['class', 'name'])
      .execute();
    await db.schema.createTable('layer_versions').ifNotExists()
      .addColumn('class', 'text', (c) => c.notNull())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('blob', 'text', (c) => c.notNull())
      .addColumn('digest', 'text', (c) => c.notNull())
      .addColumn('size', 'bigint', (c) => c.notNull())
      .addColumn('manifest', 'text', (c) => c.notNull())
      .addColumn('created', 'text', (c) => c.notNull())
      .addColumn('publisher', 'text')
      // As versions_pk: a number is never given twice; it also finds a layer's latest version.
      .addPrimaryKeyConstraint('layer_versions_pk', ['class', 'name', 'version'])
      .addForeignKeyConstraint('layer_versions_layer_fk', ['class', 'name'], 'layers', ['class', 'name'])
      .execute();
    // releaseBlobs asks, for each blob, whether a layer version names it.
    await db.schema.createIndex('layer_versions_blob').ifNotExists().on('layer_versions').column('blob').execute();
  },
};

/**
 * Recoveries and their events, host layouts and console sessions. Only new tables and indexes,
 * each created if it is not there, so it can run again after a crash half-way through it.
 */
const m0004: Migration = {
  async up(db: AnyDb) {
    await db.schema.createTable('recoveries').ifNotExists()
      // AUTOINCREMENT: an id is never given again, so a link to a recovery never names another.
      .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('token_id', 'text')
      .addColumn('address', 'text')
      .addColumn('host_id', 'text')
      .addColumn('pending_id', 'integer')
      .addColumn('log_id', 'integer')
      .addColumn('facts', 'text')
      .addColumn('hardware', 'text')
      .addColumn('phase', 'text', (c) => c.notNull())
      .addColumn('started', 'text', (c) => c.notNull())
      .addColumn('updated', 'text', (c) => c.notNull())
      .addColumn('last_sign', 'text', (c) => c.notNull())
      .addColumn('ended', 'text')
      .addColumn('exit_status', 'integer')
      .addColumn('error', 'text')
      .execute();
    // Listing is newest first (the primary key) and filters by host, by pending machine, or to
    // the active ones: each index ends in id so the newest-first order needs no sort.
    await db.schema.createIndex('recoveries_host').ifNotExists().on('recoveries').columns(['host_id', 'id']).execute();
    await db.schema.createIndex('recoveries_pending').ifNotExists().on('recoveries').columns(['pending_id', 'id']).execute();
    // Partial: the incident view reads the few active recoveries among the many ended ones.
    await db.schema.createIndex('recoveries_active').ifNotExists().on('recoveries').column('id').where(sql.ref('ended'), 'is', null).execute();

    await db.schema.createTable('recovery_events').ifNotExists()
      .addColumn('recovery_id', 'integer', (c) => c.notNull().references('recoveries.id'))
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('time', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('actor', 'text')
      .addColumn('message', 'text', (c) => c.notNull())
      .addColumn('detail', 'text', (c) => c.notNull())
      // As versions_pk: the safety net under the store's numbering; it also orders a timeline.
      .addPrimaryKeyConstraint('recovery_events_pk', ['recovery_id', 'seq'])
      .execute();

    await db.schema.createTable('host_layouts').ifNotExists()
      .addColumn('host_id', 'text', (c) => c.primaryKey().references('hosts.id'))
      .addColumn('version', 'integer', (c) => c.notNull())
      .addColumn('disks', 'text', (c) => c.notNull())
      .execute();

    await db.schema.createTable('sessions').ifNotExists()
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('token_id', 'text', (c) => c.notNull().references('tokens.id').onDelete('cascade'))
      .addColumn('csrf', 'text', (c) => c.notNull())
      .addColumn('created', 'text', (c) => c.notNull())
      .addColumn('last_seen', 'text', (c) => c.notNull())
      .addColumn('expires', 'text', (c) => c.notNull())
      .addColumn('address', 'text')
      .execute();
    // deleteStaleSessions deletes by either time.
    await db.schema.createIndex('sessions_expires').ifNotExists().on('sessions').column('expires').execute();
    await db.schema.createIndex('sessions_seen').ifNotExists().on('sessions').column('last_seen').execute();
  },
};

/** Every migration, by name; names sort in the order they must run. */
export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_initial': m0001,
  '0002_token_limits': m0002,
  '0003_layers': m0003,
  '0004_recoveries': m0004,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => ({ ...MIGRATIONS }),
};

export const MIGRATION_TABLE = 'ru_migration';
export const MIGRATION_LOCK_TABLE = 'ru_migration_lock';
