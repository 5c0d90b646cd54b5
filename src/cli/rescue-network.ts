// install-rear --class: an image made for a hardware class boots on every machine of the class,
// and ReaR recreates the template's network in it. Say so when that would bring up the
// template's own static addresses (a clash while the template is alive), and name the safe
// ways. A warning only: the template may be dead, or its address meant to move.

import { probeNetwork, type NetworkProbe } from '../adapters/rear/network-probe.ts';
import { rearNetSettings, rescueNetwork, type RescueNetwork } from '../core/rescue-network.ts';

/** For install-rear --help: the two ways ReaR 2.7 offers (docs/rescue-network.md has the details). */
export const RESCUE_NETWORK_HELP = `Network of a class image (--class): ReaR sets up the rescue system's network as the
template's, so a template with a static address brings that address up on every machine
that boots the image, clashing with the template while it runs. install-rear warns when it
sees this (a static global address on a device, and no DHCP for the rescue system). Safe ways:
  DHCP         USE_DHCLIENT=yes in /etc/rear/local.conf, then rear mkrescue. (ReaR also turns
               it on by itself when a DHCP client runs here, unless USE_DHCLIENT=no or
               USE_STATIC_NETWORKING=yes.)
  per machine  ReaR's boot options ip=ADDRESS nm=NETMASK netdev=DEVICE gw=GATEWAY: only that
               device is set up (nm defaults to 255.255.255.0, netdev to eth0); without gw=
               the template's routes are still added.
  (ReaR's \`dhcp\` boot option is no way out: on an image made without DHCP it leaves the
  rescue system with no network at all.) See docs/rescue-network.md.`;

const fmt = (v: RescueNetwork): string => v.copied.map((a) => `${a.ifname} ${a.address}/${a.prefixlen}`).join(', ');

/** The lines install-rear prints (each as a note), none when there is nothing to say. */
export function rescueNetworkLines(probe: NetworkProbe, cls: string): string[] {
  if (!probe.links) return [`could not check whether the ${cls} image would bring up this machine's own addresses (${probe.error}); see docs/rescue-network.md`];
  const v = rescueNetwork(probe.links, rearNetSettings(probe.confFiles), probe.processNames);
  if (!v.warn) return [];
  return [
    `WARNING: the ${cls} image ${v.mode === 'unsure' ? 'may bring' : 'would bring'} up this machine's own address(es) on every machine that boots it: ${fmt(v)}`,
    `  (${v.reason}). While this machine runs, that clashes with it. Safe ways:`,
    '  - DHCP in the rescue system: USE_DHCLIENT=yes in /etc/rear/local.conf (and no USE_STATIC_NETWORKING=yes), then rear mkrescue;',
    '  - or per machine, ReaR\'s boot options: ip=ADDRESS nm=NETMASK netdev=DEVICE gw=GATEWAY (only that device is set up).',
    '  See install-rear --help and docs/rescue-network.md. The image is set up all the same.',
  ];
}

/** Probes this machine (`ip`, ReaR's config below root, the process list) and judges it. */
export const checkRescueNetwork = (root: string, cls: string): string[] => rescueNetworkLines(probeNetwork(root), cls);
