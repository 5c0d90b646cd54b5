// Small pieces the console's pages share: reading form fields, showing times and sizes, the
// hidden CSRF field, and running a change so that it is audited with the session's token
// (as routes/admin.ts audits the JSON API's changes: 'ok' or the refusal's code).

import type { FastifyRequest } from 'fastify';
import { RuError } from '../../core/errors.ts';
import type { AuditKind } from '../../core/store/metadata.ts';
import type { ServerContext } from '../context.ts';
import { audit } from '../routes/common.ts';
import { html, type Html } from './html.ts';
import type { ConsoleUser } from './session.ts';
import { formatBytes } from '../../core/bytes.ts';

/** A parsed form body (app.ts: a repeated field is a list). */
export type Form = Record<string, string | string[] | undefined> | undefined;

/** One text field of a form ('' when absent); a field sent twice is refused. */
export function formText(body: unknown, name: string): string {
  const v = (body as Form)?.[name];
  if (v === undefined) return '';
  if (typeof v !== 'string') throw new RuError('REQUEST_INVALID', `the form field ${name} was sent more than once`, { param: name });
  return v;
}

/** One query parameter as text ('' when absent or repeated). */
export const queryText = (v: unknown): string => (typeof v === 'string' ? v : '');

export const csrfField = (user: ConsoleUser): Html => html`<input type="hidden" name="_csrf" value="${user.csrf}">`;

/** A stored time (ISO, UTC) for people, with the exact value in datetime. */
export function time(iso: string | null | undefined): Html {
  if (!iso) return html`<span class="muted">never</span>`;
  const shown = iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
  return html`<time datetime="${iso}">${shown}</time>`;
}

export const bytes = (n: number | null | undefined): string => (n === null || n === undefined ? '' : formatBytes(n));

/** Runs a console change and audits it with the session's token: 'ok', or the code it was refused with. */
export async function auditedChange<T>(ctx: ServerContext, req: FastifyRequest, user: ConsoleUser, e: { kind: AuditKind; host?: string | null; version?: number | null; detail: string }, run: () => Promise<T>): Promise<T> {
  const rec = { kind: e.kind, token: user.token.id, host: e.host ?? null, version: e.version ?? null, detail: `${e.detail} (console)` };
  try {
    const r = await run();
    await audit(ctx, req, { ...rec, result: 'ok' });
    return r;
  } catch (err) {
    await audit(ctx, req, { ...rec, result: err instanceof RuError ? err.code : 'INTERNAL' });
    throw err;
  }
}

/** A one-line notice after a redirect (?done=...), from a fixed list: the query never injects text. */
export function doneNotice(done: unknown, messages: Readonly<Record<string, string>>): Html {
  const m = typeof done === 'string' ? messages[done] : undefined;
  return m ? html`<div class="notice ok" role="status"><p>${m}</p></div>` : html``;
}
