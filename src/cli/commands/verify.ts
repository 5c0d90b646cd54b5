// `rear-update verify`: exit 0 only if the signature is valid for a trusted key AND every
// member matches the manifest, in one full streaming read. Nothing is written anywhere.

import type { Command } from 'commander';
import { loadTrustedKeys } from '../../adapters/fs/keys.ts';
import { readBundle } from '../../adapters/tar/bundle-reader.ts';
import { RuError } from '../../core/errors.ts';
import { DEFAULT_LIMITS } from '../../core/policy.ts';
import { collect } from '../options.ts';
import { formatBytes, out } from '../output.ts';
import { openFile } from '../source.ts';

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .argument('<file>', 'the bundle to check')
    .description('check a bundle\'s signature against trusted keys and every member against its manifest')
    .option('--pubkey <file>', 'a trusted public key, repeatable', collect)
    .option('--keys-dir <dir>', 'also trust every *.pub here (default /etc/rear-update/keys, if it exists)')
    .addHelpText('after', `
Exit 0: signed by a trusted key, and every member matches the manifest (type, mode, owner,
size, sha256, link target). Otherwise the documented code of the first problem, e.g.
BUNDLE_SIGNATURE_INVALID, BUNDLE_KEY_UNTRUSTED, BUNDLE_UNSIGNED, BUNDLE_MEMBER_MISMATCH.`)
    .action(async (file: string, o: { pubkey?: string[]; keysDir?: string }) => {
      const trusted = loadTrustedKeys(o.pubkey ?? [], o.keysDir);
      if (trusted.length === 0) throw new RuError('KEY_NOT_FOUND', 'no trusted keys: pass --pubkey or put *.pub files in the keys directory');
      const r = await readBundle(openFile(file).stream, { trusted, allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS });
      const bytes = r.entries.reduce((n, e) => n + (e.type === 'file' ? (e.size ?? 0) : 0), 0);
      const key = r.signature.status === 'valid' ? r.signature.key.fingerprint : '?';
      out(`OK ${file}: signature valid (${key}); ${r.entries.length} entries, ${formatBytes(bytes)}, all match the manifest`);
      out(`host ${r.manifest?.host ?? '-'}, version ${r.manifest?.version ?? '-'}, created ${r.manifest?.created ?? '-'}`);
    });
}
