// How one event changes a stored recovery, written once so that every metadata backend moves a
// recovery the same way (the phase itself is core/recovery.ts's nextPhase). Pure; it lives
// beside the backends only because they are its only callers, as layer-problems.ts does.

import { isEnded, nextPhase } from '../../core/recovery.ts';
import type { Iso, Recovery } from '../../core/store/metadata.ts';
import type { CheckedRecoveryEvent } from '../../core/store/validate.ts';

/** The detail of the first event, 'booted' (docs/recoveries.md: the address it came from). */
export const bootedDetail = (address: string | null): Record<string, unknown> => (address === null ? {} : { address });

/**
 * The recovery after event `e` at `now`: the phase moved, updated and lastSign set, and each
 * link (host, pending, log, exit status, error) replaced by the event's value when it gives one.
 * `ended` is the time it became done or failed: kept while the phase stays the same, set anew
 * when it turns from done to failed (or back), cleared when a new attempt reopens it.
 */
export function movedRecovery(r: Recovery, e: CheckedRecoveryEvent, now: Iso): Recovery {
  const exitStatus = e.exitStatus ?? r.exitStatus;
  const phase = nextPhase(r.phase, e.kind, e.exitStatus ?? null);
  const ended = !isEnded(phase) ? null : phase === r.phase && r.ended !== null ? r.ended : now;
  return {
    ...r,
    host: e.host ?? r.host,
    pending: e.pending ?? r.pending,
    log: e.log ?? r.log,
    exitStatus,
    error: e.error ?? r.error,
    phase,
    updated: now,
    lastSign: now,
    ended,
  };
}
