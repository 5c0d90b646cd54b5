// Issue 10, first half, end to end: the real CLI (`apply --server`, `install-rear`) against a
// real server on 127.0.0.1, with machines made of fake roots: etc/rear-release and the
// image's etc/HOSTNAME (a ReaR rescue system made on template host e229), a sysfs with the
// machine's MACs and DMI values. A replacement machine booting e229's image must go pending,
// not be resolved to e229 by the hostname the image carries; what resolved a machine is named
// on the console and in the audit.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encodeSettings, parseSettings, type SettingKey } from '../../src/cli/settings.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, cliAsync, errorCode, fakeSysRoot, jsonRequest, makeTree, tempDir } from '../helpers.ts';

const work = tempDir('ru-rescue-facts-');
const data = join(work, 'data');
let srv: Running;
let admin: string;

// Facts of the test's own invention: none is this machine's.
const TEMPLATE_UUID = '4c4c4544-0033-3010-8044-b2c04f4e3232';
const MAC = { e229: '52:54:00:e2:29:01', e230: '52:54:00:e2:30:01', replacement: '52:54:00:e2:31:01', clone: '52:54:00:e2:32:01' };

const api = (method: string, path: string, body?: unknown): ReturnType<typeof jsonRequest> => jsonRequest(srv.url, admin, method, path, body);

/** A machine: sysfs with its MACs and DMI values, its running hostname, and, booted from a ReaR image made on e229, that image's files. */
function machine(name: string, o: { macs: string[]; hostname: string; uuid?: string; serial?: string; rescueOf?: string }): string {
  const root = fakeSysRoot(join(work, `machine-${name}`), o.macs, o.hostname);
  const dmi: Record<string, string> = {};
  if (o.uuid) dmi.product_uuid = `${o.uuid.toUpperCase()}\n`;
  if (o.serial) dmi.product_serial = `${o.serial}\n`;
  makeTree(join(root, 'sys/class/dmi/id'), dmi);
  if (o.rescueOf) {
    // As ReaR's mkrescue writes them (build/default/970_add_rear_release.sh, rescue/default/100_hostname.sh).
    makeTree(join(root, 'etc'), { 'rear-release': 'Relax-and-Recover release 2.7\n', HOSTNAME: `${o.rescueOf}\n`, hostname: `${o.rescueOf}\n` });
  }
  return root;
}

/** The image's settings.conf (only the template's recorded facts matter here). */
function settings(name: string, values: Partial<Record<SettingKey, string>> = {}): string {
  const file = join(work, `settings-${name}.conf`);
  writeFileSync(file, encodeSettings(values, 'test image settings'), { mode: 0o600 });
  return file;
}

/** `apply` with no id in a rescue root: resolved by facts, or pending (waits --wait). */
function applyByFacts(sysRoot: string, dst: string, env: Record<string, string>, wait = '0'): ReturnType<typeof cliAsync> {
  mkdirSync(dst, { recursive: true });
  return cliAsync(['apply', '--server', srv.url, '--token', admin, '--root', dst, '--pubkey', join(data, 'server.pub'), '--sys-root', sysRoot, '--wait', wait, '-q'], {
    env: { REAR_UPDATE_POLL_MS: '200', REAR_UPDATE_SETTINGS: join(work, 'no-settings.conf'), ...env },
  });
}

interface Pending { id: number; facts: { macs: string[]; hostname: string | null; uuid: string | null; serial: string | null } }

/** The pending machine that reported exactly this one MAC. */
const pendingWith = async (mac: string): Promise<Pending | undefined> =>
  ((await api('GET', '/api/v1/pending')).json.pending as Pending[]).find((p) => p.facts.macs.join() === mac);

before(async () => {
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  // e229 (the template of type A) and e230 publish from their own systems: the server records
  // their facts. e229's kernel hostname is its FQDN (mkrescue still writes the short name into
  // the image), e230's the short name.
  for (const [id, hostname, uuid] of [['e229', 'e229.example.com', TEMPLATE_UUID], ['e230', 'e230', null]] as const) {
    const tree = join(work, `tree-${id}`);
    makeTree(tree, { etc: { rear: { 'local.conf': `OUTPUT=ISO\nHOST_ONLY_VAR=${id}\n` } } });
    const sys = machine(`${id}-installed`, { macs: [MAC[id]], hostname, ...(uuid ? { uuid } : {}) });
    const pub = await cliAsync(['publish', '--server', srv.url, '--token', admin, '--root', tree, '--host', id, '--sys-root', sys]);
    assert.equal(pub.status, 0, pub.stderr);
  }
  const e229 = await api('GET', '/api/v1/hosts/e229');
  assert.deepEqual([e229.json.host?.hostnames ?? e229.json.hostnames, e229.json.host?.uuid ?? e229.json.uuid], [['e229.example.com'], TEMPLATE_UUID]);
});
after(async () => {
  await srv?.close();
  cleanup(work);
});

test('template hostname: a replacement machine booting e229\'s image is not resolved to e229 by hostname (goes pending)', async () => {
  const sys = machine('replacement', { macs: [MAC.replacement], hostname: 'e229', rescueOf: 'e229' });
  const dst = join(work, 'dst-replacement');
  const r = await applyByFacts(sys, dst, {});
  assert.equal(r.status, 7, r.stderr);
  assert.equal(errorCode(r), 'HOST_PENDING');
  assert.match(r.stderr, /^rear-update: hostname e229 left out: it is the rescue image's own \(the template's\), not this machine's$/m);
  assert.match(r.stderr, /PENDING as machine \d+/);
  assert.match(r.stderr, /facts: macs 52:54:00:e2:31:01, uuid -, serial -, hostname -/);
  assert.doesNotMatch(r.stderr, /resolved this machine/);
  assert.deepEqual(readdirSync(dst), [], 'nothing installed');
  const p = await pendingWith(MAC.replacement);
  assert.ok(p, 'recorded as pending');
  assert.equal(p.facts.hostname, null, 'the template\'s hostname never reached the server');
});

test('template hostname: the same machine with rear_update=hostname=e230 (REAR_UPDATE_HOSTNAME) resolves to e230 by hostname, with a warning that this is weak', async () => {
  const sys = machine('replacement-named', { macs: [MAC.replacement], hostname: 'e229', rescueOf: 'e229' });
  const dst = join(work, 'dst-named');
  const r = await applyByFacts(sys, dst, { REAR_UPDATE_HOSTNAME: 'e230' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /hostname e229 left out: replaced by the explicitly given hostname e230/);
  assert.match(r.stderr, /^rear-update: the server resolved this machine to host e230 \(by hostname e230\)$/m);
  assert.match(r.stderr, /WARNING: a hostname-only match is weak/);
  assert.equal(readFileSync(join(dst, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nHOST_ONLY_VAR=e230\n');
  // The audit names the fact and its value.
  const audit = await api('GET', '/api/v1/audit?kind=resolve&host=e230');
  assert.deepEqual(audit.json.events.map((e: { result: string; detail: string }) => [e.result, e.detail]), [['ok', 'by hostname e230']]);
});

test('template hostname: a hostname of its own (DHCP gave e230, the image says e229) is sent and resolves', async () => {
  const sys = machine('replacement-dhcp', { macs: ['52:54:00:e2:33:01'], hostname: 'e230', rescueOf: 'e229' });
  const r = await applyByFacts(sys, join(work, 'dst-dhcp'), {});
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /left out/);
  assert.match(r.stderr, /resolved this machine to host e230 \(by hostname e230\)/);
});

test('cloned UUID: a VM cloned from the template (its DMI UUID, a new MAC) booting the image goes pending, not to e229 by UUID', async () => {
  const sys = machine('clone', { macs: [MAC.clone], hostname: 'e229', uuid: TEMPLATE_UUID, serial: 'VMware-42 1a 2b 3c', rescueOf: 'e229' });
  const image = settings('clone', { REAR_UPDATE_IMAGE_HOSTNAME: 'e229.example.com', REAR_UPDATE_IMAGE_UUID: TEMPLATE_UUID, REAR_UPDATE_IMAGE_SERIAL: 'VMware-42 1a 2b 3c' });
  const r = await applyByFacts(sys, join(work, 'dst-clone'), { REAR_UPDATE_SETTINGS: image });
  assert.equal(r.status, 7, r.stderr);
  assert.equal(errorCode(r), 'HOST_PENDING');
  assert.match(r.stderr, new RegExp(`uuid ${TEMPLATE_UUID.toUpperCase()} left out: it is the DMI UUID of the machine the rescue image was made on`));
  assert.match(r.stderr, /serial VMware-42 1a 2b 3c left out: it is the DMI serial of the machine the rescue image was made on/);
  const p = await pendingWith(MAC.clone);
  assert.deepEqual(p && [p.facts.uuid, p.facts.serial, p.facts.hostname], [null, null, null]);
  // Outside a rescue system the same UUID is sent, and resolves (nothing changes there).
  const resolved = await api('GET', `/api/v1/resolve?uuid=${TEMPLATE_UUID}`);
  assert.deepEqual([resolved.json.host, resolved.json.by, resolved.json.value], ['e229', 'uuid', TEMPLATE_UUID]);
});

test('placeholder serial: a serial like "To Be Filled By O.E.M." is left out with its reason, and the machine goes pending', async () => {
  const sys = machine('oem', { macs: ['52:54:00:e2:34:01'], hostname: 'e229', serial: 'To Be Filled By O.E.M.', rescueOf: 'e229' });
  const r = await applyByFacts(sys, join(work, 'dst-oem'), {});
  assert.equal(errorCode(r), 'HOST_PENDING', r.stderr);
  assert.match(r.stderr, /serial To Be Filled By O\.E\.M\. left out: a placeholder that firmware ships on many machines/);
});

test('the template itself booting its own image is resolved by its MAC, and the console names the MAC', async () => {
  const sys = machine('template-rescue', { macs: [MAC.e229], hostname: 'e229', uuid: TEMPLATE_UUID, rescueOf: 'e229' });
  const image = settings('template', { REAR_UPDATE_IMAGE_HOSTNAME: 'e229.example.com', REAR_UPDATE_IMAGE_UUID: TEMPLATE_UUID });
  const dst = join(work, 'dst-template');
  const r = await applyByFacts(sys, dst, { REAR_UPDATE_SETTINGS: image });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /resolved this machine to host e229 \(by mac 52:54:00:e2:29:01\)/);
  assert.doesNotMatch(r.stderr, /WARNING/);
  assert.equal(readFileSync(join(dst, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nHOST_ONLY_VAR=e229\n');
  const audit = await api('GET', '/api/v1/audit?kind=resolve&host=e229');
  assert.ok(audit.json.events.some((e: { detail: string }) => e.detail === `by mac ${MAC.e229}`), JSON.stringify(audit.json.events));
});

test('an assigned pending machine is named as resolved by assignment, in the answer and the audit', async () => {
  const p = await pendingWith(MAC.replacement);
  assert.ok(p);
  assert.equal((await api('POST', '/api/v1/assign', { pending: String(p.id), host: 'e230' })).status, 200);
  const r = await api('GET', `/api/v1/resolve?mac=${MAC.replacement}`);
  assert.deepEqual([r.json.host, r.json.by, r.json.value, r.json.pending], ['e230', 'assignment', null, p.id]);
  const audit = await api('GET', '/api/v1/audit?kind=resolve&host=e230');
  assert.ok(audit.json.events.some((e: { detail: string }) => e.detail === `by assignment of pending machine ${p.id}`), JSON.stringify(audit.json.events));
});

test('install-rear records this machine\'s hostname, DMI UUID and serial as the template\'s in settings.conf, and says so', async () => {
  const root = join(work, 'template-root');
  makeTree(root, { usr: { share: { rear: { skel: { default: {} }, conf: { 'default.conf': '# ReaR defaults\n' } } } }, etc: { rear: { 'local.conf': '' } } });
  const exe = join(work, 'fake-exe');
  writeFileSync(exe, '#!/bin/sh\n', { mode: 0o755 });
  const sys = machine('template-installed', { macs: [MAC.e229], hostname: 'e229.example.com', uuid: TEMPLATE_UUID, serial: 'CZ2290ABC' });
  const fetchClass = (await api('POST', '/api/v1/tokens', { scope: 'fetch-class:typeA' })).json.token as string;
  const r = await cliAsync(['install-rear', '--server', srv.url, '--token', fetchClass, '--pubkey', join(data, 'server.pub'), '--root', root, '--exe', exe, '--sys-root', sys, '--class', 'typeA'], { env: { REAR_UPDATE_SETTINGS: join(work, 'no-settings.conf') } });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^recorded this machine's hostname e229\\.example\\.com, DMI UUID ${TEMPLATE_UUID}, serial CZ2290ABC as the template's \\(REAR_UPDATE_IMAGE_\\*\\): machines booting the image will not send them$`, 'm'));
  const s = parseSettings(readFileSync(join(root, 'etc/rear-update/settings.conf'), 'utf8'));
  assert.deepEqual([s.REAR_UPDATE_IMAGE_HOSTNAME, s.REAR_UPDATE_IMAGE_UUID, s.REAR_UPDATE_IMAGE_SERIAL], ['e229.example.com', TEMPLATE_UUID, 'CZ2290ABC']);
  assert.equal(s.REAR_UPDATE_HOSTNAME, undefined);
});

test('threat: a publish or admin token baked into a rescue image (anyone holding the ISO reads it) is refused with IMAGE_TOKEN_SCOPE, nothing installed; publish.conf\'s token never goes into the image', async () => {
  const exe = join(work, 'fake-exe');
  const sys = machine('template-token', { macs: [MAC.e229], hostname: 'e229.example.com', uuid: TEMPLATE_UUID, serial: 'CZ2290ABC' });
  const publishToken = (await api('POST', '/api/v1/tokens', { scope: 'publish:e229' })).json.token as string;
  for (const [label, token] of [['admin', admin], ['publish', publishToken]] as const) {
    const root = join(work, `token-root-${label}`);
    makeTree(root, { usr: { share: { rear: { skel: { default: {} }, conf: { 'default.conf': '# ReaR defaults\n' } } } }, etc: { rear: { 'local.conf': '# untouched\n' } } });
    const r = await cliAsync(['install-rear', '--server', srv.url, '--token', token, '--pubkey', join(data, 'server.pub'), '--root', root, '--exe', exe, '--sys-root', sys], { env: { REAR_UPDATE_SETTINGS: join(work, 'no-settings.conf') } });
    assert.equal(r.status, 4, `${label}: ${r.stderr}`);
    assert.equal(errorCode(r), 'IMAGE_TOKEN_SCOPE', r.stderr);
    assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), '# untouched\n', `${label}: local.conf untouched`);
    assert.ok(!existsSync(join(root, 'etc/rear-update/settings.conf')), `${label}: no settings.conf`);
  }
  // On an original system with publish.conf, install-rear without --token writes no token: the host's publish token stays off the image.
  const root = join(work, 'token-root-conf');
  makeTree(root, { usr: { share: { rear: { skel: { default: {} }, conf: { 'default.conf': '# ReaR defaults\n' } } } }, etc: { rear: { 'local.conf': '' } } });
  writeFileSync(join(work, 'publish.token'), `${publishToken}\n`, { mode: 0o600 });
  writeFileSync(join(work, 'publish.conf'), `REAR_UPDATE_SERVER='${srv.url}'\nREAR_UPDATE_TOKEN_FILE='${join(work, 'publish.token')}'\n`);
  const r = await cliAsync(['install-rear', '--pubkey', join(data, 'server.pub'), '--root', root, '--exe', exe, '--sys-root', sys], { env: { REAR_UPDATE_SETTINGS: join(work, 'no-settings.conf'), REAR_UPDATE_PUBLISH_CONF: join(work, 'publish.conf') } });
  assert.equal(r.status, 0, r.stderr);
  const settings = readFileSync(join(root, 'etc/rear-update/settings.conf'), 'utf8');
  assert.equal(parseSettings(settings).REAR_UPDATE_SERVER, srv.url, 'the server comes from publish.conf');
  assert.ok(!settings.includes(publishToken.slice(16)) && parseSettings(settings).REAR_UPDATE_TOKEN === undefined, settings);
});
