// The settings install-rear bakes into the rescue image (/etc/rear-update/settings.conf): a
// shell file the boot hook sources, and the defaults this CLI falls back to, so that an
// operator in the rescue shell types only `rear-update apply e229`. Precedence everywhere:
// flags, then the environment, then this file. It also records the template's facts
// (REAR_UPDATE_IMAGE_*), which machines booting the image must not send as their own.
// On an original system (one whose configuration is published, not a rescue system) every
// command also reads /etc/rear-update/publish.conf (publish-state.ts), between the environment
// and the image's settings: flags, environment, publish.conf, settings.conf.

import { existsSync, readFileSync } from 'node:fs';
import type { FactSettings } from '../core/store/rescue-facts.ts';
import { PUBLISH_CONF, PUBLISH_CONF_DEFAULTS } from './publish-state.ts';

export const SETTINGS_FILE = '/etc/rear-update/settings.conf';

/**
 * Every setting, declared once. `image: false` marks a setting that must never come from the
 * image's settings.conf: it describes one machine, and the image serves many.
 */
export const SETTING_SPECS = {
  REAR_UPDATE_SERVER: { image: true, about: 'the server\'s URL' },
  REAR_UPDATE_TOKEN: { image: true, about: 'the fetch token' },
  REAR_UPDATE_CACERT: { image: true, about: 'CA certificate(s) for https' },
  REAR_UPDATE_ID_FROM: { image: true, about: 'how the boot hook finds the host: mac, uuid, hostname, ask' },
  REAR_UPDATE_CLASS: { image: true, about: 'the image\'s hardware class' },
  REAR_UPDATE_WAIT: { image: true, about: 'how long a pending machine waits for an assignment' },
  REAR_UPDATE_KEEP: { image: true, about: 'globs apply never removes below owned paths' },
  REAR_UPDATE_RETRY_FOR: { image: true, about: 'how long the boot hook retries (seconds)' },
  REAR_UPDATE_REPORT: { image: true, about: 'report each boot to the server as a recovery (0, no, off: do not; docs/recoveries.md)' },
  REAR_UPDATE_EXPORT: { image: true, about: 'where the boot hook finds an offline export when the server does not answer: nfs://HOST/PATH or LABEL:/path (docs/export.md)' },
  REAR_UPDATE_EXPORT_MAX_AGE: { image: true, about: 'apply --from asks before applying an export older than this (default 7d)' },
  REAR_UPDATE_HEARTBEAT: { image: true, about: 'seconds between the heartbeats log-stream sends while rear runs (default 60)' },
  REAR_UPDATE_HOSTNAME: { image: false, about: 'this machine\'s hostname, stated explicitly (apply --hostname, kernel option rear_update=hostname=NAME)' },
  REAR_UPDATE_IMAGE_HOSTNAME: { image: true, about: 'hostname of the machine the image was made on (the template), never sent by a machine booting it' },
  REAR_UPDATE_IMAGE_UUID: { image: true, about: 'DMI UUID of the template, never sent by a machine booting the image' },
  REAR_UPDATE_IMAGE_SERIAL: { image: true, about: 'DMI serial of the template, never sent by a machine booting the image' },
} as const satisfies Record<string, { image: boolean; about: string }>;

export type SettingKey = keyof typeof SETTING_SPECS;
export const SETTING_KEYS = Object.keys(SETTING_SPECS) as SettingKey[];

/** What /etc/rear-update/publish.conf may set (publish-state.ts has the file's description). */
export const PUBLISH_CONF_SPECS = {
  REAR_UPDATE_SERVER: { about: 'the server\'s URL' },
  REAR_UPDATE_TOKEN_FILE: { about: `the file holding this host's publish token (default ${PUBLISH_CONF_DEFAULTS.REAR_UPDATE_TOKEN_FILE})` },
  REAR_UPDATE_CACERT: { about: 'CA certificate(s) for https' },
  REAR_UPDATE_HOST: { about: 'this host\'s id on the server (default: the short hostname)' },
  REAR_UPDATE_PUBKEY: { about: `the server's public key, pinned (default ${PUBLISH_CONF_DEFAULTS.REAR_UPDATE_PUBKEY}): self-update checks the executable's signature with it` },
} as const satisfies Record<string, { about: string }>;

export type PublishConfKey = keyof typeof PUBLISH_CONF_SPECS;
export const PUBLISH_CONF_KEYS = Object.keys(PUBLISH_CONF_SPECS) as PublishConfKey[];

/** Single-quoted for the shell: the one quoting with no expansions inside. */
export const shellQuote = (v: string): string => `'${v.replace(/'/g, `'\\''`)}'`;

export function encodeSettings(values: Partial<Record<SettingKey, string>>, header: string): string {
  const lines = [`# ${header}`];
  for (const k of SETTING_KEYS) {
    if (values[k] !== undefined && !SETTING_SPECS[k].image) throw new Error(`${k} describes one machine and must not be written into an image's settings`);
  }
  for (const k of SETTING_KEYS) if (values[k] !== undefined) lines.push(`${k}=${shellQuote(values[k] as string)}`);
  return `${lines.join('\n')}\n`;
}

/** Reads KEY='value' lines as encodeSettings writes them (and plain KEY=value); ignores the rest. */
export function parseSettings(text: string): Partial<Record<SettingKey, string>>;
export function parseSettings<K extends string>(text: string, known: readonly K[]): Partial<Record<K, string>>;
export function parseSettings(text: string, known: readonly string[] = SETTING_KEYS): Partial<Record<string, string>> {
  const out: Partial<Record<string, string>> = {};
  const keys = new Set<string>(known);
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_]+)=((?:'[^']*'|\\'|[^\s'"#\\])*)\s*(?:#.*)?$/.exec(line);
    if (!m || !keys.has(m[1]!)) continue;
    const raw = m[2]!;
    let v = '';
    for (const part of raw.match(/'[^']*'|\\'|[^'\\]+/g) ?? []) v += part.startsWith("'") ? part.slice(1, -1) : part === "\\'" ? "'" : part;
    out[m[1]!] = v;
  }
  return out;
}

let cached: Partial<Record<SettingKey, string>> | null = null;

/**
 * The image's settings (REAR_UPDATE_SETTINGS names another file); none when absent. A
 * machine's own setting found there is ignored: every machine booting the image would claim it.
 */
export function imageSettings(env: NodeJS.ProcessEnv = process.env): Partial<Record<SettingKey, string>> {
  if (cached) return cached;
  let all: Partial<Record<SettingKey, string>> = {};
  try {
    all = parseSettings(readFileSync(env.REAR_UPDATE_SETTINGS ?? SETTINGS_FILE, 'utf8'));
  } catch {
    // no settings file: not a rescue image made by install-rear
  }
  cached = Object.fromEntries(Object.entries(all).filter(([k]) => SETTING_SPECS[k as SettingKey].image));
  return cached;
}

/** A rescue system made by ReaR 2.7's mkrescue has /etc/rear-release; an original system has not. */
const RESCUE_RELEASE = '/etc/rear-release';

export interface PublishConf {
  /** The file read (REAR_UPDATE_PUBLISH_CONF names another one, e.g. in tests), or null when none applies. */
  readonly file: string | null;
  /** Its values, the defaults filled in (only when the file exists). */
  readonly values: Partial<Record<PublishConfKey, string>>;
  /** The publish token read from REAR_UPDATE_TOKEN_FILE, or null. */
  readonly token: string | null;
  /** Why the token file named could not be read (e.g. not root), or null. */
  readonly tokenProblem: string | null;
}

const publishConfCache = new Map<string, PublishConf>();

/**
 * This original system's publish.conf (publish-state.ts), or nothing: in a rescue system, or
 * when the file does not exist. REAR_UPDATE_TOKEN_FILE (from the environment first, then the
 * file) is read here, so that every command finds the token as REAR_UPDATE_TOKEN.
 */
export function publishConf(env: NodeJS.ProcessEnv = process.env): PublishConf {
  const file = env.REAR_UPDATE_PUBLISH_CONF ?? PUBLISH_CONF;
  const key = `${file}\0${env.REAR_UPDATE_TOKEN_FILE ?? ''}`;
  const hit = publishConfCache.get(key);
  if (hit) return hit;
  let conf: PublishConf = { file: null, values: {}, token: null, tokenProblem: null };
  const named = env.REAR_UPDATE_PUBLISH_CONF !== undefined;
  if ((named || !existsSync(RESCUE_RELEASE)) && existsSync(file)) {
    let values: Partial<Record<PublishConfKey, string>> = {};
    try {
      values = { ...PUBLISH_CONF_DEFAULTS, ...parseSettings(readFileSync(file, 'utf8'), PUBLISH_CONF_KEYS) };
    } catch {
      // unreadable (not root): the token file would be too; doctor names it
    }
    const tokenFile = env.REAR_UPDATE_TOKEN_FILE ?? values.REAR_UPDATE_TOKEN_FILE;
    let token: string | null = null;
    let tokenProblem: string | null = null;
    if (tokenFile) {
      try {
        token = readFileSync(tokenFile, 'utf8').trim() || null;
        if (!token) tokenProblem = `${tokenFile} is empty`;
      } catch (e) {
        tokenProblem = `${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      }
    }
    conf = { file, values, token, tokenProblem };
  }
  publishConfCache.set(key, conf);
  return conf;
}

/**
 * The environment with what lies underneath: publish.conf (on an original system; its token
 * file read into REAR_UPDATE_TOKEN), then the image's settings. So the order is flags (the
 * caller's), environment, publish.conf, settings.conf. A token from the environment wins over
 * the token file, and the token file over settings.conf's (a fetch token, the image's).
 */
export const effectiveEnv = (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv => {
  const p = publishConf(env);
  const fromConf: Record<string, string> = { ...p.values };
  if (p.token !== null) fromConf.REAR_UPDATE_TOKEN = p.token;
  return { ...imageSettings(env), ...fromConf, ...env };
};

/** What decides which facts this machine sends: the explicit hostname (flag, then environment) and the template's facts. */
export function factSettings(flags: { hostname?: string }, env: NodeJS.ProcessEnv = effectiveEnv()): FactSettings {
  return {
    hostname: flags.hostname ?? env.REAR_UPDATE_HOSTNAME ?? null,
    imageHostname: env.REAR_UPDATE_IMAGE_HOSTNAME ?? null,
    imageUuid: env.REAR_UPDATE_IMAGE_UUID ?? null,
    imageSerial: env.REAR_UPDATE_IMAGE_SERIAL ?? null,
  };
}
