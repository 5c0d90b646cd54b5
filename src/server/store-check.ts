// The server's store checked as a whole (`rear-update serve --check`), and the clean-up every
// start does. Consistent means: the metadata store finds nothing wrong in itself (check(): SQLite
// integrity, versions 1..n per host and per layer, pins, id sequences), every version's blob (a
// host's or a layer's) is there with the version's size and the sha256 it is named by, and every recovery log's file holds at
// least the bytes its record counts (exactly those once complete). What a killed or cut-off
// upload leaves — partial blobs, spooled uploads, blobs no version names — is not an error but
// a leftover: reported, and removed by the next start (sweepLeftovers).

import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { DirBlobStore } from '../adapters/storage/dir-blobs.ts';
import { join } from 'node:path';
import { fromSystemError } from '../core/errors.ts';
import type { BlobStore } from '../core/store/blobs.ts';
import type { LogRecord, MetadataStore, StoreProblem } from '../core/store/metadata.ts';
import type { DataLayout } from './data-dir.ts';
import { DirLogStore } from '../adapters/storage/dir-logs.ts';
import type { LogBytesStore } from '../core/store/log-bytes.ts';

export interface Finding {
  /** StoreProblem kinds, `blob-missing`, `blob-size`, `blob-digest`, `log-missing`, `log-short`, `log-size`; leftovers: `partial-blob`, `spool`, `unreferenced-blob`, `stray-log`. */
  readonly kind: StoreProblem['kind'] | 'blob-missing' | 'blob-size' | 'blob-digest' | 'log-missing' | 'log-short' | 'log-size' | 'partial-blob' | 'spool' | 'unreferenced-blob' | 'stray-log';
  readonly message: string;
  readonly host?: string;
  /** A layer's finding: "CLASS/NAME". */
  readonly layer?: string;
  readonly version?: number;
  readonly bytes?: number;
  /** An unreferenced blob's name, and its age in milliseconds when the store can tell (null: it cannot). */
  readonly blob?: string;
  readonly age?: number | null;
}

export interface CheckReport {
  /** No errors (leftovers are allowed). */
  readonly ok: boolean;
  /** versions: the hosts' versions; layerVersions: the layers'. */
  readonly counts: {
    readonly hosts: number; readonly versions: number; readonly layers: number; readonly layerVersions: number;
    readonly blobs: number; readonly blobBytes: number; readonly logs: number;
  };
  readonly errors: Finding[];
  readonly leftovers: Finding[];
}

export interface StoreParts {
  readonly meta: MetadataStore;
  readonly blobs: BlobStore;
  /** Where the spool (tmp) and the recovery logs (logs/<id>.log) are. */
  readonly data: Pick<DataLayout, 'tmp' | 'logs'>;
  /** Where the logs' bytes are, when not in data.logs (--blobs postgres: pg-logs.ts). */
  readonly logs?: LogBytesStore;
}

const LOG_FILE = /^(\d+)\.log$/;

async function sizeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(e, `reading ${path}`);
  }
}

async function entries(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromSystemError(e, `listing ${dir}`);
  }
}

/** A version that names a blob: a host's ({host}) or a layer's ({layer: "CLASS/NAME"}). */
type BlobUser = ({ readonly host: string } | { readonly layer: string }) & { readonly version: number; readonly blob: string; readonly size: number };

/** What a message calls the owner of a version; the same field in the finding. */
const owner = (u: BlobUser): { label: string; ref: { host: string } | { layer: string } } =>
  ('layer' in u ? { label: `layer ${u.layer}`, ref: { layer: u.layer } } : { label: u.host, ref: { host: u.host } });

/** Every version (hosts' and layers') with the blob it names; every log. */
async function inventory(meta: MetadataStore): Promise<{ hosts: number; layers: number; versions: BlobUser[]; logs: LogRecord[] }> {
  const hosts = await meta.listHosts();
  const versions: BlobUser[] = [];
  const logs: LogRecord[] = [];
  for (const h of hosts) {
    for (const v of await meta.listVersions(h.id)) versions.push({ host: h.id, version: v.version, blob: v.blob, size: v.size });
    logs.push(...(await meta.listLogs(h.id)));
  }
  const layers = await meta.listLayers();
  for (const l of layers) {
    const layer = `${l.class}/${l.name}`;
    for (const v of await meta.listLayerVersions(l.class, l.name)) versions.push({ layer, version: v.version, blob: v.blob, size: v.size });
  }
  return { hosts: hosts.length, layers: layers.length, versions, logs };
}

/** sha256 and length of a blob's bytes, or null when it is absent. */
async function digestOf(blobs: BlobStore, sha: string): Promise<{ sha256: string; size: number } | null> {
  const got = await blobs.get(sha);
  if (!got) return null;
  const h = createHash('sha256');
  let size = 0;
  for await (const c of got.stream as AsyncIterable<Buffer>) {
    h.update(c);
    size += c.length;
  }
  return { sha256: h.digest('hex'), size };
}

/** Reads everything once; changes nothing. Safe beside a running server (what it has in flight shows as leftovers). */
export async function checkStore(s: StoreParts): Promise<CheckReport> {
  const errors: Finding[] = [...(await s.meta.check())];
  const leftovers: Finding[] = [];
  const inv = await inventory(s.meta);

  const byBlob = new Map<string, BlobUser[]>();
  for (const v of inv.versions) byBlob.set(v.blob, [...(byBlob.get(v.blob) ?? []), v]);
  let blobBytes = 0;
  for (const [sha, users] of byBlob) {
    const first = users[0]!;
    const { label, ref } = owner(first);
    const at = `${label} version ${first.version}${users.length > 1 ? ` (and ${users.length - 1} more)` : ''}`;
    const d = await digestOf(s.blobs, sha).catch((e: unknown) => {
      errors.push({ kind: 'blob-missing', ...ref, version: first.version, message: `${at}: blob ${sha} cannot be read: ${(e as Error).message}` });
      return undefined;
    });
    if (d === undefined) continue;
    if (d === null) {
      errors.push({ kind: 'blob-missing', ...ref, version: first.version, message: `${at}: blob ${sha} is missing` });
      continue;
    }
    blobBytes += d.size;
    if (d.sha256 !== sha) errors.push({ kind: 'blob-digest', ...ref, version: first.version, message: `${at}: blob ${sha} holds bytes that hash to ${d.sha256}` });
    for (const u of users) {
      const o = owner(u);
      if (u.size !== d.size) errors.push({ kind: 'blob-size', ...o.ref, version: u.version, message: `${o.label} version ${u.version}: ${u.size} bytes recorded, blob ${sha} has ${d.size}` });
    }
  }
  const now = Date.now();
  for await (const b of s.blobs.list()) {
    if (!byBlob.has(b.sha256)) {
      const age = await blobAge(s.blobs, b.sha256, now);
      leftovers.push({ kind: 'unreferenced-blob', blob: b.sha256, bytes: b.size, age, message: `blob ${b.sha256} (${b.size} bytes${age === null ? '' : `, ${Math.round(age / 1000)} s old`}) is named by no version: a publish in flight, or one interrupted after storing it` });
    }
  }
  for (const p of await s.blobs.partials()) {
    leftovers.push({ kind: 'partial-blob', bytes: p.size, message: `partial blob ${p.name} (${p.size} bytes, ${Math.round(p.age / 1000)} s old): an upload in progress, or one a crash cut off` });
  }
  for (const name of await entries(s.data.tmp)) {
    leftovers.push({ kind: 'spool', bytes: (await sizeOf(join(s.data.tmp, name))) ?? 0, message: `spooled upload tmp/${name}: a publish in progress, or one a crash cut off` });
  }

  const logStore = s.logs ?? new DirLogStore(s.data.logs);
  const inFiles = logStore instanceof DirLogStore;
  const held = inFiles ? 'the file has' : 'the store holds';
  const sizes = new Map<number, number>();
  for await (const x of logStore.list()) sizes.set(x.id, x.bytes);
  const known = new Set<number>();
  for (const l of inv.logs) {
    known.add(l.id);
    const size = sizes.get(l.id) ?? null;
    if (size === null) {
      if (l.bytes > 0) errors.push({ kind: 'log-missing', host: l.host, message: `log ${l.id} of ${l.host}: ${l.bytes} bytes recorded, ${inFiles ? 'no file' : 'none stored'}` });
    } else if (size < l.bytes) {
      errors.push({ kind: 'log-short', host: l.host, message: `log ${l.id} of ${l.host}: ${l.bytes} bytes recorded, ${held} ${size}` });
    } else if (l.complete && size !== l.bytes) {
      errors.push({ kind: 'log-size', host: l.host, message: `log ${l.id} of ${l.host} is complete with ${l.bytes} bytes, ${held} ${size}` });
    }
  }
  if (inFiles) {
    for (const name of await entries(s.data.logs)) {
      const m = LOG_FILE.exec(name);
      if (!m || !known.has(Number(m[1]))) leftovers.push({ kind: 'stray-log', message: `logs/${name} belongs to no recorded log` });
    }
  } else {
    for (const id of sizes.keys()) if (!known.has(id)) leftovers.push({ kind: 'stray-log', message: `the bytes of log ${id} (${logStore.where}) belong to no recorded log` });
  }

  return {
    ok: errors.length === 0,
    counts: {
      hosts: inv.hosts, versions: inv.versions.filter((v) => 'host' in v).length, layers: inv.layers, layerVersions: inv.versions.filter((v) => 'layer' in v).length,
      blobs: byBlob.size, blobBytes, logs: inv.logs.length,
    },
    errors,
    leftovers,
  };
}

/**
 * What every start removes before it serves: partial blobs and blobs that no version of a host
 * or a layer names (under the metadata store's write lock: releaseBlobs). The spool directory is
 * emptied by prepareDataDir. Stray log files are left for a person to look at.
 * With `olderThanMs` (a store shared by several instances: --db), only what is at least that old
 * goes: another instance's publish in flight has a partial upload, then a blob that no version
 * names yet, and must keep both. A blob whose age the store cannot tell then stays.
 */
export async function sweepLeftovers(s: Pick<StoreParts, 'meta' | 'blobs'>, olderThanMs = 0): Promise<{ partials: number; blobs: number }> {
  const partials = await s.blobs.sweepPartials(olderThanMs);
  const referenced = new Set((await inventory(s.meta)).versions.map((v) => v.blob));
  const unreferenced: string[] = [];
  const now = Date.now();
  for await (const b of s.blobs.list()) {
    if (referenced.has(b.sha256)) continue;
    if (olderThanMs > 0) {
      const age = await blobAge(s.blobs, b.sha256, now);
      if (age === null || age < olderThanMs) continue;
    }
    unreferenced.push(b.sha256);
  }
  const removed = unreferenced.length > 0 ? await s.meta.releaseBlobs(unreferenced, (b) => s.blobs.delete(b)) : [];
  return { partials, blobs: removed.length };
}

/**
 * How long ago a blob was stored, in milliseconds, when the store can tell: the directory
 * store's file time (a blob file is written once, then only renamed into place); a store with
 * an `ageOf(sha256)` of its own; else null.
 */
export async function blobAge(blobs: BlobStore, sha256: string, now = Date.now()): Promise<number | null> {
  const own = (blobs as Partial<{ ageOf: (sha: string) => Promise<number | null> }>).ageOf;
  if (typeof own === 'function') return own.call(blobs, sha256);
  if (!(blobs instanceof DirBlobStore)) return null;
  try {
    return Math.max(0, now - (await stat(blobs.pathOf(sha256))).mtimeMs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(e, `reading blob ${sha256}`);
  }
}

export interface GcReport {
  readonly graceMs: number;
  /** Removed: no version named them, and they were older than the grace period. */
  readonly removed: { readonly sha256: string; readonly bytes: number }[];
  /** Unreferenced but kept: younger than the grace period, or of an age the store cannot tell (age null). */
  readonly kept: { readonly sha256: string; readonly bytes: number; readonly age: number | null }[];
}

/**
 * `admin fsck --gc`: removes the blobs that no version of a host or a layer names and that are
 * older than `graceMs`. A publish stores its blob before the version that names it: the grace
 * period keeps such a blob of a publish in flight. The removal itself happens under the
 * metadata store's write lock (releaseBlobs), which looks at the references once more, so a
 * version stored meanwhile keeps its blob; and a publish whose blob was released before its
 * version named it stores the blob again (bundles.ts). A blob of unknown age is kept unless
 * the grace period is 0. Partial blobs and spooled uploads are left to the next start.
 */
export async function collectGarbage(s: Pick<StoreParts, 'meta' | 'blobs'>, graceMs: number, now = Date.now()): Promise<GcReport> {
  const referenced = new Set((await inventory(s.meta)).versions.map((v) => v.blob));
  const old = new Map<string, number>();
  const kept: { sha256: string; bytes: number; age: number | null }[] = [];
  for await (const b of s.blobs.list()) {
    if (referenced.has(b.sha256)) continue;
    const age = await blobAge(s.blobs, b.sha256, now);
    if (graceMs === 0 || (age !== null && age >= graceMs)) old.set(b.sha256, b.size);
    else kept.push({ sha256: b.sha256, bytes: b.size, age });
  }
  const removed = old.size > 0 ? await s.meta.releaseBlobs([...old.keys()], (b) => s.blobs.delete(b)) : [];
  // What releaseBlobs did not remove was named by a version meanwhile: no longer unreferenced.
  return { graceMs, removed: removed.map((sha256) => ({ sha256, bytes: old.get(sha256) ?? 0 })), kept };
}
