// apply from http:// against a real server on loopback that misbehaves the way networks do.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, cleanup, cli, cliAsync, errorCode, makeTree, snapshot, tempDir } from '../helpers.ts';

describe('apply over HTTP', () => {
  let dir: string;
  let pub: string;
  let bundle: Buffer;
  let server: Server;
  let base: string;
  let handler: (req: IncomingMessage, res: ServerResponse, n: number) => void;
  let requests: IncomingMessage[] = [];

  before(async () => {
    dir = tempDir();
    cli(['keygen', '--out', join(dir, 'keys')]);
    pub = join(dir, 'keys', 'rear-update.pub');
    // Big enough that dropping half-way is a real mid-transfer cut (incompressible content).
    const random = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < random.length; i += 4) random.writeUInt32LE((Math.random() * 0xffffffff) >>> 0, i);
    makeTree(join(dir, 'src'), { etc: { rear: { 'local.conf': 'HOST=e229\n', 'blob.bin': random } } });
    const r = cli(['pack', '--root', join(dir, 'src'), '--key', join(dir, 'keys', 'rear-update.key'), '--host', 'e229', '-o', join(dir, 'b.tgz')]);
    assert.equal(r.status, 0, r.stderr);
    bundle = readFileSync(join(dir, 'b.tgz'));
    server = createServer((req, res) => {
      requests.push(req);
      handler(req, res, requests.length);
    });
    await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.close();
    cleanup(dir);
  });

  const serveWithRanges = (req: IncomingMessage, res: ServerResponse): void => {
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m) {
      const from = Number(m[1]);
      res.writeHead(206, { 'content-length': bundle.length - from, 'content-range': `bytes ${from}-${bundle.length - 1}/${bundle.length}`, etag: '"b1"' });
      res.end(bundle.subarray(from));
      return;
    }
    res.writeHead(200, { 'content-length': bundle.length, etag: '"b1"' });
    res.end(bundle);
  };

  test('a connection dropped mid-transfer is resumed with a Range request and the apply succeeds', async () => {
    requests = [];
    handler = (req, res, n) => {
      if (n === 1) {
        res.writeHead(200, { 'content-length': bundle.length, etag: '"b1"' });
        res.write(bundle.subarray(0, Math.floor(bundle.length / 2)), () => res.socket?.destroy());
        return;
      }
      serveWithRanges(req, res);
    };
    const root = tempDir();
    const r = await cliAsync(['apply', `${base}/rear/e229.tar.gz`, '--root', root, '--pubkey', pub]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(requests.length, 2);
    assert.match(String(requests[1]?.headers.range), /^bytes=\d+-$/);
    assert.ok(Number(/\d+/.exec(String(requests[1]?.headers.range))?.[0]) > 0, 'the retry did not resume');
    assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), 'HOST=e229\n');
    assert.deepEqual(readFileSync(join(root, 'etc/rear/blob.bin')), readFileSync(join(dir, 'src/etc/rear/blob.bin')));
    cleanup(root);
  });

  test('a server answering 500 and then 200 succeeds', async () => {
    requests = [];
    handler = (req, res, n) => {
      if (n === 1) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('database is restarting');
        return;
      }
      serveWithRanges(req, res);
    };
    const root = tempDir();
    const r = await cliAsync(['apply', `${base}/rear/e229.tar.gz`, '--root', root, '--pubkey', pub]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(requests.length, 2);
    assert.match(r.stderr, /retry 1/);
    cleanup(root);
  });

  test('a 404 fails fast with the server\'s message, the root untouched', async () => {
    requests = [];
    handler = (_req, res) => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'HOST_UNKNOWN', message: 'no host e230 on this server' } }));
    };
    const root = tempDir();
    const before = snapshot(root);
    const t0 = Date.now();
    const r = await cliAsync(['apply', `${base}/rear/e230.tar.gz`, '--root', root, '--pubkey', pub]);
    assert.equal(r.status, 7);
    assert.equal(errorCode(r), 'DOWNLOAD_REFUSED');
    assert.match(r.stderr, /no host e230 on this server/);
    assert.equal(requests.length, 1, 'a 4xx must not be retried');
    assert.ok(Date.now() - t0 < 60_000);
    assert.deepEqual(snapshot(root), before);
    cleanup(root);
  });

  test('progress shows as plain lines when stderr is not a terminal', async () => {
    requests = [];
    handler = (req, res) => serveWithRanges(req, res);
    const root = tempDir();
    const r = await cliAsync(['apply', `${base}/rear/e229.tar.gz`, '--root', root, '--pubkey', pub]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^rear-update: downloading http:\/\/127\.0\.0\.1:\d+\/rear\/e229\.tar\.gz: .*done, 3\.\d MiB$/ms);
    cleanup(root);
  });

  const ESC = String.fromCharCode(27);
  // util-linux `script` gives the CLI a pseudo terminal as stdout and stderr; what it wrote comes back on script's stdout.
  const onTerminal = (env: Record<string, string>): Promise<{ status: number | null; output: string }> => {
    const q = (v: string): string => `'${v.replace(/'/g, `'\\''`)}'`;
    const root = tempDir();
    const cmd = [process.execPath, CLI, 'apply', `${base}/rear/e229.tar.gz`, '--root', root, '--pubkey', pub].map(q).join(' ');
    return new Promise((res) => {
      const p = spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, REAR_UPDATE_PROGRESS: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      p.stdout.on('data', (d: Buffer) => (output += d.toString()));
      p.on('close', (status) => {
        cleanup(root);
        res({ status, output });
      });
    });
  };

  test('on a terminal a bar; TERM=dumb or REAR_UPDATE_PROGRESS=plain give plain lines without escape codes (as a serial console needs); none gives no progress', async () => {
    requests = [];
    handler = (req, res) => serveWithRanges(req, res);
    const bar = await onTerminal({ TERM: 'xterm' });
    assert.equal(bar.status, 0, bar.output);
    assert.ok(bar.output.includes(`${ESC}[`), 'the bar moves the cursor');
    for (const env of [{ TERM: 'dumb' }, { TERM: 'xterm', REAR_UPDATE_PROGRESS: 'plain' }] as Record<string, string>[]) {
      const plain = await onTerminal(env);
      assert.equal(plain.status, 0, plain.output);
      assert.ok(!plain.output.includes(ESC), `no escape codes with ${JSON.stringify(env)}`);
      assert.match(plain.output, /rear-update: downloading http:\S+: .*done, 3\.\d MiB/s, JSON.stringify(env));
    }
    const none = await onTerminal({ TERM: 'xterm', REAR_UPDATE_PROGRESS: 'none' });
    assert.equal(none.status, 0, none.output);
    assert.ok(!none.output.includes(ESC) && !none.output.includes('downloading'), none.output);
    assert.match(none.output, /applied http:/);
  });
});
