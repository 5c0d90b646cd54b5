import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ancestors, comparePaths, normalizeMemberName, ROOT_PATH } from './paths.ts';
import { DEFAULT_LIMITS } from './policy.ts';

const norm = (p: string): string => normalizeMemberName(p, DEFAULT_LIMITS);
const code = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'no error';
};

test('tar spellings of ordinary names become one canonical form', () => {
  assert.equal(norm('etc/rear/'), 'etc/rear');
  assert.equal(norm('./etc/rear/local.conf'), 'etc/rear/local.conf');
  assert.equal(norm('./'), ROOT_PATH);
  assert.equal(norm('.'), ROOT_PATH);
  assert.equal(norm('a b/Grüße'), 'a b/Grüße');
});

test('absolute names are refused, including the ////name that loses one slash (CVE-2021-32804)', () => {
  assert.equal(code(() => norm('/etc/passwd')), 'ENTRY_PATH_ABSOLUTE');
  assert.equal(code(() => norm('////etc/passwd')), 'ENTRY_PATH_ABSOLUTE');
});

test('".." anywhere is refused', () => {
  for (const p of ['../x', 'a/../../x', 'a/..', './../x']) assert.equal(code(() => norm(p)), 'ENTRY_PATH_TRAVERSAL', p);
});

test('non-canonical names are refused rather than guessed at', () => {
  for (const p of ['a//b', 'a/./b', '', 'a\0b', 'C:/x', 'a\\b']) assert.notEqual(code(() => norm(p)), 'no error', JSON.stringify(p));
});

test('limits on name length, component length and depth', () => {
  assert.equal(code(() => norm('a/'.repeat(200) + 'x')), 'LIMIT_DEPTH');
  assert.equal(code(() => norm('x'.repeat(256))), 'LIMIT_NAME');
  assert.equal(code(() => norm('abc/'.repeat(1100))), 'LIMIT_NAME');
});

test('ancestors and canonical order: a directory sorts before its contents', () => {
  assert.deepEqual(ancestors('a/b/c'), ['a', 'a/b']);
  const sorted = ['etc/rear/x', 'etc/rear-old', 'etc/rear', 'etc'].sort(comparePaths);
  assert.deepEqual(sorted, ['etc', 'etc/rear', 'etc/rear/x', 'etc/rear-old']);
});
