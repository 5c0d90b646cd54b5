import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TtlCache } from './cache.ts';

test('a memo answers from memory within its time, loads again after it, and forgets failures', async () => {
  const c = new TtlCache<string, number>(50);
  let loads = 0;
  const load = async (): Promise<number> => ++loads;
  assert.equal(await c.get('a', load), 1);
  assert.equal(await c.get('a', load), 1);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(await c.get('a', load), 2);
  c.delete('a');
  assert.equal(await c.get('a', load), 3);
  await assert.rejects(c.get('b', () => Promise.reject(new Error('x'))));
  await new Promise((r) => setImmediate(r));
  assert.equal(await c.get('b', load), 4);
});

test('a memo holds at most its bound, dropping the oldest', async () => {
  const c = new TtlCache<number, number>(60_000, 3);
  for (let i = 0; i < 10; i++) await c.get(i, async () => i);
  let reloaded = 0;
  for (let i = 0; i < 10; i++) await c.get(i, async () => ++reloaded);
  assert.ok(reloaded >= 7, `only the last few stayed (reloaded ${reloaded})`);
});
