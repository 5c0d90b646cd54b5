// Issue 5 in a rescue system: an isolated copy of this machine posing as a ReaR rescue system
// (test/support/rear-sandbox.ts: /etc/rear-release, the image's /etc/rear, the one-file
// executable in /bin, the image's /etc/rear-update) runs the boot hook exactly as ReaR's
// /etc/scripts/system-setup does (sourced), against our real server on 127.0.0.1, then Debian's
// real `rear recover` init stage. What must hold:
//   - the hook installs the host's bundle and the recovery that follows runs with the host's
//     configuration (a variable set only in the host's local.conf is visible to rear), while
//     the image's rescue.conf survives;
//   - an unknown machine goes pending, and completes after `admin assign`;
//   - a bad signature stops with a clear message and an untouched root, and `rear recover`
//     then refuses to run with the image's own configuration (the guard);
//   - by hand in the rescue shell: `rear-update apply e229` and `rear-update apply URL` with
//     server, token and keys from the image's settings;
//   - the recovery log reaches the server while rear runs.
//   - with the server down, the hook applies from an offline export (docs/export.md).

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BOOT_HOOK, HOOK_NAME } from '../../src/adapters/rear/boot-hook.ts';
import { encodeSettings } from '../../src/cli/settings.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, cli, cliAsync, EXE, jsonRequest, makeTree, tempDir } from '../helpers.ts';
import { runRearRecoverInit, type RearSandboxResult } from '../support/rear-sandbox.ts';

const work = tempDir('ru-rescue-boot-');
let srv: Running;
let admin: string;
let fetchClass: string;
const exe = readFileSync(EXE);

const HOST_CONF = 'OUTPUT=ISO\nHOST_ONLY_VAR=e229-configuration\n';
const TEMPLATE_CONF = 'OUTPUT=ISO\nHOST_ONLY_VAR=template-configuration\n';

const api = (method: string, path: string, body?: unknown): ReturnType<typeof jsonRequest> => jsonRequest(srv.url, admin, method, path, body);

/** The image as mkrescue would have made it (see test/integration/install-rear.test.ts for that part). */
function image(opts: { pub?: string; token?: string; idFrom?: string } = {}): Record<string, string | Buffer | { content: string | Buffer; mode: number }> {
  return {
    // /bin is a symlink to usr/bin here (merged /usr); in ReaR's image it is a directory.
    '/usr/bin/rear-update': { content: exe, mode: 0o755 },
    [`/etc/scripts/system-setup.d/${HOOK_NAME}`]: BOOT_HOOK,
    '/etc/rear/rescue.conf': '# written by mkrescue into the image only\nRESCUE_ONLY_VAR=from-the-image\n',
    '/etc/rear/site.conf': '# the template host\'s site.conf: stale for e229\n',
    '/etc/rear-update/keys/server.pub': opts.pub ?? readFileSync(join(work, 'data/server.pub'), 'utf8'),
    '/etc/rear-update/settings.conf': {
      content: encodeSettings({
        REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN: opts.token ?? fetchClass, REAR_UPDATE_ID_FROM: opts.idFrom ?? 'mac',
        REAR_UPDATE_WAIT: '120', REAR_UPDATE_KEEP: 'etc/rear/rescue.conf', REAR_UPDATE_RETRY_FOR: '0',
      }, 'test image settings'),
      mode: 0o600,
    },
  };
}

/** What ReaR's system-setup does with the hook: source it (with a chosen kernel command line). */
const bootHook = (cmdline: string): string => `export REAR_UPDATE_CMDLINE='${cmdline}'\nsource /etc/scripts/system-setup.d/${HOOK_NAME}\n`;

const VARS = ['HOST_ONLY_VAR', 'RESCUE_ONLY_VAR'];
const env = { REAR_UPDATE_POLL_MS: '300' };

function explain(r: RearSandboxResult): string {
  return `hook (${r.beforeStatus}):\n${r.beforeOutput}\nrear (${r.status}):\n${r.stdout}${r.stderr}`;
}

before(async () => {
  srv = await startServer(loadConfig({ data: join(work, 'data'), listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(work, 'data/admin.token'), 'utf8').trim();
  assert.equal((await api('POST', '/api/v1/hosts', { id: 'e229', class: 'typeA' })).status, 201);
  const tree = join(work, 'tree');
  makeTree(tree, { etc: { rear: { 'local.conf': HOST_CONF } }, var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/vda 10737418240 gpt\n' } } } } });
  const pub = await cliAsync(['publish', '--server', srv.url, '--token', admin, '--root', tree, '--host', 'e229', '--sys-root', join(work, 'nosys')]);
  assert.equal(pub.status, 0, pub.stderr);
  const t = await api('POST', '/api/v1/tokens', { scope: 'fetch-class:typeA', label: 'typeA image' });
  assert.equal(t.status, 201);
  fetchClass = t.json.token as string;
});
after(async () => {
  await srv?.close();
  cleanup(work);
});

test('boot hook with rear_update=id=e229: the host bundle is installed, rear recover runs with the host\'s configuration, rescue.conf survives, the log reaches the server', async () => {
  const r = await runRearRecoverInit({ localConf: TEMPLATE_CONF, files: image(), before: bootHook('quiet rear_update=id=e229'), vars: VARS, env });
  assert.equal(r.beforeStatus, 0, explain(r));
  assert.match(r.beforeOutput, /fetching the configuration of e229/);
  assert.ok(r.stopped, explain(r));
  // rear read its configuration after the hook: the host's, not the template's.
  assert.equal(r.vars.HOST_ONLY_VAR, 'e229-configuration');
  assert.equal(r.vars.RESCUE_ONLY_VAR, 'from-the-image');
  assert.equal(r.readText('/etc/rear/local.conf'), HOST_CONF);
  assert.equal(r.readText('/var/lib/rear/layout/disklayout.conf'), 'disk /dev/vda 10737418240 gpt\n');
  assert.ok(!r.exists('/etc/rear/site.conf'), 'the template\'s stale site.conf was removed (owned path)');
  assert.doesNotMatch(r.readText('/etc/rear/rescue.conf'), /rear-update guard/, 'the guard is lifted after success');
  // The recovery log went to the server while rear ran.
  let logs: { id: number; workflow: string; bytes: number }[] = [];
  for (let i = 0; i < 50 && logs.length === 0; i++) {
    logs = (await api('GET', '/api/v1/hosts/e229/logs')).json?.logs ?? [];
    if (logs.length === 0) await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(logs.length, 1, 'one recovery log for e229');
  assert.equal(logs[0]!.workflow, 'recover');
  const text = await new Promise<string>((resolve, reject) => {
    http.get(new URL(`/api/v1/logs/${logs[0]!.id}`, srv.url), { headers: { authorization: `Bearer ${admin}` } }, (res) => {
      let t = '';
      res.on('data', (c: Buffer) => (t += c.toString()));
      res.on('end', () => resolve(t));
    }).on('error', reject);
  });
  assert.match(text, /Relax-and-Recover/);
});

test('an unknown machine goes pending with the hook, and completes after admin assign', async () => {
  const run = runRearRecoverInit({ localConf: TEMPLATE_CONF, files: image(), before: bootHook('quiet'), vars: VARS, env });
  let pending: { id: number } | undefined;
  for (let i = 0; i < 600 && !pending; i++) {
    await new Promise((res) => setTimeout(res, 200));
    pending = ((await api('GET', '/api/v1/pending')).json?.pending as { id: number }[] | undefined)?.[0];
  }
  assert.ok(pending, 'the rescue system was recorded as pending');
  assert.equal((await api('POST', '/api/v1/assign', { pending: String(pending.id), host: 'e229' })).status, 200);
  const r = await run;
  assert.equal(r.beforeStatus, 0, explain(r));
  assert.match(r.beforeOutput, /PENDING as machine \d+/);
  assert.match(r.beforeOutput, /resolved this machine to host e229 \(by assignment\)/);
  assert.ok(r.stopped, explain(r));
  assert.equal(r.vars.HOST_ONLY_VAR, 'e229-configuration');
});

test('bad signature (the image trusts another key): the hook stops with a clear message, the root is untouched, rear recover refuses to run', async () => {
  const other = join(work, 'other');
  assert.equal(cli(['keygen', '--out', other]).status, 0);
  const r = await runRearRecoverInit({ localConf: TEMPLATE_CONF, files: image({ pub: readFileSync(join(other, 'rear-update.pub'), 'utf8') }), before: bootHook('rear_update=id=e229'), vars: VARS, env });
  assert.equal(r.beforeStatus, 1, explain(r));
  assert.doesNotMatch(r.beforeOutput, /Relax-and-Recover/, "the hook must not run rear itself");
  assert.match(r.beforeOutput, /BUNDLE_KEY_UNTRUSTED/);
  assert.match(r.beforeOutput, /FAILED \(exit 4\)/);
  assert.equal(r.readText('/etc/rear/local.conf'), TEMPLATE_CONF);
  assert.ok(r.exists('/etc/rear/site.conf'));
  assert.ok(!r.written.some((p) => p.startsWith('/var/lib/rear/') || p.startsWith('/var/lib/rear-update/')), r.written.join('\n'));
  assert.ok(!r.stopped, 'rear recover must not run with the image\'s own configuration');
  assert.match(r.stdout + r.stderr + r.log, /rear-update has not installed this host's configuration/);
});

test('by hand in the rescue shell: `rear-update apply e229` and `rear-update apply URL` take server, token and keys from the image', async () => {
  const byId = runRearRecoverInit({ localConf: TEMPLATE_CONF, files: image(), before: 'rear-update apply e229 -q --keep etc/rear/rescue.conf\n', vars: VARS, env });
  const byUrl = runRearRecoverInit({ localConf: TEMPLATE_CONF, files: image(), before: `rear-update apply ${srv.url}/e229.tar.gz -q\n`, vars: VARS, env });
  for (const r of await Promise.all([byId, byUrl])) {
    assert.equal(r.beforeStatus, 0, explain(r));
    assert.ok(r.stopped, explain(r));
    assert.equal(r.vars.HOST_ONLY_VAR, 'e229-configuration');
  }
});

test('kernel command line: rear_update=off leaves the image as it is; rear_update=server=...,id=...,token=... overrides the image; no network: bounded retries, then a clear failure', async () => {
  const noServer = image();
  // An image without server or token: everything comes from the kernel command line.
  noServer['/etc/rear-update/settings.conf'] = { content: encodeSettings({ REAR_UPDATE_RETRY_FOR: '0' }, 'no server'), mode: 0o600 };
  const unreachable = image();
  unreachable['/etc/rear-update/settings.conf'] = {
    content: encodeSettings({ REAR_UPDATE_SERVER: 'http://127.0.0.1:9', REAR_UPDATE_TOKEN: fetchClass, REAR_UPDATE_RETRY_FOR: '5' }, 'dead server'),
    mode: 0o600,
  };
  const [off, cmdline, dead] = await Promise.all([
    runRearRecoverInit({ localConf: TEMPLATE_CONF, files: image(), before: bootHook('quiet rear_update=off'), vars: VARS, env }),
    runRearRecoverInit({ localConf: TEMPLATE_CONF, files: noServer, before: bootHook(`rear_update=server=${srv.url},id=e229,token=${fetchClass}`), vars: VARS, env }),
    runRearRecoverInit({ localConf: TEMPLATE_CONF, files: unreachable, before: bootHook('rear_update=id=e229'), vars: VARS, env }),
  ]);
  assert.equal(off.beforeStatus, 0, explain(off));
  assert.match(off.beforeOutput, /disabled on the kernel command line/);
  assert.ok(off.stopped, explain(off));
  assert.equal(off.vars.HOST_ONLY_VAR, 'template-configuration');

  assert.equal(cmdline.beforeStatus, 0, explain(cmdline));
  assert.ok(cmdline.stopped, explain(cmdline));
  assert.equal(cmdline.vars.HOST_ONLY_VAR, 'e229-configuration');

  assert.equal(dead.beforeStatus, 1, explain(dead));
  assert.match(dead.beforeOutput, /error (DOWNLOAD_FAILED|SERVER_UNREACHABLE)/);
  assert.match(dead.beforeOutput, /FAILED \(exit 7\)/);
  assert.ok(!dead.stopped, 'rear recover must not run with the image\'s own configuration');
  assert.equal(dead.readText('/etc/rear/local.conf'), TEMPLATE_CONF);
});

test('on a console, a failed update offers the choices; "continue without the update" lifts the guard and rear recover runs with the image\'s configuration', async () => {
  const other = join(work, 'other-console');
  assert.equal(cli(['keygen', '--out', other]).status, 0);
  // A terminal for the hook: script(1) gives it a pty and types the operator's answer.
  const before = `printf '3\\n' | script -qec "bash -c 'export REAR_UPDATE_CMDLINE=rear_update=id=e229; source /etc/scripts/system-setup.d/${HOOK_NAME}'" /dev/null\n`;
  const r = await runRearRecoverInit({ localConf: TEMPLATE_CONF, files: image({ pub: readFileSync(join(other, 'rear-update.pub'), 'utf8') }), before, vars: VARS, env });
  assert.match(r.beforeOutput, /What now\?/, explain(r));
  assert.match(r.beforeOutput, /1\) retry/);
  assert.match(r.beforeOutput, /2\) give the host id to recover/);
  assert.match(r.beforeOutput, /3\) continue WITHOUT the update/);
  assert.match(r.beforeOutput, /continuing without update/);
  assert.ok(r.stopped, explain(r));
  assert.equal(r.vars.HOST_ONLY_VAR, 'template-configuration');
});

test('server down, offline export in a local directory (rear_update=export=/path): the hook applies e229 from it after its retries, and rear recover runs with e229\'s configuration', async () => {
  // The export an admin made while the server lived; the image finds it at /srv/rear-export.
  const dir = join(work, 'export');
  const made = await cliAsync(['admin', 'export', dir, '--host', 'e229', '--server', srv.url, '--token', admin]);
  assert.equal(made.status, 0, made.stderr);
  const files = image();
  files['/etc/rear-update/settings.conf'] = {
    content: encodeSettings({ REAR_UPDATE_SERVER: 'http://127.0.0.1:9', REAR_UPDATE_TOKEN: fetchClass, REAR_UPDATE_RETRY_FOR: '0', REAR_UPDATE_KEEP: 'etc/rear/rescue.conf' }, 'dead server'),
    mode: 0o600,
  };
  for (const f of readdirSync(dir)) files[`/srv/rear-export/${f}`] = readFileSync(join(dir, f));
  const r = await runRearRecoverInit({ localConf: TEMPLATE_CONF, files, before: bootHook('rear_update=id=e229,export=/srv/rear-export'), vars: VARS, env });
  assert.equal(r.beforeStatus, 0, explain(r));
  assert.match(r.beforeOutput, /FAILED|error (DOWNLOAD_FAILED|SERVER_UNREACHABLE)/);
  assert.match(r.beforeOutput, /applying from the offline export at \/srv\/rear-export/);
  assert.match(r.beforeOutput, /installed from export of \d{4}-/);
  assert.ok(r.stopped, explain(r));
  assert.equal(r.vars.HOST_ONLY_VAR, 'e229-configuration');
  assert.equal(r.vars.RESCUE_ONLY_VAR, 'from-the-image');
});
