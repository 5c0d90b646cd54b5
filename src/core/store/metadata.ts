// What the server remembers, as one small async interface per concern (hosts, versions,
// tokens, pending machines, audit, recovery logs), so that SQLite, PostgreSQL and the
// in-memory store are interchangeable and all pass test/contract/metadata.contract.ts.
// Pure types: no I/O here. Every failure is a RuError with a code from src/core/errors.ts.

import type { CanonicalFacts, FactKind, MachineFacts } from './facts.ts';
import type { Hardware } from './hardware.ts';
import type { RecoveryEventKind, RecoveryPhase } from '../recovery.ts';

/** Times are ISO 8601 UTC strings with milliseconds (Date#toISOString), so they sort as text. */
export type Iso = string;

export interface Host {
  readonly id: string;
  /** Sorted, normalized (facts.ts); a MAC belongs to at most one host. */
  readonly hostnames: readonly string[];
  readonly macs: readonly string[];
  readonly uuid: string | null;
  readonly serial: string | null;
  readonly class: string | null;
  /** The version served instead of the latest, or null. */
  readonly pinned: number | null;
  readonly created: Iso;
}

export interface HostFields {
  readonly hostnames?: readonly string[];
  readonly macs?: readonly string[];
  readonly uuid?: string | null;
  readonly serial?: string | null;
  readonly class?: string | null;
}

export interface NewHost extends HostFields {
  readonly id: string;
}

export interface HostStore {
  /** STORE_CONFLICT if the id exists or a MAC belongs to another host; STORE_INVALID for malformed facts. */
  addHost(h: NewHost): Promise<Host>;
  /** Replaces the fields given (a list replaces the whole list). HOST_UNKNOWN, STORE_CONFLICT, STORE_INVALID. */
  updateHost(id: string, patch: HostFields): Promise<Host>;
  getHost(id: string): Promise<Host | null>;
  /** Sorted by id. */
  listHosts(filter?: { class?: string }): Promise<Host[]>;
  /** Every host with that fact (normalized first; a malformed value finds none). Sorted by id. */
  findHosts(kind: FactKind, value: string): Promise<Host[]>;
}

export interface VersionSummary {
  readonly host: string;
  /** 1, 2, 3, ... per host, assigned by the store; never reused. */
  readonly version: number;
  /** sha256 of the bundle bytes in the blob store. */
  readonly blob: string;
  /** sha256 the publisher computes over the content that matters; equal digest = unchanged. */
  readonly digest: string;
  readonly size: number;
  readonly created: Iso;
  /** Token id that published it, or null (admin tooling, import). */
  readonly publisher: string | null;
}

export interface VersionRecord extends VersionSummary {
  /** The bundle's manifest as JSON text. */
  readonly manifest: string;
}

export interface NewVersion {
  readonly host: string;
  readonly blob: string;
  readonly digest: string;
  readonly size: number;
  readonly manifest: string;
  readonly publisher?: string | null;
}

export interface PublishResult {
  readonly version: VersionRecord;
  /** false when ifChanged found the latest version's digest equal: nothing was added. */
  readonly created: boolean;
}

export interface VersionStore {
  /**
   * Adds the next version of a host atomically: concurrent publishes get distinct consecutive
   * numbers. With ifChanged, the comparison with the latest digest is part of the same step.
   * HOST_UNKNOWN, STORE_INVALID.
   */
  publishVersion(v: NewVersion, opts?: { ifChanged?: boolean }): Promise<PublishResult>;
  getVersion(host: string, version: number): Promise<VersionRecord | null>;
  latestVersion(host: string): Promise<VersionRecord | null>;
  /** The pinned version if any, else the latest; null when the host has none. HOST_UNKNOWN. */
  servedVersion(host: string): Promise<VersionRecord | null>;
  /** Ascending by version. HOST_UNKNOWN. */
  listVersions(host: string): Promise<VersionSummary[]>;
  /** HOST_UNKNOWN, VERSION_UNKNOWN. */
  pin(host: string, version: number): Promise<Host>;
  unpin(host: string): Promise<Host>;
}

/**
 * A hardware-class layer (docs/layers.md): drivers, firmware, udev rules or newer ReaR scripts
 * that the server composes under every host of its class. Identified by class and name; class
 * '*' is every class. Versions work as a host's: 1, 2, 3, ... never reused, pin and unpin.
 */
export interface Layer {
  /** A class name, or '*' for every class. */
  readonly class: string;
  readonly name: string;
  /** The priority of its latest publish (lower composes first; a later layer wins a conflict). */
  readonly priority: number;
  readonly pinned: number | null;
  readonly created: Iso;
}

export interface LayerVersionSummary extends Omit<VersionSummary, 'host'> {
  readonly class: string;
  readonly name: string;
}

export interface LayerVersionRecord extends LayerVersionSummary {
  /** The layer file's manifest (format 2, one layer) as JSON text. */
  readonly manifest: string;
}

export interface NewLayerVersion {
  readonly class: string;
  readonly name: string;
  readonly priority: number;
  readonly blob: string;
  readonly digest: string;
  readonly size: number;
  readonly manifest: string;
  readonly publisher?: string | null;
}

export interface LayerPublishResult {
  readonly layer: Layer;
  readonly version: LayerVersionRecord;
  /** false when ifChanged found the latest version's digest equal (the priority is updated anyway). */
  readonly created: boolean;
}

/** A layer with the version a host is served (pinned, else latest). */
export interface ServedLayer {
  readonly layer: Layer;
  readonly version: LayerVersionRecord;
}

export interface LayerStore {
  /**
   * Adds the next version of a layer, creating the layer on its first publish, and sets its
   * priority; atomically as publishVersion (concurrent publishes get distinct consecutive
   * numbers). STORE_INVALID for a malformed class, name, priority, blob or manifest.
   */
  publishLayerVersion(v: NewLayerVersion, opts?: { ifChanged?: boolean }): Promise<LayerPublishResult>;
  getLayer(cls: string, name: string): Promise<Layer | null>;
  /** Sorted by class, then priority, then name. class: exactly that class ('*' for the every-class layers). */
  listLayers(filter?: { class?: string }): Promise<Layer[]>;
  getLayerVersion(cls: string, name: string, version: number): Promise<LayerVersionRecord | null>;
  latestLayerVersion(cls: string, name: string): Promise<LayerVersionRecord | null>;
  /** Ascending by version. LAYER_UNKNOWN. */
  listLayerVersions(cls: string, name: string): Promise<LayerVersionSummary[]>;
  /** LAYER_UNKNOWN, VERSION_UNKNOWN. */
  pinLayer(cls: string, name: string, version: number): Promise<Layer>;
  /** LAYER_UNKNOWN. */
  unpinLayer(cls: string, name: string): Promise<Layer>;
  /**
   * What a host of class `cls` (null: a host without a class) is composed of: every layer of
   * class '*' and of `cls` that has a version, each with its served version (pinned, else
   * latest), in composition order: priority ascending; at equal priority '*' before the
   * class; then name.
   */
  servedLayers(cls: string | null): Promise<ServedLayer[]>;
}

/** publish-class:C publishes layers of class C (and nothing else; C may be '*'); see docs/layers.md. */
/**
 * view: sees everything an admin sees, changes nothing; operate: view, and assigns and forgets
 * pending machines (the disaster-time role); admin: everything (docs/console.md).
 */
export type TokenScope = 'admin' | 'view' | 'operate' | `publish:${string}` | `publish-class:${string}` | `fetch:${string}` | `fetch-class:${string}`;

export interface TokenRecord {
  readonly id: string;
  /** The store never sees the secret itself; hashing and comparison belong to the server. */
  readonly secretHash: string;
  readonly scope: TokenScope;
  readonly label: string | null;
  readonly created: Iso;
  readonly revoked: Iso | null;
  /** When it stops working (absolute, fixed at creation), or null: never. */
  readonly expires: Iso | null;
  /** How many bundle downloads it may start, or null: no limit. */
  readonly uses: number | null;
  /** Bundle downloads started so far; counted only when `uses` is set. */
  readonly used: number;
  /** The last request that presented it (noteTokenUse, which the server calls sparingly). */
  readonly lastUsed: Iso | null;
  readonly lastAddress: string | null;
}

export interface NewToken {
  readonly id: string;
  readonly secretHash: string;
  readonly scope: TokenScope;
  readonly label?: string | null;
  readonly expires?: Iso | null;
  /** At least 1. */
  readonly uses?: number | null;
}

export interface TokenStore {
  /** STORE_CONFLICT for an existing id, STORE_INVALID for a malformed id or scope. */
  createToken(t: NewToken): Promise<TokenRecord>;
  getToken(id: string): Promise<TokenRecord | null>;
  /** Sorted by created, then id. */
  listTokens(): Promise<TokenRecord[]>;
  /** Revoking twice keeps the first time. TOKEN_UNKNOWN. */
  revokeToken(id: string): Promise<TokenRecord>;
  /** Sets lastUsed (the store's clock) and lastAddress. TOKEN_UNKNOWN. */
  noteTokenUse(id: string, address: string | null): Promise<void>;
  /**
   * Spends one use of a token with a use limit, atomically: of concurrent calls for a token
   * with one use left exactly one succeeds. `download` is the caller's opaque name of what the
   * use was spent on (the server: the sealing's ETag and the client address); with `resume`,
   * a download already spent on costs nothing again. A token without a limit is returned as
   * it is. AUTH_USED_UP when no use is left, TOKEN_UNKNOWN, STORE_INVALID.
   */
  spendTokenUse(id: string, download: string, opts?: { resume?: boolean }): Promise<TokenRecord>;
}

export interface PendingMachine {
  readonly id: number;
  readonly facts: CanonicalFacts;
  readonly address: string | null;
  readonly firstSeen: Iso;
  readonly lastSeen: Iso;
  readonly assignedHost: string | null;
  readonly assigned: Iso | null;
  /** The token that first reported the machine, or null. */
  readonly token: string | null;
}

/**
 * Bounds on new pending records (a flood of made-up machines must not fill the table). Only
 * *open* records count: unassigned, and seen within `windowMs`; a waiting machine asks every
 * few seconds, so a record nobody asks about any more stops counting on its own.
 */
export interface PendingLimits {
  /** Open records first reported with one token. */
  readonly perToken: number;
  /** Open records first reported from one address. */
  readonly perAddress: number;
  /** Open records in all. */
  readonly total: number;
  readonly windowMs: number;
}

export interface PendingStore {
  /**
   * Records an unresolved machine, or refreshes lastSeen/address of the record with the same
   * canonical facts (assigned or not), so a machine that keeps asking is one record. A new
   * record is refused with PENDING_LIMIT (context: limit, max, retryAfter seconds) when it
   * would exceed `limits`, decided in the same step as the insert; a known machine never is.
   */
  recordPending(facts: MachineFacts, address: string | null, opts?: { token?: string | null; limits?: PendingLimits }): Promise<PendingMachine>;
  getPending(id: number): Promise<PendingMachine | null>;
  /** Newest first. mac: records whose facts include it; unassigned: only those not yet assigned. */
  listPending(filter?: { mac?: string; unassigned?: boolean }): Promise<PendingMachine[]>;
  /** PENDING_UNKNOWN, HOST_UNKNOWN. Reassigning replaces the host. */
  assignPending(id: number, host: string): Promise<PendingMachine>;
  /** Deletes a pending record (an admin's "forget": a machine asking again is recorded anew). PENDING_UNKNOWN. */
  forgetPending(id: number): Promise<PendingMachine>;
}

export type AuditKind = 'publish' | 'fetch' | 'resolve' | 'assign' | 'pin' | 'token' | 'host' | 'log' | 'key' | 'recovery' | 'session' | 'pending';
export const AUDIT_KINDS: readonly AuditKind[] = ['publish', 'fetch', 'resolve', 'assign', 'pin', 'token', 'host', 'log', 'key', 'recovery', 'session', 'pending'];

export interface AuditEvent {
  readonly id: number;
  readonly time: Iso;
  readonly kind: AuditKind;
  readonly token: string | null;
  readonly address: string | null;
  readonly host: string | null;
  readonly version: number | null;
  readonly bytes: number | null;
  /** 'ok', or the error code of the refusal. */
  readonly result: string;
  readonly detail: string | null;
}

export type NewAuditEvent = Omit<AuditEvent, 'id' | 'time' | 'token' | 'address' | 'host' | 'version' | 'bytes' | 'detail'> &
  Partial<Pick<AuditEvent, 'token' | 'address' | 'host' | 'version' | 'bytes' | 'detail'>>;

export interface AuditQuery {
  readonly kind?: AuditKind;
  readonly host?: string;
  readonly token?: string;
  readonly result?: string;
  /** time >= since */
  readonly since?: Iso;
  /** time < until */
  readonly until?: Iso;
  /** Paging: only events with a smaller id. */
  readonly beforeId?: number;
  /** Default 100, at most 1000. */
  readonly limit?: number;
}

export interface AuditStore {
  /** The host need not exist: refusals for unknown hosts are recorded too. */
  appendAudit(e: NewAuditEvent): Promise<AuditEvent>;
  /**
   * Several events in one step (the server batches its download records), in order; all or
   * none are stored (a malformed one refuses the batch with STORE_INVALID).
   */
  appendAudits(es: readonly NewAuditEvent[]): Promise<void>;
  /** Newest first. */
  queryAudit(q?: AuditQuery): Promise<AuditEvent[]>;
}

/** A recovery log that ReaR streams to the server; the bytes live elsewhere, this is the index. */
export interface LogRecord {
  readonly id: number;
  readonly host: string;
  readonly workflow: string;
  /** The timestamp segment of ReaR's upload URL, as sent. */
  readonly stamp: string;
  readonly address: string | null;
  readonly started: Iso;
  readonly updated: Iso;
  readonly bytes: number;
  readonly complete: boolean;
}

export interface LogIndex {
  /** HOST_UNKNOWN, STORE_INVALID. */
  openLog(l: { host: string; workflow: string; stamp: string; address?: string | null }): Promise<LogRecord>;
  /** Sets the byte count (and completion) as the upload proceeds. LOG_UNKNOWN, STORE_INVALID. */
  updateLog(id: number, bytes: number, complete: boolean): Promise<LogRecord>;
  getLog(id: number): Promise<LogRecord | null>;
  /** Newest first. */
  listLogs(host: string): Promise<LogRecord[]>;
}

/**
 * A recovery (docs/recoveries.md): one rescue boot that talks to the server, from resolving to
 * finished or failed. The phase is the store's: each event moves it (core/recovery.ts decides
 * how); "silent" is not a phase but a reading of `lastSign` against the clock.
 */
export interface Recovery {
  readonly id: number;
  /** The token that opened it: only that token (or an operator) may add events. */
  readonly token: string | null;
  readonly address: string | null;
  /** The host it recovers, once resolved or assigned. */
  readonly host: string | null;
  /** The pending machine it waited as, if it did. */
  readonly pending: number | null;
  /** The newest recovery log (LogRecord id) linked to it. */
  readonly log: number | null;
  readonly facts: CanonicalFacts | null;
  readonly hardware: Hardware | null;
  readonly phase: RecoveryPhase;
  readonly started: Iso;
  /** Time of the newest event. */
  readonly updated: Iso;
  /** Newest sign of life: an event, a heartbeat, or log bytes arriving. */
  readonly lastSign: Iso;
  /** When it reached done or failed. */
  readonly ended: Iso | null;
  /** `rear recover`'s exit status, when it reported one. */
  readonly exitStatus: number | null;
  /** The code of the failure, when failed. */
  readonly error: string | null;
}

export interface RecoveryEvent {
  readonly recovery: number;
  /** 1, 2, 3, ... within a recovery. */
  readonly seq: number;
  readonly time: Iso;
  readonly kind: RecoveryEventKind;
  /** The token id that caused it (the rescue system's, or the admin's who assigned). */
  readonly actor: string | null;
  /** One line for people; untrusted when the rescue system wrote it. */
  readonly message: string;
  /** Kind-specific values (version, bytes, counts, layers, code, exit status, ...), JSON-safe. */
  readonly detail: Readonly<Record<string, unknown>>;
}

export interface NewRecovery {
  readonly token?: string | null;
  readonly address?: string | null;
  readonly host?: string | null;
  readonly facts?: CanonicalFacts | null;
  readonly hardware?: Hardware | null;
}

export interface NewRecoveryEvent {
  readonly kind: RecoveryEventKind;
  readonly actor?: string | null;
  readonly message?: string;
  readonly detail?: Readonly<Record<string, unknown>>;
  /** Set what the event establishes (the store keeps the newest non-null value). */
  readonly host?: string | null;
  readonly pending?: number | null;
  readonly log?: number | null;
  readonly exitStatus?: number | null;
  readonly error?: string | null;
}

export interface RecoveryQuery {
  /** Only those not done or failed. */
  readonly active?: boolean;
  readonly host?: string;
  readonly pending?: number;
  /** Paging: only recoveries with a smaller id. */
  readonly beforeId?: number;
  /** Default 100, at most 1000. */
  readonly limit?: number;
}

export interface RecoveryStore {
  /** Phase 'resolving', one first event 'booted'. STORE_INVALID. */
  openRecovery(r: NewRecovery): Promise<Recovery>;
  getRecovery(id: number): Promise<Recovery | null>;
  /** Newest first. */
  listRecoveries(q?: RecoveryQuery): Promise<Recovery[]>;
  /**
   * Appends an event and moves the recovery's phase (core/recovery.ts nextPhase), updated and
   * lastSign, in one step. A recovery that ended takes further events, but its phase stays
   * unless the event is a new start (core/recovery.ts). RECOVERY_UNKNOWN, STORE_INVALID.
   */
  appendRecoveryEvent(id: number, e: NewRecoveryEvent): Promise<{ recovery: Recovery; event: RecoveryEvent }>;
  /** Ascending by seq; afterSeq: only later ones. RECOVERY_UNKNOWN. */
  listRecoveryEvents(id: number, opts?: { afterSeq?: number }): Promise<RecoveryEvent[]>;
  /** Sets lastSign (the store's clock): a heartbeat, or log bytes arriving. RECOVERY_UNKNOWN. */
  noteRecoverySign(id: number): Promise<void>;
}

/**
 * The disks a host's newest configuration describes (its var/lib/rear/layout/disklayout.conf),
 * kept when a version is published so match hints (core/match.ts) need no bundle reads.
 */
export interface HostLayout {
  readonly host: string;
  readonly version: number;
  readonly disks: readonly { readonly device: string; readonly size: number }[];
}

export interface HostLayoutStore {
  /** Replaces the host's layout. HOST_UNKNOWN, STORE_INVALID. */
  setHostLayout(l: HostLayout): Promise<void>;
  /** Every host's layout, sorted by host. */
  listHostLayouts(): Promise<HostLayout[]>;
}

/**
 * A signed-in browser (docs/console.md). The cookie carries a random secret; the store keeps
 * only its sha256 (`id`), as with tokens. The token it was opened with decides what it may do,
 * read afresh per request, so revoking the token ends its sessions.
 */
export interface Session {
  /** sha256 hex of the cookie's secret. */
  readonly id: string;
  readonly token: string;
  /** The synchronizer token every state-changing request must carry. */
  readonly csrf: string;
  readonly created: Iso;
  readonly lastSeen: Iso;
  /** Absolute expiry, fixed at creation. */
  readonly expires: Iso;
  readonly address: string | null;
}

export interface SessionStore {
  /** STORE_CONFLICT for an existing id, TOKEN_UNKNOWN, STORE_INVALID. */
  createSession(s: Omit<Session, 'lastSeen' | 'created'>): Promise<Session>;
  getSession(id: string): Promise<Session | null>;
  /** Sets lastSeen to the store's clock; false when there is no such session. */
  touchSession(id: string): Promise<boolean>;
  /** false when there was none. */
  deleteSession(id: string): Promise<boolean>;
  /** Deletes sessions whose absolute expiry passed or that were idle since `idleBefore`; returns how many. */
  deleteStaleSessions(idleBefore: Iso): Promise<number>;
}

/** One inconsistency the store finds in itself (check), named by kind for tests and tools. */
export interface StoreProblem {
  /**
   * `damaged` (the backend reports damage: SQLite's integrity or foreign-key check),
   * `version-gap` (a host's or layer's versions are not 1..n), `pin-missing` (pinned to no version),
   * `version-invalid` (a malformed blob name, size or manifest), `id-reused` (a sequence behind
   * the ids it gave: audit, pending or log ids could repeat), `log-invalid` (a negative size).
   */
  readonly kind: 'damaged' | 'version-gap' | 'pin-missing' | 'version-invalid' | 'id-reused' | 'log-invalid';
  readonly message: string;
  readonly host?: string;
  /** A layer's problem (the version kinds apply to layers too): "CLASS/NAME". */
  readonly layer?: string;
  readonly version?: number;
}

/** The store's view of itself, and the one step that must hold its write lock across blob I/O. */
export interface StoreMaintenance {
  /** Checks the store's own invariants (the server's check adds the blobs and log files). [] when sound. */
  check(): Promise<StoreProblem[]>;
  /**
   * Calls `remove` for each named blob that no version (of a host or a layer) refers to, holding
   * the store's write lock meanwhile, so no version naming it is added in between; returns the
   * names removed. A publish that lost this race finds its blob gone after publishVersion (or
   * publishLayerVersion) and stores it again.
   */
  releaseBlobs(blobs: readonly string[], remove: (sha256: string) => Promise<unknown>): Promise<string[]>;
}

export interface MetadataStore
  extends HostStore, VersionStore, LayerStore, TokenStore, PendingStore, AuditStore, LogIndex, RecoveryStore, HostLayoutStore, SessionStore, StoreMaintenance {
  close(): Promise<void>;
}

/** Options every implementation accepts: a clock, so tests can control time. */
export interface MetadataOptions {
  readonly now?: () => Date;
}
