// Will a rescue image made here bring up THIS machine's addresses on every machine that boots
// it? ReaR 2.7 recreates the original system's network in the rescue system
// (rescue/GNU/Linux/310_network_devices.sh: every UP interface somehow linked to a physical
// device, with its global addresses) unless the rescue system uses DHCP
// (prep/GNU/Linux/210_include_dhclient.sh). For a hardware-class image that means the
// template's static address on every machine of the class, clashing with the template while
// it is alive. Pure: the caller reads `ip -d -j addr show`, ReaR's config files and the process list.

/** What `ip -d -j addr show` says about one link (only the fields used here). */
export interface IpLink {
  readonly ifname?: string;
  readonly flags?: readonly string[];
  readonly operstate?: string;
  readonly link_type?: string;
  /** The bond, bridge or team this link is a port of. */
  readonly master?: string;
  /** The lower link of a VLAN or macvlan. */
  readonly link?: string | null;
  /** Set for a link with a device behind it (/sys/class/net/X/device); iproute2 5.x and newer. */
  readonly parentdev?: string;
  readonly linkinfo?: { readonly info_kind?: string };
  readonly addr_info?: readonly {
    readonly family?: string;
    readonly local?: string;
    readonly prefixlen?: number;
    readonly scope?: string;
    /** A leased (DHCP, SLAAC) address with a lifetime; absent for a configured one. */
    readonly dynamic?: boolean;
  }[];
}

export interface Assignment {
  readonly value: string;
  /** The file the assignment that counts is in. */
  readonly file: string;
}

/** The ReaR settings that decide the rescue system's networking. */
export interface RearNetSettings {
  readonly USE_DHCLIENT?: Assignment;
  readonly USE_STATIC_NETWORKING?: Assignment;
  readonly DHCLIENT_BIN?: Assignment;
}

export const REAR_NET_VARS = ['USE_DHCLIENT', 'USE_STATIC_NETWORKING', 'DHCLIENT_BIN'] as const;

/**
 * The last plain assignment of each variable over the files in the order ReaR sources them
 * (site.conf, then local.conf). A simple parse, not bash: `NAME=value`, `NAME="value"`,
 * `NAME='value'`, optionally after `export`; an assignment inside an `if` or a function counts
 * as if it always ran, and `$VAR` expansions are taken literally.
 */
export function rearNetSettings(files: readonly { readonly file: string; readonly text: string }[]): RearNetSettings {
  const out: { -readonly [K in keyof RearNetSettings]: Assignment } = {};
  for (const { file, text } of files) {
    for (const line of text.split('\n')) {
      const m = /^\s*(?:export\s+)?([A-Z_]+)=("([^"]*)"|'([^']*)'|[^\s;#]*)/.exec(line);
      if (!m || !(REAR_NET_VARS as readonly string[]).includes(m[1] as string)) continue;
      out[m[1] as keyof RearNetSettings] = { value: m[3] ?? m[4] ?? (m[2] as string), file };
    }
  }
  return out;
}

/** ReaR's is_true and is_false (lib/global-functions.sh): anything else, empty included, is neither. */
export const rearTrue = (v: string | undefined): boolean => /^(?:[ty]|yes|true|1)$/i.test(v ?? '');
export const rearFalse = (v: string | undefined): boolean => /^(?:[fn]|no|false|0)$/i.test(v ?? '');

/** Process names ReaR 2.7 takes for a running DHCP client (its `ps -e | grep` in 210_include_dhclient.sh). */
export const dhcpClients = (processNames: readonly string[]): string[] =>
  [...new Set(processNames.filter((n) => /^(?:dhcpcd|dhclient|dhcp6c|dhclient6)/.test(n)))].sort();

export interface LinkAddress {
  readonly ifname: string;
  readonly family: 'inet' | 'inet6';
  readonly address: string;
  readonly prefixlen: number;
  readonly dynamic: boolean;
}

// Kinds that never stand for hardware, should no link report parentdev (old iproute2).
const VIRTUAL_KINDS = new Set(['veth', 'dummy', 'tun', 'wireguard', 'vxlan', 'geneve', 'gre', 'gretap', 'ip6gre', 'ip6gretap', 'ipip', 'sit', 'ip6tnl', 'vti', 'vti6', 'ifb', 'nlmon', 'vrf', 'bareudp']);

/** ReaR's "UP": operstate up, or for drivers that do not set it, a carrier (LOWER_UP). */
const isUp = (l: IpLink): boolean => l.operstate === 'UP' || (l.operstate !== 'DOWN' && (l.flags ?? []).includes('LOWER_UP'));

/**
 * Global addresses on UP links that ReaR would set up in the rescue system: links with a
 * device behind them, or bonds, bridges, teams and VLANs over such links (docker0 over veths
 * is not one). Mirrors 310_network_devices.sh's is_linked_to_physical.
 */
export function rescueAddresses(links: readonly IpLink[]): LinkAddress[] {
  const byName = new Map(links.filter((l) => l.ifname).map((l) => [l.ifname as string, l]));
  const knowsParents = links.some((l) => l.parentdev !== undefined);
  const physical = (l: IpLink): boolean => {
    if (l.link_type === 'loopback') return false;
    if (knowsParents) return l.parentdev !== undefined;
    const kind = l.linkinfo?.info_kind;
    return kind === undefined ? l.link_type !== 'none' : false;
  };
  const linked = (l: IpLink, seen: Set<string>): boolean => {
    if (!l.ifname || seen.has(l.ifname)) return false;
    seen.add(l.ifname);
    if (physical(l)) return true;
    if (VIRTUAL_KINDS.has(l.linkinfo?.info_kind ?? '')) return false;
    const lower = links.filter((x) => x.master === l.ifname);
    const parent = typeof l.link === 'string' ? byName.get(l.link) : undefined;
    return [...lower, ...(parent ? [parent] : [])].some((x) => linked(x, seen));
  };
  const out: LinkAddress[] = [];
  for (const l of links) {
    if (!l.ifname || !isUp(l) || !linked(l, new Set())) continue;
    for (const a of l.addr_info ?? []) {
      if (a.scope !== 'global' || (a.family !== 'inet' && a.family !== 'inet6') || !a.local) continue;
      out.push({ ifname: l.ifname, family: a.family, address: a.local, prefixlen: a.prefixlen ?? (a.family === 'inet' ? 32 : 128), dynamic: a.dynamic === true });
    }
  }
  return out;
}

export interface RescueNetwork {
  /** How the rescue system will bring up its network, as far as can be told from here. */
  readonly mode: 'dhcp' | 'static' | 'unsure';
  /** Why, in words: the setting and its file, or what was (not) detected. */
  readonly reason: string;
  /** This machine's addresses that the rescue system would bring up as they are. */
  readonly copied: readonly LinkAddress[];
  /** mode is not dhcp and addresses would be copied: every machine booting the image takes them. */
  readonly warn: boolean;
}

/**
 * ReaR 2.7's decision at `rear mkrescue` time: USE_STATIC_NETWORKING=yes overrules everything
 * (58-start-dhclient.sh and 60-network-devices.sh); USE_DHCLIENT=no turns DHCP off,
 * USE_DHCLIENT=yes on; unset, DHCP is on when a DHCP client process runs (also when
 * systemd-networkd or NetworkManager does DHCP, which is not checked here: leased addresses
 * without a client process make the verdict "unsure"), or when DHCLIENT_BIN is set.
 */
export function rescueNetwork(links: readonly IpLink[], conf: RearNetSettings, processNames: readonly string[]): RescueNetwork {
  const addrs = rescueAddresses(links);
  const said = (name: keyof RearNetSettings): string => `${name}=${conf[name]?.value} in ${conf[name]?.file}`;
  const verdict = (mode: RescueNetwork['mode'], reason: string, copied: readonly LinkAddress[]): RescueNetwork =>
    ({ mode, reason, copied: mode === 'dhcp' ? [] : copied, warn: mode !== 'dhcp' && copied.length > 0 });
  // Set to static on purpose: even a leased address is written into the image as it is now.
  if (rearTrue(conf.USE_STATIC_NETWORKING?.value)) return verdict('static', `${said('USE_STATIC_NETWORKING')} (it overrules USE_DHCLIENT)`, addrs);
  if (rearFalse(conf.USE_DHCLIENT?.value)) return verdict('static', said('USE_DHCLIENT'), addrs);
  if (rearTrue(conf.USE_DHCLIENT?.value)) return verdict('dhcp', said('USE_DHCLIENT'), []);
  const clients = dhcpClients(processNames);
  if (clients.length) return verdict('dhcp', `USE_DHCLIENT is not set and a DHCP client runs here (${clients.join(', ')}): ReaR enables DHCP in the rescue system by itself`, []);
  if (conf.DHCLIENT_BIN?.value) return verdict('dhcp', said('DHCLIENT_BIN'), []);
  const fixed = addrs.filter((a) => !a.dynamic);
  if (addrs.some((a) => a.dynamic)) {
    return verdict('unsure', 'USE_DHCLIENT is not set and no dhclient or dhcpcd process runs, although some addresses here are leased: ReaR enables DHCP only if it finds systemd-networkd or NetworkManager doing DHCP', fixed);
  }
  return verdict('static', 'USE_DHCLIENT is not set and no DHCP client runs here, so ReaR recreates this network setup as it is', fixed);
}
