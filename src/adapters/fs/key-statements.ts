// Key statements on disk: the *.statement files of a keys directory and those named with
// --statement are read here; what apply learned through a statement is recorded here (a
// learned-*.pub beside the pinned keys, and the retirements it saw), so that the next run
// trusts the same keys without the server's help. The rules live in core/key-statements.ts.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { RuError } from '../../core/errors.ts';
import { computeTrust, decodeStatementText, encodeStatement, spkiPem, type KeyStatement, type Sourced, type Trust, type TrustedKey } from '../../core/key-statements.ts';
import { DEFAULT_KEYS_DIR, loadTrustedKeys } from './keys.ts';

export const STATEMENT_EXT = '.statement';
const hex = (fp: string): string => fp.replace(/^ed25519:/, '');

/** The file name a statement gets: what it does, by whom. */
export function statementFileName(s: KeyStatement): string {
  return s.kind === 'rotate' ? `rotate-${hex(s.signer)}-to-${hex(s.fingerprint)}${STATEMENT_EXT}` : `retire-${hex(s.retired)}-by-${hex(s.signer)}${STATEMENT_EXT}`;
}

export function readStatementFile(path: string): KeyStatement {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new RuError('KEY_NOT_FOUND', `${path}: no such statement file`, { path });
    throw new RuError('KEY_STATEMENT_INVALID', `${path}: ${(e as Error).message}`, { path });
  }
  return decodeStatementText(text, path);
}

/** The keys directory in use: --keys-dir, else the default one if it exists, else null. */
export function keysDirInUse(keysDir: string | undefined): string | null {
  if (keysDir !== undefined) return keysDir;
  return existsSync(DEFAULT_KEYS_DIR) ? DEFAULT_KEYS_DIR : null;
}

/** Every *.statement of the keys directory, then each --statement file. Malformed: KEY_STATEMENT_INVALID. */
export function loadStatementFiles(keysDir: string | undefined, files: readonly string[]): Sourced[] {
  const out: Sourced[] = [];
  const dir = keysDirInUse(keysDir);
  if (dir !== null && existsSync(dir)) {
    for (const n of readdirSync(dir).filter((x) => x.endsWith(STATEMENT_EXT)).sort()) {
      const p = join(dir, n);
      out.push({ statement: readStatementFile(p), source: p });
    }
  }
  for (const f of files) out.push({ statement: readStatementFile(f), source: f });
  return out;
}

/**
 * What this machine trusts: the pinned keys (--pubkey, *.pub of the keys directory), moved by
 * the statements of the keys directory, --statement files and those the server sent. A local
 * statement that names a trusted signer but does not verify is refused (someone put a forged
 * file there); a served one is only ignored (the caller names it).
 */
export function loadTrust(pubkeys: readonly string[], keysDir: string | undefined, statementFiles: readonly string[], served: readonly Sourced[]): Trust {
  const pinned = loadTrustedKeys(pubkeys, keysDir);
  const local = loadStatementFiles(keysDir, statementFiles);
  const trust = computeTrust(pinned, [...local, ...served]);
  const forged = trust.ignored.find((i) => i.forged && local.some((l) => l.source === i.source));
  if (forged) throw new RuError('KEY_STATEMENT_INVALID', `${forged.source}: ${forged.reason}`, { path: forged.source });
  return trust;
}

/**
 * Records a key trusted through a rotation as a pinned key of the keys directory
 * (learned-HEX.pub, with a comment saying how it was learned). Returns its path, or null when
 * it is there already. Throws for a directory that cannot be written.
 */
export function recordLearnedKey(dir: string, k: TrustedKey, context: string): string | null {
  if (!k.via) return null;
  const path = join(dir, `learned-${hex(k.key.fingerprint)}.pub`);
  if (existsSync(path)) return null;
  const lines = [
    `# rear-update: ${k.key.fingerprint}, learned ${context}`,
    `# trusted through a rotation statement signed by ${k.via.chain[k.via.chain.length - 2]} (chain ${k.via.chain.join(' -> ')}, from ${k.via.source})`,
    '# Pinned from now on like any *.pub here. Delete this file to stop trusting it.',
  ];
  writeFileSync(path, `${lines.join('\n')}\n${spkiPem(k.key)}`, { mode: 0o644, flag: 'wx' });
  return path;
}

/** Records a statement in the keys directory unless it came from there; returns the path written, or null. */
export function recordStatement(dir: string, s: Sourced): string | null {
  if (resolve(s.source).startsWith(`${resolve(dir)}/`)) return null;
  const path = join(dir, statementFileName(s.statement));
  if (existsSync(path)) return null;
  writeFileSync(path, encodeStatement(s.statement), { mode: 0o644, flag: 'wx' });
  return path;
}

/** Writes a statement made by `rear-update key rotate|retire` into `dir`; never over an existing file. */
export function writeStatementFile(dir: string, s: KeyStatement): string {
  const path = join(dir, statementFileName(s));
  if (existsSync(path)) throw new RuError('KEY_EXISTS', `${path} already exists; refusing to overwrite a statement`, { path });
  writeFileSync(path, encodeStatement(s), { mode: 0o644, flag: 'wx' });
  return path;
}
