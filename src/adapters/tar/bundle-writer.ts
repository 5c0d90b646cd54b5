// Writes a bundle: manifest and signature first, then the payload in canonical order, as one
// gzip member whose header is fixed (and signed, see core/container.ts). node-tar encodes
// every tar header (ustar, PAX for long or UTF-8 names); we only frame them. Output goes to a temporary file renamed into place, so a failed
// pack never leaves a half-written bundle behind.

import { createHash } from 'node:crypto';
import { closeSync, createReadStream, openSync, write, writeSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { Header, Pax, type HeaderData } from 'tar';
import { RuError } from '../../core/errors.ts';
import { encodeManifest, type Manifest, type ManifestEntry } from '../../core/manifest.ts';
import { MANIFEST_MEMBER, SIGNATURE_MEMBER } from '../../core/paths.ts';
import { CANONICAL_GZIP_HEADER, CONTAINER_DIGEST, EMPTY_DIGEST, SIGNED_HEADER_LEN, signContainer, signedGzipHeader } from '../../core/container.ts';
import type { PrivateKey } from '../../core/signature.ts';

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK * 2);

/** A payload entry plus where to read its bytes from (files only). */
export interface WritableEntry extends ManifestEntry {
  readonly abs?: string;
}

function header(data: HeaderData): Buffer {
  const h = new Header(data);
  const block = Buffer.alloc(BLOCK);
  const needPax = h.encode(block, 0);
  if (!needPax) return block;
  // Long or non-ASCII names and link targets travel in a PAX record before the ustar header.
  const pax = new Pax({ path: data.path, linkpath: data.linkpath, mtime: data.mtime }).encode();
  return Buffer.concat([pax, block]);
}

const pad = (size: number): Buffer => ZEROS.subarray(0, (BLOCK - (size % BLOCK)) % BLOCK);

async function* members(manifest: Manifest, manifestBytes: Buffer, signature: Buffer | null, entries: readonly WritableEntry[]): AsyncGenerator<Buffer> {
  const mtime = new Date(manifest.created);
  const meta = (path: string, body: Buffer): Buffer[] => [
    header({ path, type: 'File', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime }), body, pad(body.length),
  ];
  yield* meta(MANIFEST_MEMBER, manifestBytes);
  if (signature) yield* meta(SIGNATURE_MEMBER, signature);
  for (const e of entries) {
    const common = { mode: e.mode, uid: e.uid, gid: e.gid, mtime };
    if (e.type === 'dir') {
      yield header({ ...common, path: `${e.path}/`, type: 'Directory', size: 0 });
    } else if (e.type === 'symlink') {
      yield header({ ...common, path: e.path, type: 'SymbolicLink', size: 0, linkpath: e.target });
    } else if (e.type === 'hardlink') {
      yield header({ ...common, path: e.path, type: 'Link', size: 0, linkpath: e.target });
    } else {
      yield header({ ...common, path: e.path, type: 'File', size: e.size });
      // Re-hash while copying: the manifest is already written, so a file that changed since it
      // was hashed must stop the pack rather than produce a bundle that fails its own verify.
      const h = createHash('sha256');
      let n = 0;
      for await (const chunk of createReadStream(e.abs as string, { highWaterMark: 1 << 20 })) {
        const b = chunk as Buffer;
        n += b.length;
        if (n > (e.size ?? 0)) break;
        h.update(b);
        yield b;
      }
      if (n !== e.size || h.digest('hex') !== e.sha256) {
        throw new RuError('PACK_SOURCE_CHANGED', `${e.path} changed while it was being packed`, { path: e.path });
      }
      yield pad(n);
    }
  }
  yield ZEROS;
}

/**
 * gzip's output minus zlib's own 10-byte header goes to the file after room for ours, and is
 * hashed on the way; once it is complete, the header (with the container signature when a
 * key is given) is written in front. One pass, no copy of the compressed data.
 */
export async function writeBundle(out: string, manifest: Manifest, signature: Buffer | null, entries: readonly WritableEntry[], manifestBytes = encodeManifest(manifest), key: PrivateKey | null = null): Promise<void> {
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  const headerLen = key ? SIGNED_HEADER_LEN : CANONICAL_GZIP_HEADER.length;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    const h = createHash(CONTAINER_DIGEST);
    let zlibHeader = Buffer.alloc(0);
    let pos = headerLen;
    await pipeline(
      Readable.from(members(manifest, manifestBytes, signature, entries)),
      createGzip({ level: 6, chunkSize: 1 << 20 }),
      new Writable({
        highWaterMark: 1 << 20,
        write(chunk: Buffer, _enc, cb) {
          let body = chunk;
          if (zlibHeader.length < CANONICAL_GZIP_HEADER.length) {
            const take = CANONICAL_GZIP_HEADER.length - zlibHeader.length;
            zlibHeader = Buffer.concat([zlibHeader, chunk.subarray(0, take)]);
            body = chunk.subarray(take);
          }
          h.update(body);
          const at = pos;
          pos += body.length;
          write(fd, body, 0, body.length, at, (err) => cb(err));
        },
      }),
    );
    if (!zlibHeader.equals(CANONICAL_GZIP_HEADER)) throw new Error(`zlib wrote an unexpected gzip header ${zlibHeader.toString('hex')}`);
    // One gzip member: all of it is part one of the container digest (core/container.ts).
    const split = pos - headerLen;
    const header = key ? signedGzipHeader(signContainer({ split, part1: h.digest(), part2: EMPTY_DIGEST }, key), split) : CANONICAL_GZIP_HEADER;
    writeSync(fd, header, 0, header.length, 0);
    closeSync(fd);
    await rename(tmp, out);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    await rm(tmp, { force: true });
    throw e;
  }
}
