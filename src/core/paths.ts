// Member names as they come out of an archive are hostile input. This file turns a raw name
// into the one canonical relative form used everywhere else (manifest, plan, journal), or
// refuses it. Pure string work: checks run before any file system call (node-tar's CHECKPATH
// posture), and the file system layer re-checks with lstat afterwards.

import { RuError } from './errors.ts';

/** rear-update's own state lives here under the root; no bundle may write into it. */
export const STATE_DIR = 'var/lib/rear-update';
/** Where the manifest and signature members land when plain `tar -xzf BUNDLE -C /` is used. */
export const META_DIR = 'var/lib/rear-update/bundle';
export const MANIFEST_MEMBER = `${META_DIR}/manifest.json`;
export const SIGNATURE_MEMBER = `${META_DIR}/manifest.sig`;

export interface NameLimits {
  readonly maxNameBytes: number;
  readonly maxComponentBytes: number;
  readonly maxDepth: number;
}

/** The root entry of an archive (`./` or `.`): its metadata is never applied to the root. */
export const ROOT_PATH = '';

/**
 * Canonical form: relative, components separated by single slashes, no `.` or `..`, no
 * trailing slash. A leading `./` (as `tar -C dir .` writes) is accepted and dropped; the root
 * entry itself becomes ROOT_PATH.
 */
export function normalizeMemberName(raw: string, limits: NameLimits): string {
  if (raw.includes('\0')) throw new RuError('ENTRY_PATH_INVALID', `member name contains NUL: ${JSON.stringify(raw)}`, { path: raw, rule: 'name' });
  if (raw.startsWith('/')) throw new RuError('ENTRY_PATH_ABSOLUTE', `member name is absolute: ${raw}`, { path: raw, rule: 1 });
  if (/^[A-Za-z]:/.test(raw) || raw.includes('\\')) {
    // Not a Linux concern, but node-tar's history shows drive letters and backslashes used to smuggle paths.
    throw new RuError('ENTRY_PATH_INVALID', `member name has a drive letter or backslash: ${raw}`, { path: raw, rule: 'name' });
  }
  if (Buffer.byteLength(raw) > limits.maxNameBytes) {
    throw new RuError('LIMIT_NAME', `member name is longer than ${limits.maxNameBytes} bytes: ${raw.slice(0, 80)}...`, { path: raw.slice(0, 200), limit: limits.maxNameBytes });
  }
  const parts = raw.split('/');
  // A leading "./" and one trailing "/" are how tar writes ordinary names; anything else empty is not.
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  while (parts.length > 1 && parts[0] === '.') parts.shift();
  if (parts.length === 1 && (parts[0] === '.' || parts[0] === '')) {
    if (parts[0] === '') throw new RuError('ENTRY_PATH_INVALID', 'member name is empty', { path: raw, rule: 'name' });
    return ROOT_PATH;
  }
  for (const part of parts) {
    if (part === '..') throw new RuError('ENTRY_PATH_TRAVERSAL', `member name contains "..": ${raw}`, { path: raw, rule: 1 });
    if (part === '' || part === '.') throw new RuError('ENTRY_PATH_INVALID', `member name is not canonical (empty or "." component): ${raw}`, { path: raw, rule: 'name' });
    if (Buffer.byteLength(part) > limits.maxComponentBytes) {
      throw new RuError('LIMIT_NAME', `a component of ${raw.slice(0, 80)} is longer than ${limits.maxComponentBytes} bytes`, { path: raw.slice(0, 200), limit: limits.maxComponentBytes });
    }
  }
  if (parts.length > limits.maxDepth) {
    throw new RuError('LIMIT_DEPTH', `member is ${parts.length} levels deep, more than ${limits.maxDepth}: ${raw.slice(0, 80)}...`, { path: raw.slice(0, 200), limit: limits.maxDepth });
  }
  return parts.join('/');
}

/** Every proper ancestor of a canonical path, outermost first: "a/b/c" → ["a", "a/b"]. */
export function ancestors(path: string): string[] {
  const out: string[] = [];
  let i = path.indexOf('/');
  while (i !== -1) {
    out.push(path.slice(0, i));
    i = path.indexOf('/', i + 1);
  }
  return out;
}

export const parentOf = (path: string): string => {
  const i = path.lastIndexOf('/');
  return i === -1 ? ROOT_PATH : path.slice(0, i);
};

export const isReserved = (path: string): boolean => path === STATE_DIR || path.startsWith(`${STATE_DIR}/`);

/**
 * Order in which entries appear in a bundle: component-wise byte order, so a directory always
 * precedes its contents, independent of locale and of the order a directory was read in.
 */
export function comparePaths(a: string, b: string): number {
  // One pass over the characters, no splitting: plans sort thousands of paths. A component
  // that ends where the other goes on ('/' against anything) is a prefix, so it comes first.
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x === SLASH) return -1;
    if (y === SLASH) return 1;
    // For ASCII, UTF-16 order is byte order; only other names need the (slower) byte compare.
    if (x < 0x80 && y < 0x80) return x - y;
    return compareComponentBytes(a, b);
  }
  return a.length - b.length;
}

const SLASH = 0x2f;

function compareComponentBytes(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  const n = Math.min(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const x = pa[i] as string;
    const y = pb[i] as string;
    if (x === y) continue;
    return Buffer.compare(Buffer.from(x), Buffer.from(y));
  }
  return pa.length - pb.length;
}

