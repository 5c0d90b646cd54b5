// What install-rear --class says about the rescue image's network, from synthetic probes
// (documentation addresses only).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NetworkProbe } from '../adapters/rear/network-probe.ts';
import { rescueNetworkLines } from './rescue-network.ts';

const eth0 = (extra: object = {}): NetworkProbe['links'] => [
  { ifname: 'eth0', operstate: 'UP', link_type: 'ether', parentdev: '0000:00:03.0', addr_info: [{ family: 'inet', local: '192.0.2.10', prefixlen: 24, scope: 'global', ...extra }] },
];
const probe = (p: Partial<NetworkProbe>): NetworkProbe => ({ links: eth0(), error: null, confFiles: [], processNames: [], ...p });

test('template hazard: a static address without DHCP gets a warning naming it and both safe ways', () => {
  const lines = rescueNetworkLines(probe({}), 'typeA');
  assert.match(lines[0] ?? '', /^WARNING: the typeA image would bring up this machine's own address\(es\) on every machine that boots it: eth0 192\.0\.2\.10\/24$/);
  const all = lines.join('\n');
  assert.match(all, /USE_DHCLIENT=yes in \/etc\/rear\/local\.conf/);
  assert.match(all, /ip=ADDRESS nm=NETMASK netdev=DEVICE gw=GATEWAY/);
  assert.match(all, /no DHCP client runs here/);
});

test('nothing to say with DHCP for the rescue system, or with only leased addresses', () => {
  assert.deepEqual(rescueNetworkLines(probe({ confFiles: [{ file: '/etc/rear/local.conf', text: 'USE_DHCLIENT=y\n' }] }), 'typeA'), []);
  assert.deepEqual(rescueNetworkLines(probe({ processNames: ['dhclient'] }), 'typeA'), []);
  assert.deepEqual(rescueNetworkLines(probe({ links: eth0({ dynamic: true }) }), 'typeA'), []);
});

test('USE_STATIC_NETWORKING=yes freezes even a leased address into the image: a warning that says why', () => {
  const lines = rescueNetworkLines(probe({ links: eth0({ dynamic: true }), processNames: ['dhclient'], confFiles: [{ file: '/etc/rear/site.conf', text: 'USE_STATIC_NETWORKING=yes\n' }] }), 'typeA');
  assert.match(lines.join('\n'), /would bring up .*eth0 192\.0\.2\.10\/24[\s\S]*USE_STATIC_NETWORKING=yes in \/etc\/rear\/site\.conf/);
});

test('when ip cannot be read: one line saying the check was not made, no failure', () => {
  assert.deepEqual(rescueNetworkLines(probe({ links: null, error: 'ip -d -j addr show: spawnSync ip ENOENT' }), 'typeA'), [
    'could not check whether the typeA image would bring up this machine\'s own addresses (ip -d -j addr show: spawnSync ip ENOENT); see docs/rescue-network.md',
  ]);
});
