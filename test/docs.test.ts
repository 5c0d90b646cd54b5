// The documentation is part of the interface: it must say what the code does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { renderErrorsDoc } from '../scripts/errors-doc.ts';
import { ERRORS } from '../src/core/errors.ts';
import { cli, REPO } from './helpers.ts';

test('docs/errors.md is the error table of src/core/errors.ts (run npm run docs:errors)', () => {
  assert.equal(readFileSync(join(REPO, 'docs/errors.md'), 'utf8'), renderErrorsDoc());
});

test('every command named in the README has --help, and every flag the README shows exists', () => {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  for (const cmd of ['keygen', 'pack', 'inspect', 'verify', 'apply', 'rollback', 'status', 'facts']) {
    const help = cli([cmd, '--help']);
    assert.equal(help.status, 0, cmd);
    assert.match(readme, new RegExp(`rear-update ${cmd}`), `README documents ${cmd}`);
    for (const m of readme.matchAll(new RegExp(`rear-update ${cmd}[^\\n]*`, 'g'))) {
      for (const flag of m[0].matchAll(/(--[a-z][a-z-]+)/g)) {
        assert.ok(help.stdout.includes(flag[1] as string), `README: \`${m[0].trim()}\` uses ${flag[1]}, which ${cmd} --help does not list`);
      }
    }
  }
});

test('the codes that exit statuses group are the documented groups', () => {
  for (const s of Object.values(ERRORS)) assert.ok(s.exit >= 1 && s.exit <= 10);
});
