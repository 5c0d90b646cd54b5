// `rear-update serve --check`: the store's consistency check (store-check.ts) over a data
// directory (and, with --db, the metadata in PostgreSQL), without serving. It opens the stores
// as a start would but removes nothing, so it can run beside a running server or after a crash;
// exit 0 when consistent (leftovers allowed), STORE_INCONSISTENT (exit 8) when not.

import { existsSync } from 'node:fs';
import { RuError } from '../core/errors.ts';
import { DirBlobStore } from '../adapters/storage/dir-blobs.ts';
import { formatBytes } from '../cli/output.ts';
import { loadConfig, type ConfigFlags } from './config.ts';
import { layout } from './data-dir.ts';
import { openBlobs, openLogBytes, openMetadata } from './serve.ts';
import { checkStore, type CheckReport, type Finding } from './store-check.ts';

function lines(r: CheckReport, root: string): string[] {
  const c = r.counts;
  const row = (f: Finding): string => `  ${f.kind.padEnd(18)} ${f.message}`;
  return [
    `store ${root}: ${c.hosts} hosts, ${c.versions} versions, ${c.blobs} blobs (${formatBytes(c.blobBytes)}), ${c.logs} recovery logs`,
    r.errors.length === 0 ? 'errors: none' : `errors: ${r.errors.length}`,
    ...r.errors.map(row),
    r.leftovers.length === 0 ? 'leftovers: none' : `leftovers: ${r.leftovers.length} (uploads in progress, or what interrupted ones left; the next start removes partial and unreferenced blobs)`,
    ...r.leftovers.map(row),
    r.ok ? 'consistent' : 'INCONSISTENT',
  ];
}

export async function runCheck(flags: ConfigFlags, opts: { json: boolean }, out: (line: string) => void): Promise<CheckReport> {
  const cfg = loadConfig(flags);
  const data = layout(cfg.data);
  if (cfg.db === null && !existsSync(data.database)) {
    throw new RuError('CONFIG_INVALID', `${data.root} holds no rear-update store (no metadata.sqlite)`, { path: data.root });
  }
  // With --db the metadata is PostgreSQL's, checked there; the blobs and logs are --data's, or
  // with --blobs postgres PostgreSQL's too.
  const meta = await openMetadata(cfg, data);
  // Not openDirBlobs: a check removes nothing, not even day-old partial blobs (opening the
  // PostgreSQL blob store removes nothing either: an unfinished upload is an open transaction).
  const blobs = cfg.blobs === 'postgres' ? await openBlobs(cfg, data) : new DirBlobStore(data.blobs);
  const logs = await openLogBytes(cfg, data);
  let report: CheckReport;
  try {
    report = await checkStore({ meta, blobs, data, logs });
  } finally {
    await logs.close();
    await meta.close();
    await blobs.close();
  }
  if (opts.json) out(JSON.stringify(report, null, 2));
  else for (const l of lines(report, data.root)) out(l);
  if (!report.ok) {
    throw new RuError('STORE_INCONSISTENT', `${report.errors.length} inconsistencies in ${data.root}; first: ${report.errors[0]!.message}`, { errors: report.errors.length });
  }
  return report;
}
