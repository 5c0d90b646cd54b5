// `rear-update keygen`: the signing key pair. The private key stays with whoever packs or
// serves bundles; the .pub goes into every rescue image.

import type { Command } from 'commander';
import { generateKeys, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../adapters/fs/keys.ts';
import { out } from '../output.ts';
import { join } from 'node:path';

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('create an ed25519 signing key pair (PEM): DIR/rear-update.key (0600) and DIR/rear-update.pub')
    .requiredOption('--out <dir>', 'directory for the two files (created 0700 if missing)')
    .option('--force', 'replace an existing key pair (bundles signed by the old key stop verifying)')
    .addHelpText('after', `
The .key file signs bundles (pack --key); keep it private. The .pub file is what apply,
verify and inspect trust (--pubkey, or copy it into /etc/rear-update/keys/). Both are
standard PEM (PKCS#8 / SPKI): \`openssl pkey -pubin -in rear-update.pub -text\` reads them.
The fingerprint printed here is what inspect, verify and status show.`)
    .action((o: { out: string; force?: boolean }) => {
      const k = generateKeys(o.out, o.force === true);
      out(`private key: ${join(o.out, PRIVATE_KEY_FILE)} (keep it secret)`);
      out(`public key:  ${join(o.out, PUBLIC_KEY_FILE)}`);
      out(`fingerprint: ${k.publicKey.fingerprint}`);
    });
}
