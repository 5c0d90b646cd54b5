// `rear-update publish`: pack this host's ReaR configuration (same rules as pack) and upload
// it to the server with the machine's identity facts. The server keeps a new version only
// when the content changed; run it from cron or after `rear mkbackup`.

import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { readMachineFacts } from '../../adapters/fs/machine-facts.ts';
import { collect } from '../options.ts';
import { formatBytes, note, out, printJson } from '../output.ts';
import { addServerOptions, clientFrom, type ServerFlags } from '../server-options.ts';
import { DEFAULT_PATHS, pack } from './pack.ts';

interface PublishFlags extends ServerFlags {
  root: string;
  path?: string[];
  exclude?: string[];
  host?: string;
  overlay?: boolean;
  sysRoot: string;
  json?: boolean;
}

interface Published {
  created: boolean;
  warnings?: string[];
  version: { host: string; version: number; size: number; created: string };
}

export function registerPublish(program: Command): void {
  const cmd = program
    .command('publish')
    .description('pack this host\'s ReaR configuration and upload it to the server as the host\'s next version (only if it changed)');
  addServerOptions(cmd)
    .option('--root <dir>', 'the tree\'s root; member paths are relative to it', '/')
    .option('--path <path>', `a path below the root, repeatable (default: ${DEFAULT_PATHS.join(', ')})`, collect)
    .option('--exclude <glob>', 'leave out paths matching this glob, repeatable', collect)
    .option('--host <id>', 'host id on the server (default: this machine\'s short hostname)')
    .option('--overlay', 'do not own the packed directories (see pack --help)')
    .option('--sys-root <dir>', 'read the machine\'s facts (MACs, DMI) below this directory', '/')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
The token is a publish token for this host (admin token create --publish HOST), or an admin
token, which also creates the host on its first publish. The machine's facts go with it:
hostname, MACs of physical interfaces, DMI system UUID and serial (see rear-update facts); the
server resolves a booting replacement machine by them.

Example (cron, after rear mkbackup):
  REAR_UPDATE_SERVER=https://rear-server:8443 REAR_UPDATE_TOKEN=ru_... rear-update publish`)
    .action(async (o: PublishFlags) => {
      const api = clientFrom(o);
      const host = o.host ?? hostname().split('.')[0] ?? 'localhost';
      const dir = mkdtempSync(join(tmpdir(), 'rear-update-publish-'));
      try {
        const file = join(dir, 'bundle.tar.gz');
        const packed = await pack({ root: o.root, path: o.path, exclude: o.exclude, host, overlay: o.overlay, output: file });
        for (const m of packed.missing) note(`${m} does not exist under ${o.root}; skipped`);
        const facts = readMachineFacts(o.sysRoot);
        const size = statSync(file).size;
        const r = await api.request<Published>('POST', `/api/v1/hosts/${encodeURIComponent(host)}/versions`, {
          query: { mac: facts.macs, hostname: facts.hostname, uuid: facts.uuid, serial: facts.serial },
          stream: createReadStream(file, { highWaterMark: 1 << 20 }),
          contentType: 'application/gzip',
          headers: { 'content-length': String(size) },
        });
        if (o.json) {
          printJson(r.body);
          return;
        }
        for (const w of r.body.warnings ?? []) note(`warning: ${w}`);
        const v = r.body.version;
        out(r.body.created
          ? `published ${v.host} version ${v.version} (${packed.manifest.entries.length} entries, ${formatBytes(size)} uploaded)`
          : `unchanged: ${v.host} version ${v.version} already has this content; nothing stored`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
}
