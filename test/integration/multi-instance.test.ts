// Issue 14, "several instances, one fleet", over real HTTP: three `rear-update serve` processes
// (A, B, C; test/support/instances.ts) on one private PostgreSQL 15 cluster with `--blobs
// postgres`, the second and third started from a copy of the first one's --data (the signing
// key's only way to them), and Debian's HAProxy in front of them (test/support/haproxy.ts).
// Every point of the issue is a test here: a publish through one instance is fetched through the
// others and through HAProxy, same payload, same server.pub, and the very same bytes when a
// download is resumed on another instance; concurrent publishes through A and B get distinct
// consecutive versions; a pin, an unpin or a publish made on B is served by A within a second;
// a machine pending on A and assigned through B gets its answer from A within two seconds (a
// resolve long poll, and the real `apply`); a recovery log uploaded to A is followed live on B;
// the console on B shows what happens on A as it happens. Measured latencies are printed as
// test diagnostics. The faults (kill -9 mid-download, PostgreSQL restarts under load, starts
// during a publish) are in multi-instance-faults.test.ts.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { contentDigest } from '../../src/core/manifest.ts';
import { parseSse } from '../../src/server/console/live/sse.ts';
import { cleanup, CLI, cliAsync, fakeSysRoot, httpRequest, makeTree, tempDir, type HttpAnswer } from '../helpers.ts';
import { SERVED_BY, startHaproxy, type Haproxy } from '../support/haproxy.ts';
import { Instances } from '../support/instances.ts';
import { usePgCluster } from '../support/postgres.ts';
import { firstDifference, opened, packed, signIn } from '../support/fleet.ts';

const work = tempDir('ru-multi-');
let fleet: Instances | undefined;
let hap: Haproxy | undefined;
const children = new Set<ChildProcess>();
// Registered before the cluster's own after(): the instances stop while PostgreSQL still runs.
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await hap?.stop();
  await fleet?.close();
  cleanup(work);
});
const pgCluster = usePgCluster();

let admin: string;
let pubPem: string;
const url = (name: string): string => fleet!.get(name).url;
/** What a failed assertion shows besides its message: the instances' and HAProxy's last words. */
const context = (): string => `${['A', 'B', 'C'].map((n) => `--- instance ${n}:\n${fleet!.output(n).slice(-1500)}`).join('\n')}\n--- haproxy:\n${hap!.log().slice(-1500)}`;

before(async () => {
  const db = await pgCluster().createDatabase('multi');
  fleet = await Instances.start({ db, work });
  hap = await startHaproxy(fleet.list.map((i) => ({ name: i.name, url: i.url })), { dir: join(work, 'haproxy') });
  admin = fleet.adminToken;
  pubPem = readFileSync(fleet.serverPub, 'utf8');
}, { timeout: 180_000 });

const get = (base: string, path: string, headers: Record<string, string> = {}): Promise<HttpAnswer> => httpRequest(base, 'GET', path, { token: admin, headers });


const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');


async function publish(base: string, host: string, bytes: Buffer): Promise<{ version: number; digest: string; blob: string }> {
  const r = await httpRequest(base, 'POST', `/api/v1/hosts/${host}/versions`, { token: admin, body: bytes });
  assert.equal(r.status, 201, r.body.toString());
  return r.json.version;
}


/** A request whose body is sent all but its last byte, and finished when the test says so. */
function heldUpload(base: string, path: string, body: Buffer): { ready: Promise<void>; finish: () => void; answer: Promise<HttpAnswer> } {
  let finish = (): void => undefined;
  let answerResolve!: (a: HttpAnswer) => void;
  let answerReject!: (e: Error) => void;
  const answer = new Promise<HttpAnswer>((res, rej) => {
    answerResolve = res;
    answerReject = rej;
  });
  const ready = new Promise<void>((resolve, reject) => {
    const r = http.request(new URL(path, base), { method: 'POST', agent: false, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/gzip', 'content-length': String(body.length) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const b = Buffer.concat(parts);
        let json: unknown = null;
        try {
          json = JSON.parse(b.toString());
        } catch {
          // not JSON
        }
        answerResolve({ status: res.statusCode ?? 0, headers: res.headers, body: b, json });
      });
    });
    r.on('error', (e) => {
      reject(e);
      answerReject(e);
    });
    r.write(body.subarray(0, body.length - 1), (e) => (e ? reject(e) : resolve()));
    finish = () => r.end(body.subarray(body.length - 1));
  });
  return { ready, finish: () => finish(), answer };
}

/** A GET whose body is collected as it arrives, each piece with its arrival time. */
interface Stream {
  readonly status: Promise<number>;
  readonly headers: Promise<http.IncomingHttpHeaders>;
  readonly pieces: { at: number; data: Buffer }[];
  bytes(): Buffer;
  /** Resolves with the time the response ended (or rejects when it broke off). */
  readonly ended: Promise<number>;
  close(): void;
}

function openStream(base: string, path: string, headers: Record<string, string>): Stream {
  const pieces: { at: number; data: Buffer }[] = [];
  let req!: http.ClientRequest;
  let setStatus!: (s: number) => void;
  let setHeaders!: (h: http.IncomingHttpHeaders) => void;
  const status = new Promise<number>((r) => (setStatus = r));
  const hdrs = new Promise<http.IncomingHttpHeaders>((r) => (setHeaders = r));
  const ended = new Promise<number>((resolve, reject) => {
    req = http.get(new URL(path, base), { agent: false, headers }, (res) => {
      setStatus(res.statusCode ?? 0);
      setHeaders(res.headers);
      res.on('data', (c: Buffer) => pieces.push({ at: Date.now(), data: c }));
      res.on('end', () => resolve(Date.now()));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
    });
    req.on('error', reject);
  });
  ended.catch(() => undefined);
  return { status, headers: hdrs, pieces, bytes: () => Buffer.concat(pieces.map((p) => p.data)), ended, close: () => req.destroy() };
}

/** Polls `probe` until it returns something other than undefined, or fails after `ms`. */
async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms\n${context()}`);
    await sleep(25);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
};

test('one fleet: a publish through A is fetched through B, C and HAProxy with the same payload, verified with the one server.pub; resumed on another instance, the bytes are the same', async (t) => {
  const tree = join(work, 'tree-fleet');
  const site = `# ${randomBytes(6000).toString('base64')}\n`;
  makeTree(tree, { etc: { rear: { 'local.conf': 'OUTPUT=ISO\nFLEET=1\n', 'site.conf': site } }, var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda 1000 gpt\n' } } } } });
  const want = { 'etc/rear/local.conf': sha256('OUTPUT=ISO\nFLEET=1\n'), 'etc/rear/site.conf': sha256(site), 'var/lib/rear/layout/disklayout.conf': sha256('disk /dev/sda 1000 gpt\n') };
  const sys = fakeSysRoot(join(work, 'sys-fleet'), ['52:54:00:14:01:01'], 'mi1.example.com');
  const pub = await cliAsync(['publish', '--server', url('A'), '--token', admin, '--root', tree, '--host', 'mi1', '--sys-root', sys]);
  assert.equal(pub.status, 0, pub.stderr);
  assert.match(pub.stdout, /published mi1 version 1/);

  // One key: every instance's server.pub, GET /api/v1/server-key and /healthz name the same one.
  const fingerprints = new Set<string>();
  for (const i of fleet!.list) {
    assert.equal(readFileSync(join(i.data, 'server.pub'), 'utf8'), pubPem, `instance ${i.name}'s server.pub`);
    assert.equal((await httpRequest(i.url, 'GET', '/api/v1/server-key')).body.toString(), pubPem, `instance ${i.name}'s GET /api/v1/server-key`);
    fingerprints.add((await httpRequest(i.url, 'GET', '/healthz')).json.key);
  }
  assert.equal(fingerprints.size, 1, [...fingerprints].join(' '));

  // Fetched directly from B and C (and A), and through HAProxy until every instance served once.
  const fetched: { via: string; body: Buffer; etag: string }[] = [];
  for (const n of ['B', 'C', 'A']) {
    const r = await get(url(n), '/api/v1/hosts/mi1/bundle');
    assert.equal(r.status, 200, `${n}: ${r.body.toString()}`);
    fetched.push({ via: n, body: r.body, etag: String(r.headers.etag) });
  }
  const servedBy = new Set<string>();
  for (let k = 0; k < 9 && servedBy.size < 3; k++) {
    const r = await get(hap!.url, '/api/v1/hosts/mi1/bundle');
    assert.equal(r.status, 200, r.body.toString());
    const by = String(r.headers[SERVED_BY]);
    servedBy.add(by);
    fetched.push({ via: `HAProxy→${by}`, body: r.body, etag: String(r.headers.etag) });
  }
  assert.deepEqual([...servedBy].sort(), ['A', 'B', 'C'], 'HAProxy sent the fetches to every instance');
  for (const f of fetched) {
    const b = await opened(f.body, pubPem);
    assert.deepEqual([b.host, b.version], ['mi1', 1], f.via);
    assert.deepEqual(b.files, want, `${f.via}: the payload is what was published through A`);
  }
  // The CLI's own verification with that server.pub, on what C and HAProxy served.
  for (const f of [fetched[1]!, fetched.at(-1)!]) {
    const file = join(work, `fleet-${f.via.replace(/\W/g, '_')}.tar.gz`);
    writeFileSync(file, f.body);
    const v = await cliAsync(['verify', file, '--pubkey', fleet!.serverPub]);
    assert.equal(v.status, 0, `${f.via}: ${v.stderr}`);
  }

  // One sealing, whichever instance seals it: asked with If-Range naming B's answer (a resume
  // from byte 0), A, C and HAProxy send B's bytes exactly.
  const ref = fetched[0]!;
  for (const via of ['A', 'C', 'B', 'HAProxy', 'HAProxy', 'HAProxy']) {
    const base = via === 'HAProxy' ? hap!.url : url(via);
    const r = await get(base, '/api/v1/hosts/mi1/bundle', { range: 'bytes=0-', 'if-range': ref.etag });
    const who = via === 'HAProxy' ? `HAProxy→${String(r.headers[SERVED_BY])}` : via;
    assert.equal(r.status, 206, `${who}: a resume naming B's ETag ${ref.etag}: ${r.body.toString().slice(0, 300)}`);
    assert.equal(r.headers.etag, ref.etag, who);
    const d = firstDifference(r.body, ref.body);
    assert.equal(d, -1, `${who} sealed version 1 of mi1 for ETag ${ref.etag} differently from B: first different byte ${d} of ${ref.body.length} (B ${ref.body[d]}, ${who} ${r.body[d]})`);
  }
  // ReaR's own route seals the same way: a resume of C's answer on B through /rear/HOST.tar.gz.
  const rearC = await get(url('C'), '/rear/mi1.tar.gz');
  assert.equal(rearC.status, 200);
  const rearB = await get(url('B'), '/rear/mi1.tar.gz', { range: 'bytes=100-', 'if-range': String(rearC.headers.etag) });
  assert.equal(rearB.status, 206, rearB.body.toString().slice(0, 300));
  assert.equal(firstDifference(rearB.body, rearC.body.subarray(100)), -1, '/rear/mi1.tar.gz resumed on B differs from C\'s');
  t.diagnostic(`bundle of ${ref.body.length} bytes; ETag ${ref.etag}; the same bytes from A, B, C and HAProxy (and on /rear/ from C and B)`);
});

test('concurrent publishes of one host through A and B (four each, released at once) get distinct consecutive versions 1..8', async (t) => {
  const N = 8;
  const bundles = await Promise.all(Array.from({ length: N }, (_, i) => packed(work, 'mi2', `concurrent ${i}`, { 'site.conf': `# ${i} ${randomBytes(3000).toString('hex')}\n` })));
  const via = (i: number): string => (i % 2 === 0 ? 'A' : 'B');
  // Every request is on its way with all but its last byte; then all end in the same tick.
  const held = bundles.map((b, i) => heldUpload(url(via(i)), '/api/v1/hosts/mi2/versions', b.bytes));
  await Promise.all(held.map((h) => h.ready));
  await sleep(200);
  const t0 = Date.now();
  for (const h of held) h.finish();
  const answers = await Promise.all(held.map((h) => h.answer));
  const took = Date.now() - t0;
  answers.forEach((a, i) => assert.equal(a.status, 201, `publish ${i} through ${via(i)}: ${a.body.toString()}`));
  const versions = answers.map((a) => a.json.version.version as number);
  assert.deepEqual([...versions].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i + 1), `versions ${versions.join(' ')}`);
  // Each answer names its own bundle's content.
  answers.forEach((a, i) => assert.equal(a.json.version.digest, contentDigest(bundles[i]!.manifest), `publish ${i}: the digest of what was sent`));
  // C lists them all, each version with the content of the publish that was told that number.
  const list = await get(url('C'), '/api/v1/hosts/mi2/versions');
  assert.equal(list.status, 200, list.body.toString());
  const stored = new Map((list.json.versions as { version: number; digest: string }[]).map((v) => [v.version, v.digest]));
  assert.equal(stored.size, N);
  answers.forEach((a) => assert.equal(stored.get(a.json.version.version), a.json.version.digest));
  // And what C serves for a version is that publish's payload.
  const k = answers.findIndex((a) => a.json.version.version === N);
  const last = await get(url('C'), `/api/v1/hosts/mi2/bundle?version=${N}`);
  assert.deepEqual((await opened(last.body, pubPem)).files, bundles[k]!.files);
  t.diagnostic(`A got versions ${versions.filter((_, i) => via(i) === 'A').join(',')}; B got ${versions.filter((_, i) => via(i) === 'B').join(',')}; all 8 answered ${took} ms after release`);
});

test('a pin, an unpin and a publish made on B are served by A within a second (A asked without pause throughout)', async (t) => {
  const v = await Promise.all([1, 2, 3].map((i) => packed(work, 'mi3', `v${i}`)));
  assert.equal((await publish(url('A'), 'mi3', v[0]!.bytes)).version, 1);
  assert.equal((await publish(url('A'), 'mi3', v[1]!.bytes)).version, 2);
  const servedByA = async (): Promise<number> => {
    const r = await get(url('A'), '/api/v1/hosts/mi3/bundle');
    assert.equal(r.status, 200, r.body.toString());
    return Number(r.headers['x-rear-update-version']);
  };
  assert.equal(await servedByA(), 2);

  /**
   * A is asked again and again from before B's change until 1.3 s after it returned, so A's
   * memo is always fresh with what it served before. Every fetch that starts 1000 ms or more
   * after the change returned must serve the new version (cache.ts: an entry lives 1 s from its
   * load, and a load that started before the change returned is older than that).
   */
  const watch = async (what: string, change: () => Promise<void>, want: number): Promise<void> => {
    const samples: { start: number; end: number; v: number }[] = [];
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        const start = Date.now();
        const got = await servedByA();
        samples.push({ start, end: Date.now(), v: got });
      }
    })();
    await sleep(300);
    const before = samples.at(-1)?.v;
    await change();
    const done = Date.now();
    await sleep(1300);
    stop = true;
    await loop;
    assert.notEqual(before, want, `${what}: A served ${want} already before the change`);
    const late = samples.filter((s) => s.start >= done + 1000);
    assert.ok(late.length > 0, `${what}: no fetch from A after a second`);
    const stale = late.filter((s) => s.v !== want);
    assert.deepEqual(stale.map((s) => `${s.start - done} ms: ${s.v}`), [], `${what}: fetches from A that started 1000 ms or more after the change returned and served another version than ${want}`);
    const first = samples.find((s) => s.end >= done && s.v === want);
    const after = samples.filter((s) => s.end >= done);
    t.diagnostic(`${what}: A served version ${want} from ${Math.max(0, first!.end - done)} ms after the change returned (${after.length} fetches from A in 1.3 s, ${after.filter((s) => s.v !== want).length} still the old version, none after 1000 ms)`);
  };
  await watch('pin 1 on B', async () => {
    const r = await httpRequest(url('B'), 'PUT', '/api/v1/hosts/mi3/pin', { token: admin, body: { version: 1 } });
    assert.equal(r.status, 200, r.body.toString());
  }, 1);
  await watch('unpin on B', async () => {
    const r = await httpRequest(url('B'), 'DELETE', '/api/v1/hosts/mi3/pin', { token: admin });
    assert.equal(r.status, 200, r.body.toString());
  }, 2);
  await watch('publish of version 3 through B', async () => {
    assert.equal((await publish(url('B'), 'mi3', v[2]!.bytes)).version, 3);
  }, 3);

  // The plain form: A served 3 (its memo is fresh), B pins 2, 1000 ms later A's very next fetch serves 2.
  assert.equal(await servedByA(), 3);
  const pin = await httpRequest(url('B'), 'PUT', '/api/v1/hosts/mi3/pin', { token: admin, body: { version: 2 } });
  assert.equal(pin.status, 200, pin.body.toString());
  await sleep(1000);
  assert.equal(await servedByA(), 2, 'A\'s first fetch 1000 ms after the pin on B returned');
  const body = await get(url('A'), '/api/v1/hosts/mi3/bundle');
  assert.deepEqual((await opened(body.body, pubPem)).files, v[1]!.files, 'and its bytes are version 2\'s');
});

/** Runs the CLI as a process whose stderr is watched while it runs. */
function watchedCli(args: string[], env: Record<string, string> = {}): { err: () => string; waitErr: (re: RegExp, ms: number) => Promise<number>; done: Promise<{ status: number | null; stdout: string; stderr: string }> } {
  const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  children.add(p);
  let stdout = '';
  let stderr = '';
  const seen: { re: RegExp; resolve: (t: number) => void }[] = [];
  p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of seen.splice(0)) {
      if (w.re.test(stderr)) w.resolve(Date.now());
      else seen.push(w);
    }
  });
  const done = new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => p.on('close', (status) => {
    children.delete(p);
    resolve({ status, stdout, stderr });
  }));
  return {
    err: () => stderr,
    waitErr: (re, ms) => new Promise<number>((resolve, reject) => {
      if (re.test(stderr)) return resolve(Date.now());
      const timer = setTimeout(() => reject(new Error(`the CLI did not print ${re} within ${ms} ms:\n${stderr}`)), ms);
      seen.push({ re, resolve: (at) => {
        clearTimeout(timer);
        resolve(at);
      } });
      void done.then(() => {
        clearTimeout(timer);
        if (re.test(stderr)) resolve(Date.now());
        else reject(new Error(`the CLI ended without printing ${re}:\n${stderr}`));
      });
    }),
    done,
  };
}

/** When pending machine `id` was assigned, by the store's record (C's view), in ms since the epoch. */
async function assignedTime(id: number): Promise<number> {
  const all = await get(url('C'), '/api/v1/pending?all=1');
  const rec = (all.json.pending as { id: number; assigned: string | null }[]).find((p) => p.id === id);
  assert.ok(rec?.assigned, `pending machine ${id} is not assigned: ${all.body.toString().slice(0, 500)}`);
  return Date.parse(rec.assigned);
}

/** The unassigned pending machine with this MAC, as instance `via` lists it. */
const pendingWith = async (via: string, mac: string): Promise<{ id: number } | undefined> => {
  const r = await get(url(via), '/api/v1/pending');
  return (r.json?.pending as { id: number; facts: { macs: string[] } }[] | undefined)?.find((p) => p.facts.macs.includes(mac));
};

test('a machine pending on A and assigned through B gets its answer from A within two seconds: a held resolve (wait=20) assigned with `admin assign` against B, then its bundle; the real `apply --server A`, assigned through B as soon as B lists it', async (t) => {
  const v = await packed(work, 'mi4', 'assigned');
  await publish(url('A'), 'mi4', v.bytes);

  // The contract of wait=: unassigned for the whole wait, the answer is the usual 202, saying how long it waited.
  const t1 = Date.now();
  const idle = await get(url('A'), '/api/v1/resolve?mac=52:54:00:14:04:f0&wait=1');
  const idleMs = Date.now() - t1;
  assert.equal(idle.status, 202, idle.body.toString());
  assert.equal(idle.json.waited, 1, `a resolve with wait=1 answered after ${idleMs} ms without "waited": ${idle.body.toString().slice(0, 300)} (GET /api/v1/resolve does not hold the request yet?)`);
  assert.ok(idleMs >= 900, `wait=1 answered after ${idleMs} ms`);

  // The long poll, sent directly to A; the assignment with `rear-update admin assign` against B.
  const mac = '52:54:00:14:04:01';
  let answeredAt = 0;
  const asked = Date.now();
  const resolving = get(url('A'), `/api/v1/resolve?mac=${mac}&wait=20`).then((r) => {
    answeredAt = Date.now();
    return r;
  });
  const pending = await until('the machine pending on A is listed by B', 10_000, async () => pendingWith('B', mac));
  const listed = Date.now();
  if (answeredAt !== 0) assert.fail(`A answered the resolve before the assignment: ${JSON.stringify((await resolving).json)}`);
  const cliStart = Date.now();
  const cliAssign = await cliAsync(['admin', 'assign', String(pending.id), 'mi4'], { env: { REAR_UPDATE_SERVER: url('B'), REAR_UPDATE_TOKEN: admin } });
  const cliDone = Date.now();
  assert.equal(cliAssign.status, 0, cliAssign.stderr);
  const r = await resolving;
  // When the assignment happened, by the store's record (this machine's clock): the CLI's own start-up is not counted.
  const assignedAt = await assignedTime(pending.id);
  const latency = answeredAt - assignedAt;
  t.diagnostic(`resolve?wait=20 on A: pending machine ${pending.id} listed by B ${listed - asked} ms after the resolve was sent; \`admin assign\` through B ran ${cliDone - cliStart} ms and recorded the assignment at +${assignedAt - cliStart} ms; A answered ${latency} ms after that record`);
  assert.ok(answeredAt >= cliStart, `A answered ${cliStart - answeredAt} ms before the assignment was sent (${r.status}, waited ${r.json?.waited}): A did not hear of it`);
  assert.equal(r.status, 200, r.body.toString());
  assert.deepEqual([r.json.status, r.json.host, r.json.by, r.json.pending], ['resolved', 'mi4', 'assignment', pending.id]);
  assert.ok(latency < 2000, `A answered ${latency} ms after the assignment (at most 2000)`);
  const bundle = await get(url('A'), '/api/v1/hosts/mi4/bundle');
  assert.equal(bundle.status, 200);
  assert.deepEqual((await opened(bundle.body, pubPem)).files, v.files);

  // The real client: `apply --server A` by this machine's facts, waiting; assigned through B as
  // soon as B lists it (an admin watching the pending list), so no poll interval hides a delay.
  const mac2 = '52:54:00:14:04:02';
  const sys = fakeSysRoot(join(work, 'sys-apply'), [mac2], 'rescue-template');
  const dst = join(work, 'rescue-apply');
  mkdirSync(dst);
  const started = Date.now();
  const apply = watchedCli(['apply', '--server', url('A'), '--token', admin, '--root', dst, '--pubkey', fleet!.serverPub, '--sys-root', sys, '--wait', '60', '-q']);
  const { id } = await until('apply\'s machine listed by B', 30_000, async () => pendingWith('B', mac2));
  const listedAt = Date.now();
  const assign = await httpRequest(url('B'), 'POST', '/api/v1/assign', { token: admin, body: { pending: id, host: 'mi4' } });
  const assigned = Date.now();
  assert.equal(assign.status, 200, assign.body.toString());
  const resolvedAt = await apply.waitErr(/resolved this machine to host mi4 \(by assignment\)/, 30_000);
  const done = await apply.done;
  const exitAt = Date.now();
  const told = /PENDING as machine (\d+)/.exec(apply.err());
  const applyLatency = resolvedAt - assigned;
  t.diagnostic(`apply --server A: listed as pending machine ${id} by B ${listedAt - started} ms after apply started (its console ${told ? `said PENDING as machine ${told[1]}` : 'never said PENDING nor the machine\'s id'}); assigned through B (POST /api/v1/assign, ${assigned - listedAt} ms); apply printed "resolved" ${applyLatency} ms after the assignment returned and exited ${exitAt - resolvedAt} ms later`);
  assert.equal(done.status, 0, done.stderr);
  assert.equal(readFileSync(join(dst, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\n# mi4 assigned\n');
  assert.ok(applyLatency < 2000, `apply learnt of the assignment ${applyLatency} ms after it (at most 2000)`);
});

test('a recovery log uploaded to A (a slow streaming PUT) is followed on B: every byte, in order, and the follow ends when the upload does', async (t) => {
  const created = await httpRequest(url('A'), 'POST', '/api/v1/hosts', { token: admin, body: { id: 'mi5' } });
  assert.equal(created.status, 201, created.body.toString());
  // Lines cut anywhere, a UTF-8 character split between two chunks, CR LF, long and short pieces.
  const chunks: Buffer[] = [];
  for (let i = 0; i < 16; i++) {
    const lines = Array.from({ length: 1 + (i % 5) * 7 }, (_, k) => `2026-01-14 12:00:${String(i).padStart(2, '0')} chunk ${i} line ${k}: Running 'layout/recreate' stage ${'='.repeat(k * 3)}\n`).join('');
    chunks.push(Buffer.from(`${lines}${i % 3 === 0 ? 'partial line, continued ' : ''}${i % 4 === 1 ? 'CRLF\r\n' : ''}`));
  }
  const euro = Buffer.from('€ split\n');
  chunks.splice(5, 0, euro.subarray(0, 1), euro.subarray(1));
  const sent = Buffer.concat(chunks);

  const upload = http.request(new URL('/clients/mi5/log/recover/20260114-1200', url('A')), { method: 'PUT', agent: false, headers: { authorization: admin, 'transfer-encoding': 'chunked' } });
  const uploaded = new Promise<HttpAnswer>((resolve, reject) => {
    upload.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts), json: JSON.parse(Buffer.concat(parts).toString() || 'null') }));
    });
    upload.on('error', reject);
  });
  uploaded.catch(() => undefined);
  let follower: Stream | undefined;
  try {
    const writes: { at: number; offset: number }[] = [];
    let offset = 0;
    const write = (c: Buffer): void => {
      upload.write(c);
      offset += c.length;
      writes.push({ at: Date.now(), offset });
    };
    write(chunks[0]!);
    const logId = await until('B lists the log that A receives', 10_000, async () => (await get(url('B'), '/api/v1/hosts/mi5/logs')).json?.logs?.[0]?.id as number | undefined);
    follower = openStream(url('B'), `/api/v1/logs/${logId}?follow=1`, { authorization: `Bearer ${admin}` });
    assert.equal(await follower.status, 200);
    for (const c of chunks.slice(1)) {
      await sleep(180);
      write(c);
    }
    await sleep(300);
    const beforeEnd = follower.bytes().length;
    const endedAt = Date.now();
    upload.end();
    const done = await uploaded;
    assert.equal(done.status, 201, done.body.toString());
    assert.equal(done.json.log.complete, true);
    let timer: NodeJS.Timeout | undefined;
    const followEnd = await Promise.race([follower.ended, new Promise<number>((_, rej) => (timer = setTimeout(() => rej(new Error(`B's follower did not end within 15 s of the upload's end; it had ${follower!.bytes().length} of ${sent.length} bytes\n${context()}`)), 15_000)))]);
    clearTimeout(timer);
    const got = follower.bytes();
    const d = firstDifference(got, sent);
    assert.equal(d, -1, `B's follower got ${got.length} bytes, ${sent.length} were sent; first difference at ${d}`);
    // Live: most of it arrived while the upload was still open, each chunk soon after A got it.
    assert.ok(beforeEnd >= sent.length / 2, `B's follower had ${beforeEnd} of ${sent.length} bytes before the upload ended`);
    const lags = writes.filter((w) => w.at > follower!.pieces[0]!.at - 1).map((w) => {
      let n = 0;
      const p = follower!.pieces.find((x) => (n += x.data.length) >= w.offset);
      return p ? p.at - w.at : NaN;
    });
    const endLag = followEnd - endedAt;
    t.diagnostic(`log ${logId}, ${sent.length} bytes in ${chunks.length} writes over ${writes.at(-1)!.at - writes[0]!.at} ms on A: on B each write after ${median(lags)} ms (median), ${Math.max(...lags)} ms at most; B's follow ended ${endLag} ms after the upload's end`);
    assert.ok(Math.max(...lags) < 2000, `a chunk took ${Math.max(...lags)} ms from A to B's follower`);
    assert.ok(endLag < 3000, `B's follow ended ${endLag} ms after the upload`);
    // The finished log, read whole through C and HAProxy.
    for (const base of [url('C'), hap!.url]) {
      const whole = await get(base, `/api/v1/logs/${logId}`);
      assert.equal(whole.status, 200);
      assert.equal(firstDifference(whole.body, sent), -1, `${base}: the finished log`);
      assert.equal(whole.headers['x-rear-update-log-complete'], 'true');
    }
  } finally {
    follower?.close();
    if (!upload.writableEnded) upload.destroy();
  }
});


/** Server-sent events on a stream so far. */
const events = (s: Stream): { event: string; id: string | null; data: string }[] => parseSse(s.bytes().toString('utf8'));

test('the console on B shows what happens on A as it happens: a machine pending on A appears in B\'s pending stream, a recovery event reported to A in B\'s recovery stream', async (t) => {
  const viewTok = await httpRequest(url('A'), 'POST', '/api/v1/tokens', { token: admin, body: { scope: 'view', label: 'console on B' } });
  assert.equal(viewTok.status, 201, viewTok.body.toString());
  const cookie = await signIn(url('B'), viewTok.json.token);

  // B's pending stream, opened before the machine shows up on A.
  const mac = '52:54:00:14:06:01';
  const stream = openStream(url('B'), '/live/events?view=pending', { cookie, accept: 'text/event-stream' });
  try {
    assert.equal(await stream.status, 200);
    await until('B\'s first pending snapshot', 10_000, async () => (events(stream).some((e) => e.event === 'pending') ? true : undefined));
    assert.ok(!stream.bytes().toString().includes(mac));
    const r = await get(url('A'), `/api/v1/resolve?mac=${mac}`);
    assert.equal(r.status, 202, r.body.toString());
    const seenOnA = Date.now();
    const shown = await until('the machine pending on A in B\'s console stream', 10_000, async () => {
      const e = events(stream).find((x) => x.event === 'pending' && x.data.includes(mac));
      return e ? stream.pieces.find((p) => p.data.toString().includes(mac))?.at : undefined;
    });
    const latency = shown - seenOnA;
    t.diagnostic(`console: the machine pending on A was in B's pending stream ${latency} ms after A answered 202`);
    const snapshot = events(stream).find((x) => x.event === 'pending' && x.data.includes(mac))!;
    const card = (JSON.parse(snapshot.data) as { machines: { id: number; facts: [string, string][] }[] }).machines.find((m) => JSON.stringify(m.facts).includes(mac));
    assert.equal(card?.id, r.json.pending.id);
    assert.ok(latency < 2000, `shown on B ${latency} ms after the machine went pending on A (at most 2000)`);
  } finally {
    stream.close();
  }

  // A recovery reported to A, followed on B's recovery page stream.
  assert.equal((await httpRequest(url('A'), 'POST', '/api/v1/hosts', { token: admin, body: { id: 'mi6' } })).status, 201);
  const opened = await httpRequest(url('A'), 'POST', '/api/v1/recoveries', { token: admin, body: { host: 'mi6', facts: { macs: ['52:54:00:14:06:02'] } } });
  assert.equal(opened.status, 201, opened.body.toString());
  const id = opened.json.recovery.id as number;
  const rs = openStream(url('B'), `/live/recoveries/${id}/stream`, { cookie, accept: 'text/event-stream' });
  try {
    assert.equal(await rs.status, 200);
    await until('B\'s recovery stream status', 10_000, async () => (events(rs).some((e) => e.event === 'status') ? true : undefined));
    const message = `layout recreated on A ${randomBytes(4).toString('hex')}`;
    const ev = await httpRequest(url('A'), 'POST', `/api/v1/recoveries/${id}/events`, { token: admin, body: { kind: 'note', message } });
    assert.equal(ev.status, 201, ev.body.toString());
    const reported = Date.now();
    const shown = await until('A\'s recovery event in B\'s recovery stream', 10_000, async () => (events(rs).some((e) => e.event === 'timeline' && e.data.includes(message)) ? rs.pieces.find((p) => p.data.toString().includes(message))?.at : undefined));
    t.diagnostic(`console: a recovery event reported to A was in B's recovery stream ${shown - reported} ms after A answered`);
    assert.ok(shown - reported < 2000, `shown on B ${shown - reported} ms after A recorded it`);
    // And B's API has it (the store is shared; this needs no message between instances).
    const onB = await get(url('B'), `/api/v1/recoveries/${id}`);
    assert.ok(JSON.stringify(onB.json.events).includes(message), onB.body.toString());
  } finally {
    rs.close();
  }
});
