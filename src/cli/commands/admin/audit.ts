// `rear-update admin audit`: who published, fetched, resolved, assigned, pinned, created or
// revoked what, from where, and with which result; newest first.

import { Option, type Command } from 'commander';
import { AUDIT_KINDS, type AuditEvent } from '../../../core/store/metadata.ts';
import { note, printJson } from '../../output.ts';
import { positiveInt } from '../../options.ts';
import { api, dash, leaf, printTable, SERVER_HELP, sinceTime, time, type AdminFlags } from './common.ts';

interface AuditFlags extends AdminFlags {
  host?: string;
  kind?: string;
  tokenId?: string;
  result?: string;
  since?: string;
  until?: string;
  limit?: number;
  before?: number;
}

export function registerAudit(admin: Command): void {
  leaf(admin, 'audit', 'query the audit log (newest first)')
    .option('--host <id>', 'only events of this host')
    .addOption(new Option('--kind <kind>', 'only events of this kind').choices(AUDIT_KINDS))
    .option('--token-id <id>', 'only events of this token (its id, as token list shows it)')
    .option('--result <result>', 'only this result: ok, or an error code such as FORBIDDEN')
    .option('--since <time>', 'only events at or after this time: ISO 8601, or a span back from now (30m, 12h, 7d, 2w)')
    .option('--until <time>', 'only events before this time (same forms as --since)')
    .option('--limit <n>', 'at most this many events (default 100, at most 1000)', positiveInt)
    .option('--before <event-id>', 'paging: only events older than this event id', positiveInt)
    .addHelpText('after', `
Kinds: ${AUDIT_KINDS.join(', ')}. Fetches record the token, address, version, bytes and
result; refusals are recorded with their error code.
${SERVER_HELP}

Examples:
  rear-update admin audit --host e229 --since 7d
  rear-update admin audit --kind fetch --result FORBIDDEN --limit 20
  rear-update admin audit --kind publish --json`)
    .action(async (o: AuditFlags) => {
      const r = await api(o).request<{ events: AuditEvent[]; next: number | null }>('GET', '/api/v1/audit', {
        query: {
          host: o.host, kind: o.kind, token: o.tokenId, result: o.result,
          since: o.since === undefined ? undefined : sinceTime(o.since),
          until: o.until === undefined ? undefined : sinceTime(o.until),
          limit: o.limit, before: o.before,
        },
      });
      if (o.json) return printJson(r.body);
      printTable(['ID', 'TIME', 'KIND', 'HOST', 'VERSION', 'TOKEN', 'ADDRESS', 'BYTES', 'RESULT', 'DETAIL'],
        r.body.events.map((e) => [String(e.id), time(e.time), e.kind, dash(e.host), dash(e.version), dash(e.token), dash(e.address), dash(e.bytes), e.result, dash(e.detail)]),
        'no matching events');
      if (r.body.next !== null) note(`more events: add --before ${r.body.next}`);
    });
}
