// Where `apply --from DIR [HOST]` gets its bundle: an offline export (docs/export.md), for when
// the server is gone. The index's signature is checked against the keys apply trusts (the
// pinned keys moved by key statements: the keys directory's, --statement, and those written
// beside the index); this machine is found in the index by its facts with the server's rules
// (core/export-index.ts over core/store/resolve.ts; in a rescue system not the template's
// facts), or named; its bundle file must have the sha256 and size the index signs. An export
// older than REAR_UPDATE_EXPORT_MAX_AGE is used only when someone says so. What comes back is
// a file for the one verified, transactional apply path.

import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { DURATION_EXAMPLES, parseDuration } from '../core/duration.ts';
import { RuError } from '../core/errors.ts';
import { decodeEnvelope, EXPORT_INDEX_FILE, resolveInIndex, verifyIndex, type ExportEntry, type ExportIndex } from '../core/export-index.ts';
import { parseStatement, trustedKeys, type Sourced, type Trust } from '../core/key-statements.ts';
import type { Manifest } from '../core/manifest.ts';
import { isValidId } from '../core/store/facts.ts';
import { leftOutLines } from '../core/store/rescue-facts.ts';
import { reportMachineFacts } from '../adapters/fs/machine-facts.ts';
import { explainRefusal, trustFrom, type TrustFlags } from './key-trust.ts';
import { note } from './output.ts';
import { effectiveEnv, factSettings } from './settings.ts';
import type { SourceChoice } from './server-source.ts';

export const DEFAULT_EXPORT_MAX_AGE = '7d';

export interface ExportFlags extends TrustFlags {
  sysRoot: string;
  hostname?: string;
  acceptOldExport?: boolean;
  verbose?: boolean;
}

export interface ExportSource {
  readonly choice: SourceChoice;
  readonly trust: Trust;
  readonly index: ExportIndex;
  readonly entry: ExportEntry;
  readonly dir: string;
  /** The bundle read is the one the index names: its version and its export time (before any payload byte). */
  readonly check: (m: Manifest | null) => void;
}

function readIndexText(dir: string): string {
  const path = join(dir, EXPORT_INDEX_FILE);
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RuError('EXPORT_INDEX_INVALID', `${path} does not exist: ${dir} is not an offline export, or one cut off before its index was written`, { path });
    throw new RuError('EXPORT_INDEX_INVALID', `${path} cannot be read: ${(e as Error).message}`, { path });
  }
}

/** The statements written beside the index; each proves itself (a malformed one is said and left out). */
function statementsOf(list: readonly unknown[], path: string): Sourced[] {
  const out: Sourced[] = [];
  list.slice(0, 64).forEach((v, i) => {
    const source = `${path} #${i + 1}`;
    try {
      out.push({ statement: parseStatement(v, source), source });
    } catch (e) {
      note(`ignoring a malformed key statement of the export: ${(e as Error).message}`);
    }
  });
  return out;
}

/** REAR_UPDATE_EXPORT_MAX_AGE in seconds (default 7d). */
export function exportMaxAge(env: NodeJS.ProcessEnv = effectiveEnv()): number {
  const v = env.REAR_UPDATE_EXPORT_MAX_AGE ?? DEFAULT_EXPORT_MAX_AGE;
  const s = parseDuration(v);
  if (s === null) throw new RuError('CONFIG_INVALID', `REAR_UPDATE_EXPORT_MAX_AGE=${v} is not a duration (e.g. ${DURATION_EXAMPLES})`, { setting: 'REAR_UPDATE_EXPORT_MAX_AGE' });
  return s;
}

const daysHours = (s: number): string => (s >= 86_400 ? `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`);

/** An old export is used when --accept-old-export says so, or someone at a terminal does; else refused. */
async function ageCheck(index: ExportIndex, o: ExportFlags): Promise<void> {
  const max = exportMaxAge();
  const age = Math.floor((Date.now() - Date.parse(index.exported)) / 1000);
  if (age <= max) return;
  const what = `this export was made ${daysHours(age)} ago (${index.exported}, by this machine's clock), more than REAR_UPDATE_EXPORT_MAX_AGE (${daysHours(max)}): hosts may have changed since`;
  if (o.acceptOldExport) {
    note(`${what}; used anyway (--accept-old-export)`);
    return;
  }
  if (process.stdin.isTTY && process.stderr.isTTY) {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      const a = await rl.question(`rear-update: ${what}. Apply it anyway? [y/N] `);
      if (/^y(es)?$/i.test(a.trim())) return;
    } finally {
      rl.close();
    }
  }
  throw new RuError('EXPORT_TOO_OLD', `${what}; not confirmed (answer y on a terminal, or pass --accept-old-export)`, { exported: index.exported, maxAge: max });
}

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return h.digest('hex');
}

/** The entry of this machine: named (HOST), or found by its facts; never guessed. */
async function entryFor(index: ExportIndex, host: string | undefined, o: ExportFlags): Promise<ExportEntry> {
  if (host !== undefined) {
    if (!isValidId(host)) throw new RuError('USAGE', `${host} is not a host id`);
    const r = await resolveInIndex(index, { id: host });
    return r.entry as ExportEntry;
  }
  const report = reportMachineFacts(o.sysRoot, factSettings({ ...(o.hostname !== undefined ? { hostname: o.hostname } : {}) }));
  for (const l of leftOutLines(report)) note(l);
  const f = report.facts;
  const r = await resolveInIndex(index, f);
  const facts = `macs ${f.macs.join(' ') || '-'}, uuid ${f.uuid ?? '-'}, serial ${f.serial ?? '-'}, hostname ${f.hostname ?? '-'}`;
  if (r.entry === null) {
    const amb = r.ambiguous.length ? `; ${r.ambiguous.join(', ')} named more than one host, which proves nothing` : '';
    throw new RuError('EXPORT_HOST_UNKNOWN', `this machine's facts (${facts}) name no single host of the export${amb}: give the host id (rear-update apply --from DIR HOST)`, { ambiguous: [...r.ambiguous] });
  }
  note(`this machine is host ${r.entry.id} in the export (by ${r.by} ${r.value})`);
  if (r.by === 'hostname') {
    note(`  WARNING: a hostname-only match is weak: no MAC, UUID or serial of this machine identified a host. Check that this machine really is ${r.entry.id}`);
  }
  return r.entry;
}

export async function exportSourceFor(dir: string, host: string | undefined, o: ExportFlags): Promise<ExportSource> {
  const path = join(dir, EXPORT_INDEX_FILE);
  const env = decodeEnvelope(readIndexText(dir));
  const trust = trustFrom(o, statementsOf(env.statements, path), o.verbose === true);
  try {
    verifyIndex(env, trustedKeys(trust));
  } catch (e) {
    throw e instanceof RuError ? explainRefusal(trust, e) : e;
  }
  const index = env.index;
  await ageCheck(index, o);
  const entry = await entryFor(index, host, o);
  const file = join(dir, entry.file);
  const st = statSync(file, { throwIfNoEntry: false });
  if (!st?.isFile()) throw new RuError('EXPORT_TAMPERED', `${file} is missing: the index names it for host ${entry.id}`, { host: entry.id, path: file });
  if (st.size !== entry.size) throw new RuError('EXPORT_TAMPERED', `${file} has ${st.size} bytes; the signed index says ${entry.size}: it is not host ${entry.id}'s exported bundle (swapped, altered or truncated)`, { host: entry.id, path: file });
  const sha = await sha256Of(file);
  if (sha !== entry.sha256) throw new RuError('EXPORT_TAMPERED', `${file} has sha256 ${sha}; the signed index says ${entry.sha256}: it is not host ${entry.id}'s exported bundle (swapped or altered)`, { host: entry.id, path: file });
  return {
    choice: { url: file, host: entry.id, open: { label: `export of ${index.exported}: ${file}` } },
    trust, index, entry, dir,
    // The file is read again to be applied: what is read must still be what the index names.
    check: (m) => {
      if (m?.version !== entry.version || m.served !== index.exported) {
        throw new RuError('EXPORT_TAMPERED', `${file} changed after it was checked: its manifest says version ${m?.version ?? '-'} served ${m?.served ?? '-'}, the index version ${entry.version} exported ${index.exported}`, { host: entry.id, path: file });
      }
    },
  };
}
