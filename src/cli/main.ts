// The rear-update command line: the outer ring and a composition root. Each command lives in
// commands/; this file wires them into commander and owns the ONE place where an error becomes
// an exit status and a message (changesets' single top-level catch).
//
// buildProgram() makes the commander program without parsing anything, so that the man pages
// and the bash completion (scripts/man.ts, scripts/completion.ts) are generated from the very
// commands, options and help texts the CLI has. They import this module as a library after
// setting LIBRARY_MODE; every other import of it runs the CLI, as the entry point of the bundle.

import { Command, CommanderError } from 'commander';
import { ERRORS, fromSystemError, isRuError, RuError } from '../core/errors.ts';
import { registerAdmin } from './commands/admin/index.ts';
import { registerApply } from './commands/apply.ts';
import { registerFacts } from './commands/facts.ts';
import { registerInspect } from './commands/inspect.ts';
import { registerKeygen } from './commands/keygen.ts';
import { registerKey } from './commands/key.ts';
import { registerPack } from './commands/pack.ts';
import { registerPublish } from './commands/publish.ts';
import { registerReport } from './commands/report.ts';
import { registerRollback } from './commands/rollback.ts';
import { registerInstallRear } from './commands/install-rear.ts';
import { registerGuard } from './commands/guard.ts';
import { registerLogStream } from './commands/log-stream.ts';
import { registerServe } from './commands/serve.ts';
import { registerStatus } from './commands/status.ts';
import { registerVerify } from './commands/verify.ts';
import { registerDoctor } from './commands/doctor.ts';
import { registerSelfUpdate } from './commands/self-update.ts';
import { VERSION } from './version.ts';

/** Set (to true) on globalThis before importing this module to get buildProgram() without a run. */
export const LIBRARY_MODE = Symbol.for('rear-update.cli.library-mode');

/** The whole command tree; nothing is parsed or run. */
export function buildProgram(): Command {
  const program = new Command('rear-update')
    .description('One ReaR rescue image for a whole fleet: pack a host\'s ReaR configuration into a signed bundle, and install it into a running rescue system, verified and all-or-nothing.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .addHelpText('after', `
Typical use:
  rear-update keygen --out /etc/rear-update/signing          once, on the admin machine
  rear-update pack --key /etc/rear-update/signing/rear-update.key -o e229.tar.gz
  rear-update apply e229.tar.gz --pubkey rear-update.pub     in the rescue system, before rear recover
  rear-update status                                          what is installed, and any drift
  rear-update rollback                                        undo the last apply

Exit status: 0 success; 2 usage; 3 keys; 4 bundle integrity/trust; 5 unsafe member;
6 limit exceeded; 7 network; 8 root/transaction; 9 pack. Every code: docs/errors.md.`);

  registerKeygen(program);
  registerKey(program);
  registerPack(program);
  registerInspect(program);
  registerVerify(program);
  registerApply(program);
  registerRollback(program);
  registerStatus(program);
  registerFacts(program);
  registerServe(program);
  registerAdmin(program);
  registerPublish(program);
  registerInstallRear(program);
  registerLogStream(program);
  registerDoctor(program);
  registerSelfUpdate(program);
  registerReport(program);
  registerGuard(program);
  return program;
}

function report(e: RuError): number {
  process.stderr.write(`rear-update: error ${e.code}: ${e.message}\n`);
  if (process.env.REAR_UPDATE_DEBUG) process.stderr.write(`${JSON.stringify(e.context)}\n`);
  return ERRORS[e.code].exit;
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return ERRORS.USAGE.exit; // commander already printed the message
    }
    if (isRuError(e)) return report(e);
    const err = fromSystemError(e, 'unexpected failure');
    if (err.code === 'INTERNAL' && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return report(err);
  }
}

function run(): void {
  // `rear-update ... | head` closes the pipe early: that is the reader's choice, not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode === undefined ? 0 : Number(process.exitCode));
      throw e;
    });
  }

  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`rear-update: internal error: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

if ((globalThis as Record<symbol, unknown>)[LIBRARY_MODE] !== true) run();
