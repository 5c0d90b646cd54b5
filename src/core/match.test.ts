import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanonicalFacts } from './store/facts.ts';
import type { Hardware } from './store/hardware.ts';
import { matchHost, rankHosts, type MatchCandidate, type MatchMachine } from './match.ts';

const GiB = 1024 ** 3;

const host = (id: string, o: Partial<MatchCandidate['host']> = {}, disks: number[] | null = null): MatchCandidate => ({
  host: { id, hostnames: [], macs: [], uuid: null, serial: null, class: null, ...o },
  layout: disks === null ? null : { disks: disks.map((size, i) => ({ device: `/dev/sd${'abcdefgh'[i]}`, size })) },
});

const hw = (disks: number[], macs: string[], extra: Partial<Hardware> = {}): Hardware => ({
  disks: disks.map((size, i) => ({ name: `vd${'abcdefgh'[i]}`, size, model: null })),
  nics: macs.map((mac, i) => ({ name: `eth${i}`, mac, driver: 'virtio_net' })),
  memory: null,
  cpus: null,
  cpuModel: null,
  ...extra,
});

const facts = (o: Partial<CanonicalFacts> = {}): CanonicalFacts => ({ macs: [], uuid: null, serial: null, hostname: null, ...o });

test('rankHosts: disks of the same sizes, NIC count and MAC prefix put the right host first, with reasons', () => {
  const machine: MatchMachine = { facts: facts({ macs: ['52:54:00:12:34:56', '52:54:00:12:34:57'] }), hardware: hw([20 * GiB, 50 * GiB], ['52:54:00:12:34:56', '52:54:00:12:34:57']) };
  const ranked = rankHosts(machine, [
    host('orig-web1', { macs: ['52:54:00:aa:00:01'] }, [40 * GiB]),
    host('orig-db1', { macs: ['52:54:00:aa:00:02', '52:54:00:aa:00:03'] }, [50 * GiB, 20 * GiB]),
    host('orig-app1', { macs: ['00:1b:21:00:00:01'] }, null),
  ]);
  assert.deepEqual(ranked.map((h) => h.host), ['orig-db1', 'orig-web1']);
  assert.deepEqual(ranked[0]!.reasons, ['2 disks of the same sizes', '2 NICs, as the host has 2 MACs', 'MAC prefix 52:54:00 as the host\'s']);
  assert.ok(ranked[0]!.score > ranked[1]!.score);
  assert.match(ranked[1]!.reasons.join('\n'), /disks at least as large as the host's 42\.9 GB \(2 disks, the host has 1\)/);
  // Nothing in common: not listed at all.
  assert.equal(ranked.find((h) => h.host === 'orig-app1'), undefined);
});

test('rankHosts: identity facts outweigh hardware; scores stay within 0..100', () => {
  const machine: MatchMachine = {
    facts: facts({ macs: ['52:54:00:12:34:56'], uuid: '4c4c4544-0033-3010-8044-b2c04f4e3232', serial: 'CZ1234ABC', hostname: 'orig-db1' }),
    hardware: hw([20 * GiB], ['52:54:00:12:34:56']),
  };
  const [best, second] = rankHosts(machine, [
    host('same-disks', { macs: ['52:54:00:aa:00:01'] }, [20 * GiB]),
    host('orig-db1', { macs: ['52:54:00:12:34:56'], uuid: '4c4c4544-0033-3010-8044-b2c04f4e3232', serial: 'CZ1234ABC', hostnames: ['orig-db1'] }, [20 * GiB]),
  ]);
  assert.equal(best!.host, 'orig-db1');
  assert.equal(best!.score, 100);
  assert.match(best!.reasons[0]!, /^MAC 52:54:00:12:34:56 is the host's$/);
  assert.ok(best!.reasons.some((r) => /^hostname orig-db1 as the host's/.test(r)));
  assert.equal(second!.host, 'same-disks');
  assert.ok(second!.score > 0 && second!.score < 100);
});

test('rankHosts: ties are ordered by host id; limit cuts the list', () => {
  const machine: MatchMachine = { facts: null, hardware: hw([10 * GiB], []) };
  const ranked = rankHosts(machine, ['h3', 'h1', 'h2'].map((id) => host(id, {}, [10 * GiB])), 2);
  assert.deepEqual(ranked.map((h) => [h.host, h.score]), [['h1', 30], ['h2', 30]]);
});

test('matchHost: some disks of the same size, disks too small, no layout, and memory/CPU named as not compared', () => {
  const machine: MatchMachine = { facts: null, hardware: hw([20 * GiB, 100 * GiB, 100 * GiB], [], { memory: 8 * GiB, cpus: 4 }) };
  const some = matchHost(machine, host('a', {}, [20 * GiB, 30 * GiB]));
  assert.deepEqual(some.reasons, ['1 of the host\'s 2 disks of the same size (3 disks, the host has 2)', 'memory/CPU unknown for hosts (not compared)']);
  const small = matchHost(machine, host('b', {}, [500 * GiB]));
  assert.equal(small.score, 0);
  assert.match(small.reasons[0]!, /^disks smaller than the host's 537 GB/);
  assert.deepEqual(matchHost(machine, host('c')).reasons, ['no disk layout known for the host (publish its var/lib/rear/layout)']);
});

test('matchHost: the token it asked with: its class counts, a host it may not fetch is capped and says why', () => {
  const machine: MatchMachine = { facts: null, hardware: hw([20 * GiB], []), tokenClass: 'typeA' };
  const inClass = matchHost(machine, host('a1', { class: 'typeA' }, [20 * GiB]));
  const other = matchHost(machine, host('b1', { class: 'typeB' }, [20 * GiB]));
  assert.ok(inClass.score > other.score);
  assert.ok(inClass.reasons.includes('class typeA, as the token it asked with'));
  assert.equal(other.score, 5);
  assert.equal(other.reasons[0], 'the token it asked with (class typeA) may not fetch this host');
  const own = matchHost({ facts: null, hardware: null, tokenHost: 'orig-db1' }, host('orig-db1'));
  assert.deepEqual([own.score, own.reasons], [40, ['it asked with a token for this host']]);
});

test('matchHost: a machine without hardware or facts matches nothing', () => {
  assert.deepEqual(matchHost({ facts: null, hardware: null }, host('x', { macs: ['52:54:00:aa:00:01'] }, [GiB])), { host: 'x', score: 0, reasons: [] });
});
