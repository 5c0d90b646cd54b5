// The hostile corpus of docs/safe-extraction.md (shared/reference/safe-extraction.md), one test
// per threat, each named after it. Every archive is built from code (rawTarGz: node-tar's own
// header encoders, used the way no well-behaved packer would) and applied with the real CLI
// into a scratch root that has content and a sibling "outside" directory as the escape target.
// A refusal must: exit non-zero with the documented code and status, name the member, and leave
// the root, the outside directory and their parent byte-for-byte (and inode-for-inode) as they
// were, with no rear-update state left behind.

import assert from 'node:assert/strict';
import { chmodSync, chownSync, createWriteStream, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { createGzip, gunzipSync, gzipSync } from 'node:zlib';
import { ERRORS, type ErrorCode } from '../../src/core/errors.ts';
import { cleanup, cli, errorCode, makeTree, rawTarGz, resealed, setTypeflag, snapshot, tempDir, type CliResult, type RawMember } from '../helpers.ts';

const dirs: string[] = [];
after(() => cleanup(...dirs));

interface Fixture {
  /** Parent of root and outside; the archive lives here too. */
  readonly base: string;
  readonly root: string;
  /** The escape target: a sibling of the root. */
  readonly outside: string;
  readonly archive: string;
}

type Archive = RawMember[] | Buffer;

/**
 * A root with ordinary content and a sibling outside directory. `archive` gets the fixture so
 * hostile names can point at the real outside path; `setup` may rearrange the root first.
 */
function fixture(archive: (f: Fixture) => Archive, setup?: (f: Fixture) => void): Fixture {
  const base = tempDir('ru-hostile-');
  dirs.push(base);
  const f: Fixture = { base, root: join(base, 'root'), outside: join(base, 'outside'), archive: join(base, 'hostile.tar.gz') };
  makeTree(f.root, {
    etc: { rear: { 'local.conf': 'OUTPUT=ISO\nBACKUP=NETFS\n' }, hostname: 'rescue\n' },
    usr: { share: { doc: { 'README': 'docs\n' } } },
  });
  makeTree(f.outside, { 'keep.txt': 'outside: must never change\n', rear: { 'site.conf': 'outside site.conf\n' } });
  for (const d of [f.root, join(f.root, 'etc'), join(f.root, 'etc/rear'), join(f.root, 'usr'), f.outside]) chmodSync(d, 0o755);
  setup?.(f);
  const a = archive(f);
  writeFileSync(f.archive, Buffer.isBuffer(a) ? a : rawTarGz(a));
  return f;
}

interface State {
  readonly base: ReturnType<typeof snapshot>;
  readonly root: ReturnType<typeof snapshot>;
  readonly outside: ReturnType<typeof snapshot>;
  readonly listing: string[];
}

const capture = (f: Fixture): State => ({
  base: snapshot(f.base, { inodes: true }),
  root: snapshot(f.root, { inodes: true }),
  outside: snapshot(f.outside, { inodes: true }),
  listing: readdirSync(f.base).sort(),
});

function assertUnchanged(f: Fixture, before: State): void {
  assert.deepEqual(snapshot(f.outside, { inodes: true }), before.outside, 'the outside directory changed');
  assert.deepEqual(readdirSync(f.base).sort(), before.listing, 'the root\'s parent directory listing changed');
  assert.deepEqual(snapshot(f.root, { inodes: true }), before.root, 'the root changed');
  assert.deepEqual(snapshot(f.base, { inodes: true }), before.base, 'the root\'s parent changed');
  assert.equal(existsSync(join(f.root, 'var/lib/rear-update')), false, 'rear-update state was left in the root');
}

interface Refusal {
  /** Acceptable codes; usually exactly one. */
  readonly codes: readonly ErrorCode[];
  /** Strings stderr must contain: the member (and where useful the offending path). */
  readonly names: readonly string[];
  readonly args?: readonly string[];
}

/** Applies the fixture's archive with --unsigned and asserts a clean, specific refusal. */
function refuses(f: Fixture, exp: Refusal): CliResult {
  const before = capture(f);
  const r = cli(['apply', '--unsigned', '--quiet', '--root', f.root, ...(exp.args ?? []), f.archive]);
  const code = errorCode(r);
  assert.notEqual(r.status, 0, `apply must refuse; it exited 0.\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.ok(code !== null && (exp.codes as readonly string[]).includes(code), `expected ${exp.codes.join(' or ')}, got ${String(code)} (exit ${String(r.status)}): ${r.stderr}`);
  assert.equal(r.status, ERRORS[code as ErrorCode].exit, `exit status for ${String(code)}`);
  assertUnchanged(f, before);
  // Rule 8: the refusal says which member (checked last, so a missing name never hides a changed root).
  for (const n of exp.names) assert.ok(r.stderr.includes(n), `stderr must name ${JSON.stringify(n)}: ${r.stderr}`);
  return r;
}

/** Applies with --unsigned and asserts success, the outside directory untouched. */
function applies(f: Fixture, args: readonly string[] = []): CliResult {
  const outsideBefore = snapshot(f.outside, { inodes: true });
  const r = cli(['apply', '--unsigned', '--quiet', '--root', f.root, ...args, f.archive]);
  assert.equal(r.status, 0, `apply must succeed: ${r.stderr}`);
  assert.deepEqual(snapshot(f.outside, { inodes: true }), outsideBefore, 'the outside directory changed');
  return r;
}

const file = (path: string, body: string | Buffer = 'PWNED\n', extra: Partial<RawMember> = {}): RawMember => ({ path, type: 'File', mode: 0o644, body, ...extra });
const dir = (path: string, mode = 0o755): RawMember => ({ path: path.endsWith('/') ? path : `${path}/`, type: 'Directory', mode });
const symlink = (path: string, target: string): RawMember => ({ path, type: 'SymbolicLink', mode: 0o777, linkpath: target });
const hardlink = (path: string, target: string): RawMember => ({ path, type: 'Link', mode: 0o644, linkpath: target });

/** The raw tar blocks of members, without the two end-of-archive blocks. */
const tarBlocks = (members: RawMember[]): Buffer => {
  const t = gunzipSync(rawTarGz(members));
  return t.subarray(0, t.length - 1024);
};

describe('path names (rule 1)', () => {
  it('".." in a member name (path traversal) is refused: ENTRY_PATH_TRAVERSAL', () => {
    for (const name of ['../outside/evil', 'etc/rear/../../../outside/evil', 'etc/..']) {
      const f = fixture(() => [file('etc/rear/ok.conf'), file(name)]);
      refuses(f, { codes: ['ENTRY_PATH_TRAVERSAL'], names: [name] });
    }
  });

  it('absolute member name pointing at the outside directory is refused: ENTRY_PATH_ABSOLUTE', () => {
    const f = fixture((x) => [file(join(x.outside, 'evil'))]);
    refuses(f, { codes: ['ENTRY_PATH_ABSOLUTE'], names: [join(f.outside, 'evil')] });
  });

  it('CVE-2021-32804: ////name loses only one slash and stays absolute: ENTRY_PATH_ABSOLUTE', () => {
    const f = fixture((x) => [file(`///${x.outside}/evil`)]);
    refuses(f, { codes: ['ENTRY_PATH_ABSOLUTE'], names: [`///${f.outside}/evil`] });
  });

  it('PAX "path" header overriding an innocent ustar name with ../ is judged after PAX: ENTRY_PATH_TRAVERSAL', () => {
    const f = fixture(() => [file('etc/rear/innocent.conf', 'PWNED\n', { pax: { path: '../outside/evil' } })]);
    refuses(f, { codes: ['ENTRY_PATH_TRAVERSAL'], names: ['../outside/evil'] });
    assert.equal(existsSync(join(f.root, 'etc/rear/innocent.conf')), false);
  });

  it('PAX "path" header overriding an innocent ustar name with an absolute path: ENTRY_PATH_ABSOLUTE', () => {
    const f = fixture((x) => [file('etc/rear/innocent.conf', 'PWNED\n', { pax: { path: join(x.outside, 'evil') } })]);
    refuses(f, { codes: ['ENTRY_PATH_ABSOLUTE'], names: [join(f.outside, 'evil')] });
  });

  it('GNU long-name header (type L) overriding an innocent ustar name with ../ is judged after it: ENTRY_PATH_TRAVERSAL', () => {
    const longName = '../outside/evil\0';
    const f = fixture(() => [
      { path: '././@LongLink', type: 'NextFileHasLongPath', mode: 0o644, size: Buffer.byteLength(longName), body: longName },
      file('etc/rear/innocent.conf'),
    ]);
    refuses(f, { codes: ['ENTRY_PATH_TRAVERSAL'], names: ['../outside/evil'] });
  });

  it('member writing into rear-update\'s own state directory var/lib/rear-update is refused: ENTRY_PATH_RESERVED', () => {
    for (const name of ['var/lib/rear-update/installed.json', 'var/lib/rear-update/txn/x']) {
      const f = fixture(() => [dir('var'), dir('var/lib'), file(name, '{}\n')]);
      refuses(f, { codes: ['ENTRY_PATH_RESERVED'], names: [name] });
    }
  });

  it('duplicate member (the same path twice) is refused: BUNDLE_MEMBER_DUPLICATE', () => {
    const f = fixture(() => [file('etc/rear/site.conf', 'first\n'), file('etc/rear/site.conf', 'second\n')]);
    refuses(f, { codes: ['BUNDLE_MEMBER_DUPLICATE'], names: ['etc/rear/site.conf'] });
  });
});

describe('symbolic links are never followed (rule 2)', () => {
  it('symlink pointing out of the root by an absolute target, then a member written through it: ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture((x) => [symlink('etc/rear/out', x.outside), file('etc/rear/out/evil')]);
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['etc/rear/out/evil'] });
  });

  it('symlink pointing out of the root by a relative ../ target, then a member written through it: ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture(() => [symlink('etc/rear/out', '../../../outside'), file('etc/rear/out/evil')]);
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['etc/rear/out/evil'] });
  });

  it('symlink pointing out of the root, then a directory member below it: ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture(() => [symlink('etc/rear/out', '../../../outside'), dir('etc/rear/out/newdir')]);
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['etc/rear/out/newdir'] });
  });

  it('CVE-2021-32803: directory a/ created, then replaced by symlink a -> ../outside, then a/x: refused', () => {
    const f = fixture(() => [dir('a'), symlink('a', '../outside'), file('a/x')]);
    refuses(f, { codes: ['BUNDLE_MEMBER_DUPLICATE', 'ENTRY_THROUGH_SYMLINK'], names: ['a'] });
  });

  it('chain of in-root symlinks ending outside (l1 -> l2, l2 -> ../outside, l1/x): ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture(() => [symlink('l2', '../outside'), symlink('l1', 'l2'), file('l1/x')]);
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['l1/x'] });
  });

  it('chain of symlinks through a directory (d/l1 -> ../l2, l2 -> ../outside, d/l1/rear/x): ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture(() => [dir('d'), symlink('l2', '../outside'), symlink('d/l1', '../l2'), file('d/l1/rear/x')]);
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['d/l1/rear/x'] });
  });

  it('CVE-2021-37701: case variant (dir A/, symlink a -> ../outside, a/x): ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture(() => [dir('A'), symlink('a', '../outside'), file('a/x')]);
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['a/x'] });
  });

  it('CVE-2021-37712: Unicode NFC/NFD variant (dir café/ NFC, symlink café NFD -> ../outside, NFD café/x): ENTRY_THROUGH_SYMLINK', () => {
    const nfc = 'caf\u00e9';
    const nfd = 'cafe\u0301';
    assert.equal(nfc.normalize('NFC'), nfd.normalize('NFC'));
    for (const [d, l] of [[nfc, nfd], [nfd, nfc]] as const) {
      const f = fixture(() => [dir(d), symlink(l, '../outside'), file(`${l}/x`)]);
      refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: [`${l}/x`] });
    }
  });

  it('pre-existing symlink in the root (etc/rear -> ../../outside) with a member etc/rear/x: ENTRY_THROUGH_SYMLINK, nothing written outside', () => {
    const f = fixture(() => [file('etc/rear/x')], (x) => {
      rmSync(join(x.root, 'etc/rear'), { recursive: true });
      symlinkSync('../../outside', join(x.root, 'etc/rear'));
    });
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['etc/rear/x', 'etc/rear'] });
    assert.equal(existsSync(join(f.outside, 'x')), false);
  });

  it('pre-existing absolute symlink in the root (etc/rear -> OUTSIDE) with a member etc/rear/sub/x: ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture(() => [file('etc/rear/sub/x')], (x) => {
      rmSync(join(x.root, 'etc/rear'), { recursive: true });
      symlinkSync(x.outside, join(x.root, 'etc/rear'));
    });
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['etc/rear/sub/x', 'etc/rear'] });
  });

  it('time-of-check/time-of-use: root\'s etc is a symlink to outside, member etc/rear/x is refused (parents are lstat-ed, never followed): ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture(() => [file('etc/rear/x'), file('etc/rear/site.conf', 'evil\n')], (x) => {
      rmSync(join(x.root, 'etc'), { recursive: true });
      symlinkSync('../outside', join(x.root, 'etc'));
    });
    // The refusal names the first member below the link (site.conf sorts before x) and the link.
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['etc/rear/site.conf', 'etc'] });
    assert.equal(readFileSync(join(f.outside, 'rear/site.conf'), 'utf8'), 'outside site.conf\n');
  });
});

describe('hard links (rule 3)', () => {
  it('hardlink to an absolute path outside the root: ENTRY_HARDLINK_REFUSED', () => {
    const f = fixture((x) => [hardlink('etc/rear/h', join(x.outside, 'keep.txt'))]);
    refuses(f, { codes: ['ENTRY_HARDLINK_REFUSED'], names: ['etc/rear/h'] });
    assert.equal(lstatSync(join(f.outside, 'keep.txt')).nlink, 1);
  });

  it('hardlink whose target climbs out with "..": ENTRY_HARDLINK_REFUSED', () => {
    const f = fixture(() => [hardlink('etc/rear/h', '../outside/keep.txt')]);
    refuses(f, { codes: ['ENTRY_HARDLINK_REFUSED'], names: ['etc/rear/h'] });
    assert.equal(lstatSync(join(f.outside, 'keep.txt')).nlink, 1);
  });

  it('hardlink through a symlink of the same archive (s -> OUTSIDE, h => s/keep.txt): ENTRY_HARDLINK_REFUSED', () => {
    const f = fixture((x) => [symlink('etc/rear/s', x.outside), hardlink('etc/rear/h', 'etc/rear/s/keep.txt')]);
    refuses(f, { codes: ['ENTRY_HARDLINK_REFUSED'], names: ['etc/rear/h'] });
    assert.equal(lstatSync(join(f.outside, 'keep.txt')).nlink, 1);
  });

  it('hardlink through a symlink already in the root (etc/rear -> ../../outside, h => etc/rear/keep.txt): ENTRY_HARDLINK_REFUSED', () => {
    const f = fixture(() => [hardlink('etc/h', 'etc/rear/keep.txt')], (x) => {
      rmSync(join(x.root, 'etc/rear'), { recursive: true });
      symlinkSync('../../outside', join(x.root, 'etc/rear'));
    });
    refuses(f, { codes: ['ENTRY_HARDLINK_REFUSED'], names: ['etc/h'] });
    assert.equal(lstatSync(join(f.outside, 'keep.txt')).nlink, 1);
  });

  it('CVE-2026-24842/CVE-2026-26960: hardlink to an outside file followed by a regular member of the same name writing through it: refused', () => {
    const f = fixture((x) => [hardlink('etc/rear/h', join(x.outside, 'keep.txt')), file('etc/rear/h', 'PWNED through the link\n')]);
    refuses(f, { codes: ['BUNDLE_MEMBER_DUPLICATE', 'ENTRY_HARDLINK_REFUSED'], names: ['etc/rear/h'] });
    assert.equal(lstatSync(join(f.outside, 'keep.txt')).nlink, 1);
  });

  it('CVE-2026-24842/CVE-2026-26960: valid in-archive hardlink followed by a regular member of the same name: BUNDLE_MEMBER_DUPLICATE', () => {
    const f = fixture(() => [file('etc/rear/f', 'original\n'), hardlink('etc/rear/h', 'etc/rear/f'), file('etc/rear/h', 'PWNED through the link\n')]);
    refuses(f, { codes: ['BUNDLE_MEMBER_DUPLICATE', 'ENTRY_HARDLINK_REFUSED'], names: ['etc/rear/h'] });
  });

  it('hardlink to a file that exists in the root but is not in the archive: ENTRY_HARDLINK_REFUSED', () => {
    const f = fixture(() => [hardlink('etc/rear/h', 'etc/rear/local.conf'), file('etc/rear/h', 'PWNED\n')]);
    refuses(f, { codes: ['ENTRY_HARDLINK_REFUSED'], names: ['etc/rear/h'] });
    assert.equal(lstatSync(join(f.root, 'etc/rear/local.conf')).nlink, 1);
  });

  it('PAX "linkpath" header overriding a valid hardlink target with ../outside: ENTRY_HARDLINK_REFUSED', () => {
    const f = fixture(() => [
      file('etc/rear/f', 'original\n'),
      { ...hardlink('etc/rear/h', 'etc/rear/f'), pax: { path: 'etc/rear/h', linkpath: '../outside/keep.txt' } },
    ]);
    refuses(f, { codes: ['ENTRY_HARDLINK_REFUSED'], names: ['etc/rear/h', '../outside/keep.txt'] });
    assert.equal(lstatSync(join(f.outside, 'keep.txt')).nlink, 1);
  });

  it('PAX "linkpath" header overriding an innocent symlink target with OUTSIDE, then a member through it: ENTRY_THROUGH_SYMLINK', () => {
    const f = fixture((x) => [
      { ...symlink('etc/rear/s', 'sub'), pax: { path: 'etc/rear/s', linkpath: x.outside } },
      file('etc/rear/s/evil'),
    ]);
    refuses(f, { codes: ['ENTRY_THROUGH_SYMLINK'], names: ['etc/rear/s/evil'] });
  });
});

describe('entry smuggling (CVE-2025-62518)', () => {
  // The smuggled member replaces the root's local.conf: visible only to a reader that trusts
  // one size field and not the other.
  const smuggled = (): Buffer => tarBlocks([file('etc/rear/local.conf', 'SMUGGLED=1\n')]);

  it('CVE-2025-62518: PAX size smaller than the ustar size (a member hidden in the body) is refused, nothing smuggled lands', () => {
    const f = fixture(() => {
      const body = smuggled();
      return [file('etc/rear/cover.conf', body, { size: body.length, pax: { path: 'etc/rear/cover.conf', size: 0 } })];
    });
    const r = refuses(f, { codes: ['BUNDLE_CORRUPT'], names: ['etc/rear/cover.conf'] });
    assert.doesNotMatch(r.stdout, /applied/);
    assert.equal(readFileSync(join(f.root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nBACKUP=NETFS\n');
  });

  it('CVE-2025-62518: PAX size larger than the ustar size (a ustar-visible member swallowed as data) is refused', () => {
    const f = fixture(() => {
      const body = smuggled();
      return [file('etc/rear/cover.conf', body, { size: 0, pax: { path: 'etc/rear/cover.conf', size: body.length } })];
    });
    refuses(f, { codes: ['BUNDLE_CORRUPT'], names: ['etc/rear/cover.conf'] });
    assert.equal(readFileSync(join(f.root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nBACKUP=NETFS\n');
  });
});

describe('types and modes (rules 4, 5, 6)', () => {
  it('character device member (e.g. a second /dev/mem) is refused: ENTRY_TYPE_REFUSED', () => {
    const f = fixture(() => [{ path: 'etc/rear/mem', type: 'CharacterDevice', mode: 0o600, devmaj: 1, devmin: 1 }]);
    refuses(f, { codes: ['ENTRY_TYPE_REFUSED'], names: ['etc/rear/mem'] });
  });

  it('block device member (raw disk access) is refused: ENTRY_TYPE_REFUSED', () => {
    const f = fixture(() => [{ path: 'etc/rear/sda', type: 'BlockDevice', mode: 0o600, devmaj: 8, devmin: 0 }]);
    refuses(f, { codes: ['ENTRY_TYPE_REFUSED'], names: ['etc/rear/sda'] });
  });

  it('FIFO member (a hanging reader for ReaR) is refused: ENTRY_TYPE_REFUSED', () => {
    const f = fixture(() => [{ path: 'etc/rear/local.conf.fifo', type: 'FIFO', mode: 0o644 }]);
    refuses(f, { codes: ['ENTRY_TYPE_REFUSED'], names: ['etc/rear/local.conf.fifo'] });
  });

  it('unsupported member types (GNU sparse file, tape volume header) are refused by name, never silently dropped: ENTRY_TYPE_REFUSED', () => {
    for (const type of ['SparseFile', 'TapeVolumeHeader'] as const) {
      const f = fixture(() => [file('etc/rear/ok.conf', 'ok\n'), { path: 'etc/rear/odd', type, mode: 0o644 }]);
      refuses(f, { codes: ['ENTRY_TYPE_REFUSED'], names: ['etc/rear/odd'] });
    }
  });

  it('unknown typeflag \'Z\' (GNU tar extracts it as a regular file, node-tar skips it) is refused by name, never silently dropped: ENTRY_TYPE_REFUSED', () => {
    const f = fixture(() => {
      const tar = tarBlocks([file('etc/rear/ok.conf', 'ok\n'), file('etc/rear/odd.conf', 'EVIL=1\n')]);
      setTypeflag(tar, 1024, 'Z');
      return gzipSync(Buffer.concat([tar, Buffer.alloc(1024)]));
    });
    refuses(f, { codes: ['ENTRY_TYPE_REFUSED'], names: ['etc/rear/odd.conf'] });
  });

  it('setuid file is refused: ENTRY_MODE_REFUSED', () => {
    const f = fixture(() => [file('usr/bin/su2', '#!/bin/sh\n', { mode: 0o4755 })]);
    refuses(f, { codes: ['ENTRY_MODE_REFUSED'], names: ['usr/bin/su2'] });
  });

  it('setgid file is refused: ENTRY_MODE_REFUSED', () => {
    const f = fixture(() => [file('usr/bin/sg2', '#!/bin/sh\n', { mode: 0o2755 })]);
    refuses(f, { codes: ['ENTRY_MODE_REFUSED'], names: ['usr/bin/sg2'] });
  });

  it('setgid directory is refused: ENTRY_MODE_REFUSED', () => {
    const f = fixture(() => [dir('etc/rear/shared', 0o2755)]);
    refuses(f, { codes: ['ENTRY_MODE_REFUSED'], names: ['etc/rear/shared'] });
  });

  it('world-writable file is refused: ENTRY_MODE_REFUSED', () => {
    const f = fixture(() => [file('etc/rear/site.conf', 'X=1\n', { mode: 0o646 })]);
    refuses(f, { codes: ['ENTRY_MODE_REFUSED'], names: ['etc/rear/site.conf'] });
  });

  it('group-writable file is refused: ENTRY_MODE_REFUSED', () => {
    const f = fixture(() => [file('etc/rear/site.conf', 'X=1\n', { mode: 0o664 })]);
    refuses(f, { codes: ['ENTRY_MODE_REFUSED'], names: ['etc/rear/site.conf'] });
  });

  it('world-writable directory is refused: ENTRY_MODE_REFUSED', () => {
    const f = fixture(() => [dir('etc/rear/drop', 0o777), file('etc/rear/drop/x', 'x\n')]);
    refuses(f, { codes: ['ENTRY_MODE_REFUSED'], names: ['etc/rear/drop'] });
  });

  it('a "./" member with mode 0777 (would make the root directory world-writable) is refused and the root mode is unchanged', () => {
    const f = fixture(() => [dir('./', 0o777), file('./etc/rear/site.conf', 'X=1\n')]);
    const modeBefore = statSync(f.root).mode & 0o7777;
    refuses(f, { codes: ['ENTRY_MODE_REFUSED'], names: ['.'] });
    assert.equal(statSync(f.root).mode & 0o7777, modeBefore);
  });

  it('a benign "./" member with mode 0755 is ignored: the root keeps its own mode and owner, the rest applies', () => {
    const f = fixture(() => [dir('./', 0o755), file('./etc/rear/site.conf', 'X=1\n')], (x) => {
      chmodSync(x.root, 0o700);
      chownSync(x.root, 4321, 4321);
    });
    applies(f);
    const st = statSync(f.root);
    assert.equal(st.mode & 0o7777, 0o700, 'the root directory\'s mode was changed');
    assert.equal(st.uid, 4321, 'the root directory\'s owner was changed');
    assert.equal(st.gid, 4321);
    assert.equal(readFileSync(join(f.root, 'etc/rear/site.conf'), 'utf8'), 'X=1\n');
  });
});

describe('endless data (rule 7)', () => {
  it('gzip bomb: 300 MiB of zeros in one member is stopped by the ratio limit: LIMIT_RATIO', async () => {
    const f = fixture(() => Buffer.alloc(0));
    const size = 300 * 1024 * 1024;
    const header = gunzipSync(rawTarGz([{ path: 'etc/rear/bomb', type: 'File', mode: 0o644, size }])).subarray(0, 512);
    async function* tar(): AsyncGenerator<Buffer> {
      yield header;
      const zeros = Buffer.alloc(1 << 20);
      for (let left = size; left > 0; left -= zeros.length) yield zeros.subarray(0, Math.min(left, zeros.length));
      yield Buffer.alloc(1024);
    }
    await pipeline(Readable.from(tar()), createGzip({ level: 9 }), createWriteStream(f.archive));
    const compressed = statSync(f.archive).size;
    assert.ok(size / compressed > 200, `the bomb must expand more than 200:1 (it is ${Math.round(size / compressed)}:1)`);
    // The ratio is a property of the stream, so the message need not name the member.
    refuses(f, { codes: ['LIMIT_RATIO'], names: [] });
  });

  it('millions of entries: 1001 tiny members with --max-entries 1000: LIMIT_ENTRIES', () => {
    const members = Array.from({ length: 1001 }, (_, i) => file(`etc/rear/many/f${i}`, 'x'));
    const f = fixture(() => [dir('etc/rear/many'), ...members]);
    // 1 directory + 1001 files: the 1000th member is f998, the first one over the limit f999.
    refuses(f, { codes: ['LIMIT_ENTRIES'], names: ['etc/rear/many/f999'], args: ['--max-entries', '1000'] });
    // The same archive within a raised limit is fine: the refusal is the limit, not the content.
    applies(f, ['--max-entries', '1002']);
    assert.equal(readdirSync(join(f.root, 'etc/rear/many')).length, 1001);
  });

  it('millions of entries: 100,001 members against the default limit of 100,000: LIMIT_ENTRIES', () => {
    // Directories, so that the reader (not staging 100,000 files) is what is measured.
    const f = fixture(() => Array.from({ length: 100_001 }, (_, i) => dir(`d${i}`)));
    refuses(f, { codes: ['LIMIT_ENTRIES'], names: ['d100000'] });
  });

  it('CVE-2024-28863: 4000-deep directories are stopped by the depth limit: LIMIT_DEPTH', () => {
    // One directory member per level, as an archiver writes them: a/, a/a/, a/a/a/, ... with the
    // full name in a PAX record and a truncated ustar name (node-tar's own ustar prefix split is
    // quadratic in the name length, too slow for 4000 names of up to 8000 bytes).
    const f = fixture(() => Array.from({ length: 4000 }, (_, i) => ({ ...dir('a/'.repeat(Math.min(i + 1, 49))), pax: { path: 'a/'.repeat(i + 1) } })));
    refuses(f, { codes: ['LIMIT_DEPTH'], names: ['a/a/a/a/a/a/a/a'] });
  });

  it('CVE-2024-28863: a single 2000-deep member name (within the name-length limit) is stopped by the depth limit: LIMIT_DEPTH', () => {
    const name = `${'d/'.repeat(1999)}x`;
    assert.ok(Buffer.byteLength(name) <= 4096);
    const f = fixture(() => [file(name)]);
    refuses(f, { codes: ['LIMIT_DEPTH'], names: [name.slice(0, 80)] });
  });

  it('huge names: a 5000-byte member name and a 300-byte component are refused: LIMIT_NAME', () => {
    for (const name of [`etc/rear/${'n/'.repeat(2500)}x`, `etc/rear/${'c'.repeat(300)}`]) {
      const f = fixture(() => [file(name)]);
      refuses(f, { codes: ['LIMIT_NAME'], names: [name.slice(0, 80)] });
    }
  });

  it('huge names: a 2 MiB PAX path is refused, never dropped in favour of the innocent ustar name: LIMIT_NAME', () => {
    const huge = `etc/rear/${'h'.repeat(2 * 1024 * 1024)}`;
    const f = fixture(() => [file('etc/rear/innocent.conf', 'PWNED\n', { pax: { path: huge } })]);
    refuses(f, { codes: ['LIMIT_NAME', 'BUNDLE_CORRUPT'], names: [] });
    assert.equal(existsSync(join(f.root, 'etc/rear/innocent.conf')), false);
  });

  it('total unpacked bytes over --max-bytes is refused: LIMIT_BYTES', () => {
    const f = fixture(() => [file('etc/rear/a.conf', 'a'.repeat(600)), file('etc/rear/b.conf', 'b'.repeat(600))]);
    refuses(f, { codes: ['LIMIT_BYTES'], names: ['etc/rear/b.conf'], args: ['--max-bytes', '1000'] });
    applies(f, ['--max-bytes', '1200']);
  });
});

describe('broken archives', () => {
  it('truncated archive (the gzip stream cut in half) is refused: BUNDLE_CORRUPT', () => {
    const f = fixture(() => {
      const whole = rawTarGz([file('etc/rear/a.conf', 'a'.repeat(20_000)), file('etc/rear/b.conf', 'b\n')]);
      return whole.subarray(0, Math.floor(whole.length / 2));
    });
    refuses(f, { codes: ['BUNDLE_CORRUPT'], names: [] });
  });

  it('truncated archive (a complete gzip stream whose tar ends inside a member) is refused: BUNDLE_CORRUPT', () => {
    const f = fixture(() => {
      const tar = tarBlocks([file('etc/rear/b.conf', 'b\n'), file('etc/rear/a.conf', 'a'.repeat(20_000))]);
      return gzipSync(tar.subarray(0, 512 * 2 + 512 + 4096));
    });
    refuses(f, { codes: ['BUNDLE_CORRUPT'], names: [] });
    assert.equal(existsSync(join(f.root, 'etc/rear/b.conf')), false, 'the complete member before the cut must not land either');
  });

  it('garbage that is not gzip is refused: BUNDLE_CORRUPT', () => {
    const f = fixture(() => Buffer.from('this is not a gzip stream at all\n'.repeat(100)));
    refuses(f, { codes: ['BUNDLE_CORRUPT'], names: [] });
  });

  it('parser differential: a tar.gz gzipped once more is refused (GNU tar -xzf does not unpack it twice): BUNDLE_CORRUPT', () => {
    // node-tar's Parser sniffs for gzip and zstd magic and would unpack the inner archive:
    // files GNU tar never shows an admin checking the same file would be installed.
    const f = fixture(() => gzipSync(rawTarGz([file('etc/rear/local.conf', 'INNER=1\n')])));
    refuses(f, { codes: ['BUNDLE_CORRUPT'], names: [] });
  });

  it('garbage inside a valid gzip stream (not tar) is refused: BUNDLE_CORRUPT', () => {
    const f = fixture(() => gzipSync(Buffer.from('#!/bin/sh\nrm -rf /\n'.repeat(200))));
    refuses(f, { codes: ['BUNDLE_CORRUPT'], names: [] });
  });
});

describe('benign links stay exactly as written, root links are replaced, never followed', () => {
  it('a member replacing a symlink already in the root (local.conf -> OUTSIDE/keep.txt) replaces the link, never writes through it', () => {
    const f = fixture(() => [file('etc/rear/local.conf', 'OUTPUT=USB\n')], (x) => {
      rmSync(join(x.root, 'etc/rear/local.conf'));
      symlinkSync(join(x.outside, 'keep.txt'), join(x.root, 'etc/rear/local.conf'));
    });
    applies(f);
    assert.ok(lstatSync(join(f.root, 'etc/rear/local.conf')).isFile());
    assert.equal(readFileSync(join(f.root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=USB\n');
  });

  it('a directory member replacing a directory symlink in the root (etc/rear -> ../../outside) makes a real directory, nothing goes outside', () => {
    const f = fixture(() => [dir('etc/rear'), file('etc/rear/x', 'inside\n')], (x) => {
      rmSync(join(x.root, 'etc/rear'), { recursive: true });
      symlinkSync('../../outside', join(x.root, 'etc/rear'));
    });
    applies(f);
    assert.ok(lstatSync(join(f.root, 'etc/rear')).isDirectory());
    assert.equal(readFileSync(join(f.root, 'etc/rear/x'), 'utf8'), 'inside\n');
    assert.equal(existsSync(join(f.outside, 'x')), false);
  });
});

describe('signed bundles', () => {
  const keys = (): { dir: string; key: string; pub: string } => {
    const d = tempDir('ru-keys-');
    dirs.push(d);
    const r = cli(['keygen', '--out', join(d, 'k')]);
    assert.equal(r.status, 0, r.stderr);
    return { dir: d, key: join(d, 'k', 'rear-update.key'), pub: join(d, 'k', 'rear-update.pub') };
  };

  /** A source tree with absolute and relative symlinks, packed and signed. */
  const packed = (k: { dir: string; key: string }): string => {
    const src = join(k.dir, 'src');
    makeTree(src, {
      etc: {
        rear: { 'local.conf': 'OUTPUT=ISO\n', 'site.conf': { link: 'local.conf' }, 'conf.d': { 'a.conf': 'A=1\n', 'up.conf': { link: '../local.conf' } } },
        localtime: { link: '/usr/share/zoneinfo/UTC' },
      },
    });
    for (const d of ['', 'etc', 'etc/rear', 'etc/rear/conf.d']) chmodSync(join(src, d), 0o755);
    const out = join(k.dir, 'bundle.tar.gz');
    const r = cli(['pack', '--root', src, '--path', 'etc/rear', '--path', 'etc/localtime', '--key', k.key, '--host', 'h1', '-o', out]);
    assert.equal(r.status, 0, r.stderr);
    return out;
  };

  it('benign signed bundle: absolute in-root symlink etc/localtime -> /usr/share/zoneinfo/UTC and relative symlinks are installed exactly as written', () => {
    const k = keys();
    const bundle = packed(k);
    const root = tempDir('ru-benign-');
    dirs.push(root);
    makeTree(root, { etc: { hostname: 'rescue\n' } });
    const r = cli(['apply', '--quiet', '--root', root, '--pubkey', k.pub, bundle]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readlinkSync(join(root, 'etc/localtime')), '/usr/share/zoneinfo/UTC');
    assert.equal(readlinkSync(join(root, 'etc/rear/site.conf')), 'local.conf');
    assert.equal(readlinkSync(join(root, 'etc/rear/conf.d/up.conf')), '../local.conf');
    assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\n');
    assert.equal(readFileSync(join(root, 'etc/rear/site.conf'), 'utf8'), 'OUTPUT=ISO\n');
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'rescue\n');
  });

  it('signed bundle with an unlisted member inserted before the end-of-archive blocks is refused: BUNDLE_MEMBER_UNLISTED, root intact', () => {
    const k = keys();
    const tar = gunzipSync(readFileSync(packed(k)));
    assert.ok(tar.subarray(tar.length - 1024).equals(Buffer.alloc(1024)), 'a bundle ends with two zero blocks');
    const extra = tarBlocks([file('etc/rear/extra.conf', 'EVIL=1\n', { mtime: new Date(0) })]);
    // Re-sealed with the signer's key, so the container check passes and the member check must act.
    const f = fixture(() => resealed(Buffer.concat([tar.subarray(0, tar.length - 1024), extra, Buffer.alloc(1024)]), k.key));
    const before = capture(f);
    const r = cli(['apply', '--quiet', '--root', f.root, '--pubkey', k.pub, f.archive]);
    assert.notEqual(r.status, 0, r.stdout);
    const code = errorCode(r);
    assert.equal(code, 'BUNDLE_MEMBER_UNLISTED', r.stderr);
    assert.equal(r.status, 4);
    assert.match(r.stderr, /etc\/rear\/extra\.conf/);
    assertUnchanged(f, before);
    // And the untouched bundle does apply with the same key: the refusal is about the insertion.
    writeFileSync(f.archive, resealed(tar, k.key));
    const ok = cli(['apply', '--quiet', '--root', f.root, '--pubkey', k.pub, f.archive]);
    assert.equal(ok.status, 0, ok.stderr);
  });
});
