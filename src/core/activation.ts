// What a layered bundle asks of the machine beyond its files, decided without touching it:
// which entries are bound to a kernel release (and so installed only for the target one),
// whether the bundle may run hooks at all, and which activation steps follow the commit
// (depmod, udev, modprobe, the layers' hooks), in which order. Pure: the plan's changed paths
// and the signed manifest go in, a list of steps comes out; adapters/fs/activation-runner.ts
// runs them. docs/layers.md describes the rules.

import { RuError } from './errors.ts';
import type { LayerInfo, ManifestEntry } from './manifest.ts';

/** Where kernel modules live; `<dir>/<release>` and everything below it belong to that release. */
export const MODULES_DIRS = ['lib/modules', 'usr/lib/modules'] as const;

/** Changes below these make udev reload its rules and replay the add events. */
export const UDEV_DIRS = ['etc/udev/rules.d', 'lib/udev/rules.d', 'usr/lib/udev/rules.d', 'lib/firmware', 'usr/lib/firmware'] as const;

/** Present in a root whose udev daemon is running (its control socket). */
export const UDEV_CONTROL = 'run/udev/control';

const under = (path: string, dir: string): boolean => path === dir || path.startsWith(`${dir}/`);

/** The kernel release a path belongs to (`lib/modules/6.1.0-57-amd64/...`), or null. */
export function kernelReleaseOf(path: string): string | null {
  for (const d of MODULES_DIRS) {
    if (path.startsWith(`${d}/`)) return path.slice(d.length + 1).split('/')[0] as string;
  }
  return null;
}

/** A path of another kernel release than `kernel`: never installed, never removed. */
export const otherKernel = (path: string, kernel: string): boolean => {
  const r = kernelReleaseOf(path);
  return r !== null && r !== kernel;
};

export interface KernelSelection<E extends ManifestEntry> {
  /** What is installed: everything but other releases' entries. */
  readonly install: E[];
  /** Per skipped release (sorted), how many entries it had. */
  readonly skipped: readonly { readonly kernel: string; readonly entries: number }[];
  /** The entries left out (their staged copies can go). */
  readonly left: readonly E[];
}

/**
 * Kernel-bound content of other releases than `kernel` is left out. A hard link kept whose
 * target is left out (a plain archive can link across releases) becomes the file it links to.
 */
export function selectForKernel<E extends ManifestEntry>(entries: readonly E[], kernel: string): KernelSelection<E> {
  const install: E[] = [];
  const left: E[] = [];
  const counts = new Map<string, number>();
  for (const e of entries) {
    const r = kernelReleaseOf(e.path);
    if (r !== null && r !== kernel) {
      left.push(e);
      counts.set(r, (counts.get(r) ?? 0) + 1);
    } else install.push(e);
  }
  const leftPaths = new Map(left.map((e) => [e.path, e]));
  const fixed = install.map((e) => {
    const t = e.type === 'hardlink' ? leftPaths.get(e.target as string) : undefined;
    if (!t) return e;
    const { target: _t, ...rest } = e;
    return { ...rest, type: 'file', mode: t.mode, size: t.size, sha256: t.sha256 } as E;
  });
  const skipped = [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, n]) => ({ kernel: k, entries: n }));
  return { install: fixed, skipped, left };
}

/** KERNEL_MISMATCH unless every layer that names releases names the target one. */
export function checkKernels(layers: readonly LayerInfo[], kernel: string, running: string): void {
  for (const l of layers) {
    if (l.kernels.length === 0 || l.kernels.includes(kernel)) continue;
    const target = kernel === running ? `the running kernel ${running}` : `${kernel} (--kernel; running: ${running})`;
    throw new RuError('KERNEL_MISMATCH', `layer ${l.name} is made for kernel ${l.kernels.join(', ')}, not for ${target}; nothing was written`, {
      layer: l.name, kernels: [...l.kernels], kernel, running,
    });
  }
}

export const declaresHooks = (layers: readonly LayerInfo[] | undefined): boolean => (layers ?? []).some((l) => l.pre.length + l.post.length > 0);

/**
 * Hooks are programs the bundle brings and root runs: only from a bundle whose signature is
 * valid for a trusted key, or when the operator says so loudly (--allow-hooks).
 */
export function checkHookTrust(layers: readonly LayerInfo[] | undefined, trustedSignature: boolean, allowHooks: boolean, signature: string): void {
  if (!declaresHooks(layers) || trustedSignature || allowHooks) return;
  const hooks = (layers ?? []).flatMap((l) => [...l.pre.map((p) => `pre ${p} (layer ${l.name})`), ...l.post.map((p) => `post ${p} (layer ${l.name})`)]);
  throw new RuError('HOOKS_UNTRUSTED', `the bundle declares hooks (${hooks.join(', ')}) but is ${signature}, not signed by a trusted key; nothing was written. Pass --allow-hooks only if you trust its origin`, {
    hooks, signature,
  });
}

export type StepKind = 'pre' | 'depmod' | 'udev' | 'modprobe' | 'post';

export interface Step {
  readonly kind: StepKind;
  /** How the log, the output and status name it. */
  readonly name: string;
  /** The command as run inside the root (the runner adds `chroot ROOT` for a root that is not /). */
  readonly argv: readonly string[];
  /** Set for hooks: REAR_UPDATE_ROOT, _LAYER, _KERNEL, _PHASE. */
  readonly env: Readonly<Record<string, string>>;
  readonly layer?: string;
  /** Set: not run, recorded as skipped for this reason. */
  readonly skip?: string;
}

export type StepStatus = 'ok' | 'failed' | 'skipped' | 'timeout';

/** What became of one step; kept in the installed record and shown by status. */
export interface StepResult {
  readonly name: string;
  readonly command: string;
  readonly status: StepStatus;
  /** The exit status, or null (skipped, killed, or could not be started). */
  readonly exit: number | null;
  readonly seconds: number;
  readonly note?: string;
}

/** A command line as a person would type it (arguments with odd characters quoted). */
export const commandLine = (argv: readonly string[]): string =>
  argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');

const hookEnv = (layer: LayerInfo, kernel: string, phase: 'pre' | 'post'): Record<string, string> => ({
  // Hooks run chrooted into the root (or in it, when it is /): from where they stand, it is /.
  REAR_UPDATE_ROOT: '/',
  REAR_UPDATE_LAYER: layer.name,
  REAR_UPDATE_KERNEL: kernel,
  REAR_UPDATE_PHASE: phase,
});

/**
 * `at` maps a hook (a bundle path) to the absolute path, inside the root, of the file to run:
 * its staged copy before the commit, the installed file after it; null when the hook is
 * content of another kernel release and so not installed.
 */
function hookSteps(layers: readonly LayerInfo[], kernel: string, phase: 'pre' | 'post', at: (bundlePath: string) => string | null): Step[] {
  const steps: Step[] = [];
  for (const l of layers) {
    for (const h of phase === 'pre' ? l.pre : l.post) {
      const file = at(h);
      const base = { kind: phase, name: `${phase} hook ${h} (layer ${l.name})`, env: hookEnv(l, kernel, phase), layer: l.name };
      steps.push(file === null ? { ...base, argv: [`/${h}`], skip: `not installed: content of another kernel release than ${kernel}` } : { ...base, argv: [file] });
    }
  }
  return steps;
}

/** The pre hooks, layer by layer: run after staging and verification, before the commit. */
export const preHookSteps = (layers: readonly LayerInfo[], kernel: string, at: (bundlePath: string) => string | null): Step[] =>
  hookSteps(layers, kernel, 'pre', at);

export interface ActivationInput {
  readonly layers: readonly LayerInfo[];
  /** Root paths the commit created, replaced or removed. */
  readonly changed: readonly string[];
  /** The release content was installed for (--kernel, default the running one). */
  readonly kernel: string;
  /** `uname -r` of the machine running apply. */
  readonly running: string;
  /** The root is not /: steps run through chroot, and modules are never loaded. */
  readonly chroot: boolean;
  /** udev runs in the root (its control socket exists). */
  readonly udevRunning: boolean;
  /** The installed root path of a post hook, or null (see hookSteps). */
  readonly installedAt: (bundlePath: string) => string | null;
}

/** Releases whose modules directory has a change among `paths` (depmod after apply and rollback). */
export function depmodReleases(paths: readonly string[]): string[] {
  const s = new Set<string>();
  for (const p of paths) {
    const r = kernelReleaseOf(p);
    if (r !== null) s.add(r);
  }
  return [...s].sort();
}

export const depmodStep = (kernel: string): Step => ({ kind: 'depmod', name: `depmod ${kernel}`, argv: ['depmod', '-a', kernel], env: {} });

/**
 * Whether modprobe may really load modules: only for the running kernel, into the running
 * system. Otherwise it only resolves them (--dry-run --set-version): a module must never be
 * loaded into a kernel it was not built for, nor into the machine that prepares an image.
 */
export const loadsModules = (i: Pick<ActivationInput, 'kernel' | 'running' | 'chroot'>): boolean => !i.chroot && i.kernel === i.running;

/** The steps after the commit, in order: depmod, udev, modprobe, post hooks. */
export function activationSteps(i: ActivationInput): Step[] {
  const steps: Step[] = [];
  const load = loadsModules(i);
  if (i.changed.some((p) => kernelReleaseOf(p) === i.kernel)) steps.push(depmodStep(i.kernel));
  // New rules or firmware; and, on the running kernel, new drivers: replaying the add events
  // lets udev load them for devices that are already there (what ReaR's initrd overlay does).
  const udev = i.changed.some((p) => UDEV_DIRS.some((d) => under(p, d)) || (load && kernelReleaseOf(p) === i.kernel));
  if (udev) {
    const cmds: [string, string[]][] = [
      ['udev reload', ['udevadm', 'control', '--reload']],
      ['udev trigger', ['udevadm', 'trigger', '--action=add']],
      ['udev settle', ['udevadm', 'settle']],
    ];
    if (i.udevRunning) for (const [name, argv] of cmds) steps.push({ kind: 'udev', name, argv, env: {} });
    else steps.push({ kind: 'udev', name: 'udev', argv: ['udevadm', 'trigger', '--action=add'], env: {}, skip: `udev is not running in the root (no ${UDEV_CONTROL})` });
  }
  for (const l of i.layers) {
    for (const m of l.modules) {
      const argv = load ? ['modprobe', m] : ['modprobe', '--dry-run', '--set-version', i.kernel, m];
      steps.push({ kind: 'modprobe', name: `modprobe ${m} (layer ${l.name})`, argv, env: {}, layer: l.name });
    }
  }
  steps.push(...hookSteps(i.layers, i.kernel, 'post', i.installedAt));
  return steps;
}
