// "The install-rear block is current" means: what install-rear would write into local.conf now
// equals what is there. install.ts builds that block inside installRear and does not export it,
// so this asks installRear itself — on a scratch tree holding only what it needs (an empty
// local.conf, a skeleton of ReaR's share directory, an empty executable) — and takes the block
// it wrote. No second copy of the block's lines can drift from the real one. The extra files it
// names in COPY_AS_IS (ca.pem with --cacert), and whether it adds the publish hook, are as the
// last install recorded them.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONF_DIR, installedWithPublish, installRear, LOCAL_CONF, RECORD, SETTINGS } from '../../adapters/rear/install.ts';

/** The files below /etc/rear-update that the last install-rear put there besides its settings (e.g. ca.pem). */
function extraNames(root: string): string[] {
  let files: string[] = [];
  try {
    files = (JSON.parse(readFileSync(join(root, RECORD), 'utf8')) as { files?: unknown }).files as string[];
  } catch {
    return [];
  }
  if (!Array.isArray(files)) return [];
  const prefix = `${CONF_DIR}/`;
  return files
    .filter((f): f is string => typeof f === 'string' && f.startsWith(prefix) && !f.slice(prefix.length).includes('/') && f !== SETTINGS && f !== RECORD)
    .map((f) => f.slice(prefix.length));
}

/** The block (from its BEGIN line to its END line, with the final newline) install-rear writes now. */
export function expectedInstallBlock(root: string): string {
  const scratch = mkdtempSync(join(tmpdir(), 'rear-update-doctor-'));
  try {
    const share = 'usr/share/rear';
    mkdirSync(join(scratch, share, 'skel/default'), { recursive: true });
    mkdirSync(join(scratch, share, 'conf'), { recursive: true });
    writeFileSync(join(scratch, share, 'conf/default.conf'), '');
    writeFileSync(join(scratch, 'exe'), '');
    installRear({ root: scratch, share, exe: join(scratch, 'exe'), keys: [], settings: '', extra: extraNames(root).map((name) => ({ name, data: '' })), publish: installedWithPublish(root) });
    return readFileSync(join(scratch, LOCAL_CONF), 'utf8');
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The block is in `text` exactly as `expected` has it, as whole lines. */
export const blockIsCurrent = (text: string, expected: string): boolean => `\n${text.endsWith('\n') ? text : `${text}\n`}`.includes(`\n${expected}`);

/** Lines of the expected block that `text` lacks (for the detail of a stale block). */
export function missingLines(text: string, expected: string): string[] {
  const have = new Set(text.split('\n'));
  return expected.split('\n').filter((l) => l !== '' && !have.has(l));
}
