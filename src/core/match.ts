// Match hints: which hosts a pending machine may be, best first, and why. The machine's facts
// (MACs, UUID, serial, hostname), the hardware its rescue system reported (disks, NICs) and
// the token it asked with are compared with each host's stored facts and the disks of its
// newest disklayout.conf (HostLayout). Pure and in memory, so ranking 10,000 hosts costs two
// store reads and no bundle. Hints are advice for the operator: resolution never uses them.

import type { CanonicalFacts } from './store/facts.ts';
import type { Hardware } from './store/hardware.ts';
import type { Host, HostLayout } from './store/metadata.ts';

export interface MatchMachine {
  readonly facts: CanonicalFacts | null;
  readonly hardware: Hardware | null;
  /** The class of the fetch-class token it asked with, if it was one. */
  readonly tokenClass?: string | null;
  /** The host of the fetch (or publish) token it asked with, if it was one. */
  readonly tokenHost?: string | null;
}

export interface MatchCandidate {
  readonly host: Pick<Host, 'id' | 'hostnames' | 'macs' | 'uuid' | 'serial' | 'class'>;
  readonly layout: Pick<HostLayout, 'disks'> | null;
}

export interface Match {
  readonly host: string;
  /** 0..100. */
  readonly score: number;
  readonly reasons: readonly string[];
}

/** What each observation adds; the sum is capped at 100. */
export const WEIGHTS = {
  mac: 60,
  uuid: 60,
  serial: 50,
  tokenHost: 40,
  disksSame: 30,
  diskSizeEach: 8,
  disksSomeMax: 24,
  disksFit: 10,
  tokenClass: 15,
  hostname: 10,
  nics: 10,
  oui: 10,
} as const;

/** A host the machine's token may not fetch cannot be its host in practice: it stays listed, scored at most this. */
const OUT_OF_SCOPE_MAX = 5;

export const DEFAULT_MATCH_LIMIT = 10;

const GB = 1e9;
const size = (b: number): string => (b >= 1e12 ? `${(b / 1e12).toFixed(b % 1e12 === 0 ? 0 : 1)} TB` : `${(b / GB).toFixed(b % GB === 0 || b >= 100 * GB ? 0 : 1)} GB`);
const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
const oui = (mac: string): string => mac.slice(0, 8);

/** How many of `want` find a distinct equal value in `have` (a multiset intersection). */
function sameSizes(have: readonly number[], want: readonly number[]): number {
  const left = new Map<number, number>();
  for (const s of have) left.set(s, (left.get(s) ?? 0) + 1);
  let n = 0;
  for (const s of want) {
    const k = left.get(s) ?? 0;
    if (k > 0) {
      left.set(s, k - 1);
      n++;
    }
  }
  return n;
}

/** Whether every host disk can be given a distinct machine disk at least as large (largest first). */
function fits(machine: readonly number[], host: readonly number[]): boolean {
  const m = [...machine].sort((a, b) => b - a);
  const h = [...host].sort((a, b) => b - a);
  return h.length <= m.length && h.every((s, i) => m[i]! >= s);
}

function disks(m: MatchMachine, c: MatchCandidate, reasons: string[]): number {
  const mine = (m.hardware?.disks ?? []).map((d) => d.size).filter((s) => s > 0);
  if (mine.length === 0) return 0;
  if (c.layout === null) {
    reasons.push('no disk layout known for the host (publish its var/lib/rear/layout)');
    return 0;
  }
  const theirs = c.layout.disks.map((d) => d.size);
  if (theirs.length === 0) {
    reasons.push('the host\'s disklayout.conf names no disks');
    return 0;
  }
  const same = sameSizes(mine, theirs);
  if (same === theirs.length && mine.length === theirs.length) {
    reasons.push(`${plural(same, 'disk')} of the same ${same === 1 ? 'size' : 'sizes'}`);
    return WEIGHTS.disksSame;
  }
  const count = mine.length === theirs.length ? `${plural(mine.length, 'disk')}, as the host` : `${plural(mine.length, 'disk')}, the host has ${theirs.length}`;
  if (same > 0) {
    reasons.push(`${same} of the host's ${plural(theirs.length, 'disk')} of the same size (${count})`);
    return Math.min(same * WEIGHTS.diskSizeEach, WEIGHTS.disksSomeMax);
  }
  if (fits(mine, theirs)) {
    reasons.push(`disks at least as large as the host's ${theirs.map(size).join(' + ')} (${count})`);
    return WEIGHTS.disksFit;
  }
  reasons.push(`disks smaller than the host's ${theirs.map(size).join(' + ')} (${count})`);
  return 0;
}

/** One host against the machine: its score and reasons, strongest first. */
export function matchHost(m: MatchMachine, c: MatchCandidate): Match {
  const reasons: string[] = [];
  let score = 0;
  const h = c.host;
  const f = m.facts;
  const macs = new Set([...(f?.macs ?? []), ...(m.hardware?.nics ?? []).map((n) => n.mac).filter((x): x is string => x !== null)]);
  const shared = h.macs.filter((x) => macs.has(x));
  if (shared.length > 0) {
    score += WEIGHTS.mac;
    reasons.push(`MAC ${shared.join(', ')} is the host's`);
  }
  if (f?.uuid && f.uuid === h.uuid) {
    score += WEIGHTS.uuid;
    reasons.push(`system UUID ${f.uuid} is the host's`);
  }
  if (f?.serial && f.serial === h.serial) {
    score += WEIGHTS.serial;
    reasons.push(`serial ${f.serial} is the host's`);
  }
  if (m.tokenHost && m.tokenHost === h.id) {
    score += WEIGHTS.tokenHost;
    reasons.push('it asked with a token for this host');
  }
  score += disks(m, c, reasons);
  const nics = (m.hardware?.nics ?? []).filter((n) => n.mac !== null).length;
  if (nics > 0 && h.macs.length > 0) {
    if (nics === h.macs.length) {
      score += WEIGHTS.nics;
      reasons.push(`${plural(nics, 'NIC')}, as the host has ${plural(h.macs.length, 'MAC')}`);
    } else {
      reasons.push(`${plural(nics, 'NIC')}, the host has ${plural(h.macs.length, 'MAC')}`);
    }
  }
  if (shared.length === 0) {
    const mine = new Set([...macs].map(oui));
    const prefixes = [...new Set(h.macs.map(oui))].filter((p) => mine.has(p)).sort();
    if (prefixes.length > 0) {
      score += WEIGHTS.oui;
      reasons.push(`MAC prefix ${prefixes.slice(0, 3).join(', ')} as the host's`);
    }
  }
  if (m.tokenClass && h.class === m.tokenClass) {
    score += WEIGHTS.tokenClass;
    reasons.push(`class ${h.class}, as the token it asked with`);
  }
  if (f?.hostname && h.hostnames.includes(f.hostname)) {
    score += WEIGHTS.hostname;
    // Weak on purpose: a rescue image carries the hostname of the machine it was made on.
    reasons.push(`hostname ${f.hostname} as the host's (a rescue image may carry its template's name)`);
  }
  score = Math.min(score, 100);
  const outOfScope = (m.tokenClass && h.class !== m.tokenClass) || (m.tokenHost && m.tokenHost !== h.id);
  if (outOfScope && score > 0) {
    score = Math.min(score, OUT_OF_SCOPE_MAX);
    reasons.unshift(`the token it asked with (${m.tokenClass ? `class ${m.tokenClass}` : `host ${m.tokenHost}`}) may not fetch this host`);
  }
  if (score > 0 && m.hardware && (m.hardware.memory !== null || m.hardware.cpus !== null)) reasons.push('memory/CPU unknown for hosts (not compared)');
  return { host: h.id, score, reasons };
}

/** The hosts with anything in common with the machine, best first, ties by host id; at most `limit`. */
export function rankHosts(m: MatchMachine, candidates: readonly MatchCandidate[], limit = DEFAULT_MATCH_LIMIT): Match[] {
  return candidates
    .map((c) => matchHost(m, c))
    .filter((x) => x.score > 0)
    .sort((a, b) => b.score - a.score || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0))
    .slice(0, limit);
}
