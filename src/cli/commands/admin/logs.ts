// `rear-update admin logs HOST`: the recovery logs a host's rescue system streamed to the
// server (ReaR's DRLM log upload), listed, printed, or followed live while `rear recover` runs.

import type { Command } from 'commander';
import { RuError } from '../../../core/errors.ts';
import type { LogRecord } from '../../../core/store/metadata.ts';
import { nonNegativeInt, positiveInt } from '../../options.ts';
import { formatBytes, note, printJson } from '../../output.ts';
import { api, leaf, pipeToStdout, printTable, seg, SERVER_HELP, streamGet, time, type AdminFlags } from './common.ts';

interface LogsFlags extends AdminFlags {
  follow?: boolean;
  log?: number;
  offset?: number;
}

export function registerLogs(admin: Command): void {
  leaf(admin, 'logs <host>', 'list a host\'s recovery logs, print one, or follow one live')
    .option('-f, --follow', 'print the newest log (or --log ID) and keep printing as it grows, until its upload ends or Ctrl-C')
    .option('--log <id>', 'this log instead of the newest (print it; with --follow, follow it)', positiveInt)
    .option('--offset <bytes>', 'start printing at this byte of the log', nonNegativeInt)
    .addHelpText('after', `
Logs arrive by ReaR's DRLM upload (PUT /clients/HOST/log/WORKFLOW/STAMP) while rear recover
runs. The log text goes to stdout as it is, notes to stderr.
${SERVER_HELP}

Examples:
  rear-update admin logs e229                 list (newest first)
  rear-update admin logs e229 --follow        follow the newest log live
  rear-update admin logs e229 --log 12        print log 12 as far as it has arrived`)
    .action(async (host: string, o: LogsFlags) => {
      const client = api(o);
      if (!o.follow && o.log === undefined) {
        const r = await client.request<{ host: string; logs: LogRecord[] }>('GET', `/api/v1/hosts/${seg(host)}/logs`);
        if (o.json) return printJson(r.body);
        printTable(['LOG', 'WORKFLOW', 'STAMP', 'STARTED', 'UPDATED', 'SIZE', 'COMPLETE', 'ADDRESS'],
          r.body.logs.map((l) => [String(l.id), l.workflow, l.stamp, time(l.started), time(l.updated), formatBytes(l.bytes), l.complete ? 'yes' : 'no (still arriving, or broken off)', l.address ?? '-']),
          `host ${r.body.host} has no recovery logs`);
        return;
      }
      let id = o.log;
      if (id === undefined) {
        const r = await client.request<{ logs: LogRecord[] }>('GET', `/api/v1/hosts/${seg(host)}/logs`);
        const newest = r.body.logs[0];
        if (!newest) throw new RuError('LOG_UNKNOWN', `host ${host} has no recovery log yet; one starts when its rescue system runs rear recover with DRLM_MANAGED=y`, { host });
        id = newest.id;
        note(`${o.follow ? 'following' : 'printing'} log ${id} (${newest.workflow} ${newest.stamp}, started ${time(newest.started)})${o.follow ? '; Ctrl-C stops' : ''}`);
      }
      const res = await streamGet(client, `/api/v1/logs/${id}`, { offset: o.offset ?? null, follow: o.follow ? 1 : null });
      const of = String(res.headers['x-rear-update-log-host'] ?? '');
      if (of !== host) {
        res.destroy();
        throw new RuError('LOG_UNKNOWN', `log ${id} belongs to host ${of || '?'}, not ${host}`, { log: id, host });
      }
      await pipeToStdout(res, `log ${id}`);
    });
}
