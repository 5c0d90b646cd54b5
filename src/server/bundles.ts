// Publishing and serving bundles: the server's application logic between the HTTP routes and
// the stores. A publish is spooled to DATA/tmp, read with the same reader and safe-extraction
// rules as apply, stored only if its content changed, and checked once more in the form it
// will be served before the version exists. Serving seals a copy per request
// (adapters/tar/served-bundle.ts) from a payload kept in memory when it is small enough, with
// the request's nonce, if it sent one, signed into the manifest (core/freshness.ts).

import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fromSystemError, RuError } from '../core/errors.ts';
import { contentDigest, decodeManifest, encodeManifest, isoSeconds, type Manifest } from '../core/manifest.ts';
import { DEFAULT_LIMITS } from '../core/policy.ts';
import type { PrivateKey } from '../core/signature.ts';
import type { BlobInfo, BlobStore } from '../core/store/blobs.ts';
import { checkLayerOwns, checkSamePriority, compose, type StoredLayer } from '../core/compose.ts';
import type { Host, LayerPublishResult, MetadataStore, PublishResult, ServedLayer, VersionRecord } from '../core/store/metadata.ts';
import { readBundle } from '../adapters/tar/bundle-reader.ts';
import { extractFile } from '../adapters/tar/extract-file.ts';
import { TtlCache } from './cache.ts';
import { bufferPayload, concatPayload, END_MEMBER, metaTarBytes, payloadMember, seal, sealedBytes, type PayloadSource, type Sealed } from '../adapters/tar/served-bundle.ts';

export interface BundleServiceOptions {
  readonly meta: MetadataStore;
  readonly blobs: BlobStore;
  readonly key: PrivateKey;
  readonly tmpDir: string;
  readonly maxUpload: number;
  /** Bytes of payload kept in memory for serving; 0 reads the blob store each time. */
  readonly cacheBytes: number;
  readonly now: () => Date;
}

/** The layers a host is composed of, and a short name of that composition (for ETags and memos). */
export interface Composition {
  readonly layers: readonly ServedLayer[];
  /** '' without layers; else 12 hex digits naming every layer's class, name, version and blob. */
  readonly key: string;
}

const NO_LAYERS: Composition = { layers: [], key: '' };

/** A cached payload unused this long may make room for another. */
const IDLE_MS = 60_000;

export class BundleService {
  readonly #o: BundleServiceOptions;
  readonly #cache = new Map<string, { data: Buffer; used: number }>();
  /** Payloads being read into the cache: concurrent first requests wait for the one read. */
  readonly #loading = new Map<string, Promise<Buffer>>();
  readonly #sealings = new TtlCache<string, Sealed>(2000, 1024);
  /** A stored version's manifest never changes: decoded once per minute, not per sealing (0.35 ms for 200 entries). */
  readonly #manifests = new TtlCache<string, Manifest>(60_000, 4096);
  /** The layers of a class, looked up at most once a second (cache.ts: what another instance changes shows within that). */
  readonly #classLayers = new TtlCache<string, Composition>(1000, 4096);
  /**
   * sha256 state after a composition's layer members: every host of a class shares it, so a
   * host's composed digest costs hashing only its own member (Hash#copy), not the 100 MiB of
   * a driver layer again per host and request.
   */
  readonly #prefixes = new TtlCache<string, Hash>(3_600_000, 256);
  #cached = 0;

  constructor(o: BundleServiceOptions) {
    this.#o = o;
  }

  /** Spools an upload to a temporary file, refusing it once it exceeds maxUpload. */
  async #spool(body: Readable, announced: number | null): Promise<string> {
    const max = this.#o.maxUpload;
    if (announced !== null && announced > max) {
      body.resume();
      throw new RuError('UPLOAD_TOO_LARGE', `the upload announces ${announced} bytes; the server accepts at most ${max}`, { limit: max });
    }
    const file = join(this.#o.tmpDir, `upload-${randomBytes(8).toString('hex')}.tar.gz`);
    let n = 0;
    try {
      await pipeline(
        body,
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) {
            n += c.length;
            if (n > max) throw new RuError('UPLOAD_TOO_LARGE', `the upload exceeds ${max} bytes, the most the server accepts`, { limit: max });
            yield c;
          }
        },
        createWriteStream(file, { mode: 0o600 }),
      );
    } catch (e) {
      await rm(file, { force: true });
      if (e instanceof RuError) throw e;
      // A full disk is ours to report (507 NO_SPACE); anything else came from the client's side.
      const code = (e as NodeJS.ErrnoException)?.code;
      if (code === 'ENOSPC' || code === 'EDQUOT') throw fromSystemError(e, 'receiving an upload');
      throw new RuError('BLOB_INPUT_FAILED', `the upload ended early: ${(e as Error).message}`);
    }
    return file;
  }

  /**
   * Stores a published bundle as the next version of `host`, unless its content equals the
   * latest version's. Any refusal (a full disk too: NO_SPACE) leaves the store as it was: the
   * spooled upload is removed, and so is a blob it stored that no version names. Only kill -9
   * can leave such a blob; the next start removes it (store-check.ts).
   */
  async publish(found: Host | { id: string; class: null; create: () => Promise<Host> }, body: Readable, opts: { announced: number | null; publisher: string | null }): Promise<PublishResult> {
    let host: Pick<Host, 'id' | 'class'> = found;
    const file = await this.#spool(body, opts.announced);
    let blob: BlobInfo | null = null;
    try {
      const read = await readBundle(createReadStream(file, { highWaterMark: 1 << 20 }), {
        trusted: [], allowUnsigned: true, enforceTrust: false, limits: DEFAULT_LIMITS,
      });
      if (!read.manifest || !read.manifestBytes) {
        throw new RuError('BUNDLE_MANIFEST_INVALID', 'a publish must be a bundle made by `rear-update pack` or `publish` (this is a plain tar.gz without a manifest)');
      }
      if (read.manifest.layers !== undefined) {
        throw new RuError('BUNDLE_MANIFEST_INVALID', 'this is a layer file (pack --layer): publish it as a layer (`rear-update publish --layer NAME --class C`), not as a host\'s configuration');
      }
      const digest = contentDigest(read.manifest);
      const latest = 'create' in found ? null : await this.#o.meta.latestVersion(host.id);
      if (latest && latest.digest === digest) return { version: latest, created: false };
      const sigLen = read.signatureRecord ? Buffer.byteLength(`${JSON.stringify(read.signatureRecord)}\n`) : null;
      const payload = (): AsyncIterable<Uint8Array> => payloadMember(file, metaTarBytes(read.manifestBytes!.length, sigLen));
      blob = await this.#o.blobs.put(payload());
      // A nonce belongs to one fetch: one that a publisher put in its manifest is not kept.
      const { nonce: _nonce, ...published } = read.manifest;
      const stored: Manifest = { ...published, host: host.id, class: host.class, version: null, served: null };
      // The proof that what will be served is sound: seal it and read it as a client would.
      const probe = await this.#sealWith(stored, 0, blob.sha256, blob.size, this.#o.now());
      await readBundle(Readable.from(sealedBytes(probe)), {
        trusted: [this.#o.key.publicKey], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS,
      }).catch((e: unknown) => {
        throw e instanceof RuError ? new RuError(e.code, `the bundle does not survive serving: ${e.message}`, e.context) : e;
      });
      // A host that an admin's publish creates exists only once its first version is sound.
      if ('create' in found) host = await found.create();
      const r = await this.#o.meta.publishVersion(
        { host: host.id, blob: blob.sha256, digest, size: blob.size, manifest: encodeManifest(stored).toString('utf8'), publisher: opts.publisher },
        { ifChanged: true },
      );
      // A start's sweep, or a failed publish of the same bytes, may have released the blob
      // before this version named it (releaseBlobs): then it is stored again.
      if (r.created && !(await this.#o.blobs.has(blob.sha256))) await this.#o.blobs.put(payload(), { sha256: blob.sha256, size: blob.size });
      if (!r.created && blob.created) await this.#release(blob.sha256);
      return r;
    } catch (e) {
      // Nothing partial stays: a blob this publish stored, that no version names, goes again.
      if (blob?.created) await this.#release(blob.sha256);
      throw e;
    } finally {
      await rm(file, { force: true });
    }
  }

  /**
   * Stores a layer file (pack --layer) as the next version of layer CLASS/NAME, unless its
   * content equals the latest version's (the priority is updated either way). Refused before
   * anything is stored: a file that is not a layer file, a layer that would own a host's own
   * configuration (LAYER_PATH_RESERVED), a path that another layer of the class with the same
   * priority carries differently, or a layer that cannot be composed with the class's other
   * layers (LAYER_CONFLICT). The payload is stored without the tar end blocks, so that layers
   * follow one another in a composed bundle (docs/layers.md).
   */
  async publishLayer(target: { class: string; name: string; priority: number }, body: Readable, opts: { announced: number | null; publisher: string | null }): Promise<LayerPublishResult> {
    const file = await this.#spool(body, opts.announced);
    let blob: BlobInfo | null = null;
    try {
      const read = await readBundle(createReadStream(file, { highWaterMark: 1 << 20 }), {
        trusted: [], allowUnsigned: true, enforceTrust: false, limits: DEFAULT_LIMITS,
      });
      if (!read.manifest || !read.manifestBytes || read.manifest.layers?.length !== 1 || read.manifest.shadowed !== undefined) {
        throw new RuError('BUNDLE_MANIFEST_INVALID', 'a layer publish must be a layer file made by `rear-update pack --layer` (or `publish --layer`)');
      }
      const { nonce: _nonce, ...published } = read.manifest;
      const own = read.manifest.layers[0] as NonNullable<Manifest['layers']>[number];
      const stored: Manifest = { ...published, host: null, class: target.class, version: null, served: null, layers: [{ ...own, name: target.name, class: target.class, priority: target.priority, version: null }] };
      checkLayerOwns(target, stored.owns);
      const mine: StoredLayer = { ...target, version: 0, manifest: stored };
      // Same priority, same class: the order would depend on names alone. And whatever the
      // priorities, the class's hosts must stay composable.
      // A '*' layer is composed into every class: checked against each class that has layers.
      const classes = target.class === '*' ? [null, ...new Set((await this.#o.meta.listLayers()).map((l) => l.class).filter((c) => c !== '*'))] : [target.class];
      for (const cls of classes) {
        const others = (await this.#o.meta.servedLayers(cls)).filter((l) => !(l.layer.class === target.class && l.layer.name === target.name));
        const stored2 = await Promise.all(others.map(async (l) => this.#storedLayer(l)));
        checkSamePriority(mine, stored2);
        const empty: Manifest = { ...stored, entries: [], owns: [] };
        delete (empty as { layers?: unknown }).layers;
        compose([...stored2, mine], { id: 'composition-check', class: cls, version: 0, manifest: empty });
      }
      const digest = contentDigest(stored);
      const latest = await this.#o.meta.latestLayerVersion(target.class, target.name);
      if (latest && latest.digest === digest) {
        return this.#o.meta.publishLayerVersion({ ...target, blob: latest.blob, digest, size: latest.size, manifest: latest.manifest, publisher: opts.publisher }, { ifChanged: true });
      }
      const sigLen = read.signatureRecord ? Buffer.byteLength(`${JSON.stringify(read.signatureRecord)}\n`) : null;
      const payload = (): AsyncIterable<Uint8Array> => payloadMember(file, metaTarBytes(read.manifestBytes!.length, sigLen), { withoutEnd: true });
      blob = await this.#o.blobs.put(payload());
      // The proof that it will serve: sealed alone (with the end member) and read as a client would.
      const probe = seal({ ...stored, version: 0, served: isoSeconds(this.#o.now().getTime() / 1000) }, this.#o.key, await this.#layerAlone(blob.sha256, blob.size));
      await readBundle(Readable.from(sealedBytes(probe)), {
        trusted: [this.#o.key.publicKey], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS,
      }).catch((e: unknown) => {
        throw e instanceof RuError ? new RuError(e.code, `the layer does not survive serving: ${e.message}`, e.context) : e;
      });
      const r = await this.#o.meta.publishLayerVersion(
        { ...target, blob: blob.sha256, digest, size: blob.size, manifest: encodeManifest(stored).toString('utf8'), publisher: opts.publisher },
        { ifChanged: true },
      );
      if (r.created && !(await this.#o.blobs.has(blob.sha256))) await this.#o.blobs.put(payload(), { sha256: blob.sha256, size: blob.size });
      if (!r.created && blob.created) await this.#release(blob.sha256);
      this.#classLayers.clear();
      return r;
    } catch (e) {
      if (blob?.created) await this.#release(blob.sha256);
      throw e;
    } finally {
      await rm(file, { force: true });
    }
  }

  /** A layer's payload member followed by the tar end: the layer as a bundle of its own. */
  async #layerAlone(sha256: string, size: number): Promise<PayloadSource> {
    const member = await this.payload(sha256, size);
    const end = bufferPayload(END_MEMBER, createHash('sha256').update(END_MEMBER).digest('hex'));
    const h = createHash('sha256');
    for await (const c of member.chunks()) h.update(c);
    h.update(END_MEMBER);
    return concatPayload([member, end], h.digest('hex'));
  }

  /** A sealed copy of one layer version on its own (admin inspection; never what a host is served). */
  async sealedLayer(rec: { class: string; name: string; version: number; blob: string; size: number; manifest: string }, served: Date): Promise<Sealed> {
    const m = decodeManifest(Buffer.from(rec.manifest));
    const own = m.layers?.[0];
    const manifest: Manifest = { ...m, served: isoSeconds(served.getTime() / 1000), ...(own ? { layers: [{ ...own, version: rec.version }] } : {}) };
    return seal(manifest, this.#o.key, await this.#layerAlone(rec.blob, rec.size));
  }

  async #storedLayer(l: ServedLayer): Promise<StoredLayer> {
    const v = l.version;
    const manifest = await this.#manifests.get(`layer\0${v.class}\0${v.name}\0${v.version}\0${v.blob}`, async () => decodeManifest(Buffer.from(v.manifest)));
    return { class: l.layer.class, name: l.layer.name, priority: l.layer.priority, version: v.version, manifest };
  }

  /** The layers a host of this class is composed of now (a second's memo: cache.ts). */
  async composition(host: Pick<Host, 'class'>): Promise<Composition> {
    return this.#classLayers.get(host.class ?? '\0', async () => {
      const layers = await this.#o.meta.servedLayers(host.class);
      if (layers.length === 0) return NO_LAYERS;
      const key = createHash('sha256').update(layers.map((l) => `${l.layer.class}/${l.layer.name}/${l.layer.priority}/${l.version.version}/${l.version.blob}`).join('\n')).digest('hex').slice(0, 12);
      return { layers, key };
    });
  }

  /** The composed manifest of a host version (the host's own manifest without layers). */
  async composedManifest(host: Host, rec: VersionRecord, c: Composition): Promise<Manifest> {
    const own = await this.#manifests.get(`${host.id}\0${rec.version}\0${rec.blob}`, async () => decodeManifest(Buffer.from(rec.manifest)));
    if (c.layers.length === 0) return own;
    const layers = await Promise.all(c.layers.map(async (l) => this.#storedLayer(l)));
    return compose(layers, { id: host.id, class: host.class, version: rec.version, manifest: own });
  }

  /** A layer was pinned or unpinned through this instance: compose anew at once. */
  layersChanged(): void {
    this.#classLayers.clear();
  }

  /**
   * One regular file of what a host is served, the composed view: the host's own member is
   * searched first, then its layers from the last to the first (a later layer wins).
   */
  async composedFile(host: Host, rec: VersionRecord, path: string, maxBytes: number): Promise<Buffer | null> {
    const c = await this.composition(host);
    const parts = [{ blob: rec.blob, size: rec.size }, ...[...c.layers].reverse().map((l) => ({ blob: l.version.blob, size: l.version.size }))];
    for (const p of parts) {
      const found = await extractFile((await this.payload(p.blob, p.size)).chunks(), path, maxBytes);
      if (found !== null) return found;
    }
    return null;
  }

  /** Removes a blob if no version names it; a failure leaves it for the next start's sweep. */
  async #release(sha256: string): Promise<void> {
    await this.#o.meta.releaseBlobs([sha256], (b) => this.#o.blobs.delete(b)).catch(() => undefined);
  }

  /** The version served for `host` (pinned, else latest), or the one asked for. */
  async record(host: Host, version: number | null): Promise<VersionRecord> {
    const rec = version === null ? await this.#o.meta.servedVersion(host.id) : await this.#o.meta.getVersion(host.id, version);
    if (!rec) {
      if (version !== null) throw new RuError('VERSION_UNKNOWN', `host ${host.id} has no version ${version}`, { host: host.id, version });
      throw new RuError('NO_BUNDLE', `host ${host.id} has no published bundle yet`, { host: host.id });
    }
    return rec;
  }

  /**
   * A sealed copy of a version, served at `served` (whole seconds), carrying `nonce` when the
   * request sent one. Sealing is deterministic, so answers within the same second share one
   * sealing (a memo of two seconds): the bytes are exactly those a fresh sealing would give.
   * A sealing with a nonce answers one request (and its resumes): it is not memoized, where it
   * would only crowd out the shared ones.
   */
  async sealed(host: Host, rec: VersionRecord, served: Date, nonce: string | null = null, comp?: Composition): Promise<Sealed> {
    const c = comp ?? (await this.composition(host));
    const make = async (): Promise<Sealed> => {
      const m = await this.composedManifest(host, rec, c);
      const { nonce: _stored, ...rest } = { ...m, host: host.id, class: host.class };
      const manifest: Manifest = { ...rest, version: rec.version, served: isoSeconds(served.getTime() / 1000), ...(nonce !== null ? { nonce } : {}) };
      return seal(manifest, this.#o.key, await this.#composedPayload(c, rec));
    };
    if (nonce !== null) return make();
    // The key is part of it: a rotation (key-ring.ts) must not serve a sealing by the former key.
    return this.#sealings.get(`${host.id}\0${host.class ?? ''}\0${rec.version}\0${rec.blob}\0${c.key}\0${served.getTime()}\0${this.#o.key.publicKey.fingerprint}`, make);
  }

  /** The host's payload member, after its layers' members when it has any (one part two). */
  async #composedPayload(c: Composition, rec: VersionRecord): Promise<PayloadSource> {
    const own = await this.payload(rec.blob, rec.size);
    if (c.layers.length === 0) return own;
    const parts = await Promise.all(c.layers.map(async (l) => this.payload(l.version.blob, l.version.size, { shared: true })));
    const prefix = await this.#prefixes.get(c.layers.map((l) => l.version.blob).join(','), async () => {
      const h = createHash('sha256');
      for (const p of parts) for await (const chunk of p.chunks()) h.update(chunk);
      return h;
    });
    const h = prefix.copy();
    for await (const chunk of own.chunks()) h.update(chunk);
    return concatPayload([...parts, own], h.digest('hex'));
  }

  async #sealWith(m: Manifest, version: number, blob: string, size: number, served: Date, nonce: string | null = null): Promise<Sealed> {
    const { nonce: _stored, ...rest } = m;
    const manifest: Manifest = { ...rest, version, served: isoSeconds(served.getTime() / 1000), ...(nonce !== null ? { nonce } : {}) };
    return seal(manifest, this.#o.key, await this.payload(blob, size));
  }

  /**
   * The stored payload member. Small ones stay in memory, up to cacheBytes. When it is full, a
   * new payload displaces only entries unused for IDLE_MS; otherwise it is served from disk
   * without being kept: a fleet slightly larger than the cache, fetched in turn, would
   * otherwise evict every entry just before it is needed again (an LRU's worst case).
   * A host's member may take a quarter of the cache; a layer's (`shared`: every host of its
   * class is served it) half: measured, a 100 MiB layer served from memory keeps up with nginx's
   * sendfile, streamed from disk it reaches a third of it (docs/performance.md). Concurrent
   * first requests read a payload once.
   */
  async payload(sha256: string, size: number, opts: { shared?: boolean } = {}): Promise<PayloadSource> {
    const hit = this.#cache.get(sha256);
    const now = Date.now();
    if (hit) {
      hit.used = now;
      return bufferPayload(hit.data, sha256);
    }
    const blobs = this.#o.blobs;
    const open = async (): Promise<Readable> => {
      const got = await blobs.get(sha256);
      if (!got) throw new RuError('BLOB_MISSING', `bundle data ${sha256} is missing from the blob store`, { blob: sha256 });
      return got.stream;
    };
    const loading = this.#loading.get(sha256);
    if (loading) return bufferPayload(await loading, sha256);
    if (size <= this.#o.cacheBytes / (opts.shared ? 2 : 4) && this.#makeRoom(size, now)) {
      const load = (async (): Promise<Buffer> => {
        const parts: Buffer[] = [];
        for await (const c of await open()) parts.push(c as Buffer);
        const data = Buffer.concat(parts);
        if (!this.#cache.has(sha256)) {
          this.#cache.set(sha256, { data, used: now });
          this.#cached += data.length;
        }
        return data;
      })();
      this.#loading.set(sha256, load);
      try {
        return bufferPayload(await load, sha256);
      } finally {
        this.#loading.delete(sha256);
      }
    }
    return {
      size,
      sha256,
      chunks: async function* () {
        yield* (await open()) as AsyncIterable<Uint8Array>;
      },
    };
  }

  /** Frees `size` bytes of the payload cache from idle entries; false if it cannot. */
  #makeRoom(size: number, now: number): boolean {
    if (this.#cached + size <= this.#o.cacheBytes) return true;
    const idle = [...this.#cache].filter(([, e]) => now - e.used >= IDLE_MS).sort((a, b) => a[1].used - b[1].used);
    for (const [k, e] of idle) {
      if (this.#cached + size <= this.#o.cacheBytes) break;
      this.#cache.delete(k);
      this.#cached -= e.data.length;
    }
    return this.#cached + size <= this.#o.cacheBytes;
  }
}
