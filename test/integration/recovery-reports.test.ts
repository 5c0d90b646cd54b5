// The rescue system's side of recoveries (docs/recoveries.md), end to end: the real CLI
// (`apply --server`, `report`, `log-stream`) against a real server on 127.0.0.1, with a machine
// made of a fake sys root (MACs, NIC drivers, disks, memory, CPUs). What the server's timeline
// shows is what the rescue system reported; a server that does not take reports (gone, silent,
// or older) never fails or stops a recovery.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { recoveryFile } from '../../src/adapters/http/recovery-reporter.ts';
import { CLI, cleanup, cli, cliAsync, errorCode, fakeSysRoot, jsonRequest, makeTree, tempDir, type TreeSpec } from '../helpers.ts';

const work = tempDir('ru-recovery-reports-');
const data = join(work, 'data');
let srv: Running;
let admin: string;
const api = (method: string, path: string, body?: unknown): ReturnType<typeof jsonRequest> => jsonRequest(srv.url, admin, method, path, body);

// Of the test's own invention: none is this machine's.
const MACS = ['52:54:00:ab:cd:01', '52:54:00:ab:cd:02'];
const GIB = 1024 ** 3;

/**
 * A replacement machine for host orig-web3: two PCI NICs with drivers, an NVMe-less pair of
 * disks (sda with a model, vda without), and what must be left out: a loop device (virtual),
 * a CD drive (removable) and an empty card reader slot (size 0).
 */
function machine(name: string): string {
  const root = fakeSysRoot(join(work, `sys-${name}`), MACS, 'localhost');
  const drivers = ['e1000e', 'virtio_net'];
  MACS.forEach((_m, i) => {
    // sysfs: net/ethN/device is the PCI device, whose driver link names the driver.
    makeTree(join(root, `sys/devices/pci0000:00/0000:00:0${i + 3}.0/net/eth${i}/device`), {});
    symlinkSync(`../../../../../../bus/pci/drivers/${drivers[i]}`, join(root, `sys/devices/pci0000:00/0000:00:0${i + 3}.0/net/eth${i}/device/driver`));
  });
  const disk = (n: string, dev: string, files: TreeSpec): void => {
    makeTree(join(root, 'sys/devices', dev, 'block', n), files);
    mkdirSync(join(root, 'sys/block'), { recursive: true });
    symlinkSync(`../devices/${dev}/block/${n}`, join(root, 'sys/block', n));
  };
  disk('sda', 'pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0', { size: `${(40 * GIB) / 512}\n`, removable: '0\n', device: { model: 'QEMU HARDDISK   \n' } });
  disk('vda', 'pci0000:00/0000:00:06.0/virtio3', { size: `${(8 * GIB) / 512}\n`, removable: '0\n' });
  disk('loop0', 'virtual', { size: '2048\n', removable: '0\n' });
  disk('sr0', 'pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0', { size: '2097152\n', removable: '1\n', device: { model: 'QEMU DVD-ROM\n' } });
  disk('mmcblk0', 'pci0000:00/0000:00:1e.0/mmc0', { size: '0\n', removable: '0\n' });
  makeTree(join(root, 'proc'), {
    meminfo: 'MemTotal:        4030464 kB\nMemFree:         3000000 kB\n',
    cpuinfo: [0, 1, 2, 3].map((i) => `processor\t: ${i}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz\n`).join('\n'),
  });
  return root;
}

const HARDWARE = {
  disks: [{ name: 'sda', size: 40 * GIB, model: 'QEMU HARDDISK' }, { name: 'vda', size: 8 * GIB, model: null }],
  nics: [{ name: 'eth0', mac: MACS[0], driver: 'e1000e' }, { name: 'eth1', mac: MACS[1], driver: 'virtio_net' }],
  memory: 4030464 * 1024,
  cpus: 4,
  cpuModel: 'Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz',
};

interface Event { seq: number; kind: string; message: string; detail: Record<string, unknown> }
interface RecoveryView { id: number; host: string | null; phase: string; log: number | null; exitStatus: number | null; error: string | null; hardware: unknown; facts: { macs: string[] } | null }

async function recovery(id: number): Promise<{ recovery: RecoveryView; events: Event[] }> {
  const r = await api('GET', `/api/v1/recoveries/${id}`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.json;
}

const recordedId = (root: string): number => (JSON.parse(readFileSync(recoveryFile(root, ENV), 'utf8')) as { id: number }).id;

const newRoot = (name: string): string => {
  const d = join(work, `root-${name}`);
  mkdirSync(d, { recursive: true });
  return d;
};

/** No settings.conf of this machine's: the test says everything. */
const ENV = { REAR_UPDATE_SETTINGS: join(work, 'no-settings.conf'), REAR_UPDATE_POLL_MS: '200', REAR_UPDATE_RUN_DIR: join(work, 'run') };

before(async () => {
  assert.ok(readFileSync(CLI).length > 0, `${CLI} is missing: run node scripts/build.mjs`);
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  const tree = join(work, 'tree-orig-web3');
  makeTree(tree, { etc: { rear: { 'local.conf': 'OUTPUT=ISO\nHOST=orig-web3\n' } } });
  const pub = await cliAsync(['publish', '--server', srv.url, '--token', admin, '--root', tree, '--host', 'orig-web3', '--sys-root', fakeSysRoot(join(work, 'sys-orig'), ['52:54:00:ab:cd:99'], 'orig-web3')], { env: ENV });
  assert.equal(pub.status, 0, pub.stderr);
});
after(async () => {
  await srv?.close();
  cleanup(work);
});

describe('apply reports its recovery', { concurrency: false }, () => {
  let appliedRoot = '';

  test('an unknown machine: booted, resolving, pending, assigned, resolved, fetched, verified, applied, with the hardware of its sys root', async () => {
    const root = newRoot('pending');
    const child = cliAsync(['apply', '--server', srv.url, '--token', admin, '--root', root, '--pubkey', join(data, 'server.pub'), '--sys-root', machine('pending'), '--wait', '60', '-q'], { env: ENV });
    let pending: { id: number } | undefined;
    for (let i = 0; i < 300 && !pending; i++) {
      await new Promise((r) => setTimeout(r, 100));
      pending = ((await api('GET', '/api/v1/pending')).json?.pending as { id: number; facts: { macs: string[] } }[] | undefined)?.find((p) => p.facts.macs.includes(MACS[0]!));
    }
    assert.ok(pending, 'the machine was recorded as pending');
    const assign = await api('POST', '/api/v1/assign', { pending: String(pending.id), host: 'orig-web3' });
    assert.equal(assign.status, 200, JSON.stringify(assign.json));
    const r = await child;
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /warning/);
    assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nHOST=orig-web3\n');

    const { recovery: rec, events } = await recovery(recordedId(root));
    const kinds = events.map((e) => e.kind);
    // The server may record a sign more than once (each resolve poll); the first of each kind comes in this order.
    assert.deepEqual(kinds.filter((k, i) => kinds.indexOf(k) === i), ['booted', 'resolving', 'pending', 'assigned', 'resolved', 'fetched', 'verified', 'applied'], kinds.join(' '));
    assert.deepEqual(events.map((e) => e.seq), [...events.keys()].map((i) => i + 1));
    assert.deepEqual(rec.hardware, HARDWARE);
    assert.deepEqual(rec.facts?.macs, MACS);
    assert.equal(rec.host, 'orig-web3');
    assert.equal(rec.phase, 'applied');
    const of = (k: string): Record<string, unknown> => events.find((e) => e.kind === k)!.detail;
    assert.deepEqual(of('resolving'), { id: null });
    const fetched = of('fetched');
    assert.deepEqual([fetched.host, fetched.version], ['orig-web3', 1]);
    assert.ok(typeof fetched.bytes === 'number' && fetched.bytes > 0, JSON.stringify(fetched));
    const installed = JSON.parse(readFileSync(join(root, 'var/lib/rear-update/installed.json'), 'utf8')) as { key: string };
    assert.deepEqual(of('verified'), { key: installed.key, entries: (of('verified').entries as number) });
    assert.ok((of('verified').entries as number) >= 1);
    const applied = of('applied');
    assert.deepEqual([applied.host, applied.version, applied.removed, applied.layers], ['orig-web3', 1, 0, []]);
    assert.ok((applied.written as number) >= 1, JSON.stringify(applied));
    appliedRoot = root;
  });

  test('a second apply in the same boot (same root, same server) adds to the same recovery', async () => {
    const before = recordedId(appliedRoot);
    const r = await cliAsync(['apply', 'orig-web3', '--server', srv.url, '--token', admin, '--root', appliedRoot, '--pubkey', join(data, 'server.pub'), '-q'], { env: ENV });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(recordedId(appliedRoot), before);
    const { events } = await recovery(before);
    const resolving = events.filter((e) => e.kind === 'resolving');
    assert.deepEqual(resolving.map((e) => e.detail), [{ id: null }, { id: 'orig-web3' }]);
    assert.equal(events.at(-1)?.kind, 'applied');
  });

  test('an unknown host id: the download is refused (DOWNLOAD_REFUSED) and the recovery records failed with that code', async () => {
    const root = newRoot('unknown-host');
    const r = await cliAsync(['apply', 'no-such-host', '--server', srv.url, '--token', admin, '--root', root, '--pubkey', join(data, 'server.pub'), '--sys-root', machine('unknown-host'), '-q'], { env: ENV });
    assert.equal(errorCode(r), 'DOWNLOAD_REFUSED', r.stderr);
    const { recovery: rec, events } = await recovery(recordedId(root));
    assert.deepEqual(events.map((e) => e.kind), ['booted', 'resolving', 'failed']);
    assert.deepEqual(events[1]!.detail, { id: 'no-such-host' });
    assert.deepEqual(events[2]!.detail, { code: 'DOWNLOAD_REFUSED' });
    assert.match(events[2]!.message, /no host "no-such-host"/);
    assert.equal(rec.phase, 'failed');
    assert.equal(rec.error, 'DOWNLOAD_REFUSED');
  });

  test('a bundle signed by a key the machine does not trust: failed with BUNDLE_KEY_UNTRUSTED, nothing installed', async () => {
    const keys = join(work, 'other-keys');
    assert.equal(cli(['keygen', '--out', keys]).status, 0);
    const root = newRoot('untrusted');
    const r = await cliAsync(['apply', 'orig-web3', '--server', srv.url, '--token', admin, '--root', root, '--pubkey', join(keys, 'rear-update.pub'), '--sys-root', machine('untrusted'), '-q'], { env: ENV });
    assert.equal(errorCode(r), 'BUNDLE_KEY_UNTRUSTED', r.stderr);
    const { recovery: rec, events } = await recovery(recordedId(root));
    const failed = events.filter((e) => e.kind === 'failed');
    assert.deepEqual(failed.map((e) => e.detail), [{ code: 'BUNDLE_KEY_UNTRUSTED' }]);
    assert.ok(!events.some((e) => e.kind === 'verified' || e.kind === 'applied'), events.map((e) => e.kind).join(' '));
    assert.equal(rec.phase, 'failed');
    assert.equal(rec.error, 'BUNDLE_KEY_UNTRUSTED');
  });

  test('--no-report and REAR_UPDATE_REPORT=0: no recovery is opened', async () => {
    const count = async (): Promise<number> => ((await api('GET', '/api/v1/recoveries?limit=1000')).json.recoveries as unknown[]).length;
    const was = await count();
    for (const [args, env] of [[['--no-report'], {}], [[], { REAR_UPDATE_REPORT: '0' }]] as const) {
      const root = newRoot(`no-report-${args.length}`);
      const r = await cliAsync(['apply', 'orig-web3', '--server', srv.url, '--token', admin, '--root', root, '--pubkey', join(data, 'server.pub'), '-q', ...args], { env: { ...ENV, ...env } });
      assert.equal(r.status, 0, r.stderr);
      assert.throws(() => readFileSync(recoveryFile(root, ENV)), /ENOENT/);
    }
    assert.equal(await count(), was);
  });

  test('report KIND with recovery.json: a note, then finished with the exit status ends the recovery', async () => {
    const id = recordedId(appliedRoot);
    const env = { ...ENV, REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: admin };
    const note = await cliAsync(['report', 'note', '--message', 'operator looked at the disks', '--root', appliedRoot], { env });
    assert.equal(note.status, 0, note.stderr);
    assert.equal(note.stderr, '');
    const started = await cliAsync(['report', 'recover-started', '--root', appliedRoot], { env });
    assert.equal(started.status, 0, started.stderr);
    assert.equal((await recovery(id)).recovery.phase, 'recovering');
    const done = await cliAsync(['report', 'finished', '--exit-status', '0', '--message', 'rear recover finished', '--root', appliedRoot], { env });
    assert.equal(done.status, 0, done.stderr);
    const { recovery: rec, events } = await recovery(id);
    assert.deepEqual(events.slice(-3).map((e) => [e.kind, e.message]), [['note', 'operator looked at the disks'], ['recover-started', ''], ['finished', 'rear recover finished']]);
    assert.deepEqual([rec.phase, rec.exitStatus], ['done', 0]);
    // The server of recovery.json is used when none is configured (rear recover runs without the boot hook's environment).
    const bare = await cliAsync(['report', 'note', '--message', 'from a bare shell', '--root', appliedRoot], { env: { ...ENV, REAR_UPDATE_TOKEN: admin } });
    assert.equal(bare.status, 0, bare.stderr);
    assert.equal((await recovery(id)).events.at(-1)?.message, 'from a bare shell');
  });

  test('report: a wrong command line is exit 2; without a server or recovery nothing is sent and it still exits 0', async () => {
    const env = { ...ENV, REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: admin };
    assert.equal((await cliAsync(['report', 'booted', '--root', appliedRoot], { env })).status, 2);
    assert.equal((await cliAsync(['report', 'finished', '--root', appliedRoot], { env })).status, 2);
    assert.equal((await cliAsync(['report', 'finished', '--exit-status', 'x', '--root', appliedRoot], { env })).status, 2);
    const none = await cliAsync(['report', 'note', '--root', newRoot('no-recovery')], { env: ENV });
    assert.equal(none.status, 0, none.stderr);
    assert.match(none.stderr, /no server configured/);
  });

  test('a recovery.json naming a recovery this token cannot report to (another token\'s, or unknown): a new one is opened, without a warning', async () => {
    const other = await api('POST', '/api/v1/tokens', { scope: 'fetch:orig-web3', label: 'recovery-reports other' });
    assert.equal(other.status, 201, JSON.stringify(other.json));
    const env = { ...ENV, REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: other.json.token as string };
    for (const stale of [recordedId(appliedRoot), 999999]) {
      const root = newRoot(`stale-${stale}`);
      mkdirSync(join(root, 'var/lib/rear-update'), { recursive: true });
      mkdirSync(join(work, 'run'), { recursive: true });
      writeFileSync(recoveryFile(root, ENV), JSON.stringify({ server: srv.url, id: stale, opened: '2026-01-01T00:00:00.000Z' }));
      const r = await cliAsync(['report', 'note', '--message', 'after a stale record', '--root', root, '--sys-root', machine(`stale-${stale}`)], { env });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
      const id = recordedId(root);
      assert.notEqual(id, stale);
      assert.deepEqual((await recovery(id)).events.map((e) => [e.kind, e.message]), [['booted', ''], ['note', 'after a stale record']]);
    }
  });

  test('log-stream sends X-Rear-Update-Recovery: the log is linked to this boot\'s recovery, not to the host\'s newest', async () => {
    // A recovery of its own (no host yet), recorded in a root as apply would.
    const root = newRoot('log-stream');
    const env = { ...ENV, REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: admin, REAR_UPDATE_HEARTBEAT: '1' };
    const opened = await cliAsync(['report', 'note', '--message', 'before the log', '--root', root, '--sys-root', machine('log-stream')], { env });
    assert.equal(opened.status, 0, opened.stderr);
    const id = recordedId(root);
    const logs = join(work, 'rear-logs');
    mkdirSync(logs, { recursive: true });
    // `rear` is "running" while this process lives; the log appears after log-stream started.
    const rear = spawn('sleep', ['3']);
    const child = cliAsync(['log-stream', '--host', 'orig-web3', '--dir', logs, '--once', '--while-pid', String(rear.pid), '--root', root], { env });
    await new Promise((r) => setTimeout(r, 1500));
    writeFileSync(join(logs, 'rear-orig-web3.log'), 'Relax-and-Recover 2.7 / Git\nRunning rear recover\n');
    const r = await child;
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /sent \d+ bytes/);
    const { recovery: rec, events } = await recovery(id);
    assert.ok(rec.log !== null, JSON.stringify(rec));
    assert.ok(events.some((e) => e.kind === 'log'), events.map((e) => e.kind).join(' '));
    assert.equal(rec.phase, 'recovering');
  });
});

describe('a server that does not take reports never fails or stops a recovery', () => {
  /** A loopback front for the real server: everything is passed on, except the recoveries routes, answered as `mode` says. */
  async function front(mode: 'silent' | 'old'): Promise<{ url: string; asked: string[]; close: () => void }> {
    const asked: string[] = [];
    const held: http.ServerResponse[] = [];
    const s = http.createServer((req, res) => {
      if (req.url?.startsWith('/api/v1/recoveries')) {
        asked.push(`${req.method} ${req.url}`);
        if (mode === 'silent') held.push(res); // accepted, never answered
        else res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'ROUTE_UNKNOWN', message: `no route ${req.method} ${req.url}`, context: {} } }));
        return;
      }
      const up = http.request(new URL(req.url ?? '/', srv.url), { method: req.method, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${(s.address() as net.AddressInfo).port}`,
      asked,
      close: () => {
        for (const h of held) h.destroy();
        s.closeAllConnections();
        s.close();
      },
    };
  }

  test('recoveries routes that accept and never answer: apply still installs, with one warning', async () => {
    const f = await front('silent');
    try {
      const root = newRoot('silent');
      const r = await cliAsync(['apply', 'orig-web3', '--server', f.url, '--token', admin, '--root', root, '--pubkey', join(data, 'server.pub'), '--sys-root', machine('silent'), '-q'], { env: ENV });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nHOST=orig-web3\n');
      assert.equal(r.stderr.match(/warning/g)?.length, 1, r.stderr);
      assert.match(r.stderr, /opening a recovery failed: .*no answer within 5 s/);
      assert.deepEqual(f.asked, ['POST /api/v1/recoveries']);
    } finally {
      f.close();
    }
  });

  test('an older server without the routes (404 ROUTE_UNKNOWN): one warning, asked once, apply installs', async () => {
    const f = await front('old');
    try {
      const root = newRoot('old');
      const r = await cliAsync(['apply', 'orig-web3', '--server', f.url, '--token', admin, '--root', root, '--pubkey', join(data, 'server.pub'), '--sys-root', machine('old'), '-q'], { env: ENV });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr.match(/warning/g)?.length, 1, r.stderr);
      assert.match(r.stderr, /does not take recovery reports \(HTTP 404/);
      assert.deepEqual(f.asked, ['POST /api/v1/recoveries']);
      const rep = await cliAsync(['report', 'note', '--server', f.url, '--token', admin, '--root', root], { env: ENV });
      assert.equal(rep.status, 0, rep.stderr);
    } finally {
      f.close();
    }
  });

  test('report to a closed port, and to a server that accepts and never answers: exit 0, one warning each', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const sockets: net.Socket[] = [];
    const mute = net.createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    try {
      for (const url of [`http://127.0.0.1:${closedPort}`, `http://127.0.0.1:${(mute.address() as net.AddressInfo).port}`]) {
        const root = newRoot(`unreachable-${url.split(':').pop()}`);
        const r = await cliAsync(['report', 'finished', '--exit-status', '1', '--server', url, '--token', admin, '--root', root, '--sys-root', machine(`unreachable-${url.split(':').pop()}`)], { env: ENV });
        assert.equal(r.status, 0, r.stderr);
        assert.equal(r.stderr.match(/warning/g)?.length, 1, r.stderr);
      }
    } finally {
      for (const s of sockets) s.destroy();
      mute.close();
    }
  });
});
