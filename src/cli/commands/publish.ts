// `rear-update publish`: pack this host's ReaR configuration (same rules as pack) and upload
// it to the server with the machine's identity facts. The server keeps a new version only
// when the content changed; run it from cron or after `rear mkbackup`. With --layer it packs
// and uploads a hardware-class layer instead (docs/layers.md): no host, no facts.

import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Option, type Command as CommandT } from 'commander';
import { readMachineFacts } from '../../adapters/fs/machine-facts.ts';
import { contentDigest } from '../../core/manifest.ts';
import { collect } from '../options.ts';
import { formatBytes, note, out, printJson } from '../output.ts';
import { PUBLISH_CONF, PUBLISH_STATE, PUBLISH_TRIGGERS, writePublishState, type PublishTrigger } from '../publish-state.ts';
import { addServerOptions, clientFrom, serverFrom, type ServerFlags } from '../server-options.ts';
import { effectiveEnv, publishConf } from '../settings.ts';
import { fromSystemError, RuError } from '../../core/errors.ts';
import { addLayerOptions, DEFAULT_PATHS, layerOptionsFrom, pack, type LayerFlags, type PackFlags } from './pack.ts';

interface PublishFlags extends ServerFlags, LayerFlags {
  root: string;
  path?: string[];
  exclude?: string[];
  host?: string;
  overlay?: boolean;
  sysRoot: string;
  json?: boolean;
  trigger: PublishTrigger;
}

interface Published {
  created: boolean;
  warnings?: string[];
  version: { host: string; version: number; size: number; created: string };
}

interface LayerPublished {
  created: boolean;
  layer: { class: string; name: string; priority: number; pinned: number | null };
  version: { version: number; size: number; created: string };
}

export function registerPublish(program: CommandT): void {
  const cmd = program
    .command('publish')
    .description('pack this host\'s ReaR configuration (or, with --layer, a hardware-class layer) and upload it to the server as the next version (only if it changed)');
  addLayerOptions(addServerOptions(cmd))
    .option('--root <dir>', 'the tree\'s root; member paths are relative to it', '/')
    .option('--path <path>', `a path below the root, repeatable (default: ${DEFAULT_PATHS.join(', ')})`, collect)
    .option('--exclude <glob>', 'leave out paths matching this glob, repeatable', collect)
    .option('--host <id>', 'host id on the server (default: REAR_UPDATE_HOST, else this machine\'s short hostname)')
    .option('--overlay', 'do not own the packed directories (see pack --help)')
    .option('--sys-root <dir>', 'read the machine\'s facts (MACs, DMI) below this directory', '/')
    .option('--json', 'machine-readable output')
    .addOption(new Option('--trigger <what>', `what ran this publish, recorded in ${PUBLISH_STATE} for doctor`).choices([...PUBLISH_TRIGGERS]).default('manual'))
    .addHelpText('after', `
On an original system, ${PUBLISH_CONF} supplies what flags and environment leave
out: REAR_UPDATE_SERVER, REAR_UPDATE_TOKEN_FILE (default /etc/rear-update/token),
REAR_UPDATE_CACERT, REAR_UPDATE_HOST. Every host publish, whether it worked or not, is recorded
in ${PUBLISH_STATE} below --root (time, outcome, server, host, version, the content
digest, the error), which \`rear-update doctor\` reads. \`install-rear --publish\` makes ReaR run
\`publish --trigger rear\` after each successful rear mkbackup and rear mkrescue.

The token is a publish token for this host (admin token create --publish HOST), or an admin
token, which also creates the host on its first publish. The machine's facts go with it:
hostname, MACs of physical interfaces, DMI system UUID and serial (see rear-update facts); the
server resolves a booting replacement machine by them.

With --layer NAME --class C (and --path: what the layer carries) it publishes a layer of
hardware class C instead: drivers, firmware, udev rules or newer ReaR scripts that the server
composes under every host of class C (docs/layers.md). The token is an admin token or one
made with admin token create --publish-class C. No machine facts are sent.

Examples:
  # with /etc/rear-update/publish.conf in place:
  rear-update publish
  # without it:
  REAR_UPDATE_SERVER=https://rear-server:8443 REAR_UPDATE_TOKEN=ru_... rear-update publish
  # a driver for the typeC machines, loaded after it is installed:
  rear-update publish --layer nic-e1000e --class typeC --priority 10 --root /srv/layers/typeC \\
    --path lib/modules/6.1.0-57-amd64/updates --module e1000e --kernel 6.1.0-57-amd64`)
    .action(async (o: PublishFlags) => {
      if (o.layer !== undefined) return publishLayer(o);
      if (o.class !== undefined) throw new RuError('USAGE', '--class goes with --layer (a host\'s class is set on the server: admin host set HOST --class C)');
      return publishHost(o);
    });
}

/**
 * A host's publish, recorded in publish-state.json whatever its outcome (a failure is recorded
 * and then reported as usual: ReaR's hook ignores the exit status, doctor reads the record).
 */
async function publishHost(o: PublishFlags): Promise<void> {
  const env = effectiveEnv();
  const host = o.host ?? (env.REAR_UPDATE_HOST || undefined) ?? hostname().split('.')[0] ?? 'localhost';
  let digest: string | null = null;
  const record = (r: { ok: true; body: Published } | { ok: false; error: RuError }): void => {
    const written = writePublishState({
      at: new Date().toISOString(),
      ok: r.ok,
      trigger: o.trigger,
      server: serverFrom(o, env),
      host,
      version: r.ok ? r.body.version.version : null,
      created: r.ok ? r.body.created : null,
      digest,
      code: r.ok ? null : r.error.code,
      message: r.ok ? null : r.error.message,
    }, o.root);
    if (!written) note(`could not record this publish in ${PUBLISH_STATE} below ${o.root} (doctor will not see it)`);
  };
  try {
    const conf = publishConf();
    if (!o.token && !o.tokenFile && !process.env.REAR_UPDATE_TOKEN && conf.tokenProblem !== null) {
      throw new RuError('CONFIG_INVALID', `${conf.file}: the publish token cannot be read: ${conf.tokenProblem} (REAR_UPDATE_TOKEN_FILE; run as root, or create it from \`rear-update admin token create --publish ${host}\`)`, { path: conf.file });
    }
    const facts = readMachineFacts(o.sysRoot);
    const body = await packAndUpload<Published>(o, { root: o.root, path: o.path, exclude: o.exclude, host, overlay: o.overlay }, `/api/v1/hosts/${encodeURIComponent(host)}/versions`,
      { mac: facts.macs, hostname: facts.hostname, uuid: facts.uuid, serial: facts.serial }, (r, packed, size) => {
        for (const w of r.warnings ?? []) note(`warning: ${w}`);
        const v = r.version;
        out(r.created
          ? `published ${v.host} version ${v.version} (${packed.manifest.entries.length} entries, ${formatBytes(size)} uploaded)`
          : `unchanged: ${v.host} version ${v.version} already has this content; nothing stored`);
      }, (packed) => {
        digest = contentDigest(packed.manifest);
      });
    record({ ok: true, body });
  } catch (e) {
    record({ ok: false, error: fromSystemError(e, 'publish') });
    throw e;
  }
}

/**
 * Packs into a temporary file, uploads it to `route` (streamed, with its length), and hands the
 * answer to `report` (or prints it as JSON with --json). The temporary file goes in any case.
 */
async function packAndUpload<T>(o: PublishFlags, packOpts: Omit<PackFlags, 'output'>, route: string,
  query: Record<string, string | readonly string[] | null>, report: (body: T, packed: Awaited<ReturnType<typeof pack>>, size: number) => void,
  onPacked?: (packed: Awaited<ReturnType<typeof pack>>) => void): Promise<T> {
  const api = clientFrom(o);
  const dir = mkdtempSync(join(tmpdir(), 'rear-update-publish-'));
  try {
    const file = join(dir, 'bundle.tar.gz');
    const packed = await pack({ ...packOpts, output: file });
    onPacked?.(packed);
    for (const m of packed.missing) note(`${m} does not exist under ${o.root}; skipped`);
    const size = statSync(file).size;
    const r = await api.request<T>('POST', route, {
      query,
      stream: createReadStream(file, { highWaterMark: 1 << 20 }),
      contentType: 'application/gzip',
      headers: { 'content-length': String(size) },
    });
    if (o.json) printJson(r.body);
    else report(r.body, packed, size);
    return r.body;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function publishLayer(o: PublishFlags): Promise<void> {
  const layer = layerOptionsFrom(o);
  if (!layer) return;
  if (o.path === undefined || o.path.length === 0) {
    throw new RuError('USAGE', `--layer ${layer.name}: give what the layer carries with --path (e.g. --path lib/modules/$(uname -r)/updates); the default paths are a host's own configuration`);
  }
  if (o.host !== undefined) throw new RuError('USAGE', '--host does not go with --layer: a layer belongs to a class, not a host');
  await packAndUpload<LayerPublished>(o, o, `/api/v1/layers/${encodeURIComponent(layer.class)}/${encodeURIComponent(layer.name)}/versions`,
    { priority: String(layer.priority) }, (r, packed, size) => {
      const l = r.layer;
      const v = r.version;
      out(r.created
        ? `published layer ${l.class}/${l.name} version ${v.version}, priority ${l.priority} (${packed.manifest.entries.length} entries, ${formatBytes(size)} uploaded)`
        : `unchanged: layer ${l.class}/${l.name} version ${v.version} already has this content (priority ${l.priority}); nothing stored`);
      if (l.pinned !== null) note(`layer ${l.class}/${l.name} is pinned to version ${l.pinned}: hosts get that one until admin unpin --layer ${l.name} --class '${l.class}'`);
    });
}
