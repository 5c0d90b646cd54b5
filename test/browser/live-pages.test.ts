// The console's live pages in a real Chromium against a real server (SQLite, loopback): an
// unknown machine running the real `apply` appears on the open pending page without a reload
// and is assigned in the browser, after which its apply completes; a recovery log uploaded as
// ReaR does (one long PUT) shows line by line and survives dropped streams with no line lost
// or doubled; hostile facts stay inert text; a view session cannot assign; axe-core finds no
// serious problem; screenshots for docs/console/.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdirSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { plainText } from '../../src/server/console/live/ansi.ts';
import { fakeSysRoot, REPO } from '../helpers.ts';
import { axeCheck, launch, newPage, screenshot, signIn, startConsoleServer, WAIT_MS, watchDialogs, type ConsoleServer } from './support.ts';

let s: ConsoleServer;
let browser: Browser;
/** The recovery of the machine assigned in the first test, and the pending machine of the hostile one. */
let assignedRecovery = 0;
let hostilePending = 0;

/** Every live stream connection the server accepted, so a test can drop them from the server side. */
const streamSockets = new Set<Socket>();
const streamUrls: string[] = [];

before(async () => {
  s = await startConsoleServer();
  s.srv.app.server.on('request', (req: http.IncomingMessage) => {
    if (req.url?.startsWith('/live/')) {
      streamSockets.add(req.socket);
      streamUrls.push(req.url);
    }
  });
  await s.host('orig-db1', { macs: ['52:54:00:10:00:01'], hostnames: ['orig-db1.example.test'], class: 'db' });
  await s.publish('orig-db1', {
    etc: { rear: { 'local.conf': 'OUTPUT=ISO\nBACKUP=NETFS\n' } },
    var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/vda 21474836480 gpt\ndisk /dev/vdb 10737418240 gpt\n' } } } },
  });
  browser = await launch();
});

after(async () => {
  // The server first, while a page may still hold a stream open: closing must end the streams.
  await s?.close();
  await browser?.close();
});

/** Runs the real CLI (from source) as a child process; resolves with its exit status and output. */
function runCli(args: readonly string[], env: Record<string, string>): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stdout.resume();
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (status) => resolve({ status, stderr }));
  });
}

async function signedIn(token: string, o: { bypassCSP?: boolean } = {}): Promise<Page> {
  const { page } = await newPage(browser, o);
  await signIn(page, s.url, token);
  return page;
}

/** A pending machine as a rescue system makes one: a recovery with facts and hardware, then a resolve that answers 202. */
async function pendingMachine(facts: { macs: string[]; serial?: string; hostname?: string; uuid?: string }, hardware: unknown): Promise<number> {
  const opened = await s.api('POST', '/api/v1/recoveries', { body: { facts, hardware } });
  assert.equal(opened.status, 201, opened.text);
  const id = (opened.json.recovery as { id: number }).id;
  const q = new URLSearchParams();
  for (const m of facts.macs) q.append('mac', m);
  for (const k of ['serial', 'hostname', 'uuid'] as const) if (facts[k]) q.set(k, facts[k]!);
  const resolved = await fetch(`${s.url}/api/v1/resolve?${q}`, { headers: { authorization: `Bearer ${s.admin}`, 'x-rear-update-recovery': String(id) } });
  const text = await resolved.text();
  assert.equal(resolved.status, 202, text);
  return (JSON.parse(text) as { pending: { id: number } }).pending.id;
}

/** A mark in the page's window: still there later means the page was never reloaded. */
async function markPage(page: Page): Promise<void> {
  await page.evaluate(() => ((window as unknown as { __notReloaded: boolean }).__notReloaded = true));
}
const stillSamePage = (page: Page): Promise<boolean> => page.evaluate(() => (window as unknown as { __notReloaded?: boolean }).__notReloaded === true);

test('an unknown machine running apply appears on the open pending page without a reload; the admin assigns it on the confirmation page and the waiting apply completes', async () => {
  const page = await signedIn(s.admin);
  await page.goto(`${s.url}/pending`);
  await page.getByText('No machine is waiting.').waitFor();
  await markPage(page);

  const sys = fakeSysRoot(join(s.work, 'sys-new'), ['52:54:00:77:00:01', '52:54:00:77:00:02'], 'replacement-7');
  const dst = join(s.work, 'rescue-new');
  mkdirSync(dst);
  const apply = runCli(['apply', '--server', s.url, '--token', s.admin, '--root', dst, '--pubkey', join(s.data, 'server.pub'), '--sys-root', sys, '--wait', '180', '-q'], { REAR_UPDATE_POLL_MS: '300' });

  const card = page.locator('.pending-card', { hasText: '52:54:00:77:00:01' });
  await card.waitFor();
  assert.ok(await stillSamePage(page), 'the machine appeared without a reload');
  await card.getByText('52:54:00:77:00:01 52:54:00:77:00:02', { exact: true }).waitFor();
  await screenshot(page, 'pending');

  await card.getByLabel('Assign to host').fill('orig-db1');
  await card.getByRole('button', { name: 'Assign…' }).click();
  await page.waitForURL(/\/pending\/\d+\/assign\?host=orig-db1/);
  // Both identities side by side: the machine's MACs and the host's facts and layout disks.
  await page.getByRole('heading', { name: /Assign machine \d+ to orig-db1\?/ }).waitFor();
  const compare = page.locator('.compare');
  await compare.getByText('52:54:00:77:00:01 52:54:00:77:00:02').waitFor();
  await compare.getByText('52:54:00:10:00:01').waitFor();
  await compare.getByText('/dev/vdb').waitFor();
  await screenshot(page, 'assign');

  await page.getByRole('button', { name: /^Assign machine \d+ to orig-db1$/ }).click();
  const r = await apply;
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /resolved this machine to host orig-db1 \(by assignment\)/);
  // Redirected to the machine's recovery, whose timeline shows the assignment.
  await page.waitForURL(/\/recoveries\/\d+$/);
  assignedRecovery = Number(/\/recoveries\/(\d+)$/.exec(page.url())![1]);
  await page.locator('#timeline').getByText('assigned', { exact: true }).waitFor();
  await page.close();
});

test('a recovery log streamed with a PUT as ReaR does shows line by line, keeps colours, marks the first error, and survives dropped streams with no line lost or doubled', async (t) => {
  assert.ok(assignedRecovery > 0, 'the first test made a recovery');
  const sent: string[] = [];
  const upload = http.request(`${s.url}/clients/orig-db1/log/recover/20261130-101500`, { method: 'PUT', headers: { authorization: s.admin, 'transfer-encoding': 'chunked' } });
  const answer = new Promise<number>((resolve, reject) => {
    upload.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    upload.on('error', reject);
  });
  // A failing assertion must not leave the upload open: the server's close would wait for it.
  t.after(() => upload.destroy());
  const send = (lines: string[]): void => {
    sent.push(...lines);
    upload.write(lines.map((l) => `${l}\n`).join(''));
  };
  send([
    'Relax-and-Recover 2.7 / 2022-07-13',
    'Running rear recover (PID 1234 date 2026-11-30 10:15:00)',
    '\x1b[1;32mUsing backup archive\x1b[0m backup.tar.gz',
  ]);

  const page = await signedIn(s.admin);
  const dialogs = watchDialogs(page);
  // The upload is linked to the host's newest active recovery: the one assigned above.
  await page.goto(`${s.url}/recoveries/${assignedRecovery}`);
  const shown = (): Promise<string[]> => page.$$eval('#log .log-line', (els) => els.map((e) => (e.textContent ?? '').replace(/\n$/, '')));
  const waitLines = (n: number): Promise<unknown> => page.waitForFunction((k) => document.querySelectorAll('#log .log-line').length >= k, n, { timeout: WAIT_MS });
  await waitLines(3);
  await markPage(page);

  for (const line of ['Comparing disks', 'Disk /dev/vda: 20 GiB', '\x1b[33mWARNING: disk /dev/vdb is larger than in the layout\x1b[0m']) {
    send([line]);
    await waitLines(sent.length);
  }
  assert.deepEqual(await shown(), sent.map(plainText));

  // A dropped stream (closed from the server side): the browser reconnects by itself with
  // Last-Event-ID and the server continues from that byte.
  const before = streamSockets.size;
  for (const sock of streamSockets) sock.destroy();
  send(['Creating partitions on /dev/vda', 'Creating filesystem ext4 on /dev/vda1']);
  await waitLines(sent.length);
  assert.ok(streamSockets.size > before, 'the page opened a new stream');

  // Following: the log keeps at its end while new lines come; a reader who scrolls up stops it.
  send(Array.from({ length: 80 }, (_, i) => `restored /usr/share/doc/pkg-${i}/README \x1b[36m(${i + 1}/80)\x1b[0m`));
  await waitLines(sent.length);
  const logBox = page.locator('#log');
  await page.waitForFunction(() => { const l = document.getElementById('log')!; return l.scrollHeight - l.scrollTop - l.clientHeight < 8; });
  await logBox.evaluate((l) => (l.scrollTop = 0));
  await page.locator('#log-paused').waitFor({ state: 'visible' });
  send(['Restoring bootloader']);
  await waitLines(sent.length);
  assert.equal(await logBox.evaluate((l) => l.scrollTop), 0, 'paused: the new line did not move the reader');
  await page.getByRole('button', { name: 'Jump to the end' }).click();
  await page.locator('#log-paused').waitFor({ state: 'hidden' });
  assert.ok(await logBox.evaluate((l) => l.scrollHeight - l.scrollTop - l.clientHeight < 8), 'at the end again');

  // Dropped again, and the server refuses the browser's own reconnect once: the page's script
  // reconnects, building the position from the last event id it holds.
  let refused = 0;
  await page.route('**/live/recoveries/**', async (route) => {
    if (refused++ === 0) await route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":{"code":"UNAVAILABLE","message":"test"}}' });
    else await route.continue();
  });
  const held = Buffer.byteLength(sent.map((l) => `${l}\n`).join(''));
  for (const sock of streamSockets) sock.destroy();
  send([
    '2026-11-30 10:16:02.000 \x1b[31mERROR: Failed to mount /dev/vda1 on /mnt/local\x1b[0m',
    'Aborting due to an error, check /var/log/rear/rear-orig-db1.log for details',
    'Exiting rear recover (PID 1234) and its descendant processes ...',
  ]);
  await waitLines(sent.length);
  assert.ok(refused >= 2, 'the browser\'s reconnect was refused, the script\'s went through');
  await page.unroute('**/live/recoveries/**');
  assert.ok(streamUrls.some((u) => new URLSearchParams(u.split('?')[1]).get('offset') === String(held)), `the script reconnected at byte ${held}: ${streamUrls.join(' ')}`);
  send(['Error exit of rear recover (PID 1234) and its descendant processes']);
  await waitLines(sent.length);

  assert.deepEqual(await shown(), sent.map(plainText), 'every line once, in order');
  assert.ok(await stillSamePage(page), 'no reload');
  // Colours as classes, the first error marked and reachable.
  assert.equal(await page.locator('#log .ansi-fg1').first().textContent(), 'ERROR: Failed to mount /dev/vda1 on /mnt/local');
  assert.match((await page.locator('#first-error').textContent()) ?? '', /^2026-11-30 10:16:02\.000 ERROR: Failed to mount/);
  await page.getByRole('link', { name: 'Jump to the first error' }).click();
  await page.locator('#log-paused').waitFor({ state: 'visible' });
  const inView = await page.evaluate(() => {
    const l = document.getElementById('log')!.getBoundingClientRect();
    const e = document.getElementById('first-error')!.getBoundingClientRect();
    return e.top >= l.top && e.bottom <= l.bottom;
  });
  assert.ok(inView, 'the first error is in view');
  await page.getByRole('button', { name: 'Jump to the end' }).click();
  await page.locator('#log-paused').waitFor({ state: 'hidden' });

  // Search filters the loaded lines.
  await page.getByLabel('Search the log').fill('/dev/vda');
  await page.getByText('4 matching lines').waitFor();
  assert.equal(await page.locator('#log .log-line:visible').count(), 4);
  await page.getByLabel('Search the log').fill('');
  await page.locator('#log-matches').getByText('matching').waitFor({ state: 'detached' });

  upload.end();
  assert.equal(await answer, 201);
  await page.locator('#log-state').getByText('complete').waitFor();

  // The download is the raw log, ANSI and all.
  const dl = await page.evaluate(async (id) => {
    const r = await fetch(`/recoveries/${id}/log.txt`);
    return { status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), text: await r.text() };
  }, assignedRecovery);
  assert.equal(dl.status, 200);
  assert.match(dl.type ?? '', /^text\/plain/);
  assert.match(dl.disposition ?? '', /^attachment; filename="recovery-\d+-orig-db1-recover-20261130-101500\.log"$/);
  assert.equal(dl.text, sent.map((l) => `${l}\n`).join(''));

  // Without JavaScript's stream, a fresh load shows the same lines.
  await page.reload();
  assert.deepEqual(await shown(), sent.map(plainText));
  await page.locator('#timeline').getByText('log', { exact: true }).waitFor();
  await screenshot(page, 'recovery');
  assert.deepEqual(dialogs, []);
  await page.close();
});

test('a pending machine whose facts and hardware hold HTML and script shows them as inert text', async () => {
  const page = await signedIn(s.admin);
  const dialogs = watchDialogs(page);
  await page.goto(`${s.url}/pending`);
  await markPage(page);
  const hostile = '<img src=x onerror="window.__xss=1;alert(1)">';
  const script = '<script>window.__xss=2;alert(2)</script>';
  const facts = { macs: ['52:54:00:66:00:01'], serial: `SN-${script}`, hostname: `<b>${script}</b>` };
  const hardware = { disks: [{ name: 'vda', size: 21474836480, model: script }], nics: [{ name: 'eth0', mac: '52:54:00:66:00:01', driver: hostile }], memory: 8589934592, cpus: 4, cpuModel: hostile };
  hostilePending = await pendingMachine(facts, hardware);

  // Live, then again as the server renders it.
  for (const load of [false, true]) {
    if (load) await page.reload();
    const card = page.locator(`#pending-${hostilePending}`);
    await card.getByText(hostile).first().waitFor();
    await card.getByText(script).first().waitFor();
    await card.getByText(`SN-${script}`.toUpperCase()).waitFor();
    assert.equal(await card.locator('img, script, b').count(), 0, 'no element came from the facts');
  }
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss), undefined);
  assert.deepEqual(dialogs, []);
  await page.close();
});

test('a view session sees the pending page without assign or forget controls, and a forged assign POST with its CSRF token is refused with 403', async () => {
  assert.ok(hostilePending > 0);
  const viewer = await s.token('view', 'live test viewer');
  const page = await signedIn(viewer);
  await page.goto(`${s.url}/pending`);
  await page.locator(`#pending-${hostilePending}`).waitFor();
  assert.equal(await page.locator('.pending-actions, form.assign-form').count(), 0);
  assert.equal(await page.getByRole('link', { name: /Assign|Forget/ }).count(), 0);
  assert.equal(await page.getByRole('button', { name: /Assign|Forget/ }).count(), 0);
  const forged = await page.evaluate(async (id) => {
    const csrf = document.querySelector('meta[name="csrf-token"]')!.getAttribute('content')!;
    const r = await fetch(`/pending/${id}/assign`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-csrf-token': csrf }, body: new URLSearchParams({ host: 'orig-db1', _csrf: csrf }).toString() });
    const f = await fetch(`/pending/${id}/forget`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-csrf-token': csrf }, body: new URLSearchParams({ _csrf: csrf }).toString() });
    return [r.status, f.status];
  }, hostilePending);
  assert.deepEqual(forged, [403, 403]);
  const still = await s.api('GET', '/api/v1/pending');
  assert.ok(JSON.stringify(still.json).includes('52:54:00:66:00:01'), 'still pending, unassigned');
  const pend = (still.json.pending as { id: number; assignedHost: string | null }[]).find((p) => p.id === hostilePending);
  assert.equal(pend?.assignedHost, null);
  // Nor can it open the confirmation pages.
  const confirm = await page.goto(`${s.url}/pending/${hostilePending}/assign?host=orig-db1`);
  assert.equal(confirm?.status(), 403);
  await page.close();
});

test('incident view and recoveries list: counts by bucket, active recoveries, links; axe-core finds no serious or critical violation on the live pages', async () => {
  const page = await signedIn(s.admin, { bypassCSP: true });
  await page.goto(`${s.url}/`);
  await page.locator('#incident-counts [data-bucket="pending"] .n').waitFor();
  await page.locator('#incident-rows').getByRole('link', { name: `#${assignedRecovery}` }).waitFor();
  await page.getByText(/unknown machine\(s\) wait to be assigned/).waitFor();
  await screenshot(page, 'incident');
  await page.goto(`${s.url}/recoveries`);
  await page.getByRole('link', { name: `#${assignedRecovery}` }).waitFor();
  await screenshot(page, 'recoveries');
  const problems: Record<string, unknown> = {};
  for (const path of ['/', '/pending', '/recoveries', `/recoveries/${assignedRecovery}`, `/pending/${hostilePending}/assign?host=orig-db1`, `/pending/${hostilePending}/forget`]) {
    await page.goto(`${s.url}${path}`);
    const v = await axeCheck(page);
    if (v.length) problems[path] = v;
  }
  assert.deepEqual(problems, {});
  await page.close();
});

test('an admin creates the host from a pending machine\'s identity and assigns it (audited); an operator cannot create hosts but forgets a machine after confirming', async () => {
  const hw = { disks: [{ name: 'sda', size: 500107862016, model: 'QEMU HARDDISK' }], nics: [{ name: 'eno1', mac: '52:54:00:55:00:01', driver: 'e1000e' }], memory: 17179869184, cpus: 8, cpuModel: 'QEMU Virtual CPU' };
  const fresh = await pendingMachine({ macs: ['52:54:00:55:00:01'], serial: 'VM-55', uuid: '6a0f1c2e-55aa-4d1b-9c3e-000000000055' }, hw);
  const other = await pendingMachine({ macs: ['52:54:00:44:00:01'] }, { disks: [], nics: [] });

  const operator = await s.token('operate', 'live test operator');
  const op = await signedIn(operator);
  await op.goto(`${s.url}/pending/${fresh}/assign?host=new-db55`);
  await op.getByText('There is no host named new-db55.').waitFor();
  assert.equal(await op.getByRole('button', { name: /Create host/ }).count(), 0, 'only an admin creates hosts');
  const refused = await op.evaluate(async (id) => {
    const csrf = document.querySelector('meta[name="csrf-token"]')!.getAttribute('content')!;
    const r = await fetch(`/pending/${id}/create-host`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-csrf-token': csrf }, body: new URLSearchParams({ host: 'new-db55', _csrf: csrf }).toString() });
    return r.status;
  }, fresh);
  assert.equal(refused, 403);
  // Forget, after a confirmation page.
  await op.goto(`${s.url}/pending`);
  await op.locator(`#pending-${other}`).getByRole('link', { name: 'Forget…' }).click();
  await op.getByRole('heading', { name: `Forget machine ${other}?` }).waitFor();
  await op.getByRole('button', { name: `Forget machine ${other}` }).click();
  await op.getByText(`Machine ${other} was forgotten`).waitFor();
  assert.equal(await op.locator(`#pending-${other}`).count(), 0);
  await op.close();

  const page = await signedIn(s.admin);
  await page.goto(`${s.url}/pending/${fresh}/assign?host=new-db55`);
  await page.locator('.compare').getByText('QEMU HARDDISK').waitFor();
  await page.getByRole('button', { name: 'Create host new-db55 and assign' }).click();
  await page.waitForURL(/\/recoveries\/\d+$/);
  const host = await s.api('GET', '/api/v1/hosts/new-db55');
  assert.equal(host.status, 200, host.text);
  const h = host.json.host as { macs: string[]; serial: string; uuid: string };
  assert.deepEqual([h.macs, h.serial, h.uuid], [['52:54:00:55:00:01'], 'VM-55', '6a0f1c2e-55aa-4d1b-9c3e-000000000055']);
  const pend = await s.api('GET', '/api/v1/pending?all=1');
  assert.equal((pend.json.pending as { id: number; assignedHost: string | null }[]).find((p) => p.id === fresh)?.assignedHost, 'new-db55');
  const audit = await s.api('GET', '/api/v1/audit?kind=host&host=new-db55');
  assert.match(audit.text, /created from pending machine \d+ \(console\)/);
  await page.close();
});

test('a live stream ends when its session ends (sign-out elsewhere): the server stops sending within a ping interval', async () => {
  const { context, page } = await newPage(browser);
  await signIn(page, s.url, s.admin);
  const opened: http.ServerResponse[] = [];
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.url?.startsWith('/live/events')) opened.push(res);
  };
  s.srv.app.server.on('request', onRequest);
  try {
    await page.goto(`${s.url}/`);
    await page.locator('.live-note.on').waitFor();
    assert.ok(opened.length >= 1 && opened.some((r) => !r.writableEnded), 'a stream is open');
    const other = await context.newPage();
    await other.goto(`${s.url}/`);
    await Promise.all([other.waitForURL(/\/sign-in/), other.getByRole('button', { name: 'Sign out' }).click()]);
    // Every stream, and every reconnect the browser tries, is over (the pings check the session).
    const deadline = Date.now() + WAIT_MS;
    while (opened.some((r) => !r.writableEnded) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    assert.ok(opened.every((r) => r.writableEnded), 'no stream outlives the session');
  } finally {
    s.srv.app.server.off('request', onRequest);
  }
  // And one page stays open with a stream while the server closes (after()).
  const { page: lingering } = await newPage(browser);
  await signIn(lingering, s.url, s.admin);
  await lingering.goto(`${s.url}/recoveries/${assignedRecovery}`);
  await lingering.locator('.live-note.on').waitFor();
});

test('without JavaScript the pages read complete: the timeline and the log as it was at load, the pending machines, the incident counts', async () => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  try {
    await signIn(page, s.url, s.admin);
    await page.goto(`${s.url}/recoveries/${assignedRecovery}`);
    await page.locator('#timeline').getByText('assigned', { exact: true }).waitFor();
    assert.ok((await page.locator('#log .log-line').count()) > 90);
    await page.locator('#first-error').getByText(/ERROR: Failed to mount/).waitFor();
    assert.equal(await page.locator('#log-search').isVisible(), false, 'script-only controls stay hidden');
    await page.goto(`${s.url}/pending`);
    await page.locator(`#pending-${hostilePending}`).waitFor();
    await page.goto(`${s.url}/`);
    await page.locator('#incident-counts [data-bucket="recovering"] .n').waitFor();
  } finally {
    await context.close();
  }
});
