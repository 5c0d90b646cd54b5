// The downloader against real sockets: resumption, retries and refusals are about how
// connections actually break, which a mocked http module would only pretend to show.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { download } from '../../src/adapters/http/download.ts';
import { RuError } from '../../src/core/errors.ts';

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

interface TestServer {
  readonly base: string;
  readonly requests: { url: string; headers: IncomingHttpHeaders }[];
}

const servers: (http.Server | https.Server)[] = [];
let dir = '';
let fileNo = 0;
const DATA = randomBytes(5 * 1024 * 1024);

const dest = (): string => join(dir, `out-${++fileNo}`);

async function serve(handler: Handler, tlsOptions?: https.ServerOptions): Promise<TestServer> {
  const requests: TestServer['requests'] = [];
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    requests.push({ url: req.url ?? '', headers: req.headers });
    handler(req, res, requests.length);
  };
  const server = tlsOptions ? https.createServer(tlsOptions, onRequest) : http.createServer(onRequest);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { base: `${tlsOptions ? 'https' : 'http'}://127.0.0.1:${port}`, requests };
}

/** Serves DATA honouring a Range header, the way a static file server does. */
function serveData(req: IncomingMessage, res: ServerResponse, headers: Record<string, string> = {}): void {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m) {
    const start = Number(m[1]);
    res.writeHead(206, { ...headers, 'Content-Length': DATA.length - start, 'Content-Range': `bytes ${start}-${DATA.length - 1}/${DATA.length}` });
    res.end(DATA.subarray(start));
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Length': DATA.length });
  res.end(DATA);
}

/** Sends the headers and the first half of DATA, then kills the connection. */
function serveHalfThenDrop(res: ServerResponse, headers: Record<string, string> = {}): void {
  res.writeHead(200, { ...headers, 'Content-Length': DATA.length });
  res.write(DATA.subarray(0, DATA.length / 2), () => res.socket?.destroy());
}

async function rejection(p: Promise<unknown>): Promise<RuError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof RuError, `expected a RuError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the download to fail');
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ru-download-'));
});

after(() => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('download', () => {
  it('downloads a 200 body byte for byte and reports progress', async () => {
    const srv = await serve((req, res) => serveData(req, res));
    const out = dest();
    let last: [number, number | null] = [0, null];
    const r = await download(`${srv.base}/bundle.tar.gz`, out, { onProgress: (n, t) => { last = [n, t]; } });
    assert.deepEqual(r, { bytes: DATA.length, resumed: 0 });
    assert.ok(readFileSync(out).equals(DATA));
    assert.deepEqual(last, [DATA.length, DATA.length]);
    assert.equal(srv.requests.length, 1);
    assert.equal(srv.requests[0]?.headers.range, undefined);
  });

  it('resumes with Range and If-Range after the connection drops mid-body', async () => {
    const srv = await serve((req, res, n) => {
      if (n === 1) serveHalfThenDrop(res, { ETag: '"v1"' });
      else serveData(req, res, { ETag: '"v1"' });
    });
    const out = dest();
    const reasons: string[] = [];
    const r = await download(`${srv.base}/b`, out, { backoffMs: 5, onRetry: (_a, reason) => reasons.push(reason) });
    assert.ok(readFileSync(out).equals(DATA));
    assert.equal(srv.requests.length, 2);
    const range = /^bytes=(\d+)-$/.exec(srv.requests[1]?.headers.range ?? '');
    assert.ok(range, `second request carried no Range header: ${JSON.stringify(srv.requests[1]?.headers)}`);
    const start = Number(range[1]);
    assert.ok(start > 0 && start <= DATA.length / 2, `range start ${start}`);
    assert.equal(srv.requests[1]?.headers['if-range'], '"v1"');
    assert.deepEqual(r, { bytes: DATA.length, resumed: start });
    assert.equal(reasons.length, 1);
  });

  it('starts over when the server answers a resume with 200', async () => {
    const srv = await serve((req, res, n) => {
      if (n === 1) serveHalfThenDrop(res);
      else {
        res.writeHead(200, { 'Content-Length': DATA.length });
        res.end(DATA);
      }
    });
    const out = dest();
    const r = await download(`${srv.base}/b`, out, { backoffMs: 5 });
    assert.ok(srv.requests[1]?.headers.range, 'the retry should have asked for a range');
    assert.deepEqual(r, { bytes: DATA.length, resumed: 0 });
    assert.ok(readFileSync(out).equals(DATA));
  });

  it('restarts from zero once when a resume gets 416', async () => {
    const small = Buffer.from('0123456789'.repeat(1000));
    const srv = await serve((req, res, n) => {
      if (n === 1) {
        res.writeHead(200, { 'Content-Length': small.length });
        res.write(small.subarray(0, 100), () => res.socket?.destroy());
      } else if (req.headers.range) {
        res.writeHead(416, { 'Content-Range': `bytes */${small.length + 1}` });
        res.end();
      } else {
        res.writeHead(200, { 'Content-Length': small.length });
        res.end(small);
      }
    });
    const out = dest();
    const r = await download(`${srv.base}/b`, out, { backoffMs: 5 });
    assert.equal(srv.requests.length, 3);
    assert.equal(srv.requests[2]?.headers.range, undefined);
    assert.deepEqual(r, { bytes: small.length, resumed: 0 });
    assert.ok(readFileSync(out).equals(small));
  });

  it('retries a 500 and then succeeds', async () => {
    const srv = await serve((req, res, n) => {
      if (n === 1) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('database on fire');
      } else serveData(req, res);
    });
    const retries: [number, string, number][] = [];
    const out = dest();
    const r = await download(`${srv.base}/b`, out, { backoffMs: 5, onRetry: (a, reason, d) => retries.push([a, reason, d]) });
    assert.equal(srv.requests.length, 2);
    assert.deepEqual(retries, [[1, 'HTTP 500 database on fire', 5]]);
    assert.equal(r.bytes, DATA.length);
    assert.ok(readFileSync(out).equals(DATA));
  });

  it('gives up after the retries with DOWNLOAD_FAILED and the last reason', async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    const delays: number[] = [];
    const err = await rejection(download(`${srv.base}/b`, dest(), { retries: 3, backoffMs: 2, onRetry: (_a, _r, d) => delays.push(d) }));
    assert.equal(err.code, 'DOWNLOAD_FAILED');
    assert.equal(srv.requests.length, 4);
    assert.deepEqual(delays, [2, 4, 8]);
    assert.match(err.message, /HTTP 503/);
    assert.equal(err.context.reason, 'HTTP 503 Service Unavailable');
  });

  it('refuses a 404 at once with the server message from a JSON body', async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'HOST_UNKNOWN', message: 'no host e229' } }));
    });
    const started = Date.now();
    const retried: number[] = [];
    const err = await rejection(download(`${srv.base}/hosts/e229`, dest(), { backoffMs: 1000, onRetry: (a) => retried.push(a) }));
    assert.equal(err.code, 'DOWNLOAD_REFUSED');
    assert.match(err.message, /no host e229/);
    assert.match(err.message, /HTTP 404/);
    assert.equal(err.context.status, 404);
    assert.equal(err.context.serverCode, 'HOST_UNKNOWN');
    assert.equal(srv.requests.length, 1);
    assert.deepEqual(retried, []);
    assert.ok(Date.now() - started < 900, 'a 4xx must not wait for a backoff');
  });

  it('fails with DOWNLOAD_FAILED when the connection is refused', async () => {
    const srv = http.createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const { port } = srv.address() as AddressInfo;
    await new Promise((resolve) => srv.close(resolve));
    const attempts: number[] = [];
    const err = await rejection(download(`http://127.0.0.1:${port}/b`, dest(), { retries: 2, backoffMs: 10, onRetry: (a) => attempts.push(a) }));
    assert.equal(err.code, 'DOWNLOAD_FAILED');
    assert.match(err.message, /ECONNREFUSED/);
    assert.deepEqual(attempts, [1, 2]);
    assert.equal(err.context.attempts, 3);
  });

  it('sends URL credentials as Basic auth and never shows the password', async () => {
    const srv = await serve((req, res) => {
      res.writeHead(401, { 'Content-Type': 'text/plain' });
      // A careless server echoing what it got must not leak the secret either.
      res.end(`bad credentials: ${req.headers.authorization ?? ''} for robot:hunter2`);
    });
    const url = `${srv.base.replace('http://', 'http://robot:hunter2@')}/b`;
    const err = await rejection(download(url, dest(), { backoffMs: 5 }));
    assert.equal(srv.requests[0]?.headers.authorization, `Basic ${Buffer.from('robot:hunter2').toString('base64')}`);
    assert.equal(err.code, 'DOWNLOAD_REFUSED');
    assert.equal(srv.requests.length, 1);
    assert.match(err.message, /HTTP 401/);
    const everything = `${err.message} ${JSON.stringify(err.context)}`;
    assert.doesNotMatch(everything, /hunter2/);
    assert.ok(err.message.startsWith(`${srv.base}/b: HTTP 401`), err.message);
    assert.doesNotMatch(everything, new RegExp(Buffer.from('robot:hunter2').toString('base64')));
    assert.equal(err.context.url, `${srv.base}/b`);
  });

  it('follows a redirect and keeps credentials only on the same origin', async () => {
    const other = await serve((req, res) => serveData(req, res));
    const srv = await serve((req, res) => {
      if (req.url === '/a') res.writeHead(302, { Location: '/b' }).end();
      else res.writeHead(307, { Location: `${other.base}/c` }).end();
    });
    const out = dest();
    const r = await download(`${srv.base.replace('http://', 'http://u:p@')}/a`, out, { headers: { 'X-Trace': 't1' } });
    assert.equal(r.bytes, DATA.length);
    assert.ok(readFileSync(out).equals(DATA));
    assert.deepEqual(srv.requests.map((q) => q.url), ['/a', '/b']);
    assert.ok(srv.requests[1]?.headers.authorization, 'same-origin redirect keeps the credentials');
    assert.equal(other.requests[0]?.url, '/c');
    assert.equal(other.requests[0]?.headers.authorization, undefined);
    assert.equal(other.requests[0]?.headers['x-trace'], 't1');
  });

  it('treats a stalled transfer as a dropped connection', { timeout: 10_000 }, async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Length': 1000 });
      res.flushHeaders();
    });
    const started = Date.now();
    const err = await rejection(download(`${srv.base}/b`, dest(), { idleTimeoutMs: 200, retries: 0 }));
    assert.equal(err.code, 'DOWNLOAD_FAILED');
    assert.match(err.message, /no data for 200 ms/);
    assert.equal(srv.requests.length, 1);
    assert.ok(Date.now() - started < 5000);
  });

  it('stops when the signal aborts', { timeout: 10_000 }, async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Length': 1000 });
      res.flushHeaders();
    });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(download(`${srv.base}/b`, dest(), { signal: ac.signal, backoffMs: 5 }), { name: 'AbortError' });
    assert.equal(srv.requests.length, 1);
  });

  describe('https with a self-signed certificate', () => {
    let tlsDir = '';
    let cert = '';
    let srv: TestServer;

    before(async () => {
      tlsDir = mkdtempSync(join(tmpdir(), 'ru-download-tls-'));
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'ed25519', '-nodes', '-days', '1',
        '-keyout', join(tlsDir, 'key.pem'), '-out', join(tlsDir, 'cert.pem'),
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
      ], { stdio: 'pipe' });
      cert = readFileSync(join(tlsDir, 'cert.pem'), 'utf8');
      srv = await serve((req, res) => serveData(req, res), { key: readFileSync(join(tlsDir, 'key.pem')), cert });
    });

    after(() => rmSync(tlsDir, { recursive: true, force: true }));

    it('fails without the CA, at once and before any request', async () => {
      const retried: string[] = [];
      const err = await rejection(download(`${srv.base}/b`, dest(), { retries: 3, backoffMs: 5, onRetry: (_a, r) => retried.push(r) }));
      assert.ok(err.code === 'DOWNLOAD_FAILED' || err.code === 'DOWNLOAD_REFUSED', err.code);
      assert.match(err.message, /self-signed|certificate/i);
      assert.deepEqual(retried, [], 'an untrusted certificate does not heal by retrying');
      assert.equal(srv.requests.length, 0);
    });

    it('names a cacert that holds no certificate instead of blaming the server', async () => {
      const err = await rejection(download(`${srv.base}/b`, dest(), { cacert: 'not a certificate', retries: 0 }));
      assert.equal(err.code, 'USAGE');
      assert.equal(srv.requests.length, 0);
    });

    it('succeeds with the CA given as cacert', async () => {
      const out = dest();
      const r = await download(`${srv.base}/b`, out, { cacert: cert });
      assert.equal(r.bytes, DATA.length);
      assert.ok(readFileSync(out).equals(DATA));
      assert.equal(srv.requests.length, 1);
    });
  });
});
