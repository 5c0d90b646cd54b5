// `rear-update serve`: the central server. Its settings are declared once in
// src/server/config.ts (file, then environment, then flags); this only maps them to flags.

import { Option, type Command } from 'commander';
import { SETTINGS } from '../../server/config.ts';
import { RuError } from '../../core/errors.ts';
import { note, out } from '../output.ts';

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('run the server: stores every host\'s bundles, resolves booting machines, signs what it serves; speaks the native API, ReaR\'s RECOVERY_UPDATE_URL and DRLM\'s API')
    .option('--config <file>', 'JSON file of settings (keys as below: data, listen, tlsCert, ...); env REAR_UPDATE_CONFIG')
    .option('--check', 'do not serve: check the store in --data for consistency and exit (0: consistent; 8: STORE_INCONSISTENT)')
    .option('--json', 'with --check: the report as JSON');
  for (const s of SETTINGS) {
    cmd.addOption(new Option(s.flag, `${s.help} (env ${s.env}${s.default !== null ? `, default ${s.default}` : ''})`));
  }
  cmd.addHelpText('after', `
First start creates, in the data directory: metadata.sqlite (unless --db names a PostgreSQL
database, which then holds the metadata: docs/storage.md), blobs/, the signing key
(signing/rear-update.key, 0600, never served), server.pub (what rescue images trust; also at
GET /api/v1/server-key) and admin.token (0600). Logs are JSON lines on stdout. Every start
removes what interrupted publishes left (partial blobs, blobs no version names).
The signing key rotates with \`rear-update admin key rotate\` (no restart; former keys and
key statements stay in signing/; docs/keys.md).

--check verifies, without serving and without changing anything: every version's blob exists
with its recorded size and sha256, each host's versions are numbered 1..n, pins name a version,
id sequences are ahead of their ids, the database's own integrity checks hold, and each
recovery log's file holds the bytes its record counts. Leftovers of interrupted uploads are
listed, not errors.

Examples:
  rear-update serve                                  ./data, http://127.0.0.1:8080
  rear-update serve --listen 0.0.0.0:443 --tls-cert cert.pem --tls-key key.pem --data /srv/rear-update
  rear-update serve --idle-timeout 30s --max-connections-per-address 16
  rear-update serve --check --data /srv/rear-update      after a crash, or from cron
  rear-update admin host add e229 --class typeA --token "$(cat data/admin.token)"`)
    .action(async (o: Record<string, string | boolean | undefined>) => {
      const { check, json, ...settings } = o;
      // Loaded only when serving: keeps start-up of the other commands fast.
      const server = await import('../../server/main.ts');
      if (check) {
        await server.runCheck(settings as Record<string, string | undefined>, { json: json === true }, out);
        return;
      }
      if (json) throw new RuError('USAGE', '--json goes with --check');
      await server.runServe(settings as Record<string, string | undefined>, (l) => note(l));
    });
}
