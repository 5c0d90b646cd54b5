// Replay: someone on the path between a rescue system and the server (plain HTTP on an
// isolated network is common) captures a correctly signed bundle and answers a later apply
// with it: an old disk layout would recreate the wrong partitions. A signature cannot tell old
// from current, and a rescue system has no clock to trust; the nonce that apply sends and the
// server signs into the bundle it seals for that request can (core/freshness.ts). Real server
// and real CLI on 127.0.0.1; the replaying server is a tiny node:http one.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, cli, cliAsync, errorCode, fakeSysRoot, makeTree, snapshot, tempDir } from '../helpers.ts';

const work = tempDir('ru-replay-');
const data = join(work, 'data');
let srv: Running;
let admin = '';
let pub = '';
/** Incompressible, so that cutting the download half-way is a real mid-transfer cut. */
const blob = randomBytes(2 * 1024 * 1024);
const LOCAL_CONF = 'OUTPUT=ISO\nHOST_ONLY_VAR=e229\n';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function get(base: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const r = http.request(new URL(path, base), { headers: { authorization: `Bearer ${admin}`, ...headers } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    r.on('error', reject);
    r.end();
  });
}

/** A node:http server on 127.0.0.1 that records every request it gets. */
async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; seen: IncomingMessage[]; close: () => void }> {
  const seen: IncomingMessage[] = [];
  const s = http.createServer((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, seen, close: () => s.close() };
}

/** What `inspect --json` says about bundle bytes: the signed manifest's fields and the signature. */
function inspect(bytes: Buffer): { host: string; nonce: string | null; signature: { status: string } } {
  const f = join(work, `inspect-${randomBytes(4).toString('hex')}.tar.gz`);
  writeFileSync(f, bytes);
  const r = cli(['inspect', f, '--pubkey', pub, '--json']);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { host: string; nonce: string | null; signature: { status: string } };
}

/** A rescue root that already holds something, so "unchanged" means more than "still empty". */
function rescueRoot(name: string): string {
  const root = join(work, `root-${name}`);
  makeTree(root, { etc: { rear: { 'local.conf': 'OUTPUT=ISO\n# from the image\n' } } });
  return root;
}

before(async () => {
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  pub = join(data, 'server.pub');
  const tree = join(work, 'tree-e229');
  makeTree(tree, {
    etc: { rear: { 'local.conf': LOCAL_CONF, 'blob.bin': blob } },
    var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda 1000 gpt\n' } } } },
  });
  const sys = fakeSysRoot(join(work, 'sys-e229'), ['52:54:00:00:22:29'], 'e229');
  const p = await cliAsync(['publish', '--server', srv.url, '--token', admin, '--root', tree, '--host', 'e229', '--sys-root', sys]);
  assert.equal(p.status, 0, p.stderr);
});
after(async () => {
  await srv?.close();
  cleanup(work);
});

test('replay: a bundle captured from the server and served later by a different HTTP server to apply --server is refused with BUNDLE_STALE, the root unchanged', async () => {
  // Captured from the live server: once as curl fetches it (no nonce), once as an earlier
  // apply fetched it (carrying that apply's nonce). Both are correctly signed by the server.
  const plain = await get(srv.url, '/api/v1/hosts/e229/bundle');
  assert.equal(plain.status, 200);
  const earlierNonce = randomBytes(16).toString('base64url');
  const earlier = await get(srv.url, '/api/v1/hosts/e229/bundle', { 'x-rear-update-nonce': earlierNonce });
  assert.equal(earlier.status, 200);
  assert.deepEqual([inspect(plain.body).signature.status, inspect(plain.body).nonce], ['valid', null]);
  assert.deepEqual([inspect(earlier.body).signature.status, inspect(earlier.body).nonce], ['valid', earlierNonce]);

  const captures = [['no nonce', plain, /carries no nonce/], ['an earlier apply\'s nonce', earlier, /carries another request's nonce/]] as const;
  for (const [i, [what, captured, carried]] of captures.entries()) {
    // The replaying server answers the API paths apply uses with the captured bytes.
    const replayer = await listen((req, res) => {
      if (req.url?.startsWith('/api/v1/resolve')) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'resolved', host: 'e229', class: null, by: 'mac', value: '52:54:00:00:22:29', pending: null, version: 1 }));
        return;
      }
      if (req.url?.includes('/bundle')) {
        res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': captured.body.length, etag: String(captured.headers.etag) }).end(captured.body);
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'ROUTE_UNKNOWN', message: 'not replayed', context: {} } }));
    });
    try {
      const sys = fakeSysRoot(join(work, `sys-replay-${i}`), ['52:54:00:00:22:29'], 'e229');
      const runs: [string, string[]][] = [
        ['apply e229 --server', ['e229', '--server', replayer.url]],
        ['apply --server (resolved by facts)', ['--server', replayer.url, '--sys-root', sys]],
        ['apply URL of the server\'s bundle route', [`${replayer.url}/api/v1/hosts/e229/bundle`, '--server', replayer.url]],
        ['apply --dry-run', ['e229', '--server', replayer.url, '--dry-run']],
      ];
      for (const [j, [how, args]] of runs.entries()) {
        const root = rescueRoot(`replay-${i}-${j}`);
        const was = snapshot(root);
        const r = await cliAsync(['apply', ...args, '--token', admin, '--root', root, '--pubkey', pub, '-q']);
        assert.equal(r.status, 4, `${what}, ${how}: ${r.stderr}`);
        assert.equal(errorCode(r), 'BUNDLE_STALE', `${what}, ${how}: ${r.stderr}`);
        assert.match(r.stderr, /replayed or cached answer/, how);
        assert.match(r.stderr, carried, how);
        assert.deepEqual(snapshot(root), was, `${what}, ${how}: the root changed`);
      }
      // Every bundle request carried a nonce of its own, and none the captured one.
      const nonces = replayer.seen.filter((q) => q.url?.includes('/bundle')).map((q) => String(q.headers['x-rear-update-nonce'] ?? new URL(q.url ?? '', replayer.url).searchParams.get('nonce')));
      assert.equal(nonces.length, runs.length);
      assert.equal(new Set(nonces).size, nonces.length);
      for (const n of nonces) assert.match(n, /^[A-Za-z0-9_-]{22}$/);
      assert.ok(!nonces.includes(earlierNonce));
    } finally {
      replayer.close();
    }
  }
});

test('the live server\'s fresh answer is accepted: it carries the nonce this apply sent', async () => {
  // A transparent relay in front of the live server shows what went over the wire.
  const answers: { nonce: string | undefined; body: Buffer }[] = [];
  const relay = await listen((req, res) => {
    const up = http.request(new URL(req.url ?? '/', srv.url), { method: req.method, headers: { ...req.headers, host: new URL(srv.url).host } }, (ur) => {
      const parts: Buffer[] = [];
      ur.on('data', (c: Buffer) => parts.push(c));
      ur.on('end', () => {
        const body = Buffer.concat(parts);
        if (req.url?.includes('/bundle')) answers.push({ nonce: (req.headers['x-rear-update-nonce'] as string | undefined) ?? new URL(req.url, srv.url).searchParams.get('nonce') ?? undefined, body });
        res.writeHead(ur.statusCode ?? 502, ur.headers).end(body);
      });
    });
    req.pipe(up);
  });
  try {
    const sys = fakeSysRoot(join(work, 'sys-live'), ['52:54:00:00:22:29'], 'e229');
    const runs: [string, string[]][] = [
      ['apply e229 --server', ['e229', '--server', relay.url]],
      ['apply --server (resolved by facts)', ['--server', relay.url, '--sys-root', sys]],
      ['apply URL of the server\'s bundle route', [`${relay.url}/api/v1/hosts/e229/bundle`, '--server', relay.url]],
    ];
    for (const [j, [how, args]] of runs.entries()) {
      const root = rescueRoot(`live-${j}`);
      const r = await cliAsync(['apply', ...args, '--token', admin, '--root', root, '--pubkey', pub, '-q']);
      assert.equal(r.status, 0, `${how}: ${r.stderr}`);
      assert.match(r.stdout, /host e229, version 1, signed by ed25519:/, how);
      assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), LOCAL_CONF, how);
      assert.deepEqual(readFileSync(join(root, 'etc/rear/blob.bin')), blob, how);
    }
    assert.equal(answers.length, runs.length);
    for (const a of answers) {
      assert.match(String(a.nonce), /^[A-Za-z0-9_-]{22}$/);
      assert.equal(inspect(a.body).nonce, a.nonce, 'the server signed the request\'s nonce into its answer');
    }
  } finally {
    relay.close();
  }
});

test('a download cut mid-body resumes with If-Range and the same nonce, gets the same sealed bytes, and applies', async () => {
  // A relay that cuts the first bundle answer half-way, and holds the resume back for more
  // than a second: a fresh sealing would carry a later serving time, so only the If-Range
  // (serving time and nonce) gives bytes that fit the first half.
  const bundleRequests: { headers: IncomingHttpHeaders; status: number; etag: string }[] = [];
  const relay = await listen((req, res) => {
    const isBundle = req.url?.includes('/bundle') === true;
    const n = isBundle ? bundleRequests.length : -1;
    const forward = (): void => {
      const up = http.request(new URL(req.url ?? '/', srv.url), { method: req.method, headers: { ...req.headers, host: new URL(srv.url).host } }, (ur) => {
        if (isBundle) bundleRequests.push({ headers: req.headers, status: ur.statusCode ?? 0, etag: String(ur.headers.etag) });
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        if (n !== 0) {
          ur.pipe(res);
          return;
        }
        const cutAt = Math.floor(Number(ur.headers['content-length']) / 2);
        let sent = 0;
        ur.on('data', (c: Buffer) => {
          if (sent >= cutAt) return;
          const part = c.subarray(0, cutAt - sent);
          sent += part.length;
          res.write(part, () => {
            if (sent >= cutAt) {
              res.socket?.destroy();
              ur.destroy();
            }
          });
        });
      });
      req.pipe(up);
    };
    if (n > 0) setTimeout(forward, 1100);
    else forward();
  });
  try {
    const root = rescueRoot('resumed');
    const r = await cliAsync(['apply', 'e229', '--server', relay.url, '--token', admin, '--root', root, '--pubkey', pub, '-q']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readFileSync(join(root, 'etc/rear/blob.bin')), blob);
    assert.equal(bundleRequests.length, 2, JSON.stringify(bundleRequests.map((b) => b.status)));
    const [first, resume] = bundleRequests as [typeof bundleRequests[0], typeof bundleRequests[0]];
    assert.equal(first.status, 200);
    assert.match(first.etag, /-n[0-9a-f]{16}"$/, 'the ETag names the nonce');
    assert.match(String(resume.headers.range), /^bytes=[1-9]\d*-$/);
    assert.equal(resume.headers['if-range'], first.etag);
    assert.equal(resume.headers['x-rear-update-nonce'], first.headers['x-rear-update-nonce']);
    assert.equal(resume.status, 206, 'the server resumed the same sealing');
  } finally {
    relay.close();
  }
});

test('the server: the same nonce and If-Range get the very same bytes; another nonce, or none, a whole fresh bundle', async () => {
  const nonce = randomBytes(16).toString('base64url');
  const full = await get(srv.url, '/api/v1/hosts/e229/bundle', { 'x-rear-update-nonce': nonce });
  const etag = String(full.headers.etag);
  assert.equal(full.status, 200);
  await new Promise((r) => setTimeout(r, 1100));
  const part = await get(srv.url, '/api/v1/hosts/e229/bundle', { 'x-rear-update-nonce': nonce, range: 'bytes=100-', 'if-range': etag });
  assert.equal(part.status, 206);
  assert.deepEqual(part.body, full.body.subarray(100));
  // The same nonce as a query parameter is the same request.
  const byQuery = await get(srv.url, `/api/v1/hosts/e229/bundle?nonce=${nonce}`, { range: 'bytes=100-', 'if-range': etag });
  assert.equal(byQuery.status, 206);
  assert.deepEqual(byQuery.body, full.body.subarray(100));

  const other = randomBytes(16).toString('base64url');
  for (const [what, headers] of [['another nonce', { 'x-rear-update-nonce': other }], ['no nonce', {}]] as const) {
    const r = await get(srv.url, '/api/v1/hosts/e229/bundle', { ...headers, range: 'bytes=100-', 'if-range': etag });
    assert.equal(r.status, 200, what);
    assert.equal(r.headers['content-range'], undefined, what);
    assert.notEqual(r.headers.etag, etag, what);
    assert.equal(inspect(r.body).nonce, 'x-rear-update-nonce' in headers ? other : null, what);
  }
});

test('the server refuses a malformed nonce, or a header and ?nonce= that differ: 400 REQUEST_INVALID', async () => {
  const a = randomBytes(16).toString('base64url');
  const b = randomBytes(16).toString('base64url');
  for (const [path, headers] of [
    ['/api/v1/hosts/e229/bundle', { 'x-rear-update-nonce': 'short' }],
    ['/api/v1/hosts/e229/bundle', { 'x-rear-update-nonce': `${a}=` }],
    ['/api/v1/hosts/e229/bundle?nonce=', {}],
    [`/api/v1/hosts/e229/bundle?nonce=${a}&nonce=${b}`, {}],
    [`/api/v1/hosts/e229/bundle?nonce=${a}`, { 'x-rear-update-nonce': b }],
  ] as const) {
    const r = await get(srv.url, path, headers);
    assert.equal(r.status, 400, `${path} ${JSON.stringify(headers)}`);
    const e = (JSON.parse(r.body.toString()) as { error: { code: string; context: { param: string } } }).error;
    assert.deepEqual([e.code, e.context.param], ['REQUEST_INVALID', 'nonce']);
  }
});

test('ReaR\'s /rear/ route carries no nonce (ReaR cannot send one): exposed to replay, as docs/server.md says', async () => {
  const r = await get(srv.url, '/rear/e229.tar.gz');
  assert.equal(r.status, 200);
  assert.equal(inspect(r.body).nonce, null);
  // A plain apply of such a URL is unchanged: nothing is asked, nothing enforced.
  const root = join(work, 'root-rear-url');
  mkdirSync(root);
  const ap = await cliAsync(['apply', `${srv.url}/rear/e229.tar.gz`, '--server', srv.url, '--token', admin, '--root', root, '--pubkey', pub, '-q']);
  assert.equal(ap.status, 0, ap.stderr);
  assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), LOCAL_CONF);
});
