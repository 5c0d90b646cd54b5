// Download progress: a bar on a terminal (cli-progress), and on anything else (a serial
// console, a log file) one plain line every few seconds so the output stays readable.

import { SingleBar } from 'cli-progress';
import { formatBytes } from './output.ts';

export class Progress {
  private bar: SingleBar | null = null;
  private lastLine = 0;
  private started = false;
  private done = 0;
  private total: number | null = null;

  constructor(private readonly label: string, private readonly quiet: boolean) {}

  update(received: number, total: number | null): void {
    if (this.quiet) return;
    this.done = received;
    this.total = total;
    if (process.stderr.isTTY) {
      if (!this.bar) {
        this.bar = new SingleBar({
          format: `${this.label} [{bar}] {percentage}% {got} of {size}`,
          stream: process.stderr,
          hideCursor: true,
        });
        this.bar.start(total ?? 0, received, { got: formatBytes(received), size: total === null ? '?' : formatBytes(total) });
      }
      if (total !== null) this.bar.setTotal(total);
      this.bar.update(received, { got: formatBytes(received), size: total === null ? '?' : formatBytes(total) });
      return;
    }
    const now = Date.now();
    if (!this.started || now - this.lastLine >= 5000) {
      this.started = true;
      this.lastLine = now;
      process.stderr.write(`rear-update: ${this.label}: ${this.describe()}\n`);
    }
  }

  private describe(): string {
    return this.total ? `${formatBytes(this.done)} of ${formatBytes(this.total)} (${Math.floor((this.done / this.total) * 100)}%)` : formatBytes(this.done);
  }

  message(line: string): void {
    if (this.quiet) return;
    if (this.bar) this.bar.stop();
    this.bar = null;
    process.stderr.write(`rear-update: ${this.label}: ${line}\n`);
  }

  stop(): void {
    if (this.bar) this.bar.stop();
    this.bar = null;
    if (!this.quiet && this.started && !process.stderr.isTTY) process.stderr.write(`rear-update: ${this.label}: done, ${formatBytes(this.done)}\n`);
  }
}
