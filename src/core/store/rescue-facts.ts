// Which of its identity facts a machine may send to be resolved, and why each other one is left
// out. A ReaR rescue system carries over what the machine the image was made on (the template)
// was: mkrescue writes the template's hostname into the image and the rescue system boots with
// it, and a VM cloned from the template has the template's DMI UUID and serial. Sent, such a
// value resolves the machine TO THE TEMPLATE, and `rear recover` would recreate the template's
// disks on it. So in a rescue system a fact equal to the image's recorded template value is
// left out, and a hostname is sent only when it came from somewhere else: stated explicitly, or
// differing from the image's (DHCP). Random and bond addresses, placeholders and malformed
// values are left out everywhere. Resolution never guesses: a machine left with too few facts
// goes pending for an admin. Pure: the adapter (adapters/fs/machine-facts.ts) observes, this
// decides; docs/resolution.md states the rules.

import { RuError } from '../errors.ts';
import { classifyFact, type CanonicalFacts, type FactKind } from './facts.ts';

/** One physical network interface as sysfs shows it. */
export interface ObservedInterface {
  readonly name: string;
  /** `address`: what the interface uses now. */
  readonly address: string | null;
  /** `bonding_slave/perm_hwaddr`: a bond slave's own address (its `address` is the bond's). */
  readonly permAddress?: string | null;
  /** `addr_assign_type`: 0 permanent, 1 random, 2 stolen, 3 set by user space. */
  readonly assignType?: number | null;
}

/** What the machine shows about itself, unjudged. */
export interface ObservedMachine {
  /** Physical interfaces (loopback and virtual ones are not the hardware's and not observed). */
  readonly interfaces: readonly ObservedInterface[];
  readonly uuid: string | null;
  readonly serial: string | null;
  /** The running system's hostname (proc/sys/kernel/hostname). */
  readonly hostname: string | null;
  /** The content of /etc/rear-release, which only a ReaR rescue system has; null elsewhere. */
  readonly rearRelease: string | null;
  /** The image's /etc/HOSTNAME and /etc/hostname as mkrescue wrote them (the template's name). */
  readonly imageHostnameFiles: readonly { readonly path: string; readonly value: string }[];
}

/** What the settings say (apply --hostname, REAR_UPDATE_HOSTNAME, REAR_UPDATE_IMAGE_*). */
export interface FactSettings {
  /** An explicit hostname for this machine (kernel command line, flag, environment). */
  readonly hostname?: string | null;
  /** The template's facts, recorded by install-rear when the image was set up. */
  readonly imageHostname?: string | null;
  readonly imageUuid?: string | null;
  readonly imageSerial?: string | null;
}

export type LeftOutRule =
  | 'template' // the image's (template's) own value
  | 'image-unknown' // a rescue system that does not say which hostname its image was made with
  | 'overridden' // replaced by the explicit hostname
  | 'random-mac' // addr_assign_type 1
  | 'bond-address' // a bond slave's current address, which is the bond's
  | 'placeholder'
  | 'malformed';

export interface LeftOutFact {
  readonly kind: FactKind;
  /** The value as observed (not normalized: a malformed one has no normal form). */
  readonly value: string;
  readonly rule: LeftOutRule;
  readonly reason: string;
}

export interface FactReport {
  /** What is sent to the server. */
  readonly facts: CanonicalFacts;
  readonly leftOut: readonly LeftOutFact[];
  /** A ReaR rescue system (/etc/rear-release exists). */
  readonly rescue: boolean;
  /** Where the sent hostname came from: stated explicitly, or the running system's. */
  readonly hostnameFrom: 'explicit' | 'system' | null;
}

const PROBLEM: Readonly<Record<'malformed' | 'placeholder', (kind: FactKind) => string>> = {
  placeholder: (kind) => kind === 'hostname'
    ? 'not a name of this machine (localhost, (none))'
    : 'a placeholder that firmware ships on many machines: it identifies nothing',
  malformed: (kind) => `not a valid ${kind === 'mac' ? 'Ethernet MAC address' : kind === 'uuid' ? 'UUID' : kind}`,
};

/** The first label: mkrescue writes the short name (hostname -s), a publisher may send the FQDN. */
const shortName = (h: string): string => h.split('.')[0] as string;

const canonical = (kind: FactKind, v: string | null | undefined): string | null =>
  typeof v === 'string' ? classifyFact(kind, v).value : null;

export function factsToSend(m: ObservedMachine, s: FactSettings = {}): FactReport {
  const leftOut: LeftOutFact[] = [];
  const drop = (kind: FactKind, value: string, rule: LeftOutRule, reason: string): null => {
    leftOut.push({ kind, value, rule, reason });
    return null;
  };
  /** The canonical value, or null with the reason recorded. */
  const judged = (kind: FactKind, raw: string | null | undefined): string | null => {
    // An empty value (QEMU's default serial, a board without one) is no fact, not one left out.
    if (typeof raw !== 'string' || raw.trim() === '') return null;
    const c = classifyFact(kind, raw);
    return c.problem === null ? c.value : drop(kind, raw.trim(), c.problem, PROBLEM[c.problem](kind));
  };
  const rescue = m.rearRelease !== null;

  // MACs: the hardware's own addresses only.
  const macs = new Set<string>();
  const bondAddresses: { name: string; address: string; perm: string }[] = [];
  for (const i of m.interfaces) {
    const perm = i.permAddress?.trim() ? i.permAddress.trim() : null;
    if (perm !== null) {
      const v = judged('mac', perm);
      if (v !== null) macs.add(v);
      if (i.address) bondAddresses.push({ name: i.name, address: i.address, perm: v ?? perm });
      continue;
    }
    if (!i.address) continue;
    if (i.assignType === 1) {
      drop('mac', i.address.trim(), 'random-mac', `${i.name}'s address is random (addr_assign_type 1): made up at boot, it names no hardware`);
      continue;
    }
    const v = judged('mac', i.address);
    if (v !== null) macs.add(v);
  }
  for (const b of bondAddresses) {
    const v = canonical('mac', b.address);
    if (v !== null && !macs.has(v)) drop('mac', b.address.trim(), 'bond-address', `${b.name} is a bond slave: that is the bond's address; its permanent address ${b.perm} is sent instead`);
  }

  // DMI: in a rescue system, not the template's.
  const templateDmi = (kind: 'uuid' | 'serial', raw: string | null, recorded: string | null | undefined): string | null => {
    const v = judged(kind, raw);
    if (v === null || !rescue || v !== canonical(kind, recorded)) return v;
    const what = kind === 'uuid' ? 'DMI UUID' : 'DMI serial';
    return drop(kind, raw!.trim(), 'template', `it is the ${what} of the machine the rescue image was made on (the template, REAR_UPDATE_IMAGE_${kind.toUpperCase()}): this is the template itself, which its MACs still identify, or a clone of it, which must not be resolved to the template`);
  };
  const uuid = templateDmi('uuid', m.uuid, s.imageUuid);
  const serial = templateDmi('serial', m.serial, s.imageSerial);

  // Hostname: explicit, or the running system's when it is not the image's.
  let hostname: string | null = null;
  let hostnameFrom: FactReport['hostnameFrom'] = null;
  if (typeof s.hostname === 'string' && s.hostname.trim() !== '') {
    const c = classifyFact('hostname', s.hostname);
    if (c.problem !== null) {
      throw new RuError('CONFIG_INVALID', `the explicit hostname ${JSON.stringify(s.hostname)} (apply --hostname, REAR_UPDATE_HOSTNAME, kernel option rear_update=hostname=) is ${c.problem === 'malformed' ? 'not a valid hostname' : 'a placeholder (localhost)'}`, { setting: 'REAR_UPDATE_HOSTNAME', value: s.hostname });
    }
    hostname = c.value;
    hostnameFrom = 'explicit';
    const own = canonical('hostname', m.hostname);
    if (m.hostname && own !== hostname) drop('hostname', m.hostname.trim(), 'overridden', `replaced by the explicitly given hostname ${hostname} (REAR_UPDATE_HOSTNAME)`);
  } else {
    const own = judged('hostname', m.hostname);
    if (own !== null && rescue) {
      const image = [...m.imageHostnameFiles.map((f) => f.value), s.imageHostname]
        .map((h) => canonical('hostname', h))
        .filter((h): h is string => h !== null);
      if (image.length === 0) {
        drop('hostname', m.hostname!.trim(), 'image-unknown', 'this rescue system does not say which hostname its image was made with (no /etc/HOSTNAME, /etc/hostname or REAR_UPDATE_IMAGE_HOSTNAME), so this one may be the template\'s; give it explicitly with rear_update=hostname=NAME');
      } else if (image.some((h) => shortName(h) === shortName(own))) {
        drop('hostname', m.hostname!.trim(), 'template', 'it is the rescue image\'s own (the template\'s), not this machine\'s');
      } else {
        hostname = own;
        hostnameFrom = 'system';
      }
    } else if (own !== null) {
      hostname = own;
      hostnameFrom = 'system';
    }
  }

  return { facts: { macs: [...macs].sort(), uuid, serial, hostname }, leftOut, rescue, hostnameFrom };
}

/** One line per left-out fact: "hostname e229 left out: it is the rescue image's own ...". */
export const leftOutLines = (r: FactReport): string[] =>
  r.leftOut.map((l) => `${l.kind} ${l.value === '' ? '(empty)' : l.value} left out: ${l.reason}`);
