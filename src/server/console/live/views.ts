// The live pages as HTML, rendered on the server from the view models (data.ts), complete
// without JavaScript. Their scripts (assets/live.js, assets/live-log.js) rebuild the same
// structures from the JSON the streams send, so both must change together: class names and
// ids used here are the scripts' contract.

import { html, raw, type Html } from '../html.ts';
import type { ConsoleUser } from '../session.ts';
import { may } from '../session.ts';
import type { EventView, HardwareView, HostSide, IncidentState, PendingCard, RecoveryRow } from './data.ts';
import type { RenderedLine } from './log-lines.ts';
import { PHASE_LABELS } from './format.ts';

const hostCell = (host: string | null): Html => (host === null ? html`<em class="unknown">unknown machine</em>` : html`<a href="/recoveries?host=${encodeURIComponent(host)}">${host}</a>`);

export function phaseBadge(r: Pick<RecoveryRow, 'phase' | 'silent'>): Html {
  return html`<span class="phase phase-${r.phase}">${PHASE_LABELS[r.phase]}</span>${r.silent ? html` <span class="badge silent" title="no sign of life for a while">silent</span>` : ''}`;
}

/** Elapsed time that the script keeps ticking while the recovery is active. */
const elapsed = (r: RecoveryRow): Html => html`<span class="elapsed" data-since="${r.started}"${r.ended ? html` data-until="${r.ended}"` : ''}>${r.elapsedText}</span>`;

const lastSign = (r: RecoveryRow): Html => html`<time datetime="${r.lastSign}">${r.lastSignText}</time> <span class="ago" data-ago="${r.lastSign}"></span>`;

function eventItem(e: EventView): Html {
  return html`<li><time datetime="${e.time}">${e.timeText}</time> <span class="kind kind-${e.kind}">${e.kind}</span> <span class="msg">${e.message}</span></li>`;
}

function incidentRow(r: IncidentState['rows'][number]): Html {
  return html`<tr id="recovery-${r.id}" class="bucket-${r.bucket}">
<td><a href="/recoveries/${r.id}">#${r.id}</a></td>
<td>${hostCell(r.host)}</td>
<td>${phaseBadge(r)}</td>
<td>${elapsed(r)}</td>
<td>${lastSign(r)}</td>
<td><ul class="events">${r.events.map(eventItem)}</ul></td>
</tr>`;
}

/** The live pages' own stylesheet (layout.ts links only console.css; a body <link> is valid HTML). */

export function incidentBody(s: IncidentState): Html {
  return html`<h1>Incident</h1>
<div class="live" data-live="incident" data-stream="/live/events?view=incident" data-now="${s.now}">
<p class="live-note" hidden><span class="live-dot" aria-hidden="true"></span> <span class="live-state">Live</span></p>
<section aria-labelledby="counts-h">
<h2 id="counts-h">Recoveries by state</h2>
<ul class="counts" id="incident-counts">
${s.counts.map((c) => html`<li class="count bucket-${c.bucket}" data-bucket="${c.bucket}"><a href="/recoveries?bucket=${c.bucket}"><span class="n">${c.n}</span> <span class="label">${c.label}</span></a></li>`)}
</ul>
</section>
<p class="pending-note" id="pending-note"${s.pendingMachines === 0 ? html` hidden` : ''}><a href="/pending"><span class="n">${s.pendingMachines}</span> unknown machine(s) wait to be assigned</a></p>
<section aria-labelledby="active-h">
<h2 id="active-h">Active recoveries</h2>
<div class="table-wrap">
<table class="recoveries" id="incident-table"${s.rows.length === 0 ? html` hidden` : ''}>
<thead><tr><th scope="col">Recovery</th><th scope="col">Host</th><th scope="col">Phase</th><th scope="col">Elapsed</th><th scope="col">Last sign of life</th><th scope="col">Newest events</th></tr></thead>
<tbody id="incident-rows">
${s.rows.map(incidentRow)}
</tbody>
</table>
</div>
<p id="incident-empty"${s.rows.length ? html` hidden` : ''}>No active recoveries.</p>
</section>
<p class="visually-hidden" role="status" id="live-status"></p>
</div>`;
}

// ---- pending machines ----

export function factList(facts: readonly (readonly [string, string])[], cls = 'facts'): Html {
  return html`<dl class="${cls}">${facts.map(([k, v]) => html`<div><dt>${k}</dt><dd>${v}</dd></div>`)}</dl>`;
}

export function hardwareHtml(h: HardwareView | null): Html {
  if (!h) return html`<p class="muted">No hardware report.</p>`;
  return html`${h.summary.length ? factList(h.summary, 'facts hw-summary') : ''}
${h.disks.length ? html`<table class="hw disks"><caption>Disks</caption><thead><tr><th scope="col">Disk</th><th scope="col">Size</th><th scope="col">Model</th></tr></thead><tbody>${h.disks.map(([n, s, m]) => html`<tr><td>${n}</td><td>${s}</td><td>${m}</td></tr>`)}</tbody></table>` : html`<p class="muted">No disks reported.</p>`}
${h.nics.length ? html`<table class="hw nics"><caption>Network interfaces</caption><thead><tr><th scope="col">Interface</th><th scope="col">MAC</th><th scope="col">Driver</th></tr></thead><tbody>${h.nics.map(([n, m, d]) => html`<tr><td>${n}</td><td>${m}</td><td>${d}</td></tr>`)}</tbody></table>` : html`<p class="muted">No network interfaces reported.</p>`}`;
}

function hintsHtml(c: PendingCard, operate: boolean): Html {
  if (!c.hints.length) return html`<p class="muted">No host resembles this machine.</p>`;
  return html`<ol class="hints">${c.hints.map((h) => html`<li><span class="hint-host">${h.host}</span> <span class="score">${h.score}%</span>${operate ? html` <a class="button small" href="/pending/${c.id}/assign?host=${encodeURIComponent(h.host)}">Assign to ${h.host}…</a>` : ''}
<ul class="reasons">${h.reasons.map((r) => html`<li>${r}</li>`)}</ul></li>`)}</ol>`;
}

/** The part of a card that changes with the machine (the script replaces it); the actions stay. */
export function pendingInfo(c: PendingCard, operate: boolean): Html {
  return html`<h2 id="pending-${c.id}-h">${c.title}</h2>
<div class="cols">
<section><h3>Identity</h3>${factList(c.facts)}${c.recovery !== null ? html`<p><a href="/recoveries/${c.recovery}">Recovery #${c.recovery}</a></p>` : ''}</section>
<section><h3>Hardware</h3>${hardwareHtml(c.hardware)}</section>
<section><h3>Match hints</h3>${hintsHtml(c, operate)}</section>
</div>`;
}

export function pendingActions(c: PendingCard): Html {
  return html`<form method="get" action="/pending/${c.id}/assign" class="assign-form">
<label for="host-${c.id}">Assign to host</label>
<input id="host-${c.id}" name="host" list="host-ids" autocomplete="off" required value="${c.hints[0]?.host ?? ''}">
<button type="submit">Assign…</button>
</form>
<a class="button secondary" href="/pending/${c.id}/forget">Forget…</a>`;
}

export function pendingCardHtml(c: PendingCard, operate: boolean): Html {
  return html`<article class="pending-card" id="pending-${c.id}" data-id="${c.id}" aria-labelledby="pending-${c.id}-h">
<div class="pending-info">${pendingInfo(c, operate)}</div>
${operate ? html`<div class="pending-actions">${pendingActions(c)}</div>` : ''}
</article>`;
}

export function pendingBody(user: ConsoleUser, machines: readonly PendingCard[], hostIds: readonly string[], notice: Html | null): Html {
  const operate = may(user, 'operate');
  return html`<h1>Pending machines</h1>
${notice ?? ''}
<div class="live" data-live="pending" data-stream="/live/events?view=pending" data-operate="${operate ? '1' : '0'}">
<p class="live-note" hidden><span class="live-dot" aria-hidden="true"></span> <span class="live-state">Live</span></p>
<p>Rescue systems that the server could not match to a host wait here until someone assigns them. What they report is unverified.</p>
${operate ? html`<datalist id="host-ids">${hostIds.map((h) => html`<option value="${h}"></option>`)}</datalist>` : ''}
<p id="pending-empty"${machines.length ? html` hidden` : ''}>No machine is waiting.</p>
<div id="pending-list" class="pending-list">
${machines.map((m) => pendingCardHtml(m, operate))}
</div>
<p class="visually-hidden" role="status" id="live-status"></p>
</div>`;
}

// ---- recoveries ----

export function recoveriesBody(rows: readonly RecoveryRow[], filter: { host: string; phase: string }, phases: readonly string[]): Html {
  return html`<h1>Recoveries</h1>
<form method="get" action="/recoveries" class="filters">
<label for="f-host">Host</label> <input id="f-host" name="host" value="${filter.host}">
<label for="f-phase">Phase</label> <select id="f-phase" name="phase"><option value="">any</option>${phases.map((p) => html`<option value="${p}"${p === filter.phase ? html` selected` : ''}>${p}</option>`)}</select>
<button type="submit">Filter</button>
</form>
${rows.length ? html`<div class="table-wrap"><table class="recoveries">
<thead><tr><th scope="col">Recovery</th><th scope="col">Host</th><th scope="col">Phase</th><th scope="col">Started</th><th scope="col">Elapsed</th><th scope="col">Last sign of life</th><th scope="col">Outcome</th></tr></thead>
<tbody>${rows.map((r) => html`<tr class="bucket-${r.bucket}${r.active ? ' active' : ''}">
<td><a href="/recoveries/${r.id}">#${r.id}</a></td><td>${hostCell(r.host)}</td><td>${phaseBadge(r)}</td><td><time datetime="${r.started}">${r.startedText}</time></td>
<td>${elapsed(r)}</td><td>${lastSign(r)}</td><td>${outcome(r)}</td></tr>`)}</tbody></table></div>` : html`<p>No recovery matches.</p>`}`;
}

function outcome(r: RecoveryRow): Html | string {
  if (r.active) return '';
  if (r.error) return html`<code>${r.error}</code>`;
  return r.exitStatus === null ? r.phase : `exit status ${r.exitStatus}`;
}

export function timelineItem(e: EventView): Html {
  return html`<li class="kind-${e.kind}" data-seq="${e.seq}"><time datetime="${e.time}">${e.timeText}</time> <span class="kind">${e.kind}</span>${e.actor ? html` <span class="actor">by <code>${e.actor}</code></span>` : ''}${e.message ? html` <span class="msg">${e.message}</span>` : ''}${e.detail ? html` <span class="detail">${e.detail}</span>` : ''}</li>`;
}

export function statusFacts(r: RecoveryRow): Html {
  return html`<dl class="facts status" id="recovery-status">
<div><dt>Host</dt><dd data-field="host">${hostCell(r.host)}</dd></div>
<div><dt>Phase</dt><dd data-field="phase">${phaseBadge(r)}</dd></div>
<div><dt>Started</dt><dd>${r.startedText}</dd></div>
<div><dt>Elapsed</dt><dd>${elapsed(r)}</dd></div>
<div><dt>Last sign of life</dt><dd data-field="lastSign">${lastSign(r)}</dd></div>
<div><dt>Ended</dt><dd data-field="ended">${r.endedText}</dd></div>
<div><dt>Outcome</dt><dd data-field="outcome">${outcome(r) || '-'}</dd></div>
<div><dt>Address</dt><dd>${r.address ?? '-'}</dd></div>
${r.pending !== null ? html`<div><dt>Waited as</dt><dd>pending machine ${r.pending}</dd></div>` : ''}
</dl>`;
}

/**
 * One log line. `h` is ansi.ts's output: the line's text escaped by the ANSI library, with only
 * its own span/b/i/u/s tags, so it is inserted as it is.
 */
export function logLine(l: RenderedLine, firstError: boolean): Html {
  // Spans with the newline inside, in a <pre>: lines break without any stylesheet, and hiding a
  // line (search) hides its line break with it.
  return html`<span class="log-line${l.error ? ' log-error' : ''}"${firstError ? html` id="first-error"` : ''}>${raw(l.html)}
</span>`;
}

export interface LogPart {
  readonly id: number;
  readonly lines: readonly RenderedLine[];
  /** Bytes the page holds: the stream continues here. */
  readonly offset: number;
  /** Bytes before the first line shown (a long log shows its tail). */
  readonly skipped: number;
  readonly complete: boolean;
  readonly bytes: number;
  readonly workflow: string;
  readonly stamp: string;
}

export function recoveryBody(r: RecoveryRow, events: readonly EventView[], log: LogPart | null, stream: string): Html {
  const firstErr = log ? log.lines.findIndex((l) => l.error) : -1;
  return html`<h1 id="recovery-title">Recovery #${r.id}: ${r.host ?? 'unknown machine'}</h1>
<div class="live" data-live="recovery" data-recovery="${r.id}" data-stream="${stream}">
<p class="live-note" hidden><span class="live-dot" aria-hidden="true"></span> <span class="live-state">Live</span></p>
<div class="cols">
<section aria-labelledby="status-h"><h2 id="status-h">Status</h2>${statusFacts(r)}</section>
<section aria-labelledby="timeline-h"><h2 id="timeline-h">Timeline</h2>
<ol class="timeline" id="timeline">${events.map(timelineItem)}</ol></section>
</div>
<section aria-labelledby="log-h" class="log-section">
<h2 id="log-h">Recovery log</h2>
<p id="log-meta" class="muted">${log ? html`Log ${log.id}: ${log.workflow} ${log.stamp}, <span id="log-state">${log.complete ? 'complete' : 'receiving'}</span>. <a href="/recoveries/${r.id}/log.txt" download>Download the log</a>` : html`<span id="log-state">No recovery log yet; it appears here when ReaR starts sending it.</span>`}</p>
<div class="log-tools" id="log-tools">
<a href="#first-error" id="jump-error" class="button small"${firstErr < 0 ? html` hidden` : ''}>Jump to the first error</a>
<span class="js-only" hidden>
<label for="log-search">Search the log</label> <input id="log-search" type="search" autocomplete="off">
<span id="log-matches" class="muted" aria-live="polite"></span>
<button type="button" id="log-follow" class="small" aria-pressed="true">Following</button>
</span>
</div>
${log && log.skipped > 0 ? html`<p class="muted">The first ${log.skipped} bytes are not shown here: download the log to read them.</p>` : ''}
<pre class="log" id="log" tabindex="0" aria-label="Recovery log lines">${log ? log.lines.map((l, i) => logLine(l, i === firstErr)) : ''}</pre>
<p id="log-paused" class="log-paused" hidden>Paused: you scrolled up. <button type="button" id="log-resume" class="small">Jump to the end</button></p>
</section>
<p class="visually-hidden" role="status" id="live-status"></p>
</div>`;
}

// ---- confirmations ----

export function sideBySide(left: { title: string; body: Html }, right: { title: string; body: Html }): Html {
  return html`<div class="compare">
<section aria-labelledby="cmp-l"><h2 id="cmp-l">${left.title}</h2>${left.body}</section>
<section aria-labelledby="cmp-r"><h2 id="cmp-r">${right.title}</h2>${right.body}</section>
</div>`;
}

export function hostSideHtml(h: HostSide): Html {
  return html`${factList(h.facts)}
<h3>Disks in its layout</h3>
${h.layout ? html`<p class="muted">From version ${h.layout.version}'s disklayout.conf.</p>${h.layout.disks.length ? html`<table class="hw disks"><caption>Layout disks</caption><thead><tr><th scope="col">Device</th><th scope="col">Size</th></tr></thead><tbody>${h.layout.disks.map(([d, s]) => html`<tr><td>${d}</td><td>${s}</td></tr>`)}</tbody></table>` : html`<p class="muted">The layout names no disks.</p>`}` : html`<p class="muted">No layout known (nothing published yet).</p>`}`;
}
