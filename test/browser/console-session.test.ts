// Console sign-in and sessions in real Chromium against a real server: the token goes in a
// form, never a URL; the session cookie is HttpOnly and SameSite=Strict, gets a new id at each
// sign-in, and stops working at sign-out, when its token is revoked or expires, after the
// idle timeout and at the absolute limit. Expiry moves the server's clock instead of waiting.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launch, newPage, sessionCookie, signIn, startConsoleServer, type ConsoleServer } from './support.ts';

const MIN = 60_000;
let s: ConsoleServer;
let browser: Browser;

/** Where a fresh context holding only this cookie value ends up when it asks for /hosts. */
async function landsWith(cookie: { name: string; value: string }): Promise<string> {
  const { context, page } = await newPage(browser);
  try {
    await context.addCookies([{ name: cookie.name, value: cookie.value, url: s.url }]);
    await page.goto(`${s.url}/hosts`);
    return new URL(page.url()).pathname;
  } finally {
    await context.close();
  }
}

describe('console sessions (Chromium)', () => {
  before(async () => {
    s = await startConsoleServer({ sessionIdle: '30m', sessionMax: '2h' });
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await s?.close();
  });

  test('the first page asks for a token; signing in lands on the page asked for; the token is never in a URL', async () => {
    const { context, page } = await newPage(browser);
    const urls: string[] = [];
    page.on('request', (r) => urls.push(r.url()));
    await page.goto(`${s.url}/hosts?q=web`);
    assert.equal(new URL(page.url()).pathname, '/sign-in', 'not signed in: sent to sign in');
    await page.getByLabel('Token').fill(s.admin);
    await Promise.all([page.waitForURL((u) => u.pathname === '/hosts'), page.getByRole('button', { name: 'Sign in' }).click()]);
    assert.equal(new URL(page.url()).search, '?q=web', 'back where it was asked for');
    await page.getByRole('heading', { name: 'Hosts' }).waitFor();
    assert.ok(urls.every((u) => !u.includes(s.admin.slice(3))), 'the token never appears in a URL');
    await context.close();
  });

  test('open redirect: a sign-in link whose next page is another site still lands on this console', async () => {
    for (const next of ['//evil.example/x', 'https://evil.example/', '/\\evil.example', 'javascript:alert(1)']) {
      const { context, page } = await newPage(browser);
      await page.goto(`${s.url}/sign-in?next=${encodeURIComponent(next)}`);
      await page.getByLabel('Token').fill(s.admin);
      await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/sign-in')), page.getByRole('button', { name: 'Sign in' }).click()]);
      const u = new URL(page.url());
      assert.equal(u.origin, s.url, next);
      assert.equal(u.pathname, '/', next);
      await context.close();
    }
  });

  test('a wrong token is refused with a message and no session cookie', async () => {
    const { context, page } = await newPage(browser);
    await page.goto(`${s.url}/sign-in`);
    await page.getByLabel('Token').fill('ru_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/sign-in');
    assert.equal(await sessionCookie(context), null, 'no session cookie');
    // Also text that is not a token at all.
    await page.getByLabel('Token').fill('hunter2');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    assert.equal(await sessionCookie(context), null);
    await context.close();
  });

  test('fetch and publish tokens cannot sign in, and are told why', async () => {
    await s.host('orig-web1');
    for (const scope of ['fetch:orig-web1', 'publish:orig-web1', 'fetch-class:typeA']) {
      const t = await s.token(scope);
      const { context, page } = await newPage(browser);
      await page.goto(`${s.url}/sign-in`);
      await page.getByLabel('Token').fill(t);
      await page.getByRole('button', { name: 'Sign in' }).click();
      const alert = page.getByRole('alert');
      await alert.filter({ hasText: 'cannot sign in to the console' }).waitFor();
      assert.match(await alert.innerText(), new RegExp(`${scope.replace(/[.*]/g, '\\$&')} token.*view, operate or admin`));
      assert.equal(await sessionCookie(context), null, scope);
      await context.close();
    }
  });

  test('the session cookie is HttpOnly, SameSite=Strict, Path=/, not readable by scripts, and gets a new id at each sign-in', async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, s.admin);
    const first = await sessionCookie(context);
    assert.ok(first, 'a session cookie');
    assert.equal(first.httpOnly, true);
    assert.equal(first.sameSite, 'Strict');
    assert.equal(first.path, '/');
    assert.equal(first.secure, false, 'plain HTTP here: Secure only when the server runs TLS');
    assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read it');
    // Signing in again (the form stays reachable, to switch tokens) rotates the id.
    await page.goto(`${s.url}/sign-in?next=/tokens`);
    await page.getByText('You are signed in with token').waitFor();
    await page.getByLabel('Token').fill(s.admin);
    await Promise.all([page.waitForURL((u) => u.pathname === '/tokens'), page.getByRole('button', { name: 'Sign in' }).click()]);
    const second = await sessionCookie(context);
    assert.ok(second);
    assert.notEqual(second.value, first.value, 'a new session id');
    assert.equal(await landsWith(second), '/hosts', 'the new session works');
    assert.equal(await landsWith(first), '/sign-in', 'the old session was deleted at the second sign-in');
    await context.close();
  });

  test('sign-out ends the session: its cookie no longer works anywhere', async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, s.admin);
    await page.goto(`${s.url}/hosts`);
    const cookie = await sessionCookie(context);
    assert.ok(cookie);
    await Promise.all([page.waitForURL((u) => u.pathname === '/sign-in'), page.getByRole('button', { name: 'Sign out' }).click()]);
    await page.getByText('You are signed out.').waitFor();
    assert.equal(await sessionCookie(context), null, 'the cookie is cleared');
    assert.equal(await landsWith(cookie), '/sign-in', 'and the session is gone on the server');
    await page.goto(`${s.url}/tokens`);
    assert.equal(new URL(page.url()).pathname, '/sign-in');
    await context.close();
  });

  test('revoking the token ends its sessions at once', async () => {
    const t = await s.token('view', 'revoked during a session');
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, t);
    await page.goto(`${s.url}/audit`);
    await page.getByRole('heading', { name: 'Audit' }).waitFor();
    const id = t.split('_')[1]!;
    const r = await s.api('DELETE', `/api/v1/tokens/${id}`);
    assert.equal(r.status, 200, r.text);
    await page.goto(`${s.url}/audit`);
    assert.equal(new URL(page.url()).pathname, '/sign-in', 'the next request finds no session');
    await context.close();
  });

  test('a session ends after the idle timeout (each use restarts it), and at the absolute limit however busy', async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, s.admin);
    // Used every 20 minutes (idle limit 30): alive, until 2 hours after sign-in.
    for (let i = 0; i < 5; i++) {
      s.advance(20 * MIN);
      await page.goto(`${s.url}/hosts`);
      assert.equal(new URL(page.url()).pathname, '/hosts', `still signed in after ${(i + 1) * 20} minutes of steady use`);
    }
    s.advance(25 * MIN); // 125 minutes: past the absolute limit, though used 25 minutes ago
    await page.goto(`${s.url}/hosts`);
    assert.equal(new URL(page.url()).pathname, '/sign-in', 'absolute limit');

    await signIn(page, s.url, s.admin);
    s.advance(29 * MIN);
    await page.goto(`${s.url}/hosts`);
    assert.equal(new URL(page.url()).pathname, '/hosts', 'used within the idle time');
    s.advance(31 * MIN);
    await page.goto(`${s.url}/hosts`);
    assert.equal(new URL(page.url()).pathname, '/sign-in', 'idle for longer than --session-idle');
    await context.close();
  });

  test('a token that expires ends its sessions', async () => {
    const r = await s.api('POST', '/api/v1/tokens', { body: { scope: 'view', expiresIn: '1h' } });
    assert.equal(r.status, 201, r.text);
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, r.json.token as string);
    await page.goto(`${s.url}/hosts`);
    assert.equal(new URL(page.url()).pathname, '/hosts');
    s.advance(25 * MIN);
    await page.goto(`${s.url}/hosts`);
    s.advance(25 * MIN);
    await page.goto(`${s.url}/hosts`);
    s.advance(25 * MIN); // 75 minutes: the token expired, the session is still young
    await page.goto(`${s.url}/hosts`);
    assert.equal(new URL(page.url()).pathname, '/sign-in');
    await context.close();
  });

  test('sign-in and sign-out are audited with the token id (kind session)', async () => {
    const t = await s.token('operate', 'audited');
    const id = t.split('_')[1]!;
    const { context, page } = await newPage(browser);
    await signIn(page, s.url, t);
    await page.goto(`${s.url}/hosts`);
    await Promise.all([page.waitForURL((u) => u.pathname === '/sign-in'), page.getByRole('button', { name: 'Sign out' }).click()]);
    await context.close();
    const r = await s.api('GET', `/api/v1/audit?kind=session&token=${id}`);
    const details = (r.json.events as { detail: string; result: string }[]).map((e) => `${e.result} ${e.detail}`);
    assert.deepEqual(details, ['ok signed out', 'ok signed in (operate)']);
  });
});
