// The server's settings, declared once: each has a config-file key, an environment variable,
// a flag and a default. Precedence is file, then environment, then flags (style.md #8), and a
// bad value names where it came from. `serve --help` is generated from this table.

import { readFileSync } from 'node:fs';
import { DURATION_EXAMPLES, parseDuration } from '../core/duration.ts';
import { RuError } from '../core/errors.ts';
import { redactUrl } from '../adapters/storage/pg-errors.ts';

export interface ServerConfig {
  readonly data: string;
  /** A PostgreSQL URL for the metadata; null: SQLite in the data directory. */
  readonly db: string | null;
  /** Where bundle bytes go: `dir` (DATA/blobs) or `postgres` (the --db database). */
  readonly blobs: 'dir' | 'postgres';
  readonly listen: { readonly host: string; readonly port: number };
  readonly tlsCert: string | null;
  readonly tlsKey: string | null;
  /** The one-file executable served at GET /download/rear-update; null: dist/rear-update beside the running bundle. */
  readonly clientExe: string | null;
  /** A directory of .deb/.rpm files served at GET /download/NAME; null: none. */
  readonly packages: string | null;
  readonly maxUpload: number;
  readonly logLevel: string;
  readonly payloadCache: number;
  readonly pendingPerToken: number;
  readonly pendingPerAddress: number;
  readonly pendingMax: number;
  /** Milliseconds. */
  readonly pendingWindow: number;
  /** Slow clients (limits.ts). Milliseconds; 0: off (not for headers and keep-alive). */
  readonly headersTimeout: number;
  readonly idleTimeout: number;
  readonly requestTimeout: number;
  readonly logIdleTimeout: number;
  readonly keepAliveTimeout: number;
  /** 0: no limit. */
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number;
  /** Recoveries and the console (docs/recoveries.md, docs/console.md). Milliseconds. */
  readonly silentAfter: number;
  readonly sessionIdle: number;
  readonly sessionMax: number;
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

const count = (what: string) => (v: string, from: string): number => {
  const t = v.trim();
  if (!/^\d{1,9}$/.test(t) || Number(t) < 1) throw new RuError('CONFIG_INVALID', `${from}: ${what} ${JSON.stringify(v)} is not a whole number of at least 1`, { from });
  return Number(t);
};

const span = (what: string) => (v: string, from: string): number => {
  const s = parseDuration(v);
  if (s === null || s < 1) throw new RuError('CONFIG_INVALID', `${from}: ${what} ${JSON.stringify(v)} is not a duration of at least 1 s (${DURATION_EXAMPLES})`, { from });
  return s * 1000;
};

/** A timeout in milliseconds; `0` turns it off when `off` is allowed. */
const timeout = (what: string, off: boolean) => (v: string, from: string): number => {
  const s = parseDuration(v);
  if (s === null || (s < 1 && !(off && s === 0))) {
    throw new RuError('CONFIG_INVALID', `${from}: ${what} ${JSON.stringify(v)} is not a duration of at least 1 s${off ? ' or 0 (off)' : ''} (${DURATION_EXAMPLES})`, { from });
  }
  return s * 1000;
};

/** A limit on connections; 0: none. */
const connections = (what: string) => (v: string, from: string): number => {
  const t = v.trim();
  if (!/^\d{1,7}$/.test(t)) throw new RuError('CONFIG_INVALID', `${from}: ${what} ${JSON.stringify(v)} is not a whole number (0: no limit)`, { from });
  return Number(t);
};

export function parseListen(v: string, from: string): ServerConfig['listen'] {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new RuError('CONFIG_INVALID', `${from}: listen address ${JSON.stringify(v)} is not ADDR:PORT (e.g. 127.0.0.1:8080, [::1]:8080, 0.0.0.0:443)`, { from });
  return { host: (m[1] ?? m[2])!, port };
}

/** A PostgreSQL URL (the password, if any, never appears in a message); '' is none: SQLite. */
export function parseDbUrl(v: string, from: string): string | null {
  const t = v.trim();
  if (t === '') return null;
  // The rest is the driver's to read (a socket URL, postgres://user@/db?host=/run/postgresql, has no host).
  if (!/^postgres(ql)?:\/\/[^\s]*$/.test(t)) throw new RuError('CONFIG_INVALID', `${from}: metadata database ${JSON.stringify(redactUrl(t))} is not a PostgreSQL URL (postgres://USER@HOST:PORT/DB)`, { from });
  return t;
}

/** The blob store: the data directory's blobs/ or the PostgreSQL database (which needs --db: checked in loadConfig). */
export function parseBlobs(v: string, from: string): ServerConfig['blobs'] {
  const t = v.trim();
  if (t !== 'dir' && t !== 'postgres') throw new RuError('CONFIG_INVALID', `${from}: blob store ${JSON.stringify(v)} is not dir or postgres`, { from });
  return t;
}

const text = (v: string): string => v;
const orNull = (v: string): string | null => (v === '' ? null : v);

export const SETTINGS = [
  { key: 'data', flag: '--data <dir>', env: 'REAR_UPDATE_DATA', default: './data', parse: text, help: 'data directory: metadata database, bundles, keys, logs' },
  { key: 'db', flag: '--db <url>', env: 'REAR_UPDATE_DB', default: null, parse: parseDbUrl, help: 'keep the metadata in PostgreSQL: postgres://USER@HOST:PORT/DB (a password is better in PGPASSWORD or ~/.pgpass than in a flag); default: SQLite in --data. Keys and logs stay in --data, bundles too unless --blobs postgres' },
  { key: 'blobs', flag: '--blobs <store>', env: 'REAR_UPDATE_BLOBS', default: 'dir', parse: parseBlobs, help: 'where bundles are kept: dir (--data\'s blobs/ directory) or postgres (in the --db database, which several servers can share: no bundle on any one server\'s disk)' },
  { key: 'listen', flag: '--listen <addr:port>', env: 'REAR_UPDATE_LISTEN', default: '127.0.0.1:8080', parse: parseListen, help: 'address and port to listen on' },
  { key: 'tlsCert', flag: '--tls-cert <file>', env: 'REAR_UPDATE_TLS_CERT', default: null, parse: orNull, help: 'PEM certificate (chain): serve HTTPS (needs --tls-key)' },
  { key: 'tlsKey', flag: '--tls-key <file>', env: 'REAR_UPDATE_TLS_KEY', default: null, parse: orNull, help: 'PEM private key of the certificate' },
  { key: 'clientExe', flag: '--client-exe <file>', env: 'REAR_UPDATE_CLIENT_EXE', default: null, parse: orNull, help: 'the one-file executable original systems fetch with self-update (GET /download/rear-update; default: dist/rear-update beside the running bundle)' },
  { key: 'packages', flag: '--packages <dir>', env: 'REAR_UPDATE_PACKAGES', default: null, parse: orNull, help: 'a directory of .deb and .rpm packages to serve at GET /download/NAME (npm run package makes them)' },
  { key: 'maxUpload', flag: '--max-upload <size>', env: 'REAR_UPDATE_MAX_UPLOAD', default: '1GiB', parse: int('maximum upload'), help: 'largest bundle or log upload accepted' },
  { key: 'logLevel', flag: '--log-level <level>', env: 'REAR_UPDATE_LOG_LEVEL', default: 'info', parse: (v: string, from: string) => {
    if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(v)) throw new RuError('CONFIG_INVALID', `${from}: log level ${JSON.stringify(v)} is not one of fatal, error, warn, info, debug, trace, silent`, { from });
    return v;
  }, help: 'structured log level (JSON lines on stdout)' },
  { key: 'payloadCache', flag: '--payload-cache <size>', env: 'REAR_UPDATE_PAYLOAD_CACHE', default: '256MiB', parse: int('payload cache'), help: 'memory for bundles kept ready to serve (0: read from disk each time)' },
  { key: 'pendingPerToken', flag: '--pending-per-token <n>', env: 'REAR_UPDATE_PENDING_PER_TOKEN', default: '20', parse: count('pending limit per token'), help: 'open pending machines first reported with one token; more get 429 PENDING_LIMIT' },
  { key: 'pendingPerAddress', flag: '--pending-per-address <n>', env: 'REAR_UPDATE_PENDING_PER_ADDRESS', default: '20', parse: count('pending limit per address'), help: 'open pending machines first reported from one client address' },
  { key: 'pendingMax', flag: '--pending-max <n>', env: 'REAR_UPDATE_PENDING_MAX', default: '1000', parse: count('pending limit'), help: 'open pending machines in all' },
  { key: 'pendingWindow', flag: '--pending-window <duration>', env: 'REAR_UPDATE_PENDING_WINDOW', default: '1h', parse: span('pending window'), help: 'an unassigned pending machine counts as open while it asked within this span (e.g. 30m, 1h)' },
  { key: 'headersTimeout', flag: '--headers-timeout <duration>', env: 'REAR_UPDATE_HEADERS_TIMEOUT', default: '20s', parse: timeout('headers timeout', false), help: 'a request\'s headers must arrive within this (slowloris)' },
  { key: 'idleTimeout', flag: '--idle-timeout <duration>', env: 'REAR_UPDATE_IDLE_TIMEOUT', default: '60s', parse: timeout('idle timeout', true), help: 'close a connection on which nothing arrives or leaves for this long while a request is received or answered (a stalled upload or download; 0: off)' },
  { key: 'requestTimeout', flag: '--request-timeout <duration>', env: 'REAR_UPDATE_REQUEST_TIMEOUT', default: '30m', parse: timeout('request timeout', true), help: 'a request\'s body must be complete within this after its headers (a slow drip); recovery-log uploads are exempt (0: off)' },
  { key: 'logIdleTimeout', flag: '--log-idle-timeout <duration>', env: 'REAR_UPDATE_LOG_IDLE_TIMEOUT', default: '1h', parse: timeout('log idle timeout', true), help: 'end a recovery-log upload (ReaR\'s tail -f | curl -T-) that sends nothing for this long (0: off)' },
  { key: 'keepAliveTimeout', flag: '--keep-alive-timeout <duration>', env: 'REAR_UPDATE_KEEP_ALIVE_TIMEOUT', default: '65s', parse: timeout('keep-alive timeout', false), help: 'close an idle kept-alive connection after this' },
  { key: 'maxConnections', flag: '--max-connections <n>', env: 'REAR_UPDATE_MAX_CONNECTIONS', default: '512', parse: connections('connection limit'), help: 'open connections in all; more are closed at once (0: no limit)' },
  { key: 'maxConnectionsPerAddress', flag: '--max-connections-per-address <n>', env: 'REAR_UPDATE_MAX_CONNECTIONS_PER_ADDRESS', default: '64', parse: connections('connection limit per address'), help: 'open connections from one client address; more are closed at once (0: no limit)' },
  { key: 'silentAfter', flag: '--silent-after <duration>', env: 'REAR_UPDATE_SILENT_AFTER', default: '5m', parse: span('silent-after'), help: 'an active recovery with no event, heartbeat or log output for this long is shown as silent' },
  { key: 'sessionIdle', flag: '--session-idle <duration>', env: 'REAR_UPDATE_SESSION_IDLE', default: '30m', parse: span('session idle timeout'), help: 'a console session unused for this long ends' },
  { key: 'sessionMax', flag: '--session-max <duration>', env: 'REAR_UPDATE_SESSION_MAX', default: '12h', parse: span('session lifetime'), help: 'a console session ends this long after sign-in, used or not' },
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
  if (c.blobs === 'postgres' && c.db === null) {
    throw new RuError('CONFIG_INVALID', '--blobs postgres keeps bundles in the PostgreSQL database: it needs --db', { from: 'flags' });
  }
  if ((c.tlsCert === null) !== (c.tlsKey === null)) {
    throw new RuError('CONFIG_INVALID', 'TLS needs both --tls-cert and --tls-key', { from: 'flags' });
  }
  return c;
}
