// One bundle case and its oracle. The case's bytes are applied in-process with the very
// function `rear-update apply` runs (commands/apply.ts: read + verify + stage, plan, journaled
// commit) into a root that has content and a sibling "outside" directory. Then:
//   refused  → the code must be one of src/core/errors.ts (not INTERNAL or IO_ERROR), and the
//              root, the outside directory and their parent must be exactly as before
//              (type, mode, owner, content, link target, inode);
//   applied  → nothing outside the root changed and the state record exists; and the same bytes
//              applied to an empty root must give exactly the tree GNU `tar -xzf` extracts from
//              them into another empty root, apart from the documented differences:
//              rear-update's own state directory, the root directory's own metadata (rule 6),
//              and owners of plain archives (root; tar runs with --no-same-owner for those).
// Anything else is a finding. A few cases also go through the real CLI as a process, whose
// exit status and code must agree with the in-process outcome.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { apply } from '../src/cli/commands/apply.ts';
import { ERRORS, isRuError, type ErrorCode } from '../src/core/errors.ts';

export const REPO = resolve(import.meta.dirname, '..');

export type FindingKind = 'crash' | 'internal' | 'root-changed' | 'escape' | 'state-lost' | 'differs-from-tar' | 'tar-refused' | 'root-dependent' | 'cli-differs' | 'hang';

export interface CaseOutcome {
  /** 'applied' or the refusal's code (for findings: the finding kind). */
  readonly outcome: string;
  readonly finding: { readonly kind: FindingKind; readonly detail: string } | null;
}

interface Node {
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly sha256?: string;
  readonly target?: string;
  readonly ino: number;
  readonly nlink: number;
}

/** Every entry below `dir` (relative paths, '.' for the directory itself), never following links. */
export function scan(dir: string): Map<string, Node> {
  const out = new Map<string, Node>();
  // Names are handled as bytes (latin1 strings): a hostile name need not be UTF-8.
  const visit = (rel: string): void => {
    const abs = Buffer.from(rel === '.' ? dir : join(dir, rel), 'latin1');
    const st = lstatSync(abs);
    const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, ino: st.ino, nlink: st.nlink };
    if (st.isSymbolicLink()) out.set(rel, { type: 'symlink', ...base, target: readlinkSync(abs, 'latin1') });
    else if (st.isFile()) out.set(rel, { type: 'file', ...base, sha256: createHash('sha256').update(readFileSync(abs)).digest('hex') });
    else if (st.isDirectory()) {
      out.set(rel, { type: 'dir', ...base });
      for (const n of readdirSync(abs, 'latin1').sort()) visit(rel === '.' ? n : `${rel}/${n}`);
    } else out.set(rel, { type: st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'device', ...base });
  };
  visit('.');
  return out;
}

const show = (n: Node | undefined): string => (n ? `${n.type} ${n.mode.toString(8)} ${n.uid}:${n.gid} inode ${n.ino}${n.sha256 ? ` ${n.sha256.slice(0, 12)}` : ''}${n.target !== undefined ? ` -> ${JSON.stringify(n.target)}` : ''}` : 'absent');

/** The first difference between two scans, or null. `inodes`: also compare inode numbers. */
export function firstDifference(a: Map<string, Node>, b: Map<string, Node>, inodes: boolean): string | null {
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  for (const k of keys) {
    const x = a.get(k);
    const y = b.get(k);
    const same = x && y && x.type === y.type && x.mode === y.mode && x.uid === y.uid && x.gid === y.gid && x.sha256 === y.sha256 && x.target === y.target && (!inodes || x.ino === y.ino);
    if (!same) return `${k}: ${show(x)} / ${show(y)}`;
  }
  return null;
}

/** Hard-link groups (paths sharing an inode), as comparable text. */
function linkGroups(s: Map<string, Node>): string[] {
  const by = new Map<number, string[]>();
  for (const [p, n] of s) if (n.type === 'file' && n.nlink > 1) by.set(n.ino, [...(by.get(n.ino) ?? []), p]);
  return [...by.values()].map((g) => g.sort().join(' = ')).sort();
}

/** What a populated root holds before a case: content, a stale file below an owned path, links. */
function populate(root: string, outside: string): void {
  const files: Record<string, string> = {
    'etc/hostname': 'rescue\n',
    'etc/rear/local.conf': 'OUTPUT=USB\n',
    'etc/rear/stale.conf': 'STALE=1\n',
    'usr/share/doc/README': 'docs\n',
  };
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), c, { mode: 0o644 });
  }
  symlinkSync('../../../outside', join(root, 'etc/rear/out'));
  symlinkSync(outside, join(root, 'usr/lnk'));
  for (const d of ['', 'etc', 'etc/rear', 'usr', 'usr/share', 'usr/share/doc']) chmodSync(join(root, d), 0o755);
  mkdirSync(join(outside, 'rear'), { recursive: true });
  writeFileSync(join(outside, 'keep.txt'), 'outside: must never change\n', { mode: 0o644 });
  writeFileSync(join(outside, 'rear/site.conf'), 'outside site.conf\n', { mode: 0o644 });
}

export interface CaseEnv {
  /** A scratch directory of this worker (on tmpfs when possible). */
  readonly work: string;
  readonly trustedPub: string;
  /** An empty keys directory (so /etc/rear-update/keys of this machine never counts). */
  readonly keysDir: string;
}

/** Where a case's escape target lives: the plan's $OUTSIDE. */
export const outsideOf = (env: CaseEnv): string => join(env.work, 'p', 'outside');

const codeOf = (e: unknown): ErrorCode | null => (isRuError(e) && e.code in ERRORS ? e.code : null);

async function applyInProcess(bundle: string, root: string, env: CaseEnv, unsigned: boolean): Promise<{ code: ErrorCode | null; error: unknown }> {
  try {
    await apply(bundle, { root, pubkey: [env.trustedPub], keysDir: env.keysDir, unsigned, quiet: true, sysRoot: '/' });
    return { code: null, error: null };
  } catch (e) {
    return { code: codeOf(e), error: e };
  }
}

function errorText(e: unknown): string {
  if (isRuError(e)) return `${e.code}: ${e.message}`;
  return e instanceof Error ? (e.stack ?? e.message).split('\n').slice(0, 6).join(' | ') : String(e);
}

function refusalFinding(code: ErrorCode | null, error: unknown): CaseOutcome['finding'] {
  if (code === null) return { kind: 'crash', detail: `not a RuError: ${errorText(error)}` };
  if (code === 'INTERNAL' || code === 'IO_ERROR') return { kind: 'internal', detail: errorText(error) };
  return null;
}

/** Newest modification time of the sources below src/ (milliseconds). */
function newestSource(dir = join(REPO, 'src')): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : lstatSync(p).mtimeMs);
  }
  return newest;
}

let cliCommand: string[] | null = null;
/**
 * The CLI as users run it: the built dist/rear-update.cjs (what `npm test` builds first) when
 * it is newer than every source file, else the sources through tsx (slower to start).
 */
function cliArgs(): string[] {
  if (!cliCommand) {
    const dist = join(REPO, 'dist/rear-update.cjs');
    cliCommand = existsSync(dist) && lstatSync(dist).mtimeMs >= newestSource() ? [dist] : ['--import', 'tsx', join(REPO, 'src/cli/main.ts')];
  }
  return cliCommand;
}

/** Runs the real CLI as a process on the same bundle and root. */
function cliOutcome(bundle: string, root: string, env: CaseEnv, unsigned: boolean, timeoutMs: number): { outcome: string; status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [...cliArgs(), 'apply', '--quiet', '--root', root, '--pubkey', env.trustedPub, '--keys-dir', env.keysDir, ...(unsigned ? ['--unsigned'] : []), bundle], {
    encoding: 'utf8', timeout: timeoutMs, cwd: REPO, env: cleanEnv(),
  });
  const code = /error ([A-Z_]+):/.exec(r.stderr)?.[1];
  return { outcome: r.status === 0 ? 'applied' : (code ?? `exit ${String(r.status)}`), status: r.status, stderr: r.stderr.trim().split('\n').slice(-3).join(' | ') };
}

/** The environment without anything that would change what apply does (server, keep, test hooks). */
export function cleanEnv(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REAR_UPDATE_')) e[k] = v;
  return { ...e, REAR_UPDATE_SETTINGS: '/nonexistent/rear-update-fuzz-settings.conf', REAR_UPDATE_PROGRESS: 'none' };
}

function treeOracle(env: CaseEnv, bundle: string, applied: string, hasManifest: boolean): CaseOutcome['finding'] {
  const tarRoot = join(env.work, 't', 'root');
  rmSync(join(env.work, 't'), { recursive: true, force: true });
  mkdirSync(tarRoot, { recursive: true, mode: 0o755 });
  const t = spawnSync('tar', ['-xzf', bundle, '-C', tarRoot, ...(hasManifest ? [] : ['--no-same-owner'])], { encoding: 'utf8', timeout: 60_000 });
  if (t.status !== 0) return { kind: 'tar-refused', detail: `rear-update applied it, GNU tar exited ${String(t.status)}: ${t.stderr.trim().split('\n').slice(0, 3).join(' | ')}` };
  const mine = scan(applied);
  const theirs = scan(tarRoot);
  for (const s of [mine, theirs]) {
    s.delete('.'); // rule 6: the root's own mode and owner are never changed (tar applies a ./ member)
    for (const k of [...s.keys()]) if (k === 'var/lib/rear-update' || k.startsWith('var/lib/rear-update/')) s.delete(k);
  }
  // The parents rear-update creates for its state directory (var, var/lib) when the bundle has none.
  for (const p of ['var/lib', 'var']) {
    for (const [s, o] of [[mine, theirs], [theirs, mine]] as const) {
      if (s.get(p)?.type === 'dir' && !o.has(p) && ![...s.keys()].some((k) => k.startsWith(`${p}/`))) s.delete(p);
    }
  }
  const diff = firstDifference(mine, theirs, false);
  if (diff) return { kind: 'differs-from-tar', detail: `rear-update / GNU tar: ${diff}` };
  const [a, b] = [linkGroups(mine), linkGroups(theirs)];
  if (a.join('\n') !== b.join('\n')) return { kind: 'differs-from-tar', detail: `hard links: rear-update [${a.join('; ')}] / GNU tar [${b.join('; ')}]` };
  return null;
}

/** Runs one case; never throws for anything the bundle can cause. */
export async function runCase(env: CaseEnv, bytes: Buffer, unsigned: boolean, opts: { cli: boolean; timeoutMs: number }): Promise<CaseOutcome> {
  const p = join(env.work, 'p');
  rmSync(p, { recursive: true, force: true });
  const root = join(p, 'root');
  const outside = join(p, 'outside');
  mkdirSync(root, { recursive: true, mode: 0o755 });
  populate(root, outside);
  const bundle = join(p, 'bundle.tar.gz');
  writeFileSync(bundle, bytes);
  const before = scan(p);

  const r = await applyInProcess(bundle, root, env, unsigned);
  let outcome: CaseOutcome;
  if (r.error !== null) {
    const f = refusalFinding(r.code, r.error);
    const diff = firstDifference(before, scan(p), true);
    outcome = f ? { outcome: f.kind, finding: f }
      : diff ? { outcome: 'root-changed', finding: { kind: 'root-changed', detail: `refused with ${r.code as string} but changed ${diff}` } }
        : { outcome: r.code as string, finding: null };
  } else {
    outcome = { outcome: 'applied', finding: appliedFinding(p, before) };
    if (outcome.finding) outcome = { outcome: outcome.finding.kind, finding: outcome.finding };
    else outcome = { outcome: 'applied', finding: await emptyRootOracle(env, bundle, unsigned) };
    if (outcome.finding) outcome = { outcome: outcome.finding.kind, finding: outcome.finding };
  }
  if (opts.cli && !outcome.finding) {
    rmSync(root, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
    mkdirSync(root, { mode: 0o755 });
    populate(root, outside);
    const c = cliOutcome(bundle, root, env, unsigned, opts.timeoutMs);
    const expectedStatus = outcome.outcome === 'applied' ? 0 : ERRORS[outcome.outcome as ErrorCode]?.exit;
    if (c.outcome !== outcome.outcome || c.status !== expectedStatus) {
      outcome = { outcome: 'cli-differs', finding: { kind: 'cli-differs', detail: `in-process ${outcome.outcome}, CLI ${c.outcome} (exit ${String(c.status)}): ${c.stderr}` } };
    }
  }
  return outcome;
}

/** After an accepted case: nothing outside the root changed, and the state record exists. */
function appliedFinding(p: string, before: Map<string, Node>): CaseOutcome['finding'] {
  const after = scan(p);
  for (const k of before.keys()) {
    if (k === 'outside' || k.startsWith('outside/') || k === 'bundle.tar.gz' || k === '.') {
      const x = before.get(k);
      const y = after.get(k);
      if (!y || x?.sha256 !== y.sha256 || x?.ino !== y.ino || x?.mode !== y.mode || x?.target !== y.target) return { kind: 'escape', detail: `outside the root, ${k} changed: ${show(x)} / ${show(y)}` };
    }
  }
  for (const k of after.keys()) {
    if (!k.startsWith('root/') && k !== 'root' && !before.has(k)) return { kind: 'escape', detail: `outside the root, ${k} appeared: ${show(after.get(k))}` };
  }
  if (!existsSync(join(p, 'root/var/lib/rear-update/installed.json'))) return { kind: 'state-lost', detail: 'applied, but var/lib/rear-update/installed.json is missing: status and rollback cannot work' };
  return null;
}

/** The differential oracle: the same bytes into an empty root, against GNU tar into another. */
async function emptyRootOracle(env: CaseEnv, bundle: string, unsigned: boolean): Promise<CaseOutcome['finding']> {
  const e = join(env.work, 'e');
  rmSync(e, { recursive: true, force: true });
  const root = join(e, 'root');
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const r = await applyInProcess(bundle, root, env, unsigned);
  if (r.error !== null) {
    return refusalFinding(r.code, r.error) ?? { kind: 'root-dependent', detail: `applied into the populated root but refused into an empty one: ${errorText(r.error)}` };
  }
  const installed = JSON.parse(readFileSync(join(root, 'var/lib/rear-update/installed.json'), 'utf8')) as { created: string | null };
  return treeOracle(env, bundle, root, installed.created !== null);
}
