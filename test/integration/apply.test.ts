// apply / rollback / status through the real CLI on real directory trees.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cleanup, cli, errorCode, makeTree, snapshot, tempDir } from '../helpers.ts';

describe('apply, rollback, status', () => {
  let dir: string;
  let key: string;
  let pub: string;
  const pack = (src: string, out: string, extra: string[] = []): string => {
    const r = cli(['pack', '--root', src, '--key', key, '--host', 'e229', '--version', '3', '-o', out, ...extra]);
    assert.equal(r.status, 0, r.stderr);
    return out;
  };
  before(() => {
    dir = tempDir();
    cli(['keygen', '--out', join(dir, 'keys')]);
    key = join(dir, 'keys', 'rear-update.key');
    pub = join(dir, 'keys', 'rear-update.pub');
    makeTree(join(dir, 'host'), {
      etc: { rear: { 'local.conf': 'OUTPUT=ISO\nHOST_ONLY=e229\n', 'site.conf': 'x=1\n', localtime: { link: '/usr/share/zoneinfo/UTC' }, mappings: { 'ip_addresses': 'eth0 10.0.0.5/24\n' } } },
      var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/sda\n' }, recovery: { bootloader: 'GRUB2\n' } } } },
    });
    pack(join(dir, 'host'), join(dir, 'host.tgz'));
  });
  after(() => cleanup(dir));

  const isoRoot = (name: string): string => {
    // What the rescue image carries: the build host's config, with a stale file the host lacks.
    const root = join(dir, name);
    makeTree(root, {
      etc: { rear: { 'local.conf': 'OUTPUT=ISO\nBUILD_HOST=1\n', 'stale.conf': 'from the build host\n', old: { 'x.conf': 'x\n' } }, hostname: 'rescue\n' },
      usr: { bin: { tool: 'tool\n' } },
      var: { lib: { rear: { layout: { 'disklayout.conf': 'disk /dev/vda\n' } } } },
    });
    return root;
  };

  test('installs the host tree exactly, removes stale files below owned paths, and rollback restores the ISO root exactly', () => {
    const root = isoRoot('r1');
    const before = snapshot(root);
    const r = cli(['apply', join(dir, 'host.tgz'), '--root', root, '--pubkey', pub]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /host e229, version 3, signed by ed25519:/);
    assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nHOST_ONLY=e229\n');
    assert.equal(readlinkSync(join(root, 'etc/rear/localtime')), '/usr/share/zoneinfo/UTC');
    assert.ok(!existsSync(join(root, 'etc/rear/stale.conf')), 'stale config of the build host survived');
    assert.ok(!existsSync(join(root, 'etc/rear/old')), 'stale directory survived');
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'rescue\n', 'outside the owned paths nothing is touched');
    const host = snapshot(join(dir, 'host'));
    const got = snapshot(root);
    for (const p of Object.keys(host).filter((p) => p.startsWith('etc/rear') || p.startsWith('var/lib/rear/'))) assert.deepEqual(got[p], host[p], p);

    const rb = cli(['rollback', '--root', root]);
    assert.equal(rb.status, 0, rb.stderr);
    assert.deepEqual(snapshot(root), before, 'rollback is not exact');
    assert.equal(errorCode(cli(['rollback', '--root', root])), 'NOTHING_TO_ROLL_BACK');
  });

  test('a bundle many times larger than the reader\'s reused buffers installs byte-identical (files across every buffer edge)', () => {
    // The reader recycles its input and gunzip buffers (8 x 1 MiB); 24 MiB of files whose sizes
    // cross 512-byte blocks and buffer edges at every offset, mostly incompressible.
    const src = join(dir, 'large-src');
    const tree: Record<string, string | Buffer> = {};
    for (let i = 0; i < 160; i++) {
      const size = 1 + ((i * 104_729) % 300_000);
      tree[`f${String(i).padStart(3, '0')}.bin`] = i % 4 === 0 ? Buffer.alloc(size, i) : randomBytes(size);
    }
    makeTree(src, { usr: { share: { layer: tree } } });
    const bundle = pack(src, join(dir, 'large.tgz'), ['--path', 'usr/share/layer']);
    const root = tempDir();
    try {
      const r = cli(['apply', bundle, '--root', root, '--pubkey', pub, '--quiet']);
      assert.equal(r.status, 0, r.stderr);
      const want = snapshot(join(src, 'usr/share/layer'));
      const got = snapshot(join(root, 'usr/share/layer'));
      assert.deepEqual(got, want, 'the installed layer differs from the packed one');
      assert.ok(Object.keys(got).length > 150);
    } finally {
      cleanup(root);
    }
  });

  test('--dry-run prints the plan, writes nothing, and a real apply executes exactly that plan', () => {
    const root = isoRoot('r2');
    const before = snapshot(root);
    const dry = cli(['apply', join(dir, 'host.tgz'), '--root', root, '--pubkey', pub, '--dry-run', '--json']);
    assert.equal(dry.status, 0, dry.stderr);
    assert.deepEqual(snapshot(root), before, 'dry run wrote something');
    const human = cli(['apply', join(dir, 'host.tgz'), '--root', root, '--pubkey', pub, '--dry-run']);
    assert.match(human.stdout, /^ {2}remove +file +20 B +etc\/rear\/stale\.conf$/m);
    assert.match(human.stdout, /^ {2}replace +file +26 B +etc\/rear\/local\.conf$/m);
    assert.match(human.stdout, /^ {2}create +symlink +etc\/rear\/localtime$/m);
    assert.match(human.stdout, /nothing was written/);
    const real = cli(['apply', join(dir, 'host.tgz'), '--root', root, '--pubkey', pub, '--json']);
    assert.equal(real.status, 0, real.stderr);
    const planned = JSON.parse(dry.stdout) as { items: unknown; totals: unknown };
    const done = JSON.parse(real.stdout) as { items: unknown; totals: unknown };
    assert.deepEqual(done.items, planned.items);
    assert.deepEqual(done.totals, planned.totals);
    // Applying the same bundle again changes nothing.
    const again = JSON.parse(cli(['apply', join(dir, 'host.tgz'), '--root', root, '--pubkey', pub, '--json']).stdout) as { totals: Record<string, number> };
    assert.equal(again.totals.create! + again.totals.replace! + again.totals.remove! + again.totals.update!, 0);
  });

  test('--overlay bundles add and replace but never remove', () => {
    const root = isoRoot('r3');
    const b = pack(join(dir, 'host'), join(dir, 'overlay.tgz'), ['--overlay']);
    assert.equal(cli(['apply', b, '--root', root, '--pubkey', pub]).status, 0);
    assert.ok(existsSync(join(root, 'etc/rear/stale.conf')));
    assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nHOST_ONLY=e229\n');
  });

  test('status reports the installed bundle, rollback availability, and drift', () => {
    const root = isoRoot('r4');
    assert.match(cli(['status', '--root', root]).stdout, /nothing installed/);
    assert.ok(!existsSync(join(root, 'var/lib/rear-update')), 'status of an untouched root must not write');
    assert.equal(cli(['apply', join(dir, 'host.tgz'), '--root', root, '--pubkey', pub]).status, 0);
    const s = JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { installed: Record<string, unknown>; drift: unknown[]; rollback: unknown };
    assert.equal(s.installed.host, 'e229');
    assert.equal(s.installed.version, 3);
    assert.match(String(s.installed.key), /^ed25519:/);
    assert.deepEqual(s.drift, []);
    assert.ok(s.rollback);
    writeFileSync(join(root, 'etc/rear/local.conf'), 'edited by hand\n');
    chmodSync(join(root, 'etc/rear/site.conf'), 0o600);
    writeFileSync(join(root, 'etc/rear/new.conf'), 'new\n');
    const human = cli(['status', '--root', root]).stdout;
    assert.match(human, /content +etc\/rear\/local\.conf/);
    assert.match(human, /mode +etc\/rear\/site\.conf/);
    assert.match(human, /extra +etc\/rear\/new\.conf/);
  });

  test('status after apply --keep: the kept file, edited afterwards (the boot hook lifts its guard), is kept, not drift; a real change still is', () => {
    const root = isoRoot('r4k');
    // The rescue image's rescue.conf, which the host's bundle lacks, and a kept directory's file.
    makeTree(join(root, 'etc/rear'), { 'rescue.conf': 'USE_DHCLIENT=y\n# guard block\n', 'rescue.d': { 'net.conf': 'x\n' } });
    const r = cli(['apply', join(dir, 'host.tgz'), '--root', root, '--pubkey', pub, '--keep', 'etc/rear/rescue.conf'], { env: { REAR_UPDATE_KEEP: 'ignored/because/--keep/wins' } });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!existsSync(join(root, 'etc/rear/rescue.d')), 'not kept: removed like any stale path');
    writeFileSync(join(root, 'etc/rear/rescue.conf'), 'USE_DHCLIENT=y\n');
    writeFileSync(join(root, 'etc/rear/local.conf'), 'edited by hand\n');
    const s = JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { installed: { keep: string[] }; drift: { path: string; problem: string }[]; kept: { path: string; glob: string }[] };
    assert.deepEqual(s.installed.keep, ['etc/rear/rescue.conf'], 'the installed record remembers the keep globs');
    assert.deepEqual(s.drift, [{ path: 'etc/rear/local.conf', problem: 'content', detail: 'content changed since it was installed' }]);
    assert.deepEqual(s.kept, [{ path: 'etc/rear/rescue.conf', glob: 'etc/rear/rescue.conf' }]);
    const human = cli(['status', '--root', root]).stdout;
    assert.match(human, /kept: +1 path\(s\) not in the bundle, kept by --keep etc\/rear\/rescue\.conf/);
    assert.match(human, /kept +etc\/rear\/rescue\.conf/);
    assert.doesNotMatch(human, /extra +etc\/rear\/rescue\.conf/);
    // A new file beside the kept one is drift as before.
    writeFileSync(join(root, 'etc/rear/other.conf'), 'new\n');
    const s2 = JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { drift: { path: string; problem: string }[] };
    assert.deepEqual(s2.drift.map((d) => `${d.problem} ${d.path}`).sort(), ['content etc/rear/local.conf', 'extra etc/rear/other.conf']);
  });

  test('status after a keep from REAR_UPDATE_KEEP (as the boot hook passes it), with a glob below a directory the bundle lacks', () => {
    const root = isoRoot('r4e');
    makeTree(join(root, 'etc/rear'), { 'rescue.conf': 'x\n', 'site.d': { 'a.conf': 'a\n', 'b.txt': 'b\n' } });
    const r = cli(['apply', join(dir, 'host.tgz'), '--root', root, '--pubkey', pub], { env: { REAR_UPDATE_KEEP: 'etc/rear/rescue.conf etc/rear/site.d/*.conf' } });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!existsSync(join(root, 'etc/rear/site.d/b.txt')), 'not matched: removed');
    writeFileSync(join(root, 'etc/rear/rescue.conf'), 'y\n');
    writeFileSync(join(root, 'etc/rear/site.d/a.conf'), 'changed\n');
    writeFileSync(join(root, 'etc/rear/site.d/c.txt'), 'new\n');
    const s = JSON.parse(cli(['status', '--root', root, '--json']).stdout) as { drift: { path: string; problem: string }[]; kept: { path: string }[] };
    assert.deepEqual(s.kept.map((k) => k.path).sort(), ['etc/rear/rescue.conf', 'etc/rear/site.d/a.conf']);
    assert.deepEqual(s.drift.map((d) => `${d.problem} ${d.path}`), ['extra etc/rear/site.d/c.txt'], 'the directory leading to a kept file is not drift; a new file in it is');
  });

  test('an unsigned plain tar.gz needs --unsigned, and then installs with the same rules', () => {
    const root = isoRoot('r5');
    const before = snapshot(root);
    const plain = join(dir, 'plain.tgz');
    const r0 = spawn('tar', ['-czf', plain, '-C', join(dir, 'host'), 'etc/rear']);
    return new Promise<void>((res) => r0.on('close', () => {
      const refused = cli(['apply', plain, '--root', root, '--pubkey', pub]);
      assert.equal(refused.status, 4);
      assert.equal(errorCode(refused), 'BUNDLE_UNSIGNED');
      assert.deepEqual(snapshot(root), before);
      const ok = cli(['apply', plain, '--root', root, '--unsigned']);
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stderr, /UNVERIFIED/);
      assert.equal(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), 'OUTPUT=ISO\nHOST_ONLY=e229\n');
      // A plain archive owns nothing: the ISO's other files stay.
      assert.ok(existsSync(join(root, 'etc/rear/stale.conf')));
      res();
    }));
  });

  test('generic update: a bash script running while it is replaced goes on with its old content; the next run uses the new one', async () => {
    const root = join(dir, 'r6');
    const script = (tag: string, pad: number): string => `#!/bin/bash\nsleep 1\necho "${tag}-done"\n${'#'.repeat(pad)}\n`;
    makeTree(root, { usr: { share: { rear: { 'run.sh': script('old', 10) } } } });
    const src = join(dir, 'gen-src');
    makeTree(src, { usr: { share: { rear: { 'run.sh': script('NEW', 300) } } } });
    const b = join(dir, 'gen.tgz');
    assert.equal(cli(['pack', '--root', src, '--path', 'usr/share/rear', '--key', key, '-o', b]).status, 0);
    const running = spawn('bash', [join(root, 'usr/share/rear/run.sh')]);
    let out = '';
    running.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => setTimeout(r, 300)); // bash has read the first lines and sleeps
    const r = cli(['apply', b, '--root', root, '--pubkey', pub]);
    assert.equal(r.status, 0, r.stderr);
    await new Promise((r2) => running.on('close', r2));
    assert.equal(out, 'old-done\n');
    const next = spawn('bash', [join(root, 'usr/share/rear/run.sh')]);
    let out2 = '';
    next.stdout.on('data', (d: Buffer) => (out2 += d.toString()));
    await new Promise((r2) => next.on('close', r2));
    assert.equal(out2, 'NEW-done\n');
  });

  test('bad arguments: missing root, missing key, unknown source are clear errors', () => {
    assert.equal(errorCode(cli(['apply', join(dir, 'host.tgz'), '--root', join(dir, 'nope'), '--pubkey', pub])), 'ROOT_INVALID');
    assert.equal(errorCode(cli(['apply', join(dir, 'host.tgz'), '--root', dir, '--pubkey', join(dir, 'nope.pub')])), 'KEY_NOT_FOUND');
    assert.equal(errorCode(cli(['apply', join(dir, 'nope.tgz'), '--root', dir, '--pubkey', pub])), 'SOURCE_NOT_FOUND');
    assert.equal(errorCode(cli(['apply', join(dir, 'host.tgz'), '--root', dir, '--pubkey', key])), 'KEY_INVALID');
    const u = cli(['apply', join(dir, 'host.tgz'), '--max-bytes', 'lots']);
    assert.equal(u.status, 2);
    assert.match(u.stderr, /expected a size/);
  });
});
