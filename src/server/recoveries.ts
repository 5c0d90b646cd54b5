// Recoveries on the server (docs/recoveries.md): opens them, records their events (reported by
// the rescue system, or the server's own: pending, assigned, resolved, log), tells listeners
// (the console's live streams) about every change, and ranks hosts for a pending machine.
// STUB: filled in by the recoveries work (routes/recoveries.ts uses it).

import type { MetadataStore } from '../core/store/metadata.ts';

export interface RecoveryServiceOptions {
  readonly now: () => Date;
  readonly silentAfterMs: number;
}

export class RecoveryService {
  readonly meta: MetadataStore;
  readonly opts: RecoveryServiceOptions;

  constructor(meta: MetadataStore, opts: RecoveryServiceOptions) {
    this.meta = meta;
    this.opts = opts;
  }
}
