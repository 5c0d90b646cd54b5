// `rear-update admin fsck [--gc] [--grace DURATION]`: the server checks its store (every
// version's blob of hosts and layers there, with its sha256 and size; the metadata store's own
// check; recovery logs) and lists unreferenced blobs; --gc removes those older than the grace
// period. The same check as `serve --check` (server/store-check.ts), run by a live server.

import type { Command } from 'commander';
import { RuError } from '../../../core/errors.ts';
import type { CheckReport, Finding, GcReport } from '../../../server/store-check.ts';
import { duration } from '../../server-source.ts';
import { formatBytes, out, printJson } from '../../output.ts';
import { api, leaf, SERVER_HELP, type AdminFlags } from './common.ts';

interface FsckFlags extends AdminFlags {
  gc?: boolean;
  grace?: number;
}

const row = (f: Finding): string => `  ${f.kind.padEnd(18)} ${f.message}`;

export function registerFsck(admin: Command): void {
  leaf(admin, 'fsck', 'check the server\'s store: every version\'s bundle data present and intact; list (and with --gc remove) unreferenced blobs')
    .option('--gc', 'remove unreferenced blobs older than the grace period')
    .option('--grace <duration>', 'with --gc: keep unreferenced blobs younger than this (default 1h; 0: remove all)', duration)
    .addHelpText('after', `
Checks, on the running server: every version of every host and layer names a blob that is
there and has the version's size and the sha256 it is named by; the metadata store's own
check (versions 1..n, pins, SQLite integrity); recovery logs. Lists leftovers: blobs no
version names, partial blobs, spooled uploads. Exit 0 when consistent (leftovers allowed),
8 (STORE_INCONSISTENT) when not — the same check as \`rear-update serve --check\`.

--gc removes unreferenced blobs older than --grace (default 1h). A publish stores its blob a
moment before the version that names it: the grace period keeps that blob; should it go
anyway (--grace 0), the publish stores it again before it answers. Partial blobs and spooled
uploads are left to the next start. Removals are audited.
${SERVER_HELP} fsck needs an admin token.

Examples:
  rear-update admin fsck
  rear-update admin fsck --gc
  rear-update admin fsck --gc --grace 10m --json`)
    .action(async (o: FsckFlags) => {
      if (o.grace !== undefined && !o.gc) throw new RuError('USAGE', '--grace goes with --gc');
      const client = api(o);
      const r = o.gc
        ? await client.request<{ gc?: GcReport; check: CheckReport }>('POST', '/api/v1/fsck/gc', { query: { grace: o.grace === undefined ? null : String(o.grace) } })
        : await client.request<{ gc?: GcReport; check: CheckReport }>('GET', '/api/v1/fsck');
      const { check } = r.body;
      const gc = r.body.gc ?? null;
      if (o.json) printJson(r.body);
      else {
        const c = check.counts;
        out(`store: ${c.hosts} hosts, ${c.versions} versions, ${c.layers} layers, ${c.layerVersions} layer versions, ${c.blobs} blobs in use (${formatBytes(c.blobBytes)}), ${c.logs} recovery logs`);
        if (gc) {
          out(`gc: removed ${gc.removed.length} unreferenced blob(s) (${formatBytes(gc.removed.reduce((n, b) => n + b.bytes, 0))}) older than ${Math.round(gc.graceMs / 1000)} s`);
          for (const b of gc.removed) out(`  removed            blob ${b.sha256} (${b.bytes} bytes)`);
        }
        out(check.errors.length === 0 ? 'errors: none' : `errors: ${check.errors.length}`);
        for (const f of check.errors) out(row(f));
        out(check.leftovers.length === 0 ? 'leftovers: none' : `leftovers: ${check.leftovers.length}${gc ? ' (unreferenced blobs younger than the grace period are kept)' : ' (fsck --gc removes unreferenced blobs older than the grace period)'}`);
        for (const f of check.leftovers) out(row(f));
        out(check.ok ? 'consistent' : 'INCONSISTENT');
      }
      if (!check.ok) {
        throw new RuError('STORE_INCONSISTENT', `${check.errors.length} inconsistencies in the server's store; first: ${check.errors[0]!.message}`, { errors: check.errors.length });
      }
    });
}
