// ed25519 keys, fingerprints and the signature over the manifest bytes. Keys are standard
// PEM (PKCS#8 private, SPKI public) so OpenSSL can read them too; the signature member is a
// small JSON record naming the signing key's fingerprint. Pure computation (node:crypto).

import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { RuError } from './errors.ts';

export interface PublicKey {
  readonly key: KeyObject;
  /** `ed25519:` + the first 16 hex digits of sha256(raw 32-byte public key). */
  readonly fingerprint: string;
  /** Where it came from (file path), for messages. */
  readonly source: string;
}

export interface PrivateKey {
  readonly key: KeyObject;
  readonly publicKey: PublicKey;
}

export interface SignatureRecord {
  readonly format: 1;
  readonly alg: 'ed25519';
  readonly key: string;
  readonly sig: string;
}

export function fingerprintOf(pub: KeyObject): string {
  const jwk = pub.export({ format: 'jwk' });
  const raw = Buffer.from(jwk.x as string, 'base64url');
  return `ed25519:${createHash('sha256').update(raw).digest('hex').slice(0, 16)}`;
}

export function parsePublicKey(pem: string, source: string): PublicKey {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new RuError('KEY_INVALID', `${source}: not a PEM public key (${(e as Error).message})`, { path: source });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new RuError('KEY_INVALID', `${source}: key type is ${key.asymmetricKeyType}, expected ed25519`, { path: source });
  if (!/-----BEGIN PUBLIC KEY-----/.test(pem)) throw new RuError('KEY_INVALID', `${source}: this is a private key; pass the .pub file`, { path: source });
  return { key, fingerprint: fingerprintOf(key), source };
}

export function parsePrivateKey(pem: string, source: string): PrivateKey {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new RuError('KEY_INVALID', `${source}: not a PEM private key (${(e as Error).message})`, { path: source });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new RuError('KEY_INVALID', `${source}: key type is ${key.asymmetricKeyType}, expected ed25519`, { path: source });
  const pub = createPublicKey(key);
  return { key, publicKey: { key: pub, fingerprint: fingerprintOf(pub), source } };
}

export function signManifest(manifest: Buffer, priv: PrivateKey): Buffer {
  const rec: SignatureRecord = {
    format: 1, alg: 'ed25519', key: priv.publicKey.fingerprint, sig: sign(null, manifest, priv.key).toString('base64'),
  };
  return Buffer.from(`${JSON.stringify(rec)}\n`);
}

export function decodeSignature(bytes: Buffer): SignatureRecord {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new RuError('BUNDLE_SIGNATURE_INVALID', 'signature member is not valid JSON');
  }
  if (r === null || typeof r !== 'object' || r.format !== 1 || r.alg !== 'ed25519' || typeof r.key !== 'string' || typeof r.sig !== 'string' || !/^[A-Za-z0-9+/]{86}==$/.test(r.sig)) {
    throw new RuError('BUNDLE_SIGNATURE_INVALID', 'signature member is malformed');
  }
  const rec: SignatureRecord = { format: 1, alg: 'ed25519', key: r.key, sig: r.sig };
  if (!Buffer.from(`${JSON.stringify(rec)}\n`).equals(bytes)) throw new RuError('BUNDLE_SIGNATURE_INVALID', 'signature member is not in canonical encoding');
  return rec;
}

export type SignatureStatus =
  | { readonly status: 'valid'; readonly key: PublicKey }
  | { readonly status: 'invalid'; readonly fingerprint: string }
  | { readonly status: 'unknown-key'; readonly fingerprint: string }
  | { readonly status: 'unsigned' };

/** Judges a signature against the trusted keys; never throws for a bad signature, it reports. */
export function checkSignature(manifest: Buffer, sig: SignatureRecord | null, trusted: readonly PublicKey[]): SignatureStatus {
  if (!sig) return { status: 'unsigned' };
  const candidates = trusted.filter((k) => k.fingerprint === sig.key);
  if (candidates.length === 0) return { status: 'unknown-key', fingerprint: sig.key };
  const raw = Buffer.from(sig.sig, 'base64');
  for (const k of candidates) {
    if (verify(null, manifest, k.key, raw)) return { status: 'valid', key: k };
  }
  return { status: 'invalid', fingerprint: sig.key };
}

/** Turns a signature status into a refusal unless it is acceptable under the caller's policy. */
export function requireTrusted(s: SignatureStatus, allowUnsigned: boolean): void {
  switch (s.status) {
    case 'valid':
      return;
    case 'invalid':
      // Never acceptable, not even with --unsigned: the bundle claims a key we trust and lies.
      throw new RuError('BUNDLE_SIGNATURE_INVALID', `signature by ${s.fingerprint} does not match the manifest: the bundle was altered or forged`, { key: s.fingerprint });
    case 'unknown-key':
      if (allowUnsigned) return;
      throw new RuError('BUNDLE_KEY_UNTRUSTED', `bundle is signed by ${s.fingerprint}, which is not a trusted key`, { key: s.fingerprint });
    case 'unsigned':
      if (allowUnsigned) return;
      throw new RuError('BUNDLE_UNSIGNED', 'bundle is not signed; pass --unsigned to accept it anyway');
  }
}
