// The console's page frame and the headers every console answer carries: one document shape
// (skip link, navigation, who is signed in, sign-out form, CSRF meta), a strict
// Content-Security-Policy that allows only this server's own scripts and styles (no inline
// script, no style attributes), and no caching of pages that show fleet data.

import type { FastifyReply } from 'fastify';
import { RuError } from '../../core/errors.ts';
import { statusOf } from '../http-errors.ts';
import { html, type Html } from './html.ts';
import type { ConsoleUser } from './session.ts';

export type NavEntry = 'incident' | 'pending' | 'recoveries' | 'hosts' | 'classes' | 'tokens' | 'audit';

const NAV: readonly { key: NavEntry; href: string; label: string }[] = [
  { key: 'incident', href: '/', label: 'Incident' },
  { key: 'pending', href: '/pending', label: 'Pending' },
  { key: 'recoveries', href: '/recoveries', label: 'Recoveries' },
  { key: 'hosts', href: '/hosts', label: 'Hosts' },
  { key: 'classes', href: '/classes', label: 'Classes' },
  { key: 'tokens', href: '/tokens', label: 'Tokens' },
  { key: 'audit', href: '/audit', label: 'Audit' },
];

export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

/** On every console answer (pages, assets, streams, errors). */
export function securityHeaders(reply: FastifyReply): void {
  reply.header('content-security-policy', CSP);
  reply.header('x-content-type-options', 'nosniff');
  reply.header('referrer-policy', 'no-referrer');
  reply.header('x-frame-options', 'DENY');
  reply.header('cross-origin-opener-policy', 'same-origin');
}

const SCRIPT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*\.js$/;
const STYLE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*\.css$/;

export interface PageOptions {
  readonly title: string;
  readonly nav?: NavEntry;
  /** The page's content; it starts with its own <h1>. */
  readonly body: Html;
  /** File names under /assets/, loaded with defer, in this order. */
  readonly scripts?: readonly string[];
  /** Stylesheets under /assets/ after console.css (the live pages' live.css). */
  readonly styles?: readonly string[];
}

/** A whole document. Without a user (the sign-in page, errors before sign-in) there is no navigation. */
export function page(user: ConsoleUser | null, o: PageOptions): Html {
  for (const s of o.scripts ?? []) if (!SCRIPT_NAME.test(s)) throw new Error(`console page: bad script name ${s}`);
  for (const s of o.styles ?? []) if (!STYLE_NAME.test(s)) throw new Error(`console page: bad stylesheet name ${s}`);
  const nav = user
    ? html`<nav class="nav" aria-label="Main"><ul>${NAV.map((n) => html`<li><a href="${n.href}"${n.key === o.nav ? html` aria-current="page"` : ''}>${n.label}</a></li>`)}</ul></nav>
<div class="who"><span>Signed in with token <code>${user.token.id}</code> <span class="role role-${user.role}">${user.role}</span></span>
<form method="post" action="/sign-out" class="inline"><input type="hidden" name="_csrf" value="${user.csrf}"><button type="submit" class="link">Sign out</button></form></div>`
    : '';
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title} · rear-update console</title>
${user ? html`<meta name="csrf-token" content="${user.csrf}">` : ''}
<link rel="stylesheet" href="/assets/console.css">
${(o.styles ?? []).map((s) => html`<link rel="stylesheet" href="/assets/${s}">`)}
${(o.scripts ?? []).map((s) => html`<script src="/assets/${s}" defer></script>`)}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<a class="brand" href="/">rear-update</a>
${nav}
</header>
<main id="main" tabindex="-1">
${o.body}
</main>
</body>
</html>
`;
}

/** Sends a document: HTML, never cached. */
export async function sendPage(reply: FastifyReply, h: Html, status = 200): Promise<FastifyReply> {
  securityHeaders(reply);
  return reply.code(status).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(h.toString());
}

const TITLES: Record<number, string> = { 400: 'Request not valid', 401: 'Not signed in', 403: 'Not allowed', 404: 'Not found', 409: 'Conflict' };

/** An error as a page: its code and message (escaped), and a way on. */
export async function errorPage(reply: FastifyReply, user: ConsoleUser | null, e: RuError): Promise<FastifyReply> {
  const status = statusOf(e.code);
  const title = TITLES[status] ?? (status >= 500 ? 'Server error' : 'Refused');
  const body = html`<h1>${title}</h1>
<div class="notice error" role="alert"><p><strong>${e.code}</strong>: ${e.message}</p></div>
<p>${user ? html`<a href="/">Back to the console</a>` : html`<a href="/sign-in">Sign in</a>`}</p>`;
  return sendPage(reply, page(user, { title, body }), status);
}
