// What `doctor` checks on an original system is configured as `publish` is: flags, then the
// environment, then /etc/rear-update/publish.conf (keys in src/cli/publish-state.ts). Paths that
// come from publish.conf or a default are read below --root (the tree doctor examines); paths
// given by a flag or the environment are taken as given. The image's settings.conf is NOT
// consulted: on an original system it holds the rescue image's fetch token, which cannot publish.
// (settings.ts publishConf reads the real /etc/rear-update/publish.conf; doctor reads the one
// below --root, with the same parser, keys and defaults.)

import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PUBLISH_CONF, PUBLISH_CONF_DEFAULTS } from '../publish-state.ts';
import type { ServerFlags } from '../server-options.ts';
import { parseSettings, PUBLISH_CONF_KEYS, type PublishConfKey } from '../settings.ts';

/** Where the server's pinned key is looked for when nothing names it: publish.conf's default, then where install-rear puts it. */
/** Where install-rear pins the server's key (the one place: publish.conf's default). */
export const DEFAULT_PUBKEYS = [PUBLISH_CONF_DEFAULTS.REAR_UPDATE_PUBKEY];

export interface OriginalFlags extends ServerFlags {
  root: string;
  host?: string;
  pubkey?: string;
  rearShare: string;
}

/** A setting and where it came from (for details and fixes). */
export interface Sourced {
  readonly value: string;
  readonly from: string;
}

export interface OriginalConfig {
  readonly root: string;
  /** publish.conf below the root, and what reading it said (null: read, or absent). */
  readonly confFile: string;
  readonly confProblem: string | null;
  readonly server: Sourced | null;
  /** The token itself, or why it could not be read. */
  readonly token: (Sourced & { readonly file: string | null }) | { readonly problem: string; readonly from: string } | null;
  readonly cacert: Sourced | null;
  readonly host: Sourced;
  readonly pubkey: Sourced | null;
}

export function resolveConfig(o: OriginalFlags, env: NodeJS.ProcessEnv = process.env): OriginalConfig {
  const root = o.root;
  const under = (p: string): string => join(root, p);
  const confFile = under(PUBLISH_CONF);
  let conf: Partial<Record<PublishConfKey, string>> = {};
  let confProblem: string | null = null;
  if (existsSync(confFile)) {
    try {
      conf = parseSettings(readFileSync(confFile, 'utf8'), PUBLISH_CONF_KEYS);
    } catch (e) {
      confProblem = `${confFile}: ${(e as Error).message}`;
    }
  }
  const fromConf = (k: PublishConfKey): string => `${confFile} (${k})`;
  const pick = (flag: string | undefined, flagName: string, envKey: string, confKey: PublishConfKey, path: boolean): Sourced | null => {
    if (flag) return { value: flag, from: flagName };
    if (env[envKey]) return { value: env[envKey]!, from: `environment ${envKey}` };
    if (conf[confKey]) return { value: path ? under(conf[confKey]!) : conf[confKey]!, from: fromConf(confKey) };
    return null;
  };
  const server = pick(o.server, '--server', 'REAR_UPDATE_SERVER', 'REAR_UPDATE_SERVER', false);
  const cacert = pick(o.cacert, '--cacert', 'REAR_UPDATE_CACERT', 'REAR_UPDATE_CACERT', true);
  const host = pick(o.host, '--host', 'REAR_UPDATE_HOST', 'REAR_UPDATE_HOST', false) ?? { value: hostname().split('.')[0] ?? 'localhost', from: 'this machine\'s short hostname' };
  let pubkey = pick(o.pubkey, '--pubkey', 'REAR_UPDATE_PUBKEY', 'REAR_UPDATE_PUBKEY', true);
  if (!pubkey) {
    const found = DEFAULT_PUBKEYS.map(under).find((p) => existsSync(p));
    if (found) pubkey = { value: found, from: 'default' };
  }
  return { root, confFile, confProblem, server, token: tokenOf(o, env, conf, under, fromConf), cacert, host, pubkey };
}

function tokenOf(o: OriginalFlags, env: NodeJS.ProcessEnv, conf: Partial<Record<PublishConfKey, string>>, under: (p: string) => string, fromConf: (k: PublishConfKey) => string): OriginalConfig['token'] {
  if (o.token) return { value: o.token.trim(), from: '--token', file: null };
  const file = (path: string, from: string): OriginalConfig['token'] => {
    try {
      const value = readFileSync(path, 'utf8').trim();
      return value ? { value, from, file: path } : { problem: `${path} is empty`, from };
    } catch (e) {
      return { problem: `${path}: ${(e as Error).message}`, from };
    }
  };
  if (o.tokenFile) return file(o.tokenFile, '--token-file');
  if (env.REAR_UPDATE_TOKEN?.trim()) return { value: env.REAR_UPDATE_TOKEN.trim(), from: 'environment REAR_UPDATE_TOKEN', file: null };
  if (env.REAR_UPDATE_TOKEN_FILE) return file(env.REAR_UPDATE_TOKEN_FILE, 'environment REAR_UPDATE_TOKEN_FILE');
  if (conf.REAR_UPDATE_TOKEN_FILE) return file(under(conf.REAR_UPDATE_TOKEN_FILE), fromConf('REAR_UPDATE_TOKEN_FILE'));
  const dflt = under(PUBLISH_CONF_DEFAULTS.REAR_UPDATE_TOKEN_FILE);
  return existsSync(dflt) ? file(dflt, 'default') : null;
}
