// `rear-update serve --db postgres://...` over real HTTP against a real PostgreSQL 15 (a private
// cluster: test/support/postgres.ts): a publish lands in PostgreSQL (no metadata.sqlite in
// --data) and is served; a second server on the same database sees it; PostgreSQL going away
// during service is 503 STORE_BUSY until it is back; and the bundled dist/rear-update.cjs starts
// with --db, or exits nonzero naming the URL without its password when the database is away;
// `serve --check --db` checks PostgreSQL's metadata against --data's blobs.
// Several instances behind a load balancer (caches, LISTEN/NOTIFY) are later work, not tested here.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isRuError } from '../../src/core/errors.ts';
import { runCheck } from '../../src/server/check-command.ts';
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
