// The rescue system's boot hook, as text that install-rear writes into ReaR's skeleton
// (skel/default/etc/scripts/system-setup.d/90-rear-update.sh), so every `rear mkrescue`
// carries it. ReaR's /etc/scripts/system-setup SOURCES each such script after networking
// (58-start-dhclient.sh) and before an automatic `rear recover`: everything lives in one
// function with local variables, and it returns, never exits.
//
// While it works, a guard in /etc/rear/rescue.conf (sourced by every `rear` run) makes
// `rear recover` refuse to start with the image's own configuration — which is the template
// host's, and would recreate the wrong machine — until a bundle is installed or the operator
// chooses to go on without one.

export const HOOK_NAME = '90-rear-update.sh';
export const GUARD_BLOCK = 'guard';
export const INSTALLED_FILE = '/var/lib/rear-update/installed.json';

/**
 * The lines of the guard block in /etc/rear/rescue.conf. `rear recover ID=HOST` passes: the
 * init script (INIT_SCRIPT) installs that host's configuration before anything else runs.
 */
export const GUARD_LINES = [
  `if test "$WORKFLOW" = recover && ! test -s ${INSTALLED_FILE} && ! [[ " \${ARGS[*]} " == *" ID="* ]] ; then`,
  '    Error "rear-update has not installed this host\'s configuration, so this rescue system still carries the configuration of the machine the image was made on. Run \'rear-update apply HOST\' (or \'rear-update apply\' to be resolved by this machine\'s facts), or remove the rear-update guard block from /etc/rear/rescue.conf to recover with the image\'s own configuration."',
  'fi',
];

// NOTE: no backquotes in echo strings below: inside double quotes bash would RUN them.
export const BOOT_HOOK = `# ${HOOK_NAME}: written by \`rear-update install-rear\`. Sourced by ReaR's rescue system setup
# after networking and before an automatic \`rear recover\`: fetches this machine's host
# configuration from the rear-update server and installs it (verified, all or nothing), so
# the recovery that follows is the right host's. Settings: /etc/rear-update/settings.conf,
# overridden by the kernel command line: rear_update=server=URL,id=HOST,token=T,hostname=NAME,retry=SECONDS,export=WHERE
# or rear_update=off. With ReaR's \`unattended\` boot option it never waits for an answer.
# When the server does not answer and an offline export is configured (REAR_UPDATE_EXPORT or
# export=WHERE: nfs://HOST/PATH, LABEL:/path, or a directory /path), it applies from there.

# Applies from an offline export (rear-update admin export; docs/export.md), mounted read-only
# for the apply and unmounted afterwards. nfs://HOST/PATH: the rescue system's own NFS mount;
# LABEL:/path: the file system labelled LABEL (found as the media hook finds its medium), the
# export in its /path; /path: a directory that is already there.
rear_update_export_apply() {
    local where=$1 id=$2 mnt=\${REAR_UPDATE_EXPORT_MOUNT:-/run/rear-update/export} dir='' dev='' label='' path='' server='' mounted='' rc
    case "$where" in
        (nfs://*/*)
            server=\${where#nfs://}
            path=/\${server#*/}
            server=\${server%%/*}
            mkdir -p "$mnt"
            if ! mount -t nfs -o ro,nolock "$server:$path" "$mnt" ; then
                echo "rear-update: could not mount the offline export $server:$path (NFS, read-only)"
                return 1
            fi
            mounted=yes
            dir=$mnt ;;
        (nfs://*)
            echo "rear-update: ignoring the offline export '$where': expected nfs://HOST/PATH"
            return 1 ;;
        (/*)
            dir=$where ;;
        (?*:/*)
            label=\${where%%:*}
            path=\${where#*:}
            type -p udevadm >/dev/null && udevadm settle --timeout=10 >/dev/null 2>&1
            dev=$(blkid -L "$label" 2>/dev/null)
            test -n "$dev" || test ! -e "/dev/disk/by-label/$label" || dev=/dev/disk/by-label/$label
            if test -z "$dev" ; then
                echo "rear-update: no file system labelled $label holds the offline export ($where)"
                return 1
            fi
            mkdir -p "$mnt"
            if ! mount -o ro "$dev" "$mnt" ; then
                echo "rear-update: could not mount $dev ($label) read-only for the offline export"
                return 1
            fi
            mounted=yes
            dir=$mnt$path ;;
        (*)
            echo "rear-update: ignoring the offline export '$where': expected nfs://HOST/PATH, LABEL:/path or /path"
            return 1 ;;
    esac
    echo "rear-update: the server does not answer: applying from the offline export at $where"
    rear-update apply --from "$dir" \${id:+"$id"}
    rc=$?
    test -n "$mounted" && umount "$mnt"
    return $rc
}

rear_update_boot_hook() {
    local REAR_UPDATE_SERVER='' REAR_UPDATE_TOKEN='' REAR_UPDATE_CACERT='' REAR_UPDATE_ID_FROM=mac
    local REAR_UPDATE_CLASS='' REAR_UPDATE_WAIT=15m REAR_UPDATE_KEEP=etc/rear/rescue.conf REAR_UPDATE_RETRY_FOR=300
    local REAR_UPDATE_IMAGE_HOSTNAME='' REAR_UPDATE_IMAGE_UUID='' REAR_UPDATE_IMAGE_SERIAL='' REAR_UPDATE_HOSTNAME=''
    local REAR_UPDATE_EXPORT='' REAR_UPDATE_EXPORT_MAX_AGE=7d erc
    local settings=\${REAR_UPDATE_SETTINGS:-/etc/rear-update/settings.conf}
    test -r "$settings" && source "$settings"
    # A hostname in the image's settings would be every booting machine's: only the kernel command line gives one.
    REAR_UPDATE_HOSTNAME=''
    local id='' word item key value rc choice unattended=''
    local cmdline=\${REAR_UPDATE_CMDLINE:-$(cat /proc/cmdline 2>/dev/null)}
    for word in $cmdline ; do
        case "$word" in
            (unattended) unattended=yes ;;
            (rear_update=off)
                echo "rear-update: disabled on the kernel command line (rear_update=off); the image's own configuration is used"
                return 0 ;;
            (rear_update=*)
                local IFS_SAVED=$IFS
                IFS=,
                for item in \${word#rear_update=} ; do
                    key=\${item%%=*}
                    value=\${item#*=}
                    case "$key" in
                        (server) REAR_UPDATE_SERVER=$value ;;
                        (id) id=$value ;;
                        (token) REAR_UPDATE_TOKEN=$value ;;
                        (hostname) REAR_UPDATE_HOSTNAME=$value ;;
                        (export) REAR_UPDATE_EXPORT=$value ;;
                        (retry)
                            case "$value" in
                                (''|*[!0-9]*) echo "rear-update: ignoring rear_update=...retry=$value... (seconds expected)" ;;
                                (*) REAR_UPDATE_RETRY_FOR=$value ;;
                            esac ;;
                        (*) echo "rear-update: ignoring unknown kernel option rear_update=...$key=..." ;;
                    esac
                done
                IFS=$IFS_SAVED ;;
        esac
    done
    if test -z "$REAR_UPDATE_SERVER" ; then
        echo "rear-update: no server configured (settings.conf or rear_update=server=URL); nothing fetched"
        return 0
    fi
    export REAR_UPDATE_SERVER REAR_UPDATE_TOKEN REAR_UPDATE_CACERT REAR_UPDATE_WAIT REAR_UPDATE_KEEP REAR_UPDATE_EXPORT_MAX_AGE
    test -n "$REAR_UPDATE_HOSTNAME" && export REAR_UPDATE_HOSTNAME
    if test -z "$id" ; then
        case "$REAR_UPDATE_ID_FROM" in
            (hostname)
                # Not the rescue system's own hostname: that is the image's, the template's.
                id=$(rear-update facts --value hostname 2>/dev/null)
                test -n "$id" || echo "rear-update: this machine has no hostname of its own (the rescue system runs with the image's); resolving it by its facts instead" ;;
            (ask)
                if test -z "$unattended" && test -t 0 ; then
                    read -r -p "rear-update: host id to recover (empty: let the server resolve this machine): " id
                fi ;;
        esac
    fi

    local rescue_conf=/etc/rear/rescue.conf
    rear-update guard --on "$rescue_conf" || echo "rear-update: could not write the guard into $rescue_conf"

    local deadline=$(( $(date +%s) + REAR_UPDATE_RETRY_FOR ))
    while true ; do
        echo "rear-update: fetching the configuration of \${id:-this machine (resolved by its facts)} from $REAR_UPDATE_SERVER"
        rear-update apply $id
        rc=$?
        if test $rc -eq 0 ; then
            rear-update guard --off "$rescue_conf"
            rear-update status
            # The recovery log goes to the server while \`rear recover\` runs (admin logs HOST --follow).
            rear-update log-stream </dev/null >>/var/log/rear-update-log-stream.log 2>&1 &
            echo "rear-update: done; 'rear recover' will use this host's configuration"
            return 0
        fi
        # 7: network, server unreachable, or still pending: worth another try for a while.
        if test $rc -eq 7 && test $(date +%s) -lt $deadline ; then
            echo "rear-update: failed (exit $rc), retrying in 10 seconds (until $(date -d @$deadline +%T 2>/dev/null || echo "$REAR_UPDATE_RETRY_FOR s"))"
            sleep 10
            continue
        fi
        # Still no answer after the retries: the offline export, when one is configured. Not
        # after a refusal (a bad signature, an unknown host): that is no outage.
        if test $rc -eq 7 && test -n "$REAR_UPDATE_EXPORT" ; then
            rear_update_export_apply "$REAR_UPDATE_EXPORT" "$id"
            erc=$?
            if test $erc -eq 0 ; then
                rear-update guard --off "$rescue_conf"
                rear-update status
                echo "rear-update: done from the offline export; 'rear recover' will use this host's configuration as of that export"
                return 0
            fi
            echo "rear-update: the offline export did not help either (exit $erc)"
        fi
        echo "rear-update: FAILED (exit $rc): this machine's configuration is NOT installed."
        if test -n "$unattended" || ! test -t 0 ; then
            if test -n "$unattended" ; then
                echo "rear-update: unattended boot: not asking. 'rear recover' will refuse to run until you log in and either"
            else
                echo "rear-update: no console to ask: 'rear recover' will refuse to run until you log in and either"
            fi
            echo "  run 'rear-update apply HOST' (or 'rear-update apply' to be resolved by facts), or"
            echo "  remove the rear-update guard from $rescue_conf to recover with the image's own configuration."
            echo "  (Or boot again with rear_update=id=HOST on the kernel command line.)"
            return 1
        fi
        echo "What now?"
        echo "  1) retry"
        echo "  2) give the host id to recover"
        echo "  3) continue WITHOUT the update (recover with the image's own configuration)"
        echo "  4) stop here (the guard keeps 'rear recover' from using the image's configuration)"
        read -r -p "choice [1-4]: " choice
        case "$choice" in
            (1) deadline=$(( $(date +%s) + REAR_UPDATE_RETRY_FOR )) ;;
            (2) read -r -p "host id: " id ; deadline=$(( $(date +%s) + REAR_UPDATE_RETRY_FOR )) ;;
            (3)
                rear-update guard --off "$rescue_conf"
                echo "rear-update: continuing without update"
                # The admin following this recovery should know it goes on with the template's configuration.
                rear-update report note --message "the operator chose to continue WITHOUT the update: rear recover uses the rescue image's own configuration (apply failed with exit $rc)" </dev/null
                return 0 ;;
            (*) return 1 ;;
        esac
    done
}
rear_update_boot_hook
REAR_UPDATE_HOOK_STATUS=$?
unset -f rear_update_boot_hook rear_update_export_apply
return $REAR_UPDATE_HOOK_STATUS
`;

export const MEDIA_HOOK_NAME = '43-rear-update-media.sh';

/**
 * Local media first (docs/layers.md): a missing network driver cannot come over the network.
 * Sourced by the rescue system's setup after udev started (40) and SCSI engaged (42), before
 * networking (55, 58): applies every bundle in /rear-update/ of a file system labelled
 * REAR-UPDATE (a USB stick, a second CD), or of LABEL:/path given as rear_update=media=LABEL:/path.
 * Only bundles signed by a key the image trusts are installed (apply's default); their
 * activation (depmod, udev, modprobe) runs before networking starts.
 */
export const MEDIA_HOOK = `# ${MEDIA_HOOK_NAME}: written by \`rear-update install-rear\`. Sourced by ReaR's rescue system setup
# after udev and before networking: installs the signed bundles (driver layers) found on local
# media, so that a network driver the image lacks is there before the network is needed.
# Media: a file system labelled REAR-UPDATE, bundles in its /rear-update/ directory; or
# rear_update=media=LABEL:/path on the kernel command line. rear_update=off skips it.

rear_update_media_hook() {
    local label=REAR-UPDATE dir=/rear-update given='' word item dev f rc mnt=/run/rear-update/media
    local cmdline=\${REAR_UPDATE_CMDLINE:-$(cat /proc/cmdline 2>/dev/null)}
    for word in $cmdline ; do
        case "$word" in
            (rear_update=off) return 0 ;;
            (rear_update=*)
                local IFS_SAVED=$IFS
                IFS=,
                for item in \${word#rear_update=} ; do
                    case "$item" in
                        (media=*) given=\${item#media=} ;;
                    esac
                done
                IFS=$IFS_SAVED ;;
        esac
    done
    if test -n "$given" ; then
        label=\${given%%:*}
        case "$given" in
            (*:*) dir=\${given#*:} ;;
        esac
    fi
    type -p udevadm >/dev/null && udevadm settle --timeout=10 >/dev/null 2>&1
    dev=$(blkid -L "$label" 2>/dev/null)
    test -n "$dev" || test ! -e "/dev/disk/by-label/$label" || dev=/dev/disk/by-label/$label
    if test -z "$dev" ; then
        test -n "$given" && echo "rear-update: no file system labelled $label (rear_update=media=$given): no layers from local media"
        return 0
    fi
    mkdir -p "$mnt"
    if ! mount -o ro "$dev" "$mnt" ; then
        echo "rear-update: could not mount $dev ($label) read-only: no layers from local media"
        return 1
    fi
    rc=0
    for f in "$mnt$dir"/*.tar.gz ; do
        test -f "$f" || continue
        echo "rear-update: installing $label:$dir/\${f##*/} from local media (signed bundles only)"
        # Unsigned or untrusted bundles are refused by apply itself: no --unsigned here.
        if ! rear-update apply "$f" ; then
            echo "rear-update: $label:$dir/\${f##*/} was NOT installed (see above)"
            rc=1
        fi
    done
    umount "$mnt" 2>/dev/null
    return $rc
}
rear_update_media_hook
REAR_UPDATE_MEDIA_STATUS=$?
unset -f rear_update_media_hook
return $REAR_UPDATE_MEDIA_STATUS
`;

export const INIT_SCRIPT_NAME = '015_rear_update.sh';

/**
 * ReaR's init stage, recover workflow only (installed into SHARE/init/default/: the rescue image
 * carries ReaR's share directory). First it tells the rear-update server that \`rear recover\`
 * began (\`recover-started\`) and registers a ReaR exit task that reports how it ended
 * (\`finished\` with an exit status), both through \`rear-update report\`, which never fails or
 * waits long.
 *
 * The status an exit task can see, in Debian's ReaR 2.7 (/usr/sbin/rear and
 * lib/_input-output-functions.sh): after a success, rear reaches the end of /usr/sbin/rear,
 * sets EXIT_FAIL_MESSAGE=0 and runs \`exit $EXIT_CODE\`, so the EXIT trap (DoExitTasks) runs at
 * the top level: no function but DoExitTasks on the call stack, EXIT_CODE 0. After Error, the
 * USR1 trap sets EXIT_FAIL_MESSAGE=0 and sends SIGTERM to rear itself (it ends with 143), while
 * EXIT_CODE stays 0: EXIT_CODE and EXIT_FAIL_MESSAGE look exactly as after a success, and $? is
 * the previous exit task's. What differs is where the exit tasks run: inside Error (FUNCNAME
 * holds Error), or, for an \`exit\` in a stage script or a bash error exit, inside
 * Source/SourceStage. So the task reports EXIT_CODE only when it runs at the top level; 143
 * (what rear itself returns) when it runs inside Error or BugError; and EXIT_CODE, or 1 when that
 * is 0, when rear ended anywhere else before its end.
 *
 * Then \`rear recover ID=HOST\`, as DRLM's ID= argument (after 010, the DRLM setup, before 030,
 * RECOVERY_UPDATE_URL): installs HOST's composed bundle with rear-update and sources the freshly
 * installed site.conf, local.conf and rescue.conf, as ReaR's DRLM code sources what it fetches,
 * so this very run recovers with HOST's configuration.
 */
export const INIT_SCRIPT = `# ${INIT_SCRIPT_NAME}: written by \`rear-update install-rear\`. In the recover workflow it
# reports to the rear-update server that the recovery began and, as a ReaR exit task, how it
# ended. 'rear recover ID=HOST' installs host HOST's configuration (and its class's layers)
# with rear-update before the recovery goes on, and makes this run read it. Not with
# DRLM_MANAGED=y: DRLM owns ID= then.

test "$WORKFLOW" = recover || return 0
if has_binary rear-update ; then
    # Reports never fail the recovery: rear-update report exits 0 and gives up after a few seconds.
    rear-update report recover-started --message "rear recover began" 0</dev/null
    function rear_update_report_finished () {
        local status=\${EXIT_CODE:-0} frames='' frame how
        # The functions between DoExitTasks and the top level: none when rear reached its end.
        for frame in "\${FUNCNAME[@]:1}" ; do
            case "$frame" in
                (DoExitTasks|main) ;;
                (*) frames="$frames $frame" ;;
            esac
        done
        case "$status" in
            (''|*[!0-9]*) status=1 ;;
        esac
        case "$frames " in
            (' ')
                how="rear recover finished with exit code $status" ;;
            (*' Error '*|*' BugError '*)
                status=143
                how="rear recover aborted with an error (ReaR's Error; see its log)" ;;
            (*)
                test "$status" -eq 0 && status=1
                how="rear recover ended before its end (in$frames)" ;;
        esac
        rear-update report finished --exit-status "$status" --message "$how" 0</dev/null
    }
    QuietAddExitTask rear_update_report_finished
fi
is_true "$DRLM_MANAGED" && return 0
local rear_update_id='' rear_update_arg
for rear_update_arg in "\${ARGS[@]}" ; do
    case "$rear_update_arg" in
        (ID=*) rear_update_id=\${rear_update_arg#ID=} ;;
    esac
done
test -n "$rear_update_id" || return 0
has_binary rear-update || Error "rear recover ID=$rear_update_id needs rear-update, which this rescue system lacks (rear-update install-rear, then rear mkrescue)"
LogPrint "rear-update: installing the configuration of host $rear_update_id"
rear-update apply "$rear_update_id" 0<&6 1>&7 2>&8 || Error "rear-update apply $rear_update_id failed (see above); nothing of it was installed"
rear-update guard --off "$CONFIG_DIR/rescue.conf" >/dev/null 2>&1
for rear_update_arg in site local rescue ; do
    if test -r "$CONFIG_DIR/$rear_update_arg.conf" ; then
        Source "$CONFIG_DIR/$rear_update_arg.conf" || Error "Failed to Source $CONFIG_DIR/$rear_update_arg.conf"
    fi
done
LogPrint "rear-update: host $rear_update_id's configuration is installed and read; the recovery goes on with it"
`;
