// Key statements: how a key pinned in a rescue image hands its trust on to a new key (a
// rotation) and how a key is disowned (a retirement), without rebuilding the image. A statement
// is a small JSON document signed by ONE key; this file encodes, parses and verifies them, and
// computes which keys an image trusts given its pinned keys and the statements it has seen.
// Pure computation (node:crypto only). docs/keys.md explains the rules and what a leaked key
// can and cannot do; the rules below are that document's in code.
//
// The rules, in short:
// - Pinned keys are trusted. A valid rotation signed by a trusted key that is not retired adds
//   its new key, transitively, at most MAX_CHAIN rotations away from a pinned key.
// - A key that signed rotations to two different keys has forked: someone else holds it. It is
//   treated as retired, and neither rotation counts.
// - A retirement of X counts when its signer is trusted WITHOUT X (a pinned key, or one reached
//   through keys other than X), or is X itself. A key known only through X cannot retire X: the
//   holder of a leaked X could otherwise mint such keys at will.
// - Retirements are heard in order of the signer's distance from a pinned key, nearest first,
//   those at the same distance together: a retirement removes the retired key and everything
//   known only through it before keys further away are heard.
// - A retired key is trusted for nothing: its bundles are refused (KEY_RETIRED), its rotations
//   introduce nothing, and no statement brings it back.
// Times in statements are informational: a rescue system has no trustworthy clock, and the
// holder of a leaked key can write any time it likes.

import { createPublicKey, sign, verify } from 'node:crypto';
import { RuError } from './errors.ts';
import { parsePublicKey, type PrivateKey, type PublicKey } from './signature.ts';

/** Domain separation: a statement signature can never be mistaken for a manifest's or a container's. */
export const STATEMENT_DOMAIN = Buffer.from('rear-update key statement v1\0');
/** Rotations from a pinned key to the farthest key still trusted. */
export const MAX_CHAIN = 8;
/** Statements considered at most (more are ignored, and said so). */
export const MAX_STATEMENTS = 64;
/** The response header that carries the server's statements with a bundle. */
export const STATEMENTS_HEADER = 'x-rear-update-key-statements';

const FINGERPRINT = /^ed25519:[0-9a-f]{16}$/;
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
const SIG = /^[A-Za-z0-9+/]{86}==$/;

export interface RotateBody {
  readonly format: 1;
  readonly kind: 'rotate';
  /** Fingerprint of the key that signs: the old key. */
  readonly signer: string;
  /** The new public key, SPKI PEM exactly as Node/OpenSSL write it. */
  readonly key: string;
  /** Fingerprint of the new key (redundant, for people reading the file; checked). */
  readonly fingerprint: string;
  /** When the new key signs from (informational). */
  readonly from: string;
}

export interface RetireBody {
  readonly format: 1;
  readonly kind: 'retire';
  readonly signer: string;
  /** Fingerprint of the key retired. */
  readonly retired: string;
  /** When it was retired (informational). */
  readonly at: string;
}

export type StatementBody = RotateBody | RetireBody;
export type RotateStatement = RotateBody & { readonly sig: string };
export type RetireStatement = RetireBody & { readonly sig: string };
export type KeyStatement = RotateStatement | RetireStatement;

/** A statement and where it came from (a file, the server), for messages. */
export interface Sourced {
  readonly statement: KeyStatement;
  readonly source: string;
}

const isoSeconds = (d: Date): string => `${d.toISOString().slice(0, 19)}Z`;

const invalid = (source: string, why: string): RuError => new RuError('KEY_STATEMENT_INVALID', `${source}: ${why}`, { path: source });

/** The signed bytes: the body's fields in fixed order, no whitespace. */
export function encodeBody(b: StatementBody): Buffer {
  const o = b.kind === 'rotate'
    ? { format: 1, kind: 'rotate', signer: b.signer, key: b.key, fingerprint: b.fingerprint, from: b.from }
    : { format: 1, kind: 'retire', signer: b.signer, retired: b.retired, at: b.at };
  return Buffer.concat([STATEMENT_DOMAIN, Buffer.from(JSON.stringify(o))]);
}

/** One line of JSON: the body's fields, then `sig`. The form of a .statement file. */
export function encodeStatement(s: KeyStatement): string {
  const body = s.kind === 'rotate'
    ? { format: 1, kind: 'rotate', signer: s.signer, key: s.key, fingerprint: s.fingerprint, from: s.from }
    : { format: 1, kind: 'retire', signer: s.signer, retired: s.retired, at: s.at };
  return `${JSON.stringify({ ...body, sig: s.sig })}\n`;
}

function signBody<B extends StatementBody>(body: B, by: PrivateKey): B & { readonly sig: string } {
  if (by.publicKey.fingerprint !== body.signer) throw new RuError('INTERNAL', `statement names signer ${body.signer} but is signed by ${by.publicKey.fingerprint}`);
  return { ...body, sig: sign(null, encodeBody(body), by.key).toString('base64') };
}

/** The canonical SPKI PEM of a public key: what a rotation statement carries. */
export const spkiPem = (k: PublicKey): string => k.key.export({ type: 'spki', format: 'pem' }).toString();

/** `oldKey` hands its trust on to `newKey`. */
export function makeRotation(oldKey: PrivateKey, newKey: PublicKey, from: Date): RotateStatement {
  if (oldKey.publicKey.fingerprint === newKey.fingerprint) throw new RuError('USAGE', 'a key cannot be rotated to itself');
  return signBody<RotateBody>({ format: 1, kind: 'rotate', signer: oldKey.publicKey.fingerprint, key: spkiPem(newKey), fingerprint: newKey.fingerprint, from: isoSeconds(from) }, oldKey);
}

/** `by` disowns the key with fingerprint `retired`. */
export function makeRetirement(by: PrivateKey, retired: string, at: Date): RetireStatement {
  if (!FINGERPRINT.test(retired)) throw new RuError('USAGE', `${JSON.stringify(retired)} is not a key fingerprint (ed25519: and 16 hex digits)`);
  return signBody<RetireBody>({ format: 1, kind: 'retire', signer: by.publicKey.fingerprint, retired, at: isoSeconds(at) }, by);
}

/**
 * A statement from untrusted JSON: exactly the documented fields and forms, or KEY_STATEMENT_INVALID.
 * Says nothing about the signature (verifyStatement).
 */
export function parseStatement(v: unknown, source: string): KeyStatement {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(source, 'a key statement is a JSON object');
  const o = v as Record<string, unknown>;
  const fields = o.kind === 'rotate' ? ['format', 'kind', 'signer', 'key', 'fingerprint', 'from', 'sig'] : o.kind === 'retire' ? ['format', 'kind', 'signer', 'retired', 'at', 'sig'] : null;
  if (!fields) throw invalid(source, `kind ${JSON.stringify(o.kind)} is neither "rotate" nor "retire"`);
  const keys = Object.keys(o);
  const extra = keys.filter((k) => !fields.includes(k));
  const missing = fields.filter((k) => !keys.includes(k));
  if (extra.length || missing.length) throw invalid(source, `a ${String(o.kind)} statement has exactly the fields ${fields.join(', ')}${extra.length ? `; unknown: ${extra.join(', ')}` : ''}${missing.length ? `; missing: ${missing.join(', ')}` : ''}`);
  if (o.format !== 1) throw invalid(source, `format ${JSON.stringify(o.format)} is not 1`);
  const str = (k: string, re: RegExp, what: string): string => {
    const x = o[k];
    if (typeof x !== 'string' || !re.test(x)) throw invalid(source, `${k} ${JSON.stringify(x)?.slice(0, 100)} is not ${what}`);
    return x;
  };
  const signer = str('signer', FINGERPRINT, 'a key fingerprint (ed25519: and 16 hex digits)');
  const sig = str('sig', SIG, 'a base64 ed25519 signature');
  if (o.kind === 'retire') {
    return { format: 1, kind: 'retire', signer, retired: str('retired', FINGERPRINT, 'a key fingerprint'), at: str('at', TIME, 'an ISO 8601 UTC time in whole seconds'), sig };
  }
  const fingerprint = str('fingerprint', FINGERPRINT, 'a key fingerprint');
  const from = str('from', TIME, 'an ISO 8601 UTC time in whole seconds');
  if (typeof o.key !== 'string' || o.key.length > 1000) throw invalid(source, 'key is not a PEM public key');
  let pub: PublicKey;
  try {
    pub = parsePublicKey(o.key, source);
  } catch (e) {
    throw invalid(source, `key: ${(e as Error).message}`);
  }
  // One encoding of a key only: the signed bytes then say exactly one thing.
  if (spkiPem(pub) !== o.key) throw invalid(source, 'key is not in the canonical SPKI PEM form');
  if (pub.fingerprint !== fingerprint) throw invalid(source, `fingerprint ${fingerprint} is not the key's (${pub.fingerprint})`);
  return { format: 1, kind: 'rotate', signer, key: o.key, fingerprint, from, sig };
}

/** A .statement file's text: one statement (JSON, surrounding whitespace allowed). */
export function decodeStatementText(text: string, source: string): KeyStatement {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw invalid(source, `not JSON (${(e as Error).message})`);
  }
  return parseStatement(v, source);
}

/** Whether `signer` (whose fingerprint the statement names) really signed it. */
export function verifyStatement(s: KeyStatement, signer: PublicKey): boolean {
  if (signer.fingerprint !== s.signer) return false;
  return verify(null, encodeBody(s), signer.key, Buffer.from(s.sig, 'base64'));
}

/** The public key a rotation introduces. */
export function rotatedKey(s: RotateBody, source: string): PublicKey {
  return { key: createPublicKey({ key: s.key, format: 'pem' }), fingerprint: s.fingerprint, source };
}

/** The header value: base64url of the JSON array of statements. */
export const encodeStatementsHeader = (list: readonly KeyStatement[]): string =>
  Buffer.from(JSON.stringify(list.map((s) => JSON.parse(encodeStatement(s)) as unknown))).toString('base64url');

/** Statements from a header value or a JSON body's list. Malformed entries are refused. */
export function parseStatementList(v: unknown, source: string): KeyStatement[] {
  if (!Array.isArray(v)) throw invalid(source, 'expected a JSON array of key statements');
  if (v.length > MAX_STATEMENTS) throw invalid(source, `${v.length} statements; at most ${MAX_STATEMENTS} are accepted`);
  return v.map((x, i) => parseStatement(x, `${source} #${i + 1}`));
}

export function decodeStatementsHeader(value: string, source: string): KeyStatement[] {
  if (!/^[A-Za-z0-9_-]*$/.test(value)) throw invalid(source, 'not base64url');
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
  } catch (e) {
    throw invalid(source, `not base64url JSON (${(e as Error).message})`);
  }
  return parseStatementList(v, source);
}

// ---- the trust computation ----

/** How a trusted key came to be trusted: pinned (null), or through a chain of rotations. */
export interface Introduction {
  /** The rotation that introduced it. */
  readonly statement: KeyStatement;
  readonly source: string;
  /** Fingerprints from a pinned key to this key. */
  readonly chain: readonly string[];
}

export interface TrustedKey {
  readonly key: PublicKey;
  readonly via: Introduction | null;
}

export interface Retirement {
  readonly fingerprint: string;
  /** 'retired': by a statement; 'forked': the key signed rotations to two different keys. */
  readonly reason: 'retired' | 'forked';
  /** The key whose statement retired it (for 'forked': null). */
  readonly by: string | null;
  readonly statement: KeyStatement | null;
  readonly source: string | null;
  /** For 'forked': the two (or more) keys it rotated to. */
  readonly successors?: readonly string[];
}

export interface IgnoredStatement {
  readonly statement: KeyStatement;
  readonly source: string;
  readonly reason: string;
  /** Its signer is known and its signature does not verify: forged or altered. */
  readonly forged: boolean;
}

export interface Trust {
  readonly trusted: readonly TrustedKey[];
  readonly retired: ReadonlyMap<string, Retirement>;
  /** Statements that counted for nothing, and why. */
  readonly ignored: readonly IgnoredStatement[];
  /** Retirement statements that counted. */
  readonly retirements: readonly Sourced[];
}

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly statement: KeyStatement;
  readonly source: string;
}

interface RetireClaim {
  readonly by: string;
  readonly retired: string;
  readonly statement: KeyStatement;
  readonly source: string;
}

interface Reached {
  readonly depth: number;
  readonly edge: Edge | null;
}

/** Keys reachable from the pinned ones through rotations, never entering or leaving an excluded key. */
function reach(pinned: ReadonlyMap<string, PublicKey>, edges: readonly Edge[], excluded: ReadonlySet<string>): Map<string, Reached> {
  const out = new Map<string, Reached>();
  let frontier: string[] = [];
  for (const fp of pinned.keys()) {
    if (excluded.has(fp)) continue;
    out.set(fp, { depth: 0, edge: null });
    frontier.push(fp);
  }
  for (let depth = 1; depth <= MAX_CHAIN && frontier.length; depth++) {
    const next: string[] = [];
    for (const e of edges) {
      if (!frontier.includes(e.from) || excluded.has(e.to) || out.has(e.to)) continue;
      out.set(e.to, { depth, edge: e });
      next.push(e.to);
    }
    frontier = next;
  }
  return out;
}

/**
 * Which keys are trusted, given the pinned keys and the statements seen (in any order: the
 * result does not depend on it). Never throws for a bad statement: it lands in `ignored`.
 */
export function computeTrust(pinnedKeys: readonly PublicKey[], input: readonly Sourced[]): Trust {
  const pinned = new Map<string, PublicKey>();
  for (const k of pinnedKeys) if (!pinned.has(k.fingerprint)) pinned.set(k.fingerprint, k);
  const ignored: IgnoredStatement[] = [];
  const ignore = (s: Sourced, reason: string, forged = false): void => void ignored.push({ ...s, reason, forged });

  // The same statement from two places is one statement.
  const seen = new Set<string>();
  const list: Sourced[] = [];
  for (const s of input) {
    const id = encodeStatement(s.statement);
    if (seen.has(id)) continue;
    seen.add(id);
    if (list.length >= MAX_STATEMENTS) ignore(s, `more than ${MAX_STATEMENTS} statements: the rest are not read`);
    else list.push(s);
  }

  // Discovery: verify statements whose signer is known, learning keys from rotations.
  const known = new Map<string, PublicKey>(pinned);
  const depth = new Map<string, number>([...pinned.keys()].map((fp) => [fp, 0]));
  const edges: Edge[] = [];
  const claims: RetireClaim[] = [];
  const done = new Set<Sourced>();
  const queue = [...pinned.keys()];
  while (queue.length) {
    const fp = queue.shift() as string;
    const signer = known.get(fp) as PublicKey;
    for (const s of list) {
      if (done.has(s) || s.statement.signer !== fp) continue;
      done.add(s);
      const st = s.statement;
      if (!verifyStatement(st, signer)) {
        ignore(s, `its signature does not verify with ${fp}: forged or altered`, true);
        continue;
      }
      if (st.kind === 'retire') {
        claims.push({ by: fp, retired: st.retired, statement: st, source: s.source });
        continue;
      }
      if (st.fingerprint === fp) {
        ignore(s, 'it rotates a key to itself');
        continue;
      }
      const have = known.get(st.fingerprint);
      if (have && have.key.export({ format: 'der', type: 'spki' }).compare(rotatedKey(st, s.source).key.export({ format: 'der', type: 'spki' })) !== 0) {
        ignore(s, `its new key has the fingerprint of another known key (${st.fingerprint})`);
        continue;
      }
      edges.push({ from: fp, to: st.fingerprint, statement: st, source: s.source });
      if (have) continue;
      const d = (depth.get(fp) as number) + 1;
      if (d > MAX_CHAIN) {
        ignore(s, `its new key would be ${d} rotations away from a pinned key; at most ${MAX_CHAIN} are followed`);
        continue;
      }
      known.set(st.fingerprint, rotatedKey(st, s.source));
      depth.set(st.fingerprint, d);
      queue.push(st.fingerprint);
    }
  }
  for (const s of list) if (!done.has(s)) ignore(s, `it is signed by ${s.statement.signer}, which is not a trusted key here`);

  // Forks: two different successors of one key mean someone else holds it.
  const retired = new Map<string, Retirement>();
  const successors = new Map<string, Set<string>>();
  for (const e of edges) successors.set(e.from, (successors.get(e.from) ?? new Set()).add(e.to));
  for (const [fp, to] of successors) {
    if (to.size > 1) retired.set(fp, { fingerprint: fp, reason: 'forked', by: null, statement: null, source: null, successors: [...to].sort() });
  }
  // A forked key's rotations count for nothing, even towards keys known otherwise.
  const live = (): Edge[] => edges.filter((e) => !retired.has(e.from));

  // Retirements, nearest signers first; those at the same distance together.
  const counted: Sourced[] = [];
  for (let d = 0; d <= MAX_CHAIN; d++) {
    const trusted = reach(pinned, live(), new Set(retired.keys()));
    const now: RetireClaim[] = [];
    for (const c of claims) {
      if (retired.has(c.retired) || now.some((n) => n.retired === c.retired)) continue;
      const at = trusted.get(c.by);
      if (!at || at.depth > d) continue;
      const independent = c.by === c.retired || reach(pinned, live(), new Set([...retired.keys(), c.retired])).has(c.by);
      if (independent) now.push(c);
    }
    for (const c of now) {
      retired.set(c.retired, { fingerprint: c.retired, reason: 'retired', by: c.by, statement: c.statement, source: c.source });
      counted.push({ statement: c.statement, source: c.source });
    }
  }
  const final = reach(pinned, live(), new Set(retired.keys()));
  for (const c of claims) {
    if (counted.some((s) => s.statement === c.statement)) continue;
    const r = retired.get(c.retired);
    const why = r
      ? `${c.retired} is retired already${r.by ? ` (by ${r.by})` : ''}`
      : !final.has(c.by)
        ? `its signer ${c.by} is not trusted (retired, or known only through a retired key)`
        : `its signer ${c.by} is trusted only through ${c.retired}, the key it would retire`;
    ignore({ statement: c.statement, source: c.source }, why);
  }
  // Rotations that introduced nothing that is trusted now.
  for (const e of edges) {
    const r = retired.get(e.from);
    if (!r || final.has(e.to)) continue;
    ignore({ statement: e.statement, source: e.source }, r.reason === 'forked'
      ? `${e.from} signed rotations to ${r.successors?.join(' and ')}: a key that forks is treated as compromised, and its rotations count for nothing`
      : `its signer ${e.from} is retired (by ${r.by}): a retired key introduces nothing`);
  }

  const chainOf = (fp: string): string[] => {
    const out = [fp];
    for (let r = final.get(fp); r?.edge; r = final.get(r.edge.from)) out.unshift(r.edge.from);
    return out;
  };
  const trusted: TrustedKey[] = [...final].map(([fp, r]) => ({
    key: known.get(fp) as PublicKey,
    via: r.edge ? { statement: r.edge.statement, source: r.edge.source, chain: chainOf(fp) } : null,
  }));
  return { trusted, retired, ignored, retirements: counted };
}

/** The public keys a bundle may be signed by. */
export const trustedKeys = (t: Trust): PublicKey[] => t.trusted.map((k) => k.key);

export function findTrusted(t: Trust, fingerprint: string): TrustedKey | null {
  return t.trusted.find((k) => k.key.fingerprint === fingerprint) ?? null;
}

/** "trusted through a rotation statement from ed25519:OLD" (with the chain when longer). */
export function describeVia(v: Pick<Introduction, 'chain'>): string {
  const from = v.chain[v.chain.length - 2] as string;
  return `trusted through a rotation statement from ${from}${v.chain.length > 2 ? ` (chain ${v.chain.join(' -> ')})` : ''}`;
}

/** Why a key is refused, for KEY_RETIRED. */
export function describeRetirement(r: Retirement): string {
  return r.reason === 'forked'
    ? `${r.fingerprint} signed rotations to two different keys (${r.successors?.join(', ')}): someone else holds it, so it is treated as retired`
    : `${r.fingerprint} was retired by ${r.by} (statement of ${r.statement?.kind === 'retire' ? r.statement.at : '?'}${r.source ? `, from ${r.source}` : ''})`;
}
