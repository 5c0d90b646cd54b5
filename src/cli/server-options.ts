// The options every command that talks to a server shares: --server and --token (or
// REAR_UPDATE_SERVER / REAR_UPDATE_TOKEN, then the image's settings.conf), --token-file,
// --cacert. Declared once here.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { RuError } from '../core/errors.ts';
import { ApiClient } from '../adapters/http/api-client.ts';
import { effectiveEnv } from './settings.ts';

export interface ServerFlags {
  server?: string;
  token?: string;
  tokenFile?: string;
  cacert?: string;
}

export function addServerOptions(cmd: Command, opts: { serverRequired?: boolean } = {}): Command {
  return cmd
    .option('--server <url>', `server URL, e.g. http://rear-server:8080 (env REAR_UPDATE_SERVER)${opts.serverRequired === false ? '' : '; required'}`)
    .option('--token <token>', 'API token (env REAR_UPDATE_TOKEN)')
    .option('--token-file <file>', 'read the token from a file (e.g. the server\'s data/admin.token)')
    .option('--cacert <file>', 'PEM CA certificate(s) to trust for an https server');
}

export function tokenFrom(o: ServerFlags, env: NodeJS.ProcessEnv = effectiveEnv()): string | null {
  if (o.token) return o.token.trim();
  if (o.tokenFile) {
    try {
      return readFileSync(o.tokenFile, 'utf8').trim();
    } catch (e) {
      throw new RuError('USAGE', `--token-file ${o.tokenFile}: ${(e as Error).message}`);
    }
  }
  return env.REAR_UPDATE_TOKEN?.trim() || null;
}

export function serverFrom(o: ServerFlags, env: NodeJS.ProcessEnv = effectiveEnv()): string | null {
  return o.server ?? (env.REAR_UPDATE_SERVER || null);
}

export function clientFrom(o: ServerFlags, env: NodeJS.ProcessEnv = effectiveEnv()): ApiClient {
  const server = serverFrom(o, env);
  if (!server) throw new RuError('USAGE', 'no server: pass --server URL or set REAR_UPDATE_SERVER');
  let cacert: string | null = null;
  const caFile = o.cacert ?? env.REAR_UPDATE_CACERT;
  if (caFile) {
    try {
      cacert = readFileSync(caFile, 'utf8');
    } catch (e) {
      throw new RuError('USAGE', `--cacert ${caFile}: ${(e as Error).message}`);
    }
  }
  return new ApiClient({ server, token: tokenFrom(o, env), cacert });
}
