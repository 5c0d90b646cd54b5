// Hardware-class layers on a real server on loopback: publishing layers (with the admin and
// publish-class tokens), composition into ONE signed bundle per host (priority order, the
// host on top, later layers winning), the same tree from `rear-update apply` and GNU tar,
// refusals at publish (same-priority conflict, a directory against a file, owning a host's
// etc/rear), pin and new versions reaching the next fetch, the ReaR and DRLM routes, and the
// store growing by one layer however many hosts share it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, cli, cliAsync, errorCode, httpRequest, makeTree, snapshot, tempDir, type HttpAnswer, type HttpOptions, type TreeSpec } from '../helpers.ts';

const work = tempDir('ru-layers-srv-');
let srv: Running;
let admin: string;

const req = (method: string, path: string, opts: HttpOptions = {}): Promise<HttpAnswer> =>
  httpRequest(srv.url, method, path, { ...opts, token: opts.token === undefined ? admin : opts.token });

async function newToken(scope: string): Promise<string> {
  const r = await req('POST', '/api/v1/tokens', { body: { scope } });
  assert.equal(r.status, 201, r.body.toString());
  return r.json.token as string;
}

let n = 0;
/** Packs a layer file from a tree; `paths` are the packed paths. */
function layerFile(name: string, cls: string, priority: number, spec: TreeSpec, paths: string[], extra: string[] = []): Buffer {
  const root = join(work, `layer-${++n}`);
  makeTree(root, spec);
  const file = join(work, `layer-${n}.tar.gz`);
  const p = cli(['pack', '--root', root, ...paths.flatMap((x) => ['--path', x]), '--layer', name, '--class', cls, '--priority', String(priority), ...extra, '-o', file]);
  assert.equal(p.status, 0, p.stderr);
  return readFileSync(file);
}

function hostFile(host: string, spec: TreeSpec): Buffer {
  const root = join(work, `host-${++n}`);
  makeTree(root, spec);
  const file = join(work, `host-${n}.tar.gz`);
  const p = cli(['pack', '--root', root, '--host', host, '-o', file]);
  assert.equal(p.status, 0, p.stderr);
  return readFileSync(file);
}

const publishLayer = (cls: string, name: string, body: Buffer, priority: number, token = admin): Promise<HttpAnswer> =>
  req('POST', `/api/v1/layers/${encodeURIComponent(cls)}/${name}/versions?priority=${priority}`, { body, token });

/** Applies a served bundle into a fresh root with the server's key; returns the root. */
function applyServed(bundle: Buffer, label: string): { root: string; status: number | null; stderr: string } {
  const dir = join(work, `apply-${label}-${++n}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'b.tar.gz'), bundle);
  const root = join(dir, 'root');
  mkdirSync(root);
  mkdirSync(join(dir, 'keys-none'));
  const r = cli(['apply', '--quiet', '--root', root, '--pubkey', join(work, 'data/signing/rear-update.pub'), '--keys-dir', join(dir, 'keys-none'), '--kernel', '6.1.0-57-amd64', join(dir, 'b.tar.gz')]);
  return { root, status: r.status, stderr: r.stderr };
}

const UDEV_OLD = 'ACTION=="add", SUBSYSTEM=="net", RUN+="/bin/true old"\n';
const UDEV_NEW = 'ACTION=="add", SUBSYSTEM=="net", RUN+="/bin/true new"\n';

describe('hardware-class layers on the server', () => {
  before(async () => {
    srv = await startServer(loadConfig({ data: join(work, 'data'), listen: '127.0.0.1:0' }, {}), { log: false });
    admin = readFileSync(join(work, 'data', 'admin.token'), 'utf8').trim();
  });
  after(async () => {
    await srv?.close();
    cleanup(work);
  });

  test('a host is served one signed bundle: its class\'s layers in priority order, \'*\' layers, then its own configuration on top', async () => {
    const classToken = await newToken('publish-class:typeC');
    // Priority 10: firmware and a udev rule; priority 20 replaces the rule (a later layer wins).
    // (Real modules, depmod and modprobe: layers-apply.test.ts and the rescue image suite.)
    const driver = layerFile('nic', 'typeC', 10, {
      usr: { lib: { firmware: { vendor: { 'nic.fw': 'not really firmware\n' } } } },
      etc: { udev: { 'rules.d': { '70-nic.rules': UDEV_OLD } } },
    }, ['usr/lib/firmware/vendor', 'etc/udev/rules.d']);
    const fix = layerFile('nic-fix', 'typeC', 20, { etc: { udev: { 'rules.d': { '70-nic.rules': UDEV_NEW } } } }, ['etc/udev/rules.d']);
    const everyone = layerFile('tools', '*', 5, { usr: { local: { bin: { 'probe-disks': { mode: 0o755, content: '#!/bin/sh\necho probe\n' } } } } }, ['usr/local/bin']);
    assert.equal((await publishLayer('typeC', 'nic', driver, 10, classToken)).status, 201);
    assert.equal((await publishLayer('typeC', 'nic-fix', fix, 20, classToken)).status, 201);
    assert.equal((await publishLayer('*', 'tools', everyone, 5)).status, 201, 'an admin token publishes \'*\' layers');

    assert.equal((await req('POST', '/api/v1/hosts', { body: { id: 'e230', class: 'typeC' } })).status, 201);
    assert.equal((await req('POST', '/api/v1/hosts/e230/versions', { body: hostFile('e230', { etc: { rear: { 'local.conf': 'OUTPUT=ISO\n' } } }) })).status, 201);

    const got = await req('GET', '/api/v1/hosts/e230/bundle');
    assert.equal(got.status, 200);
    const inspect = join(work, 'served-e230.tar.gz');
    writeFileSync(inspect, got.body);
    const m = JSON.parse(cli(['inspect', '--json', '--kernel', '6.1.0-57-amd64', inspect]).stdout) as { format: string; layers: { name: string; class: string | null; version: number }[]; list: { path: string; layer: number }[]; shadowed: { path: string; layer: number }[] };
    assert.equal(m.format, 'rear-update bundle v2');
    assert.deepEqual(m.layers.map((l) => [l.class, l.name, l.version]), [['*', 'tools', 1], ['typeC', 'nic', 1], ['typeC', 'nic-fix', 1], [null, 'e230', 1]]);
    const from = (p: string): string | undefined => m.layers[m.list.find((e) => e.path === p)?.layer ?? -1]?.name;
    assert.equal(from('etc/udev/rules.d/70-nic.rules'), 'nic-fix', 'the later layer wins');
    assert.equal(from('etc/rear/local.conf'), 'e230');
    assert.equal(from('usr/local/bin/probe-disks'), 'tools');
    // Both rule layers carry the directory and the rule: the later one's are installed.
    assert.deepEqual(m.shadowed.map((e) => [e.path, m.layers[e.layer]?.name]), [['etc/udev/rules.d', 'nic'], ['etc/udev/rules.d/70-nic.rules', 'nic']]);

    // rear-update apply (verified against the server key) and GNU tar give the same tree.
    const a = applyServed(got.body, 'e230');
    assert.equal(a.status, 0, a.stderr);
    assert.equal(readFileSync(join(a.root, 'etc/udev/rules.d/70-nic.rules'), 'utf8'), UDEV_NEW);
    assert.equal(readFileSync(join(a.root, 'usr/lib/firmware/vendor/nic.fw'), 'utf8'), 'not really firmware\n');
    assert.equal(readFileSync(join(a.root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\n');
    const tarRoot = join(work, 'tar-e230');
    mkdirSync(tarRoot);
    const t = spawnSync('tar', ['-xzf', inspect, '-C', tarRoot]);
    assert.equal(t.status, 0, t.stderr.toString());
    const mine = snapshot(a.root);
    const theirs = snapshot(tarRoot);
    for (const s of [mine, theirs]) for (const k of Object.keys(s)) if (k === '.' || k === 'var' || k.startsWith('var/')) delete s[k];
    assert.deepEqual(Object.keys(mine).sort(), Object.keys(theirs).sort());
    for (const k of Object.keys(mine)) assert.deepEqual(mine[k], theirs[k], k);

    // admin show: the composed view with provenance.
    const show = await req('GET', '/api/v1/hosts/e230/versions/served');
    assert.deepEqual(show.json.composed.layers.map((l: { name: string }) => l.name), ['tools', 'nic', 'nic-fix', 'e230']);

    // admin diff on composed versions: a host change shows as itself; the layers' paths are in
    // both composed versions, so they are neither added nor removed.
    assert.equal((await req('POST', '/api/v1/hosts/e230/versions', { body: hostFile('e230', { etc: { rear: { 'local.conf': 'OUTPUT=USB\n' } } }) })).status, 201);
    const diff = await req('GET', '/api/v1/hosts/e230/diff?from=1&to=2');
    assert.equal(diff.status, 200, diff.body.toString());
    assert.deepEqual([diff.json.added, diff.json.removed], [[], []]);
    assert.deepEqual(diff.json.changed.map((c: { path: string }) => c.path), ['etc/rear/local.conf']);
    assert.match(diff.json.texts[0].patch, /-OUTPUT=ISO\n\+OUTPUT=USB/);
    assert.equal((await req('PUT', '/api/v1/hosts/e230/pin', { body: { version: 1 } })).status, 200, 'the tests below expect version 1 served');
  });

  test('the ReaR route serves the composed bundle (plain tar -xzf installs the layers), the DRLM route the host\'s own local.conf', async () => {
    const r = await req('GET', '/rear/e230.tar.gz');
    assert.equal(r.status, 200);
    const listed = spawnSync('tar', ['-tzf', '-'], { input: r.body, encoding: 'utf8' });
    assert.equal(listed.status, 0);
    assert.match(listed.stdout, /usr\/lib\/firmware\/vendor\/nic\.fw/);
    assert.match(listed.stdout, /etc\/rear\/local\.conf/);
    const c = await req('GET', '/clients/e230/config');
    assert.equal(c.status, 200);
    assert.equal(c.body.toString(), 'OUTPUT=ISO\n');
  });

  test('a new layer version reaches the next fetch (new ETag), a pin brings the old one back', async () => {
    const before = await req('GET', '/api/v1/hosts/e230/bundle');
    const v2 = layerFile('nic-fix', 'typeC', 20, { etc: { udev: { 'rules.d': { '70-nic.rules': 'ACTION=="add", RUN+="/bin/true v2"\n' } } } }, ['etc/udev/rules.d']);
    const p = await publishLayer('typeC', 'nic-fix', v2, 20);
    assert.equal(p.status, 201);
    assert.equal(p.json.version.version, 2);
    const afterFetch = await req('GET', '/api/v1/hosts/e230/bundle');
    assert.notEqual(afterFetch.headers.etag, before.headers.etag);
    const a = applyServed(afterFetch.body, 'v2');
    assert.equal(a.status, 0, a.stderr);
    assert.equal(readFileSync(join(a.root, 'etc/udev/rules.d/70-nic.rules'), 'utf8'), 'ACTION=="add", RUN+="/bin/true v2"\n');
    // The same content again: no new version.
    assert.equal((await publishLayer('typeC', 'nic-fix', v2, 20)).json.created, false);

    assert.equal((await req('PUT', '/api/v1/layers/typeC/nic-fix/pin', { body: { version: 1 } })).status, 200);
    const pinned = applyServed((await req('GET', '/api/v1/hosts/e230/bundle')).body, 'pinned');
    assert.equal(pinned.status, 0, pinned.stderr);
    assert.equal(readFileSync(join(pinned.root, 'etc/udev/rules.d/70-nic.rules'), 'utf8'), UDEV_NEW);
    assert.equal((await req('DELETE', '/api/v1/layers/typeC/nic-fix/pin')).status, 200);

    const diff = await req('GET', '/api/v1/layers/typeC/nic-fix/diff?from=1&to=2');
    assert.equal(diff.status, 200);
    assert.match(diff.json.texts[0].patch, /\+ACTION=="add", RUN\+="\/bin\/true v2"/);
  });

  test('refused at publish, nothing stored: same priority and a conflicting path, a directory against a file, owning a host\'s etc/rear, another class\'s token', async () => {
    const list = async (): Promise<string> => JSON.stringify((await req('GET', '/api/v1/layers')).json.layers);
    const before = await list();
    const same = layerFile('other-fix', 'typeC', 20, { etc: { udev: { 'rules.d': { '70-nic.rules': 'different\n' } } } }, ['etc/udev/rules.d']);
    const r1 = await publishLayer('typeC', 'other-fix', same, 20);
    assert.equal(r1.status, 409);
    assert.equal(r1.json.error.code, 'LAYER_CONFLICT');
    assert.match(r1.json.error.message, /nic-fix.*etc\/udev\/rules\.d\/70-nic\.rules|etc\/udev\/rules\.d\/70-nic\.rules.*nic-fix/);

    const dirVsFile = layerFile('weird', 'typeC', 30, { etc: { udev: { 'rules.d': { '70-nic.rules': { 'x': 'a directory where a file is\n' } } } } }, ['etc/udev/rules.d']);
    const r2 = await publishLayer('typeC', 'weird', dirVsFile, 30);
    assert.equal(r2.status, 409);
    assert.equal(r2.json.error.code, 'LAYER_CONFLICT');

    const ownsRear = layerFile('rear-conf', 'typeC', 40, { etc: { rear: { 'site.conf': 'X=1\n' } } }, ['etc/rear']);
    const r3 = await publishLayer('typeC', 'rear-conf', ownsRear, 40);
    assert.equal(r3.status, 422);
    assert.equal(r3.json.error.code, 'LAYER_PATH_RESERVED');

    const classToken = await newToken('publish-class:typeC');
    const r4 = await publishLayer('typeD', 'nic', layerFile('nic', 'typeD', 10, { etc: { modprobe: { 'x.conf': 'options x y=1\n' } } }, ['etc/modprobe']), 10, classToken);
    assert.equal(r4.status, 403);
    const r5 = await req('POST', '/api/v1/hosts/e230/versions', { body: hostFile('e230', { etc: { rear: { 'local.conf': 'OUTPUT=USB\n' } } }), token: classToken });
    assert.equal(r5.status, 403, 'a publish-class token publishes no host');
    // A layer file is not a host's configuration, and the other way round.
    const r6 = await req('POST', '/api/v1/hosts/e230/versions', { body: same });
    assert.equal(r6.status, 422);
    assert.equal((await publishLayer('typeC', 'x', hostFile('e230', { etc: { rear: { 'a.conf': 'A\n' } } }), 50)).status, 422);
    assert.equal(await list(), before, 'no layer was added or changed');
    // (async: the server runs in this process)
    assert.equal(errorCode(await cliAsync(['admin', 'layers', 'typeC'], { env: { REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: classToken } })), 'FORBIDDEN');
    const listed = await cliAsync(['admin', 'layers', 'typeC'], { env: { REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: admin } });
    assert.equal(listed.status, 0, listed.stderr);
    assert.match(listed.stdout, /typeC\s+10\s+nic\s+1\s/);
    assert.match(listed.stdout, /typeC\s+20\s+nic-fix\s+2\s/);
  });

  test('300 hosts of one class sharing a 100 MiB layer: the store grows by about one layer and 300 configurations', async () => {
    const blobBytes = (): number => readdirSync(join(work, 'data/blobs'), { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile()).reduce((s, d) => s + statSync(join(d.parentPath, d.name)).size, 0);
    const start = blobBytes();
    // 100 MiB that gzip cannot shrink (a firmware blob is much like it).
    const big = Buffer.alloc(100 << 20);
    for (let off = 0; off < big.length; off += 1 << 20) big.set(spawnSync('head', ['-c', String(1 << 20), '/dev/urandom']).stdout, off);
    const layer = layerFile('firmware', 'fleet', 10, { usr: { lib: { firmware: { vendor: { 'big.bin': big } } } } }, ['usr/lib/firmware/vendor']);
    assert.equal((await publishLayer('fleet', 'firmware', layer, 10)).status, 201);
    const afterLayer = blobBytes();
    const hosts = Array.from({ length: 300 }, (_, i) => `f${String(i).padStart(3, '0')}`);
    const configs: number[] = [];
    for (const h of hosts) {
      assert.equal((await req('POST', '/api/v1/hosts', { body: { id: h, class: 'fleet' } })).status, 201);
      const body = hostFile(h, { etc: { rear: { 'local.conf': `OUTPUT=ISO\n# ${h}\n`, 'site.conf': `HOST=${h}\n` } } });
      const r = await req('POST', `/api/v1/hosts/${h}/versions`, { body });
      assert.equal(r.status, 201);
      configs.push(r.json.version.size as number);
    }
    const grown = blobBytes() - start;
    const expected = afterLayer - start + configs.reduce((a, b) => a + b, 0);
    assert.equal(grown, expected, 'one layer blob plus each host\'s own configuration, nothing per host for the layer');
    assert.ok(afterLayer - start < (100 << 20) * 1.01 + 65536, `the layer is stored once: ${afterLayer - start} bytes`);
    // Every host gets the layer in its bundle.
    for (const h of [hosts[0], hosts[299]] as string[]) {
      const r = await req('GET', `/api/v1/hosts/${h}/bundle`);
      assert.equal(r.status, 200);
      assert.ok(r.body.length > 100 << 20, `${h} is served the layer`);
    }
  });
});
