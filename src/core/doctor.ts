// What `rear-update doctor` says, and the judgements that need no I/O: a check's result
// (OK, WARN, FAIL, or SKIP when an earlier failure keeps it from running), how results print,
// whether they fail the run, and the thresholds for disk space, clock, token scope, the last
// publish and the rescue image's age — decided here so that the tests and docs/doctor.md can
// name them. The checks themselves (files, HTTP, the store) are in src/cli/doctor/.

export type CheckStatus = 'OK' | 'WARN' | 'FAIL' | 'SKIP';

export interface CheckResult {
  readonly check: string;
  readonly status: CheckStatus;
  readonly detail: string;
  /** A concrete command (or edit) that cures a WARN or FAIL; null otherwise. */
  readonly fix: string | null;
}

export const ok = (check: string, detail: string): CheckResult => ({ check, status: 'OK', detail, fix: null });
export const warn = (check: string, detail: string, fix: string): CheckResult => ({ check, status: 'WARN', detail, fix });
export const fail = (check: string, detail: string, fix: string): CheckResult => ({ check, status: 'FAIL', detail, fix });
export const skip = (check: string, why: string): CheckResult => ({ check, status: 'SKIP', detail: why, fix: null });

/** A WARN or FAIL made from a judgement below. */
export type Verdict = { readonly status: 'OK'; readonly detail: string } | { readonly status: 'WARN' | 'FAIL'; readonly detail: string };

export const resultOf = (check: string, v: Verdict, fix: string): CheckResult =>
  (v.status === 'OK' ? ok(check, v.detail) : { check, status: v.status, detail: v.detail, fix });

/** Any FAIL fails the run (exit 1); WARN and SKIP do not. */
export const anyFailed = (rs: readonly CheckResult[]): boolean => rs.some((r) => r.status === 'FAIL');

/** `STATUS  check  detail`, and for WARN and FAIL the fix on the next line. Control characters never reach a terminal. */
export function formatResults(rs: readonly CheckResult[]): string[] {
  const width = Math.max(0, ...rs.map((r) => r.check.length));
  const clean = (s: string): string => s.replace(/\p{Cc}+/gu, ' ');
  const lines: string[] = [];
  for (const r of rs) {
    lines.push(`${r.status.padEnd(4)}  ${r.check.padEnd(width)}  ${clean(r.detail)}`);
    if (r.fix !== null && (r.status === 'WARN' || r.status === 'FAIL')) lines.push(`${' '.repeat(6 + width)}  fix: ${clean(r.fix)}`);
  }
  return lines;
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/**
 * The server's data directory: WARN under 10 % free or under 1 GiB (a default --max-upload
 * publish may not fit), FAIL under 1 % or under 100 MiB (SQLite's journal and one ordinary
 * configuration bundle may not).
 */
export const DISK = { warnFraction: 0.1, warnBytes: GiB, failFraction: 0.01, failBytes: 100 * MiB } as const;

export function diskVerdict(free: number, total: number, fmt: (n: number) => string): Verdict {
  const pct = total > 0 ? (100 * free) / total : 0;
  const detail = `${fmt(free)} free of ${fmt(total)} (${pct.toFixed(1)} %)`;
  if (free < DISK.failBytes || free < DISK.failFraction * total) return { status: 'FAIL', detail: `${detail}: below 1 % or 100 MiB, publishes and log uploads will fail with NO_SPACE` };
  if (free < DISK.warnBytes || free < DISK.warnFraction * total) return { status: 'WARN', detail: `${detail}: below 10 % or 1 GiB` };
  return { status: 'OK', detail };
}

/**
 * The server has no peer to compare its clock with; what it wrote last is the reference: the
 * newest audit record (every publish, fetch and admin change makes one). A clock more than a
 * minute earlier than that went backwards (FAIL: token expiry and recovery times are wrong);
 * up to a minute earlier is WARN (several instances on one database whose clocks disagree).
 * A clock that runs ahead cannot be seen this way.
 */
export const CLOCK_SLACK_MS = 60_000;

export function clockVerdict(now: Date, newest: string | null): Verdict {
  if (newest === null) return { status: 'OK', detail: `${now.toISOString()}; no audit record yet to compare with` };
  const behind = Date.parse(newest) - now.getTime();
  if (behind > CLOCK_SLACK_MS) return { status: 'FAIL', detail: `the system clock (${now.toISOString()}) is ${Math.round(behind / 1000)} s behind the newest audit record (${newest}): it went backwards` };
  if (behind > 0) return { status: 'WARN', detail: `the system clock (${now.toISOString()}) is ${Math.round(behind / 1000)} s behind the newest audit record (${newest})` };
  return { status: 'OK', detail: `${now.toISOString()}, not behind the newest audit record (${newest})` };
}

/** A token that works on this host's publishes: admin, or publish for exactly this host. */
export function scopeVerdict(scope: string, host: string): Verdict {
  if (scope === `publish:${host}`) return { status: 'OK', detail: `scope ${scope}` };
  if (scope === 'admin') return { status: 'OK', detail: `scope admin (works; a publish:${host} token would be enough)` };
  return { status: 'FAIL', detail: `scope ${scope} cannot publish host ${host}` };
}

/** A token that stops working within this span is worth a WARN. */
export const TOKEN_EXPIRY_WARN_MS = 14 * 86_400_000;

/** A successful publish older than this (the timer runs daily) is worth a WARN. */
export const PUBLISH_AGE_WARN_MS = 7 * 86_400_000;

export interface LastPublish {
  readonly at: string;
  readonly ok: boolean;
  readonly trigger: string;
  readonly version: number | null;
  readonly code: string | null;
  readonly message: string | null;
}

export function publishVerdict(s: LastPublish | null, now: Date): Verdict {
  if (s === null) return { status: 'FAIL', detail: 'no publish recorded on this system' };
  if (!s.ok) return { status: 'FAIL', detail: `the last publish (${s.at}, ${s.trigger}) failed: ${s.code ?? 'error'}${s.message ? `: ${s.message}` : ''}` };
  const age = now.getTime() - Date.parse(s.at);
  const detail = `${s.at} (${s.trigger}), ok${s.version !== null ? `, version ${s.version}` : ''}`;
  if (age > PUBLISH_AGE_WARN_MS) return { status: 'WARN', detail: `${detail}: more than 7 days ago` };
  return { status: 'OK', detail };
}

/** The rescue image (its newest output file) must be newer than the newest change of what publish packs. */
export function imageVerdict(image: { path: string; mtime: number } | null, config: { path: string; mtime: number } | null): Verdict {
  if (config === null) return { status: 'WARN', detail: 'no ReaR configuration to compare with (nothing under etc/rear, var/lib/rear/layout, var/lib/rear/recovery)' };
  if (image === null) return { status: 'WARN', detail: 'no rescue image found (fine when this host is recovered with its hardware class\'s image)' };
  const at = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  if (image.mtime < config.mtime) return { status: 'FAIL', detail: `${image.path} (${at(image.mtime)}) is older than ${config.path} (${at(config.mtime)})` };
  return { status: 'OK', detail: `${image.path} (${at(image.mtime)}) is newer than the configuration (${at(config.mtime)})` };
}

/** ReaR's version as its `readonly VERSION=2.7` line says; releases before 2.7 are not what rear-update is tested with. */
export function rearVersionVerdict(version: string | null, where: string): Verdict {
  if (version === null) return { status: 'WARN', detail: `${where} has no VERSION= line: cannot tell ReaR's version` };
  const m = /^(\d+)\.(\d+)/.exec(version);
  if (!m || Number(m[1]) < 2 || (Number(m[1]) === 2 && Number(m[2]) < 7)) return { status: 'WARN', detail: `ReaR ${version} (${where}); rear-update is tested with 2.7` };
  return { status: 'OK', detail: `ReaR ${version} (${where})` };
}
