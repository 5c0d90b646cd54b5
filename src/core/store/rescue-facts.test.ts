// The fact rules, each named after the hazard it guards against: a machine booting a class
// image must not be resolved to the template by what the image (or a clone) carries over.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyFact } from './facts.ts';
import { factsToSend, leftOutLines, type ObservedMachine } from './rescue-facts.ts';

const UUID_NEW = '6b1d3f0e-9a52-4c1e-8f3a-2d7c5e9b0a14';
const UUID_TEMPLATE = '4c4c4544-0033-3010-8044-b2c04f4e3232';

/** A replacement machine booting the rescue image that mkrescue made on template host e229. */
const rescue = (o: Partial<ObservedMachine> = {}): ObservedMachine => ({
  interfaces: [{ name: 'eth0', address: '52:54:00:e2:30:01', assignType: 0 }],
  uuid: UUID_NEW,
  serial: 'CZ2300XYZ',
  hostname: 'e229',
  rearRelease: 'Relax-and-Recover release 2.7',
  imageHostnameFiles: [{ path: '/etc/HOSTNAME', value: 'e229' }, { path: '/etc/hostname', value: 'e229' }],
  ...o,
});

/** The same machine outside a rescue system (no /etc/rear-release). */
const installed = (o: Partial<ObservedMachine> = {}): ObservedMachine => rescue({ rearRelease: null, imageHostnameFiles: [], ...o });

test('template hostname: in a rescue system the hostname the image was made with is left out, with the reason', () => {
  const r = factsToSend(rescue());
  assert.equal(r.rescue, true);
  assert.equal(r.facts.hostname, null);
  assert.equal(r.hostnameFrom, null);
  assert.deepEqual(r.leftOut.map((l) => [l.kind, l.value, l.rule]), [['hostname', 'e229', 'template']]);
  assert.deepEqual(leftOutLines(r), ['hostname e229 left out: it is the rescue image\'s own (the template\'s), not this machine\'s']);
  // The other facts still go.
  assert.deepEqual(r.facts.macs, ['52:54:00:e2:30:01']);
  assert.equal(r.facts.uuid, UUID_NEW);
  assert.equal(r.facts.serial, 'CZ2300XYZ');
});

test('template hostname: recognized by its short name (mkrescue writes hostname -s) and from install-rear\'s record alone', () => {
  // The kernel hostname is the FQDN, the image file the short name.
  assert.equal(factsToSend(rescue({ hostname: 'E229.example.com' })).facts.hostname, null);
  // No hostname files (an image whose /etc/HOSTNAME is gone): REAR_UPDATE_IMAGE_HOSTNAME, an FQDN, still names the template.
  const r = factsToSend(rescue({ imageHostnameFiles: [] }), { imageHostname: 'e229.example.com' });
  assert.equal(r.facts.hostname, null);
  assert.equal(r.leftOut[0]?.rule, 'template');
});

test('template hostname: a rescue system that does not say which hostname its image had sends none (when in doubt, pending)', () => {
  const r = factsToSend(rescue({ imageHostnameFiles: [] }));
  assert.equal(r.facts.hostname, null);
  assert.deepEqual(r.leftOut.map((l) => [l.kind, l.value, l.rule]), [['hostname', 'e229', 'image-unknown']]);
  assert.match(r.leftOut[0]!.reason, /rear_update=hostname=NAME/);
});

test('template hostname: a hostname that differs from the image\'s (DHCP) is sent', () => {
  const r = factsToSend(rescue({ hostname: 'e230.example.com' }), { imageHostname: 'e229' });
  assert.equal(r.facts.hostname, 'e230.example.com');
  assert.equal(r.hostnameFrom, 'system');
  assert.deepEqual(r.leftOut, []);
});

test('template hostname: an explicit hostname (rear_update=hostname=, --hostname) is sent in place of the image\'s', () => {
  const r = factsToSend(rescue(), { hostname: 'E230' });
  assert.equal(r.facts.hostname, 'e230');
  assert.equal(r.hostnameFrom, 'explicit');
  assert.deepEqual(r.leftOut.map((l) => [l.kind, l.value, l.rule]), [['hostname', 'e229', 'overridden']]);
  // Explicit means explicit, even when it names the template: like rear_update=id=e229.
  assert.equal(factsToSend(rescue(), { hostname: 'e229' }).facts.hostname, 'e229');
});

test('an explicit hostname that is no hostname is refused (CONFIG_INVALID), not silently dropped', () => {
  for (const bad of ['not a name', 'localhost']) {
    assert.throws(() => factsToSend(rescue(), { hostname: bad }), (e: { code?: string }) => e.code === 'CONFIG_INVALID', bad);
  }
});

test('outside a rescue system nothing changes: the hostname is sent, the recorded template facts are ignored', () => {
  const r = factsToSend(installed(), { imageHostname: 'e229', imageUuid: UUID_NEW, imageSerial: 'CZ2300XYZ' });
  assert.equal(r.rescue, false);
  assert.deepEqual(r.facts, { macs: ['52:54:00:e2:30:01'], uuid: UUID_NEW, serial: 'CZ2300XYZ', hostname: 'e229' });
  assert.deepEqual(r.leftOut, []);
});

test('cloned UUID: in a rescue system the template\'s DMI UUID (a VM cloned from it) is left out, compared case-insensitively', () => {
  const r = factsToSend(rescue({ uuid: UUID_TEMPLATE.toUpperCase(), hostname: 'e231' }), { imageHostname: 'e229', imageUuid: UUID_TEMPLATE });
  assert.equal(r.facts.uuid, null);
  assert.deepEqual(r.leftOut.map((l) => [l.kind, l.rule]), [['uuid', 'template']]);
  assert.match(r.leftOut[0]!.reason, /clone of it/);
  // Another machine's UUID is sent; so is any UUID when the image recorded none.
  assert.equal(factsToSend(rescue(), { imageUuid: UUID_TEMPLATE }).facts.uuid, UUID_NEW);
  assert.equal(factsToSend(rescue({ uuid: UUID_TEMPLATE })).facts.uuid, UUID_TEMPLATE);
});

test('cloned serial: in a rescue system the template\'s DMI serial is left out', () => {
  const r = factsToSend(rescue({ serial: 'vmware-42 1a 2b' }), { imageSerial: 'VMware-42 1A 2B' });
  assert.equal(r.facts.serial, null);
  assert.deepEqual(r.leftOut.map((l) => [l.kind, l.rule]), [['serial', 'template'], ['hostname', 'template']]);
});

test('placeholder serial: firmware placeholders are no facts, and each is named as left out', () => {
  for (const s of ['Default string', 'System Serial Number', 'To Be Filled By O.E.M.', 'To be filled by O.E.M', 'Not Specified', '0123456789', 'OEM', 'None', 'Chassis Serial Number', 'Base Board Serial Number', '00000000', 'XXXXXXXXXX', '  ']) {
    assert.equal(classifyFact('serial', s).problem, 'placeholder', s);
    const r = factsToSend(installed({ serial: s }));
    assert.equal(r.facts.serial, null, s);
    // An empty one (QEMU's default) is simply absent: nothing to name on the console.
    assert.deepEqual(r.leftOut.map((l) => [l.kind, l.rule]), s.trim() === '' ? [] : [['serial', 'placeholder']], s);
  }
  for (const s of ['CZ2300XYZ', 'S', 'VMware-42 1a 2b 3c']) assert.equal(classifyFact('serial', s).problem, null, s);
});

test('placeholder UUID: all-one-digit and known board-default UUIDs are no facts', () => {
  for (const u of ['00000000-0000-0000-0000-000000000000', 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF', '11111111-1111-1111-1111-111111111111', '03000200-0400-0500-0006-000700080009', '00020003-0004-0005-0006-000700080009']) {
    assert.equal(classifyFact('uuid', u).problem, 'placeholder', u);
  }
  assert.equal(classifyFact('uuid', 'not-a-uuid').problem, 'malformed');
  assert.equal(classifyFact('uuid', UUID_NEW).value, UUID_NEW);
});

test('bonded MAC: a bond slave is known by its permanent address, not the bond\'s (which may be another NIC\'s or a configured one)', () => {
  const r = factsToSend(installed({
    interfaces: [
      { name: 'eth0', address: '52:54:00:e2:30:01', permAddress: '52:54:00:e2:30:01', assignType: 0 },
      // The bond took eth0's address; eth1's own is its permanent one.
      { name: 'eth1', address: '52:54:00:e2:30:01', permAddress: '52:54:00:e2:30:02', assignType: 3 },
      // A bond with a configured address (the template's network setup): that address is nobody's hardware.
      { name: 'eth2', address: '02:00:00:e2:29:99', permAddress: '52:54:00:e2:30:03', assignType: 3 },
    ],
  }));
  assert.deepEqual(r.facts.macs, ['52:54:00:e2:30:01', '52:54:00:e2:30:02', '52:54:00:e2:30:03']);
  assert.deepEqual(r.leftOut.map((l) => [l.kind, l.value, l.rule]), [['mac', '02:00:00:e2:29:99', 'bond-address']]);
  assert.match(r.leftOut[0]!.reason, /permanent address 52:54:00:e2:30:03 is sent instead/);
});

test('random MAC: an address the kernel made up (addr_assign_type 1) is left out; a set one (3) is kept', () => {
  const r = factsToSend(installed({
    interfaces: [
      { name: 'eth0', address: '52:54:00:e2:30:01', assignType: 0 },
      { name: 'usb0', address: '6a:1f:00:3c:9e:21', assignType: 1 },
      { name: 'eth1', address: '52:54:00:e2:30:02', assignType: 3 },
      { name: 'eth2', address: '52:54:00:e2:30:04', assignType: null },
    ],
  }));
  assert.deepEqual(r.facts.macs, ['52:54:00:e2:30:01', '52:54:00:e2:30:02', '52:54:00:e2:30:04']);
  assert.deepEqual(r.leftOut.map((l) => [l.kind, l.value, l.rule]), [['mac', '6a:1f:00:3c:9e:21', 'random-mac']]);
});

test('placeholder and malformed MACs are named as left out (all-zero; an InfiniBand address is no Ethernet MAC)', () => {
  const r = factsToSend(installed({
    interfaces: [
      { name: 'eth0', address: '00:00:00:00:00:00' },
      { name: 'ib0', address: '80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:8b:f1' },
    ],
  }));
  assert.deepEqual(r.facts.macs, []);
  assert.deepEqual(r.leftOut.map((l) => [l.kind, l.rule]), [['mac', 'placeholder'], ['mac', 'malformed']]);
});

test('template machine itself booting its image: hostname, UUID and serial left out, its MACs still identify it', () => {
  const r = factsToSend(rescue({ uuid: UUID_TEMPLATE, serial: 'CZ2290ABC', interfaces: [{ name: 'eth0', address: '52:54:00:e2:29:01' }] }), { imageHostname: 'e229', imageUuid: UUID_TEMPLATE, imageSerial: 'CZ2290ABC' });
  assert.deepEqual(r.facts, { macs: ['52:54:00:e2:29:01'], uuid: null, serial: null, hostname: null });
  assert.deepEqual(r.leftOut.map((l) => l.kind).sort(), ['hostname', 'serial', 'uuid']);
});
