// The server under faults (issue 11), over real HTTP on loopback: a full data disk during a
// publish and during a recovery-log upload (507 NO_SPACE, nothing partial stays, fetches go on,
// publishing works again once space is free); a publish that fails after its blob was stored;
// and slow clients — slowloris, a stalled and a slow-drip upload, a stalled download, idle
// keep-alive, too many connections — that the timeouts and caps of src/server/limits.ts end
// while a normal fetch still succeeds. The recovery-log upload lives while data flows, past
// every other timeout, and ends once it stalls. The full-disk part mounts a small tmpfs (root,
// as CI runs).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, createReadStream, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync, writeSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DirBlobStore } from '../../src/adapters/storage/dir-blobs.ts';
import { MemoryBlobStore } from '../../src/adapters/storage/memory-blobs.ts';
import { MemoryMetadataStore } from '../../src/adapters/storage/memory-metadata.ts';
import { openSqliteMetadata } from '../../src/adapters/storage/sqlite-metadata.ts';
import { generateKeys } from '../../src/adapters/fs/keys.ts';
import { readBundle } from '../../src/adapters/tar/bundle-reader.ts';
import { pack } from '../../src/cli/commands/pack.ts';
import { isRuError, RuError } from '../../src/core/errors.ts';
import { DEFAULT_LIMITS } from '../../src/core/policy.ts';
import { parsePublicKey } from '../../src/core/signature.ts';
import type { NewVersion, PublishResult } from '../../src/core/store/metadata.ts';
import { BundleService } from '../../src/server/bundles.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { checkStore } from '../../src/server/store-check.ts';
import { cleanup, makeTree, tempDir } from '../helpers.ts';

const isRoot = process.getuid?.() === 0;
const MiB = 1 << 20;
const work = tempDir('ru-faults-');
after(() => cleanup(work));

// ---------------------------------------------------------------------------------------------
// Small helpers

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

const json = (a: Answer): any => JSON.parse(a.body.toString('utf8')); // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * One request. An upload the server refuses early is answered while the client still sends,
 * and the connection is then closed: the answer counts, a reset after it does not.
 */
function request(base: string, method: string, path: string, opts: { token?: string; body?: Buffer; headers?: Record<string, string>; localAddress?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const r = http.request(new URL(path, base), {
      method, agent: false, localAddress: opts.localAddress,
      headers: { ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}), ...(opts.body ? { 'content-length': String(opts.body.length) } : {}), ...opts.headers },
    }, (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      const done = (): void => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) });
      res.on('end', done);
      res.on('error', done);
      res.on('aborted', done);
    });
    r.on('error', (e) => {
      if (!answered) reject(e);
    });
    r.end(opts.body);
  });
}

let bundleCount = 0;
/** A bundle made by pack() of an etc/rear tree with these files (random bytes: incompressible). */
async function bundle(host: string, files: Record<string, string | Buffer>): Promise<Buffer> {
  const n = ++bundleCount;
  const root = join(work, `tree-${n}`);
  makeTree(root, { etc: { rear: { 'local.conf': `# ${host} ${n}\n`, ...files } } });
  const out = join(work, `bundle-${n}.tar.gz`);
  await pack({ root, path: ['etc/rear'], host, created: '2026-01-01T00:00:00Z', output: out });
  rmSync(root, { recursive: true, force: true });
  const b = readFileSync(out);
  rmSync(out);
  return b;
}

/** A served bundle, read as apply would with the server's key: its version and file hashes. */
async function readServed(body: Buffer, serverPub: string): Promise<{ version: number | null; files: Record<string, string> }> {
  const r = await readBundle(Readable.from([body]), { trusted: [parsePublicKey(serverPub, 'server.pub')], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS });
  const files: Record<string, string> = {};
  for (const e of r.manifest!.entries) if (e.type === 'file') files[e.path] = e.sha256!;
  return { version: r.manifest!.version ?? null, files };
}

/** Every file below dir, relative, sorted. */
function filesBelow(dir: string, rel = ''): string[] {
  if (!existsSync(join(dir, rel))) return [];
  return readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((d) => {
    const p = rel ? `${rel}/${d.name}` : d.name;
    return d.isDirectory() ? filesBelow(dir, p) : [p];
  }).sort();
}

const freeBytes = (dir: string): number => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};

async function storeCheck(data: string): Promise<Awaited<ReturnType<typeof checkStore>>> {
  const meta = await openSqliteMetadata(join(data, 'metadata.sqlite'));
  try {
    return await checkStore({ meta, blobs: new DirBlobStore(join(data, 'blobs')), data: { tmp: join(data, 'tmp'), logs: join(data, 'logs') } });
  } finally {
    await meta.close();
  }
}

// ---------------------------------------------------------------------------------------------

describe('a full data disk (DATA on a 24 MiB tmpfs)', { skip: !isRoot && 'needs root to mount a tmpfs', timeout: 120_000 }, () => {
  const mnt = join(work, 'full');
  let mounted = false;
  let srv: Running;
  let admin: string;
  let filler: number;
  let blobsBefore: string[] = [];
  let v1Files: Record<string, string>;
  const big = { file: Buffer.alloc(0) };

  /** Leaves about `bytes` free on the tmpfs (the filler file grows or shrinks). */
  const leaveFree = (bytes: number): void => {
    const size = statSync(join(mnt, 'filler')).size + freeBytes(mnt) - bytes;
    ftruncateSync(filler, 0);
    // tmpfs allocates on write: write the filler's bytes for real.
    const chunk = Buffer.alloc(MiB, 0x55);
    for (let off = 0; off < size; off += chunk.length) writeSync(filler, chunk, 0, Math.min(chunk.length, size - off), off);
  };

  /** Nothing partial: no spooled upload, no partial blob, exactly the blobs there were. */
  const assertNothingPartial = (): void => {
    assert.deepEqual(filesBelow(join(mnt, 'tmp')), [], 'no spooled upload');
    assert.deepEqual(filesBelow(join(mnt, 'blobs', 'tmp')), [], 'no partial blob');
    assert.deepEqual(filesBelow(join(mnt, 'blobs')).filter((f) => !f.startsWith('tmp/')), blobsBefore, 'no new blob');
  };

  before(async () => {
    mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', mnt]);
    mounted = true;
    srv = await startServer(loadConfig({ data: mnt, listen: '127.0.0.1:0' }, {}), { log: false });
    admin = readFileSync(join(mnt, 'admin.token'), 'utf8').trim();
    filler = openSync(join(mnt, 'filler'), 'w');
    big.file = randomBytes(5 * MiB);
  });
  after(async () => {
    if (filler !== undefined) closeSync(filler);
    await srv?.close();
    if (mounted) {
      try {
        execFileSync('umount', [mnt]);
      } catch {
        execFileSync('umount', ['-l', mnt]);
      }
    }
  });

  test('a publish larger than the free space: 507 NO_SPACE while receiving it, nothing stays, fetches and health go on', async () => {
    const v1 = await request(srv.url, 'POST', '/api/v1/hosts/disk/versions', { token: admin, body: await bundle('disk', { 'site.conf': 'a\n' }) });
    assert.equal(v1.status, 201, v1.body.toString());
    v1Files = (await readServed((await request(srv.url, 'GET', '/api/v1/hosts/disk/bundle', { token: admin })).body, readFileSync(join(mnt, 'server.pub'), 'utf8'))).files;
    blobsBefore = filesBelow(join(mnt, 'blobs')).filter((f) => !f.startsWith('tmp/'));

    leaveFree(2 * MiB);
    const r = await request(srv.url, 'POST', '/api/v1/hosts/disk/versions', { token: admin, body: await bundle('disk', { 'big.bin': big.file }) });
    assert.equal(r.status, 507, r.body.toString());
    assert.equal(json(r).error.code, 'NO_SPACE');
    assertNothingPartial();

    const fetched = await request(srv.url, 'GET', '/api/v1/hosts/disk/bundle', { token: admin });
    assert.equal(fetched.status, 200);
    const served = await readServed(fetched.body, readFileSync(join(mnt, 'server.pub'), 'utf8'));
    assert.deepEqual([served.version, served.files], [1, v1Files]);
    assert.equal((await request(srv.url, 'GET', '/healthz')).status, 200);
    const versions = json(await request(srv.url, 'GET', '/api/v1/hosts/disk/versions', { token: admin }));
    assert.deepEqual(versions.versions.map((v: { version: number }) => v.version), [1]);
  });

  test('a publish that fits as an upload but not once more as a blob: 507 NO_SPACE, nothing stays', async () => {
    const b = await bundle('disk', { 'big.bin': big.file });
    // The upload is spooled, then stored as a blob of about the same size: room for one only.
    leaveFree(Math.round(b.length * 1.5));
    const r = await request(srv.url, 'POST', '/api/v1/hosts/disk/versions', { token: admin, body: b });
    assert.equal(r.status, 507, r.body.toString());
    assert.equal(json(r).error.code, 'NO_SPACE');
    assert.match(json(r).error.message, /blob/);
    assertNothingPartial();
    assert.equal((await request(srv.url, 'GET', '/api/v1/hosts/disk/bundle', { token: admin })).status, 200);
  });

  test('a recovery-log upload that fills the disk: 507 NO_SPACE, what was written is kept and counted, the store stays consistent', async () => {
    leaveFree(MiB);
    const line = Buffer.from('2026-01-01 00:00:00 Including layout/recreate/default/100_confirm_layout_file.sh\n');
    const body = Buffer.concat(Array.from({ length: Math.ceil((3 * MiB) / line.length) }, () => line));
    const r = await request(srv.url, 'PUT', '/clients/disk/log/recover/20260101', { token: admin, body });
    assert.equal(r.status, 507, r.body.toString());
    assert.equal(json(r).error.code, 'NO_SPACE');
    const logs = json(await request(srv.url, 'GET', '/api/v1/hosts/disk/logs', { token: admin })).logs;
    assert.equal(logs.length, 1);
    assert.equal(logs[0].complete, false);
    const onDisk = statSync(join(mnt, 'logs', `${logs[0].id}.log`)).size;
    assert.ok(logs[0].bytes > 0 && logs[0].bytes <= onDisk && onDisk < body.length, `recorded ${logs[0].bytes}, file ${onDisk}`);
    const report = await storeCheck(mnt);
    assert.deepEqual(report.errors, []);
    assert.equal((await request(srv.url, 'GET', '/api/v1/hosts/disk/bundle', { token: admin })).status, 200);
  });

  test('once space is freed, the refused publish is accepted; the store checks consistent without leftovers', async () => {
    ftruncateSync(filler, 0);
    const r = await request(srv.url, 'POST', '/api/v1/hosts/disk/versions', { token: admin, body: await bundle('disk', { 'big.bin': big.file }) });
    assert.equal(r.status, 201, r.body.toString());
    assert.equal(json(r).version.version, 2);
    const served = await readServed((await request(srv.url, 'GET', '/api/v1/hosts/disk/bundle', { token: admin })).body, readFileSync(join(mnt, 'server.pub'), 'utf8'));
    assert.equal(served.version, 2);
    assert.equal(Object.keys(served.files).length, 2);
    const report = await storeCheck(mnt);
    assert.deepEqual([report.errors, report.leftovers], [[], []]);
    assert.deepEqual([report.counts.versions, report.counts.blobs, report.counts.logs], [2, 2, 1]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('a publish that fails after its blob is stored leaves no blob; a blob released under it is stored again', () => {
  let n = 0;
  /** A BundleService over memory stores whose publishVersion first runs `first` (which may throw). */
  const setup = async (first: (blobs: MemoryBlobStore, v: NewVersion) => Promise<void>) => {
    const dir = join(work, `late-${++n}`);
    mkdirSync(join(dir, 'tmp'), { recursive: true });
    const blobs = new MemoryBlobStore();
    class Meta extends MemoryMetadataStore {
      override async publishVersion(v: NewVersion, opts?: { ifChanged?: boolean }): Promise<PublishResult> {
        await first(blobs, v);
        return super.publishVersion(v, opts);
      }
    }
    const meta = new Meta();
    const host = await meta.addHost({ id: 'h' });
    const service = new BundleService({ meta, blobs, key: generateKeys(dir, false), tmpDir: join(dir, 'tmp'), maxUpload: 64 * MiB, cacheBytes: 0, now: () => new Date() });
    const file = join(dir, 'bundle.tar.gz');
    writeFileSync(file, await bundle('h', { 'x.conf': randomBytes(1000) }));
    return { blobs, meta, host, service, file, tmp: join(dir, 'tmp') };
  };

  test('the metadata store\'s disk fills at publishVersion: NO_SPACE, and the blob it stored is gone', async () => {
    const { blobs, host, service, file, tmp } = await setup(async () => {
      throw new RuError('NO_SPACE', 'no space left while publishing a version');
    });
    await assert.rejects(service.publish(host, createReadStream(file), { announced: null, publisher: null }), (e: unknown) => isRuError(e) && e.code === 'NO_SPACE');
    assert.equal(blobs.count, 0);
    assert.deepEqual(readdirSync(tmp), []);
  });

  test('a start\'s sweep released the blob before publishVersion named it: the publish stores it again', async () => {
    const { blobs, meta, host, service, file } = await setup(async (b, v) => {
      await b.delete(v.blob);
    });
    const r = await service.publish(host, createReadStream(file), { announced: null, publisher: null });
    assert.equal(r.created, true);
    assert.equal(await blobs.has(r.version.blob), true);
    assert.deepEqual(await meta.check(), []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('slow clients cannot exhaust the server (headers 1 s, idle 1 s, body 3 s, log idle 2 s, keep-alive 1 s, 10 connections per address)', { timeout: 120_000 }, () => {
  const data = join(work, 'slow');
  let srv: Running;
  let admin: string;
  let pub: string;
  let smallFiles: Record<string, string>;
  const sockets = new Set<net.Socket>();

  const limits = { headersTimeout: '1', idleTimeout: '1', requestTimeout: '3', logIdleTimeout: '2', keepAliveTimeout: '1', maxConnectionsPerAddress: '10' };
  const port = (): number => Number(new URL(srv.url).port);

  /** A raw connection; resolves with it once connected, or with null if the server closed it at once. */
  function connect(localAddress = '127.0.0.1'): Promise<{ socket: net.Socket; closed: Promise<number>; received: () => string }> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: port(), localAddress });
      sockets.add(socket);
      let data = '';
      socket.on('data', (d: Buffer) => (data += d.toString('latin1')));
      const closed = new Promise<number>((r) => socket.once('close', () => {
        sockets.delete(socket);
        r(Date.now());
      }));
      socket.on('error', () => undefined);
      socket.once('connect', () => resolve({ socket, closed, received: () => data }));
      socket.once('close', () => reject(new Error('closed before connecting')));
    });
  }

  /** The spooled upload of a cut-off publish is removed (right after the connection closed: poll briefly). */
  async function noSpool(): Promise<void> {
    for (let i = 0; i < 50 && readdirSync(join(data, 'tmp')).length > 0; i++) await sleep(20);
    assert.deepEqual(readdirSync(join(data, 'tmp')), []);
  }

  /** The small bundle fetched as a rescue system would, from 127.0.0.1; it must verify. */
  async function normalFetch(): Promise<number> {
    const t0 = Date.now();
    const r = await request(srv.url, 'GET', '/api/v1/hosts/slow/bundle', { token: admin });
    assert.equal(r.status, 200);
    assert.deepEqual((await readServed(r.body, pub)).files, smallFiles);
    return Date.now() - t0;
  }

  before(async () => {
    srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0', ...limits }, {}), { log: false });
    admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    pub = readFileSync(join(data, 'server.pub'), 'utf8');
    const small = await request(srv.url, 'POST', '/api/v1/hosts/slow/versions', { token: admin, body: await bundle('slow', { 'site.conf': 'x\n' }) });
    assert.equal(small.status, 201);
    smallFiles = (await readServed((await request(srv.url, 'GET', '/api/v1/hosts/slow/bundle', { token: admin })).body, pub)).files;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await srv?.close();
  });

  test('slowloris: 40 connections from one address sending headers a byte at a time hold at most 10 slots, each ends after the header timeout; 9 more from the fetcher\'s own address do not stop its fetch', async () => {
    const t0 = Date.now();
    const attempts = await Promise.allSettled([
      ...Array.from({ length: 40 }, () => connect('127.0.0.2')),
      ...Array.from({ length: 9 }, () => connect('127.0.0.1')),
    ]);
    const conns = attempts.flatMap((a) => (a.status === 'fulfilled' ? [a.value] : []));
    const drip = setInterval(() => {
      for (const c of conns) if (!c.socket.destroyed) c.socket.write(c.socket.bytesWritten === 0 ? 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ' : 'a');
    }, 100);
    try {
      await sleep(300);
      const open = conns.filter((c) => !c.socket.destroyed);
      const fromAttacker = open.filter((c) => c.socket.localAddress === '127.0.0.2').length;
      assert.ok(fromAttacker <= 10, `${fromAttacker} connections from 127.0.0.2 are open`);
      assert.equal(open.filter((c) => c.socket.localAddress === '127.0.0.1').length, 9);
      // While they are open and dripping, the fetch is as quick as ever.
      const ms = await normalFetch();
      assert.ok(ms < 1000, `the fetch took ${ms} ms`);
      const ends = await Promise.race([Promise.all(open.map((c) => c.closed)), sleep(4000).then(() => null)]);
      assert.ok(ends, `${conns.filter((c) => !c.socket.destroyed).length} slow connections still open after 4 s`);
      const last = Math.max(...ends) - t0;
      assert.ok(last >= 900 && last < 3000, `the last slow connection ended after ${last} ms (headers timeout 1 s, checked every 250 ms)`);
      assert.ok(open.every((c) => c.received().startsWith('HTTP/1.1 408')), 'each was answered 408');
    } finally {
      clearInterval(drip);
    }
    await normalFetch();
  });

  test('more connections than --max-connections are closed at once', async () => {
    const capped = await startServer(loadConfig({ data: join(work, 'capped'), listen: '127.0.0.1:0', maxConnections: '5', maxConnectionsPerAddress: '0' }, {}), { log: false });
    try {
      const socketsOpen = await Promise.all(Array.from({ length: 8 }, (_, i) => new Promise<net.Socket>((res) => {
        const s = net.connect({ host: '127.0.0.1', port: Number(new URL(capped.url).port), localAddress: `127.0.1.${i + 1}` });
        s.on('error', () => undefined);
        s.once('connect', () => res(s));
      })));
      await sleep(300);
      assert.equal(socketsOpen.filter((s) => !s.destroyed && !s.readableEnded).length, 5);
      for (const s of socketsOpen) s.destroy();
    } finally {
      await capped.close();
    }
  });

  test('a stalled publish (the body stops) is answered 408 REQUEST_TIMEOUT after the idle timeout and leaves nothing', async () => {
    const c = await connect();
    const t0 = Date.now();
    c.socket.write(`POST /api/v1/hosts/slow/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/gzip\r\nContent-Length: ${MiB}\r\n\r\n`);
    c.socket.write(randomBytes(64 * 1024));
    const ended = (await c.closed) - t0;
    assert.ok(ended >= 900 && ended < 3000, `closed after ${ended} ms`);
    assert.match(c.received(), /^HTTP\/1\.1 408 /);
    assert.match(c.received(), /"code":"REQUEST_TIMEOUT".*--idle-timeout/);
    await noSpool();
    const events = json(await request(srv.url, 'GET', '/api/v1/audit?kind=publish&host=slow', { token: admin })).events;
    assert.equal(events[0].result, 'REQUEST_TIMEOUT');
    await normalFetch();
  });

  test('a slow-drip publish (a little every 300 ms, never idle) is cut at the request timeout with 408', async () => {
    const c = await connect();
    const t0 = Date.now();
    c.socket.write(`POST /api/v1/hosts/slow/versions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nContent-Length: ${MiB}\r\n\r\n`);
    const drip = setInterval(() => c.socket.writable && c.socket.write(randomBytes(1024)), 300);
    try {
      const ended = (await c.closed) - t0;
      assert.ok(ended >= 2900 && ended < 4500, `closed after ${ended} ms`);
      assert.match(c.received(), /"code":"REQUEST_TIMEOUT".*--request-timeout/);
    } finally {
      clearInterval(drip);
    }
    await noSpool();
  });

  test('a stalled download (the client stops reading) is closed after the idle timeout', async () => {
    // A recovery log read back, larger than what the socket buffers on both sides hold (the
    // receive buffer may grow to tcp_rmem's 32 MiB): the server really has to wait.
    const up = await request(srv.url, 'PUT', '/clients/slow/log/recover/bulk', { token: admin, body: Buffer.from('start\n') });
    assert.equal(up.status, 201);
    const id = json(up).log.id as number;
    const file = join(data, 'logs', `${id}.log`);
    const fd = openSync(file, 'a');
    const chunk = Buffer.alloc(MiB, 0x61);
    for (let i = 0; i < 64; i++) writeSync(fd, chunk);
    closeSync(fd);
    const connections = (): Promise<number> => new Promise((res, rej) => srv.app.server.getConnections((e, n) => (e ? rej(e) : res(n))));
    try {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        http.get(new URL(`/api/v1/logs/${id}`, srv.url), { agent: false, headers: { authorization: `Bearer ${admin}` } }, (r) => {
          r.pause();
          resolve(r);
        }).on('error', reject);
      });
      // A paused client learns of the close only when it reads again: watch the server's side.
      const t0 = Date.now();
      while ((await connections()) > 0 && Date.now() - t0 < 8000) await sleep(100);
      const closedAfter = Date.now() - t0;
      let got = 0;
      await new Promise<void>((resolve) => {
        res.on('data', (c: Buffer) => (got += c.length));
        res.on('error', () => resolve());
        res.on('close', () => resolve());
        res.resume();
      });
      assert.ok(got < 64 * MiB, `only part of the log arrived (${got} bytes)`);
      assert.ok(closedAfter >= 900 && closedAfter < 4000, `the server closed it after ${closedAfter} ms`);
    } finally {
      // The log as its record counts it, for the store check below.
      const back = openSync(file, 'r+');
      ftruncateSync(back, 6);
      closeSync(back);
    }
    await normalFetch();
  });

  test('an idle kept-alive connection is closed after the keep-alive timeout', async () => {
    const c = await connect();
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    while (!/\r\n\r\n.*"status":"ok"/s.test(c.received())) await sleep(10);
    const t0 = Date.now();
    const ended = (await c.closed) - t0;
    // Node adds a second to the keep-alive timeout it announces, for clients that cut it close.
    assert.ok(ended >= 800 && ended < 3500, `closed ${ended} ms after the answer`);
  });

  /** A log upload as ReaR sends it (chunked, no length): lines every `every` ms for `lines` lines, then `end` or stall. */
  async function logUpload(stamp: string, lines: number, every: number, end: boolean): Promise<{ answer: string; closedAfter: number; sent: number }> {
    const c = await connect();
    const t0 = Date.now();
    c.socket.write(`PUT /clients/slow/log/recover/${stamp} HTTP/1.1\r\nHost: x\r\nAuthorization: ${admin}\r\nTransfer-Encoding: chunked\r\n\r\n`);
    let sent = 0;
    for (let i = 0; i < lines; i++) {
      const line = Buffer.from(`${new Date().toISOString()} line ${i} of rear recover\n`);
      c.socket.write(`${line.length.toString(16)}\r\n`);
      c.socket.write(line);
      c.socket.write('\r\n');
      sent += line.length;
      await sleep(every);
    }
    if (!end) {
      const closedAfter = (await c.closed) - t0;
      return { answer: c.received(), closedAfter, sent };
    }
    // As curl does: the last chunk, then wait for the answer (no half-close).
    c.socket.write('0\r\n\r\n');
    const complete = (t: string): boolean => {
      const head = t.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(t)?.[1];
      return head >= 0 && len !== undefined && t.length - head - 4 >= Number(len);
    };
    for (let i = 0; i < 500 && !complete(c.received()) && !c.socket.destroyed; i++) await sleep(10);
    const answered = Date.now();
    c.socket.destroy();
    return { answer: c.received(), closedAfter: answered - t0, sent };
  }

  test('a recovery-log upload lives as long as lines keep coming: 4.5 s, past the body, idle and log idle timeouts, complete', async () => {
    const r = await logUpload('flowing', 18, 250, true);
    assert.match(r.answer, /^HTTP\/1\.1 201 /);
    const log = JSON.parse(r.answer.slice(r.answer.indexOf('\r\n\r\n') + 4)).log;
    assert.deepEqual([log.complete, log.bytes], [true, r.sent]);
    assert.ok(r.closedAfter >= 4000, `the upload took ${r.closedAfter} ms`);
  });

  test('a recovery-log upload that stalls ends after the log idle timeout (not the shorter idle timeout): 408, what arrived is kept', async () => {
    const r = await logUpload('stalled', 3, 50, false);
    const stalledFor = r.closedAfter - 150;
    assert.ok(stalledFor >= 1800 && stalledFor < 3500, `closed ${stalledFor} ms after the last line; answer ${JSON.stringify(r.answer)}`);
    assert.match(r.answer, /^HTTP\/1\.1 408 /);
    assert.match(r.answer, /"code":"REQUEST_TIMEOUT".*--log-idle-timeout/);
    await sleep(100);
    const logs = json(await request(srv.url, 'GET', '/api/v1/hosts/slow/logs', { token: admin })).logs;
    const rec = logs.find((l: { stamp: string }) => l.stamp === 'stalled');
    assert.deepEqual([rec.complete, rec.bytes], [false, r.sent]);
    const events = json(await request(srv.url, 'GET', '/api/v1/audit?kind=log&host=slow', { token: admin })).events;
    assert.ok(events.some((e: { result: string; detail: string }) => e.result === 'REQUEST_TIMEOUT' && e.detail.includes(`log ${rec.id}`)));
    await normalFetch();
    assert.deepEqual((await storeCheck(data)).errors, []);
  });
});
