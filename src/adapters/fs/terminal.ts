// What stands behind this process's stderr, as the kernel says: the device its fd 2 points to,
// and, when that is /dev/console, which device the console currently is. A serial or IPMI
// console says it is a terminal (isatty) but shows cursor escape codes as garbage, so
// the progress display needs more than isTTY to choose (src/cli/progress.ts decides).

import { readFileSync, readlinkSync } from 'node:fs';

export interface StderrTerminal {
  readonly isTTY: boolean;
  /** Where /proc/self/fd/2 points (/dev/pts/0, /dev/ttyS0, /dev/console, pipe:[...]), null if unreadable. */
  readonly target: string | null;
  /** /sys/class/tty/console/active ("tty0 ttyS0": the last one is /dev/console), read only for /dev/console. */
  readonly consoleActive: string | null;
}

const read = <T>(f: () => T): T | null => {
  try {
    return f();
  } catch {
    return null;
  }
};

export function stderrTerminal(): StderrTerminal {
  const isTTY = process.stderr.isTTY === true;
  const target = read(() => readlinkSync('/proc/self/fd/2'));
  const consoleActive = target === '/dev/console' ? read(() => readFileSync('/sys/class/tty/console/active', 'utf8')) : null;
  return { isTTY, target, consoleActive };
}
