// Runs the blob contract against every backend (memory, directory, PostgreSQL on a private real
// cluster: test/support/postgres.ts), plus what only the directory store promises: the fan-out
// layout, temp files that never carry a sha256 name, one file per content, nothing left behind
// by a cut-off upload, owner-only modes, and clean-up of stale temp files; and what only the
// PostgreSQL store promises: chunk rows, streaming both ways in bounded memory, a put invisible
// until it commits, one blob from racing writers in separate pools (separate servers).

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import { openDirBlobs } from '../../src/adapters/storage/dir-blobs.ts';
import { MemoryBlobStore } from '../../src/adapters/storage/memory-blobs.ts';
import { openPgBlobs, type PgBlobOptions } from '../../src/adapters/storage/pg-blobs.ts';
import { blobAge } from '../../src/server/store-check.ts';
import { usePgCluster } from '../support/postgres.ts';
import { blobsContract, chunked, cutOff, readAll, sha256 } from './blobs.contract.ts';
import { rejectsWith } from './metadata.contract.ts';

const REPO = resolve(import.meta.dirname, '../..');
const tempDir = (): string => mkdtempSync(join(tmpdir(), 'ru-blobs-'));

blobsContract('memory', async () => {
  const store = new MemoryBlobStore();
  return { store, cleanup: () => store.close() };
});

blobsContract('dir', async () => {
  const dir = tempDir();
  const store = await openDirBlobs(join(dir, 'blobs'));
  return { store, cleanup: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
});

const pgCluster = usePgCluster();

blobsContract('postgres', async () => {
  const store = await openPgBlobs(await pgCluster().createDatabase('blobs'));
  return { store, cleanup: () => store.close() };
});

/** Every file below root, as relative paths. */
function files(root: string): string[] {
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((d) => d.isFile())
    .map((d) => relative(root, join(d.parentPath ?? d.path, d.name)))
    .sort();
}

const SHA_NAME = /(^|\/)[0-9a-f]{64}$/;

describe('dir blobs: layout and crash safety', () => {
  const withDir = (fn: (root: string) => Promise<void>) => async () => {
    const dir = tempDir();
    try {
      await fn(join(dir, 'blobs'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  test('a blob lives at ab/cd/<sha256>, owner-only, and equal content is one file', withDir(async (root) => {
    const s = await openDirBlobs(root);
    const data = randomBytes(10_000);
    const h = sha256(data);
    await s.put(chunked(data));
    await s.put(chunked(data, 77));
    assert.deepEqual(files(root), [`${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`]);
    assert.equal(s.pathOf(h), join(root, h.slice(0, 2), h.slice(2, 4), h));
    assert.equal(statSync(s.pathOf(h)).mode & 0o777, 0o600);
    assert.equal(statSync(join(root, h.slice(0, 2))).mode & 0o777, 0o700);
  }));

  test('while a put is under way its bytes sit in tmp/ under a non-sha256 name, never under a real one', withDir(async (root) => {
    const s = await openDirBlobs(root);
    const data = randomBytes(300_000);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reachedGate!: () => void;
    const atGate = new Promise<void>((r) => (reachedGate = r));
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 200_000);
      reachedGate();
      await gate;
      yield data.subarray(200_000);
    }
    const put = s.put(slow());
    await atGate;
    await new Promise((r) => setTimeout(r, 20));
    const during = files(root);
    assert.equal(during.length, 1);
    assert.match(during[0]!, /^tmp\/[0-9a-f]{24}\.part$/);
    assert.ok(statSync(join(root, during[0]!)).size > 0, 'the temp file receives the data');
    assert.ok(!during.some((f) => SHA_NAME.test(f)));
    release();
    const info = await put;
    assert.deepEqual(files(root), [`${info.sha256.slice(0, 2)}/${info.sha256.slice(2, 4)}/${info.sha256}`]);
  }));

  test('a cut-off upload or a refused digest leaves no file at all', withDir(async (root) => {
    const s = await openDirBlobs(root);
    const data = randomBytes(2 * 1024 * 1024);
    await rejectsWith(s.put(cutOff(data, 1024 * 1024)), 'BLOB_INPUT_FAILED');
    await rejectsWith(s.put(chunked(data), { sha256: sha256(Buffer.from('x')) }), 'BLOB_DIGEST_MISMATCH');
    assert.deepEqual(files(root), []);
  }));

  test('opening clears temp files a crash left long ago and keeps recent ones', withDir(async (root) => {
    await openDirBlobs(root);
    const old = join(root, 'tmp', 'aaaaaaaaaaaaaaaaaaaaaaaa.part');
    const recent = join(root, 'tmp', 'bbbbbbbbbbbbbbbbbbbbbbbb.part');
    writeFileSync(old, 'partial');
    writeFileSync(recent, 'in progress elsewhere');
    const twoDaysAgo = new Date(Date.now() - 48 * 3600 * 1000);
    utimesSync(old, twoDaysAgo, twoDaysAgo);
    await openDirBlobs(root);
    assert.equal(existsSync(old), false);
    assert.equal(existsSync(recent), true);
  }));

  test('partials() lists tmp/*.part with size and age, sweepPartials(ms) removes those at least that old; list() skips anything not a blob', withDir(async (root) => {
    const s = await openDirBlobs(root);
    const stored = await s.put(chunked(randomBytes(1000)));
    const old = join(root, 'tmp', 'aaaaaaaaaaaaaaaaaaaaaaaa.part');
    writeFileSync(old, 'partial');
    const hourAgo = new Date(Date.now() - 3600 * 1000);
    utimesSync(old, hourAgo, hourAgo);
    writeFileSync(join(root, 'tmp', 'bbbbbbbbbbbbbbbbbbbbbbbb.part'), 'in progress');
    // Not blobs: a stray file in a fan-out directory, a name in the wrong directory, a file at the top.
    writeFileSync(join(root, stored.sha256.slice(0, 2), stored.sha256.slice(2, 4), 'notes.txt'), 'x');
    const misplaced = sha256(Buffer.from('misplaced'));
    mkdirSync(join(root, 'ff', 'ff'), { recursive: true });
    writeFileSync(join(root, 'ff', 'ff', misplaced), 'misplaced');
    writeFileSync(join(root, 'README'), 'x');
    const parts = await s.partials();
    assert.deepEqual(parts.map((p) => [p.name, p.size]), [['tmp/aaaaaaaaaaaaaaaaaaaaaaaa.part', 7], ['tmp/bbbbbbbbbbbbbbbbbbbbbbbb.part', 11]]);
    assert.ok(parts[0]!.age >= 3500 * 1000 && parts[1]!.age < 60 * 1000);
    assert.equal(await s.sweepPartials(60 * 1000), 1);
    assert.deepEqual((await s.partials()).map((p) => p.name), ['tmp/bbbbbbbbbbbbbbbbbbbbbbbb.part']);
    assert.equal(await s.sweepPartials(0), 1);
    assert.deepEqual(await s.partials(), []);
    const listed: string[] = [];
    for await (const b of s.list()) listed.push(b.sha256);
    assert.deepEqual(listed, [stored.sha256]);
  }));

  test('a full disk while writing is NO_SPACE and leaves nothing behind', async (t) => {
    const dir = tempDir();
    const root = join(dir, 'blobs');
    mkdirSync(root);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', root], { stdio: 'ignore' });
    } catch {
      rmSync(dir, { recursive: true, force: true });
      t.skip('cannot mount a tmpfs here (needs root)');
      return;
    }
    try {
      const s = await openDirBlobs(root);
      await rejectsWith(s.put(chunked(randomBytes(3 * 1024 * 1024))), 'NO_SPACE');
      assert.deepEqual(files(root), []);
    } finally {
      execFileSync('umount', [root]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a process killed -9 in the middle of a put leaves no blob, only a temp file for the sweep', withDir(async (root) => {
    const script = join(root, '..', 'putter.mts');
    writeFileSync(script, `
      import { openDirBlobs } from ${JSON.stringify(join(REPO, 'src/adapters/storage/dir-blobs.ts'))};
      const s = await openDirBlobs(process.argv[2]);
      async function* forever() {
        for (let i = 0; ; i++) {
          if (i === 4) console.log('writing');
          yield Buffer.alloc(64 * 1024, i);
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      await s.put(forever());
    `);
    const child = spawn(process.execPath, ['--import', 'tsx', script, root], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((res) => child.stdout.once('data', () => res()));
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const left = files(root);
    assert.ok(!left.some((f) => SHA_NAME.test(f)), `no sha256 name: ${left.join(', ')}`);
    assert.deepEqual(left.map((f) => f.replace(/[0-9a-f]{24}/, 'X')), ['tmp/X.part']);
    const s = await openDirBlobs(root);
    assert.equal(await s.has(sha256(Buffer.alloc(64 * 1024, 0))), false);
  }));
});

/** Runs `fn` on one connection of its own to `url` (what another session sees). */
async function raw<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const rows = (url: string): Promise<{ blobs: number; chunks: number }> => raw(url, async (c) => {
  const r = await c.query<{ blobs: number; chunks: number }>('select (select count(*)::int from blobs) as blobs, (select count(*)::int from blob_chunks) as chunks');
  return r.rows[0]!;
});

/**
 * Memory this process retains: the heap and the buffers outside it, after a full collection
 * (gc made callable here: the test runner's flags cannot be chosen per file). Garbage is not
 * what is measured; what the store holds on to is.
 */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const retained = (): number => {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

describe('postgres blobs: chunks, streaming, transactions', () => {
  const MiB = 1024 * 1024;
  const withPg = (fn: (url: string, open: (o?: PgBlobOptions) => ReturnType<typeof openPgBlobs>) => Promise<void>) => async () => {
    const url = await pgCluster().createDatabase('pgblobs');
    const opened: Awaited<ReturnType<typeof openPgBlobs>>[] = [];
    try {
      await fn(url, async (o) => {
        const s = await openPgBlobs(url, o);
        opened.push(s);
        return s;
      });
    } finally {
      await Promise.all(opened.map((s) => s.close()));
    }
  };

  test('a blob is stored as chunk rows 0..n-1 of chunkBytes each (the last shorter) and read back exactly, at every boundary', withPg(async (url, open) => {
    const s = await open({ chunkBytes: 7 });
    for (const len of [0, 1, 6, 7, 8, 14, 15, 100]) {
      const data = randomBytes(len);
      const info = await s.put(chunked(data, 3));
      const got = await s.get(info.sha256);
      assert.equal(got!.size, len);
      assert.ok((await readAll(got!.stream)).equals(data), `length ${len}`);
      const sizes = await raw(url, async (c) => (await c.query<{ n: number; len: number }>('select n, length(data) as len from blob_chunks where sha256 = $1 order by n', [info.sha256])).rows);
      assert.deepEqual(sizes.map((r) => r.n), Array.from({ length: Math.ceil(len / 7) }, (_, i) => i), `length ${len}`);
      assert.equal(sizes.reduce((a, r) => a + r.len, 0), len);
      assert.ok(sizes.slice(0, -1).every((r) => r.len === 7));
    }
  }));

  test('a 64 MiB blob streams in and out in bounded memory: the store never holds the whole blob', withPg(async (url, open) => {
    const s = await open();
    const total = 64 * MiB;
    const hashIn = createHash('sha256');
    const base = retained();
    let peakIn = 0;
    async function* source(): AsyncGenerator<Uint8Array> {
      for (let sent = 0; sent < total; sent += 256 * 1024) {
        const piece = randomBytes(256 * 1024);
        hashIn.update(piece);
        yield piece;
        if (sent % MiB === 0) peakIn = Math.max(peakIn, retained() - base);
      }
    }
    const info = await s.put(source());
    assert.equal(info.size, total);
    assert.equal(info.sha256, hashIn.digest('hex'));
    assert.deepEqual(await rows(url), { blobs: 1, chunks: 64 });
    const got = (await s.get(info.sha256))!;
    assert.equal(got.size, total);
    const hashOut = createHash('sha256');
    let read = 0;
    let peakOut = 0;
    const readBase = retained();
    for await (const c of got.stream as AsyncIterable<Buffer>) {
      hashOut.update(c);
      read += c.length;
      peakOut = Math.max(peakOut, retained() - readBase);
    }
    assert.equal(read, total);
    assert.equal(hashOut.digest('hex'), info.sha256);
    // A few chunks in flight are expected (1 MiB each, and pg's buffers); the whole blob is 64 MiB.
    assert.ok(peakIn < 24 * MiB, `writing retained up to ${(peakIn / MiB).toFixed(1)} MiB`);
    assert.ok(peakOut < 24 * MiB, `reading retained up to ${(peakOut / MiB).toFixed(1)} MiB`);
  }));

  test('a put is invisible to every other session until it commits, and one cut off mid-stream leaves no row at all', withPg(async (url, open) => {
    const s = await open();
    const data = randomBytes(3 * MiB + 5);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reachedGate!: () => void;
    const atGate = new Promise<void>((r) => (reachedGate = r));
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 2 * MiB + 1);
      reachedGate();
      await gate;
      yield data.subarray(2 * MiB + 1);
    }
    const put = s.put(slow());
    await atGate;
    // Two chunks have gone to PostgreSQL by now, uncommitted.
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await rows(url), { blobs: 0, chunks: 0 });
    assert.equal(await s.has(sha256(data)), false);
    release();
    const info = await put;
    assert.deepEqual(await rows(url), { blobs: 1, chunks: 4 });
    assert.equal(await s.delete(info.sha256), true);
    assert.deepEqual(await rows(url), { blobs: 0, chunks: 0 }, 'delete removes the chunks with the row');

    await rejectsWith(s.put(cutOff(data, 2 * MiB + 100 * 1024)), 'BLOB_INPUT_FAILED');
    await rejectsWith(s.put(chunked(data), { sha256: sha256(Buffer.from('other')) }), 'BLOB_DIGEST_MISMATCH');
    await rejectsWith(s.put(chunked(data), { size: data.length - 1 }), 'BLOB_DIGEST_MISMATCH');
    assert.deepEqual(await rows(url), { blobs: 0, chunks: 0 });
    // The pool's connections survived the refusals: the store goes on working.
    assert.equal((await s.put(chunked(data))).created, true);
  }));

  test('a process killed -9 in the middle of a put leaves no row: its transaction dies with its connection', withPg(async (url) => {
    const dir = tempDir();
    try {
      const script = join(dir, 'putter.mts');
      writeFileSync(script, `
        import { openPgBlobs } from ${JSON.stringify(join(REPO, 'src/adapters/storage/pg-blobs.ts'))};
        const s = await openPgBlobs(process.argv[2]);
        async function* forever() {
          for (let i = 0; ; i++) {
            if (i === 40) console.log('writing');
            yield Buffer.alloc(64 * 1024, i);
            await new Promise((r) => setTimeout(r, 2));
          }
        }
        await s.put(forever());
      `);
      const child = spawn(process.execPath, ['--import', 'tsx', script, url], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((res) => child.stdout.once('data', () => res()));
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      assert.deepEqual(await rows(url), { blobs: 0, chunks: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }));

  test('the same content written at once through four pools (four servers) ends as one blob, stored by exactly one of them', withPg(async (url, open) => {
    const stores = await Promise.all(Array.from({ length: 4 }, () => open({ poolSize: 2 })));
    const data = randomBytes(3 * MiB + 1);
    const results = await Promise.all(stores.map((s, i) => s.put(chunked(data, 100_000 + i))));
    assert.ok(results.every((r) => r.sha256 === sha256(data) && r.size === data.length));
    assert.equal(results.filter((r) => r.created).length, 1, 'the others found it present under the blob lock');
    assert.deepEqual(await rows(url), { blobs: 1, chunks: 4 });
    for (const s of stores) assert.ok((await readAll((await s.get(sha256(data)))!.stream)).equals(data));
  }));

  test("a blob's age is the database's (store-check.ts blobAge uses it); null when absent", withPg(async (url, open) => {
    const s = await open();
    const info = await s.put(chunked(randomBytes(10)));
    await raw(url, (c) => c.query("update blobs set created = clock_timestamp() - interval '2 hours' where sha256 = $1", [info.sha256]));
    const age = await blobAge(s, info.sha256);
    assert.ok(age !== null && age >= 2 * 3600 * 1000 && age < 3 * 3600 * 1000, String(age));
    assert.equal(await blobAge(s, sha256(Buffer.from('absent'))), null);
  }));

  test('a blob removed while it is being read ends the reader with BLOB_MISSING, never with short data', withPg(async (_url, open) => {
    const s = await open();
    const data = randomBytes(4 * MiB);
    const { sha256: name } = await s.put(chunked(data));
    const it = ((await s.get(name))!.stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    assert.equal((await it.next()).value!.length, MiB);
    assert.equal(await s.delete(name), true);
    await rejectsWith((async () => {
      while (!(await it.next()).done);
    })(), 'BLOB_MISSING');
  }));

  test('PostgreSQL stopped: puts, lookups and a read under way fail with STORE_BUSY; started again, the same store works', withPg(async (_url, open) => {
    const s = await open({ connectTimeoutMs: 3000 });
    const data = randomBytes(4 * MiB);
    const { sha256: name } = await s.put(chunked(data));
    const it = ((await s.get(name))!.stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    await it.next();
    const cluster = pgCluster();
    cluster.stop();
    try {
      await rejectsWith(s.has(name), 'STORE_BUSY');
      await rejectsWith(s.put(chunked(randomBytes(2 * MiB))), 'STORE_BUSY');
      await rejectsWith((async () => {
        while (!(await it.next()).done);
      })(), 'STORE_BUSY');
    } finally {
      cluster.start();
    }
    assert.equal(await s.has(name), true);
    assert.ok((await readAll((await s.get(name))!.stream)).equals(data));
    assert.equal((await s.put(chunked(randomBytes(2 * MiB)))).created, true);
  }));

  test('an unreachable database is STORE_UNREACHABLE naming the URL without its password', async () => {
    const nowhere = `postgres://rear:s3cret-pw@/blobs?host=${encodeURIComponent(join(tmpdir(), 'no-socket-here'))}&port=5432`;
    await assert.rejects(openPgBlobs(nowhere, { connectTimeoutMs: 2000 }), (e: unknown) => {
      assert.ok(e instanceof Error && /STORE_UNREACHABLE/.test(`${(e as { code?: string }).code}`), String(e));
      assert.match(e.message, /rear:\*\*\*@/);
      assert.ok(!e.message.includes('s3cret-pw'));
      return true;
    });
  });
});
