// `rear-update admin pending` and `admin assign`: machines that asked the server who they are
// and matched no host, and the admin's answer. A waiting `apply --server` proceeds once its
// machine is assigned.

import type { Command } from 'commander';
import type { PendingMachine } from '../../../core/store/metadata.ts';
import { out, printJson } from '../../output.ts';
import { api, dash, leaf, printTable, SERVER_HELP, time, type AdminFlags } from './common.ts';

interface PendingFlags extends AdminFlags {
  all?: boolean;
}

export function registerPending(admin: Command): void {
  leaf(admin, 'pending', 'list machines waiting to be assigned to a host (newest first)')
    .option('--all', 'also those already assigned')
    .addHelpText('after', `
A rescue system that the server cannot resolve (by MAC, UUID, serial or hostname) is recorded
as pending with its facts, address and the token it asked with; assign it with:
rear-update admin assign ID HOST. New pending machines are bounded per token, per address and
in all (serve --pending-per-token, --pending-per-address, --pending-max): a flood of made-up
machines shows up here under one token or address (revoke the token).
${SERVER_HELP}

Examples:
  rear-update admin pending
  rear-update admin pending --all --json`)
    .action(async (o: PendingFlags) => {
      const r = await api(o).request<{ pending: PendingMachine[] }>('GET', '/api/v1/pending', { query: { all: o.all ? 1 : null } });
      if (o.json) return printJson(r.body);
      const cols = ['ID', 'MACS', 'UUID', 'SERIAL', 'HOSTNAME', 'ADDRESS', 'FIRST SEEN', 'LAST SEEN', 'TOKEN', ...(o.all ? ['ASSIGNED'] : [])];
      printTable(cols, r.body.pending.map((p) => [
        String(p.id), dash(p.facts.macs), dash(p.facts.uuid), dash(p.facts.serial), dash(p.facts.hostname), dash(p.address), time(p.firstSeen), time(p.lastSeen), dash(p.token),
        ...(o.all ? [p.assignedHost ? `${p.assignedHost} at ${time(p.assigned)}` : '-'] : []),
      ]), o.all ? 'no pending machines recorded' : 'no machine is waiting for an assignment');
    });

  leaf(admin, 'assign <pending> <host>', 'assign a pending machine (its id, or one of its MAC addresses) to a host')
    .addHelpText('after', `
With a MAC address, the newest unassigned pending machine reporting it is assigned. The
machine's waiting apply resolves to the host on its next poll. The host must exist.
${SERVER_HELP}

Examples:
  rear-update admin assign 7 e229
  rear-update admin assign 52:54:00:12:34:56 e229`)
    .action(async (pending: string, host: string, o: PendingFlags) => {
      const r = await api(o).request<{ pending: PendingMachine }>('POST', '/api/v1/assign', { body: { pending, host } });
      if (o.json) return printJson(r.body);
      const p = r.body.pending;
      const facts = [p.facts.macs.length ? `MAC ${p.facts.macs.join(',')}` : null, p.facts.uuid ? `UUID ${p.facts.uuid}` : null, p.facts.serial ? `serial ${p.facts.serial}` : null, p.facts.hostname ? `hostname ${p.facts.hostname}` : null].filter(Boolean);
      out(`pending machine ${p.id} (${facts.join(', ') || 'no facts'}) assigned to ${p.assignedHost}`);
    });
}
