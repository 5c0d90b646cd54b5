// Synthetic `ip -d -j addr show` output (documentation addresses only: 192.0.2.0/24,
// 198.51.100.0/24, 2001:db8::/32), shaped like iproute2 6.1's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dhcpClients, rearFalse, rearNetSettings, rearTrue, rescueAddresses, rescueNetwork, type IpLink } from './rescue-network.ts';

type Addr = NonNullable<IpLink['addr_info']>[number];
const v4 = (local: string, extra: Partial<Addr> = {}): Addr => ({ family: 'inet', local, prefixlen: 24, scope: 'global', ...extra });
const v6 = (local: string, extra: Partial<Addr> = {}): Addr => ({ family: 'inet6', local, prefixlen: 64, scope: 'global', ...extra });
const link = (ifname: string, addr_info: Addr[], extra: Partial<IpLink> = {}): IpLink => ({
  ifname, flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], operstate: 'UP', link_type: 'ether', parentbus: 'pci', parentdev: '0000:00:03.0', addr_info, ...extra,
} as IpLink);
const lo: IpLink = { ifname: 'lo', flags: ['LOOPBACK', 'UP', 'LOWER_UP'], operstate: 'UNKNOWN', link_type: 'loopback', addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }, { family: 'inet6', local: '::1', prefixlen: 128, scope: 'host' }] };
const virtual = (ifname: string, kind: string, addr_info: Addr[], extra: Partial<IpLink> = {}): IpLink =>
  ({ ifname, flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'], operstate: 'UP', link_type: 'ether', linkinfo: { info_kind: kind }, addr_info, ...extra });

const staticHost = [lo, link('eth0', [v4('192.0.2.10'), v6('2001:db8::10'), v6('fe80::5054:ff:fe00:1', { scope: 'link' })])];
const noConf = rearNetSettings([]);

test('template hazard: a static address and no DHCP for the rescue system is a warning, naming the addresses', () => {
  const v = rescueNetwork(staticHost, noConf, ['systemd', 'sshd', 'bash']);
  assert.equal(v.mode, 'static');
  assert.equal(v.warn, true);
  assert.deepEqual(v.copied.map((a) => `${a.ifname} ${a.address}/${a.prefixlen}`), ['eth0 192.0.2.10/24', 'eth0 2001:db8::10/64']);
  assert.match(v.reason, /USE_DHCLIENT is not set and no DHCP client runs/);
});

test('USE_DHCLIENT=yes in local.conf: DHCP in the rescue system, no warning', () => {
  const v = rescueNetwork(staticHost, rearNetSettings([{ file: '/etc/rear/local.conf', text: 'OUTPUT=ISO\nUSE_DHCLIENT="yes"\n' }]), []);
  assert.equal(v.mode, 'dhcp');
  assert.equal(v.warn, false);
  assert.deepEqual(v.copied, []);
  assert.equal(v.reason, 'USE_DHCLIENT=yes in /etc/rear/local.conf');
});

test('a running DHCP client makes ReaR turn DHCP on by itself', () => {
  const v = rescueNetwork(staticHost, noConf, ['bash', 'dhclient', 'sshd']);
  assert.equal(v.mode, 'dhcp');
  assert.equal(v.warn, false);
  assert.match(v.reason, /a DHCP client runs here \(dhclient\)/);
});

test('USE_STATIC_NETWORKING=yes overrules USE_DHCLIENT and a running client; then even leased addresses are copied', () => {
  const leased = [lo, link('eth0', [v4('198.51.100.7', { dynamic: true })])];
  const conf = rearNetSettings([{ file: '/etc/rear/site.conf', text: 'USE_STATIC_NETWORKING=y\n' }, { file: '/etc/rear/local.conf', text: 'USE_DHCLIENT=yes\n' }]);
  const v = rescueNetwork(leased, conf, ['dhclient']);
  assert.equal(v.mode, 'static');
  assert.equal(v.warn, true);
  assert.deepEqual(v.copied.map((a) => a.address), ['198.51.100.7']);
  assert.match(v.reason, /USE_STATIC_NETWORKING=y in \/etc\/rear\/site\.conf \(it overrules USE_DHCLIENT\)/);
});

test('USE_DHCLIENT=no turns DHCP off although a client runs', () => {
  const v = rescueNetwork(staticHost, rearNetSettings([{ file: '/etc/rear/local.conf', text: 'USE_DHCLIENT=No\n' }]), ['dhcpcd']);
  assert.equal(v.mode, 'static');
  assert.equal(v.warn, true);
});

test('a leased-only machine without a client process is unsure but not warned about; with a static address too, warned as "may"', () => {
  const leased = rescueNetwork([lo, link('eth0', [v4('198.51.100.7', { dynamic: true }), v6('2001:db8::7', { dynamic: true })])], noConf, ['NetworkManager']);
  assert.equal(leased.mode, 'unsure');
  assert.equal(leased.warn, false);
  const mixed = rescueNetwork([lo, link('eth0', [v4('198.51.100.7', { dynamic: true })]), link('eth1', [v4('192.0.2.10')], { parentdev: '0000:00:04.0' })], noConf, []);
  assert.equal(mixed.mode, 'unsure');
  assert.equal(mixed.warn, true);
  assert.deepEqual(mixed.copied.map((a) => a.ifname), ['eth1']);
});

test('the last assignment wins, local.conf after site.conf; comments, quotes and export are understood', () => {
  const conf = rearNetSettings([
    { file: '/etc/rear/site.conf', text: 'USE_DHCLIENT=yes\n' },
    { file: '/etc/rear/local.conf', text: "# USE_DHCLIENT=no\nexport USE_DHCLIENT='n' # static please\nUSE_DHCLIENT_X=1\n  DHCLIENT_BIN=dhcpcd;\n" },
  ]);
  assert.deepEqual(conf.USE_DHCLIENT, { value: 'n', file: '/etc/rear/local.conf' });
  assert.deepEqual(conf.DHCLIENT_BIN, { value: 'dhcpcd', file: '/etc/rear/local.conf' });
  assert.equal(conf.USE_STATIC_NETWORKING, undefined);
  assert.equal(rearNetSettings([{ file: 'l', text: 'USE_DHCLIENT=""\n' }]).USE_DHCLIENT?.value, '');
});

test('ReaR\'s is_true and is_false: empty and unknown values are neither (then ReaR autodetects)', () => {
  for (const v of ['y', 'Y', 'yes', 'YES', 't', 'true', 'True', '1']) assert.ok(rearTrue(v), v);
  for (const v of ['n', 'no', 'No', 'f', 'false', '0']) assert.ok(rearFalse(v), v);
  for (const v of ['', 'on', 'off', 'auto', undefined]) assert.ok(!rearTrue(v) && !rearFalse(v), String(v));
  const v = rescueNetwork(staticHost, rearNetSettings([{ file: 'l', text: 'USE_DHCLIENT=auto\n' }]), []);
  assert.equal(v.mode, 'static');
});

test('DHCLIENT_BIN set without USE_DHCLIENT turns DHCP on', () => {
  assert.equal(rescueNetwork(staticHost, rearNetSettings([{ file: 'l', text: 'DHCLIENT_BIN=dhclient\n' }]), []).mode, 'dhcp');
});

test('dhcpClients: the names ReaR 2.7 looks for, as prefixes of the process name', () => {
  assert.deepEqual(dhcpClients(['dhcpcd', 'dhclient', 'dhclient', 'dhcp6c', 'dhclient6', 'NetworkManager', 'systemd-networkd', 'udhcpc', 'mydhclient']), ['dhclient', 'dhclient6', 'dhcp6c', 'dhcpcd']);
});

test('which links count: those with a device, and bonds, bridges and VLANs over them; not loopback, veth, docker0, tun, wireguard, down links', () => {
  const links: IpLink[] = [
    lo,
    link('eno1', [], { master: 'bond0' }),
    link('eno2', [], { master: 'bond0', parentdev: '0000:00:05.0' }),
    virtual('bond0', 'bond', [v4('192.0.2.20')]),
    virtual('bond0.42', 'vlan', [v4('198.51.100.42')], { link: 'bond0' }),
    link('enp3s0', [], { master: 'br0', parentdev: '0000:03:00.0' }),
    virtual('br0', 'bridge', [v6('2001:db8::20')]),
    virtual('docker0', 'bridge', [v4('192.0.2.129', { prefixlen: 25 })]),
    virtual('veth1a2b', 'veth', [], { master: 'docker0', link: null }),
    virtual('tun0', 'tun', [v4('198.51.100.200')], { link_type: 'none' }),
    virtual('wg0', 'wireguard', [v4('198.51.100.201')], { link_type: 'none' }),
    link('eth9', [v4('192.0.2.99')], { parentdev: '0000:09:00.0', operstate: 'DOWN', flags: ['BROADCAST', 'MULTICAST'] }),
    link('eth8', [v4('192.0.2.98')], { parentdev: '0000:08:00.0', operstate: 'UNKNOWN' }),
  ];
  assert.deepEqual(rescueAddresses(links).map((a) => `${a.ifname} ${a.address}`), ['bond0 192.0.2.20', 'bond0.42 198.51.100.42', 'br0 2001:db8::20', 'eth8 192.0.2.98']);
});

test('older iproute2 without parentdev: plain links count, kinds of virtual links do not', () => {
  const old = (l: IpLink): IpLink => {
    const { parentdev: _p, ...rest } = l as IpLink & { parentbus?: string };
    return rest;
  };
  const links = [lo, old(link('eth0', [v4('192.0.2.10')])), virtual('docker0', 'bridge', [v4('192.0.2.129')]), virtual('veth0', 'veth', [], { master: 'docker0' })];
  assert.deepEqual(rescueAddresses(links).map((a) => a.ifname), ['eth0']);
});

test('nothing to copy, nothing to warn about: only loopback and link-local addresses', () => {
  const v = rescueNetwork([lo, link('eth0', [v6('fe80::1', { scope: 'link' })])], noConf, []);
  assert.equal(v.warn, false);
  assert.deepEqual(v.copied, []);
});
