// `rear-update serve`: the central server. Its settings are declared once in
// src/server/config.ts (file, then environment, then flags); this only maps them to flags.

import { Option, type Command } from 'commander';
import { SETTINGS } from '../../server/config.ts';
import { note } from '../output.ts';

export function registerServe(program: Command): void {
  const cmd = program
    .command('serve')
    .description('run the server: stores every host\'s bundles, resolves booting machines, signs what it serves; speaks the native API, ReaR\'s RECOVERY_UPDATE_URL and DRLM\'s API')
    .option('--config <file>', 'JSON file of settings (keys as below: data, listen, tlsCert, ...); env REAR_UPDATE_CONFIG');
  for (const s of SETTINGS) {
    cmd.addOption(new Option(s.flag, `${s.help} (env ${s.env}${s.default !== null ? `, default ${s.default}` : ''})`));
  }
  cmd.addHelpText('after', `
First start creates, in the data directory: metadata.sqlite, blobs/, the signing key
(signing/rear-update.key, 0600, never served), server.pub (what rescue images trust; also at
GET /api/v1/server-key) and admin.token (0600). Logs are JSON lines on stdout.

Examples:
  rear-update serve                                  ./data, http://127.0.0.1:8080
  rear-update serve --listen 0.0.0.0:443 --tls-cert cert.pem --tls-key key.pem --data /srv/rear-update
  rear-update admin host add e229 --class typeA --token "$(cat data/admin.token)"`)
    .action(async (o: Record<string, string | undefined>) => {
      // Loaded only when serving: keeps start-up of the other commands fast.
      const { runServe } = await import('../../server/main.ts');
      await runServe(o, (l) => note(l));
    });
}
