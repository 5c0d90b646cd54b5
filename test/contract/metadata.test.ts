// Runs the metadata contract against every backend (memory, SQLite, and PostgreSQL on a private
// cluster of the real server: test/support/postgres.ts), plus what only SQLite has: a schema that
// migrates once and refuses a newer one, foreign errors translated, and version and recovery
// event numbering that stays consecutive when several processes write into one database file.
// And what only PostgreSQL has: several stores (pools, processes) on one database, migrations
// raced by stores opened at once, check() on a database changed behind its back, an outage.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import { MemoryMetadataStore } from '../../src/adapters/storage/memory-metadata.ts';
import { openPgMetadata } from '../../src/adapters/storage/pg-metadata.ts';
import { PG_MIGRATIONS, PG_ONLY_MIGRATIONS } from '../../src/adapters/storage/pg-schema.ts';
import { openSqliteMetadata } from '../../src/adapters/storage/sqlite-metadata.ts';
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE, MIGRATIONS } from '../../src/adapters/storage/sqlite-schema.ts';
import { isRuError } from '../../src/core/errors.ts';
import type { MetadataStore } from '../../src/core/store/metadata.ts';
import { usePgCluster } from '../support/postgres.ts';
import { layerVersion, metadataContract, rejectsWith, sha } from './metadata.contract.ts';

const REPO = resolve(import.meta.dirname, '../..');
const tempDir = (): string => mkdtempSync(join(tmpdir(), 'ru-meta-'));

metadataContract('memory', async (opts) => {
  const store = new MemoryMetadataStore(opts);
  return { store, cleanup: () => store.close() };
});

metadataContract('sqlite', async (opts) => {
  const dir = tempDir();
  const file = join(dir, 'meta.sqlite');
  let current: MetadataStore = await openSqliteMetadata(file, opts);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await openSqliteMetadata(file, opts);
      return current;
    },
    cleanup: async () => {
      await current.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

// One cluster for this file; a fresh database per test, so each starts from an empty store.
const pgCluster = usePgCluster();
metadataContract('postgres', async (opts) => {
  const url = await pgCluster().createDatabase('contract');
  let current: MetadataStore = await openPgMetadata(url, opts);
  return {
    store: current,
    reopen: async () => {
      await current.close();
      current = await openPgMetadata(url, opts);
      return current;
    },
    cleanup: () => current.close(),
  };
});

describe('sqlite metadata: schema, files and processes', () => {
  test('migrations run once: reopening applies nothing and keeps one row per migration', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      for (let i = 0; i < 3; i++) await (await openSqliteMetadata(file)).close();
      const db = new Database(file, { readonly: true });
      const rows = db.prepare(`select name from ${MIGRATION_TABLE} order by name`).all() as { name: string }[];
      assert.deepEqual(rows.map((r) => r.name), Object.keys(MIGRATIONS).sort());
      assert.equal((db.pragma('journal_mode', { simple: true }) as string).toLowerCase(), 'wal');
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a database migrated by a newer rear-update is refused with STORE_SCHEMA', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      await (await openSqliteMetadata(file)).close();
      const db = new Database(file);
      db.prepare(`insert into ${MIGRATION_TABLE} (name, timestamp) values (?, ?)`).run('9999_from_the_future', new Date().toISOString());
      db.close();
      await rejectsWith(openSqliteMetadata(file), 'STORE_SCHEMA');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a database of the first schema (0001, before token limits) opens migrated and keeps its tokens and pending machines', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      // What the previous release made: only the migrations it knew.
      const old = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new Database(file) }) });
      const only0001 = { getMigrations: async () => ({ '0001_initial': MIGRATIONS['0001_initial']! }) };
      const { error } = await new Migrator({ db: old, provider: only0001, migrationTableName: MIGRATION_TABLE, migrationLockTableName: MIGRATION_LOCK_TABLE }).migrateToLatest();
      assert.equal(error, undefined);
      await old.destroy();
      const raw = new Database(file);
      raw.prepare(`insert into tokens (id, secret_hash, scope, label, created, revoked) values ('adm', 'h1', 'admin', 'first start', '2025-06-01T00:00:00.000Z', null), ('gone', 'h2', 'fetch:h', null, '2025-06-02T00:00:00.000Z', '2025-06-03T00:00:00.000Z')`).run();
      raw.prepare(`insert into pending (facts_key, facts, address, first_seen, last_seen, assigned_host, assigned) values ('mac=aa:bb:cc:00:00:09', '{"macs":["aa:bb:cc:00:00:09"],"uuid":null,"serial":null,"hostname":null}', '10.0.0.9', '2025-06-01T00:00:00.000Z', '2025-06-01T00:00:00.000Z', null, null)`).run();
      raw.close();

      const s = await openSqliteMetadata(file, { now: () => new Date('2025-06-01T00:10:00.000Z') });
      try {
        const tokens = await s.listTokens();
        assert.deepEqual(tokens.map((t) => [t.id, t.secretHash, t.scope, t.label, t.revoked, t.expires, t.uses, t.used, t.lastUsed, t.lastAddress]), [
          ['adm', 'h1', 'admin', 'first start', null, null, null, 0, null, null],
          ['gone', 'h2', 'fetch:h', null, '2025-06-03T00:00:00.000Z', null, null, 0, null, null],
        ], 'old tokens keep working: no expiry, no limit');
        assert.equal((await s.spendTokenUse('adm', 'x')).used, 0);
        const [p] = await s.listPending();
        assert.deepEqual([p!.address, p!.token], ['10.0.0.9', null]);
        // An old record counts for the address it came from.
        await rejectsWith(s.recordPending({ macs: ['aa:bb:cc:00:00:0a'] }, '10.0.0.9', { limits: { perToken: 5, perAddress: 1, total: 5, windowMs: 3600_000 } }), 'PENDING_LIMIT');
      } finally {
        await s.close();
      }
      const db = new Database(file, { readonly: true });
      const names = (db.prepare(`select name from ${MIGRATION_TABLE} order by name`).all() as { name: string }[]).map((r) => r.name);
      db.close();
      assert.deepEqual(names, Object.keys(MIGRATIONS).sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the token-limits migration can run again after a crash half-way through it', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      await (await openSqliteMetadata(file)).close();
      // SQLite runs DDL outside a transaction here: a crash may leave the columns but not the record
      // (and no record of a later migration, which never ran).
      const raw = new Database(file);
      raw.prepare(`delete from ${MIGRATION_TABLE} where name >= '0002_token_limits'`).run();
      raw.close();
      const s = await openSqliteMetadata(file);
      await s.createToken({ id: 't', secretHash: 'h', scope: 'fetch:h', uses: 1 });
      assert.equal((await s.spendTokenUse('t', 'x')).used, 1);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the layers migration can run again after a crash half-way through it, and keeps the layers there', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      const s = await openSqliteMetadata(file);
      await s.publishLayerVersion(layerVersion('typeA', 'fw', '1'));
      await s.close();
      const raw = new Database(file);
      raw.prepare(`delete from ${MIGRATION_TABLE} where name >= '0003_layers'`).run();
      raw.close();
      const r = await openSqliteMetadata(file);
      assert.equal((await r.publishLayerVersion(layerVersion('typeA', 'fw', '2'))).version.version, 2);
      await r.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the recoveries migration can run again after a crash half-way through it, and keeps the recoveries there', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      const s = await openSqliteMetadata(file);
      const r = await s.openRecovery({ address: '10.0.0.1' });
      await s.close();
      const raw = new Database(file);
      raw.prepare(`delete from ${MIGRATION_TABLE} where name = '0004_recoveries'`).run();
      raw.close();
      const again = await openSqliteMetadata(file);
      assert.equal((await again.appendRecoveryEvent(r.id, { kind: 'note' })).event.seq, 2);
      assert.deepEqual((await again.listRecoveries()).map((x) => x.id), [r.id]);
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('check() names a recovery id sequence behind the largest recovery id', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      const s = await openSqliteMetadata(file);
      for (let i = 0; i < 3; i++) await s.openRecovery({});
      assert.deepEqual(await s.check(), []);
      await s.close();
      const raw = new Database(file);
      raw.prepare(`update sqlite_sequence set seq = 1 where name = 'recoveries'`).run();
      raw.close();
      const r = await openSqliteMetadata(file);
      const problems = await r.check();
      await r.close();
      assert.deepEqual(problems.map((p) => p.kind), ['id-reused']);
      assert.match(problems[0]!.message, /^recoveries: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('2 processes appending 10 events each to one recovery get seqs 2..21', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      const setup = await openSqliteMetadata(file);
      const { id } = await setup.openRecovery({});
      await setup.close();
      const script = join(dir, 'reporter.mts');
      writeFileSync(script, `
        import { openSqliteMetadata } from ${JSON.stringify(join(REPO, 'src/adapters/storage/sqlite-metadata.ts'))};
        const s = await openSqliteMetadata(process.argv[2], { busyTimeoutMs: 20000 });
        const got = [];
        for (let i = 0; i < 10; i++) got.push((await s.appendRecoveryEvent(${id}, { kind: 'note', message: process.argv[3] + i })).event.seq);
        await s.close();
        console.log(JSON.stringify(got));
      `);
      const run = (tag: string) => new Promise<number[]>((res, rej) => {
        const p = spawn(process.execPath, ['--import', 'tsx', script, file, tag], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('exit', (code) => (code === 0 ? res(JSON.parse(out) as number[]) : rej(new Error(`reporter ${tag} exited ${code}`))));
      });
      const all = (await Promise.all(['a', 'b'].map(run))).flat().sort((x, y) => x - y);
      assert.deepEqual(all, Array.from({ length: 20 }, (_, i) => i + 2));
      const s = await openSqliteMetadata(file);
      const events = await s.listRecoveryEvents(id);
      await s.close();
      assert.deepEqual(events.map((e) => e.seq), Array.from({ length: 21 }, (_, i) => i + 1));
      assert.equal(new Set(events.map((e) => e.message)).size, 21, 'each seq holds its own event');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('check() names a layer\'s gap, a pin to a missing layer version and malformed layer versions; servedLayers skips what it cannot serve', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      const s = await openSqliteMetadata(file);
      for (const c of ['1', '2', '3']) await s.publishLayerVersion(layerVersion('typeA', 'gap', c));
      await s.publishLayerVersion(layerVersion('typeA', 'pinned', 'p', 5));
      await s.publishLayerVersion(layerVersion('*', 'bad-blob', 'b'));
      await s.publishLayerVersion(layerVersion('*', 'bad-manifest', 'm'));
      await s.close();
      const raw = new Database(file);
      raw.prepare(`delete from layer_versions where class = 'typeA' and name = 'gap' and version = 2`).run();
      raw.prepare(`update layers set pinned = 7 where class = 'typeA' and name = 'pinned'`).run();
      raw.prepare(`update layer_versions set blob = 'not-a-sha' where name = 'bad-blob'`).run();
      raw.prepare(`update layer_versions set manifest = '{cut off' where name = 'bad-manifest'`).run();
      raw.prepare(`insert into layers (class, name, priority, pinned, created) values ('typeA', 'empty', 0, null, '2026-01-01T00:00:00.000Z')`).run();
      raw.close();
      const r = await openSqliteMetadata(file);
      const problems = await r.check();
      assert.deepEqual(problems.map((p) => [p.kind, p.layer ?? null, p.host ?? null, p.version ?? null]).sort(), [
        ['pin-missing', 'typeA/pinned', null, 7],
        ['version-gap', 'typeA/gap', null, 2],
        ['version-invalid', '*/bad-blob', null, 1],
        ['version-invalid', '*/bad-manifest', null, 1],
      ]);
      assert.match(problems.find((p) => p.kind === 'pin-missing')!.message, /^layer typeA\/pinned is pinned to version 7/);
      // A layer without a version, or pinned to none, has nothing to serve (check reports the pin).
      assert.deepEqual((await r.servedLayers('typeA')).map((x) => `${x.layer.class}/${x.layer.name}@${x.version.version}`), ['*/bad-blob@1', '*/bad-manifest@1', 'typeA/gap@3']);
      await r.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('check() names what is wrong in a database changed behind the store\'s back', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      const s = await openSqliteMetadata(file);
      await s.addHost({ id: 'h' });
      await s.addHost({ id: 'k' });
      for (const c of ['1', '2', '3']) await s.publishVersion({ host: 'h', blob: sha(c), digest: sha(`d${c}`), size: 1, manifest: '{}' });
      await s.publishVersion({ host: 'k', blob: sha('k'), digest: sha('dk'), size: 1, manifest: '{}' });
      await s.pin('k', 1);
      for (let i = 0; i < 3; i++) await s.appendAudit({ kind: 'fetch', result: 'ok' });
      await s.close();
      const raw = new Database(file);
      raw.pragma('foreign_keys = OFF');
      raw.prepare(`delete from versions where host_id = 'h' and version = 2`).run();
      raw.prepare(`update hosts set pinned = 7 where id = 'k'`).run();
      raw.prepare(`update versions set blob = 'not-a-sha' where host_id = 'k'`).run();
      raw.prepare(`update sqlite_sequence set seq = 1 where name = 'audit'`).run();
      raw.prepare(`insert into host_macs (mac, host_id) values ('aa:bb:cc:dd:ee:ff', 'ghost')`).run();
      raw.close();
      const r = await openSqliteMetadata(file);
      const problems = await r.check();
      await r.close();
      assert.deepEqual(problems.map((p) => [p.kind, p.host ?? null, p.version ?? null]).sort(), [
        ['damaged', null, null],
        ['id-reused', null, null],
        ['pin-missing', 'k', 7],
        ['version-gap', 'h', 2],
        ['version-invalid', 'k', 1],
      ]);
      assert.match(problems.find((p) => p.kind === 'damaged')!.message, /foreign key check: host_macs/);
      assert.match(problems.find((p) => p.kind === 'id-reused')!.message, /^audit: /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file that is not a database is STORE_CORRUPT, an unreadable path IO_ERROR', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'junk.sqlite');
      writeFileSync(file, Buffer.alloc(8192, 'x'));
      await rejectsWith(openSqliteMetadata(file), 'STORE_CORRUPT');
      await rejectsWith(openSqliteMetadata(join(dir, 'missing', 'dir', 'meta.sqlite')), 'IO_ERROR');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('4 processes publishing 10 versions each into one file get 1..40', async () => {
    const dir = tempDir();
    try {
      const file = join(dir, 'meta.sqlite');
      const setup = await openSqliteMetadata(file);
      await setup.addHost({ id: 'h' });
      await setup.close();
      const script = join(dir, 'publisher.mts');
      writeFileSync(script, `
        import { openSqliteMetadata } from ${JSON.stringify(join(REPO, 'src/adapters/storage/sqlite-metadata.ts'))};
        const s = await openSqliteMetadata(process.argv[2], { busyTimeoutMs: 20000 });
        const got = [];
        for (let i = 0; i < 10; i++) {
          const d = process.argv[3] + ':' + i;
          const hex = (await import('node:crypto')).createHash('sha256').update(d).digest('hex');
          got.push((await s.publishVersion({ host: 'h', blob: hex, digest: hex, size: 1, manifest: '{}' })).version.version);
        }
        await s.close();
        console.log(JSON.stringify(got));
      `);
      const run = (tag: string) => new Promise<number[]>((res, rej) => {
        const p = spawn(process.execPath, ['--import', 'tsx', script, file, tag], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('exit', (code) => (code === 0 ? res(JSON.parse(out) as number[]) : rej(new Error(`publisher ${tag} exited ${code}`))));
      });
      const all = (await Promise.all(['a', 'b', 'c', 'd'].map(run))).flat().sort((x, y) => x - y);
      assert.deepEqual(all, Array.from({ length: 40 }, (_, i) => i + 1));
      const s = await openSqliteMetadata(file);
      const blobs = new Set((await s.listVersions('h')).map((v) => v.blob));
      assert.equal(blobs.size, 40);
      assert.ok(blobs.has(sha('a:0')) && blobs.has(sha('d:9')));
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('postgres metadata: several stores on one database, migrations, outages', () => {
  /** A raw connection for what the store must not be able to do itself: break its own rules. */
  const raw = async <T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  };
  const blobOf = (tag: string) => ({ blob: sha(tag), digest: sha(`d:${tag}`), size: 1, manifest: '{}' });

  test('two stores (two pools, as two server instances) publishing 15 versions each to one host at once get 1..30', async () => {
    const url = await pgCluster().createDatabase('two');
    const [a, b] = await Promise.all([openPgMetadata(url, { poolSize: 4 }), openPgMetadata(url, { poolSize: 4 })]);
    try {
      await a.addHost({ id: 'h' });
      const publish = (s: MetadataStore, tag: string) => Promise.all(Array.from({ length: 15 }, (_, i) => s.publishVersion({ host: 'h', ...blobOf(`${tag}${i}`) })));
      const got = (await Promise.all([publish(a, 'a'), publish(b, 'b')])).flat().map((r) => r.version.version).sort((x, y) => x - y);
      assert.deepEqual(got, Array.from({ length: 30 }, (_, i) => i + 1));
      const listed = await b.listVersions('h');
      assert.equal(new Set(listed.map((v) => v.blob)).size, 30, 'each number holds its own publish');
      assert.deepEqual(await a.check(), []);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('3 processes publishing 10 versions each to one host get 1..30; a single-use token spent by all of them is spent once', async () => {
    const url = await pgCluster().createDatabase('procs');
    const setup = await openPgMetadata(url);
    await setup.addHost({ id: 'h' });
    await setup.createToken({ id: 'once', secretHash: 'x', scope: 'fetch:h', uses: 1 });
    await setup.close();
    const dir = tempDir();
    try {
      const script = join(dir, 'publisher.mts');
      writeFileSync(script, `
        import { createHash } from 'node:crypto';
        import { openPgMetadata } from ${JSON.stringify(join(REPO, 'src/adapters/storage/pg-metadata.ts'))};
        const s = await openPgMetadata(process.argv[2], { busyTimeoutMs: 60000 });
        const spent = await s.spendTokenUse('once', process.argv[3]).then(() => 1, (e) => (e.code === 'AUTH_USED_UP' ? 0 : Promise.reject(e)));
        const got = [];
        for (let i = 0; i < 10; i++) {
          const hex = createHash('sha256').update(process.argv[3] + ':' + i).digest('hex');
          got.push((await s.publishVersion({ host: 'h', blob: hex, digest: hex, size: 1, manifest: '{}' })).version.version);
        }
        await s.close();
        console.log(JSON.stringify({ got, spent }));
      `);
      const run = (tag: string) => new Promise<{ got: number[]; spent: number }>((res, rej) => {
        const p = spawn(process.execPath, ['--import', 'tsx', script, url, tag], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('exit', (code) => (code === 0 ? res(JSON.parse(out) as { got: number[]; spent: number }) : rej(new Error(`publisher ${tag} exited ${code}`))));
      });
      const results = await Promise.all(['a', 'b', 'c'].map(run));
      assert.deepEqual(results.flatMap((r) => r.got).sort((x, y) => x - y), Array.from({ length: 30 }, (_, i) => i + 1));
      assert.equal(results.reduce((n, r) => n + r.spent, 0), 1, 'one process got the single use');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('four stores opened at the same moment against an empty database migrate it once, and all of them work', async () => {
    const url = await pgCluster().createDatabase('race');
    const stores = await Promise.all(Array.from({ length: 4 }, () => openPgMetadata(url, { poolSize: 2 })));
    try {
      const names = await raw(url, async (c) => (await c.query<{ name: string }>(`select name from ${MIGRATION_TABLE} order by name`)).rows.map((r) => r.name));
      assert.deepEqual(names, Object.keys(PG_MIGRATIONS).sort());
      assert.deepEqual(Object.keys(PG_MIGRATIONS).filter((n) => !PG_ONLY_MIGRATIONS.has(n)), Object.keys(MIGRATIONS), 'the same migration names as SQLite, beside the PostgreSQL-only ones (blobs)');
      await Promise.all(stores.map((s, i) => s.addHost({ id: `h${i}` })));
      for (const s of stores) assert.deepEqual((await s.listHosts()).map((h) => h.id), ['h0', 'h1', 'h2', 'h3']);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
    // Opening again applies nothing.
    await (await openPgMetadata(url)).close();
    assert.equal(await raw(url, async (c) => (await c.query(`select count(*)::int as n from ${MIGRATION_TABLE}`)).rows[0].n), Object.keys(PG_MIGRATIONS).length);
  });

  test('a database migrated by a newer rear-update is refused with STORE_SCHEMA', async () => {
    const url = await pgCluster().createDatabase('future');
    await (await openPgMetadata(url)).close();
    await raw(url, (c) => c.query(`insert into ${MIGRATION_TABLE} (name, timestamp) values ('9999_from_the_future', $1)`, [new Date().toISOString()]));
    await rejectsWith(openPgMetadata(url), 'STORE_SCHEMA');
  });

  test('an unreachable database at open is STORE_UNREACHABLE naming the URL without its password', async () => {
    const dir = tempDir();
    try {
      const url = `postgres://rear:s3cret-pw@/meta?host=${encodeURIComponent(dir)}&port=5432`;
      await assert.rejects(openPgMetadata(url, { connectTimeoutMs: 5000 }), (e: unknown) => {
        assert.ok(isRuError(e) && e.code === 'STORE_UNREACHABLE', String(e));
        assert.ok(!e.message.includes('s3cret-pw') && !JSON.stringify(e.context).includes('s3cret-pw'), e.message);
        assert.match(e.message, /rear:\*\*\*@/);
        return true;
      });
      // A database that does not exist on a running server: refused, named, the same code.
      await rejectsWith(openPgMetadata(pgCluster().url('no_such_db')), 'STORE_UNREACHABLE');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a lock held longer than busyTimeoutMs by another session is STORE_BUSY, and the store works once it is let go', async () => {
    const url = await pgCluster().createDatabase('busy');
    const s = await openPgMetadata(url, { busyTimeoutMs: 300 });
    try {
      await s.addHost({ id: 'h' });
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      try {
        await holder.query('begin');
        await holder.query(`select * from hosts where id = 'h' for update`);
        await rejectsWith(s.publishVersion({ host: 'h', ...blobOf('blocked') }), 'STORE_BUSY');
        await holder.query('rollback');
      } finally {
        await holder.end();
      }
      assert.equal((await s.publishVersion({ host: 'h', ...blobOf('after') })).version.version, 1);
    } finally {
      await s.close();
    }
  });

  test('check() names what is wrong in a database changed behind the store\'s back', async () => {
    const url = await pgCluster().createDatabase('check');
    const s = await openPgMetadata(url);
    await s.addHost({ id: 'h' });
    await s.addHost({ id: 'k' });
    for (const c of ['1', '2', '3']) await s.publishVersion({ host: 'h', ...blobOf(c) });
    await s.publishVersion({ host: 'k', ...blobOf('k') });
    await s.pin('k', 1);
    for (let i = 0; i < 3; i++) await s.appendAudit({ kind: 'fetch', result: 'ok' });
    await s.publishLayerVersion(layerVersion('*', 'bad-manifest', 'm'));
    assert.deepEqual(await s.check(), []);
    await raw(url, async (c) => {
      await c.query(`delete from versions where host_id = 'h' and version = 2`);
      await c.query(`update hosts set pinned = 7 where id = 'k'`);
      await c.query(`update versions set blob = 'not-a-sha' where host_id = 'k'`);
      await c.query(`update layer_versions set manifest = '{cut off' where name = 'bad-manifest'`);
      await c.query(`select setval(pg_get_serial_sequence('audit', 'id'), 1)`);
      // What a restore or replication tool may do: foreign keys not checked for this session.
      await c.query(`set session_replication_role = replica`);
      await c.query(`insert into host_macs (mac, host_id) values ('aa:bb:cc:dd:ee:ff', 'ghost')`);
    });
    const problems = await s.check();
    await s.close();
    assert.deepEqual(problems.map((p) => [p.kind, p.host ?? p.layer ?? null, p.version ?? null]).sort(), [
      ['damaged', null, null],
      ['id-reused', null, null],
      ['pin-missing', 'k', 7],
      ['version-gap', 'h', 2],
      ['version-invalid', '*/bad-manifest', 1],
      ['version-invalid', 'k', 1],
    ]);
    assert.match(problems.find((p) => p.kind === 'damaged')!.message, /foreign key check: host_macs has 1 row that refers to a missing hosts row/);
    assert.match(problems.find((p) => p.kind === 'id-reused')!.message, /^audit: the id sequence \(1\) is behind the largest id 3/);
  });

  test('PostgreSQL stopped: calls fail with STORE_BUSY (503, Retry-After); started again: the same store works without being reopened', async () => {
    const cluster = pgCluster();
    const url = await cluster.createDatabase('outage');
    const s = await openPgMetadata(url, { connectTimeoutMs: 5000 });
    try {
      await s.addHost({ id: 'h' });
      assert.equal((await s.publishVersion({ host: 'h', ...blobOf('before') })).version.version, 1);
      cluster.stop();
      try {
        for (const call of [s.publishVersion({ host: 'h', ...blobOf('during') }), s.getHost('h'), s.listHosts()]) {
          await assert.rejects(call, (e: unknown) => {
            assert.ok(isRuError(e) && e.code === 'STORE_BUSY', String(e));
            assert.match(e.message, /PostgreSQL metadata database is unavailable/);
            assert.equal(typeof e.context.retryAfter, 'number');
            return true;
          });
        }
      } finally {
        cluster.start();
      }
      assert.equal((await s.getHost('h'))?.id, 'h');
      assert.equal((await s.publishVersion({ host: 'h', ...blobOf('after') })).version.version, 2, 'nothing of the failed publish was kept');
    } finally {
      await s.close();
    }
  });
});
