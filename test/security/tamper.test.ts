// Tampering with a signed bundle: every single-byte change anywhere in the file (gzip header,
// deflate data, gzip trailer) must make verify fail, and apply must refuse it without touching
// the root. Plus the trust decisions: untrusted key, --unsigned, no signature, and an edited
// manifest carrying the original signature.
//
// The many-offset loop runs the verifier in-process (readBundle, exactly as `verify` calls
// it); a handful of offsets go through the real CLI to check exit status and the root.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Pax, type HeaderData } from 'tar';
import { loadPublicKey } from '../../src/adapters/fs/keys.ts';
import { readBundle } from '../../src/adapters/tar/bundle-reader.ts';
import { ERRORS, isRuError } from '../../src/core/errors.ts';
import { DEFAULT_LIMITS } from '../../src/core/policy.ts';
import { cleanup, cli, errorCode, makeTree, rawTarGz, resealed, setTypeflag, snapshot, tempDir, type CliResult } from '../helpers.ts';

let work = '';
let pubA = '';
let pubB = '';
let fingerprintB = '';
/** Signed by A (trusted in these tests), by B (never trusted), and unsigned. */
let bundleA = '';
let keyA = '';
let bundleB = '';
let bundleU = '';
let bytesA: Buffer = Buffer.alloc(0);

const text = (seed: number, lines: number): string =>
  Array.from({ length: lines }, (_, i) => `# line ${i} of ${seed}: ${((i * 2654435761 + seed) >>> 0).toString(36)} ${'xyz'.repeat((i * 7 + seed) % 11)}\n`).join('');

function keygen(name: string): { key: string; pub: string; fingerprint: string } {
  const r = cli(['keygen', '--out', join(work, name)]);
  assert.equal(r.status, 0, r.stderr);
  const fp = /fingerprint:\s*(\S+)/.exec(r.stdout)?.[1];
  assert.ok(fp, r.stdout);
  return { key: join(work, name, 'rear-update.key'), pub: join(work, name, 'rear-update.pub'), fingerprint: fp };
}

function pack(out: string, key: string | null): string {
  const src = join(work, 'src');
  const r = cli(['pack', '--root', src, '--path', 'etc/rear', '--path', 'etc/localtime', '--path', 'var/lib/rear/layout', '--host', 'h1', '--created', '2024-01-02T03:04:05Z', ...(key ? ['--key', key] : []), '-o', out]);
  assert.equal(r.status, 0, r.stderr);
  return out;
}

before(() => {
  work = tempDir('ru-tamper-');
  const src = join(work, 'src');
  makeTree(src, {
    etc: {
      rear: {
        'local.conf': `OUTPUT=ISO\nBACKUP=NETFS\n${text(1, 60)}`,
        'site.conf': { link: 'local.conf' },
        'conf.d': { 'a.conf': text(2, 20), 'b.conf': 'B=1\n' },
      },
      localtime: { link: '/usr/share/zoneinfo/UTC' },
    },
    var: { lib: { rear: { layout: { 'disklayout.conf': text(3, 200) } } } },
  });
  for (const d of ['', 'etc', 'etc/rear', 'etc/rear/conf.d', 'var', 'var/lib', 'var/lib/rear', 'var/lib/rear/layout']) chmodSync(join(src, d), 0o755);
  const a = keygen('a');
  keyA = a.key;
  const b = keygen('b');
  pubA = a.pub;
  pubB = b.pub;
  fingerprintB = b.fingerprint;
  bundleA = pack(join(work, 'a.tar.gz'), a.key);
  bundleB = pack(join(work, 'b.tar.gz'), b.key);
  bundleU = pack(join(work, 'u.tar.gz'), null);
  bytesA = readFileSync(bundleA);
});

after(() => cleanup(work));

/** `verify` in-process: the same call the command makes. */
const verifyBuffer = (buf: Buffer): ReturnType<typeof readBundle> =>
  readBundle(Readable.from([buf]), { trusted: [loadPublicKey(pubA)], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS });

const flipped = (buf: Buffer, offset: number, mask: number): Buffer => {
  const b = Buffer.from(buf);
  b[offset] = (b[offset] as number) ^ mask;
  return b;
};

/** Offset of the ustar header of member `name` (short ustar names only) in an uncompressed tar. */
function locate(tar: Buffer, name: string): number {
  for (let off = 0; off + 512 <= tar.length;) {
    const field = (s: number, n: number): string => tar.subarray(off + s, off + s + n).toString('utf8').replace(/\0.*$/s, '');
    const n = field(0, 100);
    if (n === '') break;
    if (n === name) return off;
    off += 512 + Math.ceil(parseInt(field(124, 12).trim() || '0', 8) / 512) * 512;
  }
  assert.fail(`${name} not found in the tar`);
}

/** A scratch root with content of its own, for apply. */
function scratchRoot(): string {
  const root = tempDir('ru-tamper-root-');
  makeTree(root, { etc: { rear: { 'local.conf': 'OUTPUT=USB\n' }, hostname: 'rescue\n' } });
  for (const d of ['', 'etc', 'etc/rear']) chmodSync(join(root, d), 0o755);
  return root;
}

/** Apply must refuse with one of `codes` (exit status as documented), leaving the root as it was. */
function refusedApply(bundle: string, args: readonly string[], codes: string | readonly string[]): CliResult {
  const root = scratchRoot();
  try {
    const before = snapshot(root, { inodes: true });
    const r = cli(['apply', '--quiet', '--root', root, ...args, bundle]);
    assert.notEqual(r.status, 0, `apply must refuse: ${r.stdout}`);
    const code = errorCode(r) ?? '';
    assert.ok((typeof codes === 'string' ? [codes] : codes).includes(code), `expected ${String(codes)}, got ${code}: ${r.stderr}`);
    assert.equal(r.status, ERRORS[code as keyof typeof ERRORS].exit, r.stderr);
    assert.deepEqual(snapshot(root, { inodes: true }), before, 'the root changed');
    assert.equal(existsSync(join(root, 'var/lib/rear-update')), false, 'rear-update state was left in the root');
    return r;
  } finally {
    cleanup(root);
  }
}

describe('every flipped byte of a signed bundle is detected', () => {
  const offsets = (len: number): { header: number[]; deflate: number[]; trailer: number[] } => {
    const header = Array.from({ length: 10 }, (_, i) => i);
    const trailer = Array.from({ length: 8 }, (_, i) => len - 8 + i);
    const start = 10;
    const end = len - 8; // deflate data is [start, end)
    const spread = Array.from({ length: 40 }, (_, i) => start + Math.floor(((end - start - 1) * i) / 39));
    const first = Array.from({ length: 50 }, (_, i) => start + i);
    const last = Array.from({ length: 50 }, (_, i) => end - 50 + i);
    return { header, deflate: [...new Set([...first, ...spread, ...last])].sort((x, y) => x - y), trailer };
  };

  it('the untouched bundle verifies (in-process and with the CLI), so every rejection below is the flip\'s doing', async () => {
    const r = await verifyBuffer(bytesA);
    assert.equal(r.signature.status, 'valid');
    assert.ok(r.entries.length >= 6);
    const v = cli(['verify', bundleA, '--pubkey', pubA]);
    assert.equal(v.status, 0, v.stderr);
    assert.ok(bytesA.length - 18 > 200, `deflate data must be long enough to spread offsets over (${bytesA.length} bytes)`);
  });

  it('gzip header bytes 0..9, 140+ offsets through the deflate data and the 8 trailer bytes, each xor 0x01 (and 0xff for a subset): verify rejects every one', async (t) => {
    const { header, deflate, trailer } = offsets(bytesA.length);
    const cases: { offset: number; mask: number }[] = [];
    for (const o of [...header, ...deflate, ...trailer]) cases.push({ offset: o, mask: 0x01 });
    for (const o of [...header, ...trailer, ...deflate.filter((_, i) => i % 4 === 0)]) cases.push({ offset: o, mask: 0xff });
    assert.ok(cases.length > 180, `${cases.length} cases`);
    const accepted: string[] = [];
    const badError: string[] = [];
    const codes = new Map<string, number>();
    for (const { offset, mask } of cases) {
      try {
        await verifyBuffer(flipped(bytesA, offset, mask));
        accepted.push(`offset ${offset} ^ 0x${mask.toString(16)}`);
      } catch (e) {
        if (!isRuError(e) || e.code === 'INTERNAL' || e.code === 'IO_ERROR') {
          badError.push(`offset ${offset} ^ 0x${mask.toString(16)}: ${String(e)}`);
          continue;
        }
        codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
      }
    }
    t.diagnostic(`${cases.length} flips of a ${bytesA.length}-byte bundle rejected as: ${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}`);
    assert.deepEqual(accepted, [], 'a tampered bundle verified');
    assert.deepEqual(badError, [], 'tampering must be reported with a documented code, not an internal error');
    // Every rejection is an integrity/trust refusal (exit status 4).
    for (const code of codes.keys()) assert.equal(ERRORS[code as keyof typeof ERRORS].exit, 4, `code ${code} for a flipped byte`);
  });

  it('the CLI exits 4 for flips in the gzip magic, flags, mtime, OS byte, deflate data, CRC32 and ISIZE', () => {
    const len = bytesA.length;
    const picks = [0, 1, 3, 4, 9, 10, Math.floor(len / 2), len - 9, len - 8, len - 1];
    for (const o of picks) {
      const file = join(work, `flip-${o}.tar.gz`);
      writeFileSync(file, flipped(bytesA, o, 0x01));
      const r = cli(['verify', file, '--pubkey', pubA]);
      assert.equal(r.status, 4, `offset ${o}: exit ${String(r.status)}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /error [A-Z_]+:/);
      assert.doesNotMatch(r.stdout, /^OK/m);
    }
  });

  it('apply refuses a bundle with a flipped byte (gzip mtime, deflate data, CRC32) and leaves the root identical', () => {
    const len = bytesA.length;
    for (const [o, code] of [[4, 'BUNDLE_NOT_CANONICAL'], [Math.floor(len / 2), null], [len - 8, 'BUNDLE_CORRUPT']] as const) {
      const file = join(work, `apply-flip-${o}.tar.gz`);
      writeFileSync(file, flipped(bytesA, o, 0x01));
      const root = scratchRoot();
      try {
        const before = snapshot(root, { inodes: true });
        const r = cli(['apply', '--quiet', '--root', root, '--pubkey', pubA, file]);
        assert.equal(r.status, 4, `offset ${o}: ${r.stdout}${r.stderr}`);
        if (code) assert.equal(errorCode(r), code, r.stderr);
        assert.deepEqual(snapshot(root, { inodes: true }), before, `offset ${o}: the root changed`);
        assert.equal(existsSync(join(root, 'var/lib/rear-update')), false);
      } finally {
        cleanup(root);
      }
    }
  });
});

describe('members added after signing', () => {
  /**
   * Bundle A with extra raw tar blocks spliced in before the end-of-archive blocks, its
   * container re-sealed with A's key: what is left to catch it is the member-level check.
   */
  const spliced = (extra: Buffer): Buffer => {
    const tar = gunzipSync(bytesA);
    assert.ok(tar.subarray(tar.length - 1024).equals(Buffer.alloc(1024)));
    return resealed(Buffer.concat([tar.subarray(0, tar.length - 1024), extra, Buffer.alloc(1024)]), keyA);
  };

  it('the same insertion merely re-gzipped (no key) is refused at the container: BUNDLE_NOT_CANONICAL', () => {
    const tar = gunzipSync(bytesA);
    const file = join(work, 'appended-plain.tar.gz');
    writeFileSync(file, gzipSync(Buffer.concat([tar.subarray(0, tar.length - 1024), member('etc/rear/extra.conf', 'EXTRA=1\n'), Buffer.alloc(1024)])));
    const v = cli(['verify', file, '--pubkey', pubA]);
    assert.equal(v.status, 4, v.stdout);
    assert.equal(errorCode(v), 'BUNDLE_NOT_CANONICAL', v.stderr);
    refusedApply(file, ['--pubkey', pubA], 'BUNDLE_NOT_CANONICAL');
  });
  const member = (path: string, body: string): Buffer => {
    const t = gunzipSync(rawTarGz([{ path, type: 'File', mode: 0o644, body, mtime: new Date('2024-01-02T03:04:05Z') }]));
    return t.subarray(0, t.length - 1024);
  };

  it('a regular member appended to a signed bundle makes verify fail: BUNDLE_MEMBER_UNLISTED', () => {
    const file = join(work, 'appended.tar.gz');
    writeFileSync(file, spliced(member('etc/rear/extra.conf', 'EXTRA=1\n')));
    const v = cli(['verify', file, '--pubkey', pubA]);
    assert.equal(v.status, 4, v.stdout);
    assert.equal(errorCode(v), 'BUNDLE_MEMBER_UNLISTED', v.stderr);
    refusedApply(file, ['--pubkey', pubA], 'BUNDLE_MEMBER_UNLISTED');
  });

  it('a member of unknown type \'Z\' (extracted as a regular file by GNU tar, i.e. by `tar -xzf BUNDLE -C /`) appended to a signed bundle makes verify fail', () => {
    const extra = member('etc/rear/extra.conf', 'EXTRA=1\n');
    setTypeflag(extra, 0, 'Z');
    const file = join(work, 'appended-z.tar.gz');
    writeFileSync(file, spliced(extra));
    const v = cli(['verify', file, '--pubkey', pubA]);
    assert.notEqual(v.status, 0, `a bundle altered after signing verified: ${v.stdout}`);
    const code = errorCode(v) ?? '';
    assert.ok(['BUNDLE_MEMBER_UNLISTED', 'ENTRY_TYPE_REFUSED'].includes(code), v.stderr);
    assert.equal(v.status, ERRORS[code as keyof typeof ERRORS].exit, v.stderr);
    assert.match(v.stderr, /etc\/rear\/extra\.conf/);
    refusedApply(file, ['--pubkey', pubA], ['BUNDLE_MEMBER_UNLISTED', 'ENTRY_TYPE_REFUSED']);
  });

  it('an oversized (> 1 MiB) PAX header inserted before a signed member, renaming it for GNU tar, makes verify fail instead of being skipped', () => {
    // node-tar skips a PAX header larger than its maxMetaEntrySize, so the member keeps its
    // listed ustar name for the verifier; GNU tar honours the header and extracts the signed
    // bytes of etc/rear/local.conf to an attacker-chosen path (etc/cron.d/moved).
    const tar = gunzipSync(bytesA);
    const at = locate(tar, 'etc/rear/local.conf');
    const pax = new Pax({ path: 'etc/cron.d/moved', comment: 'x'.repeat(1100 * 1024) } as unknown as HeaderData).encode();
    const file = join(work, 'oversized-pax.tar.gz');
    writeFileSync(file, resealed(Buffer.concat([tar.subarray(0, at), pax, tar.subarray(at)]), keyA));
    const v = cli(['verify', file, '--pubkey', pubA]);
    assert.notEqual(v.status, 0, `a bundle altered after signing verified: ${v.stdout}`);
    const code = errorCode(v) ?? '';
    assert.ok(['BUNDLE_CORRUPT', 'BUNDLE_NOT_CANONICAL', 'BUNDLE_MEMBER_UNLISTED', 'LIMIT_NAME'].includes(code), v.stderr);
    refusedApply(file, ['--pubkey', pubA], ['BUNDLE_CORRUPT', 'BUNDLE_NOT_CANONICAL', 'BUNDLE_MEMBER_UNLISTED', 'LIMIT_NAME']);
  });
});

describe('trust decisions', () => {
  it('a bundle signed by a different (untrusted) key is refused: BUNDLE_KEY_UNTRUSTED, by apply and by verify', () => {
    const r = refusedApply(bundleB, ['--pubkey', pubA], 'BUNDLE_KEY_UNTRUSTED');
    assert.ok(r.stderr.includes(fingerprintB), `the message names the signing key: ${r.stderr}`);
    const v = cli(['verify', bundleB, '--pubkey', pubA]);
    assert.equal(v.status, 4);
    assert.equal(errorCode(v), 'BUNDLE_KEY_UNTRUSTED');
    // The same bundle with its own key trusted verifies: the refusal is about trust, not the file.
    assert.equal(cli(['verify', bundleB, '--pubkey', pubB]).status, 0);
  });

  it('a bundle signed by an untrusted key with --unsigned is accepted, with a warning naming the key on stderr', () => {
    const root = scratchRoot();
    try {
      const r = cli(['apply', '--quiet', '--root', root, '--pubkey', pubA, '--unsigned', bundleB]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stderr, /UNVERIFIED/);
      assert.ok(r.stderr.includes(fingerprintB), r.stderr);
      assert.equal(readFileSync(join(root, 'etc/rear/conf.d/b.conf'), 'utf8'), 'B=1\n');
    } finally {
      cleanup(root);
    }
  });

  it('an unsigned bundle (pack without --key) without --unsigned is refused: BUNDLE_UNSIGNED', () => {
    refusedApply(bundleU, ['--pubkey', pubA], 'BUNDLE_UNSIGNED');
    const v = cli(['verify', bundleU, '--pubkey', pubA]);
    assert.equal(v.status, 4);
    assert.equal(errorCode(v), 'BUNDLE_UNSIGNED');
  });

  it('a plain tar.gz without a manifest, without --unsigned, is refused: BUNDLE_UNSIGNED', () => {
    const file = join(work, 'plain.tar.gz');
    writeFileSync(file, rawTarGz([{ path: 'etc/rear/local.conf', type: 'File', mode: 0o644, body: 'OUTPUT=PXE\n' }]));
    refusedApply(file, ['--pubkey', pubA], 'BUNDLE_UNSIGNED');
  });

  describe('a manifest edited and re-gzipped with the original signature', () => {
    /** The tar stream of bundle A, with members located by walking the ustar headers. */
    const members = (tar: Buffer): Map<string, { data: number; size: number }> => {
      const out = new Map<string, { data: number; size: number }>();
      for (let off = 0; off + 512 <= tar.length;) {
        const h = tar.subarray(off, off + 512);
        if (h.every((b) => b === 0)) break;
        const field = (s: number, n: number): string => h.subarray(s, s + n).toString('utf8').replace(/\0.*$/s, '');
        const prefix = field(345, 155);
        const name = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
        const size = parseInt(field(124, 12).trim() || '0', 8);
        out.set(name, { data: off + 512, size });
        off += 512 + Math.ceil(size / 512) * 512;
      }
      return out;
    };

    const edits: { name: string; edit: (tar: Buffer) => Buffer }[] = [
      {
        name: 'host renamed',
        edit: (tar) => {
          const m = members(tar).get('var/lib/rear-update/bundle/manifest.json');
          assert.ok(m);
          const json = tar.subarray(m.data, m.data + m.size).toString('utf8');
          assert.ok(json.includes('"host":"h1"'));
          const t = Buffer.from(tar);
          t.write(json.replace('"host":"h1"', '"host":"h2"'), m.data, 'utf8');
          return t;
        },
      },
      {
        name: 'a file\'s content and its sha256 changed together',
        edit: (tar) => {
          const ms = members(tar);
          const m = ms.get('var/lib/rear-update/bundle/manifest.json');
          const f = ms.get('etc/rear/conf.d/b.conf');
          assert.ok(m && f);
          const t = Buffer.from(tar);
          assert.equal(t.subarray(f.data, f.data + f.size).toString(), 'B=1\n');
          t.write('B=9\n', f.data, 'utf8');
          const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
          const json = tar.subarray(m.data, m.data + m.size).toString('utf8');
          assert.ok(json.includes(sha('B=1\n')));
          t.write(json.replace(sha('B=1\n'), sha('B=9\n')), m.data, 'utf8');
          return t;
        },
      },
    ];

    it('re-gzipping the unmodified tar is refused (the compressed container is signed too), re-sealing it with the key verifies', () => {
      const file = join(work, 'regzipped.tar.gz');
      writeFileSync(file, gzipSync(gunzipSync(bytesA)));
      const r = cli(['verify', file, '--pubkey', pubA]);
      assert.equal(errorCode(r), 'BUNDLE_NOT_CANONICAL', r.stderr);
      writeFileSync(file, resealed(gunzipSync(bytesA), keyA));
      assert.equal(cli(['verify', file, '--pubkey', pubA]).status, 0);
    });

    for (const { name, edit } of edits) {
      it(`${name}: BUNDLE_SIGNATURE_INVALID, by verify, by apply, and by apply even with --unsigned`, () => {
        const file = join(work, `edited-${name.replace(/\W+/g, '-')}.tar.gz`);
        writeFileSync(file, resealed(edit(gunzipSync(bytesA)), keyA));
        const v = cli(['verify', file, '--pubkey', pubA]);
        assert.equal(v.status, 4, v.stdout);
        assert.equal(errorCode(v), 'BUNDLE_SIGNATURE_INVALID', v.stderr);
        refusedApply(file, ['--pubkey', pubA], 'BUNDLE_SIGNATURE_INVALID');
        refusedApply(file, ['--pubkey', pubA, '--unsigned'], 'BUNDLE_SIGNATURE_INVALID');
      });
    }
  });
});
