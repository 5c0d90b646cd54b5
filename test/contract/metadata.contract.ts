// The one contract every MetadataStore backend passes (memory, SQLite, and whatever comes next):
// call metadataContract(name, factory) from a *.test.ts with a factory for your backend. The
// suite speaks only through the interface, so a backend that passes it is a drop-in.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { isRuError, type ErrorCode } from '../../src/core/errors.ts';
import { MAX_PRIORITY } from '../../src/core/manifest.ts';
import type { RecoveryEventKind } from '../../src/core/recovery.ts';
import type { Hardware } from '../../src/core/store/hardware.ts';
import type {
  AuditEvent, MetadataOptions, MetadataStore, NewLayerVersion, NewRecovery, NewRecoveryEvent, RecoveryQuery,
} from '../../src/core/store/metadata.ts';
import { resolveHost } from '../../src/core/store/resolve.ts';

export interface MetadataFixture {
  readonly store: MetadataStore;
  /** Persistent backends: close the store and open the same data again. */
  readonly reopen?: () => Promise<MetadataStore>;
  /** Closes whatever store is open and removes the data. */
  readonly cleanup: () => Promise<void>;
}

export type MetadataFactory = (opts: MetadataOptions) => Promise<MetadataFixture>;

export async function rejectsWith(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isRuError(e), `expected RuError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** The context of the PENDING_LIMIT refusal `p` must end in. */
async function pendingLimitOf(p: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await p;
  } catch (e) {
    assert.ok(isRuError(e) && e.code === 'PENDING_LIMIT', String(e));
    return e.context;
  }
  return assert.fail('expected PENDING_LIMIT');
}

export const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

/** A clock that advances one second per reading, from a fixed start. */
export function steppingClock(start = Date.parse('2026-01-01T00:00:00Z')): () => Date {
  let t = start;
  return () => new Date((t += 1000));
}

const version = (host: string, content: string, publisher: string | null = null) => ({
  host, blob: sha(`blob:${content}`), digest: sha(`digest:${content}`), size: content.length,
  manifest: JSON.stringify({ host, content }), publisher,
});

/** A layer version; `content` makes the blob and the digest, so equal content is an unchanged publish. */
export const layerVersion = (cls: string, name: string, content: string, priority = 10, publisher: string | null = null): NewLayerVersion => ({
  class: cls, name, priority, blob: sha(`layer blob:${content}`), digest: sha(`layer digest:${content}`), size: content.length,
  manifest: JSON.stringify({ format: 2, layer: name, content }), publisher,
});

/** What the store keeps of a publish: all but the priority (which belongs to the layer). */
const stored = (n: NewLayerVersion) => {
  const { priority: _p, ...rest } = n;
  return rest;
};

const MAC_A = 'aa:bb:cc:00:00:01';
const MAC_B = 'aa:bb:cc:00:00:02';
const UUID_A = '4c4c4544-0031-3510-8052-b4c04f4e3432';

export function metadataContract(name: string, factory: MetadataFactory): void {
  const withStore = (fn: (s: MetadataStore, fx: MetadataFixture) => Promise<void>) => async () => {
    const fx = await factory({ now: steppingClock() });
    try {
      await fn(fx.store, fx);
    } finally {
      await fx.cleanup();
    }
  };

  describe(`MetadataStore contract: ${name}`, () => {
    test('hosts: facts are stored normalized and sorted; created comes from the clock', withStore(async (s) => {
      const h = await s.addHost({
        id: 'web1', class: 'typeA', macs: ['AA-BB-CC-00-00-02', 'aabb.cc00.0001', MAC_A], uuid: UUID_A.toUpperCase(),
        serial: ' cz12345 ', hostnames: ['Web1.Example.COM.', 'web1'],
      });
      assert.deepEqual(h, {
        id: 'web1', hostnames: ['web1', 'web1.example.com'], macs: [MAC_A, MAC_B], uuid: UUID_A, serial: 'CZ12345',
        class: 'typeA', pinned: null, created: '2026-01-01T00:00:01.000Z',
      });
      assert.deepEqual(await s.getHost('web1'), h);
      assert.equal(await s.getHost('nope'), null);
      const bare = await s.addHost({ id: 'bare' });
      assert.deepEqual([bare.macs, bare.hostnames, bare.uuid, bare.serial, bare.class], [[], [], null, null, null]);
    }));

    test('hosts: conflicts and malformed values are refused with stable codes', withStore(async (s) => {
      await s.addHost({ id: 'a', macs: [MAC_A] });
      await rejectsWith(s.addHost({ id: 'a' }), 'STORE_CONFLICT');
      await rejectsWith(s.addHost({ id: 'b', macs: [MAC_A.toUpperCase()] }), 'STORE_CONFLICT');
      await rejectsWith(s.addHost({ id: 'bad id' }), 'STORE_INVALID');
      await rejectsWith(s.addHost({ id: '../etc' }), 'STORE_INVALID');
      await rejectsWith(s.addHost({ id: 'c', macs: ['not-a-mac'] }), 'STORE_INVALID');
      await rejectsWith(s.addHost({ id: 'c', uuid: '00000000-0000-0000-0000-000000000000' }), 'STORE_INVALID');
      await rejectsWith(s.addHost({ id: 'c', serial: 'To Be Filled By O.E.M.' }), 'STORE_INVALID');
      await rejectsWith(s.addHost({ id: 'c', hostnames: ['localhost'] }), 'STORE_INVALID');
      await rejectsWith(s.addHost({ id: 'c', class: 'a/b' }), 'STORE_INVALID');
      assert.deepEqual((await s.listHosts()).map((h) => h.id), ['a'], 'refused adds leave nothing behind');
    }));

    test('hosts: update replaces the given fields; a MAC moves only after its owner let go', withStore(async (s) => {
      await s.addHost({ id: 'a', macs: [MAC_A], hostnames: ['a'], serial: 'S1' });
      await s.addHost({ id: 'b' });
      const a = await s.updateHost('a', { macs: [MAC_A, MAC_B], class: 'k' });
      assert.deepEqual([a.macs, a.hostnames, a.serial, a.class], [[MAC_A, MAC_B], ['a'], 'S1', 'k']);
      await rejectsWith(s.updateHost('b', { macs: [MAC_B] }), 'STORE_CONFLICT');
      assert.deepEqual((await s.getHost('b'))!.macs, [], 'a refused update changes nothing');
      await s.updateHost('a', { macs: [MAC_A], serial: null });
      assert.deepEqual((await s.updateHost('b', { macs: [MAC_B] })).macs, [MAC_B]);
      assert.equal((await s.getHost('a'))!.serial, null);
      await rejectsWith(s.updateHost('ghost', { class: 'k' }), 'HOST_UNKNOWN');
    }));

    test('hosts: lookup by each fact, in any spelling; list sorted, filtered by class', withStore(async (s) => {
      await s.addHost({ id: 'web2', class: 'B', macs: [MAC_B], serial: 'SHARED' });
      await s.addHost({ id: 'web1', class: 'A', macs: [MAC_A], uuid: UUID_A, serial: 'SHARED', hostnames: ['web1.example.com'] });
      const ids = async (p: Promise<{ id: string }[]>) => (await p).map((h) => h.id);
      assert.deepEqual(await ids(s.findHosts('mac', 'AA:BB:CC:00:00:01')), ['web1']);
      assert.deepEqual(await ids(s.findHosts('mac', 'aabbcc000002')), ['web2']);
      assert.deepEqual(await ids(s.findHosts('uuid', UUID_A.toUpperCase())), ['web1']);
      assert.deepEqual(await ids(s.findHosts('serial', 'shared')), ['web1', 'web2']);
      assert.deepEqual(await ids(s.findHosts('hostname', 'WEB1.example.com.')), ['web1']);
      assert.deepEqual(await ids(s.findHosts('mac', 'zz')), []);
      assert.deepEqual(await ids(s.findHosts('hostname', 'other')), []);
      assert.deepEqual(await ids(s.listHosts()), ['web1', 'web2']);
      assert.deepEqual(await ids(s.listHosts({ class: 'B' })), ['web2']);
    }));

    test('hosts: a fleet of 600 lists whole, each host with its own facts', withStore(async (s) => {
      const mac = (i: number) => `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
      for (let i = 0; i < 600; i++) await s.addHost({ id: `h${String(i).padStart(3, '0')}`, macs: [mac(i)], hostnames: [`n${i}`] });
      const all = await s.listHosts();
      assert.equal(all.length, 600);
      assert.deepEqual([all[599]!.id, all[599]!.macs, all[599]!.hostnames], ['h599', [mac(599)], ['n599']]);
    }));

    test('resolution: id, then MAC, UUID, serial, hostname; an ambiguous fact is skipped', withStore(async (s) => {
      await s.addHost({ id: 'by-mac', macs: [MAC_A] });
      await s.addHost({ id: 'by-uuid', uuid: UUID_A, hostnames: ['shared-name'] });
      await s.addHost({ id: 'by-serial', serial: 'SER1', hostnames: ['shared-name'] });
      await s.addHost({ id: 'by-name', hostnames: ['only-me'] });
      const all = { macs: [MAC_A.toUpperCase()], uuid: UUID_A, serial: 'ser1', hostname: 'only-me' };
      const r = async (f: Parameters<typeof resolveHost>[1]) => {
        const x = await resolveHost(s, f);
        return x.host ? [x.host.id, x.by] : [null, x.ambiguous];
      };
      assert.deepEqual(await r(all), ['by-mac', 'mac']);
      assert.deepEqual(await r({ ...all, macs: ['02:00:00:00:00:09'] }), ['by-uuid', 'uuid']);
      assert.deepEqual(await r({ ...all, macs: [], uuid: null }), ['by-serial', 'serial']);
      assert.deepEqual(await r({ serial: 'To be filled by O.E.M.', hostname: 'only-me' }), ['by-name', 'hostname']);
      assert.deepEqual(await r({ hostname: 'shared-name' }), [null, ['hostname']]);
      assert.deepEqual(await r({ macs: ['02:00:00:00:00:09'], hostname: 'unknown' }), [null, []]);
      assert.deepEqual(await r({ ...all, id: 'by-name' }), ['by-name', 'id']);
      await rejectsWith(resolveHost(s, { id: 'ghost', macs: [MAC_A] }), 'HOST_UNKNOWN');
    }));

    test('versions: numbered 1, 2, 3 per host; list without manifests; get and latest with', withStore(async (s) => {
      await s.addHost({ id: 'h' });
      await s.addHost({ id: 'g' });
      const v1 = await s.publishVersion(version('h', 'one', 'tok1'));
      await s.publishVersion(version('g', 'other'));
      const v2 = await s.publishVersion(version('h', 'two'));
      assert.deepEqual([v1.version.version, v2.version.version, v1.created, v2.created], [1, 2, true, true]);
      assert.deepEqual(v1.version, { ...version('h', 'one', 'tok1'), version: 1, created: v1.version.created });
      assert.deepEqual(await s.getVersion('h', 1), v1.version);
      assert.deepEqual(await s.latestVersion('h'), v2.version);
      assert.equal(await s.getVersion('h', 3), null);
      assert.equal(await s.latestVersion('ghost'), null);
      const list = await s.listVersions('h');
      assert.deepEqual(list.map((v) => v.version), [1, 2]);
      assert.ok(!('manifest' in list[0]!), 'summaries carry no manifest');
      assert.deepEqual(list[0], { host: 'h', version: 1, blob: v1.version.blob, digest: v1.version.digest, size: 3, created: v1.version.created, publisher: 'tok1' });
      assert.deepEqual(await s.listVersions('g').then((l) => l.map((v) => v.version)), [1]);
    }));

    test('versions: 20 concurrent publishes of one host get distinct consecutive numbers', withStore(async (s) => {
      await s.addHost({ id: 'h' });
      await s.addHost({ id: 'g' });
      const contents = Array.from({ length: 20 }, (_, i) => `c${i}`);
      const results = await Promise.all([
        ...contents.map((c) => s.publishVersion(version('h', c))),
        ...contents.slice(0, 5).map((c) => s.publishVersion(version('g', c))),
      ]);
      const h = results.slice(0, 20);
      assert.deepEqual(h.map((r) => r.version.version).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
      for (const r of h) assert.equal((await s.getVersion('h', r.version.version))!.blob, r.version.blob, 'each number holds its own publish');
      assert.deepEqual((await s.listVersions('g')).map((v) => v.version), [1, 2, 3, 4, 5]);
    }));

    test('versions: ifChanged adds nothing when the latest digest is equal, even when racing', withStore(async (s) => {
      await s.addHost({ id: 'h' });
      const first = await s.publishVersion(version('h', 'same'), { ifChanged: true });
      assert.deepEqual([first.created, first.version.version], [true, 1]);
      const again = await s.publishVersion(version('h', 'same'), { ifChanged: true });
      assert.deepEqual([again.created, again.version], [false, first.version]);
      const racing = await Promise.all(Array.from({ length: 10 }, () => s.publishVersion(version('h', 'new'), { ifChanged: true })));
      assert.equal(racing.filter((r) => r.created).length, 1, 'one of ten identical racing publishes creates a version');
      assert.ok(racing.every((r) => r.version.version === 2));
      assert.equal((await s.publishVersion(version('h', 'new'))).version.version, 3, 'without ifChanged a publish always adds');
      assert.equal((await s.publishVersion(version('h', 'same'), { ifChanged: true })).version.version, 4, 'compares with the latest only');
    }));

    test('versions: unknown hosts and malformed versions are refused', withStore(async (s) => {
      await rejectsWith(s.publishVersion(version('ghost', 'x')), 'HOST_UNKNOWN');
      await rejectsWith(s.listVersions('ghost'), 'HOST_UNKNOWN');
      await rejectsWith(s.servedVersion('ghost'), 'HOST_UNKNOWN');
      await rejectsWith(s.pin('ghost', 1), 'HOST_UNKNOWN');
      await rejectsWith(s.unpin('ghost'), 'HOST_UNKNOWN');
      await s.addHost({ id: 'h' });
      await rejectsWith(s.publishVersion({ ...version('h', 'x'), blob: 'ABC' }), 'STORE_INVALID');
      await rejectsWith(s.publishVersion({ ...version('h', 'x'), digest: sha('x').toUpperCase() }), 'STORE_INVALID');
      await rejectsWith(s.publishVersion({ ...version('h', 'x'), manifest: '{not json' }), 'STORE_INVALID');
      await rejectsWith(s.publishVersion({ ...version('h', 'x'), size: -1 }), 'STORE_INVALID');
      assert.deepEqual(await s.listVersions('h'), []);
      assert.equal(await s.servedVersion('h'), null);
    }));

    test('pin: the pinned version is served until unpinned; only existing versions pin', withStore(async (s) => {
      await s.addHost({ id: 'h' });
      await s.publishVersion(version('h', '1'));
      await s.publishVersion(version('h', '2'));
      assert.equal((await s.servedVersion('h'))!.version, 2);
      assert.equal((await s.pin('h', 1)).pinned, 1);
      await s.publishVersion(version('h', '3'));
      assert.equal((await s.servedVersion('h'))!.version, 1);
      assert.equal((await s.getHost('h'))!.pinned, 1);
      await rejectsWith(s.pin('h', 9), 'VERSION_UNKNOWN');
      assert.equal((await s.getHost('h'))!.pinned, 1, 'a refused pin keeps the old one');
      assert.equal((await s.unpin('h')).pinned, null);
      assert.equal((await s.servedVersion('h'))!.version, 3);
    }));

    test('layers: the first publish creates the layer with version 1; numbered 1, 2, 3 per layer; get, latest and list', withStore(async (s) => {
      assert.equal(await s.getLayer('typeA', 'drivers'), null);
      const p1 = await s.publishLayerVersion(layerVersion('typeA', 'drivers', 'one', 20, 'tok1'));
      assert.equal(p1.created, true);
      assert.deepEqual(p1.layer, { class: 'typeA', name: 'drivers', priority: 20, pinned: null, created: p1.layer.created });
      assert.deepEqual(p1.version, { ...stored(layerVersion('typeA', 'drivers', 'one', 20, 'tok1')), version: 1, created: p1.version.created });
      assert.deepEqual(await s.getLayer('typeA', 'drivers'), p1.layer);
      const every = await s.publishLayerVersion(layerVersion('*', 'drivers', 'every'));
      assert.deepEqual([every.version.version, every.layer.class], [1, '*'], 'the same name in another class is another layer');
      const p2 = await s.publishLayerVersion(layerVersion('typeA', 'drivers', 'two', 30));
      assert.deepEqual([p2.created, p2.version.version, p2.layer.priority, p2.layer.created], [true, 2, 30, p1.layer.created]);
      assert.deepEqual(await s.getLayerVersion('typeA', 'drivers', 1), p1.version);
      assert.deepEqual(await s.latestLayerVersion('typeA', 'drivers'), p2.version);
      assert.equal(await s.getLayerVersion('typeA', 'drivers', 3), null);
      assert.equal(await s.latestLayerVersion('typeA', 'ghost'), null);
      assert.equal(await s.getLayer('typeB', 'drivers'), null);
      const list = await s.listLayerVersions('typeA', 'drivers');
      assert.deepEqual(list.map((v) => v.version), [1, 2]);
      assert.ok(!('manifest' in list[0]!), 'summaries carry no manifest');
      const { manifest: _m, ...summary } = p1.version;
      assert.deepEqual(list[0], summary);
      assert.deepEqual((await s.listLayerVersions('*', 'drivers')).map((v) => v.version), [1]);
    }));

    test('layers: listed by class, priority, name; filtered by exactly one class', withStore(async (s) => {
      for (const [cls, name, priority] of [['typeB', 'x', 0], ['typeA', 'drivers', 20], ['*', 'aa', 50], ['typeA', 'fw', 1], ['*', 'zz', 5], ['typeA', 'apps', 20]] as const) {
        await s.publishLayerVersion(layerVersion(cls, name, `${cls}/${name}`, priority));
      }
      const refs = (ls: { class: string; name: string }[]) => ls.map((l) => `${l.class}/${l.name}`);
      assert.deepEqual(refs(await s.listLayers()), ['*/zz', '*/aa', 'typeA/fw', 'typeA/apps', 'typeA/drivers', 'typeB/x']);
      assert.deepEqual(refs(await s.listLayers({ class: 'typeA' })), ['typeA/fw', 'typeA/apps', 'typeA/drivers']);
      assert.deepEqual(refs(await s.listLayers({ class: '*' })), ['*/zz', '*/aa']);
      assert.deepEqual(await s.listLayers({ class: 'typeC' }), []);
    }));

    test('layers: ifChanged adds no version when the latest digest is equal, but sets the priority', withStore(async (s) => {
      const first = await s.publishLayerVersion(layerVersion('typeA', 'fw', 'same', 10), { ifChanged: true });
      assert.deepEqual([first.created, first.version.version], [true, 1]);
      const again = await s.publishLayerVersion(layerVersion('typeA', 'fw', 'same', 70), { ifChanged: true });
      assert.deepEqual([again.created, again.version, again.layer.priority], [false, first.version, 70]);
      assert.equal((await s.getLayer('typeA', 'fw'))!.priority, 70, 'the new priority is stored');
      assert.deepEqual((await s.listLayerVersions('typeA', 'fw')).map((v) => v.version), [1]);
      const racing = await Promise.all(Array.from({ length: 10 }, () => s.publishLayerVersion(layerVersion('typeA', 'fw', 'new', 70), { ifChanged: true })));
      assert.equal(racing.filter((r) => r.created).length, 1, 'one of ten identical racing publishes creates a version');
      assert.ok(racing.every((r) => r.version.version === 2));
      assert.equal((await s.publishLayerVersion(layerVersion('typeA', 'fw', 'new', 70))).version.version, 3, 'without ifChanged a publish always adds');
    }));

    test('layers: 10 concurrent publishes, the first of them creating the layer, get versions 1..10', withStore(async (s) => {
      const contents = Array.from({ length: 10 }, (_, i) => `c${i}`);
      const results = await Promise.all([
        ...contents.map((c) => s.publishLayerVersion(layerVersion('typeA', 'drivers', c))),
        ...contents.slice(0, 3).map((c) => s.publishLayerVersion(layerVersion('*', 'drivers', c))),
      ]);
      const a = results.slice(0, 10);
      assert.deepEqual(a.map((r) => r.version.version).sort((x, y) => x - y), Array.from({ length: 10 }, (_, i) => i + 1));
      for (const r of a) assert.equal((await s.getLayerVersion('typeA', 'drivers', r.version.version))!.blob, r.version.blob, 'each number holds its own publish');
      assert.deepEqual((await s.listLayerVersions('*', 'drivers')).map((v) => v.version), [1, 2, 3]);
      assert.equal((await s.listLayers()).length, 2, 'one layer each, however many publishes raced to create it');
    }));

    test('layers: the pinned version is served until unpinned; only existing layers and versions pin', withStore(async (s) => {
      await s.publishLayerVersion(layerVersion('typeA', 'fw', '1'));
      await s.publishLayerVersion(layerVersion('typeA', 'fw', '2'));
      const served = async () => (await s.servedLayers('typeA')).map((x) => x.version.version);
      assert.deepEqual(await served(), [2]);
      const pinned = await s.pinLayer('typeA', 'fw', 1);
      assert.deepEqual([pinned.pinned, pinned.priority], [1, 10]);
      await s.publishLayerVersion(layerVersion('typeA', 'fw', '3'));
      assert.deepEqual(await served(), [1]);
      assert.deepEqual((await s.servedLayers('typeA'))[0], { layer: (await s.getLayer('typeA', 'fw'))!, version: (await s.getLayerVersion('typeA', 'fw', 1))! });
      await rejectsWith(s.pinLayer('typeA', 'fw', 9), 'VERSION_UNKNOWN');
      assert.equal((await s.getLayer('typeA', 'fw'))!.pinned, 1, 'a refused pin keeps the old one');
      await rejectsWith(s.pinLayer('typeB', 'fw', 1), 'LAYER_UNKNOWN');
      await rejectsWith(s.pinLayer('*', 'fw', 1), 'LAYER_UNKNOWN');
      await rejectsWith(s.unpinLayer('typeA', 'ghost'), 'LAYER_UNKNOWN');
      await rejectsWith(s.listLayerVersions('typeA', 'ghost'), 'LAYER_UNKNOWN');
      const unpinned = await s.unpinLayer('typeA', 'fw');
      assert.equal(unpinned.pinned, null);
      assert.deepEqual(await served(), [3]);
      assert.equal((await s.unpinLayer('typeA', 'fw')).pinned, null, 'unpinning twice is harmless');
    }));

    test('layers: a malformed class, name, priority, blob, size or manifest is refused and creates nothing', withStore(async (s) => {
      const ok = layerVersion('typeA', 'fw', 'x');
      const bad: Partial<NewLayerVersion>[] = [
        { class: '' }, { class: 'a b' }, { class: '../x' }, { class: '**' }, { class: 'a/b' }, { class: `c${'x'.repeat(64)}` },
        { name: '*' }, { name: '' }, { name: '-x' }, { name: 'a/b' }, { name: `n${'x'.repeat(64)}` },
        { priority: -1 }, { priority: 1.5 }, { priority: MAX_PRIORITY + 1 }, { priority: Number.NaN }, { priority: '3' as unknown as number },
        { blob: 'ABC' }, { blob: sha('x').toUpperCase() }, { digest: 'nope' }, { size: -1 }, { size: 0.5 },
        { manifest: '' }, { manifest: '{not json' }, { publisher: 'bad id' },
      ];
      for (const b of bad) await rejectsWith(s.publishLayerVersion({ ...ok, ...b }), 'STORE_INVALID');
      assert.deepEqual(await s.listLayers(), [], 'no layer was created by a refused publish');
      assert.equal((await s.publishLayerVersion({ ...ok, class: '*', priority: 0 })).version.version, 1);
      assert.equal((await s.publishLayerVersion({ ...ok, priority: MAX_PRIORITY })).layer.priority, MAX_PRIORITY);
    }));

    test('layers: servedLayers composes by priority, then \'*\' before the class, then name; only \'*\' and the class', withStore(async (s) => {
      for (const [cls, name, priority] of [
        ['typeA', 'base', 10], ['*', 'zeta', 10], ['*', 'late', 100], ['typeB', 'other', 0], ['typeA', 'alpha', 10], ['*', 'base', 10], ['typeA', 'early', 1],
      ] as const) {
        await s.publishLayerVersion(layerVersion(cls, name, `${cls}/${name}`, priority));
      }
      await s.publishLayerVersion(layerVersion('typeA', 'early', 'early 2', 1));
      const refs = async (cls: string | null) => (await s.servedLayers(cls)).map((x) => `${x.layer.class}/${x.layer.name}@${x.version.version}`);
      assert.deepEqual(await refs('typeA'), ['typeA/early@2', '*/base@1', '*/zeta@1', 'typeA/alpha@1', 'typeA/base@1', '*/late@1']);
      assert.deepEqual(await refs('typeB'), ['typeB/other@1', '*/base@1', '*/zeta@1', '*/late@1']);
      assert.deepEqual(await refs(null), ['*/base@1', '*/zeta@1', '*/late@1'], 'a host without a class gets the every-class layers only');
      assert.deepEqual(await refs('typeC'), ['*/base@1', '*/zeta@1', '*/late@1']);
      const [first] = await s.servedLayers('typeA');
      assert.deepEqual(first, { layer: (await s.getLayer('typeA', 'early'))!, version: (await s.latestLayerVersion('typeA', 'early'))! }, 'each with its whole version record');
      await s.publishLayerVersion(layerVersion('*', 'zeta', '*/zeta', 0), { ifChanged: true });
      assert.deepEqual(await refs(null), ['*/zeta@1', '*/base@1', '*/late@1'], 'a priority changed by an unchanged publish reorders');
    }));

    test('layers: releaseBlobs keeps a blob that only a layer version names; check finds nothing wrong', withStore(async (s, fx) => {
      const l = layerVersion('typeA', 'fw', 'kept');
      await s.publishLayerVersion(l);
      await s.publishLayerVersion(layerVersion('*', 'base', 'base'));
      await s.pinLayer('typeA', 'fw', 1);
      await s.publishLayerVersion(layerVersion('typeA', 'fw', 'newer'));
      const loose = sha('loose');
      const removed: string[] = [];
      assert.deepEqual(await s.releaseBlobs([l.blob, loose], async (b) => removed.push(b)), [loose]);
      assert.deepEqual(removed, [loose]);
      assert.deepEqual(await s.check(), []);
      if (fx.reopen) assert.deepEqual(await (await fx.reopen()).check(), []);
    }));

    test('layers: releaseBlobs holds the write lock: a layer version naming the blob waits for the removal', withStore(async (s) => {
      const v = layerVersion('typeA', 'fw', 'racing');
      const order: string[] = [];
      let called!: () => void;
      const removing = new Promise<void>((r) => (called = r));
      let finish!: () => void;
      const finished = new Promise<void>((r) => (finish = r));
      const release = s.releaseBlobs([v.blob], async () => {
        order.push('remove started');
        called();
        await finished;
        order.push('removed');
      });
      await removing;
      const publish = s.publishLayerVersion(v).then((r) => order.push(`published ${r.version.version}`));
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(order, ['remove started'], 'publishLayerVersion did not slip in between');
      finish();
      assert.deepEqual(await release, [v.blob]);
      await publish;
      assert.deepEqual(order, ['remove started', 'removed', 'published 1']);
    }));

    test('layers: a reopened store has its layers, pins and versions, and numbers on', withStore(async (s, fx) => {
      if (!fx.reopen) return;
      await s.publishLayerVersion(layerVersion('typeA', 'fw', '1', 5, 'tok'));
      await s.publishLayerVersion(layerVersion('typeA', 'fw', '2', 5));
      await s.pinLayer('typeA', 'fw', 1);
      await s.publishLayerVersion(layerVersion('*', 'base', 'b'));
      const before = { layers: await s.listLayers(), versions: await s.listLayerVersions('typeA', 'fw'), served: await s.servedLayers('typeA') };
      const r = await fx.reopen();
      assert.deepEqual({ layers: await r.listLayers(), versions: await r.listLayerVersions('typeA', 'fw'), served: await r.servedLayers('typeA') }, before);
      assert.equal((await r.publishLayerVersion(layerVersion('typeA', 'fw', '3', 5))).version.version, 3);
    }));

    test('tokens: create, list, revoke (idempotent), scopes checked', withStore(async (s) => {
      const a = await s.createToken({ id: 'adm', secretHash: 'h1', scope: 'admin', label: 'first' });
      assert.deepEqual(a, {
        id: 'adm', secretHash: 'h1', scope: 'admin', label: 'first', created: a.created, revoked: null,
        expires: null, uses: null, used: 0, lastUsed: null, lastAddress: null,
      });
      await s.createToken({ id: 'pub', secretHash: 'h2', scope: 'publish:web1' });
      await s.createToken({ id: 'cls', secretHash: 'h3', scope: 'fetch-class:typeA' });
      await s.createToken({ id: 'fet', secretHash: 'h4', scope: 'fetch:web1' });
      await rejectsWith(s.createToken({ id: 'adm', secretHash: 'x', scope: 'admin' }), 'STORE_CONFLICT');
      for (const scope of ['root', 'publish:', 'fetch:a b', 'fetch-class:../x', 'publish:web1:x']) {
        await rejectsWith(s.createToken({ id: 'bad', secretHash: 'x', scope: scope as 'admin' }), 'STORE_INVALID');
      }
      await rejectsWith(s.createToken({ id: 'bad id', secretHash: 'x', scope: 'admin' }), 'STORE_INVALID');
      assert.deepEqual((await s.listTokens()).map((t) => [t.id, t.scope]), [['adm', 'admin'], ['pub', 'publish:web1'], ['cls', 'fetch-class:typeA'], ['fet', 'fetch:web1']]);
      const r1 = await s.revokeToken('pub');
      assert.ok(r1.revoked && r1.revoked > r1.created);
      const r2 = await s.revokeToken('pub');
      assert.equal(r2.revoked, r1.revoked, 'revoking again keeps the first time');
      assert.equal((await s.getToken('pub'))!.revoked, r1.revoked);
      assert.equal((await s.getToken('adm'))!.revoked, null);
      assert.equal(await s.getToken('ghost'), null);
      await rejectsWith(s.revokeToken('ghost'), 'TOKEN_UNKNOWN');
    }));

    test('tokens: publish-class names a layer class, or \'*\' for the every-class layers', withStore(async (s) => {
      await s.createToken({ id: 'pcl', secretHash: 'h1', scope: 'publish-class:typeA' });
      await s.createToken({ id: 'pall', secretHash: 'h2', scope: 'publish-class:*' });
      assert.deepEqual((await s.listTokens()).map((t) => [t.id, t.scope]), [['pcl', 'publish-class:typeA'], ['pall', 'publish-class:*']]);
      assert.equal((await s.getToken('pall'))!.scope, 'publish-class:*');
      for (const scope of ['publish-class:', 'publish-class:a b', 'publish-class:**', 'publish-class:../x', 'publish-class:a/b', `publish-class:c${'x'.repeat(64)}`, 'fetch-class:*', 'publish:*']) {
        await rejectsWith(s.createToken({ id: 'bad', secretHash: 'x', scope: scope as 'admin' }), 'STORE_INVALID');
      }
      assert.equal(await s.getToken('bad'), null);
    }));

    test('tokens: expiry and use limit are kept as given; malformed ones are refused', withStore(async (s) => {
      const expires = '2026-02-01T00:00:00.000Z';
      const t = await s.createToken({ id: 'once', secretHash: 'h', scope: 'fetch:web1', expires, uses: 1 });
      assert.deepEqual([t.expires, t.uses, t.used, t.lastUsed, t.lastAddress], [expires, 1, 0, null, null]);
      assert.deepEqual(await s.getToken('once'), t);
      assert.deepEqual((await s.listTokens()).find((x) => x.id === 'once'), t);
      for (const bad of [{ expires: 'tomorrow' }, { expires: '2026-02-01' }, { expires: '2026-02-01T00:00:00Z' }, { uses: 0 }, { uses: -1 }, { uses: 1.5 }, { uses: 1_000_001 }]) {
        await rejectsWith(s.createToken({ id: 'bad', secretHash: 'h', scope: 'fetch:web1', ...bad }), 'STORE_INVALID');
      }
      assert.equal(await s.getToken('bad'), null, 'a refused token is not stored');
    }));

    test('tokens: noteTokenUse records when and from where a token was last used', withStore(async (s) => {
      const t = await s.createToken({ id: 'tok', secretHash: 'h', scope: 'fetch-class:A' });
      await s.noteTokenUse('tok', '10.0.0.5');
      const first = (await s.getToken('tok'))!;
      assert.equal(first.lastAddress, '10.0.0.5');
      assert.ok(first.lastUsed && first.lastUsed > t.created);
      await s.noteTokenUse('tok', null);
      const second = (await s.getToken('tok'))!;
      assert.ok(second.lastUsed! > first.lastUsed!);
      assert.equal(second.lastAddress, null);
      assert.deepEqual([second.used, second.revoked, second.scope], [0, null, 'fetch-class:A'], 'nothing else changes');
      await rejectsWith(s.noteTokenUse('ghost', '10.0.0.5'), 'TOKEN_UNKNOWN');
    }));

    test('tokens: spendTokenUse counts downloads up to the limit; a resume of a spent download is free', withStore(async (s) => {
      await s.createToken({ id: 'two', secretHash: 'h', scope: 'fetch:web1', uses: 2 });
      await s.createToken({ id: 'free', secretHash: 'h', scope: 'fetch:web1' });
      assert.equal((await s.spendTokenUse('two', 'sealing-A 10.0.0.5')).used, 1);
      assert.equal((await s.spendTokenUse('two', 'sealing-A 10.0.0.5', { resume: true })).used, 1, 'a resume of download A costs nothing');
      assert.equal((await s.spendTokenUse('two', 'sealing-A 10.0.0.5')).used, 2, 'the same download started afresh (no resume) is a new use');
      await rejectsWith(s.spendTokenUse('two', 'sealing-B 10.0.0.5'), 'AUTH_USED_UP');
      await rejectsWith(s.spendTokenUse('two', 'sealing-B 10.0.0.5', { resume: true }), 'AUTH_USED_UP');
      assert.equal((await s.spendTokenUse('two', 'sealing-A 10.0.0.5', { resume: true })).used, 2, 'the spent download can still be resumed');
      assert.equal((await s.getToken('two'))!.used, 2);
      for (let i = 0; i < 3; i++) assert.equal((await s.spendTokenUse('free', `sealing-${i}`)).used, 0, 'a token without a limit counts nothing');
      await rejectsWith(s.spendTokenUse('ghost', 'x'), 'TOKEN_UNKNOWN');
      await rejectsWith(s.spendTokenUse('two', ''), 'STORE_INVALID');
    }));

    test('replayed single-use token: of 20 concurrent downloads one gets the use; of a 3-use token three', withStore(async (s) => {
      await s.createToken({ id: 'once', secretHash: 'h', scope: 'fetch:web1', uses: 1 });
      await s.createToken({ id: 'three', secretHash: 'h', scope: 'fetch:web1', uses: 3 });
      for (const [id, uses] of [['once', 1], ['three', 3]] as const) {
        const got = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => s.spendTokenUse(id, `sealing-${i} 10.0.0.${i}`)));
        assert.equal(got.filter((r) => r.status === 'fulfilled').length, uses, `${id}: exactly ${uses} spent`);
        for (const r of got) if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'AUTH_USED_UP');
        assert.equal((await s.getToken(id))!.used, uses);
      }
    }));

    test('pending: one record per machine, found by MAC, assigned to a host', withStore(async (s) => {
      await s.addHost({ id: 'web1' });
      const p1 = await s.recordPending({ macs: [MAC_A, 'bogus'], uuid: UUID_A, serial: 'To be filled by O.E.M.', hostname: 'rescue' }, '10.0.0.5');
      assert.deepEqual(p1.facts, { macs: [MAC_A], uuid: UUID_A, serial: null, hostname: 'rescue' });
      assert.deepEqual([p1.address, p1.assignedHost, p1.assigned, p1.firstSeen === p1.lastSeen], ['10.0.0.5', null, null, true]);
      const again = await s.recordPending({ macs: [MAC_A.toUpperCase()], uuid: UUID_A.toUpperCase(), hostname: 'RESCUE' }, null);
      assert.equal(again.id, p1.id, 'the same facts in other spellings are the same machine');
      assert.equal(again.firstSeen, p1.firstSeen);
      assert.ok(again.lastSeen > p1.lastSeen);
      assert.equal(again.address, '10.0.0.5', 'an unknown address keeps the last known one');
      const p2 = await s.recordPending({ macs: [MAC_B] }, '10.0.0.6');
      assert.notEqual(p2.id, p1.id);
      await rejectsWith(s.recordPending({ macs: ['00:00:00:00:00:00'], serial: 'Default string' }, null), 'STORE_INVALID');
      assert.deepEqual((await s.listPending()).map((p) => p.id), [p2.id, p1.id]);
      assert.deepEqual((await s.listPending({ mac: 'aa-bb-cc-00-00-01' })).map((p) => p.id), [p1.id]);
      assert.deepEqual(await s.listPending({ mac: 'garbage' }), []);
      await rejectsWith(s.assignPending(p1.id, 'ghost'), 'HOST_UNKNOWN');
      await rejectsWith(s.assignPending(9999, 'web1'), 'PENDING_UNKNOWN');
      const done = await s.assignPending(p1.id, 'web1');
      assert.equal(done.assignedHost, 'web1');
      assert.ok(done.assigned);
      assert.deepEqual(await s.getPending(p1.id), done);
      assert.equal(await s.getPending(9999), null);
      assert.deepEqual((await s.listPending({ unassigned: true })).map((p) => p.id), [p2.id]);
      const asking = await s.recordPending({ macs: [MAC_A], uuid: UUID_A, hostname: 'rescue' }, '10.0.0.7');
      assert.deepEqual([asking.id, asking.assignedHost, asking.address], [p1.id, 'web1', '10.0.0.7'], 'the waiting machine sees its assignment');
    }));

    test('pending flood: limits per token, per address and in all; a machine asking again is never refused', withStore(async (s) => {
      await s.addHost({ id: 'web1' });
      const limits = { perToken: 3, perAddress: 2, total: 5, windowMs: 3600_000 };
      const mac = (i: number) => `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`;
      const rec = (i: number, token: string | null, address: string | null) => s.recordPending({ macs: [mac(i)] }, address, { token, limits });
      const first = await rec(1, 'tokA', '10.0.0.1');
      assert.equal(first.token, 'tokA', 'the record names the token that reported it');
      await rec(2, 'tokA', '10.0.0.1');
      await rejectsWith(rec(3, 'tokB', '10.0.0.1'), 'PENDING_LIMIT');
      const byAddress = await pendingLimitOf(rec(3, 'tokB', '10.0.0.1'));
      assert.deepEqual([byAddress.limit, byAddress.max, typeof byAddress.retryAfter], ['address', 2, 'number']);
      await rec(3, 'tokA', '10.0.0.2');
      const byToken = await pendingLimitOf(rec(4, 'tokA', '10.0.0.3'));
      assert.deepEqual([byToken.limit, byToken.max], ['token', 3]);
      await rec(4, 'tokB', '10.0.0.3');
      await rec(5, null, null);
      const total = await pendingLimitOf(rec(6, 'tokC', '10.0.0.4'));
      assert.deepEqual([total.limit, total.max], ['total', 5]);
      assert.equal((await s.listPending()).length, 5, 'refusals store nothing');

      const again = await rec(1, 'tokA', '10.0.0.1');
      assert.equal(again.id, first.id, 'a machine asking again with the same facts reuses its record, over every limit');
      assert.equal((await rec(2, 'tokZ', '10.0.0.9')).token, 'tokA', 'also with another token and address; the first token stays');

      await s.assignPending(first.id, 'web1');
      assert.equal((await rec(6, 'tokC', '10.0.0.4')).token, 'tokC', 'an assigned record no longer counts');
      await rejectsWith(rec(7, 'tokC', '10.0.0.4'), 'PENDING_LIMIT');
      await rejectsWith(s.recordPending({ macs: [mac(9)] }, null, { limits: { ...limits, total: 0 } }), 'STORE_INVALID');
    }));

    test('pending flood: records nobody asked about within the window stop counting', withStore(async (s) => {
      // The contract's clock advances one second per reading: a 5 s window is a few calls long.
      const limits = { perToken: 100, perAddress: 100, total: 2, windowMs: 5000 };
      const mac = (i: number) => `02:00:00:00:02:${i.toString(16).padStart(2, '0')}`;
      await s.recordPending({ macs: [mac(1)] }, '10.0.0.1', { token: 't', limits });
      await s.recordPending({ macs: [mac(2)] }, '10.0.0.1', { token: 't', limits });
      await rejectsWith(s.recordPending({ macs: [mac(3)] }, '10.0.0.1', { token: 't', limits }), 'PENDING_LIMIT');
      for (let i = 0; i < 3; i++) await s.appendAudit({ kind: 'resolve', result: 'ok' });
      await s.recordPending({ macs: [mac(2)] }, '10.0.0.1', { token: 't', limits }); // still asking: stays open
      for (let i = 0; i < 3; i++) await s.appendAudit({ kind: 'resolve', result: 'ok' });
      const third = await s.recordPending({ macs: [mac(3)] }, '10.0.0.1', { token: 't', limits });
      assert.ok(third.id > 0, 'machine 1 went quiet: its place is free');
      await rejectsWith(s.recordPending({ macs: [mac(4)] }, '10.0.0.1', { token: 't', limits }), 'PENDING_LIMIT');
    }));

    test('pending flood: 30 new machines at once never exceed the limit', withStore(async (s) => {
      const limits = { perToken: 10, perAddress: 1000, total: 1000, windowMs: 3600_000 };
      const got = await Promise.allSettled(Array.from({ length: 30 }, (_, i) =>
        s.recordPending({ macs: [`02:00:00:00:03:${i.toString(16).padStart(2, '0')}`] }, `10.0.1.${i}`, { token: 'flood', limits })));
      assert.equal(got.filter((r) => r.status === 'fulfilled').length, 10);
      assert.equal((await s.listPending()).length, 10);
    }));

    test('audit: newest first, filtered by kind, host, token, result, time and id', withStore(async (s) => {
      const ev: AuditEvent[] = [];
      ev.push(await s.appendAudit({ kind: 'publish', token: 'p1', host: 'web1', version: 1, bytes: 100, result: 'ok', address: '10.0.0.1' }));
      ev.push(await s.appendAudit({ kind: 'fetch', token: 'f1', host: 'web1', version: 1, bytes: 100, result: 'ok' }));
      ev.push(await s.appendAudit({ kind: 'fetch', token: 'f2', host: 'web2', result: 'HOST_UNKNOWN', detail: 'no such host' }));
      ev.push(await s.appendAudit({ kind: 'resolve', host: 'ghost', result: 'ok' }));
      ev.push(await s.appendAudit({ kind: 'fetch', token: 'f1', host: 'web1', version: 1, bytes: 100, result: 'ok' }));
      assert.deepEqual(ev[2], {
        id: ev[2]!.id, time: ev[2]!.time, kind: 'fetch', token: 'f2', address: null, host: 'web2', version: null, bytes: null,
        result: 'HOST_UNKNOWN', detail: 'no such host',
      });
      const ids = async (q: Parameters<MetadataStore['queryAudit']>[0]) => (await s.queryAudit(q)).map((e) => ev.findIndex((x) => x.id === e.id));
      assert.deepEqual(await ids({}), [4, 3, 2, 1, 0]);
      assert.deepEqual(await ids({ kind: 'fetch' }), [4, 2, 1]);
      assert.deepEqual(await ids({ host: 'web1' }), [4, 1, 0]);
      assert.deepEqual(await ids({ token: 'f1' }), [4, 1]);
      assert.deepEqual(await ids({ result: 'HOST_UNKNOWN' }), [2]);
      assert.deepEqual(await ids({ kind: 'fetch', host: 'web1', limit: 1 }), [4]);
      assert.deepEqual(await ids({ since: ev[1]!.time, until: ev[3]!.time }), [2, 1]);
      assert.deepEqual(await ids({ beforeId: ev[2]!.id }), [1, 0]);
      assert.deepEqual(await ids({ host: 'nobody' }), []);
      await rejectsWith(s.appendAudit({ kind: 'nonsense' as 'fetch', result: 'ok' }), 'STORE_INVALID');
      await rejectsWith(s.appendAudit({ kind: 'fetch', result: '' }), 'STORE_INVALID');
      await rejectsWith(s.queryAudit({ limit: 0 }), 'STORE_INVALID');
    }));

    test('audit: a batch is stored in order, after what came before; a malformed event refuses the whole batch', withStore(async (s) => {
      await s.appendAudit({ kind: 'publish', host: 'h', result: 'ok' });
      await s.appendAudits([
        { kind: 'fetch', token: 't1', host: 'h', version: 1, bytes: 10, result: 'ok', address: '10.0.0.9' },
        { kind: 'fetch', token: 't2', host: 'h', version: 1, bytes: 20, result: 'ok' },
      ]);
      const got = await s.queryAudit();
      assert.deepEqual(got.map((e) => [e.kind, e.token, e.bytes]), [['fetch', 't2', 20], ['fetch', 't1', 10], ['publish', null, null]]);
      assert.ok(got[0]!.id > got[1]!.id && got[1]!.id > got[2]!.id);
      assert.equal(got[1]!.address, '10.0.0.9');
      await rejectsWith(s.appendAudits([{ kind: 'fetch', result: 'ok' }, { kind: 'fetch', result: '' }]), 'STORE_INVALID');
      assert.equal((await s.queryAudit()).length, 3);
      await s.appendAudits([]);
    }));

    test('audit: the default limit is 100, at most 1000', withStore(async (s) => {
      for (let i = 0; i < 120; i++) await s.appendAudit({ kind: 'fetch', result: 'ok', bytes: i });
      assert.equal((await s.queryAudit()).length, 100);
      assert.equal((await s.queryAudit({ limit: 5000 })).length, 120);
      assert.equal((await s.queryAudit())[0]!.bytes, 119);
    }));

    test('recovery logs: opened for a known host, grown, completed, listed newest first', withStore(async (s) => {
      await s.addHost({ id: 'web1' });
      const l1 = await s.openLog({ host: 'web1', workflow: 'recover', stamp: '2026-01-01_10-00-00', address: '10.0.0.5' });
      assert.deepEqual([l1.bytes, l1.complete, l1.address], [0, false, '10.0.0.5']);
      const l2 = await s.openLog({ host: 'web1', workflow: 'recover', stamp: '2026-01-02_10-00-00' });
      const grown = await s.updateLog(l1.id, 4096, false);
      assert.deepEqual([grown.bytes, grown.complete, grown.updated > l1.updated], [4096, false, true]);
      assert.equal((await s.updateLog(l1.id, 5000, true)).complete, true);
      assert.deepEqual((await s.listLogs('web1')).map((l) => l.id), [l2.id, l1.id]);
      assert.deepEqual(await s.getLog(l1.id).then((l) => [l!.bytes, l!.complete]), [5000, true]);
      assert.equal(await s.getLog(9999), null);
      assert.deepEqual(await s.listLogs('other'), []);
      await rejectsWith(s.openLog({ host: 'ghost', workflow: 'recover', stamp: 'x' }), 'HOST_UNKNOWN');
      await rejectsWith(s.openLog({ host: 'web1', workflow: '../x', stamp: 'x' }), 'STORE_INVALID');
      await rejectsWith(s.updateLog(9999, 1, false), 'LOG_UNKNOWN');
    }));

    test('recoveries: opened in phase resolving with a first event booted; facts canonical as a pending machine\'s, hardware checked', withStore(async (s) => {
      const r = await s.openRecovery({
        token: 'tokR', address: '10.0.0.5',
        facts: { macs: [MAC_A.toUpperCase(), 'bogus'], uuid: UUID_A.toUpperCase(), serial: 'To be filled by O.E.M.', hostname: 'Rescue' },
        hardware: { disks: [{ name: ' sda ', size: 1000, model: 'QEMU HARDDISK', extra: 'dropped' }], nics: [{ name: 'eth0', mac: 'AA-BB-CC-00-00-01' }], memory: 4096, cpus: 2 } as unknown as Hardware,
      });
      assert.deepEqual(r, {
        id: r.id, token: 'tokR', address: '10.0.0.5', host: null, pending: null, log: null,
        facts: { macs: [MAC_A], uuid: UUID_A, serial: null, hostname: 'rescue' },
        hardware: { disks: [{ name: 'sda', size: 1000, model: 'QEMU HARDDISK' }], nics: [{ name: 'eth0', mac: MAC_A, driver: null }], memory: 4096, cpus: 2, cpuModel: null },
        phase: 'resolving', started: r.started, updated: r.started, lastSign: r.started, ended: null, exitStatus: null, error: null,
      });
      assert.ok(Number.isSafeInteger(r.id) && r.id > 0);
      assert.deepEqual(await s.getRecovery(r.id), r);
      assert.deepEqual(await s.listRecoveryEvents(r.id), [{ recovery: r.id, seq: 1, time: r.started, kind: 'booted', actor: 'tokR', message: '', detail: { address: '10.0.0.5' } }]);
      const bare = await s.openRecovery({ host: 'web1' });
      assert.notEqual(bare.id, r.id);
      assert.deepEqual([bare.token, bare.address, bare.host, bare.facts, bare.hardware, bare.phase], [null, null, 'web1', null, null, 'resolving']);
      assert.deepEqual((await s.listRecoveryEvents(bare.id)).map((e) => [e.seq, e.kind, e.actor, e.detail]), [[1, 'booted', null, {}]]);
      assert.equal(await s.getRecovery(9999), null);
    }));

    test('recoveries: each event moves the phase (core/recovery.ts), keeps the newest links, sets ended; a new attempt reopens it', withStore(async (s) => {
      const r = await s.openRecovery({ token: 'tokR' });
      const steps: [NewRecoveryEvent, string][] = [
        [{ kind: 'resolving', actor: 'tokR', message: 'asking who I am' }, 'resolving'],
        [{ kind: 'pending', pending: 7 }, 'pending'],
        [{ kind: 'assigned', actor: 'adm', host: 'web1', detail: { host: 'web1' } }, 'assigned'],
        [{ kind: 'resolved', host: 'web1', detail: { by: 'assignment' } }, 'fetching'],
        [{ kind: 'fetched', detail: { version: 3, bytes: 4096, etag: '"x"' } }, 'fetching'],
        [{ kind: 'verified' }, 'fetching'],
        [{ kind: 'applied', detail: { written: 10, removed: 0, layers: ['typeA/fw'] } }, 'applied'],
        [{ kind: 'activation', detail: { step: 'grub', ok: true } }, 'applied'],
        [{ kind: 'recover-started' }, 'recovering'],
        [{ kind: 'log', log: 3, host: null, pending: null }, 'recovering'],
      ];
      let seq = 1;
      for (const [e, phase] of steps) {
        const { recovery, event } = await s.appendRecoveryEvent(r.id, e);
        seq++;
        assert.deepEqual(event, {
          recovery: r.id, seq, time: event.time, kind: e.kind, actor: e.actor ?? null, message: e.message ?? '', detail: e.detail ?? {},
        });
        assert.deepEqual([recovery.phase, recovery.updated, recovery.lastSign, recovery.ended], [phase, event.time, event.time, null], `after ${e.kind}`);
        assert.deepEqual(await s.getRecovery(r.id), recovery, 'what is returned is what is stored');
      }
      const before = (await s.getRecovery(r.id))!;
      assert.deepEqual([before.host, before.pending, before.log, before.started], ['web1', 7, 3, r.started], 'a null link leaves the one there');

      const failed = await s.appendRecoveryEvent(r.id, { kind: 'finished', exitStatus: 1 });
      assert.deepEqual([failed.recovery.phase, failed.recovery.exitStatus, failed.recovery.ended], ['failed', 1, failed.event.time]);
      const noted = await s.appendRecoveryEvent(r.id, { kind: 'note', message: 'operator looks at it' });
      assert.deepEqual([noted.recovery.phase, noted.recovery.ended, noted.recovery.updated], ['failed', failed.event.time, noted.event.time], 'an ended recovery takes events and stays ended');
      const again = await s.appendRecoveryEvent(r.id, { kind: 'recover-started' });
      assert.deepEqual([again.recovery.phase, again.recovery.ended, again.recovery.exitStatus], ['recovering', null, 1], 'rear recover run again reopens it');
      const done = await s.appendRecoveryEvent(r.id, { kind: 'finished', exitStatus: 0 });
      assert.deepEqual([done.recovery.phase, done.recovery.exitStatus, done.recovery.ended], ['done', 0, done.event.time]);
      const gaveUp = await s.appendRecoveryEvent(r.id, { kind: 'failed', error: 'APPLY_FAILED', message: 'disk full', detail: { code: 'APPLY_FAILED' } });
      assert.deepEqual([gaveUp.recovery.phase, gaveUp.recovery.error, gaveUp.recovery.ended], ['failed', 'APPLY_FAILED', gaveUp.event.time]);

      const events = await s.listRecoveryEvents(r.id);
      assert.deepEqual(events.map((e) => e.seq), Array.from({ length: 16 }, (_, i) => i + 1));
      assert.deepEqual(events.map((e) => e.kind).slice(0, 3), ['booted', 'resolving', 'pending']);
      assert.deepEqual(events[5]!.detail, { version: 3, bytes: 4096, etag: '"x"' });
      assert.deepEqual((await s.listRecoveryEvents(r.id, { afterSeq: 14 })).map((e) => e.kind), ['finished', 'failed']);
      assert.deepEqual(await s.listRecoveryEvents(r.id, { afterSeq: 16 }), []);
    }));

    test('recoveries: 20 concurrent events get distinct consecutive seqs, each holding its own event', withStore(async (s) => {
      const a = await s.openRecovery({});
      const b = await s.openRecovery({});
      const results = await Promise.all([
        ...Array.from({ length: 20 }, (_, i) => s.appendRecoveryEvent(a.id, { kind: 'note', message: `a${i}` })),
        ...Array.from({ length: 5 }, (_, i) => s.appendRecoveryEvent(b.id, { kind: 'note', message: `b${i}` })),
      ]);
      assert.deepEqual(results.slice(0, 20).map((r) => r.event.seq).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i + 2));
      const stored = new Map((await s.listRecoveryEvents(a.id)).map((e) => [e.seq, e.message]));
      for (const r of results.slice(0, 20)) assert.equal(stored.get(r.event.seq), r.event.message);
      assert.deepEqual((await s.listRecoveryEvents(b.id)).map((e) => e.seq), [1, 2, 3, 4, 5, 6]);
    }));

    test('recoveries: listed newest first; filtered by active, host and pending machine; paged by beforeId and limit', withStore(async (s) => {
      const r1 = await s.openRecovery({ host: 'a' });
      await s.appendRecoveryEvent(r1.id, { kind: 'finished', exitStatus: 0 });
      const r2 = await s.openRecovery({});
      await s.appendRecoveryEvent(r2.id, { kind: 'pending', pending: 7 });
      const r3 = await s.openRecovery({ host: 'b' });
      const r4 = await s.openRecovery({});
      await s.appendRecoveryEvent(r4.id, { kind: 'resolved', host: 'a' });
      const r5 = await s.openRecovery({});
      await s.appendRecoveryEvent(r5.id, { kind: 'failed', error: 'X' });
      const ids = async (q?: RecoveryQuery) => (await s.listRecoveries(q)).map((r) => [r1, r2, r3, r4, r5].findIndex((x) => x.id === r.id) + 1);
      assert.deepEqual(await ids(), [5, 4, 3, 2, 1]);
      assert.deepEqual(await ids({ active: true }), [4, 3, 2]);
      assert.deepEqual(await ids({ active: false }), [5, 4, 3, 2, 1], 'active: false is no filter');
      assert.deepEqual(await ids({ host: 'a' }), [4, 1]);
      assert.deepEqual(await ids({ host: 'a', active: true }), [4]);
      assert.deepEqual(await ids({ pending: 7 }), [2]);
      assert.deepEqual(await ids({ pending: 8 }), []);
      assert.deepEqual(await ids({ beforeId: r4.id }), [3, 2, 1]);
      assert.deepEqual(await ids({ limit: 2 }), [5, 4]);
      assert.deepEqual(await ids({ limit: 2, beforeId: r4.id }), [3, 2]);
      await s.appendRecoveryEvent(r1.id, { kind: 'recover-started' });
      assert.deepEqual(await ids({ active: true }), [4, 3, 2, 1], 'a reopened recovery is active again');
      await rejectsWith(s.listRecoveries({ limit: 0 }), 'STORE_INVALID');
      await rejectsWith(s.listRecoveries({ beforeId: -1 }), 'STORE_INVALID');
    }));

    test('recoveries: the default limit is 100, at most 1000', withStore(async (s) => {
      for (let i = 0; i < 120; i++) await s.openRecovery({});
      const page = await s.listRecoveries();
      assert.equal(page.length, 100);
      assert.ok(page[0]!.id > page[99]!.id);
      assert.equal((await s.listRecoveries({ limit: 5000 })).length, 120);
      assert.equal((await s.listRecoveries({ beforeId: page[99]!.id })).length, 20);
    }));

    test('recoveries: malformed input is STORE_INVALID and stores nothing', withStore(async (s) => {
      const disk = { name: 'sda', size: 1, model: null };
      const badOpens: NewRecovery[] = [
        { hardware: { disks: [{ ...disk, model: 'evil\u001b[31m' }], nics: [], memory: null, cpus: null, cpuModel: null } },
        { hardware: { disks: [], nics: [{ name: 'eth0', mac: 'not-a-mac', driver: null }], memory: null, cpus: null, cpuModel: null } },
        { hardware: { disks: Array.from({ length: 65 }, () => disk), nics: [], memory: null, cpus: null, cpuModel: null } },
        { hardware: 'lots' as unknown as Hardware },
        { token: 'bad id' },
        { host: '../etc' },
        { address: '10.0.0.1\nInjected: yes' },
      ];
      for (const o of badOpens) await rejectsWith(s.openRecovery(o), 'STORE_INVALID');
      assert.deepEqual(await s.listRecoveries(), [], 'refused opens leave nothing behind');

      const r = await s.openRecovery({ token: 'tokR' });
      const badEvents: NewRecoveryEvent[] = [
        { kind: 'bogus' as RecoveryEventKind },
        { kind: 'note', message: 'x'.repeat(2001) },
        { kind: 'note', message: 'two\nlines' },
        { kind: 'note', detail: ['a'] as unknown as Record<string, unknown> },
        { kind: 'note', detail: 'text' as unknown as Record<string, unknown> },
        { kind: 'note', detail: { blob: 'x'.repeat(17 * 1024) } },
        { kind: 'note', detail: { n: 1n } },
        { kind: 'finished', exitStatus: -1 },
        { kind: 'finished', exitStatus: 1.5 },
        { kind: 'pending', pending: 0 },
        { kind: 'log', log: 2.5 },
        { kind: 'resolved', host: 'bad id' },
        { kind: 'assigned', actor: 'bad id' },
        { kind: 'failed', error: '' },
      ];
      for (const e of badEvents) await rejectsWith(s.appendRecoveryEvent(r.id, e), 'STORE_INVALID');
      assert.deepEqual(await s.getRecovery(r.id), r, 'refused events change nothing');
      assert.deepEqual((await s.listRecoveryEvents(r.id)).map((e) => e.kind), ['booted']);
      const longest = await s.appendRecoveryEvent(r.id, { kind: 'note', message: 'x'.repeat(2000), detail: { nested: { list: [1, 'two', null, true] } } });
      assert.deepEqual([longest.event.seq, longest.event.message.length, longest.event.detail], [2, 2000, { nested: { list: [1, 'two', null, true] } }]);
    }));

    test('recoveries: unknown ids are RECOVERY_UNKNOWN', withStore(async (s) => {
      await rejectsWith(s.appendRecoveryEvent(9999, { kind: 'note' }), 'RECOVERY_UNKNOWN');
      await rejectsWith(s.listRecoveryEvents(9999), 'RECOVERY_UNKNOWN');
      await rejectsWith(s.noteRecoverySign(9999), 'RECOVERY_UNKNOWN');
    }));

    test('recoveries: noteRecoverySign moves lastSign and nothing else', withStore(async (s) => {
      const r = await s.openRecovery({ address: '10.0.0.5' });
      await s.appendRecoveryEvent(r.id, { kind: 'recover-started' });
      const before = (await s.getRecovery(r.id))!;
      await s.noteRecoverySign(r.id);
      const after = (await s.getRecovery(r.id))!;
      assert.ok(after.lastSign > before.lastSign);
      assert.deepEqual({ ...after, lastSign: before.lastSign }, before);
      assert.equal((await s.listRecoveryEvents(r.id)).length, 2, 'a sign of life is no event');
    }));

    test('pending: forgetPending deletes the record; the machine asking again is a new record', withStore(async (s) => {
      await s.addHost({ id: 'web1' });
      const p1 = await s.recordPending({ macs: [MAC_A] }, '10.0.0.5');
      const p2 = await s.recordPending({ macs: [MAC_B] }, '10.0.0.6');
      const assigned = await s.assignPending(p1.id, 'web1');
      const r = await s.openRecovery({});
      await s.appendRecoveryEvent(r.id, { kind: 'pending', pending: p1.id });
      assert.deepEqual(await s.forgetPending(p1.id), assigned, 'returns the record as it was');
      assert.equal(await s.getPending(p1.id), null);
      assert.deepEqual((await s.listPending()).map((p) => p.id), [p2.id]);
      assert.deepEqual(await s.listPending({ mac: MAC_A }), []);
      await rejectsWith(s.forgetPending(p1.id), 'PENDING_UNKNOWN');
      await rejectsWith(s.forgetPending(9999), 'PENDING_UNKNOWN');
      const anew = await s.recordPending({ macs: [MAC_A] }, '10.0.0.7');
      assert.ok(anew.id > p2.id, 'a new id, never the forgotten one');
      assert.deepEqual([anew.assignedHost, anew.address, anew.firstSeen > p1.firstSeen], [null, '10.0.0.7', true]);
      assert.deepEqual((await s.listPending({ mac: MAC_A })).map((p) => p.id), [anew.id]);
      assert.deepEqual((await s.listRecoveries({ pending: p1.id })).map((x) => x.id), [r.id], 'the recovery keeps the forgotten id as history');
    }));

    test('host layouts: one per host, replaced, listed by host; unknown hosts and malformed disks refused', withStore(async (s) => {
      await s.addHost({ id: 'web2' });
      await s.addHost({ id: 'web1' });
      assert.deepEqual(await s.listHostLayouts(), []);
      await s.setHostLayout({ host: 'web2', version: 1, disks: [{ device: '/dev/sda', size: 100 }] });
      await s.setHostLayout({ host: 'web1', version: 2, disks: [] });
      await s.setHostLayout({ host: 'web2', version: 3, disks: [{ device: '/dev/nvme0n1', size: 2 ** 40 }, { device: '/dev/sdb', size: 0 }] });
      const want = [
        { host: 'web1', version: 2, disks: [] },
        { host: 'web2', version: 3, disks: [{ device: '/dev/nvme0n1', size: 2 ** 40 }, { device: '/dev/sdb', size: 0 }] },
      ];
      assert.deepEqual(await s.listHostLayouts(), want);
      await rejectsWith(s.setHostLayout({ host: 'ghost', version: 1, disks: [] }), 'HOST_UNKNOWN');
      for (const disks of [[{ device: '/dev/sda', size: -1 }], [{ device: '/dev/sda', size: 1.5 }], [{ device: '', size: 1 }], [{ device: '/dev/sda\n', size: 1 }], [{ device: 'x'.repeat(257), size: 1 }]]) {
        await rejectsWith(s.setHostLayout({ host: 'web1', version: 4, disks }), 'STORE_INVALID');
      }
      await rejectsWith(s.setHostLayout({ host: 'web1', version: 0, disks: [] }), 'STORE_INVALID');
      assert.deepEqual(await s.listHostLayouts(), want, 'refused layouts change nothing');
    }));

    test('sessions: created for a known token (view and operate scopes too), read, touched, deleted', withStore(async (s) => {
      await s.createToken({ id: 'viewer', secretHash: 'h', scope: 'view' });
      await s.createToken({ id: 'op', secretHash: 'h', scope: 'operate' });
      const far = '2030-01-01T00:00:00.000Z';
      const made = await s.createSession({ id: sha('secret 1'), token: 'viewer', csrf: 'csrf-1', expires: far, address: '10.0.0.1' });
      assert.deepEqual(made, { id: sha('secret 1'), token: 'viewer', csrf: 'csrf-1', expires: far, address: '10.0.0.1', created: made.created, lastSeen: made.created });
      assert.deepEqual(await s.getSession(sha('secret 1')), made);
      assert.equal(await s.getSession(sha('nobody')), null);
      assert.equal(await s.touchSession(sha('secret 1')), true);
      const touched = (await s.getSession(sha('secret 1')))!;
      assert.ok(touched.lastSeen > made.lastSeen);
      assert.deepEqual({ ...touched, lastSeen: made.lastSeen }, made, 'touching moves lastSeen only');
      assert.equal(await s.touchSession(sha('nobody')), false);
      const other = await s.createSession({ id: sha('secret 2'), token: 'op', csrf: 'csrf-2', expires: far, address: null });
      assert.equal(other.token, 'op');

      await rejectsWith(s.createSession({ id: sha('secret 1'), token: 'op', csrf: 'c', expires: far, address: null }), 'STORE_CONFLICT');
      await rejectsWith(s.createSession({ id: sha('secret 3'), token: 'ghost', csrf: 'c', expires: far, address: null }), 'TOKEN_UNKNOWN');
      await rejectsWith(s.createSession({ id: 'not-a-hash', token: 'op', csrf: 'c', expires: far, address: null }), 'STORE_INVALID');
      await rejectsWith(s.createSession({ id: sha('secret 3'), token: 'op', csrf: '', expires: far, address: null }), 'STORE_INVALID');
      await rejectsWith(s.createSession({ id: sha('secret 3'), token: 'op', csrf: 'c', expires: 'tomorrow', address: null }), 'STORE_INVALID');
      assert.equal(await s.getSession(sha('secret 3')), null, 'refused sessions leave nothing behind');
      assert.deepEqual((await s.getSession(sha('secret 1')))!.token, 'viewer', 'a conflict changes nothing');

      assert.equal(await s.deleteSession(sha('secret 1')), true);
      assert.equal(await s.deleteSession(sha('secret 1')), false);
      assert.equal(await s.getSession(sha('secret 1')), null);
      assert.ok(await s.getSession(sha('secret 2')));
    }));

    test('sessions: deleteStaleSessions deletes the idle ones and those past their absolute expiry, and keeps the rest', withStore(async (s) => {
      await s.createToken({ id: 't', secretHash: 'h', scope: 'admin' });
      const far = '2030-01-01T00:00:00.000Z';
      const session = (name: string, expires = far) => s.createSession({ id: sha(name), token: 't', csrf: 'c', expires, address: null });
      await session('idle');
      // Its absolute expiry lies before the clock's start: gone however busy it is.
      await session('expired', '2025-12-31T23:59:59.000Z');
      const busy = await session('busy');
      await s.touchSession(sha('busy'));
      await s.touchSession(sha('expired'));
      assert.equal(await s.deleteStaleSessions(busy.created), 2);
      assert.deepEqual([await s.getSession(sha('idle')), await s.getSession(sha('expired'))], [null, null]);
      assert.ok(await s.getSession(sha('busy')), 'seen since idleBefore and not expired: kept');
      assert.equal(await s.deleteStaleSessions(busy.created), 0);
      await rejectsWith(s.deleteStaleSessions('an hour ago'), 'STORE_INVALID');
    }));

    test('persistence: recoveries, their events, host layouts and sessions survive a reopen and number on', withStore(async (s, fx) => {
      if (!fx.reopen) return; // in-memory backends keep nothing by design
      await s.addHost({ id: 'h' });
      await s.createToken({ id: 't', secretHash: 'h', scope: 'operate' });
      const r = await s.openRecovery({ token: 't', address: '10.0.0.1', facts: { macs: [MAC_A], uuid: null, serial: null, hostname: null }, hardware: { disks: [{ name: 'sda', size: 5, model: null }], nics: [], memory: 1, cpus: 1, cpuModel: 'x' } });
      await s.appendRecoveryEvent(r.id, { kind: 'resolved', host: 'h', detail: { by: 'mac' } });
      await s.appendRecoveryEvent(r.id, { kind: 'finished', exitStatus: 0 });
      await s.noteRecoverySign(r.id);
      await s.setHostLayout({ host: 'h', version: 1, disks: [{ device: '/dev/sda', size: 5 }] });
      await s.createSession({ id: sha('s'), token: 't', csrf: 'c', expires: '2030-01-01T00:00:00.000Z', address: '10.0.0.2' });
      const p = await s.recordPending({ macs: [MAC_B] }, null);
      await s.forgetPending(p.id);
      const before = {
        recovery: await s.getRecovery(r.id), events: await s.listRecoveryEvents(r.id), layouts: await s.listHostLayouts(), session: await s.getSession(sha('s')),
      };
      const re = await fx.reopen();
      assert.deepEqual({
        recovery: await re.getRecovery(r.id), events: await re.listRecoveryEvents(r.id), layouts: await re.listHostLayouts(), session: await re.getSession(sha('s')),
      }, before);
      assert.equal((await re.appendRecoveryEvent(r.id, { kind: 'note' })).event.seq, 4);
      assert.ok((await re.openRecovery({})).id > r.id);
      assert.ok((await re.recordPending({ macs: [MAC_B] }, null)).id > p.id, 'a forgotten id is not given again after a reopen either');
    }));

    test('persistence: a reopened store has everything and numbers on', withStore(async (s, fx) => {
      if (!fx.reopen) return; // in-memory backends keep nothing by design
      await s.addHost({ id: 'h', macs: [MAC_A], hostnames: ['h'], uuid: UUID_A, serial: 'S', class: 'k' });
      await s.publishVersion(version('h', '1'));
      await s.pin('h', 1);
      await s.createToken({ id: 't', secretHash: 'x', scope: 'fetch:h' });
      await s.revokeToken('t');
      await s.createToken({ id: 'once', secretHash: 'y', scope: 'fetch:h', uses: 1, expires: '2027-01-01T00:00:00.000Z' });
      await s.spendTokenUse('once', 'sealing 10.0.0.1');
      await s.noteTokenUse('once', '10.0.0.1');
      const p = await s.recordPending({ macs: [MAC_B] }, null);
      await s.assignPending(p.id, 'h');
      await s.appendAudit({ kind: 'publish', host: 'h', version: 1, result: 'ok' });
      const log = await s.openLog({ host: 'h', workflow: 'recover', stamp: 's' });
      const before = {
        host: await s.getHost('h'), versions: await s.listVersions('h'), tokens: await s.listTokens(),
        pending: await s.listPending(), audit: await s.queryAudit(), log: await s.getLog(log.id),
      };
      const r = await fx.reopen();
      assert.deepEqual({
        host: await r.getHost('h'), versions: await r.listVersions('h'), tokens: await r.listTokens(),
        pending: await r.listPending(), audit: await r.queryAudit(), log: await r.getLog(log.id),
      }, before);
      assert.equal((await r.publishVersion(version('h', '2'))).version.version, 2);
      assert.equal((await r.recordPending({ macs: [MAC_B] }, null)).id, p.id);
      assert.equal((await r.spendTokenUse('once', 'sealing 10.0.0.1', { resume: true })).used, 1, 'the spent download is remembered');
      await rejectsWith(r.spendTokenUse('once', 'other 10.0.0.1'), 'AUTH_USED_UP');
    }));

    test('check: a store used through its interface has no problems', withStore(async (s, fx) => {
      assert.deepEqual(await s.check(), []);
      await s.addHost({ id: 'h1', macs: [MAC_A] });
      await s.addHost({ id: 'h2' });
      for (const c of ['a', 'b', 'c']) await s.publishVersion(version('h1', c));
      await s.publishVersion(version('h2', 'a'));
      await s.pin('h1', 2);
      await s.appendAudit({ kind: 'publish', host: 'h1', result: 'ok' });
      await s.recordPending({ macs: [MAC_B] }, '10.0.0.9');
      const log = await s.openLog({ host: 'h2', workflow: 'recover', stamp: 's' });
      await s.updateLog(log.id, 10, false);
      // Recoveries, layouts, sessions and a forgotten pending machine are no problem either.
      const forgotten = await s.recordPending({ macs: ['02:00:00:00:00:01'] }, null);
      await s.forgetPending(forgotten.id);
      const r = await s.openRecovery({ token: 'tok', facts: { macs: [MAC_B], uuid: null, serial: null, hostname: null } });
      await s.appendRecoveryEvent(r.id, { kind: 'pending', pending: forgotten.id });
      await s.appendRecoveryEvent(r.id, { kind: 'log', log: log.id, host: 'h2' });
      await s.openRecovery({});
      await s.setHostLayout({ host: 'h1', version: 3, disks: [{ device: '/dev/sda', size: 1 }] });
      await s.createToken({ id: 'tok', secretHash: 'h', scope: 'view' });
      await s.createSession({ id: sha('session'), token: 'tok', csrf: 'c', expires: '2030-01-01T00:00:00.000Z', address: null });
      assert.deepEqual(await s.check(), []);
      if (fx.reopen) assert.deepEqual(await (await fx.reopen()).check(), []);
    }));

    test('releaseBlobs removes exactly the named blobs that no version names, and says which', withStore(async (s) => {
      await s.addHost({ id: 'h' });
      const kept = version('h', 'kept');
      await s.publishVersion(kept);
      const loose = [sha('loose 1'), sha('loose 2')];
      const removed: string[] = [];
      const got = await s.releaseBlobs([kept.blob, ...loose], async (b) => removed.push(b));
      assert.deepEqual(got, loose);
      assert.deepEqual(removed, loose);
      assert.deepEqual(await s.releaseBlobs([], async () => assert.fail('nothing to remove')), []);
    }));

    test('releaseBlobs holds the write lock across the removal: a version naming the blob waits for it', withStore(async (s) => {
      await s.addHost({ id: 'h' });
      const v = version('h', 'racing');
      const order: string[] = [];
      let called!: () => void;
      const removing = new Promise<void>((r) => (called = r));
      let finish!: () => void;
      const finished = new Promise<void>((r) => (finish = r));
      const release = s.releaseBlobs([v.blob], async () => {
        order.push('remove started');
        called();
        await finished;
        order.push('removed');
      });
      await removing;
      const publish = s.publishVersion(v).then((r) => order.push(`published ${r.version.version}`));
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(order, ['remove started'], 'publishVersion did not slip in between');
      finish();
      assert.deepEqual(await release, [v.blob]);
      await publish;
      assert.deepEqual(order, ['remove started', 'removed', 'published 1']);
    }));
  });
}
