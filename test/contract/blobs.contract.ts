// The one contract every BlobStore backend passes (memory, directory, and whatever comes next):
// call blobsContract(name, factory) from a *.test.ts. Only the interface is used here; checks
// of a backend's own layout (temp files, fan-out) belong beside its factory.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import type { BlobStore } from '../../src/core/store/blobs.ts';
import { rejectsWith } from './metadata.contract.ts';

export interface BlobFixture {
  readonly store: BlobStore;
  readonly cleanup: () => Promise<void>;
}

export type BlobFactory = () => Promise<BlobFixture>;

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(Buffer.from(c as Uint8Array));
  return Buffer.concat(chunks);
}

/** Yields data in chunks of `chunk` bytes, the way an upload arrives. */
export async function* chunked(data: Buffer, chunk = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += chunk) {
    await new Promise((r) => setImmediate(r));
    yield data.subarray(i, i + chunk);
  }
}

/** A stream that sends `before` bytes, then is destroyed as a cut-off connection is. */
export function cutOff(data: Buffer, before: number, err: Error | undefined = new Error('socket hang up')): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= before) {
        setImmediate(() => this.destroy(err));
        return;
      }
      const n = Math.min(16 * 1024, before - sent);
      this.push(data.subarray(sent, sent + n));
      sent += n;
    },
  });
}

export function blobsContract(name: string, factory: BlobFactory): void {
  const withStore = (fn: (s: BlobStore) => Promise<void>) => async () => {
    const fx = await factory();
    try {
      await fn(fx.store);
    } finally {
      await fx.cleanup();
    }
  };

  describe(`BlobStore contract: ${name}`, () => {
    test('put names the bytes by their sha256; get returns them with their size', withStore(async (s) => {
      const data = randomBytes(3 * 1024 * 1024 + 17);
      const info = await s.put(chunked(data));
      assert.deepEqual(info, { sha256: sha256(data), size: data.length, created: true });
      assert.equal(await s.has(info.sha256), true);
      const got = await s.get(info.sha256);
      assert.equal(got!.size, data.length);
      assert.ok((await readAll(got!.stream)).equals(data));
    }));

    test('a Readable works as a source, and the empty blob is a blob', withStore(async (s) => {
      const info = await s.put(Readable.from([Buffer.from('hello '), Buffer.from('world')]));
      assert.equal(info.sha256, sha256(Buffer.from('hello world')));
      const empty = await s.put(Readable.from([]));
      assert.deepEqual(empty, { sha256: sha256(Buffer.alloc(0)), size: 0, created: true });
      assert.equal((await readAll((await s.get(empty.sha256))!.stream)).length, 0);
    }));

    test('absent blobs: get gives null, has false; malformed names are STORE_INVALID', withStore(async (s) => {
      const absent = sha256(Buffer.from('never stored'));
      assert.equal(await s.get(absent), null);
      assert.equal(await s.has(absent), false);
      for (const bad of ['abc', absent.toUpperCase(), `../${absent.slice(3)}`, `${absent}x`]) {
        await rejectsWith(s.get(bad), 'STORE_INVALID');
        await rejectsWith(s.has(bad), 'STORE_INVALID');
      }
    }));

    test('storing the same content twice, even at once, gives one blob with the same name', withStore(async (s) => {
      const data = randomBytes(200_000);
      const [a, b, c] = await Promise.all([s.put(chunked(data)), s.put(chunked(data)), s.put(chunked(data, 999))]);
      const named = (i: { sha256: string; size: number }): unknown => ({ sha256: i.sha256, size: i.size });
      assert.deepEqual(named(a), named(b));
      assert.deepEqual(named(a), named(c));
      // Racing puts may each have written it; at least one did.
      assert.ok([a, b, c].some((i) => i.created === true));
      assert.equal((await s.put(chunked(data))).created, false, 'a put that finds the content present says so');
      assert.ok((await readAll((await s.get(a.sha256))!.stream)).equals(data));
    }));

    test('list names every complete blob with its size; delete removes one, false when absent', withStore(async (s) => {
      const datas = [randomBytes(10), randomBytes(70_000), Buffer.alloc(0)];
      for (const d of datas) await s.put(chunked(d));
      await s.put(cutOff(randomBytes(100_000), 50_000)).catch(() => undefined);
      const listed = async (): Promise<string[]> => {
        const out: string[] = [];
        for await (const b of s.list()) out.push(`${b.sha256}:${b.size}`);
        return out.sort();
      };
      assert.deepEqual(await listed(), datas.map((d) => `${sha256(d)}:${d.length}`).sort());
      assert.equal(await s.delete(sha256(datas[1]!)), true);
      assert.equal(await s.delete(sha256(datas[1]!)), false);
      assert.equal(await s.has(sha256(datas[1]!)), false);
      assert.equal(await s.get(sha256(datas[1]!)), null);
      assert.deepEqual(await listed(), [datas[0]!, datas[2]!].map((d) => `${sha256(d)}:${d.length}`).sort());
      await rejectsWith(s.delete('../x'), 'STORE_INVALID');
      // Deleted content can be stored again.
      assert.equal((await s.put(chunked(datas[1]!))).created, true);
    }));

    test('no partial upload stays behind a put that ended, stored or refused', withStore(async (s) => {
      await s.put(chunked(randomBytes(100_000)));
      await s.put(cutOff(randomBytes(300_000), 100_000)).catch(() => undefined);
      await s.put(chunked(randomBytes(1000)), { size: 1 }).catch(() => undefined);
      assert.deepEqual(await s.partials(), []);
      assert.equal(await s.sweepPartials(0), 0);
    }));

    test('announced sha256 or size that the bytes do not have: BLOB_DIGEST_MISMATCH, nothing stored', withStore(async (s) => {
      const data = randomBytes(100_000);
      const other = sha256(Buffer.from('other'));
      await rejectsWith(s.put(chunked(data), { sha256: other }), 'BLOB_DIGEST_MISMATCH');
      await rejectsWith(s.put(chunked(data), { size: data.length + 1 }), 'BLOB_DIGEST_MISMATCH');
      assert.equal(await s.has(sha256(data)), false);
      assert.equal(await s.has(other), false);
      const ok = await s.put(chunked(data), { sha256: sha256(data), size: data.length });
      assert.equal(ok.sha256, sha256(data));
    }));

    test('a source destroyed mid-way stores nothing: BLOB_INPUT_FAILED', withStore(async (s) => {
      const data = randomBytes(1024 * 1024);
      const half = 512 * 1024;
      await rejectsWith(s.put(cutOff(data, half)), 'BLOB_INPUT_FAILED');
      await rejectsWith(s.put(cutOff(data, half, undefined)), 'BLOB_INPUT_FAILED');
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield data.subarray(0, 1000);
        throw new Error('upstream failed');
      }
      await rejectsWith(s.put(failing()), 'BLOB_INPUT_FAILED');
      assert.equal(await s.has(sha256(data.subarray(0, half))), false);
      assert.equal(await s.has(sha256(data.subarray(0, 1000))), false);
      assert.equal(await s.has(sha256(data)), false);
    }));

    test('a reader can stop early without harm, and many readers can read at once', withStore(async (s) => {
      const data = randomBytes(4 * 1024 * 1024);
      const { sha256: name } = await s.put(chunked(data));
      const early = (await s.get(name))!.stream;
      for await (const _ of early) break;
      const all = await Promise.all(Array.from({ length: 8 }, async () => readAll((await s.get(name))!.stream)));
      for (const b of all) assert.ok(b.equals(data));
    }));
  });
}
