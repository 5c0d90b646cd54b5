// `rear-update admin recoveries` and `admin recovery ID`: every rescue boot that reached the
// server, its phase (or silence), and one recovery's timeline (docs/recoveries.md). The same
// records the web console's incident view shows, for a terminal during a disaster.

import type { Command } from 'commander';
import { INCIDENT_BUCKETS } from '../../../core/recovery.ts';
import type { RecoveryEvent } from '../../../core/store/metadata.ts';
import type { RecoveryView } from '../../../server/recoveries.ts';
import { out, printJson } from '../../output.ts';
import { positiveInt } from '../../options.ts';
import { api, dash, leaf, printTable, seg, SERVER_HELP, time, type AdminFlags } from './common.ts';

interface RecoveriesFlags extends AdminFlags {
  active?: boolean;
  host?: string;
  limit?: number;
  before?: number;
}

/** 95 → 1m35s; 7300 → 2h01m: how long, for a table. */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

/** The phase, and "silent" beside it when an active recovery has given no sign of life for too long. */
const phaseText = (r: RecoveryView): string => (r.silent ? `${r.phase} (silent)` : r.phase);

/** From its start to its end, or to now while it runs. */
const elapsed = (r: RecoveryView, now: number): string => span((r.ended ? Date.parse(r.ended) : now) - Date.parse(r.started));

/** One timeline line's values: the detail's keys, short. */
function detailText(d: Readonly<Record<string, unknown>>): string {
  const parts = Object.entries(d).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  const t = parts.join(' ');
  return t.length > 120 ? `${t.slice(0, 117)}...` : t;
}

interface RecoveriesAnswer {
  recoveries: RecoveryView[];
  counts: Record<string, number>;
  next: number | null;
}

export function registerRecoveries(admin: Command): void {
  leaf(admin, 'recoveries', 'list recoveries (rescue boots that reached the server), newest first, with counts per phase')
    .option('--active', 'only those not yet done or failed')
    .option('--host <id>', 'only recoveries of this host')
    .option('--limit <n>', 'at most this many (default 100, at most 1000)', positiveInt)
    .option('--before <recovery-id>', 'paging: only recoveries older than this id', positiveInt)
    .addHelpText('after', `
A recovery is opened when a rescue system starts apply --server, or when a recovery log
arrives for a host without one. PHASE moves with its events: resolving, pending, assigned,
fetching, applied, recovering, done, failed. An active recovery with no event, heartbeat or log
output for the server's --silent-after (default 5m) is marked "(silent)": look at its console
or its log. LAST EVENT is when its newest event was recorded. The counts line sums the
incident buckets (pending = resolving, pending or assigned). Read one timeline with
rear-update admin recovery ID. A view token (token create --view) is enough.
${SERVER_HELP}

Examples:
  rear-update admin recoveries --active
  rear-update admin recoveries --host e229
  rear-update admin recoveries --json`)
    .action(async (o: RecoveriesFlags) => {
      const r = await api(o).request<RecoveriesAnswer>('GET', '/api/v1/recoveries', {
        query: { active: o.active ? 1 : null, host: o.host ?? null, limit: o.limit ?? null, before: o.before ?? null },
      });
      if (o.json) return printJson(r.body);
      const now = Date.now();
      printTable(['ID', 'HOST', 'PHASE', 'STARTED', 'ELAPSED', 'LAST EVENT', 'PENDING', 'ADDRESS'],
        r.body.recoveries.map((x) => [String(x.id), dash(x.host), phaseText(x), time(x.started), elapsed(x, now), `${time(x.updated)} (${span(now - Date.parse(x.updated))} ago)`, dash(x.pending), dash(x.address)]),
        o.active ? 'no active recoveries' : 'no recoveries recorded');
      out(`counts: ${INCIDENT_BUCKETS.map((b) => `${b} ${r.body.counts[b] ?? 0}`).join(', ')}`);
      if (r.body.next !== null) out(`more: rear-update admin recoveries --before ${r.body.next}`);
    });

  leaf(admin, 'recovery <id>', 'show one recovery and its timeline of events')
    .addHelpText('after', `
Events come from the server (booted, pending, assigned, resolved, log) and from the rescue
system (resolving, fetched, verified, applied, activation, recover-started, finished, failed,
note); ACTOR is the token id that caused each. docs/recoveries.md lists what each carries.
Messages written by a rescue system are its own words: untrusted.
${SERVER_HELP}

Examples:
  rear-update admin recovery 12
  rear-update admin recovery 12 --json`)
    .action(async (id: string, o: AdminFlags) => {
      const r = await api(o).request<{ recovery: RecoveryView; events: RecoveryEvent[] }>('GET', `/api/v1/recoveries/${seg(id)}`);
      if (o.json) return printJson(r.body);
      const x = r.body.recovery;
      const facts = x.facts ? [x.facts.macs.join(',') || null, x.facts.uuid, x.facts.serial, x.facts.hostname].filter(Boolean).join(' ') : '';
      const hw = x.hardware ? `${x.hardware.disks.length} disks, ${x.hardware.nics.length} NICs${x.hardware.cpus !== null ? `, ${x.hardware.cpus} CPUs` : ''}` : '';
      for (const [k, v] of [
        ['recovery', String(x.id)], ['host', dash(x.host)], ['phase', phaseText(x)], ['started', time(x.started)], ['elapsed', elapsed(x, Date.now())],
        ['ended', time(x.ended)], ['last sign', time(x.lastSign)], ['pending', dash(x.pending)], ['log', x.log === null ? '-' : `${x.log} (rear-update admin logs ${x.host ?? 'HOST'} --log ${x.log})`],
        ['exit status', dash(x.exitStatus)], ['error', dash(x.error)], ['address', dash(x.address)], ['token', dash(x.token)], ['facts', dash(facts)], ['hardware', dash(hw)],
      ] as const) out(`${`${k}:`.padEnd(13)}${v}`);
      out();
      printTable(['SEQ', 'TIME', 'EVENT', 'ACTOR', 'MESSAGE', 'DETAIL'],
        r.body.events.map((e) => [String(e.seq), time(e.time), e.kind, dash(e.actor), dash(e.message), dash(detailText(e.detail))]),
        'no events');
    });
}
