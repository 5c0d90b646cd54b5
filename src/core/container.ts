// The gzip container of a bundle. Deflate is not a unique encoding: some single-byte changes
// of the compressed data decompress to exactly the same bytes, so the manifest signature
// alone cannot notice them. A signed bundle therefore also signs its compressed bytes, in an
// extra field of the gzip header that every gunzip skips (RFC 1952 FEXTRA, subfield "RU").
// Everything else in the header is fixed, so no byte of a signed file can change unnoticed.

import { sign, verify } from 'node:crypto';
import { RuError } from './errors.ts';
import type { PrivateKey, PublicKey } from './signature.ts';

/** No name, no time, XFL 0, OS 3 (Unix): the header zlib writes, and an unsigned bundle's. */
export const CANONICAL_GZIP_HEADER = Buffer.from('1f8b0800000000000003', 'hex');
const SIGNED_PREFIX = Buffer.from('1f8b0804000000000003', 'hex');
const SIG_LEN = 64;
/** 10 fixed bytes, XLEN (2), subfield id "RU" and length (4), the signature. */
export const SIGNED_HEADER_LEN = 10 + 2 + 4 + SIG_LEN;
const DOMAIN = Buffer.from('rear-update container v1\0');
/** The digest of the compressed bytes (as for members: sha256, which SHA extensions make cheap). */
export const CONTAINER_DIGEST = 'sha256';

export function signedGzipHeader(signature: Buffer): Buffer {
  const extra = Buffer.alloc(2 + 4);
  extra.writeUInt16LE(4 + SIG_LEN, 0);
  extra.write('RU', 2, 'latin1');
  extra.writeUInt16LE(SIG_LEN, 4);
  return Buffer.concat([SIGNED_PREFIX, extra, signature]);
}

/** How long the header is, judged from its first bytes (null: not enough bytes yet). */
export function gzipHeaderLength(head: Buffer): number | null {
  if (head.length < 4) return null;
  return head[3] === 0x04 ? SIGNED_HEADER_LEN : CANONICAL_GZIP_HEADER.length;
}

/**
 * Checks a bundle's gzip header; returns the container signature it carries, or null for an
 * unsigned bundle. `signed`: whether the manifest is signed (then the header must be too).
 */
export function checkGzipHeader(head: Buffer, signed: boolean): Buffer | null {
  const hex = head.subarray(0, SIGNED_HEADER_LEN).toString('hex');
  if (!signed) {
    if (head.subarray(0, 10).equals(CANONICAL_GZIP_HEADER)) return null;
    throw new RuError('BUNDLE_NOT_CANONICAL', `gzip header is ${hex.slice(0, 20)}; an unsigned bundle's is always ${CANONICAL_GZIP_HEADER.toString('hex')}`);
  }
  const expect = signedGzipHeader(Buffer.alloc(SIG_LEN)).subarray(0, SIGNED_HEADER_LEN - SIG_LEN);
  if (head.length < SIGNED_HEADER_LEN || !head.subarray(0, expect.length).equals(expect)) {
    throw new RuError('BUNDLE_NOT_CANONICAL', `gzip header ${hex.slice(0, 32)}... is not the signed bundle header ${expect.toString('hex')}...`);
  }
  return Buffer.from(head.subarray(expect.length, SIGNED_HEADER_LEN));
}

const message = (digest: Buffer): Buffer => Buffer.concat([DOMAIN, digest]);

/** `digest`: CONTAINER_DIGEST of every byte after the header (deflate data and gzip trailer). */
export const signContainer = (digest: Buffer, key: PrivateKey): Buffer => sign(null, message(digest), key.key);

export function verifyContainer(digest: Buffer, signature: Buffer, key: PublicKey): boolean {
  return verify(null, message(digest), key.key, signature);
}
