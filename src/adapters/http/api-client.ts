// The client side of the server's JSON API, for publish, apply --server and admin. Only
// node:http/https (the rescue executable carries no dependency for this). Connection
// failures and 5xx are retried a few times; a 4xx is final and becomes SERVER_REFUSED (or the
// auth codes), carrying the server's own code and message; tokens never appear in messages.

import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { RuError, type ErrorCode } from '../../core/errors.ts';

export interface ApiOptions {
  /** Base URL, e.g. https://rear.example:8443 */
  readonly server: string;
  readonly token?: string | null;
  /** PEM text of extra CAs. */
  readonly cacert?: string | null;
  readonly retries?: number;
  readonly timeoutMs?: number;
  /** Sent with every request (apply's X-Rear-Update-Recovery: docs/recoveries.md). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ApiResponse<T> {
  readonly status: number;
  readonly body: T;
}

/** Server codes a client passes on as they are; everything else is SERVER_REFUSED. */
const PASS_THROUGH = new Set<string>(['AUTH_REQUIRED', 'AUTH_INVALID', 'AUTH_EXPIRED', 'AUTH_USED_UP', 'PENDING_LIMIT', 'FORBIDDEN', 'HOST_UNKNOWN', 'VERSION_UNKNOWN', 'TOKEN_UNKNOWN', 'PENDING_UNKNOWN', 'LOG_UNKNOWN', 'NO_BUNDLE', 'STORE_CONFLICT', 'UPLOAD_TOO_LARGE', 'KEY_UNKNOWN']);

export function parseServerUrl(server: string): URL {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    throw new RuError('USAGE', `--server ${JSON.stringify(server)} is not a URL (e.g. http://rear-server:8080)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new RuError('USAGE', `--server must be an http:// or https:// URL, not ${u.protocol}`);
  return u;
}

export class ApiClient {
  readonly base: URL;
  readonly #o: ApiOptions;

  constructor(o: ApiOptions) {
    this.base = parseServerUrl(o.server);
    this.#o = o;
  }

  get token(): string | null {
    return this.#o.token ?? null;
  }

  get cacert(): string | null {
    return this.#o.cacert ?? null;
  }

  url(path: string, query: Record<string, string | readonly string[] | number | null | undefined> = {}): URL {
    const u = new URL(path.replace(/^\//, ''), this.base.href.endsWith('/') ? this.base.href : `${this.base.href}/`);
    for (const [k, v] of Object.entries(query)) {
      if (v === null || v === undefined) continue;
      for (const x of Array.isArray(v) ? v : [v]) u.searchParams.append(k, String(x));
    }
    return u;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { accept: 'application/json', ...this.#o.headers, ...(this.#o.token ? { authorization: `Bearer ${this.#o.token}` } : {}), ...extra };
  }

  /** One JSON request; `body` is sent as JSON, or streamed as is when it is a Readable. */
  async request<T>(method: string, path: string, opts: { query?: Parameters<ApiClient['url']>[1]; body?: unknown; stream?: Readable; contentType?: string; headers?: Record<string, string>; okStatuses?: number[] } = {}): Promise<ApiResponse<T>> {
    const u = this.url(path, opts.query);
    // A streamed body cannot be sent twice: no retries then.
    const attempts = opts.stream ? 1 : (this.#o.retries ?? 3) + 1;
    let last: unknown = null;
    for (let i = 0; i < attempts; i++) {
      if (i > 0) await sleep(Math.min(250 * 2 ** (i - 1), 4000));
      try {
        const res = await this.#send(method, u, opts);
        const text = await readAll(res);
        const status = res.statusCode ?? 0;
        let body: unknown = text;
        if ((res.headers['content-type'] ?? '').includes('json') && text !== '') {
          try {
            body = JSON.parse(text);
          } catch {
            body = text;
          }
        }
        if (status >= 200 && status < 300) return { status, body: body as T };
        if (opts.okStatuses?.includes(status)) return { status, body: body as T };
        const err = refusal(status, body, `${method} ${u.pathname}`);
        if (status >= 500 && i + 1 < attempts) {
          last = err;
          continue;
        }
        throw err;
      } catch (e) {
        if (e instanceof RuError) throw e;
        last = e;
      }
    }
    if (last instanceof RuError) throw last;
    const cause = (last as NodeJS.ErrnoException | null)?.code;
    throw new RuError('SERVER_UNREACHABLE', `${this.base.origin}: ${(last as Error)?.message ?? String(last)}`, { server: this.base.origin, ...(cause ? { cause } : {}) });
  }

  async #send(method: string, u: URL, opts: { body?: unknown; stream?: Readable; contentType?: string; headers?: Record<string, string> }): Promise<IncomingMessage> {
    // Loaded on first use: http, https and tls cost start-up time every other command would pay.
    const lib = u.protocol === 'https:' ? await import('node:https') : await import('node:http');
    const headers = this.headers({ ...(opts.body !== undefined ? { 'content-type': 'application/json' } : opts.contentType ? { 'content-type': opts.contentType } : {}), ...opts.headers });
    return new Promise((resolve, reject) => {
      const req = lib.request(u, { method, headers, ...(this.#o.cacert ? { ca: this.#o.cacert } : {}), timeout: this.#o.timeoutMs ?? 30_000 }, resolve);
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${(this.#o.timeoutMs ?? 30_000) / 1000} s`), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      if (opts.stream) {
        opts.stream.on('error', (e) => req.destroy(e));
        opts.stream.pipe(req);
      } else {
        req.end(opts.body !== undefined ? JSON.stringify(opts.body) : undefined);
      }
    });
  }
}

async function readAll(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts).toString('utf8');
}

/** The server's error body ({error: {code, message}}) as a RuError the CLI reports. */
export function refusal(status: number, body: unknown, what: string): RuError {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof e?.code === 'string' ? e.code : null;
  // Control characters from a server must not reach a terminal.
  const message = (typeof e?.message === 'string' ? e.message : typeof body === 'string' ? body.slice(0, 300) : '').replace(/\p{Cc}+/gu, ' ');
  if (code && PASS_THROUGH.has(code)) return new RuError(code as ErrorCode, `server: ${message}`, { status, server: code });
  return new RuError('SERVER_REFUSED', `${what}: HTTP ${status}${code ? ` ${code}` : ''}: ${message || 'no message'}`, { status, server: code });
}
