// What the server signs for a file it hands out under /download/ (the one-file executable,
// packages), and what `self-update` checks: a short statement naming the file, its sha256 and
// its size, signed with the server's key in the record format of bundle signatures
// (signature.ts). Signing a statement instead of the bytes keeps the signature small and cheap
// for a 100 MiB file, and its first line keeps it from being mistaken for a bundle manifest's
// signature (a manifest is JSON, the statement is not). Pure computation.

import { checkSignature, decodeSignature, signManifest, type PrivateKey, type PublicKey, type SignatureStatus } from './signature.ts';

/** The header carrying the file's sha256 (hex). */
export const SHA256_HEADER = 'x-rear-update-sha256';
/** The header carrying the signature record, base64 (the same record as GET /download/NAME.sig). */
export const SIGNATURE_HEADER = 'x-rear-update-signature';

export interface DownloadFacts {
  readonly name: string;
  readonly sha256: string;
  readonly size: number;
}

export const downloadStatement = (f: DownloadFacts): Buffer =>
  Buffer.from(`rear-update download statement 1\nname ${f.name}\nsha256 ${f.sha256}\nsize ${f.size}\n`);

/** The signature record (JSON text with a final newline) over the statement. */
export const signDownload = (f: DownloadFacts, key: PrivateKey): Buffer => signManifest(downloadStatement(f), key);

/** Judges a signature record (as served) over these facts against the trusted keys; throws only for a malformed record. */
export const checkDownload = (f: DownloadFacts, record: Buffer, trusted: readonly PublicKey[]): SignatureStatus =>
  checkSignature(downloadStatement(f), decodeSignature(record), trusted);
