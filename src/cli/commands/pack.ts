// `rear-update pack`: a host's ReaR configuration (or any tree) into one deterministic bundle.

import type { Command } from 'commander';
import { lstatSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { loadPrivateKey } from '../../adapters/fs/keys.ts';
import { scanTree, type SourceEntry } from '../../adapters/fs/source-tree.ts';
import { writeBundle } from '../../adapters/tar/bundle-writer.ts';
import { isRuError, RuError } from '../../core/errors.ts';
import {
  decodeManifest, encodeManifest, FORMAT_VERSION, isLayerClass, isoSeconds, KERNEL_RELEASE, LAYER_NAME, LAYERED_FORMAT_VERSION,
  MANIFEST_KIND, MAX_PRIORITY, MODULE_NAME, type LayerInfo, type Manifest, type ManifestEntry,
} from '../../core/manifest.ts';
import { normalizeMemberName } from '../../core/paths.ts';
import { DEFAULT_LIMITS } from '../../core/policy.ts';
import { signManifest } from '../../core/signature.ts';
import { collect, nonNegativeInt } from '../options.ts';
import { formatBytes, note, out } from '../output.ts';

/** The paths the original request (ReaR issue 841) names as a host's recovery configuration. */
export const DEFAULT_PATHS = ['etc/rear', 'var/lib/rear/layout', 'var/lib/rear/recovery'];

/**
 * The flags that make a layer file (bundle format 2, one layer, docs/layers.md). pack and
 * publish share them: addLayerOptions declares them, layerOptionsFrom checks them, and pack()
 * takes them as they come from commander.
 */
export interface LayerFlags {
  layer?: string;
  /** The layer's hardware class, or '*' (every class); without --layer, the manifest's class. */
  class?: string;
  priority?: number;
  module?: string[];
  /** `pre=PATH` or `post=PATH`, PATH inside the packed tree. */
  hook?: string[];
  kernel?: string[];
}

/** Layer flags, checked: what the layer of the file will say, but its owned paths. */
export interface LayerOptions {
  readonly name: string;
  readonly class: string;
  readonly priority: number;
  readonly modules: readonly string[];
  readonly pre: readonly string[];
  readonly post: readonly string[];
  readonly kernels: readonly string[];
}

export const DEFAULT_LAYER_PRIORITY = 100;

export interface PackFlags extends LayerFlags {
  root: string;
  path?: string[];
  exclude?: string[];
  key?: string;
  host?: string;
  version?: number;
  created?: string;
  overlay?: boolean;
  output: string;
}

/**
 * Declares --layer, --priority, --module, --hook, --kernel (and --class, unless the command
 * has its own) on a command. Their values reach the action as LayerFlags.
 */
export function addLayerOptions(cmd: Command, opts: { class?: boolean } = {}): Command {
  if (opts.class !== false) cmd.option('--class <class>', 'with --layer: the hardware class the layer is for, or \'*\' for every class');
  return cmd
    .option('--layer <name>', 'write a layer file (bundle format 2) of a hardware class, named NAME (letters, digits, ".", "_", "-")')
    .option('--priority <n>', `with --layer: lower first, a later layer wins a path both carry (default ${DEFAULT_LAYER_PRIORITY})`, nonNegativeInt)
    .option('--module <name>', 'with --layer: a module apply loads (modprobe) after the commit, in the order given; repeatable', collect)
    .option('--hook <phase=path>', 'with --layer: pre=PATH (run before the commit; a failure vetoes it) or post=PATH (run after activation); PATH is an executable file of the packed tree, relative to --root; repeatable', collect)
    .option('--kernel <release>', 'with --layer: a kernel release (uname -r) the layer is made for; apply refuses it on any other; repeatable (default: any)', collect);
}

const usage = (message: string, context: Record<string, string> = {}): RuError => new RuError('USAGE', message, context);

const unique = (xs: readonly string[]): string[] => [...new Set(xs)];

function hookPath(flag: string): { phase: 'pre' | 'post'; path: string } {
  const m = /^(pre|post)=(.+)$/.exec(flag);
  if (!m) throw usage(`--hook ${flag}: expected pre=PATH or post=PATH`, { hook: flag });
  try {
    const path = normalizeMemberName((m[2] as string).replace(/^\/+/, ''), DEFAULT_LIMITS);
    if (path === '') throw new Error('the root itself');
    return { phase: m[1] as 'pre' | 'post', path };
  } catch (e) {
    throw usage(`--hook ${flag}: ${m[2]} is not a path inside the packed tree (${isRuError(e) ? e.message : (e as Error).message})`, { hook: flag });
  }
}

/** Checks the layer flags (names, releases, priority); null when --layer is not given. */
export function layerOptionsFrom(o: LayerFlags): LayerOptions | null {
  if (o.layer === undefined) {
    const stray = [o.module?.length ? '--module' : null, o.hook?.length ? '--hook' : null, o.kernel?.length ? '--kernel' : null, o.priority !== undefined ? '--priority' : null].filter((x) => x !== null);
    if (stray.length) throw usage(`${stray.join(', ')} ${stray.length > 1 ? 'describe' : 'describes'} a layer: give --layer NAME --class CLASS too`);
    return null;
  }
  if (!LAYER_NAME.test(o.layer)) throw usage(`--layer ${o.layer}: a layer name is 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit`, { layer: o.layer });
  if (o.class === undefined) throw usage(`--layer ${o.layer} needs --class CLASS (the hardware class it is for), or --class '*' for every class`, { layer: o.layer });
  if (!isLayerClass(o.class)) throw usage(`--class ${o.class}: a class is a name (letters, digits, ".", "_", "-") or '*'`, { class: o.class });
  const priority = o.priority ?? DEFAULT_LAYER_PRIORITY;
  if (priority > MAX_PRIORITY) throw usage(`--priority ${priority}: at most ${MAX_PRIORITY}`);
  for (const m of o.module ?? []) if (!MODULE_NAME.test(m)) throw usage(`--module ${m}: not a module name (letters, digits, "_", "-"; as modprobe takes it)`, { module: m });
  for (const k of o.kernel ?? []) if (!KERNEL_RELEASE.test(k)) throw usage(`--kernel ${k}: not a kernel release as uname -r prints it`, { kernel: k });
  const hooks = (o.hook ?? []).map(hookPath);
  return {
    name: o.layer,
    class: o.class,
    priority,
    modules: unique(o.module ?? []),
    pre: unique(hooks.filter((h) => h.phase === 'pre').map((h) => h.path)),
    post: unique(hooks.filter((h) => h.phase === 'post').map((h) => h.path)),
    kernels: unique(o.kernel ?? []),
  };
}

/** The layer of a layer file: every hook must be an executable regular file of the packed tree. */
export function layerFor(l: LayerOptions, entries: readonly ManifestEntry[], owns: readonly string[]): LayerInfo {
  const byPath = new Map(entries.map((e) => [e.path, e]));
  for (const [phase, paths] of [['pre', l.pre], ['post', l.post]] as const) {
    for (const p of paths) {
      const e = byPath.get(p);
      if (!e) throw usage(`--hook ${phase}=${p}: ${p} is not packed; add it (or a directory above it) with --path`, { hook: p });
      if (e.type !== 'file') throw usage(`--hook ${phase}=${p}: ${p} is a ${e.type === 'dir' ? 'directory' : e.type}, not a regular file`, { hook: p });
      if ((e.mode & 0o111) === 0) throw usage(`--hook ${phase}=${p}: ${p} is not executable (chmod +x it)`, { hook: p });
    }
  }
  return { name: l.name, class: l.class, priority: l.priority, version: null, owns: [...owns], modules: [...l.modules], pre: [...l.pre], post: [...l.post], kernels: [...l.kernels] };
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
  const layer = layerOptionsFrom(o);
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
  const owns = o.overlay ? [] : scan.dirs;
  const common = { kind: MANIFEST_KIND, version: o.version ?? null, created: isoSeconds(createdTime(o.created, scan.entries)), served: null, owns };
  // A layer file belongs to no host (unless --host says so); its class is the layer's ('*': none).
  const manifest: Manifest = layer
    ? {
      ...common, format: LAYERED_FORMAT_VERSION, host: o.host ?? null, class: layer.class === '*' ? null : layer.class,
      layers: [layerFor(layer, entries, owns)], entries: entries.map((e) => ({ ...e, layer: 0 })),
    }
    : { ...common, format: FORMAT_VERSION, host: o.host ?? hostname().split('.')[0] ?? null, class: o.class ?? null, entries };
  const bytes = encodeManifest(manifest);
  // Never write a layer file that apply would refuse: the decoder's rules are the format's.
  if (layer) decodeManifest(bytes);
  const signature = key ? signManifest(bytes, key) : null;
  await writeBundle(resolve(o.output), manifest, signature, scan.entries.map((e, i) => ({ ...(manifest.entries[i] as ManifestEntry), abs: e.abs })), bytes, key);
  return { manifest, signedBy: key?.publicKey.fingerprint ?? null, missing: scan.missing };
}

/** One line about a layer: what pack reports and inspect shows. */
export function describeLayer(l: LayerInfo): string {
  const list = (xs: readonly string[]): string => xs.join(' ') || '-';
  return `layer ${l.name}: class ${l.class ?? '(the host\'s own)'}, priority ${l.priority}, version ${l.version ?? '-'}, kernels ${list(l.kernels)}, modules ${list(l.modules)}, pre hooks ${list(l.pre)}, post hooks ${list(l.post)}`;
}

export function registerPack(program: Command): void {
  const cmd = program
    .command('pack')
    .description('pack a tree (by default this host\'s ReaR configuration) into a signed, deterministic bundle')
    .requiredOption('-o, --output <file>', 'bundle to write (written to a temporary name, then renamed)')
    .option('--root <dir>', 'the tree\'s root; member paths are relative to it', '/')
    .option('--path <path>', `a path below the root to pack, repeatable (default: ${DEFAULT_PATHS.join(', ')})`, collect)
    .option('--exclude <glob>', 'leave out paths matching this glob (relative to the root, e.g. "**/*.bak"), repeatable', collect)
    .option('--key <file>', 'sign with this private key (from keygen); without it the bundle is unsigned')
    .option('--host <id>', 'host id recorded in the manifest (default: this machine\'s short hostname)')
    .option('--class <name>', 'hardware class recorded in the manifest; with --layer: the class the layer is for, or \'*\' for every class')
    .option('--version <n>', 'per-host version number recorded in the manifest', nonNegativeInt)
    .option('--created <time>', 'creation time (ISO 8601 or epoch seconds); default $SOURCE_DATE_EPOCH, else the newest mtime in the tree')
    .option('--overlay', 'do not own the packed directories: apply then adds and replaces, but never removes files the bundle lacks');
  addLayerOptions(cmd, { class: false })
    .addHelpText('after', `
Every packed directory is "owned" unless --overlay is given: applying the bundle removes files
below it that the bundle does not contain (stale configuration from the image's build host
must not survive), and rollback brings them back.

Packing is deterministic: the same tree gives a byte-identical bundle. Symlinks are kept
exactly as written. Device nodes, FIFOs, sockets, setuid/setgid and group/world-writable
entries stop the pack (apply would refuse them); fix them or --exclude them.

Missing default paths are reported and skipped; a missing --path is an error.

Hardware-class layers (docs/layers.md): --layer NAME --class CLASS writes a layer file
(bundle format 2, one layer, every entry from it) of drivers, firmware, udev rules or newer
scripts that a class of machines needs, for the server to compose under each host's own
configuration, or to apply by itself. The layer declares what apply does after the commit:
  --module M         modprobe M (in the order given; only resolved, never loaded, when apply
                     targets another kernel than the running one or a --root other than /)
  --hook pre=PATH    run PATH (an executable file of the packed tree) before the commit: a
                     failure vetoes the apply; --hook post=PATH runs after depmod, udev and
                     modprobe. Hooks run only from a bundle signed by a trusted key (or with
                     apply --allow-hooks).
  --kernel REL       the layer is made for kernel release REL (as uname -r prints it); apply
                     refuses it on another kernel (KERNEL_MISMATCH). Repeatable.
  --priority N       lower first; of two layers carrying the same path, the later one wins
                     (default ${DEFAULT_LAYER_PRIORITY}).
What lies below lib/modules/REL/ (or usr/lib/modules/REL/) is installed only on a machine
whose target kernel is REL, so one layer can carry several releases' modules; after
installing modules, apply runs depmod -a REL. Pack lib/ or usr/lib/ as the tree has it: on a
merged-/usr rescue system (lib -> usr/lib) apply installs lib/... below usr/lib/.

Examples:
  rear-update pack --key /etc/rear-update/signing/rear-update.key --host e229 -o e229.tar.gz

  # an out-of-tree NIC driver for the DL360 Gen10 class, built for one kernel release
  rear-update pack --root /srv/layers/nic --path lib/modules/6.1.0-57-amd64/updates \\
    --path usr/local/sbin/nic-check --hook pre=usr/local/sbin/nic-check \\
    --layer nic-tg3 --class dl360g10 --kernel 6.1.0-57-amd64 --module tg3 \\
    --key /etc/rear-update/signing/rear-update.key -o nic-tg3.layer.tar.gz`)
    .action(async (o: PackFlags) => {
      const r = await pack(o);
      for (const m of r.missing) note(`${m} does not exist under ${o.root}; skipped`);
      const files = r.manifest.entries.filter((e) => e.type === 'file');
      const bytes = files.reduce((n, e) => n + (e.size ?? 0), 0);
      out(`packed ${r.manifest.entries.length} entries (${files.length} files, ${formatBytes(bytes)}) into ${o.output}`);
      out(`host ${r.manifest.host ?? '-'}, version ${r.manifest.version ?? '-'}, created ${r.manifest.created}, owns ${r.manifest.owns.join(', ') || 'nothing (overlay)'}`);
      for (const l of r.manifest.layers ?? []) out(describeLayer(l));
      out(r.signedBy ? `signed by ${r.signedBy}` : 'UNSIGNED (no --key): apply will require --unsigned');
    });
}
