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

test('canonical order is component-wise UTF-8 byte order, for ASCII, non-ASCII and prefixes alike', () => {
  // The reference definition, written the slow and obvious way.
  const reference = (a: string, b: string): number => {
    const pa = a.split('/');
    const pb = b.split('/');
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
      const c = Buffer.compare(Buffer.from(pa[i] as string), Buffer.from(pb[i] as string));
      if (c !== 0) return c;
    }
    return pa.length - pb.length;
  };
  const alphabet = ['a', 'b', '-', '.', '0', 'Z', '~', 'é', 'ß', '\u{e000}', '😀', '/'];
  let seed = 7;
  const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const path = (): string => {
    let s = '';
    for (let i = 1 + rnd(8); i > 0; i--) s += alphabet[rnd(alphabet.length)];
    return s.replace(/\/+/g, '/').replace(/^\/|\/$/g, '') || 'x';
  };
  const paths = Array.from({ length: 400 }, path);
  for (let i = 0; i + 1 < paths.length; i++) {
    const [a, b] = [paths[i] as string, paths[i + 1] as string];
    assert.equal(Math.sign(comparePaths(a, b)), Math.sign(reference(a, b)), `${a} vs ${b}`);
  }
  assert.ok(comparePaths('a/b', 'ab') < 0 && comparePaths('ab', 'a/b') > 0);
  assert.ok(comparePaths('\u{e000}', '😀') < 0, 'U+E000 is 3 UTF-8 bytes EE.., U+1F600 is F0..: byte order, not UTF-16 order');
});
