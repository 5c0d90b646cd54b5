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

/** The lines of the guard block in /etc/rear/rescue.conf. */
export const GUARD_LINES = [
  `if test "$WORKFLOW" = recover && ! test -s ${INSTALLED_FILE} ; then`,
  '    Error "rear-update has not installed this host\'s configuration, so this rescue system still carries the configuration of the machine the image was made on. Run \'rear-update apply HOST\' (or \'rear-update apply\' to be resolved by this machine\'s facts), or remove the rear-update guard block from /etc/rear/rescue.conf to recover with the image\'s own configuration."',
  'fi',
];

// NOTE: no backquotes in echo strings below: inside double quotes bash would RUN them.
export const BOOT_HOOK = `# ${HOOK_NAME}: written by \`rear-update install-rear\`. Sourced by ReaR's rescue system setup
# after networking and before an automatic \`rear recover\`: fetches this machine's host
# configuration from the rear-update server and installs it (verified, all or nothing), so
# the recovery that follows is the right host's. Settings: /etc/rear-update/settings.conf,
# overridden by the kernel command line: rear_update=server=URL,id=HOST,token=T,hostname=NAME,retry=SECONDS
# or rear_update=off. With ReaR's \`unattended\` boot option it never waits for an answer.

rear_update_boot_hook() {
    local REAR_UPDATE_SERVER='' REAR_UPDATE_TOKEN='' REAR_UPDATE_CACERT='' REAR_UPDATE_ID_FROM=mac
    local REAR_UPDATE_CLASS='' REAR_UPDATE_WAIT=15m REAR_UPDATE_KEEP=etc/rear/rescue.conf REAR_UPDATE_RETRY_FOR=300
    local REAR_UPDATE_IMAGE_HOSTNAME='' REAR_UPDATE_IMAGE_UUID='' REAR_UPDATE_IMAGE_SERIAL='' REAR_UPDATE_HOSTNAME=''
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
    export REAR_UPDATE_SERVER REAR_UPDATE_TOKEN REAR_UPDATE_CACERT REAR_UPDATE_WAIT REAR_UPDATE_KEEP
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
            (3) rear-update guard --off "$rescue_conf" ; echo "rear-update: continuing without update" ; return 0 ;;
            (*) return 1 ;;
        esac
    done
}
rear_update_boot_hook
REAR_UPDATE_HOOK_STATUS=$?
unset -f rear_update_boot_hook
return $REAR_UPDATE_HOOK_STATUS
`;
