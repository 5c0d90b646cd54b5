// The judgements doctor makes without I/O: thresholds (disk, clock, token scope, image age),
// the line format, and that only a FAIL fails the run.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { anyFailed, clockVerdict, diskVerdict, fail, formatResults, imageVerdict, ok, publishVerdict, scopeVerdict, skip, warn } from './doctor.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const fmt = (n: number): string => `${n}`;

test('disk: WARN under 10 % or 1 GiB, FAIL under 1 % or 100 MiB', () => {
  assert.equal(diskVerdict(50 * GiB, 100 * GiB, fmt).status, 'OK');
  assert.equal(diskVerdict(9 * GiB, 100 * GiB, fmt).status, 'WARN');
  assert.equal(diskVerdict(900 * MiB, 2 * GiB, fmt).status, 'WARN');
  assert.equal(diskVerdict(0.9 * GiB, 100 * GiB, fmt).status, 'FAIL');
  assert.equal(diskVerdict(99 * MiB, 150 * MiB, fmt).status, 'FAIL');
});

test('clock: behind the newest record by more than 60 s FAILs, by less WARNs, ahead is OK', () => {
  const now = new Date('2026-05-01T12:00:00Z');
  assert.equal(clockVerdict(now, null).status, 'OK');
  assert.equal(clockVerdict(now, '2026-05-01T11:59:00Z').status, 'OK');
  assert.equal(clockVerdict(now, '2026-05-01T12:00:30Z').status, 'WARN');
  assert.equal(clockVerdict(now, '2026-05-01T12:01:01Z').status, 'FAIL');
});

test('scope: publish for this host or admin; nothing else publishes it', () => {
  assert.equal(scopeVerdict('publish:h1', 'h1').status, 'OK');
  assert.equal(scopeVerdict('admin', 'h1').status, 'OK');
  for (const s of ['publish:h2', 'fetch:h1', 'fetch-class:typeA', 'publish-class:typeA', 'view', 'operate']) assert.equal(scopeVerdict(s, 'h1').status, 'FAIL', s);
});

test('last publish: none or failed FAILs; older than a week WARNs', () => {
  const now = new Date('2026-05-10T00:00:00Z');
  const s = { at: '2026-05-09T00:00:00Z', ok: true, trigger: 'timer', version: 3, code: null, message: null };
  assert.equal(publishVerdict(null, now).status, 'FAIL');
  assert.equal(publishVerdict({ ...s, ok: false, code: 'AUTH_EXPIRED', message: 'x' }, now).status, 'FAIL');
  assert.equal(publishVerdict(s, now).status, 'OK');
  assert.equal(publishVerdict({ ...s, at: '2026-05-01T00:00:00Z' }, now).status, 'WARN');
});

test('image: older than the configuration FAILs; none at all WARNs', () => {
  assert.equal(imageVerdict({ path: '/i', mtime: 2000 }, { path: '/c', mtime: 1000 }).status, 'OK');
  assert.equal(imageVerdict({ path: '/i', mtime: 1000 }, { path: '/c', mtime: 2000 }).status, 'FAIL');
  assert.equal(imageVerdict(null, { path: '/c', mtime: 2000 }).status, 'WARN');
});

test('lines: STATUS  check  detail, the fix of a WARN or FAIL on the next line; only FAIL fails', () => {
  const rs = [ok('rear', 'ReaR 2.7'), warn('tls', 'plain http', 'use https'), skip('token', 'the server is not reachable'), fail('server', 'down\x1b[2J', 'systemctl start x')];
  assert.deepEqual(formatResults(rs), [
    'OK    rear    ReaR 2.7',
    'WARN  tls     plain http',
    '              fix: use https',
    'SKIP  token   the server is not reachable',
    'FAIL  server  down [2J',
    '              fix: systemctl start x',
  ]);
  assert.equal(anyFailed(rs), true);
  assert.equal(anyFailed(rs.slice(0, 3)), false);
});
