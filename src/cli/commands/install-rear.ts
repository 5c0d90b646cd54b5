// `rear-update install-rear`: prepare this (original or template) system so that the next
// `rear mkrescue` builds a rescue image that fetches and installs its host's configuration
// at boot. See src/adapters/rear/install.ts for exactly what goes where.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { RuError } from '../../core/errors.ts';
import { parsePublicKey, type PublicKey } from '../../core/signature.ts';
import { CONF_DIR, installRear, uninstallRear } from '../../adapters/rear/install.ts';
import { readMachineFacts } from '../../adapters/fs/machine-facts.ts';
import { collect } from '../options.ts';
import { note, out } from '../output.ts';
import { checkRescueNetwork, RESCUE_NETWORK_HELP } from '../rescue-network.ts';
import { addServerOptions, clientFrom, serverFrom, tokenFrom, type ServerFlags } from '../server-options.ts';
import { duration } from '../server-source.ts';
import { encodeSettings, publishConf, type SettingKey } from '../settings.ts';
import { PUBLISH_CONF, PUBLISH_STATE } from '../publish-state.ts';

interface InstallFlags extends ServerFlags {
  pubkey?: string[];
  class?: string;
  idFrom: string;
  wait?: string;
  keep?: string[];
  exe?: string;
  root: string;
  rearShare: string;
  sysRoot: string;
  uninstall?: boolean;
  publish?: boolean;
}

/**
 * This machine's hostname, DMI UUID and serial, recorded in the image's settings as the
 * template's: a machine booting the image must not send them as its own (it would be
 * resolved to this host). See core/store/rescue-facts.ts.
 */
function templateFacts(sysRoot: string): { values: Partial<Record<SettingKey, string>>; line: string } {
  const f = readMachineFacts(sysRoot);
  const named = [
    f.hostname ? `hostname ${f.hostname}` : null,
    f.uuid ? `DMI UUID ${f.uuid}` : null,
    f.serial ? `serial ${f.serial}` : null,
  ].filter((x): x is string => x !== null);
  return {
    values: {
      ...(f.hostname ? { REAR_UPDATE_IMAGE_HOSTNAME: f.hostname } : {}),
      ...(f.uuid ? { REAR_UPDATE_IMAGE_UUID: f.uuid } : {}),
      ...(f.serial ? { REAR_UPDATE_IMAGE_SERIAL: f.serial } : {}),
    },
    line: named.length
      ? `recorded this machine's ${named.join(', ')} as the template's (REAR_UPDATE_IMAGE_*): machines booting the image will not send them`
      : 'this machine shows no hostname, DMI UUID or serial to record as the template\'s (the image\'s /etc/HOSTNAME still names it)',
  };
}

/** The one-file executable to put into the image: this very program when it is one. */
async function executable(flag: string | undefined): Promise<string> {
  if (flag) {
    if (!existsSync(flag)) throw new RuError('USAGE', `--exe ${flag}: no such file`);
    return flag;
  }
  const sea = await import('node:sea').catch(() => null);
  if (sea?.isSea()) return process.execPath;
  const beside = join(dirname(resolve(process.argv[1] ?? '.')), 'rear-update');
  if (existsSync(beside)) return beside;
  throw new RuError('USAGE', `no one-file executable found beside ${process.argv[1]}; build it (npm run build:exe) or pass --exe FILE`);
}

async function trustedKeys(o: InstallFlags): Promise<{ name: string; pem: string; key: PublicKey }[]> {
  if (o.pubkey?.length) {
    return o.pubkey.map((f, i) => {
      const pem = readFileSync(f, 'utf8');
      return { name: i === 0 ? 'server.pub' : `key-${i + 1}.pub`, pem, key: parsePublicKey(pem, f) };
    });
  }
  // No key given: take the server's own, and say loudly which one was trusted.
  const api = clientFrom(o);
  const r = await api.request<string>('GET', '/api/v1/server-key');
  const pem = String(r.body);
  const key = parsePublicKey(pem, `${api.base.origin}/api/v1/server-key`);
  note(`trusting the server's key ${key.fingerprint} as fetched from ${api.base.origin}: compare it with the fingerprint \`rear-update serve\` printed`);
  return [{ name: 'server.pub', pem, key }];
}

/**
 * The image's token is readable by anyone holding the ISO: it must be a fetch token. Asked of
 * the server (GET /api/v1/token); a server that cannot say (older, unreachable) leaves a warning.
 * IMAGE_TOKEN_SCOPE.
 */
async function checkImageToken(o: InstallFlags, server: string, token: string): Promise<void> {
  let scope: string | null = null;
  try {
    const api = clientFrom({ ...o, server, token });
    const r = await api.request<{ token?: { id?: string; scope?: string } }>('GET', '/api/v1/token', { okStatuses: [401, 404] });
    if (r.status === 401) throw new RuError('IMAGE_TOKEN_SCOPE', 'the token for the image is not valid on the server (revoked, expired or mistyped)', { status: 401 });
    scope = r.status === 200 ? r.body.token?.scope ?? null : null;
  } catch (e) {
    if (e instanceof RuError && e.code === 'IMAGE_TOKEN_SCOPE') throw e;
    note(`could not ask the server what the image's token may do (${(e as Error).message}): make sure it is a fetch token`);
    return;
  }
  if (scope === null) {
    note('the server does not say what the image\'s token may do (an older server): make sure it is a fetch token');
    return;
  }
  if (!scope.startsWith('fetch:') && !scope.startsWith('fetch-class:')) {
    throw new RuError('IMAGE_TOKEN_SCOPE', `the token for the image has scope ${scope}: the rescue image carries it where anyone holding the ISO can read it, so it must be a fetch token (admin token create --fetch HOST or --fetch-class CLASS)`, { scope });
  }
}

export function registerInstallRear(program: Command): void {
  const cmd = program
    .command('install-rear')
    .description('set up ReaR so that the next `rear mkrescue` image fetches and installs its host\'s configuration at boot');
  addServerOptions(cmd)
    .option('--pubkey <file>', 'key the image trusts, repeatable (default: the server\'s, fetched from --server)', collect)
    .option('--class <name>', 'hardware class of the image (recorded in the settings)')
    .option('--id-from <how>', 'how the rescue system finds its host: mac, uuid (both: the server resolves all facts), hostname (its own, from DHCP or rear_update=hostname=NAME; never the image\'s, else resolved by facts), ask', 'mac')
    .option('--wait <duration>', 'how long a pending machine waits for an admin\'s assignment (default 15m)')
    .option('--keep <glob>', 'paths apply never removes below owned directories (default etc/rear/rescue.conf), repeatable', collect)
    .option('--exe <file>', 'the one-file rear-update executable to put into the image (default: this one)')
    .option('--root <dir>', 'the system to set up (for images built from a chroot)', '/')
    .option('--rear-share <dir>', 'ReaR\'s share directory below the root', 'usr/share/rear')
    .option('--sys-root <dir>', 'read this machine\'s facts (the template\'s hostname, DMI UUID and serial) below this directory', '/')
    .option('--publish', 'also make ReaR run `rear-update publish --trigger rear` after every successful rear mkbackup and rear mkrescue (kept on later runs until --no-publish)')
    .option('--no-publish', 'take that out again')
    .option('--uninstall', 'remove everything install-rear installed, and its block in local.conf')
    .addHelpText('after', `
What it installs (idempotently; run it again to change settings):
  /usr/local/sbin/rear-update                the one-file executable   -> REQUIRED_PROGS
  /etc/rear-update/keys/*.pub                trusted keys              -> COPY_AS_IS (this dir)
  /etc/rear-update/settings.conf (0600)      server, token, id source, -> COPY_AS_IS (this file)
                                             this machine's facts as the template's
  /etc/rear-update/ca.pem                    with --cacert             -> COPY_AS_IS (this file)
  /usr/share/rear/skel/default/etc/scripts/system-setup.d/90-rear-update.sh   the boot hook
  /etc/rear/local.conf                       a marked block with the two lines above
                                             and, with --publish, the publish hook

--publish (a flag of install-rear, not a separate command): the block also registers a ReaR
exit task that runs \`/usr/local/sbin/rear-update publish --trigger rear\` when rear mkbackup or
rear mkrescue ENDS SUCCESSFULLY (never after an error), with its settings from
${PUBLISH_CONF} (REAR_UPDATE_SERVER, REAR_UPDATE_TOKEN_FILE with a publish token,
...; docs/operations.md). A failed publish never changes rear's exit status: rear prints it,
and ${PUBLISH_STATE} records it for rear-update doctor.

At boot the hook runs after networking and before an automatic \`rear recover\`; the kernel
command line can override it: rear_update=server=URL,id=HOST,token=T,hostname=NAME,retry=SECONDS
or rear_update=off; with ReaR's \`unattended\` option it never waits for an answer.
Until a bundle is installed, \`rear recover\` refuses to start with the image's own
configuration (a guard in /etc/rear/rescue.conf) unless the operator chooses so.

This machine's hostname, DMI UUID and serial are recorded in settings.conf as the template's
(REAR_UPDATE_IMAGE_HOSTNAME, _UUID, _SERIAL): a machine booting the image does not send them,
so it is never resolved to this host by them (docs/resolution.md).

Use a fetch token: for one host (admin token create --fetch HOST) or, for one image per
hardware type, for its class (admin token create --fetch-class CLASS). The image carries it where
anyone holding the ISO can read it: install-rear asks the server what the token may do and
refuses an admin, publish, view or operate token (IMAGE_TOKEN_SCOPE). The token comes only from
--token, --token-file or REAR_UPDATE_TOKEN, never from publish.conf (the host's publish token).

${RESCUE_NETWORK_HELP}

Example:
  rear-update install-rear --server https://rear-server:8443 --token ru_... --class typeA --cacert ca.pem
  rear mkrescue
  # and publish after every backup (publish.conf in place):
  rear-update install-rear --server https://rear-server:8443 --token ru_... --publish`)
    .action(async (o: InstallFlags) => {
      const root = resolve(o.root);
      if (o.uninstall) {
        const removed = uninstallRear(root);
        out(removed.length ? `removed: ${removed.join(', ')}` : 'nothing of install-rear was installed');
        return;
      }
      if (!['mac', 'uuid', 'hostname', 'ask'].includes(o.idFrom)) throw new RuError('USAGE', `--id-from must be mac, uuid, hostname or ask, not ${o.idFrom}`);
      const server = serverFrom(o);
      if (!server) throw new RuError('USAGE', 'install-rear needs --server (or REAR_UPDATE_SERVER)');
      if (o.wait) duration(o.wait);
      const keys = await trustedKeys(o);
      // Only a token given for the image: flags or the environment, never publish.conf's token
      // file (the host's publish token, which must not travel on the ISO).
      const token = tokenFrom(o, process.env);
      if (token) await checkImageToken(o, server, token);
      const values: Partial<Record<SettingKey, string>> = {
        REAR_UPDATE_SERVER: server,
        ...(token ? { REAR_UPDATE_TOKEN: token } : {}),
        REAR_UPDATE_ID_FROM: o.idFrom,
        ...(o.class ? { REAR_UPDATE_CLASS: o.class } : {}),
        REAR_UPDATE_WAIT: o.wait ?? '15m',
        REAR_UPDATE_KEEP: (o.keep ?? ['etc/rear/rescue.conf']).join(' '),
      };
      const template = templateFacts(o.sysRoot);
      Object.assign(values, template.values);
      const extra: { name: string; data: string }[] = [];
      if (o.cacert) {
        extra.push({ name: 'ca.pem', data: readFileSync(o.cacert, 'utf8') });
        values.REAR_UPDATE_CACERT = `/${CONF_DIR}/ca.pem`;
      }
      const r = installRear({
        root, share: o.rearShare.replace(/^\/+/, ''), exe: await executable(o.exe),
        ...(o.publish !== undefined ? { publish: o.publish } : {}),
        keys, extra,
        settings: encodeSettings(values, 'written by `rear-update install-rear`; sourced by the boot hook, read by rear-update in the rescue system'),
      });
      for (const f of r.installed) out(`installed /${f}`);
      out(`/etc/rear/local.conf: ${r.block.filter((l) => !/^\s|^#|^function|^}|^case|^esac/.test(l)).join('; ')}`);
      if (r.publish) {
        out('after every successful rear mkbackup / rear mkrescue, ReaR runs rear-update publish --trigger rear');
        const conf = publishConf();
        if (conf.file === null) note(`${PUBLISH_CONF} does not exist: the publish that ReaR runs reads its server and token file from there (docs/operations.md)`);
        else if (conf.tokenProblem !== null) note(`${conf.file}: the publish token cannot be read (${conf.tokenProblem}); ReaR's publish will fail until it can`);
      }
      out(`trusted keys: ${keys.map((k) => k.key.fingerprint).join(', ')}`);
      out(template.line);
      out('next: rear mkrescue (or rear mkbackup); the image fetches its host\'s configuration at boot');
      if (o.class) for (const line of checkRescueNetwork(root, o.class)) note(line);
    });
}
