// Shared test helpers: run the built CLI, build trees and archives from code (no committed
// binary fixtures), and snapshot a directory tree so "byte-for-byte unchanged" is one assert.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header, Pax, type HeaderData } from 'tar';
import { CANONICAL_GZIP_HEADER, CONTAINER_DIGEST, EMPTY_DIGEST, signContainer, signedGzipHeader } from '../src/core/container.ts';
import { parsePrivateKey } from '../src/core/signature.ts';

export const REPO = resolve(import.meta.dirname, '..');
export const CLI = join(REPO, 'dist', 'rear-update.cjs');
export const EXE = join(REPO, 'dist', 'rear-update');

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the bundled CLI (dist/rear-update.cjs) as a real process. */
export function cli(args: readonly string[], opts: { env?: Record<string, string>; cwd?: string; input?: string } = {}): CliResult {
  const r: SpawnSyncReturns<string> = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd ?? REPO,
    input: opts.input ?? '',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Like cli(), without blocking the event loop (needed when the test also runs a server). */
export function cliAsync(args: readonly string[], opts: { env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (status) => res({ status, stdout, stderr }));
  });
}

export const errorCode = (r: CliResult): string | null => /error ([A-Z_]+):/.exec(r.stderr)?.[1] ?? null;

export function tempDir(prefix = 'ru-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A file tree from a spec: string = file content, { link } = symlink, {} nested = directory. */
export type TreeSpec = { [name: string]: string | Buffer | { link: string } | { mode: number; content: string } | TreeSpec };

export function makeTree(root: string, spec: TreeSpec): void {
  mkdirSync(root, { recursive: true });
  for (const [name, v] of Object.entries(spec)) {
    const p = join(root, name);
    if (typeof v === 'string' || Buffer.isBuffer(v)) {
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p, v, { mode: 0o644 });
    } else if ('link' in v && typeof v.link === 'string') {
      symlinkSync(v.link, p);
    } else if ('mode' in v && typeof v.mode === 'number') {
      writeFileSync(p, (v as { content: string }).content, { mode: v.mode });
    } else {
      makeTree(p, v as TreeSpec);
    }
  }
}

export interface NodeSnap {
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly sha256?: string;
  readonly target?: string;
  readonly ino?: number;
}

/**
 * Everything that "byte-for-byte unchanged" means for a tree: type, mode, owner, content
 * hash and link target of every entry, including the root directory itself.
 */
export function snapshot(root: string, opts: { inodes?: boolean } = {}): Record<string, NodeSnap> {
  const out: Record<string, NodeSnap> = {};
  const visit = (rel: string): void => {
    const abs = rel === '' ? root : join(root, rel);
    const st = lstatSync(abs);
    const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, ...(opts.inodes ? { ino: st.ino } : {}) };
    if (st.isSymbolicLink()) out[rel || '.'] = { type: 'symlink', ...base, target: readlinkSync(abs) };
    else if (st.isFile()) out[rel || '.'] = { type: 'file', ...base, sha256: createHash('sha256').update(readFileSync(abs)).digest('hex') };
    else if (st.isDirectory()) {
      out[rel || '.'] = { type: 'dir', ...base };
      for (const n of readdirSync(abs).sort()) visit(rel === '' ? n : `${rel}/${n}`);
    } else out[rel || '.'] = { type: 'other', ...base };
  };
  visit('');
  return out;
}

export const cleanup = (...dirs: string[]): void => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
};

/** One member of a hand-made (possibly hostile) archive. */
export interface RawMember extends HeaderData {
  readonly body?: string | Buffer;
  /** Force a PAX record with these fields (e.g. a path that overrides the ustar name). */
  readonly pax?: HeaderData;
}

/**
 * Builds a tar.gz from raw members with node-tar's header encoder: the archives hostile
 * tests need, which no well-behaved packer would write.
 */
export function rawTarGz(members: readonly RawMember[]): Buffer {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const body = m.body === undefined ? Buffer.alloc(0) : Buffer.from(m.body);
    const { body: _b, pax, ...hd } = m;
    const data: HeaderData = { mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), type: 'File', size: hd.type && hd.type !== 'File' ? 0 : body.length, ...hd };
    const block = Buffer.alloc(512);
    const needPax = new Header(data).encode(block, 0);
    if (pax) blocks.push(new Pax({ ...pax }).encode());
    else if (needPax) blocks.push(new Pax({ path: data.path, linkpath: data.linkpath }).encode());
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

/**
 * Rewrites the typeflag of the ustar header block at `offset` of an uncompressed tar (node-tar's
 * encoder only writes known types) and recomputes the header checksum. E.g. 'Z': a type GNU tar
 * extracts as a regular file ("Unknown file type ..., extracted as normal file").
 */
export function setTypeflag(tar: Buffer, offset: number, flag: string): void {
  const h = tar.subarray(offset, offset + 512);
  h[156] = flag.charCodeAt(0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

/**
 * Gzips a tar and seals the container with `keyFile` (core/container.ts), as only the key's
 * holder could. Tests use it to reach the member-level checks behind the container signature.
 */
export function resealed(tar: Buffer, keyFile: string): Buffer {
  const body = gzipSync(tar).subarray(CANONICAL_GZIP_HEADER.length);
  const key = parsePrivateKey(readFileSync(keyFile, 'utf8'), keyFile);
  const digest = { split: body.length, part1: createHash(CONTAINER_DIGEST).update(body).digest(), part2: EMPTY_DIGEST };
  return Buffer.concat([signedGzipHeader(signContainer(digest, key), body.length), body]);
}

/**
 * A test CA and a server certificate for 127.0.0.1 (IP SAN) made with openssl in `dir`, as an
 * admin would make them: { caPem, cert, key } (the last two are file paths).
 */
export function testCa(dir: string, cn: string): { caPem: string; cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  const ossl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', `/CN=${cn}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'srv.key', '-out', 'srv.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'srv.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  ossl('x509', '-req', '-in', 'srv.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'srv.ext', '-out', 'srv.pem');
  return { caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'), cert: join(dir, 'srv.pem'), key: join(dir, 'srv.key') };
}

/** A sysfs/procfs below `root` with PCI NICs of these MACs and this hostname (rear-update facts --sys-root). */
export function fakeSysRoot(root: string, macs: readonly string[], hostname: string): string {
  macs.forEach((mac, i) => {
    const rel = `devices/pci0000:00/0000:00:0${i + 3}.0/net/eth${i}`;
    makeTree(join(root, 'sys', rel), { address: `${mac}\n` });
    mkdirSync(join(root, 'sys/class/net'), { recursive: true });
    symlinkSync(`../../${rel}`, join(root, 'sys/class/net', `eth${i}`));
  });
  makeTree(join(root, 'proc/sys/kernel'), { hostname: `${hostname}\n` });
  return root;
}

/** One JSON request to a server with a bearer token (the admin API in tests); `json` is null for an empty body. */
export function jsonRequest(base: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return new Promise((resolve, reject) => {
    const r = http.request(new URL(path, base), { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) } }, (res) => {
      let t = '';
      res.on('data', (c: Buffer) => (t += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: t ? JSON.parse(t) : null }));
    });
    r.on('error', reject);
    r.end(body ? JSON.stringify(body) : undefined);
  });
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface HttpOptions {
  /** Sent as `Bearer TOKEN`; null: no Authorization header. */
  token?: string | null;
  /** The raw Authorization value (DRLM style), instead of `token`. */
  auth?: string;
  headers?: Record<string, string>;
  /** A Buffer goes as application/gzip, a string as text/plain, anything else as JSON. */
  body?: Buffer | string | object;
  /** The client's source address (any 127.x works on loopback). */
  from?: string;
}

/** One request to a test server on loopback; the whole answer, and its JSON when it is JSON. */
export function httpRequest(base: string, method: string, path: string, opts: HttpOptions = {}): Promise<HttpAnswer> {
  const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) || typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth !== undefined) headers.authorization = opts.auth;
  else if (opts.token !== null && opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = Buffer.isBuffer(opts.body) ? 'application/gzip' : typeof opts.body === 'string' ? 'text/plain' : 'application/json';
  return new Promise((resolve, reject) => {
    const r = http.request(new URL(path, base), { method, headers, agent: false, ...(opts.from ? { localAddress: opts.from } : {}) }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const b = Buffer.concat(parts);
        let json: unknown = null;
        try {
          json = JSON.parse(b.toString('utf8'));
        } catch {
          // a bundle or a log
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b, json });
      });
    });
    r.on('error', reject);
    r.end(body);
  });
}

/**
 * A test server's admin side: JSON requests and `rear-update admin ...` runs with the admin
 * token unless another is given. The server and token are read when called (they are set in
 * the suite's before()).
 */
export function adminSide(server: () => { url: string }, adminToken: () => string): {
  req: (method: string, path: string, opts?: HttpOptions) => Promise<HttpAnswer>;
  adm: (args: string[], token?: string) => Promise<CliResult>;
} {
  return {
    req: (method, path, opts = {}) => httpRequest(server().url, method, path, { ...opts, token: opts.token === undefined ? adminToken() : opts.token }),
    adm: (args, token = adminToken()) => cliAsync(['admin', ...args], { env: { REAR_UPDATE_SERVER: server().url, REAR_UPDATE_TOKEN: token } }),
  };
}

/** The CLI run succeeded (exit 0), else the assertion shows its stderr. */
export const succeeded = (r: CliResult): CliResult => {
  assert.equal(r.status, 0, `exit ${r.status}\n${r.stderr}`);
  return r;
};
