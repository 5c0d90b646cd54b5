// The server end to end over real HTTP on loopback: publish from a test root, apply --server
// into another root, pending → assign → the waiting apply completes; what a publish must
// never leave behind (cut off, killed, oversized, hostile); resumable sealed downloads.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encodeManifest, type Manifest } from '../../src/core/manifest.ts';
import { MANIFEST_MEMBER } from '../../src/core/paths.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, CLI, cli, cliAsync, errorCode, fakeSysRoot, makeTree, rawTarGz, tempDir } from '../helpers.ts';

const work = tempDir('ru-server-');
const data = join(work, 'data');
let srv: Running;
let admin: string;

/** A sysfs with the given NIC MACs and hostname, so a test machine has chosen facts. */
const sysRoot = (name: string, macs: string[], hostname: string): string => fakeSysRoot(join(work, `sys-${name}`), macs, hostname);

async function req(method: string, path: string, opts: { token?: string | null; body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  const u = new URL(path, srv.url);
  return new Promise((resolve, reject) => {
    const r = http.request(u, {
      method,
      headers: { ...(opts.token !== null ? { authorization: `Bearer ${opts.token ?? admin}` } : {}), ...opts.headers },
    }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    r.on('error', reject);
    r.end(opts.body);
  });
}

const json = (b: Buffer): any => JSON.parse(b.toString('utf8')); // eslint-disable-line @typescript-eslint/no-explicit-any

function hostTree(name: string, conf: string): string {
  const root = join(work, `tree-${name}`);
  makeTree(root, {
    etc: { rear: { 'local.conf': conf, 'site.conf': '# site\n' } },
    var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda 1000 gpt\n' } } } },
  });
  return root;
}

const server = (): string[] => ['--server', srv.url];

before(async () => {
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
});
after(async () => {
  await srv?.close();
  cleanup(work);
});

test('first start: signing key and admin token 0600, server.pub served at /api/v1/server-key, health and metrics', async () => {
  assert.equal(srv.adminToken, admin);
  assert.equal(statSync(join(data, 'admin.token')).mode & 0o777, 0o600);
  assert.equal(statSync(join(data, 'signing/rear-update.key')).mode & 0o777, 0o600);
  const key = await req('GET', '/api/v1/server-key', { token: null });
  assert.equal(key.status, 200);
  assert.equal(key.body.toString(), readFileSync(join(data, 'server.pub'), 'utf8'));
  assert.equal(key.headers['x-rear-update-fingerprint'], srv.fingerprint);
  assert.ok(!key.body.toString().includes('PRIVATE'));
  const health = await req('GET', '/healthz', { token: null });
  assert.equal(json(health.body).status, 'ok');
  const metrics = await req('GET', '/metrics', { token: null });
  assert.match(metrics.body.toString(), /^rear_update_http_requests_total\{route="\/healthz",method="GET",status="200"\} 1$/m);
  const nothing = await req('GET', '/api/v1/nope');
  assert.equal(nothing.status, 404);
  assert.equal(json(nothing.body).error.code, 'ROUTE_UNKNOWN');
});

test('publish from a test root, then apply --server into another root: identical files; unchanged content makes no new version', async () => {
  const tree = hostTree('e229', 'OUTPUT=ISO\nHOST_ONLY_VAR=e229\n');
  const sys = sysRoot('e229', ['52:54:00:00:22:29'], 'e229.example.com');
  const pub = await cliAsync(['publish', ...server(), '--token', admin, '--root', tree, '--host', 'e229', '--sys-root', sys]);
  assert.equal(pub.status, 0, pub.stderr);
  assert.match(pub.stdout, /published e229 version 1/);
  const again = await cliAsync(['publish', ...server(), '--token', admin, '--root', tree, '--host', 'e229', '--sys-root', sys]);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /unchanged: e229 version 1/);

  const dst = join(work, 'rescue-e229');
  mkdirSync(dst);
  const ap = await cliAsync(['apply', 'e229', ...server(), '--token', admin, '--root', dst, '--pubkey', join(data, 'server.pub'), '-q']);
  assert.equal(ap.status, 0, ap.stderr);
  assert.match(ap.stdout, /host e229, version 1, signed by ed25519:/);
  for (const f of ['etc/rear/local.conf', 'etc/rear/site.conf', 'var/lib/rear/layout/disklayout.conf']) {
    assert.deepEqual(readFileSync(join(dst, f)), readFileSync(join(tree, f)), f);
  }
  // The publisher's facts went to the host: the server resolves its MAC now.
  const res = await req('GET', '/api/v1/resolve?mac=52-54-00-00-22-29');
  assert.equal(res.status, 200);
  assert.deepEqual({ host: json(res.body).host, by: json(res.body).by }, { host: 'e229', by: 'mac' });
});

test('the served bundle names host, version and serving time in its signed manifest, and verifies with server.pub', async () => {
  const r = await req('GET', '/api/v1/hosts/e229/bundle');
  assert.equal(r.status, 200);
  const file = join(work, 'served.tar.gz');
  writeFileSync(file, r.body);
  const v = cli(['inspect', file, '--pubkey', join(data, 'server.pub'), '--json']);
  assert.equal(v.status, 0, v.stderr);
  const m = JSON.parse(v.stdout) as { host: string; version: number; served: string; signature: { status: string } };
  assert.equal(m.host, 'e229');
  assert.equal(m.version, 1);
  assert.ok(Math.abs(Date.parse(m.served) - Date.now()) < 60_000, m.served);
  assert.equal(cli(['verify', file, '--pubkey', join(data, 'server.pub')]).status, 0);
});

test('a download resumed with If-Range gets the same bytes; a Range without it gets the whole bundle', async () => {
  const full = await req('GET', '/api/v1/hosts/e229/bundle');
  const etag = String(full.headers.etag);
  await new Promise((r) => setTimeout(r, 1100)); // a new sealing would carry a later time
  const part = await req('GET', '/api/v1/hosts/e229/bundle', { headers: { range: 'bytes=100-', 'if-range': etag } });
  assert.equal(part.status, 206);
  assert.equal(part.headers['content-range'], `bytes 100-${full.body.length - 1}/${full.body.length}`);
  assert.deepEqual(part.body, full.body.subarray(100));
  const noIfRange = await req('GET', '/api/v1/hosts/e229/bundle', { headers: { range: 'bytes=100-' } });
  assert.equal(noIfRange.status, 200);
  assert.notEqual(noIfRange.headers.etag, etag);
  const forged = await req('GET', '/api/v1/hosts/e229/bundle', { headers: { range: 'bytes=100-', 'if-range': etag.replace(/-\d+-/, '-0-') } });
  assert.equal(forged.status, 200);
  // An ETag from a server that sealed in another format (before "z1": no format named) must
  // not get a splice of two sealings, even for the same serving time.
  assert.match(etag, /^"ru-z1-e229-/);
  const otherFormat = await req('GET', '/api/v1/hosts/e229/bundle', { headers: { range: 'bytes=100-', 'if-range': etag.replace('"ru-z1-', '"ru-') } });
  assert.equal(otherFormat.status, 200);
  assert.equal(otherFormat.headers['content-range'], undefined);
  assert.deepEqual([...otherFormat.body.subarray(0, 2)], [0x1f, 0x8b], 'a whole bundle, from its first byte');
});

test('ReaR URL forms and DRLM config route serve the host (Basic password / raw Authorization token)', async () => {
  const basic = `Basic ${Buffer.from(`rear:${admin}`).toString('base64')}`;
  for (const p of ['/rear/e229.tar.gz', '/rear/e229.tgz', '/rear/e229.rear_config.tar.gz', '/rear/e229.rear_config.tgz', '/rear/52:54:00:00:22:29.tar.gz']) {
    const r = await req('GET', p, { token: null, headers: { authorization: basic } });
    assert.equal(r.status, 200, p);
    assert.equal(r.body[0], 0x1f, p);
  }
  const anon = await req('GET', '/rear/e229.tar.gz', { token: null });
  assert.equal(anon.status, 401);
  assert.equal(json(anon.body).error.code, 'AUTH_REQUIRED');
  const conf = await req('GET', '/clients/e229/config', { token: null, headers: { authorization: admin } });
  assert.equal(conf.status, 200);
  assert.equal(conf.body.toString(), 'OUTPUT=ISO\nHOST_ONLY_VAR=e229\n');
  const site = await req('GET', '/clients/e229/config/site', { token: null, headers: { authorization: admin } });
  assert.equal(site.body.toString(), '# site\n');
  const none = await req('GET', '/clients/e229/config/nosuch');
  assert.equal(none.status, 404);
});

test('an unknown machine goes pending, shows its facts and waits; after assign its apply completes', async () => {
  const sys = sysRoot('replacement', ['52:54:00:99:99:01'], 'localhost');
  const dst = join(work, 'rescue-replacement');
  mkdirSync(dst);
  const env = { REAR_UPDATE_POLL_MS: '300', REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: admin };
  const child = cliAsync(['apply', '--root', dst, '--pubkey', join(data, 'server.pub'), '--sys-root', sys, '--wait', '60', '-q'], { env });
  let pending: { id: number } | undefined;
  for (let i = 0; i < 100 && !pending; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const list = await req('GET', '/api/v1/pending');
    if (list.status === 200) pending = (json(list.body).pending as { id: number; facts: { macs: string[] } }[]).find((p) => JSON.stringify(p).includes('52:54:00:99:99:01'));
  }
  assert.ok(pending, 'the machine was recorded as pending');
  const assign = await req('POST', '/api/v1/assign', { body: JSON.stringify({ pending: String(pending.id), host: 'e229' }), headers: { 'content-type': 'application/json' } });
  assert.equal(assign.status, 200, assign.body.toString());
  const r = await child;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /PENDING as machine \d+/);
  assert.match(r.stderr, /macs 52:54:00:99:99:01/);
  assert.match(r.stderr, /resolved this machine to host e229 \(by assignment\)/);
  assert.equal(readFileSync(join(dst, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nHOST_ONLY_VAR=e229\n');
});

test('a pending machine that nobody assigns ends with HOST_PENDING after --wait, root untouched', async () => {
  const sys = sysRoot('orphan', ['52:54:00:99:99:02'], 'orphan');
  const dst = join(work, 'rescue-orphan');
  mkdirSync(dst);
  const r = await cliAsync(['apply', ...server(), '--token', admin, '--root', dst, '--pubkey', join(data, 'server.pub'), '--sys-root', sys, '--wait', '1'], { env: { REAR_UPDATE_POLL_MS: '300' } });
  assert.equal(r.status, 7, r.stderr);
  assert.equal(errorCode(r), 'HOST_PENDING');
  assert.deepEqual(readdirSync(dst), []);
});

test('concurrent publishes of one host get distinct consecutive versions', async () => {
  const runs = [1, 2, 3, 4].map((i) => cliAsync(['publish', ...server(), '--token', admin, '--root', hostTree(`c${i}`, `N=${i}\n`), '--host', 'conc', '--sys-root', join(work, 'nosys')]));
  const results = await Promise.all(runs);
  for (const r of results) assert.equal(r.status, 0, r.stderr);
  const versions = results.map((r) => Number(/version (\d+)/.exec(r.stdout)?.[1])).sort();
  assert.deepEqual(versions, [1, 2, 3, 4]);
});

/** Versions of a host as the store sees them, read over the API after everything settled. */
async function versionCount(host: string): Promise<number> {
  const r = await req('GET', `/api/v1/hosts/${host}/bundle`);
  return r.status === 200 ? Number(r.headers['x-rear-update-version']) : 0;
}

test('publish cut off mid-upload leaves no version and no spooled file', async () => {
  const tree = hostTree('cut', 'CUT=1\n');
  const file = join(work, 'cut.tar.gz');
  assert.equal(cli(['pack', '--root', tree, '-o', file]).status, 0);
  const bytes = readFileSync(file);
  await new Promise<void>((resolve) => {
    const r = http.request(new URL('/api/v1/hosts/cut/versions', srv.url), { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/gzip', 'content-length': String(bytes.length) } });
    r.on('error', () => resolve());
    r.write(bytes.subarray(0, bytes.length >> 1));
    setTimeout(() => {
      r.destroy();
      resolve();
    }, 200);
  });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await versionCount('cut'), 0);
  assert.deepEqual(readdirSync(join(data, 'tmp')), []);
});

test('an upload larger than --max-upload is refused with 413 UPLOAD_TOO_LARGE', async () => {
  const r = await req('POST', '/api/v1/hosts/big/versions', { body: Buffer.alloc(1024), headers: { 'content-type': 'application/gzip', 'content-length': String(2 * 1024 ** 3) } }).catch(() => null);
  // The server may answer before or after the body; either way it refuses.
  if (r) {
    assert.equal(r.status, 413);
    assert.equal(json(r.body).error.code, 'UPLOAD_TOO_LARGE');
  }
  assert.equal(await versionCount('big'), 0);
});

test('path traversal (CVE-2001-1267 class) in a published bundle: 422 ENTRY_PATH_TRAVERSAL, nothing stored', async () => {
  const m: Manifest = { format: 1, kind: 'rear-update-bundle', host: null, class: null, version: null, created: '2026-01-01T00:00:00Z', served: null, owns: [], entries: [] };
  const evil = rawTarGz([
    { path: MANIFEST_MEMBER, body: encodeManifest(m), mtime: new Date('2026-01-01T00:00:00Z') },
    { path: '../../etc/evil', body: 'x', mtime: new Date('2026-01-01T00:00:00Z') },
  ]);
  const r = await req('POST', '/api/v1/hosts/evil/versions', { body: evil, headers: { 'content-type': 'application/gzip' } });
  assert.equal(r.status, 422);
  assert.equal(json(r.body).error.code, 'ENTRY_PATH_TRAVERSAL');
  assert.equal(await versionCount('evil'), 0);
});

test('a plain tar.gz without a manifest is not a publish: 422 BUNDLE_MANIFEST_INVALID', async () => {
  const r = await req('POST', '/api/v1/hosts/plain/versions', { body: rawTarGz([{ path: 'etc/rear/local.conf', body: 'X=1\n' }]), headers: { 'content-type': 'application/gzip' } });
  assert.equal(r.status, 422);
  assert.equal(json(r.body).error.code, 'BUNDLE_MANIFEST_INVALID');
});

test('server killed with -9 during a publish: on restart no partial version, tmp cleaned, store consistent', async () => {
  const d2 = join(work, 'data-kill');
  const child = spawn(process.execPath, [CLI, 'serve', '--data', d2, '--listen', '127.0.0.1:0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /serving (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    child.on('exit', () => reject(new Error(err)));
  });
  const token = readFileSync(join(d2, 'admin.token'), 'utf8').trim();
  const file = join(work, 'kill.tar.gz');
  assert.equal(cli(['pack', '--root', hostTree('kill', 'K=1\n'), '-o', file]).status, 0);
  const bytes = readFileSync(file);
  const r = http.request(new URL('/api/v1/hosts/killed/versions', url), { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip', 'content-length': String(bytes.length + 1000) } });
  r.on('error', () => undefined);
  r.write(bytes);
  await new Promise((res) => setTimeout(res, 300));
  assert.equal(readdirSync(join(d2, 'tmp')).length, 1, 'the upload is being spooled');
  child.kill('SIGKILL');
  await new Promise((res) => child.once('exit', res));
  r.destroy();
  const again = await startServer(loadConfig({ data: d2, listen: '127.0.0.1:0' }, {}), { log: false });
  try {
    assert.deepEqual(readdirSync(join(d2, 'tmp')), []);
    const got = await fetch(`${again.url}/api/v1/hosts/killed/bundle`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(got.status, 404);
    assert.equal(((await got.json()) as { error: { code: string } }).error.code, 'HOST_UNKNOWN');
    assert.equal(again.adminToken, null, 'the admin token of the first start stays valid');
  } finally {
    await again.close();
  }
});

test('config precedence: file, then environment, then flags; a bad value names its source', () => {
  const f = join(work, 'cfg.json');
  writeFileSync(f, JSON.stringify({ listen: '127.0.0.1:1111', data: '/srv/a', maxUpload: '2MiB' }));
  const c = loadConfig({ config: f, data: '/srv/flag' }, { REAR_UPDATE_LISTEN: '127.0.0.1:2222' });
  assert.deepEqual([c.listen.port, c.data, c.maxUpload], [2222, '/srv/flag', 2 * 1024 * 1024]);
  assert.throws(() => loadConfig({ listen: 'nope' }, {}), /flag --listen: listen address "nope"/);
  assert.throws(() => loadConfig({}, { REAR_UPDATE_MAX_UPLOAD: 'lots' }), /environment REAR_UPDATE_MAX_UPLOAD/);
  writeFileSync(f, JSON.stringify({ lisen: 'x' }));
  assert.throws(() => loadConfig({ config: f }, {}), /unknown setting "lisen"/);
  assert.ok(!existsSync('/srv/flag'));
});

test('bundle substitution: a correctly signed bundle of another host is refused (BUNDLE_HOST_MISMATCH), root untouched', async () => {
  const other = await req('GET', '/api/v1/hosts/conc/bundle');
  assert.equal(other.status, 200);
  // A misrouting proxy or a man in the middle answering every request with host conc's bundle.
  const liar = http.createServer((_q, res) => res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': other.body.length }).end(other.body));
  await new Promise<void>((r) => liar.listen(0, '127.0.0.1', r));
  const port = (liar.address() as { port: number }).port;
  const dst = join(work, 'rescue-substituted');
  mkdirSync(dst);
  try {
    const r = await cliAsync(['apply', 'e229', '--server', `http://127.0.0.1:${port}`, '--token', admin, '--root', dst, '--pubkey', join(data, 'server.pub'), '-q']);
    assert.equal(r.status, 4, r.stderr);
    assert.equal(errorCode(r), 'BUNDLE_HOST_MISMATCH');
    assert.deepEqual(readdirSync(dst), []);
  } finally {
    liar.close();
  }
});
