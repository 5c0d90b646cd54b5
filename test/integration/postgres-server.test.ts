// `rear-update serve --db postgres://...` over real HTTP against a real PostgreSQL 15 (a private
// cluster: test/support/postgres.ts): a publish lands in PostgreSQL (no metadata.sqlite in
// --data) and is served; a second server on the same database sees it; PostgreSQL going away
// during service is 503 STORE_BUSY until it is back; and the bundled dist/rear-update.cjs starts
// with --db, or exits nonzero naming the URL without its password when the database is away;
// `serve --check --db` checks PostgreSQL's metadata against --data's blobs. With `--blobs
// postgres` the bundles live in the database too: a second server whose --data holds only a
// copy of the signing key serves what the first published.
// Several instances behind a load balancer (caches, LISTEN/NOTIFY) are later work, not tested here.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import pg from 'pg';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isRuError } from '../../src/core/errors.ts';
import { openPgBlobs } from '../../src/adapters/storage/pg-blobs.ts';
import { openPgMetadata } from '../../src/adapters/storage/pg-metadata.ts';
import { runCheck } from '../../src/server/check-command.ts';
import { layout } from '../../src/server/data-dir.ts';
import { checkStore, collectGarbage } from '../../src/server/store-check.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, CLI, cliAsync, fakeSysRoot, makeTree, tempDir } from '../helpers.ts';
import { usePgCluster } from '../support/postgres.ts';

const work = tempDir('ru-pgserver-');
const pgCluster = usePgCluster();
let db: string;
let first: Running;
let admin: string;
const d1 = join(work, 'data-1');

const get = async (base: string, path: string, token: string | null = admin): Promise<{ status: number; headers: Headers; body: string }> => {
  const r = await fetch(new URL(path, base), { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: r.status, headers: r.headers, body: await r.text() };
};

before(async () => {
  db = await pgCluster().createDatabase('serve');
  first = await startServer(loadConfig({ data: d1, listen: '127.0.0.1:0', db }, {}), { log: false });
  admin = readFileSync(join(d1, 'admin.token'), 'utf8').trim();
});
after(async () => {
  await first?.close();
  cleanup(work);
});

test('serve --db: a publish goes to PostgreSQL and is served; a second server on the same database (a copy of --data: same key) sees the host and its version', async () => {
  assert.ok(!existsSync(join(d1, 'metadata.sqlite')), 'no SQLite file when the metadata is in PostgreSQL');
  const tree = join(work, 'tree');
  makeTree(tree, { etc: { rear: { 'local.conf': 'OUTPUT=ISO\nPG=1\n' } }, var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda 1000 gpt\n' } } } } });
  const sys = fakeSysRoot(join(work, 'sys'), ['52:54:00:00:70:01'], 'pg1.example.com');
  const pub = await cliAsync(['publish', '--server', first.url, '--token', admin, '--root', tree, '--host', 'pg1', '--sys-root', sys]);
  assert.equal(pub.status, 0, pub.stderr);
  assert.match(pub.stdout, /published pg1 version 1/);
  const bundle = await get(first.url, '/api/v1/hosts/pg1/bundle');
  assert.equal(bundle.status, 200, bundle.body);

  const d2 = join(work, 'data-2');
  cpSync(d1, d2, { recursive: true });
  const second = await startServer(loadConfig({ data: d2, listen: '127.0.0.1:0', db }, {}), { log: false });
  try {
    assert.equal(second.fingerprint, first.fingerprint);
    const host = await get(second.url, '/api/v1/hosts/pg1');
    assert.equal(host.status, 200, host.body);
    assert.match(host.body, /"52:54:00:00:70:01"/);
    const versions = await get(second.url, '/api/v1/hosts/pg1/versions');
    assert.equal(versions.status, 200, versions.body);
    assert.deepEqual((JSON.parse(versions.body) as { versions: { version: number }[] }).versions.map((v) => v.version), [1]);
    // The second server serves the bundle (signed anew per request): apply installs the published files.
    const dst = join(work, 'rescue');
    mkdirSync(dst);
    const ap = await cliAsync(['apply', 'pg1', '--server', second.url, '--token', admin, '--root', dst, '--pubkey', join(d2, 'server.pub'), '-q']);
    assert.equal(ap.status, 0, ap.stderr);
    assert.match(ap.stdout, /host pg1, version 1, signed by ed25519:/);
    assert.deepEqual(readFileSync(join(dst, 'etc/rear/local.conf')), readFileSync(join(tree, 'etc/rear/local.conf')));
    // The first server's publish resolves on the second: the MAC went into the shared database.
    const res = await get(second.url, '/api/v1/resolve?mac=52-54-00-00-70-01');
    assert.equal(res.status, 200, res.body);
    assert.match(res.body, /"pg1"/);
  } finally {
    await second.close();
  }
});

test('PostgreSQL stopped during service: routes answer 503 STORE_BUSY with Retry-After; started again, the same server answers without a restart', async () => {
  const cluster = pgCluster();
  assert.equal((await get(first.url, '/api/v1/hosts')).status, 200);
  cluster.stop();
  try {
    const down = await get(first.url, '/api/v1/hosts');
    assert.equal(down.status, 503, down.body);
    assert.equal((JSON.parse(down.body) as { error: { code: string } }).error.code, 'STORE_BUSY');
    assert.ok(Number(down.headers.get('retry-after')) > 0);
  } finally {
    cluster.start();
  }
  const up = await get(first.url, '/api/v1/hosts');
  assert.equal(up.status, 200, up.body);
  assert.match(up.body, /"pg1"|"hosts"/);
});

test('serve --check --db: the metadata in PostgreSQL checked against --data\'s blobs; a missing bundle is STORE_INCONSISTENT', async () => {
  const printed: string[] = [];
  const report = await runCheck({ data: d1, db }, { json: false }, (l) => printed.push(l));
  assert.ok(report.ok, printed.join('\n'));
  assert.equal(report.counts.versions, 1);
  const d5 = join(work, 'data-5');
  cpSync(d1, d5, { recursive: true });
  rmSync(join(d5, 'blobs'), { recursive: true });
  mkdirSync(join(d5, 'blobs'));
  await assert.rejects(runCheck({ data: d5, db }, { json: false }, () => undefined), (e: unknown) => isRuError(e) && e.code === 'STORE_INCONSISTENT');
});

/** Files below `dir` (recursively), none when it does not exist. */
const filesIn = (dir: string): string[] => (existsSync(dir) ? (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[]).filter((d) => d.isFile()).map((d) => d.name) : []);

test('serve --db --blobs postgres: the bundle goes into PostgreSQL, not --data; a second server whose --data holds only the signing key serves it from the shared database; the store check and --gc work on blobs there', async () => {
  const shared = await pgCluster().createDatabase('blobs');
  const da = join(work, 'data-6');
  const a = await startServer(loadConfig({ data: da, listen: '127.0.0.1:0', db: shared, blobs: 'postgres' }, {}), { log: false });
  const token = readFileSync(join(da, 'admin.token'), 'utf8').trim();
  let b: Running | undefined;
  try {
    const tree = join(work, 'tree-6');
    makeTree(tree, { etc: { rear: { 'local.conf': 'OUTPUT=ISO\nBLOBS=postgres\n', 'site.conf': 'x'.repeat(3000) } } });
    const sys = fakeSysRoot(join(work, 'sys-6'), ['52:54:00:00:70:06'], 'pgb.example.com');
    const pub = await cliAsync(['publish', '--server', a.url, '--token', token, '--root', tree, '--host', 'pgb', '--sys-root', sys]);
    assert.equal(pub.status, 0, pub.stderr);
    assert.match(pub.stdout, /published pgb version 1/);
    assert.deepEqual(filesIn(join(da, 'blobs')), [], 'no bundle bytes in --data');
    const c = new pg.Client({ connectionString: shared });
    await c.connect();
    try {
      const r = await c.query<{ sha256: string; size: string }>('select sha256, size from blobs');
      const v = await c.query<{ blob: string; size: string }>("select blob, size from versions where host_id = 'pgb'");
      assert.equal(r.rows.length, 1);
      assert.deepEqual([r.rows[0]!.sha256, String(r.rows[0]!.size)], [v.rows[0]!.blob, String(v.rows[0]!.size)], 'the version names the blob stored in PostgreSQL');
    } finally {
      await c.end();
    }
    assert.equal((await get(a.url, '/api/v1/hosts/pgb/bundle', token)).status, 200);

    // Another machine: an empty --data but for the signing key; no payload cache, so every answer streams from PostgreSQL.
    const db2 = join(work, 'data-7');
    mkdirSync(db2);
    cpSync(join(da, 'signing'), join(db2, 'signing'), { recursive: true });
    cpSync(join(da, 'server.pub'), join(db2, 'server.pub'));
    b = await startServer(loadConfig({ data: db2, listen: '127.0.0.1:0', db: shared, blobs: 'postgres', payloadCache: '0' }, {}), { log: false });
    assert.equal(b.fingerprint, a.fingerprint);
    const dst = join(work, 'rescue-7');
    mkdirSync(dst);
    const ap = await cliAsync(['apply', 'pgb', '--server', b.url, '--token', token, '--root', dst, '--pubkey', join(db2, 'server.pub'), '-q']);
    assert.equal(ap.status, 0, ap.stderr);
    assert.match(ap.stdout, /host pgb, version 1, signed by ed25519:/);
    for (const f of ['local.conf', 'site.conf']) assert.deepEqual(readFileSync(join(dst, 'etc/rear', f)), readFileSync(join(tree, 'etc/rear', f)));
    assert.deepEqual(filesIn(join(db2, 'blobs')), [], 'the second server keeps no bundle bytes either');
    // The second server's start swept unreferenced blobs in the shared store: the published one is referenced and stays.
    assert.equal((await get(a.url, '/api/v1/hosts/pgb/bundle', token)).status, 200);

    // The store check and the garbage collection work on blobs in PostgreSQL: digests, ages from the database.
    const meta = await openPgMetadata(shared);
    const blobs = await openPgBlobs(shared);
    try {
      const sound = await checkStore({ meta, blobs, data: layout(db2) });
      assert.deepEqual(sound.errors, []);
      assert.equal(sound.counts.blobs, 1);
      // serve --check --db --blobs postgres reads the same store (not --data's empty blobs/).
      const printed: string[] = [];
      assert.ok((await runCheck({ data: db2, db: shared, blobs: 'postgres' }, { json: false }, (l) => printed.push(l))).ok, printed.join('\n'));
      const loose = await blobs.put((async function* () {
        yield Buffer.from('no version names this');
      })());
      const r = await checkStore({ meta, blobs, data: layout(db2) });
      const left = r.leftovers.filter((l) => l.kind === 'unreferenced-blob');
      assert.equal(left.length, 1);
      assert.ok(left[0]!.message.includes(loose.sha256) && typeof left[0]!.age === 'number', JSON.stringify(left[0]));
      assert.deepEqual((await collectGarbage({ meta, blobs }, 3600_000)).removed, [], 'younger than the grace period: kept');
      assert.deepEqual((await collectGarbage({ meta, blobs }, 0)).removed.map((x) => x.sha256), [loose.sha256]);
      assert.equal(await blobs.has(loose.sha256), false);
    } finally {
      await meta.close();
      await blobs.close();
    }
  } finally {
    await b?.close();
    await a.close();
  }
});

test('--blobs: dir by default, postgres from the flag, REAR_UPDATE_BLOBS or the config file; postgres without --db, or another value, is CONFIG_INVALID', () => {
  assert.equal(loadConfig({}, {}).blobs, 'dir');
  assert.equal(loadConfig({ db: 'postgres://u@h/x' }, { REAR_UPDATE_BLOBS: 'postgres' }).blobs, 'postgres');
  const file = join(work, 'config-blobs.json');
  writeFileSync(file, JSON.stringify({ db: 'postgres://u@h/x', blobs: 'postgres' }));
  assert.equal(loadConfig({ config: file }, {}).blobs, 'postgres');
  assert.equal(loadConfig({ config: file, blobs: 'dir' }, {}).blobs, 'dir');
  assert.throws(() => loadConfig({ blobs: 'postgres' }, {}), (e: unknown) => isRuError(e) && e.code === 'CONFIG_INVALID' && /needs --db/.test(e.message));
  assert.throws(() => loadConfig({ blobs: 's3' }, {}), (e: unknown) => isRuError(e) && e.code === 'CONFIG_INVALID' && /flag --blobs: blob store "s3" is not dir or postgres/.test(e.message));
});

/** Runs the bundled CLI until it prints where it serves, or exits. */
function serveDist(args: readonly string[]): Promise<{ url: string | null; code: number | null; stderr: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  return new Promise((resolve) => {
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const stop = async (): Promise<void> => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    };
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /serving (http:\/\/\S+)/.exec(err);
      if (m) resolve({ url: m[1]!, code: null, stderr: err, stop });
    });
    child.once('exit', (code) => resolve({ url: null, code, stderr: err, stop }));
  });
}

test('the bundled server (dist/rear-update.cjs) starts with --db and serves; an unreachable database is exit 8 STORE_UNREACHABLE without the password', async () => {
  const d3 = join(work, 'data-3');
  const up = await serveDist(['--db', await pgCluster().createDatabase('dist'), '--data', d3, '--listen', '127.0.0.1:0']);
  try {
    assert.ok(up.url, up.stderr);
    const token = readFileSync(join(d3, 'admin.token'), 'utf8').trim();
    assert.equal((await get(up.url, '/api/v1/hosts', token)).status, 200);
    assert.ok(!existsSync(join(d3, 'metadata.sqlite')));
  } finally {
    await up.stop();
  }
  const nowhere = `postgres://rear:s3cret-pw@/meta?host=${encodeURIComponent(join(work, 'no-socket-here'))}&port=5432`;
  const down = await serveDist(['--db', nowhere, '--data', join(work, 'data-4'), '--listen', '127.0.0.1:0']);
  assert.equal(down.url, null);
  assert.equal(down.code, 8, down.stderr);
  assert.match(down.stderr, /STORE_UNREACHABLE/);
  assert.match(down.stderr, /rear:\*\*\*@/);
  assert.ok(!down.stderr.includes('s3cret-pw'), down.stderr);
});

test('--db, REAR_UPDATE_DB and the config file key db name the database; anything but a PostgreSQL URL is CONFIG_INVALID without its password', () => {
  assert.equal(loadConfig({}, {}).db, null, 'default: SQLite in --data');
  const file = join(work, 'config.json');
  writeFileSync(file, JSON.stringify({ db: 'postgres://from-file@h/x' }));
  assert.equal(loadConfig({ config: file }, {}).db, 'postgres://from-file@h/x');
  assert.equal(loadConfig({}, { REAR_UPDATE_DB: 'postgres://u@db.example:5433/ru' }).db, 'postgres://u@db.example:5433/ru');
  assert.equal(loadConfig({ db: 'postgresql://u@h/x' }, { REAR_UPDATE_DB: 'postgres://u@db.example:5433/ru' }).db, 'postgresql://u@h/x');
  assert.throws(() => loadConfig({ db: 'mysql://u:hunter2@h/x' }, {}), (e: Error) => /flag --db: metadata database .*is not a PostgreSQL URL/.test(e.message) && !e.message.includes('hunter2'));
});
