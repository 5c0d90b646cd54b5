// `rear-update admin fsck [--gc] [--grace]` (issue 14): a live server checks its store — every
// version's blob (hosts' and layers') there with its sha256 and size — lists unreferenced blobs,
// and with --gc removes those older than the grace period. Over real HTTP with a real server on
// loopback and the built CLI; and, in process, the moment a publish has stored its blob but not
// yet the version that names it: gc with grace 0 then removes the blob, and the publish must
// store it again before it answers (bundles.ts), so that its version is served.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeys } from '../../src/adapters/fs/keys.ts';
import { DirBlobStore, openDirBlobs } from '../../src/adapters/storage/dir-blobs.ts';
import { MemoryMetadataStore } from '../../src/adapters/storage/memory-metadata.ts';
import { readBundle } from '../../src/adapters/tar/bundle-reader.ts';
import { sealedBytes } from '../../src/adapters/tar/served-bundle.ts';
import { pack } from '../../src/cli/commands/pack.ts';
import { DEFAULT_LIMITS } from '../../src/core/policy.ts';
import type { NewVersion, PublishResult } from '../../src/core/store/metadata.ts';
import { BundleService } from '../../src/server/bundles.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { collectGarbage } from '../../src/server/store-check.ts';
import { adminSide, cleanup, errorCode, makeTree, succeeded, tempDir } from '../helpers.ts';

const work = tempDir('ru-fsck-');
after(() => cleanup(work));

let bundles = 0;
async function bundle(host: string, content: string | Buffer): Promise<Buffer> {
  const root = join(work, `tree-${++bundles}`);
  makeTree(root, { etc: { rear: { 'local.conf': content } } });
  const out = join(work, `bundle-${bundles}.tar.gz`);
  await pack({ root, path: ['etc/rear'], host, created: '2026-01-01T00:00:00Z', output: out });
  return readFileSync(out);
}

interface Fsck {
  gc?: { removed: { sha256: string }[]; kept: { sha256: string; age: number | null }[] };
  check: { ok: boolean; errors: { kind: string; host?: string; message: string }[]; leftovers: { kind: string; blob?: string }[]; counts: { versions: number; layerVersions: number } };
}

describe('admin fsck on a live server', () => {
  let srv: Running;
  let adminToken: string;
  const data = join(work, 'data');
  const { req, adm } = adminSide(() => srv, () => adminToken);
  const fsck = async (...args: string[]): Promise<Fsck> => JSON.parse(succeeded(await adm(['fsck', '--json', ...args])).stdout) as Fsck;
  const store = (): DirBlobStore => new DirBlobStore(join(data, 'blobs'));

  before(async () => {
    srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
    adminToken = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    assert.equal((await req('POST', '/api/v1/hosts', { body: { id: 'e229', class: 'typeA' } })).status, 201);
    assert.equal((await req('POST', '/api/v1/hosts/e229/versions', { body: await bundle('e229', 'OUTPUT=ISO\n') })).status, 201);
  });
  after(async () => {
    await srv?.close();
  });

  test('a sound store: consistent, exit 0, versions counted', async () => {
    const r = await fsck();
    assert.equal(r.check.ok, true);
    assert.equal(r.check.counts.versions, 1);
    const human = succeeded(await adm(['fsck']));
    assert.match(human.stdout, /^consistent$/m);
  });

  test('an unreferenced blob is listed; --gc keeps it within the grace period (default 1h) and removes it once older', async () => {
    const b = await store().put(Readable.from([randomBytes(2000)]));
    assert.ok((await fsck()).check.leftovers.some((l) => l.kind === 'unreferenced-blob' && l.blob === b.sha256));
    const young = await fsck('--gc');
    assert.deepEqual(young.gc?.removed, []);
    assert.ok(young.gc?.kept.some((k) => k.sha256 === b.sha256));
    assert.equal(await store().has(b.sha256), true);
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(store().pathOf(b.sha256), twoHoursAgo, twoHoursAgo);
    const old = await fsck('--gc');
    assert.deepEqual(old.gc?.removed.map((x) => x.sha256), [b.sha256]);
    assert.equal(await store().has(b.sha256), false);
    const fresh = await store().put(Readable.from([randomBytes(2000)]));
    assert.deepEqual((await fsck('--gc', '--grace', '0')).gc?.removed.map((x) => x.sha256), [fresh.sha256]);
    // A referenced blob is never removed, whatever the grace.
    assert.equal((await fsck()).check.ok, true);
  });

  test('a publish in flight (its upload paused) survives fsck --gc --grace 0; its version is then stored and served', async () => {
    const body = await bundle('e229', `OUTPUT=ISO\n# in flight ${randomBytes(4).toString('hex')}\n`);
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = http.request(new URL('/api/v1/hosts/e229/versions', srv.url), {
        method: 'POST', agent: false, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/gzip', 'content-length': String(body.length) },
      }, (res) => {
        let t = '';
        res.on('data', (c: Buffer) => (t += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: t }));
      });
      r.on('error', reject);
      r.write(body.subarray(0, 100));
      // The rest once gc has run.
      void gcThenFinish().then(() => r.end(body.subarray(100)), reject);
    });
    let during: Fsck | null = null;
    async function gcThenFinish(): Promise<void> {
      await sleep(300);
      during = await fsck('--gc', '--grace', '0');
    }
    const a = await answer;
    assert.equal(a.status, 201, a.body);
    assert.ok(during, 'gc ran while the upload was paused');
    assert.ok((during as Fsck).check.leftovers.some((l) => l.kind === 'spool'), 'the paused upload was in the spool');
    const served = await req('GET', '/api/v1/hosts/e229/bundle');
    assert.equal(served.status, 200);
    assert.equal(served.headers['x-rear-update-version'], '2');
    assert.equal((await fsck()).check.ok, true);
  });

  test('a version\'s blob damaged, then missing: listed as an error, STORE_INCONSISTENT (exit 8)', async () => {
    const v = (await req('GET', '/api/v1/hosts/e229/versions')).json as { versions?: { version: number; blob?: string; sha256?: string }[] } | { version: number; blob?: string }[];
    const list = Array.isArray(v) ? v : (v.versions ?? []);
    const blob = list.map((x) => x.blob ?? (x as { sha256?: string }).sha256).find((b): b is string => typeof b === 'string');
    assert.ok(blob, JSON.stringify(v));
    const path = store().pathOf(blob);
    const bytes = readFileSync(path);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
    writeFileSync(path, bytes);
    const damaged = await adm(['fsck', '--json']);
    assert.equal(errorCode(damaged), 'STORE_INCONSISTENT', damaged.stderr);
    assert.equal(damaged.status, 8);
    assert.ok((JSON.parse(damaged.stdout) as Fsck).check.errors.some((e) => e.kind === 'blob-digest' && e.host === 'e229'));
    rmSync(path);
    const missing = await adm(['fsck']);
    assert.equal(errorCode(missing), 'STORE_INCONSISTENT');
    assert.match(missing.stdout, /blob-missing/);
  });

  test('fsck needs an admin token', async () => {
    const t = await req('POST', '/api/v1/tokens', { body: { scope: 'view' } });
    const r = await adm(['fsck'], t.json.token as string);
    assert.equal(errorCode(r), 'FORBIDDEN', r.stderr);
  });
});

describe('a publish whose blob is stored but whose version is not yet (in process, real blob directory)', () => {
  /** A BundleService whose publishVersion waits at a gate: the window between the blob and its version. */
  async function gated(label: string) {
    const dir = join(work, `gated-${label}`);
    mkdirSync(join(dir, 'tmp'), { recursive: true });
    const blobs = await openDirBlobs(join(dir, 'blobs'));
    let arrived!: (v: NewVersion) => void;
    const atGate = new Promise<NewVersion>((r) => (arrived = r));
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    class Meta extends MemoryMetadataStore {
      override async publishVersion(v: NewVersion, opts?: { ifChanged?: boolean }): Promise<PublishResult> {
        arrived(v);
        await gate;
        return super.publishVersion(v, opts);
      }
    }
    const meta = new Meta();
    const host = await meta.addHost({ id: 'h' });
    const key = generateKeys(join(dir, 'keys'), false);
    const service = new BundleService({ meta, blobs, key, tmpDir: join(dir, 'tmp'), maxUpload: 1 << 26, cacheBytes: 0, now: () => new Date() });
    const file = join(dir, 'bundle.tar.gz');
    writeFileSync(file, await bundle('h', randomBytes(3000).toString('base64')));
    const publishing = service.publish(host, createReadStream(file), { announced: null, publisher: null });
    return { blobs, meta, host, service, key, publishing, atGate, open };
  }

  test('gc with the default grace keeps the blob of a publish in flight', async () => {
    const g = await gated('grace');
    const v = await g.atGate;
    const gc = await collectGarbage({ meta: g.meta, blobs: g.blobs }, 3600_000);
    assert.deepEqual(gc.removed, []);
    assert.ok(gc.kept.some((k) => k.sha256 === v.blob));
    g.open();
    await g.publishing;
    assert.equal(await g.blobs.has(v.blob), true);
  });

  test('gc --grace 0 removes it; the publish stores it again before it answers, and the version is served', async () => {
    const g = await gated('zero');
    const v = await g.atGate;
    const gc = await collectGarbage({ meta: g.meta, blobs: g.blobs }, 0);
    assert.deepEqual(gc.removed.map((b) => b.sha256), [v.blob], 'grace 0: the in-flight blob is taken');
    assert.equal(await g.blobs.has(v.blob), false);
    g.open();
    const r = await g.publishing;
    assert.equal(r.created, true);
    assert.equal(await g.blobs.has(r.version.blob), true, 'stored again');
    const sealed = await g.service.sealed(g.host, r.version, new Date());
    const read = await readBundle(Readable.from(sealedBytes(sealed)), { trusted: [g.key.publicKey], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS });
    assert.equal(read.manifest?.host, 'h');
    assert.deepEqual(await g.meta.check(), []);
  });
});
