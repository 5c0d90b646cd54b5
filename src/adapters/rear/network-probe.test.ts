// The probe against stand-ins: an `ip` that prints synthetic JSON (documentation addresses),
// a /proc with two processes, and ReaR config files below a temporary root.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { probeNetwork } from './network-probe.ts';

const dir = mkdtempSync(join(tmpdir(), 'ru-netprobe-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const LINKS = [{ ifname: 'eth0', operstate: 'UP', link_type: 'ether', parentdev: '0000:00:03.0', addr_info: [{ family: 'inet', local: '192.0.2.10', prefixlen: 24, scope: 'global' }] }];

function fakeIp(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\ntest "$*" = "-d -j addr show" || { echo "unexpected: $*" >&2; exit 9; }\n${body}\n`, { mode: 0o755 });
  return p;
}

test('reads the links from ip -d -j addr show, site.conf and local.conf in that order, and the process names', () => {
  const root = join(dir, 'root');
  mkdirSync(join(root, 'etc/rear'), { recursive: true });
  writeFileSync(join(root, 'etc/rear/site.conf'), 'USE_DHCLIENT=yes\n');
  writeFileSync(join(root, 'etc/rear/local.conf'), 'USE_DHCLIENT=no\n');
  const proc = join(dir, 'proc');
  for (const [pid, comm] of [['1', 'systemd'], ['42', 'dhclient']]) {
    mkdirSync(join(proc, pid as string), { recursive: true });
    writeFileSync(join(proc, pid as string, 'comm'), `${comm}\n`);
  }
  mkdirSync(join(proc, 'self'), { recursive: true });
  const p = probeNetwork(root, { ip: fakeIp('ip', `cat <<'J'\n${JSON.stringify(LINKS)}\nJ`), proc });
  assert.equal(p.error, null);
  assert.deepEqual(p.links, LINKS);
  assert.deepEqual(p.confFiles.map((f) => f.file), ['/etc/rear/site.conf', '/etc/rear/local.conf']);
  assert.deepEqual([...p.processNames].sort(), ['dhclient', 'systemd']);
});

test('an ip that is missing, fails or prints no JSON array is an error to report, not a throw', () => {
  const root = join(dir, 'empty');
  mkdirSync(root);
  const missing = probeNetwork(root, { ip: join(dir, 'no-such-ip'), proc: join(dir, 'no-proc') });
  assert.equal(missing.links, null);
  assert.match(missing.error ?? '', /ENOENT/);
  assert.deepEqual(missing.confFiles, []);
  assert.deepEqual(missing.processNames, []);
  const failing = probeNetwork(root, { ip: fakeIp('ip-fails', 'echo "Option -j is unknown" >&2; exit 1'), proc: join(dir, 'no-proc') });
  assert.equal(failing.links, null);
  assert.match(failing.error ?? '', /-d -j addr show/);
  const object = probeNetwork(root, { ip: fakeIp('ip-object', 'echo "{}"'), proc: join(dir, 'no-proc') });
  assert.match(object.error ?? '', /did not print a JSON array/);
});
