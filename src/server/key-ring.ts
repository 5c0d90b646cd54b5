// The server's signing keys over time: the current key (DATA/signing/rear-update.key, as the
// first start made it), every former key (DATA/signing/previous/, private keys 0600) and the key
// statements the server has signed (DATA/signing/statements/, one *.statement file each, in the
// format of core/key-statements.ts). `rotate` makes a new key that the old one vouches for;
// `retire` disowns a former key with a statement by the current one and stops serving what the
// retired key signed. The serving code reads `current` for every sealing, so a rotation takes
// effect at once, without a restart.
//
// A rotation is a few renames; one cut off half-way (kill -9, power loss) is finished by the
// next open: the new key in signing/next/ becomes current once its rotation statement exists,
// and is thrown away otherwise. Several server processes on one data directory each keep their
// own ring in memory: restart the others after a rotation.

import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { RuError } from '../core/errors.ts';
import { encodeStatement, encodeStatementsHeader, makeRetirement, makeRotation, type KeyStatement } from '../core/key-statements.ts';
import { parsePrivateKey, type PrivateKey } from '../core/signature.ts';
import { generateKeys, loadPrivateKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../adapters/fs/keys.ts';
import { readStatementFile, STATEMENT_EXT } from '../adapters/fs/key-statements.ts';
import { writeAtomic } from '../adapters/fs/state.ts';
import type { DataLayout } from './data-dir.ts';

/** Served statements at most; the oldest rotations go first when there are more (docs/keys.md). */
const MAX_SERVED = 32;
/**
 * The header carries the newest statements that fit in this many bytes: Node's HTTP client
 * refuses answers whose headers exceed 16 KiB in all. The route always lists them all.
 */
const MAX_HEADER = 4096;

export interface KeyInfo {
  readonly fingerprint: string;
  readonly status: 'current' | 'previous' | 'retired';
  /** When its rotation statement says it signs from (null: the first key). */
  readonly since: string | null;
  readonly retired: string | null;
  readonly retiredBy: string | null;
}

export interface KeyList {
  readonly current: string;
  readonly keys: readonly KeyInfo[];
  readonly statements: readonly KeyStatement[];
  readonly served: readonly KeyStatement[];
}

const hex = (fp: string): string => fp.replace(/^ed25519:/, '');

export class KeyRing {
  readonly #dir: string;
  readonly #serverPub: string;
  #current: PrivateKey;
  #pem = '';
  #statements: KeyStatement[] = [];
  #served: KeyStatement[] = [];
  #header: string | null = null;

  private constructor(l: DataLayout) {
    this.#dir = l.keyDir;
    this.#serverPub = l.serverPub;
    this.#finishRotation();
    this.#current = loadPrivateKey(join(this.#dir, PRIVATE_KEY_FILE));
    this.#syncPublic();
    this.#load();
  }

  /** The ring of a data directory whose signing key exists (prepareDataDir made it). */
  static open(l: DataLayout): KeyRing {
    return new KeyRing(l);
  }

  get current(): PrivateKey {
    return this.#current;
  }

  /** PEM of the current public key, as DATA/server.pub holds it. */
  get publicPem(): string {
    return this.#pem;
  }

  /** What the server hands out: every statement except those signed by a retired key. */
  get served(): readonly KeyStatement[] {
    return this.#served;
  }

  /** The X-Rear-Update-Key-Statements value, or null when there is nothing to say. */
  get header(): string | null {
    return this.#header;
  }

  get #prevDir(): string {
    return join(this.#dir, 'previous');
  }

  get #stmtDir(): string {
    return join(this.#dir, 'statements');
  }

  get #nextDir(): string {
    return join(this.#dir, 'next');
  }

  #retiredSet(): Map<string, KeyStatement> {
    const m = new Map<string, KeyStatement>();
    for (const s of this.#statements) if (s.kind === 'retire' && !m.has(s.retired)) m.set(s.retired, s);
    return m;
  }

  #load(): void {
    const dir = this.#stmtDir;
    this.#statements = existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith(STATEMENT_EXT)).sort().map((n) => readStatementFile(join(dir, n))) : [];
    const retired = this.#retiredSet();
    let served = this.#statements.filter((s) => !retired.has(s.signer));
    // One retirement per retired key is enough; keep the newest signer's.
    const seen = new Set<string>();
    served = served.reverse().filter((s) => {
      if (s.kind !== 'retire') return true;
      if (seen.has(s.retired)) return false;
      seen.add(s.retired);
      return true;
    }).reverse();
    if (served.length > MAX_SERVED) served = served.slice(served.length - MAX_SERVED);
    this.#served = served;
    let inHeader = served;
    while (inHeader.length && encodeStatementsHeader(inHeader).length > MAX_HEADER) inHeader = inHeader.slice(1);
    this.#header = inHeader.length ? encodeStatementsHeader(inHeader) : null;
  }

  /** signing/rear-update.pub and DATA/server.pub say the current key, whatever a crash left. */
  #syncPublic(): void {
    const pem = this.#current.publicKey.key.export({ type: 'spki', format: 'pem' }).toString();
    const pub = join(this.#dir, PUBLIC_KEY_FILE);
    if (!existsSync(pub) || readFileSync(pub, 'utf8') !== pem) writeAtomic(pub, pem);
    chmodSync(pub, 0o644);
    if (!existsSync(this.#serverPub) || readFileSync(this.#serverPub, 'utf8') !== pem) writeAtomic(this.#serverPub, pem);
    chmodSync(this.#serverPub, 0o644);
    this.#pem = pem;
  }

  #nextSeq(): string {
    const dir = this.#stmtDir;
    const n = existsSync(dir) ? readdirSync(dir).filter((x) => x.endsWith(STATEMENT_EXT)).length : 0;
    return String(n + 1).padStart(4, '0');
  }

  #writeStatement(s: KeyStatement): void {
    mkdirSync(this.#stmtDir, { recursive: true, mode: 0o700 });
    const name = s.kind === 'rotate' ? `rotate-${hex(s.signer)}-to-${hex(s.fingerprint)}` : `retire-${hex(s.retired)}-by-${hex(s.signer)}`;
    writeAtomic(join(this.#stmtDir, `${this.#nextSeq()}-${name}${STATEMENT_EXT}`), encodeStatement(s));
  }

  /** Keeps a copy of the current key among the former ones (private 0600). */
  #keepPrevious(k: PrivateKey): void {
    mkdirSync(this.#prevDir, { recursive: true, mode: 0o700 });
    const base = join(this.#prevDir, `ed25519-${hex(k.publicKey.fingerprint)}`);
    if (!existsSync(`${base}.key`)) {
      copyFileSync(join(this.#dir, PRIVATE_KEY_FILE), `${base}.key.tmp`);
      chmodSync(`${base}.key.tmp`, 0o600);
      renameSync(`${base}.key.tmp`, `${base}.key`);
    }
    writeAtomic(`${base}.pub`, k.publicKey.key.export({ type: 'spki', format: 'pem' }).toString());
    chmodSync(`${base}.pub`, 0o644);
  }

  /** A rotation cut off half-way: finish it if its statement was written, else forget it. */
  #finishRotation(): void {
    const next = join(this.#nextDir, PRIVATE_KEY_FILE);
    if (!existsSync(this.#nextDir)) return;
    let nk: PrivateKey | null = null;
    try {
      nk = existsSync(next) ? parsePrivateKey(readFileSync(next, 'utf8'), next) : null;
    } catch {
      nk = null;
    }
    const stmts = existsSync(this.#stmtDir) ? readdirSync(this.#stmtDir) : [];
    if (nk && stmts.some((n) => n.endsWith(`-to-${hex(nk.publicKey.fingerprint)}${STATEMENT_EXT}`))) {
      renameSync(next, join(this.#dir, PRIVATE_KEY_FILE));
    }
    rmSync(this.#nextDir, { recursive: true, force: true });
  }

  /**
   * A new current key. The old key signs the rotation statement and is kept among the former
   * keys; bundles are signed with the new key from the next sealing on.
   */
  rotate(now: Date): { previous: string; current: string; statement: KeyStatement } {
    const old = this.#current;
    rmSync(this.#nextDir, { recursive: true, force: true });
    const nk = generateKeys(this.#nextDir, false);
    this.#keepPrevious(old);
    const statement = makeRotation(old, nk.publicKey, now);
    this.#writeStatement(statement);
    // The commit point: from this rename on, the new key is the server's.
    renameSync(join(this.#nextDir, PRIVATE_KEY_FILE), join(this.#dir, PRIVATE_KEY_FILE));
    rmSync(this.#nextDir, { recursive: true, force: true });
    this.#current = loadPrivateKey(join(this.#dir, PRIVATE_KEY_FILE));
    this.#syncPublic();
    this.#load();
    return { previous: old.publicKey.fingerprint, current: this.#current.publicKey.fingerprint, statement };
  }

  /**
   * Retires a former key: a retirement statement by the current key, and nothing the retired key
   * signed is served any more. Its retirements of still older keys are signed again by the
   * current key, so they keep being served. Retiring twice returns the first statement.
   */
  retire(fingerprint: string, now: Date): { statement: KeyStatement; already: boolean } {
    if (fingerprint === this.#current.publicKey.fingerprint) {
      throw new RuError('KEY_UNKNOWN', `${fingerprint} is the current signing key; rotate first (rear-update admin key rotate), then retire it`, { key: fingerprint });
    }
    if (!existsSync(join(this.#prevDir, `ed25519-${hex(fingerprint)}.key`))) {
      throw new RuError('KEY_UNKNOWN', `this server never signed with ${fingerprint} (see rear-update admin key list)`, { key: fingerprint });
    }
    const have = this.#retiredSet().get(fingerprint);
    if (have) return { statement: have, already: true };
    const statement = makeRetirement(this.#current, fingerprint, now);
    this.#writeStatement(statement);
    const cur = this.#current.publicKey.fingerprint;
    for (const s of this.#statements) {
      if (s.kind !== 'retire' || s.signer !== fingerprint || s.retired === cur) continue;
      if (this.#statements.some((x) => x.kind === 'retire' && x.retired === s.retired && x.signer === cur)) continue;
      this.#writeStatement(makeRetirement(this.#current, s.retired, new Date(s.at)));
    }
    this.#load();
    return { statement, already: false };
  }

  list(): KeyList {
    const retired = this.#retiredSet();
    const since = new Map<string, string>();
    for (const s of this.#statements) if (s.kind === 'rotate') since.set(s.fingerprint, s.from);
    const prev = existsSync(this.#prevDir) ? readdirSync(this.#prevDir).filter((n) => /^ed25519-[0-9a-f]{16}\.key$/.test(n)).map((n) => `ed25519:${n.slice(8, 24)}`) : [];
    const cur = this.#current.publicKey.fingerprint;
    const info = (fp: string): KeyInfo => {
      const r = retired.get(fp);
      return {
        fingerprint: fp,
        status: fp === cur ? 'current' : r ? 'retired' : 'previous',
        since: since.get(fp) ?? null,
        retired: r?.kind === 'retire' ? r.at : null,
        retiredBy: r?.signer ?? null,
      };
    };
    const keys = [...prev.filter((fp) => fp !== cur), cur].map(info).sort((a, b) => (a.since ?? '').localeCompare(b.since ?? '') || (a.status === 'current' ? 1 : 0) - (b.status === 'current' ? 1 : 0));
    return { current: cur, keys, statements: [...this.#statements], served: [...this.#served] };
  }
}
