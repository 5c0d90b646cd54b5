// The console's first page: signing in with a token (a form POST: the token never appears in
// a URL), and signing out (a POST with the CSRF token). session.ts holds the rules.

import type { FastifyInstance } from 'fastify';
import { RuError } from '../../core/errors.ts';
import type { ServerContext } from '../context.ts';
import { statusOf } from '../http-errors.ts';
import { html, type Html } from './html.ts';
import { page, sendPage } from './layout.ts';
import { changeUser, checkOrigin, currentUser, safeNext, signIn, signOut } from './session.ts';

type Form = Record<string, string | string[] | undefined> | undefined;

const field = (body: Form, name: string): string => {
  const v = body?.[name];
  return typeof v === 'string' ? v : '';
};

function signInBody(next: string, message: Html | null, note: string | null): Html {
  return html`<div class="sign-in">
<h1>Sign in to the rear-update console</h1>
${note ? html`<div class="notice" role="status"><p>${note}</p></div>` : ''}
${message ? html`<div class="notice error" role="alert" id="sign-in-error">${message}</div>` : ''}
<form method="post" action="/sign-in" class="card">
<input type="hidden" name="next" value="${next}">
<label for="token">Token</label>
<input type="password" id="token" name="token" required autocomplete="off" spellcheck="false" autofocus aria-describedby="${message ? 'sign-in-error token-hint' : 'token-hint'}"${message ? html` aria-invalid="true"` : ''}>
<p class="hint" id="token-hint">A <code>view</code>, <code>operate</code> or <code>admin</code> token (<code>ru_…</code>), as <code>rear-update admin token create --view</code> prints it. The browser keeps a session cookie, never the token.</p>
<button type="submit">Sign in</button>
</form>
</div>`;
}

export function signInPages(app: FastifyInstance, ctx: ServerContext): void {
  app.get<{ Querystring: { next?: string; signed_out?: string } }>('/sign-in', async (req, reply) => {
    const next = safeNext(req.query.next);
    // Signed in already: the form stays (to switch tokens), and says what signing in again does.
    const user = await currentUser(ctx, req);
    const note = user ? `You are signed in with token ${user.token.id} (${user.role}). Signing in again ends that session.` : req.query.signed_out === '1' ? 'You are signed out.' : null;
    return sendPage(reply, page(null, { title: 'Sign in', body: signInBody(next, null, note) }));
  });

  app.post<{ Body: Form }>('/sign-in', async (req, reply) => {
    // No session yet, so no synchronizer token; a sign-in from another origin is still refused
    // (login CSRF: a victim signed in as the attacker).
    checkOrigin(req);
    const next = safeNext(field(req.body, 'next'));
    const token = field(req.body, 'token');
    try {
      if (token.trim() === '') throw new RuError('AUTH_REQUIRED', 'enter a token');
      await signIn(ctx, req, reply, token);
    } catch (e) {
      if (!(e instanceof RuError) || !['AUTH_REQUIRED', 'AUTH_INVALID', 'AUTH_EXPIRED', 'FORBIDDEN'].includes(e.code)) throw e;
      const msg = e.code === 'FORBIDDEN' ? html`<p>${e.message}.</p>` : e.code === 'AUTH_EXPIRED' ? html`<p>This token has expired. Ask an admin for a new one.</p>` : e.code === 'AUTH_REQUIRED' ? html`<p>Enter a token.</p>` : html`<p>This token is not valid (unknown, revoked or mistyped).</p>`;
      return sendPage(reply, page(null, { title: 'Sign in', body: signInBody(next, msg, null) }), statusOf(e.code));
    }
    return reply.redirect(next, 303);
  });

  app.post('/sign-out', async (req, reply) => {
    const user = await changeUser(ctx, req, 'view');
    await signOut(ctx, req, reply, user);
    return reply.redirect('/sign-in?signed_out=1', 303);
  });
}
