// Console sessions (docs/console.md): a browser signs in once with a view, operate or admin
// token and then holds a random secret in an HttpOnly, SameSite=Strict cookie; the store keeps
// only its sha256. Every request re-reads the session and its token, so an idle or absolute
// expiry, a sign-out, a revoked or expired token ends the session at once. State-changing
// requests also need the session's CSRF token and a same-origin Origin (or Sec-Fetch-Site).
// Bearer tokens never reach the browser after the sign-in form.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { parse as parseCookies, serialize as serializeCookie } from 'hono/utils/cookie';
import { checkToken, parseToken } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import type { Session, TokenRecord, TokenScope } from '../../core/store/metadata.ts';
import type { ServerContext } from '../context.ts';
import type { Actor } from '../recoveries.ts';
import { audit } from '../routes/common.ts';
import { errorPage } from './layout.ts';

export type Role = 'view' | 'operate' | 'admin';

export interface ConsoleUser {
  readonly token: TokenRecord;
  readonly session: Session;
  readonly role: Role;
  /** The session's synchronizer token: forms carry it as `_csrf`, fetch() as `X-CSRF-Token`. */
  readonly csrf: string;
  /** Who acts, for the audit and the recovery service. */
  readonly actor: Actor;
}

const RANK: Record<Role, number> = { view: 1, operate: 2, admin: 3 };

/** The console role a token scope grants, or null: publish and fetch tokens cannot sign in. */
export function roleOf(scope: TokenScope): Role | null {
  return scope === 'admin' || scope === 'operate' || scope === 'view' ? scope : null;
}

/** Whether the user's role covers `need` (view < operate < admin). */
export const may = (user: ConsoleUser | null, need: Role): boolean => user !== null && RANK[user.role] >= RANK[need];

/** __Host- keeps the cookie to exactly this origin when it can carry Secure (TLS). */
export const cookieName = (ctx: Pick<ServerContext, 'console'>): string => (ctx.console.secure ? '__Host-ru_session' : 'ru_session');

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookieSecret(ctx: Pick<ServerContext, 'console'>, req: FastifyRequest): string | null {
  const header = req.headers.cookie;
  if (!header) return null;
  const v = parseCookies(header, cookieName(ctx))[cookieName(ctx)];
  // Our secrets are 43 base64url characters; anything else is not one of ours.
  return v !== undefined && /^[A-Za-z0-9_-]{43}$/.test(v) ? v : null;
}

function setCookie(ctx: Pick<ServerContext, 'console'>, reply: FastifyReply, value: string, clear = false): void {
  const opts = { path: '/' as const, httpOnly: true, sameSite: 'Strict' as const, ...(clear ? { maxAge: 0 } : {}) };
  const c = ctx.console.secure ? serializeCookie(cookieName(ctx), value, { ...opts, secure: true }) : serializeCookie(cookieName(ctx), value, opts);
  reply.header('set-cookie', c);
}

export const clearSessionCookie = (ctx: Pick<ServerContext, 'console'>, reply: FastifyReply): void => setCookie(ctx, reply, '', true);

/** Why a token may not be used right now (revoked, expired), or null: it may. Spent download uses do not matter here. */
function tokenProblem(rec: TokenRecord | null, now: Date): string | null {
  if (!rec) return 'its token no longer exists';
  if (rec.revoked) return `its token ${rec.id} was revoked`;
  if (rec.expires !== null && now.toISOString() >= rec.expires) return `its token ${rec.id} expired`;
  if (roleOf(rec.scope) === null) return `its token ${rec.id} cannot use the console`;
  return null;
}

/**
 * The signed-in user of a request, or null (no cookie, an unknown, expired or idle session,
 * or a token that no longer works: such a session is deleted). A live session is touched.
 */
export async function currentUser(ctx: ServerContext, req: FastifyRequest): Promise<ConsoleUser | null> {
  const secret = cookieSecret(ctx, req);
  if (secret === null) return null;
  const id = sha256(secret);
  const session = await ctx.meta.getSession(id);
  if (!session) return null;
  const now = ctx.now();
  const idleSince = new Date(now.getTime() - ctx.console.sessionIdleMs).toISOString();
  const token = await ctx.meta.getToken(session.token);
  if (now.toISOString() >= session.expires || session.lastSeen <= idleSince || tokenProblem(token, now) !== null) {
    await ctx.meta.deleteSession(id);
    return null;
  }
  await ctx.meta.touchSession(id);
  return { token: token!, session, role: roleOf(token!.scope)!, csrf: session.csrf, actor: { token: token!.id, address: req.ip } };
}

const sessionInvalid = (): RuError => new RuError('SESSION_INVALID', 'not signed in to the console, or the session ended (idle, expired, signed out, or its token was revoked): sign in again');

function forbidden(user: ConsoleUser, need: Role): RuError {
  return new RuError('FORBIDDEN', `token ${user.token.id} (${user.role}) may not do this: it needs the ${need} role`, { token: user.token.id, scope: user.token.scope });
}

/** A form field or header value that is one string. */
function oneString(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/**
 * Same origin: the Origin header names the host the request was sent to; a browser that sends
 * `Origin: null` (our Referrer-Policy no-referrer makes Chromium do so for same-origin POSTs) or
 * none is judged by Sec-Fetch-Site, which every current browser sends.
 */
export function checkOrigin(req: FastifyRequest): void {
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== 'null') {
    let host: string | null = null;
    try {
      const u = new URL(origin);
      host = u.protocol === 'http:' || u.protocol === 'https:' ? u.host : null;
    } catch {
      host = null;
    }
    if (host === null || host !== req.headers.host) throw new RuError('CSRF_INVALID', `the request came from another origin (${origin.slice(0, 100)}): nothing was changed`, { origin: origin.slice(0, 100) });
    return;
  }
  if (req.headers['sec-fetch-site'] !== 'same-origin') throw new RuError('CSRF_INVALID', 'the request does not show that it came from this console (no same-origin Origin or Sec-Fetch-Site): nothing was changed');
}

/** Origin, then the synchronizer token (form field `_csrf` or header X-CSRF-Token). */
export function checkCsrf(req: FastifyRequest, csrf: string): void {
  checkOrigin(req);
  const body = req.body as Record<string, unknown> | undefined;
  const given = oneString(req.headers['x-csrf-token']) ?? (body && typeof body === 'object' ? oneString(body._csrf) : null);
  if (given === null || !sameSecret(given, csrf)) throw new RuError('CSRF_INVALID', 'the request did not carry this session\'s CSRF token: reload the page and try again; nothing was changed');
}

/** For state-changing requests (POST): a session, the CSRF token and same origin, and the role. */
export async function changeUser(ctx: ServerContext, req: FastifyRequest, need: Role): Promise<ConsoleUser> {
  const user = await currentUser(ctx, req);
  if (!user) throw sessionInvalid();
  checkCsrf(req, user.csrf);
  if (!may(user, need)) throw forbidden(user, need);
  return user;
}

/** For event streams (GET, no redirect possible): a session and the role. */
export async function streamUser(ctx: ServerContext, req: FastifyRequest, need: Role): Promise<ConsoleUser> {
  const user = await currentUser(ctx, req);
  if (!user) throw sessionInvalid();
  if (!may(user, need)) throw forbidden(user, need);
  return user;
}

/** Where to go after signing in: only a path on this server (no scheme, no //host). */
export function safeNext(v: unknown): string {
  return typeof v === 'string' && /^\/(?![/\\])[\x21-\x7e]*$/.test(v) && !v.startsWith('/sign-') ? v : '/';
}

/**
 * Opens a session for the token typed into the sign-in form: the cookie gets a new secret
 * each time (a session id never survives a sign-in), and an old cookie's session is deleted.
 * Refusals: AUTH_INVALID, AUTH_EXPIRED, FORBIDDEN (a token that cannot use the console).
 * Each attempt is audited as kind 'session'.
 */
export async function signIn(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, tokenText: string): Promise<ConsoleUser> {
  const old = cookieSecret(ctx, req);
  if (old !== null) await ctx.meta.deleteSession(sha256(old));
  let tokenId: string | null = null;
  try {
    const { id, secret } = parseToken(tokenText);
    tokenId = id;
    const rec = checkToken(await ctx.meta.getToken(id), secret, { now: ctx.now(), allowSpent: true });
    const role = roleOf(rec.scope);
    if (role === null) throw new RuError('FORBIDDEN', `token ${rec.id} is a ${rec.scope} token, which cannot sign in to the console: use a view, operate or admin token`, { token: rec.id, scope: rec.scope });
    const now = ctx.now();
    const cookie = randomBytes(32).toString('base64url');
    const session = await ctx.meta.createSession({
      id: sha256(cookie),
      token: rec.id,
      csrf: randomBytes(32).toString('base64url'),
      expires: new Date(now.getTime() + ctx.console.sessionMaxMs).toISOString(),
      address: req.ip,
    });
    setCookie(ctx, reply, cookie);
    ctx.tokenUse.note(rec.id, req.ip);
    await audit(ctx, req, { kind: 'session', token: rec.id, result: 'ok', detail: `signed in (${role})` });
    // Sessions nobody signs out of are swept here, now and then, rather than by a timer.
    await ctx.meta.deleteStaleSessions(new Date(now.getTime() - ctx.console.sessionIdleMs).toISOString()).catch((err: unknown) => req.log.error({ err }, 'session sweep failed'));
    return { token: rec, session, role, csrf: session.csrf, actor: { token: rec.id, address: req.ip } };
  } catch (e) {
    const code = e instanceof RuError ? e.code : 'INTERNAL';
    await audit(ctx, req, { kind: 'session', token: tokenId, result: code, detail: 'sign-in refused' });
    throw e;
  }
}

/** Ends the session (the caller has checked CSRF) and clears the cookie; audited. */
export async function signOut(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, user: ConsoleUser): Promise<void> {
  await ctx.meta.deleteSession(user.session.id);
  clearSessionCookie(ctx, reply);
  await audit(ctx, req, { kind: 'session', token: user.token.id, result: 'ok', detail: 'signed out' });
}

/**
 * For pages (GET): the user, or null after answering — a redirect to the sign-in page when
 * not signed in, a 403 page when the role is too low.
 */
export async function pageUser(ctx: ServerContext, req: FastifyRequest, reply: FastifyReply, need: Role): Promise<ConsoleUser | null> {
  const user = await currentUser(ctx, req);
  if (!user) {
    if (cookieSecret(ctx, req) !== null) clearSessionCookie(ctx, reply);
    const next = safeNext(req.url);
    await reply.redirect(next === '/' ? '/sign-in' : `/sign-in?next=${encodeURIComponent(next)}`, 303);
    return null;
  }
  if (!may(user, need)) {
    await errorPage(reply, user, forbidden(user, need));
    return null;
  }
  return user;
}
