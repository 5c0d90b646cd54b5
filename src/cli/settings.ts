// The settings install-rear bakes into the rescue image (/etc/rear-update/settings.conf): a
// shell file the boot hook sources, and the defaults this CLI falls back to, so that an
// operator in the rescue shell types only `rear-update apply e229`. Precedence everywhere:
// flags, then the environment, then this file.

import { readFileSync } from 'node:fs';

export const SETTINGS_FILE = '/etc/rear-update/settings.conf';

export const SETTING_KEYS = [
  'REAR_UPDATE_SERVER', 'REAR_UPDATE_TOKEN', 'REAR_UPDATE_CACERT', 'REAR_UPDATE_ID_FROM',
  'REAR_UPDATE_CLASS', 'REAR_UPDATE_WAIT', 'REAR_UPDATE_KEEP', 'REAR_UPDATE_RETRY_FOR',
] as const;
export type SettingKey = (typeof SETTING_KEYS)[number];

/** Single-quoted for the shell: the one quoting with no expansions inside. */
export const shellQuote = (v: string): string => `'${v.replace(/'/g, `'\\''`)}'`;

export function encodeSettings(values: Partial<Record<SettingKey, string>>, header: string): string {
  const lines = [`# ${header}`];
  for (const k of SETTING_KEYS) if (values[k] !== undefined) lines.push(`${k}=${shellQuote(values[k] as string)}`);
  return `${lines.join('\n')}\n`;
}

/** Reads KEY='value' lines as encodeSettings writes them (and plain KEY=value); ignores the rest. */
export function parseSettings(text: string): Partial<Record<SettingKey, string>> {
  const out: Partial<Record<SettingKey, string>> = {};
  const keys = new Set<string>(SETTING_KEYS);
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_]+)=((?:'[^']*'|\\'|[^\s'"#\\])*)\s*(?:#.*)?$/.exec(line);
    if (!m || !keys.has(m[1]!)) continue;
    const raw = m[2]!;
    let v = '';
    for (const part of raw.match(/'[^']*'|\\'|[^'\\]+/g) ?? []) v += part.startsWith("'") ? part.slice(1, -1) : part === "\\'" ? "'" : part;
    out[m[1] as SettingKey] = v;
  }
  return out;
}

let cached: Partial<Record<SettingKey, string>> | null = null;

/** The image's settings (REAR_UPDATE_SETTINGS names another file); none when absent. */
export function imageSettings(env: NodeJS.ProcessEnv = process.env): Partial<Record<SettingKey, string>> {
  if (cached) return cached;
  try {
    cached = parseSettings(readFileSync(env.REAR_UPDATE_SETTINGS ?? SETTINGS_FILE, 'utf8'));
  } catch {
    cached = {};
  }
  return cached;
}

/** The environment with the image's settings underneath. */
export const effectiveEnv = (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv => ({ ...imageSettings(env), ...env });
