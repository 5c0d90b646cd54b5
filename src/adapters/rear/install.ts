// What install-rear puts on the original (or template) system so that the next
// `rear mkrescue` carries rear-update into the rescue image, using ReaR's own mechanisms only:
//   /usr/local/sbin/rear-update          the one-file executable   (REQUIRED_PROGS)
//   /etc/rear-update/keys/*.pub          the keys apply trusts      (COPY_AS_IS, that dir only)
//   /etc/rear-update/settings.conf       server, token, id source   (COPY_AS_IS, that file; 0600)
//   SHARE/skel/default/etc/scripts/system-setup.d/90-rear-update.sh  the boot hook (ReaR's skeleton)
//   SHARE/skel/default/etc/scripts/system-setup.d/43-rear-update-media.sh  layers from local media, before networking
//   SHARE/init/default/015_rear_update.sh  `rear recover ID=HOST`, and recovery reports (ReaR's init stage)
//   /etc/rear/local.conf                 a marked block adding the two arrays above and, with
//                                        publish, an exit task that runs `rear-update publish`
//                                        after a successful mkbackup/mkrescue (publish-hook.ts)
// Every step is idempotent; a record of what was installed lets --uninstall remove exactly it.

import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { RuError } from '../../core/errors.ts';
import { hasBlock, withBlock, withoutBlock } from '../../core/marked-block.ts';
import type { PublicKey } from '../../core/signature.ts';
import { BOOT_HOOK, HOOK_NAME, INIT_SCRIPT, INIT_SCRIPT_NAME, MEDIA_HOOK, MEDIA_HOOK_NAME } from './boot-hook.ts';
import { publishHookLines } from './publish-hook.ts';

export const EXE_PATH = 'usr/local/sbin/rear-update';
export const CONF_DIR = 'etc/rear-update';
export const KEYS_DIR = `${CONF_DIR}/keys`;
export const SETTINGS = `${CONF_DIR}/settings.conf`;
export const RECORD = `${CONF_DIR}/install-rear.json`;
export const LOCAL_CONF = 'etc/rear/local.conf';
export const INSTALL_BLOCK = 'install-rear';

export interface InstallPlan {
  readonly root: string;
  /** ReaR's share directory below the root, normally usr/share/rear. */
  readonly share: string;
  readonly exe: string;
  readonly keys: readonly { readonly name: string; readonly pem: string; readonly key: PublicKey }[];
  readonly settings: string;
  /** Further files below /etc/rear-update (e.g. ca.pem), relative to it. */
  readonly extra?: readonly { readonly name: string; readonly data: string }[];
  /** Publish after each successful mkbackup/mkrescue; undefined: as the previous install had it. */
  readonly publish?: boolean;
}

interface Record_ {
  readonly files: string[];
  readonly dirs: string[];
  /** The block runs publish after mkbackup/mkrescue (absent in records of older installs: no). */
  readonly publish?: boolean;
}

const hookPath = (share: string, name = HOOK_NAME): string => `${share}/skel/default/etc/scripts/system-setup.d/${name}`;
const initPath = (share: string): string => `${share}/init/default/${INIT_SCRIPT_NAME}`;

/** Writes by temporary file and rename, so a reader (or a crash) never sees half a file. */
function put(root: string, rel: string, data: string | Buffer, mode: number): void {
  const abs = join(root, rel);
  const tmp = `${abs}.rear-update-tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, abs);
}

function mkdirs(root: string, rel: string, made: string[]): void {
  const parts = rel.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const p = parts.slice(0, i).join('/');
    if (!existsSync(join(root, p))) {
      mkdirSync(join(root, p), { mode: 0o755 });
      made.push(p);
    }
  }
}

export function checkShare(root: string, share: string): void {
  if (!existsSync(join(root, share, 'skel/default')) || !existsSync(join(root, share, 'conf/default.conf'))) {
    throw new RuError('USAGE', `${join(root, share)} is not ReaR's share directory (no skel/default, conf/default.conf): is ReaR installed? (apt-get install rear)`);
  }
}

export function installRear(p: InstallPlan): { installed: string[]; block: string[]; publish: boolean } {
  checkShare(p.root, p.share);
  const prev = readRecord(p.root);
  const dirs = [...(prev?.dirs ?? [])];
  const files = new Set(prev?.files ?? []);
  const add = (rel: string, data: string | Buffer, mode: number): void => {
    mkdirs(p.root, dirname(rel), dirs);
    put(p.root, rel, data, mode);
    files.add(rel);
  };
  // The image must never carry a private key: refuse a keys directory holding one.
  const keysAbs = join(p.root, KEYS_DIR);
  if (existsSync(keysAbs)) {
    for (const f of readdirSync(keysAbs)) {
      if (/PRIVATE KEY/.test(readFileSync(join(keysAbs, f), 'utf8'))) {
        throw new RuError('KEY_INVALID', `${join(keysAbs, f)} is a private key; the rescue image would carry it. Remove it (only *.pub belongs there).`, { path: join(keysAbs, f) });
      }
    }
  }
  add(EXE_PATH, readFileSync(p.exe), 0o755);
  for (const k of p.keys) add(`${KEYS_DIR}/${k.name}`, k.pem, 0o644);
  add(SETTINGS, p.settings, 0o600);
  for (const x of p.extra ?? []) add(`${CONF_DIR}/${x.name}`, x.data, 0o644);
  add(hookPath(p.share), BOOT_HOOK, 0o644);
  add(hookPath(p.share, MEDIA_HOOK_NAME), MEDIA_HOOK, 0o644);
  add(initPath(p.share), INIT_SCRIPT, 0o644);
  // Named files only, never the whole /etc/rear-update: an admin may keep a signing key in
  // there (keygen --out /etc/rear-update/signing), and the image must not carry it.
  const block = [
    `REQUIRED_PROGS+=( /${EXE_PATH} )`,
    // Layers with modules run depmod in the rescue system (ReaR copies modprobe, not depmod).
    'PROGS+=( depmod )',
    `COPY_AS_IS+=( ${[`/${KEYS_DIR}`, `/${SETTINGS}`, ...(p.extra ?? []).map((x) => `/${CONF_DIR}/${x.name}`)].join(' ')} )`,
  ];
  const publish = p.publish ?? prev?.publish ?? false;
  if (publish) block.push(...publishHookLines(`/${EXE_PATH}`));
  const confAbs = join(p.root, LOCAL_CONF);
  const before = existsSync(confAbs) ? readFileSync(confAbs, 'utf8') : '';
  mkdirs(p.root, dirname(LOCAL_CONF), dirs);
  put(p.root, LOCAL_CONF, withBlock(before, INSTALL_BLOCK, 'managed by `rear-update install-rear`; remove with `rear-update install-rear --uninstall`', block), existsSync(confAbs) ? statSync(confAbs).mode & 0o7777 : 0o644);
  const rec: Record_ = { files: [...files].sort(), dirs, publish };
  put(p.root, RECORD, `${JSON.stringify(rec, null, 2)}\n`, 0o644);
  return { installed: [...rec.files, RECORD], block, publish };
}

/** Whether the last install-rear under `root` added the publish hook (doctor rebuilds the block with it). */
export const installedWithPublish = (root: string): boolean => readRecord(root)?.publish === true;

function readRecord(root: string): Record_ | null {
  try {
    return JSON.parse(readFileSync(join(root, RECORD), 'utf8')) as Record_;
  } catch {
    return null;
  }
}

/** Removes what installRear wrote (its record says what), and the block in local.conf. */
export function uninstallRear(root: string): string[] {
  const rec = readRecord(root);
  const removed: string[] = [];
  const confAbs = join(root, LOCAL_CONF);
  if (existsSync(confAbs)) {
    const text = readFileSync(confAbs, 'utf8');
    if (hasBlock(text, INSTALL_BLOCK)) {
      put(root, LOCAL_CONF, withoutBlock(text, INSTALL_BLOCK), statSync(confAbs).mode & 0o7777);
      removed.push(`${LOCAL_CONF} (block)`);
    }
  }
  if (!rec) return removed;
  for (const f of [...rec.files, RECORD]) {
    if (existsSync(join(root, f))) {
      rmSync(join(root, f), { force: true });
      removed.push(f);
    }
  }
  // Directories it created, deepest first, only if now empty.
  for (const d of [...rec.dirs].sort((a, b) => b.length - a.length)) {
    try {
      rmdirSync(join(root, d));
      removed.push(`${d}/`);
    } catch {
      // not empty: something else lives there now
    }
  }
  return removed;
}

