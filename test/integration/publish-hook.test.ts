// Publish after every successful backup (issue 15), with Debian's real, unmodified ReaR 2.7 in a
// throw-away copy of this machine (test/support/mkrescue-sandbox.ts) posing as host e229: after
// `install-rear --publish`, with /etc/rear-update/publish.conf and a publish token in place,
//   - `rear mkbackup` (a real NETFS backup of /etc/rear-update into a local directory, and a
//     real ISO) ends with exit 0 and a publish that reached the server: a new version of e229
//     whose content digest is the one publish-state.json records, trigger "rear";
//   - `rear mkrescue` with the server down still ends with exit 0, and publish-state.json
//     records the failure (SERVER_UNREACHABLE) for doctor;
//   - a `rear mkbackup` that fails (ReaR's Error, in its prep stage) publishes nothing: no
//     new version, publish-state.json untouched.
// Why an exit task registered from local.conf and not POST_BACKUP_SCRIPT: see
// src/adapters/rear/publish-hook.ts.
//
// Each successful run builds a real rescue image, 1.5 to 3.5 minutes on 2 CPUs.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PublishState } from '../../src/cli/publish-state.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, EXE, jsonRequest, tempDir } from '../helpers.ts';
import { bootableLocalConf, ISO_DIR, ISO_PREFIX, openMkrescueSandbox, prepareBootableSystem, type MkrescueSandbox } from '../support/mkrescue-sandbox.ts';

const HOST = 'e229';
const HOST_MAC = '52:54:00:22:90:15';
const STAGE = '/root/rear-update-under-test';
const BACKUP_DIR = '/var/lib/rear-backup-sandbox';
const STATE = '/var/lib/rear-update/publish-state.json';
// The executable under test.
const EXE_UNDER_TEST = EXE;

const work = tempDir('ru-publish-hook-');
let srv: Running;
let admin = '';
let sb: MkrescueSandbox;

const api = (method: string, path: string, body?: unknown): ReturnType<typeof jsonRequest> => jsonRequest(srv.url, admin, method, path, body);

/** A loopback port that nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const publishConf = (server: string): string => [
  '# /etc/rear-update/publish.conf of the sandbox host',
  `REAR_UPDATE_SERVER='${server}'`,
  `REAR_UPDATE_HOST=${HOST}`,
  '',
].join('\n');

async function versions(): Promise<{ version: number; digest: string }[]> {
  const r = await api('GET', `/api/v1/hosts/${HOST}/versions`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return (r.json.versions as { version: number; digest: string }[]);
}

async function state(): Promise<PublishState | null> {
  const r = await sb.exec(['cat', STATE]);
  return r.status === 0 ? (JSON.parse(r.text) as PublishState) : null;
}

async function rear(workflow: string): Promise<{ status: number; text: string; log: string }> {
  const r = await sb.exec(['rear', '-v', workflow], { timeoutMs: 15 * 60_000 });
  const log = await sb.exec(['sh', '-c', 'cat /var/log/rear/rear-*.log 2>/dev/null']);
  return { status: r.status, text: r.text + r.stderr, log: log.text };
}

before(async () => {
  assert.equal(process.getuid?.(), 0, 'the mkrescue sandbox needs root (mount namespaces, overlayfs)');
  assert.match(execFileSync('rear', ['-V'], { encoding: 'utf8' }), /^Relax-and-Recover 2\.7 /);
  const data = join(work, 'data');
  mkdirSync(data, { recursive: true });
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  const h = await api('POST', '/api/v1/hosts', { id: HOST, class: 'typeA', macs: [HOST_MAC], hostnames: [HOST] });
  assert.equal(h.status, 201, JSON.stringify(h.json));
  const t = await api('POST', '/api/v1/tokens', { scope: `publish:${HOST}`, label: 'e229 publishes' });
  assert.equal(t.status, 201, JSON.stringify(t.json));

  sb = await openMkrescueSandbox({ hostname: HOST });
  await sb.writeFile(`${STAGE}/rear-update`, readFileSync(EXE_UNDER_TEST), 0o755);
  await sb.writeFile(`${STAGE}/server.pub`, readFileSync(join(data, 'server.pub')), 0o644);
  const kernel = await prepareBootableSystem(sb);
  // NETFS refuses a backup directory on the / file system: a small tmpfs of its own (in the
  // sandbox's mount namespace; it goes with the sandbox).
  await sb.run(['sh', '-c', `mkdir -p ${BACKUP_DIR} && mount -t tmpfs -o size=256m rear-backup-sandbox ${BACKUP_DIR}`]);
  // A real backup, kept small: NETFS's tar of /etc/rear-update only, into a local directory.
  await sb.writeFile('/etc/rear/local.conf', bootableLocalConf(kernel, [
    'BACKUP=NETFS',
    `BACKUP_URL=file://${BACKUP_DIR}`,
    'BACKUP_ONLY_INCLUDE=yes',
    'BACKUP_PROG_INCLUDE=( /etc/rear-update )',
  ].join('\n')).replace('BACKUP=REQUESTRESTORE\n', ''));
  await sb.writeFile('/etc/rear-update/publish.conf', publishConf(srv.url), 0o644);
  await sb.writeFile('/etc/rear-update/token', `${t.json.token as string}\n`, 0o600);
  await sb.run([`${STAGE}/rear-update`, 'install-rear', '--server', srv.url, '--pubkey', `${STAGE}/server.pub`, '--exe', `${STAGE}/rear-update`, '--publish'], { cwd: '/root' });
}, { timeout: 900_000 });

after(async () => {
  await sb?.close();
  await srv?.close();
  cleanup(work);
});

describe('install-rear --publish with real ReaR 2.7', { timeout: 45 * 60_000 }, () => {
  test('the block in local.conf registers the publish as a ReaR exit task, for mkbackup and mkrescue only', async () => {
    const conf = await sb.readText('/etc/rear/local.conf');
    assert.match(conf, /# BEGIN rear-update install-rear[\s\S]*rear_update_publish_after[\s\S]*# END rear-update install-rear/);
    assert.match(conf, /\(mkbackup\|mkrescue\) QuietAddExitTask rear_update_publish_after/);
    const rec = JSON.parse(await sb.readText('/etc/rear-update/install-rear.json')) as { publish?: boolean };
    assert.equal(rec.publish, true);
  });

  test('a failing rear mkbackup (ReaR Error in its prep stage) publishes nothing', async (t) => {
    // A relative file:// URL: NETFS's prep stage stops with Error before anything is built.
    await sb.run(['sh', '-c', `cp /etc/rear/local.conf /root/local.conf.good && sed -i 's|^BACKUP_URL=.*|BACKUP_URL=file://relative/dir|' /etc/rear/local.conf`]);
    try {
      const r = await rear('mkbackup');
      t.diagnostic(`rear mkbackup (broken BACKUP_URL): exit ${r.status}`);
      assert.notEqual(r.status, 0, r.text);
      assert.match(r.text, /ERROR: .*relative\/dir/);
      assert.doesNotMatch(r.text + r.log, /rear-update: publishing/);
    } finally {
      await sb.run(['cp', '/root/local.conf.good', '/etc/rear/local.conf']);
    }
    assert.deepEqual(await versions(), []);
    assert.equal(await state(), null, 'no publish was attempted, so none was recorded');
  });

  test('rear mkbackup that succeeds publishes the host\'s configuration to the server (trigger rear)', async (t) => {
    const r = await rear('mkbackup');
    t.diagnostic(`rear -v mkbackup: exit ${r.status}`);
    assert.equal(r.status, 0, `${r.text}\n--- log (end)\n${r.log.slice(-15_000)}`);
    // The backup and the image are real.
    assert.equal((await sb.exec(['test', '-s', `${BACKUP_DIR}/${HOST}/backup.tar.gz`])).status, 0, (await sb.exec(['find', BACKUP_DIR])).text);
    assert.equal((await sb.exec(['sh', '-c', `ls ${BACKUP_DIR}/${HOST}/*.iso ${ISO_DIR}/${ISO_PREFIX}.iso 2>/dev/null`])).text === '', false);
    assert.match(r.text, /rear-update: publishing this host's configuration/);
    assert.match(r.text, /rear-update: published e229 version 1/);
    const v = await versions();
    assert.equal(v.length, 1);
    const s = await state();
    assert.ok(s);
    assert.equal(s.ok, true);
    assert.equal(s.trigger, 'rear');
    assert.equal(s.host, HOST);
    assert.equal(s.server, srv.url);
    assert.equal(s.version, 1);
    assert.equal(s.created, true);
    assert.equal(s.digest, v[0]!.digest, 'the state records the digest the server holds');
    // What reached the server is this host's ReaR configuration, the hook block included.
    const b = await api('GET', `/api/v1/hosts/${HOST}/versions/1`);
    assert.equal(b.status, 200, JSON.stringify(b.json));
    assert.ok(JSON.stringify(b.json).includes('etc/rear/local.conf'), JSON.stringify(b.json).slice(0, 2000));
  });

  test('rear mkrescue with the server down still exits 0; the failure is in publish-state.json', async (t) => {
    await sb.writeFile('/etc/rear-update/publish.conf', publishConf(`http://127.0.0.1:${await deadPort()}`), 0o644);
    const r = await rear('mkrescue');
    t.diagnostic(`rear -v mkrescue (server down): exit ${r.status}`);
    assert.equal(r.status, 0, `${r.text}\n--- log (end)\n${r.log.slice(-15_000)}`);
    assert.match(r.text, /rear-update: publish failed \(exit 7\)/);
    assert.match(r.text, /rear mkrescue itself succeeded/);
    const s = await state();
    assert.ok(s);
    assert.equal(s.ok, false);
    assert.equal(s.trigger, 'rear');
    assert.equal(s.code, 'SERVER_UNREACHABLE');
    assert.equal(s.version, null);
    assert.match(s.digest ?? '', /^[0-9a-f]{64}$/, 'the content it tried to send is recorded, for doctor');
    assert.equal((await versions()).length, 1, 'nothing new on the server');
  });
});
