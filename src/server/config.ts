// The server's settings, declared once: each has a config-file key, an environment variable,
// a flag and a default. Precedence is file, then environment, then flags (style.md #8), and a
// bad value names where it came from. `serve --help` is generated from this table.

import { readFileSync } from 'node:fs';
import { RuError } from '../core/errors.ts';

export interface ServerConfig {
  readonly data: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly tlsCert: string | null;
  readonly tlsKey: string | null;
  readonly maxUpload: number;
  readonly logLevel: string;
  readonly payloadCache: number;
}

type Key = keyof ServerConfig;

interface Setting<K extends Key> {
  readonly key: K;
  readonly flag: string;
  readonly env: string;
  readonly help: string;
  readonly default: string | null;
  parse(v: string, from: string): ServerConfig[K];
}

const int = (what: string) => (v: string, from: string): number => {
  const m = /^(\d+)([KMG]i?B?)?$/i.exec(v.trim());
  if (!m) throw new RuError('CONFIG_INVALID', `${from}: ${what} ${JSON.stringify(v)} is not a size (e.g. 512MiB)`, { from });
  const unit = (m[2] ?? '').toUpperCase()[0];
  return Number(m[1]) * (unit === 'K' ? 1024 : unit === 'M' ? 1 << 20 : unit === 'G' ? 1 << 30 : 1);
};

export function parseListen(v: string, from: string): ServerConfig['listen'] {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new RuError('CONFIG_INVALID', `${from}: listen address ${JSON.stringify(v)} is not ADDR:PORT (e.g. 127.0.0.1:8080, [::1]:8080, 0.0.0.0:443)`, { from });
  return { host: (m[1] ?? m[2])!, port };
}

const text = (v: string): string => v;
const orNull = (v: string): string | null => (v === '' ? null : v);

export const SETTINGS = [
  { key: 'data', flag: '--data <dir>', env: 'REAR_UPDATE_DATA', default: './data', parse: text, help: 'data directory: metadata database, bundles, keys, logs' },
  { key: 'listen', flag: '--listen <addr:port>', env: 'REAR_UPDATE_LISTEN', default: '127.0.0.1:8080', parse: parseListen, help: 'address and port to listen on' },
  { key: 'tlsCert', flag: '--tls-cert <file>', env: 'REAR_UPDATE_TLS_CERT', default: null, parse: orNull, help: 'PEM certificate (chain): serve HTTPS (needs --tls-key)' },
  { key: 'tlsKey', flag: '--tls-key <file>', env: 'REAR_UPDATE_TLS_KEY', default: null, parse: orNull, help: 'PEM private key of the certificate' },
  { key: 'maxUpload', flag: '--max-upload <size>', env: 'REAR_UPDATE_MAX_UPLOAD', default: '1GiB', parse: int('maximum upload'), help: 'largest bundle or log upload accepted' },
  { key: 'logLevel', flag: '--log-level <level>', env: 'REAR_UPDATE_LOG_LEVEL', default: 'info', parse: (v: string, from: string) => {
    if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(v)) throw new RuError('CONFIG_INVALID', `${from}: log level ${JSON.stringify(v)} is not one of fatal, error, warn, info, debug, trace, silent`, { from });
    return v;
  }, help: 'structured log level (JSON lines on stdout)' },
  { key: 'payloadCache', flag: '--payload-cache <size>', env: 'REAR_UPDATE_PAYLOAD_CACHE', default: '256MiB', parse: int('payload cache'), help: 'memory for bundles kept ready to serve (0: read from disk each time)' },
] as const satisfies readonly Setting<Key>[];

export type ConfigFlags = Partial<Record<Key, string | undefined>> & { config?: string };

/** Builds the configuration from a JSON file (--config or REAR_UPDATE_CONFIG), the environment, then flags. */
export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const file = flags.config ?? env.REAR_UPDATE_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (file) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new RuError('CONFIG_INVALID', `config file ${file}: ${(e as Error).message}`, { from: file });
    }
    const known = new Set<string>(SETTINGS.map((s) => s.key));
    for (const k of Object.keys(fromFile)) {
      if (!known.has(k)) throw new RuError('CONFIG_INVALID', `config file ${file}: unknown setting ${JSON.stringify(k)} (known: ${[...known].join(', ')})`, { from: file });
    }
  }
  const out: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    const flagName = s.flag.split(' ')[0]!;
    let raw: string | null = s.default;
    let from = 'default';
    if (fromFile[s.key] !== undefined) {
      raw = String(fromFile[s.key]);
      from = `config file ${file} (${s.key})`;
    }
    if (env[s.env] !== undefined && env[s.env] !== '') {
      raw = env[s.env]!;
      from = `environment ${s.env}`;
    }
    if (flags[s.key] !== undefined) {
      raw = flags[s.key]!;
      from = `flag ${flagName}`;
    }
    out[s.key] = raw === null ? null : (s.parse as (v: string, f: string) => unknown)(raw, from);
  }
  const c = out as unknown as ServerConfig;
  if ((c.tlsCert === null) !== (c.tlsKey === null)) {
    throw new RuError('CONFIG_INVALID', 'TLS needs both --tls-cert and --tls-key', { from: 'flags' });
  }
  return c;
}
