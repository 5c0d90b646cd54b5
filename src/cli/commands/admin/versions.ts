// `rear-update admin versions|show|diff|pin|unpin`: a host's published versions, what one
// contains, what changed between two, and which one is served.

import type { Command } from 'commander';
import { RuError } from '../../../core/errors.ts';
import type { EntryChange, EntrySummary, FieldChange } from '../../../core/diff.ts';
import type { Host, VersionSummary } from '../../../core/store/metadata.ts';
import { formatBytes, out, printJson, table } from '../../output.ts';
import { positiveInt } from '../../options.ts';
import { api, dash, leaf, printTable, seg, SERVER_HELP, time, type AdminFlags } from './common.ts';

interface RawEntry {
  path: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  target?: string;
}

interface VersionWithManifest extends VersionSummary {
  manifest: { host: string | null; class: string | null; created: string; owns: string[]; entries: RawEntry[] };
}

interface DiffAnswer {
  host: string;
  from: number;
  to: number;
  added: EntrySummary[];
  removed: EntrySummary[];
  changed: EntryChange[];
  unchanged: number;
  owns: { added: string[]; removed: string[] };
  texts: { path: string; patch: string }[];
  skipped: { path: string; reason: string }[];
}

/** A version argument: a number, or latest / served. */
function versionArg(v: string): string {
  if (v === 'latest' || v === 'served') return v;
  return String(positiveInt(v));
}

const short = (v: string | number | null): string => (v === null ? '-' : typeof v === 'string' && /^[0-9a-f]{64}$/.test(v) ? `${v.slice(0, 12)}…` : String(v));
const describeChange = (c: FieldChange): string => `${c.field} ${short(c.from)} → ${short(c.to)}`;
const describeEntry = (e: EntrySummary): string => `${e.type} ${e.mode} ${e.owner}${e.size !== null ? ` ${formatBytes(e.size)}` : ''}${e.target !== null ? ` → ${e.target}` : ''}`;

export function registerVersions(admin: Command): void {
  leaf(admin, 'versions <host>', 'list a host\'s published versions, marking the one served')
    .addHelpText('after', `${SERVER_HELP}

Example:
  rear-update admin versions e229`)
    .action(async (host: string, o: AdminFlags) => {
      const r = await api(o).request<{ host: string; pinned: number | null; served: number | null; versions: VersionSummary[] }>('GET', `/api/v1/hosts/${seg(host)}/versions`);
      if (o.json) return printJson(r.body);
      const b = r.body;
      printTable(['VERSION', 'PUBLISHED', 'SIZE', 'PUBLISHER', 'DIGEST', ''],
        b.versions.map((v) => [String(v.version), time(v.created), formatBytes(v.size), dash(v.publisher), `${v.digest.slice(0, 12)}…`, v.version === b.served ? (b.pinned !== null ? 'served (pinned)' : 'served') : '']),
        `host ${b.host} has no published version yet (rear-update publish on the host)`);
    });

  leaf(admin, 'show <host> [version]', 'show one version\'s manifest: summary and entries (default: the version served)')
    .addHelpText('after', `
VERSION is a number, latest, or served (the default: the pinned version, else the latest).
${SERVER_HELP}

Examples:
  rear-update admin show e229
  rear-update admin show e229 3 --json`)
    .action(async (host: string, version: string | undefined, o: AdminFlags) => {
      let v: string;
      try {
        v = versionArg(version ?? 'served');
      } catch {
        throw new RuError('USAGE', `version ${JSON.stringify(version)}: expected a positive number, latest or served`);
      }
      const r = await api(o).request<{ version: VersionWithManifest }>('GET', `/api/v1/hosts/${seg(host)}/versions/${v}`);
      if (o.json) return printJson(r.body);
      const rec = r.body.version;
      const m = rec.manifest;
      const count = (t: string): number => m.entries.filter((e) => e.type === t).length;
      const bytes = m.entries.reduce((n, e) => n + (e.type === 'file' ? (e.size ?? 0) : 0), 0);
      for (const l of table([
        ['host:', rec.host],
        ['version:', String(rec.version)],
        ['created:', `${time(m.created)} (packed)`],
        ['published:', `${time(rec.created)} by ${dash(rec.publisher)}`],
        ['class:', dash(m.class)],
        ['bundle:', `${formatBytes(rec.size)} stored, blob ${rec.blob.slice(0, 12)}…`],
        ['entries:', `${m.entries.length}: ${count('file')} files (${formatBytes(bytes)}), ${count('dir')} directories, ${count('symlink')} symlinks, ${count('hardlink')} hard links`],
        ['owns:', dash(m.owns)],
      ])) out(l);
      out();
      printTable(['TYPE', 'MODE', 'OWNER', 'SIZE', 'PATH'],
        m.entries.map((e) => [e.type, e.mode, `${e.uid}:${e.gid}`, e.type === 'file' ? String(e.size ?? 0) : '-', e.target !== undefined ? `${e.path} -> ${e.target}` : e.path]), '(no entries)');
    });

  leaf(admin, 'diff <host> <from> <to>', 'what changed between two versions: paths added, removed, changed, then text diffs')
    .addHelpText('after', `
FROM and TO are version numbers, latest or served. Changed regular files that are text
(UTF-8, no NUL) and at most 256 KiB get a unified diff; others are named with the reason.
${SERVER_HELP}

Examples:
  rear-update admin diff e229 3 4
  rear-update admin diff e229 served latest`)
    .action(async (host: string, from: string, to: string, o: AdminFlags) => {
      let a: string;
      let b: string;
      try {
        a = versionArg(from);
        b = versionArg(to);
      } catch {
        throw new RuError('USAGE', 'versions are positive numbers, latest or served');
      }
      const r = await api(o).request<DiffAnswer>('GET', `/api/v1/hosts/${seg(host)}/diff`, { query: { from: a, to: b } });
      if (o.json) return printJson(r.body);
      const d = r.body;
      out(`host ${d.host}: version ${d.from} → ${d.to}: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed, ${d.unchanged} unchanged`);
      const rows = [
        ...d.added.map((e) => ['  added', e.path, describeEntry(e)]),
        ...d.removed.map((e) => ['  removed', e.path, describeEntry(e)]),
        ...d.changed.map((c) => ['  changed', c.path, c.changes.map(describeChange).join('; ')]),
      ];
      for (const l of table(rows)) out(l);
      for (const p of d.owns.added) out(`  owns     + ${p}`);
      for (const p of d.owns.removed) out(`  owns     - ${p}`);
      for (const t of d.texts) {
        out();
        process.stdout.write(t.patch.endsWith('\n') ? t.patch : `${t.patch}\n`);
      }
      if (d.skipped.length) out();
      for (const s of d.skipped) out(`no text diff for ${s.path}: ${s.reason}`);
    });

  leaf(admin, 'pin <host> <version>', 'serve this version instead of the latest, until unpin')
    .addHelpText('after', `
Later publishes are still stored, but not served while the pin holds.
${SERVER_HELP}

Example:
  rear-update admin pin e229 3`)
    .action(async (host: string, version: string, o: AdminFlags) => {
      let n: number;
      try {
        n = positiveInt(version);
      } catch {
        throw new RuError('USAGE', `version ${JSON.stringify(version)}: expected a positive number`);
      }
      const r = await api(o).request<{ host: Host }>('PUT', `/api/v1/hosts/${seg(host)}/pin`, { body: { version: n } });
      if (o.json) return printJson(r.body);
      out(`host ${r.body.host.id}: version ${r.body.host.pinned} pinned; it is served instead of the latest until: rear-update admin unpin ${r.body.host.id}`);
    });

  leaf(admin, 'unpin <host>', 'serve the latest version again')
    .addHelpText('after', `${SERVER_HELP}

Example:
  rear-update admin unpin e229`)
    .action(async (host: string, o: AdminFlags) => {
      const r = await api(o).request<{ host: Host }>('DELETE', `/api/v1/hosts/${seg(host)}/pin`);
      if (o.json) return printJson(r.body);
      out(`host ${r.body.host.id}: unpinned; the latest version is served`);
    });
}
