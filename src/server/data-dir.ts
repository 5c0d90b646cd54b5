// The server's data directory, and what its first start creates in it: the metadata database,
// the blob directory, the signing key (0600, never served), DATA/server.pub (what rescue
// images trust) and an admin token in DATA/admin.token (0600). Later starts reuse them; a
// start also removes what a killed upload left in DATA/tmp, so the store is consistent.

import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { generateToken } from '../core/access.ts';
import { RuError } from '../core/errors.ts';
import type { PrivateKey } from '../core/signature.ts';
import type { MetadataStore } from '../core/store/metadata.ts';
import { generateKeys, loadPrivateKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../adapters/fs/keys.ts';

export interface DataLayout {
  readonly root: string;
  readonly database: string;
  readonly blobs: string;
  readonly keyDir: string;
  readonly serverPub: string;
  readonly adminToken: string;
  readonly logs: string;
  readonly tmp: string;
}

export function layout(dir: string): DataLayout {
  const root = resolve(dir);
  return {
    root,
    database: join(root, 'metadata.sqlite'),
    blobs: join(root, 'blobs'),
    keyDir: join(root, 'signing'),
    serverPub: join(root, 'server.pub'),
    adminToken: join(root, 'admin.token'),
    logs: join(root, 'logs'),
    tmp: join(root, 'tmp'),
  };
}

/** Creates the directories and the signing key if missing; returns the key and whether it is new. */
export function prepareDataDir(l: DataLayout): { key: PrivateKey; created: boolean } {
  try {
    mkdirSync(l.root, { recursive: true, mode: 0o700 });
    if (!statSync(l.root).isDirectory()) throw new Error('not a directory');
    rmSync(l.tmp, { recursive: true, force: true });
    for (const d of [l.blobs, l.logs, l.tmp]) mkdirSync(d, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new RuError('CONFIG_INVALID', `data directory ${l.root} is unusable: ${(e as Error).message}`, { path: l.root });
  }
  const keyFile = join(l.keyDir, PRIVATE_KEY_FILE);
  const created = !existsSync(keyFile);
  const key = created ? generateKeys(l.keyDir, false) : loadPrivateKey(keyFile);
  if (!created && (statSync(keyFile).mode & 0o077) !== 0) chmodSync(keyFile, 0o600);
  // server.pub is what admins copy into rescue images; keep it equal to the key in use.
  const pub = join(l.keyDir, PUBLIC_KEY_FILE);
  if (!existsSync(l.serverPub) || !readFileSync(l.serverPub).equals(readFileSync(pub))) {
    copyFileSync(pub, l.serverPub);
    chmodSync(l.serverPub, 0o644);
  }
  return { key, created };
}

/**
 * The first admin token: made when DATA/admin.token is absent and no admin token is active in
 * the store. Returns the token when one was made. Deleting the file and every admin token
 * (revoking them, or letting them expire) makes the next start issue a new one: the documented
 * way to recover access.
 */
export async function ensureAdminToken(l: DataLayout, store: MetadataStore, now: Date = new Date()): Promise<string | null> {
  if (existsSync(l.adminToken)) return null;
  // An expired admin token opens nothing: it does not count as active.
  const active = (await store.listTokens()).some((t) => t.scope === 'admin' && !t.revoked && (t.expires === null || t.expires > now.toISOString()));
  if (active) return null;
  const t = generateToken();
  await store.createToken({ id: t.id, secretHash: t.secretHash, scope: 'admin', label: 'created at first start' });
  writeFileSync(l.adminToken, `${t.token}\n`, { mode: 0o600, flag: 'wx' });
  return t.token;
}
