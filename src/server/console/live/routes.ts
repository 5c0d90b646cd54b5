// The console's live pages: incident view (/), pending machines (/pending, with assign and
// forget behind confirmation pages), recoveries (/recoveries, /recoveries/:id with its live
// log and a raw download), and the server-sent event streams that keep them current:
// /live/events (incident and pending snapshots) and /live/recoveries/:id/stream (timeline,
// status, log lines). One stream per page; pages read complete without JavaScript.
// console/routes.ts calls livePages inside the console's context (security headers, HTML
// error pages). Docs: docs/console.md.

import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RuError } from '../../../core/errors.ts';
import { INCIDENT_BUCKETS, isEnded, RECOVERY_PHASES, type IncidentBucket, type RecoveryPhase } from '../../../core/recovery.ts';
import type { LogRecord } from '../../../core/store/metadata.ts';
import type { ServerContext } from '../../context.ts';
import { logStream } from '../../limits.ts';
import type { LiveChange, RecoveryView } from '../../recoveries.ts';
import { audit, idParam } from '../../routes/common.ts';
import { html, type Html } from '../html.ts';
import { page, sendPage } from '../layout.ts';
import { changeUser, may, pageUser, streamUser, type ConsoleUser } from '../session.ts';
import { eventView, hostSide, incidentState, machineFacts, pendingCard, pendingState, recoveryRow, type PendingCard } from './data.ts';
import { LineSplitter, renderLine, splitLines, type RenderedLine } from './log-lines.ts';
import { SseStream } from './sse.ts';
import { factList, hardwareHtml, hostSideHtml, incidentBody, pendingBody, recoveriesBody, recoveryBody, sideBySide, type LogPart } from './views.ts';

/** A recovery page shows at most this much of its log (the tail); the download has it all. */
const PAGE_LOG_BYTES = 2 << 20;
/** Changes arriving together (a burst of events) make one snapshot. */
const SNAPSHOT_DELAY_MS = 150;
/** The incident view is re-sent this often anyway: "silent" is a reading of the clock, not an event. */
const REFRESH_MS = 15_000;

function numberParam(v: unknown, what: string): number {
  if (typeof v !== 'string' || !/^[1-9][0-9]{0,14}$/.test(v)) throw new RuError('REQUEST_INVALID', `${what} ${JSON.stringify(String(v).slice(0, 40))} is not a number`, { param: what });
  return Number(v);
}

const text = (v: unknown): string => (typeof v === 'string' ? v.trim() : '');

// ---- the recovery log, read for a page ----

/**
 * The log as a page shows it at load: whole lines up to the last newline (the unfinished line
 * comes over the stream once it ends), the tail when the log is long. `offset` is where the
 * stream continues.
 */
async function readLogForPage(ctx: ServerContext, rec: LogRecord): Promise<LogPart> {
  const base = { id: rec.id, complete: rec.complete, workflow: rec.workflow, stamp: rec.stamp };
  const size = await ctx.logs.size(rec.id);
  if (size === 0) return { ...base, lines: [], offset: 0, skipped: 0, bytes: 0 };
  let start = Math.max(0, size - PAGE_LOG_BYTES);
  const parts: Buffer[] = [];
  for await (const c of ctx.logs.range(rec.id, start, size)) parts.push(c);
  let body = Buffer.concat(parts);
  if (start > 0) {
    // Begin at a whole line.
    const nl = body.indexOf(0x0a);
    body = nl < 0 ? Buffer.alloc(0) : body.subarray(nl + 1);
    start = size - body.length;
  }
  // Only a finished log's unfinished last line is shown now; otherwise it may still grow.
  const end = rec.complete ? body.length : body.lastIndexOf(0x0a) + 1;
  const lines = splitLines(body.subarray(0, end)).map(renderLine);
  return { ...base, lines, offset: start + end, skipped: start, bytes: size };
}

// ---- stream positions ----

/**
 * A recovery stream's position, in every event's `id:` so that a reconnecting EventSource
 * (Last-Event-ID) or the page's script (query) continues exactly there: the newest timeline
 * event sent, the log shown and the byte after its last whole line shown.
 */
interface Position {
  seq: number;
  log: number;
  offset: number;
}

const positionId = (p: Position): string => `${p.seq}.${p.log}.${p.offset}`;

function parsePosition(req: FastifyRequest<{ Querystring: Record<string, string | undefined> }>): Position {
  const last = req.headers['last-event-id'];
  const m = typeof last === 'string' ? /^(\d{1,15})\.(\d{1,15})\.(\d{1,15})$/.exec(last) : null;
  if (m) return { seq: Number(m[1]), log: Number(m[2]), offset: Number(m[3]) };
  const n = (v: string | undefined): number => (v !== undefined && /^\d{1,15}$/.test(v) ? Number(v) : 0);
  return { seq: n(req.query.seq), log: n(req.query.log), offset: n(req.query.offset) };
}

const lineJson = (ls: readonly RenderedLine[]): string => JSON.stringify({ lines: ls.map((l) => [l.html, l.error ? 1 : 0]) });

export function livePages(app: FastifyInstance, ctx: ServerContext): void {
  /** Open streams: the server's close ends them (it would otherwise wait for them). */
  const streams = new Set<SseStream>();
  app.addHook('preClose', async () => {
    for (const s of [...streams]) s.close();
  });

  /**
   * Opens a stream for a signed-in user. Every ping re-reads the session, so a sign-out, an
   * expiry or a revoked token ends the stream within one ping interval.
   */
  async function openStream(req: FastifyRequest, reply: FastifyReply): Promise<SseStream> {
    await streamUser(ctx, req, 'view');
    // A live page stays open for hours: the log uploads' idle timeout, not the short one.
    logStream(req);
    const s = new SseStream(req, reply, async () => {
      await streamUser(ctx, req, 'view');
    });
    streams.add(s);
    s.onClose(() => streams.delete(s));
    // How long a browser waits before reconnecting on its own.
    s.send({ event: 'hello', data: '{}', retry: 2000 });
    return s;
  }

  // ---- incident view ----

  app.get('/', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const s = await incidentState(ctx);
    return sendPage(reply, page(user, { title: 'Incident', nav: 'incident', body: incidentBody(s), scripts: ['live.js'], styles: ['live.css'] }));
  });

  // ---- the incident and pending stream ----

  app.get<{ Querystring: { view?: string } }>('/live/events', async (req, reply) => {
    const view = req.query.view === 'pending' ? 'pending' : 'incident';
    const s = await openStream(req, reply);
    let timer: NodeJS.Timeout | null = null;
    let running = false;
    let again = false;
    const snapshot = async (): Promise<void> => {
      // One snapshot at a time; changes meanwhile make exactly one more.
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          const data = view === 'pending' ? await pendingState(ctx) : await incidentState(ctx);
          s.send({ event: view, data: JSON.stringify(data) });
        } while (again && !s.closed);
      } catch (err) {
        req.log.error({ err }, 'live snapshot failed');
      } finally {
        running = false;
      }
    };
    const schedule = (): void => {
      if (timer || s.closed) return;
      timer = setTimeout(() => {
        timer = null;
        void snapshot();
      }, SNAPSHOT_DELAY_MS);
    };
    const unsubscribe = ctx.recoveries.subscribe((c: LiveChange) => {
      // The pending page changes with pending machines, and with recoveries (hardware, hints).
      if (view === 'incident' || c.type !== 'recovery' || c.recovery.pending !== null) schedule();
    });
    const refresh = view === 'incident' ? setInterval(schedule, REFRESH_MS) : null;
    s.onClose(() => {
      unsubscribe();
      if (timer) clearTimeout(timer);
      if (refresh) clearInterval(refresh);
    });
    // What changed between the page's render and this connection (or while it was away).
    await snapshot();
    return reply;
  });

  // ---- pending machines ----

  app.get<{ Querystring: { assigned?: string; host?: string; forgot?: string } }>('/pending', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const [s, hosts] = await Promise.all([pendingState(ctx), may(user, 'operate') ? ctx.meta.listHosts() : Promise.resolve([])]);
    let notice: Html | null = null;
    if (req.query.assigned && req.query.host) notice = html`<div class="notice ok" role="status"><p>Machine ${req.query.assigned} was assigned to ${req.query.host}: it fetches that host's configuration the next time it asks.</p></div>`;
    else if (req.query.forgot) notice = html`<div class="notice ok" role="status"><p>Machine ${req.query.forgot} was forgotten; if it asks again it is recorded anew.</p></div>`;
    return sendPage(reply, page(user, { title: 'Pending machines', nav: 'pending', body: pendingBody(user, s.machines, hosts.map((h) => h.id), notice), scripts: ['live.js'], styles: ['live.css'] }));
  });

  async function pendingOr404(id: number) {
    const p = await ctx.meta.getPending(id);
    if (!p) throw new RuError('PENDING_UNKNOWN', `no pending machine ${id}`, { pending: id });
    return p;
  }

  function machineSide(c: PendingCard): Html {
    return html`${factList(c.facts)}<h3>Hardware</h3>${hardwareHtml(c.hardware)}`;
  }

  const csrfField = (user: ConsoleUser): Html => html`<input type="hidden" name="_csrf" value="${user.csrf}">`;

  app.get<{ Params: { id: string }; Querystring: { host?: string } }>('/pending/:id/assign', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'operate');
    if (!user) return reply;
    const p = await pendingOr404(numberParam(req.params.id, 'pending machine'));
    const c = await pendingCard(ctx, p);
    const hostId = text(req.query.host);
    const already = p.assignedHost ? html`<div class="notice warn" role="status"><p>This machine is already assigned to ${p.assignedHost}; assigning again replaces that.</p></div>` : '';
    if (!hostId) {
      const body = html`<h1>Assign machine ${p.id}</h1>${already}
<form method="get" action="/pending/${p.id}/assign" class="assign-form">
<label for="host">Host</label> <input id="host" name="host" required value="${c.hints[0]?.host ?? ''}"> <button type="submit">Continue…</button>
</form>
${sideBySide({ title: 'This machine (as it reports itself)', body: machineSide(c) }, { title: 'Host', body: html`<p class="muted">Choose a host first.</p>` })}`;
      return sendPage(reply, page(user, { title: `Assign machine ${p.id}`, nav: 'pending', body, styles: ['live.css'] }));
    }
    const host = await ctx.meta.getHost(hostId);
    if (!host) {
      const createForm = may(user, 'admin')
        ? html`<form method="post" action="/pending/${p.id}/create-host" class="confirm">${csrfField(user)}<input type="hidden" name="host" value="${hostId}">
<p>Create host <strong>${hostId}</strong> with this machine's MACs, UUID, serial and hostname, then assign the machine to it.</p>
<button type="submit">Create host ${hostId} and assign</button> <a href="/pending">Cancel</a></form>`
        : html`<p>An admin can create the host and assign the machine in one step.</p><p><a href="/pending">Back to pending machines</a></p>`;
      const body = html`<h1>Assign machine ${p.id}</h1>${already}
<div class="notice warn" role="status"><p>There is no host named ${hostId}.</p></div>
${createForm}
${sideBySide({ title: 'This machine (as it reports itself)', body: machineSide(c) }, { title: `New host ${hostId}`, body: factList([['Host', hostId], ['Hostnames', p.facts.hostname ?? '-'], ['MACs', p.facts.macs.join(' ') || '-'], ['UUID', p.facts.uuid ?? '-'], ['Serial', p.facts.serial ?? '-']]) })}`;
      return sendPage(reply, page(user, { title: `Assign machine ${p.id}`, nav: 'pending', body, styles: ['live.css'] }), 404);
    }
    const side = await hostSide(ctx, host);
    const hint = c.hints.find((h) => h.host === host.id);
    const body = html`<h1>Assign machine ${p.id} to ${host.id}?</h1>${already}
<p>Check that both describe the same machine. Once assigned, the machine fetches ${host.id}'s configuration and restores it.</p>
${hint ? html`<p>Match hint: ${hint.score}% — ${hint.reasons.join('; ')}</p>` : html`<p>The server found nothing that makes this machine resemble ${host.id}.</p>`}
${sideBySide({ title: 'This machine (as it reports itself)', body: machineSide(c) }, { title: `Host ${host.id}`, body: hostSideHtml(side) })}
<form method="post" action="/pending/${p.id}/assign" class="confirm">${csrfField(user)}<input type="hidden" name="host" value="${host.id}">
<button type="submit">Assign machine ${p.id} to ${host.id}</button> <a href="/pending">Cancel</a>
</form>`;
    return sendPage(reply, page(user, { title: `Assign machine ${p.id}`, nav: 'pending', body, styles: ['live.css'] }));
  });

  /** After an assignment: to the machine's recovery (to watch it go on), else the list. */
  async function afterAssign(reply: FastifyReply, pending: number, host: string): Promise<FastifyReply> {
    const recs = await ctx.meta.listRecoveries({ pending, limit: 1 });
    const to = recs[0] ? `/recoveries/${recs[0].id}` : `/pending?assigned=${pending}&host=${encodeURIComponent(host)}`;
    return reply.redirect(to, 303);
  }

  app.post<{ Params: { id: string }; Body: Record<string, unknown> }>('/pending/:id/assign', async (req, reply) => {
    const user = await changeUser(ctx, req, 'operate');
    const id = numberParam(req.params.id, 'pending machine');
    const host = idParam(text(req.body?.host));
    await ctx.recoveries.assign(user.actor, id, host);
    return afterAssign(reply, id, host);
  });

  app.post<{ Params: { id: string }; Body: Record<string, unknown> }>('/pending/:id/create-host', async (req, reply) => {
    const user = await changeUser(ctx, req, 'admin');
    const id = numberParam(req.params.id, 'pending machine');
    const hostId = idParam(text(req.body?.host));
    const p = await pendingOr404(id);
    try {
      await ctx.meta.addHost({ id: hostId, macs: p.facts.macs, uuid: p.facts.uuid, serial: p.facts.serial, hostnames: p.facts.hostname ? [p.facts.hostname] : [] });
    } catch (e) {
      await audit(ctx, req, { kind: 'host', token: user.token.id, host: hostId, result: e instanceof RuError ? e.code : 'INTERNAL', detail: `create from pending machine ${id} refused (console)` });
      throw e;
    }
    await audit(ctx, req, { kind: 'host', token: user.token.id, host: hostId, result: 'ok', detail: `created from pending machine ${id} (console)` });
    await ctx.recoveries.assign(user.actor, id, hostId);
    return afterAssign(reply, id, hostId);
  });

  app.get<{ Params: { id: string } }>('/pending/:id/forget', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'operate');
    if (!user) return reply;
    const p = await pendingOr404(numberParam(req.params.id, 'pending machine'));
    const c = await pendingCard(ctx, p);
    const body = html`<h1>Forget machine ${p.id}?</h1>
<p>The record and its match hints go. If the machine asks again, it is recorded anew as pending.</p>
${factList(machineFacts(p))}
<h2>Hardware</h2>${hardwareHtml(c.hardware)}
<form method="post" action="/pending/${p.id}/forget" class="confirm">${csrfField(user)}
<button type="submit" class="danger">Forget machine ${p.id}</button> <a href="/pending">Cancel</a>
</form>`;
    return sendPage(reply, page(user, { title: `Forget machine ${p.id}`, nav: 'pending', body, styles: ['live.css'] }));
  });

  app.post<{ Params: { id: string } }>('/pending/:id/forget', async (req, reply) => {
    const user = await changeUser(ctx, req, 'operate');
    const id = numberParam(req.params.id, 'pending machine');
    await ctx.recoveries.forget(user.actor, id);
    return reply.redirect(`/pending?forgot=${id}`, 303);
  });

  // ---- recoveries ----

  const FILTERS: readonly string[] = ['active', ...RECOVERY_PHASES, 'silent'];

  app.get<{ Querystring: { host?: string; phase?: string; bucket?: string } }>('/recoveries', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const host = text(req.query.host);
    const phase = text(req.query.phase);
    const bucket = text(req.query.bucket);
    const { recoveries } = await ctx.recoveries.list({ ...(host ? { host } : {}), limit: 500 });
    const now = ctx.now();
    const keep = (r: RecoveryView): boolean => {
      if (bucket && (INCIDENT_BUCKETS as readonly string[]).includes(bucket) && r.bucket !== (bucket as IncidentBucket)) return false;
      if (!phase) return true;
      if (phase === 'active') return !isEnded(r.phase);
      if (phase === 'silent') return r.silent;
      return r.phase === (phase as RecoveryPhase);
    };
    // Active first (they need attention), newest first within each.
    const rows = recoveries.filter(keep).sort((a, b) => Number(isEnded(a.phase)) - Number(isEnded(b.phase)) || b.id - a.id).map((r) => recoveryRow(r, now));
    return sendPage(reply, page(user, { title: 'Recoveries', nav: 'recoveries', body: recoveriesBody(rows, { host, phase: FILTERS.includes(phase) ? phase : bucket }, FILTERS), scripts: ['live.js'], styles: ['live.css'] }));
  });

  app.get<{ Params: { id: string } }>('/recoveries/:id', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const id = numberParam(req.params.id, 'recovery');
    const { recovery, events } = await ctx.recoveries.get(id);
    const rec = recovery.log !== null ? await ctx.meta.getLog(recovery.log) : null;
    const log = rec ? await readLogForPage(ctx, rec) : null;
    const pos: Position = { seq: events.at(-1)?.seq ?? 0, log: log?.id ?? 0, offset: log?.offset ?? 0 };
    const stream = `/live/recoveries/${id}/stream?seq=${pos.seq}&log=${pos.log}&offset=${pos.offset}`;
    const body = recoveryBody(recoveryRow(recovery, ctx.now()), events.map(eventView), log, stream);
    return sendPage(reply, page(user, { title: `Recovery ${id}`, nav: 'recoveries', body, scripts: ['live.js'], styles: ['live.css'] }));
  });

  app.get<{ Params: { id: string } }>('/recoveries/:id/log.txt', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const id = numberParam(req.params.id, 'recovery');
    const { recovery } = await ctx.recoveries.get(id);
    const rec = recovery.log !== null ? await ctx.meta.getLog(recovery.log) : null;
    if (!rec) throw new RuError('LOG_UNKNOWN', `recovery ${id} has no recovery log`, { recovery: id });
    const name = `recovery-${id}-${rec.host}-${rec.workflow}-${rec.stamp}.log`.replace(/[^A-Za-z0-9._-]/g, '_');
    // What is stored now: a download of a live log is a snapshot.
    const size = await ctx.logs.size(rec.id);
    return reply
      .type('text/plain; charset=utf-8')
      .header('content-disposition', `attachment; filename="${name}"`)
      .header('cache-control', 'no-store')
      .header('content-length', String(size))
      .send(size > 0 ? Readable.from(ctx.logs.range(rec.id, 0, size), { objectMode: false }) : '');
  });

  // ---- a recovery's stream: timeline, status, log ----

  app.get<{ Params: { id: string }; Querystring: Record<string, string | undefined> }>('/live/recoveries/:id/stream', async (req, reply) => {
    const id = numberParam(req.params.id, 'recovery');
    await streamUser(ctx, req, 'view');
    const first = await ctx.recoveries.get(id);
    const pos = parsePosition(req);
    const s = await openStream(req, reply);
    const frameId = (): string => positionId(pos);

    // Work is done in order, one step at a time, so frames never interleave and ids only grow.
    let chain: Promise<void> = Promise.resolve();
    const enqueue = (f: () => Promise<void> | void): void => {
      chain = chain.then(f).catch((err: unknown) => {
        req.log.error({ err }, 'recovery stream failed');
        s.close();
      });
    };

    let current: RecoveryView = first.recovery;
    let follower: AbortController | null = null;
    let logDone = true;

    const sendStatus = (): void => {
      const row = recoveryRow(current, ctx.now());
      s.send({ event: 'status', id: frameId(), data: JSON.stringify(row) });
    };
    const maybeEnd = (): void => {
      if (isEnded(current.phase) && logDone) {
        s.send({ event: 'end', id: frameId(), data: '{}' });
        s.close();
      }
    };

    const follow = (log: number): void => {
      follower?.abort();
      const stop = new AbortController();
      follower = stop;
      logDone = false;
      const splitter = new LineSplitter(pos.offset);
      void (async () => {
        const signal = AbortSignal.any([stop.signal, s.signal]);
        for await (const chunk of ctx.logs.read(log, pos.offset, true, signal)) {
          if (stop.signal.aborted || s.closed) return;
          const lines = splitter.push(chunk);
          if (lines.length) {
            pos.offset = splitter.offset;
            s.send({ event: 'log', id: frameId(), data: lineJson(lines.map(renderLine)) });
          }
        }
        if (stop.signal.aborted || s.closed) return;
        const rest = splitter.end();
        pos.offset = splitter.offset;
        if (rest.length) s.send({ event: 'log', id: frameId(), data: lineJson(rest.map(renderLine)) });
        const rec = await ctx.meta.getLog(log);
        s.send({ event: 'log-end', id: frameId(), data: JSON.stringify({ log, complete: rec?.complete ?? false, bytes: pos.offset }) });
        logDone = true;
        enqueue(maybeEnd);
      })().catch((err: unknown) => {
        if (!s.closed) req.log.error({ err }, 'following a recovery log failed');
        s.close();
      });
    };

    /** A (new) log linked to the recovery: the page starts it from its first byte. */
    const switchLog = (log: number): void => {
      pos.log = log;
      pos.offset = 0;
      s.send({ event: 'log-start', id: frameId(), data: JSON.stringify({ log }) });
      follow(log);
    };

    const pending: LiveChange[] = [];
    let ready = false;
    const onChange = (c: LiveChange): void => {
      // Deaf to the other instances for a while: what happened since our position, from the store.
      if (c.type === 'resync') {
        if (ready) enqueue(catchUp);
        return;
      }
      if (c.type !== 'recovery' || c.recovery.id !== id) return;
      if (!ready) {
        pending.push(c);
        return;
      }
      enqueue(() => apply(c));
    };
    const apply = (c: LiveChange): void => {
      if (c.type !== 'recovery' || s.closed) return;
      current = c.recovery;
      if (c.event.seq > pos.seq) {
        pos.seq = c.event.seq;
        s.send({ event: 'timeline', id: frameId(), data: JSON.stringify(eventView(c.event)) });
      }
      if (current.log !== null && current.log !== pos.log) switchLog(current.log);
      sendStatus();
      maybeEnd();
    };
    const unsubscribe = ctx.recoveries.subscribe(onChange);
    s.onClose(() => {
      unsubscribe();
      follower?.abort();
    });

    /** What happened since the position the page (or the reconnecting browser) holds. */
    const catchUp = async (): Promise<void> => {
      const now = await ctx.recoveries.get(id);
      current = now.recovery;
      for (const e of now.events) {
        if (e.seq <= pos.seq) continue;
        pos.seq = e.seq;
        s.send({ event: 'timeline', id: frameId(), data: JSON.stringify(eventView(e)) });
      }
      if (current.log !== null) {
        if (current.log !== pos.log) switchLog(current.log);
        else follow(current.log);
      }
      sendStatus();
    };
    enqueue(async () => {
      await catchUp();
      ready = true;
      for (const c of pending.splice(0)) apply(c);
      maybeEnd();
    });
    return reply;
  });
}
