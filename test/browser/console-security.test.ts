// Threats to the console, each tested in real Chromium against a real server: cross-site
// request forgery (no CSRF token, another origin, no origin at all), a view session forging a
// change, and stored or reflected HTML from untrusted sources (a rescue machine's facts, token
// labels, audit details, the URL) that must render as inert text.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launch, newPage, signIn, startConsoleServer, watchDialogs, type ConsoleServer } from './support.ts';

let s: ConsoleServer;
let browser: Browser;
let attacker: http.Server;
let attackerUrl = '';
/** The page the attacker's server answers with (set per test). */
let attackerPage = '';

const SERIAL = '<B ID=INJECTED>BOLD</B>';
const DETAIL = '<img src=x onerror="alert(\'audit\')"><script>alert("audit2")</script>';
const LABEL = '<img src=x onerror=alert(\'label\')>"quoted" & <b>';

const tokenCount = async (): Promise<number> => ((await s.api('GET', '/api/v1/tokens')).json.tokens as unknown[]).length;

/** fetch() from inside a console page (same origin, the session cookie rides along). */
async function postFromPage(page: Page, path: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; code: string | null }> {
  return page.evaluate(
    async ([path, form, headers]) => {
      const r = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: new URLSearchParams(form).toString(), redirect: 'manual' });
      let code: string | null = null;
      try {
        code = ((await r.json()) as { error?: { code?: string } }).error?.code ?? null;
      } catch {
        /* not JSON */
      }
      return { status: r.status, code };
    },
    [path, form, headers] as const,
  );
}

const csrfOf = (page: Page): Promise<string> => page.locator('meta[name="csrf-token"]').getAttribute('content').then((v) => v ?? '');

describe('console threats (Chromium)', () => {
  before(async () => {
    s = await startConsoleServer({}, {
      seed: async (meta) => {
        await meta.addHost({ id: 'orig-xss1', hostnames: ['orig-xss1.example.test'], macs: ['02:00:5e:10:00:01'], serial: SERIAL, class: 'typeA' });
        await meta.appendAudit({ kind: 'host', host: 'orig-xss1', result: 'ok', detail: DETAIL });
      },
    });
    browser = await launch();
    attacker = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(attackerPage);
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
    attackerUrl = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;
  });
  after(async () => {
    await browser?.close();
    await s?.close();
    await new Promise((r) => attacker?.close(r));
  });

  test('CSRF: a POST without the session\'s CSRF token is refused (403 CSRF_INVALID) and changes nothing', async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, s.admin);
    await page.goto(`${s.url}/tokens`);
    const before = await tokenCount();
    assert.deepEqual(await postFromPage(page, '/tokens', { kind: 'admin', label: 'forged' }), { status: 403, code: 'CSRF_INVALID' });
    assert.deepEqual(await postFromPage(page, '/tokens', { kind: 'admin', label: 'forged', _csrf: 'A'.repeat(43) }), { status: 403, code: 'CSRF_INVALID' }, 'a wrong token');
    assert.deepEqual(await postFromPage(page, '/sign-out', {}), { status: 403, code: 'CSRF_INVALID' }, 'sign-out too');
    assert.equal(await tokenCount(), before, 'no token was created');
    await page.goto(`${s.url}/hosts`);
    assert.equal(new URL(page.url()).pathname, '/hosts', 'and the session was not signed out');
    await context.close();
  });

  test('CSRF: a form on another origin of the same site is refused although the browser sends the cookie and the CSRF token leaked', async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, s.admin);
    await page.goto(`${s.url}/tokens`);
    const leaked = await csrfOf(page);
    const before = await tokenCount();
    // Another port on 127.0.0.1 is the same site, so SameSite=Strict still sends the cookie: only the Origin check stops it.
    attackerPage = `<!doctype html><title>prize</title><form method="post" action="${s.url}/tokens"><input name="_csrf" value="${leaked}"><input name="kind" value="admin"><input name="label" value="attacker"><button>Claim your prize</button></form>`;
    await page.goto(attackerUrl);
    const [answer] = await Promise.all([page.waitForResponse((r) => r.url() === `${s.url}/tokens` && r.request().method() === 'POST'), page.getByRole('button', { name: 'Claim your prize' }).click()]);
    assert.equal(answer.status(), 403);
    await page.getByText('CSRF_INVALID').waitFor();
    assert.match(await page.locator('main').innerText(), /another origin/);
    assert.equal(await tokenCount(), before, 'no token was created');
    await context.close();
  });

  test('CSRF: a POST that shows no origin at all (no Origin, no Sec-Fetch-Site) is refused even with the right token', async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, s.admin);
    await page.goto(`${s.url}/tokens`);
    const csrf = await csrfOf(page);
    const before = await tokenCount();
    // page.request is not a browser navigation: it sends the context's cookie and only the headers given.
    const r = await page.request.post(`${s.url}/tokens`, { form: { _csrf: csrf, kind: 'admin', label: 'scripted' }, maxRedirects: 0 });
    assert.equal(r.status(), 403);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'CSRF_INVALID');
    const cross = await page.request.post(`${s.url}/tokens`, { form: { _csrf: csrf, kind: 'admin' }, headers: { origin: 'http://evil.example' }, maxRedirects: 0 });
    assert.equal(cross.status(), 403);
    assert.equal(await tokenCount(), before);
    // The same request from the console itself works: the check is not simply refusing everything.
    const ok = await page.request.post(`${s.url}/tokens`, { form: { _csrf: csrf, kind: 'view', label: 'same origin' }, headers: { origin: s.url }, maxRedirects: 0 });
    assert.equal(ok.status(), 303);
    assert.equal(await tokenCount(), before + 1);
    await context.close();
  });

  test('a view session sees hosts, tokens and audit but no change buttons; its forged POSTs (with the right CSRF token) get 403', async () => {
    // A version and a pin, so that an admin would see Pin and Unpin buttons on the host page.
    await s.publish('orig-xss1', { etc: { rear: { 'local.conf': 'OUTPUT=ISO\n' } } });
    await s.publish('orig-xss1', { etc: { rear: { 'local.conf': 'OUTPUT=ISO\nBACKUP=NETFS\n' } } });
    assert.equal((await s.api('PUT', '/api/v1/hosts/orig-xss1/pin', { body: { version: 1 } })).status, 200);
    const t = await s.token('view', 'read only');
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, t);
    for (const path of ['/hosts', '/hosts/orig-xss1', '/hosts/orig-xss1/diff?from=1&to=2', '/classes', '/tokens', '/audit']) {
      const r = await page.goto(`${s.url}${path}`);
      assert.equal(r?.status(), 200, path);
      const forms = await page.locator('form[method="post"]').evaluateAll((fs) => fs.map((f) => f.getAttribute('action')));
      assert.deepEqual(forms, ['/sign-out'], `${path}: the only change a viewer is offered is signing out`);
      assert.equal(await page.getByRole('button', { name: /pin|revoke|create/i }).count(), 0, path);
      assert.equal(await page.getByRole('link', { name: /revoke/i }).count(), 0, path);
    }
    await page.goto(`${s.url}/tokens`);
    const csrf = await csrfOf(page);
    const before = await tokenCount();
    assert.deepEqual(await postFromPage(page, '/tokens', { kind: 'admin', label: 'escalation' }, { 'x-csrf-token': csrf }), { status: 403, code: 'FORBIDDEN' });
    assert.deepEqual(await postFromPage(page, '/hosts/orig-xss1/pin', { version: '1', _csrf: csrf }), { status: 403, code: 'FORBIDDEN' });
    const admin = (await s.api('GET', '/api/v1/tokens')).json.tokens as { id: string; scope: string }[];
    assert.deepEqual(await postFromPage(page, `/tokens/${admin[0]!.id}/revoke`, {}, { 'x-csrf-token': csrf }), { status: 403, code: 'FORBIDDEN' });
    assert.equal(await tokenCount(), before);
    assert.equal(((await s.api('GET', '/api/v1/tokens')).json.tokens as { revoked: string | null }[])[0]!.revoked, null, 'nothing was revoked');
    // The pages of admins only answer a viewer with 403, not a form.
    const confirm = await page.goto(`${s.url}/tokens/${admin[0]!.id}/revoke`);
    assert.equal(confirm?.status(), 403);
    await context.close();
  });

  test('an operate session may not manage tokens or pins either', async () => {
    const t = await s.token('operate');
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, t);
    await page.goto(`${s.url}/tokens`);
    assert.equal(await page.getByRole('button', { name: /create/i }).count(), 0);
    const csrf = await csrfOf(page);
    assert.deepEqual(await postFromPage(page, '/tokens', { kind: 'admin' }, { 'x-csrf-token': csrf }), { status: 403, code: 'FORBIDDEN' });
    await context.close();
  });

  test('XSS: HTML in a machine\'s serial, an audit detail, a token label and the URL renders as inert, visible text', async () => {
    const r = await s.api('POST', '/api/v1/tokens', { body: { scope: 'view', label: LABEL } });
    assert.equal(r.status, 201, r.text);
    const { context, page } = await newPage(browser);
    const dialogs = watchDialogs(page);
    const cspReports: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspReports.push(m.text());
    });
    await signIn(page, s.url, s.admin);
    const inert = async (where: string): Promise<void> => {
      assert.equal(await page.locator('#INJECTED, #injected').count(), 0, `${where}: no element was injected`);
      assert.equal(await page.locator('main img, main script, main b').count(), 0, `${where}: no markup from the data`);
    };

    await page.goto(`${s.url}/hosts/orig-xss1`);
    await page.getByText(SERIAL, { exact: true }).waitFor();
    await inert('host page');

    await page.goto(`${s.url}/hosts?q=${encodeURIComponent('"><script>alert(1)</script>')}`);
    assert.equal(await page.getByLabel('Search').inputValue(), '"><script>alert(1)</script>', 'reflected only as the field\'s value');
    await inert('host search');
    await page.goto(`${s.url}/hosts?q=${encodeURIComponent('<B ID=INJECTED>')}`);
    await page.getByRole('cell', { name: 'orig-xss1', exact: true }).waitFor({ state: 'detached' }).catch(() => undefined);
    await inert('host search for markup');

    await page.goto(`${s.url}/audit?host=orig-xss1`);
    await page.getByRole('cell', { name: DETAIL, exact: true }).waitFor();
    await inert('audit');

    await page.goto(`${s.url}/tokens`);
    await page.getByRole('cell', { name: LABEL, exact: true }).waitFor();
    await inert('tokens');

    await page.goto(`${s.url}/audit?host=${encodeURIComponent('<script>alert(3)</script>')}`);
    await page.getByRole('alert').waitFor();
    await inert('audit with a malformed filter');

    assert.deepEqual(dialogs, [], 'no script ran');
    assert.deepEqual(cspReports, [], 'nothing had to be blocked by the CSP either: it was never markup');
    await context.close();
  });

  test('GET never changes state: the revoke link only asks for confirmation', async () => {
    const t = await s.token('view', 'kept');
    const id = t.split('_')[1]!;
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, s.admin);
    await page.goto(`${s.url}/tokens/${id}/revoke`);
    await page.getByRole('heading', { name: `Revoke token ${id}?` }).waitFor();
    const rec = ((await s.api('GET', '/api/v1/tokens')).json.tokens as { id: string; revoked: string | null }[]).find((x) => x.id === id);
    assert.equal(rec?.revoked, null);
    await context.close();
  });

  test('CSRF: the JSON API reads no form body (a cross-site form cannot post fields to it), while console forms are parsed', async () => {
    const before = await tokenCount();
    const r = await fetch(`${s.url}/api/v1/tokens`, { method: 'POST', headers: { authorization: `Bearer ${s.admin}`, 'content-type': 'application/x-www-form-urlencoded' }, body: 'scope=admin&label=form' });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'REQUEST_INVALID');
    assert.equal(await tokenCount(), before);
  });

  test('every console page carries the strict CSP and the other security headers', async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, s.admin);
    for (const path of ['/sign-in', '/hosts', '/hosts/orig-xss1', '/classes', '/tokens', '/audit', '/assets/console.css', '/hosts/no-such-host']) {
      const r = await page.request.get(`${s.url}${path}`, { headers: { accept: 'text/html' } });
      const h = r.headers();
      assert.equal(h['content-security-policy'], "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'", path);
      assert.equal(h['x-content-type-options'], 'nosniff', path);
      assert.equal(h['referrer-policy'], 'no-referrer', path);
      if (!path.startsWith('/assets/')) assert.equal(h['cache-control'], 'no-store', path);
    }
    await context.close();
  });
});
