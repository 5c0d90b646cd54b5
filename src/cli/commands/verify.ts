// `rear-update verify`: exit 0 only if the signature is valid for a trusted key AND every
// member matches the manifest, in one full streaming read. Nothing is written anywhere.

import type { Command } from 'commander';
import { trustedKeys } from '../../core/key-statements.ts';
import { explainRefusal, trustFrom } from '../key-trust.ts';
import { readBundle } from '../../adapters/tar/bundle-reader.ts';
import { isRuError, RuError } from '../../core/errors.ts';
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
    .option('--keys-dir <dir>', 'also trust every *.pub here, moved by its *.statement files (default /etc/rear-update/keys, if it exists)')
    .option('--statement <file>', 'a key statement to consider (rotation or retirement; docs/keys.md), repeatable', collect)
    .addHelpText('after', `
Exit 0: signed by a trusted key, and every member matches the manifest (type, mode, owner,
size, sha256, link target). Otherwise the documented code of the first problem, e.g.
BUNDLE_SIGNATURE_INVALID, BUNDLE_KEY_UNTRUSTED, KEY_RETIRED, BUNDLE_UNSIGNED, BUNDLE_MEMBER_MISMATCH.
A key trusted through a rotation statement (--statement, *.statement in the keys directory)
counts as trusted; a key a trusted key retired does not (KEY_RETIRED).`)
    .action(async (file: string, o: { pubkey?: string[]; keysDir?: string; statement?: string[] }) => {
      const trust = trustFrom(o, [], false);
      const trusted = trustedKeys(trust);
      if (trusted.length === 0) throw new RuError('KEY_NOT_FOUND', 'no trusted keys: pass --pubkey or put *.pub files in the keys directory');
      const r = await readBundle(openFile(file).stream, { trusted, allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS }).catch((e: unknown) => {
        throw isRuError(e) ? explainRefusal(trust, e) : e;
      });
      const bytes = r.entries.reduce((n, e) => n + (e.type === 'file' ? (e.size ?? 0) : 0), 0);
      const key = r.signature.status === 'valid' ? r.signature.key.fingerprint : '?';
      out(`OK ${file}: signature valid (${key}); ${r.entries.length} entries, ${formatBytes(bytes)}, all match the manifest`);
      out(`host ${r.manifest?.host ?? '-'}, version ${r.manifest?.version ?? '-'}, created ${r.manifest?.created ?? '-'}`);
    });
}
