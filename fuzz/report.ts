// What a fuzz run reports: how many cases ran in how long, outcomes by code, and each finding
// with the seed and case number (or request) that reproduces it.

export interface Finding {
  readonly target: 'bundles' | 'server';
  readonly seed: number;
  readonly case: number;
  readonly kind: string;
  readonly detail: string;
  /** What was sent: the bundle plan, or the request. */
  readonly input: string;
  readonly reproduce: string;
}

export interface RunReport {
  readonly target: 'bundles' | 'server';
  readonly seed: number;
  cases: number;
  seconds: number;
  readonly outcomes: Record<string, number>;
  readonly findings: Finding[];
  /** Server runs: how many routes the app has (each got requests round-robin). */
  routes?: number;
}

export const newReport = (target: RunReport['target'], seed: number): RunReport => ({ target, seed, cases: 0, seconds: 0, outcomes: {}, findings: [] });

export function count(r: RunReport, outcome: string): void {
  r.cases += 1;
  r.outcomes[outcome] = (r.outcomes[outcome] ?? 0) + 1;
}

/** Human-readable lines; findings of the same kind and detail are shown once with their count. */
export function formatReport(r: RunReport, maxFindings = 20): string[] {
  const lines = [`${r.target}: ${r.cases} cases in ${r.seconds.toFixed(1)} s (seed ${r.seed})${r.routes ? ` over ${r.routes} routes` : ''}, ${r.findings.length} finding${r.findings.length === 1 ? '' : 's'}`];
  const outcomes = Object.entries(r.outcomes).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  for (const [k, n] of outcomes) lines.push(`  ${String(n).padStart(8)}  ${k}`);
  const groups = new Map<string, Finding[]>();
  for (const f of r.findings) {
    const key = `${f.kind}: ${f.detail.replace(/\/dev\/shm\/[^ ]*|\/tmp\/[^ ]*/g, 'DIR').slice(0, 200)}`;
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  let shown = 0;
  for (const [key, fs] of groups) {
    if (shown++ >= maxFindings) {
      lines.push(`  ... ${groups.size - maxFindings} more kinds of finding`);
      break;
    }
    const f = fs[0] as Finding;
    lines.push(`FINDING ${key}${fs.length > 1 ? ` (${fs.length} cases)` : ''}`);
    lines.push(`  reproduce: ${f.reproduce}`);
    lines.push(`  input: ${f.input.slice(0, 600)}`);
  }
  return lines;
}
