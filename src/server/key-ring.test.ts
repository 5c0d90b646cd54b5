// The server's key ring on a real data directory: rotation, what is served after a
// retirement, and a rotation cut off half-way (finished or forgotten at the next open).

import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isRuError } from '../core/errors.ts';
import { computeTrust } from '../core/key-statements.ts';
import { generateKeys } from '../adapters/fs/keys.ts';
import { layout, prepareDataDir } from './data-dir.ts';
import { KeyRing } from './key-ring.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function fresh(): ReturnType<typeof layout> {
  const d = mkdtempSync(join(tmpdir(), 'ru-ring-'));
  dirs.push(d);
  const l = layout(d);
  prepareDataDir(l);
  return l;
}

const T = (s: string): Date => new Date(`2026-03-0${s}T00:00:00Z`);

test('rotate: new current key, old one kept 0600, server.pub follows, the rotation is served', () => {
  const l = fresh();
  const ring = KeyRing.open(l);
  const k0 = ring.current.publicKey;
  const r = ring.rotate(T('1'));
  assert.equal(r.previous, k0.fingerprint);
  assert.equal(ring.current.publicKey.fingerprint, r.current);
  assert.equal(readFileSync(l.serverPub, 'utf8'), ring.publicPem);
  assert.equal(statSync(join(l.keyDir, 'previous', `ed25519-${k0.fingerprint.slice(8)}.key`)).mode & 0o777, 0o600);
  assert.equal(statSync(join(l.keyDir, 'rear-update.key')).mode & 0o777, 0o600);
  assert.deepEqual(ring.served.map((s) => s.kind), ['rotate']);
  // An image pinning k0 trusts the new key through what is served.
  assert.equal(computeTrust([k0], ring.served.map((statement) => ({ statement, source: 's' }))).trusted.length, 2);
  // Reopening reads the same state.
  assert.equal(KeyRing.open(l).current.publicKey.fingerprint, r.current);
});

test('retire: the current key cannot be retired, an unknown one neither; what the retired key signed is no longer served, its retirements are re-signed', () => {
  const l = fresh();
  const ring = KeyRing.open(l);
  const k0 = ring.current.publicKey.fingerprint;
  const k1 = ring.rotate(T('1')).current;
  const bad = (fp: string): void => assert.throws(() => ring.retire(fp, T('2')), (e: unknown) => isRuError(e) && e.code === 'KEY_UNKNOWN');
  bad(k1);
  bad('ed25519:0000000000000000');
  ring.retire(k0, T('2'));
  assert.equal(ring.retire(k0, T('3')).already, true);
  assert.deepEqual(ring.served.map((s) => [s.kind, s.signer]), [['retire', k1]]);
  const k2 = ring.rotate(T('4')).current;
  ring.retire(k1, T('5'));
  // k1's retirement of k0 is served again, now signed by k2; nothing k1 signed is served.
  const served = ring.served.map((s) => (s.kind === 'retire' ? `retire ${s.retired} by ${s.signer}` : `rotate ${s.signer}`));
  assert.deepEqual(served.sort(), [`retire ${k0} by ${k2}`, `retire ${k1} by ${k2}`].sort());
  const list = ring.list();
  assert.deepEqual(list.keys.map((k) => [k.fingerprint, k.status]), [[k0, 'retired'], [k1, 'retired'], [k2, 'current']]);
});

test('a rotation cut off before its statement is forgotten; one cut off after it is finished', () => {
  const l = fresh();
  const k0 = KeyRing.open(l).current.publicKey.fingerprint;
  // Cut off before the statement: only signing/next/ exists.
  generateKeys(join(l.keyDir, 'next'), false);
  const ring = KeyRing.open(l);
  assert.equal(ring.current.publicKey.fingerprint, k0);
  assert.ok(!existsSync(join(l.keyDir, 'next')));
  // Cut off after the statement, before the key's rename: the next open completes it.
  const snap = mkdtempSync(join(tmpdir(), 'ru-ring-snap-'));
  dirs.push(snap);
  cpSync(l.keyDir, join(snap, 'signing'), { recursive: true });
  const r = ring.rotate(T('1'));
  // Put back the old current key and the new one in next/, as a crash between statement and rename leaves them.
  cpSync(join(l.keyDir, 'rear-update.key'), join(snap, 'next.key'));
  cpSync(join(snap, 'signing', 'rear-update.key'), join(l.keyDir, 'rear-update.key'));
  rmSync(join(l.keyDir, 'next'), { recursive: true, force: true });
  cpSync(join(snap, 'next.key'), join(l.keyDir, 'next', 'rear-update.key'));
  const reopened = KeyRing.open(l);
  assert.equal(reopened.current.publicKey.fingerprint, r.current);
  assert.equal(readFileSync(l.serverPub, 'utf8'), reopened.publicPem);
  assert.ok(!existsSync(join(l.keyDir, 'next')));
});
