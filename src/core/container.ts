// The gzip container of a bundle. Deflate is not a unique encoding: some single-byte changes
// of the compressed data decompress to exactly the same bytes, so the manifest signature
// alone cannot notice them. A signed bundle therefore also signs its compressed bytes, in an
// extra field of the gzip header that every gunzip skips (RFC 1952 FEXTRA, subfield "RU").
// Everything else in the header is fixed, so no byte of a signed file can change unnoticed.
//
// The bytes after the header are signed as two parts, split at an offset the header states:
// the server seals every answer with a fresh first part (the manifest member naming the
// serving time) in front of a payload member that never changes, so the payload's digest is
// computed once (it is the payload blob's name) instead of once per request. A bundle from
// pack has everything in part one and an empty part two.

import { createHash, sign, verify } from 'node:crypto';
import { RuError } from './errors.ts';
import type { PrivateKey, PublicKey } from './signature.ts';

/** No name, no time, XFL 0, OS 3 (Unix): the header zlib writes, and an unsigned bundle's. */
export const CANONICAL_GZIP_HEADER = Buffer.from('1f8b0800000000000003', 'hex');
const SIGNED_PREFIX = Buffer.from('1f8b0804000000000003', 'hex');
const SIG_LEN = 64;
const SPLIT_LEN = 8;
const SUBFIELD_LEN = SIG_LEN + SPLIT_LEN;
/** 10 fixed bytes, XLEN (2), subfield id "RU" and length (4), the signature, the split. */
export const SIGNED_HEADER_LEN = 10 + 2 + 4 + SUBFIELD_LEN;
const DOMAIN = Buffer.from('rear-update container v2\0');
/** The digest of the compressed bytes (as for members: sha256, which SHA extensions make cheap). */
export const CONTAINER_DIGEST = 'sha256';
export const EMPTY_DIGEST = createHash(CONTAINER_DIGEST).digest();

/** What a container signature covers: the bytes after the header, as two parts. */
export interface ContainerDigest {
  /** Length of part one (it starts right after the header); part two is the rest. */
  readonly split: number;
  readonly part1: Buffer;
  readonly part2: Buffer;
}

export function signedGzipHeader(signature: Buffer, split: number): Buffer {
  const extra = Buffer.alloc(2 + 4);
  extra.writeUInt16LE(4 + SUBFIELD_LEN, 0);
  extra.write('RU', 2, 'latin1');
  extra.writeUInt16LE(SUBFIELD_LEN, 4);
  const s = Buffer.alloc(SPLIT_LEN);
  s.writeBigUInt64LE(BigInt(split));
  return Buffer.concat([SIGNED_PREFIX, extra, signature, s]);
}

/** How long the header is, judged from its first bytes (null: not enough bytes yet). */
export function gzipHeaderLength(head: Buffer): number | null {
  if (head.length < 4) return null;
  return head[3] === 0x04 ? SIGNED_HEADER_LEN : CANONICAL_GZIP_HEADER.length;
}

/**
 * Checks a bundle's gzip header; returns the container signature and split it carries, or
 * null for an unsigned bundle. `signed`: whether the manifest is signed (then the header must be too).
 */
export function checkGzipHeader(head: Buffer, signed: boolean): { signature: Buffer; split: number } | null {
  const hex = head.subarray(0, SIGNED_HEADER_LEN).toString('hex');
  if (!signed) {
    if (head.subarray(0, 10).equals(CANONICAL_GZIP_HEADER)) return null;
    throw new RuError('BUNDLE_NOT_CANONICAL', `gzip header is ${hex.slice(0, 20)}; an unsigned bundle's is always ${CANONICAL_GZIP_HEADER.toString('hex')}`);
  }
  const expect = signedGzipHeader(Buffer.alloc(SIG_LEN), 0).subarray(0, SIGNED_HEADER_LEN - SUBFIELD_LEN);
  if (head.length < SIGNED_HEADER_LEN || !head.subarray(0, expect.length).equals(expect)) {
    throw new RuError('BUNDLE_NOT_CANONICAL', `gzip header ${hex.slice(0, 32)}... is not the signed bundle header ${expect.toString('hex')}...`);
  }
  return { signature: Buffer.from(head.subarray(expect.length, expect.length + SIG_LEN)), split: splitOf(head) as number };
}

/** The split a signed header states (null: not a signed header, or not complete yet). */
export function splitOf(head: Buffer): number | null {
  if (head.length < SIGNED_HEADER_LEN || head[3] !== 0x04) return null;
  const v = head.readBigUInt64LE(SIGNED_HEADER_LEN - SPLIT_LEN);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

function message(d: ContainerDigest): Buffer {
  const s = Buffer.alloc(SPLIT_LEN);
  s.writeBigUInt64LE(BigInt(d.split));
  return Buffer.concat([DOMAIN, s, d.part1, d.part2]);
}

export const signContainer = (d: ContainerDigest, key: PrivateKey): Buffer => sign(null, message(d), key.key);

export function verifyContainer(d: ContainerDigest, signature: Buffer, key: PublicKey): boolean {
  return verify(null, message(d), key.key, signature);
}

/** Hashes the bytes after a header as they stream by, switching parts at the split. */
export class ContainerHasher {
  #split: number = Number.MAX_SAFE_INTEGER;
  #seen = 0;
  readonly #h1 = createHash(CONTAINER_DIGEST);
  readonly #h2 = createHash(CONTAINER_DIGEST);

  /** Set once the header is known; before that every byte counts as part one. */
  setSplit(split: number): void {
    this.#split = split;
  }

  update(b: Buffer): void {
    const cut = Math.max(0, Math.min(b.length, this.#split - this.#seen));
    if (cut > 0) this.#h1.update(cut === b.length ? b : b.subarray(0, cut));
    if (cut < b.length) this.#h2.update(b.subarray(cut));
    this.#seen += b.length;
  }

  digest(): ContainerDigest {
    return { split: this.#split === Number.MAX_SAFE_INTEGER ? this.#seen : this.#split, part1: this.#h1.digest(), part2: this.#h2.digest() };
  }
}
