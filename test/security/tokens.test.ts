// Token theft and hostile rescue machines, against a real server on loopback: expiring tokens,
// single-use (N-use) fetch tokens that cannot be replayed or double-spent by racing downloads,
// the last use shown in `token list`, and pending records bounded per token, per address and
// in all; the console roles (view reads, operate assigns and forgets) reaching nothing else.
// The server's clock is the test's (skewed forward to pass an expiry).

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { MemoryMetadataStore } from '../../src/adapters/storage/memory-metadata.ts';
import { ROUTES } from '../../src/server/app.ts';
import type { ServerContext } from '../../src/server/context.ts';
import { loadConfig } from '../../src/server/config.ts';
import { ensureAdminToken, layout } from '../../src/server/data-dir.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { adminSide, cleanup, cli, cliAsync, errorCode, fakeSysRoot, makeTree, succeeded, tempDir } from '../helpers.ts';
import { type HttpAnswer } from '../helpers.ts';


const work = tempDir('ru-tokens-');
const data = join(work, 'data');
let srv: Running;
let admin: string;
let skewMs = 0;

/** Requests and `admin` runs with the admin token unless another is given. */
const { req, adm } = adminSide(() => srv, () => admin);
const ok = succeeded;

async function newToken(body: object): Promise<{ token: string; id: string }> {
  const r = await req('POST', '/api/v1/tokens', { body });
  assert.equal(r.status, 201, r.body.toString());
  return { token: r.json.token as string, id: r.json.id as string };
}

async function tokenRow(id: string): Promise<Record<string, unknown>> {
  return ((await req('GET', '/api/v1/tokens')).json.tokens as { id: string }[]).find((t) => t.id === id) as Record<string, unknown>;
}

const basic = (token: string): string => `Basic ${Buffer.from(`rear:${token}`).toString('base64')}`;

describe('tokens: expiry, uses, last use; pending limits', () => {
  before(async () => {
    srv = await startServer(
      loadConfig({ data, listen: '127.0.0.1:0', pendingPerToken: '3', pendingPerAddress: '4', pendingMax: '6' }, {}),
      { log: false, now: () => new Date(Date.now() + skewMs) },
    );
    admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    for (const [id, cls, mac] of [['tok-h', 'typeT', '52:54:00:ee:00:01'], ['tok-g', 'typeT', '52:54:00:ee:00:02']] as const) {
      assert.equal((await req('POST', '/api/v1/hosts', { body: { id, class: cls, macs: [mac] } })).status, 201);
      const root = join(work, `tree-${id}`);
      makeTree(root, { etc: { rear: { 'local.conf': `OUTPUT=ISO\nHOST=${id}\n`, 'site.conf': '# site\n' } } });
      const file = join(work, `${id}.tar.gz`);
      assert.equal(cli(['pack', '--root', root, '--host', id, '-o', file]).status, 0);
      assert.equal((await req('POST', `/api/v1/hosts/${id}/versions`, { body: readFileSync(file) })).status, 201);
    }
  });
  after(async () => {
    await srv?.close();
    cleanup(work);
  });

  test('token theft: an expired token is refused with 401 AUTH_EXPIRED naming when it expired, on every kind of route', async () => {
    const created = ok(await adm(['token', 'create', '--fetch', 'tok-h', '--expires', '90s', '--label', 'short-lived']));
    const token = created.stdout.trim();
    const id = token.slice(3, 15);
    assert.match(created.stderr, /it expires at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ/);
    const row = await tokenRow(id);
    const expires = Date.parse(String(row.expires));
    assert.ok(Math.abs(expires - (Date.now() + 90_000)) < 10_000, `stored as an absolute time 90 s ahead: ${String(row.expires)}`);
    assert.equal((await req('GET', '/api/v1/hosts/tok-h/bundle', { token })).status, 200, 'works before it expires');
    const listed = ok(await adm(['token', 'list']));
    assert.match(listed.stdout, new RegExp(`^${id}\\s+fetch:tok-h\\s+short-lived\\s+\\S+ \\S+\\s+-\\s+\\d{4}-\\d\\d-\\d\\d \\S+Z\\s+-\\s`, 'm'), listed.stdout);

    const adminShort = ok(await adm(['token', 'create', '--admin', '--expires', '1m'])).stdout.trim();
    skewMs += 91_000;
    try {
      for (const [what, r] of [
        ['bundle', await req('GET', '/api/v1/hosts/tok-h/bundle', { token })],
        ['rear', await req('GET', '/rear/tok-h.tar.gz', { auth: basic(token) })],
        ['drlm', await req('GET', '/clients/tok-h/config', { auth: token })],
        ['resolve', await req('GET', '/api/v1/resolve?mac=52:54:00:ee:00:01', { token })],
        ['logs', await req('GET', '/api/v1/hosts/tok-h/logs', { token })],
      ] as const) {
        assert.equal(r.status, 401, `${what}: ${r.body.toString()}`);
        assert.equal(r.json.error.code, 'AUTH_EXPIRED', what);
        assert.equal(r.json.error.context.expired, row.expires, `${what} names the expiry`);
        assert.ok(String(r.json.error.message).includes(String(row.expires)), r.json.error.message);
        assert.match(String(r.headers['www-authenticate']), /^Basic/);
      }
      const viaCli = await adm(['host', 'list'], adminShort);
      assert.equal(viaCli.status, 7);
      assert.equal(errorCode(viaCli), 'AUTH_EXPIRED');
      assert.match(ok(await adm(['token', 'list'])).stdout, new RegExp(`^${id}\\s.*\\(expired\\)`, 'm'));
      const audit = await req('GET', `/api/v1/audit?token=${id}&result=AUTH_EXPIRED`);
      assert.ok(audit.json.events.length >= 2, 'refused fetches are audited with the code');
    } finally {
      skewMs -= 91_000;
    }

    const [past, junk, both] = await Promise.all([
      adm(['token', 'create', '--fetch', 'tok-h', '--expires', '2020-01-01T00:00:00Z']),
      adm(['token', 'create', '--fetch', 'tok-h', '--expires', 'soon']),
      req('POST', '/api/v1/tokens', { body: { scope: 'fetch:tok-h', expires: '2099-01-01T00:00:00Z', expiresIn: 60 } }),
    ]);
    assert.equal(past.status, 7);
    assert.match(past.stderr, /REQUEST_INVALID.*expires must be a time in the future/);
    assert.equal(junk.status, 2);
    assert.match(junk.stderr, /--expires "soon" is neither a duration/);
    assert.equal(both.json.error.context.param, 'expires');
    const week = await newToken({ scope: 'fetch:tok-h', expiresIn: '1w' });
    assert.ok(Math.abs(Date.parse(String((await tokenRow(week.id)).expires)) - (Date.now() + 7 * 86_400_000)) < 10_000);
  });

  test('last use: token list shows when and from which address a token was last used, written at most once a minute', async () => {
    const { token, id } = await newToken({ scope: 'fetch:tok-h', label: 'watched' });
    assert.deepEqual([(await tokenRow(id)).lastUsed, (await tokenRow(id)).lastAddress], [null, null]);
    assert.equal((await req('GET', '/api/v1/hosts/tok-h/bundle', { token })).status, 200);
    const waitFor = async (pred: (r: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
      for (let i = 0; i < 100; i++) {
        const r = await tokenRow(id);
        if (pred(r)) return r;
        await new Promise((res) => setTimeout(res, 20));
      }
      return tokenRow(id);
    };
    const first = await waitFor((r) => r.lastUsed !== null);
    assert.equal(first.lastAddress, '127.0.0.1');
    const list = ok(await adm(['token', 'list']));
    assert.match(list.stdout, /^ID\s+SCOPE\s+LABEL\s+CREATED\s+REVOKED\s+EXPIRES\s+USES LEFT\s+LAST USED\s+FROM$/m);
    assert.match(list.stdout, new RegExp(`^${id}\\s+fetch:tok-h\\s+watched\\s+.*\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ\\s+127\\.0\\.0\\.1$`, 'm'), list.stdout);
    const json = JSON.parse(ok(await adm(['token', 'list', '--json'])).stdout) as { tokens: { id: string; lastUsed: string; lastAddress: string }[] };
    assert.equal(json.tokens.find((t) => t.id === id)!.lastUsed, first.lastUsed);

    // The hot path does not write on every request: the same address within the minute changes nothing.
    for (let i = 0; i < 5; i++) assert.equal((await req('GET', '/api/v1/hosts/tok-h/bundle', { token })).status, 200);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal((await tokenRow(id)).lastUsed, first.lastUsed);
    // A new address is written at once (after a second): a stolen token shows where it went.
    await new Promise((res) => setTimeout(res, 1100));
    assert.equal((await req('GET', '/api/v1/hosts/tok-h/logs', { token, from: '127.0.0.2' })).status, 200);
    assert.equal((await waitFor((r) => r.lastAddress === '127.0.0.2')).lastAddress, '127.0.0.2');
  });

  test('replayed single-use token: a --uses 1 token installs once with apply; the replay gets 401 AUTH_USED_UP', async () => {
    const created = ok(await adm(['token', 'create', '--fetch', 'tok-h', '--uses', '1', '--label', 'one recovery']));
    const token = created.stdout.trim();
    const id = token.slice(3, 15);
    assert.match(created.stderr, /good for 1 bundle download\./);
    assert.match(ok(await adm(['token', 'list'])).stdout, new RegExp(`^${id}\\s.*\\s1 of 1\\s`, 'm'));

    // Neither a resolve nor a HEAD spends the use.
    assert.equal((await req('GET', '/api/v1/resolve?mac=52:54:00:ee:00:01', { token })).status, 200);
    assert.equal((await req('HEAD', '/api/v1/hosts/tok-h/bundle', { token })).status, 200);
    assert.equal((await tokenRow(id)).usesLeft, 1);

    const dst = join(work, 'rescue-once');
    mkdirSync(dst);
    const ap = await cliAsync(['apply', 'tok-h', '--server', srv.url, '--token', token, '--root', dst, '--pubkey', join(data, 'server.pub'), '-q']);
    assert.equal(ap.status, 0, ap.stderr);
    assert.match(readFileSync(join(dst, 'etc/rear/local.conf'), 'utf8'), /HOST=tok-h/);
    assert.deepEqual([(await tokenRow(id)).used, (await tokenRow(id)).usesLeft], [1, 0]);

    const dst2 = join(work, 'rescue-replay');
    mkdirSync(dst2);
    const replay = await cliAsync(['apply', 'tok-h', '--server', srv.url, '--token', token, '--root', dst2, '--pubkey', join(data, 'server.pub'), '-q']);
    assert.equal(replay.status, 7, replay.stderr);
    assert.match(replay.stderr, /DOWNLOAD_REFUSED: .*HTTP 401 token [0-9a-f]{12} has started all of its 1 bundle download: it is used up/);
    for (const [what, r] of [
      ['bundle', await req('GET', '/api/v1/hosts/tok-h/bundle', { token })],
      ['rear', await req('GET', '/rear/tok-h.tar.gz', { auth: basic(token) })],
      ['head', await req('HEAD', '/api/v1/hosts/tok-h/bundle', { token })],
      ['drlm config', await req('GET', '/clients/tok-h/config', { auth: token })],
      ['resolve', await req('GET', '/api/v1/resolve?mac=52:54:00:ee:00:01', { token })],
    ] as const) {
      assert.equal(r.status, 401, `${what}: ${r.status} ${r.body.toString().slice(0, 200)}`);
      if (what !== 'head') assert.equal(r.json.error.code, 'AUTH_USED_UP', what);
    }
    // The recovery it fetched for may still send its log.
    const log = await req('PUT', '/clients/tok-h/log/recover/20260101120000', { auth: token, body: 'rear recover: done\n' });
    assert.equal(log.status, 201, log.body.toString());
    assert.match(ok(await adm(['token', 'list'])).stdout, new RegExp(`^${id}\\s.*\\s0 of 1 \\(used up\\)\\s`, 'm'));
    const refused = await req('GET', `/api/v1/audit?token=${id}&kind=fetch&result=AUTH_USED_UP`);
    assert.ok(refused.json.events.length >= 2, 'replays are audited');

    const [publishUses, zero] = await Promise.all([
      adm(['token', 'create', '--publish', 'tok-h', '--uses', '1']),
      req('POST', '/api/v1/tokens', { body: { scope: 'fetch:tok-h', uses: 0 } }),
    ]);
    assert.match(publishUses.stderr, /only fetch:HOST and fetch-class:CLASS tokens/);
    assert.equal(zero.json.error.context.param, 'uses');
  });

  test('replayed single-use token: of 10 concurrent downloads exactly one gets the bundle (3 of a --uses 3 token)', async () => {
    for (const uses of [1, 3]) {
      const { token, id } = await newToken({ scope: 'fetch-class:typeT', uses });
      const got = await Promise.all(Array.from({ length: 10 }, (_, i) => req('GET', i % 2 ? '/api/v1/hosts/tok-g/bundle' : '/rear/tok-g.tar.gz', { token })));
      assert.equal(got.filter((r) => r.status === 200).length, uses, got.map((r) => r.status).join(','));
      for (const r of got.filter((x) => x.status !== 200)) {
        assert.equal(r.status, 401);
        assert.equal(r.json.error.code, 'AUTH_USED_UP');
      }
      for (const r of got.filter((x) => x.status === 200)) assert.equal(r.body.subarray(0, 2).toString('hex'), '1f8b', 'a whole bundle');
      assert.equal((await tokenRow(id)).used, uses);
    }
  });

  test('replayed single-use token: a resume of the download that spent the use is free; the same ETag from another address is not', async () => {
    const { token, id } = await newToken({ scope: 'fetch:tok-h', uses: 1 });
    const full = await req('GET', '/api/v1/hosts/tok-h/bundle', { token });
    assert.equal(full.status, 200);
    const etag = String(full.headers.etag);
    const resumed = await req('GET', '/api/v1/hosts/tok-h/bundle', { token, headers: { range: 'bytes=100-', 'if-range': etag } });
    assert.equal(resumed.status, 206, resumed.body.toString().slice(0, 200));
    assert.deepEqual(resumed.body, full.body.subarray(100));
    const again = await req('GET', '/api/v1/hosts/tok-h/bundle', { token, headers: { range: 'bytes=200-', 'if-range': etag } });
    assert.equal(again.status, 206, 'resuming twice is still the same download');
    assert.equal((await tokenRow(id)).used, 1);

    const thief = await req('GET', '/api/v1/hosts/tok-h/bundle', { token, from: '127.0.0.3', headers: { range: 'bytes=0-', 'if-range': etag } });
    assert.equal(thief.status, 401);
    assert.equal(thief.json.error.code, 'AUTH_USED_UP');
    const fresh = await req('GET', '/api/v1/hosts/tok-h/bundle', { token, headers: { range: 'bytes=0-' } });
    assert.equal(fresh.json.error.code, 'AUTH_USED_UP', 'a Range without the If-Range of the spent download is a new download');
  });

  test('pending flood: new machines are bounded per token, per address and in all (429 PENDING_LIMIT, Retry-After); a machine asking again never is', async () => {
    const a = await newToken({ scope: 'fetch-class:typeT' });
    const b = await newToken({ scope: 'fetch-class:typeT' });
    const c = await newToken({ scope: 'fetch-class:typeT' });
    const ask = (i: number, token: string, from = '127.0.0.1'): Promise<HttpAnswer> =>
      req('GET', `/api/v1/resolve?mac=02:00:00:00:aa:${i.toString(16).padStart(2, '0')}`, { token, from });

    const firsts: HttpAnswer[] = [];
    for (let i = 1; i <= 3; i++) firsts.push(await ask(i, a.token));
    assert.deepEqual(firsts.map((r) => r.status), [202, 202, 202]);
    const byToken = await ask(4, a.token, '127.0.0.5');
    assert.equal(byToken.status, 429, byToken.body.toString());
    assert.equal(byToken.json.error.code, 'PENDING_LIMIT');
    assert.deepEqual([byToken.json.error.context.limit, byToken.json.error.context.max], ['token', 3]);
    assert.match(String(byToken.headers['retry-after']), /^\d+$/);
    assert.match(byToken.json.error.message, /too many pending machines reported with token/);

    const again = await ask(1, a.token);
    assert.equal(again.status, 202, 'the same machine asking again is never refused');
    assert.equal(again.json.pending.id, firsts[0]!.json.pending.id);
    assert.equal(again.json.pending.token, a.id);

    assert.equal((await ask(5, b.token)).status, 202);
    const byAddress = await ask(6, b.token);
    assert.equal(byAddress.status, 429);
    assert.deepEqual([byAddress.json.error.context.limit, byAddress.json.error.context.address], ['address', '127.0.0.1']);

    assert.equal((await ask(6, c.token, '127.0.0.6')).status, 202);
    assert.equal((await ask(7, c.token, '127.0.0.7')).status, 202);
    const total = await ask(8, c.token, '127.0.0.8');
    assert.equal(total.status, 429);
    assert.deepEqual([total.json.error.context.limit, total.json.error.context.max], ['total', 6]);

    // apply reports the refusal with its code once --wait is over.
    const sys = fakeSysRoot(join(work, 'sys-flood'), ['02:00:00:00:aa:09'], 'flood9');
    mkdirSync(join(work, 'rescue-flood'));
    const ap = await cliAsync(['apply', '--server', srv.url, '--token', c.token, '--root', join(work, 'rescue-flood'), '--pubkey', join(data, 'server.pub'), '--sys-root', sys, '--wait', '0']);
    assert.equal(ap.status, 7, ap.stderr);
    assert.match(ap.stderr, /no more pending machines for now/);
    assert.equal(errorCode(ap), 'PENDING_LIMIT');

    // An admin assigning a waiting machine makes room.
    const assigned = await req('POST', '/api/v1/assign', { body: { pending: firsts[1]!.json.pending.id, host: 'tok-g' } });
    assert.equal(assigned.status, 200);
    assert.equal((await ask(8, c.token, '127.0.0.8')).status, 202);
  });

  /** Every route the registrars declare (the console's session-authenticated plugin aside: its own tests cover it). */
  const declaredRoutes = (): string[] => {
    const declared = new Set<string>();
    const recorder = new Proxy({}, { get: (_t, method: string) => (url: string) => declared.add(`${method.toUpperCase()} ${url}`) }) as unknown as FastifyInstance;
    for (const r of ROUTES) r(recorder, {} as ServerContext);
    return [...declared].filter((r) => !r.startsWith('REGISTER '));
  };

  /** What a console-role test needs: a pending machine (past the flood's window), a recovery of another token. */
  let machines = 0;
  async function consoleFixtures(): Promise<{ pending: number; recovery: number; fetcher: string }> {
    skewMs += 2 * 3600_000; // the flood test's open pending records no longer count
    machines++;
    const fetcher = (await newToken({ scope: 'fetch-class:typeT' })).token;
    const p = await req('GET', `/api/v1/resolve?mac=52:54:00:12:34:${(0x60 + machines).toString(16)}`, { token: fetcher, from: '127.0.0.9' });
    assert.equal(p.status, 202, p.body.toString());
    const r = await req('POST', '/api/v1/recoveries', { token: fetcher, body: { facts: { macs: ['52:54:00:12:34:56'] } } });
    assert.equal(r.status, 201, r.body.toString());
    return { pending: p.json.pending.id as number, recovery: r.json.recovery.id as number, fetcher };
  }

  /** One request per changing route (any method but GET); a route added later without a row fails the test. */
  function changingRows(f: { pending: number; recovery: number }): { route: string; method: string; path: string; body?: Buffer | string | object }[] {
    const bundle = readFileSync(join(work, 'tok-h.tar.gz'));
    const rows = [
      { route: 'POST /api/v1/hosts', method: 'POST', path: '/api/v1/hosts', body: { id: 'stolen-new' } },
      { route: 'PATCH /api/v1/hosts/:id', method: 'PATCH', path: '/api/v1/hosts/tok-h', body: { class: 'stolen' } },
      { route: 'POST /api/v1/tokens', method: 'POST', path: '/api/v1/tokens', body: { scope: 'admin' } },
      { route: 'DELETE /api/v1/tokens/:id', method: 'DELETE', path: `/api/v1/tokens/${admin.slice(3, 15)}` },
      { route: 'POST /api/v1/assign', method: 'POST', path: '/api/v1/assign', body: { pending: f.pending, host: 'tok-h' } },
      { route: 'DELETE /api/v1/pending/:id', method: 'DELETE', path: `/api/v1/pending/${f.pending}` },
      { route: 'PUT /api/v1/hosts/:id/pin', method: 'PUT', path: '/api/v1/hosts/tok-h/pin', body: { version: 1 } },
      { route: 'DELETE /api/v1/hosts/:id/pin', method: 'DELETE', path: '/api/v1/hosts/tok-h/pin' },
      { route: 'POST /api/v1/keys/rotate', method: 'POST', path: '/api/v1/keys/rotate', body: {} },
      { route: 'POST /api/v1/keys/retire', method: 'POST', path: '/api/v1/keys/retire', body: { fingerprint: 'ed25519:0123456789abcdef' } },
      { route: 'POST /api/v1/layers/:cls/:name/versions', method: 'POST', path: '/api/v1/layers/typeT/nic/versions', body: bundle },
      { route: 'PUT /api/v1/layers/:cls/:name/pin', method: 'PUT', path: '/api/v1/layers/typeT/nic/pin', body: { version: 1 } },
      { route: 'DELETE /api/v1/layers/:cls/:name/pin', method: 'DELETE', path: '/api/v1/layers/typeT/nic/pin' },
      { route: 'POST /api/v1/hosts/:id/versions', method: 'POST', path: '/api/v1/hosts/tok-h/versions', body: bundle },
      { route: 'PUT /clients/:id/log/:workflow/:stamp', method: 'PUT', path: '/clients/tok-h/log/recover/stolen', body: 'not yours\n' },
      { route: 'POST /api/v1/recoveries', method: 'POST', path: '/api/v1/recoveries', body: {} },
      { route: 'POST /api/v1/recoveries/:id/events', method: 'POST', path: `/api/v1/recoveries/${f.recovery}/events`, body: { kind: 'note', message: 'stolen' } },
      { route: 'POST /api/v1/recoveries/:id/heartbeat', method: 'POST', path: `/api/v1/recoveries/${f.recovery}/heartbeat` },
      { route: 'POST /api/v1/fsck/gc', method: 'POST', path: '/api/v1/fsck/gc?grace=0s' },
    ];
    const changing = declaredRoutes().filter((r) => !r.startsWith('GET '));
    assert.deepEqual(changing.filter((r) => !rows.some((x) => x.route === r)), [], 'every changing route has a row');
    return rows;
  }

  test('stolen view token: every changing route answers 403 FORBIDDEN and nothing changes; the admin reads answer 200', async () => {
    const f = await consoleFixtures();
    const view = await newToken({ scope: 'view', label: 'service desk' });
    const refusals: string[] = [];
    for (const row of changingRows(f)) {
      const r = await req(row.method, row.path, { token: view.token, ...(row.body !== undefined ? { body: row.body } : {}) });
      if (r.status !== 403 || r.json?.error?.code !== 'FORBIDDEN') refusals.push(`${row.method} ${row.path}: ${r.status} ${r.body.toString().slice(0, 120)}`);
    }
    assert.deepEqual(refusals, []);
    const host = (await req('GET', '/api/v1/hosts/tok-h')).json;
    assert.deepEqual([host.host.class, host.host.pinned, host.versionCount], ['typeT', null, 1]);
    assert.equal((await req('GET', `/api/v1/pending/${f.pending}/hints`)).json.pending.assignedHost, null);
    assert.deepEqual((await req('GET', `/api/v1/recoveries/${f.recovery}`)).json.events.map((e: { kind: string }) => e.kind), ['booted']);

    const reads = ['/api/v1/hosts', '/api/v1/hosts/tok-h', '/api/v1/hosts/tok-h/versions', '/api/v1/hosts/tok-h/versions/1', '/api/v1/hosts/tok-h/diff?from=1&to=1', '/api/v1/hosts/tok-h/logs',
      '/api/v1/tokens', '/api/v1/pending?all=1', `/api/v1/pending/${f.pending}/hints`, '/api/v1/audit', '/api/v1/keys', '/api/v1/layers', '/api/v1/recoveries', `/api/v1/recoveries/${f.recovery}`];
    const unread: string[] = [];
    for (const path of reads) {
      const r = await req('GET', path, { token: view.token });
      if (r.status !== 200) unread.push(`${path}: ${r.status} ${r.body.toString().slice(0, 120)}`);
    }
    assert.deepEqual(unread, [], 'a view token reads what an admin reads');
    // Reading is not fetching: no bundle and no DRLM config for a view token.
    for (const path of ['/api/v1/hosts/tok-h/bundle', '/rear/tok-h.tar.gz', '/clients/tok-h/config']) {
      assert.equal((await req('GET', path, { token: view.token })).status, 403, path);
    }
  });

  test('stolen operate token: assigns and forgets pending machines (audited under its id) but may not pin, publish, create tokens or change anything else', async () => {
    const f = await consoleFixtures();
    const op = await newToken({ scope: 'operate', label: 'on-call' });
    const allowed = new Set(['POST /api/v1/assign', 'DELETE /api/v1/pending/:id', 'POST /api/v1/recoveries/:id/events', 'POST /api/v1/recoveries/:id/heartbeat']);
    const refusals: string[] = [];
    for (const row of changingRows(f).filter((x) => !allowed.has(x.route))) {
      const r = await req(row.method, row.path, { token: op.token, ...(row.body !== undefined ? { body: row.body } : {}) });
      if (r.status !== 403 || r.json?.error?.code !== 'FORBIDDEN') refusals.push(`${row.method} ${row.path}: ${r.status} ${r.body.toString().slice(0, 120)}`);
    }
    assert.deepEqual(refusals, []);
    assert.equal((await req('GET', '/api/v1/hosts/tok-h')).json.host.pinned, null);

    const assigned = await req('POST', '/api/v1/assign', { token: op.token, body: { pending: f.pending, host: 'tok-h' } });
    assert.equal(assigned.status, 200, assigned.body.toString());
    assert.equal(assigned.json.pending.assignedHost, 'tok-h');
    const audit = (await req('GET', `/api/v1/audit?kind=assign&token=${op.id}`)).json.events;
    assert.deepEqual(audit.map((e: { result: string; host: string; address: string }) => [e.result, e.host, e.address]), [['ok', 'tok-h', '127.0.0.1']]);

    const forgotten = await req('DELETE', `/api/v1/pending/${f.pending}`, { token: op.token });
    assert.equal(forgotten.status, 200, forgotten.body.toString());
    assert.equal((await req('GET', `/api/v1/pending/${f.pending}/hints`)).json.error.code, 'PENDING_UNKNOWN');
    assert.equal((await req('GET', `/api/v1/audit?kind=pending&token=${op.id}`)).json.events[0].detail, `forgot pending ${f.pending}`);
  });

  test('token theft: with only expired admin tokens left, a start without admin.token issues a new one', async () => {
    const store = new MemoryMetadataStore();
    const dir = join(work, 'data-expired');
    mkdirSync(dir);
    await store.createToken({ id: 'old', secretHash: 'h', scope: 'admin', expires: '2026-01-01T00:00:00.000Z' });
    assert.equal(await ensureAdminToken(layout(dir), store, new Date('2025-12-31T00:00:00Z')), null, 'an unexpired admin token is enough');
    const made = await ensureAdminToken(layout(dir), store, new Date('2026-01-02T00:00:00Z'));
    assert.match(String(made), /^ru_[0-9a-f]{12}_/);
    assert.equal(readFileSync(join(dir, 'admin.token'), 'utf8').trim(), made);
  });

  test('pending limits are settings of the one config schema', () => {
    const cfg = loadConfig({ pendingMax: '50' }, { REAR_UPDATE_PENDING_PER_TOKEN: '7', REAR_UPDATE_PENDING_WINDOW: '30m' });
    assert.deepEqual([cfg.pendingPerToken, cfg.pendingPerAddress, cfg.pendingMax, cfg.pendingWindow], [7, 20, 50, 1_800_000]);
    assert.throws(() => loadConfig({ pendingPerAddress: '0' }, {}), /flag --pending-per-address: pending limit per address "0" is not a whole number of at least 1/);
    assert.throws(() => loadConfig({}, { REAR_UPDATE_PENDING_WINDOW: 'forever' }), /environment REAR_UPDATE_PENDING_WINDOW/);
  });
});
