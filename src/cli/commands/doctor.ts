// `rear-update doctor` (issue 15): stub, being written.

import type { Command } from 'commander';

export function registerDoctor(program: Command): void {
  void program;
}
