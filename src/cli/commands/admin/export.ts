// `rear-update admin export DIR`: the signed offline export (docs/export.md), for the day the
// server itself is gone. The server signs an index of every selected host's current composed
// bundle; each bundle is written to a temporary name in DIR, checked against the index, synced
// and renamed; the index comes last. So a cut-off export (a full disk: NO_SPACE) leaves no
// half-written bundle under its final name and no index naming a bundle that is not there.

import type { Command } from 'commander';
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError, RuError } from '../../../core/errors.ts';
import { decodeEnvelope, EXPORT_INDEX_FILE, type ExportEntry } from '../../../core/export-index.ts';
import { collect } from '../../options.ts';
import { formatBytes, note, out, printJson } from '../../output.ts';
import { api, leaf, printTable, seg, SERVER_HELP, streamGet, type AdminFlags } from './common.ts';

interface ExportFlags extends AdminFlags {
  class?: string[];
  host?: string[];
}

/** Bundles hold configuration with secrets in it: owner-only, as on the server. */
const FILE_MODE = 0o600;

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `chunks` to DIR/.NAME.RANDOM.part, syncs it, lets `check` judge it, then renames it to DIR/NAME. */
async function writeAtomically(dir: string, name: string, chunks: AsyncIterable<Uint8Array>, check: (sha256: string, size: number) => void): Promise<void> {
  const tmp = join(dir, `.${name}.${randomBytes(6).toString('hex')}.part`);
  let fh: FileHandle | undefined;
  let renamed = false;
  try {
    fh = await open(tmp, 'wx', FILE_MODE);
    const h = createHash('sha256');
    let size = 0;
    for await (const c of chunks) {
      h.update(c);
      size += c.length;
      let off = 0;
      while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten;
    }
    await fh.sync();
    await fh.close();
    fh = undefined;
    check(h.digest('hex'), size);
    await rename(tmp, join(dir, name));
    renamed = true;
  } catch (e) {
    throw fromSystemError(e, `writing ${join(dir, name)}`);
  } finally {
    await fh?.close().catch(() => undefined);
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

export function registerExport(admin: Command): void {
  leaf(admin, 'export <dir>', 'write a signed offline export: every selected host\'s bundle and a signed index, for when the server is down')
    .option('--class <class>', 'only the hosts of this hardware class, repeatable', collect)
    .option('--host <id>', 'only this host, repeatable (with --class: the hosts of either)', collect)
    .addHelpText('after', `
Writes DIR/HOST.tar.gz for every selected host (default: every host with a published
bundle): its current composed bundle, exactly as GET /api/v1/hosts/HOST/bundle composes it,
sealed and signed by the server's key for the export time (the manifest's served; no nonce),
and DIR/index.json: the hosts' MACs, DMI UUID and serial, hostnames, class, version, each
bundle's sha256 and size, and the export time, signed by the server's key (with the server's
key statements beside it). Copy DIR to a USB stick, a local disk or an NFS export; a rescue
system applies from it with \`rear-update apply --from DIR [HOST]\` (the boot hook does so by
itself when the server does not answer and REAR_UPDATE_EXPORT names the place).

Each bundle is written to a temporary name, checked against the index, synced and renamed;
an earlier index in DIR is removed first and the new one is written last: an export cut off
(NO_SPACE on a full disk) leaves no index, never one naming a missing or older bundle. Files
are 0600: bundles carry the hosts' configuration, passwords included. docs/export.md.
${SERVER_HELP} An export needs an admin token.

Examples:
  rear-update admin export /media/usb/rear-export
  rear-update admin export /srv/nfs/rear-export --class typeA --host e229`)
    .action(async (dir: string, o: ExportFlags) => {
      const client = api(o);
      const query = { ...(o.class?.length ? { class: o.class } : {}), ...(o.host?.length ? { host: o.host } : {}) };
      const r = await client.request<{ exported: string; index: string; skipped: { host: string; reason: string }[] }>('GET', '/api/v1/export', { query });
      const env = decodeEnvelope(r.body.index);
      const { exported, hosts } = env.index;
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        // An older index would name bundles this export replaces: it goes before the first one does.
        await unlink(join(dir, EXPORT_INDEX_FILE)).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') throw e;
        });
        await fsyncDir(dir);
      } catch (e) {
        throw fromSystemError(e, `preparing ${dir}`);
      }
      for (const h of hosts) {
        const res = await streamGet(client, `/api/v1/export/hosts/${seg(h.id)}/bundle`, { version: String(h.version), exported });
        await writeAtomically(dir, h.file, res, (sha256, size) => {
          if (!res.complete) throw new RuError('SERVER_UNREACHABLE', `${h.id}: the server closed the connection before the end of the bundle`);
          if (sha256 !== h.sha256 || size !== h.size) {
            throw new RuError('EXPORT_TAMPERED', `the bundle the server sent for ${h.id} (${size} bytes, sha256 ${sha256}) is not the one it signed into the index (${h.size} bytes, ${h.sha256}): a new version or layer was published during the export, or the key rotated. Run the export again`, { host: h.id });
          }
        });
      }
      try {
        await fsyncDir(dir);
      } catch (e) {
        throw fromSystemError(e, `syncing ${dir}`);
      }
      await writeAtomically(dir, EXPORT_INDEX_FILE, (async function* () {
        yield Buffer.from(r.body.index);
      })(), () => undefined);
      try {
        await fsyncDir(dir);
      } catch (e) {
        throw fromSystemError(e, `syncing ${dir}`);
      }
      if (o.json) {
        printJson({ dir, exported, key: env.index.key, hosts: hosts.map((h: ExportEntry) => ({ host: h.id, class: h.class, version: h.version, file: h.file, size: h.size, sha256: h.sha256 })), skipped: r.body.skipped });
        return;
      }
      printTable(['HOST', 'CLASS', 'VERSION', 'SIZE', 'FILE'], hosts.map((h) => [h.id, h.class ?? '-', String(h.version), formatBytes(h.size), h.file]), 'no host with a published bundle was selected');
      for (const s of r.body.skipped) note(`skipped ${s.host}: ${s.reason}`);
      out(`exported ${hosts.length} host(s) to ${dir} at ${exported}, signed by ${env.index.key}; apply with: rear-update apply --from ${dir} [HOST]`);
    });
}
