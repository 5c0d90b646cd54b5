// Real ReaR against our real server (issue 4, "Real ReaR"): Debian's unmodified `rear` 2.7 runs
// its `recover` init stage in the overlay sandbox of test/support/rear-sandbox.ts (stopped right
// after the update step) and talks to `startServer` on 127.0.0.1:
//   - RECOVERY_UPDATE_URL=http://rear:TOKEN@127.0.0.1:PORT/rear/{host|mac}.tar.gz: ReaR's own
//     init/default/030_update_recovery_system.sh downloads the served bundle and extracts it at
//     the sandbox's / (never the real one); a wrong token is a 401 and rear fails;
//   - DRLM_MANAGED=y over HTTPS with the test's CA: ReaR's lib/drlm-functions.sh fetches
//     /clients/ID/config (the host's published local.conf) and sources it, and its streamed log
//     PUT is stored as a recovery log; another host's token is a 403 and rear fails.
// With install-rear's init script the run also reports its recovery (recover-started, apply's
// events, finished); rear-recovery-report.test.ts checks the exit statuses in detail.
// Every rear run is independent (own sandbox, own token or client), so they all run at once:
// ReaR's exit path alone sleeps 3 to 9 s per run.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, CLI, cliAsync, fakeSysRoot, tempDir, testCa } from '../helpers.ts';
import { drlmLocalConf, runRearRecoverInit, STOPPED_STATUS, type RearSandboxResult } from '../support/rear-sandbox.ts';
import { INIT_SCRIPT, INIT_SCRIPT_NAME } from '../../src/adapters/rear/boot-hook.ts';

const work = tempDir('ru-rear-real-');
const tag = randomBytes(6).toString('hex');
/** The marker the published local.conf sets: visible in rear's variables only when ReaR sourced it. */
const MARKER = 'REAR_REAL_TEST_MARKER';
const markerValue = (host: string): string => `${host}-${tag}`;
const MAC_E229 = '52:54:00:00:22:29';

/** The published files of a host: local.conf with its marker, a disk layout, a recovery file with binary content. */
const filesOf = new Map<string, Record<string, Buffer>>();
const hostFiles = (host: string): Record<string, Buffer> => {
  const known = filesOf.get(host);
  if (known) return known;
  const files = {
    'etc/rear/local.conf': Buffer.from(`# ${host}: published by rear-real.test.ts\nOUTPUT=ISO\n${MARKER}=${markerValue(host)}\n`),
    'etc/rear/site.conf': Buffer.from(`# site of ${host}\n`),
    'var/lib/rear/layout/disklayout.conf': Buffer.from(`# ${host} ${tag}\ndisk /dev/sda 21474836480 gpt\npart /dev/sda 536870912 1048576 rear-noname boot,esp /dev/sda1\n`),
    [`var/lib/rear/recovery/rear-real-${tag}.bin`]: randomBytes(3000),
  };
  filesOf.set(host, files);
  return files;
};
/** Every path the update tests look at, in the sandbox and on the real /. */
const UPDATE_PATHS = [...Object.keys(hostFiles('x')).map((p) => `/${p}`), '/var/lib/rear-update/bundle/manifest.json', '/recovery-update.tar.gz'];

function hostTree(host: string): string {
  const root = join(work, `tree-${host}`);
  for (const [p, content] of Object.entries(hostFiles(host))) {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), content, { mode: 0o644 });
  }
  return root;
}

/** A /sys with one NIC of the given MAC, and a hostname, so a publish records chosen facts. */
function sysRoot(host: string, mac: string): string {
  const root = join(work, `sys-${host}`);
  return existsSync(root) ? root : fakeSysRoot(root, [mac], `${host}.example.com`);
}

interface Srv {
  readonly running: Running;
  readonly admin: string;
  readonly port: number;
  readonly ca?: Buffer;
}

interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A raw request to one of our servers (admin bearer token unless `auth` is given). */
function req(s: Srv, method: string, path: string, opts: { auth?: string; json?: unknown } = {}): Promise<Answer> {
  const u = new URL(path, s.running.url);
  const body = opts.json === undefined ? undefined : JSON.stringify(opts.json);
  const headers: Record<string, string> = { authorization: opts.auth ?? `Bearer ${s.admin}`, ...(body ? { 'content-type': 'application/json' } : {}) };
  return new Promise((resolve, reject) => {
    const onRes = (res: http.IncomingMessage): void => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    };
    const r = u.protocol === 'https:' ? https.request(u, { method, headers, ca: s.ca }, onRes) : http.request(u, { method, headers }, onRes);
    r.on('error', reject);
    r.end(body);
  });
}

async function getJson<T>(s: Srv, path: string): Promise<T> {
  const r = await req(s, 'GET', path);
  assert.equal(r.status, 200, `GET ${path}: ${r.body.toString()}`);
  return JSON.parse(r.body.toString('utf8')) as T;
}

/** A fetch token for one host: the secret, and its id (the part between ru_ and the secret). */
async function fetchToken(s: Srv, host: string): Promise<{ token: string; id: string }> {
  const r = await req(s, 'POST', '/api/v1/tokens', { json: { scope: `fetch:${host}`, label: `rear-real ${host}` } });
  assert.equal(r.status, 201, r.body.toString());
  const token = (JSON.parse(r.body.toString('utf8')) as { token: string }).token;
  const id = /^ru_([0-9a-f]+)_/.exec(token)?.[1];
  assert.ok(id, token);
  return { token, id };
}

async function publish(s: Srv, host: string, mac: string): Promise<void> {
  const env: Record<string, string> = s.ca ? { NODE_EXTRA_CA_CERTS: join(work, 'tls/ca.pem') } : {};
  const r = await cliAsync(['publish', '--server', s.running.url, '--token', s.admin, '--root', hostTree(host), '--host', host, '--sys-root', sysRoot(host, mac)], { env });
  assert.equal(r.status, 0, `publish ${host} to ${s.running.url}: ${r.stderr}${r.stdout}`);
  assert.match(r.stdout, new RegExp(`published ${host} version 1`));
}

async function start(name: string, tls?: { cert: string; key: string; ca: Buffer }): Promise<Srv> {
  const data = join(work, `data-${name}`);
  const running = await startServer(loadConfig({ data, listen: '127.0.0.1:0', ...(tls ? { tlsCert: tls.cert, tlsKey: tls.key } : {}) }, {}), { log: false });
  const admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  return { running, admin, port: Number(new URL(running.url).port), ...(tls ? { ca: tls.ca } : {}) };
}

interface AuditEvent { kind: string; token: string | null; host: string | null; version: number | null; bytes: number | null; result: string; detail: string | null }
const auditOf = async (s: Srv, query: string): Promise<AuditEvent[]> => (await getJson<{ events: AuditEvent[] }>(s, `/api/v1/audit?${query}`)).events;

/** What the real / holds at the update paths (sha256 or null): the runs must not change it. */
const realState = (): Record<string, string | null> =>
  Object.fromEntries(UPDATE_PATHS.map((p) => [p, existsSync(p) ? createHash('sha256').update(readFileSync(p)).digest('hex') : null]));

const show = (r: RearSandboxResult): string => `status ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}--- sandbox\n${r.sandboxLog}--- log\n${r.log}`;

describe('real ReaR 2.7 against our server on 127.0.0.1', { timeout: 300_000, concurrency: true }, () => {
  let plain: Srv; // http: RECOVERY_UPDATE_URL
  let tls: Srv; // https with the test's CA: DRLM
  let caPem = '';
  let realBefore: Record<string, string | null> = {};

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the rear sandbox needs root (mount namespaces, overlayfs)');
    assert.match(execFileSync('rear', ['-V'], { encoding: 'utf8' }), /^Relax-and-Recover 2\.7 /, 'rear 2.7 must be installed (scripts/ensure-system-deps.sh)');
    assert.ok(existsSync(CLI), `${CLI} is missing: run node scripts/build.mjs`);
    realBefore = realState();

    // A CA and a server certificate for 127.0.0.1 (IP SAN), as an admin would make them.
    const ca = testCa(join(work, 'tls'), 'rear-real test CA');
    caPem = ca.caPem;

    [plain, tls] = await Promise.all([start('http'), start('https', { cert: ca.cert, key: ca.key, ca: Buffer.from(caPem) })]);
    assert.match(plain.running.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(tls.running.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    await Promise.all([publish(plain, 'e229', MAC_E229), publish(tls, 'e229', MAC_E229), publish(tls, 'e230', '52:54:00:00:22:30')]);
  });

  after(async () => {
    await Promise.all([plain?.running.close(), tls?.running.close()]);
    cleanup(work);
  });

  describe('RECOVERY_UPDATE_URL=http://rear:TOKEN@127.0.0.1:PORT/rear/... (init/default/030_update_recovery_system.sh)', { concurrency: true }, () => {
    /** A run that downloaded e229's bundle: its files in the sandbox's /, byte for byte; the real / unchanged. */
    async function assertUpdated(r: RearSandboxResult, url: string, tokenId: string): Promise<void> {
      assert.equal(r.status, STOPPED_STATUS, show(r));
      assert.ok(r.stopped);
      assert.ok(r.stdout.includes(`Updating recovery system with the content from '${url}'`), r.stdout);
      assert.match(r.stdout, /Updated recovery system\./);
      for (const [p, content] of Object.entries(hostFiles('e229'))) {
        assert.ok(r.written.includes(`/${p}`), `${p} was not written by the run: ${r.written.join(' ')}`);
        assert.ok(r.readFile(`/${p}`).equals(content), `/${p} in the sandbox differs from the published file`);
      }
      // The served bundle's own manifest comes along (harmless): it names the host and its version.
      const m = JSON.parse(r.readText('/var/lib/rear-update/bundle/manifest.json')) as { host: string; version: number; served: string | null; entries: { path: string; sha256?: string }[] };
      assert.equal(m.host, 'e229');
      assert.equal(m.version, 1);
      assert.ok(m.served !== null && Math.abs(Date.parse(m.served) - Date.now()) < 300_000, String(m.served));
      const sums = Object.fromEntries(m.entries.map((e) => [e.path, e.sha256]));
      for (const [p, content] of Object.entries(hostFiles('e229'))) assert.equal(sums[p], createHash('sha256').update(content).digest('hex'), p);
      // The local.conf this run started with is replaced, but it was sourced before 030: the marker is unset.
      assert.deepEqual(r.vars, { RECOVERY_UPDATE_URL: url });
      // The server audited this fetch with this token: the bytes curl saved.
      const ev = (await auditOf(plain, 'kind=fetch&host=e229')).filter((e) => e.token === tokenId);
      assert.deepEqual(ev.map((e) => [e.result, e.version, e.bytes, e.detail]), [['ok', 1, r.readFile('/recovery-update.tar.gz').length, 'rear']]);
    }

    test('/rear/e229.tar.gz with a fetch token as the Basic password: the served files land in the sandbox\'s / only', async () => {
      const { token, id } = await fetchToken(plain, 'e229');
      const url = `http://rear:${token}@127.0.0.1:${plain.port}/rear/e229.tar.gz`;
      const r = await runRearRecoverInit({ localConf: `RECOVERY_UPDATE_URL=${url}\n`, vars: [MARKER, 'RECOVERY_UPDATE_URL'] });
      await assertUpdated(r, url, id);
      assert.deepEqual(realState(), realBefore, 'the update reached the real /');
      assert.ok(!readFileSync('/etc/rear/local.conf', 'utf8').includes(tag));
    });

    test(`/rear/${MAC_E229}.tar.gz (the MAC the publish recorded) serves the same host`, async () => {
      const { token, id } = await fetchToken(plain, 'e229');
      const url = `http://rear:${token}@127.0.0.1:${plain.port}/rear/${MAC_E229}.tar.gz`;
      const r = await runRearRecoverInit({ localConf: `RECOVERY_UPDATE_URL=${url}\n`, vars: [MARKER, 'RECOVERY_UPDATE_URL'] });
      await assertUpdated(r, url, id);
      assert.deepEqual(realState(), realBefore, 'the update reached the real /');
    });

    test('a wrong token: HTTP 401, rear fails with its own error, no host file in the sandbox', async () => {
      const { id } = await fetchToken(plain, 'e229');
      // A well-formed token whose secret is wrong.
      const wrong = `ru_${id}_${randomBytes(32).toString('base64url')}`;
      const url = `http://rear:${wrong}@127.0.0.1:${plain.port}/rear/e229.tar.gz`;
      const localConf = `RECOVERY_UPDATE_URL=${url}\n`;
      const r = await runRearRecoverInit({ localConf });
      assert.equal(r.status, 143, show(r)); // Error() terminates rear's main process
      assert.equal(r.stopped, false);
      assert.ok(r.log.includes(`ERROR: curl '${url}' failed with HTTP response code '401'.`), r.log);
      assert.equal(r.readText('/etc/rear/local.conf'), localConf);
      // The harness wrote local.conf (checked above); nothing of the bundle came in.
      for (const p of UPDATE_PATHS.filter((p) => p !== '/etc/rear/local.conf')) assert.ok(!r.written.includes(p), `${p} was written: ${r.written.join(' ')}`);
      for (const p of Object.keys(hostFiles('e229')).filter((p) => !p.startsWith('etc/'))) assert.equal(r.exists(`/${p}`), false, p);
      const ev = (await auditOf(plain, 'kind=fetch&host=e229&result=AUTH_INVALID'));
      assert.equal(ev.length, 1, JSON.stringify(ev));
      assert.equal(ev[0]!.bytes, null);
      // What curl got, asked the same way: 401 with a JSON error.
      const again = await req(plain, 'GET', '/rear/e229.tar.gz', { auth: `Basic ${Buffer.from(`rear:${wrong}`).toString('base64')}` });
      assert.equal(again.status, 401);
      assert.equal((JSON.parse(again.body.toString('utf8')) as { error: { code: string } }).error.code, 'AUTH_INVALID');
      assert.deepEqual(realState(), realBefore);
    });
  });

  describe('rear recover ID=e229 (install-rear\'s init/default/015_rear_update.sh)', { concurrency: true }, () => {
    test('installs e229\'s bundle with rear-update before 030 and re-sources it: this very run has e229\'s local.conf', async () => {
      const { token } = await fetchToken(plain, 'e229');
      const serverPub = readFileSync(join(work, 'data-http', 'server.pub'), 'utf8');
      const r = await runRearRecoverInit({
        // The image's own configuration: the template's, which the run must NOT recover with.
        localConf: `OUTPUT=ISO\n${MARKER}=template-image\n`,
        args: ['ID=e229'],
        vars: [MARKER],
        files: {
          [`/usr/share/rear/init/default/${INIT_SCRIPT_NAME}`]: INIT_SCRIPT,
          '/usr/sbin/rear-update': { content: `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, mode: 0o755 },
          '/etc/rear-update/settings.conf': { content: `REAR_UPDATE_SERVER=${plain.running.url}\nREAR_UPDATE_TOKEN=${token}\n`, mode: 0o600 },
          '/etc/rear-update/keys/server.pub': serverPub,
        },
      });
      assert.equal(r.status, STOPPED_STATUS, show(r));
      assert.deepEqual(r.vars, { [MARKER]: markerValue('e229') }, 'ReaR read the freshly installed local.conf in the same run');
      assert.ok(r.readFile('/etc/rear/local.conf').equals(hostFiles('e229')['etc/rear/local.conf']!));
      assert.match(r.stdout, /rear-update: installing the configuration of host e229/);
      const installed = JSON.parse(r.readText('/var/lib/rear-update/installed.json')) as { host: string; key: string | null };
      assert.equal(installed.host, 'e229');
      assert.ok(installed.key, 'verified against the server key');
      // One recovery for the whole run: the init script opened it (recover-started), its apply
      // added to it (recovery.json), and ReaR's exit task ended it: the harness's stop is an
      // exit from an init script, not a success.
      const { id } = JSON.parse(r.readText('/run/rear-update/recovery.json')) as { id: number };
      const { recovery, events } = await getJson<{ recovery: { host: string | null; phase: string; exitStatus: number | null }; events: { kind: string; detail: Record<string, unknown> }[] }>(plain, `/api/v1/recoveries/${id}`);
      const kinds = events.map((e) => e.kind);
      assert.deepEqual(kinds.filter((k, i) => kinds.indexOf(k) === i), ['booted', 'recover-started', 'resolving', 'resolved', 'fetched', 'verified', 'applied', 'finished'], kinds.join(' '));
      assert.deepEqual(events.find((e) => e.kind === 'resolving')?.detail, { id: 'e229' });
      assert.deepEqual([recovery.host, recovery.phase], ['e229', 'failed']);
      assert.notEqual(recovery.exitStatus, 0);
    });

    test('a host the server does not know: rear fails with rear-update\'s message, nothing of it installed', async () => {
      const { token } = await fetchToken(plain, 'e229');
      const r = await runRearRecoverInit({
        localConf: `OUTPUT=ISO\n${MARKER}=template-image\n`,
        args: ['ID=e229-no-such-host'],
        files: {
          [`/usr/share/rear/init/default/${INIT_SCRIPT_NAME}`]: INIT_SCRIPT,
          '/usr/sbin/rear-update': { content: `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, mode: 0o755 },
          '/etc/rear-update/settings.conf': { content: `REAR_UPDATE_SERVER=${plain.running.url}\nREAR_UPDATE_TOKEN=${token}\n`, mode: 0o600 },
          '/etc/rear-update/keys/server.pub': readFileSync(join(work, 'data-http', 'server.pub'), 'utf8'),
        },
      });
      assert.notEqual(r.status, STOPPED_STATUS, show(r));
      assert.ok(!r.stopped);
      assert.match(r.stderr + r.stdout, /rear-update apply e229-no-such-host failed/);
      assert.ok(!r.written.includes('/var/lib/rear-update/installed.json'));
    });
  });

  describe('a class layer that adds a ReaR init script', { concurrency: true }, () => {
    test('installed by rear-update before rear starts: the real rear recover init stage that follows runs the new script', async () => {
      // Host e231 of class typeL; the layer adds init/default/020_rear_update_layer_test.sh to
      // ReaR's share directory (--overlay: it owns nothing, so ReaR's own scripts stay).
      const add = await req(plain, 'POST', '/api/v1/hosts', { json: { id: 'e231', class: 'typeL' } });
      assert.equal(add.status, 201, add.body.toString());
      await publish(plain, 'e231', '52:54:00:00:22:31');
      const layerRoot = join(work, 'layer-rear-scripts');
      mkdirSync(join(layerRoot, 'usr/share/rear/init/default'), { recursive: true });
      writeFileSync(join(layerRoot, 'usr/share/rear/init/default/020_rear_update_layer_test.sh'), `# from a rear-update layer\nLogPrint "rear-update layer script running"\n${MARKER}=from-layer-${tag}\n`, { mode: 0o644 });
      const p = await cliAsync(['publish', '--server', plain.running.url, '--token', plain.admin, '--layer', 'rear-scripts', '--class', 'typeL', '--overlay',
        '--root', layerRoot, '--path', 'usr/share/rear/init/default/020_rear_update_layer_test.sh']);
      assert.equal(p.status, 0, p.stderr);
      assert.match(p.stdout, /published layer typeL\/rear-scripts version 1/);
      const { token } = await fetchToken(plain, 'e231');
      const r = await runRearRecoverInit({
        localConf: `OUTPUT=ISO\n${MARKER}=template-image\n`,
        before: 'rear-update apply e231\n',
        vars: [MARKER],
        files: {
          '/usr/sbin/rear-update': { content: `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, mode: 0o755 },
          '/etc/rear-update/settings.conf': { content: `REAR_UPDATE_SERVER=${plain.running.url}\nREAR_UPDATE_TOKEN=${token}\n`, mode: 0o600 },
          '/etc/rear-update/keys/server.pub': readFileSync(join(work, 'data-http', 'server.pub'), 'utf8'),
        },
      });
      assert.equal(r.status, STOPPED_STATUS, show(r));
      assert.match(r.log, /Including init\/default\/020_rear_update_layer_test\.sh/);
      assert.match(r.stdout, /rear-update layer script running/);
      // The script ran after local.conf was read (the host's, installed before rear started).
      assert.deepEqual(r.vars, { [MARKER]: `from-layer-${tag}` });
      const installed = JSON.parse(r.readText('/var/lib/rear-update/installed.json')) as { host: string; layers?: { name: string }[] };
      assert.equal(installed.host, 'e231');
      assert.deepEqual(installed.layers?.map((l) => l.name), ['rear-scripts', 'e231']);
      // ReaR's own init scripts are all still there (the layer owns nothing).
      assert.ok(r.readText('/usr/share/rear/init/default/030_update_recovery_system.sh').length > 0);
    });
  });

  describe('DRLM_MANAGED=y over https with the test\'s CA (lib/drlm-functions.sh)', { concurrency: true }, () => {
    const caFile = '/etc/rear/cert/rear-real-ca.pem';
    const DRLM_VARS = [MARKER, 'DRLM_MANAGED', 'DRLM_SERVER', 'DRLM_ID', 'DRLM_REST_OPTS'];

    test('config fetched from /clients/e229/config and sourced; the streamed log PUT is stored as host e229\'s recover log', async () => {
      const { token, id } = await fetchToken(tls, 'e229');
      // -H Authorization:TOKEN, no space: ReaR expands $DRLM_REST_OPTS unquoted (see the harness header).
      const restOpts = `--cacert ${caFile} -H Authorization:${token}`;
      const r = await runRearRecoverInit({
        localConf: 'DRLM_MANAGED=y\n',
        files: { [caFile]: caPem },
        args: [`SERVER=127.0.0.1:${tls.port}`, 'ID=e229', `REST_OPTS=${restOpts}`],
        vars: DRLM_VARS,
      });
      assert.equal(r.status, STOPPED_STATUS, show(r));
      assert.deepEqual(r.vars, {
        [MARKER]: markerValue('e229'),
        DRLM_MANAGED: 'y',
        DRLM_SERVER: `127.0.0.1:${tls.port}`,
        DRLM_ID: 'e229',
        DRLM_REST_OPTS: restOpts,
      });
      assert.match(r.log, /DRLM_MANAGED: Loading configuration from DRLM \.\.\./);
      const fetched = (await auditOf(tls, 'kind=fetch&host=e229')).filter((e) => e.token === id);
      assert.deepEqual(fetched.map((e) => [e.result, e.version, e.bytes, e.detail]), [['ok', 1, hostFiles('e229')['etc/rear/local.conf']!.length, 'drlm etc/rear/local.conf']]);

      // The log upload: rear has exited, curl ended its PUT; the server finishes storing it.
      type Log = { id: number; host: string; workflow: string; stamp: string; address: string | null; bytes: number; complete: boolean };
      let logs: Log[] = [];
      for (let i = 0; i < 50; i++) {
        logs = (await getJson<{ logs: Log[] }>(tls, '/api/v1/hosts/e229/logs')).logs;
        if (logs.length > 0 && logs.every((l) => l.complete)) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(logs.length, 1, JSON.stringify(logs));
      const log = logs[0]!;
      assert.equal(log.host, 'e229');
      assert.equal(log.workflow, 'recover');
      assert.match(log.stamp, /^\d{14}$/);
      assert.equal(log.complete, true, JSON.stringify(log));
      const content = await req(tls, 'GET', `/api/v1/logs/${log.id}`);
      assert.equal(content.status, 200, content.body.toString());
      assert.equal(content.headers['x-rear-update-log-complete'], 'true');
      const text = content.body.toString('utf8');
      assert.equal(content.body.length, log.bytes);
      assert.match(text, /^\S+ \S+ Relax-and-Recover 2\.7 /);
      assert.match(text, /DRLM_MANAGED: Loading configuration from DRLM \.\.\./);
      assert.match(text, /DRLM_MANAGED: Sending Logfile: '\/var\/log\/rear\/rear-[^']+\.log' to DRLM in real time/);
      assert.match(text, /Including init\/default\/031_rear_update_test_stop\.sh\n/);
      // What the server stored is the beginning of the log ReaR kept in the sandbox, except the
      // token: ReaR logs DRLM_REST_OPTS with it (token leak through recovery logs), and the
      // server stores only its id.
      assert.ok(r.log.includes(token), 'ReaR logs the token it was given');
      assert.ok(!text.includes(token), 'the server stored the token in the recovery log');
      const tokenId = token.slice(3, 15);
      assert.ok(r.log.replaceAll(token, `ru_${tokenId}_[redacted]`).startsWith(text), `${text}\n----\n${r.log}`);
      const logEvents = (await auditOf(tls, 'kind=log&host=e229')).filter((e) => e.token === id);
      assert.deepEqual(logEvents.map((e) => e.result).sort(), ['ok', 'ok'], JSON.stringify(logEvents));
      assert.ok(logEvents.some((e) => e.bytes === log.bytes), JSON.stringify(logEvents));
    });

    test('a token of another host (e230) asking for e229\'s config: 403, rear fails before sourcing anything', async () => {
      const { token, id } = await fetchToken(tls, 'e230');
      const r = await runRearRecoverInit({
        localConf: drlmLocalConf(tls.port, 'e229', `"--cacert ${caFile} -H Authorization:${token}"`),
        files: { [caFile]: caPem },
        vars: DRLM_VARS,
      });
      assert.equal(r.status, 143, show(r));
      assert.equal(r.stopped, false);
      assert.match(r.log, /DRLM_MANAGED: curl failed with HTTP response code '403' trying to load configuration from DRLM\./);
      assert.ok(!r.log.includes(markerValue('e229')), 'e229\'s config reached the run');
      const ev = (await auditOf(tls, 'kind=fetch&host=e229')).filter((e) => e.token === id);
      assert.deepEqual(ev.map((e) => e.result), ['FORBIDDEN']);
      assert.deepEqual((await auditOf(tls, 'kind=log')).filter((e) => e.token === id), []);
      // The same token still works for its own host: the 403 is about scope, not a bad token.
      const own = await req(tls, 'GET', '/clients/e230/config', { auth: token });
      assert.equal(own.status, 200);
      assert.ok(own.body.equals(hostFiles('e230')['etc/rear/local.conf']!));
    });
  });
});
