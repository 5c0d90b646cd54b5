// `rear-update doctor` (issue 15): what is wrong when a host never shows up. One line per
// check, OK / WARN / FAIL / SKIP, each WARN and FAIL with the command that cures it; --json the
// same as an array. The checks: src/cli/doctor/original.ts (an original system, the default
// role) and src/cli/doctor/server.ts (--role server); judgements: src/core/doctor.ts.

import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { anyFailed, formatResults, type CheckResult } from '../../core/doctor.ts';
import { out, printJson } from '../output.ts';
import { addServerOptions } from '../server-options.ts';
import { originalChecks } from '../doctor/original.ts';
import type { OriginalFlags } from '../doctor/config.ts';

interface DoctorFlags extends OriginalFlags {
  role: 'original' | 'server';
  json?: boolean;
  config?: string;
  data?: string;
  db?: string;
  blobs?: string;
}

const SERVER_ONLY = ['config', 'data', 'db', 'blobs'] as const;
const ORIGINAL_ONLY = ['server', 'token', 'tokenFile', 'cacert', 'host', 'pubkey'] as const;

export function registerDoctor(program: Command): void {
  const cmd = program
    .command('doctor')
    .description('check this original system (or, with --role server, the server) and say what is wrong, each with its fix; exit 1 when anything FAILs')
    .addOption(new Option('--role <role>', 'what this machine is').choices(['original', 'server']).default('original'))
    .option('--json', 'the results as a JSON array of {check, status, detail, fix}');
  addServerOptions(cmd, { serverRequired: false })
    .option('--host <id>', 'this host\'s id on the server (env REAR_UPDATE_HOST; default: the short hostname)')
    .option('--pubkey <file>', 'the server\'s pinned public key (env REAR_UPDATE_PUBKEY; default /etc/rear-update/keys/server.pub, where install-rear pins it)')
    .option('--root <dir>', 'the original system\'s root: every file is read below it', '/')
    .option('--rear-share <dir>', 'ReaR\'s share directory below the root', 'usr/share/rear')
    .option('--config <file>', 'with --role server: the server\'s JSON settings, as serve --config (env REAR_UPDATE_CONFIG)')
    .option('--data <dir>', 'with --role server: the data directory, as serve --data (env REAR_UPDATE_DATA, default ./data)')
    .option('--db <url>', 'with --role server: the PostgreSQL metadata database, as serve --db (env REAR_UPDATE_DB)')
    .option('--blobs <store>', 'with --role server: dir or postgres, as serve --blobs (env REAR_UPDATE_BLOBS)')
    .addHelpText('after', `
On an original system (the default role) it checks, in this order:
  rear            ReaR is installed below --root (usr/sbin/rear, its share directory) and its version
  local.conf      /etc/rear/local.conf is readable
  install-block   install-rear's marked block is in it, and is what install-rear writes now
  server          the server accepts connections
  tls             https, and the certificate verifies with the configured CA (plain http: WARN)
  token           the token works (not unknown, revoked or expired) and may publish this host
                  (scope publish:HOST or admin)
  server-key      the server's key (GET /api/v1/server-key) is the pinned one; a rotation the
                  pinned key signed is a WARN
  last-publish    when the last publish ran and whether it worked (/var/lib/rear-update/publish-state.json)
  server-config   the server's newest version of this host has the content digest of what
                  publish would send now (packed as publish packs it)
  rescue-image    the newest file of ReaR's output (/var/lib/rear/output, and OUTPUT_URL=file://)
                  is newer than the newest change of what publish packs
Its settings come from flags, then the environment, then /etc/rear-update/publish.conf below
--root (REAR_UPDATE_SERVER, REAR_UPDATE_TOKEN_FILE, REAR_UPDATE_CACERT, REAR_UPDATE_HOST,
REAR_UPDATE_PUBKEY); paths from publish.conf are read below --root.

With --role server it reads the server's settings as serve does (--config, the environment,
--data/--db/--blobs) and checks, changing nothing:
  config          the settings are valid
  store           consistent, as serve --check says
  disk-space      the data directory's file system: WARN under 10 % or 1 GiB free, FAIL under 1 % or 100 MiB
  signing-key     DATA/signing/rear-update.key is readable and a key (and not readable by others)
  clock           the system clock is not behind the newest audit record (more than 60 s: FAIL)

Each check prints one line, STATUS  CHECK  DETAIL; a WARN or FAIL has its fix on the next line.
A check that an earlier failure keeps from running is SKIP, with why.
Exit status: 0 when nothing FAILed (WARN and SKIP do not fail), 1 when any check FAILed;
2 for a usage error. docs/doctor.md has every check and its fixes.

Examples:
  rear-update doctor                                       on an original system
  rear-update doctor --json | jq '.[] | select(.status != "OK")'
  rear-update doctor --role server --config /etc/rear-update/server.json`)
    .action(async (o: DoctorFlags, c: Command) => {
      const given = (k: string): boolean => c.getOptionValueSource(k) === 'cli';
      const wrong = (o.role === 'server' ? ORIGINAL_ONLY : SERVER_ONLY).filter(given);
      if (wrong.length) {
        const { RuError } = await import('../../core/errors.ts');
        throw new RuError('USAGE', `--${wrong[0]!.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)} does not go with --role ${o.role}`);
      }
      let results: CheckResult[];
      if (o.role === 'server') {
        const { serverChecks } = await import('../doctor/server.ts');
        results = await serverChecks({ config: o.config, data: o.data, db: o.db, blobs: o.blobs }, () => new Date());
      } else {
        results = await originalChecks({ ...o, root: resolve(o.root) }, new Date());
      }
      if (o.json) printJson(results);
      else for (const l of formatResults(results)) out(l);
      if (anyFailed(results)) process.exitCode = 1;
    });
}
