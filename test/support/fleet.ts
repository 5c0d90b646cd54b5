// What the multi-instance tests (test/integration/multi-instance*.test.ts) share: a host's tree
// packed in-process, a bundle read and verified as apply reads it, where two downloads first
// differ, and a console session on an instance.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { readBundle } from '../../src/adapters/tar/bundle-reader.ts';
import { pack } from '../../src/cli/commands/pack.ts';
import type { Manifest } from '../../src/core/manifest.ts';
import { DEFAULT_LIMITS } from '../../src/core/policy.ts';
import { parsePublicKey } from '../../src/core/signature.ts';
import { cleanup, makeTree, type TreeSpec } from '../helpers.ts';

export interface Packed {
  readonly bytes: Buffer;
  readonly manifest: Manifest;
  /** path → sha256 of each file. */
  readonly files: Record<string, string>;
}

let packs = 0;

/** A host's ReaR tree (local.conf with a marker, a disk layout, `extra` below etc/rear) packed in-process under `work`. */
export async function packed(work: string, host: string, marker: string, extra: TreeSpec = {}): Promise<Packed> {
  const n = ++packs;
  const root = join(work, `tree-${n}`);
  makeTree(root, { etc: { rear: { 'local.conf': `OUTPUT=ISO\n# ${host} ${marker}\n`, ...extra } }, var: { lib: { rear: { layout: { 'disklayout.conf': `disk /dev/sda ${1000 + n} gpt\n` } } } } });
  const out = join(work, `bundle-${n}.tar.gz`);
  const { manifest } = await pack({ root, host, created: '2026-01-01T00:00:00Z', output: out });
  cleanup(root);
  const files: Record<string, string> = {};
  for (const e of manifest.entries) if (e.type === 'file') files[e.path] = e.sha256!;
  const bytes = readFileSync(out);
  cleanup(out);
  return { bytes, manifest, files };
}

/** The bundle read and verified as apply reads it, trusting only `pubPem` (the first instance's server.pub). */
export async function opened(bundle: Buffer, pubPem: string): Promise<{ host: string | null; version: number | null; files: Record<string, string> }> {
  const r = await readBundle(Readable.from([bundle]), { trusted: [parsePublicKey(pubPem, 'server.pub')], allowUnsigned: false, enforceTrust: true, limits: DEFAULT_LIMITS });
  const files: Record<string, string> = {};
  for (const e of r.manifest!.entries) if (e.type === 'file') files[e.path] = e.sha256!;
  return { host: r.manifest!.host, version: r.manifest!.version ?? null, files };
}

/** Where two buffers first differ (-1: equal). */
export function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** Signs in to the console on `base` with a token: the session cookie. */
export async function signIn(base: string, token: string): Promise<string> {
  const r = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const q = http.request(new URL('/sign-in', base), { method: 'POST', agent: false, headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(base).origin } }, resolve);
    q.on('error', reject);
    q.end(new URLSearchParams({ token, next: '/' }).toString());
  });
  r.resume();
  assert.equal(r.statusCode, 303, 'sign-in redirects');
  const cookie = (r.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]!).find((c) => c.startsWith('ru_session='));
  assert.ok(cookie, `a session cookie: ${JSON.stringify(r.headers['set-cookie'])}`);
  return cookie;
}
