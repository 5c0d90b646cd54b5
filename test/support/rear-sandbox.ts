// ReaR sandbox: runs Debian's real, unmodified `rear` 2.7 `recover` workflow in a throw-away
// copy of this machine and stops it right after ReaR's own update step, so tests can point
// ReaR's RECOVERY_UPDATE_URL and DRLM client code at a server they run on 127.0.0.1.
//
// How the sandbox is built (the WRAPPER script below, run as root under
// `unshare --mount --propagation private --pid --fork --kill-child`):
//   - a private mount namespace: nothing mounted in it is visible outside, and the kernel
//     drops every mount when its last process exits (no host-side unmount to forget);
//   - a tmpfs on <tmp>/ns holding the overlay's upper and work dirs (an upper dir inside the
//     lower `/` would overlap it), and an overlayfs `lowerdir=/` on <tmp>/ns/root. Every
//     write in the sandbox lands in the tmpfs; the real `/` is read-only lower layer.
//     redirect_dir=off,metacopy=off keep the upper dir a plain tree (full copy-ups), so
//     reading it back needs no overlay metadata other than whiteouts and opaque dirs;
//   - a new PID namespace with its own /proc, so ReaR's "is rear already running" pidof
//     check sees only the sandbox and several sandboxes may run at once;
//   - /sys read-only, /proc/sys and /proc/sysrq-trigger read-only, and a tmpfs /dev with
//     only null, zero, full, random, urandom and tty: no block device exists in the sandbox,
//     so even a ReaR run that got past the stop point could not touch a disk;
//   - the host's network namespace: 127.0.0.1 in the sandbox is the test's loopback;
//   - `chroot` into the overlay, with `env -i` (a rescue-like environment, not the test's).
//   Only the root file system is the lower layer: other mounts (here /proc, /sys, /dev,
//   /tmp/pb/ram) show as their empty mount point directories. A machine with /usr on a
//   separate file system is refused (the wrapper checks that rear exists in the overlay).
//
// How it looks like a rescue system: `/etc/rear-release` exists (what ReaR 2.7 tests, see
// init/default/050_check_rear_recover_mode.sh), `/etc/rear` holds exactly the caller's
// local.conf (the host's /etc/rear content is deleted in the sandbox) plus `files`.
//
// The stop point: ReaR's `init` stage sources init/default/NNN_*.sh in order. In Debian's
// 2.7 they are 005_verify_os_conf.sh (writes /etc/rear/os.conf: it is missing in the sandbox),
// 010_EFISTUB_check.sh, 010_set_drlm_env.sh (DRLM_MANAGED=y: imports SERVER=/ID=/REST_OPTS=
// arguments, downloads and sources the DRLM config, starts the log upload),
// 030_update_recovery_system.sh (RECOVERY_UPDATE_URL), then 050_check_rear_recover_mode.sh
// (passes: /etc/rear-release exists) and 950_check_missing_programs.sh (would fail here:
// REQUIRED_PROGS has cpio, which Debian's rear package does not depend on; mkrescue copies it
// into a real rescue image). None before the stop fails in the sandbox. The harness adds, inside the
// sandbox only, init/default/031_rear_update_test_stop.sh: it dumps the requested variables to
// /var/lib/rear-sandbox/, writes the marker /var/lib/rear-sandbox/stopped, sets
// EXIT_FAIL_MESSAGE=0 (as usr/sbin/rear does on success: no "rear recover failed" line) and
// calls `exit 42` (STOPPED_STATUS). ReaR scripts are sourced into the main shell, so that
// `exit` ends rear through its normal EXIT trap (DoExitTasks: a fixed `sleep 3`, then it
// terminates its background jobs such as the DRLM log upload, then removes its build area),
// and bash keeps 42 as the exit status. ReaR's own failures exit differently (Error() kills
// the main process: 143), so `stopped` is `status === 42` and the marker file exists.
//
// How DRLM options reach curl (lib/drlm-functions.sh, ReaR 2.7), verified by
// test/integration/rear-sandbox.test.ts:
//   - `rear recover SERVER=127.0.0.1:8443 ID=e229 REST_OPTS="..."`: each argument KEY=val
//     becomes DRLM_KEY=val (overriding local.conf) and is logged as "Setting DRLM_KEY=val", so
//     a token given in REST_OPTS ends up in ReaR's log (and in the log upload). SERVER, ID and
//     REST_OPTS must all be non-empty (REST_OPTS defaults to `--capath /etc/rear/cert`);
//   - config: GET https://$DRLM_SERVER/clients/$DRLM_ID/config (always https), `source`d when
//     the answer is exactly 200 (so it does affect the current run, unlike an updated
//     local.conf); log: one streamed, chunked PUT (`tail -f | curl -T-`, started right after
//     the config) to https://$DRLM_SERVER/clients/$DRLM_ID/log/recover/YYYYmmddHHMMSS (the
//     sandbox's local time). ReaR's exit path terminates `tail` first, so curl ends the upload
//     cleanly: the server gets the log up to "Exiting rear recover ..." and a complete request;
//   - $DRLM_REST_OPTS is expanded unquoted: split on blanks, NO quote removal, and pathname
//     expansion with `nullglob` on (a word with * ? [ that matches no file silently vanishes).
//     What works for a token: `-H Authorization:TOKEN` (curl sends exactly the line
//     "Authorization:TOKEN"; HTTP parsers read the value "TOKEN"), or `-H @/etc/rear/drlm.headers`
//     with a file holding the line `Authorization: TOKEN` (curl >= 7.55 reads headers from the
//     file; spaces and glob characters are safe there). What does NOT work:
//     `-H "Authorization: TOKEN"` in local.conf or on the command line: curl gets the words
//     `"Authorization:` (a header without value: curl sends nothing) and `TOKEN"` (a second,
//     malformed URL, which takes the `-o`): the config request carries no token, its body goes
//     to stdout into ReaR's response-code variable, and ReaR errors out ('000403' from DRLM).
//
// Timing: ReaR's exit path always sleeps 3 s, then 1 s per background process it terminates
// (3 more with DRLM's log upload), and Error() sleeps too: a run takes 4 to 9 s on an idle
// machine, almost all of it sleeping, so independent runs are best started in parallel.
//
// Reading the sandbox afterwards: the wrapper copies the overlay's upper dir out before the
// namespace ends; the harness loads it into memory and deletes every temporary file before
// returning. `readFile(path)` resolves a path the way the sandbox saw it at the end of the
// run: what the run wrote (upper), hidden by what it deleted (whiteouts, opaque dirs), else
// the host's file as it is now (the unchanged lower layer); symlinks are followed within the
// sandbox's root.

import { spawn } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';

/** The exit status of a rear run that reached the stop script. */
export const STOPPED_STATUS = 42;
/** Where the stop script lives inside the sandbox (and only there). */
export const STOP_SCRIPT = '/usr/share/rear/init/default/031_rear_update_test_stop.sh';
/** Where the stop script writes its marker and the dumped variables, inside the sandbox. */
export const DUMP_DIR = '/var/lib/rear-sandbox';

/**
 * local.conf of a DRLM-managed client: server, id, and DRLM_REST_OPTS exactly as given (its
 * quoting is part of what a test checks, so it is passed through verbatim).
 */
export const drlmLocalConf = (port: number, id: string, restOpts: string): string =>
  ['DRLM_MANAGED=y', `DRLM_SERVER=127.0.0.1:${port}`, `DRLM_ID=${id}`, `DRLM_REST_OPTS=${restOpts}`, ''].join('\n');

export type SandboxFile = string | Buffer | { readonly content: string | Buffer; readonly mode: number };

export interface RearSandboxOptions {
  /** Content of the sandbox's /etc/rear/local.conf. */
  readonly localConf: string;
  /** More files to put into the sandbox before rear starts, by absolute path (default mode 0644). */
  readonly files?: Readonly<Record<string, SandboxFile>>;
  /** Arguments after `recover`, e.g. ['SERVER=127.0.0.1:8443', 'ID=e229', 'REST_OPTS=...']. */
  readonly args?: readonly string[];
  /** rear's options before `recover`; default ['-v']. ['-d'] puts stdout/stderr into the log. */
  readonly rearOptions?: readonly string[];
  /**
   * Shell variables to dump at the stop point: globals of rear's main shell (a config file's
   * `declare` makes a local of ReaR's Source function: use `declare -g`). Names starting with
   * rs_ are the stop script's own locals.
   */
  readonly vars?: readonly string[];
  /**
   * A bash script run inside the sandbox before rear (same chroot and environment, no stdin),
   * e.g. a rescue boot hook; rear runs afterwards whatever its exit status.
   */
  readonly before?: string;
  /** Content of /etc/rear-release; default what ReaR 2.7's mkrescue writes. */
  readonly rearRelease?: string;
  /** Extra environment for rear (it otherwise runs with env -i PATH=... HOME=/root LANG=C). */
  readonly env?: Readonly<Record<string, string>>;
  /** rear is stopped with SIGTERM (then SIGKILL) after this long; default 120 s (a loaded 2-CPU machine running several sandboxes at once makes a 5 s run take 30 s). */
  readonly timeoutMs?: number;
}

/** A dumped shell variable: a scalar, an indexed array (in index order) or an associative array. */
export type RearVar = string | string[] | Record<string, string>;

export interface RearSandboxResult {
  /** rear's exit status (STOPPED_STATUS when it reached the stop script; 124 when timed out). */
  readonly status: number;
  /** rear reached the stop script, i.e. the whole init stage up to 030 ran without error. */
  readonly stopped: boolean;
  readonly timedOut: boolean;
  /** rear's own stdout and stderr (with -v: its LogPrint and error messages). */
  readonly stdout: string;
  readonly stderr: string;
  /** The `before` script's exit status and output (null/'' without one). */
  readonly beforeStatus: number | null;
  readonly beforeOutput: string;
  /** ReaR's log file(s) from the sandbox's /var/log/rear (rear-<hostname>.log). */
  readonly log: string;
  /** The variables named in `vars` as they were at the stop point; unset ones are absent. */
  readonly vars: Readonly<Record<string, RearVar>>;
  /** `declare -p` of those variables (for messages). */
  readonly declared: string;
  /** Absolute paths of the files, symlinks and other non-directories the run created or changed. */
  readonly written: readonly string[];
  /** Absolute paths of host files the run deleted in its view (whiteouts). */
  readonly deleted: readonly string[];
  /** A file as the sandbox saw it at the end of the run; throws an ENOENT error when absent. */
  readFile(path: string): Buffer;
  readText(path: string): string;
  exists(path: string): boolean;
  /** The wrapper's own diagnostics (mount steps); empty when all went well. */
  readonly sandboxLog: string;
  readonly durationMs: number;
}

// Shell scripts are written as `sh` templates: String.raw, where `\${` stands for a literal
// bash `${` and a plain `${...}` is a TypeScript interpolation.
const sh = (s: TemplateStringsArray, ...v: unknown[]): string => String.raw(s, ...v).replaceAll('\\${', '${');

// The script that builds the sandbox and runs rear: bash, as PID 1 of the new PID namespace,
// in the new mount namespace. $1 = the harness temp dir H (a host path), $2 = rear's timeout
// in seconds, then the command to chroot into (env -i ... rear ...). H/stage holds the files
// to copy into the sandbox; the results go to H/out.
const WRAPPER = sh`
set -euo pipefail
H=$1; TIMEOUT=$2; shift 2
T=$H/ns R=$H/ns/root O=$H/out
mkdir -p "$T" "$O"
# Upper and work dirs on a tmpfs that only this namespace sees.
mount -t tmpfs -o mode=0700 rear-sandbox "$T"
mkdir "$T/upper" "$T/work" "$R"
mount -t overlay rear-sandbox -o "lowerdir=/,upperdir=$T/upper,workdir=$T/work,redirect_dir=off,metacopy=off" "$R"
test -x "$R/usr/sbin/rear" || { echo "rear-sandbox: no /usr/sbin/rear in the overlay of / (is /usr a separate file system?)" >&2; exit 1; }
# The sandbox's own /proc (this PID namespace), read-only where writes would reach the kernel.
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for p in sys sysrq-trigger; do [ -e "$R/proc/$p" ] || continue; mount --bind "$R/proc/$p" "$R/proc/$p"; mount -o remount,bind,ro "$R/proc/$p"; done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
# A /dev without any block device.
mount -t tmpfs -o mode=0755,nosuid,noexec,size=1m rear-sandbox-dev "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3; mknod -m 666 "$R/dev/zero" c 1 5; mknod -m 666 "$R/dev/full" c 1 7
mknod -m 666 "$R/dev/random" c 1 8; mknod -m 666 "$R/dev/urandom" c 1 9; mknod -m 666 "$R/dev/tty" c 5 0
ln -s /proc/self/fd "$R/dev/fd"; ln -s fd/0 "$R/dev/stdin"; ln -s fd/1 "$R/dev/stdout"; ln -s fd/2 "$R/dev/stderr"
mkdir "$R/dev/pts" "$R/dev/shm"
# A private pty instance, so a test can give a script a terminal (script(1)); no host ttys.
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 rear-sandbox-pts "$R/dev/pts" && ln -s pts/ptmx "$R/dev/ptmx" || true
# Hide the harness's own temp dir (it is part of the lower /) from rear.
if [ -d "$R$H" ]; then mount -t tmpfs -o ro,size=4k rear-sandbox-hide "$R$H"; fi
# The rescue system's /etc/rear holds only what the test gives (contents deleted, dir kept).
if [ -d "$R/etc/rear" ]; then find "$R/etc/rear" -mindepth 1 -delete; else mkdir -p "$R/etc/rear"; fi
# rear-release, local.conf, the stop script and the caller's files; existing dirs keep their metadata.
tar -C "$H/stage" -cf - . | tar -C "$R" -xpf - --no-overwrite-dir
set +e
# The caller's "before" script (a rescue boot hook, say), in the same environment as rear.
if [ -s "$H/before.argv" ]; then
  mapfile -d '' -t BEFORE <"$H/before.argv"
  timeout --kill-after=5 "$TIMEOUT" chroot "$R" "\${BEFORE[@]}" </dev/null >"$O/before-stdout" 2>"$O/before-stderr"
  echo $? >"$O/before-status"
fi
timeout --kill-after=5 "$TIMEOUT" chroot "$R" "$@" </dev/null >"$O/stdout" 2>"$O/stderr"
echo $? >"$O/status"
set -e
# ReaR's exit path terminates its own background jobs; give stragglers 3 s, then kill them by pid.
i=0
while :; do
  others=()
  for p in "$R"/proc/[0-9]*; do p=\${p##*/}; [ "$p" = 1 ] || others+=("$p"); done
  [ \${#others[@]} -eq 0 ] && break
  if [ $i -ge 30 ]; then echo "rear-sandbox: killing leftover processes \${others[*]}" >&2; kill -9 "\${others[@]}" 2>/dev/null || true; break; fi
  i=$((i + 1)); sleep 0.1
done
# Copy out what the run changed (whiteouts are 0:0 character devices) and which dirs are opaque.
cp -a "$T/upper" "$O/upper"
(cd "$T/upper" && getfattr -R -P -d -m '^trusted\.overlay\.opaque$' . 2>/dev/null) >"$O/opaque" || true
`;

// The stop script, sourced by rear's SourceStage (inside its Source function, hence `local`)
// right after 030_update_recovery_system.sh. __NAMES__ is replaced by the validated variable
// names. Records in vars.nul: name, kind (scalar|array|assoc), count, then count key/value
// pairs, every field NUL-terminated (bash values cannot hold NUL).
const STOP_TEMPLATE = sh`# 031_rear_update_test_stop.sh: the stop point of the rear-update test harness
# (test/support/rear-sandbox.ts). It exists only inside the sandbox's overlay.
local rs_dir=${DUMP_DIR} rs_name rs_decl rs_kind rs_key
local -n rs_ref
mkdir -p $rs_dir
: >$rs_dir/vars.nul
: >$rs_dir/vars.declare
for rs_name in __NAMES__ ; do
    rs_decl=$( declare -p $rs_name 2>/dev/null ) || continue
    rs_kind=scalar
    [[ $rs_decl =~ ^declare\ -[^\ ]*A ]] && rs_kind=assoc
    [[ $rs_decl =~ ^declare\ -[^\ ]*a ]] && rs_kind=array
    if test $rs_kind = scalar && ! [[ -v $rs_name ]] ; then continue ; fi
    echo "$rs_decl" >>$rs_dir/vars.declare
    unset -n rs_ref
    local -n rs_ref=$rs_name
    if test $rs_kind = scalar ; then
        printf '%s\0' $rs_name scalar 1 "" "$rs_ref" >>$rs_dir/vars.nul
    else
        printf '%s\0' $rs_name $rs_kind \${#rs_ref[@]} >>$rs_dir/vars.nul
        for rs_key in "\${!rs_ref[@]}" ; do
            printf '%s\0' "$rs_key" "\${rs_ref[$rs_key]}" >>$rs_dir/vars.nul
        done
    fi
done
unset -n rs_ref
echo "stopped after init/default/030_update_recovery_system.sh" >$rs_dir/stopped
LogPrint "rear-sandbox: stopping after the update step (exit ${STOPPED_STATUS})"
EXIT_FAIL_MESSAGE=0
exit ${STOPPED_STATUS}
`;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BEFORE_SCRIPT = '/var/lib/rear-sandbox-before.sh';

type UpperEntry =
  | { readonly type: 'file'; readonly data: Buffer }
  | { readonly type: 'dir'; readonly opaque: boolean }
  | { readonly type: 'symlink'; readonly target: string }
  | { readonly type: 'whiteout' }
  | { readonly type: 'other' };

/** Absolute, normalised sandbox path; refuses relative paths and `..` escapes. */
function sandboxPath(p: string): string {
  if (!p.startsWith('/')) throw new Error(`rear-sandbox: not an absolute path: ${p}`);
  return posix.normalize(p).replace(/\/+$/, '') || '/';
}

function enoent(p: string): Error {
  return Object.assign(new Error(`ENOENT: no such file in the rear sandbox: ${p}`), { code: 'ENOENT', path: p });
}

/** Reads the copied upper dir into memory: sandbox path -> entry. */
function loadUpper(dir: string, opaque: ReadonlySet<string>): Map<string, UpperEntry> {
  const m = new Map<string, UpperEntry>();
  const visit = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = `${rel}/${name}`;
      const st = lstatSync(join(dir, r));
      if (st.isDirectory()) {
        m.set(r, { type: 'dir', opaque: opaque.has(r) });
        visit(r);
      } else if (st.isFile()) m.set(r, { type: 'file', data: readFileSync(join(dir, r)) });
      else if (st.isSymbolicLink()) m.set(r, { type: 'symlink', target: readlinkSync(join(dir, r)) });
      else if (st.isCharacterDevice() && st.rdev === 0) m.set(r, { type: 'whiteout' });
      else m.set(r, { type: 'other' });
    }
  };
  visit('');
  return m;
}

/** Paths of `getfattr -R -d` output blocks that carry trusted.overlay.opaque="y". */
function parseOpaque(text: string): Set<string> {
  const out = new Set<string>();
  let file: string | null = null;
  for (const line of text.split('\n')) {
    const f = /^# file: (.*)$/.exec(line);
    if (f) file = f[1]!.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    else if (file !== null && line === 'trusted.overlay.opaque="y"') out.add(sandboxPath(`/${file.replace(/^\.\/?/, '')}`));
  }
  return out;
}

function parseVars(buf: Buffer): Record<string, RearVar> {
  const f = buf.toString('utf8').split('\0');
  const out: Record<string, RearVar> = {};
  let i = 0;
  while (i + 3 <= f.length - 1) {
    const name = f[i++]!;
    const kind = f[i++]!;
    const n = Number(f[i++]);
    const pairs: [string, string][] = [];
    for (let k = 0; k < n; k++) pairs.push([f[i++]!, f[i++]!]);
    if (kind === 'scalar') out[name] = pairs[0]?.[1] ?? '';
    else if (kind === 'array') out[name] = pairs.map(([, v]) => v);
    else out[name] = Object.fromEntries(pairs);
  }
  return out;
}

/** A view of the sandbox's / after the run: the upper layer over the host's (unchanged) /. */
function sandboxView(upper: ReadonlyMap<string, UpperEntry>) {
  type Found = { where: 'upper'; e: UpperEntry } | { where: 'lower' };
  // One component at a time, so that an opaque dir or a whiteout hides the lower below it.
  const lookup = (p: string, lowerVisible: boolean): Found | null => {
    const e = upper.get(p);
    if (e) return e.type === 'whiteout' ? null : { where: 'upper', e };
    if (!lowerVisible) return null;
    try {
      lstatSync(p);
      return { where: 'lower' };
    } catch {
      return null;
    }
  };
  const resolve = (path: string): { p: string; f: Found } => {
    let todo = sandboxPath(path).split('/').filter(Boolean);
    for (let hops = 0; hops <= 40; hops++) {
      let cur = '/';
      let lowerVisible = true;
      let f: Found = { where: 'upper', e: { type: 'dir', opaque: false } };
      let restarted = false;
      for (let i = 0; i < todo.length; i++) {
        const next = posix.join(cur, todo[i]!);
        const found = lookup(next, lowerVisible);
        if (!found) throw enoent(path);
        const isLink = found.where === 'upper' ? found.e.type === 'symlink' : lstatSync(next).isSymbolicLink();
        if (isLink) {
          const target = found.where === 'upper' && found.e.type === 'symlink' ? found.e.target : readlinkSync(next);
          // Absolute targets start again at the sandbox's root, relative ones at the link's dir.
          const base = target.startsWith('/') ? target : posix.join(cur, target);
          todo = [...sandboxPath(base).split('/').filter(Boolean), ...todo.slice(i + 1)];
          restarted = true;
          break;
        }
        if (found.where === 'upper' && found.e.type === 'dir' && found.e.opaque) lowerVisible = false;
        if (found.where === 'upper' && found.e.type !== 'dir') lowerVisible = false;
        cur = next;
        f = found;
      }
      if (!restarted) return { p: cur, f };
    }
    throw Object.assign(new Error(`ELOOP: too many symlinks in the rear sandbox: ${path}`), { code: 'ELOOP' });
  };
  return {
    readFile(path: string): Buffer {
      const { p, f } = resolve(path);
      if (f.where === 'lower') return readFileSync(p);
      if (f.e.type === 'file') return f.e.data;
      throw Object.assign(new Error(`EISDIR or not a regular file in the rear sandbox: ${path}`), { code: 'EISDIR' });
    },
    exists(path: string): boolean {
      try {
        resolve(path);
        return true;
      } catch {
        return false;
      }
    },
  };
}

function run(cmd: string, args: readonly string[], timeoutMs: number): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' },
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', rej);
    p.on('close', (code, signal) => res({ code, signal, stdout, stderr }));
  });
}

/**
 * Runs `rear <rearOptions> recover <args>` in a fresh sandbox (see the header) until the stop
 * script after init/default/030_update_recovery_system.sh, and returns what happened. Throws
 * only when the sandbox itself could not be built; every temporary file and mount is gone
 * when it returns or throws. Needs root.
 */
export async function runRearRecoverInit(opts: RearSandboxOptions): Promise<RearSandboxResult> {
  const names = opts.vars ?? [];
  for (const n of names) if (!NAME.test(n)) throw new Error(`rear-sandbox: not a shell variable name: ${JSON.stringify(n)}`);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const env = Object.entries({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', TERM: 'dumb', LANG: 'C', ...opts.env });
  for (const [k] of env) if (!NAME.test(k)) throw new Error(`rear-sandbox: not an environment variable name: ${JSON.stringify(k)}`);

  const started = Date.now();
  const h = mkdtempSync(join(tmpdir(), 'rear-sandbox-'));
  try {
    // The stage: what the wrapper copies into the sandbox's / (modes as given, owner root).
    const stage = join(h, 'stage');
    const put = (p: string, content: string | Buffer, mode: number): void => {
      const abs = join(stage, sandboxPath(p));
      mkdirSync(dirname(abs), { recursive: true, mode: 0o755 });
      writeFileSync(abs, content, { mode });
    };
    put('/etc/rear-release', opts.rearRelease ?? 'Relax-and-Recover release 2.7\n', 0o644);
    put('/etc/rear/local.conf', opts.localConf, 0o644);
    for (const [p, f] of Object.entries(opts.files ?? {})) {
      if (typeof f === 'string' || Buffer.isBuffer(f)) put(p, f, 0o644);
      else put(p, f.content, f.mode);
    }
    put(STOP_SCRIPT, STOP_TEMPLATE.replace('__NAMES__', names.join(' ')), 0o644);
    if (opts.before !== undefined) {
      put(BEFORE_SCRIPT, opts.before, 0o755);
      const beforeArgv = ['/usr/bin/env', '-i', ...env.map(([k, v]) => `${k}=${v}`), '/bin/bash', BEFORE_SCRIPT];
      writeFileSync(join(h, 'before.argv'), beforeArgv.map((a) => `${a}\0`).join(''));
    }

    const argv = ['/usr/bin/env', '-i', ...env.map(([k, v]) => `${k}=${v}`), '/usr/sbin/rear', ...(opts.rearOptions ?? ['-v']), 'recover', ...(opts.args ?? [])];
    const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
    const w = await run('unshare', ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--', 'bash', '-c', WRAPPER, 'rear-sandbox', h, String(seconds), ...argv], timeoutMs + 30_000);
    const out = join(h, 'out');
    if (!existsSync(join(out, 'status')) || !existsSync(join(out, 'upper'))) {
      throw new Error(`rear-sandbox: the sandbox failed (wrapper exit ${w.code ?? w.signal}):\n${w.stderr}${w.stdout}`);
    }
    const status = Number(readFileSync(join(out, 'status'), 'utf8').trim());
    const upper = loadUpper(join(out, 'upper'), parseOpaque(readFileSync(join(out, 'opaque'), 'utf8')));
    const view = sandboxView(upper);
    const fromUpper = (p: string): Buffer | undefined => {
      const e = upper.get(p);
      return e?.type === 'file' ? e.data : undefined;
    };
    const log = [...upper.entries()]
      .filter(([p, e]) => e.type === 'file' && /^\/var\/log\/rear\/rear-[^/]*\.log$/.test(p))
      .map(([p]) => fromUpper(p)!.toString('utf8'))
      .join('');
    const stopped = status === STOPPED_STATUS && fromUpper(`${DUMP_DIR}/stopped`) !== undefined;
    const written = [...upper.entries()].filter(([, e]) => e.type !== 'dir' && e.type !== 'whiteout').map(([p]) => p).sort();
    const deleted = [...upper.entries()].filter(([, e]) => e.type === 'whiteout').map(([p]) => p).sort();
    return {
      status,
      stopped,
      timedOut: status === 124 || status === 137,
      beforeStatus: existsSync(join(out, 'before-status')) ? Number(readFileSync(join(out, 'before-status'), 'utf8').trim()) : null,
      beforeOutput: existsSync(join(out, 'before-stdout')) ? readFileSync(join(out, 'before-stdout'), 'utf8') + readFileSync(join(out, 'before-stderr'), 'utf8') : '',
      stdout: readFileSync(join(out, 'stdout'), 'utf8'),
      stderr: readFileSync(join(out, 'stderr'), 'utf8'),
      log,
      vars: stopped ? parseVars(fromUpper(`${DUMP_DIR}/vars.nul`) ?? Buffer.alloc(0)) : {},
      declared: fromUpper(`${DUMP_DIR}/vars.declare`)?.toString('utf8') ?? '',
      written,
      deleted,
      readFile: view.readFile,
      readText: (p: string) => view.readFile(p).toString('utf8'),
      exists: view.exists,
      sandboxLog: w.stderr + w.stdout,
      durationMs: Date.now() - started,
    };
  } finally {
    rmSync(h, { recursive: true, force: true });
  }
}
