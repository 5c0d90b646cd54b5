// Issue 14's faults of "several instances" and "load balancing with a real balancer", over real
// HTTP: three `rear-update serve` processes (A, B, C; test/support/instances.ts) on one private
// PostgreSQL 15 cluster with `--blobs postgres`, behind Debian's HAProxy
// (test/support/haproxy.ts), which names the instance it chose in X-Served-By.
//
// - kill -9 of the instance serving a download through HAProxy, mid-body: the client resumes
//   (Range, If-Range) through HAProxy, another instance answers 206, and the whole is
//   byte-identical to what a healthy instance seals for that ETag; the killed one restarts.
// - PostgreSQL restarted under load (downloads and publishes through HAProxy): every answer is
//   complete and correct or 503 STORE_BUSY (the clients retry), nothing is stored half or twice,
//   and service comes back by itself, no instance restarted.
// - an instance starting while another instance's publish is in flight: paused mid-body, and
//   (deterministically, by holding a lock) between the publish storing its blob and the version
//   naming it, the window in which a start's sweep of "unreferenced" blobs would take the blob.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { contentDigest } from '../../src/core/manifest.ts';
import { parseSse } from '../../src/server/console/live/sse.ts';
import { cleanup, cliAsync, httpRequest, tempDir, type HttpAnswer } from '../helpers.ts';
import { SERVED_BY, startHaproxy, type Haproxy } from '../support/haproxy.ts';
import { Instances } from '../support/instances.ts';
import { usePgCluster } from '../support/postgres.ts';
import { firstDifference, opened, packed, signIn } from '../support/fleet.ts';

const MiB = 1 << 20;
const work = tempDir('ru-multi-faults-');
let fleet: Instances | undefined;
let hap: Haproxy | undefined;
// Registered before the cluster's own after(): the instances stop while PostgreSQL still runs.
after(async () => {
  await hap?.stop();
  await fleet?.close();
  cleanup(work);
});
const pgCluster = usePgCluster();

let db: string;
let admin: string;
let pubPem: string;
const url = (name: string): string => fleet!.get(name).url;
const context = (names = ['A', 'B', 'C']): string => `${names.map((n) => `--- instance ${n}:\n${fleet!.output(n).slice(-1500)}`).join('\n')}\n--- haproxy:\n${hap!.log().slice(-1500)}`;




/** `rear-update admin fsck --json` against an instance: the check's report; exit 0 means no errors. */
async function fsck(base: string): Promise<{ status: number | null; report: { errors: unknown[]; leftovers: unknown[]; counts: Record<string, number> } | null; stderr: string }> {
  const r = await cliAsync(['admin', 'fsck', '--json'], { env: { REAR_UPDATE_SERVER: base, REAR_UPDATE_TOKEN: admin } });
  let report = null;
  try {
    const j = JSON.parse(r.stdout);
    report = j.check ?? j;
  } catch {
    // not JSON: the assertion shows stderr
  }
  return { status: r.status, report, stderr: `${r.stderr}${r.stdout.slice(0, 2000)}` };
}

before(async () => {
  db = await pgCluster().createDatabase('faults');
  fleet = await Instances.start({ db, work });
  hap = await startHaproxy(fleet.list.map((i) => ({ name: i.name, url: i.url })), { dir: join(work, 'haproxy') });
  admin = fleet.adminToken;
  pubPem = readFileSync(fleet.serverPub, 'utf8');
  // A large bundle of random (incompressible) content, published through HAProxy.
  const big = await packed(work, 'big', 'large', { 'random.bin': randomBytes(16 * MiB) });
  const r = await httpRequest(hap.url, 'POST', '/api/v1/hosts/big/versions', { token: admin, body: big.bytes });
  assert.equal(r.status, 201, r.body.toString());
}, { timeout: 240_000 });

/** One GET on a fresh connection; the answer, or the error that cut it. */
function fetchOnce(base: string, path: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<HttpAnswer | { error: string; status: number; got: number }> {
  return new Promise((resolve) => {
    let status = 0;
    let got = 0;
    const r = http.get(new URL(path, base), { agent: false, headers: { authorization: `Bearer ${admin}`, ...headers }, timeout: timeoutMs }, (res) => {
      status = res.statusCode ?? 0;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        got += c.length;
        parts.push(c);
      });
      res.on('end', () => {
        const b = Buffer.concat(parts);
        let json: unknown = null;
        try {
          json = JSON.parse(b.toString());
        } catch {
          // a bundle
        }
        resolve({ status, headers: res.headers, body: b, json });
      });
      res.on('aborted', () => resolve({ error: 'response cut', status, got }));
      res.on('error', (e) => resolve({ error: e.message, status, got }));
    });
    r.on('timeout', () => r.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    r.on('error', (e) => resolve({ error: e.message, status, got }));
  });
}

test('kill -9 of the instance serving a download through HAProxy, mid-body: the resume (Range, If-Range) through HAProxy is a 206 from another instance, and the whole is byte-identical to a healthy instance\'s', { timeout: 180_000 }, async (t) => {
  // The download, read 1 MiB and then held, so that the instance is killed with most of the bundle unsent.
  let killed = '';
  let killedAt = 0;
  const first = await new Promise<{ status: number; etag: string; size: number; by: string; part: Buffer; how: string }>((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const r = http.get(new URL('/api/v1/hosts/big/bundle', hap!.url), { agent: false, headers: { authorization: `Bearer ${admin}` } }, (res) => {
      const done = (how: string): void => resolve({ status: res.statusCode ?? 0, etag: String(res.headers.etag), size: Number(res.headers['content-length']), by: String(res.headers[SERVED_BY]), part: Buffer.concat(parts), how });
      res.on('data', (c: Buffer) => {
        parts.push(c);
        got += c.length;
        if (got >= MiB && killed === '') {
          killed = String(res.headers[SERVED_BY]);
          res.pause();
          killedAt = Date.now();
          void fleet!.kill9(killed).then(() => res.resume(), reject);
        }
      });
      res.on('end', () => done('end'));
      res.on('aborted', () => done('aborted'));
      res.on('error', () => done('error'));
    });
    r.on('error', reject);
  });
  assert.equal(first.status, 200);
  assert.ok(['A', 'B', 'C'].includes(first.by), `X-Served-By: ${first.by}`);
  assert.ok(first.part.length < first.size, `the kill came too late to cut the download: ${first.part.length} of ${first.size} bytes arrived (${first.how})`);
  const stateThen = (await hap!.states())[killed];
  // When HAProxy notices (watched beside the rest of the test).
  const noticed = hap!.waitStates({ [killed]: 'DOWN' }).then(() => Date.now() - killedAt);
  noticed.catch(() => undefined);

  // The resume, through HAProxy at once (HAProxy may not have noticed the death yet: a refused connection is retried elsewhere).
  const resumeAt = Date.now();
  const resume = await fetchOnce(hap!.url, '/api/v1/hosts/big/bundle', { range: `bytes=${first.part.length}-`, 'if-range': first.etag });
  assert.ok(!('error' in resume), `the resume failed: ${JSON.stringify(resume)}\n${context()}`);
  const by = String(resume.headers[SERVED_BY]);
  assert.equal(resume.status, 206, `resume: ${resume.status} ${resume.body.subarray(0, 300).toString()}`);
  assert.notEqual(by, killed, 'the resume went to another instance');
  assert.equal(resume.headers['content-range'], `bytes ${first.part.length}-${first.size - 1}/${first.size}`);
  assert.equal(resume.headers.etag, first.etag);
  const whole = Buffer.concat([first.part, resume.body]);
  assert.equal(whole.length, first.size);

  // What a healthy instance seals for that ETag, whole.
  const healthy = ['A', 'B', 'C'].filter((n) => n !== killed);
  for (const n of healthy) {
    const ref = await fetchOnce(url(n), '/api/v1/hosts/big/bundle', { range: 'bytes=0-', 'if-range': first.etag });
    assert.ok(!('error' in ref), JSON.stringify(ref));
    assert.equal(ref.status, 206, `${n}: ${ref.status}`);
    const d = firstDifference(whole, ref.body);
    assert.equal(d, -1, `the resumed download (${first.part.length} bytes from ${killed}, the rest from ${by}) differs from ${n}'s sealing for ${first.etag} at byte ${d} of ${first.size}`);
  }
  const file = join(work, 'resumed.tar.gz');
  writeFileSync(file, whole);
  const v = await cliAsync(['verify', file, '--pubkey', fleet!.serverPub]);
  assert.equal(v.status, 0, v.stderr);

  // HAProxy takes the dead instance out; restarted, it is back and seals the same bytes.
  const downAfter = await noticed;
  await fleet!.restart(killed);
  const restartedAt = Date.now();
  await hap!.waitStates({ [killed]: 'UP' });
  const upAfter = Date.now() - restartedAt;
  const again = await fetchOnce(url(killed), '/api/v1/hosts/big/bundle', { range: `bytes=${first.part.length}-`, 'if-range': first.etag });
  assert.ok(!('error' in again) && again.status === 206 && again.body.equals(resume.body), `the restarted ${killed} seals other bytes for ${first.etag}`);
  t.diagnostic(`${first.size} bytes: ${first.part.length} from ${killed} before its kill -9 (${first.how}); HAProxy said ${stateThen} for it at the resume, sent ${resumeAt - killedAt} ms after the kill; the 206 came from ${by}; HAProxy marked ${killed} DOWN within ${downAfter} ms of the kill and UP ${upAfter} ms after its restart served`);
});


/** A console event stream: its status, the events so far (with the time each piece arrived), and a way to close it. */
function sseStream(base: string, path: string, cookie: string): { status: Promise<number>; text: () => string; firstAt: (s: string) => number | undefined; close: () => void } {
  const pieces: { at: number; text: string }[] = [];
  let req!: http.ClientRequest;
  const status = new Promise<number>((resolve) => {
    req = http.get(new URL(path, base), { agent: false, headers: { cookie, accept: 'text/event-stream' } }, (res) => {
      resolve(res.statusCode ?? 0);
      res.on('data', (c: Buffer) => pieces.push({ at: Date.now(), text: c.toString() }));
      res.on('error', () => undefined);
    });
    req.on('error', () => resolve(0));
  });
  const text = (): string => pieces.map((p) => p.text).join('');
  return { status, text, firstAt: (s) => pieces.find((p) => p.text.includes(s))?.at, close: () => req.destroy() };
}

/**
 * After PostgreSQL is back: a machine going pending on A shows in B's console pending stream
 * (opened once B answers again). Returns how long that took, or a reason.
 */
async function pendingShownOnB(cookie: string, mac: string, patienceMs: number): Promise<{ ms: number | null; note: string }> {
  const t0 = Date.now();
  // B's stream, as soon as B can open one again.
  let stream: ReturnType<typeof sseStream> | undefined;
  while (Date.now() - t0 < 30_000) {
    const s = sseStream(url('B'), '/live/events?view=pending', cookie);
    if ((await s.status) === 200) {
      stream = s;
      break;
    }
    s.close();
    await sleep(100);
  }
  if (!stream) return { ms: null, note: 'B opened no console stream within 30 s' };
  try {
    while (!parseSse(stream.text()).some((e) => e.event === 'pending') && Date.now() - t0 < 30_000) await sleep(20);
    const opened = Date.now() - t0;
    // A records the machine as soon as it can (a 503 STORE_BUSY is asked again).
    let seen = 0;
    while (Date.now() - t0 < 30_000) {
      const r = await httpRequest(url('A'), 'GET', `/api/v1/resolve?mac=${mac}`, { token: admin });
      if (r.status === 202) {
        seen = Date.now();
        break;
      }
      await sleep(100);
    }
    if (!seen) return { ms: null, note: 'A recorded no pending machine within 30 s' };
    while (Date.now() - seen < patienceMs && stream.firstAt(mac) === undefined) await sleep(20);
    const at = stream.firstAt(mac);
    return { ms: at === undefined ? null : at - seen, note: `B's stream open ${opened} ms after PostgreSQL was started; A recorded the machine ${seen - t0} ms after it` };
  } finally {
    stream.close();
  }
}

interface Outcome {
  readonly kind: 'download' | 'publish';
  readonly at: number;
  readonly status: number;
  readonly result: 'ok' | 'busy' | 'bad';
  readonly detail: string;
}

test('PostgreSQL restarted under load through HAProxy: every answer is complete and correct or 503 STORE_BUSY, retried publishes are stored once and whole, service comes back by itself', { timeout: 180_000 }, async (t) => {
  const cluster = pgCluster();
  const dl = await packed(work, 'busy8', 'download', { 'random.bin': randomBytes(MiB) });
  const p0 = await httpRequest(hap!.url, 'POST', '/api/v1/hosts/busy8/versions', { token: admin, body: dl.bytes });
  assert.equal(p0.status, 201, p0.body.toString());
  const hosts = ['pub8a', 'pub8b'];
  const queue = new Map<string, { bytes: Buffer; digest: string }[]>();
  for (const h of hosts) queue.set(h, await Promise.all(Array.from({ length: 14 }, async (_, i) => {
    const p = await packed(work, h, `publish ${i}`, { 'site.conf': `# ${randomBytes(2000).toString('hex')}\n` });
    return { bytes: p.bytes, digest: contentDigest(p.manifest) };
  })));
  const pids = Object.fromEntries(fleet!.list.map((i) => [i.name, i.pid]));
  const viewTok = await httpRequest(url('A'), 'POST', '/api/v1/tokens', { token: admin, body: { scope: 'view', label: 'console on B' } });
  assert.equal(viewTok.status, 201, viewTok.body.toString());
  const cookie = await signIn(url('B'), viewTok.json.token);

  const outcomes: Outcome[] = [];
  const judge = (kind: Outcome['kind'], a: HttpAnswer | { error: string; status: number; got: number }, ok: (a: HttpAnswer) => string | null): Outcome => {
    const at = Date.now();
    let o: Outcome;
    if ('error' in a) o = { kind, at, status: a.status, result: 'bad', detail: `${a.error} after ${a.got} bytes` };
    else if (a.status === 503) {
      const code = (a.json as { error?: { code?: string } } | null)?.error?.code;
      o = { kind, at, status: 503, result: code === 'STORE_BUSY' ? 'busy' : 'bad', detail: code === 'STORE_BUSY' ? `retry-after ${String(a.headers['retry-after'])}` : `503 without STORE_BUSY (${String(a.headers[SERVED_BY])}): ${a.body.subarray(0, 200).toString()}` };
    } else {
      const wrong = ok(a);
      o = { kind, at, status: a.status, result: wrong === null ? 'ok' : 'bad', detail: wrong ?? '' };
    }
    outcomes.push(o);
    return o;
  };

  let running = true;
  const downloader = async (): Promise<void> => {
    while (running) {
      const a = await fetchOnce(hap!.url, '/api/v1/hosts/busy8/bundle');
      const o = judge('download', a, (x) => (x.status === 200 ? null : `HTTP ${x.status} ${x.body.subarray(0, 200).toString()}`));
      if (o.result === 'ok' && !('error' in a)) {
        // Complete and correct: the whole length, verified with server.pub, the published files.
        const b = await opened(a.body, pubPem).catch((e: Error) => ({ error: e.message }));
        if ('error' in b || JSON.stringify(b.files) !== JSON.stringify(dl.files)) outcomes.push({ ...o, result: 'bad', detail: `a 200 that is not the bundle: ${JSON.stringify(b).slice(0, 300)}` });
      } else {
        await sleep(100);
      }
    }
  };
  const acks = new Map<string, { digest: string; version: number; tries: number }[]>(hosts.map((h) => [h, []]));
  const publisher = async (host: string): Promise<void> => {
    for (const b of queue.get(host)!) {
      if (!running) return;
      // A 503 is retried with the same bundle until it is taken (a client would do the same).
      for (let tries = 1; ; tries++) {
        const a = await new Promise<HttpAnswer | { error: string; status: number; got: number }>((resolve) => {
          httpRequest(hap!.url, 'POST', `/api/v1/hosts/${host}/versions`, { token: admin, body: b.bytes }).then(resolve, (e: Error) => resolve({ error: e.message, status: 0, got: 0 }));
        });
        const o = judge('publish', a, (x) => (x.status === 201 || x.status === 200 ? null : `HTTP ${x.status} ${x.body.subarray(0, 300).toString()}`));
        if (o.result === 'ok' && !('error' in a)) {
          acks.get(host)!.push({ digest: (a.json as { version: { digest: string } }).version.digest, version: (a.json as { version: { version: number } }).version.version, tries });
          break;
        }
        if (o.result === 'bad' || tries > 200) return;
        await sleep(150);
      }
    }
  };
  const load = Promise.all([downloader(), downloader(), downloader(), ...hosts.map(publisher)]);
  await sleep(1500);
  const stoppedAt = Date.now();
  cluster.stop();
  // Five seconds: longer than the first steps of the instances' reconnection back-off (bus.ts),
  // so that what happens right after the restart happens while they are still reconnecting.
  await sleep(5000);
  cluster.start();
  const startedAt = Date.now();
  // The console's live view, right after the restart: the instances' bus connections come back by themselves.
  const live = pendingShownOnB(cookie, '52:54:00:14:08:01', 5000);
  await sleep(5000);
  running = false;
  await load;
  const shown = await live;

  const bad = outcomes.filter((o) => o.result === 'bad');
  const count = (kind: string, result: string, from = 0, to = Infinity): number => outcomes.filter((o) => o.kind === kind && o.result === result && o.at >= from && o.at < to).length;
  const back = outcomes.find((o) => o.at >= startedAt && o.result === 'ok' && o.kind === 'download');
  const backPub = outcomes.find((o) => o.at >= startedAt && o.result === 'ok' && o.kind === 'publish');
  t.diagnostic(`PostgreSQL down ${startedAt - stoppedAt} ms (stop and start included). Downloads: ${count('download', 'ok')} ok (${count('download', 'ok', stoppedAt, startedAt)} while it was down), ${count('download', 'busy')} STORE_BUSY; publishes: ${count('publish', 'ok')} ok, ${count('publish', 'busy')} STORE_BUSY; ${bad.length} other`);
  t.diagnostic(`service back by itself: first download ${back ? back.at - startedAt : 'never'} ms, first publish ${backPub ? backPub.at - startedAt : 'never'} ms after PostgreSQL was started again`);
  assert.deepEqual(bad.slice(0, 10).map((o) => `${o.kind} ${o.at - stoppedAt} ms after the stop: ${o.status} ${o.detail}`), [], `answers neither right nor 503 STORE_BUSY (${bad.length})\n${context()}`);
  assert.ok(count('download', 'busy') + count('publish', 'busy') > 0, 'the outage was seen (some 503 STORE_BUSY)');
  assert.ok(back && backPub, 'downloads and publishes succeed again after PostgreSQL is back');
  t.diagnostic(`console after the restart: ${shown.note}; the machine pending on A was in B's console stream ${shown.ms === null ? 'not within 5 s' : `${shown.ms} ms`} later`);

  // No instance was restarted, and every one answers directly.
  for (const i of fleet!.list) {
    assert.equal(i.pid, pids[i.name], `instance ${i.name} was restarted`);
    const h = await httpRequest(i.url, 'GET', '/healthz');
    assert.equal(h.status, 200, `${i.name}: ${h.body.toString()}`);
  }
  // Nothing half: the store check finds no error; each bundle that was sent is stored once at most, versions 1..n in the order acknowledged.
  const f = await fsck(url('C'));
  assert.equal(f.status, 0, f.stderr);
  assert.deepEqual(f.report?.errors, []);
  for (const h of hosts) {
    const list = await httpRequest(url('B'), 'GET', `/api/v1/hosts/${h}/versions`, { token: admin });
    assert.equal(list.status, 200, list.body.toString());
    const stored = (list.json.versions as { version: number; digest: string }[]).sort((a, b) => a.version - b.version);
    const sent = queue.get(h)!.map((b) => b.digest);
    assert.deepEqual(stored.map((v) => v.version), stored.map((_, i) => i + 1), `${h}: versions 1..n`);
    assert.equal(new Set(stored.map((v) => v.digest)).size, stored.length, `${h}: a bundle stored twice`);
    assert.deepEqual(stored.map((v) => v.digest), sent.slice(0, stored.length), `${h}: the versions are the bundles in the order sent`);
    const acked = acks.get(h)!;
    assert.deepEqual(acked.map((a) => [a.version, a.digest]), stored.slice(0, acked.length).map((v) => [v.version, v.digest]), `${h}: every acknowledged publish is the version it was told`);
    const unacked = stored.length - acked.length;
    t.diagnostic(`${h}: ${stored.length} versions, ${acked.length} acknowledged (${acked.filter((a) => a.tries > 1).length} after retries, at most ${Math.max(0, ...acked.map((a) => a.tries))} tries)${unacked > 0 ? `; ${unacked} stored though its client got no success (a 503 after the version was written)` : ''}`);
    assert.ok(unacked <= 1, `${h}: ${unacked} versions no client was told of`);
  }
  // Last, so that everything above is checked whatever this says: the console's live view came back too.
  assert.ok(shown.ms !== null && shown.ms < 2000, `after PostgreSQL's restart a machine pending on A is not in B's console stream within 2 s (${shown.ms === null ? 'not within 5 s' : `${shown.ms} ms`}; ${shown.note})`);
});

/** A publish request that sends the first `half` bytes now and the rest when told. */
function pausedPublish(base: string, host: string, body: Buffer, half: number): { sent: Promise<void>; finish: () => void; answer: Promise<HttpAnswer> } {
  let req!: http.ClientRequest;
  const answer = new Promise<HttpAnswer>((resolve, reject) => {
    req = http.request(new URL(`/api/v1/hosts/${host}/versions`, base), { method: 'POST', agent: false, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/gzip', 'content-length': String(body.length) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const b = Buffer.concat(parts);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b, json: JSON.parse(b.toString() || 'null') });
      });
    });
    req.on('error', reject);
  });
  answer.catch(() => undefined);
  const sent = new Promise<void>((resolve, reject) => req.write(body.subarray(0, half), (e) => (e ? reject(e) : resolve())));
  return { sent, finish: () => req.end(body.subarray(half)), answer };
}

test('an instance starting, and one restarting, while A holds a publish paused mid-body: the publish completes, its blob is there, the store check is clean', { timeout: 180_000 }, async (t) => {
  const b = await packed(work, 'start9', 'paused', { 'random.bin': randomBytes(2 * MiB) });
  const p = pausedPublish(url('A'), 'start9', b.bytes, b.bytes.length >> 1);
  await p.sent;
  await sleep(300);
  const t0 = Date.now();
  const d = await fleet!.add('D');
  await fleet!.kill9('C');
  await fleet!.restart('C');
  const starts = Date.now() - t0;
  p.finish();
  const r = await p.answer;
  assert.equal(r.status, 201, r.body.toString());
  assert.equal(r.json.version.version, 1);
  for (const n of ['D', 'C', 'A']) {
    const got = await httpRequest(url(n), 'GET', '/api/v1/hosts/start9/bundle', { token: admin });
    assert.equal(got.status, 200, `${n}: ${got.body.toString().slice(0, 300)}`);
    assert.deepEqual((await opened(got.body, pubPem)).files, b.files, n);
  }
  const f = await fsck(d.url);
  assert.equal(f.status, 0, f.stderr);
  assert.deepEqual(f.report?.errors, []);
  await hap!.waitStates({ C: 'UP' });
  t.diagnostic(`D started and C restarted (${starts} ms) while A held half of a ${b.bytes.length}-byte publish; it completed as version 1`);
});

test('an instance restarting while A\'s publish is between storing its blob and naming it in a version (the window held open by a lock on blob_chunks): the publish completes, its blob is there, the store check is clean', { timeout: 180_000 }, async (t) => {
  const watcher = new pg.Client({ connectionString: db });
  const locker = new pg.Client({ connectionString: db });
  await watcher.connect();
  await locker.connect();
  try {
    let caught = false;
    for (let attempt = 1; attempt <= 3 && !caught; attempt++) {
      const host = `window9-${attempt}`;
      const b = await packed(work, host, 'window', { 'random.bin': randomBytes(16 * MiB) });
      const unreferenced = async (): Promise<string[]> => (await watcher.query<{ sha256: string }>('select b.sha256 from blobs b where not exists (select 1 from versions v where v.blob = b.sha256)')).rows.map((r) => r.sha256);
      assert.deepEqual(await unreferenced(), [], 'no unreferenced blob before the publish');
      let answered = false;
      const publishing = httpRequest(url('A'), 'POST', `/api/v1/hosts/${host}/versions`, { token: admin, body: b.bytes }).finally(() => (answered = true));
      // The publish's blob is committed; its version is not written yet: A is reading it back (the probe).
      let blob: string | undefined;
      while (!answered && blob === undefined) {
        blob = (await unreferenced())[0];
        if (blob === undefined) await sleep(5);
      }
      if (blob === undefined) {
        t.diagnostic(`attempt ${attempt}: the publish was done before its blob was seen unreferenced`);
        assert.equal((await publishing).status, 201);
        continue;
      }
      await locker.query('begin');
      await locker.query('lock table blob_chunks in access exclusive mode');
      const named = await watcher.query('select 1 from versions where blob = $1', [blob]);
      if ((named.rowCount ?? 0) > 0) {
        await locker.query('rollback');
        t.diagnostic(`attempt ${attempt}: the version was written before the lock was taken`);
        assert.equal((await publishing).status, 201);
        continue;
      }
      caught = true;
      // C restarts while the window is open: its start may sweep what it takes for leftovers.
      const t0 = Date.now();
      await fleet!.kill9('C');
      let served = false;
      const restarting = fleet!.restart('C').then(() => (served = true), (e: Error) => e);
      const waits = new Set<string>();
      const deadline = Date.now() + 20_000;
      while (!served && Date.now() < deadline) {
        const w = await watcher.query<{ query: string }>("select query from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database() and query not like 'select data from blob_chunks%'");
        for (const r of w.rows) waits.add(r.query.replace(/\s+/g, ' ').slice(0, 120));
        if (waits.size > 0) break;
        await sleep(50);
      }
      const startState = served ? `C served ${Date.now() - t0} ms after its restart began` : waits.size > 0 ? `C's start waited on the lock: ${[...waits].join(' | ')}` : 'C neither served nor waited within 20 s';
      await locker.query('commit');
      const r = await publishing;
      const restarted = await restarting;
      t.diagnostic(`attempt ${attempt}: window held open with blob ${blob.slice(0, 12)}… unreferenced; ${startState}; the publish answered ${r.status}`);
      assert.ok(restarted === true, `C did not start again: ${String(restarted)}`);
      assert.equal(r.status, 201, `the publish in flight while C started: ${r.body.toString()}\n${context(['A', 'C'])}`);
      assert.equal(r.json.version.blob, blob);
      const present = await watcher.query<{ size: string }>('select size from blobs where sha256 = $1', [blob]);
      assert.equal(present.rowCount, 1, `blob ${blob} of ${host} version 1 is gone`);
      for (const n of ['C', 'B']) {
        const got = await httpRequest(url(n), 'GET', `/api/v1/hosts/${host}/bundle`, { token: admin });
        assert.equal(got.status, 200, `${n}: ${got.body.toString().slice(0, 300)}`);
        assert.deepEqual((await opened(got.body, pubPem)).files, b.files, n);
      }
      const f = await fsck(url('C'));
      assert.equal(f.status, 0, f.stderr);
      assert.deepEqual(f.report?.errors, []);
    }
    assert.ok(caught, 'the window between blob and version was never caught in three publishes');
    await hap!.waitStates({ C: 'UP' });
  } finally {
    await locker.query('rollback').catch(() => undefined);
    await watcher.end();
    await locker.end();
  }
});
