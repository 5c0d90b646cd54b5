// `rear-update key rotate|retire|show`: key statements for the keys that sign with `pack --key`,
// made offline where those keys live (the server's own key rotates with `admin key rotate`).
// A rotation statement lets every image that trusts the old key accept the new one; admins put
// the .statement file into the images' keys directory or pass it with `apply --statement`.

import type { Command } from 'commander';
import { join } from 'node:path';
import { writeStatementFile, readStatementFile } from '../../adapters/fs/key-statements.ts';
import { generateKeys, loadPrivateKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE } from '../../adapters/fs/keys.ts';
import { encodeStatement, makeRetirement, makeRotation } from '../../core/key-statements.ts';
import { RuError } from '../../core/errors.ts';
import { out, printJson, table } from '../output.ts';

export function registerKey(program: Command): void {
  const key = program
    .command('key')
    .description('key statements for signing keys (pack --key): rotate a key to a new one, retire a key, show a statement')
    .addHelpText('after', `
A key statement is a small JSON file signed by one key: a rotation ("the new key speaks for
me") or a retirement ("this key is no longer trusted"). apply and verify read the *.statement
files of the keys directory (/etc/rear-update/keys) and --statement FILE. The server's own
signing key has its own commands: rear-update admin key rotate|retire|list. Rules, and what
a leaked key can still do: docs/keys.md.

Examples:
  rear-update key rotate --key /etc/rear-update/signing/rear-update.key --out /etc/rear-update/signing-2
  rear-update key retire ed25519:3f9a1c22b07e5d41 --key /etc/rear-update/signing-2/rear-update.key --out .
  rear-update key show /etc/rear-update/signing-2/rotate-3f9a1c22b07e5d41-to-8c0d1e2f3a4b5c6d.statement`);

  key
    .command('rotate')
    .description('make a new key pair in DIR and a rotation statement by which the old key vouches for it')
    .requiredOption('--key <file>', 'the old private key (the one images trust now)')
    .requiredOption('--out <dir>', 'directory for the new pair and the statement (created 0700; never overwritten)')
    .addHelpText('after', `
Writes DIR/rear-update.key (0600), DIR/rear-update.pub and DIR/rotate-OLD-to-NEW.statement.
Sign with the new key from now on (pack --key DIR/rear-update.key); put the statement into
the images' keys directory (or pass it with apply --statement) so images that trust only the
old key accept the new one. Rotate a key ONCE: a key that signed rotations to two different
keys is treated as compromised by every image that sees both statements.`)
    .action((o: { key: string; out: string }) => {
      const old = loadPrivateKey(o.key);
      const nk = generateKeys(o.out, false);
      const path = writeStatementFile(o.out, makeRotation(old, nk.publicKey, new Date()));
      out(`new private key: ${join(o.out, PRIVATE_KEY_FILE)} (keep it secret)`);
      out(`new public key:  ${join(o.out, PUBLIC_KEY_FILE)}`);
      out(`rotation:        ${old.publicKey.fingerprint} -> ${nk.publicKey.fingerprint}`);
      out(`statement:       ${path} (into the images' keys directory, or apply --statement)`);
    });

  key
    .command('retire')
    .argument('<fingerprint>', 'the key to retire, ed25519:<16 hex digits>')
    .description('make a retirement statement, signed by a key images trust, that disowns FINGERPRINT')
    .requiredOption('--key <file>', 'the private key that signs the retirement (e.g. the new key after a rotation)')
    .requiredOption('--out <dir>', 'directory for the statement')
    .addHelpText('after', `
Writes DIR/retire-RETIRED-by-SIGNER.statement. An image counts it when it trusts the signer
without the retired key (pinned, or learned earlier): then bundles signed by the retired key
are refused (KEY_RETIRED) and its statements introduce nothing.`)
    .action((fp: string, o: { key: string; out: string }) => {
      const by = loadPrivateKey(o.key);
      if (by.publicKey.fingerprint === fp) out(`note: ${fp} retires itself`);
      const path = writeStatementFile(o.out, makeRetirement(by, fp, new Date()));
      out(`retirement: ${fp}, signed by ${by.publicKey.fingerprint}`);
      out(`statement:  ${path}`);
    });

  key
    .command('show')
    .argument('<file...>', '.statement files')
    .description('show what key statements say (their signatures are judged by apply and verify)')
    .option('--json', 'print the statements as JSON')
    .action((files: string[], o: { json?: boolean }) => {
      const list = files.map((f) => ({ file: f, statement: readStatementFile(f) }));
      if (o.json) {
        printJson(list.map((x) => ({ file: x.file, ...(JSON.parse(encodeStatement(x.statement)) as object) })));
        return;
      }
      for (const { file, statement: s } of list) {
        const rows = s.kind === 'rotate'
          ? [['kind:', 'rotation'], ['signed by:', s.signer], ['new key:', s.fingerprint], ['from:', s.from]]
          : [['kind:', 'retirement'], ['signed by:', s.signer], ['retired:', s.retired], ['at:', s.at]];
        out(file);
        for (const l of table(rows)) out(`  ${l}`);
      }
      if (list.length === 0) throw new RuError('USAGE', 'no statement files given');
    });
}
