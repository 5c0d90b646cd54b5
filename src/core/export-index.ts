// The signed index of an offline export (docs/export.md): which host each exported bundle is,
// by which facts a machine finds itself in it, and the sha256 and size of each bundle file, all
// signed by the server's key. When the server is gone, a rescue system reads this file from a
// USB stick, a local disk or an NFS mount and needs nothing else. Pure: encoding, decoding,
// the signature (signature.ts, with a domain prefix of its own) and resolution by facts with
// the server's own rules (store/resolve.ts).

import { RuError } from './errors.ts';
import { checkSignature, decodeSignature, requireTrusted, signManifest, type PrivateKey, type PublicKey, type SignatureRecord } from './signature.ts';
import { isValidId, NORMALIZE, type FactKind, type MachineFacts } from './store/facts.ts';
import type { Host } from './store/metadata.ts';
import { resolveHost } from './store/resolve.ts';
import { SHA256_PATTERN } from './store/validate.ts';

export const EXPORT_INDEX_FILE = 'index.json';
export const EXPORT_FORMAT = 1;
export const EXPORT_KIND = 'rear-update-export';
/** Keeps an index signature from ever being taken for a manifest, container or statement signature. */
const DOMAIN = Buffer.from('rear-update export index v1\0');

export interface ExportEntry {
  readonly id: string;
  readonly class: string | null;
  /** Sorted, normalized as the server keeps them. */
  readonly macs: readonly string[];
  readonly uuid: string | null;
  readonly serial: string | null;
  readonly hostnames: readonly string[];
  readonly version: number;
  /** The bundle's file name in the export directory: `<id>.tar.gz`. */
  readonly file: string;
  readonly sha256: string;
  readonly size: number;
}

export interface ExportIndex {
  /** When the server sealed every bundle of this export: each bundle's manifest `served`. ISO 8601 UTC, whole seconds. */
  readonly exported: string;
  /** The fingerprint of the key that sealed the bundles and signs this index. */
  readonly key: string;
  readonly hosts: readonly ExportEntry[];
}

/** index.json: the index, its signature, and the server's key statements (which prove themselves). */
export interface ExportEnvelope {
  readonly index: ExportIndex;
  readonly signature: SignatureRecord;
  readonly statements: readonly unknown[];
}

const invalid = (message: string): RuError => new RuError('EXPORT_INDEX_INVALID', message);

export const bundleFileOf = (host: string): string => `${host}.tar.gz`;

/** Fields in a fixed order: the canonical form that is signed. */
function canonicalIndex(i: ExportIndex): ExportIndex {
  return {
    exported: i.exported,
    key: i.key,
    hosts: i.hosts.map((h) => ({
      id: h.id, class: h.class, macs: [...h.macs], uuid: h.uuid, serial: h.serial, hostnames: [...h.hostnames],
      version: h.version, file: h.file, sha256: h.sha256, size: h.size,
    })),
  };
}

/** The bytes the signature covers: the domain, then the index as compact JSON with fields in order. */
export const signedBytes = (i: ExportIndex): Buffer => Buffer.concat([DOMAIN, Buffer.from(JSON.stringify(canonicalIndex(i)))]);

export function signIndex(i: ExportIndex, key: PrivateKey): SignatureRecord {
  return decodeSignature(signManifest(signedBytes(i), key));
}

/** index.json as written: one JSON object, two-space indented, newline-terminated; one encoding only. */
export function encodeEnvelope(e: ExportEnvelope): string {
  return `${JSON.stringify({ format: EXPORT_FORMAT, kind: EXPORT_KIND, index: canonicalIndex(e.index), signature: e.signature, statements: e.statements }, null, 2)}\n`;
}

const ISO_SECONDS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw invalid(`${what} must be a string`);
  return v;
}

function nullableFact(kind: FactKind, v: unknown, what: string): string | null {
  if (v === null) return null;
  const s = str(v, what);
  if (NORMALIZE[kind](s) !== s) throw invalid(`${what} ${JSON.stringify(s)} is not a normalized ${kind}`);
  return s;
}

function factList(kind: FactKind, v: unknown, what: string): string[] {
  if (!Array.isArray(v)) throw invalid(`${what} must be a list`);
  return v.map((x, i) => nullableFact(kind, str(x, `${what}[${i}]`), `${what}[${i}]`) as string);
}

function entryOf(v: unknown, n: number): ExportEntry {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`hosts[${n}] must be an object`);
  const o = v as Record<string, unknown>;
  const id = str(o.id, `hosts[${n}].id`);
  if (!isValidId(id)) throw invalid(`hosts[${n}].id ${JSON.stringify(id)} is not a host id`);
  const cls = o.class === null ? null : str(o.class, `hosts[${n}].class`);
  const file = str(o.file, `hosts[${n}].file`);
  if (file !== bundleFileOf(id)) throw invalid(`hosts[${n}].file must be ${bundleFileOf(id)}`);
  const sha256 = str(o.sha256, `hosts[${n}].sha256`);
  if (!SHA256_PATTERN.test(sha256)) throw invalid(`hosts[${n}].sha256 is not a sha256`);
  if (!Number.isSafeInteger(o.version) || (o.version as number) < 1) throw invalid(`hosts[${n}].version must be a positive integer`);
  if (!Number.isSafeInteger(o.size) || (o.size as number) < 1) throw invalid(`hosts[${n}].size must be a positive integer`);
  return {
    id, class: cls, macs: factList('mac', o.macs, `hosts[${n}].macs`), uuid: nullableFact('uuid', o.uuid, `hosts[${n}].uuid`),
    serial: nullableFact('serial', o.serial, `hosts[${n}].serial`), hostnames: factList('hostname', o.hostnames, `hosts[${n}].hostnames`),
    version: o.version as number, file, sha256, size: o.size as number,
  };
}

/**
 * Reads index.json. Anything but the one encoding encodeEnvelope writes (extra fields, other
 * spacing, unknown format) is refused: nothing unsigned can ride along beside the index.
 */
export function decodeEnvelope(text: string): ExportEnvelope {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw invalid(`${EXPORT_INDEX_FILE} is not JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${EXPORT_INDEX_FILE} must hold a JSON object`);
  const o = v as Record<string, unknown>;
  if (o.format !== EXPORT_FORMAT || o.kind !== EXPORT_KIND) throw invalid(`${EXPORT_INDEX_FILE} is not a rear-update export index of format ${EXPORT_FORMAT}`);
  const i = o.index as Record<string, unknown> | null;
  if (typeof i !== 'object' || i === null || Array.isArray(i)) throw invalid('index must be an object');
  const exported = str(i.exported, 'index.exported');
  if (!ISO_SECONDS.test(exported) || Number.isNaN(Date.parse(exported))) throw invalid('index.exported must be an ISO 8601 UTC time in whole seconds');
  if (!Array.isArray(i.hosts)) throw invalid('index.hosts must be a list');
  const hosts = i.hosts.map(entryOf);
  const ids = new Set(hosts.map((h) => h.id));
  if (ids.size !== hosts.length) throw invalid('index.hosts names a host twice');
  let signature: SignatureRecord;
  try {
    signature = decodeSignature(Buffer.from(`${JSON.stringify(o.signature)}\n`));
  } catch (e) {
    throw invalid(`the index's signature record is malformed: ${(e as Error).message}`);
  }
  if (!Array.isArray(o.statements)) throw invalid('statements must be a list');
  const env: ExportEnvelope = { index: { exported, key: str(i.key, 'index.key'), hosts }, signature, statements: o.statements };
  if (encodeEnvelope(env) !== text) throw invalid(`${EXPORT_INDEX_FILE} is not in its one canonical encoding (edited by hand, or not written by rear-update admin export)`);
  return env;
}

/**
 * Checks the index's signature against the trusted keys. A signature that does not verify is
 * an edited index (EXPORT_INDEX_INVALID); a signer not trusted is BUNDLE_KEY_UNTRUSTED, as for a
 * bundle (the caller names a retired key KEY_RETIRED).
 */
export function verifyIndex(e: ExportEnvelope, trusted: readonly PublicKey[]): PublicKey {
  if (e.signature.key !== e.index.key) throw invalid(`the index names key ${e.index.key} but is signed by ${e.signature.key}`);
  const s = checkSignature(signedBytes(e.index), e.signature, trusted);
  if (s.status === 'invalid') throw invalid(`the signature by ${s.fingerprint} does not match the index: it was edited after the server signed it`);
  requireTrusted(s, false);
  if (s.status !== 'valid') throw invalid('the index is not signed by a trusted key');
  return s.key;
}

/** An index entry as the host record resolveHost works on. */
const hostOf = (h: ExportEntry, exported: string): Host => ({
  id: h.id, class: h.class, macs: h.macs, uuid: h.uuid, serial: h.serial, hostnames: h.hostnames, pinned: null, created: exported,
});

export type IndexResolution =
  | { readonly entry: ExportEntry; readonly by: FactKind | 'id'; readonly value: string }
  | { readonly entry: null; readonly ambiguous: readonly FactKind[] };

/** This machine's entry by the server's own rules (MAC, UUID, serial, hostname; a fact naming two hosts proves nothing). */
export async function resolveInIndex(i: ExportIndex, facts: MachineFacts & { id?: string | null }): Promise<IndexResolution> {
  const byId = new Map(i.hosts.map((h) => [h.id, h]));
  const store = {
    getHost: async (id: string): Promise<Host | null> => {
      const h = byId.get(id);
      return h ? hostOf(h, i.exported) : null;
    },
    findHosts: async (kind: FactKind, value: string): Promise<Host[]> => {
      const v = NORMALIZE[kind](value);
      if (v === null) return [];
      const match = (h: ExportEntry): boolean => (kind === 'mac' ? h.macs.includes(v) : kind === 'hostname' ? h.hostnames.includes(v) : h[kind] === v);
      return i.hosts.filter(match).map((h) => hostOf(h, i.exported));
    },
  };
  let r;
  try {
    r = await resolveHost(store, facts);
  } catch (e) {
    if (e instanceof RuError && e.code === 'HOST_UNKNOWN') throw new RuError('EXPORT_HOST_UNKNOWN', `host ${JSON.stringify(facts.id)} is not in this export`, { host: facts.id ?? null });
    throw e;
  }
  if (r.host === null) return { entry: null, ambiguous: r.ambiguous };
  return { entry: byId.get(r.host.id) as ExportEntry, by: r.by, value: r.value };
}
