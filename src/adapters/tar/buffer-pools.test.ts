import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { createGunzip, gzipSync } from 'node:zlib';
import { OutputPool, PooledFileStream } from './buffer-pools.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Content that compresses a little, so zlib fills many output buffers. */
const payload = (bytes: number): Buffer => {
  const b = randomBytes(bytes);
  for (let i = 0; i < b.length; i += 3) b[i] = 0x41;
  return b;
};

test('PooledFileStream: a buffer is read into again only after it was recycled; the bytes arrive intact', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ru-pool-'));
  try {
    const data = randomBytes(3 * 1024 * 1024 + 123);
    writeFileSync(join(dir, 'f'), data);
    const s = new PooledFileStream(join(dir, 'f'), 64 << 10, 3);
    const got: Buffer[] = [];
    const held: { chunk: Buffer; digest: string }[] = [];
    let changed = 0;
    const recycleOne = (): void => {
      const h = held.shift();
      if (!h) return;
      if (sha(h.chunk) !== h.digest) changed += 1;
      s.recycle(h.chunk);
    };
    s.on('data', (c: Buffer) => {
      got.push(Buffer.from(c));
      held.push({ chunk: c, digest: sha(c) });
      // Recycle late and out of step: whatever is held must still read as it arrived.
      if (held.length === 3 || Math.random() < 0.3) setImmediate(recycleOne);
    });
    const drain = setInterval(recycleOne, 1);
    try {
      await new Promise<void>((res, rej) => {
        s.on('end', res);
        s.on('error', rej);
      });
    } finally {
      clearInterval(drain);
    }
    assert.equal(changed, 0, 'a chunk changed while the consumer still held it');
    assert.ok(Buffer.concat(got).equals(data));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('OutputPool: gunzip output buffers are reused only once every byte was reported done; output is intact', async () => {
  const data = payload(6 * 1024 * 1024);
  const gunzip = createGunzip({ chunkSize: 64 << 10 });
  const pool = new OutputPool(gunzip, 64 << 10, 4);
  const out: Buffer[] = [];
  const pending: { chunk: Buffer; digest: string }[] = [];
  const release = (): void => {
    const p = pending.shift();
    if (!p) return;
    assert.equal(sha(p.chunk), p.digest, 'zlib wrote into a buffer the consumer still held');
    pool.done(p.chunk);
  };
  // Fed in small pieces, zlib hands on many slices per output buffer: the accounting is per byte.
  const z = gzipSync(data);
  const pieces = Array.from({ length: Math.ceil(z.length / 4096) }, (_, i) => z.subarray(i * 4096, (i + 1) * 4096));
  await pipeline(
    Readable.from(pieces),
    gunzip,
    new Writable({
      highWaterMark: 0,
      async write(c: Buffer, _e, cb) {
        out.push(Buffer.from(c));
        pending.push({ chunk: c, digest: sha(c) });
        // Hold a few buffers' worth of slices, handing them back a turn later, as the bundle
        // reader's stream buffers do.
        if (pending.length > 24) {
          await sleep(0);
          release();
        }
        cb();
      },
    }),
  );
  while (pending.length) release();
  assert.ok(Buffer.concat(out).equals(data), 'the output differs from the input');
  assert.ok(pool.served > 10, `the pool served only ${pool.served} buffers`);
});

test('OutputPool: a retired buffer is never handed out again', async () => {
  const data = payload(2 * 1024 * 1024);
  const gunzip = createGunzip({ chunkSize: 64 << 10 });
  const pool = new OutputPool(gunzip, 64 << 10, 2);
  const retired = new Set<ArrayBufferLike>();
  let i = 0;
  await pipeline(Readable.from([gzipSync(data)]), gunzip, new Writable({
    write(c: Buffer, _e, cb) {
      assert.ok(!retired.has(c.buffer), 'a retired buffer came back');
      if (i++ % 5 === 0) {
        pool.retire(c);
        retired.add(c.buffer);
      } else pool.done(c);
      cb();
    },
  }));
  assert.ok(retired.size > 0);
});

test('OutputPool: a buffer comes back only when all of its bytes are done, counted across slices', () => {
  const size = 4096;
  const gunzip = createGunzip({ chunkSize: size });
  const pool = new OutputPool(gunzip, size, 1);
  // Stand in for zlib's processCallback, statement by statement, each time a buffer is full.
  const z = gunzip as unknown as { _outBuffer: Buffer; _outOffset: number; _chunkSize: number };
  const next = (): ArrayBufferLike => {
    assert.equal(z._chunkSize, size, 'handle.availOutBefore = self._chunkSize');
    z._outOffset = 0;
    const asked = z._chunkSize;
    assert.equal(asked, 0, 'zlib\'s own allocation is made free');
    z._outBuffer = Buffer.allocUnsafe(asked);
    assert.equal(z._outBuffer.length, size, 'whatever is assigned, zlib gets a whole buffer');
    assert.equal(z._chunkSize, size, 'every other read sees the real size');
    return z._outBuffer.buffer;
  };
  const slice = (ab: ArrayBufferLike, from: number, to: number): Buffer => Buffer.from(ab, from, to - from);
  const p1 = next();
  assert.equal(pool.served, 1, 'the first assignment is served from the pool');
  assert.notEqual(next(), p1, 'an empty pool lets zlib use its own buffer');
  pool.done(slice(p1, 0, 1000));
  pool.done(slice(p1, 1000, 4000));
  assert.notEqual(next(), p1, 'not all bytes are done: the buffer must not come back');
  pool.done(slice(p1, 4000, 4096), 96);
  assert.equal(next(), p1, 'every byte done: the buffer is served again');
  assert.equal(pool.served, 2);
  pool.retire(slice(p1, 0, size));
  pool.done(slice(p1, 0, size));
  assert.notEqual(next(), p1, 'retired means never again');
  gunzip.destroy();
});
