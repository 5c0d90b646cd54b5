// The manifest is the bundle's signed statement of what it contains. Its byte encoding is
// fixed (key order, no whitespace, trailing newline) so that packing is deterministic and the
// signature covers exactly the bytes in the archive. See docs/bundle-format.md.

import { createHash } from 'node:crypto';
import { RuError } from './errors.ts';
import { isNonce } from './freshness.ts';
import { isReserved, normalizeMemberName, ROOT_PATH } from './paths.ts';

/** Format 1: a host's bundle. Format 2: the same plus layers (docs/bundle-format.md, docs/layers.md). */
export const FORMAT_VERSION = 1;
export const LAYERED_FORMAT_VERSION = 2;
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
  /** Format 2: the index in `layers` of the layer this entry comes from. */
  readonly layer?: number;
}

/**
 * One layer of a format-2 bundle: a hardware-class layer (drivers, firmware, udev rules, newer
 * ReaR scripts) or, last in a composed bundle, the host's own configuration. What apply does
 * after the commit is declared here, so it is covered by the signature (docs/layers.md).
 */
export interface LayerInfo {
  /** A class layer's name; the host's own layer is named after the host. */
  readonly name: string;
  /** The hardware class, '*' for every class, or null for the host's own layer. */
  readonly class: string | null;
  /** Lower first; a later layer wins a path conflict. The host's own layer is always last. */
  readonly priority: number;
  /** The layer's version on the server; null in a layer file from pack. */
  readonly version: number | null;
  /**
   * Composed bundles: when the layer was packed, which is the mtime of its members (each layer
   * keeps its own); absent: the manifest's `created`. Omitted from the encoding when absent.
   */
  readonly created?: string;
  /** The paths this layer owns (each also in the manifest's `owns`). */
  readonly owns: readonly string[];
  /** Modules to modprobe after the commit, in this order. */
  readonly modules: readonly string[];
  /** Regular files of this layer (executable) run before the commit: a failure vetoes it. */
  readonly pre: readonly string[];
  /** Regular files of this layer (executable) run after depmod, udev and modprobe. */
  readonly post: readonly string[];
  /** Kernel releases this layer is made for: one of them must be running. Empty: any. */
  readonly kernels: readonly string[];
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
  /** Format 2: the layers this bundle is made of, in order (a layer file from pack: one). */
  readonly layers?: readonly LayerInfo[];
  /** Paths this bundle owns: on apply, anything below them that the bundle lacks is removed. */
  readonly owns: readonly string[];
  readonly entries: readonly ManifestEntry[];
  /**
   * Format 2, composed bundles: archive members that a later layer replaces, in archive order
   * (each with its layer). They are verified like every member but never installed; plain
   * `tar -xzf` extracts them first and then overwrites them with the winner, to the same tree.
   */
  readonly shadowed?: readonly ManifestEntry[];
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
  if (e.layer !== undefined) o.layer = e.layer;
  return o;
}

function encodeLayer(l: LayerInfo): Record<string, unknown> {
  return { name: l.name, class: l.class, priority: l.priority, version: l.version, ...(l.created !== undefined ? { created: l.created } : {}), owns: l.owns, modules: l.modules, pre: l.pre, post: l.post, kernels: l.kernels };
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
    ...(m.layers !== undefined ? { layers: m.layers.map(encodeLayer) } : {}),
    owns: m.owns,
    entries: m.entries.map(encodeEntry),
    ...(m.shadowed !== undefined ? { shadowed: m.shadowed.map(encodeEntry) } : {}),
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

function decodeEntry(raw: unknown, i: number, layers: number): ManifestEntry {
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
  if (layers === 0 && r.layer !== undefined) fail(`entry ${path} names a layer, but the bundle has none`, { path });
  if (layers > 0) {
    if (!isInt(r.layer) || r.layer >= layers) fail(`entry ${path} has no valid layer index (0..${layers - 1})`, { path });
    e.layer = r.layer;
  }
  return e;
}

/** Layer and class names: what a host id may be (letters, digits, '.', '_', '-'), at most 64. */
export const LAYER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A class is a name, or '*' (every class). */
export const isLayerClass = (v: unknown): v is string => typeof v === 'string' && (v === '*' || LAYER_NAME.test(v));
/** A kernel release as `uname -r` prints it. */
export const KERNEL_RELEASE = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$/;
/** A module name as modprobe takes it. */
export const MODULE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
export const MAX_PRIORITY = 1_000_000;

const stringList = (v: unknown, what: string, ok: (s: string) => boolean): string[] => {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && ok(x))) fail(`${what} must be a list of valid names`);
  return v as string[];
};

function decodeLayer(raw: unknown, i: number): LayerInfo {
  if (typeof raw !== 'object' || raw === null) fail(`layers[${i}] is not an object`);
  const r = raw as Record<string, unknown>;
  if (typeof r.name !== 'string' || !LAYER_NAME.test(r.name)) fail(`layers[${i}].name must be a name (letters, digits, '.', '_', '-')`);
  if (r.class !== null && !isLayerClass(r.class)) fail(`layers[${i}].class must be a class name, '*' or null`);
  if (!isInt(r.priority, MAX_PRIORITY)) fail(`layers[${i}].priority must be an integer 0..${MAX_PRIORITY}`);
  if (r.version !== null && !isInt(r.version)) fail(`layers[${i}].version must be a non-negative integer or null`);
  if (r.created !== undefined && !isIsoSeconds(r.created)) fail(`layers[${i}].created must be an ISO 8601 UTC time with whole seconds (or absent)`);
  if (!Array.isArray(r.owns)) fail(`layers[${i}].owns must be an array`);
  const owns = r.owns.map((p, j) => canonicalPath(p, `layers[${i}].owns[${j}]`));
  const modules = stringList(r.modules, `layers[${i}].modules`, (x) => MODULE_NAME.test(x));
  const kernels = stringList(r.kernels, `layers[${i}].kernels`, (x) => KERNEL_RELEASE.test(x));
  if (!Array.isArray(r.pre) || !Array.isArray(r.post)) fail(`layers[${i}].pre and .post must be arrays`);
  const pre = r.pre.map((p, j) => canonicalPath(p, `layers[${i}].pre[${j}]`));
  const post = r.post.map((p, j) => canonicalPath(p, `layers[${i}].post[${j}]`));
  return { name: r.name, class: r.class as string | null, priority: r.priority, version: r.version as number | null, ...(r.created !== undefined ? { created: r.created as string } : {}), owns, modules, pre, post, kernels };
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
  if (r.format !== FORMAT_VERSION && r.format !== LAYERED_FORMAT_VERSION) {
    throw new RuError('BUNDLE_FORMAT_UNSUPPORTED', `bundle format ${String(r.format)} is not supported (this program reads formats ${FORMAT_VERSION} and ${LAYERED_FORMAT_VERSION})`, { format: String(r.format) });
  }
  const layered = r.format === LAYERED_FORMAT_VERSION;
  if (layered !== (r.layers !== undefined)) fail(layered ? 'a format 2 manifest must list its layers' : 'layers need format 2');
  if (!layered && r.shadowed !== undefined) fail('shadowed members need format 2');
  if (r.host !== null && (typeof r.host !== 'string' || r.host === '')) fail('host must be a non-empty string or null');
  if (r.class !== null && (typeof r.class !== 'string' || r.class === '')) fail('class must be a non-empty string or null');
  if (r.version !== null && !isInt(r.version)) fail('version must be a non-negative integer or null');
  if (!isIsoSeconds(r.created)) fail('created must be an ISO 8601 UTC time with whole seconds');
  if (r.served !== null && !isIsoSeconds(r.served)) fail('served must be an ISO 8601 UTC time with whole seconds, or null');
  if (r.nonce !== undefined && !isNonce(r.nonce)) fail('nonce must be 16 to 64 base64url characters (or absent)');
  if (!Array.isArray(r.owns)) fail('owns must be an array');
  const owns = r.owns.map((p, i) => canonicalPath(p, `owns[${i}]`));
  let layers: LayerInfo[] | undefined;
  if (layered) {
    if (!Array.isArray(r.layers) || r.layers.length === 0 || r.layers.length > 1000) fail('layers must be a list of 1 to 1000 layers');
    layers = r.layers.map(decodeLayer);
  }
  const nLayers = layers?.length ?? 0;
  if (!Array.isArray(r.entries)) fail('entries must be an array');
  const entries = r.entries.map((e, i) => decodeEntry(e, i, nLayers));
  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.path)) fail(`entry ${e.path} is listed twice`, { path: e.path });
    seen.add(e.path);
  }
  const byPath = new Map(entries.map((e) => [e.path, e]));
  let shadowed: ManifestEntry[] | undefined;
  if (r.shadowed !== undefined) {
    if (!Array.isArray(r.shadowed)) fail('shadowed must be an array');
    shadowed = r.shadowed.map((e, i) => decodeEntry(e, i, nLayers));
    // A shadowed member is replaced by a LATER layer's entry of the same path.
    for (const sh of shadowed) {
      const winner = byPath.get(sh.path);
      if (!winner || (winner.layer as number) <= (sh.layer as number)) fail(`shadowed ${sh.path} is not replaced by a later layer`, { path: sh.path });
      if ((winner.type === 'dir') !== (sh.type === 'dir')) fail(`shadowed ${sh.path} changes between a directory and a non-directory`, { path: sh.path });
      if (sh.type === 'hardlink') fail(`shadowed ${sh.path} is a hard link`, { path: sh.path });
    }
  }
  const dirs = new Set(entries.filter((e) => e.type === 'dir').map((e) => e.path));
  for (const o of owns) if (!dirs.has(o)) fail(`owned path ${o} is not a directory entry of the bundle`, { path: o });
  if (layers) {
    const ownsSet = new Set(owns);
    layers.forEach((l, i) => {
      for (const o of l.owns) if (!ownsSet.has(o)) fail(`layer ${l.name} owns ${o}, which the bundle does not own`, { path: o });
      for (const h of [...l.pre, ...l.post]) {
        const e = byPath.get(h);
        if (!e || e.type !== 'file' || e.layer !== i) fail(`hook ${h} of layer ${l.name} is not a regular file of that layer`, { path: h });
        if ((e.mode & 0o111) === 0) fail(`hook ${h} of layer ${l.name} is not executable`, { path: h });
      }
    });
    // A hard link's target must come from the same layer (a later layer could replace it).
    for (const e of entries) {
      if (e.type === 'hardlink' && byPath.get(e.target as string)?.layer !== e.layer) fail(`hard link ${e.path} points into another layer`, { path: e.path });
    }
  }
  const m: Manifest = {
    format: r.format, kind: r.kind, host: r.host as string | null, class: r.class as string | null,
    version: r.version as number | null, created: r.created as string, served: r.served as string | null,
    ...(r.nonce !== undefined ? { nonce: r.nonce as string } : {}),
    ...(layers ? { layers } : {}), owns, entries, ...(shadowed ? { shadowed } : {}),
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
  const layers = m.layers?.map((l) => ({ ...l, version: null }));
  const body = encodeManifest({ ...rest, ...(layers ? { layers } : {}), host: null, class: null, version: null, created: '1970-01-01T00:00:00Z', served: null });
  return createHash('sha256').update(body).digest('hex');
}
