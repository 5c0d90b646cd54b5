// The client from the server (issue 15): GET /download/rear-update and the packages, and
// `rear-update self-update` run as a real copy of the one-file executable in a temp directory
// against a real server on loopback. The threats: a download altered on the way (a tampering
// proxy between the host and the server), and a server that is not the pinned one (signing with
// another key). Either way the old executable must be left exactly as it was.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkDownload, SHA256_HEADER, SIGNATURE_HEADER } from '../../src/core/download-statement.ts';
import { parsePublicKey } from '../../src/core/signature.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, cliAsync, EXE, httpRequest, jsonRequest, tempDir, type CliResult } from '../helpers.ts';

// The executable under test.
const EXE_UNDER_TEST = EXE;

const work = tempDir('ru-self-update-');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let srv: Running;
let admin = '';
let token = '';
let serverPub = '';
/** What the server hands out: the executable under test with a marker appended (an ELF runs with trailing bytes). */
let offered: Buffer;
let installedBytes: Buffer;

/** Runs a copy of the one-file executable (not node): self-update replaces the file it runs as. */
function runExe(exe: string, args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((res) => {
    const p = spawn(exe, args, {
      env: { PATH: '/usr/bin:/bin', HOME: work, REAR_UPDATE_PUBLISH_CONF: join(work, 'no-publish.conf'), REAR_UPDATE_SETTINGS: join(work, 'no-settings.conf'), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (status) => res({ status, stdout, stderr }));
  });
}

let copies = 0;
/** A fresh copy of the installed executable, mode 0750, alone in its directory. */
function installedCopy(): string {
  const dir = join(work, `bin-${++copies}`);
  mkdirSync(dir);
  const exe = join(dir, 'rear-update');
  writeFileSync(exe, installedBytes);
  chmodSync(exe, 0o750);
  return exe;
}

/** The old executable is byte for byte what it was, with its mode, and no temporary file is left beside it. */
function untouched(exe: string): void {
  assert.ok(readFileSync(exe).equals(installedBytes), 'the old executable was changed');
  assert.equal(statSync(exe).mode & 0o7777, 0o750);
  assert.deepEqual(readdirSync(join(exe, '..')), ['rear-update'], 'a temporary file was left behind');
}

/**
 * A proxy in front of the server that passes everything through, except that it hands out
 * `body` for GET /download/rear-update and, when `announce` is set, rewrites the listing's
 * sha256 and size to match it (a proxy that covers its tracks).
 */
async function tamperingProxy(body: Buffer, announce: boolean): Promise<{ url: string; close: () => Promise<void> }> {
  const target = new URL(srv.url);
  const server = http.createServer((req, res) => {
    const up = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      const parts: Buffer[] = [];
      r.on('data', (c: Buffer) => parts.push(c));
      r.on('end', () => {
        let data: Buffer = Buffer.concat(parts);
        if (req.url === '/download/rear-update' && r.statusCode === 200) data = body;
        if (req.url === '/download/' && r.statusCode === 200 && announce) {
          const l = JSON.parse(data.toString()) as { files: { name: string; sha256: string; size: number }[] };
          for (const f of l.files) if (f.name === 'rear-update') Object.assign(f, { sha256: sha256(body), size: body.length });
          data = Buffer.from(JSON.stringify(l));
        }
        res.writeHead(r.statusCode ?? 502, { ...r.headers, 'content-length': String(data.length) });
        res.end(data);
      });
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((r) => server.close(() => r())) };
}

before(async () => {
  installedBytes = readFileSync(EXE_UNDER_TEST);
  offered = Buffer.concat([installedBytes, Buffer.from('\n# a newer build (test marker)\n')]);
  writeFileSync(join(work, 'offered-rear-update'), offered, { mode: 0o755 });
  const pkgs = join(work, 'packages');
  mkdirSync(pkgs);
  writeFileSync(join(pkgs, 'rear-update_0.1.0_amd64.deb'), 'not really a deb');
  writeFileSync(join(pkgs, 'rear-update-0.1.0.x86_64.rpm'), 'not really an rpm');
  writeFileSync(join(pkgs, 'notes.txt'), 'not a package');
  writeFileSync(join(work, 'secret.deb'), 'outside the packages directory');
  symlinkSync(join(work, 'secret.deb'), join(pkgs, 'link.deb'));
  const data = join(work, 'data');
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0', clientExe: join(work, 'offered-rear-update'), packages: pkgs }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  serverPub = join(data, 'server.pub');
  const h = await jsonRequest(srv.url, admin, 'POST', '/api/v1/hosts', { id: 'e229', macs: ['52:54:00:22:90:16'] });
  assert.equal(h.status, 201, JSON.stringify(h.json));
  const t = await jsonRequest(srv.url, admin, 'POST', '/api/v1/tokens', { scope: 'publish:e229' });
  assert.equal(t.status, 201, JSON.stringify(t.json));
  token = t.json.token as string;
}, { timeout: 120_000 });

after(async () => {
  await srv?.close();
  cleanup(work);
});

describe('GET /download/', () => {
  test('the executable needs a token; with one (a host\'s publish token) it comes with its sha256 and a signature by the server\'s key', async () => {
    const none = await httpRequest(srv.url, 'GET', '/download/rear-update');
    assert.equal(none.status, 401);
    const r = await httpRequest(srv.url, 'GET', '/download/rear-update', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(offered));
    assert.equal(r.headers[SHA256_HEADER], sha256(offered));
    const record = Buffer.from(String(r.headers[SIGNATURE_HEADER]), 'base64');
    const key = parsePublicKey(readFileSync(serverPub, 'utf8'), serverPub);
    assert.equal(checkDownload({ name: 'rear-update', sha256: sha256(offered), size: offered.length }, record, [key]).status, 'valid');
    // The same record alone, for curl users: GET /download/rear-update.sig.
    const sig = await httpRequest(srv.url, 'GET', '/download/rear-update.sig', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(sig.status, 200);
    assert.ok(sig.body.equals(record));
    // A statement for another name (or size) does not verify with that record.
    assert.equal(checkDownload({ name: 'rear-update_0.1.0_amd64.deb', sha256: sha256(offered), size: offered.length }, record, [key]).status, 'invalid');
  });

  test('the listing names the executable and the packages; only .deb/.rpm regular files of the packages directory are served (no symlink, no path)', async () => {
    const auth = { headers: { authorization: `Bearer ${token}` } };
    const l = await httpRequest(srv.url, 'GET', '/download/', auth);
    assert.equal(l.status, 200);
    const files = (JSON.parse(l.body.toString()) as { files: { name: string; sha256: string }[] }).files;
    assert.deepEqual(files.map((f) => f.name), ['rear-update', 'rear-update-0.1.0.x86_64.rpm', 'rear-update_0.1.0_amd64.deb']);
    const deb = await httpRequest(srv.url, 'GET', '/download/rear-update_0.1.0_amd64.deb', auth);
    assert.equal(deb.status, 200);
    assert.equal(deb.body.toString(), 'not really a deb');
    assert.equal(deb.headers[SHA256_HEADER], sha256(Buffer.from('not really a deb')));
    for (const path of ['/download/link.deb', '/download/notes.txt', '/download/..%2Fsecret.deb', '/download/%2E%2E%2Fsecret.deb']) {
      const r = await httpRequest(srv.url, 'GET', path, auth);
      assert.equal(r.status, 404, `${path}: ${r.status} ${r.body.toString().slice(0, 200)}`);
      assert.doesNotMatch(r.body.toString(), /outside the packages directory/);
    }
  });
});

describe('rear-update self-update', { timeout: 300_000 }, () => {
  const args = (server: string, pubkey = serverPub): string[] => ['self-update', '--server', server, '--token', token, '--pubkey', pubkey];

  test('--check says that the server has another executable and replaces nothing', async () => {
    const exe = installedCopy();
    const r = await runExe(exe, [...args(srv.url), '--check']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /the server offers another executable/);
    untouched(exe);
  });

  test('replaces its own executable with the server\'s, keeping the mode; a second run finds it current', async () => {
    const exe = installedCopy();
    const r = await runExe(exe, args(srv.url));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^replaced .*rear-update: version \S+ \(was \S+\), sha256 [0-9a-f]{16}\.\.\., signed by ed25519:[0-9a-f]{16}$/m);
    assert.ok(readFileSync(exe).equals(offered));
    assert.equal(statSync(exe).mode & 0o7777, 0o750);
    assert.deepEqual(readdirSync(join(exe, '..')), ['rear-update']);
    const again = await runExe(exe, args(srv.url));
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /is the server's executable already/);
  });

  test('settings from publish.conf: server, token file and pinned key, no flags', async () => {
    const exe = installedCopy();
    writeFileSync(join(work, 'token'), `${token}\n`, { mode: 0o600 });
    writeFileSync(join(work, 'publish.conf'), `REAR_UPDATE_SERVER='${srv.url}'\nREAR_UPDATE_TOKEN_FILE=${join(work, 'token')}\nREAR_UPDATE_PUBKEY=${serverPub}\n`);
    const r = await runExe(exe, ['self-update'], { REAR_UPDATE_PUBLISH_CONF: join(work, 'publish.conf') });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(readFileSync(exe).equals(offered));
  });

  test('threat: bytes swapped on the way (a tampering proxy) are refused; the old executable stays', async () => {
    const swapped = Buffer.from(offered);
    swapped.writeUInt8(swapped.readUInt8(swapped.length - 5) ^ 0xff, swapped.length - 5);
    const proxy = await tamperingProxy(swapped, false);
    try {
      const exe = installedCopy();
      const r = await runExe(exe, args(proxy.url));
      assert.equal(r.status, 4, r.stderr);
      assert.match(r.stderr, /error SELF_UPDATE_REFUSED: the downloaded executable .* is not the one the server announced/);
      untouched(exe);
    } finally {
      await proxy.close();
    }
  });

  test('threat: a proxy that also rewrites the announced sha256 and size is caught by the signature; the old executable stays', async () => {
    const other = Buffer.concat([installedBytes, Buffer.from('\n# an attacker\'s build\n')]);
    const proxy = await tamperingProxy(other, true);
    try {
      const exe = installedCopy();
      const r = await runExe(exe, args(proxy.url));
      assert.equal(r.status, 4, r.stderr);
      assert.match(r.stderr, /error SELF_UPDATE_REFUSED: the signature by ed25519:[0-9a-f]{16} does not match this executable/);
      untouched(exe);
    } finally {
      await proxy.close();
    }
  });

  test('threat: a server that signs with another key than the pinned one (an impostor) cannot replace it', async () => {
    const other = join(work, 'other-key');
    const kg = await cliAsync(['keygen', '--out', other]);
    assert.equal(kg.status, 0, kg.stderr);
    const exe = installedCopy();
    const r = await runExe(exe, args(srv.url, join(other, 'rear-update.pub')));
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /error SELF_UPDATE_REFUSED: it is signed by ed25519:[0-9a-f]{16}, not by the pinned key/);
    untouched(exe);
  });

  test('no pinned key: refused before anything is downloaded', async () => {
    const exe = installedCopy();
    const r = await runExe(exe, args(srv.url, join(work, 'missing.pub')));
    assert.equal(r.status, 3, r.stderr);
    assert.match(r.stderr, /error KEY_NOT_FOUND: .*missing\.pub/);
    untouched(exe);
  });

  test('under node (the npm package) it refuses: only the one-file executable replaces itself', async () => {
    const r = await cliAsync(args(srv.url));
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /error SELF_UPDATE_UNSUPPORTED: /);
  });
});

