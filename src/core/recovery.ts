// What a recovery is, as data: its phases, the events that move it, and when it counts as
// silent. Pure, so every store moves a recovery the same way and the console, the CLI and the
// tests read one definition (docs/recoveries.md).

/** Where a recovery stands. "silent" is not a phase: it is an active phase read against the clock. */
export type RecoveryPhase = 'resolving' | 'pending' | 'assigned' | 'fetching' | 'applied' | 'recovering' | 'done' | 'failed';
export const RECOVERY_PHASES: readonly RecoveryPhase[] = ['resolving', 'pending', 'assigned', 'fetching', 'applied', 'recovering', 'done', 'failed'];

/**
 * booted: opened (first event, by the store). resolving: asked who it is. pending: recorded as a
 * pending machine. assigned: an admin assigned it (server-side). resolved: the server named its
 * host. fetched: bundle downloaded (version, bytes). verified: signature and manifest checked.
 * applied: committed (counts, layers). activation: one activation step's result. recover-started:
 * `rear recover` began (its log started). log: a recovery log was linked. finished: `rear
 * recover` ended (exitStatus). failed: rear-update itself gave up (error code and message).
 * note: anything else worth a line in the timeline (changes no phase).
 */
export type RecoveryEventKind =
  | 'booted' | 'resolving' | 'pending' | 'assigned' | 'resolved' | 'fetched' | 'verified' | 'applied' | 'activation'
  | 'recover-started' | 'log' | 'finished' | 'failed' | 'note';
export const RECOVERY_EVENT_KINDS: readonly RecoveryEventKind[] = [
  'booted', 'resolving', 'pending', 'assigned', 'resolved', 'fetched', 'verified', 'applied', 'activation', 'recover-started', 'log', 'finished', 'failed', 'note',
];

/** Kinds a rescue system may report itself (the others are the server's to record). */
export const REPORTED_KINDS: readonly RecoveryEventKind[] = ['resolving', 'fetched', 'verified', 'applied', 'activation', 'recover-started', 'finished', 'failed', 'note'];

export const isEnded = (p: RecoveryPhase): boolean => p === 'done' || p === 'failed';

/**
 * The phase after an event. An ended recovery stays ended, except that a new attempt in the same
 * boot (resolving, fetched, applied, recover-started: an operator ran apply or rear recover
 * again) reopens it. `finished` is done for exit status 0, failed otherwise.
 */
export function nextPhase(current: RecoveryPhase, kind: RecoveryEventKind, exitStatus?: number | null): RecoveryPhase {
  switch (kind) {
    case 'booted':
      return current;
    case 'resolving':
      return current === 'resolving' || isEnded(current) ? 'resolving' : current;
    case 'pending':
      return isEnded(current) ? current : 'pending';
    case 'assigned':
      return current === 'pending' || current === 'resolving' ? 'assigned' : current;
    case 'resolved':
      return current === 'resolving' || current === 'pending' || current === 'assigned' ? 'fetching' : current;
    case 'fetched':
    case 'verified':
      return current === 'applied' || current === 'recovering' ? current : 'fetching';
    case 'applied':
      return current === 'recovering' ? current : 'applied';
    case 'activation':
      return current;
    case 'recover-started':
    case 'log':
      return current === 'done' || current === 'failed' ? (kind === 'recover-started' ? 'recovering' : current) : 'recovering';
    case 'finished':
      return exitStatus === 0 ? 'done' : 'failed';
    case 'failed':
      return 'failed';
    case 'note':
      return current;
  }
}

/** Default: an active recovery with no sign of life (event, heartbeat, log bytes) for 5 minutes is silent. */
export const DEFAULT_SILENT_AFTER_MS = 5 * 60_000;

export function isSilent(r: { phase: RecoveryPhase; lastSign: string }, now: Date, silentAfterMs = DEFAULT_SILENT_AFTER_MS): boolean {
  return !isEnded(r.phase) && now.getTime() - Date.parse(r.lastSign) > silentAfterMs;
}

/** The incident view's buckets: each active recovery in its phase or "silent", ended ones as done/failed. */
export type IncidentBucket = 'pending' | 'fetching' | 'applied' | 'recovering' | 'done' | 'failed' | 'silent';
export const INCIDENT_BUCKETS: readonly IncidentBucket[] = ['pending', 'fetching', 'applied', 'recovering', 'done', 'failed', 'silent'];

export function bucketOf(r: { phase: RecoveryPhase; lastSign: string }, now: Date, silentAfterMs = DEFAULT_SILENT_AFTER_MS): IncidentBucket {
  if (isSilent(r, now, silentAfterMs)) return 'silent';
  switch (r.phase) {
    case 'resolving':
    case 'pending':
    case 'assigned':
      return 'pending';
    default:
      return r.phase;
  }
}
