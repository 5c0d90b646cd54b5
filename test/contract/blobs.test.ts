// Runs the blob contract against every backend, plus what only the directory store promises:
// the fan-out layout, temp files that never carry a sha256 name, one file per content, nothing
// left behind by a cut-off upload, owner-only modes, and clean-up of stale temp files.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { openDirBlobs } from '../../src/adapters/storage/dir-blobs.ts';
import { MemoryBlobStore } from '../../src/adapters/storage/memory-blobs.ts';
import { blobsContract, chunked, cutOff, sha256 } from './blobs.contract.ts';
import { rejectsWith } from './metadata.contract.ts';

const REPO = resolve(import.meta.dirname, '../..');
const tempDir = (): string => mkdtempSync(join(tmpdir(), 'ru-blobs-'));

blobsContract('memory', async () => {
  const store = new MemoryBlobStore();
  return { store, cleanup: () => store.close() };
});

blobsContract('dir', async () => {
  const dir = tempDir();
  const store = await openDirBlobs(join(dir, 'blobs'));
  return { store, cleanup: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
});

/** Every file below root, as relative paths. */
function files(root: string): string[] {
  return (readdirSync(root, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((d) => d.isFile())
    .map((d) => relative(root, join(d.parentPath ?? d.path, d.name)))
    .sort();
}

const SHA_NAME = /(^|\/)[0-9a-f]{64}$/;

describe('dir blobs: layout and crash safety', () => {
  const withDir = (fn: (root: string) => Promise<void>) => async () => {
    const dir = tempDir();
    try {
      await fn(join(dir, 'blobs'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  test('a blob lives at ab/cd/<sha256>, owner-only, and equal content is one file', withDir(async (root) => {
    const s = await openDirBlobs(root);
    const data = randomBytes(10_000);
    const h = sha256(data);
    await s.put(chunked(data));
    await s.put(chunked(data, 77));
    assert.deepEqual(files(root), [`${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`]);
    assert.equal(s.pathOf(h), join(root, h.slice(0, 2), h.slice(2, 4), h));
    assert.equal(statSync(s.pathOf(h)).mode & 0o777, 0o600);
    assert.equal(statSync(join(root, h.slice(0, 2))).mode & 0o777, 0o700);
  }));

  test('while a put is under way its bytes sit in tmp/ under a non-sha256 name, never under a real one', withDir(async (root) => {
    const s = await openDirBlobs(root);
    const data = randomBytes(300_000);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reachedGate!: () => void;
    const atGate = new Promise<void>((r) => (reachedGate = r));
    async function* slow(): AsyncGenerator<Uint8Array> {
      yield data.subarray(0, 200_000);
      reachedGate();
      await gate;
      yield data.subarray(200_000);
    }
    const put = s.put(slow());
    await atGate;
    await new Promise((r) => setTimeout(r, 20));
    const during = files(root);
    assert.equal(during.length, 1);
    assert.match(during[0]!, /^tmp\/[0-9a-f]{24}\.part$/);
    assert.ok(statSync(join(root, during[0]!)).size > 0, 'the temp file receives the data');
    assert.ok(!during.some((f) => SHA_NAME.test(f)));
    release();
    const info = await put;
    assert.deepEqual(files(root), [`${info.sha256.slice(0, 2)}/${info.sha256.slice(2, 4)}/${info.sha256}`]);
  }));

  test('a cut-off upload or a refused digest leaves no file at all', withDir(async (root) => {
    const s = await openDirBlobs(root);
    const data = randomBytes(2 * 1024 * 1024);
    await rejectsWith(s.put(cutOff(data, 1024 * 1024)), 'BLOB_INPUT_FAILED');
    await rejectsWith(s.put(chunked(data), { sha256: sha256(Buffer.from('x')) }), 'BLOB_DIGEST_MISMATCH');
    assert.deepEqual(files(root), []);
  }));

  test('opening clears temp files a crash left long ago and keeps recent ones', withDir(async (root) => {
    await openDirBlobs(root);
    const old = join(root, 'tmp', 'aaaaaaaaaaaaaaaaaaaaaaaa.part');
    const recent = join(root, 'tmp', 'bbbbbbbbbbbbbbbbbbbbbbbb.part');
    writeFileSync(old, 'partial');
    writeFileSync(recent, 'in progress elsewhere');
    const twoDaysAgo = new Date(Date.now() - 48 * 3600 * 1000);
    utimesSync(old, twoDaysAgo, twoDaysAgo);
    await openDirBlobs(root);
    assert.equal(existsSync(old), false);
    assert.equal(existsSync(recent), true);
  }));

  test('partials() lists tmp/*.part with size and age, sweepPartials(ms) removes those at least that old; list() skips anything not a blob', withDir(async (root) => {
    const s = await openDirBlobs(root);
    const stored = await s.put(chunked(randomBytes(1000)));
    const old = join(root, 'tmp', 'aaaaaaaaaaaaaaaaaaaaaaaa.part');
    writeFileSync(old, 'partial');
    const hourAgo = new Date(Date.now() - 3600 * 1000);
    utimesSync(old, hourAgo, hourAgo);
    writeFileSync(join(root, 'tmp', 'bbbbbbbbbbbbbbbbbbbbbbbb.part'), 'in progress');
    // Not blobs: a stray file in a fan-out directory, a name in the wrong directory, a file at the top.
    writeFileSync(join(root, stored.sha256.slice(0, 2), stored.sha256.slice(2, 4), 'notes.txt'), 'x');
    const misplaced = sha256(Buffer.from('misplaced'));
    mkdirSync(join(root, 'ff', 'ff'), { recursive: true });
    writeFileSync(join(root, 'ff', 'ff', misplaced), 'misplaced');
    writeFileSync(join(root, 'README'), 'x');
    const parts = await s.partials();
    assert.deepEqual(parts.map((p) => [p.name, p.size]), [['tmp/aaaaaaaaaaaaaaaaaaaaaaaa.part', 7], ['tmp/bbbbbbbbbbbbbbbbbbbbbbbb.part', 11]]);
    assert.ok(parts[0]!.age >= 3500 * 1000 && parts[1]!.age < 60 * 1000);
    assert.equal(await s.sweepPartials(60 * 1000), 1);
    assert.deepEqual((await s.partials()).map((p) => p.name), ['tmp/bbbbbbbbbbbbbbbbbbbbbbbb.part']);
    assert.equal(await s.sweepPartials(0), 1);
    assert.deepEqual(await s.partials(), []);
    const listed: string[] = [];
    for await (const b of s.list()) listed.push(b.sha256);
    assert.deepEqual(listed, [stored.sha256]);
  }));

  test('a full disk while writing is NO_SPACE and leaves nothing behind', async (t) => {
    const dir = tempDir();
    const root = join(dir, 'blobs');
    mkdirSync(root);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', root], { stdio: 'ignore' });
    } catch {
      rmSync(dir, { recursive: true, force: true });
      t.skip('cannot mount a tmpfs here (needs root)');
      return;
    }
    try {
      const s = await openDirBlobs(root);
      await rejectsWith(s.put(chunked(randomBytes(3 * 1024 * 1024))), 'NO_SPACE');
      assert.deepEqual(files(root), []);
    } finally {
      execFileSync('umount', [root]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a process killed -9 in the middle of a put leaves no blob, only a temp file for the sweep', withDir(async (root) => {
    const script = join(root, '..', 'putter.mts');
    writeFileSync(script, `
      import { openDirBlobs } from ${JSON.stringify(join(REPO, 'src/adapters/storage/dir-blobs.ts'))};
      const s = await openDirBlobs(process.argv[2]);
      async function* forever() {
        for (let i = 0; ; i++) {
          if (i === 4) console.log('writing');
          yield Buffer.alloc(64 * 1024, i);
          await new Promise((r) => setTimeout(r, 5));
        }
      }
      await s.put(forever());
    `);
    const child = spawn(process.execPath, ['--import', 'tsx', script, root], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((res) => child.stdout.once('data', () => res()));
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const left = files(root);
    assert.ok(!left.some((f) => SHA_NAME.test(f)), `no sha256 name: ${left.join(', ')}`);
    assert.deepEqual(left.map((f) => f.replace(/[0-9a-f]{24}/, 'X')), ['tmp/X.part']);
    const s = await openDirBlobs(root);
    assert.equal(await s.has(sha256(Buffer.alloc(64 * 1024, 0))), false);
  }));
});
