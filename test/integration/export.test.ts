// The signed offline export (issue 14, docs/export.md) over real HTTP with a real server on
// loopback and the built CLI: `admin export DIR` writes every selected host's composed bundle
// and a signed index; `apply --from DIR` finds this machine (a fake sys root holding a host's
// MAC) and installs the same tree as the server's bundle. What is identical: the exported
// file's payload (everything after the sealed head) equals the served bundle's byte for byte,
// and their signed manifests differ only in `served` (the export time) and `nonce` (absent in
// an export). Tampering is refused, each case named after the threat; a full disk (a small
// tmpfs, root only) leaves no half-written bundle and no index.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeys } from '../../src/adapters/fs/keys.ts';
import { readBundle } from '../../src/adapters/tar/bundle-reader.ts';
import { SIGNED_HEADER_LEN, splitOf } from '../../src/core/container.ts';
import { decodeEnvelope, encodeEnvelope, signIndex } from '../../src/core/export-index.ts';
import { DEFAULT_LIMITS } from '../../src/core/policy.ts';
import { parsePrivateKey, parsePublicKey } from '../../src/core/signature.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { adminSide, cleanup, cli, errorCode, fakeSysRoot, makeTree, snapshot, succeeded, tempDir, type TreeSpec } from '../helpers.ts';

const work = tempDir('ru-export-');
let srv: Running;
let adminToken: string;
const { req, adm } = adminSide(() => srv, () => adminToken);
const pub = (): string => join(work, 'data/signing/rear-update.pub');
const noKeys = join(work, 'keys-none');

const MAC = { e229: '52:54:00:e2:29:01', e230: '52:54:00:e2:30:01', e231: '52:54:00:e2:31:01', stranger: '52:54:00:99:99:99' };

let n = 0;
function packed(args: string[], spec: TreeSpec, paths: string[]): Buffer {
  const root = join(work, `tree-${++n}`);
  makeTree(root, spec);
  const file = join(work, `packed-${n}.tar.gz`);
  succeeded(cli(['pack', '--root', root, ...paths.flatMap((p) => ['--path', p]), ...args, '-o', file]));
  return readFileSync(file);
}

async function addHost(id: string, cls: string | null, mac: string, files: TreeSpec | null): Promise<void> {
  assert.equal((await req('POST', '/api/v1/hosts', { body: { id, class: cls, macs: [mac], hostnames: [id] } })).status, 201);
  if (files) assert.equal((await req('POST', `/api/v1/hosts/${id}/versions`, { body: packed(['--host', id], { etc: { rear: files } }, ['etc/rear']) })).status, 201);
}

/** A machine's sys and proc with these MACs (never this machine's). */
function machine(label: string, macs: string[], hostname = 'rescue'): string {
  return fakeSysRoot(join(work, `machine-${label}-${++n}`), macs, hostname);
}

function freshRoot(label: string): string {
  const root = join(work, `root-${label}-${++n}`);
  mkdirSync(root, { recursive: true });
  return root;
}

const applyArgs = (root: string): string[] => ['apply', '--quiet', '--root', root, '--pubkey', pub(), '--keys-dir', noKeys, '--kernel', '6.1.0-57-amd64', '--no-report'];

/** The installed tree without rear-update's own state (its record names the source and time). */
function tree(root: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries(snapshot(root)).filter(([p]) => !p.startsWith('var/lib/rear-update')));
}

function exportTo(label: string, extra: string[] = []): Promise<{ dir: string; status: number | null; stdout: string; stderr: string }> {
  const dir = join(work, `export-${label}-${++n}`);
  return adm(['export', dir, ...extra]).then((r) => ({ dir, ...r }));
}

/** The bytes after a sealed bundle's head: its payload members (container.ts: the split is part one's length). */
const payloadOf = (b: Buffer): Buffer => b.subarray(SIGNED_HEADER_LEN + (splitOf(b) as number));

async function manifestOf(b: Buffer): Promise<Record<string, unknown>> {
  const r = await readBundle(Readable.from([b]), { trusted: [parsePublicKey(readFileSync(pub(), 'utf8'), 'server.pub')], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS });
  return { ...r.manifest } as Record<string, unknown>;
}

describe('signed offline export', () => {
  let full: string;
  before(async () => {
    mkdirSync(noKeys, { recursive: true });
    srv = await startServer(loadConfig({ data: join(work, 'data'), listen: '127.0.0.1:0' }, {}), { log: false });
    adminToken = readFileSync(join(work, 'data', 'admin.token'), 'utf8').trim();
    const layer = packed(['--layer', 'nic', '--class', 'typeA', '--priority', '10'], { usr: { lib: { firmware: { vendor: { 'nic.fw': 'firmware of typeA\n' } } } } }, ['usr/lib/firmware/vendor']);
    assert.equal((await req('POST', '/api/v1/layers/typeA/nic/versions?priority=10', { body: layer })).status, 201);
    await addHost('e229', 'typeA', MAC.e229, { 'local.conf': 'OUTPUT=ISO\n# e229\n', 'site.conf': 'BACKUP=NETFS\n' });
    await addHost('e230', 'typeA', MAC.e230, { 'local.conf': 'OUTPUT=ISO\n# e230\n' });
    await addHost('e231', 'typeB', MAC.e231, { 'local.conf': 'OUTPUT=USB\n# e231\n' });
    await addHost('e232', 'typeB', '52:54:00:e2:32:01', null);
    const r = await exportTo('full');
    succeeded(r);
    full = r.dir;
  });
  after(async () => {
    await srv?.close();
    cleanup(work);
  });

  test('admin export writes every host with a bundle and a signed index; a host without one is skipped and said', () => {
    assert.deepEqual(readdirSync(full).sort(), ['e229.tar.gz', 'e230.tar.gz', 'e231.tar.gz', 'index.json']);
    const env = decodeEnvelope(readFileSync(join(full, 'index.json'), 'utf8'));
    assert.deepEqual(env.index.hosts.map((h) => [h.id, h.class, h.macs, h.hostnames, h.version, h.size]), [
      ['e229', 'typeA', [MAC.e229], ['e229'], 1, readFileSync(join(full, 'e229.tar.gz')).length],
      ['e230', 'typeA', [MAC.e230], ['e230'], 1, readFileSync(join(full, 'e230.tar.gz')).length],
      ['e231', 'typeB', [MAC.e231], ['e231'], 1, readFileSync(join(full, 'e231.tar.gz')).length],
    ]);
    assert.match(env.index.exported, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  test('apply --from with a machine holding e229\'s MAC installs the tree the server\'s bundle installs', async () => {
    const viaExport = freshRoot('export');
    const r = succeeded(cli([...applyArgs(viaExport), '--from', full, '--sys-root', machine('e229', [MAC.e229])]));
    assert.match(r.stderr, /this machine is host e229 in the export \(by mac 52:54:00:e2:29:01\)/);
    const served = await req('GET', '/api/v1/hosts/e229/bundle');
    assert.equal(served.status, 200);
    writeFileSync(join(work, 'served-e229.tar.gz'), served.body);
    const viaServer = freshRoot('server');
    succeeded(cli([...applyArgs(viaServer), join(work, 'served-e229.tar.gz')]));
    assert.deepEqual(tree(viaExport), tree(viaServer));
    assert.equal(readFileSync(join(viaExport, 'usr/lib/firmware/vendor/nic.fw'), 'utf8'), 'firmware of typeA\n', 'the class layer is composed in');
    const st = succeeded(cli(['status', '--root', viaExport]));
    const exported = decodeEnvelope(readFileSync(join(full, 'index.json'), 'utf8')).index.exported;
    assert.match(st.stdout, new RegExp(`installed from export of ${exported}`));
  });

  test('the exported payload is byte-identical to the served bundle\'s; the signed manifests differ only in served and nonce', async () => {
    const served = await req('GET', '/api/v1/hosts/e229/bundle', { headers: { 'x-rear-update-nonce': 'AAAAAAAAAAAAAAAAAAAAAA' } });
    assert.equal(served.status, 200);
    const file = readFileSync(join(full, 'e229.tar.gz'));
    assert.ok(payloadOf(file).length > 0);
    assert.ok(payloadOf(file).equals(payloadOf(served.body)), 'payload members byte for byte');
    const mf = await manifestOf(file);
    const ms = await manifestOf(served.body);
    const exported = decodeEnvelope(readFileSync(join(full, 'index.json'), 'utf8')).index.exported;
    assert.equal(mf.served, exported);
    assert.equal(mf.nonce, undefined, 'an export carries no nonce');
    assert.equal(ms.nonce, 'AAAAAAAAAAAAAAAAAAAAAA');
    const { served: _a, nonce: _b, ...restF } = mf;
    const { served: _c, nonce: _d, ...restS } = ms;
    assert.deepEqual(restF, restS);
  });

  test('apply --from DIR HOST takes the host named; a host not in the export is EXPORT_HOST_UNKNOWN', () => {
    const root = freshRoot('named');
    succeeded(cli([...applyArgs(root), '--from', full, 'e231']));
    assert.match(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), /# e231/);
    const unknown = cli([...applyArgs(freshRoot('unknown')), '--from', full, 'e232']);
    assert.equal(errorCode(unknown), 'EXPORT_HOST_UNKNOWN', unknown.stderr);
  });

  test('a machine whose facts name no host of the export is refused (EXPORT_HOST_UNKNOWN), never guessed', () => {
    const root = freshRoot('stranger');
    const r = cli([...applyArgs(root), '--from', full, '--sys-root', machine('stranger', [MAC.stranger])]);
    assert.equal(errorCode(r), 'EXPORT_HOST_UNKNOWN', r.stderr);
    assert.deepEqual(readdirSync(root), []);
  });

  test('ambiguous facts: a machine holding the MACs of two exported hosts is refused, never guessed', () => {
    const root = freshRoot('ambiguous');
    const r = cli([...applyArgs(root), '--from', full, '--sys-root', machine('two', [MAC.e229, MAC.e230])]);
    assert.equal(errorCode(r), 'EXPORT_HOST_UNKNOWN', r.stderr);
    assert.match(r.stderr, /mac named more than one host/);
    assert.deepEqual(readdirSync(root), []);
  });

  describe('tampered exports are refused, and nothing is written', () => {
    /** A copy of the full export to spoil. */
    const copy = (label: string): string => {
      const dir = join(work, `tampered-${label}`);
      mkdirSync(dir);
      for (const f of readdirSync(full)) copyFileSync(join(full, f), join(dir, f));
      return dir;
    };

    test('bundle swapped for another host\'s: e230\'s signed bundle under e229\'s name is EXPORT_TAMPERED', () => {
      const dir = copy('swapped');
      copyFileSync(join(dir, 'e230.tar.gz'), join(dir, 'e229.tar.gz'));
      const root = freshRoot('swapped');
      const r = cli([...applyArgs(root), '--from', dir, '--sys-root', machine('e229', [MAC.e229])]);
      assert.equal(errorCode(r), 'EXPORT_TAMPERED', r.stderr);
      assert.deepEqual(readdirSync(root), []);
    });

    test('edited index: e230\'s MAC given to e229 in index.json breaks its signature (EXPORT_INDEX_INVALID)', () => {
      const dir = copy('edited');
      const text = readFileSync(join(dir, 'index.json'), 'utf8');
      writeFileSync(join(dir, 'index.json'), text.replace(MAC.e229, MAC.stranger));
      const root = freshRoot('edited');
      const r = cli([...applyArgs(root), '--from', dir, '--sys-root', machine('stranger', [MAC.stranger])]);
      assert.equal(errorCode(r), 'EXPORT_INDEX_INVALID', r.stderr);
      assert.match(r.stderr, /edited after the server signed it/);
      assert.deepEqual(readdirSync(root), []);
    });

    test('forged index: one signed by a key this machine does not trust is BUNDLE_KEY_UNTRUSTED', () => {
      const dir = copy('forged');
      const keys = join(work, 'forger');
      generateKeys(keys, false);
      const key = parsePrivateKey(readFileSync(join(keys, 'rear-update.key'), 'utf8'), 'forger');
      const env = decodeEnvelope(readFileSync(join(dir, 'index.json'), 'utf8'));
      const index = { ...env.index, key: key.publicKey.fingerprint };
      writeFileSync(join(dir, 'index.json'), encodeEnvelope({ index, signature: signIndex(index, key), statements: [] }));
      const r = cli([...applyArgs(freshRoot('forged')), '--from', dir, 'e229']);
      assert.equal(errorCode(r), 'BUNDLE_KEY_UNTRUSTED', r.stderr);
    });

    test('missing bundle: the index names e229.tar.gz, which is gone: EXPORT_TAMPERED', () => {
      const dir = copy('missing');
      rmSync(join(dir, 'e229.tar.gz'));
      const r = cli([...applyArgs(freshRoot('missing')), '--from', dir, 'e229']);
      assert.equal(errorCode(r), 'EXPORT_TAMPERED', r.stderr);
    });

    test('no index: a directory without index.json (an export cut off) is EXPORT_INDEX_INVALID', () => {
      const dir = copy('no-index');
      rmSync(join(dir, 'index.json'));
      const r = cli([...applyArgs(freshRoot('no-index')), '--from', dir, 'e229']);
      assert.equal(errorCode(r), 'EXPORT_INDEX_INVALID', r.stderr);
    });
  });

  test('an export older than REAR_UPDATE_EXPORT_MAX_AGE is refused without a terminal (EXPORT_TOO_OLD), applied with --accept-old-export', async () => {
    const exported = Date.parse(decodeEnvelope(readFileSync(join(full, 'index.json'), 'utf8')).index.exported);
    // The export must be older than the 1 s allowed below: wait until it is.
    while (Date.now() < exported + 2500) await sleep(200);
    const env = { REAR_UPDATE_EXPORT_MAX_AGE: '1s' };
    const root = freshRoot('old');
    const refused = cli([...applyArgs(root), '--from', full, 'e229'], { env });
    assert.equal(errorCode(refused), 'EXPORT_TOO_OLD', refused.stderr);
    assert.deepEqual(readdirSync(root), []);
    const accepted = succeeded(cli([...applyArgs(root), '--from', full, 'e229', '--accept-old-export'], { env }));
    assert.match(accepted.stderr, /used anyway \(--accept-old-export\)/);
    assert.ok(existsSync(join(root, 'etc/rear/site.conf')));
  });

  test('--class and --host select hosts (their union)', async () => {
    const b = await exportTo('typeB', ['--class', 'typeB']);
    succeeded(b);
    assert.deepEqual(readdirSync(b.dir).sort(), ['e231.tar.gz', 'index.json']);
    assert.match(b.stderr, /skipped e232: no published bundle/);
    const both = await exportTo('both', ['--class', 'typeB', '--host', 'e230', '--json']);
    succeeded(both);
    assert.deepEqual((JSON.parse(both.stdout) as { hosts: { host: string }[] }).hosts.map((h) => h.host), ['e230', 'e231']);
    const unknown = await exportTo('unknown', ['--host', 'nope']);
    assert.equal(errorCode(unknown), 'HOST_UNKNOWN', unknown.stderr);
  });

  test('export needs an admin token', async () => {
    const t = await req('POST', '/api/v1/tokens', { body: { scope: 'view' } });
    const r = await adm(['export', join(work, 'export-view')], t.json.token as string);
    assert.equal(errorCode(r), 'FORBIDDEN', r.stderr);
    assert.equal(existsSync(join(work, 'export-view')), false);
  });

  describe('a full disk (DIR on a small tmpfs)', { skip: process.getuid?.() !== 0 && 'needs root to mount a tmpfs' }, () => {
    const mnt = join(work, 'small');
    let mounted = false;
    before(async () => {
      // Two hosts whose bundles do not both fit: random content does not compress.
      await addHost('e240', 'typeC', '52:54:00:e2:40:01', { 'big.bin': randomBytes(300 * 1024).toString('base64') });
      await addHost('e241', 'typeC', '52:54:00:e2:41:01', { 'big.bin': randomBytes(300 * 1024).toString('base64') });
      mkdirSync(mnt);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=480k,mode=0700', 'tmpfs', mnt]);
      mounted = true;
    });
    after(() => {
      if (mounted) execFileSync('umount', ['-l', mnt]);
    });

    test('NO_SPACE: no half-written bundle under its final name, no temporary file, and no index (an earlier one is gone too)', async () => {
      const dir = join(mnt, 'export');
      succeeded(await adm(['export', dir, '--host', 'e229']));
      assert.ok(existsSync(join(dir, 'index.json')));
      const r = await adm(['export', dir, '--class', 'typeC']);
      assert.equal(errorCode(r), 'NO_SPACE', r.stderr + r.stdout);
      assert.equal(r.status, 8);
      const left = readdirSync(dir).sort();
      assert.equal(left.includes('index.json'), false, 'no index naming a bundle that is not there');
      assert.deepEqual(left.filter((f) => f.startsWith('.')), [], 'no temporary files');
      // What is there under a final name is whole: it verifies against the server's key.
      for (const f of left) succeeded(cli(['verify', '--pubkey', pub(), '--keys-dir', noKeys, join(dir, f)]));
      assert.ok(left.length >= 1 && left.length < 3, `${left.join(', ')}`);
    });
  });
});
