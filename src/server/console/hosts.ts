// The console's host pages: the host list (search by id, hostname, MAC, UUID or serial; filter
// by class; paged, so 10,000 hosts never become 10,000 rows), one host (facts, its versions,
// pin and unpin for admins, recent downloads from the audit), and a side-by-side diff of two
// of its versions computed by the same code as the JSON API's diff (routes/admin.ts diffAnswer).

import { parsePatch } from 'diff';
import type { FastifyInstance } from 'fastify';
import { RuError } from '../../core/errors.ts';
import type { Host, VersionRecord, VersionSummary } from '../../core/store/metadata.ts';
import type { ServerContext } from '../context.ts';
import { hostDiff } from '../routes/admin.ts';
import { hostOr404, idParam } from '../routes/common.ts';
import { auditedChange, bytes, csrfField, doneNotice, formText, queryText, time } from './common.ts';
import { html, type Html } from './html.ts';
import { page, sendPage } from './layout.ts';
import { changeUser, may, pageUser } from './session.ts';

export const HOSTS_PER_PAGE = 50;

type Query = Record<string, string | string[] | undefined>;

const list = (xs: readonly string[]): Html => (xs.length === 0 ? html`<span class="muted">none</span>` : html`${xs.map((x, i) => html`${i > 0 ? html`<br>` : ''}<code>${x}</code>`)}`);

/** Does a host match the search text (case-insensitive; a MAC may be typed with dashes)? */
function matches(h: Host, needle: string): boolean {
  if (needle === '') return true;
  const mac = needle.replace(/-/g, ':');
  return (
    h.id.toLowerCase().includes(needle) ||
    h.hostnames.some((n) => n.toLowerCase().includes(needle)) ||
    h.macs.some((m) => m.includes(mac)) ||
    (h.uuid ?? '').includes(needle) ||
    (h.serial ?? '').toLowerCase().includes(needle)
  );
}

function pageNumber(v: unknown): number {
  const s = queryText(v);
  return /^[1-9]\d{0,6}$/.test(s) ? Number(s) : 1;
}

function hostsUrl(q: string, cls: string, p: number): string {
  const u = new URLSearchParams();
  if (q) u.set('q', q);
  if (cls) u.set('class', cls);
  if (p > 1) u.set('page', String(p));
  const s = u.toString();
  return s ? `/hosts?${s}` : '/hosts';
}

function versionBadges(v: VersionSummary, host: Host, served: number | null): Html {
  return html`${v.version === served ? html` <span class="badge ok">served</span>` : ''}${v.version === host.pinned ? html` <span class="badge warn">pinned</span>` : ''}`;
}

/** One text diff (a unified patch) as two columns: the old version's lines beside the new one's. */
export function sideBySide(patch: string, from: number, to: number): Html {
  const rows: Html[] = [];
  const cell = (n: number | null, text: string | null, kind: 'del' | 'add' | 'ctx'): Html =>
    text === null
      ? html`<td class="ln"></td><td class="empty"></td>`
      : html`<td class="ln">${n}</td><td${kind === 'ctx' ? '' : html` class="${kind}"`}>${kind === 'del' ? html`<span class="visually-hidden">removed: </span>` : kind === 'add' ? html`<span class="visually-hidden">added: </span>` : ''}${text}</td>`;
  for (const p of parsePatch(patch)) {
    for (const h of p.hunks) {
      rows.push(html`<tr class="hunk"><td colspan="4">lines ${h.oldStart}–${h.oldStart + Math.max(h.oldLines - 1, 0)} → ${h.newStart}–${h.newStart + Math.max(h.newLines - 1, 0)}</td></tr>`);
      let o = h.oldStart;
      let n = h.newStart;
      let dels: { n: number; text: string }[] = [];
      let adds: { n: number; text: string }[] = [];
      // A run of removed lines and the added lines after it are shown side by side, pairwise.
      const flush = (): void => {
        for (let i = 0; i < Math.max(dels.length, adds.length); i++) {
          const d = dels[i];
          const a = adds[i];
          rows.push(html`<tr>${cell(d?.n ?? null, d?.text ?? null, 'del')}${cell(a?.n ?? null, a?.text ?? null, 'add')}</tr>`);
        }
        dels = [];
        adds = [];
      };
      for (const line of h.lines) {
        const text = line.slice(1);
        if (line.startsWith('-')) dels.push({ n: o++, text });
        else if (line.startsWith('+')) adds.push({ n: n++, text });
        else if (line.startsWith('\\')) continue; // "\ No newline at end of file"
        else {
          flush();
          rows.push(html`<tr>${cell(o++, text, 'ctx')}${cell(n++, text, 'ctx')}</tr>`);
        }
      }
      flush();
    }
  }
  return html`<table class="diff"><colgroup><col class="ln"><col><col class="ln"><col></colgroup><thead><tr><th scope="col" colspan="2">version ${from}</th><th scope="col" colspan="2">version ${to}</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function hostPages(app: FastifyInstance, ctx: ServerContext): void {
  app.get<{ Querystring: Query }>('/hosts', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const q = queryText(req.query.q).trim().slice(0, 200);
    const cls = queryText(req.query.class).slice(0, 128);
    const all = await ctx.meta.listHosts();
    const classes = [...new Set(all.map((h) => h.class).filter((c): c is string => c !== null))].sort();
    const needle = q.toLowerCase();
    const hits = all.filter((h) => (cls === '' || (cls === '-' ? h.class === null : h.class === cls)) && matches(h, needle));
    const pages = Math.max(1, Math.ceil(hits.length / HOSTS_PER_PAGE));
    const p = Math.min(pageNumber(req.query.page), pages);
    const rows = hits.slice((p - 1) * HOSTS_PER_PAGE, p * HOSTS_PER_PAGE);
    // Only the rows shown are looked up further.
    const latest = await Promise.all(rows.map((h) => ctx.meta.latestVersion(h.id)));
    const first = hits.length === 0 ? 0 : (p - 1) * HOSTS_PER_PAGE + 1;
    const last = (p - 1) * HOSTS_PER_PAGE + rows.length;
    const body = html`<h1>Hosts</h1>
<form method="get" action="/hosts" class="filters" role="search" aria-label="Hosts">
<div class="field"><label for="q">Search</label><input type="search" id="q" name="q" value="${q}" placeholder="id, hostname, MAC, UUID or serial" size="32"></div>
<div class="field"><label for="class">Class</label><select id="class" name="class">
<option value=""${cls === '' ? html` selected` : ''}>all classes</option>
<option value="-"${cls === '-' ? html` selected` : ''}>(no class)</option>
${classes.map((c) => html`<option value="${c}"${c === cls ? html` selected` : ''}>${c}</option>`)}
</select></div>
<div class="field"><button type="submit">Search</button></div>
${q || cls ? html`<div class="field"><a href="/hosts">Clear</a></div>` : ''}
</form>
<p id="hosts-count" role="status">${hits.length === 0 ? 'No host matches.' : html`Hosts ${first}–${last} of ${hits.length}${hits.length !== all.length ? html` (${all.length} in all)` : ''}.`}</p>
${rows.length > 0
    ? html`<div class="table-wrap"><table>
<caption class="visually-hidden">Hosts ${first} to ${last}</caption>
<thead><tr><th scope="col">Host</th><th scope="col">Class</th><th scope="col">Hostnames</th><th scope="col">MAC addresses</th><th scope="col" class="num">Latest version</th><th scope="col">Published</th><th scope="col">Pinned</th></tr></thead>
<tbody>${rows.map((h, i) => {
        const v = latest[i];
        return html`<tr><th scope="row"><a href="/hosts/${encodeURIComponent(h.id)}">${h.id}</a></th><td>${h.class ?? html`<span class="muted">none</span>`}</td><td>${list(h.hostnames)}</td><td>${list(h.macs)}</td><td class="num">${v ? v.version : html`<span class="muted">none</span>`}</td><td>${v ? time(v.created) : ''}</td><td>${h.pinned !== null ? html`<span class="badge warn">version ${h.pinned}</span>` : ''}</td></tr>`;
      })}</tbody></table></div>`
    : ''}
${pages > 1
    ? html`<nav class="pager" aria-label="Pages of hosts">${p > 1 ? html`<a href="${hostsUrl(q, cls, p - 1)}" rel="prev">← Previous</a>` : ''}<span>Page ${p} of ${pages}</span>${p < pages ? html`<a href="${hostsUrl(q, cls, p + 1)}" rel="next">Next →</a>` : ''}</nav>`
    : ''}`;
    return sendPage(reply, page(user, { title: 'Hosts', nav: 'hosts', body }));
  });

  app.get<{ Params: { id: string }; Querystring: Query }>('/hosts/:id', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const host = await hostOr404(ctx, idParam(req.params.id));
    await ctx.auditQueue.flush(); // the downloads of the last moments are listed too
    const [versions, served, fetches] = await Promise.all([ctx.meta.listVersions(host.id), ctx.meta.servedVersion(host.id), ctx.meta.queryAudit({ host: host.id, kind: 'fetch', limit: 20 })]);
    const desc = [...versions].reverse();
    const servedNo = served?.version ?? null;
    const admin = may(user, 'admin');
    const id = encodeURIComponent(host.id);
    const body = html`<h1>Host <code>${host.id}</code></h1>
${doneNotice(req.query.done, { pinned: `Pinned: the host is now served version ${host.pinned ?? ''}.`, unpinned: 'Unpinned: the host is served its latest version.' })}
<h2>Facts</h2>
<dl class="facts">
<dt>Class</dt><dd>${host.class ? html`<a href="/classes#class-${host.class}">${host.class}</a>` : html`<span class="muted">none</span>`}</dd>
<dt>Hostnames</dt><dd>${list(host.hostnames)}</dd>
<dt>MAC addresses</dt><dd>${list(host.macs)}</dd>
<dt>UUID</dt><dd>${host.uuid ? html`<code>${host.uuid}</code>` : html`<span class="muted">none</span>`}</dd>
<dt>Serial</dt><dd>${host.serial ? html`<code>${host.serial}</code>` : html`<span class="muted">none</span>`}</dd>
<dt>Registered</dt><dd>${time(host.created)}</dd>
<dt>Served</dt><dd>${servedNo === null ? html`<span class="muted">nothing published yet</span>` : html`version ${servedNo}${host.pinned !== null ? ' (pinned)' : ' (latest)'}`}</dd>
</dl>
${host.pinned !== null && admin
    ? html`<form method="post" action="/hosts/${id}/unpin" class="actions">${csrfField(user)}<button type="submit" class="secondary">Unpin version ${host.pinned}</button><span class="hint">Serve the latest version again.</span></form>`
    : ''}
<h2>Versions</h2>
${desc.length === 0
    ? html`<p class="muted">No version published yet.</p>`
    : html`${desc.length >= 2 ? diffForm(host, desc) : ''}
<div class="table-wrap"><table>
<caption class="visually-hidden">Versions of ${host.id}, newest first</caption>
<thead><tr><th scope="col" class="num">Version</th><th scope="col">Published</th><th scope="col" class="num">Size</th><th scope="col">Publisher</th><th scope="col">Digest</th>${admin ? html`<th scope="col">Pin</th>` : ''}</tr></thead>
<tbody>${desc.map((v) => html`<tr><th scope="row" class="num">${v.version}${versionBadges(v, host, servedNo)}</th><td>${time(v.created)}</td><td class="num">${bytes(v.size)}</td><td>${v.publisher ? html`<code>${v.publisher}</code>` : html`<span class="muted">admin tooling</span>`}</td><td><code title="${v.digest}">${v.digest.slice(0, 12)}</code></td>${admin
      ? html`<td>${v.version === host.pinned ? '' : html`<form method="post" action="/hosts/${id}/pin" class="inline">${csrfField(user)}<input type="hidden" name="version" value="${v.version}"><button type="submit" class="secondary" aria-label="Pin version ${v.version}">Pin</button></form>`}</td>`
      : ''}</tr>`)}</tbody></table></div>`}
<h2>Recent downloads</h2>
${fetches.length === 0
    ? html`<p class="muted">No download recorded.</p>`
    : html`<div class="table-wrap"><table>
<caption class="visually-hidden">The last ${fetches.length} downloads of ${host.id}</caption>
<thead><tr><th scope="col">Time</th><th scope="col" class="num">Version</th><th scope="col">Token</th><th scope="col">Address</th><th scope="col" class="num">Bytes</th><th scope="col">Result</th></tr></thead>
<tbody>${fetches.map((e) => html`<tr><td>${time(e.time)}</td><td class="num">${e.version ?? ''}</td><td>${e.token ? html`<code>${e.token}</code>` : ''}</td><td>${e.address ?? ''}</td><td class="num">${bytes(e.bytes)}</td><td>${e.result === 'ok' ? html`<span class="badge ok">ok</span>` : html`<span class="badge bad">${e.result}</span>`}</td></tr>`)}</tbody></table></div>
<p><a href="/audit?host=${id}">All audit events of this host</a></p>`}`;
    return sendPage(reply, page(user, { title: `Host ${host.id}`, nav: 'hosts', body }));
  });

  const versionOf = async (host: Host, v: string, param: string): Promise<VersionRecord> => {
    if (!/^[1-9]\d{0,9}$/.test(v)) throw new RuError('REQUEST_INVALID', `${param} must be a version number`, { param });
    return ctx.bundles.record(host, Number(v));
  };

  app.get<{ Params: { id: string }; Querystring: Query }>('/hosts/:id/diff', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const host = await hostOr404(ctx, idParam(req.params.id));
    const [ra, rb] = await Promise.all([versionOf(host, queryText(req.query.from), 'from'), versionOf(host, queryText(req.query.to), 'to')]);
    const own = queryText(req.query.own) === '1';
    // As GET /api/v1/hosts/:id/diff (one function): composed under the class's current layers, or (own) the host's own bundles.
    const d = await hostDiff(ctx, host, ra, rb, own);
    const versions = [...(await ctx.meta.listVersions(host.id))].reverse();
    const id = encodeURIComponent(host.id);
    const entryRow = (e: { path: string; type: string; mode: string; owner: string; size: number | null }): Html => html`<tr><th scope="row"><code>${e.path}</code></th><td>${e.type}</td><td><code>${e.mode}</code></td><td>${e.owner}</td><td class="num">${bytes(e.size)}</td></tr>`;
    const entryTable = (caption: string, es: readonly { path: string; type: string; mode: string; owner: string; size: number | null }[]): Html =>
      es.length === 0 ? html`` : html`<div class="table-wrap"><table><caption>${caption} (${es.length})</caption><thead><tr><th scope="col">Path</th><th scope="col">Type</th><th scope="col">Mode</th><th scope="col">Owner</th><th scope="col" class="num">Size</th></tr></thead><tbody>${es.map(entryRow)}</tbody></table></div>`;
    const body = html`<h1>Host <code>${host.id}</code>: version ${ra.version} → ${rb.version}</h1>
<p><a href="/hosts/${id}">← Back to ${host.id}</a></p>
${diffForm(host, versions, ra.version, rb.version, own)}
<p id="diff-summary" role="status">${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed, ${d.unchanged} unchanged${own ? ' (the host\'s own bundles, without layers)' : ' (as served: under the class\'s current layers)'}.</p>
${entryTable('Added', d.added)}
${entryTable('Removed', d.removed)}
${d.changed.length === 0
    ? ''
    : html`<div class="table-wrap"><table><caption>Changed (${d.changed.length})</caption><thead><tr><th scope="col">Path</th><th scope="col">What changed</th></tr></thead><tbody>${d.changed.map((c) => html`<tr><th scope="row"><code>${c.path}</code></th><td>${c.changes.map((f, i) => html`${i > 0 ? '; ' : ''}${f.field}${f.field === 'sha256' ? '' : html` ${String(f.from ?? '–')} → ${String(f.to ?? '–')}`}`)}</td></tr>`)}</tbody></table></div>`}
${d.owns.added.length + d.owns.removed.length > 0 ? html`<p>Owned directories: ${d.owns.added.map((p) => html`<code>+${p}</code> `)}${d.owns.removed.map((p) => html`<code>−${p}</code> `)}</p>` : ''}
${d.texts.length > 0 ? html`<h2>Text changes</h2>${d.texts.map((t) => html`<section class="diff-file" aria-label="${t.path}"><h3>${t.path}</h3>${sideBySide(t.patch, ra.version, rb.version)}</section>`)}` : ''}
${d.skipped.length > 0 ? html`<h2>Not shown as text</h2><ul>${d.skipped.map((s) => html`<li><code>${s.path}</code>: ${s.reason}</li>`)}</ul>` : ''}`;
    return sendPage(reply, page(user, { title: `Diff of ${host.id} ${ra.version}→${rb.version}`, nav: 'hosts', body }));
  });

  app.post<{ Params: { id: string } }>('/hosts/:id/pin', async (req, reply) => {
    const user = await changeUser(ctx, req, 'admin');
    const id = idParam(req.params.id);
    const v = formText(req.body, 'version');
    if (!/^[1-9]\d{0,9}$/.test(v)) throw new RuError('REQUEST_INVALID', 'version must be a version number', { param: 'version' });
    await auditedChange(ctx, req, user, { kind: 'pin', host: id, version: Number(v), detail: `pinned ${v}` }, () => ctx.meta.pin(id, Number(v)));
    ctx.cache.served.delete(id);
    return reply.redirect(`/hosts/${encodeURIComponent(id)}?done=pinned`, 303);
  });

  app.post<{ Params: { id: string } }>('/hosts/:id/unpin', async (req, reply) => {
    const user = await changeUser(ctx, req, 'admin');
    const id = idParam(req.params.id);
    await auditedChange(ctx, req, user, { kind: 'pin', host: id, detail: 'unpinned' }, () => ctx.meta.unpin(id));
    ctx.cache.served.delete(id);
    return reply.redirect(`/hosts/${encodeURIComponent(id)}?done=unpinned`, 303);
  });
}

/** Choose two versions to compare (a GET form: comparing changes nothing). */
function diffForm(host: Host, desc: readonly VersionSummary[], from?: number, to?: number, own = false): Html {
  const a = from ?? desc[1]?.version ?? desc[0]!.version;
  const b = to ?? desc[0]!.version;
  const options = (sel: number): Html => html`${desc.map((v) => html`<option value="${v.version}"${v.version === sel ? html` selected` : ''}>${v.version} (${v.created.slice(0, 16).replace('T', ' ')})</option>`)}`;
  return html`<form method="get" action="/hosts/${encodeURIComponent(host.id)}/diff" class="filters" aria-label="Compare versions">
<div class="field"><label for="diff-from">Compare version</label><select id="diff-from" name="from">${options(a)}</select></div>
<div class="field"><label for="diff-to">with version</label><select id="diff-to" name="to">${options(b)}</select></div>
<div class="field"><label><input type="checkbox" name="own" value="1"${own ? html` checked` : ''}> own files only (without layers)</label></div>
<div class="field"><button type="submit">Show differences</button></div>
</form>`;
}

