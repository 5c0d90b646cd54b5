// How the live pages write times, durations, sizes and event details for people. The same
// strings go into the server-rendered page and into the JSON the live streams send, so a page
// reads the same whether it was rendered or updated.

import type { IncidentBucket, RecoveryPhase } from '../../../core/recovery.ts';
import { formatBytes } from '../../../core/bytes.ts';

/** "2026-11-30 10:03:12 UTC": unambiguous across an incident team's time zones. */
export function timeText(iso: string | null): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** "1h 02m", "3m 07s", "12s". */
export function durationText(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

export const bytesText = (n: number | null): string => (n === null ? '-' : formatBytes(n));

export const BUCKET_LABELS: Record<IncidentBucket, string> = {
  pending: 'Pending',
  fetching: 'Fetching',
  applied: 'Applied',
  recovering: 'Recovering',
  done: 'Done',
  failed: 'Failed',
  silent: 'Silent',
};

export const PHASE_LABELS: Record<RecoveryPhase, string> = {
  resolving: 'resolving',
  pending: 'pending',
  assigned: 'assigned',
  fetching: 'fetching',
  applied: 'applied',
  recovering: 'recovering',
  done: 'done',
  failed: 'failed',
};

/** An event's detail as one line: `key value, key value`; nested values as JSON; bounded. */
export function detailText(detail: Readonly<Record<string, unknown>>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(detail)) {
    if (v === null || v === undefined || v === '') continue;
    const value = typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
    parts.push(`${k} ${value}`);
  }
  const s = parts.join(', ');
  return s.length > 400 ? `${s.slice(0, 399)}…` : s;
}
