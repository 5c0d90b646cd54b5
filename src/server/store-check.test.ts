// The store check finds each kind of inconsistency it promises (a blob missing, of the wrong
// size, or holding other bytes; a log shorter than its record), tells leftovers from errors, and
// the start's sweep removes partial and unreferenced blobs but nothing a version (of a host or a
// layer) names.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openDirBlobs } from '../adapters/storage/dir-blobs.ts';
import { openSqliteMetadata } from '../adapters/storage/sqlite-metadata.ts';
import { isRuError } from '../core/errors.ts';
import { runCheck } from './check-command.ts';
import { checkStore, sweepLeftovers } from './store-check.ts';

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function fixture() {
  const root = mkdtempSync(join(tmpdir(), 'ru-check-'));
  const data = { root, tmp: join(root, 'tmp'), logs: join(root, 'logs'), blobs: join(root, 'blobs') };
  for (const d of [data.tmp, data.logs]) mkdirSync(d, { recursive: true });
  const meta = await openSqliteMetadata(join(root, 'metadata.sqlite'));
  const blobs = await openDirBlobs(data.blobs);
  await meta.addHost({ id: 'h' });
  const put = async (content: string): Promise<{ sha256: string; size: number }> => blobs.put((async function* () {
    yield Buffer.from(content);
  })());
  const version = async (content: string): Promise<string> => {
    const b = await put(content);
    await meta.publishVersion({ host: 'h', blob: b.sha256, digest: sha(`d${content}`), size: b.size, manifest: '{}' });
    return b.sha256;
  };
  const layerVersion = async (cls: string, name: string, content: string, size?: number): Promise<string> => {
    const b = await put(content);
    await meta.publishLayerVersion({ class: cls, name, priority: 10, blob: b.sha256, digest: sha(`d${content}`), size: size ?? b.size, manifest: '{}' });
    return b.sha256;
  };
  return { data, meta, blobs, put, version, layerVersion, cleanup: async () => {
    await meta.close();
    rmSync(root, { recursive: true, force: true });
  } };
}

test('a sound store checks consistent; leftovers are listed apart, and the sweep removes partial and unreferenced blobs only', async () => {
  const f = await fixture();
  try {
    const kept = await f.version('one');
    await f.version('two');
    const loose = (await f.put('nobody names me')).sha256;
    writeFileSync(join(f.data.blobs, 'tmp', 'aaaaaaaaaaaaaaaaaaaaaaaa.part'), 'half');
    writeFileSync(join(f.data.tmp, 'upload-1.tar.gz'), 'spooled');
    const log = await f.meta.openLog({ host: 'h', workflow: 'recover', stamp: 's' });
    writeFileSync(join(f.data.logs, `${log.id}.log`), 'twelve bytes');
    await f.meta.updateLog(log.id, 12, true);
    writeFileSync(join(f.data.logs, '99.log'), 'stray');

    const r = await checkStore(f);
    assert.deepEqual(r.errors, []);
    assert.equal(r.ok, true);
    assert.deepEqual(r.counts, { hosts: 1, versions: 2, layers: 0, layerVersions: 0, blobs: 2, blobBytes: 6, logs: 1 });
    assert.deepEqual(r.leftovers.map((l) => l.kind).sort(), ['partial-blob', 'spool', 'stray-log', 'unreferenced-blob']);

    assert.deepEqual(await sweepLeftovers(f), { partials: 1, blobs: 1 });
    assert.equal(await f.blobs.has(loose), false);
    assert.equal(await f.blobs.has(kept), true);
    assert.deepEqual((await checkStore(f)).leftovers.map((l) => l.kind).sort(), ['spool', 'stray-log']);
  } finally {
    await f.cleanup();
  }
});

test('a missing blob, a blob of the wrong size or bytes, and logs shorter or other than recorded are errors; serve --check exits STORE_INCONSISTENT', async () => {
  const f = await fixture();
  try {
    const missing = await f.version('gone');
    const altered = await f.version('altered');
    const b = await f.put('sized');
    await f.meta.publishVersion({ host: 'h', blob: b.sha256, digest: sha('dsized'), size: 999, manifest: '{}' });
    await f.blobs.delete(missing);
    writeFileSync(f.blobs.pathOf(altered), 'ALTERED');
    const short = await f.meta.openLog({ host: 'h', workflow: 'recover', stamp: 'short' });
    writeFileSync(join(f.data.logs, `${short.id}.log`), 'abc');
    await f.meta.updateLog(short.id, 10, false);
    const other = await f.meta.openLog({ host: 'h', workflow: 'recover', stamp: 'other' });
    writeFileSync(join(f.data.logs, `${other.id}.log`), 'more than recorded');
    await f.meta.updateLog(other.id, 4, true);
    const none = await f.meta.openLog({ host: 'h', workflow: 'recover', stamp: 'none' });
    await f.meta.updateLog(none.id, 5, false);

    const r = await checkStore(f);
    assert.equal(r.ok, false);
    assert.deepEqual(r.errors.map((e) => [e.kind, e.version ?? null]).sort(), [
      ['blob-digest', 2], ['blob-missing', 1], ['blob-size', 3], ['log-missing', null], ['log-short', null], ['log-size', null],
    ]);

    const printed: string[] = [];
    await assert.rejects(runCheck({ data: f.data.root }, { json: false }, (l) => printed.push(l)), (e: unknown) => isRuError(e) && e.code === 'STORE_INCONSISTENT' && e.exitStatus === 8);
    assert.equal(printed.at(-1), 'INCONSISTENT');
    assert.ok(printed.some((l) => l.includes('blob-missing') && l.includes(missing)));
    // The sweep never takes a blob a version names, missing or not.
    assert.deepEqual(await sweepLeftovers(f), { partials: 0, blobs: 0 });
    assert.equal(await f.blobs.has(altered), true);
  } finally {
    await f.cleanup();
  }
});

test('layer versions\' blobs are checked as hosts\' are, and the sweep keeps every blob a layer version names', async () => {
  const f = await fixture();
  try {
    const shared = await f.version('shared');
    const kept = await f.layerVersion('typeA', 'fw', 'firmware');
    await f.layerVersion('typeA', 'fw', 'shared');
    const missing = await f.layerVersion('*', 'base', 'base gone');
    await f.layerVersion('*', 'base', 'sized', 999);
    await f.blobs.delete(missing);

    const r = await checkStore(f);
    assert.deepEqual(r.counts, { hosts: 1, versions: 1, layers: 2, layerVersions: 4, blobs: 4, blobBytes: 19, logs: 0 });
    assert.deepEqual(r.errors.map((e) => [e.kind, e.layer ?? null, e.host ?? null, e.version ?? null]).sort(), [
      ['blob-missing', '*/base', null, 1], ['blob-size', '*/base', null, 2],
    ]);
    assert.match(r.errors.find((e) => e.kind === 'blob-missing')!.message, new RegExp(`^layer \\*/base version 1: blob ${missing} is missing`));
    assert.deepEqual(r.leftovers, [], 'a blob only a layer version names is no leftover');

    assert.deepEqual(await sweepLeftovers(f), { partials: 0, blobs: 0 });
    assert.equal(await f.blobs.has(kept), true);
    assert.equal(await f.blobs.has(shared), true);
  } finally {
    await f.cleanup();
  }
});
