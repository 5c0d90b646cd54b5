// Resolution over a tiny in-test store: a fact shared by two hosts proves nothing, and every
// answer names the fact and the value that resolved the machine.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NORMALIZE, type FactKind } from './facts.ts';
import type { Host } from './metadata.ts';
import { resolveHost } from './resolve.ts';

const host = (id: string, f: Partial<Pick<Host, 'macs' | 'hostnames' | 'uuid' | 'serial'>>): Host => ({
  id, hostnames: [], macs: [], uuid: null, serial: null, class: 'typeA', pinned: null, created: '2026-01-01T00:00:00.000Z', ...f,
});

function store(hosts: readonly Host[]): Parameters<typeof resolveHost>[0] {
  const has = (h: Host, kind: FactKind, v: string): boolean =>
    kind === 'mac' ? h.macs.includes(v) : kind === 'hostname' ? h.hostnames.includes(v) : h[kind] === v;
  return {
    getHost: async (id) => hosts.find((h) => h.id === id) ?? null,
    findHosts: async (kind, value) => {
      const v = NORMALIZE[kind](value);
      return v === null ? [] : hosts.filter((h) => has(h, kind, v));
    },
  };
}

const CLONED = '4c4c4544-0033-3010-8044-b2c04f4e3232';
const fleet = store([
  // e229 and its VM clone e230 were registered with the same DMI UUID (the hypervisor copied it).
  host('e229', { macs: ['52:54:00:e2:29:01'], hostnames: ['e229'], uuid: CLONED, serial: 'CZ2290ABC' }),
  host('e230', { macs: ['52:54:00:e2:30:01'], hostnames: ['e230'], uuid: CLONED }),
]);

test('cloned UUID: a UUID registered for two hosts resolves neither; it is reported as ambiguous and the machine goes pending', async () => {
  const r = await resolveHost(fleet, { macs: ['52:54:00:e2:31:01'], uuid: CLONED.toUpperCase() });
  assert.equal(r.host, null);
  assert.deepEqual(r.host === null && r.ambiguous, ['uuid']);
});

test('cloned UUID: the machine\'s own MAC still resolves it, before the ambiguous UUID is looked at', async () => {
  const r = await resolveHost(fleet, { macs: ['52:54:00:E2:30:01'], uuid: CLONED });
  assert.deepEqual(r.host && [r.host.id, r.by, r.value], ['e230', 'mac', '52:54:00:e2:30:01']);
});

test('cloned UUID: an ambiguous UUID falls through to the next fact, and the answer names the fact and its value', async () => {
  const bySerial = await resolveHost(fleet, { uuid: CLONED, serial: 'cz2290abc' });
  assert.deepEqual(bySerial.host && [bySerial.host.id, bySerial.by, bySerial.value], ['e229', 'serial', 'CZ2290ABC']);
  const byName = await resolveHost(fleet, { uuid: CLONED, hostname: 'E230' });
  assert.deepEqual(byName.host && [byName.host.id, byName.by, byName.value], ['e230', 'hostname', 'e230']);
});

test('placeholder serial: a serial firmware ships on many machines matches no host, even one registered before it counted as a placeholder', async () => {
  const old = store([host('e231', { serial: 'BASE BOARD SERIAL NUMBER' })]);
  const r = await resolveHost(old, { serial: 'Base Board Serial Number' });
  assert.equal(r.host, null);
});
