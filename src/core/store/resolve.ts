// Which host is this machine? The resolution order of the design (explicit id, then MAC, DMI
// UUID, serial, hostname) as one function over the store's lookups, so the JSON API, the ReaR
// URL and the DRLM routes all resolve alike. A fact that matches more than one host proves
// nothing and is skipped (cloned VMs, shared placeholder values).

import { RuError } from '../errors.ts';
import { canonicalFacts, type FactKind, type MachineFacts } from './facts.ts';
import type { Host, HostStore } from './metadata.ts';

export const RESOLUTION_ORDER: readonly FactKind[] = ['mac', 'uuid', 'serial', 'hostname'];

export type Resolution =
  | { readonly host: Host; readonly by: FactKind | 'id'; readonly value: string }
  | { readonly host: null; readonly ambiguous: readonly FactKind[] };

/** An explicit id that names no host is an error (HOST_UNKNOWN), never a fallback to facts. */
export async function resolveHost(store: Pick<HostStore, 'getHost' | 'findHosts'>, facts: MachineFacts & { id?: string | null }): Promise<Resolution> {
  if (facts.id) {
    const host = await store.getHost(facts.id);
    if (!host) throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(facts.id)}`, { host: facts.id });
    return { host, by: 'id', value: facts.id };
  }
  const c = canonicalFacts(facts);
  const values: Record<FactKind, readonly string[]> = {
    mac: c.macs,
    uuid: c.uuid ? [c.uuid] : [],
    serial: c.serial ? [c.serial] : [],
    hostname: c.hostname ? [c.hostname] : [],
  };
  const ambiguous: FactKind[] = [];
  for (const kind of RESOLUTION_ORDER) {
    const found = new Map<string, { host: Host; value: string }>();
    for (const value of values[kind]) {
      for (const host of await store.findHosts(kind, value)) if (!found.has(host.id)) found.set(host.id, { host, value });
    }
    if (found.size === 1) {
      const [only] = found.values();
      return { host: only!.host, by: kind, value: only!.value };
    }
    if (found.size > 1) ambiguous.push(kind);
  }
  return { host: null, ambiguous };
}
