// `rear-update admin ...`: the server's admin API from the command line. One file per noun;
// every leaf takes --server/--token (or the environment) and --json.

import type { Command } from 'commander';
import { registerAudit } from './audit.ts';
import { registerExport } from './export.ts';
import { registerFsck } from './fsck.ts';
import { registerHost } from './host.ts';
import { registerKey } from './key.ts';
import { registerLayers } from './layers.ts';
import { registerLogs } from './logs.ts';
import { registerPending } from './pending.ts';
import { registerRecoveries } from './recoveries.ts';
import { registerToken } from './token.ts';
import { registerVersions } from './versions.ts';

export function registerAdmin(program: Command): void {
  const admin = program
    .command('admin')
    .description('administer a rear-update server: hosts, tokens, pending machines, recoveries, versions, audit, recovery logs, signing keys')
    .addHelpText('after', `
Every subcommand needs the server and a token: --server URL --token T (or --token-file
DATA/admin.token), or REAR_UPDATE_SERVER and REAR_UPDATE_TOKEN. Reading needs a view token (or
operate, or admin), assign and forget an operate token, every other change an admin token.
Output is a table, or JSON with --json. Run any subcommand with --help for its examples.

Examples:
  export REAR_UPDATE_SERVER=https://rear-server:8443 REAR_UPDATE_TOKEN=$(cat data/admin.token)
  rear-update admin host add e229 --class typeA --mac 52:54:00:12:34:56
  rear-update admin token create --publish e229 --label "cron on e229"
  rear-update admin token create --fetch-class typeA --label "typeA rescue ISO"
  rear-update admin token create --operate --label "on-call" --expires 12h
  rear-update admin recoveries --active          rescue boots under way, and silent ones
  rear-update admin recovery 12                  one recovery's timeline
  rear-update admin pending --hints              machines waiting to be assigned, and who they may be
  rear-update admin assign 7 e229
  rear-update admin forget 8
  rear-update admin versions e229
  rear-update admin diff e229 3 4
  rear-update admin pin e229 3
  rear-update admin audit --host e229 --since 7d
  rear-update admin logs e229 --follow
  rear-update admin key rotate                   a new signing key, vouched for by the old one`);
  registerHost(admin);
  registerToken(admin);
  registerPending(admin);
  registerRecoveries(admin);
  registerVersions(admin);
  registerLayers(admin);
  registerAudit(admin);
  registerLogs(admin);
  registerKey(admin);
  registerExport(admin);
  registerFsck(admin);
}
