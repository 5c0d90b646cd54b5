// publish.conf on an original system and the record every publish leaves for doctor (issue 15),
// with a real server on loopback. REAR_UPDATE_PUBLISH_CONF names the test's publish.conf (as
// REAR_UPDATE_SETTINGS names another settings.conf); publish's --root puts the state below it.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PublishState } from '../../src/cli/publish-state.ts';
import { effectiveEnv } from '../../src/cli/settings.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, cliAsync, fakeSysRoot, jsonRequest, makeTree, tempDir } from '../helpers.ts';

const work = tempDir('ru-publish-conf-');
let srv: Running;
let admin = '';
let token = '';

const conf = (lines: Record<string, string>): string => {
  const f = join(work, `publish-${Object.keys(lines).join('-')}-${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(f, Object.entries(lines).map(([k, v]) => `${k}='${v}'\n`).join(''));
  return f;
};

const readState = (root: string): PublishState => JSON.parse(readFileSync(join(root, 'var/lib/rear-update/publish-state.json'), 'utf8')) as PublishState;

async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

let n = 0;
/** A small original system: its ReaR configuration, and where its publish state goes. */
function system(): { root: string; sys: string } {
  const root = join(work, `root-${++n}`);
  makeTree(root, { etc: { rear: { 'local.conf': `OUTPUT=ISO\n# system ${n}\n` } } });
  return { root, sys: fakeSysRoot(join(work, `sys-${n}`), ['52:54:00:22:90:17'], 'e229.example.com') };
}

before(async () => {
  const data = join(work, 'data');
  mkdirSync(data);
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  assert.equal((await jsonRequest(srv.url, admin, 'POST', '/api/v1/hosts', { id: 'e229', macs: ['52:54:00:22:90:17'] })).status, 201);
  const t = await jsonRequest(srv.url, admin, 'POST', '/api/v1/tokens', { scope: 'publish:e229' });
  token = t.json.token as string;
  writeFileSync(join(work, 'token'), `${token}\n`, { mode: 0o600 });
});

after(async () => {
  await srv?.close();
  cleanup(work);
});

describe('publish.conf', () => {
  test('precedence: environment over publish.conf over the image\'s settings.conf; the token file over settings.conf\'s token', () => {
    const settings = join(work, 'settings.conf');
    writeFileSync(settings, "REAR_UPDATE_SERVER='http://image.example.com:8080'\nREAR_UPDATE_TOKEN='ru_fetch.from-the-image'\n");
    const p = conf({ REAR_UPDATE_SERVER: 'http://conf.example.com:8080', REAR_UPDATE_TOKEN_FILE: join(work, 'token'), REAR_UPDATE_HOST: 'e229' });
    const base = { REAR_UPDATE_SETTINGS: settings, REAR_UPDATE_PUBLISH_CONF: p };
    const e = effectiveEnv(base);
    assert.equal(e.REAR_UPDATE_SERVER, 'http://conf.example.com:8080');
    assert.equal(e.REAR_UPDATE_TOKEN, token);
    assert.equal(e.REAR_UPDATE_HOST, 'e229');
    assert.equal(e.REAR_UPDATE_PUBKEY, '/etc/rear-update/keys/server.pub', 'the default of a key publish.conf leaves out');
    const withEnv = effectiveEnv({ ...base, REAR_UPDATE_SERVER: 'http://env.example.com:8080', REAR_UPDATE_TOKEN: 'ru_env.x' });
    assert.equal(withEnv.REAR_UPDATE_SERVER, 'http://env.example.com:8080');
    assert.equal(withEnv.REAR_UPDATE_TOKEN, 'ru_env.x');
    // Without publish.conf, the image's settings are what is left.
    assert.equal(effectiveEnv({ REAR_UPDATE_SETTINGS: settings, REAR_UPDATE_PUBLISH_CONF: join(work, 'absent.conf') }).REAR_UPDATE_SERVER, 'http://image.example.com:8080');
  });

  test('publish with no flags but --root: server, token file and host from publish.conf; state ok, trigger manual, the server\'s digest', async () => {
    const s = system();
    const p = conf({ REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN_FILE: join(work, 'token'), REAR_UPDATE_HOST: 'e229' });
    const r = await cliAsync(['publish', '--root', s.root, '--sys-root', s.sys], { env: { REAR_UPDATE_PUBLISH_CONF: p } });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /published e229 version 1/);
    const st = readState(s.root);
    const v = await jsonRequest(srv.url, admin, 'GET', '/api/v1/hosts/e229/versions');
    const latest = (v.json.versions as { version: number; digest: string }[]).at(-1)!;
    assert.deepEqual({ ...st, at: 'x' }, { at: 'x', ok: true, trigger: 'manual', server: srv.url, host: 'e229', version: latest.version, created: true, digest: latest.digest, code: null, message: null });
    assert.match(st.at, /^\d{4}-\d\d-\d\dT/);
  });

  test('a failed publish is recorded too: server down (SERVER_UNREACHABLE, --trigger timer), token file unreadable (CONFIG_INVALID)', async () => {
    const s = system();
    const down = conf({ REAR_UPDATE_SERVER: `http://127.0.0.1:${await deadPort()}`, REAR_UPDATE_TOKEN_FILE: join(work, 'token'), REAR_UPDATE_HOST: 'e229' });
    const r = await cliAsync(['publish', '--root', s.root, '--sys-root', s.sys, '--trigger', 'timer'], { env: { REAR_UPDATE_PUBLISH_CONF: down } });
    assert.equal(r.status, 7, r.stderr);
    let st = readState(s.root);
    assert.equal(st.ok, false);
    assert.equal(st.trigger, 'timer');
    assert.equal(st.code, 'SERVER_UNREACHABLE');
    assert.match(st.digest ?? '', /^[0-9a-f]{64}$/);

    const noToken = conf({ REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN_FILE: join(work, 'no-such-token'), REAR_UPDATE_HOST: 'e229' });
    const r2 = await cliAsync(['publish', '--root', s.root, '--sys-root', s.sys], { env: { REAR_UPDATE_PUBLISH_CONF: noToken } });
    assert.equal(r2.status, 3, r2.stderr);
    assert.match(r2.stderr, /error CONFIG_INVALID: .*the publish token cannot be read: .*no-such-token: ENOENT/);
    st = readState(s.root);
    assert.equal(st.code, 'CONFIG_INVALID');
    assert.equal(st.trigger, 'manual');
  });

  test('--trigger takes manual, rear or timer only', async () => {
    const r = await cliAsync(['publish', '--trigger', 'cron', '--server', srv.url]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /Allowed choices are manual, rear, timer/);
  });
});
