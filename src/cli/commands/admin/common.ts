// What every `rear-update admin` subcommand shares: the server options and --json on each
// leaf command, table printing, relative times, and the one streaming GET (logs --follow),
// which the JSON-only ApiClient.request cannot do.

import type { IncomingMessage } from 'node:http';
import type { Command } from 'commander';
import { parseDuration } from '../../../core/duration.ts';
import { RuError } from '../../../core/errors.ts';
import { refusal, type ApiClient } from '../../../adapters/http/api-client.ts';
import { out, table } from '../../output.ts';
import { addServerOptions, clientFrom, type ServerFlags } from '../../server-options.ts';

export interface AdminFlags extends ServerFlags {
  json?: boolean;
}

export const SERVER_HELP = `
The server and a token come from --server/--token (or --token-file), or from
REAR_UPDATE_SERVER and REAR_UPDATE_TOKEN; the first admin token is in the server's
DATA/admin.token. Reading needs a view, operate or admin token; assign and forget operate or
admin; every other change admin.`;

/** A leaf command with the shared server options and --json. */
export function leaf(parent: Command, nameAndArgs: string, description: string): Command {
  const cmd = parent.command(nameAndArgs).description(description);
  return addServerOptions(cmd).option('--json', 'print the server\'s answer as JSON instead of a table');
}

export const api = (o: AdminFlags): ApiClient => clientFrom(o);

export const seg = encodeURIComponent;

export const dash = (v: unknown): string => (v === null || v === undefined || v === '' ? '-' : Array.isArray(v) ? (v.length ? v.join(',') : '-') : String(v));

/** 2026-01-31T12:00:00.123Z → 2026-01-31 12:00:00Z: what a table needs. */
export const time = (iso: string | null | undefined): string => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');

export function printTable(header: readonly string[], rows: readonly (readonly string[])[], empty: string): void {
  if (rows.length === 0) {
    out(empty);
    return;
  }
  for (const l of table([header, ...rows])) out(l);
}

/** --since/--until: an ISO time as given, or a span back from now: 30m, 12h, 7d, 2w (core/duration.ts). */
export function sinceTime(v: string, now = Date.now()): string {
  const t = v.trim().replace(/^(\d+)\s+([smhdw])$/, '$1$2');
  // A bare number is not taken for seconds here: the server refuses it as a malformed time.
  const s = /^\d+$/.test(t) ? null : parseDuration(t);
  return s === null ? v : new Date(now - s * 1000).toISOString();
}

/**
 * A GET whose body is read as it arrives (a followed log). The status is checked first: a
 * refusal becomes the server's error as ApiClient.request reports it. Once the answer has
 * started, no idle timeout applies: a followed log may stay quiet for minutes.
 */
export async function streamGet(client: ApiClient, path: string, query: Parameters<ApiClient['url']>[1] = {}): Promise<IncomingMessage> {
  const u = client.url(path, query);
  // Loaded on first use, as in the ApiClient: other commands need not pay for http/tls start-up.
  const lib = u.protocol === 'https:' ? await import('node:https') : await import('node:http');
  return new Promise((resolve, reject) => {
    const req = lib.request(u, { method: 'GET', headers: client.headers({ accept: 'text/plain, application/json' }), ...(client.cacert ? { ca: client.cacert } : {}), timeout: 30_000 }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) {
        req.setTimeout(0);
        resolve(res);
        return;
      }
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: the text itself is the message
        }
        reject(refusal(status, body, `GET ${u.pathname}`));
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', (e) => reject(e instanceof RuError ? e : new RuError('SERVER_UNREACHABLE', `${client.base.origin}: ${e.message}`, { server: client.base.origin })));
    req.end();
  });
}

/** Copies a streamed answer to stdout until it ends; a connection that breaks off first is an error. */
export function pipeToStdout(res: IncomingMessage, what: string): Promise<number> {
  let bytes = 0;
  return new Promise((resolve, reject) => {
    res.on('data', (c: Buffer) => {
      bytes += c.length;
      if (!process.stdout.write(c)) {
        res.pause();
        process.stdout.once('drain', () => res.resume());
      }
    });
    res.on('end', () => resolve(bytes));
    res.on('error', (e) => reject(new RuError('SERVER_UNREACHABLE', `${what}: the stream broke off: ${e.message}`)));
    res.on('close', () => {
      if (!res.complete) reject(new RuError('SERVER_UNREACHABLE', `${what}: the server closed the stream before its end`));
    });
  });
}
