// The admin API and `rear-update admin ...` against a real server on loopback (started
// in-process on a temporary data directory), driven through the built CLI and raw HTTP.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { ROUTES } from '../../src/server/app.ts';
import type { ServerContext } from '../../src/server/context.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { adminSide, cleanup, cli, CLI, errorCode, makeTree, succeeded, tempDir, type TreeSpec } from '../helpers.ts';
import { type HttpAnswer } from '../helpers.ts';


const work = tempDir('ru-admin-');
let srv: Running;
let admin: string;

/** Requests and `admin` runs with the admin token unless another is given. */
const { req, adm } = adminSide(() => srv, () => admin);
const ok = succeeded;

async function addHost(id: string, cls: string | null, macs: string[] = []): Promise<void> {
  const r = await req('POST', '/api/v1/hosts', { body: { id, class: cls, macs } });
  assert.equal(r.status, 201, r.body.toString());
}

async function newToken(scope: string): Promise<string> {
  const r = await req('POST', '/api/v1/tokens', { body: { scope } });
  assert.equal(r.status, 201, r.body.toString());
  return r.json.token as string;
}

/** Packs a tree (unsigned: the server signs what it serves) and publishes it for `host`. */
async function publish(host: string, name: string, spec: TreeSpec): Promise<Buffer> {
  const root = join(work, `tree-${name}`);
  makeTree(root, spec);
  const file = join(work, `${name}.tar.gz`);
  const p = cli(['pack', '--root', root, '--host', host, '-o', file]);
  assert.equal(p.status, 0, p.stderr);
  const bytes = readFileSync(file);
  const r = await req('POST', `/api/v1/hosts/${host}/versions`, { body: bytes });
  assert.equal(r.status, 201, r.body.toString());
  return bytes;
}

describe('admin API and CLI', () => {
  before(async () => {
    srv = await startServer(loadConfig({ data: join(work, 'data'), listen: '127.0.0.1:0' }, {}), { log: false });
    admin = readFileSync(join(work, 'data', 'admin.token'), 'utf8').trim();
  });
  after(async () => {
    await srv?.close();
    cleanup(work);
  });

  test('host add, list, show, set; a duplicate id, an unknown host and a malformed MAC are refused', async () => {
    const [added] = await Promise.all([
      adm(['host', 'add', 'alpha', '--class', 'typeA', '--mac', '52-54-00-AA-00-01', '--mac', '52:54:00:aa:00:02', '--hostname', 'alpha.example.com']),
      adm(['host', 'add', 'beta', '--class', 'typeB', '--uuid', '4c4c4544-0033-3010-8044-b2c04f4e3232']).then(ok),
    ]);
    assert.match(ok(added).stdout, /^added host alpha\n\s+host:\s+alpha\n\s+class:\s+typeA$/m);
    const [list, typeAList] = await Promise.all([adm(['host', 'list']).then(ok), adm(['host', 'list', '--class', 'typeA', '--json']).then(ok)]);
    assert.match(list.stdout, /^HOST\s+CLASS/m);
    assert.match(list.stdout, /^alpha\s+typeA\s+-\s+52:54:00:aa:00:01,52:54:00:aa:00:02\s+alpha\.example\.com/m, 'MACs normalized');
    assert.match(list.stdout, /^beta\s+typeB/m);
    const typeA = JSON.parse(typeAList.stdout) as { hosts: { id: string }[] };
    assert.deepEqual(typeA.hosts.map((h) => h.id), ['alpha']);

    ok(await adm(['host', 'set', 'beta', '--serial', 'SN-0042', '--unset', 'uuid']));
    const show = ok(await adm(['host', 'show', 'beta']));
    assert.match(show.stdout, /^host:\s+beta$/m);
    assert.match(show.stdout, /^class:\s+typeB$/m);
    assert.match(show.stdout, /^serial:\s+SN-0042$/m);
    assert.match(show.stdout, /^uuid:\s+-$/m);
    assert.match(show.stdout, /^served:\s+nothing/m);

    const [dup, macTaken, unknown] = await Promise.all([adm(['host', 'add', 'alpha']), adm(['host', 'add', 'gamma', '--mac', '52:54:00:aa:00:01']), adm(['host', 'show', 'nope'])]);
    assert.equal(dup.status, 8);
    assert.equal(errorCode(dup), 'STORE_CONFLICT');
    assert.equal(errorCode(macTaken), 'STORE_CONFLICT', 'a MAC belongs to one host');
    assert.equal(unknown.status, 8);
    assert.equal(errorCode(unknown), 'HOST_UNKNOWN');
    const bad = await req('POST', '/api/v1/hosts', { body: { id: 'gamma', macs: ['not-a-mac'] } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'REQUEST_INVALID');
    assert.equal(bad.json.error.context.param, 'macs');
    const extra = await req('POST', '/api/v1/hosts', { body: { id: 'gamma', colour: 'red' } });
    assert.equal(extra.json.error.code, 'REQUEST_INVALID');
    assert.equal((await req('GET', '/api/v1/hosts/gamma')).status, 404, 'refused adds store nothing');

    const audit = await req('GET', '/api/v1/audit?kind=host');
    assert.deepEqual(audit.json.events.map((e: { host: string; result: string }) => `${e.host} ${e.result}`).sort(), ['alpha STORE_CONFLICT', 'alpha ok', 'beta ok', 'beta ok', 'gamma STORE_CONFLICT']);
  });

  test('token create prints the token once; list never shows secrets; a revoked token gets 401 AUTH_INVALID', async () => {
    await addHost('tok-host', 'typeT');
    const created = ok(await adm(['token', 'create', '--fetch', 'tok-host', '--label', 'rescue iso']));
    const token = created.stdout.trim();
    assert.match(token, /^ru_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/, 'stdout is the token alone');
    assert.match(created.stderr, /only time the token is shown/);
    assert.match(created.stderr, /RECOVERY_UPDATE_URL=http:\/\/rear:\$TOKEN@127\.0\.0\.1:\d+\/rear\/tok-host\.tar\.gz/);
    assert.ok(!created.stderr.includes(token), 'the secret is not repeated on stderr');
    const id = token.slice(3, 15);

    assert.equal((await req('GET', '/api/v1/hosts/tok-host/logs', { token })).status, 200, 'the new token works');

    const [list, listed] = await Promise.all([adm(['token', 'list']).then(ok), adm(['token', 'list', '--json']).then(ok)]);
    assert.match(list.stdout, new RegExp(`^${id}\\s+fetch:tok-host\\s+rescue iso\\s+\\d{4}-`, 'm'));
    assert.ok(!listed.stdout.includes(token.slice(16)), 'no secret in the list');
    assert.ok(!/secretHash|[0-9a-f]{64}/.test(listed.stdout), 'no hash in the list');

    const revoked = ok(await adm(['token', 'revoke', id]));
    assert.match(revoked.stdout, new RegExp(`token ${id} \\(fetch:tok-host\\) revoked at`));
    const after = await req('GET', '/api/v1/hosts/tok-host/logs', { token });
    assert.equal(after.status, 401);
    assert.equal(after.json.error.code, 'AUTH_INVALID');
    const viaCli = await adm(['host', 'list'], token);
    assert.equal(errorCode(viaCli), 'AUTH_INVALID');
    assert.match(ok(await adm(['token', 'list'])).stdout, new RegExp(`^${id}\\s+fetch:tok-host\\s+rescue iso\\s+\\S+ \\S+\\s+\\d{4}-`, 'm'), 'list shows when it was revoked');

    const [noHost, twoScopes, unknownToken] = await Promise.all([
      adm(['token', 'create', '--publish', 'no-such-host']), adm(['token', 'create', '--admin', '--fetch', 'tok-host']), adm(['token', 'revoke', '0123456789ab']),
    ]);
    assert.equal(noHost.status, 8);
    assert.equal(errorCode(noHost), 'HOST_UNKNOWN');
    assert.equal(twoScopes.status, 2);
    assert.match(twoScopes.stderr, /exactly one of --admin, --view, --operate, --publish HOST/);
    assert.equal(errorCode(unknownToken), 'TOKEN_UNKNOWN');
    const badScope = await req('POST', '/api/v1/tokens', { body: { scope: 'fetch:../x' } });
    assert.equal(badScope.json.error.code, 'REQUEST_INVALID');
  });

  test('pending machines: assign by id and by MAC, then resolve returns the host', async () => {
    await addHost('pend-host', 'typeP');
    const fetchClass = await newToken('fetch-class:typeP');
    const resolve = (q: string): Promise<HttpAnswer> => req('GET', `/api/v1/resolve?${q}`, { token: fetchClass });
    const one = await resolve('mac=52:54:00:bb:00:01&hostname=newbox1');
    const two = await resolve('mac=52:54:00:bb:00:02&serial=XYZ-2');
    assert.equal(one.status, 202);
    assert.equal(two.status, 202);

    const pending = ok(await adm(['pending']));
    assert.match(pending.stdout, new RegExp(`^${one.json.pending.id}\\s+52:54:00:bb:00:01\\s+-\\s+-\\s+newbox1\\s+127\\.0\\.0\\.1`, 'm'));
    assert.match(pending.stdout, new RegExp(`^${two.json.pending.id}\\s+52:54:00:bb:00:02\\s+-\\s+XYZ-2`, 'm'));

    const byId = ok(await adm(['assign', String(one.json.pending.id), 'pend-host']));
    assert.match(byId.stdout, new RegExp(`pending machine ${one.json.pending.id} \\(MAC 52:54:00:bb:00:01, hostname newbox1\\) assigned to pend-host`));
    ok(await adm(['assign', '52-54-00-BB-00-02', 'pend-host']));

    for (const q of ['mac=52:54:00:bb:00:01&hostname=newbox1', 'mac=52:54:00:bb:00:02&serial=XYZ-2']) {
      const r = await resolve(q);
      assert.equal(r.status, 200, r.body.toString());
      assert.deepEqual([r.json.status, r.json.host, r.json.by], ['resolved', 'pend-host', 'assignment']);
    }
    assert.match(ok(await adm(['pending'])).stdout, /no machine is waiting/);
    const all = JSON.parse(ok(await adm(['pending', '--all', '--json'])).stdout) as { pending: { assignedHost: string }[] };
    assert.equal(all.pending.filter((p) => p.assignedHost === 'pend-host').length, 2);
    assert.match((await req('GET', '/metrics', { token: null })).body.toString(), /^rear_update_pending_machines 0$/m);

    const [none, noHost] = await Promise.all([adm(['assign', '52:54:00:bb:00:99', 'pend-host']), adm(['assign', String(one.json.pending.id), 'no-such-host'])]);
    assert.equal(none.status, 8);
    assert.equal(errorCode(none), 'PENDING_UNKNOWN');
    assert.equal(errorCode(noHost), 'HOST_UNKNOWN');
    const junk = await req('POST', '/api/v1/assign', { body: { pending: 'hello', host: 'pend-host' } });
    assert.equal(junk.json.error.code, 'REQUEST_INVALID');
    const audit = await req('GET', '/api/v1/audit?kind=assign&host=pend-host&result=ok');
    assert.equal(audit.json.events.length, 2);
  });

  test('versions, show, diff with a text diff, pin serves version 1, unpin serves 2; audit shows publish and fetch', async () => {
    await addHost('ver-host', 'typeV', ['52:54:00:cc:00:01']);
    const layout = { var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda 1000 gpt\n' } } } } };
    await publish('ver-host', 'v1', { etc: { rear: { 'local.conf': 'OUTPUT=ISO\nBACKUP=NETFS\nKEEP=1\n', 'old.conf': 'X=1\n', 'blob.bin': Buffer.from([1, 0, 2]) } }, ...layout });
    await publish('ver-host', 'v2', { etc: { rear: { 'local.conf': 'OUTPUT=ISO\nBACKUP=RSYNC\nKEEP=1\n', 'new.conf': 'Y=2\n', 'blob.bin': Buffer.from([1, 0, 3]) } }, ...layout });

    const [versions, show, showServed, diff, diffJson] = await Promise.all([
      adm(['versions', 'ver-host']), adm(['show', 'ver-host', '1']), adm(['show', 'ver-host']), adm(['diff', 'ver-host', '1', '2']), adm(['diff', 'ver-host', '1', '2', '--json']),
    ].map((p) => p.then(ok)));
    assert.match(versions!.stdout, /^1\s+\d{4}-\S+ \S+\s+\d/m);
    assert.match(versions!.stdout, /^2\s+.*served$/m);

    assert.match(show!.stdout, /^version:\s+1$/m);
    assert.match(show!.stdout, /^file\s+0644\s+\d+:\d+\s+4\s+etc\/rear\/old\.conf$/m);
    assert.match(showServed!.stdout, /^version:\s+2$/m, 'default: the version served');
    const raw = await req('GET', '/api/v1/hosts/ver-host/versions/1');
    assert.equal(raw.json.version.manifest.kind, 'rear-update-bundle', 'the manifest comes as a JSON object');

    assert.match(diff!.stdout, /version 1 → 2: 1 added, 1 removed, 2 changed/);
    assert.match(diff!.stdout, /^\s+added\s+etc\/rear\/new\.conf\s+file 0644/m);
    assert.match(diff!.stdout, /^\s+removed\s+etc\/rear\/old\.conf/m);
    assert.match(diff!.stdout, /^\s+changed\s+etc\/rear\/local\.conf\s+sha256 [0-9a-f]{12}… → [0-9a-f]{12}…$/m);
    assert.match(diff!.stdout, /^--- a\/etc\/rear\/local\.conf\tversion 1\n\+\+\+ b\/etc\/rear\/local\.conf\tversion 2\n@@ -1,3 \+1,3 @@\n OUTPUT=ISO\n-BACKUP=NETFS\n\+BACKUP=RSYNC\n KEEP=1$/m);
    assert.match(diff!.stdout, /^no text diff for etc\/rear\/blob\.bin: not text/m);
    const dj = JSON.parse(diffJson!.stdout) as { changed: { path: string; changes: { field: string }[] }[]; texts: { path: string }[] };
    assert.deepEqual(dj.changed.map((c) => c.path), ['etc/rear/blob.bin', 'etc/rear/local.conf']);
    assert.deepEqual(dj.texts.map((t) => t.path), ['etc/rear/local.conf']);

    const fetchTok = await newToken('fetch:ver-host');
    const served = async (path: string): Promise<string> => {
      const r = await req('GET', path, { token: fetchTok });
      assert.equal(r.status, 200, r.body.toString());
      return String(r.headers['x-rear-update-version']);
    };
    assert.equal(await served('/api/v1/hosts/ver-host/bundle'), '2');
    assert.match(ok(await adm(['pin', 'ver-host', '1'])).stdout, /version 1 pinned/);
    assert.equal(await served('/api/v1/hosts/ver-host/bundle'), '1');
    assert.equal(await served('/rear/52-54-00-cc-00-01.tar.gz'), '1');
    const [pinned, missing] = await Promise.all([adm(['versions', 'ver-host']), adm(['pin', 'ver-host', '9'])]);
    assert.match(ok(pinned).stdout, /^1\s+.*served \(pinned\)$/m);
    assert.equal(errorCode(missing), 'VERSION_UNKNOWN');
    ok(await adm(['unpin', 'ver-host']));
    assert.equal(await served('/api/v1/hosts/ver-host/bundle'), '2');

    const [all, fetches, none] = await Promise.all([
      adm(['audit', '--host', 'ver-host', '--json']), adm(['audit', '--host', 'ver-host', '--kind', 'fetch', '--since', '1h']), adm(['audit', '--host', 'ver-host', '--since', '2999-01-01T00:00:00Z']),
    ].map((p) => p.then(ok)));
    const events = JSON.parse(all!.stdout).events as { kind: string; version: number | null; result: string; token: string | null }[];
    const kinds = events.map((e) => `${e.kind} ${e.version ?? '-'} ${e.result}`);
    for (const k of ['publish 1 ok', 'publish 2 ok', 'fetch 2 ok', 'fetch 1 ok', 'pin 1 ok', 'pin 9 VERSION_UNKNOWN', 'pin - ok']) assert.ok(kinds.includes(k), `audit has "${k}": ${kinds.join(', ')}`);
    assert.match(fetches!.stdout, new RegExp(`^\\d+\\s+\\S+ \\S+\\s+fetch\\s+ver-host\\s+1\\s+${fetchTok.slice(3, 15)}\\s+127\\.0\\.0\\.1\\s+\\d+\\s+ok\\s+rear$`, 'm'));
    assert.equal(fetches!.stdout.trim().split('\n').length, 1 + 4, 'four fetches, nothing else');
    assert.match(none!.stdout, /no matching events/);
  });

  test('logs: admin logs --follow prints a slowly streamed upload as it arrives and exits when it ends', async () => {
    await addHost('log-host', 'typeL');
    await addHost('log-other', 'typeL');
    const first = 'first chunk: rear recover starting\n';
    const second = 'second chunk: finished\n';
    const fetchTok = await newToken('fetch:log-host');
    // ReaR's upload: one long chunked PUT, token in the raw Authorization header.
    const upload = http.request(new URL('/clients/log-host/log/recover/20260101120000', srv.url), { method: 'PUT', headers: { authorization: fetchTok, 'transfer-encoding': 'chunked' }, agent: false });
    const uploaded = new Promise<HttpAnswer>((resolve, reject) => {
      upload.on('response', (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts), json: JSON.parse(Buffer.concat(parts).toString()) }));
      });
      upload.on('error', reject);
    });
    uploaded.catch(() => undefined); // awaited below; a failed test destroys the upload
    upload.write(first);
    let child: ReturnType<typeof spawn> | null = null;
    try {
      let logId: number | undefined;
      for (let i = 0; i < 100 && logId === undefined; i++) {
        logId = (await req('GET', '/api/v1/hosts/log-host/logs')).json.logs[0]?.id;
        if (logId === undefined) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(logId !== undefined, 'the upload opened a log');

      child = spawn(process.execPath, [CLI, 'admin', 'logs', 'log-host', '--follow', '--server', srv.url, '--token', admin], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      let exitedAt: number | null = null;
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child!.on('close', (code) => {
        exitedAt = Date.now();
        resolve(code);
      }));
      for (let i = 0; i < 200 && !stdout.includes('first chunk'); i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(stdout, first, `the follower printed the first chunk while the upload goes on\n${stderr}`);

      await new Promise((r) => setTimeout(r, 300));
      upload.write(second);
      for (let i = 0; i < 200 && !stdout.includes('second chunk'); i++) await new Promise((r) => setTimeout(r, 25));
      assert.equal(exitedAt, null, 'the follower waits while the upload is open');
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(exitedAt, null, 'the follower waits while the upload is open');
      const endedAt = Date.now();
      upload.end();
      const code = await exited;
      assert.equal(code, 0, stderr);
      assert.ok(exitedAt! >= endedAt, 'the follower exits after the upload ended');
      assert.equal(stdout, first + second);
      assert.match(stderr, new RegExp(`following log ${logId} \\(recover 20260101120000`));
      const done = await uploaded;
      assert.equal(done.status, 201);
      assert.equal(done.json.log.complete, true);

      const list = ok(await adm(['logs', 'log-host']));
      assert.match(list.stdout, new RegExp(`^${logId}\\s+recover\\s+20260101120000\\s+.*\\s+${first.length + second.length} B\\s+yes\\s+127\\.0\\.0\\.1$`, 'm'));
      const printed = ok(await adm(['logs', 'log-host', '--log', String(logId), '--offset', String(first.length)]));
      assert.equal(printed.stdout, second);
      // A log is readable by a fetch token of its host, and by no one else's.
      const byHostToken = await req('GET', `/api/v1/logs/${logId}`, { token: fetchTok });
      assert.equal(byHostToken.body.toString(), first + second);
      assert.equal(byHostToken.headers['content-type'], 'text/plain; charset=utf-8');
      const wrongHost = await adm(['logs', 'log-other', '--log', String(logId)]);
      assert.equal(errorCode(wrongHost), 'LOG_UNKNOWN', 'a log of another host is not printed as this host\'s');
      const noLog = await adm(['logs', 'log-other', '--follow']);
      assert.equal(errorCode(noLog), 'LOG_UNKNOWN');
    } finally {
      // A failed assertion must not leave the upload open: the server's close would wait for it.
      if (!upload.writableEnded) upload.destroy();
      child?.kill();
    }
  });

  test('token scope: a token for host A or class A gets 403 on every route of host B', async () => {
    await addHost('scope-a', 'classA', ['52:54:00:dd:00:0a']);
    await addHost('scope-b', 'classB', ['52:54:00:dd:00:0b']);
    const spec = { etc: { rear: { 'local.conf': 'OUTPUT=ISO\n', 'site.conf': '# site\n' } } };
    await publish('scope-a', 'scope-a', spec);
    const bundleB = await publish('scope-b', 'scope-b', spec);
    const log = await req('PUT', '/clients/scope-b/log/recover/1', { auth: admin, body: 'log of B\n' });
    assert.equal(log.status, 201);
    const logB = log.json.log.id as number;
    const pending = await req('GET', '/api/v1/resolve?mac=52:54:00:dd:00:99', { token: await newToken('fetch-class:classB') });
    const victim = await newToken('fetch:scope-b');
    const recoveryB = await req('POST', '/api/v1/recoveries', { token: victim, body: { host: 'scope-b' } });
    assert.equal(recoveryB.status, 201, recoveryB.body.toString());
    const recB = recoveryB.json.recovery.id as number;

    const tokens = { 'fetch:scope-a': await newToken('fetch:scope-a'), 'publish:scope-a': await newToken('publish:scope-a'), 'fetch-class:classA': await newToken('fetch-class:classA'), 'publish-class:classA': await newToken('publish-class:classA') };

    // Every route of the app, as its registrars declare it: a route added later without a row here fails this test.
    const declared = new Set<string>();
    const recorder = new Proxy({}, { get: (_t, method: string) => (url: string) => declared.add(`${method.toUpperCase()} ${url}`) }) as unknown as FastifyInstance;
    for (const r of ROUTES) r(recorder, {} as ServerContext);
    // The console is a plugin (app.register) whose pages authenticate by session: its own tests cover them.
    for (const r of declared) if (r.startsWith('REGISTER ')) declared.delete(r);

    type Row = { route: string; method: string; path: string; body?: Buffer | string | object };
    const hostB: Row[] = [
      { route: 'GET /api/v1/hosts/:id/bundle', method: 'GET', path: '/api/v1/hosts/scope-b/bundle' },
      { route: 'GET /rear/:file', method: 'GET', path: '/rear/scope-b.tar.gz' },
      { route: 'GET /rear/:file', method: 'GET', path: '/rear/scope-b.rear_config.tgz' },
      { route: 'GET /rear/:file', method: 'GET', path: '/rear/52-54-00-dd-00-0b.tar.gz' },
      { route: 'GET /:file', method: 'GET', path: '/scope-b.tar.gz' },
      { route: 'GET /clients/:id/config', method: 'GET', path: '/clients/scope-b/config' },
      { route: 'GET /clients/:id/config/:cfg', method: 'GET', path: '/clients/scope-b/config/site' },
      { route: 'PUT /clients/:id/log/:workflow/:stamp', method: 'PUT', path: '/clients/scope-b/log/recover/2', body: 'not yours\n' },
      { route: 'POST /api/v1/hosts/:id/versions', method: 'POST', path: '/api/v1/hosts/scope-b/versions', body: bundleB },
      { route: 'GET /api/v1/hosts/:id', method: 'GET', path: '/api/v1/hosts/scope-b' },
      { route: 'PATCH /api/v1/hosts/:id', method: 'PATCH', path: '/api/v1/hosts/scope-b', body: { class: 'classA' } },
      { route: 'GET /api/v1/hosts/:id/versions', method: 'GET', path: '/api/v1/hosts/scope-b/versions' },
      { route: 'GET /api/v1/hosts/:id/versions/:v', method: 'GET', path: '/api/v1/hosts/scope-b/versions/1' },
      { route: 'GET /api/v1/hosts/:id/diff', method: 'GET', path: '/api/v1/hosts/scope-b/diff?from=1&to=1' },
      { route: 'PUT /api/v1/hosts/:id/pin', method: 'PUT', path: '/api/v1/hosts/scope-b/pin', body: { version: 1 } },
      { route: 'DELETE /api/v1/hosts/:id/pin', method: 'DELETE', path: '/api/v1/hosts/scope-b/pin' },
      { route: 'GET /api/v1/hosts/:id/logs', method: 'GET', path: '/api/v1/hosts/scope-b/logs' },
      { route: 'GET /api/v1/logs/:id', method: 'GET', path: `/api/v1/logs/${logB}` },
      { route: 'GET /api/v1/logs/:id', method: 'GET', path: `/api/v1/logs/${logB}?follow=1` },
      // a layer of B's class (publish-class:classA may publish classA's layers only)
      { route: 'POST /api/v1/layers/:cls/:name/versions', method: 'POST', path: '/api/v1/layers/classB/nic/versions', body: bundleB },
      { route: '', method: 'POST', path: '/api/v1/layers/*/nic/versions', body: bundleB },
      // B's recovery: opened for B, reported to, or read (docs/recoveries.md)
      { route: 'POST /api/v1/recoveries', method: 'POST', path: '/api/v1/recoveries', body: { host: 'scope-b' } },
      { route: 'POST /api/v1/recoveries/:id/events', method: 'POST', path: `/api/v1/recoveries/${recB}/events`, body: { kind: 'failed', error: 'FORGED', message: 'not yours' } },
      { route: 'POST /api/v1/recoveries/:id/heartbeat', method: 'POST', path: `/api/v1/recoveries/${recB}/heartbeat` },
      { route: 'GET /api/v1/recoveries/:id', method: 'GET', path: `/api/v1/recoveries/${recB}` },
    ];
    // Admin routes refuse every non-admin token, also for the token's own host.
    const adminOnly: Row[] = [
      { route: 'GET /api/v1/hosts', method: 'GET', path: '/api/v1/hosts' },
      { route: 'POST /api/v1/hosts', method: 'POST', path: '/api/v1/hosts', body: { id: 'scope-c' } },
      { route: 'GET /api/v1/tokens', method: 'GET', path: '/api/v1/tokens' },
      { route: 'POST /api/v1/tokens', method: 'POST', path: '/api/v1/tokens', body: { scope: 'fetch:scope-b' } },
      { route: 'DELETE /api/v1/tokens/:id', method: 'DELETE', path: `/api/v1/tokens/${victim.slice(3, 15)}` },
      { route: 'GET /api/v1/pending', method: 'GET', path: '/api/v1/pending?all=1' },
      { route: 'POST /api/v1/assign', method: 'POST', path: '/api/v1/assign', body: { pending: pending.json.pending.id, host: 'scope-a' } },
      { route: 'GET /api/v1/pending/:id/hints', method: 'GET', path: `/api/v1/pending/${pending.json.pending.id}/hints` },
      { route: 'DELETE /api/v1/pending/:id', method: 'DELETE', path: `/api/v1/pending/${pending.json.pending.id}` },
      { route: 'GET /api/v1/recoveries', method: 'GET', path: '/api/v1/recoveries' },
      { route: '', method: 'GET', path: '/api/v1/recoveries/999999' },
      { route: '', method: 'POST', path: '/api/v1/recoveries/999999/events', body: { kind: 'note' } },
      { route: 'GET /api/v1/audit', method: 'GET', path: '/api/v1/audit' },
      { route: 'GET /api/v1/keys', method: 'GET', path: '/api/v1/keys' },
      { route: 'POST /api/v1/keys/rotate', method: 'POST', path: '/api/v1/keys/rotate', body: {} },
      { route: 'POST /api/v1/keys/retire', method: 'POST', path: '/api/v1/keys/retire', body: { fingerprint: 'ed25519:0123456789abcdef' } },
      ...['/api/v1/hosts/scope-a', '/api/v1/hosts/scope-a/versions', '/api/v1/hosts/scope-a/versions/1', '/api/v1/hosts/scope-a/diff?from=1&to=1'].map((path) => ({ route: '', method: 'GET', path })),
      { route: '', method: 'PATCH', path: '/api/v1/hosts/scope-a', body: { class: 'classB' } },
      { route: '', method: 'PUT', path: '/api/v1/hosts/scope-a/pin', body: { version: 1 } },
      { route: '', method: 'DELETE', path: '/api/v1/hosts/scope-a/pin' },
      { route: 'GET /api/v1/layers', method: 'GET', path: '/api/v1/layers' },
      { route: 'GET /api/v1/layers/:cls/:name/versions', method: 'GET', path: '/api/v1/layers/classA/nic/versions' },
      { route: 'GET /api/v1/layers/:cls/:name/versions/:v', method: 'GET', path: '/api/v1/layers/classA/nic/versions/1' },
      { route: 'GET /api/v1/layers/:cls/:name/versions/:v/bundle', method: 'GET', path: '/api/v1/layers/classA/nic/versions/1/bundle' },
      { route: 'GET /api/v1/layers/:cls/:name/diff', method: 'GET', path: '/api/v1/layers/classA/nic/diff?from=1&to=1' },
      { route: 'PUT /api/v1/layers/:cls/:name/pin', method: 'PUT', path: '/api/v1/layers/classA/nic/pin', body: { version: 1 } },
      { route: 'DELETE /api/v1/layers/:cls/:name/pin', method: 'DELETE', path: '/api/v1/layers/classA/nic/pin' },
      // the offline export and the store check (docs/export.md): every host's bundle, admin only
      { route: 'GET /api/v1/export', method: 'GET', path: '/api/v1/export?host=scope-a' },
      { route: 'GET /api/v1/export/hosts/:id/bundle', method: 'GET', path: '/api/v1/export/hosts/scope-a/bundle?version=1&exported=2026-01-01T00:00:00.000Z' },
      { route: 'GET /api/v1/fsck', method: 'GET', path: '/api/v1/fsck' },
      { route: 'POST /api/v1/fsck/gc', method: 'POST', path: '/api/v1/fsck/gc?grace=1h' },
    ];
    // Open to any valid token, whatever its scope: health, the key, resolve, the client executable and packages (they hold no secret), what a token is (doctor).
    const open = ['GET /healthz', 'GET /metrics', 'GET /api/v1/server-key', 'GET /api/v1/key-statements', 'GET /api/v1/resolve', 'GET /download/rear-update', 'GET /download/rear-update.sig', 'GET /download/', 'GET /download/:name', 'GET /api/v1/token'];
    const covered = new Set([...hostB, ...adminOnly].map((r) => r.route).filter((r) => r !== ''));
    assert.deepEqual([...declared].filter((r) => !covered.has(r) && !open.includes(r)), [], 'every route is in the table (or known to be open to any token)');

    const refusals: string[] = [];
    for (const [name, token] of Object.entries(tokens)) {
      for (const row of [...hostB, ...adminOnly]) {
        const r = await req(row.method, row.path, { token, ...(row.body !== undefined ? { body: row.body } : {}) });
        if (r.status !== 403 || r.json?.error?.code !== 'FORBIDDEN') refusals.push(`${name} ${row.method} ${row.path}: ${r.status} ${r.body.toString().slice(0, 120)}`);
      }
      // DRLM clients send the raw token; ReaR's URL carries it as Basic credentials.
      const raw = await req('GET', '/clients/scope-b/config', { auth: token });
      const basic = await req('GET', '/rear/scope-b.tar.gz', { auth: `Basic ${Buffer.from(`rear:${token}`).toString('base64')}` });
      for (const [what, r] of [['raw', raw], ['basic', basic]] as const) if (r.status !== 403) refusals.push(`${name} ${what}: ${r.status}`);
    }
    assert.deepEqual(refusals, [], 'every route of host B and every admin route answers 403 FORBIDDEN');

    // Nothing of B changed, and the same tokens do reach host A: the 403s are about scope.
    const b = (await req('GET', '/api/v1/hosts/scope-b')).json;
    assert.deepEqual([b.host.class, b.host.pinned, b.versionCount, b.recentLogs.length], ['classB', null, 1, 1]);
    assert.deepEqual((await req('GET', `/api/v1/recoveries/${recB}`)).json.events.map((e: { kind: string }) => e.kind), ['booted'], 'no forged event in B\'s recovery');
    assert.equal((await req('GET', `/api/v1/pending/${pending.json.pending.id}/hints`)).status, 200, 'the pending machine was not forgotten');
    assert.equal((await req('GET', `/api/v1/tokens`)).json.tokens.find((t: { id: string }) => t.id === victim.slice(3, 15)).revoked, null);
    for (const [name, token] of Object.entries(tokens)) {
      if (name.startsWith('publish-class:')) continue; // reaches no host at all: layers of its class only
      for (const path of ['/api/v1/hosts/scope-a/bundle', '/rear/scope-a.tar.gz', '/clients/scope-a/config', '/api/v1/hosts/scope-a/logs']) {
        assert.equal((await req('GET', path, { token })).status, 200, `${name} GET ${path}`);
      }
    }
    assert.equal((await req('GET', '/api/v1/hosts/scope-b/bundle', { token: victim })).status, 200, 'B\'s own token still works');
  });
});
