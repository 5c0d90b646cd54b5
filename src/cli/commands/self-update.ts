// `rear-update self-update` (issue 15): stub, being written.

import type { Command } from 'commander';

export function registerSelfUpdate(program: Command): void {
  void program;
}
