// `rear-update facts` on a sysfs laid out by the test: physical NICs only, junk values dropped; and
// the hardware it reports beside the facts.

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
  const j = JSON.parse(r.stdout);
  assert.deepEqual({ macs: j.macs, uuid: j.uuid, serial: j.serial, hostname: j.hostname }, {
    macs: ['52:54:00:aa:bb:01', '52:54:00:aa:bb:02'],
    uuid: '4c4c4544-0042-3510-8052-b4c04f4a4b32',
    serial: null,
    hostname: 'e229.example.com',
  });
  assert.equal(j.rescue, false);
  assert.deepEqual(j.leftOut.map((l: { kind: string; value: string; rule: string }) => [l.kind, l.value, l.rule]), [
    ['mac', '02:11:22:33:44:55', 'bond-address'],
    ['serial', 'To be filled by O.E.M.', 'placeholder'],
  ]);
  const human = cli(['facts', '--sys-root', root]);
  assert.match(human.stdout, /^macs: +52:54:00:aa:bb:01 52:54:00:aa:bb:02$/m);
  assert.match(human.stdout, /^left out:\n {2}mac 02:11:22:33:44:55: eth1 is a bond slave/m);
  assert.match(human.stdout, /^ {2}serial To be filled by O\.E\.M\.: a placeholder/m);
  assert.equal(cli(['facts', '--sys-root', root, '--value', 'macs']).stdout, '52:54:00:aa:bb:01 52:54:00:aa:bb:02\n');
});

test('random MAC: facts leaves out an address the kernel made up (addr_assign_type 1), and says so', () => {
  nic('usb0', 'pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0', '6a:1f:00:3c:9e:21', { addr_assign_type: '1' });
  const r = cli(['facts', '--sys-root', root, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(j.macs, ['52:54:00:aa:bb:01', '52:54:00:aa:bb:02']);
  assert.ok(j.leftOut.some((l: { value: string; rule: string }) => l.value === '6a:1f:00:3c:9e:21' && l.rule === 'random-mac'), r.stdout);
});

test('template hostname: in a rescue system (etc/rear-release) facts leaves out the image\'s hostname; --value hostname prints an empty line; --hostname states one', () => {
  const rescue = tempDir('ru-facts-rescue-');
  try {
    mkdirSync(join(rescue, 'proc/sys/kernel'), { recursive: true });
    writeFileSync(join(rescue, 'proc/sys/kernel/hostname'), 'e229\n');
    mkdirSync(join(rescue, 'etc'));
    writeFileSync(join(rescue, 'etc/rear-release'), 'Relax-and-Recover release 2.7\n');
    writeFileSync(join(rescue, 'etc/HOSTNAME'), 'e229\n');
    const env = { REAR_UPDATE_SETTINGS: join(rescue, 'none.conf') };
    const j = JSON.parse(cli(['facts', '--sys-root', rescue, '--json'], { env }).stdout);
    assert.equal(j.rescue, true);
    assert.equal(j.hostname, null);
    assert.deepEqual(j.leftOut.map((l: { kind: string; value: string; rule: string }) => [l.kind, l.value, l.rule]), [['hostname', 'e229', 'template']]);
    const human = cli(['facts', '--sys-root', rescue], { env });
    assert.match(human.stdout, /^hostname: +-$/m);
    assert.match(human.stdout, /^ {2}hostname e229: it is the rescue image's own \(the template's\), not this machine's$/m);
    assert.equal(cli(['facts', '--sys-root', rescue, '--value', 'hostname'], { env }).stdout, '\n');
    assert.equal(cli(['facts', '--sys-root', rescue, '--value', 'hostname'], { env: { ...env, REAR_UPDATE_HOSTNAME: 'e230' } }).stdout, 'e230\n');
    const given = JSON.parse(cli(['facts', '--sys-root', rescue, '--json', '--hostname', 'e230'], { env }).stdout);
    assert.deepEqual([given.hostname, given.hostnameFrom], ['e230', 'explicit']);
    const bad = cli(['facts', '--sys-root', rescue, '--value', 'colour'], { env });
    assert.equal(bad.status, 2);
  } finally {
    cleanup(rescue);
  }
});

test('facts on this machine: runs, and reports at least a hostname', () => {
  const r = cli(['facts', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(typeof (JSON.parse(r.stdout) as { hostname: unknown }).hostname, 'string');
});

test('hardware: physical disks (not virtual, removable or empty) with sizes and models, NIC drivers, memory and CPUs; nothing of it where sysfs and procfs are missing', () => {
  const hw = tempDir('ru-facts-hw-');
  try {
    nicIn(hw, 'eth0', 'pci0000:00/0000:00:03.0', '52:54:00:AB:CD:11', 'e1000e');
    nicIn(hw, 'veth9', 'virtual', '02:42:ac:11:00:09', null);
    const disk = (name: string, device: string, files: Record<string, string>): void => {
      const dev = join(hw, 'sys/devices', device, 'block', name);
      mkdirSync(join(dev, 'device'), { recursive: true });
      for (const [f, v] of Object.entries(files)) writeFileSync(join(dev, f), v);
      mkdirSync(join(hw, 'sys/block'), { recursive: true });
      symlinkSync(`../devices/${device}/block/${name}`, join(hw, 'sys/block', name));
    };
    disk('nvme0n1', 'pci0000:00/0000:00:04.0/nvme/nvme0', { size: '1953525168\n', removable: '0\n', 'device/model': 'Samsung SSD 970 EVO Plus 1TB          \n' });
    disk('sdb', 'pci0000:00/0000:00:14.0/usb2/2-1', { size: '30031872\n', removable: '1\n', 'device/model': 'Flash Disk\n' });
    disk('dm-0', 'virtual', { size: '409600\n', removable: '0\n' });
    disk('sdc', 'pci0000:00/0000:00:1f.2/ata3', { size: '0\n', removable: '0\n', 'device/model': 'Card Reader\n' });
    disk('sde', 'pci0000:00/0000:00:1f.2/ata5', { size: '4096\n', removable: '0\n', 'device/model': `${'x'.repeat(200)}\n` });
    disk('sdd', 'pci0000:00/0000:00:1f.2/ata4', { size: '2048\n', removable: '0\n', 'device/model': 'bad\u0007model\n' });
    mkdirSync(join(hw, 'proc'), { recursive: true });
    writeFileSync(join(hw, 'proc/meminfo'), 'MemTotal:       16318792 kB\nMemFree:          123456 kB\n');
    writeFileSync(join(hw, 'proc/cpuinfo'), 'processor\t: 0\nmodel name\t: AMD EPYC 7302P 16-Core Processor\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7302P 16-Core Processor\n');
    const r = cli(['facts', '--sys-root', hw, '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).hardware, {
      disks: [{ name: 'nvme0n1', size: 1953525168 * 512, model: 'Samsung SSD 970 EVO Plus 1TB' }, { name: 'sdd', size: 2048 * 512, model: null }, { name: 'sde', size: 4096 * 512, model: null }],
      nics: [{ name: 'eth0', mac: '52:54:00:ab:cd:11', driver: 'e1000e' }],
      memory: 16318792 * 1024,
      cpus: 2,
      cpuModel: 'AMD EPYC 7302P 16-Core Processor',
    });
    const human = cli(['facts', '--sys-root', hw]).stdout;
    assert.match(human, /^ {2}disk +nvme0n1 +932 GiB +Samsung SSD 970 EVO Plus 1TB$/m);
    assert.match(human, /^ {2}nic +eth0 +52:54:00:ab:cd:11 +e1000e$/m);
    assert.match(human, /^ {2}memory +16 GiB$/m);
    assert.match(human, /^ {2}cpus +2 +AMD EPYC 7302P 16-Core Processor$/m);
    const empty = JSON.parse(cli(['facts', '--sys-root', join(hw, 'no-such-dir'), '--json']).stdout).hardware;
    assert.deepEqual(empty, { disks: [], nics: [], memory: null, cpus: null, cpuModel: null });
  } finally {
    cleanup(hw);
  }
});

function nicIn(root: string, name: string, device: string, address: string, driver: string | null): void {
  const dev = join(root, 'sys/devices', device, 'net', name);
  mkdirSync(join(dev, 'device'), { recursive: true });
  writeFileSync(join(dev, 'address'), `${address}\n`);
  if (driver) symlinkSync(`../../../../bus/pci/drivers/${driver}`, join(dev, 'device/driver'));
  mkdirSync(join(root, 'sys/class/net'), { recursive: true });
  symlinkSync(`../../devices/${device}/net/${name}`, join(root, 'sys/class/net', name));
}
