// `rear-update report KIND`: one event of this boot's recovery, for shell hooks (the boot hook's
// "continue without the update", ReaR's init script for `recover-started` and, as an exit task,
// `finished`). The recovery is the one apply opened (/run/rear-update/recovery.json: a recovery is one boot's); without
// one it opens it. A hook must never fail because a report did: it warns and exits 0; only a
// wrong command line is an error. Also home of what apply and log-stream share about reporting:
// whether it is on, and the reporter for a server.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { observeHardware, readMachineFacts } from '../../adapters/fs/machine-facts.ts';
import { readRecoveryRecord, RecoveryReporter } from '../../adapters/http/recovery-reporter.ts';
import { RuError } from '../../core/errors.ts';
import { REPORTED_KINDS, type RecoveryEventKind } from '../../core/recovery.ts';
import { note } from '../output.ts';
import { addServerOptions, serverFrom, tokenFrom, type ServerFlags } from '../server-options.ts';
import { effectiveEnv, factSettings } from '../settings.ts';

/** --no-report, or REAR_UPDATE_REPORT=0 (no, false, off): nothing is reported. */
export function reportingOff(flag: boolean | undefined, env: NodeJS.ProcessEnv = effectiveEnv()): boolean {
  return flag === false || /^(0|no|false|off)$/i.test(env.REAR_UPDATE_REPORT?.trim() ?? '');
}

/**
 * The reporter for the server of the flags and environment; with `orRecorded`, else for the
 * server recovery.json names (ReaR's `rear recover` runs without the boot hook's environment).
 * Null when there is no server. Never throws: an unreadable --cacert is the request's problem.
 */
export function reporterFor(o: ServerFlags, root: string, orRecorded: boolean, env: NodeJS.ProcessEnv = effectiveEnv()): RecoveryReporter | null {
  const server = serverFrom(o, env) ?? (orRecorded ? readRecoveryRecord(root)?.server ?? null : null);
  if (!server) return null;
  let cacert: string | null = null;
  const caFile = o.cacert ?? env.REAR_UPDATE_CACERT;
  try {
    if (caFile) cacert = readFileSync(caFile, 'utf8');
  } catch {
    // the report then fails as any request would, with one warning
  }
  let token: string | null = null;
  try {
    token = tokenFrom(o, env);
  } catch {
    // an unreadable --token-file: the server refuses, with one warning
  }
  try {
    return new RecoveryReporter({ server, token, cacert, root });
  } catch {
    return null; // not a URL: apply says so itself
  }
}

interface ReportFlags extends ServerFlags {
  root: string;
  sysRoot: string;
  message?: string;
  exitStatus?: number;
  code?: string;
}

const exitStatus = (v: string): number => {
  if (!/^\d{1,3}$/.test(v) || Number(v) > 255) throw new InvalidArgumentError('expected an exit status, 0 to 255');
  return Number(v);
};

const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

export async function report(kind: string, o: ReportFlags): Promise<void> {
  if (!(REPORTED_KINDS as readonly string[]).includes(kind)) throw new RuError('USAGE', `${kind}: not an event a rescue system reports (one of ${REPORTED_KINDS.join(', ')})`);
  if (kind === 'finished' && o.exitStatus === undefined) throw new RuError('USAGE', 'finished needs --exit-status (rear recover\'s exit status)');
  if (o.code !== undefined && !CODE.test(o.code)) throw new RuError('USAGE', `--code ${o.code}: expected an error code such as HOST_PENDING`);
  if (reportingOff(undefined)) return;
  const reporter = reporterFor(o, o.root, true);
  if (!reporter) {
    note(`no server configured (--server, REAR_UPDATE_SERVER) and no recovery recorded: ${kind} is not reported`);
    return;
  }
  // The recovery apply opened; a hook that runs before any apply (rear recover ID=HOST) opens it.
  await reporter.open(readMachineFacts(o.sysRoot, factSettings({})), observeHardware(o.sysRoot));
  const detail = { ...(o.exitStatus !== undefined ? { exitStatus: o.exitStatus } : {}), ...(o.code !== undefined ? { code: o.code } : {}) };
  await reporter.event(kind as RecoveryEventKind, {
    ...(o.message !== undefined ? { message: o.message } : {}),
    ...(Object.keys(detail).length ? { detail } : {}),
    ...(o.exitStatus !== undefined ? { exitStatus: o.exitStatus } : {}),
    ...(o.code !== undefined ? { error: o.code } : {}),
  });
}

export function registerReport(program: Command): void {
  const cmd = program
    .command('report')
    .argument('<kind>', `the event: ${REPORTED_KINDS.join(', ')}`)
    .description('report one event of this boot\'s recovery to the server (for shell hooks); never fails because the report did');
  addServerOptions(cmd, { serverRequired: false })
    .option('--message <text>', 'one line for the recovery\'s timeline')
    .option('--exit-status <n>', 'rear recover\'s exit status (finished; required there)', exitStatus)
    .option('--code <code>', 'the error code (failed)')
    .option('--root <dir>', 'the root apply worked on: its recovery of this boot is named in /run/rear-update (recovery.json for /)', '/')
    .option('--sys-root <dir>', 'read this machine\'s facts and hardware below this directory when a recovery must be opened', '/')
    .addHelpText('after', `
The recovery is the one \`rear-update apply\` opened in this boot on the same server
(/run/rear-update/recovery.json for --root /); without one, report opens one with this
machine's facts and hardware. The server is --server or REAR_UPDATE_SERVER (settings.conf),
else the one recovery.json names; the token REAR_UPDATE_TOKEN's.

A report that cannot be delivered (no server, no answer within 5 s, an older server without
recoveries) prints one warning and is dropped: the exit status is 0 all the same, so a hook
never fails because of it. 2 only for a wrong command line. REAR_UPDATE_REPORT=0 turns
reporting off. docs/recoveries.md lists the events.

Examples:
  rear-update report note --message "operator continues without the update"
  rear-update report recover-started
  rear-update report finished --exit-status 0
  rear-update report failed --code HOST_PENDING --message "nobody assigned this machine"`)
    .action((kind: string, o: ReportFlags) => report(kind, o));
}
