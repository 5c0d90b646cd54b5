// Freshness without clocks. A rescue system has no trustworthy time, and a signature alone
// does not tell an old, correctly signed bundle from the current one: someone on the path
// could answer with a copy captured earlier (an old disk layout recreates the wrong
// partitions). So every fetch from the server sends a fresh random nonce, the server signs it
// into the manifest it seals for that very request, and apply refuses an answer that does not
// carry its own nonce. See docs/bundle-format.md, "Served bundles".

import { RuError } from './errors.ts';
import type { Manifest } from './manifest.ts';

/** The request header that carries the nonce (the bundle route also takes `?nonce=`). */
export const NONCE_HEADER = 'x-rear-update-nonce';
export const NONCE_QUERY = 'nonce';
/** apply sends 16 random bytes, base64url: 22 characters. */
export const NONCE_BYTES = 16;

/** 16 to 64 base64url characters: enough to be unguessable, short enough for a header and an ETag. */
export const isNonce = (v: unknown): v is string => typeof v === 'string' && /^[A-Za-z0-9_-]{16,64}$/.test(v);

/**
 * Refuses a bundle that does not carry the nonce its request sent (`sent` undefined: no nonce
 * was sent, as for a plain file or a URL elsewhere, and nothing is enforced). Called once the
 * manifest's signature is judged, before any payload byte is read.
 */
export function freshnessCheck(m: Pick<Manifest, 'nonce'> | null, sent: string | undefined): void {
  if (sent === undefined) return;
  if (m?.nonce === sent) return;
  const got = m === null ? 'is a plain archive without a manifest' : m.nonce === undefined ? 'carries no nonce' : 'carries another request\'s nonce';
  throw new RuError('BUNDLE_STALE', `the bundle is not the server's answer to this request: it ${got}, not the nonce this apply sent. A replayed or cached answer (or a server too old to sign nonces); nothing was written`, { sent, got: m?.nonce ?? null });
}
