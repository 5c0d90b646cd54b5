// `rear-update admin pending`, `admin assign` and `admin forget`: machines that asked the server
// who they are and matched no host, the hosts they may be (match hints), and the operator's
// answer. A waiting `apply --server` proceeds once its machine is assigned.

import type { Command } from 'commander';
import type { PendingMachine } from '../../../core/store/metadata.ts';
import type { MatchHint } from '../../../server/recoveries.ts';
import type { ApiClient } from '../../../adapters/http/api-client.ts';
import { out, printJson } from '../../output.ts';
import { api, dash, leaf, printTable, seg, SERVER_HELP, time, type AdminFlags } from './common.ts';

interface PendingFlags extends AdminFlags {
  all?: boolean;
  hints?: boolean;
}

/** Hints are asked per machine: for a flood of made-up machines, only the newest this many. */
const HINTS_FOR = 20;
const TOP = 3;

/** Each listed machine's hints (newest HINTS_FOR machines); a machine whose hints fail gets none. */
async function hintsOf(client: ApiClient, pending: readonly PendingMachine[]): Promise<Map<number, MatchHint[]>> {
  const m = new Map<number, MatchHint[]>();
  await Promise.all(pending.slice(0, HINTS_FOR).map(async (p) => {
    const r = await client.request<{ hints: MatchHint[] }>('GET', `/api/v1/pending/${p.id}/hints`).catch(() => null);
    if (r) m.set(p.id, r.body.hints);
  }));
  return m;
}

const factsText = (p: PendingMachine): string =>
  [p.facts.macs.length ? `MAC ${p.facts.macs.join(',')}` : null, p.facts.uuid ? `UUID ${p.facts.uuid}` : null, p.facts.serial ? `serial ${p.facts.serial}` : null, p.facts.hostname ? `hostname ${p.facts.hostname}` : null].filter(Boolean).join(', ') || 'no facts';

export function registerPending(admin: Command): void {
  leaf(admin, 'pending', 'list machines waiting to be assigned to a host (newest first), with the hosts they may be')
    .option('--all', 'also those already assigned')
    .option('--hints', 'under the table, each machine\'s top hosts with score and reasons')
    .addHelpText('after', `
A rescue system that the server cannot resolve (by MAC, UUID, serial or hostname) is recorded
as pending with its facts, address and the token it asked with; assign it with:
rear-update admin assign ID HOST. New pending machines are bounded per token, per address and
in all (serve --pending-per-token, --pending-per-address, --pending-max): a flood of made-up
machines shows up here under one token or address (revoke the token), and forget removes one.

HINTS are the server's match hints: hosts ranked by how much the machine has in common with
them (its MACs, UUID, serial, hostname, the disks and NICs its rescue system reported against
each host's facts and the disks of its published disklayout.conf, the class of the token it
asked with), score 0..100, top ${TOP}. They are advice: assigning stays your decision. --hints
prints the reasons (for the newest ${HINTS_FOR} machines). A view token is enough to list.
${SERVER_HELP}

Examples:
  rear-update admin pending
  rear-update admin pending --hints
  rear-update admin pending --all --json`)
    .action(async (o: PendingFlags) => {
      const client = api(o);
      const r = await client.request<{ pending: PendingMachine[] }>('GET', '/api/v1/pending', { query: { all: o.all ? 1 : null } });
      const waiting = r.body.pending.filter((p) => p.assignedHost === null);
      if (o.json && !o.hints) return printJson(r.body);
      const hints = await hintsOf(client, waiting);
      if (o.json) return printJson({ ...r.body, hints: Object.fromEntries(hints) });
      const cols = ['ID', 'MACS', 'UUID', 'SERIAL', 'HOSTNAME', 'ADDRESS', 'FIRST SEEN', 'LAST SEEN', 'TOKEN', ...(o.all ? ['ASSIGNED'] : []), 'HINTS'];
      const top = (p: PendingMachine): string => {
        const h = hints.get(p.id);
        return h === undefined ? '-' : h.length === 0 ? 'none' : h.slice(0, TOP).map((x) => `${x.host} (${x.score})`).join(', ');
      };
      printTable(cols, r.body.pending.map((p) => [
        String(p.id), dash(p.facts.macs), dash(p.facts.uuid), dash(p.facts.serial), dash(p.facts.hostname), dash(p.address), time(p.firstSeen), time(p.lastSeen), dash(p.token),
        ...(o.all ? [p.assignedHost ? `${p.assignedHost} at ${time(p.assigned)}` : '-'] : []), p.assignedHost === null ? top(p) : '-',
      ]), o.all ? 'no pending machines recorded' : 'no machine is waiting for an assignment');
      if (!o.hints) return;
      for (const p of waiting) {
        const h = hints.get(p.id);
        if (h === undefined) continue;
        out();
        out(`pending machine ${p.id} (${factsText(p)}):`);
        if (h.length === 0) out('  no host has anything in common with it');
        for (const x of h.slice(0, TOP)) out(`  ${x.host} (${x.score}): ${x.reasons.join('; ')}`);
      }
    });

  leaf(admin, 'assign <pending> <host>', 'assign a pending machine (its id, or one of its MAC addresses) to a host')
    .addHelpText('after', `
With a MAC address, the newest unassigned pending machine reporting it is assigned. The
machine's waiting apply resolves to the host on its next poll. The host must exist. Needs an
operate or admin token (token create --operate); audited, and recorded as "assigned" in the
machine's recovery. See admin pending --hints for the hosts it may be.
${SERVER_HELP}

Examples:
  rear-update admin assign 7 e229
  rear-update admin assign 52:54:00:12:34:56 e229`)
    .action(async (pending: string, host: string, o: PendingFlags) => {
      const r = await api(o).request<{ pending: PendingMachine }>('POST', '/api/v1/assign', { body: { pending, host } });
      if (o.json) return printJson(r.body);
      const p = r.body.pending;
      out(`pending machine ${p.id} (${factsText(p)}) assigned to ${p.assignedHost}`);
    });

  leaf(admin, 'forget <pending-id>', 'forget a pending machine: remove its record (a machine asking again is recorded anew)')
    .addHelpText('after', `
For records nobody will assign: a machine that was switched off, a test boot, a made-up
machine of a flood. A machine that asks again after this gets a new pending id. The recovery
it belonged to notes that it was forgotten. Needs an operate or admin token; audited (kind
pending).
${SERVER_HELP}

Examples:
  rear-update admin forget 7
  rear-update admin forget 7 --json`)
    .action(async (id: string, o: PendingFlags) => {
      const r = await api(o).request<{ pending: PendingMachine }>('DELETE', `/api/v1/pending/${seg(id)}`);
      if (o.json) return printJson(r.body);
      out(`pending machine ${r.body.pending.id} (${factsText(r.body.pending)}) forgotten`);
    });
}
