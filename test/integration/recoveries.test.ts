// Recoveries over real HTTP (docs/recoveries.md): a rescue system's whole timeline through the
// API and the requests it links by header, phases and counts, silence read against the
// server's clock (the test's, skewed forward), match hints from published disklayout.conf
// files, log uploads linked with and without the header, forgotten pending machines, refused
// hardware reports, and the `admin recoveries|recovery|pending|forget` commands of the built CLI.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSqliteMetadata } from '../../src/adapters/storage/sqlite-metadata.ts';
import { loadConfig } from '../../src/server/config.ts';
import { RecoveryService, type LiveChange } from '../../src/server/recoveries.ts';
import { LocalBus } from '../../src/server/bus.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { adminSide, cleanup, cli, errorCode, makeTree, succeeded, tempDir, type TreeSpec } from '../helpers.ts';
import { type HttpAnswer } from '../helpers.ts';

const work = tempDir('ru-recoveries-');
let srv: Running;
let admin: string;
let adminId: string;
let skewMs = 0;

const GiB = 1024 ** 3;
const HEADER = 'x-rear-update-recovery';

/** Requests and `admin` runs with the admin token unless another is given. */
const { req, adm } = adminSide(() => srv, () => admin);
const ok = succeeded;

async function newToken(scope: string): Promise<string> {
  const r = await req('POST', '/api/v1/tokens', { body: { scope } });
  assert.equal(r.status, 201, r.body.toString());
  return r.json.token as string;
}

const disklayout = (disks: [string, number][]): string =>
  `# Disk layout dated 20260112093012 (YYYYmmddHHMMSS)\n${disks.map(([d, s]) => `# Disk ${d}\n# Format: disk <devname> <size(bytes)> <partition label type>\ndisk ${d} ${s} gpt\n# Partitions on ${d}\npart ${d} 1048576 1048576 rear-noname bios_grub ${d}1\n`).join('')}fs /dev/sda2 / xfs uuid=5d3e0c55 label= options=rw,relatime\n`;

/** A host with its MACs and class, and a published bundle (its disklayout.conf, if given). */
async function publishedHost(id: string, macs: string[], layout: string | null): Promise<void> {
  assert.equal((await req('POST', '/api/v1/hosts', { body: { id, class: 'typeR', macs } })).status, 201);
  const spec: TreeSpec = { etc: { rear: { 'local.conf': `OUTPUT=ISO\n# ${id}\n` } }, ...(layout === null ? {} : { var: { lib: { rear: { layout: { 'disklayout.conf': layout } } } } }) };
  const root = join(work, `tree-${id}`);
  makeTree(root, spec);
  const file = join(work, `${id}.tar.gz`);
  const p = cli(['pack', '--root', root, '--host', id, '-o', file]);
  assert.equal(p.status, 0, p.stderr);
  const r = await req('POST', `/api/v1/hosts/${id}/versions`, { body: readFileSync(file) });
  assert.equal(r.status, 201, r.body.toString());
}

const hardware = {
  disks: [{ name: 'vda', size: 20 * GiB, model: 'QEMU HARDDISK' }, { name: 'vdb', size: 50 * GiB, model: null }],
  nics: [{ name: 'eth0', mac: '52:54:00:12:34:56', driver: 'virtio_net' }, { name: 'eth1', mac: '52:54:00:12:34:57', driver: 'virtio_net' }],
  memory: 8 * GiB,
  cpus: 4,
  cpuModel: 'QEMU Virtual CPU',
};

async function open(token: string, body: object = {}): Promise<number> {
  const r = await req('POST', '/api/v1/recoveries', { token, body });
  assert.equal(r.status, 201, r.body.toString());
  return r.json.recovery.id as number;
}

const event = (token: string, id: number, body: object): Promise<HttpAnswer> => req('POST', `/api/v1/recoveries/${id}/events`, { token, body });

async function recovery(id: number): Promise<{ recovery: Record<string, any>; events: { kind: string; actor: string | null; detail: Record<string, unknown>; message: string }[] }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const r = await req('GET', `/api/v1/recoveries/${id}`);
  assert.equal(r.status, 200, r.body.toString());
  return r.json;
}

const kinds = async (id: number): Promise<string[]> => (await recovery(id)).events.map((e) => e.kind);

/** Waits for what a request records beside its answer (the bundle route does not wait for it). */
async function eventually<T>(read: () => Promise<T>, until: (v: T) => boolean): Promise<T> {
  for (let i = 0; ; i++) {
    const v = await read();
    if (until(v) || i >= 100) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('recoveries over HTTP and the CLI', () => {
  before(async () => {
    srv = await startServer(loadConfig({ data: join(work, 'data'), listen: '127.0.0.1:0', silentAfter: '1m' }, {}), { log: false, now: () => new Date(Date.now() + skewMs) });
    admin = readFileSync(join(work, 'data', 'admin.token'), 'utf8').trim();
    adminId = admin.slice(3, 15);
    await publishedHost('orig-db1', ['52:54:00:aa:00:01', '52:54:00:aa:00:02'], disklayout([['/dev/sda', 20 * GiB], ['/dev/sdb', 50 * GiB]]));
    await publishedHost('orig-web1', ['52:54:00:bb:00:01'], disklayout([['/dev/sda', 40 * GiB]]));
    await publishedHost('orig-bare', ['00:1b:21:cc:00:01'], null);
    // A disklayout.conf the parser cannot use does not fail the publish.
    await publishedHost('orig-junk', ['00:1b:21:dd:00:01'], 'disk /dev/sda lots gpt\n\u0000\u0001\u00ff\n');
  });
  after(async () => {
    await srv?.close();
    cleanup(work);
  });

  test('the whole flow: open, pending, hints, assign, resolved, fetched .. finished; phases, counts and the CLI', async () => {
    const rescue = await newToken('fetch-class:typeR');
    const opened = await req('POST', '/api/v1/recoveries', { token: rescue, body: { facts: { macs: ['52-54-00-12-34-56', '52:54:00:12:34:57'], hostname: 'orig-db1' }, hardware } });
    assert.equal(opened.status, 201, opened.body.toString());
    const r = opened.json.recovery;
    assert.deepEqual([r.phase, r.bucket, r.silent, r.host, r.token], ['resolving', 'pending', false, null, rescue.slice(3, 15)]);
    assert.deepEqual(r.facts.macs, ['52:54:00:12:34:56', '52:54:00:12:34:57'], 'facts canonical');
    assert.equal(r.hardware.disks.length, 2);
    const id = r.id as number;
    const linked = { token: rescue, headers: { [HEADER]: String(id) } };

    assert.equal((await event(rescue, id, { kind: 'resolving', message: 'asking who I am' })).status, 201);
    const q = '/api/v1/resolve?mac=52:54:00:12:34:56&mac=52:54:00:12:34:57&hostname=orig-db1';
    const waiting = await req('GET', q, linked);
    assert.equal(waiting.status, 202, waiting.body.toString());
    const pid = waiting.json.pending.id as number;
    assert.equal((await req('GET', q, linked)).status, 202, 'asking again');
    const pendingNow = await recovery(id);
    assert.deepEqual([pendingNow.recovery.phase, pendingNow.recovery.pending], ['pending', pid]);
    assert.deepEqual(pendingNow.events.map((e) => e.kind), ['booted', 'resolving', 'pending'], 'pending once per pending id');
    assert.deepEqual(pendingNow.events[2]!.detail, { pending: pid });

    // Hints: the host with the same disk sizes, NIC count and MAC prefix first; reasons said.
    const hints = await req('GET', `/api/v1/pending/${pid}/hints`);
    assert.equal(hints.status, 200, hints.body.toString());
    assert.equal(hints.json.pending.id, pid);
    const [best, second] = hints.json.hints as { host: string; score: number; reasons: string[] }[];
    assert.equal(best!.host, 'orig-db1');
    for (const reason of ['2 disks of the same sizes', '2 NICs, as the host has 2 MACs', 'MAC prefix 52:54:00 as the host\'s', 'class typeR, as the token it asked with', 'memory/CPU unknown for hosts (not compared)']) {
      assert.ok(best!.reasons.includes(reason), `${reason} in ${JSON.stringify(best!.reasons)}`);
    }
    assert.equal(second!.host, 'orig-web1');
    assert.ok(best!.score > second!.score);
    assert.ok(second!.reasons.includes('disks at least as large as the host\'s 42.9 GB (2 disks, the host has 1)'), JSON.stringify(second!.reasons));
    const bare = (hints.json.hints as { host: string; reasons: string[] }[]).find((h) => h.host === 'orig-bare');
    assert.ok(bare?.reasons.includes('the host\'s disklayout.conf names no disks'), 'a bundle without disklayout.conf: no disks');
    const junk = (hints.json.hints as { host: string; reasons: string[] }[]).find((h) => h.host === 'orig-junk');
    assert.ok(junk?.reasons.includes('the host\'s disklayout.conf names no disks'), 'an unusable disklayout.conf: no disks');

    const listed = ok(await adm(['pending']));
    assert.match(listed.stdout, new RegExp(`^${pid}\\s+52:54:00:12:34:56,52:54:00:12:34:57\\s.*\\borig-db1 \\(\\d+\\), orig-web1 \\(\\d+\\), orig-bare \\(\\d+\\)$`, 'm'));
    const withReasons = ok(await adm(['pending', '--hints']));
    assert.match(withReasons.stdout, new RegExp(`^pending machine ${pid} \\(MAC 52:54:00:12:34:56,52:54:00:12:34:57, hostname orig-db1\\):\\n  orig-db1 \\(\\d+\\): [^\\n]*2 disks of the same sizes`, 'm'));

    ok(await adm(['assign', String(pid), 'orig-db1']));
    const assigned = await recovery(id);
    assert.deepEqual([assigned.recovery.phase, assigned.recovery.host], ['assigned', 'orig-db1']);
    const ev = assigned.events.at(-1)!;
    assert.deepEqual([ev.kind, ev.actor, ev.detail.host], ['assigned', adminId, 'orig-db1'], 'assigned, by the operator\'s token');
    const audit = (await req('GET', '/api/v1/audit?kind=assign&host=orig-db1')).json.events;
    assert.deepEqual([audit[0].result, audit[0].token, audit[0].detail], ['ok', adminId, `pending ${pid}`]);

    const resolved = await req('GET', q, linked);
    assert.equal(resolved.status, 200, resolved.body.toString());
    const afterResolve = await recovery(id);
    assert.equal(afterResolve.recovery.phase, 'fetching');
    assert.deepEqual(afterResolve.events.at(-1)!.detail, { host: 'orig-db1', by: 'assignment', pending: pid });

    const bundle = await req('GET', '/api/v1/hosts/orig-db1/bundle', linked);
    assert.equal(bundle.status, 200);
    for (const [kind, phase] of [['fetched', 'fetching'], ['verified', 'fetching'], ['applied', 'applied'], ['activation', 'applied'], ['recover-started', 'recovering']] as const) {
      const e = await event(rescue, id, { kind, detail: { host: 'orig-db1', version: 1 } });
      assert.equal(e.status, 201, e.body.toString());
      assert.equal(e.json.recovery.phase, phase, kind);
      assert.equal(e.json.event.actor, rescue.slice(3, 15));
    }
    const log = await req('PUT', '/clients/orig-db1/log/recover/20260112-0930', { auth: rescue, headers: { [HEADER]: String(id) }, body: 'Relax-and-Recover 2.7 / 2022-07-13\nRunning workflow recover\n' });
    assert.equal(log.status, 201, log.body.toString());
    const finished = await event(rescue, id, { kind: 'finished', exitStatus: 0, message: 'rear recover finished' });
    assert.equal(finished.status, 201);
    const done = await recovery(id);
    assert.deepEqual([done.recovery.phase, done.recovery.bucket, done.recovery.exitStatus, done.recovery.log], ['done', 'done', 0, log.json.log.id]);
    assert.ok(done.recovery.ended);
    assert.deepEqual(done.events.map((e) => e.kind), ['booted', 'resolving', 'pending', 'assigned', 'resolved', 'fetched', 'verified', 'applied', 'activation', 'recover-started', 'log', 'finished']);
    assert.deepEqual(done.events.find((e) => e.kind === 'log')!.detail, { log: log.json.log.id });

    const all = await req('GET', '/api/v1/recoveries?host=orig-db1');
    assert.equal(all.json.recoveries[0].id, id);
    assert.equal(all.json.counts.done, 1);
    assert.deepEqual(Object.keys(all.json.counts).sort(), ['applied', 'done', 'failed', 'fetching', 'pending', 'recovering', 'silent']);
    assert.equal((await req('GET', '/api/v1/recoveries?active=1&host=orig-db1')).json.recoveries.length, 0);

    const table = ok(await adm(['recoveries', '--host', 'orig-db1']));
    assert.match(table.stdout, /^ID\s+HOST\s+PHASE\s+STARTED\s+ELAPSED\s+LAST EVENT/m);
    assert.match(table.stdout, new RegExp(`^${id}\\s+orig-db1\\s+done\\s+\\d{4}-\\d\\d-\\d\\d \\S+Z\\s+\\d+s\\s+`, 'm'));
    assert.match(table.stdout, /^counts: pending 0, fetching 0, applied 0, recovering 0, done 1, failed 0, silent 0$/m);
    const timeline = ok(await adm(['recovery', String(id)]));
    assert.match(timeline.stdout, /^phase:\s+done$/m);
    assert.match(timeline.stdout, new RegExp(`^log:\\s+${log.json.log.id} \\(rear-update admin logs orig-db1 --log ${log.json.log.id}\\)$`, 'm'));
    assert.match(timeline.stdout, /^hardware:\s+2 disks, 2 NICs, 4 CPUs$/m);
    const lines = timeline.stdout.split('\n').filter((l) => /^\d+\s+\d{4}-/.test(l)).map((l) => l.split(/\s+/)[3]);
    assert.deepEqual(lines, done.events.map((e) => e.kind));
    assert.match(timeline.stdout, new RegExp(`^4\\s+\\S+ \\S+\\s+assigned\\s+${adminId}\\s+pending machine ${pid} assigned to orig-db1\\s+host=orig-db1 pending=${pid}$`, 'm'));
    const json = JSON.parse(ok(await adm(['recovery', String(id), '--json'])).stdout);
    assert.equal(json.events.length, 12);
  });

  test('an explicit id: the bundle request with the header records resolved by id; a rescue system reports failed', async () => {
    const rescue = await newToken('fetch:orig-web1');
    const id = await open(rescue);
    const bundle = await req('GET', '/api/v1/hosts/orig-web1/bundle', { token: rescue, headers: { [HEADER]: String(id) } });
    assert.equal(bundle.status, 200);
    const r = await eventually(() => recovery(id), (x) => x.recovery.host !== null);
    assert.deepEqual([r.recovery.host, r.recovery.phase, r.events.at(-1)!.detail], ['orig-web1', 'fetching', { host: 'orig-web1', by: 'id' }]);
    const failed = await event(rescue, id, { kind: 'failed', error: 'BUNDLE_SIGNATURE_INVALID', message: 'the bundle is not signed by a trusted key' });
    assert.deepEqual([failed.json.recovery.phase, failed.json.recovery.error, failed.json.recovery.bucket], ['failed', 'BUNDLE_SIGNATURE_INVALID', 'failed']);
  });

  test('stolen fetch token of another host: it cannot add events to, heartbeat, read or link a recovery (403 FORBIDDEN); server-side kinds are refused', async () => {
    const owner = await newToken('fetch:orig-db1');
    const other = await newToken('fetch:orig-web1');
    const id = await open(owner, { host: 'orig-db1' });
    const tries = [
      await event(other, id, { kind: 'finished', exitStatus: 0 }),
      await req('POST', `/api/v1/recoveries/${id}/heartbeat`, { token: other }),
      await req('GET', `/api/v1/recoveries/${id}`, { token: other }),
      await req('GET', '/api/v1/recoveries', { token: other }),
      await req('GET', `/api/v1/recoveries/${id}`, { token: owner }),
      await event(other, 999_999, { kind: 'note' }),
      await req('POST', '/api/v1/recoveries', { token: other, body: { host: 'orig-db1' } }),
    ];
    assert.deepEqual(tries.map((r) => [r.status, r.json?.error?.code]), tries.map(() => [403, 'FORBIDDEN']));
    // Its header on its own host's requests is ignored, not followed into the other recovery.
    assert.equal((await req('GET', '/api/v1/resolve?mac=52:54:00:bb:00:01', { token: other, headers: { [HEADER]: String(id) } })).status, 200);
    assert.equal((await req('PUT', '/clients/orig-web1/log/recover/stolen-1', { auth: other, headers: { [HEADER]: String(id) }, body: 'x\n' })).status, 201);
    assert.deepEqual(await kinds(id), ['booted']);

    for (const kind of ['assigned', 'resolved', 'pending', 'log', 'booted', 'rebooted']) {
      const r = await event(owner, id, { kind, detail: { host: 'orig-web1' } });
      assert.deepEqual([r.status, r.json.error.code, r.json.error.context.param], [400, 'REQUEST_INVALID', 'kind'], kind);
    }
    for (const body of [{ kind: 'note', message: 'a\u001b[2Jcleared' }, { kind: 'note', detail: { x: 'y'.repeat(20_000) } }, { kind: 'finished' }, { kind: 'failed', error: 'not a code' }, { kind: 'note', extra: 1 }]) {
      assert.equal((await event(owner, id, body)).json.error.code, 'REQUEST_INVALID', JSON.stringify(body).slice(0, 60));
    }
    assert.deepEqual(await kinds(id), ['booted'], 'nothing refused was recorded');
    assert.equal((await event(owner, id, { kind: 'note', message: 'the owner may' })).status, 201);
  });

  test('silent: an active recovery with no sign of life for --silent-after is silent; a heartbeat or event ends that; an ended one never is', async () => {
    const rescue = await newToken('fetch:orig-db1');
    const quiet = await open(rescue, { host: 'orig-db1' });
    const ended = await open(rescue, { host: 'orig-db1' });
    assert.equal((await event(rescue, ended, { kind: 'finished', exitStatus: 1 })).json.recovery.phase, 'failed');
    skewMs += 2 * 60_000; // past --silent-after 1m on the server's clock
    const list = await req('GET', '/api/v1/recoveries?active=1');
    const row = list.json.recoveries.find((x: { id: number }) => x.id === quiet);
    assert.deepEqual([row.phase, row.silent, row.bucket], ['resolving', true, 'silent']);
    assert.ok(list.json.counts.silent >= 1);
    assert.equal(list.json.recoveries.find((x: { id: number }) => x.id === ended), undefined, 'active=1: not the ended one');
    const endedView = (await recovery(ended)).recovery;
    assert.deepEqual([endedView.silent, endedView.bucket], [false, 'failed']);
    assert.match(ok(await adm(['recoveries', '--active'])).stdout, new RegExp(`^${quiet}\\s+orig-db1\\s+resolving \\(silent\\)`, 'm'));

    const beat = await req('POST', `/api/v1/recoveries/${quiet}/heartbeat`, { token: rescue });
    assert.equal(beat.status, 204);
    assert.deepEqual([(await recovery(quiet)).recovery.silent, (await recovery(quiet)).recovery.bucket], [false, 'pending']);
    assert.deepEqual(await kinds(quiet), ['booted'], 'a heartbeat is no event');
  });

  test('log linking: with the header to that recovery; without it to the host\'s newest active one, else a new one for the host', async () => {
    const rescue = await newToken('fetch:orig-web1');
    const active = await open(rescue, { host: 'orig-web1' });
    const plain = await req('PUT', '/clients/orig-web1/log/recover/20260112-1000', { auth: rescue, body: 'unmodified ReaR\n' });
    assert.equal(plain.status, 201, plain.body.toString());
    const r = await recovery(active);
    assert.deepEqual([r.recovery.log, r.recovery.phase, r.events.at(-1)!.kind, r.events.at(-1)!.actor], [plain.json.log.id, 'recovering', 'log', rescue.slice(3, 15)]);

    // No active recovery for the host: the upload opens one, the uploader's.
    const bareToken = await newToken('fetch:orig-bare');
    const before = (await req('GET', '/api/v1/recoveries?host=orig-bare')).json.recoveries.length;
    const fresh = await req('PUT', '/clients/orig-bare/log/recover/20260112-1001', { auth: bareToken, body: 'Running workflow recover\n' });
    assert.equal(fresh.status, 201);
    const opened = (await req('GET', '/api/v1/recoveries?host=orig-bare')).json.recoveries;
    assert.equal(opened.length, before + 1);
    assert.deepEqual([opened[0].token, opened[0].log, opened[0].phase], [bareToken.slice(3, 15), fresh.json.log.id, 'recovering']);
    assert.deepEqual(await kinds(opened[0].id), ['booted', 'log']);

    // A second upload with the header of that recovery links there again (the newest log).
    const second = await req('PUT', '/clients/orig-bare/log/recover/20260112-1002', { auth: bareToken, headers: { [HEADER]: String(opened[0].id) }, body: 'again\n' });
    assert.equal((await recovery(opened[0].id)).recovery.log, second.json.log.id);
    assert.equal((await req('GET', '/api/v1/recoveries?host=orig-bare')).json.recoveries.length, before + 1);
  });

  test('a forgotten pending machine: audited, noted in its recovery, gone from hints; asking again records it anew', async () => {
    const rescue = await newToken('fetch-class:typeR');
    const id = await open(rescue, { facts: { macs: ['52:54:00:12:34:99'] } });
    const q = '/api/v1/resolve?mac=52:54:00:12:34:99';
    const first = await req('GET', q, { token: rescue, headers: { [HEADER]: String(id) } });
    assert.equal(first.status, 202);
    const pid = first.json.pending.id as number;
    const forgot = ok(await adm(['forget', String(pid)]));
    assert.match(forgot.stdout, new RegExp(`^pending machine ${pid} \\(MAC 52:54:00:12:34:99\\) forgotten$`, 'm'));
    assert.equal(errorCode(await adm(['forget', String(pid)])), 'PENDING_UNKNOWN');
    assert.equal((await req('GET', `/api/v1/pending/${pid}/hints`)).json.error.code, 'PENDING_UNKNOWN');
    const audit = (await req('GET', '/api/v1/audit?kind=pending')).json.events;
    assert.deepEqual(audit.slice(0, 2).map((e: { result: string; detail: string }) => [e.result, e.detail]), [['PENDING_UNKNOWN', `forgot pending ${pid}`], ['ok', `forgot pending ${pid}`]]);
    const noted = await recovery(id);
    assert.deepEqual(noted.events.at(-1)!.detail, { pending: pid, forgotten: true });

    const again = await req('GET', q, { token: rescue, headers: { [HEADER]: String(id) } });
    assert.equal(again.status, 202);
    assert.notEqual(again.json.pending.id, pid);
    const r = await recovery(id);
    assert.deepEqual([r.recovery.pending, r.recovery.phase, r.events.at(-1)!.kind], [again.json.pending.id, 'pending', 'pending']);

    const view = await newToken('view');
    assert.equal(errorCode(await adm(['forget', String(again.json.pending.id)], view)), 'FORBIDDEN');
    assert.equal(errorCode(await adm(['assign', String(again.json.pending.id), 'orig-db1'], view)), 'FORBIDDEN');
    assert.match(ok(await adm(['recoveries', '--active'], view)).stdout, new RegExp(`^${id}\\s+-\\s+pending\\b`, 'm'), 'a view token reads recoveries');
  });

  test('hostile hardware reports are refused with 400 STORE_INVALID and open nothing', async () => {
    const rescue = await newToken('fetch-class:typeR');
    const before = (await req('GET', '/api/v1/recoveries?limit=1000')).json.recoveries.length;
    const bad = [
      { disks: 'all of them' },
      { disks: Array.from({ length: 65 }, (_, i) => ({ name: `sd${i}`, size: GiB })) },
      { nics: [{ name: 'eth0', mac: 'zz:zz' }] },
      { disks: [{ name: 'sda\u001b[31m', size: GiB }] },
      { disks: [{ name: 'sda', size: -1 }] },
      { cpuModel: 'x'.repeat(200) },
      'not an object',
    ];
    for (const hw of bad) {
      const r = await req('POST', '/api/v1/recoveries', { token: rescue, body: { hardware: hw } });
      assert.deepEqual([r.status, r.json.error.code], [400, 'STORE_INVALID'], JSON.stringify(hw).slice(0, 60));
    }
    assert.equal((await req('POST', '/api/v1/recoveries', { token: rescue, body: { facts: { macs: 'x' } } })).json.error.code, 'REQUEST_INVALID');
    assert.equal((await req('GET', '/api/v1/recoveries?limit=1000')).json.recoveries.length, before);
  });

  test('token create --view and --operate; a view token lists recoveries, an operate token assigns', async () => {
    const view = ok(await adm(['token', 'create', '--view', '--label', 'service desk']));
    assert.match(view.stderr, /scope view/);
    const operate = ok(await adm(['token', 'create', '--operate', '--label', 'on-call']));
    const op = operate.stdout.trim();
    const rescue = await newToken('fetch-class:typeR');
    const w = await req('GET', '/api/v1/resolve?mac=52:54:00:12:34:77', { token: rescue });
    assert.equal(w.status, 202);
    assert.match(ok(await adm(['assign', String(w.json.pending.id), 'orig-web1'], op)).stdout, /assigned to orig-web1/);
    assert.equal(errorCode(await adm(['pin', 'orig-web1', '1'], op)), 'FORBIDDEN');
    assert.equal(ok(await adm(['recoveries', '--json'], view.stdout.trim())).status, 0);
  });
});

describe('RecoveryService over a real SQLite store: what the console\'s live streams hear', () => {
  test('listeners hear opens, events, pending machines seen, assigned and forgotten; a throwing listener breaks nothing; unsubscribe stops', async () => {
    const dir = tempDir('ru-recovery-service-');
    const meta = await openSqliteMetadata(join(dir, 'meta.db'));
    try {
      const svc = new RecoveryService(meta, { now: () => new Date(), silentAfterMs: 60_000 }, new LocalBus());
      await meta.addHost({ id: 'orig-db1', macs: ['52:54:00:aa:00:01'] });
      const heard: string[] = [];
      const stop = svc.subscribe((c: LiveChange) => heard.push(c.type === 'recovery' ? `recovery ${c.recovery.id} ${c.event.kind} ${c.recovery.phase}` : c.type === 'pending' ? `pending ${c.pending.id} ${c.change}` : c.type));
      svc.subscribe(() => {
        throw new Error('a broken console stream');
      });
      const r = await svc.open({ token: null, address: '127.0.0.1' }, { facts: { macs: ['52:54:00:12:34:56'] }, hardware: null });
      const p = await meta.recordPending({ macs: ['52:54:00:12:34:56'] }, '127.0.0.1');
      svc.notifyPending(p);
      await svc.record(r.id, { kind: 'pending', pending: p.id, detail: { pending: p.id } });
      const assigned = await svc.assign({ token: 'abcdefabcdef', address: '192.0.2.7' }, p.id, 'orig-db1');
      assert.equal(assigned.assignedHost, 'orig-db1');
      await assert.rejects(svc.assign({ token: 'abcdefabcdef', address: '192.0.2.7' }, p.id, 'no-such-host'), { code: 'HOST_UNKNOWN' });
      await svc.forget({ token: 'abcdefabcdef', address: '192.0.2.7' }, p.id);
      stop();
      await svc.record(r.id, { kind: 'note', message: 'after unsubscribe' });
      assert.deepEqual(heard, [
        `recovery ${r.id} booted resolving`,
        `pending ${p.id} seen`,
        `recovery ${r.id} pending pending`,
        `recovery ${r.id} assigned assigned`,
        `pending ${p.id} assigned`,
        `recovery ${r.id} note assigned`,
        `pending ${p.id} forgotten`,
      ]);
      const audit = await meta.queryAudit({ token: 'abcdefabcdef' });
      assert.deepEqual(audit.map((e) => [e.kind, e.result, e.host, e.address, e.detail]).reverse(), [
        ['assign', 'ok', 'orig-db1', '192.0.2.7', `pending ${p.id}`],
        ['assign', 'HOST_UNKNOWN', 'no-such-host', '192.0.2.7', `pending ${p.id}`],
        ['pending', 'ok', null, '192.0.2.7', `forgot pending ${p.id}`],
      ]);
      const events = (await svc.get(r.id)).events;
      assert.equal(events.find((e) => e.kind === 'assigned')!.actor, 'abcdefabcdef');
      await assert.rejects(svc.get(999_999), { code: 'RECOVERY_UNKNOWN' });
      await assert.rejects(svc.hints(p.id), { code: 'PENDING_UNKNOWN' });
      await assert.rejects(svc.open({ token: null, address: null }, { hardware: { disks: [{ name: 'sda', size: -1 }] } as never }), { code: 'STORE_INVALID' });
    } finally {
      await meta.close();
      cleanup(dir);
    }
  });
});
