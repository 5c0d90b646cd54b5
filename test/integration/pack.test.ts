// pack / inspect / verify / keygen through the real CLI, checked against GNU tar.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cleanup, cli, errorCode, makeTree, snapshot, tempDir, type TreeSpec } from '../helpers.ts';

const TREE: TreeSpec = {
  etc: {
    rear: {
      'local.conf': 'OUTPUT=ISO\nBACKUP=NETFS\n',
      'site.conf': 'x=1\n',
      empty: '',
      private: { mode: 0o600, content: 'secret\n' },
      'name with spaces & Grüße ü.conf': 'utf8\n',
      'rel-link': { link: 'local.conf' },
      localtime: { link: '/usr/share/zoneinfo/UTC' },
      sub: { deeper: { 'f.txt': 'deep\n' } },
    },
  },
  var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda 10G msdos\n' } } } },
};

describe('pack, inspect, verify', () => {
  let dir: string;
  let key: string;
  let pub: string;
  before(() => {
    dir = tempDir();
    assert.equal(cli(['keygen', '--out', join(dir, 'keys')]).status, 0);
    key = join(dir, 'keys', 'rear-update.key');
    pub = join(dir, 'keys', 'rear-update.pub');
    makeTree(join(dir, 'src'), TREE);
  });
  after(() => cleanup(dir));

  test('keygen writes a 0600 private key, refuses to overwrite, and prints the fingerprint', () => {
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.match(readFileSync(pub, 'utf8'), /BEGIN PUBLIC KEY/);
    const again = cli(['keygen', '--out', join(dir, 'keys')]);
    assert.equal(again.status, 3);
    assert.equal(errorCode(again), 'KEY_EXISTS');
    const fresh = cli(['keygen', '--out', join(dir, 'keys2')]);
    assert.match(fresh.stdout, /fingerprint: ed25519:[0-9a-f]{16}/);
  });

  test('round trip: GNU tar lists the payload with the same modes and targets, and tar -xzf reproduces the tree', () => {
    const b = join(dir, 'rt.tar.gz');
    const r = cli(['pack', '--root', join(dir, 'src'), '--key', key, '--host', 'e229', '-o', b]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /var\/lib\/rear\/recovery does not exist/);
    const listing = execFileSync('tar', ['-tzvf', b], { encoding: 'utf8' });
    assert.match(listing, /^-rw------- 0\/0 +7 .* etc\/rear\/private$/m);
    assert.match(listing, /^lrwxrwxrwx .* etc\/rear\/localtime -> \/usr\/share\/zoneinfo\/UTC$/m);
    assert.match(listing, /^lrwxrwxrwx .* etc\/rear\/rel-link -> local\.conf$/m);
    assert.match(listing, /etc\/rear\/name with spaces & Grüße ü\.conf/);
    const out = join(dir, 'x');
    mkdirSync(out);
    execFileSync('tar', ['-xzf', b, '-C', out]);
    const got = snapshot(out);
    // The manifest and signature land in one documented, harmless place.
    assert.equal(got['var/lib/rear-update/bundle/manifest.json']?.type, 'file');
    assert.equal(got['var/lib/rear-update/bundle/manifest.sig']?.type, 'file');
    const want = snapshot(join(dir, 'src'));
    for (const [p, n] of Object.entries(want)) {
      if (p === '.' || p === 'etc' || p === 'var' || p === 'var/lib') continue; // parents are not members
      assert.deepEqual(got[p], n, p);
    }
    const extra = Object.keys(got).filter((p) => !(p in want) && !p.startsWith('var/lib/rear-update'));
    assert.deepEqual(extra, []);
  });

  test('deterministic: the same tree gives byte-identical bundles, whatever the directory read order', () => {
    const names = Array.from({ length: 60 }, (_, i) => `f${(i * 37) % 60}.conf`);
    const a = join(dir, 'det-a');
    const b = join(dir, 'det-b');
    for (const [root, order] of [[a, names], [b, [...names].reverse()]] as const) {
      mkdirSync(join(root, 'etc/rear'), { recursive: true });
      for (const n of order) writeFileSync(join(root, 'etc/rear', n), `${n}\n`);
      for (const n of order) utimesSync(join(root, 'etc/rear', n), 1_700_000_000, 1_700_000_000);
      utimesSync(join(root, 'etc/rear'), 1_700_000_000, 1_700_000_000);
    }
    const pack = (root: string, out: string): Buffer => {
      const r = cli(['pack', '--root', root, '--key', key, '--host', 'h', '-o', out]);
      assert.equal(r.status, 0, r.stderr);
      return readFileSync(out);
    };
    const one = pack(a, join(dir, 'd1.tgz'));
    const two = pack(a, join(dir, 'd2.tgz'));
    const three = pack(b, join(dir, 'd3.tgz'));
    assert.ok(one.equals(two), 'packing twice differs');
    assert.ok(one.equals(three), 'a different creation (read) order changes the bundle');
    // A real content change must change it.
    writeFileSync(join(b, 'etc/rear/f1.conf'), 'changed\n');
    utimesSync(join(b, 'etc/rear/f1.conf'), 1_700_000_000, 1_700_000_000);
    assert.ok(!one.equals(pack(b, join(dir, 'd4.tgz'))));
  });

  test('entries apply would refuse stop the pack, naming them; --exclude leaves them out', () => {
    const root = join(dir, 'refuse');
    makeTree(root, { etc: { rear: { 'ok.conf': 'ok\n', 'ww.conf': 'x\n', 'suid': 'x\n' } } });
    chmodSync(join(root, 'etc/rear/ww.conf'), 0o666);
    chmodSync(join(root, 'etc/rear/suid'), 0o4755);
    execFileSync('mkfifo', [join(root, 'etc/rear/fifo')]);
    const r = cli(['pack', '--root', root, '-o', join(dir, 'refused.tgz')]);
    assert.equal(r.status, 9);
    assert.equal(errorCode(r), 'PACK_ENTRY_REFUSED');
    for (const n of ['ww.conf', 'suid', 'fifo']) assert.match(r.stderr, new RegExp(`etc/rear/${n}`));
    assert.throws(() => statSync(join(dir, 'refused.tgz')), 'no partial bundle is left behind');
    const ok = cli(['pack', '--root', root, '--exclude', 'etc/rear/ww.conf', '--exclude', '**/suid', '--exclude', 'etc/rear/fifo', '-o', join(dir, 'excl.tgz')]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /UNSIGNED/);
    const list = execFileSync('tar', ['-tzf', join(dir, 'excl.tgz')], { encoding: 'utf8' });
    assert.match(list, /etc\/rear\/ok\.conf/);
    assert.doesNotMatch(list, /ww\.conf|suid|fifo/);
  });

  test('a missing --path is an error; missing default paths are only reported', () => {
    const r = cli(['pack', '--root', join(dir, 'src'), '--path', 'etc/nope', '-o', join(dir, 'n.tgz')]);
    assert.equal(errorCode(r), 'PACK_PATH_MISSING');
    const empty = tempDir();
    const e = cli(['pack', '--root', empty, '-o', join(dir, 'n.tgz')]);
    assert.equal(errorCode(e), 'PACK_PATH_MISSING');
    cleanup(empty);
  });

  test('inspect shows host, version, owned paths and signature status; verify enforces it', () => {
    const b = join(dir, 'insp.tgz');
    assert.equal(cli(['pack', '--root', join(dir, 'src'), '--key', key, '--host', 'e229', '--class', 'typeA', '--version', '7', '-o', b]).status, 0);
    const j = JSON.parse(cli(['inspect', b, '--pubkey', pub, '--json']).stdout) as Record<string, unknown>;
    assert.equal(j.host, 'e229');
    assert.equal(j.class, 'typeA');
    assert.equal(j.version, 7);
    assert.deepEqual(j.owns, ['etc/rear', 'var/lib/rear/layout']);
    assert.deepEqual((j.signature as { status: string }).status, 'valid');
    assert.equal(j.files, 7);
    const human = cli(['inspect', b]);
    assert.match(human.stdout, /signature: +signed by ed25519:[0-9a-f]{16}, which is not a trusted key/);
    assert.equal(cli(['verify', b, '--pubkey', pub]).status, 0);
    const other = tempDir();
    cli(['keygen', '--out', other]);
    const untrusted = cli(['verify', b, '--pubkey', join(other, 'rear-update.pub')]);
    assert.equal(untrusted.status, 4);
    assert.equal(errorCode(untrusted), 'BUNDLE_KEY_UNTRUSTED');
    cleanup(other);
  });

  test('a plain tar.gz (as tar -czf makes it) is shown as unsigned with its entries, and verify refuses it', () => {
    const b = join(dir, 'plain.tgz');
    execFileSync('tar', ['-czf', b, '-C', join(dir, 'src'), 'etc/rear']);
    const r = cli(['inspect', b]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /plain tar\.gz \(no manifest\)/);
    assert.match(r.stdout, /signature: +unsigned/);
    assert.match(r.stdout, /etc\/rear\/local\.conf/);
    const v = cli(['verify', b, '--pubkey', pub]);
    assert.equal(errorCode(v), 'BUNDLE_UNSIGNED');
  });
});
