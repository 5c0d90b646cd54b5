// Composition: what a host is served is ONE bundle made of its class's layers (and those of
// class '*'), in composition order, then the host's own configuration on top. The archive is
// the layers' members one layer after the other, so the server never recompresses a layer
// (each is stored once, as a gzip member without tar end blocks, however many hosts share it);
// the manifest says which layer every entry came from, and lists as `shadowed` each member a
// later layer replaces (GNU tar extracts both in order, so the later one wins there too).
// Pure: no I/O. See docs/layers.md.

import { RuError } from './errors.ts';
import { ancestors, comparePaths } from './paths.ts';
import { LAYERED_FORMAT_VERSION, MAX_PRIORITY, type LayerInfo, type Manifest, type ManifestEntry } from './manifest.ts';

/** One layer as stored: its layer file's manifest, and what the server knows of it. */
export interface StoredLayer {
  readonly class: string;
  readonly name: string;
  readonly priority: number;
  readonly version: number;
  /** The layer file's manifest (format 2, one layer). */
  readonly manifest: Manifest;
}

/** The host's own layer: its stored manifest (format 1) and version. */
export interface StoredHostLayer {
  readonly id: string;
  readonly class: string | null;
  readonly version: number;
  readonly manifest: Manifest;
}

const label = (l: { class: string | null; name: string }): string => (l.class === null ? `host ${l.name}` : `layer ${l.class}/${l.name}`);

/**
 * The host's own configuration (etc/rear, var/lib/rear) is never owned by a class layer:
 * owning a path means removing whatever below it the layer lacks, which would take every
 * host's configuration away. A layer may still add single files there.
 */
export const HOST_PATHS = ['etc/rear', 'var/lib/rear'] as const;

/** LAYER_PATH_RESERVED when a layer owns a host path or a directory above one. */
export function checkLayerOwns(layer: { class: string; name: string }, owns: readonly string[]): void {
  for (const o of owns) {
    for (const h of HOST_PATHS) {
      if (o === h || h.startsWith(`${o}/`) || o.startsWith(`${h}/`)) {
        throw new RuError('LAYER_PATH_RESERVED', `${label(layer)} would own ${o}, which holds each host's own configuration (${h}): pack the layer with narrower --path values`, { layer: `${layer.class}/${layer.name}`, path: o });
      }
    }
  }
}

/** The LayerInfo of a stored layer, as it appears in a composed manifest. */
function infoOf(l: StoredLayer): LayerInfo {
  const own = l.manifest.layers?.[0];
  if (!own || l.manifest.layers?.length !== 1) {
    throw new RuError('BUNDLE_MANIFEST_INVALID', `${label(l)} version ${l.version} is not a layer file (one layer)`, { layer: `${l.class}/${l.name}` });
  }
  return { ...own, name: l.name, class: l.class, priority: l.priority, version: l.version, created: l.manifest.created };
}

/**
 * The composition order of a class's layers: priority ascending, '*' before the class at
 * equal priority, then name. (The store returns them in this order; composing sorts again so
 * that the order is a property of this function, not of a query.)
 */
export function compositionOrder<T extends { class: string; name: string; priority: number }>(layers: readonly T[]): T[] {
  return [...layers].sort((a, b) => a.priority - b.priority || (a.class === '*' ? 0 : 1) - (b.class === '*' ? 0 : 1) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Checks that layers can be composed and returns the composed manifest: `layers` in
 * composition order, then the host's own layer. Without layers the host's manifest is
 * returned unchanged (format 1, as before layers existed). LAYER_CONFLICT when a path is a
 * directory in one layer and not in another, when a path lies below another layer's
 * non-directory, or when a hard link's target is replaced by a later layer.
 */
export function compose(layers: readonly StoredLayer[], host: StoredHostLayer): Manifest {
  const hm = host.manifest;
  if (hm.layers !== undefined) {
    throw new RuError('BUNDLE_MANIFEST_INVALID', `host ${host.id} version ${host.version} is a layer file, not a host's configuration`, { host: host.id });
  }
  if (layers.length === 0) return hm;
  const ordered = compositionOrder(layers);
  const infos: LayerInfo[] = [
    ...ordered.map(infoOf),
    { name: host.id, class: null, priority: MAX_PRIORITY, version: host.version, created: hm.created, owns: hm.owns, modules: [], pre: [], post: [], kernels: [] },
  ];
  const sources = [...ordered.map((l) => l.manifest), hm];
  const names = [...ordered.map(label), `host ${host.id}`];

  // Every member in archive order, with its layer; the last of each path wins.
  const winner = new Map<string, ManifestEntry>();
  const all: ManifestEntry[] = [];
  sources.forEach((m, i) => {
    for (const e of m.entries) {
      const tagged: ManifestEntry = { ...e, layer: i };
      const before = winner.get(e.path);
      if (before && (before.type === 'dir') !== (e.type === 'dir')) {
        throw new RuError('LAYER_CONFLICT', `${e.path} is a ${before.type} in ${names[before.layer as number]} but a ${e.type} in ${names[i]}: a directory cannot be replaced by a file or the other way round`, { path: e.path, layers: [names[before.layer as number] as string, names[i] as string] });
      }
      winner.set(e.path, tagged);
      all.push(tagged);
    }
  });
  const entries = [...winner.values()].sort((a, b) => comparePaths(a.path, b.path));
  const shadowed = all.filter((e) => winner.get(e.path) !== e);
  for (const e of all) {
    // tar would have to create a member below a path that is a file or link at that moment.
    for (const a of ancestors(e.path)) {
      const w = winner.get(a);
      if (w && w.type !== 'dir') {
        throw new RuError('LAYER_CONFLICT', `${e.path} (${names[e.layer as number]}) lies below ${a}, which is a ${w.type} in ${names[w.layer as number]}`, { path: e.path, layers: [names[e.layer as number] as string, names[w.layer as number] as string] });
      }
    }
    if (e.type === 'hardlink' && winner.get(e.target as string)?.layer !== e.layer) {
      throw new RuError('LAYER_CONFLICT', `hard link ${e.path} (${names[e.layer as number]}) points to ${e.target as string}, which a later layer replaces`, { path: e.path, layers: [names[e.layer as number] as string] });
    }
  }
  const owns = [...new Set(infos.flatMap((l) => l.owns))].sort(comparePaths);
  return {
    format: LAYERED_FORMAT_VERSION, kind: hm.kind, host: hm.host, class: hm.class, version: hm.version, created: hm.created, served: null,
    layers: infos, owns, entries, ...(shadowed.length > 0 ? { shadowed } : {}),
  };
}

/**
 * Conflicts that refuse a layer's publish: another layer of the same class with the same
 * priority carrying one of its paths differently (the composition order would then depend
 * on names alone: not something to leave to chance). Directories with the same mode and
 * owner are not a conflict. LAYER_CONFLICT names both layers and the first such path.
 */
export function checkSamePriority(layer: StoredLayer, others: readonly StoredLayer[]): void {
  const mine = new Map(layer.manifest.entries.map((e) => [e.path, e]));
  for (const o of others) {
    if (o.class !== layer.class || o.name === layer.name || o.priority !== layer.priority) continue;
    for (const e of o.manifest.entries) {
      const m = mine.get(e.path);
      if (!m) continue;
      const same = m.type === e.type && m.mode === e.mode && m.uid === e.uid && m.gid === e.gid && m.sha256 === e.sha256 && m.target === e.target;
      if (!same) {
        throw new RuError('LAYER_CONFLICT', `layers ${layer.class}/${layer.name} and ${o.class}/${o.name} both have priority ${layer.priority} and both carry ${e.path}: give one of them another priority (publish --priority N) so that the order is yours, not the names'`, { path: e.path, layers: [`${layer.class}/${layer.name}`, `${o.class}/${o.name}`] });
      }
    }
  }
}
