// Download progress: a bar on a terminal (cli-progress), and on anything else (a serial or
// IPMI console, a log file, a pipe) one plain line every few seconds so the output stays
// readable. REAR_UPDATE_PROGRESS=bar|plain|none overrides the choice.

import { SingleBar } from 'cli-progress';
import { stderrTerminal } from '../adapters/fs/terminal.ts';
import { formatBytes } from './output.ts';

export type ProgressStyle = 'bar' | 'plain' | 'none';

export interface ProgressContext {
  /** Whether stderr is a terminal at all (isatty). */
  readonly isTTY: boolean;
  /** The link target of /proc/self/fd/2, or null when unknown. */
  readonly target: string | null;
  /** The content of /sys/class/tty/console/active, or null when unknown. */
  readonly consoleActive: string | null;
  readonly term: string | undefined;
  /** REAR_UPDATE_PROGRESS; any value but bar, plain or none is ignored. */
  readonly override: string | undefined;
}

// Serial ports (8250/16550, PL011 on ARM, USB adapters), hypervisor consoles (Xen, KVM
// virtio-console, POWER) and the s390 SCLP console: none of them is sure to understand cursor escapes.
const SERIAL = /^(?:\/dev\/)?(?:ttyS|ttyAMA|ttyUSB|hvc|ttysclp)\d+$/;

/** How to show progress on stderr, from what stands behind it. Pure. */
export function progressStyle(c: ProgressContext): ProgressStyle {
  const o = c.override?.trim().toLowerCase();
  if (o === 'bar' || o === 'plain' || o === 'none') return o;
  if (!c.isTTY || c.term === 'dumb') return 'plain';
  if (c.target !== null && SERIAL.test(c.target)) return 'plain';
  if (c.target === '/dev/console') {
    // The kernel lists the active consoles; the last one is what /dev/console writes to.
    const last = (c.consoleActive ?? '').trim().split(/\s+/).pop() ?? '';
    if (SERIAL.test(last)) return 'plain';
  }
  return 'bar';
}

/** The style for this process's stderr. */
export function stderrProgressStyle(env: NodeJS.ProcessEnv = process.env): ProgressStyle {
  return progressStyle({ ...stderrTerminal(), term: env.TERM, override: env.REAR_UPDATE_PROGRESS });
}

/** Plain lines at most this often. */
export const PLAIN_INTERVAL_MS = 5000;

export class Progress {
  private bar: SingleBar | null = null;
  private lastLine = 0;
  private started = false;
  private done = 0;
  private total: number | null = null;
  private readonly style: ProgressStyle;

  /** quiet: nothing at all; otherwise the style says how progress shows (retries show in every style). */
  constructor(private readonly label: string, private readonly quiet: boolean, style?: ProgressStyle) {
    this.style = quiet ? 'none' : (style ?? stderrProgressStyle());
  }

  update(received: number, total: number | null): void {
    if (this.style === 'none') return;
    this.done = received;
    this.total = total;
    if (this.style === 'bar') {
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
    if (!this.started || now - this.lastLine >= PLAIN_INTERVAL_MS) {
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
    if (this.style === 'plain' && this.started) process.stderr.write(`rear-update: ${this.label}: done, ${formatBytes(this.done)}\n`);
  }
}
