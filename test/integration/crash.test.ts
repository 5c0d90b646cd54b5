// Crash safety of the commit, against the built CLI as real processes: an apply killed (by its
// own test hook or by an outside kill -9) at any operation of a large commit, or a rollback
// killed half-way, is finished by the next status / rollback / apply so that the root is
// byte-for-byte either the old tree or the new one, never a mix. Also: lock takeover and
// refusal, a full disk (before staging, while staging, and during the commit's bookkeeping)
// and rename-not-rewrite for open files.

import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statfsSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CLI as BUILT_CLI, cleanup, errorCode, type NodeSnap, snapshot, tempDir } from '../helpers.ts';

// ---------------------------------------------------------------------------------------------
// Small local helpers

interface Run {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

const STATE = 'var/lib/rear-update';
const children = new Set<ChildProcess>();
/**
 * The built CLI, copied once per run: every process of this file runs the same build even if
 * dist/ is rebuilt while the (long) file runs.
 */
let CLI = BUILT_CLI;

/** Test hook variables must only ever come from the test itself. */
function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('REAR_UPDATE_')) delete env[k];
  return { ...env, ...extra };
}

/** Runs the built CLI without blocking the event loop; reports the killing signal too. */
function run(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: baseEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', rej);
    p.on('close', (status, signal) => {
      children.delete(p);
      res({ status, signal, stdout, stderr });
    });
  });
}

/** Starts the CLI and resolves once it printed the test hook's "paused before step N" line. */
function startPaused(args: readonly string[], env: Record<string, string>): Promise<{ child: ChildProcess; exited: Promise<Run>; stderr: () => string }> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: baseEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '';
    let stderr = '';
    let paused = false;
    const exited = new Promise<Run>((r) => {
      p.on('close', (status, signal) => {
        children.delete(p);
        r({ status, signal, stdout, stderr });
      });
    });
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!paused && /test hook: paused before step \d+/.test(stderr)) {
        paused = true;
        res({ child: p, exited, stderr: () => stderr });
      }
    });
    p.on('error', rej);
    void exited.then((r) => {
      if (!paused) rej(new Error(`the CLI exited (status ${r.status}, signal ${r.signal}) without pausing:\n${r.stderr}`));
    });
  });
}

/** Runs fn over items with at most `n` at a time (each item spawns CLI processes). */
async function pool<T>(items: readonly T[], n: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        await fn(items[i] as T, i);
      } catch (e) {
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} of ${items.length} cases failed: ${errors.map((e) => (e as Error).message.split('\n')[0]).join(' | ')}`);
}

const copyTree = (from: string, to: string): void => {
  mkdirSync(dirname(to), { recursive: true });
  execFileSync('cp', ['-a', from, to]);
};

const withoutState = (s: Record<string, NodeSnap>): Record<string, NodeSnap> =>
  Object.fromEntries(Object.entries(s).filter(([p]) => p !== STATE && !p.startsWith(`${STATE}/`)));

/** The first differences between two snapshots, readable (a deepEqual diff of 1500 entries is not). */
function snapDiff(actual: Record<string, NodeSnap>, expected: Record<string, NodeSnap>, max = 12): string[] {
  const out: string[] = [];
  const keys = [...new Set([...Object.keys(actual), ...Object.keys(expected)])].sort();
  for (const k of keys) {
    const a = actual[k];
    const e = expected[k];
    if (a === undefined) out.push(`missing: ${k} (${e?.type})`);
    else if (e === undefined) out.push(`extra: ${k} (${a.type})`);
    else if (JSON.stringify(a) !== JSON.stringify(e)) out.push(`differs: ${k}: ${JSON.stringify(a)} != expected ${JSON.stringify(e)}`);
    if (out.length >= max) {
      out.push('...');
      break;
    }
  }
  return out;
}

function assertTree(root: string, expected: Record<string, NodeSnap>, what: string, opts: { ignoreState?: boolean } = {}): void {
  const snap = opts.ignoreState ? withoutState(snapshot(root)) : snapshot(root);
  assert.deepEqual(snapDiff(snap, expected), [], `${what}: the root differs from the expected tree`);
}

const journals = (root: string): { id: string; state: string; ops: unknown[] }[] => {
  const dir = join(root, STATE, 'txn');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((id) => existsSync(join(dir, id, 'journal.json')))
    .map((id) => ({ id, ...(JSON.parse(readFileSync(join(dir, id, 'journal.json'), 'utf8')) as { state: string; ops: unknown[] }) }));
};

const describeRun = (r: Run): string => `status ${r.status}, signal ${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

// ---------------------------------------------------------------------------------------------
// Fixture: an "old" root with an existing ReaR configuration, and a large signed bundle of a
// "new" one that replaces, creates, removes and changes the type of entries.

let work = '';
let pub = '';
let key = '';
let oldRoot = '';
let bundle = '';
let OLD: Record<string, NodeSnap> = {};
let NEW: Record<string, NodeSnap> = {};
let appliedTemplate = '';
let opCount = 0;
let caseNo = 0;
const freshDir = (label: string): string => join(work, 'cases', `${++caseNo}-${label}`);

const conf = (tag: string, i: number): string => `# ${tag} ${i}\n${`OPTION_${i}=${tag}\n`.repeat(8)}`;

function put(root: string, rel: string, data: string | Buffer, mode = 0o644): void {
  mkdirSync(dirname(join(root, rel)), { recursive: true, mode: 0o755 });
  writeFileSync(join(root, rel), data, { mode });
}

/** ~300 entries under etc/rear plus unrelated files the bundle never touches. */
function buildOld(root: string): void {
  put(root, 'etc/hostname', 'old-host\n');
  put(root, 'usr/bin/tool', '#!/bin/sh\necho tool\n', 0o755);
  put(root, 'var/lib/dpkg/status', 'Package: rear\nStatus: install ok installed\n');
  put(root, 'etc/rear/local.conf', 'OUTPUT=ISO\nBACKUP=NETFS\n');
  put(root, 'etc/rear/site.conf', 'SITE=same\n');
  for (let d = 0; d < 10; d++) {
    for (let i = 0; i < 28; i++) put(root, `etc/rear/d${d}/f${String(i).padStart(2, '0')}.conf`, conf(`old-${d}`, i), i % 7 === 1 ? 0o600 : 0o644);
  }
  // A directory the new configuration lacks (removed with everything below it).
  for (let i = 0; i < 6; i++) put(root, `etc/rear/olddir/o${i}.conf`, conf('olddir', i));
  for (let i = 0; i < 4; i++) put(root, `etc/rear/olddir/sub/s${i}.conf`, conf('olddir-sub', i));
  // Type changes: file -> dir, dir -> file, symlink -> file, file -> symlink.
  put(root, 'etc/rear/becomes-dir', 'I am a file today\n');
  for (let i = 0; i < 3; i++) put(root, `etc/rear/becomes-file/x${i}.conf`, conf('bf', i));
  put(root, 'etc/rear/becomes-file/inner/deep.conf', 'deep\n');
  symlinkSync('site.conf', join(root, 'etc/rear/link-to-file'));
  put(root, 'etc/rear/file-to-link', 'a file that becomes a link\n');
  symlinkSync('d0/f00.conf', join(root, 'etc/rear/link-changed'));
  symlinkSync('site.conf', join(root, 'etc/rear/link-removed'));
}

/** ~1500 entries, a few MB: the tree `pack` turns into the new bundle. */
function buildNew(src: string): void {
  put(src, 'etc/rear/local.conf', 'OUTPUT=ISO\nBACKUP=NETFS\nBACKUP_URL=nfs://server/backup\n');
  put(src, 'etc/rear/site.conf', 'SITE=same\n'); // unchanged
  for (let d = 0; d < 10; d++) {
    for (let i = 0; i < 28; i++) {
      const rel = `etc/rear/d${d}/f${String(i).padStart(2, '0')}.conf`;
      if (i % 3 === 0) put(src, rel, conf(`new-${d}`, i)); // replaced content
      else if (i % 3 === 1) put(src, rel, conf(`old-${d}`, i), 0o644); // same content; some change mode
      // i % 3 === 2: not in the bundle -> removed (etc/rear is owned)
    }
  }
  execFileSync('chmod', ['0750', join(src, 'etc/rear/d1')]); // a directory whose mode changes
  for (let n = 0; n < 12; n++) {
    for (let i = 0; i < 100; i++) put(src, `etc/rear/n${String(n).padStart(2, '0')}/g${String(i).padStart(3, '0')}.dat`, randomBytes(1500 + ((n * 100 + i) % 7) * 200));
  }
  put(src, 'etc/rear/big.bin', randomBytes(1024 * 1024));
  for (let i = 0; i < 5; i++) put(src, `etc/rear/becomes-dir/y${i}.conf`, conf('bd', i));
  put(src, 'etc/rear/becomes-file', 'I was a directory\n');
  put(src, 'etc/rear/link-to-file', 'was a link\n');
  symlinkSync('site.conf', join(src, 'etc/rear/file-to-link'));
  symlinkSync('d0/f01.conf', join(src, 'etc/rear/link-changed'));
  symlinkSync('../hostname', join(src, 'etc/rear/link-new'));
  put(src, 'var/lib/rear/layout/disklayout.conf', 'disk /dev/sda 500107862016 gpt\n');
  for (let i = 0; i < 20; i++) put(src, `var/lib/rear/layout/config/part${i}.txt`, conf('layout', i));
}

let workMounted = false;

before(() => {
  work = tempDir('ru-crash-');
  // As root, the whole work area is a tmpfs: like the RAM-backed rescue system this targets,
  // and the commit's syncfs() then costs nothing (on a real disk it dominates the runtime).
  if (process.getuid?.() === 0) {
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1g,mode=0700', 'tmpfs', work], { stdio: 'ignore' });
      workMounted = true;
    } catch {
      // not permitted here (a container without CAP_SYS_ADMIN): the disk is only slower
    }
  }
  CLI = join(work, 'rear-update.cjs');
  copyFileSync(BUILT_CLI, CLI);
  const keys = join(work, 'keys');
  const kg = execFileSync(process.execPath, [CLI, 'keygen', '--out', keys], { env: baseEnv(), encoding: 'utf8' });
  assert.match(kg, /fingerprint/);
  key = join(keys, 'rear-update.key');
  pub = join(keys, 'rear-update.pub');

  oldRoot = join(work, 'old-root');
  buildOld(oldRoot);
  const src = join(work, 'new-src');
  buildNew(src);
  bundle = join(work, 'new.tar.gz');
  execFileSync(process.execPath, [CLI, 'pack', '--root', src, '--path', 'etc/rear', '--path', 'var/lib/rear/layout', '--key', key, '--host', 'e229', '--version', '7', '-o', bundle], { env: baseEnv() });
  OLD = snapshot(oldRoot);
  assert.ok(Object.keys(OLD).length >= 300, `old tree has ${Object.keys(OLD).length} entries`);
  assert.ok(!(STATE in OLD));

  // The expected new tree: an uninterrupted apply into a scratch copy. Its journal says how
  // many operations a commit of this bundle into this root has.
  appliedTemplate = join(work, 'applied-template');
  copyTree(oldRoot, appliedTemplate);
  const out = execFileSync(process.execPath, [CLI, 'apply', bundle, '--root', appliedTemplate, '--pubkey', pub, '--json'], { env: baseEnv(), encoding: 'utf8' });
  const report = JSON.parse(out) as { applied: boolean; totals: Record<string, number> };
  assert.equal(report.applied, true);
  assert.ok(report.totals.create! > 1000 && report.totals.replace! > 50 && report.totals.remove! > 50 && report.totals.unchanged! > 50, JSON.stringify(report.totals));
  NEW = withoutState(snapshot(appliedTemplate));
  assert.ok(Object.keys(NEW).length >= 1400, `new tree has ${Object.keys(NEW).length} entries`);
  const js = journals(appliedTemplate);
  assert.equal(js.length, 1);
  assert.equal(js[0]?.state, 'committed');
  opCount = js[0]?.ops.length ?? 0;
  assert.ok(opCount > 1000, `${opCount} operations`);
  // Sanity of the fixture itself: the type changes, links and kept files are what they should be.
  assert.equal(NEW['etc/rear/becomes-dir']?.type, 'dir');
  assert.equal(NEW['etc/rear/becomes-file']?.type, 'file');
  assert.equal(NEW['etc/rear/file-to-link']?.type, 'symlink');
  assert.equal(NEW['etc/rear/link-changed']?.target, 'd0/f01.conf');
  assert.equal(NEW['etc/rear/olddir'], undefined);
  assert.equal(NEW['etc/rear/d0/f02.conf'], undefined);
  assert.deepEqual(NEW['etc/hostname'], OLD['etc/hostname']);
  assert.notDeepEqual(NEW['etc/rear/local.conf'], OLD['etc/rear/local.conf']);
});

after(() => {
  for (const c of children) c.kill('SIGKILL');
  if (workMounted) {
    try {
      execFileSync('umount', [work]);
    } catch {
      execFileSync('umount', ['-l', work]);
    }
  }
  if (work) cleanup(work);
});

/** After the interrupted transaction was rolled back: a normal apply gives exactly the new tree. */
async function applyCleanly(root: string, what: string): Promise<void> {
  const r = await run(['apply', bundle, '--root', root, '--pubkey', pub]);
  assert.equal(r.status, 0, `${what}: apply after recovery failed: ${describeRun(r)}`);
  assertTree(root, NEW, `${what}: after a normal apply`, { ignoreState: true });
  const js = journals(root);
  assert.deepEqual(js.map((j) => j.state), ['committed'], `${what}: exactly one committed transaction is kept`);
}

type Recovery = 'status' | 'rollback' | 'apply-refused' | 'apply';
const RECOVERIES: readonly Recovery[] = ['status', 'rollback', 'apply-refused', 'apply'];

/**
 * Finishes an interrupted apply with one of the commands that recover, then checks the root is
 * exactly the old tree and that a normal apply then gives exactly the new one ('apply', which
 * goes on to apply the bundle itself, must give exactly the new tree).
 */
async function recoverAndCheck(root: string, how: Recovery, what: string): Promise<void> {
  let said = '';
  if (how === 'status') {
    const r = await run(['status', '--root', root]);
    assert.equal(r.status, 0, `${what}: status: ${describeRun(r)}`);
    assert.match(r.stdout, /nothing installed/, `${what}: status after recovery`);
    said = r.stdout + r.stderr;
  } else if (how === 'rollback') {
    const r = await run(['rollback', '--root', root]);
    assert.equal(r.status, 0, `${what}: rollback: ${describeRun(r)}`);
    said = r.stdout + r.stderr;
  } else if (how === 'apply-refused') {
    // Recovery runs first; the missing bundle is refused afterwards, so nothing new is applied.
    const r = await run(['apply', join(work, 'no-such-bundle.tar.gz'), '--root', root, '--pubkey', pub]);
    assert.equal(errorCode(r), 'SOURCE_NOT_FOUND', `${what}: ${describeRun(r)}`);
    said = r.stderr;
  } else {
    // The recovering apply is itself the normal apply: exactly the new tree, one transaction.
    const r = await run(['apply', bundle, '--root', root, '--pubkey', pub]);
    assert.equal(r.status, 0, `${what}: recovering apply: ${describeRun(r)}`);
    said = r.stderr;
    assertTree(root, NEW, `${what}: after the recovering apply`, { ignoreState: true });
    assert.deepEqual(journals(root).map((j) => j.state), ['committed'], `${what}: only the new transaction is kept`);
  }
  if (how !== 'apply') {
    assertTree(root, OLD, `${what}: after recovery (${how})`);
    assert.ok(!existsSync(join(root, STATE)), `${what}: ${STATE} is left behind although nothing is installed`);
    await applyCleanly(root, what);
  }
  // The user is told that something was undone (which kind: its own test below).
  assert.match(said, /rolled back an interrupted/, `${what}: ${how} does not report the recovery; it said: ${said.trim()}`);
}

// ---------------------------------------------------------------------------------------------

describe('crash safety of apply, rollback and the lock (built CLI, real processes)', { timeout: 240_000 }, () => {
  it('a large commit killed (SIGKILL by its test hook) before op N, for 17 N from 0 to the last, is rolled back exactly by the next status, rollback or apply', async () => {
    const n = opCount;
    const points = new Set<number>([0, 1, 2, n - 2, n - 1]);
    for (let k = 1; k <= 12; k++) points.add(Math.round((n * k) / 13));
    const cases = [...points].sort((a, b) => a - b);
    await pool(cases, 3, async (at, idx) => {
      const what = `CRASH_AT=${at} of ${n} ops`;
      const root = join(freshDir(`crash-${at}`), 'root');
      copyTree(oldRoot, root);
      const r = await run(['apply', bundle, '--root', root, '--pubkey', pub], { REAR_UPDATE_TEST_CRASH_AT: String(at) });
      assert.equal(r.signal, 'SIGKILL', `${what}: the apply should have been killed by its hook: ${describeRun(r)}`);
      assert.equal(r.status, null);
      const js = journals(root);
      assert.deepEqual(js.map((j) => j.state), ['committing'], `${what}: the killed apply leaves its journal`);
      assert.equal(js[0]?.ops.length, n, `${what}: the journal lists every operation`);
      await recoverAndCheck(root, RECOVERIES[idx % RECOVERIES.length] as Recovery, what);
      cleanup(dirname(root));
    });
  });

  it('the recovery of an interrupted apply says so ("interrupted apply", not "interrupted rollback")', async () => {
    const root = join(freshDir('message'), 'root');
    copyTree(oldRoot, root);
    const r = await run(['apply', bundle, '--root', root, '--pubkey', pub], { REAR_UPDATE_TEST_CRASH_AT: String(Math.round(opCount / 2)) });
    assert.equal(r.signal, 'SIGKILL', describeRun(r));
    const st = await run(['status', '--root', root, '--json']);
    assert.equal(st.status, 0, describeRun(st));
    const report = JSON.parse(st.stdout) as { recovered: string[] };
    assert.equal(report.recovered.length, 1, st.stdout);
    assert.match(report.recovered[0] as string, /^rolled back an interrupted apply \(/, `status --json reported: ${report.recovered[0]}`);
    assertTree(root, OLD, 'after recovery');
    cleanup(dirname(root));
  });

  it('CRASH_AT past the last operation: the hook has no such step, so the apply completes (or, if one is added, is rolled back)', async () => {
    const what = `CRASH_AT=${opCount}`;
    const root = join(freshDir('crash-past-end'), 'root');
    copyTree(oldRoot, root);
    const r = await run(['apply', bundle, '--root', root, '--pubkey', pub], { REAR_UPDATE_TEST_CRASH_AT: String(opCount) });
    if (r.signal === 'SIGKILL') {
      await recoverAndCheck(root, 'status', what);
    } else {
      assert.equal(r.status, 0, `${what}: ${describeRun(r)}`);
      assertTree(root, NEW, what, { ignoreState: true });
      assert.deepEqual(journals(root).map((j) => j.state), ['committed']);
    }
  });

  it('killed after the last operation but before the journal says committed (journal state rewound): rolled back exactly', async () => {
    // No hook step exists between the last operation and the 'committed' write, so the two
    // possible on-disk states there are made by rewinding the journal of a completed apply:
    // (a) installed.json already written, (b) not yet written.
    await pool(['installed-written', 'installed-not-written'], 2, async (variant, idx) => {
      const what = `after the last op, ${variant}`;
      const root = join(freshDir(`rewound-${variant}`), 'root');
      copyTree(appliedTemplate, root);
      const [j] = journals(root);
      assert.ok(j);
      const path = join(root, STATE, 'txn', j.id, 'journal.json');
      const raw = JSON.parse(readFileSync(path, 'utf8')) as { state: string };
      raw.state = 'committing';
      writeFileSync(path, `${JSON.stringify(raw)}\n`);
      if (variant === 'installed-not-written') execFileSync('rm', [join(root, STATE, 'installed.json')]);
      await recoverAndCheck(root, idx === 0 ? 'status' : 'rollback', what);
      cleanup(dirname(root));
    });
  });

  it('an apply killed from outside (kill -9 while paused before step N) is rolled back exactly', async () => {
    const n = opCount;
    const cases = [0, Math.round(n / 3), n - 1];
    await pool(cases, 3, async (at, idx) => {
      const what = `kill -9 at PAUSE_AT=${at}`;
      const root = join(freshDir(`pause-${at}`), 'root');
      copyTree(oldRoot, root);
      const p = await startPaused(['apply', bundle, '--root', root, '--pubkey', pub], { REAR_UPDATE_TEST_PAUSE_AT: String(at) });
      assert.match(p.stderr(), new RegExp(`paused before step ${at}\\b`));
      assert.ok(p.child.pid);
      process.kill(p.child.pid, 'SIGKILL');
      const r = await p.exited;
      assert.equal(r.signal, 'SIGKILL', `${what}: ${describeRun(r)}`);
      assert.deepEqual(journals(root).map((j) => j.state), ['committing'], `${what}: the killed apply leaves its journal`);
      await recoverAndCheck(root, (['status', 'apply-refused', 'apply'] as const)[idx % 3] as Recovery, what);
      cleanup(dirname(root));
    });
  });

  it('a rollback killed half-way (CRASH_UNDO_AT) is finished by the next status or rollback: the root is exactly the old tree', async () => {
    const n = opCount;
    // Undo runs from the last operation down to 0: n-1 dies before undoing anything, 0 before the last.
    const points = [...new Set([n - 1, Math.round((n * 3) / 4), Math.round(n / 3), 40, 1, 0])].sort((a, b) => b - a);
    await pool(points, 3, async (at, idx) => {
      const what = `CRASH_UNDO_AT=${at} of ${n} ops`;
      const root = join(freshDir(`undo-${at}`), 'root');
      copyTree(appliedTemplate, root);
      const r = await run(['rollback', '--root', root], { REAR_UPDATE_TEST_CRASH_UNDO_AT: String(at) });
      assert.equal(r.signal, 'SIGKILL', `${what}: the rollback should have been killed by its hook: ${describeRun(r)}`);
      assert.deepEqual(journals(root).map((j) => j.state), ['rolling-back'], `${what}: the killed rollback leaves its journal`);
      const how = idx % 2 === 0 ? 'status' : 'rollback';
      const rec = await run([how, '--root', root]);
      assert.equal(rec.status, 0, `${what}: ${how}: ${describeRun(rec)}`);
      assertTree(root, OLD, `${what}: after ${how} finished the rollback`);
      assert.ok(!existsSync(join(root, STATE)), `${what}: ${STATE} is left behind although nothing is installed`);
      assert.match(rec.stdout + rec.stderr, /rolled back an interrupted rollback \(/, `${what}: ${how} reports the recovery`);
      if (idx % 3 === 0) await applyCleanly(root, what);
      cleanup(dirname(root));
    });
  });

  it('a rollback killed from outside (kill -9 while paused in its undo) is finished by the next rollback', async () => {
    const at = Math.round(opCount / 2);
    const what = `kill -9 at PAUSE_UNDO_AT=${at}`;
    const root = join(freshDir('pause-undo'), 'root');
    copyTree(appliedTemplate, root);
    const p = await startPaused(['rollback', '--root', root], { REAR_UPDATE_TEST_PAUSE_UNDO_AT: String(at) });
    process.kill(p.child.pid as number, 'SIGKILL');
    const r = await p.exited;
    assert.equal(r.signal, 'SIGKILL', `${what}: ${describeRun(r)}`);
    const rec = await run(['rollback', '--root', root]);
    assert.equal(rec.status, 0, `${what}: ${describeRun(rec)}`);
    assertTree(root, OLD, `${what}: after the rollback was finished`);
  });

  it('a live lock holder (a paused apply) makes concurrent commands fail with LOCKED; once it is killed, its stale lock is taken over', async () => {
    const root = join(freshDir('lock'), 'root');
    copyTree(oldRoot, root);
    const at = Math.round(opCount / 2);
    const p = await startPaused(['apply', bundle, '--root', root, '--pubkey', pub], { REAR_UPDATE_TEST_PAUSE_AT: String(at) });
    const pid = p.child.pid as number;
    try {
      const lockFile = join(root, STATE, 'lock');
      assert.equal(readFileSync(lockFile, 'utf8').trim(), String(pid), 'the paused apply holds the lock');
      const before = snapshot(root);
      for (const args of [
        ['apply', bundle, '--root', root, '--pubkey', pub],
        ['rollback', '--root', root],
      ]) {
        const r = await run(args);
        assert.equal(errorCode(r), 'LOCKED', `${args[0]} while another apply runs: ${describeRun(r)}`);
        assert.equal(r.status, 8, `${args[0]}: exit status`);
        assert.match(r.stderr, new RegExp(`pid ${pid}\\b`));
      }
      // status may refuse (LOCKED) or report read-only, but it must never "recover" a live commit.
      const st = await run(['status', '--root', root]);
      assert.ok(st.status === 0 || errorCode(st) === 'LOCKED', `status while another apply runs: ${describeRun(st)}`);
      assert.doesNotMatch(st.stdout + st.stderr, /rolled back/, 'status rolled back a transaction that is still running');
      // The paused apply is untouched: still running, still holding the lock, its half-done
      // commit neither rolled back nor disturbed by the refused commands.
      assert.equal(p.child.exitCode, null, 'the paused apply is still running');
      assert.equal(p.child.signalCode, null);
      process.kill(pid, 0);
      assert.equal(readFileSync(lockFile, 'utf8').trim(), String(pid));
      assert.deepEqual(snapDiff(snapshot(root), before), [], 'the refused commands changed the root');
      assert.deepEqual(journals(root).map((j) => j.state), ['committing']);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
    const r = await p.exited;
    assert.equal(r.signal, 'SIGKILL');
    // The dead holder's lock file stays behind...
    assert.equal(readFileSync(join(root, STATE, 'lock'), 'utf8').trim(), String(pid), 'the killed apply left its lock file');
    // ...and the next apply takes it over (no LOCKED), rolls the half commit back and applies.
    const again = await run(['apply', bundle, '--root', root, '--pubkey', pub]);
    assert.equal(again.status, 0, `apply after the lock holder died: ${describeRun(again)}`);
    assert.equal(errorCode(again), null);
    assertTree(root, NEW, 'apply over a stale lock', { ignoreState: true });
    assert.ok(!existsSync(join(root, STATE, 'lock')), 'the lock is released');
    assert.match(again.stderr, /rolled back an interrupted/, 'the user is told that the interrupted apply was rolled back');
  });

  it('a stale lock of a dead process on an idle root is taken over by status and rollback too', async () => {
    const root = join(freshDir('stale-lock'), 'root');
    copyTree(appliedTemplate, root);
    // A pid that is certainly dead: a child we started and reaped.
    const dead = await new Promise<number>((res) => {
      const c = spawn(process.execPath, ['-e', '0']);
      c.on('close', () => res(c.pid as number));
    });
    writeFileSync(join(root, STATE, 'lock'), `${dead}\n`);
    const s = await run(['status', '--root', root]);
    assert.equal(s.status, 0, describeRun(s));
    assert.ok(!existsSync(join(root, STATE, 'lock')));
    writeFileSync(join(root, STATE, 'lock'), `${dead}\n`);
    const rb = await run(['rollback', '--root', root]);
    assert.equal(rb.status, 0, describeRun(rb));
    assertTree(root, OLD, 'rollback over a stale lock');
  });

  it('a process holding a replaced file open keeps reading the old content (rename, not rewrite); rollback brings back that very inode', async () => {
    const root = join(freshDir('open-fd'), 'root');
    copyTree(oldRoot, root);
    const replaced = join(root, 'etc/rear/local.conf');
    const removed = join(root, 'etc/rear/d0/f02.conf');
    const oldReplaced = readFileSync(replaced);
    const oldRemoved = readFileSync(removed);
    const fdReplaced = openSync(replaced, 'r');
    const fdRemoved = openSync(removed, 'r');
    try {
      const inode = fstatSync(fdReplaced).ino;
      const r = await run(['apply', bundle, '--root', root, '--pubkey', pub]);
      assert.equal(r.status, 0, describeRun(r));
      const readAll = (fd: number): Buffer => {
        const size = fstatSync(fd).size;
        const buf = Buffer.alloc(size);
        assert.equal(readSync(fd, buf, 0, size, 0), size);
        return buf;
      };
      assert.deepEqual(readAll(fdReplaced), oldReplaced, 'the open file was rewritten in place');
      assert.deepEqual(readAll(fdRemoved), oldRemoved);
      assert.match(readFileSync(replaced, 'utf8'), /BACKUP_URL=nfs:\/\/server\/backup/, 'the path has the new content');
      assert.notEqual(statSync(replaced).ino, inode, 'the path is a new file');
      assert.ok(!existsSync(removed));
      const rb = await run(['rollback', '--root', root]);
      assert.equal(rb.status, 0, describeRun(rb));
      assert.equal(statSync(replaced).ino, inode, 'rollback restores the original file, not a copy');
      assert.deepEqual(readFileSync(replaced), oldReplaced);
      assertTree(root, OLD, 'after rollback');
    } finally {
      closeSync(fdReplaced);
      closeSync(fdRemoved);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('a full disk (a 4 MiB tmpfs holding the root)', { timeout: 120_000 }, () => {
  let mnt = '';
  let mounted = false;
  let fsRoot = '';
  let bigBundle = '';
  let plainTgz = '';
  let smallBundle = '';
  const isRoot = process.getuid?.() === 0;

  before(() => {
    if (!isRoot) return;
    mnt = join(work, 'tmpfs');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0755', 'tmpfs', mnt]);
    mounted = true;
    fsRoot = join(mnt, 'root');
    // Existing content fills part of the file system (about 1.5 MiB of the 4).
    put(fsRoot, 'etc/rear/local.conf', 'OUTPUT=ISO\n');
    put(fsRoot, 'etc/rear/keep.conf', 'KEEP=1\n');
    put(fsRoot, 'opt/data/filler.bin', randomBytes(1536 * 1024));
    execFileSync('chmod', ['0755', fsRoot]);

    // (a) a signed bundle whose manifest says ~3 MiB: more than is free.
    const big = join(work, 'fs-big-src');
    put(big, 'etc/rear/local.conf', 'OUTPUT=ISO\nBIG=1\n');
    for (let i = 0; i < 3; i++) put(big, `etc/rear/blob${i}.bin`, randomBytes(1024 * 1024));
    bigBundle = join(work, 'fs-big.tar.gz');
    execFileSync(process.execPath, [CLI, 'pack', '--root', big, '--path', 'etc/rear', '--key', key, '--host', 'e229', '-o', bigBundle], { env: baseEnv() });
    // (b) the same kind of content as a plain tar.gz (GNU tar): its size is not known upfront.
    plainTgz = join(work, 'fs-plain.tar.gz');
    execFileSync('tar', ['-czf', plainTgz, '-C', big, 'etc']);
    // Control: a bundle that fits.
    const small = join(work, 'fs-small-src');
    put(small, 'etc/rear/local.conf', 'OUTPUT=ISO\nSMALL=1\n');
    put(small, 'etc/rear/small.bin', randomBytes(200 * 1024));
    smallBundle = join(work, 'fs-small.tar.gz');
    execFileSync(process.execPath, [CLI, 'pack', '--root', small, '--path', 'etc/rear', '--key', key, '--host', 'e229', '-o', smallBundle], { env: baseEnv() });
  });

  after(() => {
    if (mounted) {
      try {
        execFileSync('umount', [mnt]);
      } catch {
        execFileSync('umount', ['-l', mnt]);
      }
      mounted = false;
    }
  });

  const free = (): number => {
    const s = statfsSync(mnt);
    return s.bavail * s.bsize;
  };

  it('(a) a signed bundle larger than the free space is refused before staging with NO_SPACE; the root is unchanged and no state is left', { skip: !isRoot && 'needs root to mount a tmpfs' }, async () => {
    const before = snapshot(fsRoot);
    const freeBefore = free();
    assert.ok(freeBefore < 3 * 1024 * 1024, `the fixture must leave less than the bundle's size free (${freeBefore})`);
    const r = await run(['apply', bigBundle, '--root', fsRoot, '--pubkey', pub]);
    assert.equal(errorCode(r), 'NO_SPACE', describeRun(r));
    assert.equal(r.status, 8);
    assert.deepEqual(snapDiff(snapshot(fsRoot), before), [], 'the refused apply changed the root');
    assert.ok(!existsSync(join(fsRoot, 'var')), 'the state directory (and the var/lib it created) is left behind');
    assert.equal(free(), freeBefore, 'space is not given back');
  });

  it('(b) a plain tar.gz that fills the disk while staging is refused with NO_SPACE; the root is unchanged and no staging is left', { skip: !isRoot && 'needs root to mount a tmpfs' }, async () => {
    const before = snapshot(fsRoot);
    const freeBefore = free();
    const r = await run(['apply', plainTgz, '--root', fsRoot, '--unsigned']);
    assert.equal(errorCode(r), 'NO_SPACE', describeRun(r));
    assert.equal(r.status, 8);
    assert.deepEqual(snapDiff(snapshot(fsRoot), before), [], 'the refused apply changed the root');
    assert.ok(!existsSync(join(fsRoot, STATE)), 'staging is left behind');
    assert.ok(!existsSync(join(fsRoot, 'var')), 'the var/lib it created is left behind');
    assert.equal(free(), freeBefore, 'space is not given back');
  });

  it('control: a bundle that fits applies on the same file system, and rolls back', { skip: !isRoot && 'needs root to mount a tmpfs' }, async () => {
    const before = snapshot(fsRoot);
    const r = await run(['apply', smallBundle, '--root', fsRoot, '--pubkey', pub]);
    assert.equal(r.status, 0, describeRun(r));
    assert.match(readFileSync(join(fsRoot, 'etc/rear/local.conf'), 'utf8'), /SMALL=1/);
    assert.ok(!existsSync(join(fsRoot, 'etc/rear/keep.conf')), 'etc/rear is owned: keep.conf goes');
    const rb = await run(['rollback', '--root', fsRoot]);
    assert.equal(rb.status, 0, describeRun(rb));
    assert.deepEqual(snapDiff(snapshot(fsRoot), before), []);
  });

  it('(c) a disk that fills AFTER staging (journal, installed record) still gives all or nothing, and a usable record', { skip: !isRoot && 'needs root to mount a tmpfs' }, async (t) => {
    // Staging succeeds; then the commit's own bookkeeping runs out of space: the first journal
    // write, the installed record after the last rename, or the final 'committed' journal.
    // Whatever the outcome, it must be exactly the old tree (with NO_SPACE) or exactly the new
    // one with a readable record that rollback can undo. A plain archive skips the size
    // pre-check, so every free-space level is reachable; the levels are measured, not guessed.
    const PAGE = 4096;
    const pages = (n: number): number => Math.ceil(n / PAGE) * PAGE;
    const cOld = join(work, 'fsc-old');
    for (let i = 0; i < 30; i++) put(cOld, `etc/rear/a${i}.conf`, `old ${i}\n`);
    put(cOld, 'etc/hostname', 'host\n');
    execFileSync('chmod', ['0755', cOld]);
    const cSrc = join(work, 'fsc-src');
    for (let i = 0; i < 30; i++) put(cSrc, `etc/rear/a${i}.conf`, `new ${i}\n`);
    for (let i = 0; i < 70; i++) put(cSrc, `etc/rear/n${i}.conf`, `added ${i}\n`);
    const tgz = join(work, 'fsc.tar.gz');
    execFileSync('tar', ['-czf', tgz, '-C', cSrc, 'etc']);
    const C_OLD = snapshot(cOld);
    const base = join(mnt, 'c');
    const root = join(base, 'root'); // always the same path: the journal records it
    const filler = join(mnt, 'c-filler');
    const fresh = (): void => {
      cleanup(base, filler);
      copyTree(cOld, root);
    };

    // Calibration with room to spare: how much an apply keeps, and its record sizes.
    fresh();
    const f0 = free();
    const cal = await run(['apply', tgz, '--root', root, '--unsigned']);
    assert.equal(cal.status, 0, describeRun(cal));
    const used = f0 - free();
    const C_NEW = withoutState(snapshot(root));
    const [cj] = journals(root);
    assert.ok(cj);
    const J = pages(statSync(join(root, STATE, 'txn', cj.id, 'journal.json')).size);
    const I = pages(statSync(join(root, STATE, 'installed.json')).size);
    const LOCK = PAGE;
    // Free space at the start of the apply that puts the disk-full moment in the middle of:
    const levels: [string, number][] = [
      ['the first journal write', used - I + LOCK - pages(J / 2)],
      ['the installed record', used + LOCK - pages(I / 2)],
      ["the 'committed' journal", used + LOCK + pages(J / 2)],
      ['nothing (control: enough room)', used + LOCK + J + 8 * PAGE],
    ];
    const failures: string[] = [];
    for (const [moment, level] of levels) {
      fresh();
      const now = free();
      assert.ok(now > level, `not enough room for level ${level} (${now} free)`);
      writeFileSync(filler, Buffer.alloc(pages(now - level - PAGE + 1)));
      const r = await run(['apply', tgz, '--root', root, '--unsigned']);
      cleanup(filler);
      const what = `disk full at ${moment}`;
      t.diagnostic(`${what} (${level} B free at the start): exit ${r.status}${errorCode(r) ? ` ${errorCode(r)}` : ''}`);
      try {
        if (r.status === 0) {
          assertTree(root, C_NEW, `${what}: applied`, { ignoreState: true });
          const st = await run(['status', '--root', root]);
          assert.equal(st.status, 0, `${what}: status after a successful apply: ${describeRun(st)}`);
          const rb = await run(['rollback', '--root', root]);
          assert.equal(rb.status, 0, `${what}: rollback after a successful apply: ${describeRun(rb)}`);
          assertTree(root, C_OLD, `${what}: after rollback`);
        } else {
          assert.equal(errorCode(r), 'NO_SPACE', `${what}: ${describeRun(r)}`);
          assertTree(root, C_OLD, `${what}: refused with NO_SPACE ("nothing was changed")`);
          const st = await run(['status', '--root', root]);
          assert.equal(st.status, 0, `${what}: status after the refusal: ${describeRun(st)}`);
          assertTree(root, C_OLD, `${what}: after status`);
        }
      } catch (e) {
        const lines = (e as Error).message.split('\n');
        const detail = lines.filter((l) => /missing:|extra:|differs:|error [A-Z_]+/.test(l)).slice(0, 2).map((l) => l.trim().slice(0, 160));
        failures.push([lines[0], ...detail].join(' / '));
      }
    }
    cleanup(base);
    assert.deepEqual(failures, []);
  });
});

// ---------------------------------------------------------------------------------------------

describe('a root on ramfs (a ReaR rescue system\'s initramfs: statfs says 0 blocks, 0 free)', { timeout: 120_000 }, () => {
  // Seen when the real rescue image was booted in QEMU: the free-space check read statfs's 0
  // available blocks as "full" and refused every bundle with NO_SPACE. A file system without
  // a size is bounded by memory only.
  let mnt = '';
  let mounted = false;
  const isRoot = process.getuid?.() === 0;

  before(() => {
    if (!isRoot) return;
    mnt = join(work, 'ramfs');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'ramfs', '-o', 'mode=0755', 'ramfs', mnt]);
    mounted = true;
  });
  after(() => {
    if (mounted) execFileSync('umount', ['-l', mnt]);
  });

  it('a signed bundle applies and rolls back on a ramfs root', { skip: !isRoot && 'needs root to mount a ramfs' }, async () => {
    const s = statfsSync(mnt);
    assert.equal(s.blocks * s.bavail, 0, 'the fixture must be a file system that reports no size');
    const root = join(mnt, 'root');
    put(root, 'etc/rear/local.conf', 'OUTPUT=ISO\nTEMPLATE=1\n');
    execFileSync('chmod', ['0755', root]);
    const before = snapshot(root);
    const src = join(work, 'ramfs-src');
    put(src, 'etc/rear/local.conf', 'OUTPUT=ISO\nHOST=e230\n');
    const b = join(work, 'ramfs.tar.gz');
    execFileSync(process.execPath, [CLI, 'pack', '--root', src, '--path', 'etc/rear', '--key', key, '--host', 'e230', '-o', b], { env: baseEnv() });
    const r = await run(['apply', b, '--root', root, '--pubkey', pub]);
    assert.equal(r.status, 0, describeRun(r));
    assert.match(readFileSync(join(root, 'etc/rear/local.conf'), 'utf8'), /HOST=e230/);
    const rb = await run(['rollback', '--root', root]);
    assert.equal(rb.status, 0, describeRun(rb));
    assert.deepEqual(snapDiff(snapshot(root), before), []);
  });
});
