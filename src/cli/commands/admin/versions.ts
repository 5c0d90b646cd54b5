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
  layer?: number;
}

interface RawLayer {
  name: string;
  class: string | null;
  priority: number;
  version: number | null;
  modules: string[];
  pre: string[];
  post: string[];
  kernels: string[];
}

interface ComposedManifest {
  host: string | null;
  class: string | null;
  created: string;
  owns: string[];
  layers?: RawLayer[];
  entries: RawEntry[];
  shadowed?: RawEntry[];
}

interface VersionWithManifest extends VersionSummary {
  manifest: ComposedManifest;
}

interface DiffAnswer {
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

interface LayerFlags extends AdminFlags {
  layer?: string;
  class?: string;
}

/** What the versions commands work on: a host (first argument) or a layer (--layer N --class C). */
interface Subject {
  readonly label: string;
  /** The API path of its versions, pin and diff. */
  readonly base: string;
  readonly layer: boolean;
  /** The arguments after the host (all of them for a layer). */
  readonly rest: string[];
}

function subjectOf(args: string[], o: LayerFlags, usage: string): Subject {
  if (o.layer !== undefined || o.class !== undefined) {
    if (o.layer === undefined || o.class === undefined) throw new RuError('USAGE', 'a layer is named by both --layer NAME and --class C (--class \'*\' for every class)');
    return { label: `layer ${o.class}/${o.layer}`, base: `/api/v1/layers/${seg(o.class)}/${seg(o.layer)}`, layer: true, rest: args };
  }
  const [host, ...rest] = args;
  if (host === undefined) throw new RuError('USAGE', `missing HOST (or --layer NAME --class C): ${usage}`);
  return { label: `host ${host}`, base: `/api/v1/hosts/${seg(host)}`, layer: false, rest };
}

const layerOptions = (c: Command): Command => c
  .option('--layer <name>', 'a hardware-class layer instead of a host (with --class)')
  .option('--class <class>', 'the layer\'s class (\'*\': the layers of every class)');

/** A version argument: a number, or latest / served. */
function versionArg(v: string): string {
  if (v === 'latest' || v === 'served') return v;
  return String(positiveInt(v));
}

const short = (v: string | number | null): string => (v === null ? '-' : typeof v === 'string' && /^[0-9a-f]{64}$/.test(v) ? `${v.slice(0, 12)}…` : String(v));
const describeChange = (c: FieldChange): string => `${c.field} ${short(c.from)} → ${short(c.to)}`;
const describeEntry = (e: EntrySummary): string => `${e.type} ${e.mode} ${e.owner}${e.size !== null ? ` ${formatBytes(e.size)}` : ''}${e.target !== null ? ` → ${e.target}` : ''}`;

export function registerVersions(admin: Command): void {
  layerOptions(leaf(admin, 'versions [host]', 'list a host\'s (or a layer\'s) published versions, marking the one served'))
    .addHelpText('after', `${SERVER_HELP}

Examples:
  rear-update admin versions e229
  rear-update admin versions --layer nic-e1000e --class typeC`)
    .action(async (host: string | undefined, o: LayerFlags) => {
      const sub = subjectOf(host === undefined ? [] : [host], o, 'admin versions HOST');
      const r = await api(o).request<{ host?: string; layer?: { pinned: number | null }; pinned?: number | null; served: number | null; versions: VersionSummary[] }>('GET', `${sub.base}/versions`);
      if (o.json) return printJson(r.body);
      const b = r.body;
      const pinned = b.layer ? b.layer.pinned : (b.pinned ?? null);
      printTable(['VERSION', 'PUBLISHED', 'SIZE', 'PUBLISHER', 'DIGEST', ''],
        b.versions.map((v) => [String(v.version), time(v.created), formatBytes(v.size), dash(v.publisher), `${v.digest.slice(0, 12)}…`, v.version === b.served ? (pinned !== null ? 'served (pinned)' : 'served') : '']),
        `${sub.label} has no published version yet`);
    });

  layerOptions(leaf(admin, 'show [args...]', 'show one version\'s manifest: summary and entries (default: the version served); for a host with layers, the composed view'))
    .addHelpText('after', `
Arguments: HOST [VERSION], or [VERSION] with --layer NAME --class C. VERSION is a number,
latest, or served (the default: the pinned version, else the latest). A host of a class with
layers is shown as it is served: every layer with its version, then each entry with the layer
it comes from (LAYER column); entries a later layer replaces are listed as shadowed.
${SERVER_HELP}

Examples:
  rear-update admin show e229
  rear-update admin show e229 3 --json
  rear-update admin show --layer nic-e1000e --class typeC`)
    .action(async (args: string[], o: LayerFlags) => {
      const sub = subjectOf(args, o, 'admin show HOST [VERSION]');
      const version = sub.rest[0];
      if (sub.rest.length > 1) throw new RuError('USAGE', `unexpected argument ${JSON.stringify(sub.rest[1])}`);
      let v: string;
      try {
        v = versionArg(version ?? 'served');
      } catch {
        throw new RuError('USAGE', `version ${JSON.stringify(version)}: expected a positive number, latest or served`);
      }
      const r = await api(o).request<{ version: VersionWithManifest & { host?: string; class?: string; name?: string }; composed?: ComposedManifest | null }>('GET', `${sub.base}/versions/${v}`);
      if (o.json) return printJson(r.body);
      const rec = r.body.version;
      const composed = r.body.composed ?? null;
      const m = composed ?? rec.manifest;
      const count = (t: string): number => m.entries.filter((e) => e.type === t).length;
      const bytes = m.entries.reduce((n, e) => n + (e.type === 'file' ? (e.size ?? 0) : 0), 0);
      for (const l of table([
        [sub.layer ? 'layer:' : 'host:', sub.layer ? `${rec.class ?? ''}/${rec.name ?? ''}` : (rec.host ?? '')],
        ['version:', String(rec.version)],
        ['created:', `${time(m.created)} (packed)`],
        ['published:', `${time(rec.created)} by ${dash(rec.publisher)}`],
        ['class:', dash(m.class)],
        ['bundle:', `${formatBytes(rec.size)} stored, blob ${rec.blob.slice(0, 12)}…`],
        ['entries:', `${m.entries.length}: ${count('file')} files (${formatBytes(bytes)}), ${count('dir')} directories, ${count('symlink')} symlinks, ${count('hardlink')} hard links`],
        ['owns:', dash(m.owns)],
      ])) out(l);
      const layers = m.layers ?? [];
      if (layers.length > 0) {
        out();
        printTable(['#', 'LAYER', 'CLASS', 'PRIORITY', 'VERSION', 'MODULES', 'HOOKS', 'KERNELS'],
          layers.map((l, i) => [String(i), l.name, l.class ?? '(host)', l.class === null ? '-' : String(l.priority), dash(l.version), dash(l.modules), dash([...l.pre.map((h) => `pre:${h}`), ...l.post.map((h) => `post:${h}`)]), dash(l.kernels)]), '');
      }
      const layerOf = (e: RawEntry): string => (e.layer === undefined ? '' : (layers[e.layer]?.name ?? String(e.layer)));
      out();
      printTable(['TYPE', 'MODE', 'OWNER', 'SIZE', ...(layers.length > 0 ? ['LAYER'] : []), 'PATH'],
        m.entries.map((e) => [e.type, e.mode, `${e.uid}:${e.gid}`, e.type === 'file' ? String(e.size ?? 0) : '-', ...(layers.length > 0 ? [layerOf(e)] : []), e.target !== undefined ? `${e.path} -> ${e.target}` : e.path]), '(no entries)');
      if (m.shadowed && m.shadowed.length > 0) {
        out();
        out(`shadowed (replaced by a later layer): ${m.shadowed.length}`);
        for (const e of m.shadowed) out(`  ${e.path} from ${layerOf(e)}`);
      }
    });

  layerOptions(leaf(admin, 'diff [args...]', 'what changed between two versions: paths added, removed, changed, then text diffs'))
    .option('--own', 'a host: compare its own bundles, without its class\'s layers')
    .addHelpText('after', `
Arguments: HOST FROM TO, or FROM TO with --layer NAME --class C. FROM and TO are version
numbers, latest or served. A host is compared as it is served (composed with its class's
layers as they are now), unless --own. Changed regular files that are text (UTF-8, no NUL)
and at most 256 KiB get a unified diff; others are named with the reason.
${SERVER_HELP}

Examples:
  rear-update admin diff e229 3 4
  rear-update admin diff e229 served latest
  rear-update admin diff --layer nic-e1000e --class typeC 1 2`)
    .action(async (args: string[], o: LayerFlags & { own?: boolean }) => {
      const sub = subjectOf(args, o, 'admin diff HOST FROM TO');
      if (sub.rest.length !== 2) throw new RuError('USAGE', `expected ${sub.layer ? 'FROM TO' : 'HOST FROM TO'}`);
      const [from, to] = sub.rest as [string, string];
      let a: string;
      let b: string;
      try {
        a = versionArg(from);
        b = versionArg(to);
      } catch {
        throw new RuError('USAGE', 'versions are positive numbers, latest or served');
      }
      const r = await api(o).request<DiffAnswer>('GET', `${sub.base}/diff`, { query: { from: a, to: b, ...(o.own ? { own: '1' } : {}) } });
      if (o.json) return printJson(r.body);
      const d = r.body;
      out(`${sub.label}: version ${d.from} → ${d.to}: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed, ${d.unchanged} unchanged`);
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

  layerOptions(leaf(admin, 'pin [args...]', 'serve this version instead of the latest, until unpin'))
    .addHelpText('after', `
Arguments: HOST VERSION, or VERSION with --layer NAME --class C. Later publishes are still
stored, but not served while the pin holds. A pinned layer is what every host of its class
gets composed with.
${SERVER_HELP}

Examples:
  rear-update admin pin e229 3
  rear-update admin pin --layer nic-e1000e --class typeC 1`)
    .action(async (args: string[], o: LayerFlags) => {
      const sub = subjectOf(args, o, 'admin pin HOST VERSION');
      if (sub.rest.length !== 1) throw new RuError('USAGE', `expected ${sub.layer ? 'VERSION' : 'HOST VERSION'}`);
      const version = sub.rest[0] as string;
      let n: number;
      try {
        n = positiveInt(version);
      } catch {
        throw new RuError('USAGE', `version ${JSON.stringify(version)}: expected a positive number`);
      }
      const r = await api(o).request<{ host?: Host; layer?: { pinned: number | null } }>('PUT', `${sub.base}/pin`, { body: { version: n } });
      if (o.json) return printJson(r.body);
      const again = sub.layer ? `rear-update admin unpin --layer ${o.layer ?? ''} --class '${o.class ?? ''}'` : `rear-update admin unpin ${r.body.host?.id ?? ''}`;
      out(`${sub.label}: version ${n} pinned; it is served instead of the latest until: ${again}`);
    });

  layerOptions(leaf(admin, 'unpin [host]', 'serve the latest version again'))
    .addHelpText('after', `${SERVER_HELP}

Examples:
  rear-update admin unpin e229
  rear-update admin unpin --layer nic-e1000e --class typeC`)
    .action(async (host: string | undefined, o: LayerFlags) => {
      const sub = subjectOf(host === undefined ? [] : [host], o, 'admin unpin HOST');
      const r = await api(o).request<unknown>('DELETE', `${sub.base}/pin`);
      if (o.json) return printJson(r.body);
      out(`${sub.label}: unpinned; the latest version is served`);
    });
}
