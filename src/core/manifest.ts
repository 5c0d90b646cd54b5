// The manifest is the bundle's signed statement of what it contains. Its byte encoding is
// fixed (key order, no whitespace, trailing newline) so that packing is deterministic and the
// signature covers exactly the bytes in the archive. See docs/bundle-format.md.

import { createHash } from 'node:crypto';
import { RuError } from './errors.ts';
import { isNonce } from './freshness.ts';
import { isReserved, normalizeMemberName, ROOT_PATH } from './paths.ts';

export const FORMAT_VERSION = 1;
export const MANIFEST_KIND = 'rear-update-bundle';

export type EntryType = 'dir' | 'file' | 'symlink' | 'hardlink';

export interface ManifestEntry {
  readonly path: string;
  readonly type: EntryType;
  /** Permission bits, 0..0o7777. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Regular files only. */
  readonly size?: number;
  readonly sha256?: string;
  /** Symlinks: the target exactly as written. Hardlinks: the bundle path they link to. */
  readonly target?: string;
}

export interface Manifest {
  readonly format: number;
  readonly kind: string;
  readonly host: string | null;
  readonly class: string | null;
  readonly version: number | null;
  /** ISO 8601, UTC, whole seconds; also the mtime of every member. */
  readonly created: string;
  /** When a server sealed this copy for serving (ISO 8601, UTC, whole seconds); null from pack. */
  readonly served: string | null;
  /**
   * The nonce the request for this copy sent (core/freshness.ts); absent when none was sent
   * and in a bundle made by pack. Omitted from the encoding when absent.
   */
  readonly nonce?: string;
  /** Paths this bundle owns: on apply, anything below them that the bundle lacks is removed. */
  readonly owns: readonly string[];
  readonly entries: readonly ManifestEntry[];
}

export const manifestBytes = (m: Manifest): number =>
  m.entries.reduce((n, e) => n + (e.type === 'file' ? (e.size ?? 0) : 0), 0);

export const formatMode = (mode: number): string => mode.toString(8).padStart(4, '0');

function encodeEntry(e: ManifestEntry): Record<string, unknown> {
  const o: Record<string, unknown> = { path: e.path, type: e.type, mode: formatMode(e.mode), uid: e.uid, gid: e.gid };
  if (e.type === 'file') {
    o.size = e.size;
    o.sha256 = e.sha256;
  }
  if (e.type === 'symlink' || e.type === 'hardlink') o.target = e.target;
  return o;
}

/** The canonical encoding: what is signed and what is stored in the archive. */
export function encodeManifest(m: Manifest): Buffer {
  const o = {
    format: m.format,
    kind: m.kind,
    host: m.host,
    class: m.class,
    version: m.version,
    created: m.created,
    served: m.served,
    ...(m.nonce !== undefined ? { nonce: m.nonce } : {}),
    owns: m.owns,
    entries: m.entries.map(encodeEntry),
  };
  return Buffer.from(`${JSON.stringify(o)}\n`);
}

const NAME_LIMITS = { maxNameBytes: 4096, maxComponentBytes: 255, maxDepth: 256 };

function fail(message: string, context: Record<string, string | number> = {}): never {
  throw new RuError('BUNDLE_MANIFEST_INVALID', `manifest: ${message}`, context);
}

const isInt = (v: unknown, max = Number.MAX_SAFE_INTEGER): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

function canonicalPath(v: unknown, what: string): string {
  if (typeof v !== 'string') fail(`${what} is not a string`);
  let p: string;
  try {
    p = normalizeMemberName(v, NAME_LIMITS);
  } catch {
    fail(`${what} is not a canonical relative path: ${JSON.stringify(v)}`);
  }
  if (p !== v || p === ROOT_PATH) fail(`${what} is not a canonical relative path: ${JSON.stringify(v)}`);
  return p;
}

function decodeEntry(raw: unknown, i: number): ManifestEntry {
  if (typeof raw !== 'object' || raw === null) fail(`entry ${i} is not an object`);
  const r = raw as Record<string, unknown>;
  const path = canonicalPath(r.path, `entries[${i}].path`);
  if (isReserved(path)) fail(`entry ${path} lies in rear-update's state directory`, { path });
  const type = r.type;
  if (type !== 'dir' && type !== 'file' && type !== 'symlink' && type !== 'hardlink') fail(`entry ${path} has unknown type ${String(type)}`, { path });
  if (typeof r.mode !== 'string' || !/^[0-7]{4}$/.test(r.mode)) fail(`entry ${path} has a malformed mode`, { path });
  const mode = parseInt(r.mode, 8);
  if (!isInt(r.uid, 0xffffffff) || !isInt(r.gid, 0xffffffff)) fail(`entry ${path} has a malformed uid/gid`, { path });
  const e: { -readonly [K in keyof ManifestEntry]: ManifestEntry[K] } = { path, type, mode, uid: r.uid, gid: r.gid };
  if (type === 'file') {
    if (!isInt(r.size)) fail(`entry ${path} has a malformed size`, { path });
    if (typeof r.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(r.sha256)) fail(`entry ${path} has a malformed sha256`, { path });
    e.size = r.size;
    e.sha256 = r.sha256;
  }
  if (type === 'symlink') {
    if (typeof r.target !== 'string' || r.target === '' || r.target.includes('\0')) fail(`entry ${path} has a malformed link target`, { path });
    e.target = r.target;
  }
  if (type === 'hardlink') e.target = canonicalPath(r.target, `entries[${i}].target`);
  return e;
}

const isIsoSeconds = (v: unknown): v is string =>
  typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(v) && !Number.isNaN(Date.parse(v));

/** Parses and validates manifest bytes; every structural problem is BUNDLE_MANIFEST_INVALID. */
export function decodeManifest(bytes: Buffer): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    fail(`not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null) fail('not an object');
  const r = raw as Record<string, unknown>;
  if (r.kind !== MANIFEST_KIND) fail(`kind is ${JSON.stringify(r.kind)}, expected ${MANIFEST_KIND}`);
  if (r.format !== FORMAT_VERSION) {
    throw new RuError('BUNDLE_FORMAT_UNSUPPORTED', `bundle format ${String(r.format)} is not supported (this program reads format ${FORMAT_VERSION})`, { format: String(r.format) });
  }
  if (r.host !== null && (typeof r.host !== 'string' || r.host === '')) fail('host must be a non-empty string or null');
  if (r.class !== null && (typeof r.class !== 'string' || r.class === '')) fail('class must be a non-empty string or null');
  if (r.version !== null && !isInt(r.version)) fail('version must be a non-negative integer or null');
  if (!isIsoSeconds(r.created)) fail('created must be an ISO 8601 UTC time with whole seconds');
  if (r.served !== null && !isIsoSeconds(r.served)) fail('served must be an ISO 8601 UTC time with whole seconds, or null');
  if (r.nonce !== undefined && !isNonce(r.nonce)) fail('nonce must be 16 to 64 base64url characters (or absent)');
  if (!Array.isArray(r.owns)) fail('owns must be an array');
  const owns = r.owns.map((p, i) => canonicalPath(p, `owns[${i}]`));
  if (!Array.isArray(r.entries)) fail('entries must be an array');
  const entries = r.entries.map(decodeEntry);
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.path)) fail(`entry ${e.path} is listed twice`, { path: e.path });
    seen.add(e.path);
  }
  const dirs = new Set(entries.filter((e) => e.type === 'dir').map((e) => e.path));
  for (const o of owns) if (!dirs.has(o)) fail(`owned path ${o} is not a directory entry of the bundle`, { path: o });
  const m: Manifest = {
    format: r.format, kind: r.kind, host: r.host as string | null, class: r.class as string | null,
    version: r.version as number | null, created: r.created as string, served: r.served as string | null,
    ...(r.nonce !== undefined ? { nonce: r.nonce as string } : {}), owns, entries,
  };
  // Refuse any encoding but the canonical one: what is signed must be what we reason about.
  if (!encodeManifest(m).equals(bytes)) fail('not in canonical encoding (re-create it with rear-update pack)');
  return m;
}

export const createdEpoch = (m: Pick<Manifest, 'created'>): number => Date.parse(m.created) / 1000;

export const isoSeconds = (epochSeconds: number): string =>
  new Date(Math.floor(epochSeconds) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * What decides whether a publish changed anything: the entries and owned paths, not the
 * creation time, who the bundle names or a nonce (those change on every pack or fetch). sha256 hex.
 */
export function contentDigest(m: Manifest): string {
  const { nonce: _nonce, ...rest } = m;
  const body = encodeManifest({ ...rest, host: null, class: null, version: null, created: '1970-01-01T00:00:00Z', served: null });
  return createHash('sha256').update(body).digest('hex');
}
