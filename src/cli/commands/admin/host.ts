// `rear-update admin host add|list|show|set`: the hosts the server knows, with the facts a
// booting machine is recognized by (MACs, DMI UUID and serial, hostname) and its hardware class.

import type { Command } from 'commander';
import type { Host, LogRecord, VersionSummary } from '../../../core/store/metadata.ts';
import { collect } from '../../options.ts';
import { formatBytes, out, printJson, table } from '../../output.ts';
import { api, dash, leaf, printTable, seg, SERVER_HELP, time, type AdminFlags } from './common.ts';

interface HostFlags extends AdminFlags {
  class?: string;
  mac?: string[];
  hostname?: string[];
  uuid?: string;
  serial?: string;
  unset?: string[];
}

interface HostDetail {
  host: Host;
  served: VersionSummary | null;
  latest: VersionSummary | null;
  versionCount: number;
  recentVersions: VersionSummary[];
  recentLogs: LogRecord[];
}

const UNSETTABLE = ['class', 'uuid', 'serial', 'macs', 'hostnames'];

function fieldsFrom(o: HostFlags): Record<string, unknown> {
  const f: Record<string, unknown> = {};
  if (o.class !== undefined) f.class = o.class;
  if (o.mac !== undefined) f.macs = o.mac;
  if (o.hostname !== undefined) f.hostnames = o.hostname;
  if (o.uuid !== undefined) f.uuid = o.uuid;
  if (o.serial !== undefined) f.serial = o.serial;
  return f;
}

export function hostLines(h: Host): string[] {
  return table([
    ['host:', h.id],
    ['class:', dash(h.class)],
    ['hostnames:', dash(h.hostnames)],
    ['macs:', dash(h.macs)],
    ['uuid:', dash(h.uuid)],
    ['serial:', dash(h.serial)],
    ['pinned:', h.pinned === null ? 'no (the latest version is served)' : `version ${h.pinned}`],
    ['created:', time(h.created)],
  ]);
}

export function registerHost(admin: Command): void {
  const host = admin.command('host').description('add, list, show and change hosts');

  leaf(host, 'add <id>', 'register a host, with the facts a booting machine is recognized by')
    .option('--class <class>', 'hardware class (fetch-class tokens reach every host of a class)')
    .option('--mac <mac>', 'MAC address, repeatable', collect)
    .option('--hostname <name>', 'hostname, repeatable', collect)
    .option('--uuid <uuid>', 'DMI system UUID (/sys/class/dmi/id/product_uuid)')
    .option('--serial <serial>', 'DMI system serial (/sys/class/dmi/id/product_serial)')
    .addHelpText('after', `
A MAC address belongs to at most one host. A host is also created by its first publish with
an admin token; facts a publish reports replace the ones given here.
${SERVER_HELP}

Examples:
  rear-update admin host add e229 --class typeA --mac 52:54:00:12:34:56 --hostname e229.example.com
  rear-update admin host add e230 --class typeA --uuid 4c4c4544-0033-3010-8044-b2c04f4e3232`)
    .action(async (id: string, o: HostFlags) => {
      const r = await api(o).request<{ host: Host }>('POST', '/api/v1/hosts', { body: { id, ...fieldsFrom(o) } });
      if (o.json) return printJson(r.body);
      out(`added host ${r.body.host.id}`);
      for (const l of hostLines(r.body.host)) out(`  ${l}`);
    });

  leaf(host, 'list', 'list hosts (sorted by id)')
    .option('--class <class>', 'only hosts of this hardware class')
    .addHelpText('after', `${SERVER_HELP}

Examples:
  rear-update admin host list
  rear-update admin host list --class typeA --json`)
    .action(async (o: HostFlags) => {
      const r = await api(o).request<{ hosts: Host[] }>('GET', '/api/v1/hosts', { query: { class: o.class } });
      if (o.json) return printJson(r.body);
      printTable(['HOST', 'CLASS', 'PINNED', 'MACS', 'HOSTNAMES', 'UUID', 'SERIAL'],
        r.body.hosts.map((h) => [h.id, dash(h.class), dash(h.pinned), dash(h.macs), dash(h.hostnames), dash(h.uuid), dash(h.serial)]),
        o.class ? `no host of class ${o.class}` : 'no hosts yet (rear-update admin host add ID)');
    });

  leaf(host, 'show <id>', 'show a host: its facts, the version served, recent versions and recovery logs')
    .addHelpText('after', `${SERVER_HELP}

Example:
  rear-update admin host show e229`)
    .action(async (id: string, o: HostFlags) => {
      const r = await api(o).request<HostDetail>('GET', `/api/v1/hosts/${seg(id)}`);
      if (o.json) return printJson(r.body);
      const d = r.body;
      for (const l of hostLines(d.host)) out(l);
      out(table([['served:', d.served ? `version ${d.served.version}${d.host.pinned !== null ? ' (pinned)' : ''}, published ${time(d.served.created)}` : 'nothing (no version published yet)']])[0]);
      out(table([['versions:', `${d.versionCount}${d.latest ? `, latest ${d.latest.version}` : ''}`]])[0]);
      if (d.recentVersions.length) {
        out();
        printTable(['VERSION', 'PUBLISHED', 'SIZE', 'PUBLISHER'], d.recentVersions.map((v) => [String(v.version), time(v.created), formatBytes(v.size), dash(v.publisher)]), '');
      }
      if (d.recentLogs.length) {
        out();
        printTable(['LOG', 'WORKFLOW', 'STAMP', 'STARTED', 'BYTES', 'COMPLETE'], d.recentLogs.map((l) => [String(l.id), l.workflow, l.stamp, time(l.started), String(l.bytes), l.complete ? 'yes' : 'no']), '');
      }
    });

  leaf(host, 'set <id>', 'change a host\'s class or facts (a list given replaces the whole list)')
    .option('--class <class>', 'hardware class')
    .option('--mac <mac>', 'MAC address, repeatable: the new list', collect)
    .option('--hostname <name>', 'hostname, repeatable: the new list', collect)
    .option('--uuid <uuid>', 'DMI system UUID')
    .option('--serial <serial>', 'DMI system serial')
    .option('--unset <field>', `clear a field, repeatable: ${UNSETTABLE.join(', ')}`, collect)
    .addHelpText('after', `${SERVER_HELP}

Examples:
  rear-update admin host set e229 --class typeB
  rear-update admin host set e229 --mac 52:54:00:12:34:56 --mac 52:54:00:12:34:57
  rear-update admin host set e229 --unset serial`)
    .action(async (id: string, o: HostFlags) => {
      const body = fieldsFrom(o);
      for (const f of o.unset ?? []) {
        if (!UNSETTABLE.includes(f)) host.error(`--unset ${f}: expected one of ${UNSETTABLE.join(', ')}`);
        body[f] = f === 'macs' || f === 'hostnames' ? [] : null;
      }
      const r = await api(o).request<{ host: Host }>('PATCH', `/api/v1/hosts/${seg(id)}`, { body });
      if (o.json) return printJson(r.body);
      out(`changed host ${r.body.host.id}`);
      for (const l of hostLines(r.body.host)) out(`  ${l}`);
    });
}
