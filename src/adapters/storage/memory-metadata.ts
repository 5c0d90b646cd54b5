// The metadata store in plain maps: the reference the contract suite is written against, and a
// fast store for tests of the server. Nothing survives close(). Every method body runs without
// an await between its read and its write, which is what makes it atomic in one event loop.

import { usedUp } from '../../core/access.ts';
import { RuError } from '../../core/errors.ts';
import { canonicalFacts, checkId, factsKey, normalizeMac, NORMALIZE, type FactKind, type MachineFacts } from '../../core/store/facts.ts';
import { isEnded } from '../../core/recovery.ts';
import type {
  AuditEvent, AuditQuery, Host, HostFields, HostLayout, Iso, Layer, LayerPublishResult, LayerVersionRecord, LayerVersionSummary, LogRecord,
  MetadataOptions, MetadataStore, NewAuditEvent, NewHost, NewLayerVersion, NewRecovery, NewRecoveryEvent, NewToken, NewVersion, PendingLimits,
  PendingMachine, PublishResult, Recovery, RecoveryEvent, RecoveryQuery, ServedLayer, Session, StoreProblem, TokenRecord, VersionRecord, VersionSummary,
} from '../../core/store/metadata.ts';
import { versionProblems } from '../../core/store/check.ts';
import {
  auditLimit, checkAuditEvent, checkCount, checkDownloadName, checkHostFields, checkHostLayout, checkIso, checkLogName, checkNewLayerVersion,
  checkNewRecovery, checkNewSession, checkNewToken, checkNewVersion, checkPendingLimits, checkRecoveryEvent, checkRecoveryQuery, pendingLimitHit,
  type CheckedHostFields,
} from '../../core/store/validate.ts';
import { isJsonText, layerProblems, layerRef } from './layer-problems.ts';
import { bootedDetail, movedRecovery } from './recovery-moves.ts';

const freeze = <T extends object>(o: T): T => Object.freeze(o);
/** Values callers read but must not change (JSON-shaped: facts, hardware, detail, layouts). */
function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export class MemoryMetadataStore implements MetadataStore {
  readonly #now: () => Date;
  readonly #hosts = new Map<string, Host>();
  readonly #versions = new Map<string, VersionRecord[]>();
  /** By layerRef(class, name). */
  readonly #layers = new Map<string, Layer>();
  readonly #layerVersions = new Map<string, LayerVersionRecord[]>();
  readonly #tokens = new Map<string, TokenRecord>();
  /** Per token with a use limit: the downloads its uses were spent on. */
  readonly #spent = new Map<string, Set<string>>();
  /** origin: the address the machine was first reported from (what the per-address limit counts). */
  readonly #pending: { key: string; origin: string | null; rec: PendingMachine }[] = [];
  /** The last pending id given: forgotten records leave gaps, and their ids are never given again. */
  #pendingSeq = 0;
  readonly #audit: AuditEvent[] = [];
  readonly #logs: LogRecord[] = [];
  /** By id, in id order; each recovery with its events in seq order. */
  readonly #recoveries = new Map<number, { rec: Recovery; events: RecoveryEvent[] }>();
  #recoverySeq = 0;
  readonly #layouts = new Map<string, HostLayout>();
  readonly #sessions = new Map<string, Session>();
  /** A releaseBlobs in progress: publishVersion waits for it (the write lock of this store). */
  #releasing: Promise<unknown> | null = null;

  constructor(opts: MetadataOptions = {}) {
    this.#now = opts.now ?? (() => new Date());
  }

  #time(): string {
    return this.#now().toISOString();
  }

  #host(id: string): Host {
    const h = this.#hosts.get(id);
    if (!h) throw new RuError('HOST_UNKNOWN', `no host ${JSON.stringify(id)}`, { host: id });
    return h;
  }

  #checkMacsFree(macs: readonly string[] | undefined, self: string): void {
    for (const mac of macs ?? []) {
      for (const h of this.#hosts.values()) {
        if (h.id !== self && h.macs.includes(mac)) {
          throw new RuError('STORE_CONFLICT', `MAC address ${mac} belongs to host ${h.id}`, { what: 'mac', value: mac, host: h.id });
        }
      }
    }
  }

  #save(base: Host, f: CheckedHostFields): Host {
    const h: Host = freeze({
      ...base,
      ...f,
      hostnames: freeze([...(f.hostnames ?? base.hostnames)]),
      macs: freeze([...(f.macs ?? base.macs)]),
    });
    this.#hosts.set(h.id, h);
    return h;
  }

  async addHost(n: NewHost): Promise<Host> {
    checkId(n.id, 'host');
    const f = checkHostFields(n);
    if (this.#hosts.has(n.id)) throw new RuError('STORE_CONFLICT', `host ${n.id} exists already`, { what: 'host', value: n.id });
    this.#checkMacsFree(f.macs, n.id);
    const base: Host = { id: n.id, hostnames: [], macs: [], uuid: null, serial: null, class: null, pinned: null, created: this.#time() };
    return this.#save(base, f);
  }

  async updateHost(id: string, patch: HostFields): Promise<Host> {
    const base = this.#host(id);
    const f = checkHostFields(patch);
    this.#checkMacsFree(f.macs, id);
    return this.#save(base, f);
  }

  async getHost(id: string): Promise<Host | null> {
    return this.#hosts.get(id) ?? null;
  }

  async listHosts(filter: { class?: string } = {}): Promise<Host[]> {
    return [...this.#hosts.values()]
      .filter((h) => filter.class === undefined || h.class === filter.class)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async findHosts(kind: FactKind, value: string): Promise<Host[]> {
    const v = typeof value === 'string' ? NORMALIZE[kind](value) : null;
    if (v === null) return [];
    const match = (h: Host): boolean =>
      kind === 'mac' ? h.macs.includes(v) : kind === 'hostname' ? h.hostnames.includes(v) : h[kind] === v;
    return (await this.listHosts()).filter(match);
  }

  async publishVersion(n: NewVersion, opts: { ifChanged?: boolean } = {}): Promise<PublishResult> {
    // Never between releaseBlobs' look at the references and its removal.
    while (this.#releasing) await this.#releasing.catch(() => undefined);
    checkNewVersion(n);
    this.#host(n.host);
    const list = this.#versions.get(n.host) ?? [];
    const latest = list.at(-1);
    if (opts.ifChanged && latest && latest.digest === n.digest) return { version: latest, created: false };
    const rec: VersionRecord = freeze({
      host: n.host, version: (latest?.version ?? 0) + 1, blob: n.blob, digest: n.digest, size: n.size,
      created: this.#time(), publisher: n.publisher ?? null, manifest: n.manifest,
    });
    this.#versions.set(n.host, [...list, rec]);
    return { version: rec, created: true };
  }

  async getVersion(host: string, version: number): Promise<VersionRecord | null> {
    return this.#versions.get(host)?.find((v) => v.version === version) ?? null;
  }

  async latestVersion(host: string): Promise<VersionRecord | null> {
    return this.#versions.get(host)?.at(-1) ?? null;
  }

  async servedVersion(host: string): Promise<VersionRecord | null> {
    const h = this.#host(host);
    return h.pinned !== null ? this.getVersion(host, h.pinned) : this.latestVersion(host);
  }

  async listVersions(host: string): Promise<VersionSummary[]> {
    this.#host(host);
    return (this.#versions.get(host) ?? []).map(({ manifest: _m, ...s }) => freeze(s));
  }

  async pin(host: string, version: number): Promise<Host> {
    const h = this.#host(host);
    if (!(await this.getVersion(host, version))) {
      throw new RuError('VERSION_UNKNOWN', `host ${host} has no version ${version}`, { host, version });
    }
    return this.#save({ ...h, pinned: version }, {});
  }

  async unpin(host: string): Promise<Host> {
    return this.#save({ ...this.#host(host), pinned: null }, {});
  }

  #layer(cls: string, name: string): Layer {
    const l = this.#layers.get(layerRef(cls, name));
    if (!l) throw new RuError('LAYER_UNKNOWN', `no layer ${layerRef(cls, name)}`, { class: cls, layer: name });
    return l;
  }

  #saveLayer(l: Layer): Layer {
    const rec = freeze({ ...l });
    this.#layers.set(layerRef(l.class, l.name), rec);
    return rec;
  }

  async publishLayerVersion(n: NewLayerVersion, opts: { ifChanged?: boolean } = {}): Promise<LayerPublishResult> {
    // Never between releaseBlobs' look at the references and its removal.
    while (this.#releasing) await this.#releasing.catch(() => undefined);
    checkNewLayerVersion(n);
    const key = layerRef(n.class, n.name);
    const old = this.#layers.get(key);
    const layer = this.#saveLayer(old ? { ...old, priority: n.priority } : { class: n.class, name: n.name, priority: n.priority, pinned: null, created: this.#time() });
    const list = this.#layerVersions.get(key) ?? [];
    const latest = list.at(-1);
    if (opts.ifChanged && latest && latest.digest === n.digest) return { layer, version: latest, created: false };
    const rec: LayerVersionRecord = freeze({
      class: n.class, name: n.name, version: (latest?.version ?? 0) + 1, blob: n.blob, digest: n.digest, size: n.size,
      created: this.#time(), publisher: n.publisher ?? null, manifest: n.manifest,
    });
    this.#layerVersions.set(key, [...list, rec]);
    return { layer, version: rec, created: true };
  }

  async getLayer(cls: string, name: string): Promise<Layer | null> {
    return this.#layers.get(layerRef(cls, name)) ?? null;
  }

  async listLayers(filter: { class?: string } = {}): Promise<Layer[]> {
    return [...this.#layers.values()]
      .filter((l) => filter.class === undefined || l.class === filter.class)
      .sort((a, b) => byText(a.class, b.class) || a.priority - b.priority || byText(a.name, b.name));
  }

  async getLayerVersion(cls: string, name: string, version: number): Promise<LayerVersionRecord | null> {
    return this.#layerVersions.get(layerRef(cls, name))?.find((v) => v.version === version) ?? null;
  }

  async latestLayerVersion(cls: string, name: string): Promise<LayerVersionRecord | null> {
    return this.#layerVersions.get(layerRef(cls, name))?.at(-1) ?? null;
  }

  async listLayerVersions(cls: string, name: string): Promise<LayerVersionSummary[]> {
    this.#layer(cls, name);
    return (this.#layerVersions.get(layerRef(cls, name)) ?? []).map(({ manifest: _m, ...s }) => freeze(s));
  }

  async pinLayer(cls: string, name: string, version: number): Promise<Layer> {
    const l = this.#layer(cls, name);
    if (!(await this.getLayerVersion(cls, name, version))) {
      throw new RuError('VERSION_UNKNOWN', `layer ${layerRef(cls, name)} has no version ${version}`, { class: cls, layer: name, version });
    }
    return this.#saveLayer({ ...l, pinned: version });
  }

  async unpinLayer(cls: string, name: string): Promise<Layer> {
    return this.#saveLayer({ ...this.#layer(cls, name), pinned: null });
  }

  async servedLayers(cls: string | null): Promise<ServedLayer[]> {
    const out: ServedLayer[] = [];
    for (const layer of this.#layers.values()) {
      if (layer.class !== '*' && layer.class !== cls) continue;
      const list = this.#layerVersions.get(layerRef(layer.class, layer.name)) ?? [];
      const version = layer.pinned !== null ? list.find((v) => v.version === layer.pinned) : list.at(-1);
      if (version) out.push(freeze({ layer, version }));
    }
    const everyFirst = (l: Layer): number => (l.class === '*' ? 0 : 1);
    return out.sort((a, b) => a.layer.priority - b.layer.priority || everyFirst(a.layer) - everyFirst(b.layer) || byText(a.layer.name, b.layer.name));
  }

  async createToken(t: NewToken): Promise<TokenRecord> {
    checkNewToken(t);
    if (this.#tokens.has(t.id)) throw new RuError('STORE_CONFLICT', `token ${t.id} exists already`, { what: 'token', value: t.id });
    const rec: TokenRecord = freeze({
      id: t.id, secretHash: t.secretHash, scope: t.scope, label: t.label ?? null, created: this.#time(), revoked: null,
      expires: t.expires ?? null, uses: t.uses ?? null, used: 0, lastUsed: null, lastAddress: null,
    });
    this.#tokens.set(t.id, rec);
    return rec;
  }

  async getToken(id: string): Promise<TokenRecord | null> {
    return this.#tokens.get(id) ?? null;
  }

  async listTokens(): Promise<TokenRecord[]> {
    const key = (t: TokenRecord): string => `${t.created}\u0000${t.id}`;
    return [...this.#tokens.values()].sort((a, b) => (key(a) < key(b) ? -1 : 1));
  }

  async revokeToken(id: string): Promise<TokenRecord> {
    const t = this.#tokens.get(id);
    if (!t) throw new RuError('TOKEN_UNKNOWN', `no token ${JSON.stringify(id)}`, { token: id });
    if (t.revoked) return t;
    const rec = freeze({ ...t, revoked: this.#time() });
    this.#tokens.set(id, rec);
    return rec;
  }

  #token(id: string): TokenRecord {
    const t = this.#tokens.get(id);
    if (!t) throw new RuError('TOKEN_UNKNOWN', `no token ${JSON.stringify(id)}`, { token: id });
    return t;
  }

  async noteTokenUse(id: string, address: string | null): Promise<void> {
    const t = this.#token(id);
    this.#tokens.set(id, freeze({ ...t, lastUsed: this.#time(), lastAddress: address }));
  }

  async spendTokenUse(id: string, download: string, opts: { resume?: boolean } = {}): Promise<TokenRecord> {
    checkDownloadName(download);
    const t = this.#token(id);
    if (t.uses === null) return t;
    const spent = this.#spent.get(id) ?? new Set<string>();
    if (opts.resume && spent.has(download)) return t;
    if (t.used >= t.uses) throw usedUp(t);
    spent.add(download);
    this.#spent.set(id, spent);
    const rec = freeze({ ...t, used: t.used + 1 });
    this.#tokens.set(id, rec);
    return rec;
  }

  async recordPending(facts: MachineFacts, address: string | null, opts: { token?: string | null; limits?: PendingLimits } = {}): Promise<PendingMachine> {
    if (opts.limits) checkPendingLimits(opts.limits);
    const c = canonicalFacts(facts);
    const key = factsKey(c);
    if (!c.macs.length && !c.uuid && !c.serial && !c.hostname) {
      throw new RuError('STORE_INVALID', 'a pending machine needs at least one usable fact (MAC, UUID, serial or hostname)');
    }
    const now = this.#time();
    const slot = [...this.#pending].reverse().find((p) => p.key === key);
    if (slot) {
      slot.rec = freeze({ ...slot.rec, lastSeen: now, address: address ?? slot.rec.address });
      return slot.rec;
    }
    const token = opts.token ?? null;
    if (opts.limits) {
      const since = new Date(Date.parse(now) - opts.limits.windowMs).toISOString();
      const open = this.#pending.filter((p) => p.rec.assignedHost === null && p.rec.lastSeen >= since);
      const hit = pendingLimitHit(opts.limits, {
        byToken: token === null ? 0 : open.filter((p) => p.rec.token === token).length,
        byAddress: address === null ? 0 : open.filter((p) => p.origin === address).length,
        total: open.length,
      }, { token, address });
      if (hit) throw hit;
    }
    const rec: PendingMachine = freeze({
      id: ++this.#pendingSeq, facts: freeze({ ...c, macs: freeze([...c.macs]) }), address,
      firstSeen: now, lastSeen: now, assignedHost: null, assigned: null, token,
    });
    this.#pending.push({ key, origin: address, rec });
    return rec;
  }

  async getPending(id: number): Promise<PendingMachine | null> {
    return this.#pending.find((p) => p.rec.id === id)?.rec ?? null;
  }

  async listPending(filter: { mac?: string; unassigned?: boolean } = {}): Promise<PendingMachine[]> {
    const mac = filter.mac === undefined ? undefined : normalizeMac(filter.mac);
    if (mac === null) return [];
    return this.#pending
      .map((p) => p.rec)
      .filter((r) => (mac === undefined || r.facts.macs.includes(mac)) && (!filter.unassigned || r.assignedHost === null))
      .reverse();
  }

  async assignPending(id: number, host: string): Promise<PendingMachine> {
    const slot = this.#pending.find((p) => p.rec.id === id);
    if (!slot) throw new RuError('PENDING_UNKNOWN', `no pending machine ${id}`, { pending: id });
    this.#host(host);
    slot.rec = freeze({ ...slot.rec, assignedHost: host, assigned: this.#time() });
    return slot.rec;
  }

  async forgetPending(id: number): Promise<PendingMachine> {
    const i = this.#pending.findIndex((p) => p.rec.id === id);
    if (i < 0) throw new RuError('PENDING_UNKNOWN', `no pending machine ${id}`, { pending: id });
    return this.#pending.splice(i, 1)[0]!.rec;
  }

  async appendAudit(e: NewAuditEvent): Promise<AuditEvent> {
    checkAuditEvent(e);
    const rec: AuditEvent = freeze({
      id: this.#audit.length + 1, time: this.#time(), kind: e.kind, token: e.token ?? null, address: e.address ?? null,
      host: e.host ?? null, version: e.version ?? null, bytes: e.bytes ?? null, result: e.result, detail: e.detail ?? null,
    });
    this.#audit.push(rec);
    return rec;
  }

  async appendAudits(es: readonly NewAuditEvent[]): Promise<void> {
    for (const e of es) checkAuditEvent(e);
    for (const e of es) await this.appendAudit(e);
  }

  async queryAudit(q: AuditQuery = {}): Promise<AuditEvent[]> {
    const limit = auditLimit(q);
    const out: AuditEvent[] = [];
    for (let i = this.#audit.length - 1; i >= 0 && out.length < limit; i--) {
      const e = this.#audit[i]!;
      if (q.kind !== undefined && e.kind !== q.kind) continue;
      if (q.host !== undefined && e.host !== q.host) continue;
      if (q.token !== undefined && e.token !== q.token) continue;
      if (q.result !== undefined && e.result !== q.result) continue;
      if (q.since !== undefined && e.time < q.since) continue;
      if (q.until !== undefined && e.time >= q.until) continue;
      if (q.beforeId !== undefined && e.id >= q.beforeId) continue;
      out.push(e);
    }
    return out;
  }

  async openLog(l: { host: string; workflow: string; stamp: string; address?: string | null }): Promise<LogRecord> {
    checkLogName(l.workflow, 'workflow');
    checkLogName(l.stamp, 'stamp');
    this.#host(l.host);
    const now = this.#time();
    const rec: LogRecord = freeze({
      id: this.#logs.length + 1, host: l.host, workflow: l.workflow, stamp: l.stamp, address: l.address ?? null,
      started: now, updated: now, bytes: 0, complete: false,
    });
    this.#logs.push(rec);
    return rec;
  }

  async updateLog(id: number, bytes: number, complete: boolean): Promise<LogRecord> {
    checkCount(bytes, 'bytes');
    const i = this.#logs.findIndex((l) => l.id === id);
    if (i < 0) throw new RuError('LOG_UNKNOWN', `no log ${id}`, { log: id });
    const rec = freeze({ ...this.#logs[i]!, bytes, complete, updated: this.#time() });
    this.#logs[i] = rec;
    return rec;
  }

  async getLog(id: number): Promise<LogRecord | null> {
    return this.#logs.find((l) => l.id === id) ?? null;
  }

  async listLogs(host: string): Promise<LogRecord[]> {
    return this.#logs.filter((l) => l.host === host).reverse();
  }

  #recovery(id: number): { rec: Recovery; events: RecoveryEvent[] } {
    const r = this.#recoveries.get(id);
    if (!r) throw new RuError('RECOVERY_UNKNOWN', `no recovery ${id}`, { recovery: id });
    return r;
  }

  async openRecovery(r: NewRecovery): Promise<Recovery> {
    const c = checkNewRecovery(r);
    const now = this.#time();
    const id = ++this.#recoverySeq;
    const rec: Recovery = freeze({
      id, token: c.token, address: c.address, host: c.host, pending: null, log: null,
      facts: c.facts === null ? null : deepFreeze(c.facts), hardware: c.hardware === null ? null : deepFreeze(c.hardware),
      phase: 'resolving', started: now, updated: now, lastSign: now, ended: null, exitStatus: null, error: null,
    });
    const booted: RecoveryEvent = deepFreeze({ recovery: id, seq: 1, time: now, kind: 'booted', actor: c.token, message: '', detail: bootedDetail(c.address) });
    this.#recoveries.set(id, { rec, events: [booted] });
    return rec;
  }

  async getRecovery(id: number): Promise<Recovery | null> {
    return this.#recoveries.get(id)?.rec ?? null;
  }

  async listRecoveries(q: RecoveryQuery = {}): Promise<Recovery[]> {
    const { limit } = checkRecoveryQuery(q);
    const out: Recovery[] = [];
    // A Map iterates in insertion order, which is id order: walk it backwards for newest first.
    const all = [...this.#recoveries.values()];
    for (let i = all.length - 1; i >= 0 && out.length < limit; i--) {
      const r = all[i]!.rec;
      if (q.active && isEnded(r.phase)) continue;
      if (q.host !== undefined && r.host !== q.host) continue;
      if (q.pending !== undefined && r.pending !== q.pending) continue;
      if (q.beforeId !== undefined && r.id >= q.beforeId) continue;
      out.push(r);
    }
    return out;
  }

  async appendRecoveryEvent(id: number, e: NewRecoveryEvent): Promise<{ recovery: Recovery; event: RecoveryEvent }> {
    const c = checkRecoveryEvent(e);
    const slot = this.#recovery(id);
    const now = this.#time();
    const event: RecoveryEvent = deepFreeze({
      recovery: id, seq: slot.events.length + 1, time: now, kind: c.kind, actor: c.actor, message: c.message, detail: c.detail,
    });
    slot.events.push(event);
    slot.rec = freeze(movedRecovery(slot.rec, c, now));
    return { recovery: slot.rec, event };
  }

  async listRecoveryEvents(id: number, opts: { afterSeq?: number } = {}): Promise<RecoveryEvent[]> {
    if (opts.afterSeq !== undefined) checkCount(opts.afterSeq, 'afterSeq');
    const after = opts.afterSeq ?? 0;
    return this.#recovery(id).events.filter((e) => e.seq > after);
  }

  async noteRecoverySign(id: number): Promise<void> {
    const slot = this.#recovery(id);
    slot.rec = freeze({ ...slot.rec, lastSign: this.#time() });
  }

  async setHostLayout(l: HostLayout): Promise<void> {
    const c = checkHostLayout(l);
    this.#host(c.host);
    this.#layouts.set(c.host, deepFreeze(c));
  }

  async listHostLayouts(): Promise<HostLayout[]> {
    return [...this.#layouts.values()].sort((a, b) => byText(a.host, b.host));
  }

  async createSession(s: Omit<Session, 'lastSeen' | 'created'>): Promise<Session> {
    const c = checkNewSession(s);
    this.#token(c.token);
    // The id is a secret's hash: the conflict names no value.
    if (this.#sessions.has(c.id)) throw new RuError('STORE_CONFLICT', 'the session exists already', { what: 'session' });
    const now = this.#time();
    const rec: Session = freeze({ ...c, created: now, lastSeen: now });
    this.#sessions.set(c.id, rec);
    return rec;
  }

  async getSession(id: string): Promise<Session | null> {
    return this.#sessions.get(id) ?? null;
  }

  async touchSession(id: string): Promise<boolean> {
    const s = this.#sessions.get(id);
    if (!s) return false;
    this.#sessions.set(id, freeze({ ...s, lastSeen: this.#time() }));
    return true;
  }

  async deleteSession(id: string): Promise<boolean> {
    return this.#sessions.delete(id);
  }

  async deleteStaleSessions(idleBefore: Iso): Promise<number> {
    checkIso(idleBefore, 'idleBefore');
    const now = this.#time();
    let n = 0;
    for (const [id, s] of this.#sessions) {
      if (s.expires <= now || s.lastSeen < idleBefore) {
        this.#sessions.delete(id);
        n++;
      }
    }
    return n;
  }

  async check(): Promise<StoreProblem[]> {
    const out: StoreProblem[] = [];
    for (const h of this.#hosts.values()) out.push(...versionProblems(h.id, this.#versions.get(h.id) ?? [], h.pinned));
    for (const [key, l] of this.#layers) {
      const versions = (this.#layerVersions.get(key) ?? []).map((v) => ({ ...v, manifestValid: isJsonText(v.manifest) }));
      out.push(...layerProblems(key, versions, l.pinned));
    }
    for (const l of this.#logs) {
      if (!Number.isSafeInteger(l.bytes) || l.bytes < 0) out.push({ kind: 'log-invalid', host: l.host, message: `log ${l.id}: size ${l.bytes} is malformed` });
    }
    return out;
  }

  async releaseBlobs(blobs: readonly string[], remove: (sha256: string) => Promise<unknown>): Promise<string[]> {
    while (this.#releasing) await this.#releasing.catch(() => undefined);
    const referenced = (b: string): boolean =>
      [...this.#versions.values(), ...this.#layerVersions.values()].some((l) => l.some((v) => v.blob === b));
    const run = (async () => {
      const removed: string[] = [];
      for (const b of blobs) {
        if (referenced(b)) continue;
        await remove(b);
        removed.push(b);
      }
      return removed;
    })();
    this.#releasing = run;
    try {
      return await run;
    } finally {
      if (this.#releasing === run) this.#releasing = null;
    }
  }

  async close(): Promise<void> {}
}
