// How the CLI talks to people: results on stdout, notes and progress on stderr, sizes and
// tables in one format. Nothing here decides anything.

export const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};
export const note = (line: string): void => {
  process.stderr.write(`rear-update: ${line}\n`);
};
export const printJson = (v: unknown): void => out(JSON.stringify(v, null, 2));

export { formatBytes } from '../core/bytes.ts';

/** Left-aligned columns, widths from the content. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}
