// The console's non-live pages in real Chromium against a real server and SQLite: hosts
// (search, filter, paging over 10,000 hosts), one host (facts, versions, pin and unpin,
// downloads), a side-by-side diff, classes and layers, tokens (the secret shown once; revoke
// after confirming), the audit (filters, CSV and JSON export). Each page is checked with
// axe-core and for inline script or style, and photographed for docs/console/.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { axeCheck, launch, newPage, screenshot, signIn, startConsoleServer, type ConsoleServer } from './support.ts';

let s: ConsoleServer;
let browser: Browser;
let page: Page;
let closePage: () => Promise<void>;

const CSV_DETAILS = ['=HYPERLINK("http://evil.example","x")', '+cmd|\' /C calc\'!A0', '-2+3', '@SUM(A1:A2)', 'plain, with "quotes"'];

const localConf = (backupUrl: string, extra = ''): string => `OUTPUT=ISO\nBACKUP=NETFS\nBACKUP_URL=${backupUrl}\nNETFS_KEEP_OLD_BACKUP_COPY=yes\nSSH_ROOT_PASSWORD=no\n${extra}`;

async function download(p: Page, linkName: string): Promise<{ name: string; text: string }> {
  const [d] = await Promise.all([p.waitForEvent('download'), p.getByRole('link', { name: linkName, exact: true }).click()]);
  const path = await d.path();
  return { name: d.suggestedFilename(), text: readFileSync(path, 'utf8') };
}

describe('console pages (Chromium)', () => {
  before(async () => {
    s = await startConsoleServer({}, {
      seed: async (meta) => {
        for (const d of CSV_DETAILS) await meta.appendAudit({ kind: 'host', host: 'orig-gone1', result: 'ok', detail: d });
      },
    });
    await s.host('orig-db1', { class: 'typeA', hostnames: ['orig-db1.example.test'], macs: ['02:00:5e:00:53:01', '02:00:5e:00:53:02'], uuid: '4c4c4544-0033-3010-8044-b2c04f4e3232', serial: 'ORIG-SN-0001' });
    await s.host('orig-web1', { class: 'typeA', hostnames: ['orig-web1.example.test'], macs: ['02:00:5e:00:53:11'] });
    await s.host('orig-web2', { class: 'typeB', hostnames: ['orig-web2.example.test'], macs: ['02:00:5e:00:53:21'] });
    await s.host('orig-mail1', { hostnames: ['orig-mail1.example.test'] });
    await s.publish('orig-db1', { etc: { rear: { 'local.conf': localConf('nfs://orig-nas1/backup'), 'site.conf': 'KEEP_BUILD_DIR=no\n' } } });
    await s.publish('orig-db1', { etc: { rear: { 'local.conf': localConf('nfs://orig-nas2/backup', 'BACKUP_PROG_EXCLUDE=("/tmp/*")\n'), 'site.conf': 'KEEP_BUILD_DIR=no\n', 'mappings': { 'ip_addresses': 'eth0 192.0.2.10/24\n' } } } });
    await s.publish('orig-db1', { etc: { rear: { 'local.conf': localConf('nfs://orig-nas2/backup', 'BACKUP_PROG_EXCLUDE=("/tmp/*" "/var/tmp/*")\n'), 'site.conf': 'KEEP_BUILD_DIR=no\n', 'mappings': { 'ip_addresses': 'eth0 192.0.2.10/24\n' } } } });
    await s.publish('orig-web1', { etc: { rear: { 'local.conf': localConf('nfs://orig-nas1/web') } } });
    await s.publishLayer('typeA', 'drivers', { etc: { 'modprobe.d': { 'typeA.conf': 'options megaraid_sas msix_disable=1\n' } } }, ['etc/modprobe.d'], 20);
    await s.publishLayer('*', 'firmware', { usr: { local: { 'fw-notes': { 'README': 'firmware notes\n' } } } }, ['usr/local/fw-notes'], 30);
    // A download, so the host page has one to list.
    const fetchToken = await s.token('fetch:orig-db1', 'rescue of orig-db1');
    const r = await fetch(`${s.url}/api/v1/hosts/orig-db1/bundle`, { headers: { authorization: `Bearer ${fetchToken}` } });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    browser = await launch();
    const p = await newPage(browser);
    page = p.page;
    closePage = () => p.context.close();
    await signIn(page, s.url, s.admin);
  });
  after(async () => {
    await closePage?.();
    await browser?.close();
    await s?.close();
  });

  test('host list: every host with class, names, MACs and latest version; search and class filter', async () => {
    await page.goto(`${s.url}/hosts`);
    assert.match(await page.locator('#hosts-count').innerText(), /Hosts 1–4 of 4/);
    const db1 = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'orig-db1' }) });
    assert.match(await db1.innerText(), /typeA[\s\S]*orig-db1\.example\.test[\s\S]*02:00:5e:00:53:01[\s\S]*\b3\b/);
    await page.getByLabel('Search').fill('02-00-5E-00-53-21');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('rowheader', { name: 'orig-web2' }).waitFor();
    assert.equal(await page.locator('tbody tr').count(), 1, 'a MAC typed with dashes finds its host');
    await page.goto(`${s.url}/hosts`);
    await page.getByLabel('Class').selectOption('typeA');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL((u) => u.searchParams.get('class') === 'typeA');
    assert.deepEqual(await page.locator('tbody th').allInnerTexts(), ['orig-db1', 'orig-web1']);
  });

  test('host page: facts, versions with served and pinned, recent downloads; an admin pins and unpins (audited with the session\'s token)', async () => {
    await page.goto(`${s.url}/hosts`);
    await page.getByRole('link', { name: 'orig-db1', exact: true }).click();
    await page.getByRole('heading', { name: 'Host orig-db1' }).waitFor();
    const facts = await page.locator('dl.facts').innerText();
    for (const f of ['typeA', 'orig-db1.example.test', '02:00:5e:00:53:02', '4c4c4544-0033-3010-8044-b2c04f4e3232', 'ORIG-SN-0001', 'version 3 (latest)']) assert.ok(facts.includes(f), f);
    assert.deepEqual(await page.locator('table').first().locator('tbody th').allInnerTexts().then((xs) => xs.map((x) => x.trim())), ['3 served', '2', '1']);
    const downloads = page.getByRole('table', { name: /downloads of orig-db1/ });
    assert.match(await downloads.innerText(), /\bok\b/);

    await page.getByRole('button', { name: 'Pin version 2' }).click();
    await page.getByText('Pinned: the host is now served version 2.').waitFor();
    assert.match(await page.locator('dl.facts').innerText(), /version 2 \(pinned\)/);
    assert.equal(((await s.api('GET', '/api/v1/hosts/orig-db1')).json.host as { pinned: number }).pinned, 2, 'the server serves version 2 now');
    await screenshot(page, 'host');
    await page.getByRole('button', { name: 'Unpin version 2' }).click();
    await page.getByText('Unpinned').waitFor();
    assert.equal(((await s.api('GET', '/api/v1/hosts/orig-db1')).json.host as { pinned: number | null }).pinned, null);
    const adminId = s.admin.split('_')[1];
    const audit = (await s.api('GET', '/api/v1/audit?kind=pin&host=orig-db1')).json.events as { token: string; detail: string; result: string; version: number | null }[];
    assert.deepEqual(audit.map((e) => [e.token, e.detail, e.result]), [[adminId, 'unpinned (console)', 'ok'], [adminId, 'pinned 2 (console)', 'ok']]);
  });

  test('diff: two versions side by side, the old line beside the new one, with added files listed', async () => {
    await page.goto(`${s.url}/hosts/orig-db1`);
    await page.getByLabel('Compare version', { exact: true }).selectOption('1');
    await page.getByLabel('with version', { exact: true }).selectOption('3');
    await page.getByRole('button', { name: 'Show differences' }).click();
    await page.waitForURL((u) => u.pathname === '/hosts/orig-db1/diff');
    await page.getByRole('heading', { name: /version 1 → 3/ }).waitFor();
    assert.match(await page.locator('#diff-summary').innerText(), /\b2 added\b.*\b0 removed\b.*\b1 changed\b/);
    assert.ok((await page.getByRole('table', { name: /Added/ }).innerText()).includes('etc/rear/mappings/ip_addresses'));
    const file = page.locator('section.diff-file', { has: page.getByRole('heading', { name: 'etc/rear/local.conf' }) });
    // The changed line: old on the left, new on the right, in one row.
    const row = file.locator('tr', { has: page.locator('td.del', { hasText: 'BACKUP_URL=nfs://orig-nas1/backup' }) });
    assert.match(await row.locator('td.add').innerText(), /BACKUP_URL=nfs:\/\/orig-nas2\/backup/);
    // An added line has an empty left side.
    const added = file.locator('tr', { has: page.locator('td.add', { hasText: 'BACKUP_PROG_EXCLUDE' }) });
    assert.equal(await added.locator('td.empty').count(), 1);
    // Context lines stand on both sides.
    assert.equal(await file.locator('tr', { hasText: 'OUTPUT=ISO' }).locator('td:not(.ln)').count(), 2);
    // The JSON API's diff says the same.
    const api = (await s.api('GET', '/api/v1/hosts/orig-db1/diff?from=1&to=3')).json as { added: unknown[]; changed: unknown[]; texts: { path: string }[] };
    assert.equal(api.added.length, 2);
    assert.deepEqual(api.texts.map((t) => t.path), ['etc/rear/local.conf']);
    await screenshot(page, 'diff');
  });

  test('classes: each class with its host count and its layers in composition order, with versions and pins', async () => {
    const pin = await s.api('PUT', '/api/v1/layers/typeA/drivers/pin', { body: { version: 1 } });
    assert.equal(pin.status, 200, pin.text);
    await page.goto(`${s.url}/classes`);
    const summary = page.getByRole('table', { name: 'Classes and their hosts' });
    assert.match(await summary.getByRole('row').filter({ hasText: 'typeA' }).innerText(), /typeA\s+2\s+2/);
    assert.match(await summary.getByRole('row').filter({ hasText: 'typeB' }).innerText(), /typeB\s+1\s+1/);
    assert.match(await summary.getByRole('row').filter({ hasText: '(no class)' }).innerText(), /\(no class\)\s+1/);
    const typeA = page.getByRole('table', { name: 'Layers of class typeA' });
    assert.deepEqual(await typeA.locator('tbody th').allInnerTexts(), ['drivers', 'firmware'], 'priority 20 before 30, whatever the class');
    assert.match(await typeA.getByRole('row').filter({ hasText: 'drivers' }).innerText(), /version 1/, 'the pin is shown');
    await screenshot(page, 'classes');
  });

  test('tokens: create one in the browser, its secret is shown once (a reload does not show it), it works, and it is revoked after confirming', async () => {
    await page.goto(`${s.url}/tokens`);
    await page.getByLabel('Scope', { exact: true }).selectOption('view');
    await page.getByLabel('Label', { exact: true }).fill('night shift');
    await page.getByLabel('Expires in', { exact: true }).fill('12h');
    await page.getByRole('button', { name: 'Create token' }).click();
    await page.waitForURL(/\/tokens\/[0-9a-f]{12}\/created$/);
    const secret = (await page.locator('#new-token').innerText()).trim();
    assert.match(secret, /^ru_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const id = secret.split('_')[1]!;
    await page.getByRole('button', { name: 'Copy' }).waitFor(); // console.js: the one enhancement of these pages
    assert.equal((await s.api('GET', '/api/v1/hosts', { token: secret })).status, 200, 'the new view token works');
    await page.reload();
    await page.getByText('was shown once').waitFor();
    assert.ok(!(await page.content()).includes(secret), 'a reload does not show the secret again');
    await page.goto(`${s.url}/tokens/${id}/created`);
    assert.ok(!(await page.content()).includes(secret));
    assert.equal(((await s.api('GET', '/api/v1/tokens')).json.tokens as unknown[]).length, 3, 'admin, fetch and the new one: no second token from the reload');

    await page.goto(`${s.url}/tokens`);
    const row = page.locator(`#token-${id}`);
    assert.match(await row.innerText(), /view[\s\S]*night shift[\s\S]*active/);
    // A bad form comes back filled in, with what to fix.
    await page.getByLabel('Scope', { exact: true }).selectOption('fetch');
    await page.getByLabel('Host or class', { exact: true }).fill('orig-nosuch1');
    await page.getByRole('button', { name: 'Create token' }).click();
    await page.getByRole('alert').filter({ hasText: 'HOST_UNKNOWN' }).waitFor();
    assert.equal(await page.getByLabel('Host or class', { exact: true }).inputValue(), 'orig-nosuch1');
    await page.goto(`${s.url}/tokens`);
    await screenshot(page, 'tokens');

    await row.getByRole('link', { name: `Revoke token ${id}` }).click();
    await page.getByRole('heading', { name: `Revoke token ${id}?` }).waitFor();
    await page.getByRole('button', { name: `Revoke token ${id}` }).click();
    await page.getByText('The token is revoked').waitFor();
    assert.match(await page.locator(`#token-${id}`).innerText(), /revoked/);
    assert.equal((await s.api('GET', '/api/v1/hosts', { token: secret })).status, 401, 'the revoked token no longer works');
    const audit = (await s.api('GET', '/api/v1/audit?kind=token')).json.events as { detail: string; result: string }[];
    assert.ok(audit.some((e) => e.detail === `revoked ${id} (console)` && e.result === 'ok'));
    assert.ok(audit.some((e) => e.detail.startsWith(`created ${id} (view, expires `) && e.result === 'ok'));
    assert.ok(audit.some((e) => e.result === 'HOST_UNKNOWN'), 'the refused creation is audited too');
  });

  test('audit: filter by token, host, kind and time; export the filtered events as CSV (quoted, formula-safe) and JSON', async () => {
    const adminId = s.admin.split('_')[1]!;
    await page.goto(`${s.url}/audit`);
    await page.getByLabel('Token').fill(adminId);
    await page.getByLabel('Kind').selectOption('pin');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL((u) => u.searchParams.get('kind') === 'pin');
    const kinds = await page.locator('tbody tr td:nth-child(3)').allInnerTexts();
    assert.ok(kinds.length >= 2 && kinds.every((k) => k === 'pin'), kinds.join());
    await page.goto(`${s.url}/audit?since=2000-01-01T00:00&until=2000-01-02T00:00`);
    await page.getByText('No event matches.').waitFor();

    await page.goto(`${s.url}/audit`);
    await screenshot(page, 'audit');
    await page.goto(`${s.url}/audit?host=orig-gone1&kind=host`);
    assert.equal(await page.locator('tbody tr').count(), CSV_DETAILS.length);
    const csv = await download(page, 'CSV');
    assert.match(csv.name, /^rear-update-audit-.*\.csv$/);
    const lines = csv.text.trimEnd().split('\r\n');
    assert.equal(lines[0], 'id,time,kind,token,address,host,version,bytes,result,detail');
    assert.equal(lines.length, 1 + CSV_DETAILS.length);
    // The detail is the last column, after the result ("ok").
    const details = lines.slice(1).map((l) => l.slice(l.indexOf(',"ok",') + 6)).reverse();
    assert.deepEqual(details, [
      '"\'=HYPERLINK(""http://evil.example"",""x"")"',
      '"\'+cmd|\' /C calc\'!A0"',
      '"\'-2+3"',
      '"\'@SUM(A1:A2)"',
      '"plain, with ""quotes"""',
    ]);
    assert.ok(lines.slice(1).every((l) => /^"\d+","\d{4}-\d\d-\d\dT[\d:.]+Z","host","","","orig-gone1","","","ok",/.test(l)), lines[1]);

    const json = await download(page, 'JSON');
    const doc = JSON.parse(json.text) as { filter: Record<string, string>; truncated: boolean; events: { detail: string; host: string; kind: string }[] };
    assert.deepEqual(doc.filter, { kind: 'host', host: 'orig-gone1' });
    assert.equal(doc.truncated, false);
    assert.deepEqual(doc.events.map((e) => e.detail).reverse(), CSV_DETAILS, 'JSON keeps the text exactly');
  });

  test('axe-core finds no serious or critical violation on any of these pages, and none needs inline script or style', async () => {
    const { context, page: p } = await newPage(browser, { bypassCSP: true });
    await p.goto(`${s.url}/sign-in`);
    await screenshot(p, 'sign-in');
    const pages = ['/sign-in', '/hosts', '/hosts/orig-db1', '/hosts/orig-db1/diff?from=1&to=3', '/classes', '/tokens', '/audit', '/hosts/orig-nosuch1'];
    const check = async (path: string): Promise<void> => {
      await p.goto(`${s.url}${path}`);
      assert.equal(await p.locator('[style]').count(), 0, `${path}: a style attribute`);
      assert.equal(await p.locator('script:not([src]), style').count(), 0, `${path}: inline script or style`);
      assert.deepEqual(await axeCheck(p), [], path);
    };
    await check('/sign-in');
    // A refused sign-in shows its message accessibly too.
    await p.getByLabel('Token').fill('not a token');
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('alert').waitFor();
    assert.deepEqual(await axeCheck(p), [], 'sign-in with an error');
    await signIn(p, s.url, s.admin);
    for (const path of pages.slice(1)) await check(path);
    const t = await s.token('view', 'for the confirmation page');
    await check(`/tokens/${t.split('_')[1]}/revoke`);
    await context.close();
  });
});

describe('console hosts page with 10,000 hosts (Chromium)', () => {
  let big: ConsoleServer;
  let b: Browser;
  before(async () => {
    b = await launch();
    big = await startConsoleServer({}, {
      seed: async (meta) => {
        for (let i = 0; i < 10_000; i++) {
          const n = String(i).padStart(5, '0');
          const mac = `02:00:5e:${n.slice(0, 1).padStart(2, '0')}:${n.slice(1, 3)}:${n.slice(3, 5)}`;
          await meta.addHost({ id: `orig-n${n}`, hostnames: [`orig-n${n}.fleet.example.test`], macs: [mac], class: ['rack-a', 'rack-b', 'rack-c', 'blade'][i % 4]! });
        }
      },
    });
  });
  after(async () => {
    await b?.close();
    await big?.close();
  });

  test('paged (50 a page, never 10,000 rows), searchable by hostname and MAC, filtered by class', async () => {
    const { context, page: p } = await newPage(b);
    await signIn(p, big.url, big.admin);
    await p.goto(`${big.url}/hosts`);
    assert.match(await p.locator('#hosts-count').innerText(), /Hosts 1–50 of 10000\./);
    assert.equal(await p.locator('tbody tr').count(), 50);
    assert.match(await p.getByRole('navigation', { name: 'Pages of hosts' }).innerText(), /Page 1 of 200/);
    await screenshot(p, 'hosts');
    await p.getByRole('link', { name: 'Next →' }).click();
    await p.waitForURL((u) => u.searchParams.get('page') === '2');
    assert.equal(await p.locator('tbody th').first().innerText(), 'orig-n00050');
    await p.goto(`${big.url}/hosts?page=200`);
    assert.equal(await p.locator('tbody th').last().innerText(), 'orig-n09999');

    await p.getByLabel('Search').fill('orig-n04321.fleet');
    await p.getByRole('button', { name: 'Search' }).click();
    await p.waitForURL((u) => u.searchParams.has('q'));
    assert.deepEqual(await p.locator('tbody th').allInnerTexts(), ['orig-n04321'], 'by hostname');
    await p.goto(`${big.url}/hosts?q=${encodeURIComponent('02-00-5E-00-43-21')}`);
    assert.deepEqual(await p.locator('tbody th').allInnerTexts(), ['orig-n04321'], 'by MAC');
    await p.goto(`${big.url}/hosts?class=blade&q=orig-n0`);
    assert.match(await p.locator('#hosts-count').innerText(), /Hosts 1–50 of 2500 \(10000 in all\)/);
    await context.close();
  });
});
