// `rear-update apply`: resolve the source, verify while staging, plan against the live root,
// commit through the journal, then activate what a layered bundle declares (depmod, udev,
// modprobe, its hooks). Plan first, then apply: --dry-run prints the same plan and the same
// activation steps that a real run executes, and writes nothing at all. From a server it also
// reports its progress as this boot's recovery (docs/recoveries.md); a report never stops it.

import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { existsSync, realpathSync, rmSync, statfsSync, statSync } from 'node:fs';
import { freemem, release } from 'node:os';
import { join } from 'node:path';
import { resultLine, runSteps, udevRunning, type RunnerOptions, type StepOutcome } from '../../adapters/fs/activation-runner.ts';
import { observeHardware, readMachineFacts } from '../../adapters/fs/machine-facts.ts';
import type { RecoveryReporter } from '../../adapters/http/recovery-reporter.ts';
import { scanRoot, topLevelLinks, type RootScan } from '../../adapters/fs/root-view.ts';
import { DirStager } from '../../adapters/fs/stager.ts';
import { StateDir, type Installed, type InstalledActivation } from '../../adapters/fs/state.ts';
import { Transactions } from '../../adapters/fs/transaction.ts';
import { readBundle, type ReadOptions, type ReadResult } from '../../adapters/tar/bundle-reader.ts';
import {
  activationSteps, checkHookTrust, checkKernels, commandLine, otherKernel, preHookSteps, selectForKernel, type Step, type StepResult,
} from '../../core/activation.ts';
import { fromSystemError, RuError } from '../../core/errors.ts';
import { freshnessCheck } from '../../core/freshness.ts';
import { keepMatcher, splitKeep } from '../../core/keep.ts';
import { KERNEL_RELEASE, manifestBytes, type LayerInfo, type Manifest } from '../../core/manifest.ts';
import { ancestors, parentOf, ROOT_PATH, STATE_DIR } from '../../core/paths.ts';
import { aliasMergedUsr, mergedUsrAliases, planApply, type Plan, type PlanOptions, type StagedEntry } from '../../core/plan.ts';
import type { SignatureStatus } from '../../core/signature.ts';
import { byteSize, collect, limitsFrom, positiveInt, type LimitFlags } from '../options.ts';
import { formatBytes, note, out, printJson, table } from '../output.ts';
import { openSource, type OpenedSource } from '../source.ts';
import { duration, sourceFor, type SourceChoice } from '../server-source.ts';
import { exportSourceFor, type ExportSource } from '../export-source.ts';
import { effectiveEnv, factSettings } from '../settings.ts';
import { serverFrom } from '../server-options.ts';
import { reporterFor, reportingOff } from './report.ts';
import { testHooks } from '../test-hooks.ts';
import { explainRefusal, recordTrust, serverStatements, trustFrom, trustOf } from '../key-trust.ts';
import { trustedKeys, type Trust } from '../../core/key-statements.ts';

export interface ApplyFlags extends LimitFlags {
  root: string;
  server?: string;
  token?: string;
  tokenFile?: string;
  wait?: number;
  sysRoot: string;
  hostname?: string;
  keep?: string[];
  pubkey?: string[];
  keysDir?: string;
  statement?: string[];
  unsigned?: boolean;
  dryRun?: boolean;
  cacert?: string;
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
  /** The kernel release kernel-bound content is installed for (default: the running one). */
  kernel?: string;
  allowHooks?: boolean;
  /** Seconds each activation step (and pre hook) may take. */
  stepTimeout?: number;
  /** false with --no-report: no recovery is opened or reported to. */
  report?: boolean;
  /** An offline export directory (docs/export.md); the source argument is then a host id, or nothing. */
  from?: string;
  acceptOldExport?: boolean;
}

export const DEFAULT_STEP_TIMEOUT = 300;

/** --kernel: a release as uname -r prints it. */
export function kernelRelease(v: string): string {
  if (!KERNEL_RELEASE.test(v)) throw new InvalidArgumentError('expected a kernel release as uname -r prints it (e.g. 6.1.0-57-amd64)');
  return v;
}

/** How activation steps run for a root: chrooted unless it is /, with the apply log of its state directory. */
export const runnerFor = (root: string, state: StateDir, o: { stepTimeout?: number; quiet?: boolean }, label: string): RunnerOptions => ({
  root, timeoutSeconds: o.stepTimeout ?? DEFAULT_STEP_TIMEOUT, log: state.activationLog, echo: o.quiet !== true, label,
});

/** The last lines a failed step printed, for its error message. */
export const lastLines = (f: StepOutcome): string => (f.tail.length ? `\n  its last output:\n${f.tail.map((l) => `    ${l}`).join('\n')}` : ' (it printed nothing)');

export function failureOf(f: StepOutcome): string {
  if (f.status === 'timeout') return `${f.note ?? 'did not finish within its timeout'} (--step-timeout)`;
  if (f.exit !== null) return `exited with status ${f.exit}`;
  return f.note ?? 'failed';
}

export function resolveRoot(root: string): string {
  let real: string;
  try {
    real = realpathSync(root);
  } catch {
    throw new RuError('ROOT_INVALID', `${root}: no such directory`, { root });
  }
  if (!statSync(real).isDirectory()) throw new RuError('ROOT_INVALID', `${root}: not a directory`, { root });
  return real;
}

export function printPlan(plan: Plan, all: boolean): void {
  const rows = plan.items
    .filter((it) => all || it.action !== 'unchanged')
    .map((it) => [it.action, it.type, it.action === 'unchanged' || it.bytes === 0 ? '' : formatBytes(it.bytes), it.path]);
  for (const l of table(rows)) out(`  ${l}`);
  const t = plan.totals;
  out(`${t.create} to create, ${t.replace} to replace, ${t.update} to update, ${t.remove} to remove, ${t.unchanged} unchanged; ${formatBytes(t.bytesIn)} in, ${formatBytes(t.bytesOut)} out`);
}

function spaceCheck(dir: string, m: Manifest | null): void {
  if (!m) return; // a plain archive does not say its size; a full disk is caught while staging
  const st = statfsSync(dir);
  // A file system without a size (ramfs: a rescue system's initramfs root, where statfs says
  // 0 blocks and 0 free) is bounded by memory only: staging there takes RAM.
  const sized = st.blocks > 0;
  const free = sized ? st.bavail * st.bsize : freemem();
  const need = manifestBytes(m) + m.entries.length * (sized ? st.bsize : 4096);
  if (free < need) {
    throw new RuError('NO_SPACE', `staging needs about ${formatBytes(need)} but only ${formatBytes(free)} is free in ${dir}${sized ? '' : ' (a file system without a size, in memory: free RAM)'}`, { need, free });
  }
}

/** A bundle fetched for host X must say it is X's: the server's key signs every host's bundle. */
function hostCheck(m: Manifest | null, expected: string | undefined): void {
  if (expected === undefined) return;
  if (m?.host !== expected) {
    throw new RuError('BUNDLE_HOST_MISMATCH', `asked the server for host ${expected} but the bundle is ${m ? `host ${m.host ?? '(none)'}'s` : 'a plain archive'}`, { expected, actual: m?.host ?? null });
  }
}

function installedRecord(r: ReadResult, layout: Layout, source: string, keep: readonly string[]): Installed {
  const layers = r.manifest?.layers;
  return {
    host: r.manifest?.host ?? null,
    class: r.manifest?.class ?? null,
    version: r.manifest?.version ?? null,
    created: r.manifest?.created ?? null,
    appliedAt: new Date().toISOString(),
    source,
    key: r.signature.status === 'valid' ? r.signature.key.fingerprint : null,
    owns: layout.owns,
    keep: [...keep],
    ...(layers ? { kernel: layout.kernel, layers: layers.map((l) => ({ name: l.name, class: l.class, version: l.version })) } : {}),
    entries: layout.entries.map(({ staged: _s, ...e }) => e),
  };
}

/**
 * Where the bundle's entries land in this root. A layered bundle's kernel-bound content is
 * installed for the target release only; on a merged-/usr root, lib/... goes below usr/lib/.
 */
interface Layout {
  readonly kernel: string;
  /** What is installed, by root path. */
  readonly entries: StagedEntry[];
  readonly owns: string[];
  readonly skipped: readonly { readonly kernel: string; readonly entries: number }[];
  /** The entries left out for another kernel release. */
  readonly left: readonly StagedEntry[];
  readonly moved: readonly { readonly from: string; readonly to: string; readonly entries: number }[];
  /** The root path of a bundle path; null when it is left out. */
  readonly rootPath: (bundlePath: string) => string | null;
}

function layoutFor(r: ReadResult, root: string, kernel: string): Layout {
  const layered = r.manifest?.layers !== undefined;
  const sel = layered ? selectForKernel(r.entries, kernel) : { install: r.entries, skipped: [], left: [] };
  const owns = (r.manifest?.owns ?? []).filter((o) => !layered || !otherKernel(o, kernel));
  const al = aliasMergedUsr(sel.install, owns, mergedUsrAliases(topLevelLinks(root)));
  const left = new Set(sel.left.map((e) => e.path));
  return { kernel, entries: al.entries, owns: al.owns, skipped: sel.skipped, left: sel.left, moved: al.moved, rootPath: (p) => (left.has(p) ? null : al.rootPath(p)) };
}

const describeSignature = (s: SignatureStatus): string =>
  s.status === 'unknown-key' ? `signed by ${s.fingerprint}, a key this machine does not trust` : s.status === 'valid' ? 'signed by a trusted key' : s.status;

/** Paths the commit created, replaced or removed: what activation reacts to. */
const changedPaths = (plan: Plan): string[] =>
  plan.items.filter((i) => i.action === 'create' || i.action === 'replace' || i.action === 'remove').map((i) => i.path);

interface ActivationPlan {
  readonly layers: readonly LayerInfo[];
  readonly pre: Step[];
  readonly post: Step[];
}

function activationPlan(r: ReadResult, layout: Layout, plan: Plan, root: string, running: string, stagedAt: (e: StagedEntry) => string): ActivationPlan | null {
  const layers = r.manifest?.layers;
  if (!layers) return null;
  const byPath = new Map(r.entries.map((e) => [e.path, e]));
  const pre = preHookSteps(layers, layout.kernel, (p) => {
    const e = byPath.get(p);
    return e && layout.rootPath(p) !== null ? stagedAt(e) : null;
  });
  const post = activationSteps({
    layers, changed: changedPaths(plan), kernel: layout.kernel, running, chroot: root !== '/', udevRunning: udevRunning(root),
    installedAt: (p) => {
      const at = layout.rootPath(p);
      return at === null ? null : `/${at}`;
    },
  });
  return { layers, pre, post };
}

const describeStep = (st: Step): string =>
  st.skip ? `skipped  ${st.name} (${st.skip})` : st.kind === 'pre' ? `${st.name}: its staged copy, before the commit` : `${st.name}: ${commandLine(st.argv)}`;

function printLayout(layout: Layout, aliases: boolean, running: string): void {
  const target = layout.kernel === running ? `running ${running}` : `target ${layout.kernel}, from --kernel`;
  for (const s of layout.skipped) out(`skipped ${s.entries} ${s.entries === 1 ? 'entry' : 'entries'} for kernel ${s.kernel} (${target})`);
  if (!aliases) return;
  for (const m of layout.moved) out(`${m.from} is this root's merged-/usr link to ${m.to}: ${m.entries} ${m.entries === 1 ? 'entry' : 'entries'} of the bundle below ${m.from}/ go below ${m.to}/`);
}

/** One activation step's result, for the recovery's timeline. */
function reportStep(reporter: RecoveryReporter | null, res: StepResult): void {
  void reporter?.event('activation', { message: resultLine(res), detail: { step: res.name, ok: res.status === 'ok' || res.status === 'skipped', status: res.status, message: resultLine(res) } });
}

const stepJson = (st: Step): Record<string, unknown> => ({ kind: st.kind, name: st.name, command: commandLine(st.argv), ...(st.skip ? { skip: st.skip } : {}) });

/** Every directory a commit renames into must be on the state directory's file system. */
function crossDeviceCheck(plan: Plan, devs: ReadonlyMap<string, number>, stateDev: number): void {
  for (const op of plan.ops) {
    const chain = [ROOT_PATH, ...ancestors(op.path)];
    for (let i = chain.length - 1; i >= 0; i--) {
      const d = devs.get(chain[i] as string);
      if (d === undefined) continue; // created by this plan: it inherits its existing parent's
      if (d !== stateDev) throw new RuError('ROOT_CROSS_DEVICE', `${parentOf(op.path) || '/'} is on another file system than ${STATE_DIR}; cannot commit ${op.path} by rename`, { path: op.path });
      break;
    }
  }
}

interface Planned {
  readonly r: ReadResult;
  readonly scan: RootScan;
  readonly plan: Plan;
  readonly layout: Layout;
}

/** The one path from bundle to plan, shared by --dry-run (no stager) and a real apply. */
async function readAndPlan(src: OpenedSource, root: string, opts: ReadOptions, plan: PlanOptions, assumeDirs: readonly string[], trust: Trust, kernel: string): Promise<Planned> {
  let r: ReadResult;
  try {
    r = await readBundle(src.stream, opts);
  } catch (e) {
    // A signer that a key statement retired is KEY_RETIRED, not merely untrusted.
    throw explainRefusal(trust, fromSystemError(e, 'staging the bundle'));
  }
  const layout = layoutFor(r, root, kernel);
  const scan = await scanRoot(root, layout.entries, layout.owns, assumeDirs);
  // Another release's modules are none of this apply's business: never removed below owned paths.
  const userKeep = plan.keep;
  const keep = r.manifest?.layers ? (p: string): boolean => otherKernel(p, kernel) || userKeep?.(p) === true : userKeep;
  return { r, scan, layout, plan: planApply(layout.entries, layout.owns, scan, { ...plan, ...(keep ? { keep } : {}) }) };
}

/** Explicit heartbeats while apply waits as a pending machine (its resolve polls are signs of life too). */
const WAIT_HEARTBEAT_MS = 30_000;

/** Does this apply fetch from the configured server (a host id, resolution by facts, a URL of the server)? As sourceFor decides. */
function fromServer(source: string | undefined, o: ApplyFlags): boolean {
  const server = serverFrom(o, effectiveEnv());
  if (!server) return false;
  if (source === undefined) return true;
  if (/^(https?|file):\/\//i.test(source)) {
    try {
      return /^https?:/i.test(source) && new URL(source).origin === new URL(server).origin;
    } catch {
      return false;
    }
  }
  return !existsSync(source);
}

/** This boot's recovery on the server, opened (or taken up again) before the first request, which it is linked to. */
async function recoveryFor(source: string | undefined, o: ApplyFlags, root: string): Promise<RecoveryReporter | null> {
  // From an export the server is gone, or not asked: nothing to report to.
  if (o.dryRun || o.from !== undefined || reportingOff(o.report) || !fromServer(source, o)) return null;
  const reporter = reporterFor(o, root, false);
  if (!reporter) return null;
  const explicitId = source !== undefined && !/^(https?|file):\/\//i.test(source) ? source : null;
  await reporter.open(readMachineFacts(o.sysRoot, factSettings({ ...(o.hostname !== undefined ? { hostname: o.hostname } : {}) })), observeHardware(o.sysRoot), explicitId);
  // Sent before the first resolve request, so that the server's own `pending` follows it.
  await reporter.event('resolving', { message: explicitId ? `asking for host ${explicitId}` : 'asking the server who this machine is', detail: { id: explicitId } });
  return reporter;
}

export async function apply(source: string | undefined, o: ApplyFlags): Promise<void> {
  const root = resolveRoot(o.root);
  const reporter = await recoveryFor(source, o, root);
  try {
    await applyTo(source, o, root, reporter);
  } catch (e) {
    const err = fromSystemError(e, 'applying');
    void reporter?.event('failed', { message: err.message, error: err.code, detail: { code: err.code } });
    throw e;
  } finally {
    await reporter?.flush();
  }
}

async function applyTo(source: string | undefined, o: ApplyFlags, root: string, reporter: RecoveryReporter | null): Promise<void> {
  // While pending, the resolve polls carry the recovery's header; a heartbeat now and then says more plainly that this machine waits.
  const beat = reporter ? setInterval(() => void reporter.heartbeat(), WAIT_HEARTBEAT_MS).unref() : null;
  let from: SourceChoice;
  // An offline export: its signed index names the host, the bundle file and its digest (export-source.ts).
  let exported: ExportSource | null = null;
  try {
    if (o.from !== undefined) {
      exported = await exportSourceFor(o.from, source, o);
      from = exported.choice;
    } else {
      // Every request of this apply (resolve polls, the download and its resumes) is linked to the recovery.
      from = await sourceFor(source, o, reporter?.id != null ? reporter.headers() : {});
    }
  } finally {
    if (beat) clearInterval(beat);
  }
  // Is this the server's answer to this very request: the host asked for, the nonce sent? (From
  // an export: the host, version and export time its signed index names.)
  const answers = (m: Manifest | null): void => {
    hostCheck(m, from.host);
    freshnessCheck(m, from.nonce);
    exported?.check(m);
  };
  // The pinned keys, moved by key statements: the keys directory's, --statement, the server's (docs/keys.md), or the export's.
  const trust = exported ? exported.trust : trustFrom(o, await serverStatements(from.url, o), o.verbose === true);
  const trusted = trustedKeys(trust);
  const limits = limitsFrom(o);
  const owners = process.getuid?.() === 0;
  const allowUnsigned = o.unsigned === true;
  const state = new StateDir(root);
  const keep = o.keep ?? splitKeep(effectiveEnv().REAR_UPDATE_KEEP);
  const keepPath = keepMatcher(keep);
  const planOpts: PlanOptions = { owners, ...(keepPath ? { keep: keepPath } : {}) };
  const running = release();
  // REAR_UPDATE_KERNEL: what the boot hook's apply targets when a rescue image is exercised in
  // a chroot on another kernel (the image's own release, not the test machine's).
  const envKernel = effectiveEnv().REAR_UPDATE_KERNEL;
  if (envKernel !== undefined && envKernel !== '' && !KERNEL_RELEASE.test(envKernel)) {
    throw new RuError('CONFIG_INVALID', `REAR_UPDATE_KERNEL=${envKernel} is not a kernel release as uname -r prints it`, { setting: 'REAR_UPDATE_KERNEL' });
  }
  const kernel = o.kernel ?? (envKernel !== undefined && envKernel !== '' ? envKernel : running);
  // Before any payload byte: may this bundle run hooks here, is it made for this kernel?
  const layerChecks = (m: Manifest | null, sig: SignatureStatus): void => {
    if (!m?.layers) return;
    checkHookTrust(m.layers, sig.status === 'valid', o.allowHooks === true, describeSignature(sig));
    checkKernels(m.layers, kernel, running);
  };

  if (o.dryRun) {
    const txns = new Transactions(state);
    if (state.listTxns().some((id) => txns.read(id)?.state !== 'committed')) {
      note('an interrupted transaction exists; the next real apply, rollback or status rolls it back first');
    }
    const src = await openSource(from.url, { ...from.open, quiet: o.quiet === true || o.json === true });
    try {
      const { r, plan, layout } = await readAndPlan(src, root, {
        trusted, allowUnsigned, enforceTrust: true, limits,
        onVerified: (m, sig) => {
          answers(m);
          layerChecks(m, sig);
        },
      }, planOpts, state.missingParents(), trust, kernel);
      const act = activationPlan(r, layout, plan, root, running, (e) => `/${e.path}`);
      if (o.json) {
        printJson({
          dryRun: true, root, source: src.label, host: r.manifest?.host ?? null, version: r.manifest?.version ?? null, items: plan.items, totals: plan.totals,
          ...(act ? { kernel, skipped: layout.skipped, steps: [...act.pre, ...act.post].map(stepJson) } : {}),
          ...(layout.moved.length ? { aliases: layout.moved } : {}),
        });
      } else {
        out(`dry run: would apply ${src.label} to ${root} (host ${r.manifest?.host ?? '-'}, version ${r.manifest?.version ?? '-'})`);
        printPlan(plan, true);
        printLayout(layout, true, running);
        if (act) {
          out(`activation for kernel ${kernel}${root === '/' ? '' : ` (each step through chroot ${root})`}:`);
          if (act.pre.length + act.post.length === 0) out('  nothing to do');
          for (const st of [...act.pre, ...act.post]) out(`  ${describeStep(st)}`);
        }
        out('nothing was written');
      }
    } finally {
      src.cleanup();
    }
    return;
  }

  state.open();
  const txns = new Transactions(state);
  let src: OpenedSource | null = null;
  let txnId: string | null = null;
  let committed = false;
  try {
    for (const line of txns.recover()) note(line);
    const opened = await openSource(from.url, { ...from.open, ...(reporter ? { headers: { ...from.open.headers, ...reporter.headers() } } : {}), quiet: o.quiet === true || o.json === true });
    src = opened;
    const txn = state.newTxnDir();
    txnId = txn.id;
    const stager = new DirStager(txn.dir, owners);
    const { r, scan, plan, layout } = await readAndPlan(src, root, {
      trusted, allowUnsigned, enforceTrust: true, limits, stager,
      onVerified: (m, sig) => {
        void reporter?.event('fetched', { message: `fetched ${opened.label}`, detail: { host: m?.host ?? from.host ?? null, version: m?.version ?? null, bytes: opened.size } });
        answers(m);
        layerChecks(m, sig);
        spaceCheck(txn.dir, m);
        void reporter?.event('verified', {
          message: sig.status === 'valid' ? `signed by trusted key ${sig.key.fingerprint}` : `NOT verified (--unsigned): ${describeSignature(sig)}`,
          detail: { key: sig.status === 'valid' ? sig.key.fingerprint : null, entries: m?.entries.length ?? null },
        });
      },
    }, planOpts, [], trust, kernel);
    if (r.signature.status !== 'valid') note(`applying an UNVERIFIED bundle (--unsigned): ${r.signature.status === 'unknown-key' ? `signed by unknown key ${r.signature.fingerprint}` : 'no signature'}`);
    crossDeviceCheck(plan, scan.devs, statSync(state.dir).dev);
    // What another kernel release needed is not kept in memory (a rescue system's root is RAM).
    for (const e of layout.left) if (e.staged) rmSync(join(txn.dir, e.staged), { force: true });
    const act = activationPlan(r, layout, plan, root, running, (e) => `/${STATE_DIR}/txn/${txn.id}/${e.staged}`);
    const runner = runnerFor(root, state, o, 'apply');
    const steps: StepResult[] = [];
    if (act?.pre.length) {
      if (!o.json) out('pre hooks (before the commit):');
      const pre = await runSteps(act.pre, runner, (res) => {
        if (!o.json) out(`  ${resultLine(res)}`);
        reportStep(reporter, res);
      });
      steps.push(...pre.results);
      if (pre.failed) {
        const f = pre.failed;
        throw new RuError('HOOK_VETO', `${f.name} ${failureOf(f)}: it vetoes the apply; nothing was committed${lastLines(f)}`, {
          step: f.name, command: f.command, status: f.status, exit: f.exit, lines: [...f.tail],
        });
      }
    }
    const previous = state.readInstalled();
    let activation: InstalledActivation | undefined = act ? { kernel, chroot: root !== '/', complete: false, steps } : undefined;
    const base: Installed & { export?: { exported: string; dir: string } } = {
      ...installedRecord(r, layout, src.label, keep), ...trustOf(trust, r.signature.status === 'valid' ? r.signature.key.fingerprint : null),
      // status says "installed from export of DATE"
      ...(exported ? { export: { exported: exported.index.exported, dir: exported.dir } } : {}),
    };
    const next: Installed = activation ? { ...base, activation } : base;
    txns.commit(txn.id, plan.ops, previous, next, { owners, beforeOp: testHooks().beforeOp });
    committed = true;
    recordTrust(trust, next.key, o, `by apply on ${next.appliedAt} from ${src.label}`);
    {
      const t = plan.totals;
      void reporter?.event('applied', {
        message: `applied host ${next.host ?? '-'} version ${next.version ?? '-'}`,
        detail: { host: next.host, version: next.version, written: t.create + t.replace + t.update, removed: t.remove, unchanged: t.unchanged, layers: (r.manifest?.layers ?? []).map((l) => l.name) },
      });
    }
    if (!o.json) {
      if (o.verbose) printPlan(plan, true);
      const t = plan.totals;
      out(`applied ${src.label} to ${root}: host ${next.host ?? '-'}, version ${next.version ?? '-'}, ${next.key ? `signed by ${next.key}` : 'UNSIGNED'}`);
      out(`${t.create} created, ${t.replace} replaced, ${t.update} updated, ${t.remove} removed, ${t.unchanged} unchanged (${formatBytes(t.bytesIn)} written); undo with: rear-update rollback${root === '/' ? '' : ` --root ${root}`}`);
      printLayout(layout, o.verbose === true, running);
    }
    let failed: StepOutcome | null = null;
    let notRun = 0;
    if (act && activation) {
      if (!o.json) out(`activation for kernel ${kernel}${root === '/' ? '' : ` (each step through chroot ${root})`}:${act.post.length ? '' : ' nothing to do'}`);
      const run = act.post.length === 0 ? { results: [], failed: null } : await runSteps(act.post, runner, (res, all) => {
        // Recorded step by step: status after a crash shows how far activation got.
        state.writeInstalled({ ...next, activation: { ...(activation as InstalledActivation), steps: [...steps, ...all] } });
        if (!o.json) out(`  ${resultLine(res)}`);
        reportStep(reporter, res);
      });
      activation = { ...activation, complete: true, steps: [...steps, ...run.results] };
      state.writeInstalled({ ...next, activation });
      failed = run.failed;
      notRun = run.results.length - 1 - run.results.findIndex((x) => x.status === 'failed' || x.status === 'timeout');
    }
    if (o.json) {
      printJson({
        applied: true, root, source: src.label, host: next.host, version: next.version, key: next.key, items: plan.items, totals: plan.totals,
        ...(act ? { kernel, skipped: layout.skipped, activation: activation?.steps ?? [] } : {}),
        ...(layout.moved.length ? { aliases: layout.moved } : {}),
      });
    }
    if (failed) {
      throw new RuError('ACTIVATION_FAILED', `activation step ${failed.name} (${failed.command}) ${failureOf(failed)}${notRun > 0 ? `; the ${notRun} step(s) after it were not run` : ''}. The files stay installed: fix the cause and run the step by hand, or undo everything with rear-update rollback${root === '/' ? '' : ` --root ${root}`}${lastLines(failed)}`, {
        step: failed.name, command: failed.command, status: failed.status, exit: failed.exit, lines: [...failed.tail],
      });
    }
  } finally {
    src?.cleanup();
    // A transaction whose journal exists is not ours to delete: its commit started, and if its
    // own undo could not finish, the next run must find the journal and the backups.
    if (txnId && !committed && !txns.hasJournal(txnId)) state.removeTxn(txnId);
    state.close();
  }
}

export function registerApply(program: Command): void {
  program
    .command('apply')
    .argument('[source]', 'bundle file, file:// URL or http(s):// URL; with --server: a host id, or nothing to be resolved by this machine\'s facts')
    .description('verify a bundle and install it into the root, all or nothing')
    .option('--root <dir>', 'install into this root', '/')
    .option('--pubkey <file>', 'a trusted public key, repeatable', collect)
    .option('--keys-dir <dir>', 'trust every *.pub here too, moved by its *.statement files (default /etc/rear-update/keys, if it exists)')
    .option('--statement <file>', 'a key statement to consider (a rotation or retirement made by `rear-update key rotate|retire`), repeatable', collect)
    .option('--unsigned', 'accept a bundle without a valid signature from a trusted key (plain tar.gz archives); the extraction rules still apply')
    .option('--keep <glob>', 'never remove paths matching this glob below owned directories, although the bundle lacks them (e.g. etc/rear/rescue.conf), repeatable', collect)
    .option('--dry-run', 'print the plan (create / replace / update / remove / unchanged per path) and the activation steps, and write nothing')
    .option('--kernel <release>', 'install kernel-bound content (lib/modules/RELEASE/...) of a layered bundle for this release (default: $REAR_UPDATE_KERNEL, else the running kernel, uname -r)', kernelRelease)
    .option('--allow-hooks', 'run the pre/post hooks of a bundle that is NOT signed by a trusted key (with --unsigned); without it such a bundle is refused (HOOKS_UNTRUSTED)')
    .option('--step-timeout <seconds>', `how long each activation step and hook may run before its process group is killed (default ${DEFAULT_STEP_TIMEOUT})`, positiveInt)
    .option('--max-bytes <size>', 'refuse more unpacked content than this (default 1G)', byteSize)
    .option('--max-entries <n>', 'refuse more members than this (default 100000)', positiveInt)
    .option('--max-ratio <n>', 'refuse data that expands more than n:1 beyond the first 16 MiB (default 200)', positiveInt)
    .option('--cacert <file>', 'PEM CA certificate(s) to trust for https downloads')
    .option('--server <url>', 'fetch from this rear-update server (env REAR_UPDATE_SERVER)')
    .option('--token <token>', 'fetch token for the server (env REAR_UPDATE_TOKEN)')
    .option('--token-file <file>', 'read the token from a file')
    .option('--wait <duration>', 'with --server and no id: how long to wait for an admin to assign a pending machine (e.g. 90s, 15m, 0; default 15m or REAR_UPDATE_WAIT)', duration)
    .option('--sys-root <dir>', 'read this machine\'s facts below this directory: sys/, proc/, and etc/rear-release and etc/HOSTNAME (a rescue system, and the hostname its image was made with)', '/')
    .option('--hostname <name>', 'with --server and no id: send this as the machine\'s hostname (env REAR_UPDATE_HOSTNAME; kernel option rear_update=hostname=NAME)')
    .option('--json', 'print the executed (or, with --dry-run, the planned) changes as JSON')
    .option('-v, --verbose', 'print every changed path')
    .option('-q, --quiet', 'no progress output')
    .option('--no-report', 'with --server: do not report this apply to the server as a recovery (env REAR_UPDATE_REPORT=0)')
    .option('--from <dir>', 'apply from an offline export (rear-update admin export): the source argument is then a host id, or nothing to find this machine in the export by its facts')
    .option('--accept-old-export', 'with --from: apply an export older than REAR_UPDATE_EXPORT_MAX_AGE (default 7d) without asking')
    .addHelpText('after', `
What happens:
  1. The bundle is read once, streaming. Its signature is checked against the trusted keys
     before any payload is looked at; every member is then checked against the manifest and
     against the safe-extraction rules while it is written to a staging area on the root's
     file system (var/lib/rear-update/txn/). A refusal stops here; the root is untouched.
  2. The plan compares the bundle with the root. Paths the bundle owns lose files it lacks.
  3. The commit renames each staged file into place (a running script keeps its old file),
     journaling every step. If it is interrupted (kill -9, power loss), the next apply,
     rollback or status rolls it back. \`rear-update rollback\` undoes a completed apply.

From a server (--server, or REAR_UPDATE_SERVER): with an id, that host's bundle; without
one, the server resolves this machine by its facts (MACs, DMI UUID and serial, hostname). An
unknown machine is recorded as pending: the command shows its facts and waits (--wait) until
an admin runs \`rear-update admin assign PENDING-ID HOST\`, then proceeds. The server signs
what it serves: trust its key (DATA/server.pub) with --pubkey or the keys directory.
Each fetch sends a fresh random nonce (header X-Rear-Update-Nonce; ?nonce= for a URL of the
server's /api/v1/hosts/ID/bundle route) that the server signs into the bundle it seals for
this request; a bundle without it (a replayed or cached answer) is refused with BUNDLE_STALE
and nothing is written. A resumed download sends the same nonce. ReaR's /rear/HOST.tar.gz
route and other URLs carry no nonce and are open to replay: fetch them over https.

Layered bundles (hardware-class layers, bundle format 2; docs/layers.md):
  - Content below lib/modules/REL/ or usr/lib/modules/REL/ is installed only for the target
    release: --kernel REL, default the running kernel. Other releases' entries are skipped
    (reported), and what the root holds of other releases is never removed. A layer made
    for other releases only is refused before anything is written (KERNEL_MISMATCH).
  - On a merged-/usr root (lib -> usr/lib, and bin, sbin, lib64 likewise, exactly), the
    bundle's lib/... is installed below usr/lib/... (shown by --dry-run and --verbose); any
    other link in the way is refused as before (ENTRY_THROUGH_SYMLINK).
  - Hooks run only from a bundle signed by a trusted key; an --unsigned bundle that declares
    hooks is refused (HOOKS_UNTRUSTED) unless --allow-hooks is given too.
  - pre hooks run after verification and staging, before the commit: a failure vetoes it
    (HOOK_VETO) and nothing is committed.
  - After the commit, in this order: depmod -a REL (when modules of REL changed); udevadm
    control --reload, trigger --action=add, settle (when udev rules or firmware changed, or
    modules of the running kernel; skipped when udev does not run in the root); modprobe of
    each layer's modules; each layer's post hooks. modprobe loads a module only for the
    running kernel and --root /; otherwise it only resolves it (modprobe --dry-run
    --set-version REL), so that no module is ever loaded into a kernel it was not built for.
  - With --root DIR other than /, every step runs through chroot DIR, with the image's own
    tools. Each step has --step-timeout seconds; its output goes to the screen (not with -q)
    and to var/lib/rear-update/activation.log. A failed step stops activation with
    ACTIVATION_FAILED (exit 10): the files stay installed; rollback undoes them (and runs
    depmod again). status shows each step's result.

Recoveries: from a server (a host id, resolution by facts, or a URL of the server), apply
opens this boot's recovery on the server with the machine's facts and hardware (disks,
NICs, memory, CPUs), or takes up the one /run/rear-update/recovery.json (for --root /)
names, and reports resolving, fetched, verified, applied, each activation step, or failed
with its error code; its requests carry X-Rear-Update-Recovery, and it sends a heartbeat
every 30 s while it waits as a pending machine. Reports time out after 5 s and are then
dropped with one warning: they never stop or fail an apply. --no-report or
REAR_UPDATE_REPORT=0 turns them off; --dry-run never reports. docs/recoveries.md.

Key rotation: a key statement signed by a trusted key can hand its trust on to a new key
(rotation) or disown a key (retirement); apply reads the *.statement files of the keys
directory, --statement FILE, and the server's statements (GET /api/v1/key-statements) when
it fetches from a server. A bundle signed by a key trusted only through a rotation is
applied, and that key is recorded in the keys directory (learned-HEX.pub) for later; status
names the rotation. A bundle signed by a retired key is refused with KEY_RETIRED. The rules
and what a leaked key can still do: docs/keys.md.

Offline export (--from DIR, docs/export.md): when the server is down, apply reads
DIR/index.json, written by \`rear-update admin export DIR\` and signed by the server's key. The
index's signature must verify with a trusted key (the same keys and key statements as above;
statements written into the index count too), else EXPORT_INDEX_INVALID, or
BUNDLE_KEY_UNTRUSTED / KEY_RETIRED. This machine is found in the index by its facts, with the
server's rules (a fact naming two hosts proves nothing; nothing found: EXPORT_HOST_UNKNOWN,
never a guess), or by the HOST given. Its bundle file must have the sha256 and size the index
says (else EXPORT_TAMPERED) and is then applied as any bundle: verified, all or nothing, and
its signed manifest must name that host. An export older than REAR_UPDATE_EXPORT_MAX_AGE
(default 7d, by this machine's clock) is applied only when confirmed on a terminal or with
--accept-old-export; otherwise EXPORT_TOO_OLD. Nothing is reported to a server. status says
"installed from export of DATE".

Download progress: a bar on a terminal; a plain line every 5 s on anything else, and also on
a serial or IPMI console (stderr on /dev/ttyS*, ttyAMA*, ttyUSB*, hvc*, ttysclp*, or on
/dev/console while the kernel's active console is one of those) and with TERM=dumb.
REAR_UPDATE_PROGRESS=bar|plain|none overrides that choice (none: no progress, retries are
still reported); -q prints neither.

In a ReaR rescue system (etc/rear-release exists) the image's own values are not sent: the
hostname it was made with (etc/HOSTNAME, REAR_UPDATE_IMAGE_HOSTNAME), the template's DMI UUID
and serial (REAR_UPDATE_IMAGE_UUID, _SERIAL). A hostname is sent only when it differs from
the image's (DHCP) or is given (--hostname). Each fact left out is printed with its reason,
and so is the fact that resolved the machine. \`rear-update facts\` shows both beforehand;
docs/resolution.md has the rules.

Examples:
  rear-update apply --server http://rear-server:8080 --token ru_... --pubkey server.pub
  rear-update apply e229 --server http://rear-server:8080 --token ru_...
  rear-update apply e229.tar.gz --pubkey /etc/rear-update/keys/fleet.pub
  rear-update apply https://rear.example.com/rear/e229.tar.gz --cacert ca.pem
  rear-update apply --unsigned --dry-run legacy-config.tar.gz
  rear-update apply --from /media/usb/rear-export          this machine, found by its facts
  rear-update apply --from /mnt/export e229 --accept-old-export
  rear-update apply nic-tg3.layer.tar.gz --pubkey fleet.pub --root /mnt/image --kernel 6.1.0-57-amd64 --step-timeout 60`)
    .action((src: string | undefined, o: ApplyFlags) => apply(src, o));
}
