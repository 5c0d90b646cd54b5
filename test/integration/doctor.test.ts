// `rear-update doctor` (issue 15): every FAIL it can report, each by breaking exactly that
// thing in an otherwise sound set-up, and one run where everything is OK. The original system
// is a tree built here (ReaR 2.7 copied from this machine's Debian package, install-rear run
// into it by the built CLI, its configuration published by the built CLI) checked with --root;
// the server is a real one on loopback with real TLS (a CA made with openssl). The server side
// runs against copies of a real server's data directory. Host ids, facts and keys are made up
// here: nothing equals this machine's identity.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { generateKeys } from '../../src/adapters/fs/keys.ts';
import type { CheckResult, CheckStatus } from '../../src/core/doctor.ts';
import { withoutBlock } from '../../src/core/marked-block.ts';
import { writePublishState, type PublishState } from '../../src/cli/publish-state.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, cliAsync, fakeSysRoot, makeTree, succeeded, tempDir } from '../helpers.ts';

const work = tempDir('ru-doctor-');
after(() => cleanup(work));

const HOST = 'dr-e229';
/** The configuration's files, and the rescue image a day later. */
const T_CONFIG = new Date('2026-03-01T10:00:00Z');
const T_IMAGE = new Date('2026-03-02T10:00:00Z');
const ORIGINAL_CHECKS = ['rear', 'local.conf', 'install-block', 'server', 'tls', 'token', 'server-key', 'last-publish', 'server-config', 'rescue-image'];

/** No setting of the test runner's environment may reach doctor: every one comes from the tree or a flag. */
const CLEAN_ENV = Object.fromEntries(['SERVER', 'TOKEN', 'TOKEN_FILE', 'CACERT', 'HOST', 'PUBKEY', 'SETTINGS', 'CONFIG', 'DATA', 'DB', 'BLOBS', 'PUBLISH_CONF'].map((k) => [`REAR_UPDATE_${k}`, '']));

/**
 * A CA and a certificate for 127.0.0.1 as helpers.ts testCa makes them, but valid for 90 days:
 * doctor rightly WARNs about a certificate that expires within 14 days.
 */
function testCa(dir: string, cn: string): { caPem: string; cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  const ossl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '90', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'srv.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  ossl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '90', '-extfile', 'srv.ext', '-out', 'srv.pem');
  return { caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'), cert: join(dir, 'srv.pem'), key: join(dir, 'srv.key') };
}

async function doctor(args: string[]): Promise<{ status: number | null; results: CheckResult[]; stdout: string }> {
  const r = await cliAsync(['doctor', '--json', ...args], { env: CLEAN_ENV });
  assert.ok(r.status === 0 || r.status === 1, `exit ${r.status}\n${r.stderr}`);
  return { status: r.status, results: JSON.parse(r.stdout) as CheckResult[], stdout: r.stdout };
}

const statuses = (rs: readonly CheckResult[]): Record<string, CheckStatus> => Object.fromEntries(rs.map((r) => [r.check, r.status]));

/**
 * Exactly these checks differ from OK (the rest must be OK), and the run's exit status says
 * whether any FAILed. Returns the named check's result.
 */
function expectOnly(run: { status: number | null; results: CheckResult[] }, expected: Record<string, CheckStatus>, check: string): CheckResult {
  const want = Object.fromEntries(run.results.map((r) => [r.check, expected[r.check] ?? 'OK']));
  assert.deepEqual(statuses(run.results), want, JSON.stringify(run.results, null, 2));
  assert.equal(run.status, Object.values(want).includes('FAIL') ? 1 : 0);
  for (const r of run.results) if (r.status === 'FAIL' || r.status === 'WARN') assert.ok(r.fix && r.fix.length > 0, `${r.check} has a fix`);
  return run.results.find((r) => r.check === check)!;
}

/** Sets every packed path's mtime to T_CONFIG, and the image's to T_IMAGE: the two times the rescue-image check compares. */
function settle(root: string): void {
  const walk = (p: string, t: Date): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (st.isDirectory()) for (const n of readdirSync(p)) walk(join(p, n), t);
    if (!st.isSymbolicLink()) utimesSync(p, t, t);
  };
  for (const p of ['etc/rear', 'var/lib/rear/layout', 'var/lib/rear/recovery']) walk(join(root, p), T_CONFIG);
  walk(join(root, 'var/lib/rear/output'), T_IMAGE);
}

describe('rear-update doctor on an original system', () => {
  let srv: Running;
  let adminToken: string;
  let publishToken: string;
  let ca: { caPem: string; cert: string; key: string };
  const golden = join(work, 'golden');
  const sys = join(work, 'sys');
  const data = join(work, 'data');
  let clockSkewMs = 0;
  let copies = 0;

  /** One JSON request to the test server over TLS. */
  const api = (method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: any }> => // eslint-disable-line @typescript-eslint/no-explicit-any
    new Promise((resolve, reject) => {
      const r = https.request(new URL(path, srv.url), { method, ca: ca.caPem, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) } }, (res) => {
        let t = '';
        res.on('data', (c: Buffer) => (t += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: t ? JSON.parse(t) : null }));
      });
      r.on('error', reject);
      r.end(body ? JSON.stringify(body) : undefined);
    });

  const newToken = async (scope: string, extra: Record<string, unknown> = {}): Promise<{ id: string; token: string }> => {
    const r = await api('POST', '/api/v1/tokens', adminToken, { scope, ...extra });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    return { id: r.json.id, token: r.json.token };
  };

  /** Publishes the tree as `publish` does (the built CLI, the good token), and keeps its outcome as publish will. */
  const sync = async (root: string): Promise<void> => {
    const r = succeeded(await cliAsync(['publish', '--json', '--root', root, '--host', HOST, '--sys-root', sys, '--server', srv.url, '--token', publishToken, '--cacert', join(work, 'ca/ca.pem')], { env: CLEAN_ENV }));
    const v = (JSON.parse(r.stdout) as { version: { version: number; digest: string } }).version;
    const state: PublishState = { at: new Date().toISOString(), ok: true, trigger: 'manual', server: srv.url, host: HOST, version: v.version, created: true, digest: v.digest, code: null, message: null };
    assert.ok(writePublishState(state, root));
    settle(root);
  };

  /** A fresh copy of the sound tree; `brk` breaks one thing, then (unless `publish` is false) the server gets what the tree holds. */
  const broken = async (brk: (root: string) => void | Promise<void>, opts: { publish?: boolean } = {}): Promise<string> => {
    const root = join(work, `copy-${++copies}`);
    cpSync(golden, root, { recursive: true, verbatimSymlinks: true });
    await brk(root);
    if (opts.publish !== false) await sync(root);
    else settle(root);
    return root;
  };

  const conf = (root: string, lines: Record<string, string>): void => {
    writeFileSync(join(root, 'etc/rear-update/publish.conf'), `${Object.entries(lines).map(([k, v]) => `${k}='${v}'`).join('\n')}\n`);
  };

  /** publish.conf as the sound tree has it, with `lines` changed. */
  const confWith = (root: string, lines: Record<string, string>): void =>
    conf(root, { REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN_FILE: '/etc/rear-update/token', REAR_UPDATE_CACERT: '/etc/rear-update/ca.pem', REAR_UPDATE_HOST: HOST, ...lines });

  /**
   * A TLS front for the test server (its certificate, so TLS verifies as before) that passes
   * every request on, except that `answer` may send a path elsewhere on the server or answer it
   * itself: a server as another release (or a broken proxy) would be.
   */
  const front = async (answer: (path: string) => string | { status: number; type: string; body: string }): Promise<{ url: string; close: () => Promise<void> }> => {
    const s = https.createServer({ cert: readFileSync(ca.cert), key: readFileSync(ca.key) }, (req: IncomingMessage, res: ServerResponse) => {
      const u = new URL(req.url ?? '/', srv.url);
      const a = answer(u.pathname);
      if (typeof a !== 'string') {
        res.writeHead(a.status, { 'content-type': a.type }).end(a.body);
        return;
      }
      const up = https.request(new URL(`${a}${u.search}`, srv.url), { method: req.method, headers: req.headers, ca: ca.caPem }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    return {
      url: `https://127.0.0.1:${(s.address() as { port: number }).port}`,
      close: () => new Promise<void>((resolve) => {
        s.closeAllConnections();
        s.close(() => resolve());
      }),
    };
  };

  before(async () => {
    ca = testCa(join(work, 'ca'), 'rear-update doctor test CA');
    srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0', tlsCert: ca.cert, tlsKey: ca.key }, {}), { log: false, now: () => new Date(Date.now() + clockSkewMs) });
    adminToken = readFileSync(join(data, 'admin.token'), 'utf8').trim();
    assert.equal((await api('POST', '/api/v1/hosts', adminToken, { id: HOST, class: 'typeD' })).status, 201);
    publishToken = (await newToken(`publish:${HOST}`)).token;
    const fetchToken = (await newToken(`fetch:${HOST}`)).token;
    fakeSysRoot(sys, ['52:54:00:d0:c7:01'], HOST);

    // The original system: Debian's ReaR 2.7 (its program and share directory), a local.conf,
    // a layout and recovery files, then install-rear as an admin runs it, and publish.conf.
    mkdirSync(join(golden, 'usr/sbin'), { recursive: true });
    cpSync('/usr/sbin/rear', join(golden, 'usr/sbin/rear'));
    cpSync('/usr/share/rear', join(golden, 'usr/share/rear'), { recursive: true, verbatimSymlinks: true });
    makeTree(golden, {
      etc: { rear: { 'local.conf': 'OUTPUT=ISO\nBACKUP=NETFS\nBACKUP_URL=nfs://backup.example/rear\n' } },
      var: { lib: { rear: {
        layout: { 'disklayout.conf': 'disk /dev/vda 21474836480 gpt\npart /dev/vda 1048576 1048576 rear-noname bios_grub /dev/vda1\n' },
        recovery: { bootloader: 'GRUB2\n' },
        output: { [`rear-${HOST}.iso`]: 'not really an ISO: only its time matters here\n' },
      } } },
    });
    writeFileSync(join(work, 'exe'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    mkdirSync(join(golden, 'etc/rear-update'), { recursive: true }); // install-rear pins the server's key in keys/server.pub
    succeeded(await cliAsync(['install-rear', '--root', golden, '--sys-root', sys, '--exe', join(work, 'exe'), '--server', srv.url, '--token', fetchToken,
      '--cacert', join(work, 'ca/ca.pem'), '--pubkey', join(data, 'server.pub'), '--class', 'typeD'], { env: CLEAN_ENV }));
    writeFileSync(join(golden, 'etc/rear-update/token'), `${publishToken}\n`, { mode: 0o600 });
    conf(golden, { REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_TOKEN_FILE: '/etc/rear-update/token', REAR_UPDATE_CACERT: '/etc/rear-update/ca.pem', REAR_UPDATE_HOST: HOST });
    await sync(golden);
  });
  after(async () => {
    await srv?.close();
  });

  test('everything in order: every check OK, exit 0, one line per check', async () => {
    const run = await doctor(['--root', golden]);
    assert.deepEqual(run.results.map((r) => r.check), ORIGINAL_CHECKS);
    expectOnly(run, {}, 'rear');
    assert.match(run.results.find((r) => r.check === 'rear')!.detail, /ReaR 2\.7/);
    assert.match(run.results.find((r) => r.check === 'token')!.detail, new RegExp(`scope publish:${HOST}`));
    const human = await cliAsync(['doctor', '--root', golden], { env: CLEAN_ENV });
    assert.equal(human.status, 0, human.stderr);
    const lines = human.stdout.trimEnd().split('\n');
    assert.equal(lines.length, ORIGINAL_CHECKS.length);
    for (const [i, l] of lines.entries()) assert.match(l, new RegExp(`^OK\\s+${ORIGINAL_CHECKS[i]!.replace('.', '\\.')}\\s+\\S`));
  });

  test('rear: no ReaR below the root', async () => {
    const root = await broken((r) => rmSync(join(r, 'usr/sbin/rear')));
    const r = expectOnly(await doctor(['--root', root]), { rear: 'FAIL' }, 'rear');
    assert.match(r.detail, /not installed/);
    assert.match(r.fix!, /apt-get install rear/);
  });

  test('rear: the program is there, its share directory is not', async () => {
    const root = await broken((r) => rmSync(join(r, 'usr/share/rear'), { recursive: true }));
    const r = expectOnly(await doctor(['--root', root]), { rear: 'FAIL' }, 'rear');
    assert.match(r.detail, /usr\/sbin\/rear is there but ReaR's share directory .*usr\/share\/rear is not \(no conf\/default\.conf\)/);
    assert.match(r.fix!, /--reinstall rear/);
  });

  test('local.conf: missing', async () => {
    const root = await broken((r) => rmSync(join(r, 'etc/rear/local.conf')));
    const r = expectOnly(await doctor(['--root', root]), { 'local.conf': 'FAIL', 'install-block': 'SKIP' }, 'local.conf');
    assert.match(r.detail, /etc\/rear\/local\.conf does not exist/);
  });

  test('local.conf: not readable (a directory in its place)', async () => {
    const root = await broken((r) => {
      rmSync(join(r, 'etc/rear/local.conf'));
      mkdirSync(join(r, 'etc/rear/local.conf'));
    });
    const r = expectOnly(await doctor(['--root', root]), { 'local.conf': 'FAIL', 'install-block': 'SKIP' }, 'local.conf');
    assert.match(r.detail, /EISDIR/);
  });

  test('install-block: missing from local.conf', async () => {
    const root = await broken((r) => {
      const p = join(r, 'etc/rear/local.conf');
      writeFileSync(p, withoutBlock(readFileSync(p, 'utf8'), 'install-rear'));
    });
    const r = expectOnly(await doctor(['--root', root]), { 'install-block': 'FAIL' }, 'install-block');
    assert.match(r.detail, /no "# BEGIN rear-update install-rear" block/);
    assert.match(r.fix!, /^rear-update install-rear --server 'https:\/\/127\.0\.0\.1:\d+' --token "\$\(\. \/etc\/rear-update\/settings\.conf; .*--class 'typeD' .*--cacert '\/etc\/rear-update\/ca\.pem' && rear mkrescue$/);
  });

  test('install-block: stale (a line install-rear writes now is missing: an older install)', async () => {
    const root = await broken((r) => {
      const p = join(r, 'etc/rear/local.conf');
      writeFileSync(p, readFileSync(p, 'utf8').replace('PROGS+=( depmod )\n', ''));
    });
    const r = expectOnly(await doctor(['--root', root]), { 'install-block': 'FAIL' }, 'install-block');
    assert.match(r.detail, /lacks "PROGS\+=\( depmod \)"/);
  });

  test('install-block: a block written with install-rear --publish (the publish hook) is current', async () => {
    const root = await broken(async (r) => {
      succeeded(await cliAsync(['install-rear', '--root', r, '--sys-root', sys, '--exe', join(work, 'exe'), '--server', srv.url, '--token', (await newToken(`fetch:${HOST}`)).token,
        '--cacert', join(work, 'ca/ca.pem'), '--pubkey', join(data, 'server.pub'), '--class', 'typeD', '--publish'], { env: CLEAN_ENV }));
    });
    assert.match(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), /rear-update publish/);
    expectOnly(await doctor(['--root', root]), {}, 'install-block');
  });

  test('server: not configured', async () => {
    const root = await broken((r) => conf(r, { REAR_UPDATE_TOKEN_FILE: '/etc/rear-update/token', REAR_UPDATE_HOST: HOST }));
    const r = expectOnly(await doctor(['--root', root]), { server: 'FAIL', tls: 'SKIP', token: 'SKIP', 'server-key': 'SKIP', 'server-config': 'SKIP' }, 'server');
    assert.match(r.detail, /no server configured/);
  });

  test('server: the URL is malformed (no scheme; not a URL)', async () => {
    const root = await broken((r) => confWith(r, { REAR_UPDATE_SERVER: 'rear-server:8443' }));
    const dependent = { tls: 'SKIP', token: 'SKIP', 'server-key': 'SKIP', 'server-config': 'SKIP' } as const;
    const r = expectOnly(await doctor(['--root', root]), { server: 'FAIL', ...dependent }, 'server');
    assert.match(r.detail, /^rear-server:8443 \(.*publish\.conf \(REAR_UPDATE_SERVER\)\): .*must be an http:\/\/ or https:\/\/ URL, not rear-server:/);
    assert.match(r.fix!, /REAR_UPDATE_SERVER=https:\/\/rear-server:8443/);
    confWith(root, { REAR_UPDATE_SERVER: 'https://rear server:8443' });
    const r2 = expectOnly(await doctor(['--root', root]), { server: 'FAIL', ...dependent }, 'server');
    assert.match(r2.detail, /is not a URL/);
  });

  test('server: down (nothing listens on its port)', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const root = await broken((r) => conf(r, { REAR_UPDATE_SERVER: `https://127.0.0.1:${port}`, REAR_UPDATE_TOKEN_FILE: '/etc/rear-update/token', REAR_UPDATE_CACERT: '/etc/rear-update/ca.pem', REAR_UPDATE_HOST: HOST }));
    const run = await doctor(['--root', root]);
    const r = expectOnly(run, { server: 'FAIL', tls: 'SKIP', token: 'SKIP', 'server-key': 'SKIP', 'server-config': 'SKIP' }, 'server');
    assert.match(r.detail, /ECONNREFUSED/);
    assert.match(run.results.find((x) => x.check === 'token')!.detail, /not reachable/);
  });

  test('tls: the server\'s certificate is not signed by the configured CA', async () => {
    const other = testCa(join(work, 'other-ca'), 'some other CA');
    const root = await broken((r) => writeFileSync(join(r, 'etc/rear-update/ca.pem'), other.caPem));
    const r = expectOnly(await doctor(['--root', root]), { tls: 'FAIL', token: 'SKIP', 'server-key': 'SKIP', 'server-config': 'SKIP' }, 'tls');
    assert.match(r.detail, /not trusted/);
    assert.match(r.fix!, /REAR_UPDATE_CACERT/);
  });

  test('tls: the CA file is not readable (a directory in its place)', async () => {
    const root = await broken((r) => {
      rmSync(join(r, 'etc/rear-update/ca.pem'));
      mkdirSync(join(r, 'etc/rear-update/ca.pem'));
    });
    const r = expectOnly(await doctor(['--root', root]), { tls: 'FAIL', token: 'SKIP', 'server-key': 'SKIP', 'server-config': 'SKIP' }, 'tls');
    assert.match(r.detail, /^CA certificate .*\/etc\/rear-update\/ca\.pem \(.*REAR_UPDATE_CACERT\)\) is not readable: EISDIR/);
    assert.match(r.fix!, /copy the CA that signed the server's certificate to /);
  });

  test('token: none configured', async () => {
    const root = await broken((r) => {
      rmSync(join(r, 'etc/rear-update/token'));
      conf(r, { REAR_UPDATE_SERVER: srv.url, REAR_UPDATE_CACERT: '/etc/rear-update/ca.pem', REAR_UPDATE_HOST: HOST });
    });
    const r = expectOnly(await doctor(['--root', root]), { token: 'FAIL', 'server-config': 'SKIP' }, 'token');
    assert.match(r.detail, /^no token configured/);
    assert.match(r.fix!, new RegExp(`admin token create --publish ${HOST}`));
  });

  test('token: the token file is not readable (a directory in its place; empty)', async () => {
    const root = await broken((r) => {
      rmSync(join(r, 'etc/rear-update/token'));
      mkdirSync(join(r, 'etc/rear-update/token'));
    });
    const r = expectOnly(await doctor(['--root', root]), { token: 'FAIL', 'server-config': 'SKIP' }, 'token');
    assert.match(r.detail, /^the token cannot be read \(.*REAR_UPDATE_TOKEN_FILE\)\): .*\/etc\/rear-update\/token: EISDIR/);
    rmSync(join(root, 'etc/rear-update/token'), { recursive: true });
    writeFileSync(join(root, 'etc/rear-update/token'), '\n', { mode: 0o600 });
    const r2 = expectOnly(await doctor(['--root', root]), { token: 'FAIL', 'server-config': 'SKIP' }, 'token');
    assert.match(r2.detail, /\/etc\/rear-update\/token is empty/);
  });

  test('token: revoked', async () => {
    const t = await newToken(`publish:${HOST}`);
    assert.equal((await api('DELETE', `/api/v1/tokens/${t.id}`, adminToken)).status, 200);
    const root = await broken((r) => writeFileSync(join(r, 'etc/rear-update/token'), t.token));
    const r = expectOnly(await doctor(['--root', root]), { token: 'FAIL', 'server-config': 'SKIP' }, 'token');
    assert.match(r.detail, /AUTH_INVALID.*revoked/);
    assert.match(r.fix!, new RegExp(`admin token create --publish ${HOST}`));
  });

  test('token: expired (the server\'s clock passes its expiry)', async () => {
    const t = await newToken(`publish:${HOST}`, { expiresIn: '1h' });
    const root = await broken((r) => writeFileSync(join(r, 'etc/rear-update/token'), t.token));
    clockSkewMs = 2 * 3600_000;
    try {
      const r = expectOnly(await doctor(['--root', root]), { token: 'FAIL', 'server-config': 'SKIP' }, 'token');
      assert.match(r.detail, /AUTH_EXPIRED/);
    } finally {
      clockSkewMs = 0;
    }
  });

  test('token: the scope does not reach this host (the image\'s fetch token; another host\'s publish token)', async () => {
    const fetch = await newToken(`fetch:${HOST}`);
    const root = await broken((r) => writeFileSync(join(r, 'etc/rear-update/token'), fetch.token));
    const r = expectOnly(await doctor(['--root', root]), { token: 'FAIL', 'server-config': 'SKIP' }, 'token');
    assert.match(r.detail, new RegExp(`scope fetch:${HOST} cannot publish host ${HOST}`));
    assert.equal((await api('POST', '/api/v1/hosts', adminToken, { id: 'dr-other', class: 'typeD' })).status, 201);
    const other = await newToken('publish:dr-other');
    writeFileSync(join(root, 'etc/rear-update/token'), other.token);
    const r2 = expectOnly(await doctor(['--root', root]), { token: 'FAIL', 'server-config': 'SKIP' }, 'token');
    assert.match(r2.detail, new RegExp(`scope publish:dr-other cannot publish host ${HOST}`));
  });

  test('token: a publish token for a host the server has no record of (the record removed from the database by hand)', async () => {
    // No route removes a host, and a publish token can only be made for a known host: the record
    // goes away only by a hand-edit of the database, as here (with the server running).
    const gone = 'dr-gone';
    assert.equal((await api('POST', '/api/v1/hosts', adminToken, { id: gone, class: 'typeD' })).status, 201);
    const t = await newToken(`publish:${gone}`);
    const db = new Database(join(data, 'metadata.sqlite'));
    try {
      db.pragma('busy_timeout = 10000');
      db.pragma('foreign_keys = ON');
      assert.equal(db.prepare('DELETE FROM hosts WHERE id = ?').run(gone).changes, 1);
    } finally {
      db.close();
    }
    const root = await broken((r) => {
      writeFileSync(join(r, 'etc/rear-update/token'), t.token);
      confWith(r, { REAR_UPDATE_HOST: gone });
    }, { publish: false });
    const run = await doctor(['--root', root]);
    const r = expectOnly(run, { token: 'FAIL', 'server-config': 'SKIP' }, 'token');
    assert.match(r.detail, new RegExp(`^token ${t.id} is for host ${gone}, which the server does not know`));
    assert.match(r.fix!, new RegExp(`admin host add ${gone}`));
    assert.match(run.results.find((x) => x.check === 'server-config')!.detail, /does not know this host/);
  });

  test('server-key: the pinned key is not the server\'s', async () => {
    const root = await broken((r) => {
      const k = generateKeys(join(work, 'stranger-key'), true);
      writeFileSync(join(r, 'etc/rear-update/keys/server.pub'), k.publicKey.key.export({ type: 'spki', format: 'pem' }).toString());
    });
    const r = expectOnly(await doctor(['--root', root]), { 'server-key': 'FAIL' }, 'server-key');
    assert.match(r.detail, /is not the pinned ed25519:[0-9a-f]{16}/);
  });

  test('server-key: the pinned key file is not readable (a directory in its place; not a key)', async () => {
    const pinned = 'etc/rear-update/keys/server.pub';
    const root = await broken((r) => {
      rmSync(join(r, pinned));
      mkdirSync(join(r, pinned));
    });
    const r = expectOnly(await doctor(['--root', root]), { 'server-key': 'FAIL' }, 'server-key');
    assert.match(r.detail, /^the pinned key .*\/etc\/rear-update\/keys\/server\.pub \(default\) is not readable: EISDIR/);
    assert.match(r.fix!, /\/api\/v1\/server-key -o \/etc\/rear-update\/keys\/server\.pub/);
    rmSync(join(root, pinned), { recursive: true });
    writeFileSync(join(root, pinned), 'not a key\n');
    const r2 = expectOnly(await doctor(['--root', root]), { 'server-key': 'FAIL' }, 'server-key');
    assert.match(r2.detail, /^the pinned key .*server\.pub \(default\) is not readable: /);
  });

  test('server-key: what the server answers is not a key (a front that mangles GET /api/v1/server-key)', async () => {
    const f = await front((p) => (p === '/api/v1/server-key' ? { status: 200, type: 'text/plain', body: '<html>maintenance</html>\n' } : p));
    try {
      const root = await broken((r) => confWith(r, { REAR_UPDATE_SERVER: f.url }));
      const r = expectOnly(await doctor(['--root', root]), { 'server-key': 'FAIL' }, 'server-key');
      assert.match(r.detail, /^the server's key could not be read: /);
      assert.equal(r.fix, `curl -v ${f.url}/api/v1/server-key`);
    } finally {
      await f.close();
    }
  });

  test('last-publish: the last one failed', async () => {
    const root = await broken((r) => {
      writePublishState({ at: new Date().toISOString(), ok: false, trigger: 'rear', server: srv.url, host: HOST, version: null, created: null, digest: null, code: 'SERVER_UNREACHABLE', message: 'connect ECONNREFUSED' }, r);
    }, { publish: false });
    const r = expectOnly(await doctor(['--root', root]), { 'last-publish': 'FAIL' }, 'last-publish');
    assert.match(r.detail, /failed: SERVER_UNREACHABLE: connect ECONNREFUSED/);
  });

  test('last-publish: none recorded', async () => {
    const root = await broken((r) => rmSync(join(r, 'var/lib/rear-update'), { recursive: true }), { publish: false });
    const r = expectOnly(await doctor(['--root', root]), { 'last-publish': 'FAIL' }, 'last-publish');
    assert.match(r.detail, /no publish recorded/);
  });

  test('server-config: this host\'s configuration changed since the server got it', async () => {
    const root = await broken((r) => writeFileSync(join(r, 'etc/rear/site.conf'), 'ISO_PREFIX=changed\n'), { publish: false });
    const r = expectOnly(await doctor(['--root', root]), { 'server-config': 'FAIL' }, 'server-config');
    assert.match(r.detail, /is not this host's configuration now/);
    assert.equal(r.fix, 'rear-update publish');
  });

  test('server-config: the server holds no version of this host', async () => {
    const empty = 'dr-empty';
    assert.equal((await api('POST', '/api/v1/hosts', adminToken, { id: empty, class: 'typeD' })).status, 201);
    const t = await newToken(`publish:${empty}`);
    const root = await broken((r) => {
      writeFileSync(join(r, 'etc/rear-update/token'), t.token);
      confWith(r, { REAR_UPDATE_HOST: empty });
    }, { publish: false });
    const r = expectOnly(await doctor(['--root', root]), { 'server-config': 'FAIL' }, 'server-config');
    assert.equal(r.detail, `the server holds no configuration of host ${empty}`);
    assert.equal(r.fix, 'rear-update publish');
  });

  test('server-config: this host\'s configuration cannot be packed (a FIFO under etc/rear), so publish fails too', async () => {
    const root = await broken((r) => void execFileSync('mkfifo', [join(r, 'etc/rear/pipe')]), { publish: false });
    const r = expectOnly(await doctor(['--root', root]), { 'server-config': 'FAIL' }, 'server-config');
    assert.match(r.detail, /^this host's configuration cannot be packed, so publish fails too: PACK_ENTRY_REFUSED: .*etc\/rear\/pipe/s);
    assert.match(r.fix!, /rear-update publish$/);
  });

  test('server-config: a server without GET /api/v1/token: the last publish\'s digest is compared instead', async () => {
    // The front sends GET /api/v1/token to a path the server has no route for: its own 404, as from an older release.
    const f = await front((p) => (p === '/api/v1/token' ? '/api/v1/token-of-a-newer-release' : p));
    try {
      const root = await broken((r) => confWith(r, { REAR_UPDATE_SERVER: f.url }));
      const run = await doctor(['--root', root]);
      const tok = expectOnly(run, { token: 'WARN' }, 'token');
      assert.match(tok.detail, /has no GET \/api\/v1\/token/);
      assert.match(run.results.find((x) => x.check === 'server-config')!.detail, /the last publish sent this configuration .*the server was not asked/);
      writeFileSync(join(root, 'etc/rear/site.conf'), 'ISO_PREFIX=changed\n');
      settle(root);
      const r = expectOnly(await doctor(['--root', root]), { token: 'WARN', 'server-config': 'FAIL' }, 'server-config');
      assert.match(r.detail, /^this host's configuration changed since the last publish \(digest [0-9a-f]{12}, published [0-9a-f]{12}\)$/);
      assert.equal(r.fix, 'rear-update publish');
    } finally {
      await f.close();
    }
  });

  test('rescue-image: older than the configuration\'s newest change', async () => {
    const root = await broken(() => undefined);
    const later = new Date(T_IMAGE.getTime() + 3600_000);
    utimesSync(join(root, 'var/lib/rear/layout/disklayout.conf'), later, later);
    const r = expectOnly(await doctor(['--root', root]), { 'rescue-image': 'FAIL' }, 'rescue-image');
    assert.match(r.detail, new RegExp(`/var/lib/rear/output/rear-${HOST}\\.iso .* is older than /var/lib/rear/layout/disklayout\\.conf`));
    assert.match(r.fix!, /rear mkrescue/);
  });

  test('GET /api/v1/token says what the token is, never its secret; another host\'s newest version only to a token that may publish it', async () => {
    const mine = await api('GET', `/api/v1/token?host=${HOST}`, publishToken);
    assert.equal(mine.status, 200);
    assert.equal(mine.json.token.scope, `publish:${HOST}`);
    assert.equal(mine.json.host.publish, true);
    assert.match(mine.json.host.latest.digest, /^[0-9a-f]{64}$/);
    assert.ok(!JSON.stringify(mine.json).includes(publishToken.slice(-20)), 'the secret is not in the answer');
    assert.ok(!('secretHash' in mine.json.token));
    const fetch = await newToken(`fetch:${HOST}`);
    const other = await api('GET', `/api/v1/token?host=${HOST}`, fetch.token);
    assert.deepEqual(other.json.host, { id: HOST, publish: false, known: null, latest: null });
    assert.equal((await api('GET', '/api/v1/token', 'ru_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).status, 401);
  });

  test('usage: a server-side flag with the original role is refused (exit 2)', async () => {
    const r = await cliAsync(['doctor', '--root', golden, '--data', data], { env: CLEAN_ENV });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--data does not go with --role original/);
  });

  // Last in this describe: it rotates the shared server's key for good.
  test('server-key: the server rotated its key, and the pinned key signed the rotation: WARN with the chain', async () => {
    const before = readFileSync(join(data, 'server.pub'), 'utf8');
    const rot = await api('POST', '/api/v1/keys/rotate', adminToken, {});
    assert.equal(rot.status, 201, JSON.stringify(rot.json));
    assert.notEqual(readFileSync(join(data, 'server.pub'), 'utf8'), before);
    const root = await broken(() => undefined);
    const r = expectOnly(await doctor(['--root', root]), { 'server-key': 'WARN' }, 'server-key');
    assert.equal(r.detail, `the server's key ${rot.json.current} is not the pinned ${rot.json.previous}, but trusted through a rotation statement from ${rot.json.previous}`);
    assert.match(r.fix!, /\/api\/v1\/server-key/);
  });
});

describe('rear-update doctor --role server', () => {
  const base = join(work, 'server-base');
  let copies = 0;

  /** A real server's data directory with one host and one published version, the server stopped. */
  async function makeStore(dir: string, now?: () => Date): Promise<void> {
    const s = await startServer(loadConfig({ data: dir, listen: '127.0.0.1:0' }, {}), { log: false, ...(now ? { now } : {}) });
    try {
      const admin = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
      const tree = join(work, `tree-${++copies}`);
      makeTree(tree, { etc: { rear: { 'local.conf': 'OUTPUT=ISO\n' } } });
      succeeded(await cliAsync(['publish', '--root', tree, '--host', 'dr-s1', '--sys-root', fakeSysRoot(join(work, `sys-${copies}`), ['52:54:00:d0:c7:02'], 'dr-s1'), '--server', s.url, '--token', admin], { env: CLEAN_ENV }));
    } finally {
      await s.close();
    }
  }

  const copy = (brk: (dir: string) => void = () => undefined): string => {
    const dir = join(work, `server-copy-${++copies}`);
    cpSync(base, dir, { recursive: true });
    brk(dir);
    return dir;
  };

  before(async () => {
    await makeStore(base);
  });

  test('a sound store: every check OK, exit 0', async () => {
    const run = await doctor(['--role', 'server', '--data', copy()]);
    assert.deepEqual(run.results.map((r) => r.check), ['config', 'store', 'disk-space', 'signing-key', 'clock']);
    expectOnly(run, {}, 'store');
  });

  test('the settings come from the server\'s config file, as serve reads them', async () => {
    const dir = copy();
    writeFileSync(join(work, 'server.json'), JSON.stringify({ data: dir, listen: '127.0.0.1:0' }));
    const run = await doctor(['--role', 'server', '--config', join(work, 'server.json')]);
    expectOnly(run, {}, 'config');
    assert.match(run.results[0]!.detail, new RegExp(`data ${dir}`));
  });

  test('config: an invalid setting', async () => {
    writeFileSync(join(work, 'bad.json'), JSON.stringify({ data: copy(), listen: 'nowhere' }));
    const run = await doctor(['--role', 'server', '--config', join(work, 'bad.json')]);
    const r = expectOnly(run, { config: 'FAIL', store: 'SKIP', 'disk-space': 'SKIP', 'signing-key': 'SKIP', clock: 'SKIP' }, 'config');
    assert.match(r.detail, /CONFIG_INVALID.*listen address/);
  });

  test('store: a version\'s blob is missing', async () => {
    const dir = copy((d) => {
      const blobs = join(d, 'blobs');
      const files = execFileSync('find', [blobs, '-type', 'f'], { encoding: 'utf8' }).trim().split('\n').filter((f) => f !== '');
      assert.equal(files.length, 1);
      rmSync(files[0]!);
    });
    const r = expectOnly(await doctor(['--role', 'server', '--data', dir]), { store: 'FAIL' }, 'store');
    assert.match(r.detail, /1 inconsistency; first: .*dr-s1/);
    assert.match(r.fix!, /serve --check --data/);
  });

  test('store: no store in the data directory', async () => {
    const dir = copy((d) => rmSync(join(d, 'metadata.sqlite')));
    expectOnly(await doctor(['--role', 'server', '--data', dir]), { store: 'FAIL', clock: 'SKIP' }, 'store');
  });

  test('store: the metadata store cannot be opened (metadata.sqlite is not a database)', async () => {
    const dir = copy((d) => writeFileSync(join(d, 'metadata.sqlite'), 'not a database\n'.repeat(512)));
    const r = expectOnly(await doctor(['--role', 'server', '--data', dir]), { store: 'FAIL', clock: 'SKIP' }, 'store');
    assert.match(r.detail, /^the metadata store cannot be opened: STORE_CORRUPT: /);
    assert.match(r.fix!, /serve --check --data/);
  });

  test('store: the check cannot run (a file where the logs directory belongs)', async () => {
    const dir = copy((d) => {
      rmSync(join(d, 'logs'), { recursive: true });
      writeFileSync(join(d, 'logs'), '');
    });
    const r = expectOnly(await doctor(['--role', 'server', '--data', dir]), { store: 'FAIL' }, 'store');
    assert.match(r.detail, /^the check could not run: IO_ERROR: .*logs.*ENOTDIR/);
  });

  test('signing-key: not readable as a key', async () => {
    const dir = copy((d) => writeFileSync(join(d, 'signing/rear-update.key'), 'not a key\n', { mode: 0o600 }));
    const r = expectOnly(await doctor(['--role', 'server', '--data', dir]), { 'signing-key': 'FAIL' }, 'signing-key');
    assert.match(r.detail, /not a usable signing key/);
  });

  test('clock: behind the newest audit record (the clock went back a day)', async () => {
    const dir = join(work, 'server-future');
    await makeStore(dir, () => new Date(Date.now() + 86_400_000));
    const r = expectOnly(await doctor(['--role', 'server', '--data', dir]), { clock: 'FAIL' }, 'clock');
    assert.match(r.detail, /behind the newest audit record .*went backwards/);
  });

  test('disk-space: the data directory does not exist (so there is no store and no key either)', async () => {
    const dir = join(work, 'no-such-data');
    const run = await doctor(['--role', 'server', '--data', dir]);
    const r = expectOnly(run, { store: 'FAIL', 'disk-space': 'FAIL', 'signing-key': 'FAIL', clock: 'SKIP' }, 'disk-space');
    assert.match(r.detail, new RegExp(`^${dir}: ENOENT`));
    assert.equal(r.fix, `ls -ld ${dir}`);
  });

  test('disk-space: the data directory\'s file system is nearly full (a 16 MiB tmpfs)', { skip: process.getuid?.() !== 0 && 'mounting a tmpfs needs root' }, async () => {
    const mnt = join(work, 'small');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0700', 'tmpfs', mnt]);
    try {
      cpSync(base, join(mnt, 'data'), { recursive: true });
      const r = expectOnly(await doctor(['--role', 'server', '--data', join(mnt, 'data')]), { 'disk-space': 'FAIL' }, 'disk-space');
      assert.match(r.detail, /below 1 % or 100 MiB/);
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
