// `rear-update doctor --role server`: the server's side, read from the server's own settings
// exactly as `serve` and `serve --check` read them (--config FILE or REAR_UPDATE_CONFIG, the
// environment, then --data/--db/--blobs flags; src/server/config.ts). It opens the stores as
// `serve --check` does, changing nothing, so it runs beside a running server: the store is
// consistent (store-check.ts, the same check), the data directory's file system has room, the
// signing key is readable, and the clock has not gone backwards (core/doctor.ts says how).

import { existsSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadPrivateKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../adapters/fs/keys.ts';
import { clockVerdict, diskVerdict, fail, ok, resultOf, skip, warn, type CheckResult } from '../../core/doctor.ts';
import { isRuError } from '../../core/errors.ts';
import { parsePublicKey } from '../../core/signature.ts';
import type { MetadataStore } from '../../core/store/metadata.ts';
import type { ConfigFlags, ServerConfig } from '../../server/config.ts';
import type { DataLayout } from '../../server/data-dir.ts';
import { formatBytes } from '../output.ts';

const errText = (e: unknown): string => (isRuError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e));

export async function serverChecks(flags: ConfigFlags, now: () => Date): Promise<CheckResult[]> {
  // Loaded only for this role: the server's modules cost every other command start-up time.
  const { loadConfig } = await import('../../server/config.ts');
  const { layout } = await import('../../server/data-dir.ts');
  let cfg: ServerConfig;
  try {
    cfg = loadConfig(flags);
  } catch (e) {
    const why = 'the server\'s settings are invalid';
    return [
      fail('config', errText(e), 'correct the setting the message names (rear-update serve --help lists them)'),
      skip('store', why), skip('disk-space', why), skip('signing-key', why), skip('clock', why),
    ];
  }
  const data = layout(cfg.data);
  const rs: CheckResult[] = [ok('config', `data ${data.root}, metadata ${cfg.db === null ? 'SQLite' : 'PostgreSQL'}, blobs ${cfg.blobs}${flags.config ?? process.env.REAR_UPDATE_CONFIG ? ` (from ${flags.config ?? process.env.REAR_UPDATE_CONFIG})` : ''}`)];
  const { result, meta } = await checkStoreOf(cfg, data);
  rs.push(result);
  rs.push(checkDisk(data.root));
  rs.push(checkKey(data));
  rs.push(await checkClock(meta, now()));
  await meta?.close();
  return rs;
}

async function checkStoreOf(cfg: ServerConfig, data: DataLayout): Promise<{ result: CheckResult; meta: MetadataStore | null }> {
  const name = 'store';
  if (cfg.db === null && !existsSync(data.database)) {
    return { result: fail(name, `${data.root} holds no rear-update store (no metadata.sqlite)`, `rear-update serve --data ${data.root}   (the first start creates it), or point --data/--config at the store`), meta: null };
  }
  // Through server/main.ts: the rescue executable replaces it (no-server.ts), so the server's
  // modules (fastify, pg, SQLite) stay out of it.
  const { openMetadata, openBlobs, openLogBytes, checkStore } = await import('../../server/main.ts');
  const { DirBlobStore } = await import('../../adapters/storage/dir-blobs.ts');
  let meta: MetadataStore;
  try {
    meta = await openMetadata(cfg, data);
  } catch (e) {
    return { result: fail(name, `the metadata store cannot be opened: ${errText(e)}`, `rear-update serve --check --data ${data.root}`), meta: null };
  }
  // Not openDirBlobs: a check removes nothing (as serve --check).
  const blobs = cfg.blobs === 'postgres' ? await openBlobs(cfg, data) : new DirBlobStore(data.blobs);
  const logs = await openLogBytes(cfg, data);
  try {
    const r = await checkStore({ meta, blobs, data, logs });
    const c = r.counts;
    const counts = `${c.hosts} hosts, ${c.versions} versions, ${c.layerVersions} layer versions, ${c.blobs} blobs (${formatBytes(c.blobBytes)}), ${c.logs} recovery logs`;
    if (!r.ok) {
      return {
        result: fail(name, `${r.errors.length} inconsistenc${r.errors.length === 1 ? 'y' : 'ies'}; first: ${r.errors[0]!.message}`,
          `rear-update serve --check --data ${data.root}   (lists them all; a missing or damaged version's bundle comes back when its host publishes again: rear-update publish on ${r.errors[0]!.host ?? 'that host'})`),
        meta,
      };
    }
    return { result: ok(name, `consistent: ${counts}${r.leftovers.length ? `; ${r.leftovers.length} leftovers of interrupted uploads (the next start removes them)` : ''}`), meta };
  } catch (e) {
    return { result: fail(name, `the check could not run: ${errText(e)}`, `rear-update serve --check --data ${data.root}`), meta };
  } finally {
    await logs.close();
    await blobs.close();
  }
}

function checkDisk(dir: string): CheckResult {
  const name = 'disk-space';
  let st;
  try {
    st = statfsSync(dir);
  } catch (e) {
    return fail(name, `${dir}: ${errText(e)}`, `ls -ld ${dir}`);
  }
  const v = diskVerdict(st.bavail * st.bsize, st.blocks * st.bsize, formatBytes);
  return resultOf(name, { ...v, detail: `${dir}: ${v.detail}` }, `df -h ${dir}; free space there, or move the data directory to a larger file system (serve --data)`);
}

function checkKey(data: DataLayout): CheckResult {
  const name = 'signing-key';
  const file = join(data.keyDir, PRIVATE_KEY_FILE);
  const fix = `restore ${file} from the backup of the data directory (readable by the server's user, mode 0600); a new key would need every rescue image rebuilt: admin key rotate is the way to change it`;
  let key;
  try {
    key = loadPrivateKey(file);
  } catch (e) {
    return fail(name, `${file} is not a usable signing key: ${errText(e)}`, fix);
  }
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) return warn(name, `${key.publicKey.fingerprint}, but ${file} has mode ${mode.toString(8)}: others may read it`, `chmod 0600 ${file}`);
  try {
    const pub = parsePublicKey(readFileSync(data.serverPub, 'utf8'), data.serverPub);
    if (pub.fingerprint !== key.publicKey.fingerprint) {
      return warn(name, `${key.publicKey.fingerprint}, but ${data.serverPub} holds ${pub.fingerprint} (the next start rewrites it)`, `cp ${join(data.keyDir, PUBLIC_KEY_FILE)} ${data.serverPub}`);
    }
  } catch {
    // server.pub is a copy the next start writes again; the key is what matters
  }
  return ok(name, `${key.publicKey.fingerprint} readable in ${file}`);
}

async function checkClock(meta: MetadataStore | null, now: Date): Promise<CheckResult> {
  const name = 'clock';
  if (meta === null) return skip(name, 'the store could not be opened: no stored time to compare with');
  let newest: string | null;
  try {
    newest = (await meta.queryAudit({ limit: 1 }))[0]?.time ?? null;
  } catch (e) {
    return skip(name, `the audit log cannot be read: ${errText(e)}`);
  }
  return resultOf(name, clockVerdict(now, newest), 'timedatectl set-ntp true; timedatectl status   (then check the times of the newest audit records: rear-update admin audit)');
}
