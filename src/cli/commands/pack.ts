// `rear-update pack`: a host's ReaR configuration (or any tree) into one deterministic bundle.

import type { Command } from 'commander';
import { lstatSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { loadPrivateKey } from '../../adapters/fs/keys.ts';
import { scanTree, type SourceEntry } from '../../adapters/fs/source-tree.ts';
import { writeBundle } from '../../adapters/tar/bundle-writer.ts';
import { RuError } from '../../core/errors.ts';
import { encodeManifest, FORMAT_VERSION, isoSeconds, MANIFEST_KIND, type Manifest, type ManifestEntry } from '../../core/manifest.ts';
import { signManifest } from '../../core/signature.ts';
import { collect, nonNegativeInt } from '../options.ts';
import { formatBytes, note, out } from '../output.ts';

/** The paths the original request (ReaR issue 841) names as a host's recovery configuration. */
export const DEFAULT_PATHS = ['etc/rear', 'var/lib/rear/layout', 'var/lib/rear/recovery'];

export interface PackFlags {
  root: string;
  path?: string[];
  exclude?: string[];
  key?: string;
  host?: string;
  class?: string;
  version?: number;
  created?: string;
  overlay?: boolean;
  output: string;
}

function createdTime(flag: string | undefined, entries: readonly SourceEntry[]): number {
  if (flag !== undefined) {
    const t = /^\d+$/.test(flag) ? Number(flag) : Date.parse(flag) / 1000;
    if (!Number.isFinite(t)) throw new RuError('USAGE', `--created: not a time: ${flag}`);
    return t;
  }
  const sde = process.env.SOURCE_DATE_EPOCH;
  if (sde && /^\d+$/.test(sde)) return Number(sde);
  // The newest modification in the tree: the same tree gives the same bundle, and the time
  // still says how current the configuration is.
  let newest = 0;
  for (const e of entries) newest = Math.max(newest, Math.floor(lstatSync(e.abs).mtimeMs / 1000));
  return newest;
}

export async function pack(o: PackFlags): Promise<{ manifest: Manifest; signedBy: string | null; missing: string[] }> {
  const root = resolve(o.root);
  const explicit = o.path !== undefined && o.path.length > 0;
  const paths = explicit ? (o.path as string[]) : DEFAULT_PATHS;
  const key = o.key ? loadPrivateKey(o.key) : null;
  const scan = await scanTree(root, paths, o.exclude ?? []);
  if (explicit && scan.missing.length > 0) {
    throw new RuError('PACK_PATH_MISSING', `not found under ${root}: ${scan.missing.join(', ')}`, { paths: scan.missing });
  }
  if (scan.entries.length === 0) {
    throw new RuError('PACK_PATH_MISSING', `nothing to pack: none of ${paths.join(', ')} exists under ${root}`, { paths: [...paths] });
  }
  const entries: ManifestEntry[] = scan.entries.map((e) => ({
    path: e.path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid,
    ...(e.type === 'file' ? { size: e.size, sha256: e.sha256 as string } : {}),
    ...(e.type === 'symlink' ? { target: e.target as string } : {}),
  }));
  const manifest: Manifest = {
    format: FORMAT_VERSION,
    kind: MANIFEST_KIND,
    host: o.host ?? hostname().split('.')[0] ?? null,
    class: o.class ?? null,
    version: o.version ?? null,
    created: isoSeconds(createdTime(o.created, scan.entries)),
    served: null,
    owns: o.overlay ? [] : scan.dirs,
    entries,
  };
  const bytes = encodeManifest(manifest);
  const signature = key ? signManifest(bytes, key) : null;
  await writeBundle(resolve(o.output), manifest, signature, scan.entries.map((e, i) => ({ ...(entries[i] as ManifestEntry), abs: e.abs })), bytes, key);
  return { manifest, signedBy: key?.publicKey.fingerprint ?? null, missing: scan.missing };
}

export function registerPack(program: Command): void {
  program
    .command('pack')
    .description('pack a tree (by default this host\'s ReaR configuration) into a signed, deterministic bundle')
    .requiredOption('-o, --output <file>', 'bundle to write (written to a temporary name, then renamed)')
    .option('--root <dir>', 'the tree\'s root; member paths are relative to it', '/')
    .option('--path <path>', `a path below the root to pack, repeatable (default: ${DEFAULT_PATHS.join(', ')})`, collect)
    .option('--exclude <glob>', 'leave out paths matching this glob (relative to the root, e.g. "**/*.bak"), repeatable', collect)
    .option('--key <file>', 'sign with this private key (from keygen); without it the bundle is unsigned')
    .option('--host <id>', 'host id recorded in the manifest (default: this machine\'s short hostname)')
    .option('--class <name>', 'hardware class recorded in the manifest')
    .option('--version <n>', 'per-host version number recorded in the manifest', nonNegativeInt)
    .option('--created <time>', 'creation time (ISO 8601 or epoch seconds); default $SOURCE_DATE_EPOCH, else the newest mtime in the tree')
    .option('--overlay', 'do not own the packed directories: apply then adds and replaces, but never removes files the bundle lacks')
    .addHelpText('after', `
Every packed directory is "owned" unless --overlay is given: applying the bundle removes files
below it that the bundle does not contain (stale configuration from the image's build host
must not survive), and rollback brings them back.

Packing is deterministic: the same tree gives a byte-identical bundle. Symlinks are kept
exactly as written. Device nodes, FIFOs, sockets, setuid/setgid and group/world-writable
entries stop the pack (apply would refuse them); fix them or --exclude them.

Missing default paths are reported and skipped; a missing --path is an error.

Example:
  rear-update pack --key /etc/rear-update/signing/rear-update.key --host e229 -o e229.tar.gz`)
    .action(async (o: PackFlags) => {
      const r = await pack(o);
      for (const m of r.missing) note(`${m} does not exist under ${o.root}; skipped`);
      const files = r.manifest.entries.filter((e) => e.type === 'file');
      const bytes = files.reduce((n, e) => n + (e.size ?? 0), 0);
      out(`packed ${r.manifest.entries.length} entries (${files.length} files, ${formatBytes(bytes)}) into ${o.output}`);
      out(`host ${r.manifest.host ?? '-'}, version ${r.manifest.version ?? '-'}, created ${r.manifest.created}, owns ${r.manifest.owns.join(', ') || 'nothing (overlay)'}`);
      out(r.signedBy ? `signed by ${r.signedBy}` : 'UNSIGNED (no --key): apply will require --unsigned');
    });
}
