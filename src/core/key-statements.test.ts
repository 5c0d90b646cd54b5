// The trust computation of key statements, case by case: what a rotation adds, what a
// retirement removes, and what a leaked (retired) key can no longer do.

import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { test } from 'node:test';
import { isRuError } from './errors.ts';
import {
  computeTrust, decodeStatementsHeader, encodeBody, decodeStatementText, encodeStatement, encodeStatementsHeader, makeRetirement, makeRotation,
  MAX_CHAIN, parseStatement, spkiPem, verifyStatement, type KeyStatement, type RetireStatement, type RotateStatement, type Sourced, type Trust,
} from './key-statements.ts';
import { parsePrivateKey, type PrivateKey } from './signature.ts';

const T0 = new Date('2026-03-01T10:00:00Z');

function key(): PrivateKey {
  const { privateKey } = generateKeyPairSync('ed25519', { privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
  return parsePrivateKey(privateKey, 'test');
}

const src = (...list: KeyStatement[]): Sourced[] => list.map((statement, i) => ({ statement, source: `s${i}` }));
const fps = (t: Trust): string[] => t.trusted.map((k) => k.key.fingerprint).sort();
const sorted = (...ks: PrivateKey[]): string[] => ks.map((k) => k.publicKey.fingerprint).sort();

const OLD = key();
const NEW = key();
const NEWER = key();
const EVIL = key();
const OTHER = key();

const rot = (a: PrivateKey, b: PrivateKey): RotateStatement => makeRotation(a, b.publicKey, T0);
const ret = (by: PrivateKey, x: PrivateKey): RetireStatement => makeRetirement(by, x.publicKey.fingerprint, T0);
/** What makeRotation refuses to write: a key "rotated" to itself, signed by itself. */
function selfRotation(k: PrivateKey): KeyStatement {
  const body = { ...rot(k, NEWER), key: spkiPem(k.publicKey), fingerprint: k.publicKey.fingerprint };
  return { ...body, sig: sign(null, encodeBody(body), k.key).toString('base64') };
}

test('statements round-trip through their file form and the header; the signature covers every field', () => {
  const r = rot(OLD, NEW);
  assert.deepEqual(decodeStatementText(encodeStatement(r), 'f'), r);
  assert.ok(verifyStatement(r, OLD.publicKey));
  assert.ok(!verifyStatement(r, NEW.publicKey));
  const x = ret(NEW, OLD);
  assert.deepEqual(decodeStatementsHeader(encodeStatementsHeader([r, x]), 'h'), [r, x]);
  // Changing any signed field breaks the signature.
  assert.ok(!verifyStatement({ ...r, from: '2030-01-01T00:00:00Z' }, OLD.publicKey));
  assert.ok(!verifyStatement({ ...x, retired: EVIL.publicKey.fingerprint }, NEW.publicKey));
});

test('malformed statements are refused with KEY_STATEMENT_INVALID: unknown fields, wrong fingerprint, non-canonical key', () => {
  const r = rot(OLD, NEW);
  const bad = (v: unknown): void => assert.throws(() => parseStatement(v, 't'), (e: unknown) => isRuError(e) && e.code === 'KEY_STATEMENT_INVALID');
  bad({ ...r, extra: 1 });
  bad({ ...r, fingerprint: EVIL.publicKey.fingerprint });
  bad({ ...r, key: `${r.key}\n` });
  bad({ ...r, kind: 'grant' });
  bad({ ...r, from: '2026-03-01' });
  bad({ ...r, sig: 'AAAA' });
  bad([r]);
  assert.throws(() => decodeStatementText('{', 'x'), /KEY_STATEMENT_INVALID|not JSON/);
});

test('trust: pinned keys only, no statements', () => {
  const t = computeTrust([OLD.publicKey], []);
  assert.deepEqual(fps(t), sorted(OLD));
  assert.equal(t.trusted[0]?.via, null);
});

test('trust: a rotation by a pinned key adds the new key, with its chain', () => {
  const t = computeTrust([OLD.publicKey], src(rot(OLD, NEW)));
  assert.deepEqual(fps(t), sorted(OLD, NEW));
  const n = t.trusted.find((k) => k.key.fingerprint === NEW.publicKey.fingerprint);
  assert.deepEqual(n?.via?.chain, [OLD.publicKey.fingerprint, NEW.publicKey.fingerprint]);
});

test('trust: rotations chain transitively, in any order, up to MAX_CHAIN', () => {
  const t = computeTrust([OLD.publicKey], src(rot(NEW, NEWER), rot(OLD, NEW)));
  assert.deepEqual(fps(t), sorted(OLD, NEW, NEWER));
  const chain = [OLD, ...Array.from({ length: MAX_CHAIN + 1 }, key)];
  const list = chain.slice(1).map((k, i) => rot(chain[i] as PrivateKey, k));
  const long = computeTrust([OLD.publicKey], src(...list));
  assert.equal(long.trusted.length, MAX_CHAIN + 1);
  assert.ok(!fps(long).includes((chain.at(-1) as PrivateKey).publicKey.fingerprint));
  assert.ok(long.ignored.some((i) => /at most 8/.test(i.reason)));
});

test('trust: loops and self-rotations add nothing and do not hang', () => {
  const t = computeTrust([OLD.publicKey], src(rot(OLD, NEW), rot(NEW, OLD)));
  assert.deepEqual(fps(t), sorted(OLD, NEW));
  assert.equal(t.retired.size, 0);
});

test('trust: a statement signed by an unknown key counts for nothing', () => {
  const t = computeTrust([OLD.publicKey], src(rot(EVIL, OTHER), ret(EVIL, OLD)));
  assert.deepEqual(fps(t), sorted(OLD));
  assert.equal(t.retired.size, 0);
  assert.equal(t.ignored.length, 2);
  assert.ok(t.ignored.every((i) => !i.forged));
});

test('trust: a forged statement (right signer named, wrong key signed) is ignored and marked forged', () => {
  const forged: KeyStatement = { ...rot(EVIL, OTHER), signer: OLD.publicKey.fingerprint };
  const t = computeTrust([OLD.publicKey], src(forged));
  assert.deepEqual(fps(t), sorted(OLD));
  assert.equal(t.ignored[0]?.forged, true);
  // A genuine rotation whose new key was swapped afterwards: the same.
  const tampered: KeyStatement = { ...rot(OLD, NEW), key: spkiPem(EVIL.publicKey), fingerprint: EVIL.publicKey.fingerprint };
  const t2 = computeTrust([OLD.publicKey], src(tampered));
  assert.deepEqual(fps(t2), sorted(OLD));
  assert.equal(t2.ignored[0]?.forged, true);
});

test('trust: a retirement by a pinned key removes the retired key', () => {
  const t = computeTrust([OLD.publicKey, NEW.publicKey], src(ret(NEW, OLD)));
  assert.deepEqual(fps(t), sorted(NEW));
  assert.equal(t.retired.get(OLD.publicKey.fingerprint)?.by, NEW.publicKey.fingerprint);
});

test('trust: the image recorded NEW, then NEW retires OLD: OLD is out, NEW stays', () => {
  const t = computeTrust([OLD.publicKey, NEW.publicKey], src(rot(OLD, NEW), ret(NEW, OLD)));
  assert.deepEqual(fps(t), sorted(NEW));
});

test('trust: a key known only through OLD cannot retire OLD (it would saw off the branch it sits on)', () => {
  const t = computeTrust([OLD.publicKey], src(rot(OLD, NEW), ret(NEW, OLD)));
  assert.deepEqual(fps(t), sorted(OLD, NEW));
  assert.equal(t.retired.size, 0);
  assert.ok(t.ignored.some((i) => /only through/.test(i.reason)));
});

test('leaked old key: after NEW retired it, a rotation signed by OLD introduces nothing', () => {
  const t = computeTrust([OLD.publicKey, NEW.publicKey], src(ret(NEW, OLD), rot(OLD, EVIL)));
  assert.deepEqual(fps(t), sorted(NEW));
  assert.ok(t.ignored.some((i) => i.statement.kind === 'rotate' && /retired key introduces nothing|forks|fork/.test(i.reason)));
});

test('leaked old key: its retirement of NEW, heard together with NEW\'s retirement of it, leaves nothing trusted (fail closed), never OLD', () => {
  const t = computeTrust([OLD.publicKey, NEW.publicKey], src(ret(NEW, OLD), ret(OLD, NEW), rot(OLD, EVIL)));
  assert.deepEqual(fps(t), []);
});

test('leaked old key: a retirement signed by a retired key counts for nothing', () => {
  // NEW (pinned) retires OLD; EVIL, minted by OLD, tries to retire NEW: EVIL is not trusted.
  const t = computeTrust([OLD.publicKey, NEW.publicKey], src(ret(NEW, OLD), rot(OLD, EVIL), ret(EVIL, NEW)));
  assert.deepEqual(fps(t), sorted(NEW));
});

test('fork: a key that signed rotations to two different keys is treated as retired; neither successor counts', () => {
  const t = computeTrust([OLD.publicKey], src(rot(OLD, NEW), rot(OLD, EVIL)));
  assert.deepEqual(fps(t), []);
  assert.equal(t.retired.get(OLD.publicKey.fingerprint)?.reason, 'forked');
  // An image that also holds NEW keeps NEW.
  const t2 = computeTrust([OLD.publicKey, NEW.publicKey], src(rot(OLD, NEW), rot(OLD, EVIL)));
  assert.deepEqual(fps(t2), sorted(NEW));
});

test('no resurrection: a retired key stays retired whatever reintroduces it, its own statements included', () => {
  const t = computeTrust([NEW.publicKey, OLD.publicKey], src(ret(NEW, OLD), rot(NEW, NEWER), rot(NEWER, OLD), selfRotation(OLD)));
  assert.deepEqual(fps(t), sorted(NEW, NEWER));
  assert.ok(t.retired.has(OLD.publicKey.fingerprint));
});

test('retirement removes what is known only through the retired key, nearest signers first', () => {
  // Pinned A and NEW; A → B; NEW retires A: B goes too (known only through A).
  const A = key();
  const B = key();
  const t = computeTrust([A.publicKey, NEW.publicKey], src(rot(A, B), ret(NEW, A), ret(B, NEW)));
  assert.deepEqual(fps(t), sorted(NEW));
});

test('a key may retire itself', () => {
  const t = computeTrust([OLD.publicKey, NEW.publicKey], src(ret(OLD, OLD)));
  assert.deepEqual(fps(t), sorted(NEW));
});

test('the result does not depend on the order of the statements', () => {
  const list = [rot(OLD, NEW), ret(NEW, OLD), rot(NEW, NEWER), rot(OLD, EVIL), ret(EVIL, NEW)];
  const want = fps(computeTrust([OLD.publicKey, NEW.publicKey], src(...list)));
  for (let i = 0; i < 10; i++) {
    const shuffled = [...list].sort(() => Math.random() - 0.5);
    assert.deepEqual(fps(computeTrust([NEW.publicKey, OLD.publicKey], src(...shuffled))), want);
  }
});
