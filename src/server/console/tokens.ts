// The console's token page: every token with its scope, limits and last use (never its hash);
// for admins, creating one (its secret is shown once, on the page right after, and then
// forgotten) and revoking one after a confirmation page. The secret travels POST → redirect →
// one GET, so reloading the answer neither shows the secret again nor creates a second token.

import type { FastifyInstance } from 'fastify';
import { generateToken, usesLeft } from '../../core/access.ts';
import { DURATION_EXAMPLES } from '../../core/duration.ts';
import { RuError } from '../../core/errors.ts';
import type { TokenRecord, TokenScope } from '../../core/store/metadata.ts';
import { MAX_TOKEN_USES } from '../../core/store/validate.ts';
import type { ServerContext } from '../context.ts';
import { hostOr404, idParam } from '../routes/common.ts';
import { expiryParam, labelParam, scopeParam, usesParam } from '../routes/admin.ts';
import { auditedChange, csrfField, doneNotice, formText, time } from './common.ts';
import { html, type Html } from './html.ts';
import { page, sendPage } from './layout.ts';
import { changeUser, may, pageUser, type ConsoleUser } from './session.ts';

/** How long a new token's secret waits for its one showing. */
const SECRET_HELD_MS = 5 * 60_000;

const KINDS = ['view', 'operate', 'admin', 'fetch', 'fetch-class', 'publish', 'publish-class'] as const;
type Kind = (typeof KINDS)[number];

const KIND_HELP: Record<Kind, string> = {
  view: 'view — reads everything in the console, changes nothing',
  operate: 'operate — view, and assigns and forgets pending machines',
  admin: 'admin — everything',
  fetch: 'fetch:HOST — a rescue system downloads one host\'s bundle',
  'fetch-class': 'fetch-class:CLASS — any host of one hardware class',
  publish: 'publish:HOST — a host publishes its own configuration',
  'publish-class': 'publish-class:CLASS — publishes the layers of one class (* for every class)',
};

const invalid = (message: string, param: string): RuError => new RuError('REQUEST_INVALID', message, { param });

/** The scope from the form's kind and target, checked as the JSON API checks it. */
function scopeOf(kind: string, target: string): TokenScope {
  if (!(KINDS as readonly string[]).includes(kind)) throw invalid(`scope must be one of ${KINDS.join(', ')}`, 'kind');
  return scopeParam(kind === 'view' || kind === 'operate' || kind === 'admin' ? kind : `${kind}:${target}`);
}

// The form's fields are text; the checks are the JSON API's (routes/admin.ts), so both refuse alike.
const labelOf = (v: string): string | null => (v === '' ? null : labelParam(v));

const expiryOf = (v: string, now: Date): string | null => (v.trim() === '' ? null : expiryParam({ expiresIn: v.trim() }, now));

function usesOf(v: string, scope: TokenScope): number | null {
  if (v.trim() === '') return null;
  if (!/^\d{1,7}$/.test(v.trim())) throw invalid(`uses must be a whole number from 1 to ${MAX_TOKEN_USES}`, 'uses');
  return usesParam(Number(v.trim()), scope);
}

function stateOf(t: TokenRecord, now: Date): Html {
  if (t.revoked) return html`<span class="badge bad">revoked</span>`;
  if (t.expires !== null && now.toISOString() >= t.expires) return html`<span class="badge bad">expired</span>`;
  if (usesLeft(t) === 0) return html`<span class="badge warn">used up</span>`;
  return html`<span class="badge ok">active</span>`;
}

function createForm(user: ConsoleUser, values: Record<string, string> = {}): Html {
  const v = (k: string): string => values[k] ?? '';
  return html`<section class="card" aria-labelledby="create-heading">
<h2 id="create-heading">Create a token</h2>
<form method="post" action="/tokens" class="form-grid">
${csrfField(user)}
<div class="field wide"><label for="kind">Scope</label>
<select id="kind" name="kind">${KINDS.map((k) => html`<option value="${k}"${(v('kind') || 'view') === k ? html` selected` : ''}>${KIND_HELP[k]}</option>`)}</select></div>
<div class="field"><label for="target">Host or class</label>
<input type="text" id="target" name="target" value="${v('target')}" size="24" aria-describedby="target-hint"><span class="hint" id="target-hint">for fetch, publish and the class scopes</span></div>
<div class="field"><label for="label">Label</label>
<input type="text" id="label" name="label" value="${v('label')}" size="30" maxlength="200" aria-describedby="label-hint"><span class="hint" id="label-hint">optional: who or what it is for</span></div>
<div class="field"><label for="expiresIn">Expires in</label>
<input type="text" id="expiresIn" name="expiresIn" value="${v('expiresIn')}" size="10" aria-describedby="expires-hint"><span class="hint" id="expires-hint">optional: ${DURATION_EXAMPLES}</span></div>
<div class="field"><label for="uses">Bundle downloads</label>
<input type="number" id="uses" name="uses" value="${v('uses')}" min="1" max="${MAX_TOKEN_USES}" aria-describedby="uses-hint"><span class="hint" id="uses-hint">optional, fetch tokens only</span></div>
<div class="field"><button type="submit">Create token</button></div>
</form>
</section>`;
}

export function tokenPages(app: FastifyInstance, ctx: ServerContext): void {
  /** New secrets waiting for their one showing, by session and token id; taken when shown. */
  const held = new Map<string, { secret: string; until: number }>();
  const heldKey = (user: ConsoleUser, id: string): string => `${user.session.id}/${id}`;
  const sweep = (): void => {
    const now = Date.now();
    for (const [k, v] of held) if (v.until < now) held.delete(k);
  };

  const listPage = async (user: ConsoleUser, o: { done?: unknown; error?: RuError; values?: Record<string, string> } = {}): Promise<Html> => {
    const now = ctx.now();
    const tokens = [...(await ctx.meta.listTokens())].reverse();
    const admin = may(user, 'admin');
    const body = html`<h1>Tokens</h1>
${doneNotice(o.done, { revoked: 'The token is revoked: it no longer works, and console sessions signed in with it have ended.' })}
${o.error ? html`<div class="notice error" role="alert"><p><strong>${o.error.code}</strong>: ${o.error.message}</p></div>` : ''}
${admin ? createForm(user, o.values) : ''}
<h2>All tokens</h2>
<div class="table-wrap"><table>
<caption class="visually-hidden">Tokens, newest first</caption>
<thead><tr><th scope="col">Token</th><th scope="col">Scope</th><th scope="col">Label</th><th scope="col">State</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col" class="num">Downloads left</th><th scope="col">Last used</th><th scope="col">From</th>${admin ? html`<th scope="col"><span class="visually-hidden">Actions</span></th>` : ''}</tr></thead>
<tbody>${tokens.map((t) => html`<tr id="token-${t.id}"><th scope="row"><code>${t.id}</code>${t.id === user.token.id ? html` <span class="badge">this session</span>` : ''}</th><td><code>${t.scope}</code></td><td>${t.label ?? ''}</td><td>${stateOf(t, now)}</td><td>${time(t.created)}</td><td>${t.expires ? time(t.expires) : html`<span class="muted">never</span>`}</td><td class="num">${t.uses === null ? html`<span class="muted">no limit</span>` : `${usesLeft(t)} of ${t.uses}`}</td><td>${time(t.lastUsed)}</td><td>${t.lastAddress ?? ''}</td>${admin ? html`<td>${t.revoked ? '' : html`<a href="/tokens/${t.id}/revoke" class="button secondary" aria-label="Revoke token ${t.id}">Revoke…</a>`}</td>` : ''}</tr>`)}</tbody></table></div>`;
    return page(user, { title: 'Tokens', nav: 'tokens', body });
  };

  app.get<{ Querystring: { done?: string } }>('/tokens', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    return sendPage(reply, await listPage(user, { done: req.query.done }));
  });

  app.post('/tokens', async (req, reply) => {
    const user = await changeUser(ctx, req, 'admin');
    const values = { kind: formText(req.body, 'kind'), target: formText(req.body, 'target').trim(), label: formText(req.body, 'label'), expiresIn: formText(req.body, 'expiresIn'), uses: formText(req.body, 'uses') };
    const t = generateToken();
    let rec: TokenRecord;
    try {
      const scope = scopeOf(values.kind, values.target);
      const label = labelOf(values.label);
      const expires = expiryOf(values.expiresIn, ctx.now());
      const uses = usesOf(values.uses, scope);
      const hostScoped = scope.startsWith('fetch:') || scope.startsWith('publish:');
      const limits = `${expires ? `, expires ${expires}` : ''}${uses !== null ? `, ${uses} use${uses === 1 ? '' : 's'}` : ''}`;
      rec = await auditedChange(ctx, req, user, { kind: 'token', host: hostScoped ? values.target : null, detail: `created ${t.id} (${scope}${limits})` }, async () => {
        // A class is only a label hosts carry, so a class token may come before its hosts; a host token may not.
        if (hostScoped) await hostOr404(ctx, values.target);
        return ctx.meta.createToken({ id: t.id, secretHash: t.secretHash, scope, label, expires, uses });
      });
    } catch (e) {
      if (!(e instanceof RuError) || !['REQUEST_INVALID', 'HOST_UNKNOWN', 'STORE_INVALID'].includes(e.code)) throw e;
      // The form again, filled in as it was, with what to fix.
      return sendPage(reply, await listPage(user, { error: e, values }), 400);
    }
    sweep();
    held.set(heldKey(user, rec.id), { secret: t.token, until: Date.now() + SECRET_HELD_MS });
    return reply.redirect(`/tokens/${rec.id}/created`, 303);
  });

  app.get<{ Params: { id: string } }>('/tokens/:id/created', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'admin');
    if (!user) return reply;
    const id = idParam(req.params.id, 'token id');
    const key = heldKey(user, id);
    const h = held.get(key);
    // Taken on the first showing: a reload, the back button or another tab finds nothing.
    held.delete(key);
    const rec = await ctx.meta.getToken(id);
    if (!rec) throw new RuError('TOKEN_UNKNOWN', `no token ${id}`, { token: id });
    const body = h && h.until >= Date.now()
      ? html`<h1>Token <code>${rec.id}</code> created</h1>
<div class="notice warn" role="status"><p>Copy the token now: it is shown <strong>only this once</strong>. The server keeps only its hash.</p></div>
<p><label for="new-token">Token (${rec.scope})</label></p>
<output id="new-token" class="secret" data-copy>${h.secret}</output>
<p class="hint">Give it to a rescue system or tool, e.g. <code>REAR_UPDATE_TOKEN=…</code> or <code>--token</code>.</p>
<p><a href="/tokens">Back to the tokens</a></p>`
      : html`<h1>Token <code>${rec.id}</code></h1>
<div class="notice" role="status"><p>The secret of this token was shown once, right after it was created, and is not available any more. If it was lost, revoke the token and create a new one.</p></div>
<p><a href="/tokens">Back to the tokens</a></p>`;
    return sendPage(reply, page(user, { title: `Token ${rec.id}`, nav: 'tokens', body, scripts: ['console.js'] }));
  });

  app.get<{ Params: { id: string } }>('/tokens/:id/revoke', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'admin');
    if (!user) return reply;
    const id = idParam(req.params.id, 'token id');
    const rec = await ctx.meta.getToken(id);
    if (!rec) throw new RuError('TOKEN_UNKNOWN', `no token ${id}`, { token: id });
    const body = html`<h1>Revoke token <code>${rec.id}</code>?</h1>
<dl class="facts"><dt>Scope</dt><dd><code>${rec.scope}</code></dd><dt>Label</dt><dd>${rec.label ?? html`<span class="muted">none</span>`}</dd><dt>Created</dt><dd>${time(rec.created)}</dd><dt>Last used</dt><dd>${time(rec.lastUsed)}</dd></dl>
${rec.revoked ? html`<div class="notice" role="status"><p>This token was revoked at ${time(rec.revoked)}.</p></div>` : html`<div class="notice warn"><p>Anything using this token stops working at once${rec.id === user.token.id ? html`, <strong>including this console session</strong>` : ''}. This cannot be undone.</p></div>
<form method="post" action="/tokens/${rec.id}/revoke" class="actions">${csrfField(user)}<button type="submit" class="danger">Revoke token ${rec.id}</button><a href="/tokens">Cancel</a></form>`}`;
    return sendPage(reply, page(user, { title: `Revoke ${rec.id}`, nav: 'tokens', body }));
  });

  app.post<{ Params: { id: string } }>('/tokens/:id/revoke', async (req, reply) => {
    const user = await changeUser(ctx, req, 'admin');
    const id = idParam(req.params.id, 'token id');
    await auditedChange(ctx, req, user, { kind: 'token', detail: `revoked ${id}` }, () => ctx.meta.revokeToken(id));
    ctx.cache.tokens.delete(id);
    return reply.redirect('/tokens?done=revoked', 303);
  });
}
