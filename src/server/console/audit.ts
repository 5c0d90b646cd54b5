// The console's audit page: every recorded change, download and refusal, filtered by the
// acting token, host, kind and time range, newest first and paged; and the same filtered
// events exported as CSV (RFC 4180 quoting; a cell that a spreadsheet would read as a formula
// gets a leading quote) or JSON, for the post-mortem.

import type { FastifyInstance, FastifyReply } from 'fastify';
import { RuError } from '../../core/errors.ts';
import { isValidId } from '../../core/store/facts.ts';
import { AUDIT_KINDS, type AuditEvent, type AuditKind, type AuditQuery } from '../../core/store/metadata.ts';
import type { ServerContext } from '../context.ts';
import { bytes, queryText, time } from './common.ts';
import { html, type Html } from './html.ts';
import { page, sendPage } from './layout.ts';
import { pageUser } from './session.ts';

export const AUDIT_PER_PAGE = 100;
/** An export stops here (and says so): a browser download, not a backup. */
export const AUDIT_EXPORT_MAX = 50_000;

type Query = Record<string, string | string[] | undefined>;

interface Filter {
  readonly token: string;
  readonly host: string;
  readonly kind: string;
  readonly since: string;
  readonly until: string;
}

const invalid = (message: string, param: string): RuError => new RuError('REQUEST_INVALID', message, { param });

/**
 * A time from the form: the browser's datetime-local value (read as UTC, as the page says) or
 * an ISO 8601 time; normalized to the store's form so it compares as text.
 */
function timeOf(v: string, param: string): string | undefined {
  if (v === '') return undefined;
  const m = /^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d(?::\d\d(?:\.\d{1,3})?)?))?(Z|[+-]\d\d:?\d\d)?$/.exec(v.trim());
  const t = m ? Date.parse(`${m[1]}T${m[2] ?? '00:00'}${m[3] ?? 'Z'}`) : NaN;
  if (Number.isNaN(t)) throw invalid(`${param} must be a time such as 2026-01-31T12:00 (UTC)`, param);
  return new Date(t).toISOString();
}

function filterOf(q: Query): Filter {
  return { token: queryText(q.token).trim(), host: queryText(q.host).trim(), kind: queryText(q.kind), since: queryText(q.since).trim(), until: queryText(q.until).trim() };
}

function queryOf(f: Filter): AuditQuery {
  if (f.kind !== '' && !AUDIT_KINDS.includes(f.kind as AuditKind)) throw invalid(`kind must be one of ${AUDIT_KINDS.join(', ')}`, 'kind');
  if (f.token !== '' && !isValidId(f.token)) throw invalid('token must be a token id (as the token list shows it)', 'token');
  if (f.host !== '' && !isValidId(f.host)) throw invalid('host must be a host id (letters, digits, . _ -)', 'host');
  const since = timeOf(f.since, 'since');
  const until = timeOf(f.until, 'until');
  return {
    ...(f.kind !== '' ? { kind: f.kind as AuditKind } : {}),
    ...(f.token !== '' ? { token: f.token } : {}),
    ...(f.host !== '' ? { host: f.host } : {}),
    ...(since !== undefined ? { since } : {}),
    ...(until !== undefined ? { until } : {}),
  };
}

function filterParams(f: Filter, extra: Record<string, string> = {}): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...f, ...extra })) if (v !== '') u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : '';
}

/** One CSV cell: always quoted; text a spreadsheet would evaluate (= + - @, tab, CR) is prefixed with '. */
export function csvCell(v: string | number | null): string {
  let s = v === null ? '' : String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

const COLUMNS = ['id', 'time', 'kind', 'token', 'address', 'host', 'version', 'bytes', 'result', 'detail'] as const;

export function auditCsv(events: readonly AuditEvent[]): string {
  const lines = [COLUMNS.join(',')];
  for (const e of events) lines.push(COLUMNS.map((c) => csvCell(e[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

export function auditPages(app: FastifyInstance, ctx: ServerContext): void {
  /** Up to `max` events of the filter, newest first, paging through the store. */
  const collect = async (q: AuditQuery, max: number): Promise<{ events: AuditEvent[]; truncated: boolean }> => {
    const events: AuditEvent[] = [];
    let before: number | undefined;
    for (;;) {
      const batch = await ctx.meta.queryAudit({ ...q, limit: 1000, ...(before !== undefined ? { beforeId: before } : {}) });
      for (const e of batch) {
        if (events.length === max) return { events, truncated: true };
        events.push(e);
      }
      if (batch.length < 1000) return { events, truncated: false };
      before = batch.at(-1)!.id;
    }
  };

  app.get<{ Querystring: Query }>('/audit', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const f = filterOf(req.query);
    const before = queryText(req.query.before);
    let error: RuError | null = null;
    let events: AuditEvent[] = [];
    let more = false;
    try {
      const q = queryOf(f);
      if (before !== '' && !/^[1-9]\d{0,14}$/.test(before)) throw invalid('before must be an event id', 'before');
      await ctx.auditQueue.flush(); // the downloads of the last moments are listed too
      events = await ctx.meta.queryAudit({ ...q, limit: AUDIT_PER_PAGE + 1, ...(before !== '' ? { beforeId: Number(before) } : {}) });
      more = events.length > AUDIT_PER_PAGE;
      events = events.slice(0, AUDIT_PER_PAGE);
    } catch (e) {
      if (!(e instanceof RuError) || e.code !== 'REQUEST_INVALID') throw e;
      error = e;
    }
    const tokens = await ctx.meta.listTokens();
    const body = html`<h1>Audit</h1>
<form method="get" action="/audit" class="filters" aria-label="Filter the audit events">
<div class="field"><label for="f-token">Token</label><input type="text" id="f-token" name="token" value="${f.token}" list="token-ids" size="14"><datalist id="token-ids">${tokens.map((t) => html`<option value="${t.id}">${t.scope}${t.label ? html` ${t.label}` : ''}</option>`)}</datalist></div>
<div class="field"><label for="f-host">Host</label><input type="text" id="f-host" name="host" value="${f.host}" size="16"></div>
<div class="field"><label for="f-kind">Kind</label><select id="f-kind" name="kind"><option value="">all kinds</option>${AUDIT_KINDS.map((k) => html`<option value="${k}"${k === f.kind ? html` selected` : ''}>${k}</option>`)}</select></div>
<div class="field"><label for="f-since">From (UTC)</label><input type="datetime-local" id="f-since" name="since" value="${f.since}" step="1"></div>
<div class="field"><label for="f-until">Until (UTC)</label><input type="datetime-local" id="f-until" name="until" value="${f.until}" step="1"></div>
<div class="field"><button type="submit">Filter</button></div>
${Object.values(f).some((v) => v !== '') ? html`<div class="field"><a href="/audit">Clear</a></div>` : ''}
</form>
${error ? html`<div class="notice error" role="alert"><p><strong>${error.code}</strong>: ${error.message}</p></div>` : ''}
<p class="actions">Export these events: <a href="/audit/export.csv${filterParams(f)}" download>CSV</a> <a href="/audit/export.json${filterParams(f)}" download>JSON</a></p>
${events.length === 0
    ? html`<p class="muted" role="status">No event matches.</p>`
    : html`<div class="table-wrap"><table>
<caption class="visually-hidden">Audit events, newest first</caption>
<thead><tr><th scope="col" class="num">Id</th><th scope="col">Time</th><th scope="col">Kind</th><th scope="col">Token</th><th scope="col">Host</th><th scope="col" class="num">Version</th><th scope="col" class="num">Bytes</th><th scope="col">Result</th><th scope="col">Detail</th><th scope="col">Address</th></tr></thead>
<tbody>${events.map((e) => auditRow(e))}</tbody></table></div>`}
${more || before !== ''
    ? html`<nav class="pager" aria-label="Pages of audit events">${before !== '' ? html`<a href="/audit${filterParams(f)}">Newest</a>` : ''}${more ? html`<a href="/audit${filterParams(f, { before: String(events.at(-1)!.id) })}" rel="next">Older →</a>` : ''}</nav>`
    : ''}`;
    return sendPage(reply, page(user, { title: 'Audit', nav: 'audit', body }));
  });

  const exportRoute = (format: 'csv' | 'json') => async (req: { query: Query; url: string }, reply: FastifyReply): Promise<FastifyReply> => {
    const q = queryOf(filterOf(req.query));
    await ctx.auditQueue.flush();
    const { events, truncated } = await collect(q, AUDIT_EXPORT_MAX);
    const stamp = ctx.now().toISOString().replace(/[:.]/g, '-');
    reply.header('cache-control', 'no-store').header('content-disposition', `attachment; filename="rear-update-audit-${stamp}.${format}"`).header('x-rear-update-truncated', String(truncated));
    if (format === 'csv') return reply.type('text/csv; charset=utf-8').send(auditCsv(events));
    return reply.type('application/json; charset=utf-8').send(JSON.stringify({ filter: q, truncated, events }, null, 1));
  };

  for (const format of ['csv', 'json'] as const) {
    app.get<{ Querystring: Query }>(`/audit/export.${format}`, async (req, reply) => {
      const user = await pageUser(ctx, req, reply, 'view');
      if (!user) return reply;
      return exportRoute(format)(req, reply);
    });
  }
}

function auditRow(e: AuditEvent): Html {
  return html`<tr><td class="num">${e.id}</td><td class="nowrap">${time(e.time)}</td><td>${e.kind}</td><td>${e.token ? html`<a href="/audit?token=${encodeURIComponent(e.token)}"><code>${e.token}</code></a>` : ''}</td><td>${e.host ? html`<a href="/hosts/${encodeURIComponent(e.host)}">${e.host}</a>` : ''}</td><td class="num">${e.version ?? ''}</td><td class="num">${bytes(e.bytes)}</td><td>${e.result === 'ok' ? html`<span class="badge ok">ok</span>` : html`<span class="badge bad">${e.result}</span>`}</td><td>${e.detail ?? ''}</td><td>${e.address ?? ''}</td></tr>`;
}
