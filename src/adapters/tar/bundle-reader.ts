// Reads a bundle in one streaming pass: gunzip (1 MiB chunks), node-tar's Parser, then for each
// member the safe-extraction rules and the manifest check, handing verified bytes to a Stager
// (or to nothing, for verify/inspect/dry-run). The signature is judged as soon as the first
// two members are in, before a single payload byte is passed on.

import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { fromSystemError, isRuError, RuError } from '../../core/errors.ts';
import { createdEpoch, decodeManifest, type Manifest, type ManifestEntry } from '../../core/manifest.ts';
import { isReserved, MANIFEST_MEMBER, normalizeMemberName, ROOT_PATH, SIGNATURE_MEMBER } from '../../core/paths.ts';
import type { StagedEntry } from '../../core/plan.ts';
import { checkTypeAndMode, LimitCounter, type Limits } from '../../core/policy.ts';
import { checkSignature, decodeSignature, requireTrusted, type PublicKey, type SignatureRecord, type SignatureStatus } from '../../core/signature.ts';
import { checkGzipHeader, ContainerHasher, gzipHeaderLength, splitOf, verifyContainer } from '../../core/container.ts';
import { isRecycling, OutputPool } from './buffer-pools.ts';
import { TarFraming } from './tar-framing.ts';

export interface StageMeta {
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds since the epoch. */
  readonly mtime: number;
}

/** A staged file being written. Synchronous on purpose: no stream machinery per member, and
 * a full disk surfaces as a thrown error at the chunk that hit it. */
export interface StagedFile {
  readonly name: string;
  write(chunk: Buffer): void;
  /** Applies the metadata and closes. */
  close(): void;
}

/** Where verified member data goes. Implementations must not derive any file name from a member name. */
export interface Stager {
  file(meta: StageMeta): StagedFile;
  symlink(target: string, meta: StageMeta): string;
  hardlink(stagedTarget: string): string;
  /** Closes whatever is still open after a refusal. */
  abort?(): void;
}

export interface ReadOptions {
  readonly trusted: readonly PublicKey[];
  readonly allowUnsigned: boolean;
  /** false: report the signature status instead of refusing (inspect). */
  readonly enforceTrust: boolean;
  readonly limits: Limits;
  readonly stager?: Stager;
  /** Called once the manifest (or its absence) and signature are judged, before any payload. */
  readonly onVerified?: (manifest: Manifest | null, sig: SignatureStatus) => void;
  /** Compressed bytes consumed so far. */
  readonly onProgress?: (compressedBytes: number) => void;
}

export interface ReadResult {
  readonly manifest: Manifest | null;
  readonly manifestBytes: Buffer | null;
  readonly signatureRecord: SignatureRecord | null;
  readonly signature: SignatureStatus;
  /** Payload entries in archive order; for a bundle with a manifest, exactly its entries. */
  readonly entries: StagedEntry[];
  /** The root entry (`./`) of a plain archive, whose metadata is never applied. */
  readonly rootEntryIgnored: boolean;
  readonly compressedBytes: number;
  readonly decompressedBytes: number;
}

const MAX_META_BYTES = 64 * 1024 * 1024;

// A buffer after gunzip (16 KiB by default) lets zlib, on the thread pool, run ahead while
// this thread hashes and writes: the two overlap instead of taking turns. Its output buffers
// are reused (buffer-pools.ts): enough of them to cover what can be in flight.
const CHUNK = 1 << 20;
const HWM = 2 << 20;
const OUT_BUFFERS = 8;
const BLOCK = 512;
// What GNU tar -xzf would not unpack a second time, but node-tar's Parser would (it sniffs).
const NESTED_MAGIC = [Buffer.from([0x1f, 0x8b]), Buffer.from([0x28, 0xb5, 0x2f, 0xfd])];

function mismatch(path: string, field: string, expected: unknown, actual: unknown): RuError {
  return new RuError('BUNDLE_MEMBER_MISMATCH', `${path}: ${field} is ${String(actual)} in the archive but ${String(expected)} in the manifest`, {
    path, field, expected: String(expected), actual: String(actual),
  });
}

export async function readBundle(input: Readable, opts: ReadOptions): Promise<ReadResult> {
  const limits = new LimitCounter(opts.limits);
  let failure: unknown = null;
  let compressed = 0;
  let decompressed = 0;
  let gzipHead = Buffer.alloc(0);
  let headerLen: number | null = null;
  let container: { signature: Buffer; split: number } | null = null;
  const bodyHash = new ContainerHasher();

  // Mutated from parser callbacks; widened so TypeScript does not narrow it to its initial value.
  let state = 'manifest' as 'manifest' | 'signature' | 'payload';
  let manifest: Manifest | null = null;
  let manifestBytes: Buffer | null = null;
  let sigRecord: SignatureRecord | null = null;
  let sigStatus: SignatureStatus = { status: 'unsigned' };
  let expected: Map<string, ManifestEntry> | null = null;
  let created = 0;
  /** Format 2: each layer's member mtime (composed bundles keep every layer's own). */
  let layerCreated: number[] = [];
  /** Format 2, composed: members a later layer replaces, per path in archive order; verified, never staged. */
  let shadowQueue: Map<string, ManifestEntry[]> | null = null;
  let rootEntryIgnored = false;
  const seen = new Map<string, StagedEntry>();
  const order: string[] = [];

  const parser = new Parser({ maxMetaEntrySize: 1024 * 1024, zstd: false, brotli: false });
  const fail = (e: unknown): void => {
    if (failure === null) failure = e;
    // Stop reading: nothing after the first refusal is looked at.
    input.destroy();
    opts.stager?.abort?.();
    parser.abort(e instanceof Error ? e : new Error(String(e)));
  };
  parser.on('warn', (code: string, message: string | Error) => {
    const msg = typeof message === 'string' ? message : message.message;
    fail(new RuError('BUNDLE_CORRUPT', `malformed tar data: ${msg} (${code})`, { tarCode: code }));
  });

  // node-tar drops, with only an event, members of types it does not know and metadata
  // records over maxMetaEntrySize. GNU tar would install the former as plain files and apply
  // the latter: either way a reader that skips them sees a different archive. Refuse.
  parser.on('ignoredEntry', (entry: ReadEntry) => {
    if (entry.meta) {
      fail(new RuError('LIMIT_NAME', `a ${entry.type} metadata record of ${entry.size} bytes exceeds 1 MiB (path ${entry.path.slice(0, 80)})`, { path: entry.path.slice(0, 200), type: entry.type }));
    } else {
      fail(new RuError('ENTRY_TYPE_REFUSED', `${entry.path}: ${entry.type} members are never installed (rule 4)`, { path: entry.path, type: entry.type, rule: 4 }));
    }
  });

  const judge = (): void => {
    if (manifest && manifestBytes) sigStatus = checkSignature(manifestBytes, sigRecord, opts.trusted);
    else sigStatus = { status: 'unsigned' };
    if (opts.enforceTrust) requireTrusted(sigStatus, opts.allowUnsigned);
    if (manifest) {
      container = checkGzipHeader(gzipHead, sigRecord !== null);
      expected = new Map(manifest.entries.map((e) => [e.path, e]));
      created = createdEpoch(manifest);
      layerCreated = (manifest.layers ?? []).map((l) => (l.created !== undefined ? createdEpoch(l as { created: string }) : created));
      if (manifest.shadowed && manifest.shadowed.length > 0) {
        shadowQueue = new Map();
        for (const e of manifest.shadowed) shadowQueue.set(e.path, [...(shadowQueue.get(e.path) ?? []), e]);
      }
    }
    state = 'payload';
    opts.onVerified?.(manifest, sigStatus);
  };

  const collect = (entry: ReadEntry, then: (b: Buffer) => void): void => {
    if (entry.type !== 'File' || entry.size > MAX_META_BYTES) {
      throw new RuError('BUNDLE_MANIFEST_INVALID', `${entry.path} must be a regular file of at most ${MAX_META_BYTES} bytes`);
    }
    const chunks: Buffer[] = [];
    // A copy: the chunk's buffer is reused once the parser returns (buffer-pools.ts).
    entry.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
    entry.on('end', () => {
      try {
        then(Buffer.concat(chunks));
      } catch (e) {
        fail(e);
      }
    });
  };

  const payload = (entry: ReadEntry, index: number): void => {
    const raw = entry.path;
    // CVE-2025-62518 (entry smuggling): a PAX size record that disagrees with the ustar size
    // makes readers that honour one or the other see different members. PAX sizes are only
    // needed above 8 GiB, far beyond any limit here, so none is accepted at all.
    if (entry.extended?.size !== undefined || entry.globalExtended?.size !== undefined) {
      throw new RuError('BUNDLE_CORRUPT', `${raw}: carries a PAX size record (${String(entry.extended?.size ?? entry.globalExtended?.size)}), which could smuggle entries past other readers`, { path: raw });
    }
    const path = normalizeMemberName(raw, opts.limits);
    limits.addEntry(path);
    const mode = (entry.mode ?? 0) & 0o7777;
    const type = checkTypeAndMode(path, entry.type, mode);
    if (path === ROOT_PATH) {
      // Rule 6: the root directory's own mode and owner are never changed.
      if (expected) throw new RuError('BUNDLE_MEMBER_UNLISTED', 'the archive contains a root directory member, which a bundle never has', { path: '.' });
      if (type !== 'dir') throw new RuError('ENTRY_PATH_INVALID', `the root member is a ${type}, not a directory`, { path: '.' });
      rootEntryIgnored = true;
      entry.resume();
      return;
    }
    if (isReserved(path)) throw new RuError('ENTRY_PATH_RESERVED', `${path}: rear-update's own state directory is never written by a bundle`, { path });
    // A composed bundle's member that a later layer replaces comes first; it is checked against
    // its own record and then dropped, as `tar -xzf` overwrites it with the later one.
    const shadow = shadowQueue?.get(path)?.shift();
    if (shadow === undefined && seen.has(path)) throw new RuError('BUNDLE_MEMBER_DUPLICATE', `${path} appears twice in the archive`, { path });
    if (entry.size > 0 && type !== 'file') throw new RuError('BUNDLE_CORRUPT', `${path}: a ${type} member carries ${entry.size} bytes of data`, { path });
    limits.addBytes(path, entry.size);

    let linkTarget: string | undefined;
    if (type === 'symlink') {
      linkTarget = entry.linkpath ?? '';
      if (linkTarget === '' || linkTarget.includes('\0')) throw new RuError('ENTRY_PATH_INVALID', `${path}: empty or malformed symlink target`, { path });
    } else if (type === 'hardlink') {
      // Rule 3: the link's target is resolved as a member name, and must be a file we placed.
      // A trailing slash names a directory: GNU tar fails on it, normalizing would link the file.
      if ((entry.linkpath ?? '').endsWith('/')) {
        throw new RuError('ENTRY_HARDLINK_REFUSED', `${path}: hard link target ${entry.linkpath} ends with a slash, which names a directory (rule 3)`, { path, target: entry.linkpath ?? '', rule: 3 });
      }
      let t: string;
      try {
        t = normalizeMemberName(entry.linkpath ?? '', opts.limits);
      } catch (e) {
        throw new RuError('ENTRY_HARDLINK_REFUSED', `${path}: hard link target ${entry.linkpath} is not inside the archive (${(e as Error).message}) (rule 3)`, { path, target: entry.linkpath ?? '', rule: 3 });
      }
      const te = seen.get(t);
      if (!te || te.type !== 'file') {
        throw new RuError('ENTRY_HARDLINK_REFUSED', `${path}: hard link target ${t} is not a regular file placed earlier by this archive (rule 3)`, { path, target: t, rule: 3 });
      }
      linkTarget = t;
    }

    let want: ManifestEntry | undefined;
    if (expected) {
      want = shadow ?? expected.get(path);
      if (!want) throw new RuError('BUNDLE_MEMBER_UNLISTED', `${path} is in the archive but not in the manifest`, { path });
      if (want.type !== type) throw mismatch(path, 'type', want.type, type);
      if (type === 'dir' || type === 'file') {
        if (want.mode !== mode) throw mismatch(path, 'mode', want.mode.toString(8), mode.toString(8));
      }
      // GNU tar, run as root, installs owners by name where the header names one: a bundle's
      // members carry numeric owners only, so what tar shows is what the manifest says.
      const names = framing.ownerNames[index];
      if (names) throw mismatch(path, 'owner name', '(none: numeric owners)', names);
      if (want.uid !== entry.uid) throw mismatch(path, 'uid', want.uid, entry.uid);
      if (want.gid !== entry.gid) throw mismatch(path, 'gid', want.gid, entry.gid);
      if (type === 'file' && want.size !== entry.size) throw mismatch(path, 'size', want.size, entry.size);
      if (linkTarget !== undefined && want.target !== linkTarget) throw mismatch(path, 'link target', want.target, linkTarget);
      const mtime = entry.mtime ? entry.mtime.getTime() / 1000 : NaN;
      const expectMtime = want.layer !== undefined ? (layerCreated[want.layer] ?? created) : created;
      if (mtime !== expectMtime) throw mismatch(path, 'mtime', expectMtime, mtime);
    }
    if (shadow) {
      if (type === 'file') {
        const h = createHash('sha256');
        let size = 0;
        entry.on('data', (c: Buffer) => {
          size += c.length;
          h.update(c);
        });
        entry.on('end', () => {
          if (failure !== null) return;
          const sha256 = h.digest('hex');
          if (sha256 !== shadow.sha256) fail(mismatch(path, 'sha256', shadow.sha256, sha256));
          else if (size !== entry.size) fail(new RuError('BUNDLE_CORRUPT', `${path}: ${size} bytes read, header says ${entry.size}`, { path }));
        });
      } else entry.resume();
      return;
    }
    // Owner root unless the manifest says otherwise (rule 5).
    const base: ManifestEntry = want ?? { path, type, mode: type === 'symlink' || type === 'hardlink' ? 0o777 : mode, uid: 0, gid: 0, ...(linkTarget !== undefined ? { target: linkTarget } : {}) };
    const layerMtime = want?.layer !== undefined ? layerCreated[want.layer] : undefined;
    const meta: StageMeta = { mode: base.mode, uid: base.uid, gid: base.gid, mtime: layerMtime ?? (created || (entry.mtime ? Math.floor(entry.mtime.getTime() / 1000) : 0)) };
    order.push(path);

    if (type === 'file') {
      const h = createHash('sha256');
      let size = 0;
      const staged = opts.stager?.file(meta);
      const record = (): void => {
        const sha256 = h.digest('hex');
        if (want && want.sha256 !== sha256) throw mismatch(path, 'sha256', want.sha256, sha256);
        if (size !== entry.size) throw new RuError('BUNDLE_CORRUPT', `${path}: ${size} bytes read, header says ${entry.size}`, { path });
        staged?.close();
        seen.set(path, { ...base, size, sha256, ...(staged ? { staged: staged.name } : {}) });
      };
      // Registered before any data flows, so a later hard link finds its target.
      seen.set(path, { ...base, size: entry.size, ...(staged ? { staged: staged.name } : {}) });
      entry.on('data', (c: Buffer) => {
        if (failure !== null) return;
        size += c.length;
        h.update(c);
        try {
          staged?.write(c);
        } catch (e) {
          fail(fromSystemError(e, `staging ${path}`));
        }
      });
      entry.on('end', () => {
        if (failure !== null) return;
        try {
          record();
        } catch (e) {
          fail(fromSystemError(e, `staging ${path}`));
        }
      });
      return;
    }
    let staged: string | undefined;
    if (opts.stager && type === 'symlink') staged = opts.stager.symlink(linkTarget as string, meta);
    if (opts.stager && type === 'hardlink') staged = opts.stager.hardlink(seen.get(linkTarget as string)?.staged as string);
    seen.set(path, { ...base, ...(staged ? { staged } : {}) });
    entry.resume();
  };

  let entryIndex = 0;
  parser.on('entry', (entry: ReadEntry) => {
    const index = entryIndex++;
    if (failure !== null) {
      entry.resume();
      return;
    }
    try {
      if (state === 'manifest') {
        if (entry.path === MANIFEST_MEMBER) {
          collect(entry, (b) => {
            manifestBytes = b;
            manifest = decodeManifest(b);
            state = 'signature';
          });
          return;
        }
        judge(); // a plain archive: no manifest, no signature
      } else if (state === 'signature') {
        if (entry.path === SIGNATURE_MEMBER) {
          collect(entry, (b) => {
            sigRecord = decodeSignature(b);
            judge();
          });
          return;
        }
        judge();
      }
      payload(entry, index);
    } catch (e) {
      entry.resume();
      fail(e);
    }
  });

  let streamError: unknown = null;
  // zlib streams pass options on to Transform, but the typings do not say so.
  const gunzip = createGunzip({ chunkSize: CHUNK, ...({ highWaterMark: HWM } as object) });
  const outPool = new OutputPool(gunzip, CHUNK, OUT_BUFFERS);
  if (isRecycling(input)) {
    // Once gunzip has consumed a chunk of the file, its buffer can be read into again.
    const transform = gunzip._transform.bind(gunzip);
    gunzip._transform = (chunk: Buffer, enc, cb) => transform(chunk, enc, (e?: Error | null, data?: unknown) => {
      input.recycle(chunk);
      cb(e, data);
    });
  }
  // The parser copies nothing it keeps (aligned chunks leave no partial block behind), so
  // once write() returns with the entry flowing, nothing refers to the chunk any more.
  const parserWrite = parser.write.bind(parser) as (chunk: Buffer) => boolean;
  parser.write = ((chunk: Buffer): boolean => {
    const ok = parserWrite(chunk);
    if (ok) outPool.done(chunk);
    else outPool.retire(chunk);
    return ok;
  }) as typeof parser.write;
  let first = true;
  // GNU tar's reading of the framing, checked before node-tar's lenient one (tar-framing.ts).
  const framing = new TarFraming();
  /** Looks at the first bytes handed to the parser only. */
  const nested = (head: Buffer): RuError | null => {
    if (!first) return null;
    first = false;
    if (!NESTED_MAGIC.some((m) => head.subarray(0, m.length).equals(m))) return null;
    return new RuError('BUNDLE_CORRUPT', 'the archive inside the gzip stream is compressed once more; GNU tar would not unpack it, so neither does rear-update');
  };
  // Counting by listening, not by extra pipeline stages: each stage costs a copy of the data flow.
  input.on('data', (c: Buffer) => {
    // The header is kept for judge(); every byte after it is hashed for the container signature.
    let body = c;
    if (headerLen === null || gzipHead.length < headerLen) {
      gzipHead = Buffer.concat([gzipHead, c]);
      headerLen = gzipHeaderLength(gzipHead);
      body = headerLen === null || gzipHead.length < headerLen ? Buffer.alloc(0) : gzipHead.subarray(headerLen);
      if (headerLen !== null && gzipHead.length > headerLen) gzipHead = gzipHead.subarray(0, headerLen);
      const split = headerLen !== null && gzipHead.length >= headerLen ? splitOf(gzipHead) : null;
      if (split !== null) bodyHash.setSplit(split);
    }
    bodyHash.update(body);
    compressed += c.length;
    opts.onProgress?.(compressed);
  });
  gunzip.on('data', (c: Buffer) => {
    decompressed += c.length;
    try {
      limits.checkRatio(compressed, decompressed);
    } catch (e) {
      fail(e);
    }
  });
  // Hand each inflated chunk on in a later turn of the event loop: zlib then inflates the next
  // chunk on its thread while this one is parsed, hashed and written, instead of waiting.
  // Chunks go on in whole 512-byte blocks: node-tar copies a block's tail together with the
  // whole next chunk, which on unaligned chunks means copying nearly everything once more.
  let tail: Buffer | null = null;
  const decouple = new Transform({
    highWaterMark: HWM,
    transform(chunk: Buffer, _enc, cb) {
      let c = chunk;
      const out: Buffer[] = [];
      if (tail) {
        const need = BLOCK - tail.length;
        if (c.length < need) {
          tail = Buffer.concat([tail, c]);
          outPool.done(chunk);
          cb();
          return;
        }
        out.push(Buffer.concat([tail, c.subarray(0, need)]));
        outPool.done(chunk, need);
        c = c.subarray(need);
        tail = null;
      }
      const aligned = c.length - (c.length % BLOCK);
      if (aligned > 0) out.push(c.subarray(0, aligned));
      if (aligned < c.length) {
        tail = Buffer.from(c.subarray(aligned));
        outPool.done(chunk, c.length - aligned);
      }
      if (out.length > 0) {
        const e = nested(out[0] as Buffer);
        if (e) {
          cb(e);
          return;
        }
        try {
          for (const o of out) framing.update(o);
        } catch (err) {
          cb(err as Error);
          return;
        }
      }
      setImmediate(() => {
        for (const o of out) this.push(o);
        cb();
      });
    },
    flush(cb) {
      const e = tail ? nested(tail) : null;
      if (tail && !e) this.push(tail);
      cb(e);
    },
  });
  try {
    await pipeline(input, gunzip, decouple, parser);
  } catch (e) {
    streamError = e;
  }
  if (failure === null && streamError !== null) {
    failure = isRuError(streamError) ? streamError : new RuError('BUNDLE_CORRUPT', `not a readable tar.gz: ${(streamError as Error).message}`);
  }
  if (failure !== null) {
    // A stream error (corrupt gzip data) ends the pipeline without fail(): close what was staging.
    opts.stager?.abort?.();
    throw failure;
  }
  // zlib skips whatever follows the last gzip member if it starts with a zero byte (padding);
  // gzip reports anything but zeros there as trailing garbage, and `tar -xzf` fails. A bundle
  // ends with its last member, so any such bytes are refused (found by fuzzing).
  if (gunzip.bytesWritten < compressed) {
    throw new RuError('BUNDLE_CORRUPT', `${compressed - gunzip.bytesWritten} bytes follow the last gzip member`);
  }
  if (state !== 'payload') {
    // The archive ended inside the manifest or signature, or held nothing at all.
    if (decompressed === 0) throw new RuError('BUNDLE_CORRUPT', 'empty archive');
    judge();
  }
  // The compressed bytes themselves, signed by the manifest's signer (see core/container.ts).
  const sigNow = sigStatus as SignatureStatus;
  if (sigNow.status === 'valid') {
    const c = container as { signature: Buffer; split: number } | null;
    if (!c || !verifyContainer(bodyHash.digest(), c.signature, sigNow.key)) {
      if (opts.enforceTrust) {
        throw new RuError('BUNDLE_SIGNATURE_INVALID', `the compressed data does not match its signature by ${sigNow.key.fingerprint}: the file was altered`, { key: sigNow.key.fingerprint });
      }
      sigStatus = { status: 'invalid', fingerprint: sigNow.key.fingerprint };
    }
  }
  if (expected) {
    for (const p of (expected as Map<string, ManifestEntry>).keys()) {
      if (!seen.has(p)) throw new RuError('BUNDLE_MEMBER_MISSING', `${p} is listed in the manifest but missing from the archive`, { path: p });
    }
    for (const [p, left] of (shadowQueue as Map<string, ManifestEntry[]> | null) ?? []) {
      if (left.length > 0) throw new RuError('BUNDLE_MEMBER_MISSING', `${p} is listed as a shadowed member but missing from the archive`, { path: p });
    }
  }
  return {
    manifest, manifestBytes, signatureRecord: sigRecord, signature: sigStatus,
    entries: order.map((p) => seen.get(p) as StagedEntry), rootEntryIgnored,
    compressedBytes: compressed, decompressedBytes: decompressed,
  };
}
