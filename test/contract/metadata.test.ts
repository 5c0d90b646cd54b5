// Runs the metadata contract against every backend, plus what only SQLite has: a schema that
// migrates once and refuses a newer one, foreign errors translated, and version numbering that
// stays consecutive when several processes publish into one database file.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { MemoryMetadataStore } from '../../src/adapters/storage/memory-metadata.ts';
import { openSqliteMetadata } from '../../src/adapters/storage/sqlite-metadata.ts';
import { MIGRATION_TABLE, MIGRATIONS } from '../../src/adapters/storage/sqlite-schema.ts';
import type { MetadataStore } from '../../src/core/store/metadata.ts';
import { metadataContract, rejectsWith, sha } from './metadata.contract.ts';

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
