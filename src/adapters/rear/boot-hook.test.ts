// The boot hook as bash runs it: sourced, with a stub rear-update on PATH that records how it
// was called (arguments, REAR_UPDATE_HOSTNAME) and exits as the test says, and a stub sleep.
// Apply never succeeds here: the success path starts the log stream into this machine's
// /var/log, and what these tests look at is how apply is called. The init script's exit task
// runs under ReaR's own exit machinery (its lib/ functions) with the same kind of stub.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { encodeSettings, type SettingKey } from '../../cli/settings.ts';
import { BOOT_HOOK, INIT_SCRIPT } from './boot-hook.ts';

const work = mkdtempSync(join(tmpdir(), 'ru-boot-hook-'));
after(() => rmSync(work, { recursive: true, force: true }));

const STUB = `#!/bin/bash
echo "$* | REAR_UPDATE_HOSTNAME=\${REAR_UPDATE_HOSTNAME-<unset>}" >>"$RU_LOG"
case "$1" in
    (apply)
        n=$(( $(cat "$RU_COUNT" 2>/dev/null || echo 0) + 1 ))
        echo $n >"$RU_COUNT"
        codes=( $RU_APPLY_CODES )
        exit \${codes[$(( n - 1 ))]:-\${codes[-1]}} ;;
    (facts) echo "$RU_FACTS_HOSTNAME" ;;
esac
exit 0
`;

let runs = 0;

interface HookRun {
  readonly status: number | null;
  readonly output: string;
  /** The stub's calls, one line each: "apply e230 | REAR_UPDATE_HOSTNAME=<unset>". */
  readonly calls: string[];
  readonly sleeps: number;
}

/** Sources the hook as ReaR's system-setup does; `tty` runs it on a pseudo-terminal (script(1)). */
function runHook(o: { cmdline: string; settings?: Partial<Record<SettingKey, string>>; rawSettings?: string; applyCodes?: string; factsHostname?: string; tty?: boolean; input?: string }): HookRun {
  const dir = join(work, `run-${++runs}`);
  mkdirSync(join(dir, 'bin'), { recursive: true });
  writeFileSync(join(dir, 'bin/rear-update'), STUB, { mode: 0o755 });
  writeFileSync(join(dir, 'bin/sleep'), `#!/bin/bash\necho "$*" >>"${join(dir, 'sleeps')}"\n`, { mode: 0o755 });
  // The offline export's mounts (NFS cannot be served here): recorded, as apply's calls are.
  for (const tool of ['mount', 'umount', 'udevadm']) writeFileSync(join(dir, `bin/${tool}`), `#!/bin/bash\necho "${tool} $*" >>"$RU_LOG"\n`, { mode: 0o755 });
  writeFileSync(join(dir, 'bin/blkid'), '#!/bin/bash\ntest "$1 $2" = "-L RU-EXPORT" && echo /dev/sdz1\n', { mode: 0o755 });
  writeFileSync(join(dir, 'hook.sh'), BOOT_HOOK);
  writeFileSync(join(dir, 'settings.conf'), (o.rawSettings ?? '') + encodeSettings({ REAR_UPDATE_SERVER: 'http://127.0.0.1:9', REAR_UPDATE_RETRY_FOR: '0', ...o.settings }, 'test'));
  const env = {
    PATH: `${join(dir, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    REAR_UPDATE_SETTINGS: join(dir, 'settings.conf'),
    REAR_UPDATE_CMDLINE: o.cmdline,
    RU_LOG: join(dir, 'calls'),
    RU_COUNT: join(dir, 'count'),
    RU_APPLY_CODES: o.applyCodes ?? '7',
    RU_FACTS_HOSTNAME: o.factsHostname ?? '',
    REAR_UPDATE_EXPORT_MOUNT: join(dir, 'mnt'),
    TERM: 'dumb',
  };
  const script = `source ${join(dir, 'hook.sh')}; echo "hook-status=$?"`;
  const r = o.tty
    ? spawnSync('script', ['-qec', `bash -c '${script}'`, '/dev/null'], { env, input: o.input ?? '', encoding: 'utf8', timeout: 20_000 })
    : spawnSync('bash', ['-c', script], { env, input: o.input ?? '', encoding: 'utf8', timeout: 20_000 });
  const read = (f: string): string => {
    try {
      return readFileSync(join(dir, f), 'utf8');
    } catch {
      return '';
    }
  };
  const calls = read('calls').split('\n').filter((l) => l !== '');
  const m = /hook-status=(\d+)/.exec(r.stdout);
  return { status: m ? Number(m[1]) : null, output: r.stdout + r.stderr, calls, sleeps: read('sleeps').split('\n').filter((l) => l !== '').length };
}

const applies = (r: HookRun): string[] => r.calls.filter((c) => c.startsWith('apply'));
/** The mount point the hook was given for the offline export (runHook's REAR_UPDATE_EXPORT_MOUNT). */
const exportMount = (): string => join(work, `run-${runs}`, 'mnt');

test('the boot hook is valid bash', () => {
  const r = spawnSync('bash', ['-n'], { input: BOOT_HOOK, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

test('the boot hook has no command substitution by backquotes outside comments (a message once ran `rear recover`)', () => {
  const code = BOOT_HOOK.split('\n').filter((l) => !/^\s*#/.test(l));
  assert.deepEqual(code.filter((l) => l.includes('`')), []);
});

test('kernel option rear_update=hostname=NAME reaches apply as REAR_UPDATE_HOSTNAME', () => {
  const r = runHook({ cmdline: 'quiet rear_update=hostname=e230', applyCodes: '2' });
  assert.equal(r.status, 1, r.output);
  assert.deepEqual(applies(r), ['apply | REAR_UPDATE_HOSTNAME=e230']);
});

test('template hostname: a REAR_UPDATE_HOSTNAME in the image\'s settings.conf is not passed on (every booting machine would claim it)', () => {
  const r = runHook({ cmdline: 'quiet', rawSettings: "REAR_UPDATE_HOSTNAME='e229'\n", applyCodes: '2' });
  assert.equal(r.status, 1, r.output);
  assert.deepEqual(applies(r), ['apply | REAR_UPDATE_HOSTNAME=<unset>']);
});

test('template hostname: with REAR_UPDATE_ID_FROM=hostname the id is the hostname apply would send, never the image\'s own', () => {
  const own = runHook({ cmdline: 'quiet', settings: { REAR_UPDATE_ID_FROM: 'hostname' }, factsHostname: 'e230', applyCodes: '2' });
  assert.deepEqual(applies(own), ['apply e230 | REAR_UPDATE_HOSTNAME=<unset>']);
  // `facts --value hostname` prints nothing when the only hostname is the image's (the template's).
  const image = runHook({ cmdline: 'quiet', settings: { REAR_UPDATE_ID_FROM: 'hostname' }, factsHostname: '', applyCodes: '2' });
  assert.deepEqual(applies(image), ['apply | REAR_UPDATE_HOSTNAME=<unset>']);
  assert.match(image.output, /resolving it by its facts instead/);
  assert.ok(image.calls.some((c) => c.startsWith('facts --value hostname')), image.calls.join('\n'));
});

test('kernel option rear_update=retry=SECONDS overrides REAR_UPDATE_RETRY_FOR in both directions', () => {
  // Settings say retry for 300 s; retry=0 on the kernel command line: one try only.
  const none = runHook({ cmdline: 'rear_update=retry=0', settings: { REAR_UPDATE_RETRY_FOR: '300' }, applyCodes: '7' });
  assert.equal(none.status, 1, none.output);
  assert.equal(applies(none).length, 1, none.output);
  assert.equal(none.sleeps, 0);
  // Settings say 0; retry=300: a failure with exit 7 is tried again (then a final failure, exit 2).
  const again = runHook({ cmdline: 'rear_update=retry=300', settings: { REAR_UPDATE_RETRY_FOR: '0' }, applyCodes: '7 2' });
  assert.equal(again.status, 1, again.output);
  assert.equal(applies(again).length, 2, again.output);
  assert.equal(again.sleeps, 1);
  // Not a number: ignored, said so.
  const bad = runHook({ cmdline: 'rear_update=retry=soon', settings: { REAR_UPDATE_RETRY_FOR: '0' } });
  assert.match(bad.output, /ignoring rear_update=\.\.\.retry=soon/);
  assert.equal(applies(bad).length, 1);
});

test('on a console the failure menu asks what now; with `unattended` on the kernel command line it never reads, says what to do and returns 1', () => {
  const asked = runHook({ cmdline: 'quiet', applyCodes: '2', tty: true, input: '4\n' });
  assert.match(asked.output, /What now\?/, asked.output);
  assert.equal(asked.status, 1, asked.output);
  const unattended = runHook({ cmdline: 'quiet unattended', applyCodes: '2', tty: true });
  assert.doesNotMatch(unattended.output, /What now\?|choice \[1-4\]/, unattended.output);
  assert.match(unattended.output, /unattended boot: not asking/);
  assert.match(unattended.output, /rear-update apply HOST/);
  assert.equal(unattended.status, 1, unattended.output);
});

test('with `unattended`, REAR_UPDATE_ID_FROM=ask does not prompt for a host id', () => {
  const r = runHook({ cmdline: 'unattended', settings: { REAR_UPDATE_ID_FROM: 'ask' }, applyCodes: '2', tty: true });
  assert.doesNotMatch(r.output, /host id to recover/, r.output);
  assert.deepEqual(applies(r), ['apply | REAR_UPDATE_HOSTNAME=<unset>']);
});

test('continuing without the update (menu choice 3) reports a note to the recovery; a failed apply alone reports nothing from the hook', () => {
  const r = runHook({ cmdline: 'quiet', applyCodes: '2', tty: true, input: '3\n' });
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /continuing without update/);
  const reports = r.calls.filter((c) => c.startsWith('report'));
  assert.equal(reports.length, 1, r.calls.join('\n'));
  assert.match(reports[0]!, /^report note --message the operator chose to continue WITHOUT the update: .*\(apply failed with exit 2\) \|/);
  const stopped = runHook({ cmdline: 'quiet', applyCodes: '2', tty: true, input: '4\n' });
  assert.deepEqual(stopped.calls.filter((c) => c.startsWith('report')), []);
});

test('the init script is valid bash, sourced safely: no exit, no backquotes, its variables local or rear_update_-prefixed', () => {
  const r = spawnSync('bash', ['-n'], { input: INIT_SCRIPT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const code = INIT_SCRIPT.split('\n').filter((l) => !/^\s*#/.test(l));
  assert.deepEqual(code.filter((l) => /(^|[;&|(]|\bthen|\bdo|\belse)\s*exit(\s|;|$)/.test(l)), []);
  assert.deepEqual(code.filter((l) => l.includes('`')), []);
  // Assignments at the script's top level are ReaR's own variables' business: none but locals.
  assert.deepEqual(code.filter((l) => /^[A-Za-z_]+=/.test(l)), []);
});

/**
 * The init script's exit task under ReaR's own exit machinery (lib/_input-output-functions.sh:
 * DoExitTasks on EXIT, Error's USR1 trap), with a stub rear-update that records the report:
 * the status it reports for each way rear can end. rear-recovery-report.test.ts runs real rear.
 */
function exitTaskReport(ending: string): { status: number | null; calls: string[] } {
  const dir = join(work, `init-${++runs}`);
  mkdirSync(join(dir, 'bin'), { recursive: true });
  writeFileSync(join(dir, 'bin/rear-update'), `#!/bin/bash\necho "$*" >>"${join(dir, 'calls')}"\n`, { mode: 0o755 });
  writeFileSync(join(dir, 'init.sh'), INIT_SCRIPT);
  // What /usr/sbin/rear does around a workflow, reduced to the parts that decide the status.
  writeFileSync(join(dir, 'rear.sh'), `
source /usr/share/rear/lib/_input-output-functions.sh
source /usr/share/rear/lib/framework-functions.sh
RUNTIME_LOGFILE=${join(dir, 'rear.log')} ; STDOUT_STDERR_FILE=/dev/null ; SHARE_DIR=${dir}
WORKFLOW=recover ; ARGS=( ) ; EXIT_CODE=0 ; EXIT_FAIL_MESSAGE=1
sleep () { : ; }   # DoExitTasks waits 3 s for descendants; none here
Source ${join(dir, 'init.sh')}
function WORKFLOW_recover () { ${ending} ; }
WORKFLOW_recover
EXIT_FAIL_MESSAGE=0
exit $EXIT_CODE
`);
  const r = spawnSync('bash', [join(dir, 'rear.sh')], { env: { PATH: `${join(dir, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}` }, encoding: 'utf8', timeout: 20_000 });
  let calls: string[] = [];
  try {
    calls = readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter((l) => l !== '');
  } catch {
    // no report at all
  }
  // Killed by its own SIGTERM (Error): a shell would say 128 + 15.
  return { status: r.status ?? (r.signal === 'SIGTERM' ? 143 : null), calls };
}

test('the exit task reports the status rear ends with: 0 at its end, EXIT_CODE when the workflow set one, 143 after Error, non-zero for an early exit', { skip: !existsSync('/usr/share/rear/lib/_input-output-functions.sh') && 'ReaR is not installed' }, () => {
  const finished = (calls: string[]): string | undefined => calls.find((c) => c.startsWith('report finished'));
  const ok = exitTaskReport(':');
  assert.equal(ok.status, 0);
  assert.equal(ok.calls[0], 'report recover-started --message rear recover began');
  assert.match(finished(ok.calls) ?? '', /^report finished --exit-status 0 --message rear recover finished with exit code 0$/);
  const code = exitTaskReport('EXIT_CODE=3');
  assert.equal(code.status, 3);
  assert.match(finished(code.calls) ?? '', /^report finished --exit-status 3 /);
  const error = exitTaskReport('Error "disk missing"');
  assert.equal(error.status, 143);
  assert.match(finished(error.calls) ?? '', /^report finished --exit-status 143 --message rear recover aborted with an error/);
  const early = exitTaskReport('EXIT_FAIL_MESSAGE=0 ; exit 0');
  assert.equal(early.status, 0);
  assert.match(finished(early.calls) ?? '', /^report finished --exit-status 1 --message rear recover ended before its end \(in WORKFLOW_recover\)$/);
});

test('server down, export on NFS: after the retries (exit 7) the hook mounts it read-only with the rescue system\'s own NFS mount, applies from it, unmounts', () => {
  const r = runHook({ cmdline: 'quiet rear_update=export=nfs://nfs.example/srv/rear-export', applyCodes: '7 0' });
  const mnt = exportMount();
  assert.equal(r.status, 0, r.output);
  assert.deepEqual(r.calls.filter((c) => /^(apply|mount|umount)/.test(c)), [
    'apply | REAR_UPDATE_HOSTNAME=<unset>',
    `mount -t nfs -o ro,nolock nfs.example:/srv/rear-export ${mnt}`,
    `apply --from ${mnt} | REAR_UPDATE_HOSTNAME=<unset>`,
    `umount ${mnt}`,
  ]);
  assert.ok(r.calls.some((c) => c.startsWith('guard --off')), r.calls.join('\n'));
  assert.match(r.output, /applying from the offline export at nfs:\/\/nfs\.example\/srv\/rear-export/);
});

test('server down, export on a labelled medium (settings.conf REAR_UPDATE_EXPORT=LABEL:/path): found by its label, mounted read-only, the id passed on', () => {
  const r = runHook({ cmdline: 'quiet rear_update=id=e229', settings: { REAR_UPDATE_EXPORT: 'RU-EXPORT:/fleet' }, applyCodes: '7 0' });
  const mnt = exportMount();
  assert.equal(r.status, 0, r.output);
  assert.deepEqual(r.calls.filter((c) => /^(apply|mount|umount)/.test(c)), [
    'apply e229 | REAR_UPDATE_HOSTNAME=<unset>',
    `mount -o ro /dev/sdz1 ${mnt}`,
    `apply --from ${mnt}/fleet e229 | REAR_UPDATE_HOSTNAME=<unset>`,
    `umount ${mnt}`,
  ]);
});

test('a refusal is no outage: after exit 4 (a bad signature) the export is not used', () => {
  const r = runHook({ cmdline: 'quiet rear_update=export=nfs://nfs.example/srv/rear-export', applyCodes: '4' });
  assert.equal(r.status, 1, r.output);
  assert.deepEqual(r.calls.filter((c) => /^(apply|mount)/.test(c)), ['apply | REAR_UPDATE_HOSTNAME=<unset>']);
});

test('the export fails too (exit 3 from apply --from): unmounted, and the hook fails as before, the guard kept', () => {
  const r = runHook({ cmdline: 'quiet rear_update=export=nfs://nfs.example/srv/rear-export', applyCodes: '7 3' });
  assert.equal(r.status, 1, r.output);
  assert.ok(r.calls.some((c) => c.startsWith('umount')), r.calls.join('\n'));
  assert.equal(r.calls.some((c) => c.startsWith('guard --off')), false);
  assert.match(r.output, /the offline export did not help either \(exit 3\)/);
  const nolabel = runHook({ cmdline: 'quiet rear_update=export=NOSUCH:/x', applyCodes: '7' });
  assert.match(nolabel.output, /no file system labelled NOSUCH/);
  assert.deepEqual(applies(nolabel).length, 1);
});
