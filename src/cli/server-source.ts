// Where `apply` gets its bundle when a server is involved: a host id becomes the server's
// bundle URL; no id means "ask the server who I am" by this machine's facts, and wait while
// the machine is pending until an admin assigns it. The result is a URL plus the headers the
// resumable downloader sends, so every path ends in the same verified, transactional apply.
// The facts sent are those core/store/rescue-facts.ts lets through (in a rescue system not the
// template's); each one left out is named with its reason, and so is the fact that resolved.

import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { RuError } from '../core/errors.ts';
import { isValidId } from '../core/store/facts.ts';
import { ApiClient } from '../adapters/http/api-client.ts';
import { reportMachineFacts } from '../adapters/fs/machine-facts.ts';
import { leftOutLines } from '../core/store/rescue-facts.ts';
import { note } from './output.ts';
import { serverFrom, tokenFrom, type ServerFlags } from './server-options.ts';
import { effectiveEnv, factSettings } from './settings.ts';

export interface SourceChoice {
  readonly url: string;
  /** From a server: the host the bundle must name (a signed bundle of another host is refused). */
  readonly host?: string;
  readonly open: { cacert?: string; headers?: Record<string, string>; label?: string };
}

/** 90s, 15m, 1h, 2h30m or plain seconds. */
export function duration(v: string): number {
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(t);
  if (!m || t === '') throw new RuError('USAGE', `not a duration: ${v} (e.g. 90s, 15m, 1h)`);
  return Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
}

const POLL_MS = Number(process.env.REAR_UPDATE_POLL_MS) || 3000;

interface Resolved {
  status: 'resolved' | 'pending';
  host?: string;
  by?: string;
  /** The value of the fact that resolved the machine (null for an assignment). */
  value?: string | null;
  version?: number | null;
  pending?: { id: number; facts: { macs: string[]; uuid: string | null; serial: string | null; hostname: string | null } } | number | null;
  message?: string;
}

/** "by hostname e229", "by mac 52:54:00:12:34:56", "by assignment". */
const byWhat = (r: Resolved): string => `by ${r.by ?? '?'}${r.value ? ` ${r.value}` : ''}`;

async function resolveSelf(api: ApiClient, sysRoot: string, waitS: number, hostname: string | undefined): Promise<string> {
  const report = reportMachineFacts(sysRoot, factSettings({ ...(hostname !== undefined ? { hostname } : {}) }));
  for (const l of leftOutLines(report)) note(l);
  const facts = report.facts;
  const query = { mac: facts.macs, uuid: facts.uuid, serial: facts.serial, hostname: facts.hostname };
  const deadline = Date.now() + waitS * 1000;
  let told = false;
  for (;;) {
    const r = await api.request<Resolved>('GET', '/api/v1/resolve', { query, okStatuses: [202] });
    if (r.status === 200 && r.body.host) {
      note(r.body.by === 'assignment'
        ? `the server resolved this machine to host ${r.body.host} (by assignment)`
        : `the server resolved this machine to host ${r.body.host} (${byWhat(r.body)})`);
      if (r.body.by === 'hostname') {
        note(`  WARNING: a hostname-only match is weak: no MAC, UUID or serial of this machine identified a host, and a hostname is easily wrong (${report.hostnameFrom === 'explicit' ? 'this one was given explicitly' : 'this one is the running system\'s, e.g. from DHCP'}). Check that this machine really is ${r.body.host}, and register its MACs (rear-update admin host set ${r.body.host} --mac ...)`);
      }
      return r.body.host;
    }
    const p = typeof r.body.pending === 'object' ? r.body.pending : null;
    if (!told) {
      told = true;
      note(`the server does not know this machine: it is PENDING as machine ${p?.id ?? '?'}`);
      note(`  facts: macs ${facts.macs.join(' ') || '-'}, uuid ${facts.uuid ?? '-'}, serial ${facts.serial ?? '-'}, hostname ${facts.hostname ?? '-'}`);
      note(`  an admin assigns it with: rear-update admin assign ${p?.id ?? 'PENDING-ID'} HOST`);
      if (waitS > 0) note(`  waiting up to ${waitS} s (--wait) ...`);
    }
    if (Date.now() + POLL_MS > deadline) {
      throw new RuError('HOST_PENDING', `this machine is pending on the server as machine ${p?.id ?? '?'} and was not assigned within ${waitS} s`, { pending: p?.id ?? null });
    }
    await sleep(POLL_MS);
  }
}

export async function sourceFor(source: string | undefined, o: ServerFlags & { cacert?: string; wait?: number; sysRoot: string; hostname?: string }): Promise<SourceChoice> {
  const env = effectiveEnv();
  const server = serverFrom(o, env);
  const token = tokenFrom(o, env);
  const caFile = o.cacert ?? env.REAR_UPDATE_CACERT;
  const cacert = caFile ? { cacert: caFile } : {};
  const wait = o.wait ?? duration(env.REAR_UPDATE_WAIT ?? '15m');
  const isUrl = source !== undefined && /^(https?|file):\/\//i.test(source);
  if (source !== undefined && (isUrl || !server || existsSync(source))) {
    // A URL on the configured server gets the token too, so the rescue shell's operator types
    // only `rear-update apply https://server/rear/e229.tar.gz`.
    const sameOrigin = server && token && isUrl && /^https?:/i.test(source) && new URL(source).origin === new URL(server).origin;
    return { url: source, open: { ...cacert, ...(sameOrigin ? { headers: { authorization: `Bearer ${token}` } } : {}) } };
  }
  if (!server) throw new RuError('USAGE', 'nothing to apply: give a bundle file or URL, or --server (REAR_UPDATE_SERVER) with an optional host id');
  const api = new ApiClient({ server, token, cacert: caFile ? readFileSync(caFile, 'utf8') : null });
  if (source !== undefined && !isValidId(source)) throw new RuError('USAGE', `${source}: no such file, and not a host id`);
  const id = source ?? (await resolveSelf(api, o.sysRoot, wait, o.hostname));
  return {
    url: api.url(`/api/v1/hosts/${encodeURIComponent(id)}/bundle`).href,
    host: id,
    open: { ...cacert, headers: api.headers(), label: `host ${id} from ${api.base.origin}` },
  };
}
