// install-rear --class on a template with static networking: the real CLI, with a stand-in
// `ip` on PATH that prints synthetic JSON (documentation addresses, never this machine's), in a
// fresh PID namespace so that no DHCP client of this machine is seen, against a chroot-style
// --root. The image is set up either way; only the warning differs.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, cleanup, cli, makeTree, tempDir } from '../helpers.ts';

const STATIC = [
  { ifname: 'lo', flags: ['LOOPBACK', 'UP', 'LOWER_UP'], operstate: 'UNKNOWN', link_type: 'loopback', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
  { ifname: 'eth0', flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], operstate: 'UP', link_type: 'ether', parentbus: 'pci', parentdev: '0000:00:03.0', addr_info: [{ family: 'inet', local: '192.0.2.10', prefixlen: 24, scope: 'global' }] },
];

describe('install-rear --class and a template with static networking', () => {
  let dir: string;
  let root: string;
  let bin: string;
  before(() => {
    dir = tempDir();
    root = join(dir, 'root');
    bin = join(dir, 'bin');
    makeTree(root, { usr: { share: { rear: { skel: { default: { '.keep': '' } }, conf: { 'default.conf': '' } } } }, etc: { rear: { 'local.conf': 'OUTPUT=ISO\n' } } });
    makeTree(bin, {});
    writeFileSync(join(bin, 'ip'), `#!/bin/sh\ncat <<'J'\n${JSON.stringify(STATIC)}\nJ\n`, { mode: 0o755 });
    writeFileSync(join(dir, 'exe'), '#!/bin/sh\n', { mode: 0o755 });
    assert.equal(cli(['keygen', '--out', join(dir, 'keys')]).status, 0);
  });
  after(() => cleanup(dir));

  const install = (extra: string[]): { status: number | null; stdout: string; stderr: string } => {
    const args = [process.execPath, CLI, 'install-rear', '--root', root, '--server', 'http://127.0.0.1:9', '--pubkey', join(dir, 'keys', 'rear-update.pub'), '--exe', join(dir, 'exe'), ...extra];
    const r = spawnSync('unshare', ['--pid', '--fork', '--mount-proc', ...args], { encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, timeout: 60_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  test('a static address and no DHCP: installed, with a warning naming the address and the safe ways', () => {
    const r = install(['--class', 'typeA']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /next: rear mkrescue/);
    assert.match(r.stderr, /rear-update: WARNING: the typeA image would bring up this machine's own address\(es\) on every machine that boots it: eth0 192\.0\.2\.10\/24/);
    assert.match(r.stderr, /USE_DHCLIENT=yes in \/etc\/rear\/local\.conf/);
    assert.match(r.stderr, /ip=ADDRESS nm=NETMASK netdev=DEVICE gw=GATEWAY/);
  });

  test('without --class (an image for one host, whose own address it is) nothing is said', () => {
    const r = install([]);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /WARNING/);
  });

  test('USE_DHCLIENT=yes in local.conf: no warning', () => {
    appendFileSync(join(root, 'etc/rear/local.conf'), 'USE_DHCLIENT=yes\n');
    const r = install(['--class', 'typeA']);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /WARNING/);
  });

  test('--help shows the safe ways', () => {
    const h = cli(['install-rear', '--help']).stdout;
    assert.match(h, /USE_DHCLIENT=yes in \/etc\/rear\/local\.conf/);
    assert.match(h, /ip=ADDRESS nm=NETMASK netdev=DEVICE gw=GATEWAY/);
  });
});
