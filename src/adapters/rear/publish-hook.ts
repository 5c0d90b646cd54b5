// What `install-rear --publish` adds to its block in /etc/rear/local.conf so that ReaR itself
// runs `rear-update publish --trigger rear` after every SUCCESSFUL `rear mkbackup` and
// `rear mkrescue`: the server then always holds the configuration of the newest backup and
// rescue image. A publish that fails never fails the backup; it is recorded in
// publish-state.json for `rear-update doctor`.
//
// Why an exit task registered from local.conf, not one of ReaR's hook variables (Debian's
// ReaR 2.7, /usr/share/rear; proven in test/integration/publish-hook.test.ts):
//   - POST_BACKUP_SCRIPT (backup/default/990_post_backup_script.sh) runs in the backup stage,
//     which mkrescue has not; and when PRE_BACKUP_SCRIPT is set (an admin stopping a database),
//     010_pre_backup_script.sh registers POST_BACKUP_SCRIPT as an exit task, so it also runs
//     after a FAILED backup. In mkbackup with BACKUP_URL=iso:// the output stage even comes
//     after it. An admin's own POST_BACKUP_SCRIPT would also have to be shared with ours.
//   - POST_RECOVERY_SCRIPT is for `rear recover` only.
//   - local.conf is sourced by /usr/sbin/rear with all of ReaR's functions defined and
//     $WORKFLOW set, before any stage; QuietAddExitTask registers a command that DoExitTasks
//     (the EXIT trap) evals when rear ends, whatever the workflow and however it ends.
// Telling success from failure in an exit task (the same finding as boot-hook.ts's
// INIT_SCRIPT): after a success rear reaches the end of /usr/sbin/rear and runs
// `exit $EXIT_CODE` at the top level, so no function but DoExitTasks is on the call stack and
// EXIT_CODE is 0. After Error, the exit tasks run inside Error (EXIT_CODE still 0!); after an
// `exit` in a stage script, inside Source/SourceStage. So: publish only at the top level with
// EXIT_CODE 0. An exit task cannot change rear's exit status (bash keeps the `exit` argument
// unless the trap itself calls exit), and the task returns 0 anyway.

/** The lines for install-rear's marked block; `exe` is the absolute path of the executable. */
export function publishHookLines(exe: string): string[] {
  return [
    '# install-rear --publish: after a SUCCESSFUL rear mkbackup or rear mkrescue, publish this',
    '# host\'s configuration (settings: /etc/rear-update/publish.conf). A failed publish never',
    '# fails rear; it is recorded in /var/lib/rear-update/publish-state.json (rear-update doctor).',
    'function rear_update_publish_after () {',
    '    local frame output status',
    '    for frame in "${FUNCNAME[@]:1}" ; do',
    '        case "$frame" in',
    '            (DoExitTasks|main) ;;',
    '            (*) return 0 ;;',
    '        esac',
    '    done',
    '    test "${EXIT_CODE:-1}" = 0 || return 0',
    `    test -x ${exe} || { LogPrintError "rear-update: ${exe} is missing; not published" ; return 0 ; }`,
    '    LogPrint "rear-update: publishing this host\'s configuration"',
    `    output=$( timeout --kill-after=10 600 ${exe} publish --trigger rear 0</dev/null 2>&1 )`,
    '    status=$?',
    '    Log "$output"',
    '    if test $status -eq 0 ; then',
    '        LogPrint "rear-update: ${output##*$\'\\n\'}"',
    '    else',
    '        LogPrintError "rear-update: publish failed (exit $status): ${output##*$\'\\n\'}"',
    '        LogPrintError "rear-update: rear $WORKFLOW itself succeeded; the failure is recorded for rear-update doctor"',
    '    fi',
    '    return 0',
    '}',
    'case "$WORKFLOW" in',
    '    (mkbackup|mkrescue) QuietAddExitTask rear_update_publish_after ;;',
    'esac',
  ];
}
