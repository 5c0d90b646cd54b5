// The live pages' content as plain data (view models): built once per render or change, then
// either rendered to HTML on the server (views.ts) or sent as JSON over a live stream for the
// page's script to apply with DOM text nodes. Every string a rescue machine reported stays a
// plain string here; escaping happens where it is written out.

import { INCIDENT_BUCKETS, isEnded, type IncidentBucket, type RecoveryPhase } from '../../../core/recovery.ts';
import type { Hardware } from '../../../core/store/hardware.ts';
import type { Host, PendingMachine, RecoveryEvent } from '../../../core/store/metadata.ts';
import type { ServerContext } from '../../context.ts';
import type { MatchHint, RecoveryView } from '../../recoveries.ts';
import { BUCKET_LABELS, bytesText, detailText, durationText, timeText } from './format.ts';

export interface EventView {
  readonly seq: number;
  readonly time: string;
  readonly timeText: string;
  readonly kind: string;
  readonly actor: string | null;
  readonly message: string;
  readonly detail: string;
}

export const eventView = (e: RecoveryEvent): EventView => ({
  seq: e.seq,
  time: e.time,
  timeText: timeText(e.time),
  kind: e.kind,
  actor: e.actor,
  message: e.message,
  detail: detailText(e.detail),
});

export interface RecoveryRow {
  readonly id: number;
  /** The host, or null: an unknown machine. */
  readonly host: string | null;
  readonly phase: RecoveryPhase;
  readonly bucket: IncidentBucket;
  readonly silent: boolean;
  readonly active: boolean;
  readonly started: string;
  readonly startedText: string;
  readonly lastSign: string;
  readonly lastSignText: string;
  readonly ended: string | null;
  readonly endedText: string;
  /** Started to ended (or now), as text; the page's script keeps an active one ticking. */
  readonly elapsedText: string;
  readonly exitStatus: number | null;
  readonly error: string | null;
  readonly pending: number | null;
  readonly log: number | null;
  readonly address: string | null;
}

export function recoveryRow(r: RecoveryView, now: Date): RecoveryRow {
  const end = r.ended ? Date.parse(r.ended) : now.getTime();
  return {
    id: r.id,
    host: r.host,
    phase: r.phase,
    bucket: r.bucket,
    silent: r.silent,
    active: !isEnded(r.phase),
    started: r.started,
    startedText: timeText(r.started),
    lastSign: r.lastSign,
    lastSignText: timeText(r.lastSign),
    ended: r.ended,
    endedText: timeText(r.ended),
    elapsedText: durationText(end - Date.parse(r.started)),
    exitStatus: r.exitStatus,
    error: r.error,
    pending: r.pending,
    log: r.log,
    address: r.address,
  };
}

export interface IncidentState {
  readonly now: string;
  readonly counts: readonly { readonly bucket: IncidentBucket; readonly label: string; readonly n: number }[];
  readonly rows: readonly (RecoveryRow & { readonly events: readonly EventView[] })[];
  readonly pendingMachines: number;
}

/** How many of a recovery's newest events the incident view shows. */
const NEWEST_EVENTS = 3;
const ACTIVE_ROWS = 200;

export async function incidentState(ctx: ServerContext): Promise<IncidentState> {
  const now = ctx.now();
  // Counts over the recent history (the service's window), rows of every active recovery.
  const [all, active, pending] = await Promise.all([
    ctx.recoveries.list({ limit: 1 }),
    ctx.recoveries.list({ active: true, limit: ACTIVE_ROWS }),
    ctx.meta.listPending({ unassigned: true }),
  ]);
  const rows = await Promise.all(active.recoveries.map(async (r) => {
    const events = await ctx.meta.listRecoveryEvents(r.id);
    return { ...recoveryRow(r, now), events: events.slice(-NEWEST_EVENTS).reverse().map(eventView) };
  }));
  // Silent ones first (they need someone), then the longest running.
  rows.sort((a, b) => Number(b.silent) - Number(a.silent) || a.started.localeCompare(b.started) || a.id - b.id);
  return {
    now: now.toISOString(),
    counts: INCIDENT_BUCKETS.map((b) => ({ bucket: b, label: BUCKET_LABELS[b], n: all.counts[b] ?? 0 })),
    rows,
    pendingMachines: pending.length,
  };
}

export interface HardwareView {
  readonly disks: readonly (readonly [string, string, string])[];
  readonly nics: readonly (readonly [string, string, string])[];
  readonly summary: readonly (readonly [string, string])[];
}

export function hardwareView(h: Hardware | null): HardwareView | null {
  if (!h) return null;
  const summary: [string, string][] = [];
  if (h.memory !== null) summary.push(['Memory', bytesText(h.memory)]);
  if (h.cpus !== null || h.cpuModel !== null) summary.push(['CPUs', [h.cpus === null ? null : String(h.cpus), h.cpuModel].filter((x) => x !== null).join(' × ')]);
  return {
    disks: h.disks.map((d) => [d.name, bytesText(d.size), d.model ?? '-'] as const),
    nics: h.nics.map((n) => [n.name, n.mac ?? '-', n.driver ?? '-'] as const),
    summary,
  };
}

export interface PendingCard {
  readonly id: number;
  readonly title: string;
  readonly facts: readonly (readonly [string, string])[];
  readonly hardware: HardwareView | null;
  readonly hints: readonly MatchHint[];
  readonly recovery: number | null;
  readonly assignedHost: string | null;
  readonly firstSeen: string;
  readonly lastSeen: string;
}

export function machineFacts(p: PendingMachine): [string, string][] {
  return [
    ['MACs', p.facts.macs.length ? p.facts.macs.join(' ') : '-'],
    ['UUID', p.facts.uuid ?? '-'],
    ['Serial', p.facts.serial ?? '-'],
    ['Hostname', p.facts.hostname ?? '-'],
    ['Address', p.address ?? '-'],
    ['First seen', timeText(p.firstSeen)],
    ['Last seen', timeText(p.lastSeen)],
  ];
}

export async function pendingCard(ctx: ServerContext, p: PendingMachine): Promise<PendingCard> {
  const [recs, hints] = await Promise.all([
    ctx.meta.listRecoveries({ pending: p.id, limit: 20 }),
    ctx.recoveries.hints(p.id).catch(() => [] as MatchHint[]),
  ]);
  const withHardware = recs.find((r) => r.hardware !== null);
  return {
    id: p.id,
    title: `Machine ${p.id}${p.facts.hostname ? ` (${p.facts.hostname})` : ''}`,
    facts: machineFacts(p),
    hardware: hardwareView(withHardware?.hardware ?? null),
    hints,
    recovery: recs[0]?.id ?? null,
    assignedHost: p.assignedHost,
    firstSeen: p.firstSeen,
    lastSeen: p.lastSeen,
  };
}

export interface PendingState {
  readonly machines: readonly PendingCard[];
}

export async function pendingState(ctx: ServerContext): Promise<PendingState> {
  const list = await ctx.meta.listPending({ unassigned: true });
  return { machines: await Promise.all(list.map((p) => pendingCard(ctx, p))) };
}

/** A host as the assign confirmation shows it beside the machine. */
export interface HostSide {
  readonly facts: readonly (readonly [string, string])[];
  readonly layout: { readonly version: number; readonly disks: readonly (readonly [string, string])[] } | null;
}

export async function hostSide(ctx: ServerContext, h: Host): Promise<HostSide> {
  const layouts = await ctx.meta.listHostLayouts();
  const l = layouts.find((x) => x.host === h.id) ?? null;
  return {
    facts: [
      ['Host', h.id],
      ['Hostnames', h.hostnames.length ? h.hostnames.join(' ') : '-'],
      ['MACs', h.macs.length ? h.macs.join(' ') : '-'],
      ['UUID', h.uuid ?? '-'],
      ['Serial', h.serial ?? '-'],
      ['Class', h.class ?? '-'],
      ['Pinned version', h.pinned === null ? '-' : String(h.pinned)],
    ],
    layout: l ? { version: l.version, disks: l.disks.map((d) => [d.device, bytesText(d.size)] as const) } : null,
  };
}
