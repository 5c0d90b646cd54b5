// How the CLI talks to people: results on stdout, notes and progress on stderr, sizes and
// tables in one format. Nothing here decides anything.

export const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};
export const note = (line: string): void => {
  process.stderr.write(`rear-update: ${line}\n`);
};
export const printJson = (v: unknown): void => out(JSON.stringify(v, null, 2));

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Left-aligned columns, widths from the content. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}
