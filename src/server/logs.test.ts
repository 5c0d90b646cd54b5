import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { TokenRedactor } from './logs.ts';

const token = (): string => `ru_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url')}`;

test('tokens in an uploaded log are cut to their id, wherever the chunks split them', () => {
  const t = token();
  const id = t.slice(3, 15);
  const log = Buffer.from(`Setting DRLM_REST_OPTS=--cacert /etc/rear/ca.pem -H Authorization:${t}\nnext line é\n`, 'utf8');
  for (let size = 1; size <= log.length; size += 7) {
    const r = new TokenRedactor();
    const parts: Buffer[] = [];
    for (let i = 0; i < log.length; i += size) parts.push(r.push(log.subarray(i, i + size)));
    parts.push(r.end());
    const out = Buffer.concat(parts).toString('utf8');
    assert.equal(out, `Setting DRLM_REST_OPTS=--cacert /etc/rear/ca.pem -H Authorization:ru_${id}_[redacted]\nnext line é\n`, `chunk size ${size}`);
  }
});

test('a log without tokens passes byte for byte', () => {
  const data = randomBytes(10_000);
  const r = new TokenRedactor();
  const out = Buffer.concat([r.push(data.subarray(0, 4000)), r.push(data.subarray(4000)), r.end()]);
  assert.deepEqual(out, data);
});

test('a finished line is passed on at once (a live follower sees it); only a possible token start waits', () => {
  const r = new TokenRedactor();
  assert.equal(r.push(Buffer.from('first line\n')).toString(), 'first line\n');
  assert.equal(r.push(Buffer.from('Authorization:ru_0a')).toString(), 'Authorization:');
  assert.equal(r.push(Buffer.from('z more\n')).toString(), 'ru_0az more\n');
});
