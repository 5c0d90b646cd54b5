// Where `apply` gets its bundle when a server is involved: a host id becomes the server's
// bundle URL; no id means "ask the server who I am" by this machine's facts, and wait while
// the machine is pending until an admin assigns it. The result is a URL plus the headers the
// resumable downloader sends, so every path ends in the same verified, transactional apply.
// The facts sent are those core/store/rescue-facts.ts lets through (in a rescue system not the
// template's); each one left out is named with its reason, and so is the fact that resolved.
// Every fetch from the server sends a fresh nonce that the bundle must carry back, signed
// (core/freshness.ts): a replayed or cached answer is refused before anything is written.

import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { DURATION_EXAMPLES, parseDuration } from '../core/duration.ts';
import { RuError } from '../core/errors.ts';
import { NONCE_BYTES, NONCE_HEADER, NONCE_QUERY } from '../core/freshness.ts';
import { isValidId } from '../core/store/facts.ts';
import { ApiClient } from '../adapters/http/api-client.ts';
import { reportMachineFacts } from '../adapters/fs/machine-facts.ts';
import { leftOutLines } from '../core/store/rescue-facts.ts';
import { note } from './output.ts';
import { redact } from './source.ts';
import { serverFrom, tokenFrom, type ServerFlags } from './server-options.ts';
import { effectiveEnv, factSettings } from './settings.ts';

export interface SourceChoice {
  readonly url: string;
  /** From a server: the host the bundle must name (a signed bundle of another host is refused). */
  readonly host?: string;
  /** The nonce sent with the request: the bundle's signed manifest must carry it (BUNDLE_STALE). */
  readonly nonce?: string;
  readonly open: { cacert?: string; headers?: Record<string, string>; label?: string };
}

/** 90s, 15m, 1h, 2h30m, 1d or plain seconds (core/duration.ts), in seconds; USAGE otherwise. */
export function duration(v: string): number {
  const s = parseDuration(v);
  if (s === null) throw new RuError('USAGE', `not a duration: ${v} (e.g. ${DURATION_EXAMPLES})`);
  return s;
}

/** The server's JSON bundle route, whose answer is sealed for the nonce the request sends. */
const BUNDLE_ROUTE = /\/api\/v1\/hosts\/[^/]+\/bundle$/;

/** 16 random bytes, base64url: new for every apply. */
const freshNonce = (): string => randomBytes(NONCE_BYTES).toString('base64url');

const POLL_MS = Number(process.env.REAR_UPDATE_POLL_MS) || 3000;
/** How long a resolve request asks the server to hold it while pending (?wait; the server allows 25 s, the client's socket 30 s). */
const HOLD_S = 20;

interface Resolved {
  status: 'resolved' | 'pending';
  host?: string;
  by?: string;
  /** The value of the fact that resolved the machine (null for an assignment). */
  value?: string | null;
  version?: number | null;
  pending?: { id: number; facts: { macs: string[]; uuid: string | null; serial: string | null; hostname: string | null } } | number | null;
  message?: string;
  /** Seconds the server held the request (?wait); absent from servers that do not hold. */
  waited?: number;
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
  let toldLimit = false;
  for (;;) {
    // Held by the server until an admin assigns this machine (through any instance of it), so the
    // assignment is heard at once; an older server answers at once and is asked again every POLL_MS.
    // The first request is answered at once, so that a pending machine says so (and shows its
    // facts for the admin) before it waits.
    const hold = told ? Math.min(HOLD_S, Math.floor((deadline - Date.now()) / 1000)) : 0;
    const asked = Date.now();
    const r = await api.request<Resolved>('GET', '/api/v1/resolve', { query: hold > 0 ? { ...query, wait: String(hold) } : query, okStatuses: [202, 429] });
    if (r.status === 429) {
      // The server bounds new pending machines (a flood must not fill it): wait for room as for an admin.
      const e = (r.body as { error?: { message?: string; context?: { retryAfter?: unknown } } }).error;
      const after = typeof e?.context?.retryAfter === 'number' ? Math.min(Math.max(e.context.retryAfter * 1000, POLL_MS), 300_000) : POLL_MS;
      if (!toldLimit) {
        toldLimit = true;
        note(`the server records no more pending machines for now: ${e?.message ?? 'HTTP 429'}`);
        if (waitS > 0) note(`  asking again every ${Math.round(after / 1000)} s for up to ${waitS} s (--wait) ...`);
      }
      if (Date.now() + after > deadline) {
        throw new RuError('PENDING_LIMIT', `the server refused to record this machine as pending within ${waitS} s: ${e?.message ?? 'HTTP 429'}`, { status: 429 });
      }
      await sleep(after);
      continue;
    }
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
    // A server that can hold requests (its answer says `waited`) is asked again at once: the next
    // request waits there. Only when it answered at once although asked to hold does the client pause.
    const held = typeof r.body.waited === 'number' && !(hold > 0 && Date.now() - asked < 1000);
    if (held ? Date.now() + 1000 > deadline : Date.now() + POLL_MS > deadline) {
      throw new RuError('HOST_PENDING', `this machine is pending on the server as machine ${p?.id ?? '?'} and was not assigned within ${waitS} s`, { pending: p?.id ?? null });
    }
    if (!held) await sleep(POLL_MS);
  }
}

export async function sourceFor(source: string | undefined, o: ServerFlags & { cacert?: string; wait?: number; sysRoot: string; hostname?: string }, headers: Readonly<Record<string, string>> = {}): Promise<SourceChoice> {
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
    const onServer = server && isUrl && /^https?:/i.test(source) && new URL(source).origin === new URL(server).origin;
    const open = { ...cacert, ...(onServer ? { headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) } } : {}) };
    // The server's JSON bundle route signs a nonce given as ?nonce=: ask for one and hold the
    // answer to it. Other URLs (ReaR's /rear/ route, a file elsewhere) are taken as they are.
    if (onServer && BUNDLE_ROUTE.test(new URL(source).pathname)) {
      const nonce = freshNonce();
      const u = new URL(source);
      u.searchParams.set(NONCE_QUERY, nonce);
      return { url: u.href, nonce, open: { ...open, label: redact(source) } };
    }
    return { url: source, open };
  }
  if (!server) throw new RuError('USAGE', 'nothing to apply: give a bundle file or URL, or --server (REAR_UPDATE_SERVER) with an optional host id');
  const api = new ApiClient({ server, token, cacert: caFile ? readFileSync(caFile, 'utf8') : null, headers });
  if (source !== undefined && !isValidId(source)) throw new RuError('USAGE', `${source}: no such file, and not a host id`);
  const id = source ?? (await resolveSelf(api, o.sysRoot, wait, o.hostname));
  const nonce = freshNonce();
  return {
    url: api.url(`/api/v1/hosts/${encodeURIComponent(id)}/bundle`).href,
    host: id,
    nonce,
    // Every attempt of the download, resumes included, sends the same nonce (and If-Range).
    open: { ...cacert, headers: api.headers({ [NONCE_HEADER]: nonce }), label: `host ${id} from ${api.base.origin}` },
  };
}
