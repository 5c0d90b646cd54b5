// Key files on disk: keygen writes a PEM pair (private 0600, created exclusively), readers load
// one key or every *.pub of a keys directory. The format itself lives in core/signature.ts.

import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { RuError } from '../../core/errors.ts';
import { parsePrivateKey, parsePublicKey, type PrivateKey, type PublicKey } from '../../core/signature.ts';

export const PRIVATE_KEY_FILE = 'rear-update.key';
export const PUBLIC_KEY_FILE = 'rear-update.pub';
export const DEFAULT_KEYS_DIR = '/etc/rear-update/keys';

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RuError('KEY_NOT_FOUND', `${path}: no such key file`, { path });
    throw new RuError('KEY_INVALID', `${path}: ${(e as Error).message}`, { path });
  }
}

export const loadPrivateKey = (path: string): PrivateKey => parsePrivateKey(readText(path), path);
export const loadPublicKey = (path: string): PublicKey => parsePublicKey(readText(path), path);

/**
 * The trusted keys: every explicit --pubkey, plus every *.pub in the keys directory. A missing
 * default directory is normal (nothing installed yet); a missing explicit one is an error.
 */
export function loadTrustedKeys(pubkeys: readonly string[], keysDir: string | undefined): PublicKey[] {
  const keys = pubkeys.map(loadPublicKey);
  const dir = keysDir ?? DEFAULT_KEYS_DIR;
  if (existsSync(dir)) {
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.pub')).sort()) keys.push(loadPublicKey(join(dir, name)));
  } else if (keysDir !== undefined) {
    throw new RuError('KEY_NOT_FOUND', `${keysDir}: no such keys directory`, { path: keysDir });
  }
  return keys;
}

export function generateKeys(outDir: string, force: boolean): PrivateKey {
  const priv = join(outDir, PRIVATE_KEY_FILE);
  const pub = join(outDir, PUBLIC_KEY_FILE);
  if (!force && (existsSync(priv) || existsSync(pub))) {
    throw new RuError('KEY_EXISTS', `${existsSync(priv) ? priv : pub} already exists; refusing to overwrite a key`, { path: existsSync(priv) ? priv : pub });
  }
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519', {
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  if (force) rmSync(priv, { force: true });
  // 'wx': never write a private key into a file somebody else created first.
  writeFileSync(priv, privateKey, { mode: 0o600, flag: 'wx' });
  writeFileSync(pub, publicKey, { mode: 0o644, flag: force ? 'w' : 'wx' });
  return parsePrivateKey(privateKey, priv);
}
