// `rear-update log-stream`: sends ReaR's log to the server while `rear recover` runs, as one
// long streamed PUT to the same endpoint DRLM's clients use (/clients/HOST/log/WORKFLOW/STAMP),
// so an admin follows a recovery live with `rear-update admin logs HOST --follow`. The boot
// hook starts it in the background; it waits for a run's log to appear, follows it while a
// `rear` process lives, ends that upload, and waits for the next run. Each upload carries this
// boot's recovery (X-Rear-Update-Recovery, from recovery.json), which links the log to it, and
// heartbeats say the recovery is alive while `rear recover` runs quietly for a long time.

import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { RuError } from '../../core/errors.ts';
import { INSTALLED_FILE } from '../../adapters/rear/boot-hook.ts';
import type { RecoveryReporter } from '../../adapters/http/recovery-reporter.ts';
import { note } from '../output.ts';
import { addServerOptions, clientFrom, type ServerFlags } from '../server-options.ts';
import { duration } from '../server-source.ts';
import { effectiveEnv } from '../settings.ts';
import { reporterFor, reportingOff } from './report.ts';

interface StreamFlags extends ServerFlags {
  dir: string;
  host?: string;
  workflow: string;
  once?: boolean;
  whilePid?: string;
  idle: number;
  root: string;
}

/** Seconds between heartbeats while a run is followed: REAR_UPDATE_HEARTBEAT, default 60. */
function heartbeatMs(env: NodeJS.ProcessEnv = effectiveEnv()): number {
  const s = Number(env.REAR_UPDATE_HEARTBEAT);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 60_000;
}

const POLL_MS = 300;

/** Is a `rear` run going on? Any process with an argument whose last component is `rear`. */
function rearRunning(whilePid: number | null): boolean {
  if (whilePid !== null) return existsSync(`/proc/${whilePid}`);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
      if (args.slice(0, 2).some((a) => a.split('/').pop() === 'rear')) return true;
    } catch {
      // gone
    }
  }
  return false;
}

/** The newest rear-*.log in dir modified at or after `since` (ms). */
function newestLog(dir: string, since: number): string | null {
  let best: { f: string; t: number } | null = null;
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    if (!/^rear-.*\.log$/.test(f)) continue;
    const t = statSync(join(dir, f)).mtimeMs;
    if (t >= since && (!best || t > best.t)) best = { f: join(dir, f), t };
  }
  return best?.f ?? null;
}

const stampOf = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').slice(0, 14);

async function upload(o: StreamFlags, host: string, file: string, reporter: RecoveryReporter | null): Promise<number> {
  const api = clientFrom(o);
  const url = api.url(`/clients/${encodeURIComponent(host)}/log/${encodeURIComponent(o.workflow)}/${stampOf(new Date())}`);
  const lib = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  const req: ClientRequest = lib.request(url, { method: 'PUT', headers: { ...api.headers(), ...reporter?.headers(), 'content-type': 'text/plain' }, ...(api.cacert ? { ca: api.cacert } : {}) });
  const beat = reporter && reporter.id !== null ? setInterval(() => void reporter.heartbeat(), heartbeatMs()).unref() : null;
  const answer = new Promise<IncomingMessage>((resolve, reject) => {
    req.on('response', resolve);
    req.on('error', reject);
  });
  let failed: unknown = null;
  answer.catch((e: unknown) => (failed = e));
  const ino = statSync(file).ino;
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(1 << 16);
  let sent = 0;
  let quietSince = Date.now();
  const whilePid = o.whilePid ? Number(o.whilePid) : null;
  try {
    for (;;) {
      if (failed) throw failed;
      const n = readSync(fd, buf, 0, buf.length, sent);
      if (n > 0) {
        if (!req.write(Buffer.from(buf.subarray(0, n)))) await new Promise<void>((r) => req.once('drain', () => r()));
        sent += n;
        quietSince = Date.now();
        continue;
      }
      const replaced = !existsSync(file) || statSync(file).ino !== ino;
      if (replaced || (!rearRunning(whilePid) && Date.now() - quietSince >= o.idle * 1000)) break;
      await sleep(POLL_MS);
    }
  } finally {
    if (beat) clearInterval(beat);
    closeSync(fd);
    req.end();
  }
  const res = await answer;
  res.resume();
  if ((res.statusCode ?? 0) >= 300) throw new RuError('SERVER_REFUSED', `log upload: HTTP ${res.statusCode}`, { status: res.statusCode ?? 0 });
  return sent;
}

function installedHost(root: string): string | null {
  try {
    return (JSON.parse(readFileSync(join(root, INSTALLED_FILE), 'utf8')) as { host?: string | null }).host ?? null;
  } catch {
    return null;
  }
}

export function registerLogStream(program: Command): void {
  const cmd = program
    .command('log-stream')
    .description('send ReaR\'s log to the server while `rear` runs (the boot hook starts this in the background)');
  addServerOptions(cmd)
    .option('--dir <dir>', 'ReaR\'s log directory', '/var/log/rear')
    .option('--host <id>', 'host the log belongs to (default: the installed bundle\'s host)')
    .option('--workflow <name>', 'workflow named in the upload URL', 'recover')
    .option('--once', 'stop after one log instead of waiting for the next run')
    .option('--while-pid <pid>', 'follow while this process lives, instead of while a `rear` process runs')
    .option('--idle <duration>', 'end an upload once `rear` is gone and the log was quiet this long (seconds or e.g. 2s)', duration, 1)
    .option('--root <dir>', 'the root whose var/lib/rear-update holds installed.json (the host); this boot\'s recovery is the one apply opened for that root (/run/rear-update)', '/')
    .addHelpText('after', `
Each upload names this boot's recovery (the one apply opened on the same server, kept in
/run/rear-update/recovery.json for --root /) in X-Rear-Update-Recovery, which links the
log to it, and sends a heartbeat every 60 s while it follows a run (REAR_UPDATE_HEARTBEAT
seconds to change; REAR_UPDATE_REPORT=0: neither).`)
    .action(async (o: StreamFlags) => {
      const host = o.host ?? installedHost(o.root);
      if (!host) throw new RuError('USAGE', `no --host, and no installed bundle (${INSTALLED_FILE}) names one`);
      const reporter = reportingOff(undefined) ? null : reporterFor(o, o.root, false);
      reporter?.resume();
      let since = Date.now() - 1000;
      for (;;) {
        let file: string | null = null;
        while (!(file = newestLog(o.dir, since))) await sleep(POLL_MS);
        const started = Date.now();
        try {
          const n = await upload(o, host, file, reporter);
          note(`sent ${n} bytes of ${file} to the server as host ${host}'s ${o.workflow} log`);
        } catch (e) {
          note(`log upload of ${file} failed: ${(e as Error).message}`);
        }
        if (o.once) return;
        since = Math.max(started, Date.now());
      }
    });
}
