// Key rotation and retirement end to end: a real server on loopback, the real CLI, a rescue
// image's keys directory that pins only the server's first key. Each test is named after what
// it guards against; the rules themselves are unit-tested in src/core/key-statements.test.ts.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { decodeStatementsHeader, STATEMENTS_HEADER } from '../../src/core/key-statements.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, cli, cliAsync, errorCode, fakeSysRoot, makeTree, snapshot, tempDir } from '../helpers.ts';

const work = tempDir('ru-keyrot-');
const data = join(work, 'data');
/** The rescue image's keys directory: the server's first key only. */
const image = join(work, 'image-keys');
let srv: Running;
let admin = '';
let oldFp = '';
let newFp = '';

const tree = join(work, 'tree');
const sys = join(work, 'sys');
const server = (): string[] => ['--server', srv.url, '--token', admin];
const hex = (fp: string): string => fp.slice(8);
const oldKeyFile = (): string => join(data, 'signing/previous', `ed25519-${hex(oldFp)}.key`);

function get(path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get(new URL(path, srv.url), { headers: { authorization: `Bearer ${admin}` } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    }).on('error', reject);
  });
}

function newRoot(name: string): string {
  const d = join(work, name);
  mkdirSync(d);
  return d;
}

/** A bundle of e229 packed (and signed) with `key`, as a holder of that key could make it. */
function packWith(key: string, name: string): string {
  const out = join(work, `${name}.tar.gz`);
  const r = cli(['pack', '--root', tree, '--key', key, '--host', 'e229', '--version', '99', '-o', out]);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

before(async () => {
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  oldFp = srv.fingerprint;
  mkdirSync(image);
  writeFileSync(join(image, 'server.pub'), readFileSync(join(data, 'server.pub')));
  makeTree(tree, { etc: { rear: { 'local.conf': 'OUTPUT=ISO\n' } }, var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda 1000 gpt\n' } } } } });
  fakeSysRoot(sys, ['52:54:00:00:22:29'], 'e229');
  const pub = await cliAsync(['publish', ...server(), '--root', tree, '--host', 'e229', '--sys-root', sys]);
  assert.equal(pub.status, 0, pub.stderr);
});

after(async () => {
  await srv?.close();
  cleanup(work);
});

test('admin key rotate: a new key signs from the next request on, without a restart; server.pub follows; the old key is kept 0600', async () => {
  const r = await cliAsync(['admin', 'key', 'rotate', ...server(), '--json']);
  assert.equal(r.status, 0, r.stderr);
  const body = JSON.parse(r.stdout) as { previous: string; current: string; statement: { kind: string; signer: string; fingerprint: string } };
  assert.equal(body.previous, oldFp);
  newFp = body.current;
  assert.notEqual(newFp, oldFp);
  assert.deepEqual([body.statement.kind, body.statement.signer, body.statement.fingerprint], ['rotate', oldFp, newFp]);
  const key = await get('/api/v1/server-key');
  assert.equal(key.headers['x-rear-update-fingerprint'], newFp);
  assert.equal(key.body.toString(), readFileSync(join(data, 'server.pub'), 'utf8'));
  assert.equal(statSync(oldKeyFile()).mode & 0o777, 0o600);
  // The bundle route carries the statement in a header; the open route lists it.
  const b = await get('/api/v1/hosts/e229/bundle');
  assert.equal(b.status, 200);
  const fromHeader = decodeStatementsHeader(String(b.headers[STATEMENTS_HEADER]), 'header');
  assert.deepEqual(fromHeader.map((s) => s.kind), ['rotate']);
  const open = await new Promise<{ key: string; statements: unknown[] }>((resolve, reject) => {
    http.get(new URL('/api/v1/key-statements', srv.url), (res) => {
      let t = '';
      res.on('data', (c: Buffer) => (t += c.toString()));
      res.on('end', () => resolve(JSON.parse(t) as { key: string; statements: unknown[] }));
    }).on('error', reject);
  });
  assert.equal(open.key, newFp);
  assert.equal(open.statements.length, 1);
  const list = await cliAsync(['admin', 'key', 'list', ...server()]);
  assert.equal(list.status, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`${oldFp}\\s+previous`));
  assert.match(list.stdout, new RegExp(`${newFp}\\s+current`));
});

test('key rotation: an image trusting only the old key applies a bundle signed by the new key, and records it', async () => {
  const dst = newRoot('rescue-1');
  const r = await cliAsync(['apply', 'e229', ...server(), '--root', dst, '--keys-dir', image, '-q']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`signed by ${newFp}`));
  assert.match(r.stderr, new RegExp(`${newFp} is trusted through a rotation statement from ${oldFp}; recorded as`));
  const learned = join(image, `learned-${hex(newFp)}.pub`);
  assert.ok(existsSync(learned), readdirSync(image).join(' '));
  assert.match(readFileSync(learned, 'utf8'), /^# rear-update: .*learned by apply/);
  const st = cli(['status', '--root', dst]);
  assert.equal(st.status, 0, st.stderr);
  assert.match(st.stdout, new RegExp(`key:\\s+${newFp}, trusted through a rotation statement from ${oldFp}`));
  const js = JSON.parse(cli(['status', '--root', dst, '--json']).stdout) as { installed: { trust: { via: string; chain: string[] } } };
  assert.deepEqual(js.installed.trust, { via: 'statement', chain: [oldFp, newFp] });
  // Recorded: the same image now trusts the new key with no statement at all (a file bundle).
  const file = join(work, 'served-new.tar.gz');
  writeFileSync(file, (await get('/api/v1/hosts/e229/bundle')).body);
  assert.equal(cli(['verify', file, '--keys-dir', image]).status, 0);
});

test('retired key: after retire, a bundle signed by the retired key is refused (KEY_RETIRED), root unchanged', async () => {
  const oldSigned = packWith(oldKeyFile(), 'old-signed');
  // Before the retirement the old key is still good (rotation does not retire it).
  assert.equal(cli(['verify', oldSigned, '--keys-dir', image]).status, 0);

  const ret = await cliAsync(['admin', 'key', 'retire', oldFp, ...server()]);
  assert.equal(ret.status, 0, ret.stderr);
  assert.match(ret.stdout, new RegExp(`retired: ${oldFp} \\(statement signed by ${newFp}\\)`));
  // The old key's rotation statement is no longer served; the retirement is.
  const served = decodeStatementsHeader(String((await get('/api/v1/hosts/e229/bundle')).headers[STATEMENTS_HEADER]), 'h');
  assert.deepEqual(served.map((s) => [s.kind, s.signer]), [['retire', newFp]]);
  assert.equal(errorCode(await cliAsync(['admin', 'key', 'retire', newFp, ...server()])), 'KEY_UNKNOWN');

  // The image hears of the retirement with its next fetch from the server, and keeps it.
  const dst = newRoot('rescue-2');
  const ok = await cliAsync(['apply', 'e229', ...server(), '--root', dst, '--keys-dir', image, '-q']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.ok(readdirSync(image).some((n) => n.startsWith(`retire-${hex(oldFp)}-by-${hex(newFp)}`)), readdirSync(image).join(' '));

  const before = snapshot(dst);
  const r = cli(['apply', oldSigned, '--root', dst, '--keys-dir', image]);
  assert.equal(r.status, 4, r.stderr);
  assert.equal(errorCode(r), 'KEY_RETIRED');
  assert.match(r.stderr, new RegExp(`${oldFp} was retired by ${newFp}`));
  assert.deepEqual(snapshot(dst), before);
  assert.equal(errorCode(cli(['verify', oldSigned, '--keys-dir', image])), 'KEY_RETIRED');
  // The server's own answers still apply (signed by the new key).
  const again = await cliAsync(['apply', 'e229', ...server(), '--root', dst, '--keys-dir', image, '-q']);
  assert.equal(again.status, 0, again.stderr);
});

test('leaked old key: a rotation statement signed by a retired key introduces nothing', async () => {
  // The thief of the old key mints a key of its own and vouches for it with the old key.
  const evil = join(work, 'evil');
  const rot = cli(['key', 'rotate', '--key', oldKeyFile(), '--out', evil]);
  assert.equal(rot.status, 0, rot.stderr);
  const statement = join(evil, readdirSync(evil).find((n) => n.endsWith('.statement')) as string);
  const evilSigned = packWith(join(evil, 'rear-update.key'), 'evil-signed');
  const dst = newRoot('rescue-3');
  const before = snapshot(dst);
  const r = cli(['apply', evilSigned, '--root', dst, '--keys-dir', image, '--statement', statement]);
  assert.equal(errorCode(r), 'BUNDLE_KEY_UNTRUSTED', r.stderr);
  assert.match(r.stderr, /a retired key introduces nothing|treated as compromised/);
  assert.deepEqual(snapshot(dst), before);
  assert.ok(!readdirSync(image).some((n) => n.includes(hex(JSON.parse(readFileSync(statement, 'utf8')).fingerprint as string))));
  // It also retires the new key with the old one: that cannot bring the old key back; at worst nothing is trusted.
  const retNew = cli(['key', 'retire', newFp, '--key', oldKeyFile(), '--out', evil]);
  assert.equal(retNew.status, 0, retNew.stderr);
  const both = readdirSync(evil).filter((n) => n.endsWith('.statement')).flatMap((n) => ['--statement', join(evil, n)]);
  assert.equal(errorCode(cli(['apply', evilSigned, '--root', dst, '--keys-dir', image, ...both])), 'BUNDLE_KEY_UNTRUSTED');
  assert.equal(errorCode(cli(['apply', packWith(oldKeyFile(), 'old-again'), '--root', dst, '--keys-dir', image, ...both])), 'KEY_RETIRED');
  assert.deepEqual(snapshot(dst), before);
});

test('forged statement: a rotation statement altered after signing is refused (KEY_STATEMENT_INVALID), root unchanged', () => {
  // A publish-side key, rotated offline; the attacker swaps the new key in the statement for its own.
  const a = join(work, 'pub-a');
  assert.equal(cli(['keygen', '--out', a]).status, 0);
  const b = join(work, 'pub-b');
  assert.equal(cli(['key', 'rotate', '--key', join(a, 'rear-update.key'), '--out', b]).status, 0);
  const stFile = join(b, readdirSync(b).find((n) => n.endsWith('.statement')) as string);
  const genuine = JSON.parse(readFileSync(stFile, 'utf8')) as Record<string, string>;
  const thief = join(work, 'pub-thief');
  const thiefFp = /fingerprint:\s*(\S+)/.exec(cli(['keygen', '--out', thief]).stdout)?.[1] as string;
  const forged = { ...genuine, key: readFileSync(join(thief, 'rear-update.pub'), 'utf8'), fingerprint: thiefFp };
  const forgedFile = join(work, 'forged.statement');
  writeFileSync(forgedFile, `${JSON.stringify(forged)}\n`);
  const keys = join(work, 'img-pub');
  mkdirSync(keys);
  writeFileSync(join(keys, 'a.pub'), readFileSync(join(a, 'rear-update.pub')));
  const dst = newRoot('rescue-4');
  const before = snapshot(dst);
  const r = cli(['apply', packWith(join(thief, 'rear-update.key'), 'thief-signed'), '--root', dst, '--keys-dir', keys, '--statement', forgedFile]);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(errorCode(r), 'KEY_STATEMENT_INVALID');
  assert.match(r.stderr, /forged or altered/);
  assert.deepEqual(snapshot(dst), before);
  // Malformed (not a statement at all): refused the same way.
  writeFileSync(forgedFile, '{"kind":"rotate"}\n');
  assert.equal(errorCode(cli(['verify', packWith(join(a, 'rear-update.key'), 'a-signed'), '--keys-dir', keys, '--statement', forgedFile])), 'KEY_STATEMENT_INVALID');
});

test('publish-side key rotation: `key rotate` + --statement, then the learned key without it', () => {
  const a = join(work, 'pack-a');
  assert.equal(cli(['keygen', '--out', a]).status, 0);
  const b = join(work, 'pack-b');
  const rot = cli(['key', 'rotate', '--key', join(a, 'rear-update.key'), '--out', b]);
  assert.equal(rot.status, 0, rot.stderr);
  const stFile = join(b, readdirSync(b).find((n) => n.endsWith('.statement')) as string);
  const show = cli(['key', 'show', stFile]);
  assert.match(show.stdout, /rotation/);
  const keys = join(work, 'img-pack');
  mkdirSync(keys);
  writeFileSync(join(keys, 'fleet.pub'), readFileSync(join(a, 'rear-update.pub')));
  const bundle = packWith(join(b, 'rear-update.key'), 'b-signed');
  assert.equal(errorCode(cli(['verify', bundle, '--keys-dir', keys])), 'BUNDLE_KEY_UNTRUSTED');
  assert.equal(cli(['verify', bundle, '--keys-dir', keys, '--statement', stFile]).status, 0);
  const dst = newRoot('rescue-5');
  const r = cli(['apply', bundle, '--root', dst, '--keys-dir', keys, '--statement', stFile]);
  assert.equal(r.status, 0, r.stderr);
  const again = cli(['apply', bundle, '--root', dst, '--keys-dir', keys]);
  assert.equal(again.status, 0, again.stderr);
  assert.ok(readdirSync(keys).some((n) => n.startsWith('learned-')));
});

test('a restart keeps the rotated key and the statements', async () => {
  await srv.close();
  srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0' }, {}), { log: false });
  assert.equal(srv.fingerprint, newFp);
  const served = decodeStatementsHeader(String((await get('/api/v1/hosts/e229/bundle')).headers[STATEMENTS_HEADER]), 'h');
  assert.deepEqual(served.map((s) => s.kind), ['retire']);
});
