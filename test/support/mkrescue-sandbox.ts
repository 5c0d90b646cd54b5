// mkrescue sandbox: a throw-away copy of this machine in which tests run commands one at a
// time, as root, with Debian's real, unmodified ReaR 2.7, up to a complete `rear mkrescue`
// (OUTPUT=ISO); then they unpack the ISO's initrd inside the sandbox and look at it.
//
// Unlike test/support/rear-sandbox.ts (one `rear recover` run per sandbox, stopped in its init
// stage), this sandbox stays alive between commands: install-rear, mkrescue, uninstall, ...
// each is one `exec` in the same copy of the system, and the test checks the state in between.
// The isolation is the same idea:
//   - `unshare --mount --propagation private --pid --fork --kill-child` starts a holder
//     (bash, PID 1 of a new PID namespace, in a new private mount namespace). It mounts a
//     tmpfs on <tmp>/ns for the overlay's upper and work dirs (an upper dir on the lower `/`
//     itself would overlap it) and an overlayfs `lowerdir=/` on <tmp>/ns/root: every write in
//     the sandbox lands in that tmpfs, the real `/` is the read-only lower layer. Only the root
//     file system is the lower layer: other mounts (/proc, /sys, /dev, /tmp/pb/ram, ...) show
//     as their empty mount point directories, and <tmp>/ns itself shows as an empty directory;
//   - its own /proc (this PID namespace), /proc/sys and /proc/sysrq-trigger read-only, /sys
//     read-only, and a tmpfs /dev with only null, zero, full, random, urandom and tty: there
//     is no block device in the sandbox, so mkrescue's disk layout step (lsblk, parted, dd of
//     the first bytes of each disk) reads nothing and nothing can write to a disk;
//   - the host's network namespace (127.0.0.1 in the sandbox is the test's loopback);
//   - the holder then waits on its stdin, a pipe from the test process. `close()` ends that
//     pipe, and so does the test process dying in any way: the holder exits, the kernel kills
//     every process left in its PID namespace and drops every mount with the namespace. The
//     host's <tmp> then holds two empty directories, which close() removes.
// Commands: `nsenter --target HOLDER --mount --pid -- chroot <tmp>/ns/root timeout ... env -i
// PATH=... HOME=/root LANG=C TERM=dumb ARGV`: a clean root environment inside the copy. A
// command that outlives its timeout is killed with its process group (GNU timeout); whatever
// still runs at close() dies with the namespace.
// Files: readFile/writeFile/stat run `cat`/`stat` INSIDE the sandbox, never through
// /proc/PID/root from the host (an absolute symlink met on such a path would resolve against
// the host's real root, and a write could reach it).
//
// What a bootable mkrescue needs in here (ReaR 2.7, Debian 12; see bootableLocalConf):
//   - Debian packages: rear pulls in xorriso (the ISO), isolinux and syslinux-common (its
//     boot loader); `cpio` is in ReaR's REQUIRED_PROGS but NOT among the package's Depends
//     (scripts/ensure-system-deps.sh installs it on this machine);
//   - what the original system of a real image has and this machine lacks, installed in the
//     sandbox only by prepareBootableSystem from packages that scripts/ensure-system-deps.sh
//     keeps in DEB_CACHE: Debian's kernel (KERNEL_FILE, KERNEL_VERSION; this machine has no
//     /boot/vmlinuz-$(uname -r) and its running kernel is not Debian's), kmod, udev and
//     isc-dhcp-client; systemd is installed here already, and a stand-in process makes ReaR
//     see it running (pretendSystemd), as on any Debian host;
//   - a short MODULES list (VM_MODULES) instead of ReaR's default 'all_modules' (400 MB of
//     modules for a VM with three devices), FIRMWARE_FILES=( 'no' );
//   - USE_SERIAL_CONSOLE=yes with the devices given as text: there is no /dev/ttyS* in the
//     sandbox, and ReaR 2.7's probing (lib/serial-functions.sh) runs `ls` on an empty glob,
//     lists the current directory and stops with a BugError ("get_serial_device_speed() called
//     for 'bin' which is no character device");
//   - USE_DHCLIENT=yes: the template's own static network setup must not come up in the VM
//     (the sandbox shares this machine's network interfaces, whose setup ReaR records);
//   - BOOTLOADER=GRUB2: the bootloader guess (layout/save/default/445_guess_bootloader.sh)
//     reads the first bytes of each disk, and there is no disk device here;
//   - nothing else: OUTPUT_URL=null leaves the ISO in ISO_DIR, BACKUP=REQUESTRESTORE needs no
//     backup program. The build area is $TMPDIR=/var/tmp/rear.* in the sandbox (its tmpfs).
// The sandbox's hostname is its own (the `hostname` option: a UTS namespace), so the image is
// the template's, not this machine's. What it still shares with this machine: the network
// interfaces (their MACs and addresses are recorded in the image) and the DMI values in /sys.
//
// Timing: `rear -v mkrescue` takes 1.5 to 3.5 minutes on 2 CPUs, almost all of it in
// build/GNU/Linux/390_copy_binaries_libraries.sh and build/default/990_verify_rootfs.sh (ldd
// over every binary and library of the rescue system), which are kept: the latter is what
// proves that the one-file executable's libraries made it into the image.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';

/** Where the sandbox keeps its mkrescue material: the ISO directory. */
export const MKRESCUE_DIR = '/var/lib/rear-mkrescue-sandbox';
export const ISO_DIR = `${MKRESCUE_DIR}/iso`;
/** ReaR's ISO_PREFIX in bootableLocalConf: the ISO is ISO_DIR/ISO_PREFIX.iso. */
export const ISO_PREFIX = 'rear-mkrescue-sandbox';

export interface ExecOptions {
  /** Extra environment (the command otherwise runs with env -i PATH=... HOME=/root LANG=C TERM=dumb). */
  readonly env?: Readonly<Record<string, string>>;
  /** Bytes for the command's stdin (otherwise /dev/null). */
  readonly input?: string | Buffer;
  /** Working directory inside the sandbox (default /). */
  readonly cwd?: string;
  /** The command and its process group get SIGTERM after this long, SIGKILL 5 s later; default 120 s. */
  readonly timeoutMs?: number;
}

export interface ExecResult {
  /** Exit status; 124 (or 137) when the timeout struck. */
  readonly status: number;
  readonly stdout: Buffer;
  readonly stderr: string;
  /** stdout as UTF-8. */
  readonly text: string;
  readonly timedOut: boolean;
  readonly durationMs: number;
}

export interface SandboxStat {
  /** `stat -c %F`: "regular file", "directory", "symbolic link", ... */
  readonly type: string;
  /** Permission bits (including setuid/setgid/sticky). */
  readonly mode: number;
  readonly size: number;
}

export interface MkrescueSandbox {
  /** The holder's PID in the host's PID namespace. */
  readonly pid: number;
  /** Runs argv (argv[0] looked up in the sandbox's PATH) as root inside the sandbox. */
  exec(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Like exec, but throws (with stdout and stderr) unless the command exits 0. */
  run(argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** A file's bytes as the sandbox sees them (read inside it); throws when absent. */
  readFile(path: string): Promise<Buffer>;
  readText(path: string): Promise<string>;
  /** Writes a file inside the sandbox (parent directories created 0755), then sets its mode. */
  writeFile(path: string, data: string | Buffer, mode?: number): Promise<void>;
  /** lstat inside the sandbox; null when absent. */
  stat(path: string): Promise<SandboxStat | null>;
  exists(path: string): Promise<boolean>;
  /** Ends the namespace (every process and mount in it) and removes the host's temp dir. */
  close(): Promise<void>;
}

export interface MkrescueSandboxOptions {
  /** size= of the tmpfs holding every write (default: the kernel's, half of RAM). */
  readonly tmpfsSize?: string;
  /** How long building the sandbox may take; default 60 s. */
  readonly startTimeoutMs?: number;
  /** The sandbox's own hostname (a new UTS namespace); default: the host's, shared. */
  readonly hostname?: string;
  /** Run a process named systemd in the sandbox, so that ReaR puts systemd into the image as on a real host. */
  readonly pretendSystemd?: boolean;
}

// Shell scripts are written as `sh` templates: String.raw, where `\${` stands for a literal
// bash `${` and a plain `${...}` is a TypeScript interpolation.
const sh = (s: TemplateStringsArray, ...v: unknown[]): string => String.raw(s, ...v).replaceAll('\\${', '${');

// The holder: bash as PID 1 of the new PID namespace, in the new mount namespace.
// $1 = the host temp dir H, $2 = the tmpfs size option (may be empty), $3 = the hostname
// (may be empty: the host's), $4 = 1 to pretend that systemd runs.
const HOLDER = sh`
set -euo pipefail
H=$1; SIZE=$2; NAME=$3; SYSTEMD=$4; INIT_NAME=$5
if [ -n "$NAME" ]; then hostname "$NAME"; fi
T=$H/ns R=$H/ns/root
mkdir -p "$T"
mount -t tmpfs -o "mode=0700\${SIZE:+,size=$SIZE}" mkrescue-sandbox "$T"
mkdir "$T/upper" "$T/work" "$R"
mount -t overlay mkrescue-sandbox -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work,redirect_dir=off,metacopy=off" "$R"
test -x "$R/usr/sbin/rear" || { echo "mkrescue-sandbox: no /usr/sbin/rear in the overlay of / (is rear installed? is /usr a separate file system?)" >&2; exit 1; }
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for p in sys sysrq-trigger; do [ -e "$R/proc/$p" ] || continue; mount --bind "$R/proc/$p" "$R/proc/$p"; mount -o remount,bind,ro "$R/proc/$p"; done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o mode=0755,nosuid,noexec,size=1m mkrescue-sandbox-dev "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3; mknod -m 666 "$R/dev/zero" c 1 5; mknod -m 666 "$R/dev/full" c 1 7
mknod -m 666 "$R/dev/random" c 1 8; mknod -m 666 "$R/dev/urandom" c 1 9; mknod -m 666 "$R/dev/tty" c 5 0
ln -s /proc/self/fd "$R/dev/fd"; ln -s fd/0 "$R/dev/stdin"; ln -s fd/1 "$R/dev/stdout"; ln -s fd/2 "$R/dev/stderr"
mkdir "$R/dev/pts" "$R/dev/shm"
# /proc here is still the host's procfs, so /proc/self (opened by bash itself for the
# redirection) gives this shell's PID as the host sees it: what nsenter --target needs.
read -r -a st </proc/self/stat
echo "ready \${st[0]}"
# The init stand-in (see pretendSystemd); this script's own text must not name it, since
# ReaR greps \`ps ax\` for it, and this script is PID 1's command line.
if [ "$SYSTEMD" = 1 ]; then (exec -a "$INIT_NAME" sleep infinity) & fi
# Live until stdin ends (close(), or the test process is gone).
while read -r _; do :; done
`;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

// ReaR includes systemd in the image only when `ps ax` shows a process named systemd
// (prep/GNU/Linux/280_include_systemd.sh); on an original system it is PID 1. With
// pretendSystemd the holder starts a sleeping process under this name, in the sandbox's PID
// namespace only; it dies with the namespace.
const SYSTEMD_STAND_IN = '/lib/systemd/systemd-stand-in';

function sandboxPath(p: string): string {
  if (!p.startsWith('/')) throw new Error(`mkrescue-sandbox: not an absolute path: ${p}`);
  return posix.normalize(p);
}

/** Builds a sandbox (see the header). Needs root. Always close() it (in an `after` hook). */
export async function openMkrescueSandbox(opts: MkrescueSandboxOptions = {}): Promise<MkrescueSandbox> {
  const size = opts.tmpfsSize ?? '';
  if (!/^[0-9]*[kmgKMG%]?$/.test(size)) throw new Error(`mkrescue-sandbox: bad tmpfs size ${size}`);
  const h = mkdtempSync(join(tmpdir(), 'mkrescue-sandbox-'));
  const root = join(h, 'ns', 'root');
  const name = opts.hostname ?? '';
  if (name && !/^[a-z0-9][a-z0-9.-]{0,62}$/.test(name)) throw new Error(`mkrescue-sandbox: bad hostname ${name}`);
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', '--pid', ...(name ? ['--uts'] : []), '--fork', '--kill-child', '--', 'bash', '-c', HOLDER, 'mkrescue-sandbox', h, size, name, opts.pretendSystemd ? '1' : '0', opts.pretendSystemd ? SYSTEMD_STAND_IN : ''], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' },
  });
  let holderErr = '';
  holder.stderr.on('data', (d: Buffer) => (holderErr += d.toString()));
  holder.stdin.on('error', () => {});
  const exited = new Promise<void>((res) => holder.on('close', () => res()));
  let pid: number;
  try {
    pid = await new Promise<number>((res, rej) => {
      let out = '';
      const timer = setTimeout(() => rej(new Error(`mkrescue-sandbox: not ready after ${opts.startTimeoutMs ?? 60_000} ms:\n${holderErr}`)), opts.startTimeoutMs ?? 60_000);
      holder.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /^ready (\d+)$/m.exec(out);
        if (m) {
          clearTimeout(timer);
          res(Number(m[1]));
        }
      });
      holder.on('error', (e) => {
        clearTimeout(timer);
        rej(e);
      });
      holder.on('close', (code, signal) => {
        clearTimeout(timer);
        rej(new Error(`mkrescue-sandbox: the holder ended before it was ready (${code ?? signal}):\n${holderErr}`));
      });
    });
  } catch (e) {
    holder.stdin.end();
    holder.kill('SIGKILL');
    await exited;
    rmSync(h, { recursive: true, force: true });
    throw e;
  }

  let closed = false;
  const exec = async (argv: readonly string[], o: ExecOptions = {}): Promise<ExecResult> => {
    if (closed) throw new Error('mkrescue-sandbox: closed');
    const env = Object.entries({ PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C', TERM: 'dumb', ...o.env });
    for (const [k] of env) if (!NAME.test(k)) throw new Error(`mkrescue-sandbox: not an environment variable name: ${JSON.stringify(k)}`);
    // env(1) takes a leading NAME=VALUE or -option for itself.
    if (!argv[0] || argv[0].includes('=') || argv[0].startsWith('-')) throw new Error(`mkrescue-sandbox: not a command: ${JSON.stringify(argv[0])}`);
    const timeoutMs = o.timeoutMs ?? 120_000;
    const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
    const args = [
      '--target', String(pid), '--mount', '--pid', ...(name ? ['--uts'] : []), '--',
      'chroot', root, '/usr/bin/timeout', '--kill-after=5', String(seconds),
      '/usr/bin/env', '-i', ...(o.cwd ? ['-C', sandboxPath(o.cwd)] : []), ...env.map(([k, v]) => `${k}=${v}`), ...argv,
    ];
    const started = Date.now();
    return new Promise((res, rej) => {
      const p = spawn('nsenter', args, {
        stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' },
        // A backstop only: timeout(1) inside ends the command first.
        timeout: timeoutMs + 30_000,
        killSignal: 'SIGKILL',
      });
      const out: Buffer[] = [];
      let err = '';
      p.stdout!.on('data', (d: Buffer) => out.push(d));
      p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      if (o.input !== undefined) {
        p.stdin!.on('error', () => {});
        p.stdin!.end(o.input);
      }
      p.on('error', rej);
      p.on('close', (code, signal) => {
        const stdout = Buffer.concat(out);
        const status = code ?? (signal ? 128 + 9 : 1);
        res({ status, stdout, stderr: err, text: stdout.toString('utf8'), timedOut: status === 124 || status === 137, durationMs: Date.now() - started });
      });
    });
  };
  const run = async (argv: readonly string[], o?: ExecOptions): Promise<ExecResult> => {
    const r = await exec(argv, o);
    if (r.status !== 0) throw new Error(`mkrescue-sandbox: ${argv.join(' ')} exited ${r.status}${r.timedOut ? ' (timed out)' : ''}\n--- stdout\n${r.text.slice(-20_000)}\n--- stderr\n${r.stderr.slice(-20_000)}`);
    return r;
  };
  const stat = async (path: string): Promise<SandboxStat | null> => {
    const r = await exec(['stat', '-c', '%a|%s|%F', '--', sandboxPath(path)]);
    if (r.status !== 0) return null;
    const [mode, sz, type] = r.text.trim().split('|');
    return { type: type ?? '', mode: parseInt(mode ?? '', 8), size: Number(sz) };
  };
  return {
    pid,
    exec,
    run,
    async readFile(path) {
      return (await run(['cat', '--', sandboxPath(path)])).stdout;
    },
    async readText(path) {
      return (await run(['cat', '--', sandboxPath(path)])).text;
    },
    async writeFile(path, data, mode = 0o644) {
      await run(['sh', '-c', 'mkdir -p -m 0755 -- "$(dirname -- "$1")" && cat >"$1" && chmod "$2" -- "$1"', 'write', sandboxPath(path), mode.toString(8)], { input: data });
    },
    stat,
    async exists(path) {
      return (await stat(path)) !== null;
    },
    async close() {
      if (closed) return;
      closed = true;
      holder.stdin.end();
      const timer = setTimeout(() => holder.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
      rmSync(h, { recursive: true, force: true });
    },
  };
}

/**
 * Debian packages for a bootable rescue image, downloaded once per machine by
 * scripts/ensure-system-deps.sh (never during a test): linux-image-*-amd64, udev and a DHCP
 * client with exactly the dependencies this machine lacks.
 */
export const DEB_CACHE = '/var/cache/rear-update-test/debs';

export interface BootableKernel {
  /** /boot/vmlinuz-VERSION inside the sandbox. */
  readonly path: string;
  /** The kernel release, e.g. 6.1.0-57-amd64: KERNEL_VERSION for ReaR. */
  readonly version: string;
}

// Makes the sandbox an original system whose rescue image can boot: Debian's kernel (its files
// only, unpacked with tar: no initramfs-tools run; then depmod), udev and isc-dhcp-client installed
// with kmod, installed with apt from DEB_CACHE (no download). The kernel is not this machine's running one, and
// ReaR 2.7's build/GNU/Linux/400_copy_modules.sh asks `modinfo MODULE` (without -k, so for
// `uname -r`) whether a module exists before it copies it for KERNEL_VERSION: a link
// /lib/modules/$(uname -r) -> KERNEL_VERSION in the sandbox answers that question for the
// kernel the image carries, as it would be answered on a host running that kernel.
const PREPARE_BOOTABLE = sh`
set -euo pipefail
cache=$1
debs=( "$cache"/linux-image-*-amd64_*.deb )
[ -f "\${debs[0]}" ] || { echo "no linux-image package in $cache: run scripts/ensure-system-deps.sh" >&2; exit 1; }
deb=\${debs[-1]}
version=$(dpkg-deb -f "$deb" Package); version=\${version#linux-image-}
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-download \
  -o Dir::Cache::archives="$cache" -o Debug::NoLocking=1 kmod udev isc-dhcp-client >/dev/null
# Into the merged-/usr root without replacing the /lib link by a directory (dpkg-deb -x would).
dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C /
depmod -a "$version"
running=$(uname -r)
[ "$running" = "$version" ] || [ -e "/lib/modules/$running" ] || ln -s "$version" "/lib/modules/$running"
echo "$version"
`;

/** Installs a real kernel, udev and a DHCP client in the sandbox (see PREPARE_BOOTABLE). */
export async function prepareBootableSystem(sb: MkrescueSandbox): Promise<BootableKernel> {
  const r = await sb.run(['bash', '-c', PREPARE_BOOTABLE, 'prepare', DEB_CACHE], { timeoutMs: 600_000 });
  const version = r.text.trim().split('\n').pop() ?? '';
  if (!/^[0-9][A-Za-z0-9.+_-]*$/.test(version)) throw new Error(`mkrescue-sandbox: no kernel version from the package:\n${r.text}\n${r.stderr}`);
  return { path: `/boot/vmlinuz-${version}`, version };
}

/**
 * The modules a QEMU guest (pc machine, virtio-net) needs on top of what ReaR adds by itself,
 * loaded at boot through MODULES_LOAD; the rest of the 400 MB module tree stays out. virtio_blk
 * and ext4: the local-media test's disk (an ext2 file system labelled REAR-UPDATE).
 */
export const VM_MODULES = ['virtio_pci', 'virtio_net', 'e1000', 'virtio_blk', 'ext4'] as const;

/** local.conf for a rescue image that boots in QEMU with a serial console and DHCP. */
export function bootableLocalConf(kernel: BootableKernel, extra = ''): string {
  return [
    '# Bootable mkrescue configuration for the sandbox of test/support/mkrescue-sandbox.ts',
    'OUTPUT=ISO',
    'OUTPUT_URL=null',
    'BACKUP=REQUESTRESTORE',
    `ISO_DIR=${ISO_DIR}`,
    `ISO_PREFIX=${ISO_PREFIX}`,
    `KERNEL_FILE=${kernel.path}`,
    `KERNEL_VERSION=${kernel.version}`,
    `MODULES=( ${VM_MODULES.join(' ')} )`,
    `MODULES_LOAD=( ${VM_MODULES.join(' ')} )`,
    "FIRMWARE_FILES=( 'no' )",
    // No /dev/ttyS* in the sandbox (ReaR would probe them with stty): the kernel's console and
    // the boot loader's serial directive given as text, which ReaR then takes as it is.
    'USE_SERIAL_CONSOLE=yes',
    "SERIAL_CONSOLE_DEVICES_KERNEL='console=ttyS0,115200'",
    "SERIAL_CONSOLE_DEVICE_SYSLINUX='serial 0 115200'",
    'USE_DHCLIENT=yes',
    'BOOTLOADER=GRUB2',
    extra,
  ].join('\n').replace(/\n*$/, '\n');
}

export interface MkrescueResult extends ExecResult {
  /** The ISO's path in the sandbox (ISO_DIR/ISO_PREFIX.iso) when rear wrote it. */
  readonly iso: string | null;
  /** ReaR's log from /var/log/rear (empty when missing). */
  readonly log: string;
}

/** Runs `rear -v mkrescue` in the sandbox; default timeout 15 minutes. */
export async function runMkrescue(sb: MkrescueSandbox, opts: ExecOptions = {}): Promise<MkrescueResult> {
  const r = await sb.exec(['rear', '-v', 'mkrescue'], { timeoutMs: 15 * 60_000, ...opts });
  const iso = `${ISO_DIR}/${ISO_PREFIX}.iso`;
  const logs = await sb.exec(['sh', '-c', 'cat /var/log/rear/rear-*.log 2>/dev/null']);
  return { ...r, iso: (await sb.exists(iso)) ? iso : null, log: logs.text };
}

export interface UnpackedInitrd {
  /** The initrd's path inside the ISO, e.g. /isolinux/initrd.cgz. */
  readonly inIso: string;
  readonly compression: 'gzip' | 'xz' | 'lz4' | 'zstd' | 'none';
  /** Every file path in the ISO. */
  readonly isoFiles: readonly string[];
}

// Unpacks ISO ($1)'s initrd ($2, a path inside the ISO) into the empty directory $3 by the
// initrd's magic number (ReaR 2.7: gzip by default, xz, lz4 or zstd by REAR_INITRD_COMPRESSION).
const UNPACK = sh`
set -euo pipefail
iso=$1 inIso=$2 dir=$3
f=$dir.initrd
xorriso -osirrox on -indev "$iso" -extract "$inIso" "$f" 2>/dev/null
magic=$(od -An -tx1 -N6 "$f" | tr -d ' \n')
case $magic in
  1f8b*) kind=gzip; dec=(gzip -dc) ;;
  fd377a585a00) kind=xz; dec=(xz -dc) ;;
  02214c18*|04224d18*) kind=lz4; dec=(lz4 -dc) ;;
  28b52ffd*) kind=zstd; dec=(zstd -dc) ;;
  303730373031|303730373032) kind=none; dec=(cat) ;;
  *) echo "unknown initrd format, magic $magic" >&2; exit 1 ;;
esac
mkdir -p "$dir"
"\${dec[@]}" "$f" | (cd "$dir" && cpio -idm --quiet --no-absolute-filenames)
rm -f "$f"
echo "$kind"
`;

/** Finds the initrd in the sandbox's ISO, extracts it and unpacks it into `dir` (inside the sandbox). */
export async function unpackRescueInitrd(sb: MkrescueSandbox, iso: string, dir: string): Promise<UnpackedInitrd> {
  const list = await sb.run(['xorriso', '-indev', sandboxPath(iso), '-find', '/', '-type', 'f']);
  // xorriso quotes each path: '/isolinux/initrd.cgz'
  const isoFiles = list.text.split('\n').map((l) => /^'(.*)'$/.exec(l.trim())?.[1]).filter((p): p is string => p !== undefined);
  const initrds = isoFiles.filter((p) => /^(initrd\.(cgz|xz|lz4|zstd?|gz|img))$|\.initrd$/.test(posix.basename(p)));
  if (initrds.length !== 1) throw new Error(`mkrescue-sandbox: expected one initrd in ${iso}, found ${JSON.stringify(initrds)} among ${JSON.stringify(isoFiles)}`);
  const inIso = initrds[0]!;
  const r = await sb.run(['bash', '-c', UNPACK, 'unpack', sandboxPath(iso), inIso, sandboxPath(dir)], { timeoutMs: 300_000 });
  return { inIso, compression: r.text.trim() as UnpackedInitrd['compression'], isoFiles };
}
