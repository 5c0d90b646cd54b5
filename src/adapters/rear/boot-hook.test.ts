import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { BOOT_HOOK } from './boot-hook.ts';

test('the boot hook is valid bash', () => {
  const r = spawnSync('bash', ['-n'], { input: BOOT_HOOK, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('the boot hook has no command substitution by backquotes outside comments (a message once ran `rear recover`)', () => {
  const code = BOOT_HOOK.split('\n').filter((l) => !/^\s*#/.test(l));
  assert.deepEqual(code.filter((l) => l.includes('`')), []);
});
