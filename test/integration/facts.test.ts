// `rear-update facts` on a sysfs laid out by the test: physical NICs only, junk values dropped.

import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { cleanup, cli, tempDir } from '../helpers.ts';

const root = tempDir('ru-facts-');
after(() => cleanup(root));

function nic(name: string, device: string, address: string, extra: Record<string, string> = {}): void {
  const dev = join(root, 'sys/devices', device, 'net', name);
  mkdirSync(dev, { recursive: true });
  writeFileSync(join(dev, 'address'), `${address}\n`);
  for (const [f, v] of Object.entries(extra)) {
    mkdirSync(join(dev, f, '..'), { recursive: true });
    writeFileSync(join(dev, f), `${v}\n`);
  }
  mkdirSync(join(root, 'sys/class/net'), { recursive: true });
  symlinkSync(`../../devices/${device}/net/${name}`, join(root, 'sys/class/net', name));
}

test('facts: physical MACs (bond slaves by permanent address), DMI uuid/serial, hostname; lo and virtual interfaces left out', () => {
  nic('eth0', 'pci0000:00/0000:00:03.0', '52:54:00:AA:BB:01');
  nic('eth1', 'pci0000:00/0000:00:04.0', '02:11:22:33:44:55', { 'bonding_slave/perm_hwaddr': '52:54:00:aa:bb:02' });
  nic('lo', 'virtual', '00:00:00:00:00:00');
  nic('docker0', 'virtual', '02:42:ac:11:00:01');
  nic('bond0', 'virtual', '02:11:22:33:44:55');
  mkdirSync(join(root, 'sys/class/dmi/id'), { recursive: true });
  writeFileSync(join(root, 'sys/class/dmi/id/product_uuid'), '4C4C4544-0042-3510-8052-B4C04F4A4B32\n');
  writeFileSync(join(root, 'sys/class/dmi/id/product_serial'), 'To be filled by O.E.M.\n');
  mkdirSync(join(root, 'proc/sys/kernel'), { recursive: true });
  writeFileSync(join(root, 'proc/sys/kernel/hostname'), 'E229.example.com\n');

  const r = cli(['facts', '--sys-root', root, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    macs: ['52:54:00:aa:bb:01', '52:54:00:aa:bb:02'],
    uuid: '4c4c4544-0042-3510-8052-b4c04f4a4b32',
    serial: null,
    hostname: 'e229.example.com',
  });
  const human = cli(['facts', '--sys-root', root]);
  assert.match(human.stdout, /^macs: +52:54:00:aa:bb:01 52:54:00:aa:bb:02$/m);
});

test('facts on this machine: runs, and reports at least a hostname', () => {
  const r = cli(['facts', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(typeof (JSON.parse(r.stdout) as { hostname: unknown }).hostname, 'string');
});
