// The identity facts a machine reports (MACs, DMI UUID and serial, hostname) come in many
// spellings and firmware fills some with placeholders. Every store keeps and compares them in
// one canonical form, decided here once, so that the same machine finds the same host on any
// backend and two machines never "match" on a junk value such as "To be filled by O.E.M.".

import { RuError } from '../errors.ts';

/** Host ids, hardware class names and token ids: safe in URLs, file names and token scopes. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const isValidId = (s: string): boolean => ID_PATTERN.test(s);

export function checkId(s: string, what: string): string {
  if (typeof s !== 'string' || !isValidId(s)) {
    throw new RuError('STORE_INVALID', `${what} ${JSON.stringify(s)} is not a valid id (letters, digits, . _ -, at most 128)`, { what, value: String(s) });
  }
  return s;
}

/** aa:bb:cc:dd:ee:ff from colon, dash, Cisco-dot or bare hex; null when malformed. */
function macShape(s: string): string | null {
  const t = s.trim().toLowerCase();
  let hex: string;
  if (/^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$/.test(t)) hex = t.replace(/[:-]/g, '');
  else if (/^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/.test(t)) hex = t.replace(/\./g, '');
  else if (/^[0-9a-f]{12}$/.test(t)) hex = t;
  else return null;
  return hex.match(/../g)!.join(':');
}

const JUNK_MACS = new Set(['00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff']);

function uuidShape(s: string): string | null {
  const t = s.trim().toLowerCase();
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(t) ? t : null;
}

/** Firmware UUIDs that many boards share, so they identify nothing. */
const JUNK_UUIDS = new Set([
  // An AMI default, seen as written (mixed-endian) and as some kernels/tools print it.
  '03000200-0400-0500-0006-000700080009',
  '00020003-0004-0005-0006-000700080009',
  // Another board default reported on many machines at once.
  '12345678-1234-5678-90ab-cddeefaabbcc',
]);

/** Placeholders firmware ships in the DMI serial fields (compared upper-case). */
const JUNK_SERIALS = new Set([
  '', '0', '-', '.', 'NONE', 'N/A', 'NA', 'NULL', 'EMPTY', 'UNKNOWN', 'INVALID', 'DEFAULT', 'DEFAULT STRING',
  'NOT SPECIFIED', 'NOT APPLICABLE', 'NOT AVAILABLE', 'NOT DEFINED', 'UNDEFINED',
  'OEM', 'O.E.M.', 'TO BE FILLED BY O.E.M.', 'TO BE FILLED BY O.E.M',
  'SYSTEM SERIAL NUMBER', 'CHASSIS SERIAL NUMBER', 'BASE BOARD SERIAL NUMBER', 'SERIAL NUMBER', 'SERIALNUMBER', 'SERIAL',
  '0123456789', '1234567890', '123456789', '12345678', '1234567',
]);

/** One character repeated ("00000000", "FFFFFFFF", "XXXXXXXXXX", "........"). */
const oneCharRepeated = (t: string): boolean => /^(.)\1+$/su.test(t);

function serialShape(s: string): string | null {
  const t = s.trim().toUpperCase();
  // eslint-disable-next-line no-control-regex
  return t.length > 128 || /[\u0000-\u001f\u007f]/.test(t) ? null : t;
}

function hostnameShape(s: string): string | null {
  const t = s.trim().toLowerCase().replace(/\.$/, '');
  if (t === '(none)') return t; // what the kernel says before anyone set a name: a placeholder
  if (t.length === 0 || t.length > 253) return null;
  const label = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
  return t.split('.').every((l) => label.test(l)) ? t : null;
}

const JUNK_HOSTNAMES = new Set(['localhost', 'localhost.localdomain', '(none)', 'none']);

export type FactKind = 'mac' | 'uuid' | 'serial' | 'hostname';

/** Why a value is no fact: not of the kind's form at all, or a placeholder many machines share. */
export type FactProblem = 'malformed' | 'placeholder';

export type Classified =
  | { readonly value: string; readonly problem: null }
  | { readonly value: null; readonly problem: FactProblem };

const SHAPE: Readonly<Record<FactKind, (s: string) => string | null>> = {
  mac: macShape,
  uuid: uuidShape,
  serial: serialShape,
  hostname: hostnameShape,
};

const JUNK: Readonly<Record<FactKind, (canonical: string) => boolean>> = {
  mac: (v) => JUNK_MACS.has(v),
  uuid: (v) => JUNK_UUIDS.has(v) || oneCharRepeated(v.replace(/-/g, '')),
  serial: (v) => JUNK_SERIALS.has(v) || oneCharRepeated(v),
  hostname: (v) => JUNK_HOSTNAMES.has(v),
};

/** The canonical form of a value, or why it has none. */
export function classifyFact(kind: FactKind, s: string): Classified {
  const v = SHAPE[kind](s);
  if (v === null) return { value: null, problem: 'malformed' };
  return JUNK[kind](v) ? { value: null, problem: 'placeholder' } : { value: v, problem: null };
}

/** aa:bb:cc:dd:ee:ff from colon, dash, Cisco-dot or bare hex; null for malformed or all-zero/broadcast. */
export const normalizeMac = (s: string): string | null => classifyFact('mac', s).value;

/** Lower-case; null for malformed and placeholder UUIDs (all one digit, known board defaults). */
export const normalizeUuid = (s: string): string | null => classifyFact('uuid', s).value;

/** Serials compare case-insensitively (kept upper-case); placeholders and control characters give null. */
export const normalizeSerial = (s: string): string | null => classifyFact('serial', s).value;

/** Lower-case DNS name without a trailing dot; null for malformed names and localhost. */
export const normalizeHostname = (s: string): string | null => classifyFact('hostname', s).value;

/** The normalizer of each fact kind, for lookups and for the resolution order. */
export const NORMALIZE: Readonly<Record<FactKind, (s: string) => string | null>> = {
  mac: normalizeMac,
  uuid: normalizeUuid,
  serial: normalizeSerial,
  hostname: normalizeHostname,
};

/** Normalizes a value an admin or a publisher gives for a host; refuses instead of dropping it. */
export function strictFact(kind: FactKind, s: string): string {
  const v = typeof s === 'string' ? NORMALIZE[kind](s) : null;
  if (v === null) throw new RuError('STORE_INVALID', `${kind} ${JSON.stringify(s)} is malformed or a firmware placeholder`, { what: kind, value: String(s) });
  return v;
}

/** Sorted, de-duplicated, strictly normalized list (hosts keep lists in this form). */
export const strictFactList = (kind: FactKind, xs: readonly string[] = []): string[] =>
  [...new Set(xs.map((x) => strictFact(kind, x)))].sort();

/** What a booting machine says about itself; every field optional. */
export interface MachineFacts {
  readonly macs?: readonly string[];
  readonly uuid?: string | null;
  readonly serial?: string | null;
  readonly hostname?: string | null;
}

/** A machine's facts in canonical form: junk and malformed values silently dropped. */
export interface CanonicalFacts {
  readonly macs: readonly string[];
  readonly uuid: string | null;
  readonly serial: string | null;
  readonly hostname: string | null;
}

export function canonicalFacts(f: MachineFacts): CanonicalFacts {
  const one = (kind: FactKind, v: string | null | undefined): string | null => (typeof v === 'string' ? NORMALIZE[kind](v) : null);
  const macs = [...new Set((f.macs ?? []).map((m) => (typeof m === 'string' ? normalizeMac(m) : null)).filter((m): m is string => m !== null))].sort();
  return { macs, uuid: one('uuid', f.uuid), serial: one('serial', f.serial), hostname: one('hostname', f.hostname) };
}

/** Equal facts give equal keys: how a store recognizes a pending machine asking again. */
export const factsKey = (f: CanonicalFacts): string =>
  JSON.stringify([f.macs, f.uuid, f.serial, f.hostname]);
