// Regression tests for what the fuzz harness (fuzz/, docs/testing.md) found, one per finding,
// each named after the threat. Most are parser differentials: an archive that node-tar (which
// rear-update reads with) and GNU tar (what an admin checks a bundle with, and what ReaR's own
// hook extracts with) read as different members. Each is now refused with a documented code
// before anything is staged. The archives are built byte by byte here (fuzz/tar-blocks.ts), and
// read in-process with readBundle, exactly as apply and verify call it; the first test goes
// through the CLI, because its bug was in the commit.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { PooledFileStream } from '../../src/adapters/tar/buffer-pools.ts';
import { readBundle } from '../../src/adapters/tar/bundle-reader.ts';
import { apply } from '../../src/cli/commands/apply.ts';
import { isRuError, type ErrorCode } from '../../src/core/errors.ts';
import { DEFAULT_LIMITS } from '../../src/core/policy.ts';
import { makeSeeds } from '../../fuzz/bundle-seeds.ts';
import { fixChecksum, joinTar, metaRecord, nameOf, paxLine, record, setField, splitTar, type TarRecord } from '../../fuzz/tar-blocks.ts';
import { cleanup, cli, makeTree, tempDir } from '../helpers.ts';

const dirs: string[] = [];
after(() => cleanup(...dirs));

const END = Buffer.alloc(1024);
const tarOf = (records: TarRecord[], tail: Buffer = END): Buffer => joinTar({ records, tail });
const file = (path: string, body: string, extra: Record<string, unknown> = {}): TarRecord => record({ path, type: 'File', mode: 0o644, ...extra }, Buffer.from(body));

/** Reads a plain archive as `apply --unsigned` does; returns the code of the refusal, or the member paths. */
async function read(tar: Buffer, trusted: Parameters<typeof readBundle>[1]['trusted'] = []): Promise<ErrorCode | string[]> {
  try {
    const r = await readBundle(Readable.from([gzipSync(tar)]), { trusted, allowUnsigned: true, enforceTrust: true, limits: DEFAULT_LIMITS });
    return r.entries.map((e) => e.path);
  } catch (e) {
    if (isRuError(e)) return e.code;
    throw e;
  }
}

/** What GNU tar lists for the same archive (the admin's view). */
const gnuList = (tar: Buffer): { status: number | null; names: string[]; stderr: string } => {
  const r = spawnSync('tar', ['-tf', '-'], { input: tar, encoding: 'latin1' });
  return { status: r.status, names: r.stdout.split('\n').filter((l) => l !== ''), stderr: r.stderr };
};

describe('found by fuzzing: the commit', () => {
  it('a bundle owning var/lib (pack --path var/lib) no longer removes rear-update\'s own state directory during its commit (was IO_ERROR EINVAL, rename into itself)', () => {
    const base = tempDir('ru-fz-owns-');
    dirs.push(base);
    const src = join(base, 'src');
    makeTree(src, { var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda\n' } }, other: { 'x.conf': 'x\n' } } } });
    for (const d of ['', 'var', 'var/lib', 'var/lib/rear', 'var/lib/rear/layout', 'var/lib/other']) chmodSync(join(src, d), 0o755);
    const bundle = join(base, 'b.tar.gz');
    assert.equal(cli(['pack', '--root', src, '--path', 'var/lib', '--host', 'h', '-o', bundle]).status, 0);
    const root = join(base, 'root');
    makeTree(root, { var: { lib: { stale: { 'old.conf': 'old\n' } } } });
    const r = cli(['apply', '--unsigned', '--quiet', '--root', root, bundle]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(root, 'var/lib/rear-update/installed.json')), 'the state record survives');
    assert.equal(existsSync(join(root, 'var/lib/stale')), false, 'stale content below the owned path is still removed');
    assert.equal(cli(['status', '--root', root]).status, 0);
    const back = cli(['rollback', '--root', root]);
    assert.equal(back.status, 0, back.stderr);
    assert.equal(readFileSync(join(root, 'var/lib/stale/old.conf'), 'utf8'), 'old\n');
  });
});

describe('found by fuzzing: members GNU tar would not show (parser differentials)', () => {
  it('a lone zero block between members (GNU tar stops there, node-tar reads on) is refused: BUNDLE_CORRUPT', async () => {
    const tar = tarOf([file('etc/rear/a.conf', 'A\n'), { header: Buffer.alloc(512), data: Buffer.alloc(0) }, file('etc/rear/hidden.conf', 'HIDDEN=1\n')]);
    assert.deepEqual(gnuList(tar).names, ['etc/rear/a.conf'], 'GNU tar does not show the member after the lone zero block');
    assert.equal(await read(tar), 'BUNDLE_CORRUPT');
  });

  it('a lone zero block at the very start (GNU tar shows nothing at all) is refused: BUNDLE_CORRUPT', async () => {
    assert.equal(await read(tarOf([{ header: Buffer.alloc(512), data: Buffer.alloc(0) }, file('etc/rear/hidden.conf', 'HIDDEN=1\n')])), 'BUNDLE_CORRUPT');
  });

  it('a global PAX path record (GNU tar renames every later member to it, node-tar ignores it) is refused: BUNDLE_CORRUPT', async () => {
    const tar = tarOf([metaRecord('g', paxLine('path', 'var/lib')), file('etc/rear/a.conf', 'A\n'), file('etc/rear/b.conf', 'B\n')]);
    assert.deepEqual(gnuList(tar).names, ['var/lib', 'var/lib']);
    assert.equal(await read(tar), 'BUNDLE_CORRUPT');
  });

  it('two PAX headers for one member (GNU tar keeps the second only, node-tar merges them) are refused: BUNDLE_CORRUPT', async () => {
    const tar = tarOf([metaRecord('x', paxLine('path', 'etc/rear/seen-by-node.conf')), metaRecord('x', paxLine('comment', 'x')), file('etc/rear/seen-by-gnu.conf', 'A\n')]);
    assert.deepEqual(gnuList(tar).names, ['etc/rear/seen-by-gnu.conf']);
    assert.equal(await read(tar), 'BUNDLE_CORRUPT');
  });

  it('an old GNU long-name record, type N (node-tar takes its body as the next member\'s name) is refused: BUNDLE_CORRUPT', async () => {
    const n = record({ path: 'names', type: 'File' }, Buffer.from('etc/rear/renamed.conf\0'));
    n.header[156] = 'N'.charCodeAt(0);
    fixChecksum(n.header);
    assert.equal(await read(tarOf([n, file('etc/rear/a.conf', 'A\n')])), 'BUNDLE_CORRUPT');
  });

  it('a member name that is not UTF-8 (node-tar installs U+FFFD instead of the bytes GNU tar shows) is refused: ENTRY_PATH_INVALID', async () => {
    const r = file('etc/rear/x.conf', 'X\n');
    setField(r.header, 'name', Buffer.from([0x65, 0x74, 0x63, 0x2f, 0xf8, 0xfa, 0xfc]));
    fixChecksum(r.header);
    assert.equal(await read(tarOf([r])), 'ENTRY_PATH_INVALID');
    const long = metaRecord('L', Buffer.from([0x65, 0x74, 0x63, 0x2f, 0xff, 0xfe, 0]));
    assert.equal(await read(tarOf([long, file('etc/rear/x.conf', 'X\n')])), 'ENTRY_PATH_INVALID');
  });

  it('malformed PAX records (no newline where the length ends; GNU tar refuses the archive, node-tar skips the record) are refused: BUNDLE_CORRUPT', async () => {
    const bad = Buffer.concat([paxLine('path', 'etc/rear/pax.conf', 2)]);
    const tar = tarOf([metaRecord('x', bad), file('etc/rear/ustar.conf', 'A\n')]);
    assert.notEqual(gnuList(tar).status, 0, 'GNU tar refuses it');
    assert.equal(await read(tar), 'BUNDLE_CORRUPT');
  });

  it('PAX numbers that are not numbers (size=etc, uid=x; node-tar drops them, GNU tar refuses) are refused: BUNDLE_CORRUPT', async () => {
    for (const [k, v] of [['size', 'etc'], ['uid', 'x'], ['gid', '-1'], ['mtime', 'etc/localtime']]) {
      const tar = tarOf([metaRecord('x', paxLine(k as string, v as string)), file('etc/rear/a.conf', 'A\n')]);
      assert.notEqual(gnuList(tar).status, 0, `GNU tar refuses ${k}=${v}`);
      assert.equal(await read(tar), 'BUNDLE_CORRUPT', `${k}=${v}`);
    }
  });

  it('a modification time beyond what a JavaScript date holds (was IO_ERROR: utimes NaN while staging) is refused: BUNDLE_CORRUPT', async () => {
    assert.equal(await read(tarOf([metaRecord('g', paxLine('mtime', '20000000000000')), file('etc/rear/a.conf', 'A\n')])), 'BUNDLE_CORRUPT');
    const r = file('etc/rear/a.conf', 'A\n');
    const big = Buffer.alloc(12);
    big[0] = 0x80;
    big.writeBigUInt64BE(10n ** 13n, 4); // year ~318,000: GNU tar reads it, a JavaScript Date cannot hold it
    setField(r.header, 'mtime', big);
    fixChecksum(r.header);
    assert.equal(await read(tarOf([r])), 'BUNDLE_CORRUPT');
  });

  it('a uid beyond uid_t in base-256 (GNU tar refuses it, node-tar reads it) is refused: BUNDLE_CORRUPT', async () => {
    const r = file('etc/rear/a.conf', 'A\n');
    setField(r.header, 'uid', Buffer.from([0x80, 0, 1, 0, 0, 0, 0, 0]));
    fixChecksum(r.header);
    assert.notEqual(gnuList(tarOf([r])).status === 0 && spawnSync('tar', ['-xf', '-', '-C', tempDir()], { input: tarOf([r]) }).status === 0, true);
    assert.equal(await read(tarOf([r])), 'BUNDLE_CORRUPT');
  });

  it('owner names in a signed bundle (GNU tar as root installs the owner "daemon", rear-update the manifest\'s uid 0) are refused: BUNDLE_MEMBER_MISMATCH', async () => {
    const work = tempDir('ru-fz-uname-');
    dirs.push(work);
    const seeds = await makeSeeds(work);
    const signed = seeds.seeds.find((s) => s.name === 'signed');
    assert.ok(signed);
    const t = splitTar(signed.tar);
    const i = t.records.findIndex((r) => nameOf(r.header) === 'etc/rear/local.conf');
    setField((t.records[i] as TarRecord).header, 'uname', Buffer.from('daemon'));
    fixChecksum((t.records[i] as TarRecord).header);
    const { loadPublicKey } = await import('../../src/adapters/fs/keys.ts');
    const { CANONICAL_GZIP_HEADER, CONTAINER_DIGEST, EMPTY_DIGEST, signContainer, signedGzipHeader } = await import('../../src/core/container.ts');
    const { createHash } = await import('node:crypto');
    const body = gzipSync(joinTar(t)).subarray(CANONICAL_GZIP_HEADER.length);
    const sig = signContainer({ split: body.length, part1: createHash(CONTAINER_DIGEST).update(body).digest(), part2: EMPTY_DIGEST }, seeds.keys.trusted);
    const bytes = Buffer.concat([signedGzipHeader(sig, body.length), body]);
    try {
      await readBundle(Readable.from([bytes]), { trusted: [loadPublicKey(seeds.trustedPub)], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS });
      assert.fail('must be refused');
    } catch (e) {
      assert.ok(isRuError(e), String(e));
      assert.equal(e.code, 'BUNDLE_MEMBER_MISMATCH', e.message);
      assert.match(e.message, /owner name/);
    }
    // The untouched bundle reads fine: the refusal is about the owner name.
    const ok = await readBundle(Readable.from([signed.bytes]), { trusted: [loadPublicKey(seeds.trustedPub)], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS });
    assert.equal(ok.signature.status, 'valid');
  });
});

describe('found by fuzzing: framing that gzip or GNU tar reports as an error', () => {
  it('bytes after the last gzip member that start with a zero (zlib skips them as padding, gzip reports trailing garbage and tar -xzf fails) are refused: BUNDLE_CORRUPT', async () => {
    const gz = Buffer.concat([gzipSync(tarOf([file('etc/rear/a.conf', 'A\n')])), Buffer.from([0, 0, 0x40, 0x41, 0x42])]);
    assert.notEqual(spawnSync('tar', ['-tzf', '-'], { input: gz }).status, 0, 'GNU tar fails on it');
    try {
      await readBundle(Readable.from([gz]), { trusted: [], allowUnsigned: true, enforceTrust: true, limits: DEFAULT_LIMITS });
      assert.fail('must be refused');
    } catch (e) {
      assert.ok(isRuError(e), String(e));
      assert.equal(e.code, 'BUNDLE_CORRUPT');
    }
  });

  it('an empty GNU long-name record (GNU tar names the next member "." and fails, node-tar ignores the record) is refused: BUNDLE_CORRUPT', async () => {
    assert.equal(await read(tarOf([metaRecord('L', Buffer.alloc(0)), file('etc/rear/a.conf', 'A\n')])), 'BUNDLE_CORRUPT');
  });

  it('a PAX or long-name record with no member after it (GNU tar extracts the end block as a member) is refused: BUNDLE_CORRUPT', async () => {
    assert.equal(await read(tarOf([file('etc/rear/a.conf', 'A\n'), metaRecord('x', paxLine('path', 'etc/rear/b.conf'))])), 'BUNDLE_CORRUPT');
    assert.equal(await read(tarOf([file('etc/rear/a.conf', 'A\n'), metaRecord('L', Buffer.from('etc/rear/b.conf\0'))])), 'BUNDLE_CORRUPT');
  });
});

describe('found by the long fuzz run', () => {
  it('an end block whose only non-zero byte is in the checksum field (node-tar: end of archive; GNU tar: a bad header, exit 2) is refused: BUNDLE_CORRUPT', async () => {
    const damaged = Buffer.alloc(512);
    damaged[150] = 0x20;
    assert.notEqual(spawnSync('tar', ['-tf', '-'], { input: tarOf([file('etc/rear/a.conf', 'A\n')], Buffer.concat([damaged, Buffer.alloc(512)])) }).status, 0, 'GNU tar fails on it');
    assert.equal(await read(tarOf([file('etc/rear/a.conf', 'A\n')], Buffer.concat([damaged, Buffer.alloc(512)]))), 'BUNDLE_CORRUPT');
  });

  it('a hard link whose target ends with a slash (GNU tar: "Not a directory", exit 2; node-tar: the file) is refused: ENTRY_HARDLINK_REFUSED', async () => {
    const tar = tarOf([file('etc/rear/a.conf', 'A\n'), record({ path: 'etc/rear/h', type: 'Link', linkpath: 'etc/rear/a.conf/', size: 0 })]);
    assert.equal(await read(tar), 'ENTRY_HARDLINK_REFUSED');
  });
});

describe('found by the long fuzz run: descriptors after a refusal (seed 2001 case 26556, seed 2002 case 24416)', () => {
  // Both findings were "root changed after a refusal" that no single case reproduced: an empty
  // usr/share/doc/README, and var/ left behind because parents.json read as empty. The files were
  // intact; their reads were not. The bundle stream closed its descriptor while a read was still
  // on the thread pool, and read again when a buffer came back after destroy: the number then
  // belonged to a file opened next, whose position the stale read moved to its end.
  const fdOf = (path: string): number | null => {
    for (const n of readdirSync('/proc/self/fd')) {
      try {
        if (readlinkSync(`/proc/self/fd/${n}`) === path) return Number(n);
      } catch {
        // closed while listing
      }
    }
    return null;
  };

  it('a destroyed bundle stream never reads again: a descriptor number reused by another file keeps that file\'s position', async () => {
    const base = tempDir('ru-fz-fd-');
    dirs.push(base);
    const bundle = join(base, 'bundle');
    const other = join(base, 'other');
    writeFileSync(bundle, randomBytes(64 << 10));
    writeFileSync(other, 'the whole content of another file\n');
    const s = new PooledFileStream(bundle, 4096, 1);
    const [chunk] = (await once(s, 'data')) as [Buffer];
    s.pause();
    await sleep(20); // the stream asked for more: no free buffer, it waits for recycle()
    const fd = fdOf(bundle);
    assert.notEqual(fd, null, 'the stream holds the bundle open');
    s.destroy();
    await once(s, 'close');
    const reused = openSync(other, 'r');
    try {
      assert.equal(reused, fd, 'precondition: the next open reuses the number');
      s.recycle(chunk); // what gunzip does with a chunk it consumed after the refusal
      await sleep(50);
      const buf = Buffer.alloc(100);
      const n = readSync(reused, buf, 0, buf.length, null);
      assert.equal(buf.subarray(0, n).toString(), 'the whole content of another file\n', 'a stale read moved the position of the other file');
    } finally {
      closeSync(reused);
    }
  });

  it('gzip data that breaks in the middle of a member being staged: refused BUNDLE_CORRUPT, no descriptor left open, root unchanged', async () => {
    const base = tempDir('ru-fz-leak-');
    dirs.push(base);
    const src = join(base, 'src');
    const text = Array.from({ length: 40_000 }, (_, i) => `line ${i} of a long configuration file ${(i * 7919) % 1000}`).join('\n');
    makeTree(src, { etc: { rear: { 'big.conf': text, 'local.conf': 'OUTPUT=ISO\n' } } });
    const bundle = join(base, 'b.tar.gz');
    assert.equal(cli(['pack', '--root', src, '--path', 'etc', '--host', 'h', '-o', bundle]).status, 0);
    const bytes = readFileSync(bundle);
    const mid = Math.floor(bytes.length / 2);
    writeFileSync(bundle, Buffer.concat([bytes.subarray(0, mid), Buffer.from('\xff\xff\xff\xff\xff\xff', 'latin1'), bytes.subarray(mid)]));
    const root = join(base, 'root');
    makeTree(root, { etc: { hostname: 'rescue\n' } });
    mkdirSync(join(base, 'keys'));
    const before = readdirSync('/proc/self/fd').length;
    let code: string | null = null;
    try {
      await apply(bundle, { root, unsigned: true, quiet: true, keysDir: join(base, 'keys'), sysRoot: '/' });
    } catch (e) {
      code = isRuError(e) ? e.code : String(e);
    }
    assert.equal(code, 'BUNDLE_CORRUPT');
    await sleep(50); // asynchronous closes land
    assert.equal(readdirSync('/proc/self/fd').length, before, 'a staged file or the bundle stayed open');
    assert.deepEqual(readdirSync(root), ['etc'], 'nothing of rear-update left in the root');
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'rescue\n');
  });
});

describe('differentials closed in the same pass (same class as the findings above)', () => {
  it('ustar magic with a version other than "00" and a prefix (GNU tar prepends the prefix, node-tar does not) is refused: BUNDLE_CORRUPT', async () => {
    const r = file('local.conf', 'A\n');
    setField(r.header, 'prefix', Buffer.from('etc/rear'));
    setField(r.header, 'version', Buffer.from('  '));
    fixChecksum(r.header);
    assert.deepEqual(gnuList(tarOf([r])).names, ['etc/rear/local.conf']);
    assert.equal(await read(tarOf([r])), 'BUNDLE_CORRUPT');
  });

  it('a size field with trailing garbage (node-tar\'s parseInt reads a number, GNU tar refuses) is refused: BUNDLE_CORRUPT', async () => {
    const r = file('etc/rear/a.conf', 'A\n');
    setField(r.header, 'size', Buffer.from('00000000002x\0'));
    fixChecksum(r.header);
    assert.equal(await read(tarOf([r])), 'BUNDLE_CORRUPT');
  });

  it('a directory member that announces data (node-tar reads its next header inside what GNU tar skips) is refused: BUNDLE_CORRUPT', async () => {
    const d = record({ path: 'etc/rear/', type: 'Directory', mode: 0o755, size: 0 });
    setField(d.header, 'size', Buffer.from('00000001000\0'));
    fixChecksum(d.header);
    const smuggled = file('etc/rear/smuggled.conf', 'S=1\n');
    assert.equal(await read(tarOf([d, smuggled, file('etc/rear/a.conf', 'A\n')])), 'BUNDLE_CORRUPT');
  });

  it('a PAX mode record (node-tar honours it, GNU tar ignores it and installs the ustar mode, e.g. setuid) is refused: BUNDLE_CORRUPT', async () => {
    assert.equal(await read(tarOf([metaRecord('x', paxLine('mode', '420')), file('etc/rear/a.conf', 'A\n', { mode: 0o4755 })])), 'BUNDLE_CORRUPT');
  });
});

it('the fixture directory helper is not left behind', () => {
  const d = tempDir();
  mkdirSync(join(d, 'x'));
  writeFileSync(join(d, 'x', 'f'), '');
  cleanup(d);
  assert.equal(existsSync(d), false);
});
