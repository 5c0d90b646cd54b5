// Everything a route needs, assembled at the composition root (serve.ts, or a test) and
// passed to buildApp: the stores, the bundle service, the key, the data layout, a clock.

import type { PrivateKey } from '../core/signature.ts';
import type { BlobStore } from '../core/store/blobs.ts';
import type { MetadataStore } from '../core/store/metadata.ts';
import type { AuditQueue } from './audit-queue.ts';
import type { BundleService } from './bundles.ts';
import type { TtlCache } from './cache.ts';
import type { Host, PendingLimits, TokenRecord, VersionRecord } from '../core/store/metadata.ts';
import type { DataLayout } from './data-dir.ts';
import type { KeyRing } from './key-ring.ts';
import type { LogService } from './logs.ts';
import type { Metrics } from './metrics.ts';
import type { TokenUseRecorder } from './token-use.ts';
import type { DownloadSources } from './routes/download.ts';
import type { RecoveryService } from './recoveries.ts';

/** The console's session rules (console/session.ts). Milliseconds. */
export interface ConsoleSettings {
  readonly sessionIdleMs: number;
  readonly sessionMaxMs: number;
  /** Cookies carry Secure (the server runs TLS). */
  readonly secure: boolean;
}

export interface ServerContext {
  readonly meta: MetadataStore;
  readonly blobs: BlobStore;
  readonly bundles: BundleService;
  readonly logs: LogService;
  /** Recoveries: their events, live changes for the console, match hints (recoveries.ts). */
  readonly recoveries: RecoveryService;
  readonly console: ConsoleSettings;
  /** Batches the records of successful downloads (audit-queue.ts). */
  readonly auditQueue: AuditQueue;
  /** The current signing key: read it per use, a rotation (keys) switches it. */
  readonly key: PrivateKey;
  /** Every signing key of the server over time, and the key statements it serves (key-ring.ts). */
  readonly keys: KeyRing;
  /** PEM text of the server's public key, as in DATA/server.pub. */
  readonly publicPem: string;
  readonly data: DataLayout;
  readonly metrics: Metrics;
  readonly maxUpload: number;
  /** What GET /download serves (routes/download.ts). */
  readonly downloads: DownloadSources;
  /** Bounds on new pending machines (config.ts: --pending-per-token, ...). */
  readonly pendingLimits: PendingLimits;
  /** Writes each token's last use, sparingly (token-use.ts). */
  readonly tokenUse: TokenUseRecorder;
  readonly now: () => Date;
  /** Memo of the download path (cache.ts): token records, and a host with its served version. */
  readonly cache: {
    readonly tokens: TtlCache<string, TokenRecord | null>;
    readonly served: TtlCache<string, { host: Host; rec: VersionRecord } | null>;
  };
}
