// What an original system (a machine whose configuration is published) keeps about its
// publishes, so that `doctor` can say when the last one ran and whether it worked, and what
// configures them when no flags are given (docs/operations.md).
//
// /etc/rear-update/publish.conf: KEY=VALUE lines in the shell syntax of settings.conf
// (settings.ts parseSettings), read by every command after flags and the environment:
//   REAR_UPDATE_SERVER       the server's URL
//   REAR_UPDATE_TOKEN_FILE   the file holding this host's publish token (default /etc/rear-update/token)
//   REAR_UPDATE_CACERT       CA certificate(s) for https
//   REAR_UPDATE_HOST         this host's id on the server (default: the short hostname)
//   REAR_UPDATE_PUBKEY       the server's public key as pinned by install-rear (default /etc/rear-update/keys/server.pub)
//
// /var/lib/rear-update/publish-state.json: written by `publish` after every attempt, whatever
// the outcome (atomically: temporary file, then rename), read by `doctor`.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const PUBLISH_CONF = '/etc/rear-update/publish.conf';
export const PUBLISH_STATE = '/var/lib/rear-update/publish-state.json';

/** What publish.conf means when it leaves a key out (only when the file exists). */
export const PUBLISH_CONF_DEFAULTS = {
  REAR_UPDATE_TOKEN_FILE: '/etc/rear-update/token',
  REAR_UPDATE_PUBKEY: '/etc/rear-update/keys/server.pub',
} as const;

export type PublishTrigger = PublishState['trigger'];
export const PUBLISH_TRIGGERS: readonly PublishTrigger[] = ['manual', 'rear', 'timer'];

export interface PublishState {
  /** When the attempt ended (ISO 8601). */
  readonly at: string;
  readonly ok: boolean;
  /** What ran it: by hand, ReaR's hook after mkbackup/mkrescue, the systemd timer. */
  readonly trigger: 'manual' | 'rear' | 'timer';
  readonly server: string | null;
  readonly host: string | null;
  /** The version the server holds after it (ok only). */
  readonly version: number | null;
  /** The server made a new version (false: it already held this content). */
  readonly created: boolean | null;
  /** sha256 of the packed payload sent: doctor compares it with a fresh pack. */
  readonly digest: string | null;
  /** The error's code and message when not ok. */
  readonly code: string | null;
  readonly message: string | null;
}

const stateFile = (root: string): string => join(root, PUBLISH_STATE);

/** The last publish's state under `root`, or null when there is none (or it is unreadable). */
export function readPublishState(root = '/'): PublishState | null {
  try {
    const v = JSON.parse(readFileSync(stateFile(root), 'utf8')) as PublishState;
    return typeof v === 'object' && v !== null && typeof v.at === 'string' && typeof v.ok === 'boolean' ? v : null;
  } catch {
    return null;
  }
}

/** Writes it atomically; never throws (a publish does not fail because its note could not be kept). */
export function writePublishState(s: PublishState, root = '/'): boolean {
  const file = stateFile(root);
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o644 });
    renameSync(tmp, file);
    return true;
  } catch {
    return false;
  }
}
